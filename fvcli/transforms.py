"""Transformation robustness: stochastic pad / jitter / scale / rotate / crop, fused into one affine warp per step.

A transform chain is a tuple of steps (e.g. the article's: pad 16, jitter 16, scale, rotate, jitter 8, crop).
`Schedule.draw()` draws every random parameter of every step for one image up front from that image's own
generator, so a unit sees the same transforms whether it is rendered alone or in any batch. The chain is then
composed into one 2x3 affine matrix per image and step, and applied to the whole batch with a single
`affine_grid` + `grid_sample` (bilinear). Pixels from outside the image take the pad value (lucid pads with 0.5).

Coordinates are pixels relative to the image center. Each step maps a point of its output to a point of its input:
jitter by d: p -> p + d (d = offset - n/2, offset an integer in [0, n], lucid's random crop); scale by s: p -> p / s;
rotate by a: p -> R(-a) p. The output has the param's size (the final crop removes the padding).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Pad:
    pixels: int
    value: float = 0.5


@dataclass(frozen=True)
class Jitter:
    pixels: int


@dataclass(frozen=True)
class Scale:
    factors: tuple[float, ...]


@dataclass(frozen=True)
class Rotate:
    degrees: tuple[float, ...]


@dataclass(frozen=True)
class Crop:
    """Crop back to the param's size, removing the padding (always the last step)."""


Step = Pad | Jitter | Scale | Rotate | Crop

# The article's footnote (Distill 2017): pad 16, jitter 16, scale, rotate -5..5 degrees, jitter 8, crop the padding.
ARTICLE = (Pad(16), Jitter(16), Scale((1.0, 0.975, 1.025, 0.95, 1.05)), Rotate(tuple(float(a) for a in range(-5, 6))),
           Jitter(8), Crop())
# lucid optvis/transform.py standard_transforms (the angle 0 appears 6 times out of 26, as lucid's list has it).
LUCID = (Pad(12), Jitter(8), Scale(tuple(1 + (i - 5) / 50 for i in range(11))),
         Rotate(tuple(float(a) for a in list(range(-10, 11)) + 5 * [0])), Jitter(4), Crop())
PRESETS: dict[str, tuple[Step, ...]] = {"article": ARTICLE, "lucid": LUCID, "none": ()}


def pad_value(chain: Sequence[Step]) -> float:
    for s in chain:
        if isinstance(s, Pad):
            return s.value
    return 0.5


def _pick(values: Sequence[float], n: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(len(values), (n,), generator=gen)
    return torch.tensor(values, dtype=torch.float64)[idx]


def draw(chain: Sequence[Step], steps: int, gen: torch.Generator) -> torch.Tensor:
    """All affine matrices for one image: (steps, 2, 3) float64, in centered pixel coordinates."""
    a = torch.eye(3, dtype=torch.float64).expand(steps, 3, 3).clone()  # output -> input, composed left to right
    for step in chain:
        m = torch.eye(3, dtype=torch.float64).expand(steps, 3, 3).clone()
        if isinstance(step, Jitter):
            off = torch.randint(step.pixels + 1, (steps, 2), generator=gen).double() - step.pixels / 2
            m[:, 0, 2], m[:, 1, 2] = off[:, 0], off[:, 1]
        elif isinstance(step, Scale):
            s = _pick(step.factors, steps, gen)
            m[:, 0, 0], m[:, 1, 1] = 1 / s, 1 / s
        elif isinstance(step, Rotate):
            ang = _pick(step.degrees, steps, gen) * (math.pi / 180)
            c, s = torch.cos(ang), torch.sin(ang)
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, s, -s, c  # R(-a)
        else:
            continue  # Pad and Crop move no coordinates
        a = a @ m
    return a[:, :2, :]


@dataclass
class Schedule:
    """Per-image affine matrices for a whole render, normalised for `affine_grid`: (steps, B, 2, 3)."""

    thetas: torch.Tensor
    fill: float

    @staticmethod
    def build(chain: Sequence[Step], steps: int, gens: Sequence[torch.Generator], h: int, w: int,
              device: torch.device) -> Schedule | None:
        if not any(isinstance(s, (Jitter, Scale, Rotate)) for s in chain):
            return None
        mats = torch.stack([draw(chain, steps, g) for g in gens], dim=1)  # (steps, B, 2, 3) pixels
        d = torch.tensor([w / 2, h / 2], dtype=torch.float64)
        theta = mats.clone()
        theta[..., :2] = mats[..., :2] * d[None, :] / d[:, None]  # D^-1 M D
        theta[..., 2] = mats[..., 2] / d
        return Schedule(theta.float().to(device), pad_value(chain))

    def apply(self, image: torch.Tensor, step: int) -> torch.Tensor:  # (B, 3, H, W) -> same
        return self.warp(image, self.thetas[step])

    def warp(self, image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W), (B, 2, 3) -> image
        theta = theta.to(image.dtype)
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        return F.grid_sample(image - self.fill, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False) + self.fill
