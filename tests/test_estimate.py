"""`fv sweep --estimate`: the plan it prices is the sweep's, it writes nothing, and its arithmetic is right.

The measured seconds per step are the machine's and are not asserted here (benchmarks measure, tests check logic):
the probe is replaced by known numbers to check how they are combined, and one real probe checks the command end
to end.
"""
from __future__ import annotations

import pytest

from fvcli.budget import cost as cost_mod
from fvcli.models import ModelOptions, load_model
from fvcli.recipe import load_recipe
from fvcli.sweep import prepare_sweep, select_units
from fvcli.sweep.estimate import estimate


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


def _job(demo, out, *sets, bs=4, layers=("block1", "block3")):
    rec = load_recipe(None, ["render.size=32", "render.steps=10", "model.name=demo", *sets])
    return prepare_sweep(demo, rec, select_units(demo, list(layers)), out, batch_size=bs, dry=True)


def test_the_estimate_writes_nothing_and_prices_every_missing_unit(demo, tmp_path, monkeypatch):
    out = tmp_path / "never"
    job = _job(demo, out)
    per_step = {"block1": 1.0, "block3": 3.0}  # seconds per step of a full batch, as if measured
    monkeypatch.setattr(cost_mod, "step_seconds", lambda m, r, units, images, size: per_step[units[0].layer])
    e = estimate(job)
    assert not out.exists()
    n1, n3 = demo.layer("block1").channels, demo.layer("block3").channels
    assert e.units == n1 + n3 and e.batches == n1 // 4 + n3 // 4
    assert e.seconds == pytest.approx(10 * (n1 // 4 * 1.0 + n3 // 4 * 3.0))
    assert set(e.probes) == {"block1", "block3"} and not e.upper_bound


def test_what_is_done_is_not_priced_again(demo, tmp_path, monkeypatch):
    monkeypatch.setattr(cost_mod, "step_seconds", lambda m, r, units, images, size: 1.0)
    out = tmp_path / "sweep"
    assert estimate(_job(demo, out, "render.steps=2", layers=("block1",))).units == demo.layer("block1").channels
    rec = load_recipe(None, ["render.size=32", "render.steps=2", "model.name=demo"])
    prepare_sweep(demo, rec, select_units(demo, ["block1"]), out, batch_size=4).run(finalize_when_done=False)
    assert estimate(_job(demo, out, "render.steps=2", layers=("block1",))).units == 0
    next((out / "layers" / "block1").glob("*.json")).unlink()  # one unit lost
    e = estimate(_job(demo, out, "render.steps=2", layers=("block1",)))
    assert (e.units, e.batches) == (1, 1) and e.seconds == pytest.approx(2 * 1.0)


def test_coarse_to_fine_and_stop_converge_are_priced_as_they_run(demo, tmp_path, monkeypatch):
    seen = []

    def probe(m, r, units, images, size):
        seen.append(size)
        return 1.0 if size == 32 else 0.25

    monkeypatch.setattr(cost_mod, "step_seconds", probe)
    e = estimate(_job(demo, tmp_path / "a", "render.coarse=0.6", layers=("block1",)))
    assert sorted(set(seen)) == [16, 32]
    n = demo.layer("block1").channels // 4
    assert e.seconds == pytest.approx(n * (4 * 1.0 + 6 * 0.25))
    e = estimate(_job(demo, tmp_path / "b", "stop.converge=true", layers=("block1",)))
    assert e.upper_bound and "at most" in e.describe()


def test_the_command_measures_and_prints(cli, tmp_path):
    r = cli("sweep", "block1:0-7", "--model", "demo", "--size", 32, "--steps", 8, "--batch-size", 4,
            "-o", tmp_path / "s", "--estimate")
    assert r.exit_code == 0, r.output
    assert "8 units in 2 batch(es)" in r.output and "s/step" in r.output and "predicted" in r.output
    assert not (tmp_path / "s").exists()
