"""`--batch-size auto` on the CPU picks a measured best batch size per model and caches it (fvcli/runner/autobatch.py)."""
from __future__ import annotations

import json

import pytest

from conftest import tiny_recipe
from fvcli.runner import autobatch
from fvcli.models import load_model
from fvcli.runner.batch import auto_batch_size


@pytest.fixture
def demo():
    return load_model("demo", "cpu")


def test_pick_takes_the_smallest_batch_within_the_tie_of_the_best():
    assert autobatch.pick({1: 10.0, 2: 19.0, 4: 30.0, 8: 30.5, 16: 29.0}) == 4  # 30 is within 3 % of 30.5
    assert autobatch.pick({1: 10.0, 2: 19.0, 4: 25.0, 8: 30.5, 16: 29.0}) == 8
    assert autobatch.pick({1: 5.0, 2: 4.0}) == 1


def test_probe_measures_each_candidate_caches_the_choice_and_reuses_it(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("FV_CACHE_DIR", str(tmp_path))
    settings = tiny_recipe(size=32).loop_settings()
    calls = []
    real = autobatch.measure

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(autobatch, "measure", spy)
    bs = autobatch.measured_batch_size(demo, settings, candidates=(1, 2, 4))
    data = json.loads((tmp_path / "batch_size.json").read_text())
    (key, entry), = data.items()
    assert key == autobatch.cache_key(demo, settings, (1, 2, 4)) and entry["batch_size"] == bs
    measured = sorted(int(b) for b in entry["image_steps_per_s"])  # ascending; stops once a larger batch stops paying
    assert measured == [1, 2, 4][:len(measured)] and len(measured) >= 2
    assert all(v > 0 for v in entry["image_steps_per_s"].values())
    assert bs == autobatch.pick({int(b): v for b, v in entry["image_steps_per_s"].items()})
    # cached: no second measurement, same answer; another size is another key (measured again)
    assert autobatch.measured_batch_size(demo, settings, candidates=(1, 2, 4)) == bs and len(calls) == 1
    autobatch.measured_batch_size(demo, tiny_recipe(size=24).loop_settings(), candidates=(1, 2))
    assert len(calls) == 2 and len(json.loads((tmp_path / "batch_size.json").read_text())) == 2


def test_auto_batch_size_on_cpu_uses_the_cached_measurement_capped_by_the_units(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("FV_CACHE_DIR", str(tmp_path))
    recipe = tiny_recipe(size=32)
    key = autobatch.cache_key(demo, recipe.loop_settings())
    (tmp_path / "batch_size.json").write_text(json.dumps({key: {"batch_size": 16}}))
    monkeypatch.setattr(autobatch, "measure", lambda *a, **k: pytest.fail("should use the cache"))
    assert auto_batch_size(demo, recipe, 100) == 16
    # 5 units: only batch sizes up to 4 are probed (their own cache entry); one unit needs no probe at all
    capped = autobatch.cache_key(demo, recipe.loop_settings(), (1, 2, 4))
    (tmp_path / "batch_size.json").write_text(json.dumps({key: {"batch_size": 16}, capped: {"batch_size": 4}}))
    assert auto_batch_size(demo, recipe, 5) == 4
    assert auto_batch_size(demo, recipe, 1) == 1
    (tmp_path / "batch_size.json").write_text(json.dumps({key: {"batch_size": 2}}))
    assert auto_batch_size(demo, recipe, 100) == 2
