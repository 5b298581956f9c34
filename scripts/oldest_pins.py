"""Print pip pins for the oldest torch and torchvision that pyproject.toml allows (`make test-oldest`).

The floor in pyproject.toml is a promise: fv works on every release from there up. The only way to keep it true is
to run the suite on the floor itself, so `make test-oldest` builds a second virtual environment from these pins.
A floor written `torch>=2.4` becomes `torch==2.4` (pip reads it as 2.4.0, the oldest release of that line).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None

PINNED = ("torch", "torchvision")


def dependencies(pyproject: Path) -> list[str]:
    text = pyproject.read_text()
    if tomllib is not None:
        return list(tomllib.loads(text)["project"]["dependencies"])
    block = re.search(r"dependencies\s*=\s*\[(.*?)\]", text, re.S)
    return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def oldest_pins(deps: list[str]) -> list[str]:
    pins = []
    for name in PINNED:
        spec = next((d for d in deps if re.match(rf"{name}\s*[<>=!~]", d)), None)
        floor = re.search(r">=\s*([0-9][0-9.]*)", spec or "")
        if floor is None:
            raise SystemExit(f"pyproject.toml states no floor for {name} (a '>=' bound): found {spec!r}")
        pins.append(f"{name}=={floor.group(1)}")
    return pins


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    print(" ".join(oldest_pins(dependencies(root / "pyproject.toml"))))
