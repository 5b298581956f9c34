"""Adam's moments (render.beta1 / render.beta2; fv's default beta1 0.5, the article's 0.9) and the initial image
(param.init_std) as recipe keys: the values reach the optimizer and the param, in a plain batch and in a
continuously refilled stream, renders still climb, and the article's values add nothing to a recipe's hash."""
from __future__ import annotations

import pytest
import torch

from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.optim import Adam, RowAdam
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch
from fvcli.units.unit import parse_units

from stream_entry import late_entry_matches_alone

BASE = ["render.size=32", "render.steps=24", "model.name=demo", "render.thresholds=[0]"]


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


@pytest.mark.parametrize("betas", [(0.5, 0.999), (0.9, 0.99), (0.0, 0.9)])
def test_both_adams_are_torch_adam_at_other_moments(betas):
    """fv's Adam (one batch) and RowAdam (a refilled stream) take the moments and are torch.optim.Adam with them."""
    g = torch.Generator().manual_seed(1)
    start = torch.randn(3, 4, 5, generator=g)
    ours, rows, theirs = (start.clone().requires_grad_() for _ in range(3))
    opts = (Adam([ours], lr=0.05, betas=betas), RowAdam([rows], lr=0.05, betas=betas),
            torch.optim.Adam([theirs], lr=0.05, betas=betas))
    default = start.clone().requires_grad_()
    plain = Adam([default], lr=0.05)
    for step in range(20):
        for p, opt in ((ours, opts[0]), (rows, opts[1]), (theirs, opts[2]), (default, plain)):
            opt.zero_grad(set_to_none=True)
            ((p - step * 0.1) ** 3).sin().sum().backward()
            opt.step()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(rows, theirs, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(ours, default)  # the moments changed the path


def test_other_moments_render_a_climbing_picture_of_their_own(demo):
    units = parse_units("logit:1,4", demo)
    plain = run_batch(demo, load_recipe(None, BASE), units)
    for sets in (["render.beta1=0.9"], ["render.beta2=0.99"]):  # the article's momentum; a shorter second moment
        res = run_batch(demo, load_recipe(None, [*BASE, *sets]), units)
        assert float(res.snapshots[-1].scores.mean()) > float(res.snapshots[0].scores.mean()) + 1, sets
        assert torch.equal(res.snapshots[0].images, plain.snapshots[0].images)  # the same start ...
        assert not torch.equal(res.snapshots[-1].images, plain.snapshots[-1].images)  # ... another path
    explicit = run_batch(demo, load_recipe(None, [*BASE, "render.beta1=0.5", "render.beta2=0.999"]), units)
    assert torch.equal(explicit.snapshots[-1].images, plain.snapshots[-1].images)


@pytest.mark.parametrize("kind", ["fourier", "pixel"])
def test_the_initial_image_follows_init_std(demo, kind):
    units = parse_units("logit:1,4", demo)
    first = lambda sets: run_batch(demo, load_recipe(None, [*BASE, "render.steps=48", f"param.kind={kind}", *sets]),  # noqa: E731
                                   units)
    flat, plain, loud = first(["param.init_std=0"]), first([]), first(["param.init_std=0.05"])
    assert torch.equal(flat.snapshots[0].images, torch.full_like(flat.snapshots[0].images, 0.5))  # flat grey
    spread = [float(r.snapshots[0].images.std()) for r in (plain, loud)]
    assert 3 < spread[1] / spread[0] < 7  # 5x the noise, seen through the sigmoid near its middle
    assert float(flat.snapshots[-1].scores.mean()) > float(flat.snapshots[0].scores.mean()) + 1  # grey climbs too
    assert not torch.equal(flat.snapshots[-1].images[0], flat.snapshots[-1].images[1])  # each unit its own picture


def test_a_unit_entering_a_stream_late_gets_its_moments_and_its_start(demo):
    """RowAdam's moments and the stream's fresh params both follow the keys: alone == entering a refilled batch."""
    rec = load_recipe(None, ["render.size=32", "render.steps=24", "model.name=demo", "render.beta1=0.5",
                             "render.beta2=0.99", "param.init_std=0.03"])
    alone = late_entry_matches_alone(demo, rec, "moments + init: demo logit")
    default = load_recipe(None, ["render.size=32", "render.steps=24", "model.name=demo"])
    other = late_entry_matches_alone(demo, default, "default: demo logit")
    assert not torch.equal(other.snapshots[-1].images, alone.snapshots[-1].images)


def test_hash_and_validation():
    base = load_recipe(None).hash()
    assert load_recipe(None, ["render.beta1=0.5", "render.beta2=0.999"]).hash() == base  # fv's default: beta1 0.5
    article_adam = load_recipe(None, ["render.beta1=0.9"]).hash()  # the article's Adam adds nothing to a hash ...
    assert article_adam != base and load_recipe(None, ["render.beta2=0.99"]).hash() != base
    assert load_recipe("article").render.beta1 == 0.9 and load_recipe("lucid").render.beta1 == 0.9  # ... as theirs
    assert load_recipe(None, ["param.init_std=0.01"]).hash() != base  # explicit: written into the hash
    assert load_recipe(None, ["param.init_std=0"]).hash() != load_recipe(None, ["param.init_std=0.01"]).hash()
    with pytest.raises(FvError, match="render.beta1"):
        load_recipe(None, ["render.beta1=1.0"])
    with pytest.raises(FvError, match="render.beta2"):
        load_recipe(None, ["render.beta2=-0.1"])
    with pytest.raises(FvError, match="param.init_std"):
        load_recipe(None, ["param.init_std=-1"])
    with pytest.raises(FvError, match="param.init_std.*maco"):
        load_recipe(None, ["param.kind=maco", "param.init_std=0.02"])
