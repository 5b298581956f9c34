"""Interpolation between two units over N frames (the article's "Interaction between Neurons").

The article's method, as lucid's aligned-interpolation notebook does it:
- objective: frame i of N maximises (1 - t_i) * A + t_i * B with t_i = i / (N - 1)
  (`coupled_objectives.Interpolate`);
- param: per-frame Fourier images plus shared low-resolution tensors, some shared by all frames and some blended
  linearly from the first to the last frame (`param.SharedImage.lucid`);
- a small alignment objective on a lower layer (`coupled_objectives.Alignment`) penalizes the squared difference
  of neighbouring frames' activations, so that analogous features land in the same place;
- one random transform per step shared by all frames (lucid draws one per batch), for the same reason.

The frames render at full size throughout (the shared param has one resolution: a recipe's coarse phase does not
apply, and the record says `coarse_steps: 0`).

Defaults: alignment at the main layer just before A's layer (mixed3b for mixed4a units of InceptionV1, as lucid's
notebook), weight 0.1, decay ratio 2 (lucid's `alignment` default).
Outputs (stem = A_KEY--B_KEY): STEM.png, the frames in one labelled strip; STEM-frameNN.png; STEM.json, one record.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import FvError
from ..models import Capture, LoadedModel
from ..optvis.coupled_objectives import Alignment, Interpolate
from ..optvis.loop import Snapshot, derive_seed, optimize
from ..optvis.objectives import Objective
from ..optvis.param import SharedImage
from ..optvis.penalties import regularizers
from ..optvis.preconditioners import make_preconditioner
from ..optvis.transforms import Schedule
from ..outputs import atomic_write_json, grid, save_png, to_uint8, versions
from ..recipe import Recipe
from ..runner.variants import check_weight, main_layer_before
from ..units.unit import Unit

ALIGN_WEIGHT = 0.1  # "a small alignment objective" (the article's footnote)
ALIGN_DECAY = 2.0  # lucid's alignment(layer, decay_ratio=2)
MAX_FRAMES = 64


def default_alignment_layer(model: LoadedModel, layer: str) -> str:
    """The main layer just before `layer` (mixed4a -> mixed3b); `layer` itself when it is the first."""
    return main_layer_before(model, layer)


@dataclass
class Interpolation:
    a: Unit  # or expr.ExprUnit
    b: Unit
    ts: tuple[float, ...]
    seeds: list[int]  # per frame: its own Fourier image
    shared_seed: int  # the shared and blended low-resolution tensors
    transform_seed: int  # one transform draw per step, shared by the frames
    align_layer: str | None
    align_weight: float
    align_decay: float
    objective: Objective
    snapshots: list[Snapshot]
    score_a: list[float]  # A's objective on each final frame (untransformed)
    score_b: list[float]
    seconds: float

    @property
    def stem(self) -> str:
        return f"{self.a.key}--{self.b.key}"

    @property
    def frames(self) -> torch.Tensor:  # (N, 3, H, W) in [0, 1]
        return self.snapshots[-1].images


def interpolate(model: LoadedModel, recipe: Recipe, a: Unit, b: Unit, frames: int = 6, *,
                align_layer: str | None = None, align_weight: float = ALIGN_WEIGHT, align_decay: float = ALIGN_DECAY,
                on_step: Callable[[int], None] | None = None) -> Interpolation:
    """Render `frames` images moving from unit `a` to unit `b` (see the module docstring)."""
    if not 2 <= frames <= MAX_FRAMES:
        raise FvError(f"bad number of frames {frames}: expected 2-{MAX_FRAMES}")
    check_weight(align_weight, "alignment weight")
    if not math.isfinite(align_decay) or align_decay <= 0:
        raise FvError(f"bad alignment decay ratio {align_decay}: expected > 0")
    lay = None
    if align_weight > 0:
        lay = align_layer or default_alignment_layer(model, a.layer)
        model.layer(lay)
    s = recipe.loop_settings()
    base = (recipe.render.seed, model.name, f"{a.key}--{b.key}")
    seeds = [derive_seed(*base, "frame", i) for i in range(frames)]
    shared_seed, transform_seed = derive_seed(*base, "shared"), derive_seed(*base, "transforms")

    obj_a, obj_b = a.objective(model), b.objective(model)
    interp = Interpolate.frames(obj_a, obj_b, frames)
    objective: Objective = interp if lay is None else interp + align_weight * Alignment(lay, align_decay)
    r = recipe.regularizers
    reg = regularizers(r.l1, r.l1_constant, r.tv, r.blur, r.bilateral)
    if reg is not None:
        objective = objective + reg

    h = w = s.size
    gens = [torch.Generator().manual_seed(x) for x in seeds]
    param = SharedImage.lucid(gens, h, w, shared_gen=torch.Generator().manual_seed(shared_seed),
                              decay_power=s.decay_power, decorrelate=s.decorrelate, sigmoid=s.sigmoid)
    param = param.to(model.device)
    same = [torch.Generator().manual_seed(transform_seed) for _ in range(frames)]  # identical draws per frame
    schedule = Schedule.build(s.transforms, s.steps, same, h, w, model.device)
    t0 = time.perf_counter()
    snaps = list(optimize(model, objective, param, schedule, s.steps, s.lr, s.thresholds,
                          channels_last=s.channels_last, precision=s.precision, on_step=on_step,
                          precondition=make_preconditioner(s.gradient), betas=s.betas,
                          beta1_ramp=s.beta1_schedule()))
    seconds = time.perf_counter() - t0
    sa, sb = score_frames(model, obj_a, obj_b, snaps[-1].images)
    return Interpolation(a, b, interp.ts, seeds, shared_seed, transform_seed, lay, align_weight, align_decay,
                         objective, snaps, sa, sb, seconds)


def score_frames(model: LoadedModel, obj_a: Objective, obj_b: Objective,
                 images: torch.Tensor) -> tuple[list[float], list[float]]:
    """A's and B's objectives on each (untransformed) frame."""
    with torch.no_grad(), Capture(model, obj_a.layers | obj_b.layers) as cap:
        x = images.to(model.device)
        acts = cap(model.preprocess.apply(x))
        return obj_a(acts, x).float().cpu().tolist(), obj_b(acts, x).float().cpu().tolist()


def interpolation_record(model: LoadedModel, recipe: Recipe, res: Interpolation) -> dict:
    n = len(res.ts)
    return {
        "kind": "interpolation",
        "a": res.a.label, "b": res.b.label, "a_key": res.a.key, "b_key": res.b.key,
        "objective": res.objective.describe(),
        "frames": [{"t": res.ts[i], "png": f"{res.stem}-frame{i:02d}.png", "seed": res.seeds[i],
                    "score_a": res.score_a[i], "score_b": res.score_b[i],
                    "scores": {str(s.step): float(s.scores[i]) for s in res.snapshots}} for i in range(n)],
        "strip": f"{res.stem}.png",
        "shared_seed": res.shared_seed, "transform_seed": res.transform_seed,
        "alignment": None if res.align_layer is None else {"layer": res.align_layer, "weight": res.align_weight,
                                                           "decay_ratio": res.align_decay},
        "param": "shared (per-frame fourier + shared and blended low-resolution tensors)",
        "model": model.name, "weights": model.weights_source, "weights_sha256": model.weights_sha256,
        "redirect_relu": model.redirect_relu,
        "recipe": recipe.to_dict(), "recipe_hash": recipe.hash(),
        "size": recipe.render.size, "coarse_steps": 0, "device": str(model.device),
        "seconds": round(res.seconds, 4), "versions": versions(),
    }


def write_interpolation(out_dir: Path, model: LoadedModel, recipe: Recipe, res: Interpolation) -> dict:
    """The frames (and earlier thresholds), the labelled strip and the record; the record last."""
    out_dir = Path(out_dir)
    frames = []
    for i in range(len(res.ts)):
        for s in res.snapshots[:-1]:
            save_png(out_dir / f"{res.stem}-frame{i:02d}.step{s.step:05d}.png", s.images[i])
        p = out_dir / f"{res.stem}-frame{i:02d}.png"
        save_png(p, res.frames[i])
        frames.append(p)
    strip = out_dir / f"{res.stem}.png"
    labels = [f"t={t:.2f}" for t in res.ts]
    save_png(strip, grid([to_uint8(f) for f in res.frames], labels, cols=len(res.ts),
                         tile=min(224, recipe.render.size)))
    rec = out_dir / f"{res.stem}.json"
    atomic_write_json(rec, interpolation_record(model, recipe, res))
    return {"strip": strip, "frames": frames, "record": rec}
