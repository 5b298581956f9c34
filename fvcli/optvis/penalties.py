"""Penalty terms on the image: the article's "enemy" cures that act on pixels, not on activations.

L1 (distance from grey), total variation (neighbour differences) and lucid's blur-each-step, plus the bilateral
variant (fvcli/optvis/bilateral.py), are objectives like any other: they score every image of the batch ([B]) and compose
with `+` / `*`. `regularizers()` turns a recipe's `regularizers` section into the one term to add to a unit's
objective. Weights are penalties: L1 and TV are subtracted, the blur terms already score the distance as negative.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .bilateral import BilateralEachStep
from .objectives import Acts, Objective, Sum


@dataclass(frozen=True)
class L1(Objective):
    """Penalty term: L1 distance of the image from `constant` (use with a negative weight)."""

    constant: float = 0.5

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        return (image - self.constant).abs().flatten(1).sum(1)


@dataclass(frozen=True)
class TotalVariation(Objective):
    """Penalty term: total variation (sum of absolute neighbour differences) of the image."""

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().flatten(1).sum(1)
        dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().flatten(1).sum(1)
        return dx + dy


@dataclass(frozen=True)
class BlurEachStep(Objective):
    """lucid's blur_input_each_step: -0.5 * ||x - stopgrad(blur3x3(x))||^2. Its gradient moves the image towards
    its own blur at every step (weight 1 is one full blur step per step)."""

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        k = torch.ones(3, 1, 3, 3, dtype=image.dtype, device=image.device) / 9.0
        with torch.no_grad():
            blurred = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), k, groups=3)
        return -0.5 * (image - blurred).pow(2).flatten(1).sum(1)


def regularizers(l1: float = 0.0, l1_constant: float = 0.5, tv: float = 0.0, blur: float = 0.0,
                 bilateral: float = 0.0) -> Objective | None:
    """The recipe's penalty terms as one objective to add (weights are penalties: they are subtracted)."""
    terms: list[tuple[float, Objective]] = []
    if l1:
        terms.append((-l1, L1(l1_constant)))
    if tv:
        terms.append((-tv, TotalVariation()))
    if blur:
        terms.append((blur, BlurEachStep()))
    if bilateral:
        terms.append((bilateral, BilateralEachStep()))
    return Sum(tuple(terms)) if terms else None
