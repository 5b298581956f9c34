"""Image parameterizations: how an image batch is represented while it is optimized.

Every param is an `nn.Module` whose `forward()` returns a batch `(B, 3, H, W)` in [0, 1]. Each image is initialised
from its own `torch.Generator` (one per unit), so a unit's starting image does not depend on its batch-mates.

- `PixelImage`: one value per pixel and channel.
- `FourierImage`: the spectrum of `irfft2`, scaled by 1/f**decay (lucid's `fft_image`), which whitens the gradient
  ("preconditioning"): low frequencies move as easily as high ones.
- Both go through `to_rgb` (fvcli/optvis/color.py): optional color decorrelation with lucid's matrix, then a
  sigmoid.
- `SharedImage`: a sum of per-image and shared low-resolution parameterizations (interpolation frames).
- `maco` (fvcli/optvis/maco.py): only the phase of the spectrum is optimized; its magnitude is a natural image's.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .color import to_rgb
from .maco import make_maco

FOURIER_INIT_STD = 0.01  # lucid fft_image sd
FOURIER_MAGIC = 4.0  # lucid/lucent divide the irfft output by 4


def fft_scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    """lucid's spectrum scale 1/max(|f|, 1/max(h,w))**decay for the rfft2 layout (h, w//2+1)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]  # (w//2+1,) for any w, odd included
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power
    return torch.as_tensor(scale, dtype=torch.float32)  # (h, w//2+1)


def _randn(shape: Sequence[int], gens: Sequence[torch.Generator], std: float) -> torch.Tensor:
    """(B, *shape) with image b drawn from gens[b] (on the CPU, so it is the same on every device)."""
    return torch.stack([torch.randn(tuple(shape), generator=g) * std for g in gens])


