"""Adam's beta1 over the steps (render.beta1_from / render.beta1_ramp, fvcli/optvis/optim.py): both optimizers
follow the textbook recursion with the product of the betas as bias correction, a stream's rows each at their own
step, a fine phase after a coarse one goes on along the render's schedule, and a recipe without a schedule keeps
its hash."""
from __future__ import annotations

import pytest
import torch

from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.optim import Adam, RowAdam, beta1_at
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch
from fvcli.units.unit import parse_units

from stream_entry import late_entry_matches_alone

RAMP = ["render.beta1=0.9", "render.beta1_from=0.5", "render.beta1_ramp=12"]
BASE = ["render.size=32", "render.steps=24", "model.name=demo", "render.thresholds=[0]"]


def textbook(start: torch.Tensor, betas: list[float], lr: float = 0.05, beta2: float = 0.999, eps: float = 1e-8):
    """Adam written out in float64 with beta1 = betas[t] at step t: m, v, and m / (1 - prod betas) as the mean."""
    p = start.double().clone().requires_grad_()
    m, v, prod = torch.zeros_like(p), torch.zeros_like(p), 1.0
    for t, b in enumerate(betas, 1):
        p.grad = None
        ((p - (t - 1) * 0.1) ** 3).sin().sum().backward()
        g = p.grad
        m = b * m + (1 - b) * g
        v = beta2 * v + (1 - beta2) * g * g
        prod *= b
        with torch.no_grad():
            p -= lr * (m / (1 - prod)) / ((v / (1 - beta2**t)).sqrt() + eps)
    return p.detach().float()


def run(opt_cls, start: torch.Tensor, steps: int, **kw) -> torch.Tensor:
    p = start.clone().requires_grad_()
    opt = opt_cls([p], lr=0.05, betas=(0.9, 0.999), **kw)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        ((p - step * 0.1) ** 3).sin().sum().backward()
        opt.step()
    return p.detach()


def test_beta1_at_is_a_linear_ramp_then_constant():
    assert [beta1_at(s, 0.9, (0.5, 4)) for s in (0, 2, 4, 9)] == [0.5, 0.7, 0.9, 0.9]
    assert beta1_at(3, 0.9, None) == 0.9
    torch.testing.assert_close(beta1_at(torch.tensor([0.0, 2.0, 8.0], dtype=torch.float64), 0.9, (0.5, 4)),
                               torch.tensor([0.5, 0.7, 0.9], dtype=torch.float64))


def test_both_adams_follow_the_textbook_recursion_under_a_ramp():
    start = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    want = textbook(start, [beta1_at(t, 0.9, (0.5, 8)) for t in range(20)])
    for cls in (Adam, RowAdam):
        torch.testing.assert_close(run(cls, start, 20, beta1_ramp=(0.5, 8)), want, rtol=1e-5, atol=1e-6)
    # the bias correction is the product of the betas, not beta1**t at the current beta1 (torch's way)
    assert not torch.allclose(run(Adam, start, 20), want, rtol=1e-5, atol=1e-6)
    # a fine phase that starts at step 5 takes the betas of steps 5.. of the render
    late = textbook(start, [beta1_at(t, 0.9, (0.5, 8)) for t in range(5, 25)])
    torch.testing.assert_close(run(Adam, start, 20, beta1_ramp=(0.5, 8), first_step=5), late, rtol=1e-5, atol=1e-6)


