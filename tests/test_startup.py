"""Startup stays light: `fv --help` and `import fvcli.cli` import neither torch nor torchvision (commands import
what they need inside the function), and a render on a non-torchvision model never imports torchvision (whose
import pulls in torch._dynamo, ~1 s) nor torch._dynamo through torch.optim. Speed itself is measured by
scripts/bench_startup.py, not here."""
from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    return set(out.splitlines()[-1].split())


def test_help_imports_neither_torch_nor_torchvision():
    mods = _modules_after("from typer.testing import CliRunner\nfrom fvcli.cli import app\n"
                          "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
                          "r = CliRunner().invoke(app, ['render', '--help'])\nassert r.exit_code == 0, r.output")
    assert "fvcli.cli" in mods
    assert "torch" not in mods and "torchvision" not in mods


def test_a_demo_render_imports_neither_torchvision_nor_dynamo(tmp_path):
    mods = _modules_after("from typer.testing import CliRunner\nfrom fvcli.cli import app\n"
                          f"r = CliRunner().invoke(app, ['render', 'logit:0', '--model', 'demo', '--steps', '2', "
                          f"'--size', '32', '--out', {str(tmp_path)!r}])\nassert r.exit_code == 0, r.output")
    assert "torch" in mods and any(tmp_path.glob("*.png"))
    assert "torchvision" not in mods and "torch._dynamo" not in mods
