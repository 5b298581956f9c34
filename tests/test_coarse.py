"""Coarse to fine (recipe render.coarse): the first steps at a lower resolution, then full size.

The picture must come out as a plain render's does (size, range, a score that rose), snapshots of the coarse phase
at the render's size, the hand-on exact (the fine param starts from the coarse picture), the seed alone deciding
the picture, and the recipe's other renders untouched (off keeps every hash; it cannot be combined with a stream).
"""
from __future__ import annotations

import pytest
import torch

from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.coarse import coarse_size, hand_on
from fvcli.optvis.loop import render_batch, unit_generators
from fvcli.optvis.objectives import PerImage
from fvcli.optvis.param import make_param
from fvcli.recipe import load_recipe
from fvcli.runner.batch import batch_records, run_batch
from fvcli.units.unit import parse_units

from drift import same_picture

SIZE = 48


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


def _recipe(*sets: str):
    return load_recipe(None, [f"render.size={SIZE}", "render.steps=40", "model.name=demo", *sets])


@pytest.mark.parametrize("kind", ["fourier", "pixel"])
def test_hand_on_is_exact(kind):
    gens = unit_generators([1, 2], "init")
    small = make_param(kind, gens, 24, 24)
    big = make_param(kind, unit_generators([3, 4], "init"), 48, 48)
    with torch.no_grad():
        small_t = small.spatial() + torch.linspace(-1, 1, 24).view(1, 1, 1, 24)  # some structure to carry over
        small.set_spatial(small_t)
        torch.testing.assert_close(small.spatial(), small_t, rtol=1e-4, atol=1e-5)  # set_spatial inverts spatial
    hand_on(small, big)
    up = torch.nn.functional.interpolate(small.spatial().detach(), size=(48, 48), mode="bilinear",
                                         align_corners=False)
    torch.testing.assert_close(big.spatial().detach(), up, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["fourier", "pixel"])
def test_a_coarse_to_fine_render_is_a_render(demo, kind):
    rec = _recipe("render.coarse=0.6", "render.thresholds=[0, 8, 32]", f"param.kind={kind}")
    units = parse_units("logit:2,6", demo)
    res = run_batch(demo, rec, units)
    steps = [s.step for s in res.snapshots]
    assert steps == [0, 8, 32, 40]
    for s in res.snapshots:  # every snapshot at the render's size and range, coarse phase included
        assert s.images.shape == (2, 3, SIZE, SIZE)
        assert float(s.images.min()) >= 0 and float(s.images.max()) <= 1
    first, last = res.snapshots[0].scores, res.snapshots[-1].scores
    assert float(last.mean()) > float(first.mean()) + 1, (first, last)  # the objective rose through both phases
    assert coarse_size(SIZE, 0.5) == 24


def test_the_seed_alone_decides_the_picture(demo):
    rec = _recipe("render.coarse=0.6")
    units = parse_units("logit:0-3", demo)
    obj = [u.objective(demo) for u in units]
    both = list(render_batch(demo, PerImage(tuple(obj)), [11, 12, 13, 14], rec.loop_settings()))[-1]
    alone = list(render_batch(demo, PerImage((obj[2],)), [13], rec.loop_settings()))[-1]
    same_picture(both.images[2], alone.images[0], both.scores[2], alone.scores[0],
                 what="coarse: demo logit in a batch of 4 vs alone")


def test_off_keeps_every_hash_and_does_not_combine_with_a_stream():
    base = load_recipe(None, ["render.coarse_steps=0"])
    assert load_recipe(None, ["render.coarse_steps=0", "render.coarse_scale=0.25"]).hash() == base.hash()  # inert
    assert load_recipe(None, ["render.coarse_steps=0", "render.coarse=0.5"]).hash() != base.hash()
    # a fraction, where written, decides over render.coarse_steps (auto, or a number)
    assert load_recipe(None, ["render.coarse=0.75", "render.steps=32"]).loop_settings().coarse_steps == 24
    assert load_recipe(None, ["render.coarse=0.75", "render.coarse_steps=96"]).loop_settings().coarse_steps == 384
    assert load_recipe("article").loop_settings().coarse_steps == 0
    assert load_recipe("lucid", ["render.size=224"]).loop_settings().coarse_steps == 0
    with pytest.raises(FvError, match="stop.converge and render.coarse"):
        load_recipe(None, ["render.coarse=0.5", "stop.converge=true"])
    with pytest.raises(FvError, match="coarse_scale"):
        load_recipe(None, ["render.coarse_scale=2"])
    with pytest.raises(FvError, match="render.coarse_steps: expected an integer, got 'half' or 'half' is not one "
                                      "of auto"):
        load_recipe(None, ["render.coarse_steps=half"])


