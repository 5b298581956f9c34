"""The `demo` network: a compact CNN (~0.3 M parameters) that fv trains itself on `fvcli.models.demo_data` images.

Layout (module paths are the names to address layers by; shapes at the native 64x64 input):

    block1  conv 5x5 / 2, 3 -> 32, ReLU      (B, 32, 32, 32)
    pool1   max-pool 2x2 / 2                 (B, 32, 16, 16)
    block2  conv 3x3, 32 -> 64, ReLU         (B, 64, 16, 16)
    block3  conv 3x3 / 2, 64 -> 128, ReLU    (B, 128, 8, 8)
    block4  conv 3x3, 128 -> 192, ReLU       (B, 192, 8, 8)
    gap     global average pool              (B, 192, 1, 1)
    fc      linear 192 -> classes            (B, classes): the logits

Each `blockN` is a `ConvReLU` whose output is the activation after the ReLU (`blockN.conv` is the
pre-activation). No batch norm, so a unit's value does not depend on the rest of the batch. Fully convolutional up
to the global pool: any input size >= 32 works (the native size is 64).

Preprocessing is *external*, as for every model in the zoo: the network expects `(x - 0.5) / 0.25` for an RGB image
`x` in [0, 1] (`fvcli.models.demo.PREPROCESS`).
"""
from __future__ import annotations

import torch
from torch import nn

from .demo_data import DEMO_CLASSES

INPUT_MEAN = 0.5
INPUT_STD = 0.25
WIDTHS = (32, 64, 128, 192)


class ConvReLU(nn.Module):
    """A convolution followed by a (not in-place) ReLU; the module's output is the post-ReLU activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class DemoNet(nn.Module):
    """See the module docstring. Input (B, 3, H, W) preprocessed as `(x - 0.5) / 0.25`; output logits (B, classes)."""

    def __init__(self, num_classes: int, widths: tuple[int, int, int, int] = WIDTHS) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.block1 = ConvReLU(3, w1, 5, stride=2)
        self.pool1 = nn.MaxPool2d(2)
        self.block2 = ConvReLU(w1, w2, 3)
        self.block3 = ConvReLU(w2, w3, 3, stride=2)
        self.block4 = ConvReLU(w3, w4, 3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)  # (B, 32, H/2, W/2)
        x = self.pool1(x)  # (B, 32, H/4, W/4)
        x = self.block2(x)  # (B, 64, H/4, W/4)
        x = self.block3(x)  # (B, 128, H/8, W/8)
        x = self.block4(x)  # (B, 192, H/8, W/8)
        x = self.gap(x).flatten(1)  # (B, 192)
        return self.fc(x)  # (B, classes)


def build_demo_net(num_classes: int = len(DEMO_CLASSES)) -> DemoNet:
    """A freshly initialized DemoNet (torch's default init; seed torch first for reproducible weights)."""
    return DemoNet(num_classes)


def preprocess(x01: torch.Tensor) -> torch.Tensor:
    """The input the network expects, from images in [0, 1]: `(x - 0.5) / 0.25` (same as demo.PREPROCESS)."""
    return (x01 - INPUT_MEAN) / INPUT_STD
