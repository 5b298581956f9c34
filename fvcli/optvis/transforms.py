"""Transformation robustness: stochastic pad / jitter / scale / rotate / crop, fused into one affine warp per step.

A transform chain is a tuple of steps (e.g. the article's: pad 16, jitter 16, scale, rotate, jitter 8, crop).
`Schedule.draw()` draws every random parameter of every step for one image up front from that image's own
generator, so a unit sees the same transforms whether it is rendered alone or in any batch. The chain is then
composed into one 2x3 affine matrix per image and step, and applied to the whole batch with a single
`affine_grid` + `grid_sample` (bilinear). Pixels from outside the image take the pad value (lucid pads with 0.5).

Coordinates are pixels relative to the image center. Each step maps a point of its output to a point of its input:
jitter by d: p -> p + d (d = offset - n/2, offset an integer in [0, n], lucid's random crop); scale by s: p -> p / s;
rotate by a: p -> R(-a) p. The output has the param's size (the final crop removes the padding).

Beyond the article's suite (stronger robustness, as Xplique's and Horama's feature visualizations use):
- `Zoom(lo, hi)`: a random crop / zoom: the zoom factor z is drawn log-uniformly in [lo, hi] and the output shows a
  window of 1/z of the image at a random position that keeps it inside (z > 1 crops in; z < 1 shrinks). Affine, so
  it is fused into the same warp.
- `Noise(std)`: Gaussian noise added to the warped image (the network's input), std in [0, 1] image units.
- `Blur(lo, hi)`: a Gaussian blur of the warped image with sigma drawn uniformly in [lo, hi] pixels per image and step.
- `Copies(n)`: n independently transformed copies of every image per step (an ensemble); the objective is the mean
  over the copies, so the gradient averages over n transformations (n times the compute of a step).
Noise and blur act after the warp, in chain order; all their random values come from the image's own generator.

Strength over the steps (`render.transforms_from`, `render.transforms_ramp`; issue #29): a step's strength s scales
every drawn amount -- jitter offsets and rotation angles by s, scale and zoom factors to the power s (their logarithm
by s), blur sigmas and noise by s -- and goes linearly from `transforms_from` at step 0 to 1 at step
`transforms_ramp` (absolute steps), 1 after. Weak to strong lets the first steps find the object before the full
robustness shapes it; the random values drawn are the same at any strength, so a unit still sees the same
transforms alone or in a batch.
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


@dataclass(frozen=True)
class Zoom:
    """Random crop / zoom: factor log-uniform in [lo, hi] at a random position (see the module docstring)."""

    lo: float
    hi: float


@dataclass(frozen=True)
class Noise:
    std: float


@dataclass(frozen=True)
class Blur:
    """Gaussian blur, sigma uniform in [lo, hi] pixels (0: none)."""

    lo: float
    hi: float


@dataclass(frozen=True)
class Copies:
    """Transformed copies of every image per step; the objective is their mean."""

    n: int


Step = Pad | Jitter | Scale | Rotate | Crop | Zoom | Noise | Blur | Copies
AFFINE = (Jitter, Scale, Rotate, Zoom)

# The article's footnote (Distill 2017): pad 16, jitter 16, scale, rotate -5..5 degrees, jitter 8, crop the padding.
ARTICLE = (Pad(16), Jitter(16), Scale((1.0, 0.975, 1.025, 0.95, 1.05)), Rotate(tuple(float(a) for a in range(-5, 6))),
           Jitter(8), Crop())
# lucid optvis/transform.py standard_transforms (the angle 0 appears 6 times out of 26, as lucid's list has it).
LUCID = (Pad(12), Jitter(8), Scale(tuple(1 + (i - 5) / 50 for i in range(11))),
         Rotate(tuple(float(a) for a in list(range(-10, 11)) + 5 * [0])), Jitter(4), Crop())
# The stronger geometric suite measured on ImageNet classes of the real MobileNetV2 (../shared/facts/quality.md and
# docs/reports/quality.md): pad 32, jitter 32, scale 0.8-1.2, rotate -20..20 degrees, jitter 16, at 224 px.
STRONG = (Pad(32), Jitter(32), Scale(tuple(round(0.8 + i * 0.05, 2) for i in range(9))),
          Rotate(tuple(float(a) for a in range(-20, 21, 5))), Jitter(16), Crop())
PRESETS: dict[str, tuple[Step, ...]] = {"article": ARTICLE, "lucid": LUCID, "strong": STRONG, "none": ()}


def at_size(chain: Sequence[Step], size: int, written_for: int | None) -> tuple[Step, ...]:
    """The chain with its pixel amounts (pad, jitter, blur sigma) written for a `written_for`-px render, scaled to a
    `size`-px one, so a recipe keeps the same relative strength at any size (None: the amounts as written). A
    non-zero pad or jitter stays at least 1 pixel."""
    if not written_for or written_for == size:
        return tuple(chain)
    f = size / written_for

    def px(n: int) -> int:
        return max(1, round(n * f)) if n else 0

    out: list[Step] = []
    for s in chain:
        if isinstance(s, Pad):
            s = Pad(px(s.pixels), s.value)
        elif isinstance(s, Jitter):
            s = Jitter(px(s.pixels))
        elif isinstance(s, Blur):
            s = Blur(s.lo * f, s.hi * f)
        out.append(s)
    return tuple(out)


def pad_value(chain: Sequence[Step]) -> float:
    for s in chain:
        if isinstance(s, Pad):
            return s.value
    return 0.5


def _pick(values: Sequence[float], n: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(len(values), (n,), generator=gen)
    return torch.tensor(values, dtype=torch.float64)[idx]


def strength(steps: int, start: float, ramp: int, offset: int = 0) -> torch.Tensor | None:
    """The transforms' strength at steps offset .. offset+steps-1 (float64), linear from `start` at step 0 to 1 at
    step `ramp`, 1 after; None when it is 1 throughout (no ramp)."""
    if ramp <= 0 or start == 1.0:
        return None
    t = torch.arange(offset, offset + steps, dtype=torch.float64)
    return (start + (1.0 - start) * (t / ramp)).where(t < ramp, torch.ones((), dtype=torch.float64))


def draw(chain: Sequence[Step], steps: int, gen: torch.Generator, size: float = 224.0,
         st: torch.Tensor | None = None) -> torch.Tensor:
    """All affine matrices for one image: (steps, 2, 3) float64, in centered pixel coordinates (`size`: the image
    side in pixels, which bounds a zoom's window; `st`: the strength of each step (steps,), see `strength`)."""
    a = torch.eye(3, dtype=torch.float64).expand(steps, 3, 3).clone()  # output -> input, composed left to right
    for step in chain:
        m = torch.eye(3, dtype=torch.float64).expand(steps, 3, 3).clone()
        if isinstance(step, Jitter):
            off = torch.randint(step.pixels + 1, (steps, 2), generator=gen).double() - step.pixels / 2
            if st is not None:
                off = off * st[:, None]
            m[:, 0, 2], m[:, 1, 2] = off[:, 0], off[:, 1]
        elif isinstance(step, Scale):
            s = _pick(step.factors, steps, gen)
            if st is not None:
                s = s ** st
            m[:, 0, 0], m[:, 1, 1] = 1 / s, 1 / s
        elif isinstance(step, Rotate):
            ang = _pick(step.degrees, steps, gen) * (math.pi / 180) * (1.0 if st is None else st)
            c, s = torch.cos(ang), torch.sin(ang)
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, s, -s, c  # R(-a)
        elif isinstance(step, Zoom):
            u = torch.rand((steps, 3), generator=gen, dtype=torch.float64)
            z = torch.exp((math.log(step.lo) + u[:, 0] * (math.log(step.hi) - math.log(step.lo))) *
                          (1.0 if st is None else st))
            room = (1 - 1 / z).abs() * (size / 2)  # how far the window's center can move and stay inside
            m[:, 0, 0], m[:, 1, 1] = 1 / z, 1 / z
            m[:, 0, 2], m[:, 1, 2] = (2 * u[:, 1] - 1) * room, (2 * u[:, 2] - 1) * room
        else:
            continue  # Pad, Crop, Noise, Blur and Copies move no coordinates
        a = a @ m
    return a[:, :2, :]


def copies(chain: Sequence[Step]) -> int:
    return max([s.n for s in chain if isinstance(s, Copies)] or [1])


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) blurred with a separable Gaussian of its own sigma per image (N,) (sigma 0: unchanged)."""
    n, c, h, w = x.shape
    # sigma stays on the host (Schedule.sigmas): the radius is read without waiting for the GPU
    r = max(1, int(math.ceil(3 * float(sigma.max()))))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(device=x.device, dtype=x.dtype, non_blocking=True).clamp_min(1e-3)
    k = torch.exp(-0.5 * (t[None, :] / s[:, None]) ** 2)  # (N, 2r+1)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, 2r+1)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


@dataclass
class Schedule:
    """Per-image random transforms for a whole render.

    thetas: affine matrices normalised for `affine_grid`, (steps, K*B, 2, 3), copy-major (row k*B + b is copy k of
    image b); sigmas: blur sigmas (steps, K*B) or None; noise: (std, per-row seeds (K*B,)) or None. A row's values
    come only from its image's generator, so they do not depend on the batch."""

    thetas: torch.Tensor
    fill: float
    copies: int = 1
    sigmas: torch.Tensor | None = None
    noise_std: float = 0.0
    noise_seeds: tuple[int, ...] = ()
    post: tuple[Step, ...] = ()  # Noise / Blur steps in chain order
    hw: tuple[int, int] = (0, 0)  # the image size (for the noise)
    noise_scale: tuple[float, ...] = ()  # the noise's strength per step (empty: 1 throughout)

    @staticmethod
    def build(chain: Sequence[Step], steps: int, gens: Sequence[torch.Generator], h: int, w: int,
              device: torch.device, st: torch.Tensor | None = None) -> Schedule | None:
        """`st`: the strength of each of the `steps` steps (`strength()`; None: 1 throughout)."""
        if not any(isinstance(s, AFFINE + (Noise, Blur)) for s in chain):
            return None
        k, b = copies(chain), len(gens)
        per_image, sig, seeds = [], [], []
        st_k = st.repeat_interleave(k) if st is not None else None  # the k copies of a step share its strength
        for g in gens:  # every random value of image b from gens[b]: affine first (the article's order), then ...
            per_image.append(draw(chain, steps * k, g, min(h, w), st_k).view(steps, k, 2, 3))
            blur = next((s for s in chain if isinstance(s, Blur)), None)
            if blur is not None:  # ... blur sigmas, then the noise seeds
                sg = blur.lo + torch.rand((steps, k), generator=g, dtype=torch.float64) * (blur.hi - blur.lo)
                sig.append(sg if st is None else sg * st[:, None])
            if any(isinstance(s, Noise) for s in chain):
                seeds.append(torch.randint(2**62, (k,), generator=g).tolist())
        mats = torch.stack(per_image, dim=2).reshape(steps, k * b, 2, 3)  # (steps, K, B) -> copy-major rows
        d = torch.tensor([w / 2, h / 2], dtype=torch.float64)
        theta = mats.clone()
        theta[..., :2] = mats[..., :2] * d[None, :] / d[:, None]  # D^-1 M D
        theta[..., 2] = mats[..., 2] / d
        sigmas = torch.stack(sig, dim=2).reshape(steps, k * b).float() if sig else None
        noise = next((s for s in chain if isinstance(s, Noise)), None)
        row_seeds = tuple(seeds[bb][kk] for kk in range(k) for bb in range(b)) if seeds else ()
        post = tuple(s for s in chain if isinstance(s, (Noise, Blur)))
        return Schedule(theta.float().to(device), pad_value(chain), k, sigmas, noise.std if noise else 0.0,
                        row_seeds, post, (h, w), tuple(st.tolist()) if st is not None and noise else ())

    def draws(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """What step `step` needs: (theta (K*B, 2, 3), blur sigmas (K*B,) or None, noise (K*B, 3, H, W) or None)."""
        sig = self.sigmas[step] if self.sigmas is not None else None
        noise = None
        if self.noise_std > 0:
            h, w = self.hw
            noise = torch.stack([torch.randn((3, h, w), generator=torch.Generator().manual_seed(
                (s + step * 0x9E3779B97F4A7C15) % 2**63)) for s in self.noise_seeds]) * (
                self.noise_std * (self.noise_scale[step] if self.noise_scale else 1.0))
            noise = noise.to(self.thetas.device, non_blocking=True)  # a blocking copy would wait for the GPU
        return self.thetas[step], sig, noise

    def apply(self, image: torch.Tensor, step: int) -> torch.Tensor:  # (B, 3, H, W) -> (K*B, 3, H, W)
        return self.transform(image, self.draws(step))

    def transform(self, image: torch.Tensor, drawn: tuple) -> torch.Tensor:  # (B, 3, H, W) -> (K*B, 3, H, W)
        theta, sig, noise = drawn
        x = self.warp(image.repeat(self.copies, 1, 1, 1) if self.copies > 1 else image, theta)
        for s in self.post:
            if isinstance(s, Blur) and sig is not None:
                x = gaussian_blur(x, sig)
            elif isinstance(s, Noise) and noise is not None:
                x = x + noise.to(x.dtype)
        return x

    def warp(self, image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W), (N, 2, 3) -> image
        theta = theta.to(image.dtype)
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        return F.grid_sample(image - self.fill, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False) + self.fill
