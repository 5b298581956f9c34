"""InceptionV1 as lucid has it: parameter layout, channel table, LRN, -inf max-pools, redirected ReLU, safe weights."""
from __future__ import annotations

import dataclasses
import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from conftest import IV1_STATE_DICT_JSON, iv1_shapes, synthetic_state_dict
from fvcli.errors import FvError
from fvcli.models import Capture, ModelOptions, load_model
from fvcli.models.inceptionv1 import InceptionV1
from fvcli.models.layers import LocalResponseNorm, RedirectedReLU
from fvcli.optvis.objectives import Objective
from fvcli.optvis.loop import REDIRECT_STEPS, LoopSettings, render_batch
from fvcli.models.weights import file_sha256

# ../shared/facts/inceptionv1.md, "Channel counts" (shapes at a 224x224 input).
SINGLE_LAYERS = {
    "conv2d0": (64, (112, 112)),
    "maxpool0": (64, (56, 56)),
    "conv2d1": (64, (56, 56)),
    "conv2d2": (192, (56, 56)),
    "maxpool1": (192, (28, 28)),
    "maxpool4": (480, (14, 14)),
    "maxpool10": (832, (7, 7)),
    "softmax2": (1008, None),
}
# block: (1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce, total, spatial)
BLOCKS = {
    "mixed3a": (64, 96, 128, 16, 32, 32, 256, 28),
    "mixed3b": (128, 128, 192, 32, 96, 64, 480, 28),
    "mixed4a": (192, 96, 204, 16, 48, 64, 508, 14),
    "mixed4b": (160, 112, 224, 24, 64, 64, 512, 14),
    "mixed4c": (128, 128, 256, 24, 64, 64, 512, 14),
    "mixed4d": (112, 144, 288, 32, 64, 64, 528, 14),
    "mixed4e": (256, 160, 320, 32, 128, 128, 832, 14),
    "mixed5a": (256, 160, 320, 48, 128, 128, 832, 7),
    "mixed5b": (384, 192, 384, 48, 128, 128, 1024, 7),
}
BRANCHES = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
LRN_DOC = dict(size=9, alpha=9.99999974738e-05, beta=0.5, k=1.0)


# -- parameter layout and weights --------------------------------------------------------------------------------


def test_state_dict_matches_the_published_layout_key_for_key():
    if not IV1_STATE_DICT_JSON.is_file():
        pytest.skip(f"{IV1_STATE_DICT_JSON} not found")
    expected = iv1_shapes()
    got = {k: tuple(v.shape) for k, v in InceptionV1().state_dict().items()}
    assert list(got) == list(expected)  # same keys in the same order
    assert got == expected
    assert len(got) == 116 and sum(torch.Size(s).numel() for s in got.values()) == 7_066_380


