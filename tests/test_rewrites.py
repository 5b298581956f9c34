"""Load-time rewrites (fvcli/models/rewrites.py) keep every addressable activation and its input gradient.

Each model is loaded twice, with and without the rewrites (same weights), and the same layers are captured on the
same input: the folded BatchNorm's name, the convolution whose BatchNorm was folded (hooks see its raw output), a
deep block and the logits must agree to float rounding, and so must the gradient of a channel objective w.r.t. the
input image.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fvcli.models import Capture, ModelOptions, load_model, rewrites
from fvcli.models.rewrites import FoldedBatchNorm, apply_rewrites
from fvcli.recipe import load_recipe

from conftest import MOBILENET_DIR


def _unrewritten(monkeypatch, opts: ModelOptions):
    with monkeypatch.context() as m:
        m.setattr(rewrites, "apply_rewrites", lambda net: {})
        return load_model(opts, "cpu")


def _compare(plain, fast, layers: list[str], size: int, grad_layer: str) -> None:
    x = plain.preprocess.apply(torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)))
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), Capture(plain, layers) as a, Capture(fast, layers) as b:
        ra, rb = a(x), b(x)
    for name in layers:
        scale = ra[name].abs().max().item()
        torch.testing.assert_close(rb[name], ra[name], rtol=1e-3, atol=1e-4 * max(1.0, scale), msg=name)
    grads = []
    for model in (plain, fast):
        xi = x.clone().requires_grad_()
        with Capture(model, [grad_layer]) as cap:
            act = cap(xi)[grad_layer]
            act[:, 3].sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4 * grads[0].abs().max().item())


@pytest.mark.skipif(not MOBILENET_DIR.is_dir(), reason=f"real MobileNetV2 weights not found at {MOBILENET_DIR}")
def test_real_mobilenet_v2_folds_every_batchnorm_and_keeps_activations_and_gradients(monkeypatch, mobilenet):
    opts = load_recipe("mobilenet_v2").model_options()
    plain = _unrewritten(monkeypatch, opts)
    mods, orig = dict(mobilenet.net.named_modules()), dict(plain.net.named_modules())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in orig.values())
    assert n_bn == 52 and sum(isinstance(m, FoldedBatchNorm) for m in mods.values()) == 52
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in mods.values())
    assert mobilenet.weights_sha256 == plain.weights_sha256  # the checksum is of the file, not the rewritten net
    assert set(mobilenet.catalog) == set(plain.catalog)  # every name still addressable, same shapes
    assert all(mobilenet.catalog[k].channels == plain.catalog[k].channels for k in plain.catalog)
    layers = ["features.2.conv.0.1", "features.2.conv.0.0", "features.1.conv.1", "features.7", "features.14.conv.2",
              "classifier"]
    _compare(plain, mobilenet, layers, 64, "features.7")


@pytest.mark.parametrize("arch,layers,grad_layer", [
    ("resnet18", ["bn1", "conv1", "layer2.0.bn2", "layer2.0.conv2", "layer2.0.downsample.1", "layer3", "fc"], "layer3"),
    ("efficientnet_b0", ["features.2.0.block.0.1", "features.2.0.block.0.0", "features.4", "classifier"], "features.4"),
    ("convnext_tiny", ["features.1.0.block.2", "features.3", "classifier"], "features.3"),
])
def test_random_torchvision_models_keep_activations_and_gradients(monkeypatch, arch, layers, grad_layer):
    opts = ModelOptions(f"torchvision:{arch}", "random:0")
    plain, fast = _unrewritten(monkeypatch, opts), load_model(opts, "cpu")
    bns = [p for p, m in plain.net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    folded = [p for p, m in fast.net.named_modules() if isinstance(m, FoldedBatchNorm)]
    assert folded == bns  # resnet18's conv1/bn1 pairs are found on the fx trace, not in a Sequential
    assert not any(type(m).__name__ == "StochasticDepth" or isinstance(m, nn.Dropout) for m in fast.net.modules())
    _compare(plain, fast, layers, 64, grad_layer)


def test_a_conv_output_used_twice_is_not_folded():
    class TwoUses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    net = TwoUses().eval()
    net.bn.running_mean.fill_(0.3)
    x = torch.rand(1, 3, 8, 8)
    want = net(x)
    assert apply_rewrites(net)["batchnorm_folded"] == 0
    torch.testing.assert_close(net(x), want)
    assert isinstance(net.bn, nn.BatchNorm2d)


def test_a_near_zero_batchnorm_scale_is_kept_exact():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([1.0, 1e-9, 1.0, 1.0]))
    assert apply_rewrites(net)["batchnorm_folded"] == 0
    net2 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).eval()
    with torch.no_grad():
        net2[1].running_mean.uniform_(-1, 1)
        net2[1].running_var.uniform_(0.5, 2)
    x = torch.rand(2, 3, 9, 9)
    want = net2(x)
    assert apply_rewrites(net2) == {"batchnorm_folded": 1, "dropout_removed": 1, "self_attention": 0}
    torch.testing.assert_close(net2(x), want, rtol=1e-5, atol=1e-5)


def test_fast_self_attention_equals_multihead_attention_and_falls_back_for_other_calls():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(64, 4, batch_first=True).eval()
    fast = nn.MultiheadAttention(64, 4, batch_first=True).eval()
    fast.load_state_dict(ref.state_dict())
    assert rewrites.fast_self_attention(fast) == 1 and isinstance(fast, rewrites.FastSelfAttention)
    assert list(fast.state_dict()) == list(ref.state_dict())  # same parameters, same names
    x = torch.randn(3, 10, 64)
    outs, grads = [], []
    for m in (ref, fast):
        xi = x.clone().requires_grad_()
        y, w = m(xi, xi, xi, need_weights=False)
        assert w is None
        y[:, :, 5].sum().backward()
        outs.append(y.detach())
        grads.append(xi.grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
    # anything but plain self-attention is torch's own path, exactly
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[:, 7:] = True
    for kwargs in ({"need_weights": True}, {"need_weights": False, "attn_mask": mask}):
        a, b = ref(x, x, x, **kwargs), fast(x, x, x, **kwargs)
        assert torch.equal(a[0], b[0]) and (a[1] is None) == (b[1] is None)
    y = torch.randn(3, 6, 64)
    assert torch.equal(ref(x, y, y, need_weights=False)[0], fast(x, y, y, need_weights=False)[0])
    # sequence-first modules (batch_first=False) are left alone
    assert rewrites.fast_self_attention(nn.MultiheadAttention(64, 4)) == 0


def test_vit_self_attention_rewritten_keeps_activations_and_gradients(monkeypatch):
    opts = ModelOptions("torchvision:vit_b_16", "random:0")
    plain, fast = _unrewritten(monkeypatch, opts), load_model(opts, "cpu")
    assert sum(isinstance(m, rewrites.FastSelfAttention) for m in fast.net.modules()) == 12
    assert not any(isinstance(m, rewrites.FastSelfAttention) for m in plain.net.modules())
    layer = "encoder.layers.encoder_layer_2"
    _compare(plain, fast, ["encoder.layers.encoder_layer_0", layer], 224, layer)
