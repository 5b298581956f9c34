"""Procedural images with known classes: the data the `demo` model is trained on (scripts/train_demo_model.py).

Twelve classes whose look is known in advance, so a visualization of a class can be checked against its real
features. Eight are *patterns* drawn in two random colors (the class is the geometry, never the color): stripes at
four orientations, a checkerboard, a dot lattice, concentric rings and a thin-line grid. Four are *blobs*: soft round
shapes on a grey-ish background, where the class is the blobs' hue (red, yellow, green, blue).

Geometry lives in normalized coordinates -- x to the right and y *up*, both in [-1, 1] across the image -- so one
draw looks the same at any size (only the pixel sampling and the noise change). Orientations are measured
counter-clockwise from the horizontal in that frame: `stripes_0` are horizontal lines, `stripes_90` vertical,
`stripes_45` rise to the right ("/") and `stripes_135` fall to the right ("\\").

Every random parameter of an image (frequency, phase, orientation jitter, position, colors, noise level) is drawn
from the caller's `numpy.random.Generator`, scalars first and the pixel noise last, so a seed gives the same draw
(the same pattern, colors and noise level) at every size. `make_batch(n, size, seed)` is a pure function of its
arguments.

    >>> x, y = make_batch(24, 64, seed=0)   # x: (24, 3, 64, 64) float32 in [0, 1]; y: (24,) int64, 2 per class
"""
from __future__ import annotations

import colorsys
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

DEMO_CLASSES: tuple[str, ...] = (
    "stripes_0", "stripes_45", "stripes_90", "stripes_135",
    "checkerboard", "dots", "rings", "grid",
    "red_blobs", "yellow_blobs", "green_blobs", "blue_blobs",
)

DEMO_CLASS_DESCRIPTIONS: tuple[str, ...] = (
    "horizontal stripes (two random colors)",
    "diagonal stripes rising to the right, '/' (two random colors)",
    "vertical stripes (two random colors)",
    "diagonal stripes falling to the right, '\\' (two random colors)",
    "checkerboard at a random rotation (two random colors)",
    "square lattice of round dots at a random rotation (two random colors)",
    "concentric rings around a random center (two random colors)",
    "grid of thin crossing lines at a random rotation (two random colors)",
    "soft red blobs on a greyish background",
    "soft yellow blobs on a greyish background",
    "soft green blobs on a greyish background",
    "soft blue blobs on a greyish background",
)

# Knobs of the generator. Frequencies are in cycles across the image width (2 normalized units).
STRIPE_ANGLES_DEG = (0.0, 45.0, 90.0, 135.0)  # stripes_0, _45, _90, _135
ORIENTATION_JITTER_DEG = 7.0  # keeps the four stripe classes 31 deg apart at worst
STRIPE_CYCLES = (3.0, 9.0)
CHECKER_CYCLES = (2.0, 5.5)  # one cycle = two squares
CHECKER_SHARPNESS = (10.0, 25.0)  # crisp square corners; soft ones would read as a diagonal dot lattice
DOT_CYCLES = (2.5, 6.0)
DOT_RADIUS = (0.18, 0.28)  # in lattice periods (>= 1.9 px at 64 px)
RING_CYCLES = (3.0, 8.0)
RING_CENTER = 0.5  # the center lies in [-0.5, 0.5]^2
GRID_CYCLES = (2.5, 5.5)
GRID_HALF_WIDTH = (0.02, 0.04)  # normalized units: lines 1.3 to 2.6 px wide at 64 px
SHARPNESS = (0.8, 4.0)  # tanh(k sin) / tanh(k): k=0.8 is nearly a sinusoid, k=4 nearly a square wave
MIN_COLOR_DISTANCE = 0.5  # RGB distance between a pattern's two colors
BLOB_HUES_DEG = (0.0, 55.0, 120.0, 225.0)  # red, yellow, green, blue
HUE_JITTER_DEG = 10.0
BLOB_COUNT = (1, 3)
BLOB_SIGMA = (0.18, 0.4)
BACKGROUND_MAX_SATURATION = 0.2
LIGHT_GRADIENT = 0.1  # multiplicative illumination ramp, per axis
NOISE_SIGMA = (0.0, 0.06)

_Coords = tuple[np.ndarray, np.ndarray]  # (x, y), each (H, W) float32


