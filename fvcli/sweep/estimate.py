"""`fv sweep --estimate`: the wall time a sweep will take on this machine, measured before anything renders.

A sweep's time is almost all optimization steps, and a step's time depends on the model, the layer (how much of
the network runs before it), the size, the batch and the device -- things better measured than modelled. The
estimate plans the sweep exactly as `fv sweep` would (same batches, same shard, what is already done in the
directory subtracted; nothing is written), then times a few steps of one full batch at the cheapest and at the most
expensive layer of the plan (after warm-up steps; fvcli/budget/cost.py `step_seconds`) and fits seconds per step linear in the layer's counted
multiply-adds (fvcli/sweep/plan.py `layer_costs`). Each batch then costs steps x its layer's seconds per step x
(its images / the batch size); coarse-to-fine steps are timed at their own size. With `stop.converge` units can
stop early, so the figure is an upper bound. Model loading and the per-unit files are not in it (seconds).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..budget import step_seconds
from ..optvis.coarse import coarse_size
from .run import SweepJob


@dataclass
class Estimate:
    units: int  # units this shard still has to render
    batches: int
    batch_size: int
    seconds: float  # predicted wall time of the rendering
    probes: dict[str, float]  # layer -> measured seconds per step of a full batch
    upper_bound: bool  # stop.converge: units may stop early

    def describe(self) -> str:
        h, rem = divmod(int(round(self.seconds)), 3600)
        probes = ", ".join(f"{layer} {s:.3f} s/step" for layer, s in self.probes.items())
        return (f"{self.units} units in {self.batches} batch(es) of up to {self.batch_size}; measured {probes}; "
                f"predicted {'at most ' if self.upper_bound else ''}{h} h {rem // 60:02d} min "
                f"({self.seconds:.0f} s)")


def estimate(job: SweepJob) -> Estimate:
    recipe, bs = job.recipe, job.batch_size
    todo = job.todo
    per_unit_images = max(1, int(getattr(job.renderer, "images_per_unit", 1)))
    r = recipe.render
    coarse_steps = recipe.loop_settings().coarse_steps
    fine_steps = r.steps - coarse_steps
    if not todo:
        return Estimate(0, 0, bs, 0.0, {}, False)
    cost_of = {b.layer: b.cost / max(1, len(b.units)) for b in todo}  # per unit: the layer's, whatever the batch
    cheap, dear = (min(todo, key=lambda b: cost_of[b.layer]), max(todo, key=lambda b: cost_of[b.layer]))
    ends = {cheap.layer: cheap, dear.layer: dear}
    probes: dict[str, float] = {}
    coarse: dict[str, float] = {}
    for layer, b in ends.items():
        probes[layer] = step_seconds(job.model, recipe, b.units, bs, r.size)
        if coarse_steps:
            coarse[layer] = step_seconds(job.model, recipe, b.units, bs, coarse_size(r.size, r.coarse_scale))

    def fit(measured: dict[str, float], layer: str) -> float:
        """Seconds per step at `layer`: linear in its cost per unit through the two probes (one: that one)."""
        (l0, t0), (l1, t1) = measured.items() if len(measured) == 2 else [*measured.items()] * 2
        c0, c1 = cost_of[l0], cost_of[l1]
        return t0 if c1 == c0 else t0 + (t1 - t0) * (cost_of[layer] - c0) / (c1 - c0)

    seconds = 0.0
    units = 0
    for b in todo:
        missing = len(job.missing(b))
        units += missing
        share = len(b.units) * per_unit_images / bs  # the batch's images relative to the probe's full batch
        if recipe.stop.converge:
            share = missing / bs  # a stream renders only what is missing, `bs` at a time
        seconds += fine_steps * fit(probes, b.layer) * share
        if coarse_steps:
            seconds += coarse_steps * fit(coarse, b.layer) * share
    return Estimate(units, len(todo), bs, seconds, probes, recipe.stop.converge)
