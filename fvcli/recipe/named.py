"""Named recipes: the YAML files that ship with fv, found by name (`--recipe article`) from any install.

configs/ at the top of the repository is the one place they are written. The package sees that directory as
`fvcli/configs`, a symlink to `../configs`: an editable install reads configs/ through it, and setuptools follows it
when it builds a wheel or an sdist, so the files are copied into the package (package-data `configs/*.yaml`). No
second copy exists to keep in sync by hand (tests/test_wheel.py builds a wheel and uses them from a fresh venv).

A recipe's description is its first comment line (`# The Distill article's recipe ...`), shown by `fv recipe list`;
a new file in configs/ is listed, completed and found by name without touching any code. This module reads only file
names and first lines (no torch, no yaml), so shell completion can call it on every <TAB>.
"""
from __future__ import annotations

from pathlib import Path

# resolved: relative paths inside a recipe (model.weights, ...) are relative to the real file, in the checkout's
# configs/ for an editable install
CONFIG_DIR = (Path(__file__).parents[1] / "configs").resolve()


def named_recipes() -> dict[str, Path]:
    """Name -> file of every recipe shipped with fv, sorted by name."""
    if not CONFIG_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml")) if not p.name.startswith(".")}


def describe(path: Path) -> str:
    """A recipe file's one-line description: its first comment line, without the '#' (empty when it has none)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = line.strip()
                if text.startswith("#"):
                    return text.lstrip("#").strip()
                if text:  # content before any comment: no description
                    return ""
    except (OSError, UnicodeDecodeError):
        return ""
    return ""
