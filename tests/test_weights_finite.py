"""NaN / Inf weights are refused at load, naming the file and the tensor, before any rendering.

Why: a corrupt or diverged checkpoint used to surface only inside the optimizer (three failed retries per unit and a
message about the loss). `weights.apply_state_dict` is the one place every file-loaded state_dict goes through, so
the check sits there; these tests drive it through the library, the real `fv` process and a safetensors file.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import synthetic_state_dict

from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model

ROOT = Path(__file__).resolve().parents[1]


def _poisoned(tmp_path: Path, name: str = "mixed4a_3x3_pre_relu_conv.weight", nan: int = 3, inf: int = 0,
              suffix: str = ".pth") -> Path:
    sd = synthetic_state_dict()
    flat = sd[name].view(-1)
    flat[:nan] = float("nan")
    flat[nan:nan + inf] = float("inf")
    path = tmp_path / f"poisoned{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


@pytest.mark.parametrize("nan, inf", [(3, 0), (0, 2), (1, 1)])
def test_nan_or_inf_weights_are_named_at_load(tmp_path, nan, inf):
    path = _poisoned(tmp_path, nan=nan, inf=inf)
    with pytest.raises(FvError) as err:
        load_model(ModelOptions(weights=str(path)), "cpu")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and "'mixed4a_3x3_pre_relu_conv.weight'" in msg
    assert f"has {nan} NaN / {inf} Inf values" in msg


def test_nan_in_a_safetensors_file_is_named(tmp_path):
    pytest.importorskip("safetensors")
    path = _poisoned(tmp_path, name="conv2d0_pre_relu_conv.bias", nan=1, suffix=".safetensors")
    with pytest.raises(FvError, match=r"tensor 'conv2d0_pre_relu_conv.bias' has 1 NaN / 0 Inf"):
        load_model(ModelOptions(weights=str(path)), "cpu")


def test_finite_weights_still_load(synthetic_weights):
    assert load_model(ModelOptions(weights=str(synthetic_weights)), "cpu").weights_source == str(synthetic_weights)


def test_cli_refuses_nan_weights_in_one_line_before_rendering(tmp_path):
    path = _poisoned(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fvcli", "render", "mixed4a:0", "--weights", str(path),
                           "--steps", "2", "--size", "32", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode in (1, 2), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "'mixed4a_3x3_pre_relu_conv.weight' has 3 NaN / 0 Inf values" in lines[0] and str(path) in lines[0]
    assert not list(out.glob("*.png")) if out.exists() else True  # nothing rendered