@lru_cache(maxsize=16)
def _grid(size: int) -> _Coords:
    """Pixel centers in normalized coordinates, x right and y up, both (size, size). Read-only (cached)."""
    c = (2.0 * np.arange(size, dtype=np.float32) + 1.0) / size - 1.0
    x = np.broadcast_to(c[None, :], (size, size))
    y = np.broadcast_to(-c[:, None], (size, size))
    return x, y


def _rotate(xy: _Coords, deg: float) -> _Coords:
    a = np.deg2rad(deg)
    ca, sa = np.float32(np.cos(a)), np.float32(np.sin(a))
    x, y = xy
    return x * ca + y * sa, -x * sa + y * ca


def _wave(phase: np.ndarray, k: float) -> np.ndarray:
    """Periodic profile in [0, 1] between a sinusoid (small k) and a square wave (large k)."""
    return 0.5 + 0.5 * np.tanh(k * np.sin(phase)) / np.tanh(k)


def _soft_step(d: np.ndarray, edge: float) -> np.ndarray:
    """1 where d << 0, 0 where d >> 0, a ramp about one pixel (`edge`) wide: cheap anti-aliasing."""
    return np.clip(0.5 - d / edge, 0.0, 1.0)


def _two_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    while True:  # rejection: on average ~1.3 draws
        c1, c2 = rng.random(3), rng.random(3)
        if np.linalg.norm(c1 - c2) >= MIN_COLOR_DISTANCE:
            return c1.astype(np.float32), c2.astype(np.float32)


# Pattern classes: draw parameters, return a function of the coordinates giving the mix t in [0, 1], (H, W).
_Pattern = Callable[[_Coords, int], np.ndarray]


def _stripes(angle: float) -> Callable[[np.random.Generator], _Pattern]:
    def draw(rng: np.random.Generator) -> _Pattern:
        deg = angle + rng.uniform(-ORIENTATION_JITTER_DEG, ORIENTATION_JITTER_DEG)
        cycles, phase, k = rng.uniform(*STRIPE_CYCLES), rng.uniform(0, 2 * np.pi), rng.uniform(*SHARPNESS)

        def t(xy: _Coords, size: int) -> np.ndarray:
            _, across = _rotate(xy, deg)  # the coordinate across the stripes
            return _wave(np.pi * cycles * across + phase, k)

        return t

    return draw


def _checkerboard(rng: np.random.Generator) -> _Pattern:
    deg, cycles = rng.uniform(0, 90), rng.uniform(*CHECKER_CYCLES)
    px, py, k = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(*CHECKER_SHARPNESS)

    def t(xy: _Coords, size: int) -> np.ndarray:
        u, v = _rotate(xy, deg)
        p = np.sin(np.pi * cycles * u + px) * np.sin(np.pi * cycles * v + py)  # +-1 in alternate squares
        return 0.5 + 0.5 * np.tanh(k * p) / np.tanh(k)

    return t


def _dots(rng: np.random.Generator) -> _Pattern:
    deg, cycles, radius = rng.uniform(0, 90), rng.uniform(*DOT_CYCLES), rng.uniform(*DOT_RADIUS)
    ox, oy = rng.random(), rng.random()

    def t(xy: _Coords, size: int) -> np.ndarray:
        u, v = _rotate(xy, deg)
        period = 2.0 / cycles
        a, b = u / period + ox, v / period + oy
        d = np.hypot(a - np.round(a), b - np.round(b))  # distance to the nearest dot center, in periods
        return _soft_step(d - radius, edge=(2.0 / size) / period)

    return t


def _rings(rng: np.random.Generator) -> _Pattern:
    cx, cy = (float(c) for c in rng.uniform(-RING_CENTER, RING_CENTER, size=2))
    cycles, phase, k = rng.uniform(*RING_CYCLES), rng.uniform(0, 2 * np.pi), rng.uniform(*SHARPNESS)

    def t(xy: _Coords, size: int) -> np.ndarray:
        r = np.hypot(xy[0] - cx, xy[1] - cy)
        return _wave(np.pi * cycles * r + phase, k)

    return t