def test_rowadam_rows_follow_their_own_steps():
    """A row that joined later is at an earlier point of the ramp: the same as that row run alone."""
    start = torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    p = start[:1].clone().requires_grad_()
    opt = RowAdam([p], lr=0.05, betas=(0.9, 0.999), beta1_ramp=(0.5, 8))
    f = lambda x, s: ((x - s * 0.1) ** 3).sin().sum()  # noqa: E731  (s: each row's own step)
    for step in range(6):
        opt.zero_grad()
        f(p, step).backward()
        opt.step()
    p = torch.cat([p.detach(), start[1:]]).requires_grad_()  # a second image enters at its step 0
    opt.add_rows(1)
    opt.params = [p]
    for step in range(6, 16):
        opt.zero_grad()
        (f(p[:1], step) + f(p[1:], step - 6)).backward()
        opt.step()
    torch.testing.assert_close(p[1].detach(), textbook(start[1:], [beta1_at(t, 0.9, (0.5, 8)) for t in range(10)])[0],
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p[0].detach(), textbook(start[:1], [beta1_at(t, 0.9, (0.5, 8)) for t in range(16)])[0],
                               rtol=1e-5, atol=1e-6)
    opt.keep_rows(torch.tensor([1]))
    assert opt.beta1_prod.tolist() == pytest.approx([0.5 * 0.55 * 0.6 * 0.65 * 0.7 * 0.75 * 0.8 * 0.85 * 0.9 * 0.9])


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


def test_a_ramped_render_climbs_on_a_path_of_its_own(demo):
    units = parse_units("logit:1,4", demo)
    ramp = run_batch(demo, load_recipe(None, [*BASE, *RAMP]), units)
    assert float(ramp.snapshots[-1].scores.mean()) > float(ramp.snapshots[0].scores.mean()) + 1
    for other in (["render.beta1=0.9"], ["render.beta1=0.5"]):  # neither constant end is the ramp
        res = run_batch(demo, load_recipe(None, [*BASE, *other]), units)
        assert not torch.equal(res.snapshots[-1].images, ramp.snapshots[-1].images), other
    flat = run_batch(demo, load_recipe(None, [*BASE, "render.beta1=0.9", "render.beta1_from=0.9",
                                              "render.beta1_ramp=12"]), units)  # from == to: no schedule at all
    same = run_batch(demo, load_recipe(None, [*BASE, "render.beta1=0.9"]), units)
    assert torch.equal(flat.snapshots[-1].images, same.snapshots[-1].images)


def test_a_unit_entering_a_stream_late_is_on_its_own_ramp(demo):
    rec = load_recipe(None, ["render.size=32", "render.steps=24", "model.name=demo", *RAMP])
    late_entry_matches_alone(demo, rec, "beta1 ramp: demo logit")


def test_coarse_then_fine_goes_on_along_the_ramp(demo, monkeypatch):
    """The fine phase's optimizer starts at the render's step, not at the ramp's start."""
    import fvcli.optvis.loop as loop

    made = []

    class Recording(Adam):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(loop, "Adam", Recording)
    units = parse_units("logit:1,4", demo)
    res = run_batch(demo, load_recipe(None, [*BASE, "render.coarse_steps=8", "render.size=64", *RAMP]), units)
    assert [(o.beta1_ramp, o.first_step, o.t) for o in made] == [((0.5, 12), 0, 8), ((0.5, 12), 8, 16)]
    assert made[1].beta1_prod == pytest.approx(float(torch.tensor([beta1_at(t, 0.9, (0.5, 12))
                                                                   for t in range(8, 24)]).prod()))
    assert float(res.snapshots[-1].scores.mean()) > float(res.snapshots[0].scores.mean()) + 1


def test_hash_and_validation():
    base = load_recipe(None).hash()
    assert load_recipe(None, ["render.beta1_ramp=64"]).hash() == base  # no start value: no schedule
    assert load_recipe(None, ["render.beta1_from=0.5", "render.beta1_ramp=64"]).hash() == base  # from == beta1
    assert load_recipe(None, ["render.beta1_from=0.3", "render.beta1_ramp=0"]).hash() == base  # no ramp
    assert load_recipe(None, ["render.beta1_from=0.3", "render.beta1_ramp=64"]).hash() != base
    assert load_recipe("article").hash() == "39dd6d5c70d6caa4"
    assert load_recipe(None, RAMP).loop_settings().beta1_schedule() == (0.5, 12)
    with pytest.raises(FvError, match="render.beta1_from"):
        load_recipe(None, ["render.beta1_from=1.5"])
    with pytest.raises(FvError, match="render.beta1_ramp"):
        load_recipe(None, ["render.beta1_ramp=-4"])
