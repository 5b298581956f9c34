"""The yardstick of "the same picture up to float rounding" (tests/drift.py) can fail: another seed fails it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fvcli.models import load_model
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch
from fvcli.units.unit import parse_units

from drift import BATCH_DRIFT, drift, same_picture

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_numbers_are_levels_of_the_8_bit_picture():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 200  # one value of 300 off by 200 levels
    d = drift(a, b, 10.0, 10.5)
    assert d["max_levels"] == 200 and d["mean_levels"] == pytest.approx(200 / 300) and d["p99_levels"] == 0
    assert d["score_rel"] == pytest.approx(0.5 / 10.5)
    t = torch.zeros(3, 10, 10)
    assert drift(t, t.clone() + 1 / 255)["max_levels"] == 1  # tensors in [0, 1] quantize as the PNG writer does


def test_another_seed_is_another_picture_and_fails():
    model = load_model("demo", "cpu")
    sets = ["model.name=demo", "render.size=32", "render.steps=24", "render.device=cpu", "render.thresholds=[0]"]
    unit = parse_units("logit:3", model)
    a, again = run_batch(model, load_recipe(None, sets), unit), run_batch(model, load_recipe(None, sets), unit)
    b = run_batch(model, load_recipe(None, [*sets, "render.seed=1"]), unit)
    fa, fb = a.snapshots[-1], b.snapshots[-1]
    same_picture(fa.images[0], again.snapshots[-1].images[0], fa.scores[0], again.snapshots[-1].scores[0],
                 what="self-test: one seed twice")
    with pytest.raises(AssertionError):
        same_picture(fa.images[0], fb.images[0], fa.scores[0], fb.scores[0], what="self-test: another seed")
    d = drift(fa.images[0], fb.images[0])
    assert d["mean_levels"] > 10 * BATCH_DRIFT.mean_levels and d["p99_levels"] > 10 * BATCH_DRIFT.p99_levels
