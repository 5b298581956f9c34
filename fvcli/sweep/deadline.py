"""`fv sweep --deadline`: a sweep whose units are rendered on the best measured schedule that finishes in time.

`ScheduledRenderer` wraps the sweep's renderer: before each batch it asks the planner (fvcli/budget/planner.py) for
the schedule of that batch -- the best one whose predicted time for everything left fits before the deadline, at the
speed observed so far -- renders the batch on that schedule, and reports how long it took, so a sweep that falls
behind moves its remaining units to a cheaper schedule. Each unit's record says which schedule it got
(`schedule: {name, size, steps, set, expected_top1}`). A deadline sweep is its own directory (`-deadline` after the
recipe's): its units may differ in schedule, which a plain sweep's never do. A resumed deadline sweep re-plans what
is left against the deadline it is given then. The pictures depend on the schedule each batch got, i.e. on timing:
a deadline sweep is resumable and never mixes files, but it is not byte-reproducible the way a plain sweep is.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..budget import BatchPlan, DeadlinePlanner, RenderSchedule, StepCosts, probe_costs
from ..budget.cost import schedule_sizes
from ..budget.schedules import candidates
from ..errors import FvError
from ..models import LoadedModel
from ..recipe import Recipe
from .plan import PlannedBatch
from .renderers import BatchRenderer, ChannelRenderer, UnitOutput
from .run import SweepJob


@dataclass
class ScheduledRenderer:
    inner: BatchRenderer
    planner: DeadlinePlanner | None = None  # set once the job is planned (the planner prices the job's batches)

    @property
    def images_per_unit(self) -> int:
        return int(getattr(self.inner, "images_per_unit", 1))

    def identity(self) -> dict:
        ident = dict(self.inner.identity())
        name = ident.get("name", "unit")
        ident["name"] = "deadline" if name == "unit" else f"{name}-deadline"
        return ident

    def __call__(self, model: LoadedModel, recipe: Recipe, batch: PlannedBatch,
                 on_step: Callable[[int], None] | None = None) -> list[UnitOutput]:
        if self.planner is None:
            raise FvError("internal: a deadline sweep rendered before it was planned")
        s = self.planner.pick(batch.id)
        t0 = time.monotonic()
        outs = self.inner(model, self.planner.recipe_of(s), batch, on_step)
        self.planner.observe(batch.id, time.monotonic() - t0)
        for o in outs:
            o.record["schedule"] = s.describe()
        return outs


def check_deadline_recipe(recipe: Recipe) -> None:
    if recipe.stop.converge:
        raise FvError("--deadline chooses each batch's steps itself; it cannot be combined with stop.converge "
                      "(drop --set stop.converge=true)")


def plan_deadline(job: SweepJob, renderer: ScheduledRenderer, deadline: float,
                  schedules: Sequence[RenderSchedule], size: int | None = None,
                  clock: Callable[[], float] = time.monotonic) -> DeadlinePlanner:
    """Time this machine at the sizes the candidate schedules use and attach the planner to `renderer`.

    `deadline`: `clock()` at the deadline (the probes' own time counts against it)."""
    cands = candidates(tuple(schedules), size)
    per_unit = renderer.images_per_unit
    todo = job.todo
    units_by_layer: dict = {}
    cost_of: dict[str, float] = {}
    for b in todo:
        units_by_layer.setdefault(b.layer, b.units)
        cost_of[b.layer] = b.cost / max(1, len(b.units))
    batches = [BatchPlan(b.id, b.layer, len(b.units) * per_unit) for b in todo]
    costs = probe_costs(job.model, job.recipe, units_by_layer, cost_of, job.batch_size,
                        schedule_sizes(cands, job.recipe)) if todo else \
        StepCosts(job.batch_size, {})
    planner = DeadlinePlanner(job.recipe, cands, costs, batches, deadline, clock=clock)
    renderer.planner = planner
    return planner


def deadline_renderer(renderer: BatchRenderer | None) -> ScheduledRenderer:
    return ScheduledRenderer(renderer or ChannelRenderer())


def usage(planner: DeadlinePlanner) -> str:
    """What ran: batches per schedule and the speed observed against the probes."""
    if not planner.history:
        return "deadline: nothing rendered"
    counts: dict[str, int] = {}
    for h in planner.history:
        counts[h["schedule"]] = counts.get(h["schedule"], 0) + 1
    parts = ", ".join(f"{n} batch(es) on {name}" for name, n in counts.items())
    return f"deadline: {parts}; observed {planner.speed:.2f}x the predicted time"
