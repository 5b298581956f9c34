"""The command line: one-line errors with exit code 2 (nothing written), weights management, layers."""
from __future__ import annotations

import io
import json
import os
import re
import urllib.error
import urllib.request

import pytest
import torch

from conftest import synthetic_state_dict
from fvcli.models.weights import file_sha256

RENDER = ["render", "--size", 32, "--steps", 2, "--device", "cpu", "-q"]


def assert_bad_input(result, out, *words):
    """Exit 2, one line on stderr starting `fv: error:`, naming `words`; nothing written to `out`."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("fv: error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for w in words:
        assert w in err, err
    assert not out.exists() or not any(out.iterdir())
    return err


# -- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--model", "inceptionv2", "mixed4a:1"], ["unknown model 'inceptionv2'", "did you mean: inceptionv1", "valid:"]),
    (["--weights", "random:0", "mixed4x:1"], ["unknown layer 'mixed4x'", "did you mean: mixed4e", "mixed4a"]),
    (["--weights", "random:0", "mixed4a:508"], ["channel 508 out of range", "valid 0-507"]),
    (["--weights", "random:0", "mixed4a:11@20,20"], ["position 20,20", "x 0-13, y 0-13"]),
    (["--weights", "random:0", "--set", "render.stepz=3", "mixed4a:1"],
     ["unknown recipe key render.stepz", "did you mean: steps", "valid keys of render"]),
    (["--weights", "random:0", "--set", "render.lr=fast", "mixed4a:1"], ["render.lr", "expected a number", "fast"]),
    (["--weights", "random:0", "--set", "render.seed=1.5", "mixed4a:1"], ["render.seed", "expected an integer"]),
    (["--weights", "random:0", "--set", "param.kind=pixle", "mixed4a:1"],
     ["param.kind", "'pixle'", "fourier, pixel", "did you mean: pixel"]),
    (["--weights", "random:0", "--set", "rendr.steps=3", "mixed4a:1"], ["unknown recipe key rendr", "did you mean: render"]),
    (["--weights", "random:0", "--steps", 0, "mixed4a:1"], ["render.steps", "out of range"]),
    (["--weights", "random:7x", "mixed4a:1"], ["random:7x", "random:SEED"]),
    (["--weights", "random:0", "--device", "tpu", "mixed4a:1"], ["render.device", "'tpu'", "auto, cpu, cuda"]),
    (["--weights", "random:0"], ["no units given"]),
])
def test_bad_arguments(cli, tmp_path, args, words):
    out = tmp_path / "out"
    assert_bad_input(cli(*RENDER, "-o", out, *args), out, *words)


def test_bad_recipe_files(cli, tmp_path):
    out = tmp_path / "out"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("render:\n  steps: [1\n")
    assert_bad_input(cli(*RENDER, "-o", out, "-r", bad_yaml, "mixed4a:1"), out, "malformed YAML", str(bad_yaml),
                     "line 3")
    typo = tmp_path / "typo.yaml"
    typo.write_text("param:\n  decorelate: true\n")
    assert_bad_input(cli(*RENDER, "-o", out, "-r", typo, "mixed4a:1"), out, "unknown recipe key param.decorelate",
                     "did you mean: decorrelate")
    steps = tmp_path / "steps.yaml"
    steps.write_text("transforms:\n  - jiter: 4\n")
    assert_bad_input(cli(*RENDER, "-o", out, "-r", steps, "mixed4a:1"), out, "transforms[0]", "'jiter'",
                     "did you mean: jitter")
    assert_bad_input(cli(*RENDER, "-o", out, "-r", tmp_path / "nope.yaml", "mixed4a:1"), out, "not found",
                     "default")  # lists the configs/ names


def test_unreadable_and_mismatched_weights(cli, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "missing.pth"
    assert_bad_input(cli(*RENDER, "-o", out, "--weights", missing, "mixed4a:1"), out, "weights file not found",
                     str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint\n")
    assert_bad_input(cli(*RENDER, "-o", out, "--weights", garbage, "mixed4a:1"), out, str(garbage), "refused")
    not_a_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), not_a_dict)
    assert_bad_input(cli(*RENDER, "-o", out, "--weights", not_a_dict, "mixed4a:1"), out, "does not hold a state_dict")
    sd = synthetic_state_dict()
    sd.pop("mixed5b_5x5_pre_relu_conv.weight")
    sd["conv2d1_pre_relu_conv.bias"] = torch.zeros(65)
    mismatched = tmp_path / "mismatched.pth"
    torch.save(sd, mismatched)
    assert_bad_input(cli(*RENDER, "-o", out, "--weights", mismatched, "mixed4a:1"), out, "do not match the model",
                     "missing keys: mixed5b_5x5_pre_relu_conv.weight", "conv2d1_pre_relu_conv.bias (65,)")


def test_malicious_weights_are_refused_by_the_cli(cli, tmp_path, torch_home):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    torch.save({"conv2d0_pre_relu_conv.weight": Evil()}, evil)
    out = tmp_path / "out"
    assert_bad_input(cli(*RENDER, "-o", out, "--weights", evil, "mixed4a:1"), out, "refused", "system")
    assert_bad_input(cli("weights", "add", "inceptionv1", evil), out, "refused")
    assert not marker.exists()
    assert not torch_home.exists() or not any(torch_home.iterdir())


def test_missing_default_weights_offline(cli, tmp_path, torch_home):
    out = tmp_path / "out"
    err = assert_bad_input(cli(*RENDER, "-o", out, "mixed4a:1"), out, str(torch_home / "inception5h.pth"),
                           "fv weights fetch inceptionv1", "fv weights add inceptionv1 FILE", "--weights PATH")
    assert "random:SEED" in err


# -- weights management ------------------------------------------------------------------------------------------


def test_weights_add_list_and_render_from_the_cache(cli, tmp_path, torch_home, synthetic_weights):
    r = cli("weights", "list")
    assert r.exit_code == 0 and re.search(r"inceptionv1\s+MISSING", r.stdout), r.output
    assert str(torch_home) in r.stdout

    r = cli("weights", "add", "inceptionv1", synthetic_weights)
    assert r.exit_code == 0, r.output
    cached = torch_home / "inception5h.pth"
    sha = file_sha256(synthetic_weights)
    assert cached.read_bytes() == synthetic_weights.read_bytes()
    assert r.stdout.split() == [str(cached), "sha256", sha]
    assert [p.name for p in torch_home.iterdir()] == ["inception5h.pth"]  # no temporary files left

    r = cli("weights", "list")
    assert r.exit_code == 0
    assert re.search(rf"inceptionv1\s+cached\s+{re.escape(str(cached))}\s+sha256 {sha}", r.stdout), r.stdout

    out = tmp_path / "out"
    r = cli(*RENDER, "-o", out, "mixed4a:1")  # no --weights: the cached default file
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "mixed4a-00001.json").read_text())
    assert rec["weights"] == str(cached) and rec["weights_sha256"] == sha


def test_render_with_weights_path(cli, tmp_path, synthetic_weights):
    out = tmp_path / "out"
    r = cli(*RENDER, "-o", out, "--weights", synthetic_weights, "mixed4a:1")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(out / "mixed4a-00001.png")]
    rec = json.loads((out / "mixed4a-00001.json").read_text())
    assert rec["weights"] == str(synthetic_weights) and rec["weights_sha256"] == file_sha256(synthetic_weights)


def test_weights_add_refuses_mismatched_files(cli, tmp_path, torch_home):
    sd = synthetic_state_dict()
    sd["extra.weight"] = torch.zeros(2)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    assert_bad_input(cli("weights", "add", "inceptionv1", bad), tmp_path / "out", "unexpected keys: extra.weight")
    assert_bad_input(cli("weights", "add", "inceptionv2", bad), tmp_path / "out", "did you mean: inceptionv1")
    assert not (torch_home / "inception5h.pth").exists()


def test_weights_fetch_without_network(cli, torch_home, monkeypatch):
    calls = []

    def no_network(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    r = cli("weights", "fetch", "inceptionv1")
    assert r.exit_code == 1, r.output
    err = r.stderr.strip()
    assert err.startswith("fv: error: cannot download https://") and "\n" not in err
    assert "name resolution" in err and "fv weights add" in err and "--weights PATH" in err
    assert calls and calls[0][0].endswith("inception5h.pth") and calls[0][1] <= 60  # never waits forever
    assert not any(torch_home.iterdir())  # no partial download

    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 0:
                raise TimeoutError("timed out")
            return super().read(4)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken(b"0123456789"))
    r = cli("weights", "fetch", "inceptionv1")
    assert r.exit_code == 1 and "timed out" in r.stderr
    assert not any(torch_home.iterdir())  # the half-written file was removed


# -- layers ------------------------------------------------------------------------------------------------------


def test_layers_lists_channels_and_sizes(cli):
    r = cli("layers", "inceptionv1")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("# inceptionv1: 150 layers at 224x224")
    assert re.search(r"^\* mixed4a\s+nchw\s+508\s+14x14$", r.stdout, re.M)
    assert re.search(r"^  mixed4a_3x3\s+nchw\s+204\s+14x14$", r.stdout, re.M)
    assert re.search(r"^  softmax2_pre_activation\s+vector\s+1008\s+-\s+\(softmax2_pre_activation_matmul\)$",
                     r.stdout, re.M)
    main = cli("layers", "inceptionv1", "--main")
    assert [ln.split()[1] for ln in main.stdout.splitlines()[1:]] == [
        "conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e",
        "mixed5a", "mixed5b"]
    bad = cli("layers", "inceptionv3")
    assert bad.exit_code == 2 and "did you mean: inceptionv1" in bad.stderr
