"""The transforms' strength over the steps (recipe render.transforms_from, render.transforms_ramp; issue #29): the
same random draws scaled, weak (or strong) at first and as written after the ramp; renders that still climb; a unit
the same alone or in a batch; the default and every recipe without a ramp untouched."""
from __future__ import annotations

import math

import pytest
import torch

from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.transforms import ARTICLE, STRONG, Blur, Jitter, Noise, Rotate, Schedule, Zoom, draw, strength
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch
from fvcli.units.unit import parse_units

from drift import same_picture


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


def gen(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_strength_rises_linearly_to_one_and_stays():
    s = strength(12, 0.25, 8)
    assert s[0] == 0.25 and s[4] == pytest.approx(0.625) and (s[8:] == 1).all()
    assert all(a < b for a, b in zip(s[:9], s[1:9]))
    assert strength(4, 0.25, 8, offset=6).tolist() == pytest.approx([0.8125, 0.90625, 1.0, 1.0])  # a later phase
    down = strength(6, 2.0, 4)  # the reverse: strong first
    assert down[0] == 2.0 and (down[4:] == 1).all() and all(a > b for a, b in zip(down[:5], down[1:5]))
    assert strength(10, 1.0, 8) is None and strength(10, 0.3, 0) is None  # no ramp: nothing to scale


def test_the_same_draws_are_scaled_not_redrawn():
    full = draw(ARTICLE, 16, gen())
    assert torch.equal(draw(ARTICLE, 16, gen(), st=torch.ones(16, dtype=torch.float64)), full)  # 1: bitwise
    half = draw((Jitter(16),), 16, gen(), st=torch.full((16,), 0.5, dtype=torch.float64))
    assert torch.allclose(half[:, :, 2], draw((Jitter(16),), 16, gen())[:, :, 2] * 0.5)
    # a rotation at strength s turns by s times the drawn angle
    ang = lambda m: torch.atan2(m[:, 0, 1], m[:, 0, 0])  # noqa: E731  (R(-a) holds sin a at [0, 1])
    r = (Rotate((20.0, -15.0, 10.0)),)
    st = torch.linspace(0, 1, 16, dtype=torch.float64)
    assert torch.allclose(ang(draw(r, 16, gen(), st=st)), ang(draw(r, 16, gen())) * st)
    # a zoom at strength s zooms by z**s; 0 is no transform at all
    z = (Zoom(0.5, 2.0),)
    assert torch.allclose(draw(z, 8, gen(), st=torch.zeros(8, dtype=torch.float64)),
                          torch.eye(3, dtype=torch.float64)[:2].expand(8, 2, 3))
    ramp = strength(16, 0.25, 8)
    got = draw(STRONG, 16, gen(), st=ramp)
    assert torch.equal(got[8:], draw(STRONG, 16, gen())[8:])  # after the ramp: as written
    assert not torch.equal(got[:8], draw(STRONG, 16, gen())[:8])


def test_blur_and_noise_follow_the_strength():
    chain = (Jitter(4), Blur(1.0, 2.0), Noise(0.1))
    st = strength(6, 0.0, 4)
    weak = Schedule.build(chain, 6, [gen()], 16, 16, torch.device("cpu"), st)
    full = Schedule.build(chain, 6, [gen()], 16, 16, torch.device("cpu"))
    assert torch.allclose(weak.sigmas[:, 0].double(), full.sigmas[:, 0].double() * st, atol=1e-6)
    img = torch.full((1, 3, 16, 16), 0.5)
    assert torch.equal(weak.apply(img, 0), img)  # strength 0: no shift, no blur, no noise
    n_weak = weak.draws(2)[2]
    n_full = full.draws(2)[2]
    assert torch.allclose(n_weak, n_full * 0.5)


def test_a_ramped_render_climbs_and_is_the_same_alone_or_in_a_batch(demo):
    base = ["render.size=32", "render.steps=24", "model.name=demo", "render.thresholds=[0]",
            "render.transforms_from=0.25", "render.transforms_ramp=12"]
    rec = load_recipe(None, base)
    units = parse_units("logit:1,4,7", demo)
    batch = run_batch(demo, rec, units)
    assert float(batch.snapshots[-1].scores.mean()) > float(batch.snapshots[0].scores.mean()) + 1
    alone = run_batch(demo, rec, units[1:2])
    same_picture(alone.snapshots[-1].images[0], batch.snapshots[-1].images[1], alone.snapshots[-1].scores[0],
                 batch.snapshots[-1].scores[1], what="transform ramp: demo logit alone vs in a batch of 3")
    plain = run_batch(demo, load_recipe(None, base[:4]), units[1:2])
    assert not torch.equal(plain.snapshots[-1].images, alone.snapshots[-1].images)  # the ramp changed the render


def test_recipes_without_a_ramp_keep_their_hash_and_bad_values_are_named():
    default = load_recipe(None)
    assert load_recipe(None, ["render.transforms_ramp=0", "render.transforms_from=0.3"]).hash() == default.hash()
    assert load_recipe(None, ["render.transforms_ramp=64", "render.transforms_from=1"]).hash() == default.hash()
    assert load_recipe(None, ["render.transforms_ramp=64", "render.transforms_from=0.25"]).hash() != default.hash()
    with pytest.raises(FvError, match="transforms_from"):
        load_recipe(None, ["render.transforms_from=9"])
    with pytest.raises(FvError, match="transforms_ramp"):
        load_recipe(None, ["render.transforms_ramp=-1"])
    s = load_recipe(None, ["render.transforms_ramp=64", "render.transforms_from=0.25"]).loop_settings()
    assert (s.transforms_from, s.transforms_ramp) == (0.25, 64) and math.isclose(s.lr, 0.05)
