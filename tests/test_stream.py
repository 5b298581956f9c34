"""Continuous batching (recipe `stop.converge`): a converged unit leaves its batch and the next takes its slot.

Checked on the real behaviour: units stop early when their objective flattens, the batch stays full while units
wait, a unit's picture does not depend on its batch-mates or on when it entered, a unit that runs all its steps in
the stream is the unit a plain batch renders, `-r article` never streams, and sweeps resume and record the stop.
"""
from __future__ import annotations

import json

import pytest
import torch

from fvcli.models import ModelOptions, load_model
from fvcli.optvis.loop import render_batch
from fvcli.optvis.objectives import PerImage
from fvcli.optvis.optim import Adam, RowAdam
from fvcli.optvis.stream import Convergence, StreamItem, render_stream
from fvcli.recipe import load_recipe
from fvcli.runner.job import render_units
from fvcli.runner.stream import streams
from fvcli.units.unit import parse_units

from drift import same_picture

SIZE = 32
STEPS = 48


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


def _recipe(*sets: str):
    return load_recipe(None, [f"render.size={SIZE}", f"render.steps={STEPS}", "model.name=demo", *sets])


def _items(model, units, rec):
    from fvcli.runner.batch import unit_seed

    return [StreamItem(u.objective(model), unit_seed(rec, model, u)) for u in units]


def test_convergence_criterion():
    crit = Convergence(min_steps=8, window=4, tol=0.01)
    rising = [float(i) for i in range(16)]
    flat = [1.0] * 8 + [2.0] * 4 + [2.01] * 4  # the last window rose by 0.5 % of the one before
    assert not crit.stopped(rising)
    assert not crit.stopped(flat[:12])  # +100 %: still improving
    assert crit.stopped(flat)
    assert not crit.stopped([1.0] * 7)  # before min_steps
    assert not crit.stopped([1.0] * 9)  # not at a window boundary
    assert crit.stopped([-2.0] * 8)  # a flat negative objective has stopped too


def test_row_adam_is_adam_per_row():
    torch.manual_seed(0)
    p0 = torch.randn(3, 5)
    a, b = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    opt_a, opt_b = Adam([a], lr=0.1), RowAdam([b], lr=0.1)
    for i in range(5):
        g = torch.randn(3, 5, generator=torch.Generator().manual_seed(i))
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    opt_b.keep_rows(torch.tensor([2, 0]))
    opt_b.add_rows(1)
    assert opt_b.t.tolist() == [5.0, 5.0, 0.0] and float(opt_b.exp_avg[0][2].abs().sum()) == 0


def test_a_unit_that_runs_all_its_steps_is_the_plain_batch_unit(demo):
    """No convergence stop: the stream (slots 2, five units entering at different times) gives each unit the
    picture a plain batch gives it, up to the float rounding batches already allow."""
    rec = _recipe()
    units = parse_units("logit:0-4", demo)
    items = _items(demo, units, rec)
    fins = {f.index: f for f in render_stream(demo, items, rec.loop_settings(), slots=2)}
    assert sorted(fins) == list(range(5)) and all(f.reason == "steps" and f.stop_step == STEPS for f in fins.values())
    plain = list(render_batch(demo, PerImage(tuple(it.objective for it in items)), [it.seed for it in items],
                              rec.loop_settings()))[-1]
    for i, f in fins.items():
        same_picture(f.snapshots[-1].images[0], plain.images[i], f.snapshots[-1].scores[0], plain.scores[i],
                     what="stream: demo logit in 2 slots vs a plain batch of 5")


def test_a_converged_unit_leaves_and_the_next_takes_its_slot(demo):
    rec = _recipe()
    units = parse_units("logit:0-5", demo)
    items = _items(demo, units, rec)
    crit = Convergence(min_steps=8, window=8, tol=10.0)  # "stopped improving" after 16 steps, whatever happens
    in_flight: list[int] = []

    fins = list(render_stream(demo, items, rec.loop_settings(), slots=2, convergence=crit, on_step=in_flight.append))
    assert sorted(f.index for f in fins) == list(range(6))
    assert all(f.reason == "converged" and f.stop_step == 16 for f in fins)
    assert [f.index for f in fins] == [0, 1, 2, 3, 4, 5]  # slots freed in pairs, refilled in plan order
    assert len(in_flight) == 3 * 16  # 6 units x 16 steps over 2 slots: the batch never ran half empty
    assert all(len(f.snapshots) == 1 and f.snapshots[-1].step == 16 for f in fins)