def test_synthetic_weights_load_strictly_from_a_path(synthetic_weights):
    m = load_model(ModelOptions(weights=str(synthetic_weights)), "cpu")
    sd = synthetic_state_dict()
    loaded = m.net.state_dict()
    assert set(loaded) == set(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert m.weights_source == str(synthetic_weights)
    assert m.weights_sha256 == file_sha256(synthetic_weights)
    assert not any(p.requires_grad for p in m.net.parameters())


@pytest.mark.parametrize("edit, words", [
    (lambda sd: sd.pop("mixed4a_3x3_pre_relu_conv.bias"), ["missing keys", "mixed4a_3x3_pre_relu_conv.bias"]),
    (lambda sd: sd.update({"head0_bottleneck_pre_relu_conv.weight": torch.zeros(1)}),
     ["unexpected keys", "head0_bottleneck_pre_relu_conv.weight"]),
    (lambda sd: sd.update({"conv2d0_pre_relu_conv.weight": torch.zeros(64, 3, 5, 5)}),
     ["wrong shapes", "conv2d0_pre_relu_conv.weight", "(64, 3, 5, 5)", "(64, 3, 7, 7)"]),
])
def test_mismatched_weights_name_the_offending_keys(tmp_path, edit, words):
    sd = synthetic_state_dict()
    edit(sd)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(FvError) as err:
        load_model(ModelOptions(weights=str(path)), "cpu")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg, msg


class _Evil:
    """Unpickling this runs `touch MARKER` (the classic malicious checkpoint)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    payload = {**synthetic_state_dict(), "conv2d0_pre_relu_conv.bias": _Evil(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(FvError) as err:
        load_model(ModelOptions(weights=str(path)), "cpu")
    assert "refused" in str(err.value) and str(path) in str(err.value)
    if writer == "torch.save":
        assert "system" in str(err.value)  # names the blocked callable
    assert "weights_only" not in str(err.value)  # no advice to switch the protection off
    assert not marker.exists()


# -- architecture ------------------------------------------------------------------------------------------------


def test_documented_channel_counts_and_spatial_sizes_at_224(iv1):
    cat = iv1.catalog
    for name, (channels, spatial) in SINGLE_LAYERS.items():
        assert (cat[name].channels, cat[name].spatial) == (channels, spatial), name
    for block, (*branch_channels, total, side) in BLOCKS.items():
        assert (cat[block].channels, cat[block].spatial) == (total, (side, side)), block
        assert (cat[f"{block}_pre_relu"].channels, cat[f"{block}_pre_relu"].spatial) == (total, (side, side))
        for br, c in zip(BRANCHES, branch_channels):
            assert cat[f"{block}_{br}"].channels == c, f"{block}_{br}"
            assert cat[f"{block}_{br}_pre_relu"].channels == c, f"{block}_{br}_pre_relu"
            assert cat[f"{block}_{br}"].spatial == (side, side)
    assert iv1.main_layers == ("conv2d0", "conv2d1", "conv2d2", *BLOCKS)
    assert cat[iv1.logits_layer].channels == 1008 and iv1.native_size == 224


def test_mixed_concat_layout_and_pre_relu(iv1):
    """mixed4a = cat(1x1, 3x3, 5x5, pool_reduce) after ReLU; mixed4a_pre_relu is the same concat before it."""
    x = iv1.preprocess.apply(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
    names = ["mixed4a", "mixed4a_pre_relu"] + [f"mixed4a_{b}" for b in ("1x1", "3x3", "5x5", "pool_reduce")]
    with torch.no_grad(), Capture(iv1, names) as cap:
        acts = cap(x)
    assert torch.equal(acts["mixed4a"], torch.cat([acts[n] for n in names[2:]], dim=1))
    # channels 192-395 are the 3x3 branch (facts: 0-191 1x1, 192-395 3x3, 396-443 5x5, 444-507 pool_reduce)
    assert torch.equal(acts["mixed4a"][:, 192:396], acts["mixed4a_3x3"])
    assert torch.equal(F.relu(acts["mixed4a_pre_relu"]), acts["mixed4a"])
    assert (acts["mixed4a_pre_relu"] < 0).any()


@pytest.mark.parametrize("channels_last", [False, True])
def test_lrn_equals_torch_local_response_norm_forward_and_backward(iv1, channels_last):
    for name in ("localresponsenorm0", "localresponsenorm1"):
        lrn = getattr(iv1.net, name)
        assert isinstance(lrn, LocalResponseNorm)
        assert dict(size=lrn.size, alpha=lrn.alpha, beta=lrn.beta, k=lrn.k) == LRN_DOC
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 64, 9, 11, generator=g) * 40).relu_()  # activation-like scale: LRN matters
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    up = torch.randn(2, 64, 9, 11, generator=g)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = iv1.net.localresponsenorm0(a)
    ref = F.local_response_norm(b, **LRN_DOC)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert (ref - x).abs().max() > 1.0  # the normalization is not a no-op at this scale
    (ours * up).sum().backward()
    (ref * up).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", [112, 14, 7, 9])
def test_maxpools_equal_the_minus_inf_padded_version(iv1, side):
    """Stride 2: TF 'SAME' = pad right/bottom with -inf; the pool branch: pad 1 all round with -inf.
    All-negative inputs, where zero padding would differ."""
    x = -torch.rand(2, 5, side, side, generator=torch.Generator().manual_seed(side)) - 0.1
    ref2 = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=-float("inf")), 3, 2)
    for name in ("maxpool0", "maxpool1", "maxpool4", "maxpool10"):
        assert torch.equal(getattr(iv1.net, name)(x), ref2), name
    ref1 = F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=-float("inf")), 3, 1)
    assert torch.equal(iv1.net.mixed4a_pool(x), ref1)
    assert (ref1 < 0).all() and (ref2 < 0).all()


# -- redirected ReLU ---------------------------------------------------------------------------------------------


def _grad(relu: RedirectedReLU, x: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    y = relu(x)
    y.backward(upstream)
    return y.detach(), x.grad


def _batch():
    """Image 0 has live units (its ReLU gradient is non-zero); image 1 is all negative (ReLU gradient all zero)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 5, generator=g)
    x[1] = -x[1].abs() - 0.01
    up = torch.randn(2, 4, 5, 5, generator=g)  # dL/dy, mixed signs (the loss is minimized)
    return x, up


