"""Render quality with known ground truth: does a class visualization carry the class's real features?

The `demo` model is trained by fv on procedural classes (fvcli/models/demo_data.py) and ships with an independently trained
judge (another seed, other training images). For a recipe variant, every class logit of the model is rendered and
the images are scored three ways:

  transfer   fraction of renders the *judge* classifies as the intended class. An image that only exploits the
             rendering model's quirks (the adversarial high-frequency patterns of plain pixel optimization) fools
             that model but not another one; an image with the class's real look fools both.
  own_conf   the rendering model's own softmax probability of the class (mean over renders).
  hf_energy  fraction of spectral power above 0.25 cycles/pixel (fvcli.optvis.metrics; lower = less high-frequency noise).

`VARIANTS` are the steps of the article's argument: plain pixel optimization, pixel + L1/TV/blur regularizers,
pixel + transformation robustness, the Fourier + decorrelated parameterization alone, and the full recipe.
scripts/bench_quality.py prints the table; tests/test_demo.py checks that the full recipe transfers and plain pixel
optimization does not.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..models import Capture, LoadedModel
from ..optvis.metrics import high_frequency_energy
from ..recipe import load_recipe
from ..runner.job import render_units
from ..units.unit import Unit

# Recipe overrides (`--set` syntax) per variant, on top of the default recipe. The steps of the article's argument
# run with the article's optimization (Adam 0.9 / 0.999, its 1/f spectrum from the first step, full size from the
# first step), not fv's default's (beta1 0.5, a steeper spectrum first, a coarse phase at 224 px and more).
ARTICLE_OPT = ["render.beta1=0.9", "param.decay_ramp=0", "render.coarse_steps=0"]
PIXEL = ARTICLE_OPT + ["param.kind=pixel", "param.decorrelate=false", "transforms=none"]
VARIANTS: dict[str, list[str]] = {
    "pixel": PIXEL,
    # L1 and TV at 1/100 of the weights lucid's notebooks use (0.05, 0.25): fv's penalties are sums over the
    # 12,288 values of a 64 px image, and at full weight they pull it to a constant (own confidence 0.08, measured);
    # blur-each-step at weight 1 (one 3x3 blur per step).
    "pixel+L1/TV/blur": PIXEL + ["regularizers.l1=0.0005", "regularizers.tv=0.0025", "regularizers.blur=1.0"],
    "pixel+transforms": ARTICLE_OPT + ["param.kind=pixel", "param.decorrelate=false", "transforms=article"],
    "fourier+decorrelation": ARTICLE_OPT + ["param.kind=fourier", "param.decorrelate=true", "transforms=none"],
    "article (full)": ARTICLE_OPT + ["param.kind=fourier", "param.decorrelate=true", "transforms=article"],
    # The article's suite is in pixels of a 224 px image: pad 16 and jitter 16 + 8 shift a 64 px image by up to
    # 3/8 of its width. The same suite at 64/224 scale (pad 5, jitter 5, jitter 2; scales and angles unchanged).
    "article (scaled to 64 px)": ARTICLE_OPT + ["param.kind=fourier", "param.decorrelate=true",
                                  "transforms=[{pad: 5}, {jitter: 5}, {scale: [1, 0.975, 1.025, 0.95, 1.05]}, "
                                  "{rotate: [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5]}, {jitter: 2}, {crop: true}]"],
    # fv's default (= configs/quality.yaml): the stronger suite written for 224 px, scaled to the render size
    "quality (the default)": ["param.kind=fourier", "param.decorrelate=true", "transforms=strong",
                              "render.transforms_at_size=224"],
}
DEFAULT = VARIANTS["quality (the default)"]
# The levers of time to quality (docs/reports/time-to-quality.md), each on top of the default: scripts/bench_quality.py
# --levers measures them here, scripts/bench_imagenet_quality.py on the real MobileNetV2.
LEVERS: dict[str, list[str]] = {
    "quality (the default)": DEFAULT,
    "+ stop.converge": DEFAULT + ["stop.converge=true"],
    "+ coarse 3/4": DEFAULT + ["render.coarse=0.75"],
    "+ coarse 1/2": DEFAULT + ["render.coarse=0.5"],
    "+ cosine lr": DEFAULT + ["render.lr_schedule=cosine"],
    "+ coarse 3/4 + cosine": DEFAULT + ["render.coarse=0.75", "render.lr_schedule=cosine"],
}


@dataclass(frozen=True)
class QualityRow:
    variant: str
    transfer: float  # fraction of renders the judge classifies as the intended class
    own_conf: float  # mean softmax probability of the intended class under the rendering model
    hf_energy: float  # mean fraction of spectral power above 0.25 cycles/pixel
    renders: int
    seconds: float


def classify(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (B, classes) of images (B, 3, H, W) in [0, 1], resized to the model's native size."""
    x = images.to(model.device).float()
    if x.shape[-1] != model.native_size or x.shape[-2] != model.native_size:
        x = torch.nn.functional.interpolate(x, size=(model.native_size,) * 2, mode="bilinear", align_corners=False,
                                            antialias=True)
    with torch.no_grad(), Capture(model, [model.logits_layer]) as cap:
        logits = cap(model.preprocess.apply(x))[model.logits_layer]
    return logits.float().softmax(dim=1).cpu()


def measure(model: LoadedModel, judge: LoadedModel, variant: str, sets: Sequence[str], classes: Sequence[int],
            steps: int, size: int, seeds: int = 1, batch_size: int = 12) -> QualityRow:
    """Render the logit of every class in `classes` with the default recipe + `sets`, once per run seed 0..seeds-1,
    and score the renders (see the module docstring)."""
    t0 = time.perf_counter()
    correct: list[bool] = []
    conf: list[float] = []
    hf: list[float] = []
    for seed in range(seeds):
        # transforms in pixels as written unless a variant says otherwise (the article's rows are its pixels)
        rec = load_recipe(None, ["render.transforms_at_size=null"] + list(sets) + [f"render.steps={steps}", f"render.size={size}", f"render.seed={seed}",
                                              f"model.name={model.name}", "render.device=cpu"])
        for i in range(0, len(classes), batch_size):
            chunk = list(classes[i:i + batch_size])
            units = [Unit("logit", model.logits_layer, c) for c in chunk]
            # planned batches, or a stream when the variant stops converged units (stop.converge)
            imgs = torch.stack([it["image"] for it in render_units(model, rec, units, None, batch_size=batch_size)
                                ["items"]])
            target = torch.tensor(chunk)
            correct += (classify(judge, imgs).argmax(1) == target).tolist()
            conf += classify(model, imgs)[torch.arange(len(chunk)), target].tolist()
            hf += high_frequency_energy(imgs).tolist()
    n = len(correct)
    return QualityRow(variant, sum(correct) / n, sum(conf) / n, sum(hf) / n, n, round(time.perf_counter() - t0, 1))


def quality_table(model: LoadedModel, judge: LoadedModel, classes: Sequence[int], steps: int, size: int,
                  seeds: int = 1, variants: Mapping[str, Sequence[str]] = VARIANTS,
                  on_row: Callable[[QualityRow], None] | None = None) -> list[QualityRow]:
    """`measure` for every variant, in order."""
    rows = []
    for name, sets in variants.items():
        row = measure(model, judge, name, sets, classes, steps, size, seeds)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
