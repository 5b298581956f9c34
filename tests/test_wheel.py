"""fv installed from a built wheel works like the checkout (issue 16): named recipes, version, render, sweep.

The wheel is built from a copy of the package sources (the checkout stays clean), installed without dependencies
into a fresh virtual environment that reuses this environment's torch through a .pth line, and every command runs
from an empty working directory with PYTHONPATH unset, so nothing can come from the checkout: the test checks that
`fvcli` is imported from the new environment. Offline: building needs setuptools in this environment (a test
extra), installing needs no index.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("setuptools", reason="building the wheel needs setuptools (pip install '.[test]')")


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin dir of the new venv, environment, empty working directory) with fv installed from its wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["TORCH_HOME"] = str(tmp / "torch_home")  # never the user's cache
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "fvcli", src / "fvcli", symlinks=True, ignore=ignore)  # fvcli/configs stays a symlink
    shutil.copytree(ROOT / "configs", src / "configs", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    assert (src / "fvcli" / "configs").is_symlink()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", src], tmp, env)
    wheels = list((tmp / "dist").glob("fvcli-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    py = venv / "bin" / "python"
    new_site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env)
                    .stdout.strip())
    # this environment's packages (torch, pip, ...) after the new venv's own: a path line, so the .pth files there
    # (the checkout's editable install) are not processed
    ours = [p for p in dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()]) if Path(p).is_dir()]
    (new_site / "zz-parent-env.pth").write_text("\n".join(ours) + "\n")
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", "--no-build-isolation",
          wheels[0]], tmp, env)
    work = tmp / "work"
    work.mkdir()
    where = _run([py, "-c", "import fvcli; print(fvcli.__file__)"], work, env).stdout.strip()
    assert Path(where).is_relative_to(venv), f"fvcli imported from {where}, not from the wheel in {venv}"
    assert (Path(where).parent / "configs" / "article.yaml").is_file() and not (Path(where).parent / "configs").is_symlink()
    return venv / "bin", env, work


def test_installed_wheel_finds_named_recipes_and_renders(installed):
    bin_dir, env, work = installed
    fv = bin_dir / "fv"
    version = _run([fv, "--version"], work, env).stdout
    import fvcli
    import torch

    assert version.startswith(f"fv {fvcli.__version__} (") and f"torch {torch.__version__}" in version
    assert "CUDA" in version and version.endswith("\n")

    listed = _run([fv, "recipe", "list"], work, env).stdout
    for name in ("article", "default", "lucid"):
        assert f"\n{name} " in listed
    assert "2560 steps" in listed  # the article's one-line description

    shown = _run([fv, "recipe", "show", "--recipe", "article"], work, env).stdout
    assert "steps: 2560" in shown and shown.endswith("\n")

    out = work / "out"
    r = _run([fv, "render", "demo:logit:rings", "-r", "article", "--set", "render.steps=2", "--size", "32", "-o", out,
              "-q"], work, env)
    assert r.stdout.strip() == str(out / "logit-00006.png") and r.stderr == ""
    rec = json.loads((out / "logit-00006.json").read_text())
    assert rec["recipe"]["render"]["steps"] == 2 and rec["recipe"]["render"]["lr"] == 0.05
    assert rec["versions"]["fv"] == fvcli.__version__ and rec["versions"]["torch"] == torch.__version__
    assert "cuda_available" in rec["versions"]

    sweep = work / "sweep"
    r = _run([fv, "sweep", "logit:0-2", "--model", "demo", "--size", "32", "--steps", "2", "-o", sweep, "-q"], work, env)
    assert f"gallery: {sweep / 'index.html'} (3 units, complete)" in r.stdout
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["complete"] and manifest["versions"]["fv"] == fvcli.__version__
    assert (sweep / "layers" / "fc" / "sheet.png").is_file() and "logit-00002" in (sweep / "index.html").read_text()
    assert not [p for p in sweep.rglob("*.tmp")], "a finished sweep leaves no temporary file"
    assert not [p for p in work.iterdir() if p.name not in ("out", "sweep")]  # nothing else written to the cwd