def test_a_units_picture_does_not_depend_on_its_batch_mates_or_entry_time(demo):
    rec = _recipe()
    target = parse_units("logit:3", demo)[0]
    crit = Convergence(min_steps=16, window=8, tol=0.02)
    runs = {}
    cases = {"alone": ([target], 1), "first of 3": ([target, *parse_units("logit:7,9", demo)], 3),
             "enters late": ([*parse_units("logit:1,2,5", demo), target], 2)}
    for name, (units, slots) in cases.items():
        items = _items(demo, units, rec)
        runs[name] = next(f for f in render_stream(demo, items, rec.loop_settings(), slots, crit)
                          if units[f.index] == target)
    ref = runs["alone"]
    for name, fin in runs.items():
        assert fin.stop_step == ref.stop_step, (name, fin.stop_step, ref.stop_step)
        same_picture(fin.snapshots[-1].images[0], ref.snapshots[-1].images[0], fin.snapshots[-1].scores[0],
                     ref.snapshots[-1].scores[0], what=f"stream: demo logit {name} vs alone")


def test_render_units_records_the_stop_and_keeps_the_order(demo, tmp_path):
    rec = _recipe("stop.converge=true", "stop.min_steps=16", "stop.window=8", "stop.tol=0.5")
    assert streams(rec)
    units = parse_units("logit:0-5", demo)
    res = render_units(demo, rec, units, tmp_path, batch_size=2)
    assert [it["key"] for it in res["items"]] == [u.key for u in units]  # the grid's order is the units' order
    recs = [json.loads((tmp_path / f"{u.key}.json").read_text()) for u in units]
    assert all(r["stopped"]["reason"] in ("converged", "steps") for r in recs)
    assert any(r["stopped"]["reason"] == "converged" and r["stopped"]["step"] < STEPS for r in recs)
    assert all(r["stopped"]["step"] == int(max(r["scores"], key=int)) for r in recs)
    assert "mean objective" in recs[0]["stopped"]["criterion"]


def test_the_article_recipe_never_streams_and_off_keeps_the_hash():
    assert not streams(load_recipe("article"))
    assert not streams(load_recipe(None))
    on = load_recipe(None, ["stop.converge=true"])
    assert streams(on) and on.hash() != load_recipe(None).hash()
    assert load_recipe(None, ["stop.window=64"]).hash() == load_recipe(None).hash()  # off: its settings are inert
    assert not streams(load_recipe(None, ["stop.converge=true", "param.kind=maco", "param.maco_alpha=true"]))


def test_a_streamed_sweep_resumes_and_records_the_stop(tmp_path, cli):
    args = ["sweep", "logit:0-5", "--model", "demo", "--size", SIZE, "--steps", 24, "--batch-size", 2,
            "--set", "stop.converge=true", "--set", "stop.min_steps=8", "--set", "stop.window=4",
            "--set", "stop.tol=0.5", "-q", "-o", tmp_path]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    recs = sorted((tmp_path / "layers" / "fc").glob("logit-*.json"))
    assert len(recs) == 6 and all("stopped" in json.loads(p.read_text()) for p in recs)
    first = {p.name: p.read_bytes() for p in (tmp_path / "layers" / "fc").glob("logit-*.png")}
    victim = tmp_path / "layers" / "fc" / "logit-00003.json"
    victim.unlink()
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert victim.exists()
    again = {p.name: p.read_bytes() for p in (tmp_path / "layers" / "fc").glob("logit-*.png")}
    assert again == first  # the missing unit rendered alone in its slot: the same picture
