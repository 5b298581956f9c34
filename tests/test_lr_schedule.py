"""Learning-rate schedules (recipe render.lr_schedule, render.lr_warmup): the factor over the steps, renders that
still climb, a stream that gives each unit its own place on the schedule, and the constant default untouched."""
from __future__ import annotations

import math

import pytest

from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.optim import lr_factor
from fvcli.optvis.stream import StreamItem, render_stream
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch, unit_seed
from fvcli.units.unit import parse_units

from drift import same_picture


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


def test_the_factor_over_the_steps():
    assert [lr_factor("constant", s, 10) for s in range(10)] == [1.0] * 10
    cos = [lr_factor("cosine", s, 100) for s in range(100)]
    assert cos[0] == 1.0 and cos[50] == pytest.approx(0.5) and cos[-1] < 0.001
    assert all(a >= b for a, b in zip(cos, cos[1:]))  # only ever down
    warm = [lr_factor("cosine", s, 100, warmup=10) for s in range(12)]
    assert warm[:10] == pytest.approx([(s + 1) / 10 for s in range(10)]) and warm[10] == 1.0
    assert lr_factor("constant", 3, 10, warmup=4) == 1.0 and lr_factor("constant", 30, 10, warmup=4) == 1.0
    assert math.isclose(lr_factor("cosine", 99, 100, warmup=10), 0.5 * (1 + math.cos(math.pi * 89 / 90)))


def test_a_cosine_render_climbs_and_the_constant_default_is_unchanged(demo):
    units = parse_units("logit:1,4", demo)
    base = ["render.size=32", "render.steps=32", "model.name=demo", "render.thresholds=[0]"]
    plain = run_batch(demo, load_recipe(None, base), units)
    explicit = run_batch(demo, load_recipe(None, [*base, "render.lr_schedule=constant"]), units)
    assert (plain.snapshots[-1].images == explicit.snapshots[-1].images).all()
    cos = run_batch(demo, load_recipe(None, [*base, "render.lr_schedule=cosine", "render.lr_warmup=4"]), units)
    assert float(cos.snapshots[-1].scores.mean()) > float(cos.snapshots[0].scores.mean()) + 1
    assert not (cos.snapshots[-1].images == plain.snapshots[-1].images).all()
    assert load_recipe(None, ["render.lr_schedule=cosine"]).hash() != load_recipe(None).hash()
    assert load_recipe(None, ["render.lr_schedule=constant"]).hash() == load_recipe(None).hash()
    with pytest.raises(FvError, match="lr_schedule"):
        load_recipe(None, ["render.lr_schedule=linear"])


def test_in_a_stream_each_unit_follows_its_own_schedule(demo):
    """A unit entering late starts at the top of its schedule: its picture is the one it gets alone."""
    rec = load_recipe(None, ["render.size=32", "render.steps=24", "model.name=demo", "render.lr_schedule=cosine"])
    target = parse_units("logit:5", demo)[0]
    items = lambda us: [StreamItem(u.objective(demo), unit_seed(rec, demo, u)) for u in us]  # noqa: E731
    alone = next(iter(render_stream(demo, items([target]), rec.loop_settings(), 1)))
    late_units = [*parse_units("logit:0,1", demo), target]
    late = next(f for f in render_stream(demo, items(late_units), rec.loop_settings(), 2) if f.index == 2)
    same_picture(alone.snapshots[-1].images[0], late.snapshots[-1].images[0], alone.snapshots[-1].scores[0],
                 late.snapshots[-1].scores[0], what="lr schedule: demo logit alone vs entering a stream late")
