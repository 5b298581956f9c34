"""`fv render --budget SECONDS_PER_UNIT`: the best measured schedule whose predicted seconds per unit fit.

The render's units are priced as one batch of the render's batch size (or fewer, when there are fewer units) on each
candidate schedule, with the step costs timed on this machine at every size the candidates use (fvcli/budget/cost.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models import LoadedModel
from ..models.layer_costs import layer_costs
from ..recipe import Recipe
from ..units.unit import Unit
from .cost import probe_costs, schedule_sizes
from .planner import choose_for_budget
from .schedules import RenderSchedule, candidates, load_schedules

DEFAULT_PROBE_BATCH = 16  # images timed per probe when the recipe's batch size is `auto`


@dataclass(frozen=True)
class BudgetChoice:
    schedule: RenderSchedule
    recipe: Recipe  # the render's recipe on that schedule
    seconds_per_unit: float  # predicted on this machine
    fits: bool

    def describe(self, budget: float) -> str:
        s = self.schedule
        verdict = "within" if self.fits else "OVER (the cheapest measured schedule)"
        return (f"budget {budget:g} s/unit: schedule {s.name} ({s.size} px, {s.steps} steps"
                f"{', ' + ' '.join(s.sets) if s.sets else ''}), predicted {self.seconds_per_unit:.2f} s/unit on this "
                f"machine, {verdict}; expected quality top-1 {s.top1:.2f} on the schedules table's classes")


def plan_render_budget(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], seconds_per_unit: float,
                       size: int | None = None, schedules: Sequence[RenderSchedule] | None = None) -> BudgetChoice:
    """Choose the schedule for a render of `units` that fits `seconds_per_unit` (`size`: only schedules at it)."""
    cands = candidates(tuple(schedules) if schedules is not None else load_schedules(), size)
    by_layer: dict[str, list[Unit]] = {}
    for u in units:
        by_layer.setdefault(u.layer, []).append(u)
    bs = recipe.render.batch_size
    batch = min(len(units), bs if isinstance(bs, int) else DEFAULT_PROBE_BATCH)
    cost_of = layer_costs(model, list(by_layer), recipe.render.size)
    costs = probe_costs(model, recipe, by_layer, cost_of, batch, schedule_sizes(cands, recipe))
    s, per_unit, fits = choose_for_budget(recipe, cands, costs, [(ly, len(us)) for ly, us in by_layer.items()],
                                          seconds_per_unit)
    return BudgetChoice(s, s.recipe(recipe), per_unit, fits)
