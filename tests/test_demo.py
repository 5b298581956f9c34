"""The demo data generator and the shipped demo weights: determinism, value ranges, accuracy, independence."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fvcli.demo_data import DEMO_CLASSES, generate, make_batch
from fvcli.models.demo import JUDGE_WEIGHTS, MODEL_WEIGHTS, PREPROCESS
from fvcli.models.demo_net import build_demo_net, preprocess

HELD_OUT_SEED = 31_337  # training uses seeds >= 10,000,000 and EVAL_SEED 7,654,321 (scripts/train_demo_model.py)
MIN_ACCURACY = 0.95


def test_generate_is_deterministic_per_seed():
    for c in range(len(DEMO_CLASSES)):
        a = generate(c, 40, np.random.default_rng(5))
        b = generate(c, 40, np.random.default_rng(5))
        d = generate(c, 40, np.random.default_rng(6))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, d)


def test_make_batch_is_deterministic_and_balanced():
    x1, y1 = make_batch(36, 32, seed=3)
    x2, y2 = make_batch(36, 32, seed=3)
    x3, y3 = make_batch(36, 32, seed=4)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert x1.shape == (36, 3, 32, 32) and x1.dtype == torch.float32
    assert y1.dtype == torch.int64
    assert np.bincount(y1.numpy(), minlength=len(DEMO_CLASSES)).tolist() == [3] * len(DEMO_CLASSES)
    _, y = make_batch(13, 8, seed=0)  # a remainder: every class once, one class twice
    assert sorted(np.bincount(y.numpy(), minlength=len(DEMO_CLASSES)).tolist()) == [1] * 11 + [2]


@pytest.mark.parametrize("size", [1, 17, 32, 63, 64, 101])
def test_every_class_in_range_at_any_size(size):
    rng = np.random.default_rng(size)
    for c in range(len(DEMO_CLASSES)):
        img = generate(c, size, rng)
        assert img.shape == (size, size, 3) and img.dtype == np.float32
        assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


def test_same_draw_at_two_sizes_looks_the_same():
    """Geometry is in normalized coordinates: one seed at 64 px and at 128 px differs only by sampling and noise."""
    for c in range(len(DEMO_CLASSES)):
        small = generate(c, 64, np.random.default_rng(11))
        big = generate(c, 128, np.random.default_rng(11))
        down = big.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
        assert np.abs(down - small).mean() < 0.12, DEMO_CLASSES[c]


def test_bad_class_index_names_the_range():
    with pytest.raises(ValueError, match="valid 0-11"):
        generate(len(DEMO_CLASSES), 8, np.random.default_rng(0))


def test_net_any_size_and_addressable_blocks():
    net = build_demo_net().eval()
    names = dict(net.named_modules())
    assert {"block1", "block2", "block3", "block4", "fc"} <= set(names)
    assert 2e5 < sum(p.numel() for p in net.parameters()) < 5e5
    with torch.no_grad():
        for size in (32, 45, 64, 96):
            assert net(torch.zeros(2, 3, size, size)).shape == (2, len(DEMO_CLASSES))
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(preprocess(x), PREPROCESS.apply(x))


def _load(path) -> torch.nn.Module:
    net = build_demo_net()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in sd.values())
    net.load_state_dict(sd, strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(600, 64, seed=HELD_OUT_SEED)


@pytest.mark.parametrize("path", [MODEL_WEIGHTS, JUDGE_WEIGHTS], ids=["model", "judge"])
def test_shipped_weights_accuracy(path, held_out):
    assert path.stat().st_size < 2_000_000
    x, y = held_out
    with torch.no_grad():
        pred = _load(path)(preprocess(x)).argmax(1)
    acc = (pred == y).float().mean().item()
    assert acc >= MIN_ACCURACY, f"{path.name}: accuracy {acc:.3f} on held-out seed {HELD_OUT_SEED}"


def test_judge_is_independent_of_model():
    a = torch.load(MODEL_WEIGHTS, weights_only=True)
    b = torch.load(JUDGE_WEIGHTS, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert not torch.equal(a[k], b[k]), k
    # Independent runs, not a copy with noise: first-layer filters are far apart.
    w0, w1 = a["block1.conv.weight"].flatten(), b["block1.conv.weight"].flatten()
    assert torch.nn.functional.cosine_similarity(w0, w1, dim=0).abs() < 0.5


def test_meta_matches_files():
    from fvcli.weights import file_sha256

    meta = json.loads((MODEL_WEIGHTS.parent / "demo_meta.json").read_text())
    assert meta["classes"] == list(DEMO_CLASSES)
    for role, path in (("model", MODEL_WEIGHTS), ("judge", JUDGE_WEIGHTS)):
        rec = meta["models"][role]
        assert rec["file"] == path.name
        assert rec["sha256"] == file_sha256(path)
        assert rec["accuracy"] >= MIN_ACCURACY
    assert meta["models"]["model"]["seed"] != meta["models"]["judge"]["seed"]


def test_registry_loads_demo_with_its_layers():
    from fvcli.models import ModelOptions, load_model

    model = load_model(ModelOptions("demo"), "cpu")
    assert model.num_classes == len(DEMO_CLASSES)
    assert model.labels == DEMO_CLASSES
    for name in ("block1", "block2", "block3", "block4"):
        assert name in model.catalog
    assert model.catalog["block4"].spatial == (8, 8)
    judge = load_model(ModelOptions("demo", str(JUDGE_WEIGHTS)), "cpu")
    assert judge.weights_sha256 != model.weights_sha256
