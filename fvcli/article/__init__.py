"""`fv article`: every figure of the Distill article (Olah, Mordvintsev, Schubert 2017) from one command.

FIGURES lists them in the article's order; `build_article` builds the requested ones into a directory as
FIGURE.png + FIGURE.json, skips those already built with the same identity (resumable, like a sweep), and writes
index.html. Modules: core (context, panels, writing), network (which network and units), figures (objectives,
examples, diversity, interaction, progress, appendix), optimization (enemy, regularization, preconditioning,
checkerboard), page (the HTML).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FvError, did_you_mean
from .core import Context, Figure, figure_done, write_figure
from .figures import (
    appendix_figure,
    diversity_figure,
    examples_figure,
    interaction_figure,
    objectives_figure,
    progress_figure,
)
from .optimization import (
    checkerboard_figure,
    enemy_figure,
    preconditioning_figure,
    regularization_figure,
)
from .page import write_page

log = logging.getLogger(__name__)

FIGURES: tuple[Figure, ...] = (
    Figure("objectives", "Optimization objectives",
           "Different objectives for the same network: a neuron (one position of a channel), a whole channel, a "
           "layer (DeepDream: all of its activations), a class logit and a class probability. The article notes "
           "that logits give better pictures: a probability can also rise by suppressing the other classes.",
           objectives_figure),
    Figure("examples", "Dataset examples vs optimization",
           "Optimization shows what a channel responds to in isolation; the dataset examples that activate it most "
           "(and least) show what it responds to in practice. Both are needed.", examples_figure, needs_images=True),
    Figure("diversity", "Diversity",
           "Four images of the same channel from the same seeds, optimized independently (top) and jointly with the "
           "diversity term, which pushes the Gram matrices of the images apart (bottom).", diversity_figure),
    Figure("interaction", "Interaction between neurons",
           "Neuron arithmetic: two channels, their sum and difference, a random direction in the layer's activation "
           "space, and an interpolation from one channel to the other (shared parameterization and alignment).",
           interaction_figure),
    Figure("enemy", "The enemy of feature visualization",
           "Plain pixel optimization without any regularization: as steps go by the image fills with "
           "high-frequency patterns that activate the network but mean nothing. HF is the fraction of spectral "
           "power above a quarter of the sampling rate.", enemy_figure),
    Figure("regularization", "The spectrum of regularization",
           "The same unit and seed under each method: none; frequency penalization (L1, total variation, blur, "
           "bilateral filter); transformation robustness (jitter, + scale, + rotate); preconditioning (Fourier, + "
           "color decorrelation); gradient preconditioners (gradient blur, Laplacian-pyramid normalization, "
           "L-infinity sign steps); and the article's combination.", regularization_figure),
    Figure("preconditioning", "Preconditioning and the direction of steepest descent",
           "The first step of each method from the same start image: steepest descent under L2 (the pixel "
           "gradient), under L-infinity (its sign), and under the metrics of the Fourier and the decorrelated "
           "Fourier parameterizations, plus the blurred and Laplacian-normalized gradients. Grey is zero. "
           "L-infinity has more high-frequency energy than L2; the decorrelated space has much less.",
           preconditioning_figure),
    Figure("checkerboard", "Checkerboard gradients",
           "The gradient magnitude of a channel with respect to a flat grey and a noise image, for an early layer "
           "and the unit's layer: strided convolutions and pooling leave a regular grid in the gradient.",
           checkerboard_figure),
    Figure("progress", "Progress over steps",
           "The article's recipe (2560 steps of Adam at 0.05, decorrelated Fourier space, pad/jitter/scale/rotate) "
           "at steps 1, 16, 64, 256, 1024 and 2560.", progress_figure),
    Figure("appendix", "The appendix row",
           "As in the article's appendix, for a few channels of one layer: the neuron objective, the channel, its "
           "negative, and four diversity facets.", appendix_figure),
)
BY_ID = {f.id: f for f in FIGURES}


def select_figures(names: Sequence[str]) -> list[Figure]:
    """Figures by id (all when none are named), always in the article's order."""
    for n in names:
        if n not in BY_ID:
            raise FvError(f"unknown figure {n!r}{did_you_mean(n, BY_ID)}; valid: {', '.join(BY_ID)}")
    wanted = set(names) or set(BY_ID)
    return [f for f in FIGURES if f.id in wanted]


@dataclass
class ArticleReport:
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already built with the same identity
    not_built: dict[str, str] = field(default_factory=dict)  # id -> reason
    page: Path | None = None


def build_article(ctx: Context, out: Path, names: Sequence[str] = (),
                  on_figure: Callable[[str, str], None] | None = None) -> ArticleReport:
    """Build the requested figures into `out` and write index.html (see the module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = ArticleReport()
    figures = select_figures(names)
    for fig in figures:
        number = FIGURES.index(fig) + 1
        if fig.needs_images and ctx.images is None:
            report.not_built[fig.id] = "needs an image folder (--images DIR)"
            continue
        if figure_done(out, ctx, fig):
            report.skipped.append(fig.id)
            if on_figure:
                on_figure(fig.id, "skipped")
            continue
        log.info("figure %d (%s) on %s", number, fig.id, ctx.model.name)
        write_figure(out, ctx, fig, number, fig.build(ctx))
        report.built.append(fig.id)
        if on_figure:
            on_figure(fig.id, "built")
    report.page = write_page(out, FIGURES, ctx.network.note, ctx.model.name, report.not_built)
    return report


__all__ = ["FIGURES", "ArticleReport", "Context", "build_article", "select_figures"]
