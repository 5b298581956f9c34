"""The performance paths compute what the plain ones compute: the space-to-depth stem convolution, the optional
torch.compile of the step, and the recipe switch for it. (Speed itself is measured by scripts/bench_render.py.)"""
from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fvcli.optvis import loop as loop_mod
from fvcli.models.layers import StemConv2d, install_stem_conv, space_to_depth_weight
from fvcli.optvis.objectives import Channel, PerImage
from fvcli.optvis.loop import LoopSettings, compile_step, render_batch
from fvcli.optvis.transforms import ARTICLE

from conftest import tiny_recipe


@pytest.mark.parametrize("cin,k,stride,pad,size", [
    (3, 7, 2, 0, 37),  # InceptionV1's conv2d0 (after its TF-SAME pad: 229 at 224 px; 37 at 32 px)
    (3, 7, 2, 3, 32),  # torchvision GoogLeNet / ResNet stems
    (3, 7, 2, 3, 33),  # odd size: the last row/column is read by no window
    (3, 3, 2, 1, 33),
    (1, 5, 3, 2, 31),   # kernel not a multiple of the stride
    (4, 4, 2, 1, 17),
])
def test_stem_conv_forward_and_input_gradient_equal_the_plain_convolution(cin, k, stride, pad, size):
    torch.manual_seed(0)
    plain = nn.Conv2d(cin, 16, k, stride, pad).double().requires_grad_(False)
    holder = nn.Sequential(nn.Conv2d(cin, 16, k, stride, pad))
    holder[0].load_state_dict(plain.state_dict())
    assert install_stem_conv(holder) == 1
    stem = holder[0].double().requires_grad_(False)
    assert isinstance(stem, StemConv2d)
    x = torch.randn(2, cin, size, size, dtype=torch.float64, requires_grad=True)
    y, y_ref = stem(x), plain(x)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    small = torch.randn(1, cin, k + 2, k + 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stem, (small,), fast_mode=True)


def test_stem_conv_keeps_channels_last_and_float32_values():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 64, 7, 2).requires_grad_(False)
    stem = StemConv2d(3, 64, 7, 2).requires_grad_(False)
    stem.load_state_dict(conv.state_dict())
    x = torch.randn(4, 3, 229, 229).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = stem(x)
    g = torch.randn_like(y).contiguous(memory_format=torch.channels_last)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(conv(x), x, g)
    assert gx.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)


