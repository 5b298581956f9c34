"""Gradient preconditioners: reshape the gradient before the optimizer step (the article's "Preconditioning").

The article notes that the direction of steepest descent depends on the metric: the raw pixel gradient is steepest
descent under L2, its sign under L-infinity, and a gradient step in the decorrelated Fourier space is steepest descent
under a metric that makes low frequencies cheap. The Fourier/decorrelation metric lives in the parameterization
(fvcli/optvis/param.py); the ones here act on the gradient itself, so they apply to any render (recipe key
`gradient.precondition`):

- `blur`: Gaussian blur of the gradient (sigma `gradient.sigma` px), the "gradient blurring" of earlier work
  (Oygard 2015), which keeps only the gradient's low frequencies.
- `laplacian`: Laplacian-pyramid gradient normalization (Mordvintsev's DeepDream notebook): split the gradient into
  `gradient.levels` band-pass levels, scale each to unit standard deviation, and sum, so every octave moves at the
  same rate instead of the high frequencies dominating.
- `sign`: L-infinity steepest descent, sign(g). Under Adam this is sign-SGD with momentum.

Each function maps a gradient `(B, C, H, W)` to one of the same shape, image by image (no batch coupling). Spatial
preconditioners (blur, laplacian) need image-shaped parameters (`param.kind: pixel`); `sign` works for any param.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("none", "blur", "laplacian", "sign")
SPATIAL = ("blur", "laplacian")  # need an image-shaped gradient (B, C, H, W)
PYRAMID_EPS = 1e-8  # keeps a level of an all-zero gradient at zero


@dataclass(frozen=True)
class GradientSpec:
    """Which preconditioner a render applies to its param's gradient (recipe section `gradient`)."""

    precondition: str = "none"  # one of KINDS
    sigma: float = 1.0  # blur: Gaussian sigma in pixels
    levels: int = 4  # laplacian: pyramid levels


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ceil(3 sigma)."""
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), reflect-padded (replicate when the image is smaller than the kernel)."""
    k = gaussian_kernel(sigma).to(x.device, x.dtype)
    r = k.numel() // 2
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def laplacian_normalize(g: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Split g (B, C, H, W) into a Laplacian pyramid (band-pass levels + a low-pass residual), scale every level of
    every image to unit standard deviation, and add them back up."""
    bands = []
    cur = g
    for _ in range(levels - 1):
        if min(cur.shape[-2:]) < 2:
            break
        low = F.avg_pool2d(cur, 2, ceil_mode=True)  # (B, C, ceil(H/2), ceil(W/2))
        up = F.interpolate(low, size=cur.shape[-2:], mode="bilinear", align_corners=False)
        bands.append(cur - up)
        cur = low
    bands.append(cur)
    out = torch.zeros_like(g)
    for band in bands:
        std = band.flatten(1).std(dim=1, unbiased=False).view(-1, 1, 1, 1)
        band = band / (std + PYRAMID_EPS)
        if band.shape[-2:] != g.shape[-2:]:
            band = F.interpolate(band, size=g.shape[-2:], mode="bilinear", align_corners=False)
        out = out + band
    return out


def make_preconditioner(spec: GradientSpec | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The gradient map for `spec`, or None for `none` (the optimizer sees the plain gradient)."""
    if spec is None or spec.precondition == "none":
        return None
    if spec.precondition == "sign":
        return torch.sign
    if spec.precondition == "blur":
        return lambda g: gaussian_blur(g, spec.sigma) if g.dim() == 4 else g
    if spec.precondition == "laplacian":
        return lambda g: laplacian_normalize(g, spec.levels) if g.dim() == 4 else g
    raise ValueError(f"unknown gradient preconditioner {spec.precondition!r}; valid: {', '.join(KINDS)}")


def apply_preconditioner(params, fn: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    """Replace each parameter's .grad by fn(.grad) in place (before the optimizer step)."""
    if fn is None:
        return
    for p in params:
        if p.grad is not None:
            p.grad = fn(p.grad)
