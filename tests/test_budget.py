"""Deadlines and budgets (fvcli/budget, `fv sweep --deadline`, `fv render --budget`; issue #29): durations, the
schedules table, the planner's choice and its re-choice when the machine turns out slower, and the commands end to
end on the demo model with a table of our own."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from fvcli.budget import BatchPlan, DeadlinePlanner, RenderSchedule, StepCosts, load_schedules, parse_deadline
from fvcli.budget.durations import parse_duration
from fvcli.budget.schedules import candidates
from fvcli.errors import FvError
from fvcli.recipe import load_recipe

TABLE = """# a test table: demo logits at 32 and 16 px
schedules:
  - {name: s32-48, size: 32, steps: 48, top1: 0.9, objective: 9}
  - {name: s32-12, size: 32, steps: 12, top1: 0.6, objective: 6, set: ["render.transforms_from=0.25", "render.transforms_ramp=8"]}
  - {name: s16-12, size: 16, steps: 12, top1: 0.3, objective: 3}
"""


@pytest.fixture
def table(tmp_path, monkeypatch):
    p = tmp_path / "schedules.yaml"
    p.write_text(TABLE)
    monkeypatch.setenv("FV_SCHEDULES", str(p))
    return p


def test_durations_and_times_of_day():
    assert parse_duration("8h") == 8 * 3600 and parse_duration("1h30m") == 5400 and parse_duration("90m") == 5400
    assert parse_duration("2d") == 172800 and parse_duration("45s") == 45 and parse_duration("1.5") == 5400
    now = dt.datetime(2026, 12, 7, 22, 0)
    assert parse_deadline("06:30", now) == 8.5 * 3600  # the next 06:30: tomorrow morning
    assert parse_deadline("23:00", now) == 3600
    for bad in ("8x", "h", "8h cats", "-3h", "25:00"):
        with pytest.raises(FvError, match="bad duration|bad deadline"):
            parse_deadline(bad, now)


def test_the_table_is_read_best_first_and_filtered_by_size(table, tmp_path):
    s = load_schedules()
    assert [x.name for x in s] == ["s32-48", "s32-12", "s16-12"]
    assert [x.name for x in candidates(s, 16)] == ["s16-12"]
    with pytest.raises(FvError, match="no measured schedule at 64 px.*16, 32 px"):
        candidates(s, 64)
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedules:\n  - {name: x, size: 32}\n")
    with pytest.raises(FvError, match="bad.yaml: schedule 1 is malformed"):
        load_schedules(bad)
    with pytest.raises(FvError, match="not found"):
        load_schedules(tmp_path / "none.yaml")


def test_the_shipped_table_is_measured_and_loads():
    shipped = load_schedules()
    assert shipped and all(0 <= s.top1 <= 1 and s.steps >= 1 for s in shipped)
    base = load_recipe(None)
    for s in shipped:  # every row applies to the default recipe
        r = s.recipe(base)
        assert (r.render.size, r.render.steps) == (s.size, s.steps)


def test_a_schedule_applies_its_size_steps_and_levers():
    base = load_recipe(None, ["render.thresholds=[8, 32]"])
    s = RenderSchedule("x", 128, 16, ("render.transforms_from=0.25", "render.transforms_ramp=8"), 0.5, 1.0)
    r = s.recipe(base)
    assert (r.render.size, r.render.steps, r.render.thresholds) == (128, 16, (8,))
    assert (r.render.transforms_from, r.render.transforms_ramp) == (0.25, 8)
    assert r.model == base.model and r.transforms == base.transforms


def test_a_schedule_with_transformed_copies_is_priced_for_them(monkeypatch):
    """n copies per step are n images through the network: the price scales with them, whatever the probed recipe
    had (the probes are kept per copy), so a deadline never plans round-12's copies at a plain step's price."""
    from fvcli.budget import cost
    from fvcli.optvis.transforms import copies

    plain = load_recipe(None, ["render.coarse_steps=0", "render.steps=10", "render.size=32"])
    two = load_recipe(None, ["render.coarse_steps=0", "render.steps=10", "render.size=32",
                             "transforms=[{jitter: 4}, {copies: 2}]"])
    three = load_recipe(None, ["render.coarse_steps=0", "render.steps=10", "render.size=32",
                               "transforms=[{copies: 3}, {jitter: 4}]"])
    assert tuple(copies(r.transforms) for r in (plain, two, three)) == (1, 2, 3)  # what the loop runs
    costs = StepCosts(8, {"a": 1.0}, {32: {"a": 0.5}})
    assert costs.seconds(plain, "a", 8) == pytest.approx(5.0)
    assert costs.seconds(two, "a", 8) == pytest.approx(10.0) and costs.seconds(three, "a", 4) == pytest.approx(7.5)
    monkeypatch.setattr(cost, "step_seconds", lambda model, recipe, units, images, size: 0.8)  # as if measured
    probed = cost.probe_costs(None, two, {"a": ["u"]}, {"a": 1.0}, 8, [32])  # a recipe with 2 copies
    assert probed.probes == {32: {"a": 0.4}}  # per copy
    assert probed.seconds(two, "a", 8) == pytest.approx(8.0) and probed.seconds(plain, "a", 8) == pytest.approx(4.0)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def planner(deadline: float, clock: Clock) -> DeadlinePlanner:
    schedules = (RenderSchedule("big", 32, 100, (), 0.9, 9.0), RenderSchedule("mid", 32, 40, (), 0.7, 7.0),
                 RenderSchedule("small", 16, 10, (), 0.3, 3.0))
    costs = StepCosts(8, {"a": 1.0, "b": 3.0}, {32: {"a": 0.1, "b": 0.3}, 16: {"a": 0.05, "b": 0.15}})
    batches = [BatchPlan(f"a/{i}", "a", 8) for i in range(5)] + [BatchPlan(f"b/{i}", "b", 4) for i in range(5)]
    return DeadlinePlanner(load_recipe(None, ["model.name=demo"]), schedules, costs, batches, deadline, clock=clock)


def test_the_planner_picks_the_best_that_fits_and_moves_down_when_behind():
    clock = Clock()
    # every batch on "big": 5 x 100 x 0.1 + 5 x 100 x 0.3 x 0.5 = 125 s; "mid": 50 s; "small": 6.25 s
    p = planner(200, clock)
    assert p.predicted(p.schedules[0]) == pytest.approx(125)
    assert p.pick("a/0").name == "big" and p.pick("a/0").name == "big"  # a retried batch keeps its schedule
    clock.t = 60  # the first batch took 60 s where 10 were predicted: a machine 6x slower than its probes
    p.observe("a/0", 60)
    assert p.speed == pytest.approx(6)
    # what is left: big 115 x 6 = 690 s, mid 46 x 6 = 276 s, small 5.75 x 6 = 34.5 s; 140 s left minus the reserve
    assert p.pick("a/1").name == "small"
    s, secs, fits = p.choose()
    assert s.name == "small" and fits and secs == pytest.approx(34.5)
    clock.t = 61
    p.observe("a/1", 0.5)
    assert p.speed == pytest.approx(60.5 / 10.5)  # the speed over all batches so far: one outlier is not forgotten
    assert [h["schedule"] for h in p.history] == ["big", "small"]


def test_the_planner_moves_up_when_the_machine_is_faster_than_its_probes():
    clock = Clock()
    p = planner(60, clock)  # 30 s after the reserve: only "small" (6.25 s) fits as probed
    assert p.pick("a/0").name == "small"
    clock.t = 0.05
    p.observe("a/0", 0.05)  # predicted 0.5 s: ten times faster
    assert p.speed == pytest.approx(0.1) and p.pick("a/1").name == "big"  # (125 - 10) x 0.1 = 11.5 s now fits


def test_of_rows_tied_within_the_tables_resolution_the_cheapest_is_taken():
    """0.605 and 0.600 are the same measured quality (a class of 200): the cheaper fitting one is chosen; a row a
    real step below is not."""
    from fvcli.budget.planner import TIE, best_that_fits

    a, b, c = (RenderSchedule("slow", 128, 384, (), 0.605, 9.0), RenderSchedule("quick", 224, 128, (), 0.600, 8.0),
               RenderSchedule("cheap", 64, 32, (), 0.605 - 2 * TIE, 1.0))
    assert best_that_fits([(a, 100.0), (b, 40.0), (c, 5.0)], 120.0)[:2] == (b, 40.0)
    assert best_that_fits([(a, 100.0), (b, 140.0), (c, 5.0)], 120.0)[:2] == (a, 100.0)  # the tie does not fit
    assert best_that_fits([(a, 100.0), (b, 140.0), (c, 5.0)], 1.0) == (c, 5.0, False)


def test_nothing_fits_the_cheapest_and_the_plan_says_it_is_late():
    clock = Clock()
    p = planner(3, clock)
    s, secs, fits = p.choose()
    assert s.name == "small" and not fits
    assert "NOT in time" in p.describe()
    assert "finishing" in planner(3600, clock).describe()


def test_a_deadline_sweep_on_the_demo_model(cli, table, tmp_path):
    out = tmp_path / "sw"
    args = ("sweep", "block1", "--model", "demo", "--set", "render.size=32", "--batch-size", "8", "--out", out, "-q")
    est = cli(*args, "--deadline", "1h", "--estimate")
    assert est.exit_code == 0, est.output
    assert "schedule s32-48 (32 px, 48 steps)" in est.output and not out.exists()  # an hour is plenty
    tight = cli(*args, "--deadline", "1h", "--size", "16")
    assert tight.exit_code == 0, tight.output
    recs = [json.loads(p.read_text()) for p in sorted((out / "layers" / "block1").glob("*.json"))]
    assert recs and all(r["schedule"]["name"] == "s16-12" and r["schedule"]["size"] == 16 for r in recs)
    assert "deadline:" in tight.output and "batch(es) on s16-12" in tight.output
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["renderer"]["name"] == "deadline"
    bad = cli(*args, "--deadline", "tomorrow")
    assert bad.exit_code == 2 and "bad duration 'tomorrow'" in bad.output
    steps = cli(*args, "--deadline", "1h", "--steps", "8")
    assert steps.exit_code == 2 and "drop --steps" in steps.output


def test_a_render_within_a_budget(cli, table, tmp_path):
    rich = cli("render", "logit:3", "--model", "demo", "--budget", "1000", "--out", tmp_path / "a", "-q")
    assert rich.exit_code == 0, rich.output
    assert "schedule s32-48" in rich.output and "within" in rich.output
    rec = json.loads((tmp_path / "a" / "logit-00003.json").read_text())
    assert (rec["recipe"]["render"]["steps"], rec["size"]) == (48, 32)
    poor = cli("render", "logit:3", "--model", "demo", "--budget", "0", "--out", tmp_path / "b", "-q")
    # nothing fits: the cheapest as timed here (48 steps at 32 px are never it; 16 px vs 32 px at 12 steps is timing)
    assert poor.exit_code == 0 and "OVER" in poor.output and "s32-48" not in poor.output


def test_the_table_writer_makes_a_table_the_planner_reads(tmp_path):
    """scripts/ttq_schedules.py turns a benchmark's scored rows into schedules: each snapshot step of a kept row, a
    coarse row only past its coarse phase, and the file loads (best first)."""
    import subprocess
    import sys
    from pathlib import Path

    top1 = lambda ps: {str(s): {"p": p, "k": 0, "ci": [0, 1]} for s, p in ps.items()}  # noqa: E731
    res = [{"model": "mobilenet_v2", "size": 224, "units": ["logit:3"] * 10, "rows": {
        "fv default": {"top1": top1({32: 0.2, 64: 0.3, 128: 0.5}), "objective": {"32": 1, "64": 2, "128": 3}},
        "fv coarse64": {"top1": top1({32: 0.3, 64: 0.4, 128: 0.6}), "objective": {"32": 1, "64": 1, "128": 3}},
        "fv lr0.1": {"top1": top1({128: 0.9}), "objective": {"128": 9}}}}]
    runs = tmp_path / "tune.json"
    runs.write_text(json.dumps(res))
    out = tmp_path / "s.yaml"
    script = Path(__file__).resolve().parents[1] / "scripts" / "ttq_schedules.py"
    p = subprocess.run([sys.executable, script, str(runs), "--rows", "fv default,fv coarse64", "--out", str(out)],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    s = {x.name: x for x in load_schedules(out)}
    assert list(s) == ["224px-coarse64-128", "224px-default-128", "112px-default-64", "224px-default-64",
                       "112px-default-32", "224px-default-32"]
    default = ("render.beta1=0.5", "param.decay_from=1.5", "param.decay_ramp=64")  # written out (ttq_levers)
    plain = ("render.coarse_steps=0", *default)  # full size throughout, written out (the default's is auto)
    assert s["224px-coarse64-128"].sets == ("render.coarse_steps=64", *default)  # 64 of 128 steps coarse
    # a snapshot of the coarse phase is a plain render at half the size
    assert (s["112px-default-64"].size, s["112px-default-64"].sets, s["112px-default-64"].top1) == (112, plain, 0.4)
    assert "lr0.1" not in out.read_text()  # a row not kept is not offered
    # a coarse phase at another scale is a plain render at that size; a decay schedule keeps its keys
    res[0]["rows"] = {"fv coarse96x0.75": {"top1": top1({64: 0.25}), "objective": {"64": 1}},
                      "fv decay1.5to1@64": {"top1": top1({32: 0.35}), "objective": {"32": 1}},
                      "fv coarse96+decay1.5to1@64": {"top1": top1({48: 0.3}), "objective": {"48": 1}}}
    runs.write_text(json.dumps(res))
    p = subprocess.run([sys.executable, script, str(runs), "--rows",
                        "fv coarse96x0.75,fv decay1.5to1@64,fv coarse96+decay1.5to1@64", "--out", str(out)],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    s = {x.name: x for x in load_schedules(out)}
    assert (s["168px-default-64"].size, s["168px-default-64"].sets) == (168, plain)
    assert s["224px-decay1.5to1@64-32"].sets == plain  # the lever's items over the default's, each key once
    assert s["224px-decay1.5to1@64-32"].recipe(load_recipe(None)).param.decay_from == 1.5
    # the coarse phase of a row with other levers: a plain render at the coarse size that keeps them
    assert (s["112px-decay1.5to1@64-48"].size, s["112px-decay1.5to1@64-48"].sets) == (112, plain)
    # a run from before the default changed: its `fv default` is the previous default, pinned by its items and named
    # for them; the lever that became the default is `default`, each key written once at its last value
    res[0]["rows"] = {"fv default": {"top1": top1({32: 0.2}), "objective": {"32": 1}},
                      "fv beta1=0.5+decay1.5to1@64": {"top1": top1({32: 0.3}), "objective": {"32": 1}},
                      "fv decay1.5to1@64": {"top1": top1({32: 0.25}), "objective": {"32": 1}}}
    runs.write_text(json.dumps(res))
    p = subprocess.run([sys.executable, script, str(runs), "--rows",
                        "fv default,fv beta1=0.5+decay1.5to1@64,fv decay1.5to1@64", "--previous-default",
                        runs.name, "--out", str(out)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    s = {x.name: x for x in load_schedules(out)}
    assert s["224px-adam0.9+decay1-32"].sets == ("render.beta1=0.9", "param.decay_ramp=0", "render.coarse_steps=0")
    old = s["224px-adam0.9+decay1-32"].recipe(load_recipe(None))
    assert (old.render.beta1, old.loop_settings().decay()) == (0.9, None)  # the previous default, as it was
    assert set(s["224px-default-32"].sets) == set(plain)  # (in the order the previous default wrote them)
    assert s["224px-default-32"].recipe(load_recipe(None)).hash() == load_recipe(None, [
        "render.size=224", "render.steps=32", "render.coarse_steps=0"]).hash()  # measured before the coarse phase
    assert s["224px-default-32"].recipe(load_recipe(None)).hash() != load_recipe(None, [
        "render.size=224", "render.steps=32"]).hash()  # ... which the default takes at 224 px now
    assert s["224px-decay1.5to1@64+adam0.9-32"].recipe(load_recipe(None)).render.beta1 == 0.9


def test_a_sweep_that_falls_behind_moves_its_remaining_units_to_a_cheaper_schedule(tmp_path):
    """The first batch takes far longer than its probe predicted (a busy node): the planner's speed factor rises and
    the remaining batches get the cheaper schedule that still fits; every record names the schedule it got."""
    import time

    from fvcli.budget import DeadlinePlanner
    from fvcli.models import ModelOptions, load_model
    from fvcli.sweep import ChannelRenderer, prepare_sweep, select_units
    from fvcli.sweep.deadline import ScheduledRenderer

    demo = load_model(ModelOptions(name="demo"), "cpu")
    rec = load_recipe(None, ["model.name=demo", "render.size=32"])

    class BusyFirst:  # the first batch waits 2 s more, as on a node someone else just started using
        calls = 0

        def identity(self):
            return {"name": "unit"}

        def __call__(self, model, recipe, batch, on_step=None):
            BusyFirst.calls += 1
            if BusyFirst.calls == 1:
                time.sleep(2.0)
            return ChannelRenderer()(model, recipe, batch, on_step)

    renderer = ScheduledRenderer(BusyFirst())
    job = prepare_sweep(demo, rec, select_units(demo, ["block1:0-15"]), tmp_path / "sw", batch_size=4,
                        renderer=renderer)
    big, small = RenderSchedule("big", 32, 40, (), 0.9, 9.0), RenderSchedule("small", 16, 4, (), 0.3, 3.0)
    costs = StepCosts(4, {"block1": 1.0}, {32: {"block1": 0.01}, 16: {"block1": 0.005}})  # as if probed
    batches = [BatchPlan(b.id, b.layer, len(b.units)) for b in job.todo]
    # 33 s left, 30 s held back: 3 s to render; "big" is predicted 4 x 0.4 s = 1.6 s and fits
    renderer.planner = DeadlinePlanner(rec, (big, small), costs, batches, time.monotonic() + 33)
    assert renderer.planner.choose()[0] is big
    report = job.run(finalize_when_done=False)
    assert report.rendered == 16
    got = [json.loads((tmp_path / "sw" / "layers" / "block1" / f"block1-{c:05d}.json").read_text())["schedule"]["name"]
           for c in range(16)]
    assert got[:4] == ["big"] * 4 and got[4:] == ["small"] * 12, got
    assert renderer.planner.speed > 4  # 2 s and more where 0.4 s was predicted
