"""The bilateral filter as a frequency-penalizing regularizer (the article's "Frequency Penalization" section).

Blurring the image at every step (lucid's blur_input_each_step) removes high frequencies, but it also removes edges:
the article points out that penalizing frequencies indiscriminately costs legitimate high-frequency features, and
that a bilateral filter, which only averages neighbours of similar color, smooths noise while keeping edges
(Tyka 2016 used it for the same reason). `BilateralEachStep` is the blur term with the bilateral filter in place of
the 3x3 box: its gradient moves every image towards its own edge-preserving smoothing, weight 1 being one full step
per step (recipe key `regularizers.bilateral`).

`bilateral_filter` works on any (B, C, H, W) batch, image by image: each output pixel is the average of its
(2r+1)^2 neighbours weighted by exp(-d^2 / 2 sigma_space^2) * exp(-|x_n - x_c|^2 / 2 sigma_range^2), with d the
spatial distance and |x_n - x_c| the color distance (over channels) to the centre pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .objectives import Acts, Objective

RADIUS = 2  # a 5x5 window
SIGMA_SPACE = 1.5  # pixels
SIGMA_RANGE = 0.1  # color distance in [0, 1] units: an edge of 0.3 weighs exp(-4.5) ~ 1 %


def bilateral_filter(x: torch.Tensor, radius: int = RADIUS, sigma_space: float = SIGMA_SPACE,
                     sigma_range: float = SIGMA_RANGE) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): the edge-preserving average described in the module docstring."""
    b, c, h, w = x.shape
    k = 2 * radius + 1
    patches = F.unfold(F.pad(x, (radius,) * 4, mode="replicate"), k).view(b, c, k * k, h, w)  # neighbours
    yy, xx = torch.meshgrid(torch.arange(k, dtype=x.dtype, device=x.device) - radius,
                            torch.arange(k, dtype=x.dtype, device=x.device) - radius, indexing="ij")
    spatial = torch.exp(-(yy * yy + xx * xx) / (2 * sigma_space**2)).flatten().view(1, k * k, 1, 1)
    diff = (patches - x[:, :, None]).pow(2).sum(1)  # (B, k*k, H, W) squared color distance to the centre
    weights = spatial * torch.exp(-diff / (2 * sigma_range**2))
    weights = weights / weights.sum(1, keepdim=True)
    return (patches * weights[:, None]).sum(2)


@dataclass(frozen=True)
class BilateralEachStep(Objective):
    """-0.5 * ||x - stopgrad(bilateral(x))||^2 per image: pulls the image towards its bilateral filtering."""

    radius: int = RADIUS
    sigma_space: float = SIGMA_SPACE
    sigma_range: float = SIGMA_RANGE

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            smooth = bilateral_filter(image, self.radius, self.sigma_space, self.sigma_range)
        return -0.5 * (image - smooth).pow(2).flatten(1).sum(1)

    def describe(self) -> str:
        return "bilateral"
