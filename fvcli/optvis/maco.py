"""MACO: magnitude-constrained optimization (Fel et al., "Unlocking Feature Visualization for Deeper Networks with
MAgnitude Constrained Optimization", NeurIPS 2023).

The Fourier param (fvcli/optvis/param.py) optimizes the whole spectrum and only *preconditions* it with 1/f; nothing stops
the magnitudes from growing where the network likes high frequencies. MACO keeps the magnitude fixed to a natural
image's (fvcli/optvis/spectrum.py) and optimizes only the phase, which is where most of an image's structure lives: every
render then has a natural distribution of energy over frequencies by construction.

`MacoImage`: the parameter is a phase (B, 3, h, w//2+1) per image, initialised uniformly in [-pi, pi) from the unit's
own generator. forward: spectrum = magnitude * exp(i * phase) (the phase made Hermitian-consistent on the columns
that `irfft2` treats as real-signal constraints, so the magnitude is exactly what the inverse FFT sees) ->
`irfft2` (ortho) -> standardised per image (the DC is 0, so only a global gain changes: the magnitude's shape is
kept) times MACO_STD -> `to_rgb` (color decorrelation, sigmoid).

Transparency (the paper's attribution map): with `track_alpha`, the absolute gradient of the objective with respect
to the image (after `to_rgb`, before the transforms) is accumulated over the steps, summed over the channels; the
renderer writes it as KEY.alpha.png (`param.maco_alpha: true`): bright where the objective looked.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .color import to_rgb
from .spectrum import load_spectrum, power_law_spectrum, resize_spectrum

MACO_STD = 1.0  # std of the image before the color matrix and the sigmoid (sigmoid'(0) = 1/4: ~0.25 in [0, 1])


def _real_columns(h: int, w: int) -> torch.Tensor:
    """(w//2+1,) bool: the rfft2 columns whose values must be Hermitian along y (kx = 0 and, for even w, w/2)."""
    cols = torch.zeros(w // 2 + 1, dtype=torch.bool)
    cols[0] = True
    if w % 2 == 0:
        cols[-1] = True
    return cols


class MacoImage(nn.Module):
    def __init__(self, gens: Sequence[torch.Generator], h: int, w: int, magnitude: torch.Tensor | None = None,
                 decorrelate: bool = True, sigmoid: bool = True, track_alpha: bool = False) -> None:
        super().__init__()
        self.h, self.w = h, w
        wf = w // 2 + 1
        mag = power_law_spectrum(h, w) if magnitude is None else resize_spectrum(magnitude.float(), h, w)
        flip = (-torch.arange(h)) % h  # row of -ky
        cols = _real_columns(h, w)
        mag = torch.where(cols, (mag + mag[:, flip]) / 2, mag)  # |F(-f)| = |F(f)| on the real columns
        mag[:, 0, 0] = 0.0
        self.register_buffer("magnitude", mag)  # (3, h, wf)
        self.register_buffer("flip", flip)
        self.register_buffer("cols", cols)
        self.phase = nn.Parameter(torch.stack([
            (torch.rand((3, h, wf), generator=g) * 2 - 1) * math.pi for g in gens]))  # (B, 3, h, wf)
        self.decorrelate, self.sigmoid = decorrelate, sigmoid
        self.track_alpha = track_alpha
        self.alpha: torch.Tensor | None = None  # (B, h, w) accumulated |d objective / d image|

    def hermitian_phase(self) -> torch.Tensor:
        p = self.phase
        return torch.where(self.cols, (p - p[:, :, self.flip]) / 2, p)  # phase(-ky) = -phase(ky) on real columns

    def spatial(self) -> torch.Tensor:
        spec = torch.polar(self.magnitude.expand_as(self.phase), self.hermitian_phase())  # (B, 3, h, wf)
        x = torch.fft.irfft2(spec, s=(self.h, self.w), norm="ortho")  # (B, 3, h, w), zero mean per channel
        return x / (x.flatten(1).std(dim=1).view(-1, 1, 1, 1) + 1e-8) * MACO_STD

    def forward(self) -> torch.Tensor:
        img = to_rgb(self.spatial(), self.decorrelate, self.sigmoid)
        if self.track_alpha and img.requires_grad:
            img.register_hook(self._accumulate)
        return img

    def _accumulate(self, grad: torch.Tensor) -> None:
        g = grad.detach().abs().sum(dim=1).float()  # (B, h, w)
        self.alpha = g if self.alpha is None else self.alpha + g

    def alpha_map(self) -> torch.Tensor | None:
        """(B, 1, h, w) in [0, 1]: the accumulated gradient magnitude, each image divided by its 99th percentile."""
        if self.alpha is None:
            return None
        a = self.alpha.detach().cpu()
        q = torch.quantile(a.flatten(1), 0.99, dim=1).clamp_min(1e-12).view(-1, 1, 1)
        return (a / q).clamp(0, 1)[:, None]


def make_maco(gens: Sequence[torch.Generator], h: int, w: int, spectrum: str | None = None, decorrelate: bool = True,
              sigmoid: bool = True, track_alpha: bool = False) -> MacoImage:
    mag = load_spectrum(spectrum) if spectrum else None
    return MacoImage(gens, h, w, mag, decorrelate, sigmoid, track_alpha)