def test_redirected_relu_forward_is_relu():
    x, _ = _batch()
    for redirect in (False, True):
        r = RedirectedReLU()
        r.redirect = redirect
        assert torch.equal(r(x), F.relu(x))
        assert torch.equal(r(x.clone().requires_grad_()).detach(), F.relu(x))
    six = RedirectedReLU(6.0)
    six.redirect = True
    assert torch.equal(six((x * 10).requires_grad_()).detach(), F.relu6(x * 10))


def test_redirected_relu_backward_per_image():
    x, up = _batch()
    relu_grad = torch.where(x > 0, up, torch.zeros(()))
    assert relu_grad[0].ne(0).any() and relu_grad[1].eq(0).all()
    r = RedirectedReLU()
    r.redirect = True
    _, g = _grad(r, x, up)
    # image 0: some true gradient passes, so it gets exactly the ReLU gradient
    assert torch.equal(g[0], relu_grad[0])
    # image 1: the true gradient is all zero, so the redirected one: pass the gradient except where descending
    # it would push an already-negative input further down (dL/dy > 0 at x < 0)
    expected = torch.where((x[1] < 0) & (up[1] > 0), torch.zeros(()), up[1])
    assert torch.equal(g[1], expected)
    assert g[1].ne(0).any() and (g[1] <= 0).all()  # only gradients that would raise the inputs survive


def test_redirected_relu_is_plain_relu_when_not_redirecting():
    x, up = _batch()
    r = RedirectedReLU()
    assert r.redirect is False
    _, g = _grad(r, x, up)
    assert torch.equal(g, torch.where(x > 0, up, torch.zeros(())))
    # an all-live batch: redirect on or off gives the same gradient
    r.redirect = True
    _, g2 = _grad(r, x[:1], up[:1])
    assert torch.equal(g2, g[:1])


def test_redirected_relu6_equals_relu6_values_and_gradients_on_and_off():
    """ReLU6 (MobileNet) through its fused hardtanh kernels: the values and gradients of nn.ReLU6, bitwise, at the
    boundaries 0 and 6 too; with the redirect on, an image whose true gradient is all zero gets the redirected one."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 6, 6, generator=g) * 5
    x[0, 0, 0, :3] = torch.tensor([0.0, 6.0, -0.0])
    x[2] = x[2].abs() + 6.5  # image 2: every unit saturated above 6, so no true gradient reaches it
    up = torch.randn(3, 4, 6, 6, generator=g)
    ref = x.clone().requires_grad_()
    torch.nn.ReLU6()(ref).backward(up)
    six = RedirectedReLU(6.0)
    y, grad = _grad(six, x, up)
    assert torch.equal(y, F.relu6(x)) and torch.equal(grad, ref.grad)
    six.redirect = True
    y, grad = _grad(six, x, up)
    assert torch.equal(y, F.relu6(x)) and torch.equal(grad[:2], ref.grad[:2])
    # image 2 (all above 6): pass the gradient except where descending it pushes x further up (dL/dy < 0 at x > 6)
    assert torch.equal(grad[2], torch.where(up[2] < 0, torch.zeros(()), up[2])) and grad[2].ne(0).any()


class _RecordRedirect(Objective):
    """Scores channel 0 of conv2d0 and records whether the redirected gradient is on at each call."""

    def __init__(self, net, log):
        self.net, self.log = net, log

    @property
    def layers(self):
        return frozenset(["conv2d0"])

    def score(self, acts, image):
        self.log.append(self.net.conv2d0.redirect)
        return acts["conv2d0"][:, 0].flatten(1).mean(1)


def test_render_loop_redirects_for_the_first_steps_only(iv1):
    log: list[bool] = []
    steps = REDIRECT_STEPS + 4
    list(render_batch(iv1, _RecordRedirect(iv1.net, log), [0], LoopSettings(steps=steps, size=32)))
    # the loop's scoring calls, then the final snapshot (always without redirection)
    assert log == [True] * REDIRECT_STEPS + [False] * 4 + [False]
    assert iv1.net.conv2d0.redirect is False  # switched off afterwards

    plain = dataclasses.replace(iv1, redirect_relu=False)  # as loaded with ModelOptions(redirect_relu=False)
    log.clear()
    list(render_batch(plain, _RecordRedirect(plain.net, log), [0], LoopSettings(steps=3, size=32)))
    assert log == [False] * 4
