"""Choosing a schedule that fits the time, and choosing again as the time is spent.

`DeadlinePlanner` holds the batches still to render (their layer and number of images), the measured step costs and
the candidate schedules (best first). Its choice is the best schedule whose predicted time for everything left,
times the speed observed so far, fits in the time left before the deadline minus a reserve (model loading, the
files, finalize and the noise of a prediction: `RESERVE`). Before each batch the sweep asks again (`pick`), after it
reports what the batch took (`observe`): a machine slower than its probes (a busy node, thermal limits) raises the
speed factor, and the remaining units move to the best schedule that still fits -- the sweep adapts instead of
missing the deadline. A faster one moves them up again. Nothing fits: the cheapest schedule, and the plan says by
how much it will be late. Rows within `TIE` of the best that fits count as the same quality, and the cheapest of
them is taken.

`choose_for_budget` is the one-shot form for `fv render --budget SECONDS_PER_UNIT`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..recipe import Recipe
from .cost import StepCosts
from .durations import fmt_duration
from .schedules import RenderSchedule

RESERVE = 0.05  # of the time left, held back for what the step costs do not cover (and the prediction's noise)
# Rows whose measured top-1 is within this of the best that fits are the same quality for the planner (the table's
# resolution is 1/200: this is two classes of its 200): of those it takes the cheapest, finishing sooner for nothing.
TIE = 0.01
MIN_RESERVE_S = 30.0


@dataclass(frozen=True)
class BatchPlan:
    """What the planner needs of one batch to render: its id, layer and number of images."""

    id: str
    layer: str
    images: int


@dataclass
class DeadlinePlanner:
    base: Recipe
    schedules: Sequence[RenderSchedule]  # best first
    costs: StepCosts
    batches: Sequence[BatchPlan]  # what is left to render, in rendering order
    deadline: float  # time.monotonic() at the deadline
    clock: Callable[[], float] = time.monotonic
    speed: float = 1.0  # observed seconds / predicted seconds over the batches rendered so far
    history: list[dict] = field(default_factory=list)  # one entry per rendered batch (schedule, predicted, took)
    _left: dict[str, BatchPlan] = field(default_factory=dict)
    _chosen: dict[str, RenderSchedule] = field(default_factory=dict)
    _recipes: dict[str, Recipe] = field(default_factory=dict)
    _observed: float = 0.0
    _predicted: float = 0.0

    def __post_init__(self) -> None:
        self._left = {b.id: b for b in self.batches}

    def recipe_of(self, s: RenderSchedule) -> Recipe:
        if s.name not in self._recipes:
            self._recipes[s.name] = s.recipe(self.base)
        return self._recipes[s.name]

    def predicted(self, s: RenderSchedule) -> float:
        """Seconds to render all that is left on schedule `s`, at the speed observed so far."""
        return sum(self.by_layer(s).values())

    def by_layer(self, s: RenderSchedule) -> dict[str, float]:
        """Predicted seconds per layer of what is left on schedule `s` (a layer run alone can be checked by it)."""
        rec = self.recipe_of(s)
        out: dict[str, float] = {}
        for b in self._left.values():
            out[b.layer] = out.get(b.layer, 0.0) + self.speed * self.costs.seconds(rec, b.layer, b.images)
        return out

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def budget(self) -> float:
        left = self.time_left()
        return left - max(MIN_RESERVE_S, RESERVE * left)

    def choose(self) -> tuple[RenderSchedule, float, bool]:
        """(the best schedule that fits what is left -- the cheapest of those tied with it --, its predicted seconds,
        does it fit)."""
        return best_that_fits([(s, self.predicted(s)) for s in self.schedules], self.budget())

    def pick(self, batch_id: str) -> RenderSchedule:
        """The schedule for this batch (chosen now for it and everything after; the same again on a retry)."""
        if batch_id not in self._chosen:
            self._chosen[batch_id] = self.choose()[0]
        return self._chosen[batch_id]

    def observe(self, batch_id: str, seconds: float) -> None:
        """The batch is rendered and took `seconds`: update the speed factor, forget the batch."""
        b = self._left.pop(batch_id, None)
        s = self._chosen.get(batch_id)
        if b is None or s is None:
            return
        predicted = self.costs.seconds(self.recipe_of(s), b.layer, b.images)
        self._observed += seconds
        self._predicted += predicted
        self.speed = self._observed / max(self._predicted, 1e-9)
        self.history.append({"batch": batch_id, "schedule": s.name, "predicted_s": round(predicted, 3),
                             "seconds": round(seconds, 3), "speed": round(self.speed, 3)})

    def describe(self) -> str:
        """One paragraph: the choice, its expected quality, the predicted finish (or lateness)."""
        s, secs, fits = self.choose()
        finish = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + secs))
        left = self.time_left()
        others = ", ".join(f"{o.name} {fmt_duration(self.predicted(o))}" for o in self.schedules[:6] if o is not s)
        head = (f"schedule {s.name} ({s.size} px, {s.steps} steps{', ' + ' '.join(s.sets) if s.sets else ''}): "
                f"expected quality top-1 {s.top1:.2f} on the schedules table's classes; ")
        if fits:
            return head + (f"predicted {fmt_duration(secs)} for {len(self._left)} batches, finishing {finish} "
                           f"({fmt_duration(left - secs)} before the deadline). Others: {others}")
        return head + (f"NOT in time: even the cheapest schedule needs {fmt_duration(secs)}, and of the "
                       f"{fmt_duration(left)} left {fmt_duration(max(0.0, self.budget()))} are for rendering (the rest "
                       f"is held back for loading, files and finalize); finishing {finish}: render fewer units, shard "
                       f"the sweep or give it longer")


def best_that_fits(priced: Sequence[tuple[RenderSchedule, float]], budget: float) -> tuple[RenderSchedule, float, bool]:
    """Of (schedule, cost) pairs, best first: the cheapest of those that fit and are within TIE of the best that
    fits, or the cheapest of all when none fits (and False)."""
    fitting = [(s, c) for s, c in priced if c <= budget]
    if not fitting:
        s, c = min(priced, key=lambda p: p[1])
        return s, c, False
    best = max(s.top1 for s, _ in fitting)
    s, c = min(((s, c) for s, c in fitting if s.top1 >= best - TIE - 1e-9), key=lambda p: p[1])
    return s, c, True


def choose_for_budget(base: Recipe, schedules: Sequence[RenderSchedule], costs: StepCosts, layer_images:
                      Sequence[tuple[str, int]], seconds_per_unit: float) -> tuple[RenderSchedule, float, bool]:
    """`fv render --budget`: (the best schedule whose predicted seconds per unit fit -- the cheapest of those tied
    with it --, those seconds, fits)."""
    units = sum(n for _, n in layer_images)
    priced = [(s, sum(costs.seconds(s.recipe(base), layer, n) for layer, n in layer_images) / max(1, units))
              for s in schedules]
    return best_that_fits(priced, seconds_per_unit)
