"""Image measures used by tests and benchmarks.

`high_frequency_energy`: the article's "enemy" in numbers -- the fraction of an image's spectral power (mean
removed, all three channels) at radial frequencies above `cutoff` cycles per pixel (0.5 is the Nyquist limit).
Noise-like, high-frequency images score near the area fraction of that band (~0.80 for cutoff 0.25 when the
spectrum is flat); smooth, natural-looking images score far lower.

`clipped_fraction`: the share of an image's 8-bit values at 0 or 255 -- where the parameterization's sigmoid has
saturated and passes almost no gradient. Issue #29 measured it as the cause of a late cost: fv's steep start left 28 %
of a random ResNet-50 `layer3` channel's values at 0 or 255 after 512 steps (the article's 1/f start: 5 %) and that
render finished 8 % lower (docs/reports/time-to-quality.md, rounds 9-10). Each render record carries it.
"""
from __future__ import annotations

import torch

HF_CUTOFF = 0.25  # cycles per pixel: the upper half of the frequency range
SATURATED = 0.25  # `fv render` warns of a picture with more than this share of its values clipped


def high_frequency_energy(images: torch.Tensor, cutoff: float = HF_CUTOFF) -> torch.Tensor:
    """(B, 3, H, W) -> (B,) fraction of power at |f| > cutoff."""
    x = images.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(x).abs().pow(2).sum(dim=1)  # (B, H, W//2+1)
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    high = (fx * fx + fy * fy).sqrt() > cutoff  # (H, W//2+1)
    total = power.flatten(1).sum(1).clamp_min(1e-12)
    return (power * high).flatten(1).sum(1) / total


def clipped_fraction(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B,) fraction of the values that an 8-bit PNG stores as 0 or 255."""
    q = images.float().clamp(0, 1).mul(255).add(0.5).floor()  # outputs.to_uint8's quantization (the PNG's bytes)
    return ((q <= 0) | (q >= 255)).flatten(1).double().mean(1)
