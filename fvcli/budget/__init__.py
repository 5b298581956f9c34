"""Budgets and deadlines: the best picture that fits the time (`fv sweep --deadline`, `fv render --budget`).

A researcher with a night, not a step count, in mind asks for "the best pictures of these layers by 8 am". This stage
answers with measurements, not guesses: fvcli/budget/schedules.yaml lists render schedules (size, steps, the early-quality
levers) with the quality each reached on the TUNE200 classes of the real MobileNetV2
(scripts/bench_time_to_quality.py, docs/reports/time-to-quality.md); `cost` times a few steps of this machine at the
sizes those schedules use (as `fv sweep --estimate` does); `planner` picks the best schedule whose predicted time fits,
and -- as batches finish -- compares what they took with what was predicted and moves the remaining units to a
cheaper (or better) schedule when the machine turns out slower (or faster) than planned.

The parts: schedules.py (the table and applying a schedule to a recipe), cost.py (probes and the per-batch price),
planner.py (choosing and re-choosing), for_render.py (`fv render --budget`), durations.py (`8h`, `1h30m`, `06:30`).
"""
from __future__ import annotations

from .cost import StepCosts, probe_costs, step_seconds
from .durations import parse_deadline
from .for_render import BudgetChoice, plan_render_budget
from .planner import BatchPlan, DeadlinePlanner, choose_for_budget
from .schedules import RenderSchedule, load_schedules

__all__ = [
    "BatchPlan",
    "BudgetChoice",
    "DeadlinePlanner",
    "RenderSchedule",
    "StepCosts",
    "choose_for_budget",
    "load_schedules",
    "parse_deadline",
    "plan_render_budget",
    "probe_costs",
    "step_seconds",
]
