"""Render schedules and the quality each was measured to reach (fvcli/budget/schedules.yaml).

A schedule is what a deadline may trade: the render size, the number of steps and the early-quality levers (a few
`--set` items). Its quality is a measurement, never a model: the open judge's top-1 on the TUNE200 classes of the real
MobileNetV2 (scripts/bench_time_to_quality.py; docs/reports/time-to-quality.md says how each row was measured), with
the mean class logit as the tie-breaker. The table is chosen from, not tuned per sweep: a deadline picks the row with
the best quality that fits, whatever the model -- the MobileNetV2's classes stand in for "how good is a picture after
this many steps at this size", which is the part of the answer that does not depend on the machine.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FvError
from ..recipe import Recipe, from_dict, parse_set, read_yaml, set_path

TABLE = Path(__file__).resolve().parent / "schedules.yaml"  # written by scripts/ttq_schedules.py
ENV = "FV_SCHEDULES"  # another table (your own measurements, same format) instead of the shipped one


@dataclass(frozen=True)
class RenderSchedule:
    name: str
    size: int
    steps: int
    sets: tuple[str, ...]  # `--set` items on top of the sweep's recipe (the levers)
    top1: float  # the open judge's top-1 on TUNE200 at this schedule's last step (0-1)
    objective: float  # the mean class logit there (tie-breaker)

    def recipe(self, base: Recipe) -> Recipe:
        """`base` rendered on this schedule: its size and steps, its levers on top, thresholds past the end dropped."""
        raw = copy.deepcopy(base.to_dict())
        render = raw["render"]
        render.update(size=self.size, steps=self.steps,
                      thresholds=[t for t in render.get("thresholds") or [] if t < self.steps])
        for item in self.sets:
            parts, value = parse_set(item)
            set_path(raw, parts, value)
        return from_dict(raw)

    def describe(self) -> dict:
        """What a record says about the schedule a unit was rendered with."""
        return {"name": self.name, "size": self.size, "steps": self.steps, "set": list(self.sets),
                "expected_top1": self.top1}


def load_schedules(path: Path | None = None) -> tuple[RenderSchedule, ...]:
    """The measured schedules, best first (top-1, then objective); $FV_SCHEDULES names another table."""
    path = Path(path or os.environ.get(ENV) or TABLE)
    if not path.is_file():
        raise FvError(f"schedules table {path} not found" + (f" (${ENV})" if os.environ.get(ENV) else ""))
    raw = read_yaml(path)
    rows = raw.get("schedules") if isinstance(raw, dict) else None
    if not isinstance(rows, list) or not rows:
        raise FvError(f"{path}: expected a list `schedules:` of measured render schedules")
    out = []
    for i, r in enumerate(rows):
        try:
            out.append(RenderSchedule(str(r["name"]), int(r["size"]), int(r["steps"]),
                                      tuple(str(s) for s in r.get("set") or ()), float(r["top1"]),
                                      float(r.get("objective", 0.0))))
        except (KeyError, TypeError, ValueError) as exc:
            raise FvError(f"{path}: schedule {i + 1} is malformed ({exc!r}); each needs name, size, steps, top1") \
                from None
    return tuple(sorted(out, key=lambda s: (-s.top1, -s.objective, s.steps * s.size ** 2)))


def candidates(schedules: tuple[RenderSchedule, ...], size: int | None = None) -> tuple[RenderSchedule, ...]:
    """The schedules a plan may choose from: all, or those at `size` when the user fixed the size."""
    picked = tuple(s for s in schedules if size is None or s.size == size)
    if not picked:
        sizes = sorted({s.size for s in schedules})
        raise FvError(f"no measured schedule at {size} px; the schedules table has {', '.join(map(str, sizes))} px "
                      f"(drop --size to let the deadline choose the size too)")
    return picked
