"""What a step costs on this machine: timed, not modelled (shared by `fv sweep --estimate`, `--deadline`, `--budget`).

A step's time depends on the model, the layer (how much of the network runs before it), the size, the batch and the
device. `step_seconds` times a few steps of one full batch (after warm-up steps); `probe_costs` does so at the
cheapest and the most expensive layer of a plan, at every size the candidate schedules render at, and `StepCosts`
fits seconds per step linear in the layer's counted multiply-adds (fvcli/sweep/plan.py `layer_costs`) through those
two probes. A schedule's price for a batch is then its steps x that fit x (the batch's images / the batch size), the
coarse phase of a coarse-to-fine schedule at its own size, x the transformed copies of each image a step runs (the
`copies` transform step: n copies are n images through the network; the probes are kept per copy, so a schedule
that adds copies to the probed recipe, or drops them, is priced for what it runs).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from ..models import LoadedModel
from ..optvis.coarse import coarse_size
from ..optvis.loop import render_batch
from ..optvis.objectives import PerImage
from ..optvis.transforms import copies
from ..recipe import Recipe
from ..runner.batch import unit_seed
from ..units.unit import Unit

PROBE_WARMUP = 2  # steps not timed (allocations, oneDNN's first-call kernel choice)
PROBE_STEPS = 3  # steps timed per probe


def step_seconds(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], images: int, size: int) -> float:
    """Measured seconds per optimization step of `images` images of these units at `size` px."""
    units = (list(units) * images)[:images]
    objective = PerImage(tuple(u.objective(model) for u in units))
    seeds = [unit_seed(recipe, model, u) for u in units]
    full = recipe.loop_settings()
    settings = replace(full, steps=PROBE_WARMUP + PROBE_STEPS, thresholds=(), size=size, coarse_steps=0,
                       transforms=full.transforms if size == recipe.render.size else full.coarse_transforms)
    stamps: list[float] = []

    def on_step(_s: int) -> None:
        if model.device.type == "cuda":  # the GPU runs behind the host: time what it did, not what was queued
            torch.cuda.synchronize(model.device)
        stamps.append(time.perf_counter())

    for _ in render_batch(model, objective, seeds, settings, on_step=on_step):
        pass
    return (stamps[-1] - stamps[PROBE_WARMUP - 1]) / PROBE_STEPS


def phases(recipe: Recipe) -> list[tuple[int, int]]:
    """[(size, steps)] of a recipe's render: the coarse phase (if any) at its size, then the full size."""
    coarse = recipe.loop_settings().coarse_steps
    r = recipe.render
    out = [(coarse_size(r.size, r.coarse_scale), coarse)] if coarse else []
    return out + [(r.size, r.steps - coarse)]


def schedule_sizes(schedules: Iterable, base: Recipe) -> set[int]:
    """Every size the schedules render at on top of `base` (their coarse phases included): the sizes to probe."""
    return {size for s in schedules for size, steps in phases(s.recipe(base)) if steps}


@dataclass
class StepCosts:
    """Measured seconds per step of a full batch, per size, at two layers; linear in the layer's cost in between."""

    batch_size: int
    cost_of: Mapping[str, float]  # layer -> multiply-adds per unit (any fixed size: only their ratios are used)
    probes: dict[int, dict[str, float]] = field(default_factory=dict)  # size -> {layer: seconds per step}

    def per_step(self, size: int, layer: str) -> float:
        measured = self.probes[size]
        (l0, t0), (l1, t1) = measured.items() if len(measured) == 2 else [*measured.items()] * 2
        c0, c1 = self.cost_of[l0], self.cost_of[l1]
        return t0 if c1 == c0 else max(0.0, t0 + (t1 - t0) * (self.cost_of[layer] - c0) / (c1 - c0))

    def seconds(self, recipe: Recipe, layer: str, images: float) -> float:
        """Predicted seconds to render `images` images of `layer` with `recipe` (a batch: its length)."""
        share = images / self.batch_size * copies(recipe.transforms)  # images through the network per image
        return sum(steps * self.per_step(size, layer) * share for size, steps in phases(recipe) if steps)


def probe_costs(model: LoadedModel, recipe: Recipe, units_by_layer: Mapping[str, Sequence[Unit]],
                cost_of: Mapping[str, float], batch_size: int, sizes: Iterable[int]) -> StepCosts:
    """Time `batch_size` images at the cheapest and the dearest layer, at each of `sizes` (kept per copy)."""
    layers = sorted(units_by_layer, key=lambda ly: cost_of[ly])
    ends = list(dict.fromkeys([layers[0], layers[-1]]))
    costs = StepCosts(batch_size, dict(cost_of))
    n = copies(recipe.transforms)
    for size in sorted(set(sizes)):
        costs.probes[size] = {ly: step_seconds(model, recipe, units_by_layer[ly], batch_size, size) / n for ly in ends}
    return costs
