"""Any PyTorch model: the user's own code (file.py:CALLABLE, package.module:CALLABLE, a module in memory), training
checkpoints, timm models, and the Python API that `fv render` is built on (same PNG bytes).

Everything runs on a tiny CNN written by the test (or timm's resnet18 with random weights) at 32-64 px.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fvcli
from fvcli.errors import FvError
from fvcli.models.layers import RedirectedReLU
from fvcli.outputs import read_png
from fvcli.models.weights import state_dict_sha256

NET_PY = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, width=8, classes=5):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
            self.act1 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
            self.act2 = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2 * width, classes)

        def forward(self, x):
            x = self.act2(self.conv2(self.act1(self.conv1(x))))
            return self.fc(self.pool(x).flatten(1))


    def build(width=8, classes=5, seed=0):
        torch.manual_seed(seed)
        return Net(width, classes)


    def not_a_module():
        return {"conv": 3}
''')
FAST = ["--steps", 8, "--size", 32, "--device", "cpu", "-q", "--set", "model.native_size=64"]


@pytest.fixture
def net_py(tmp_path) -> Path:
    p = tmp_path / "code" / "net.py"
    p.parent.mkdir()
    p.write_text(NET_PY)
    return p


def _build(**kw) -> nn.Module:
    """The same network as NET_PY's build(), built in this process (a notebook would do this)."""
    ns: dict = {}
    exec(compile(NET_PY, "<net>", "exec"), ns)  # noqa: S102 - the test's own source
    return ns["build"](**kw)


def assert_bad_input(result, *words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("fv: error: ") and "\n" not in err and "Traceback" not in result.output, err
    for w in words:
        assert w in err, err
    return err


# -- file.py:CALLABLE and package.module:CALLABLE ---------------------------------------------------------------


def test_file_model_lists_its_layers_and_renders(cli, net_py, tmp_path):
    ref = f"{net_py}:build"
    r = cli("layers", ref, "--set", "model.native_size=64")
    assert r.exit_code == 0, r.output
    rows = {line.lstrip("* ").split()[0]: line.lstrip("* ").split()[1:] for line in r.stdout.splitlines()[1:]}
    assert rows["conv1"] == ["nchw", "8", "32x32"] and rows["conv2"] == ["nchw", "16", "16x16"]
    assert rows["fc"] == ["vector", "5", "-"]

    out = tmp_path / "out"
    r = cli("render", "conv2:3", "logit:2", "--model", ref, "--out", out, "--set", "render.thresholds=[0]", *FAST)
    assert r.exit_code == 0, r.output
    for key in ("conv2-00003", "logit-00002"):
        rec = json.loads((out / f"{key}.json").read_text())
        assert rec["model"] == ref and (out / f"{key}.png").is_file()
        assert rec["weights"] == f"{ref} (the weights it was built with)"
        assert rec["weights_sha256"] == state_dict_sha256(_build().state_dict())  # its own weights, untouched
        assert rec["final_score"] > rec["scores"]["0"] + 1e-3, rec["scores"]  # the render raised the objective


def test_package_module_reference_with_kwargs_from_the_recipe(cli, tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NET_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name: mypkg.nets:build\n  native_size: 48\n  kwargs: {width: 3, classes: 7}\n")
    r = cli("layers", "mypkg.nets:build", "--recipe", recipe)
    assert r.exit_code == 0, r.output
    rows = {line.lstrip("* ").split()[0]: line.lstrip("* ").split()[1:] for line in r.stdout.splitlines()[1:]}
    assert rows["conv1"] == ["nchw", "3", "24x24"] and rows["fc"] == ["vector", "7", "-"]
    m = fvcli.load_model(recipe=recipe, device="cpu")  # the recipe's model
    assert m.name == "mypkg.nets:build" and m.num_classes == 7 and m.native_size == 48
    m = fvcli.load_model("mypkg.nets:build", recipe={"model": {"kwargs": {"width": 5}}}, device="cpu")
    assert m.catalog["conv1"].channels == 5


def test_a_recipe_names_a_model_file_relative_to_itself(net_py):
    from fvcli.recipe import load_recipe

    recipe = net_py.parent.parent / "r.yaml"
    recipe.write_text("model:\n  name: code/net.py:build\n")
    assert load_recipe(str(recipe)).model.name == f"{net_py}:build"


def test_user_code_errors_name_the_bad_value(cli, net_py, tmp_path):
    d = net_py.parent
    assert_bad_input(cli("layers", f"{d}/nope.py:build"), "nope.py", "does not exist")
    assert_bad_input(cli("layers", f"{net_py}:buidl"), "no callable 'buidl'", "did you mean: build", "Net, build",
                     "not_a_module")
    assert_bad_input(cli("layers", f"{net_py}:not_a_module"), "not_a_module returned a builtins.dict",
                     "not a torch.nn.Module")
    assert_bad_input(cli("layers", f"{net_py}:build", "--set", "model.kwargs={depth: 3}"), "model.kwargs",
                     "'depth'")
    (d / "broken.py").write_text("import not_a_real_module_xyz\n")
    assert_bad_input(cli("layers", f"{d}/broken.py:build"), "broken.py", "not_a_real_module_xyz")
    assert_bad_input(cli("layers", "no_such_pkg_xyz.nets:build"), "no_such_pkg_xyz")


# -- weights: state_dicts, training checkpoints, DataParallel prefixes ------------------------------------------


def test_training_checkpoint_with_module_prefixes_loads(cli, net_py, tmp_path):
    trained = _build(seed=1)  # other weights than build()'s own
    sd = {f"module.{k}": v for k, v in trained.state_dict().items()}  # saved from DataParallel / DDP
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"epoch": 7, "state_dict": sd, "optimizer": {"lr": 0.1, "state": {}}, "best_acc": 0.5}, ckpt)
    m = fvcli.load_model(f"{net_py}:build", weights=str(ckpt), device="cpu")
    assert m.weights_source == f"{ckpt}[state_dict]"
    for k, v in trained.state_dict().items():
        assert torch.equal(m.net.state_dict()[k], v), k
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(m.net(x), trained(x), atol=1e-5)  # the same function as the trained network

    # Two state_dicts: found by fit, or named by model.weights_key.
    ema = _build(seed=2)
    both = tmp_path / "both.pth"
    torch.save({"model": trained.state_dict(), "model_ema": ema.state_dict(), "step": 3}, both)
    m = fvcli.load_model(f"{net_py}:build", weights=str(both), device="cpu")
    assert torch.equal(m.net.state_dict()["fc.weight"], trained.state_dict()["fc.weight"])
    m = fvcli.load_model(f"{net_py}:build", weights=str(both), recipe={"model": {"weights_key": "model_ema"}},
                         device="cpu")
    assert torch.equal(m.net.state_dict()["fc.weight"], ema.state_dict()["fc.weight"])