class PixelImage(nn.Module):
    def __init__(self, gens: Sequence[torch.Generator], h: int, w: int, std: float = 0.01,
                 decorrelate: bool = True, sigmoid: bool = True) -> None:
        super().__init__()
        self.h, self.w = h, w
        self.pixels = nn.Parameter(_randn((3, h, w), gens, std))
        self.decorrelate, self.sigmoid = decorrelate, sigmoid

    def spatial(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def set_spatial(self, t: torch.Tensor) -> None:
        """Make `spatial()` equal t (B, 3, h, w): how a coarse render hands its picture on (fvcli/optvis/coarse.py)."""
        self.pixels.copy_(t)

    def forward(self) -> torch.Tensor:
        return to_rgb(self.pixels, self.decorrelate, self.sigmoid)


class FourierImage(nn.Module):
    """lucid's fft_image: spectrum ~ N(0, 0.01^2), image = irfft2(scale * spectrum, ortho) / 4."""

    def __init__(self, gens: Sequence[torch.Generator], h: int, w: int, decay_power: float = 1.0,
                 std: float = FOURIER_INIT_STD, decorrelate: bool = True, sigmoid: bool = True) -> None:
        super().__init__()
        self.h, self.w = h, w
        wf = w // 2 + 1
        self.spectrum = nn.Parameter(_randn((3, h, wf, 2), gens, std))  # (B, 3, h, w//2+1, re/im)
        self.register_buffer("scale", fft_scale(h, w, decay_power))
        self.decay_power = decay_power
        self.decorrelate, self.sigmoid = decorrelate, sigmoid

    @torch.no_grad()
    def set_decay(self, decay_power: float | torch.Tensor) -> torch.Tensor:
        """Change the spectrum's decay keeping the picture (the spectrum divided by new/old scale); returns new/old.
        A float: one decay for all images, scale (h, w//2+1). A (B,) tensor: one per image (a continuously refilled
        batch holds images at different steps), scale (B, 1, h, w//2+1). Computed on the param's device
        (fvcli/optvis/decay_schedule.py: a schedule over the steps)."""
        lf = getattr(self, "_log_freqs", None)
        if lf is None or lf.device != self.scale.device:  # once per param: every step of a ramp changes the power
            fy = torch.fft.fftfreq(self.h, device=self.scale.device)[:, None]
            fx = torch.fft.rfftfreq(self.w, device=self.scale.device)[None, :]
            self._log_freqs = lf = torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / max(self.h, self.w)).log()
        if isinstance(decay_power, torch.Tensor):
            new = torch.exp(lf * -decay_power.to(lf).view(-1, 1, 1, 1)).to(self.scale.dtype)
        else:
            new = torch.exp(lf * -decay_power).to(self.scale.dtype)
        ratio = new / self.scale
        self.spectrum.div_(ratio[..., None])
        self.scale = new  # (a registered buffer: it follows the module's device)
        self.decay_power = decay_power
        return ratio

    def spatial(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale  # (B, 3, h, wf)
        return torch.fft.irfft2(spec, s=(self.h, self.w), norm="ortho") / FOURIER_MAGIC

    @torch.no_grad()
    def set_spatial(self, t: torch.Tensor) -> None:
        """Make `spatial()` equal t (B, 3, h, w), the exact inverse of spatial() (the scale is never 0)."""
        spec = torch.fft.rfft2(t.float() * FOURIER_MAGIC, norm="ortho") / self.scale
        self.spectrum.copy_(torch.view_as_real(spec))

    def forward(self) -> torch.Tensor:
        return to_rgb(self.spatial(), self.decorrelate, self.sigmoid)


class SharedImage(nn.Module):
    """Per-image Fourier images plus shared low-resolution tensors, upsampled and summed before `to_rgb`
    (the article's interpolation parameterization: shared parts keep frames alike).

    `shared_sizes`: tensors (1, 3, s, s) added to every image. `blend_sizes`: tensors (2, 3, s, s) whose two ends
    are blended linearly across the batch (image i of B gets (1 - t) * end0 + t * end1 with t = i / (B - 1)), so
    neighbouring frames share more than distant ones. lucid's interpolation notebook, for a 128 px image: shared
    64, 32, 16, 8 and blended 16, 8 (`SharedImage.lucid` scales these to any size), all initialised N(0, 0.01^2)."""

    def __init__(self, gens: Sequence[torch.Generator], h: int, w: int, shared_sizes: Sequence[int] = (64, 32, 16, 8),
                 decay_power: float = 1.0, decorrelate: bool = True, sigmoid: bool = True,
                 shared_gen: torch.Generator | None = None, blend_sizes: Sequence[int] = (),
                 std: float = 0.01) -> None:
        super().__init__()
        self.own = FourierImage(gens, h, w, decay_power, decorrelate=decorrelate, sigmoid=sigmoid)
        g = shared_gen or torch.Generator().manual_seed(0)
        self.shared = nn.ParameterList(
            [nn.Parameter(torch.randn(1, 3, s, s, generator=g) * std) for s in shared_sizes]
        )
        self.blend = nn.ParameterList(
            [nn.Parameter(torch.randn(2, 3, s, s, generator=g) * std) for s in blend_sizes]
        )
        self.h, self.w = h, w
        self.decorrelate, self.sigmoid = decorrelate, sigmoid

    @staticmethod
    def lucid(gens: Sequence[torch.Generator], h: int, w: int, shared_gen: torch.Generator | None = None,
              **kw) -> SharedImage:
        """lucid's interpolation layout scaled to the image: shared at 1/2, 1/4, 1/8, 1/16, blended at 1/8, 1/16."""
        side = max(h, w)
        sizes = lambda ks: tuple(max(1, side // k) for k in ks)  # noqa: E731
        return SharedImage(gens, h, w, sizes((2, 4, 8, 16)), shared_gen=shared_gen, blend_sizes=sizes((8, 16)), **kw)

    def forward(self) -> torch.Tensor:
        t = self.own.spatial()  # (B, 3, H, W)
        for p in self.shared:
            t = t + F.interpolate(p, size=(self.h, self.w), mode="bilinear", align_corners=False)
        if len(self.blend):
            b = t.shape[0]
            mix = torch.linspace(0, 1, b, device=t.device, dtype=t.dtype) if b > 1 else t.new_zeros(1)
            mix = mix.view(b, 1, 1, 1)
            for p in self.blend:
                lo = (1 - mix) * p[0:1] + mix * p[1:2]  # (B, 3, s, s)
                t = t + F.interpolate(lo, size=(self.h, self.w), mode="bilinear", align_corners=False)
        return to_rgb(t, self.decorrelate, self.sigmoid)


def make_param(kind: str, gens: Sequence[torch.Generator], h: int, w: int, decay_power: float = 1.0,
               decorrelate: bool = True, sigmoid: bool = True, init_std: float | None = None,
               spectrum: str | None = None, maco_alpha: bool = False) -> nn.Module:
    if kind == "maco":  # fvcli/optvis/maco.py
        return make_maco(gens, h, w, spectrum, decorrelate, sigmoid, maco_alpha)
    if kind == "fourier":
        return FourierImage(gens, h, w, decay_power, init_std if init_std is not None else FOURIER_INIT_STD,
                            decorrelate, sigmoid)
    if kind == "pixel":
        return PixelImage(gens, h, w, init_std if init_std is not None else 0.01, decorrelate, sigmoid)
    raise ValueError(f"unknown param kind {kind!r}")