def test_stem_conv_is_a_plain_conv_when_weights_train():
    """Weight gradients are not computed by the fast path, so it must step aside when they are wanted."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 7, 2, 3)
    stem = StemConv2d(3, 8, 7, 2, 3)
    stem.load_state_dict(conv.state_dict())
    x = torch.randn(1, 3, 32, 32)
    stem(x).square().sum().backward()
    conv(x).square().sum().backward()
    torch.testing.assert_close(stem.weight.grad, conv.weight.grad)
    torch.testing.assert_close(stem.bias.grad, conv.bias.grad)


def test_space_to_depth_weight_is_the_same_convolution():
    torch.manual_seed(0)
    w = torch.randn(5, 3, 7, 7, dtype=torch.float64)
    x = torch.randn(1, 3, 230, 230, dtype=torch.float64)
    ref = F.conv2d(x, w, stride=2)  # (1, 5, 112, 112)
    s2d = F.conv2d(F.pixel_unshuffle(x, 2), space_to_depth_weight(w, 2))  # (1, 5, 112, 112)
    torch.testing.assert_close(s2d, ref)


def test_models_get_the_stem_conv_with_unchanged_state_dict_keys(iv1):
    assert isinstance(iv1.net.conv2d0_pre_relu_conv, StemConv2d)
    assert sum(isinstance(m, StemConv2d) for m in iv1.net.modules()) == 1  # only the image-facing conv
    assert "conv2d0_pre_relu_conv.weight" in iv1.net.state_dict()
    assert not StemConv2d.eligible(nn.Conv2d(64, 64, 3, 2))  # deeper strided convs keep oneDNN's path
    assert not StemConv2d.eligible(nn.Conv2d(3, 64, 3, 1))


def _render(model, steps=3, **kw):
    obj = PerImage((Channel("mixed3a", 0), Channel("mixed3a", 5)))
    s = LoopSettings(steps=steps, size=48, transforms=ARTICLE, **kw)
    return list(render_batch(model, obj, [1, 2], s))[-1]


def test_compile_is_off_by_default_and_the_identity_then():
    fn = lambda x: x  # noqa: E731
    assert compile_step(fn, torch.device("cuda"), False) is fn
    assert LoopSettings().compile is False
    assert tiny_recipe().render.compile is False


def test_compile_wraps_the_step_and_warns_on_cpu(monkeypatch, caplog, iv1):
    calls = []

    def fake_compile(fn, **kw):
        calls.append(kw)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    with caplog.at_level(logging.WARNING, logger="fvcli.optvis.loop"):
        snap = _render(iv1, compile=True)
    assert calls == [{"backend": "inductor", "dynamic": False}]
    assert "slower than eager on the CPU" in caplog.text
    torch.testing.assert_close(snap.images, _render(iv1).images)


def test_compiled_step_traces_the_whole_loop_and_gives_the_same_images(monkeypatch, iv1):
    """A real dynamo trace (the 'eager' backend: no code generation, so it is fast on the CPU) through hooks,
    truncation, the redirected-ReLU switch (steps 1-16 vs 17+) and per-image objectives."""
    torch._dynamo.reset()
    real = compile_step
    monkeypatch.setattr(loop_mod, "compile_step", lambda fn, dev, on, backend="inductor": real(fn, dev, on, "eager"))
    eager = _render(iv1, steps=18)
    compiled = _render(iv1, steps=18, compile=True)
    torch.testing.assert_close(compiled.images, eager.images, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled.scores, eager.scores, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


def test_compile_recipe_key_parses_and_does_not_change_the_hash():
    on = tiny_recipe("render.compile=true")
    off = tiny_recipe()
    assert on.render.compile is True and on.loop_settings().compile is True
    assert on.hash() == off.hash()
    assert replace(off.render, compile=True) == on.render


def test_per_image_channels_gather_equals_one_objective_per_image():
    torch.manual_seed(0)
    a = torch.randn(5, 40, 7, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    chans = [3, 3, 39, 0, 17]
    image = torch.zeros(5, 3, 8, 8)
    x = a.clone().requires_grad_()
    fast = PerImage(tuple(Channel("l", c) for c in chans))({"l": x}, image)
    (g_fast,) = torch.autograd.grad(fast.sum(), x)
    x = a.clone().requires_grad_()
    slow = torch.cat([Channel("l", c)({"l": x[b : b + 1]}, image[b : b + 1]) for b, c in enumerate(chans)])
    (g_slow,) = torch.autograd.grad(slow.sum(), x)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(g_fast, g_slow)
    assert fast.shape == (5,)
    logits = torch.randn(3, 10, dtype=torch.float64)
    torch.testing.assert_close(PerImage(tuple(Channel("z", c) for c in (1, 2, 9)))({"z": logits}, image[:3]),
                               logits[[0, 1, 2], [1, 2, 9]])


def test_stem_pool_before_relu_gives_the_same_values_and_gradients(iv1):
    """InceptionV1 pools conv2d0 before its ReLU unless conv2d0 or maxpool0 is hooked: same activations, same
    image gradient (redirect off) as the hooked, literal order."""
    from fvcli.models import Capture

    torch.manual_seed(0)
    x0 = (torch.rand(2, 3, 64, 64) * 255 - 117).contiguous(memory_format=torch.channels_last)
    outs = []
    for layers in (["mixed3a"], ["mixed3a", "conv2d0"]):  # hooking conv2d0 forces the literal order
        x = x0.clone().requires_grad_()
        with Capture(iv1, layers) as cap:
            act = cap(x)["mixed3a"]
        (g,) = torch.autograd.grad(act[:, :5].sum(), x)
        outs.append((act.detach(), g))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-6)


def test_cpu_bf16_autocast_keeps_lrn_and_the_image_conv_in_fp32_and_renders(iv1):
    from fvcli.models.layers import LocalResponseNorm

    lrn = LocalResponseNorm(9, 9.99999974738e-05, 0.5, 1.0)
    x = (torch.rand(1, 16, 8, 8) * 50).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lrn(x)
        stem = iv1.net.conv2d0_pre_relu_conv(torch.rand(1, 3, 37, 37, requires_grad=True))
    assert y.dtype == torch.float32 and stem.dtype == torch.float32
    torch.testing.assert_close(y, F.local_response_norm(x.float(), 9, 9.99999974738e-05, 0.5, 1.0))
    fp32, bf16 = _render(iv1, steps=4), _render(iv1, steps=4, precision="bf16")
    assert torch.isfinite(bf16.images).all() and bf16.scores.dtype == torch.float32
    assert (bf16.images - fp32.images).abs().mean() < 0.05  # same start, a few Adam steps: close, not equal


def test_cpu_bf16_warns_once_where_the_cpu_has_no_bf16_instructions(monkeypatch, caplog):
    from fvcli.optvis import loop

    cpu = torch.device("cpu")
    loop._warn_once.cache_clear()
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="fvcli.optvis.loop"):
        for _ in range(3):
            with loop.autocast(cpu, "bf16"):
                assert torch.is_autocast_enabled("cpu")
    warned = [r.getMessage() for r in caplog.records if "without bf16 instructions" in r.getMessage()]
    assert len(warned) == 1 and "use fp32" in warned[0]
    caplog.clear()
    loop._warn_once.cache_clear()
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="fvcli.optvis.loop"), loop.autocast(cpu, "bf16"), loop.autocast(cpu, "fp32"):
        pass
    assert not caplog.records


def test_fv_adam_is_bitwise_torch_adam_and_does_not_import_dynamo():
    import subprocess
    import sys

    from fvcli.optvis.optim import Adam

    g = torch.Generator().manual_seed(0)
    ours = [torch.randn(2, 3, 5, 4, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_(),
            torch.randn(7, generator=g).requires_grad_()]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    a, b = Adam(ours, lr=0.05), torch.optim.Adam(theirs, lr=0.05)
    for step in range(30):
        for ps, opt in ((ours, a), (theirs, b)):
            opt.zero_grad(set_to_none=True)
            loss = sum(((p - step * 0.1) ** 3).sin().sum() for p in ps)
            loss.backward()
            opt.step()
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q)
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    code = ("import sys, torch; from fvcli.optvis.optim import Adam; p = torch.zeros(3, requires_grad=True); o = Adam([p], 0.1);"
            " p.sum().backward(); o.step(); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
