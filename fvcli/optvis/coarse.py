"""Coarse to fine: the first steps of a render at a lower resolution, then the picture handed on at full size.

A step costs about the square of the image side, and the first steps of a render only lay out the large shapes,
which a quarter of the pixels can carry. The first `render.coarse_steps` (by default, `auto`: 96 in renders of
224 px and more, where it was kept on held-out classes; Recipe.coarse_steps resolves it) or `render.coarse` of the
steps (a fraction) run at `render.coarse_scale` times the size
(the param, its transforms scaled to that size, the same objective: convolutional networks take any size; a
fixed-size one such as ViT gets the picture resized to its own size, so there it saves no time), then the
picture is handed on (`hand_on`): the coarse param's spatial signal (before the color matrix and the sigmoid) is
upsampled bilinearly and written into a full-size param of the same kind with `set_spatial`, an exact inverse, so
the full-size steps continue from the coarse picture with a fresh optimizer state. Snapshots keep the render's size
and range: one taken during the coarse phase is the coarse picture upsampled. loop.render_batch runs the phases.
Pixel and Fourier params only (MACO fixes a magnitude spectrum per size); `render.coarse_steps: 0` is the plain
render.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

COARSE_PARAMS = ("pixel", "fourier")
MIN_COARSE_SIDE = 16  # below this even the first layers of an ImageNet network see almost nothing


def coarse_size(size: int, scale: float) -> int:
    return min(size, max(MIN_COARSE_SIDE, int(round(size * scale))))


def upsample(t: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, size, size), bilinear (a snapshot image, or a param's spatial signal)."""
    if t.shape[-1] == size and t.shape[-2] == size:
        return t
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def hand_on(coarse: nn.Module, fine: nn.Module) -> None:
    """Continue `fine` (full size) from the picture of `coarse`: its spatial signal, upsampled."""
    fine.set_spatial(upsample(coarse.spatial(), fine.h))