def _grid_lines(rng: np.random.Generator) -> _Pattern:
    deg, cycles, half = rng.uniform(0, 90), rng.uniform(*GRID_CYCLES), rng.uniform(*GRID_HALF_WIDTH)
    ox, oy = rng.random(), rng.random()

    def t(xy: _Coords, size: int) -> np.ndarray:
        u, v = _rotate(xy, deg)
        period = 2.0 / cycles
        a, b = u / period + ox, v / period + oy
        d = np.minimum(np.abs(a - np.round(a)), np.abs(b - np.round(b))) * period  # to the nearest line
        return _soft_step(d - half, edge=2.0 / size)

    return t


_PATTERNS: dict[int, Callable[[np.random.Generator], _Pattern]] = {
    0: _stripes(STRIPE_ANGLES_DEG[0]), 1: _stripes(STRIPE_ANGLES_DEG[1]),
    2: _stripes(STRIPE_ANGLES_DEG[2]), 3: _stripes(STRIPE_ANGLES_DEG[3]),
    4: _checkerboard, 5: _dots, 6: _rings, 7: _grid_lines,
}
_BLOB_HUE = {8 + i: h for i, h in enumerate(BLOB_HUES_DEG)}


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg / 360.0) % 1.0, s, v), dtype=np.float32)


def _blobs(hue: float, rng: np.random.Generator) -> Callable[[_Coords, int], np.ndarray]:
    bg = _hsv(rng.uniform(0, 360), rng.uniform(0, BACKGROUND_MAX_SATURATION), rng.uniform(0.15, 0.85))
    blobs = []
    for _ in range(int(rng.integers(BLOB_COUNT[0], BLOB_COUNT[1] + 1))):
        cx, cy = (float(c) for c in rng.uniform(-0.6, 0.6, size=2))
        sigma = rng.uniform(*BLOB_SIGMA)
        color = _hsv(hue + rng.uniform(-HUE_JITTER_DEG, HUE_JITTER_DEG), rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
        blobs.append((cx, cy, sigma, color))

    def paint(xy: _Coords, size: int) -> np.ndarray:
        img = np.broadcast_to(bg, (size, size, 3)).copy()  # (H, W, 3)
        for cx, cy, sigma, color in blobs:
            r2 = (xy[0] - cx) ** 2 + (xy[1] - cy) ** 2
            alpha = np.clip(1.6 * np.exp(-r2 / (2 * sigma * sigma)), 0.0, 1.0)[..., None]  # a soft-edged disc
            img += alpha * (color - img)
        return img

    return paint


def generate(class_index: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class `class_index` (see DEMO_CLASSES): (size, size, 3) float32 in [0, 1]."""
    if not 0 <= class_index < len(DEMO_CLASSES):
        raise ValueError(f"class_index {class_index} out of range: valid 0-{len(DEMO_CLASSES) - 1}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if class_index in _PATTERNS:
        pattern = _PATTERNS[class_index](rng)
        c1, c2 = _two_colors(rng)

        def paint(xy: _Coords, n: int) -> np.ndarray:
            t = pattern(xy, n)[..., None]
            return c1 + t * (c2 - c1)
    else:
        paint = _blobs(_BLOB_HUE[class_index], rng)
    gx, gy = (float(g) for g in rng.uniform(-LIGHT_GRADIENT, LIGHT_GRADIENT, size=2))
    sigma = rng.uniform(*NOISE_SIGMA)
    xy = _grid(size)
    img = paint(xy, size) * (1.0 + gx * xy[0] + gy * xy[1])[..., None]
    img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)  # noise last: scalars do not depend on size
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """n labels, each class n // K or n // K + 1 times, in random order. (n,) int64."""
    k = len(DEMO_CLASSES)
    labels = np.arange(n, dtype=np.int64) % k
    if n % k:  # which classes get the remainder is random too
        labels[n - n % k:] = rng.permutation(k)[: n % k]
    return rng.permutation(labels)


def make_batch(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images with balanced classes, a pure function of (n, size, seed).

    Returns images (n, 3, size, size) float32 in [0, 1] and labels (n,) int64."""
    rng = np.random.default_rng(seed)
    labels = balanced_labels(n, rng)
    out = np.empty((n, size, size, 3), dtype=np.float32)
    for i, c in enumerate(labels):
        out[i] = generate(int(c), size, rng)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # (n, H, W, 3) -> (n, 3, H, W)
    return images, torch.from_numpy(labels)
