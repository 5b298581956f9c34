"""Robustness beyond the article's suite (fvcli/optvis/transforms.py): zoom, noise, blur, copies.

Each image's random values come from its own generator (per unit, not per batch), copies are really rendered and
averaged, and the article's chain draws exactly what it drew before these steps existed.
"""
from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_recipe
from fvcli.errors import FvError
from fvcli.optvis.metrics import high_frequency_energy
from fvcli.optvis.objectives import Objective
from fvcli.recipe.chains import parse_transforms, transforms_to_yaml
from fvcli.optvis.loop import optimize, unit_generators
from fvcli.optvis.param import make_param
from fvcli.optvis.transforms import ARTICLE, Blur, Copies, Crop, Noise, Pad, Rotate, Schedule, Zoom, draw, gaussian_blur

H = W = 32
CHAIN = (Pad(4), Zoom(0.7, 1.5), Rotate((-10.0, 0.0, 10.0)), Blur(0.0, 1.5), Noise(0.05), Copies(3), Crop())


def gens(*seeds: int) -> list[torch.Generator]:
    return unit_generators(list(seeds), "transforms")


def test_every_random_value_is_per_image_and_per_unit_seed():
    steps = 5
    alone = Schedule.build(CHAIN, steps, gens(11), H, W, torch.device("cpu"))
    batch = Schedule.build(CHAIN, steps, gens(7, 11, 9), H, W, torch.device("cpu"))
    again = Schedule.build(CHAIN, steps, gens(7, 11, 9), H, W, torch.device("cpu"))
    k = 3
    assert alone.thetas.shape == (steps, k * 1, 2, 3) and batch.thetas.shape == (steps, k * 3, 2, 3)
    rows_alone = [c * 1 + 0 for c in range(k)]
    rows_batch = [c * 3 + 1 for c in range(k)]  # copy-major: copy c of image b is row c * B + b
    assert torch.equal(alone.thetas[:, rows_alone], batch.thetas[:, rows_batch])
    assert torch.equal(alone.sigmas[:, rows_alone], batch.sigmas[:, rows_batch])
    for step in (0, 4):
        na, nb, nc = (s.draws(step)[2] for s in (alone, batch, again))
        assert torch.equal(na, nb[rows_batch]) and torch.equal(nb, nc)
    assert not torch.equal(alone.draws(0)[2], alone.draws(1)[2])  # new noise every step
    assert not torch.equal(batch.thetas[:, 0], batch.thetas[:, 1])  # batch-mates draw their own
    assert not torch.equal(batch.thetas[:, 1], batch.thetas[:, 4])  # and so do the copies of one image
    assert float(batch.draws(2)[2].std()) == pytest.approx(0.05, rel=0.1)


def test_zoom_factors_stay_in_range_and_windows_inside_the_image():
    g = torch.Generator().manual_seed(0)
    m = draw((Zoom(1.2, 2.0),), 2000, g, size=100.0)  # output -> input, centered pixels
    z = 1 / m[:, 0, 0]
    assert float(z.min()) >= 1.2 - 1e-9 and float(z.max()) <= 2.0 + 1e-9
    assert float(z.min()) < 1.25 and float(z.max()) > 1.9  # the whole range is used
    # log-uniform: half of the draws below the geometric mean
    assert abs(float((z < math.sqrt(1.2 * 2.0)).double().mean()) - 0.5) < 0.05
    # the corners of the output map inside the image (zoom >= 1 crops in)
    for cx, cy in ((-50, -50), (50, 50), (-50, 50)):
        x = m[:, 0, 0] * cx + m[:, 0, 2]
        y = m[:, 1, 1] * cy + m[:, 1, 2]
        assert float(x.abs().max()) <= 50 + 1e-6 and float(y.abs().max()) <= 50 + 1e-6


def test_article_chain_draws_what_it_drew_before():
    """No new draws for chains without the new steps: Schedule equals the per-image `draw` normalised."""
    steps, seeds = 6, (3, 4)
    s = Schedule.build(ARTICLE, steps, gens(*seeds), H, W, torch.device("cpu"))
    assert s.copies == 1 and s.sigmas is None and s.noise_std == 0 and s.thetas.shape == (steps, 2, 2, 3)
    for b, g in enumerate(gens(*seeds)):
        m = draw(ARTICLE, steps, g)
        assert torch.allclose(s.thetas[:, b, :, 2], (m[:, :, 2] / (W / 2)).float())
        assert torch.allclose(s.thetas[:, b, :, :2], m[:, :, :2].float())


