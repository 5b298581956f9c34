"""The spectrum's decay over the steps (recipe param.decay_from, param.decay_ramp; issue #29): the picture kept when
the decay changes, Adam going on as if it had always run at the new scale, steep-first renders smoother early and
still climbing, a unit the same alone, in a batch or in a refilled batch, coarse to fine carried through, and every
recipe without a schedule untouched."""
from __future__ import annotations

import pytest
import torch

from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.decay_schedule import decay_at, set_decay
from fvcli.optvis.optim import Adam
from fvcli.optvis.param import FourierImage, PixelImage, fft_scale
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch
from fvcli.units.unit import parse_units

from drift import same_picture


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


def gens(n: int = 2, seed: int = 5) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def high_frequency_share(img: torch.Tensor) -> float:
    """The share of an image batch's spectral energy (mean removed) above a quarter of the Nyquist frequency."""
    x = img - img.mean(dim=(-2, -1), keepdim=True)
    e = torch.fft.rfft2(x).abs() ** 2
    h, w = img.shape[-2:]
    f = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.rfftfreq(w)[None, :] ** 2)
    return float(e[..., f > 0.125].sum() / e.sum())


def test_the_decay_goes_linearly_to_the_final_power_and_stays():
    d = (1.0, 2.0, 8)
    assert decay_at(0, d) == 2.0 and decay_at(4, d) == pytest.approx(1.5) and decay_at(8, d) == decay_at(50, d) == 1.0
    assert all(decay_at(i, d) > decay_at(i + 1, d) for i in range(8))
    assert decay_at(3, (1.0, 0.5, 6)) == pytest.approx(0.75)  # the other way round too
    assert decay_at(0, (1.0, 2.0, 0)) == 1.0  # no ramp: the final power from the start


def test_a_new_decay_keeps_the_picture_and_gives_the_new_scale():
    img = FourierImage(gens(), 24, 20, decay_power=2.0)
    with torch.no_grad():
        img.spectrum.normal_()  # a picture with content at every frequency
    before = img().detach().clone()
    set_decay(img, 1.0)
    assert torch.allclose(img(), before, atol=1e-6)
    assert torch.allclose(img.scale, fft_scale(24, 20, 1.0), rtol=1e-5)
    assert img.decay_power == 1.0
    with pytest.raises(TypeError, match="Fourier"):
        set_decay(PixelImage(gens(), 8, 8), 1.0)


def test_adam_goes_on_as_if_it_had_always_run_at_the_new_scale():
    # Two twins take the same steps; then one gets a new decay. Its next step must move the spectrum's coefficients
    # exactly as its twin's does (the same Adam direction), so in the picture each frequency moves by new/old times
    # as far -- which needs the moments rescaled with the reparameterization (without, the directions differ).
    target = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def twin():
        p = FourierImage(gens(), 16, 16, decay_power=2.0)
        return p, Adam(p.parameters(), lr=0.05)

    def step(p, opt):
        opt.zero_grad()
        (-(p() * target).sum()).backward()
        opt.step()

    (a, opt_a), (b, opt_b) = twin(), twin()
    for _ in range(5):
        step(a, opt_a)
        step(b, opt_b)
    assert torch.equal(a.spectrum, b.spectrum)
    set_decay(a, 1.0, opt_a)
    xa, xb = a.spectrum.detach().clone(), b.spectrum.detach().clone()
    step(a, opt_a)
    step(b, opt_b)
    assert torch.allclose(a.spectrum - xa, b.spectrum - xb, atol=1e-6, rtol=1e-4)
    # the moments not rescaled: a different direction (what the rescale is for)
    (c, opt_c), (d, opt_d) = twin(), twin()
    for _ in range(5):
        step(c, opt_c)
        step(d, opt_d)
    set_decay(c, 1.0)  # no optimizer given
    xc, xd = c.spectrum.detach().clone(), d.spectrum.detach().clone()
    step(c, opt_c)
    step(d, opt_d)
    assert not torch.allclose(c.spectrum - xc, d.spectrum - xd, atol=1e-6, rtol=1e-4)


BASE = ["render.size=32", "render.steps=24", "model.name=demo", "render.thresholds=[0,6]"]
STEEP = ["param.decay_from=2.0", "param.decay_ramp=12"]