def test_the_default_takes_a_coarse_phase_from_224_px():
    """render.coarse_steps: auto -- 96 steps at half the size in renders of 224 px and more, at most three quarters
    of a short render's steps; none below 224 px, none in a converging stream. Resolved, it hashes as the number
    (or as a plain render), so renders from before the key keep their records."""
    def coarse(*sets):
        return load_recipe(None, list(sets)).loop_settings().coarse_steps

    assert coarse() == 96 and coarse("render.size=256") == 96 and coarse("render.steps=128") == 96
    assert coarse("render.steps=64") == 48 and coarse("render.steps=1") == 1  # a quarter of the steps at full size
    assert coarse("render.size=223") == 0 and coarse("render.size=128") == 0
    assert coarse("stop.converge=true") == 0  # the default's phase is not a stream's (a written one is refused)
    assert coarse("param.kind=maco") == 0  # nor MACO's (one magnitude spectrum per size)
    assert coarse("render.coarse_steps=32", "render.size=64") == 32  # a number is taken at any size
    assert coarse("render.coarse_steps=96", "render.steps=64") == 64  # ... as written (all coarse)
    h = lambda *sets: load_recipe(None, list(sets)).hash()  # noqa: E731
    assert h() == h("render.coarse_steps=96") != h("render.coarse_steps=0")
    assert h("render.size=128") == h("render.size=128", "render.coarse_steps=0")
    assert h("render.steps=64") == h("render.steps=64", "render.coarse_steps=48")


def test_the_default_at_224_px_renders_its_coarse_phase(demo):
    """The resolved phase is what runs: the default's 224 px picture of 100 steps is the one of 75 written coarse
    steps (three quarters), not a plain render's; its 128 px picture a plain render's."""
    units = parse_units("logit:1", demo)

    def picture(*sets):
        rec = load_recipe(None, ["model.name=demo", "render.steps=100", "transforms=none", *sets])
        return run_batch(demo, rec, units).snapshots[-1].images

    rec = load_recipe(None, ["model.name=demo", "render.steps=4"])
    assert batch_records(demo, rec, run_batch(demo, rec, units))[0]["coarse_steps"] == 3  # the record says what ran
    auto = picture()
    assert torch.equal(auto, picture("render.coarse_steps=75"))
    assert not torch.equal(auto, picture("render.coarse_steps=0"))
    small = picture("render.size=128")
    assert torch.equal(small, picture("render.size=128", "render.coarse_steps=0"))
    assert not torch.equal(small, picture("render.size=128", "render.coarse_steps=96"))


def test_coarse_steps_counts_steps_whatever_the_length():
    """render.coarse_steps: the first N steps coarse at any render.steps (render.coarse is a fraction of them)."""
    from fvcli.errors import FvError
    from fvcli.recipe import load_recipe

    for steps in (128, 512):
        s = load_recipe(None, [f"render.steps={steps}", "render.coarse_steps=96"]).loop_settings()
        assert s.coarse_steps == 96
    assert load_recipe(None, ["render.steps=64", "render.coarse_steps=96"]).loop_settings().coarse_steps == 64
    same = load_recipe(None, ["render.steps=512", "render.coarse=0.1875"])
    assert load_recipe(None, ["render.steps=512", "render.coarse_steps=96"]).loop_settings() == same.loop_settings()
    assert load_recipe(None, ["render.coarse_steps=0"]).hash() != load_recipe(None).hash()  # auto: 96 at 224 px
    with pytest.raises(FvError, match="cannot be combined"):
        load_recipe(None, ["render.coarse_steps=32", "stop.converge=true"])


def test_recipe_show_says_what_auto_comes_to(cli):
    """`fv recipe show` resolves `render.coarse_steps: auto` for the size and length asked."""
    assert "# render.coarse_steps auto: 96 of 512 steps at 112 px first" in cli("recipe", "show").stdout
    assert "auto: 48 of 64 steps at 120 px first" in cli("recipe", "show", "--size", "240", "--steps", "64").stdout
    assert "auto: 0 (full size" in cli("recipe", "show", "--size", "128").stdout
    assert "coarse_steps auto" not in cli("recipe", "show", "-r", "article").stdout  # written: 0
