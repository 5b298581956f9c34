"""Optimization: everything one feature-visualization render needs, from noise to a picture (the article's method).

The four nouns of the method, one idea per file:
- params (`param`: pixel, Fourier with 1/f scaling, shared; `maco`: phase only, with a natural `spectrum`;
  `color`: the decorrelated color space) -- how an image is represented while it is optimized;
- `transforms` -- stochastic robustness (pad, jitter, scale, rotate, crop, ...) drawn per image;
- objectives (`objectives`: neuron, channel, layer, class, direction; `coupled_objectives`: diversity, alignment,
  interpolation; `penalties` and `bilateral`: L1, TV, blur) -- what we want more of, one score per image;
- the loop (`loop`), with its optimizer (`optim`) and gradient preconditioners (`preconditioners`).
`metrics` measures a picture (its high-frequency energy). Nothing here reads files of its own or knows about
sweeps: the runner (fvcli/runner) feeds it units and writes what it yields.
"""
from __future__ import annotations

from .loop import (
    LoopSettings,
    Snapshot,
    derive_seed,
    optimize,
    render_batch,
    unit_generators,
)
from .objectives import Objective, PerImage
from .param import make_param

__all__ = ["LoopSettings", "Objective", "PerImage", "Snapshot", "derive_seed", "make_param", "optimize",
           "render_batch", "unit_generators"]