def test_a_steep_first_render_is_smoother_early_climbs_and_is_the_same_alone_or_in_a_batch(demo):
    units = parse_units("logit:1,4,7", demo)
    steep = run_batch(demo, load_recipe(None, BASE + STEEP), units)
    plain = run_batch(demo, load_recipe(None, BASE), units)
    at = {s.step: s for s in steep.snapshots}
    assert float(at[24].scores.mean()) > float(at[0].scores.mean()) + 1  # it climbs
    p6 = {s.step: s for s in plain.snapshots}[6]
    assert high_frequency_share(at[6].images) < 0.8 * high_frequency_share(p6.images)  # steep first: smoother early
    alone = run_batch(demo, load_recipe(None, BASE + STEEP), units[1:2])
    same_picture(alone.snapshots[-1].images[0], steep.snapshots[-1].images[1], alone.snapshots[-1].scores[0],
                 steep.snapshots[-1].scores[1], what="decay schedule: demo logit alone vs in a batch of 3")
    assert not torch.equal(plain.snapshots[-1].images, steep.snapshots[-1].images)


def test_coarse_to_fine_carries_the_schedule_on(demo):
    units = parse_units("logit:2", demo)
    rec = load_recipe(None, BASE + STEEP + ["render.coarse_steps=8"])
    res = run_batch(demo, rec, units)
    assert float(res.snapshots[-1].scores[0]) > float(res.snapshots[0].scores[0]) + 1
    no_sched = run_batch(demo, load_recipe(None, BASE + ["render.coarse_steps=8"]), units)
    assert not torch.equal(res.snapshots[-1].images, no_sched.snapshots[-1].images)


def test_in_a_refilled_batch_each_unit_follows_the_schedule_from_its_own_step(demo):
    """Continuous batching (fvcli/optvis/stream.py): a unit entering a slot while its batch-mate is at another step
    gets the decay of its own step, so its picture is the one it gets alone (the stop criterion makes units leave at
    different steps, so the later ones enter mid-way)."""
    from fvcli.optvis.stream import Convergence, StreamItem, render_stream
    from fvcli.runner.batch import unit_seed

    rec = load_recipe(None, ["render.size=32", "render.steps=48", "model.name=demo", *STEEP])
    crit = Convergence(min_steps=8, window=4, tol=0.05)
    target = parse_units("logit:3", demo)[0]
    runs, stops = {}, {}
    for name, (units, slots) in {"alone": ([target], 1),
                                 "enters late": ([*parse_units("logit:1,2,5", demo), target], 2)}.items():
        items = [StreamItem(u.objective(demo), unit_seed(rec, demo, u)) for u in units]
        fins = list(render_stream(demo, items, rec.loop_settings(), slots, crit))
        runs[name] = next(f for f in fins if units[f.index] == target)
        stops[name] = sorted(f.stop_step for f in fins)
    assert len(set(stops["enters late"])) > 1  # units left at different steps: the refills were mid-way
    ref, late = runs["alone"], runs["enters late"]
    assert late.stop_step == ref.stop_step
    same_picture(late.snapshots[-1].images[0], ref.snapshots[-1].images[0], late.snapshots[-1].scores[0],
                 ref.snapshots[-1].scores[0], what="decay schedule in a refilled batch: demo logit entering late vs alone")


def test_recipes_without_a_schedule_keep_their_hash_and_bad_combinations_are_named():
    off = load_recipe(None, ["param.decay_ramp=0"])  # the article's 1/f from the first step
    assert load_recipe(None, ["param.decay_ramp=0", "param.decay_from=2"]).hash() == off.hash()
    assert load_recipe(None, ["param.decay_ramp=64", "param.decay_from=1"]).hash() == off.hash()
    assert load_recipe(None).hash() != off.hash()
    assert load_recipe(None).loop_settings().decay() == (1.0, 1.5, 64)  # fv's default: 1.5 -> 1 over 64 steps
    assert off.loop_settings().decay() is None
    assert load_recipe("article").loop_settings().decay() is None and load_recipe("lucid").loop_settings().decay() is None
    # a pixel param has no spectrum: the default schedule is not its (same hash as with none), a written one is named
    pixel = load_recipe(None, ["param.kind=pixel"])
    assert pixel.loop_settings().decay() is None
    assert pixel.hash() == load_recipe(None, ["param.kind=pixel", "param.decay_ramp=0"]).hash()
    with pytest.raises(FvError, match="param.kind"):
        load_recipe(None, ["param.decay_ramp=32", "param.decay_from=1.5", "param.kind=pixel"])
    assert load_recipe(None, ["param.decay_ramp=64", "param.decay_from=1.5", "stop.converge=true"]).stop.converge
    with pytest.raises(FvError, match="decay_from"):
        load_recipe(None, ["param.decay_from=9"])
