"""The article's figures about *what* to optimize: objectives, dataset examples, diversity, interaction, progress
over steps, and the appendix row. Each builder renders with the article's method (color-decorrelated Fourier
parameterization, Adam 0.05, the footnote's transforms scaled to the image size) and returns a `FigureResult`.

The figures about *how* to optimize (the enemy, regularization, preconditioning, checkerboard gradients) are in
`fvcli/article/optimization.py`.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from ..optvis.coupled_objectives import Diversity, gram_cosines
from ..optvis.objectives import random_direction
from ..optvis.optim import BETAS as ADAM_BETAS
from ..outputs import to_uint8
from ..recipe import ParamRecipe, Recipe
from ..units.unit import Unit
from .core import Context, FigureResult, Panel, hf, with_render

log = logging.getLogger(__name__)

PROGRESS_STEPS = (1, 16, 64, 256, 1024, 2560)  # the article's 2560 steps and a few stops on the way
INTERPOLATION_FRAMES = 6  # lucid's interpolation notebook
APPENDIX_CHANNELS = 3  # channels in the appendix figure
EXAMPLES_TOP_K = 6  # dataset examples shown at each end


def article_recipe(ctx: Context, steps: int, thresholds: tuple[int, ...] = ()) -> Recipe:
    """The network's recipe with the article's method at this size (for library functions that take a recipe)."""
    r = replace(ctx.recipe, transforms=ctx.scaled_chain(),
                param=ParamRecipe(kind="fourier", decorrelate=True, sigmoid=ctx.recipe.param.sigmoid,
                                  decay_power=ctx.recipe.param.decay_power, decay_ramp=0))  # 1/f from step 0
    return with_render(r, steps=steps, thresholds=thresholds, precision="fp32", batch_size="auto",
                       beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],  # the article's Adam, whatever fv's default,
                       coarse=0.0, coarse_steps=0)  # at full size from the first step


def _panels(ctx: Context, labels: list[str], objectives: list, images: torch.Tensor, seeds: list[int],
            steps: int) -> list[Panel]:
    scores = [ctx.measure(o, images[b:b + 1])[0] for b, o in enumerate(objectives)]
    return [Panel(lab, images[b], scores[b], hf(images[b]), {"seed": seeds[b], "steps": steps,
                                                              "objective": objectives[b].describe()})
            for b, lab in enumerate(labels)]


def objectives_figure(ctx: Context) -> FigureResult:
    """Neuron, channel, layer (DeepDream), class logit and class probability, one unit each."""
    m, u = ctx.model, ctx.unit
    units = [Unit("neuron", u.layer, u.channel), Unit("channel", u.layer, u.channel), Unit("dream", u.layer),
             Unit("logit", m.logits_layer, ctx.class_index), Unit("prob", m.logits_layer, ctx.class_index)]
    names = ["neuron", "channel", "layer (DeepDream)", "class logit", "class probability"]
    objs = [x.objective(m) for x in units]
    seeds = [ctx.seed("objectives", x.key) for x in units]
    steps = ctx.base_steps
    img = ctx.render(objs, seeds, ctx.settings(steps))[-1].images
    panels = _panels(ctx, names, objs, img, seeds, steps)
    label = m.label(ctx.class_index)
    for p, x in zip(panels, units):
        p.detail = x.label if x.kind not in ("logit", "prob") or not label else f"{x.channel} {label}"
    return FigureResult(panels, 5, ", ".join(x.label for x in units), steps,
                        extra={"class_label": label})


def examples_figure(ctx: Context) -> FigureResult:
    """The channel's optimized image beside its dataset examples (fv examples' library functions)."""
    from ..examples import (
        ExampleSettings,
        examples_grid,
        list_images,
        run_examples,
        unit_examples,
    )

    assert ctx.images is not None, "the examples figure needs an image folder"
    u = ctx.unit
    folder = list_images(ctx.images)
    res = run_examples(ctx.model, [u], folder, ExampleSettings(top_k=EXAMPLES_TOP_K, workers=0, batch_size=16,
                                                                 tile=max(64, ctx.size)), resume=False)
    rec = unit_examples(res, 0)
    ex = examples_grid(rec, tile=max(64, min(ctx.size, 96)))  # (H, W, 3) uint8
    seed, steps = ctx.seed("examples", u.key), ctx.base_steps
    obj = u.objective(ctx.model)
    img = ctx.render([obj], [seed], ctx.settings(steps))[-1].images
    opt = Image.fromarray(to_uint8(img[0])).resize((ex.shape[0], ex.shape[0]), Image.BILINEAR)
    gap = np.full((ex.shape[0], 12, 3), 255, np.uint8)
    picture = np.concatenate([np.asarray(opt), gap, ex], axis=1)
    panels = [Panel(f"optimization {u.label}", img[0], ctx.measure(obj, img)[0], hf(img[0]),
                    {"seed": seed, "steps": steps})]
    top = [{"relpath": e["relpath"], "activation": e["activation"]} for e in rec["top"]]
    return FigureResult(panels, 1, u.label, steps, picture=picture,
                        extra={"images": str(ctx.images), "images_seen": rec["readable"], "top_examples": top})


def diversity_figure(ctx: Context) -> FigureResult:
    """Four facets of one channel rendered independently (same seeds) and jointly with the diversity term."""
    u = ctx.diversity_unit
    layer = u.layer if ctx.model.layer(u.layer).spatial is not None else ctx.unit.layer
    weight = ctx.recipe.variants.diversity_weight
    seeds = [ctx.seed("diversity", i) for i in range(4)]
    steps = ctx.base_steps
    obj = u.objective(ctx.model)
    plain = ctx.render([obj] * 4, seeds, ctx.settings(steps))[-1].images
    joint = ctx.render(obj + weight * Diversity(layer), seeds, ctx.settings(steps))[-1].images
    panels, cos = [], {}
    for name, imgs in (("without", plain), ("with", joint)):
        scores = ctx.measure(obj, imgs)
        with torch.no_grad():
            from ..models import Capture

            with Capture(ctx.model, [layer]) as cap:
                c = gram_cosines(cap(ctx.model.preprocess.apply(imgs.to(ctx.model.device)))[layer])
        off = c[~torch.eye(4, dtype=torch.bool, device=c.device)]
        cos[name] = float(off.mean())
        panels += [Panel(f"{name} #{i}", imgs[i], scores[i], hf(imgs[i]), {"seed": seeds[i]}) for i in range(4)]
    return FigureResult(panels, 4, u.label, steps, row_labels=["no diversity", "diversity"],
                        extra={"diversity_weight": weight, "diversity_layer": layer,
                               "mean_gram_cosine": cos})


def interaction_figure(ctx: Context) -> FigureResult:
    """Neuron arithmetic (a, b, a + b, a - b), a random direction, and an interpolation strip from a to b."""
    from ..figures.interpolation import interpolate

    m, a, b = ctx.model, ctx.unit, ctx.unit_b
    oa, ob = a.objective(m), b.objective(m)
    direction = random_direction(a.layer, m.layer(a.layer).channels, ctx.seed("interaction", "direction"))
    objs = [oa, ob, oa + ob, oa - ob, direction]
    labels = [a.label, b.label, "a + b", "a - b", "random direction"]
    seeds = [ctx.seed("interaction", lab) for lab in labels]
    steps = ctx.base_steps
    img = ctx.render(objs, seeds, ctx.settings(steps))[-1].images
    panels = _panels(ctx, labels, objs, img, seeds, steps)
    panels.append(Panel("", None))
    res = interpolate(m, article_recipe(ctx, steps), a, b, INTERPOLATION_FRAMES)
    for i, t in enumerate(res.ts):
        panels.append(Panel(f"t={t:.2f}", res.frames[i], res.score_a[i], hf(res.frames[i]),
                            {"score_b": res.score_b[i], "seed": res.seeds[i]}))
    return FigureResult(panels, INTERPOLATION_FRAMES, f"{a.label}, {b.label}", steps,
                        row_labels=["arithmetic", "interpolation"],
                        extra={"interpolation": {"a": a.label, "b": b.label, "score_a": res.score_a,
                                                 "score_b": res.score_b, "align_layer": res.align_layer}})


def progress_figure(ctx: Context) -> FigureResult:
    """The article's recipe at steps 1, 16, 64, 256, 1024 and 2560 (scaled): structure appears, then detail."""
    stops = sorted({ctx.steps(s) for s in PROGRESS_STEPS})
    u = ctx.unit
    obj, seed = u.objective(ctx.model), ctx.seed("progress", u.key)
    snaps = ctx.render([obj], [seed], ctx.settings(stops[-1], thresholds=stops))
    panels = [Panel(f"step {s.step}", s.images[0], ctx.measure(obj, s.images)[0], hf(s.images[0]),
                    {"step": s.step, "seed": seed}) for s in snaps if s.step in stops]
    return FigureResult(panels, len(panels), u.label, stops)


def appendix_figure(ctx: Context) -> FigureResult:
    """The Distill appendix row (neuron, channel, negative, 4 diversity facets) for a few channels of the layer."""
    from ..figures.panels import render_panels

    u = ctx.unit
    n = ctx.model.layer(u.layer).channels
    channels = list(dict.fromkeys((u.channel + k) % n for k in range(APPENDIX_CHANNELS)))
    units = [Unit("channel", u.layer, c) for c in channels]
    steps = ctx.base_steps
    panels, labels = [], []
    for row in render_panels(ctx.model, article_recipe(ctx, steps), units):
        labels.append(row.unit.label)
        for p in row.panels:
            panels.append(Panel(p.name.replace("channel-", ""), p.image, p.activation, hf(p.image),
                                {"unit": row.unit.label, "seed": p.seed, "gram_cosine": p.gram_cosine}))
    cols = len(panels) // max(1, len(labels))
    return FigureResult(panels, cols, ", ".join(labels), steps, row_labels=labels)
