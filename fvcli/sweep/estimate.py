"""`fv sweep --estimate`: the wall time a sweep will take on this machine, measured before anything renders.

A sweep's time is almost all optimization steps, and a step's time depends on the model, the layer (how much of
the network runs before it), the size, the batch and the device -- things better measured than modelled. The
estimate plans the sweep exactly as `fv sweep` would (same batches, same shard, what is already done in the
directory subtracted; nothing is written), then times a few steps of one full batch at the cheapest and at the most
expensive layer of the plan (after warm-up steps) and fits seconds per step linear in the layer's counted
multiply-adds (fvcli/models/layer_costs.py); fvcli/budget/cost.py does both, for `--deadline` too. Each batch then
costs steps x its layer's seconds per step x (its images / the batch size); coarse-to-fine steps are timed at their
own size. With `stop.converge` units can
stop early, so the figure is an upper bound. Model loading and the per-unit files are not in it (seconds).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..budget import probe_costs
from ..budget.cost import phases
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
    if not todo:
        return Estimate(0, 0, bs, 0.0, {}, False)
    per_unit_images = max(1, int(getattr(job.renderer, "images_per_unit", 1)))
    units_by_layer: dict = {}
    cost_of: dict[str, float] = {}
    for b in todo:
        units_by_layer.setdefault(b.layer, b.units)
        cost_of[b.layer] = b.cost / max(1, len(b.units))  # per unit: the layer's, whatever the batch
    costs = probe_costs(job.model, recipe, units_by_layer, cost_of, bs, [sz for sz, n in phases(recipe) if n])
    seconds = 0.0
    units = 0
    for b in todo:
        missing = len(job.missing(b))
        units += missing
        # a stream renders only what is missing, `bs` at a time; a batch renders all its images
        images = missing if recipe.stop.converge else len(b.units) * per_unit_images
        seconds += costs.seconds(recipe, b.layer, images)
    return Estimate(units, len(todo), bs, seconds, costs.probes[recipe.render.size], recipe.stop.converge)
