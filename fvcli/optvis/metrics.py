"""Image measures used by tests and benchmarks.

`high_frequency_energy`: the article's "enemy" in numbers -- the fraction of an image's spectral power (mean
removed, all three channels) at radial frequencies above `cutoff` cycles per pixel (0.5 is the Nyquist limit).
Noise-like, high-frequency images score near the area fraction of that band (~0.80 for cutoff 0.25 when the
spectrum is flat); smooth, natural-looking images score far lower.
"""
from __future__ import annotations

import torch

HF_CUTOFF = 0.25  # cycles per pixel: the upper half of the frequency range


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