def test_safetensors_weights_load(net_py, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    trained = _build(seed=3)
    path = tmp_path / "w.safetensors"
    st.save_file(trained.state_dict(), str(path))
    m = fvcli.load_model(f"{net_py}:build", weights=str(path), device="cpu")
    assert torch.equal(m.net.state_dict()["conv2.weight"], trained.state_dict()["conv2.weight"])


def test_weights_errors_name_the_keys(cli, net_py, tmp_path):
    ref = f"{net_py}:build"
    r = cli("render", "conv2:1", "--model", ref, "--weights", tmp_path / "missing.pth", "--out", tmp_path / "o", *FAST)
    assert_bad_input(r, "missing.pth", "not found")
    wide = tmp_path / "wide.pth"
    sd = _build(width=4).state_dict()
    sd["extra.bias"] = torch.zeros(2)
    del sd["fc.bias"]
    torch.save({"state_dict": sd}, wide)
    r = cli("render", "conv2:1", "--model", ref, "--weights", wide, "--out", tmp_path / "o", *FAST)
    assert_bad_input(r, "do not match", "missing keys: fc.bias", "unexpected keys: extra.bias",
                     "conv1.weight (4, 3, 3, 3) (expected (8, 3, 3, 3))")
    assert not (tmp_path / "o").exists()
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model": _build().state_dict(), "epoch": 1}, ckpt)
    r = cli("render", "conv2:1", "--model", ref, "--weights", ckpt, "--set", "model.weights_key=ema", *FAST)
    assert_bad_input(r, "model.weights_key 'ema' not found", "model, epoch")
    r = cli("render", "conv2:1", "--model", ref, "--weights", "timm", "--out", tmp_path / "o", *FAST)
    assert_bad_input(r, "--weights timm loads the published weights of timm:NAME models", "PATH, random:SEED")
    nothing = tmp_path / "nothing.pth"
    torch.save({"epoch": 1, "note": "no weights"}, nothing)
    r = cli("render", "conv2:1", "--model", ref, "--weights", nothing, "--out", tmp_path / "o", *FAST)
    assert_bad_input(r, "holds no state_dict", "epoch, note")


# -- the Python API ---------------------------------------------------------------------------------------------


def test_api_renders_a_module_built_in_memory(tmp_path):
    net = _build()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = fvcli.render(net, "conv2:3", steps=16, size=32, device="cpu", sets=["render.thresholds=[0]"])
    assert res.images.shape == (1, 3, 32, 32) and 0 <= float(res.images.min()) and float(res.images.max()) <= 1
    rec = res.records[0]
    assert rec["final_score"] > rec["scores"]["0"] + 1e-3, rec["scores"]  # the objective went up from step 0
    assert rec["model"] == f"{type(net).__module__}:Net" and res.pngs == [] and res.grid is None
    assert res.pil()[0].size == (32, 32) and res["conv2:3"].key == "conv2-00003"
    assert not list(tmp_path.iterdir())  # no files without `out`
    # The caller's module is left as it was: training mode, its ReLUs, trainable, same weights.
    assert net.training and isinstance(net.act1, nn.ReLU) and not isinstance(net.act1, RedirectedReLU)
    assert all(p.requires_grad for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    m = fvcli.load_model(net, device="cpu")
    assert m.catalog["conv2"].channels == 16 and m.logits_layer == "fc" and m.num_classes == 5


def test_api_writes_the_same_png_bytes_as_fv_render(cli, net_py, tmp_path):
    ref = f"{net_py}:build"
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    r = cli("render", "conv2:3", "conv1:0", "--model", ref, "--out", cli_out, "--seed", 5, *FAST)
    assert r.exit_code == 0, r.output
    res = fvcli.render(ref, ["conv2:3", "conv1:0"], steps=8, size=32, seed=5, device="cpu", out=api_out,
                       sets=["model.native_size=64"])
    assert sorted(p.name for p in res.pngs) == ["conv1-00000.png", "conv2-00003.png"]
    for name in ("conv2-00003.png", "conv1-00000.png", "grid.png"):
        assert (api_out / name).read_bytes() == (cli_out / name).read_bytes(), name
    for key in ("conv2-00003", "conv1-00000"):
        a, c = (json.loads((d / f"{key}.json").read_text()) for d in (api_out, cli_out))
        for field in ("recipe_hash", "seed", "scores", "model", "weights_sha256", "objective"):
            assert a[field] == c[field], field
        assert res[key].record == a | {"seconds": res[key].record["seconds"]}
    # The same network built in memory and named like the file gives the same pixels (no files written).
    mem = fvcli.render(_build(), ["conv2:3"], name=ref, steps=8, size=32, seed=5, device="cpu",
                       sets=["model.native_size=64"])
    assert np.array_equal(read_png(cli_out / "conv2-00003.png"), np.asarray(mem.pil()[0]))


def test_api_errors_are_fv_errors(net_py):
    with pytest.raises(FvError, match="expected an nn.Module or a model name"):
        fvcli.load_model(42)  # type: ignore[arg-type]
    with pytest.raises(FvError, match="no units given"):
        fvcli.render(_build(), [], device="cpu")
    with pytest.raises(FvError, match="unknown layer 'conv9'"):
        fvcli.render(f"{net_py}:build", "conv9:0", device="cpu", steps=1, size=16)


# -- timm ---------------------------------------------------------------------------------------------------------


def test_timm_model_loads_with_its_preprocessing_and_renders(tmp_path):
    pytest.importorskip("timm")
    from fvcli.models import get_spec

    vit = get_spec("timm:vit_tiny_patch16_224")  # preprocessing from the pretrained config, without building
    assert vit.preprocess.mean == (0.5, 0.5, 0.5) and vit.native_size == 224 and vit.interpolation == "bicubic"
    m = fvcli.load_model("timm:resnet18", weights="random:0", device="cpu", sets=["model.native_size=64"])
    assert m.preprocess.mean == (0.485, 0.456, 0.406) and m.logits_layer == "fc" and m.num_classes == 1000
    assert m.catalog["layer4"].channels == 512 and m.catalog["layer4"].spatial == (2, 2)
    res = fvcli.render(m, "layer3:5", steps=6, size=48, sets=["render.thresholds=[0]"], out=tmp_path)
    rec = res.records[0]
    assert rec["final_score"] > rec["scores"]["0"], rec["scores"]
    assert rec["weights"] == "random:0" and (tmp_path / "layer3-00005.png").is_file()


def test_timm_errors(cli, monkeypatch):
    pytest.importorskip("timm")
    assert_bad_input(cli("layers", "timm:resnet1x"), "unknown timm model 'resnet1x'", "did you mean: resnet18")
    assert_bad_input(cli("render", "layer3:1", "--model", "timm:resnet18"), "no default weights",
                     "--weights timm (published), PATH or random:SEED")


def test_timm_without_timm_names_the_extra(cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    assert_bad_input(cli("layers", "timm:resnet18"), "pip install 'fvcli[timm]'")


def test_timm_published_weights_offline_give_a_clear_error(cli, tmp_path, monkeypatch):
    pytest.importorskip("timm")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # nothing may download
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    r = cli("render", "layer3:1", "--model", "timm:resnet18", "--weights", "timm", "--out", tmp_path / "o",
            "--steps", 1, "--size", 32)
    assert_bad_input(r, "timm weights for timm:resnet18", "fv weights fetch timm:resnet18", "--weights PATH",
                     "https://huggingface.co/timm/resnet18", "random:SEED")


def test_timm_published_weights_load_from_the_hugging_face_cache(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    st = pytest.importorskip("safetensors.torch")
    from huggingface_hub import constants

    from fvcli.models.timm_models import _pretrained_cfg

    published = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        published.fc.weight.add_(1.0)  # differs from any random init
    repo = _pretrained_cfg(timm, "resnet18")["hf_hub_id"]  # e.g. timm/resnet18.a1_in1k
    cache = tmp_path / "hf"
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    st.save_file({k: v.contiguous() for k, v in published.state_dict().items()},
                 str(folder / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    m = fvcli.load_model("timm:resnet18", weights="timm", device="cpu")
    assert m.weights_source == f"timm:{repo}"
    assert torch.equal(m.net.state_dict()["fc.weight"], published.state_dict()["fc.weight"])