def test_blur_sigma_per_image():
    x = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    y = gaussian_blur(x, torch.tensor([0.0, 1.0, 3.0]))
    assert torch.allclose(y[0], x[0], atol=1e-5)  # sigma 0: unchanged
    hf = high_frequency_energy(y)
    assert float(hf[2]) < float(hf[1]) < float(high_frequency_energy(x[1:2])[0])
    assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)  # a blur keeps the mean


class CountingObjective(Objective):
    """Mean of the image the network saw; counts calls and the batch sizes it was given."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    @property
    def layers(self):  # type: ignore[override]
        return frozenset({"conv2d0"})

    def score(self, acts, image):
        self.calls.append(acts["conv2d0"].shape[0])
        return acts["conv2d0"].flatten(1).mean(1)


def test_copies_are_rendered_and_averaged(iv1):
    steps, b, k = 3, 2, 3
    obj = CountingObjective()
    param = make_param("fourier", unit_generators([1, 2], "init"), H, W)
    sched = Schedule.build(CHAIN, steps, gens(1, 2), H, W, iv1.device)
    assert sched.apply(param(), 0).shape == (k * b, 3, H, W)
    snaps = list(optimize(iv1, obj, param, sched, steps, 0.05, []))
    train_calls = obj.calls[: steps * k]
    assert train_calls == [b] * (steps * k)  # K objective calls of B images per step
    assert obj.calls[steps * k:] == [b]  # the snapshot scores the untransformed images once
    assert snaps[-1].scores.shape == (b,)


def test_recipe_round_trip_and_errors():
    y = [{"pad": 8}, {"zoom": [0.5, 1.5]}, {"rotate": [-5.0, 5.0]}, {"blur": [0.0, 1.0]}, {"noise": 0.02},
         {"copies": 4}, {"crop": True}]
    chain = parse_transforms(y)
    assert chain[1] == Zoom(0.5, 1.5) and chain[5] == Copies(4)
    assert transforms_to_yaml(chain) == y
    assert tiny_recipe("transforms=" + str(y).replace("True", "true")).transforms == chain
    for bad, what in (([{"zoom": [1.5, 0.5]}], "low <= high"), ([{"noise": 2}], "out of range"),
                      ([{"copies": 0}], "out of range"), ([{"zom": [1, 2]}], "did you mean")):
        with pytest.raises(FvError, match=what):
            parse_transforms(bad)


def test_transforms_written_for_one_size_keep_their_strength_at_another():
    from dataclasses import replace

    from fvcli.recipe import from_dict, load_recipe
    from fvcli.optvis.transforms import STRONG, Jitter, at_size

    q = load_recipe("quality")
    assert q.transforms == STRONG and q.render.transforms_at_size == 224
    assert q.loop_settings().transforms == STRONG  # at its own size: as written
    at128 = replace(q, render=replace(q.render, size=128)).loop_settings().transforms
    # 32 * 128 / 224 = 18.3 -> 18, 16 * 128 / 224 = 9.1 -> 9: the values measured in the ImageNet benchmark
    assert at128 == (Pad(18), Jitter(18), STRONG[2], STRONG[3], Jitter(9), Crop())
    assert at_size((Jitter(1), Pad(0), Blur(0.5, 2.0)), 56, 224) == (Jitter(1), Pad(0), Blur(0.125, 0.5))
    # without the key the pixel amounts are used as written (the article's way), and the hash is what it was
    plain = from_dict({"render": {"size": 64, "transforms_at_size": None}, "transforms": "article"})
    assert plain.loop_settings().transforms == ARTICLE
    scaled = from_dict({"render": {"size": 64}, "transforms": "article"})  # the default: written for 224 px
    assert scaled.loop_settings().transforms[0] == Pad(5) and scaled.hash() != plain.hash()
    # where scaling changes nothing (at 224 px, or no pixel amounts) the hash is the one it always had
    assert from_dict({"transforms": "article"}).hash() == from_dict(
        {"render": {"transforms_at_size": None}, "transforms": "article"}).hash()
    # the default recipe is `quality`
    assert load_recipe("default") == load_recipe("quality") == from_dict({})
