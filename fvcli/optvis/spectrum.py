"""Magnitude spectra of natural images: what MACO (fvcli/optvis/maco.py) keeps fixed while it optimizes the phase.

MACO (Fel et al., NeurIPS 2023) represents an image by the phase of its Fourier spectrum and fixes the magnitude to
that of natural images, so every render has a natural image's distribution of energy over frequencies and cannot
drift into high-frequency noise. The magnitude lives in the *decorrelated* color space of fvcli/optvis/param.py (the param
applies the color matrix after the inverse FFT), in the `rfft2` layout `(3, S, S//2+1)`, with `norm="ortho"`.

- `compute_spectrum(paths, size)`: the mean magnitude over a folder of images, streamed one image at a time (any
  sizes: each is resized so its short side is `size`, then center-cropped to `size x size`). `fv spectrum` saves it
  with `torch.save` as {'magnitude', 'size', 'images', 'space'}; `load_spectrum` reads it with weights_only=True.
- `power_law_spectrum(h, w)`: the default when no file is given, a fitted power law A_c / |f|**alpha. Natural images
  have an amplitude spectrum close to 1/f (Field 1987; van der Schaaf & van Hateren 1996). The exponent and the
  per-channel amplitudes are measured on the photos in ../shared/weights/mobilenet_v2_imagenet/photos (the only
  natural images here) with `fit_power_law` (see DEFAULT_ALPHA); tests/test_maco.py re-measures them.
- `resize_spectrum(mag, h, w)`: a spectrum computed at one size, used at another (bilinear on the centered
  spectrum; a magnitude per cycles-per-pixel frequency, so the shape carries over).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FvError

SPECTRUM_SIZE = 224  # default side of a computed spectrum (the ImageNet networks' native size)
# Measured with `fv spectrum` + `fit_power_law` on the three photos in ../shared (chelsea, coffee, grace_hopper):
# alpha 1.37, 1.45, 1.37 per decorrelated channel at 224 px and 1.19, 1.32, 1.29 at 128 px (mean 1.40 and 1.27);
# amplitudes relative to channel 0: 1, 0.91, 0.80 at 224 px. The default takes the middle of the two sizes' means
# (renders are made at 128-224 px) and the 224 px amplitudes. For comparison, large photo collections are usually
# reported at alpha 1.0-1.2 (these three are close-ups with smooth backgrounds). tests/test_maco.py re-measures.
DEFAULT_ALPHA = 1.3
DEFAULT_CHANNEL_AMPLITUDE = (1.0, 0.9, 0.8)
FIT_LOW, FIT_HIGH = 1 / 64, 0.35  # the fitted band, cycles/pixel: above the few lowest bins, below the resize's
# antialiasing roll-off near Nyquist
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FORMAT = "fv-spectrum/1"


def frequencies(h: int, w: int) -> torch.Tensor:
    """|f| in cycles per pixel for the rfft2 layout: (h, w//2+1)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    return (fx * fx + fy * fy).sqrt()


def power_law_spectrum(h: int, w: int, alpha: float = DEFAULT_ALPHA,
                       amplitude: tuple[float, float, float] = DEFAULT_CHANNEL_AMPLITUDE) -> torch.Tensor:
    """A_c / max(|f|, 1/max(h, w))**alpha, DC set to 0: (3, h, w//2+1) float32."""
    f = frequencies(h, w).clamp_min(1.0 / max(h, w))
    mag = f.pow(-alpha)[None] * torch.tensor(amplitude, dtype=torch.float64)[:, None, None]
    mag[:, 0, 0] = 0.0
    return mag.float()


def fit_power_law(mag: torch.Tensor, lo: float = FIT_LOW, hi: float = FIT_HIGH) -> tuple[list[float], list[float]]:
    """Fit log|F| = log A_c - alpha_c log|f| per channel on the mean magnitude in half-octave rings between `lo`
    and `hi` cycles/pixel (rings, so that every scale weighs the same and not the many high-frequency bins)
    -> (alphas, amplitudes relative to channel 0)."""
    h, w = mag.shape[-2], 2 * (mag.shape[-1] - 1)
    f = frequencies(h, w)
    edges = [lo * 2 ** (k / 2) for k in range(int(2 * math.log2(hi / lo)) + 1)]
    rings = [(f >= a) & (f < b) for a, b in zip(edges[:-1], edges[1:])]
    rings = [r for r in rings if bool(r.any())]
    x = np.array([float(f[r].mean().log()) for r in rings])
    alphas, logs = [], []
    for c in range(mag.shape[0]):
        y = np.array([float(mag[c].double()[r].mean().clamp_min(1e-12).log()) for r in rings])
        slope, icpt = np.polyfit(x, y, 1)
        alphas.append(float(-slope))
        logs.append(float(icpt))
    return alphas, [math.exp(v - logs[0]) for v in logs]


def _decorrelate(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> the param's decorrelated space (the inverse of to_rgb's color matrix)."""
    from .color import COLOR_CORRELATION_NORMALIZED

    inv = torch.as_tensor(np.linalg.inv(COLOR_CORRELATION_NORMALIZED), dtype=torch.float64)
    x = rgb.double() - rgb.double().mean(dim=(1, 2), keepdim=True)
    return torch.matmul(inv, x.flatten(1)).view(x.shape)


def load_image(path: Path, size: int) -> torch.Tensor:
    """An image file -> (3, size, size) in [0, 1]: short side resized to `size` (antialiased), center-cropped."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise FvError(f"cannot read image {path}: {exc}") from None
    t = torch.from_numpy(arr).permute(2, 0, 1)[None]
    h, w = t.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return t[0, :, top:top + size, left:left + size].clamp(0, 1)


def image_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FvError(f"images folder {folder} not found (expected a folder of {', '.join(IMAGE_SUFFIXES)} files)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FvError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)")
    return files


def compute_spectrum(paths: Iterable[Path], size: int = SPECTRUM_SIZE) -> tuple[torch.Tensor, int]:
    """Mean magnitude |rfft2| (ortho) in the decorrelated space over images, streamed: ((3, size, size//2+1), n)."""
    total = torch.zeros(3, size, size // 2 + 1, dtype=torch.float64)
    n = 0
    for p in paths:
        total += torch.fft.rfft2(_decorrelate(load_image(p, size)), norm="ortho").abs()
        n += 1
    if n == 0:
        raise FvError("no images to compute a spectrum from")
    mag = total / n
    mag[:, 0, 0] = 0.0  # the mean is the param's business (the sigmoid's midpoint), not the spectrum's
    return mag.float(), n


def save_spectrum(path: Path, mag: torch.Tensor, n: int) -> None:
    import io

    from ..outputs import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"format": FORMAT, "magnitude": mag.contiguous(), "size": int(mag.shape[-2]), "images": int(n),
                "space": "decorrelated"}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_spectrum(path: str | Path) -> torch.Tensor:
    """A file written by `fv spectrum` -> magnitude (3, S, S//2+1) float32 (torch.load with weights_only=True)."""
    try:
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FvError(f"spectrum file {path} not found (make one with `fv spectrum IMAGES_DIR -o {path}`)") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
        raise FvError(f"cannot read spectrum file {path}: {exc}") from None
    mag = d.get("magnitude") if isinstance(d, dict) else None
    if not isinstance(mag, torch.Tensor) or mag.dim() != 3 or mag.shape[0] != 3 or \
            mag.shape[2] != mag.shape[1] // 2 + 1 or not torch.isfinite(mag).all() or bool((mag < 0).any()):
        raise FvError(f"spectrum file {path}: expected {{'magnitude': (3, S, S//2+1) non-negative}}, "
                      f"got {type(d).__name__}")
    return mag.float()


def resize_spectrum(mag: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(3, S, S//2+1) -> (3, h, w//2+1): resample the centered full spectrum (frequencies in cycles per pixel)."""
    s = mag.shape[1]
    if (s, 2 * (mag.shape[2] - 1)) == (h, w) or (h == w == s):
        return mag.clone()
    # full (3, S, S) spectrum from the half one (|F(-f)| = |F(f)| for a real image), centered
    full = torch.cat([mag, mag[:, (-torch.arange(s)) % s][:, :, 1:(s + 1) // 2].flip(-1)], dim=-1)[:, :, :s]
    full = torch.fft.fftshift(full, dim=(-2, -1))
    big = F.interpolate(full[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    out = torch.fft.ifftshift(big, dim=(-2, -1))[:, :, : w // 2 + 1].clamp_min(0)
    out[:, 0, 0] = 0.0
    return out.contiguous()
