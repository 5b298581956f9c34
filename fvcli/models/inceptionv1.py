"""InceptionV1 ("inception5h"), the network of the Feature Visualization article, as lucid names it.

The parameter names and shapes are exactly those of the widely used converted file `inception5h.pth` (116 keys:
`<tf_layer>_pre_relu_conv.{weight,bias}` and `softmax2_pre_activation_matmul`), so that file loads strictly.
Module names follow lucid: hooking `conv2d0` gives the post-ReLU activation, `conv2d0_pre_relu_conv` the pre-ReLU one,
`mixed4a` the block's concatenation and `mixed4a_pre_relu` lucid's concatenation of the branches' pre-ReLU tensors
(computed only when something hooks it).

Forward (facts in ../shared/facts/inceptionv1.md): input RGB in [-117, 138]; TF-'SAME' padding emulated with fixed
pads (exact for even sizes, e.g. 224); max-pools 3x3/2 with -inf right/bottom padding, which `ceil_mode=True` gives
without a copy; LRN size 9, alpha 9.99999974738e-05, beta 0.5, k 1. The head averages the final map globally, which
equals the original 7x7 average pool at 224 px and stays meaningful at other sizes (the original silently mixed
positions into the batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LocalResponseNorm, RedirectedReLU

# (name, 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce) -- lucid's channel table.
MIXED_BLOCKS: tuple[tuple[str, int, int, int, int, int, int], ...] = (
    ("mixed3a", 64, 96, 128, 16, 32, 32),
    ("mixed3b", 128, 128, 192, 32, 96, 64),
    ("mixed4a", 192, 96, 204, 16, 48, 64),
    ("mixed4b", 160, 112, 224, 24, 64, 64),
    ("mixed4c", 128, 128, 256, 24, 64, 64),
    ("mixed4d", 112, 144, 288, 32, 64, 64),
    ("mixed4e", 256, 160, 320, 32, 128, 128),
    ("mixed5a", 256, 160, 320, 48, 128, 128),
    ("mixed5b", 384, 192, 384, 48, 128, 128),
)
BRANCHES = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")
NUM_CLASSES = 1008  # index 0 is a dummy class; 1001..1007 are padding (lucid's softmax2 width)
MAIN_LAYERS = ("conv2d0", "conv2d1", "conv2d2") + tuple(b[0] for b in MIXED_BLOCKS)
LRN_ARGS = dict(size=9, alpha=9.99999974738e-05, beta=0.5, k=1.0)
VALUE_RANGE = (-117.0, 255.0 - 117.0)


class Concat(nn.Module):
    """Channel concatenation, a module so that it can be hooked by name."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class _MaxPool(nn.Module):
    """3x3 max-pool; stride 2 with TF-SAME (-inf right/bottom) padding, or stride 1 'same' for the pool branch."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return F.max_pool2d(x, 3, 1, padding=1)
        return F.max_pool2d(x, 3, 2, ceil_mode=True)


class InceptionV1(nn.Module):
    """lucid's InceptionV1 with the exact parameter layout of `inception5h.pth`. Input: (B, 3, H, W) in [-117, 138]."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self._conv("conv2d0", 3, 64, 7, stride=2)
        self.maxpool0 = _MaxPool(2)
        self.localresponsenorm0 = LocalResponseNorm(**LRN_ARGS)
        self._conv("conv2d1", 64, 64, 1)
        self._conv("conv2d2", 64, 192, 3, padding=1)
        self.localresponsenorm1 = LocalResponseNorm(**LRN_ARGS)
        self.maxpool1 = _MaxPool(2)
        c_in = 192
        for name, c1, c3b, c3, c5b, c5, cp in MIXED_BLOCKS:
            self._conv(f"{name}_1x1", c_in, c1, 1)
            self._conv(f"{name}_3x3_bottleneck", c_in, c3b, 1)
            self._conv(f"{name}_5x5_bottleneck", c_in, c5b, 1)
            self._conv(f"{name}_pool_reduce", c_in, cp, 1)
            self._conv(f"{name}_3x3", c3b, c3, 3, padding=1)
            self._conv(f"{name}_5x5", c5b, c5, 5, padding=2)
            setattr(self, f"{name}_pool", _MaxPool(1))
            setattr(self, name, Concat())
            setattr(self, f"{name}_pre_relu", Concat())
            c_in = c1 + c3 + c5 + cp
            if name == "mixed3b":
                self.maxpool4 = _MaxPool(2)
            if name == "mixed4e":
                self.maxpool10 = _MaxPool(2)
        self.avgpool0 = nn.AdaptiveAvgPool2d(1)
        self.softmax2_pre_activation_matmul = nn.Linear(1024, num_classes)
        self.softmax2 = nn.Softmax(dim=1)

    def _conv(self, name: str, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0) -> None:
        # Symmetric zero padding inside the conv (no extra copy); parameters are unaffected.
        setattr(self, f"{name}_pre_relu_conv", nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding))
        setattr(self, name, RedirectedReLU())

    def _conv_relu(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = getattr(self, f"{name}_pre_relu_conv")(x)
        return pre, getattr(self, name)(pre)

    def _mixed(self, name: str, x: torch.Tensor) -> torch.Tensor:
        p1, b1 = self._conv_relu(f"{name}_1x1", x)
        _, b3 = self._conv_relu(f"{name}_3x3_bottleneck", x)
        _, b5 = self._conv_relu(f"{name}_5x5_bottleneck", x)
        pooled = getattr(self, f"{name}_pool")(x)
        pp, bp = self._conv_relu(f"{name}_pool_reduce", pooled)
        p3, b3 = self._conv_relu(f"{name}_3x3", b3)
        p5, b5 = self._conv_relu(f"{name}_5x5", b5)
        pre_cat = getattr(self, f"{name}_pre_relu")
        if pre_cat._forward_hooks:  # lucid's synthetic concat: only computed when someone looks at it
            pre_cat(p1, p3, p5, pp)
        return getattr(self, name)(b1, b3, b5, bp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [-117, 138]
        x = self.conv2d0_pre_relu_conv(F.pad(x, (2, 3, 2, 3)))  # (B, 64, 112, 112) pre-ReLU
        if self.conv2d0._forward_hooks or self.maxpool0._forward_hooks:
            x = self.maxpool0(self.conv2d0(x))
        else:
            # max-pool commutes with ReLU (both monotone): pool first, then the ReLU (and its backward) runs on a
            # map 4x smaller. Same values; only taken when nobody looks at the full post-ReLU map.
            x = self.conv2d0(self.maxpool0(x))
        x = self.localresponsenorm0(x)
        _, x = self._conv_relu("conv2d1", x)
        _, x = self._conv_relu("conv2d2", x)
        x = self.maxpool1(self.localresponsenorm1(x))
        for name, *_ in MIXED_BLOCKS:
            x = self._mixed(name, x)
            if name == "mixed3b":
                x = self.maxpool4(x)
            if name == "mixed4e":
                x = self.maxpool10(x)
        x = self.avgpool0(x).flatten(1)  # (B, 1024)
        logits = self.softmax2_pre_activation_matmul(x)  # (B, 1008)
        return self.softmax2(logits)


def layer_paths() -> list[tuple[str, str]]:
    """(lucid layer name, module path) for every addressable layer, in forward order."""
    out: list[tuple[str, str]] = []

    def conv(name: str) -> None:
        out.append((f"{name}_pre_relu", f"{name}_pre_relu_conv"))
        out.append((name, name))

    conv("conv2d0")
    out += [("maxpool0", "maxpool0"), ("localresponsenorm0", "localresponsenorm0")]
    conv("conv2d1")
    conv("conv2d2")
    out += [("localresponsenorm1", "localresponsenorm1"), ("maxpool1", "maxpool1")]
    for name, *_ in MIXED_BLOCKS:
        for br in ("1x1", "3x3_bottleneck", "5x5_bottleneck"):
            conv(f"{name}_{br}")
        out.append((f"{name}_pool", f"{name}_pool"))
        conv(f"{name}_pool_reduce")
        conv(f"{name}_3x3")
        conv(f"{name}_5x5")
        out += [(f"{name}_pre_relu", f"{name}_pre_relu"), (name, name)]
        if name == "mixed3b":
            out.append(("maxpool4", "maxpool4"))
        if name == "mixed4e":
            out.append(("maxpool10", "maxpool10"))
    out += [
        ("avgpool0", "avgpool0"),
        ("softmax2_pre_activation", "softmax2_pre_activation_matmul"),
        ("softmax2", "softmax2"),
    ]
    return out
