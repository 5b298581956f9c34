"""fv sweep: planning, sharding, resume, byte-identity, kill-and-resume, identity protection, manifest, gallery."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fvcli.cli import app
from fvcli.errors import FvError
from fvcli.outputs import read_png
from fvcli.recipe import from_dict as recipe_from_dict
from fvcli.recipe import load_recipe
from fvcli.runner.job import render_units
from fvcli.sweep import (
    SPRITE,
    assign_shards,
    finalize,
    layer_costs,
    layer_dir,
    parse_shard,
    plan_sweep,
    prepare_sweep,
    run_sweep,
    select_units,
    shard_from_env,
    sheet_tile,
)
from fvcli.units.unit import Unit

STEPS, SIZE = 2, 32
SETS = [f"render.steps={STEPS}", f"render.size={SIZE}", "model.weights=random:0"]
SPECS = ["mixed3a:0-5", "conv2d2:0-2"]  # batch size 4 -> batches mixed3a 0-3, 4-5 and conv2d2 0-2


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny renders run on one thread


@pytest.fixture(scope="module")
def model(iv1):
    return iv1  # conftest: InceptionV1 with random:0 weights on the CPU


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(None, SETS)


@pytest.fixture(scope="module")
def units(model):
    return select_units(model, SPECS)


@pytest.fixture(scope="module")
def reference(model, recipe, units, tmp_path_factory):
    """One uninterrupted, unsharded sweep: the bytes everything else must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    report = run_sweep(model, recipe, units, out, batch_size=4)
    assert report.rendered == len(units) and report.complete
    return out


def pngs(out: Path) -> dict[str, bytes]:
    """Unit images (not sheets) by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "layers").glob("*/*.png"))
            if p.name != "sheet.png"}


def records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "layers").glob("*/*.json"))}


# -- planning and sharding -------------------------------------------------------------------------------------


def test_plan_batches_are_fixed_channel_chunks_of_one_layer(units):
    plan = plan_sweep(units, 4, {"mixed3a": 2, "conv2d2": 1}, {"conv2d2": 0, "mixed3a": 1})
    assert [[u.label for u in b.units] for b in plan] == [
        ["conv2d2:0", "conv2d2:1", "conv2d2:2"],
        ["mixed3a:0", "mixed3a:1", "mixed3a:2", "mixed3a:3"], ["mixed3a:4", "mixed3a:5"]]
    assert [b.cost for b in plan] == [3, 8, 4]
    # the argument order does not matter, and a subset keeps each unit's batch (chunk c // B)
    shuffled = list(reversed(units))
    assert [b.units for b in plan_sweep(shuffled, 4, {}, {"conv2d2": 0, "mixed3a": 1})] == [b.units for b in plan]
    sub = plan_sweep([u for u in units if u.channel != 1], 4, {}, {"conv2d2": 0, "mixed3a": 1})
    assert [b.id for b in sub] == [b.id for b in plan]
    for b in sub:
        assert {u.channel // 4 for u in b.units} == {b.chunk} and len({u.layer for u in b.units}) == 1


def test_select_units_defaults_to_every_channel_of_the_main_layers(model):
    every = select_units(model, None)
    assert len(every) == sum(model.catalog[name].channels for name in model.main_layers) == 5804
    assert select_units(model, ["mixed4a"]) == [Unit("channel", "mixed4a", c) for c in range(508)]
    with pytest.raises(FvError, match="unknown layer 'mixed9z'"):
        select_units(model, ["mixed9z"])
    with pytest.raises(FvError, match="renders channels"):
        select_units(model, ["dream:mixed4a"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=0, max_size=60), st.integers(1, 12))
def test_shards_cover_every_batch_once_and_balance_within_one_batch(costs, n):
    assign = assign_shards(costs, n)
    assert len(assign) == len(costs) and all(0 <= s < n for s in assign)  # each batch in exactly one shard
    loads = [sum(c for c, s in zip(costs, assign) if s == k) for k in range(n)]
    assert sum(loads) == sum(costs)
    if costs:
        assert max(loads) - min(loads) <= max(costs)  # greedy LPT bound
    assert assign_shards(costs, n) == assign  # deterministic


def test_cost_model_and_sharding_of_the_whole_googlenet_sweep(model):
    costs = layer_costs(model, model.main_layers, 224)
    # deeper layers cost more (FLOPs of the truncated forward pass)
    assert costs["conv2d0"] < costs["conv2d2"] < costs["mixed3a"] < costs["mixed4a"] < costs["mixed5b"]
    # multiply-adds: 2 x 0.983 G = 1.97 GFLOP per image at 224 px, as measured in ../shared/facts/performance.md
    assert 2 * costs["mixed4a"] / 1e9 == pytest.approx(1.97, rel=0.01)
    units = select_units(model, None)
    plan = plan_sweep(units, 8, costs, {n: i.order for n, i in model.catalog.items()})
    for n in (2, 3, 8, 16):
        assign = assign_shards([b.cost for b in plan], n)
        shards = [[b for b, s in zip(plan, assign) if s == k] for k in range(n)]
        got = [u.label for sh in shards for b in sh for u in b.units]
        assert len(got) == len(set(got)) and set(got) == {u.label for u in units}  # all units, no overlap
        loads = [sum(b.cost for b in sh) for sh in shards]
        assert max(loads) / (sum(loads) / n) < 1.01  # roughly balanced cost
        counts = [sum(len(b.units) for b in sh) for sh in shards]
        if n == 8:  # balancing by cost, not by count: shards holding shallow layers hold more units
            assert max(counts) > min(counts)


def test_shard_from_environment():
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1",
                           "SLURM_ARRAY_TASK_COUNT": "4"}) == (3, 4)
    assert shard_from_env({"JOB_COMPLETION_INDEX": "2", "FV_SHARD_COUNT": "5"}) == (2, 5)
    assert shard_from_env({"JOB_COMPLETION_INDEX": "2"}, count=3) == (2, 3)
    assert shard_from_env({"FV_SHARD": "1/2", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}) == (1, 2)
    with pytest.raises(FvError, match="FV_SHARD_COUNT"):
        shard_from_env({"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(FvError, match="index must be in 0-3"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"})
    for bad in ("3", "2/2", "a/b", "-1/3", "0/0"):
        with pytest.raises(FvError, match="bad shard"):
            parse_shard(bad)
    with pytest.raises(FvError, match="shard count N must be at least 1"):
        parse_shard("1/0")
    # --array=0-14:2 (8 tasks, ids 0, 2, .., 14) and --array=1-8
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
                           "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_STEP": "1",
                           "SLURM_ARRAY_TASK_COUNT": "8"}) == (7, 8)
    with pytest.raises(FvError, match="not in the array's range"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "8"})
    with pytest.raises(FvError, match=r"bad SLURM_ARRAY_TASK_ID='x' in the environment"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(FvError, match=r"bad FV_SHARD_COUNT='0' in the environment: expected an integer >= 1"):
        shard_from_env({"JOB_COMPLETION_INDEX": "0", "FV_SHARD_COUNT": "0"})
    with pytest.raises(FvError, match="SLURM_ARRAY_TASK_COUNT is not"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "1"}, count=2) == (1, 2)
    with pytest.raises(FvError, match="--shard-count needs a shard index"):
        shard_from_env({}, count=2)


# -- byte-identity across shards and resumes ---------------------------------------------------------------------


def test_png_bytes_are_the_same_whichever_shard_renders_them(model, recipe, units, reference, tmp_path):
    out = tmp_path / "sharded"
    reports = [run_sweep(model, recipe, units, out, batch_size=4, shard=(i, 3)) for i in (2, 0, 1)]
    assert sum(r.rendered for r in reports) == len(units)
    assert [r.complete for r in reports] == [False, False, True] and reports[-1].manifest["complete"]
    assert pngs(out) == pngs(reference)
    shards = {rec["sweep"]["shard"] for rec in records(out).values()}
    assert shards == {"0/3", "1/3", "2/3"}
    assert len(list((out / "shards").glob("*.json"))) == 3  # one state file per shard


def test_png_bytes_are_the_same_after_interruptions_and_partial_batches(model, recipe, units, reference, tmp_path):
    out = tmp_path / "resumed"

    class Stop(Exception):
        pass

    def stop_after_first(_batch, _n):
        raise Stop

    with pytest.raises(Stop):
        run_sweep(model, recipe, units, out, batch_size=4, on_batch=stop_after_first)
    first = records(out)
    assert len(first) in (3, 4)  # one batch written
    # a batch killed half-way through writing: one member has its PNG but no record, another nothing at all
    victim = sorted(first)[0]
    (layer_dir(out, first[victim]["layer"]) / f"{victim}.json").unlink()
    other = sorted(first)[1]
    for suffix in (".json", ".png"):
        (layer_dir(out, first[other]["layer"]) / f"{other}{suffix}").unlink()
    inodes = {k: (layer_dir(out, r["layer"]) / f"{k}.json").stat().st_ino for k, r in first.items()
              if k not in (victim, other)}
    job = prepare_sweep(model, recipe, units, out, batch_size="auto")  # auto reuses the directory's batch size
    assert job.batch_size == 4 and len(job.todo) == 3
    report = job.run()
    assert report.rendered == len(units) - len(inodes) and report.skipped == len(inodes)
    after = records(out)
    for k, ino in inodes.items():  # done units are never rewritten
        assert (layer_dir(out, after[k]["layer"]) / f"{k}.json").stat().st_ino == ino
    assert pngs(out) == pngs(reference)
    again = run_sweep(model, recipe, units, out, batch_size=4)
    assert again.rendered == 0 and again.skipped == len(units)


def test_sweep_matches_the_unit_rendered_alone_up_to_float_noise(model, recipe, reference, tmp_path):
    unit = Unit("channel", "mixed3a", 5)  # rendered second in its batch by the sweep
    render_units(model, recipe, [unit], tmp_path, batch_size=1)  # what `fv render mixed3a:5` does
    alone = read_png(tmp_path / f"{unit.key}.png").astype(int)
    swept = read_png(layer_dir(reference, "mixed3a") / f"{unit.key}.png").astype(int)
    diff = np.abs(alone - swept)
    assert diff.max() <= 3 and diff.mean() < 0.05
    rec_alone = json.loads((tmp_path / f"{unit.key}.json").read_text())
    rec_swept = records(reference)[unit.key]
    assert rec_alone["seed"] == rec_swept["seed"] and rec_alone["recipe_hash"] == rec_swept["recipe_hash"]
    assert rec_swept["final_score"] == pytest.approx(rec_alone["final_score"], rel=1e-3, abs=1e-4)


# -- identity protection ---------------------------------------------------------------------------------------


def test_a_different_recipe_or_batch_size_is_refused_unless_overwrite(model, units, tmp_path):
    out = tmp_path / "sweep"
    rec_a = load_recipe(None, SETS)
    job = prepare_sweep(model, rec_a, units[:2], out, batch_size=4)
    job.run(finalize_when_done=False)
    before = sorted(p.name for p in out.rglob("*"))
    rec_b = load_recipe(None, SETS + ["render.seed=1"])
    with pytest.raises(FvError, match=rf"holds a different sweep: recipe hash '{rec_a.hash()}' "
                                      rf"\(this run: '{rec_b.hash()}'\)"):
        prepare_sweep(model, rec_b, units[:2], out, batch_size=4)
    with pytest.raises(FvError, match=r"batch size 4 \(this run: 2\)"):
        prepare_sweep(model, rec_a, units[:2], out, batch_size=2)
    with pytest.raises(FvError, match=r"weights \(sha256\)"):
        prepare_sweep(dataclasses.replace(model, weights_sha256="0" * 64), rec_a, units[:2], out, batch_size=4)
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written by the refused runs
    job = prepare_sweep(model, rec_b, units[:2], out, batch_size=4, overwrite=True)
    assert len(job.todo) == 1  # the old records no longer count
    job.run(finalize_when_done=False)
    recs = records(out)
    assert {r["recipe_hash"] for r in recs.values()} == {rec_b.hash()} and {r["seed"] for r in recs.values()} != set()
    assert json.loads((out / "sweep.json").read_text())["recipe_hash"] == rec_b.hash()


def test_cli_refuses_a_different_recipe_with_exit_2(tmp_path):
    out = tmp_path / "sweep"
    runner = CliRunner()
    args = ["sweep", "conv2d2:0", "-w", "random:0", "--size", "16", "--steps", "1", "-o", str(out), "-q"]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "1 rendered" in ok.output and "complete" in ok.output
    bad = runner.invoke(app, args + ["--seed", "7"])
    assert bad.exit_code == 2
    assert "holds a different sweep: recipe hash" in bad.output and "--overwrite" in bad.output
    assert "Traceback" not in bad.output
    before = json.loads((out / "sweep.json").read_text())["recipe_hash"]
    over = runner.invoke(app, args + ["--seed", "7", "--overwrite"])
    assert over.exit_code == 0, over.output
    assert "1 rendered, 0 already done" in over.output
    after = json.loads((out / "sweep.json").read_text())["recipe_hash"]
    assert after != before and after == load_recipe(None, ["model.weights=random:0", "render.size=16", "render.steps=1",
                                                        "render.seed=7"]).hash()


SHARD_ENV = ("FV_SHARD", "FV_SHARD_COUNT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
             "SLURM_ARRAY_TASK_STEP", "JOB_COMPLETION_INDEX")


def test_cli_takes_shards_from_slurm_and_kubernetes_env_then_finalizes(tmp_path):
    out = tmp_path / "sweep"
    runner = CliRunner()
    args = ["sweep", "conv2d2:0-3", "-w", "random:0", "--size", "16", "--steps", "1", "-b", "2", "-o", str(out), "-q"]

    def run(extra=(), **env):
        return runner.invoke(app, args + list(extra), env={k: None for k in SHARD_ENV} | env)

    k8s = run(JOB_COMPLETION_INDEX="1", FV_SHARD_COUNT="2")  # a Kubernetes indexed job, completions 2
    assert k8s.exit_code == 0, k8s.output
    assert "shard 1/2: 1 batch(es), 2 units (batch size 2): 2 rendered" in k8s.output and "not complete" in k8s.output
    fin = runner.invoke(app, ["sweep", "--finalize", "-o", str(out)])
    assert fin.exit_code == 0 and "2 of 4 units missing" in fin.output
    slurm = run(SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_MIN="1", SLURM_ARRAY_TASK_COUNT="2")  # --array=1-2
    assert slurm.exit_code == 0, slurm.output
    assert "shard 0/2: 1 batch(es), 2 units (batch size 2): 2 rendered" in slurm.output
    assert "(4 units, complete)" in slurm.output  # the last shard finalizes
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and sorted((s["shard"], s["of"]) for s in m["shards"]) == [(0, 2), (1, 2)]
    assert sorted(r["sweep"]["shard"] for r in records(out).values()) == ["0/2", "0/2", "1/2", "1/2"]
    again = run(["--shard-count", "2"], JOB_COMPLETION_INDEX="1")  # the count from the command line
    assert again.exit_code == 0 and "shard 1/2" in again.output and "0 rendered, 2 already done" in again.output
    for env, msg in (({"JOB_COMPLETION_INDEX": "1"}, "set FV_SHARD_COUNT"),
                     ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2"}, "index must be in 0-1"),
                     ({"SLURM_ARRAY_TASK_ID": "one", "SLURM_ARRAY_TASK_COUNT": "2"}, "bad SLURM_ARRAY_TASK_ID='one'")):
        r = run(**env)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_sweep_targets(tmp_path):
    venv = Path(sys.prefix)  # the venv running the tests; -o: never (re)install it from here
    make = ["make", "-s", "-C", str(ROOT), f"VENV={venv}", "-o", str(venv / ".fv-installed")]
    every = subprocess.run(make + ["-n", "sweep-googlenet", "SWEEP_ARGS=--shard 0/4"], capture_output=True, text=True)
    assert every.returncode == 0, every.stderr
    assert every.stdout.split()[1:] == ["sweep", "mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d",
                                        "mixed4e", "mixed5a", "mixed5b", "--shard", "0/4"]
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(make + ["sweep", "LAYERS=conv2d2:0-2",
                               f"SWEEP_ARGS=-w random:0 --size 16 --steps 1 -b 2 --no-finalize -o {out} -q"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 rendered" in r.stdout and not (out / "manifest.json").exists()
    fin = subprocess.run(make + ["-n", "sweep-finalize", f"SWEEP_ARGS=-o {out}"], capture_output=True, text=True)
    assert fin.stdout.split() == [str(venv / "bin" / "fv"), "sweep", "--finalize", "-o", str(out)]
    assert finalize(out)["units"]["done"] == 3


def test_batch_size_auto_is_fixed_when_the_directory_is_created(model, recipe, units, tmp_path, monkeypatch):
    from fvcli.runner import autobatch

    monkeypatch.setenv("FV_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    key = autobatch.cache_key(model, recipe.loop_settings())
    (tmp_path / "cache" / "batch_size.json").write_text(json.dumps({key: {"batch_size": 8}}))  # a measured choice
    CPU_BATCH = 8
    out = tmp_path / "auto"
    job = prepare_sweep(model, recipe, units, out, batch_size="auto")
    assert job.batch_size == CPU_BATCH == json.loads((out / "sweep.json").read_text())["batch_size"]
    assert [len(b.units) for b in job.plan] == [3, 6]  # conv2d2 0-2, mixed3a 0-5: one batch each
    # the machine's measured choice changes later: the directory keeps its own
    (tmp_path / "cache" / "batch_size.json").write_text(json.dumps({key: {"batch_size": 2}}))
    # a later run with auto (another shard, a resume) takes the directory's batch size; an explicit other one is refused
    assert prepare_sweep(model, recipe, units, out, batch_size="auto", shard=(1, 2)).batch_size == CPU_BATCH
    with pytest.raises(FvError, match=rf"batch size {CPU_BATCH} \(this run: 3\)"):
        prepare_sweep(model, recipe, units, out, batch_size=3)


def test_cli_bad_input_exits_2_before_any_work(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["sweep", "--shard", "4/4", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "index must be in 0-3" in r.output
    r = runner.invoke(app, ["sweep", "--finalize", "-o", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "holds no sweep" in r.output
    assert not (tmp_path / "x").exists()


# -- manifest, sheets and gallery ------------------------------------------------------------------------------


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.units, self.layers, self.missing = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if a.get(k):
                self.refs.append(a[k])
        if "data-unit" in a:
            self.units.append(a["data-unit"])
        if "data-layer" in a:
            self.layers.append(a["data-layer"])
        if "data-missing" in a:
            self.missing.append(a["data-missing"])


def parse_page(path: Path) -> Links:
    p = Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_manifest_sheets_and_gallery_contents(reference, units, recipe):
    m = json.loads((reference / "manifest.json").read_text())
    assert m["complete"] and m["units"] == {"expected": 9, "done": 9, "missing": 0, "missing_units": []}
    assert m["sweep"]["recipe_hash"] == recipe.hash() and m["sweep"]["batch_size"] == 4
    # the resolved recipe: it rebuilds a recipe with the same hash (every output reproducible from the metadata)
    assert m["recipe"] == recipe.to_dict() and recipe_from_dict(m["recipe"]).hash() == m["sweep"]["recipe_hash"]
    assert m["recipe"]["render"]["steps"] == STEPS and m["devices"] == ["cpu"]
    assert m["sweep"]["weights"] == "random:0" and len(m["sweep"]["weights_sha256"]) == 64
    assert m["versions"]["torch"] == torch.__version__ and m["versions"]["fv"]
    t = m["timings"]
    assert t["render_seconds"] > 0 and t["units_per_hour_per_process"] == pytest.approx(
        3600 * 9 / t["render_seconds"], rel=0.01) and t["wall_seconds"] >= 0
    assert [s["shard"] for s in m["shards"]] == [0] and m["shards"][0]["runs"][-1]["status"] == "done"
    run = m["shards"][0]["runs"][-1]
    assert run["device"] == "cpu" and run["host"] and run["rendered"] == 9 and run["seconds"] > 0
    assert [(d["layer"], d["units"], d["done"]) for d in m["layers"]] == [("conv2d2", 3, 3), ("mixed3a", 6, 6)]
    mixed = m["layers"][1]
    assert mixed["sprites"] == ["layers/mixed3a/sprites/mixed3a-00000--mixed3a-00005.png"]
    sprite = read_png(reference / mixed["sprites"][0])
    assert sprite.shape[1] == SPRITE * (SIZE + 4) + 4  # 10 tiles wide, as the appendix
    cols, t = sheet_tile(6, SIZE)
    sheet = read_png(reference / mixed["sheet"])
    assert sheet.shape[1] == cols * (t + 4) + 4
    # channel numbers under the tiles: ink in the label strip of each of the 6 tiles, none past the last one
    for img, n, tile in ((sheet, 6, t), (sprite, 6, SIZE)):
        strips = [img[4 + tile: 4 + tile + 14, 4 + c * (tile + 4): 4 + c * (tile + 4) + tile] for c in range(10)]
        assert [bool((st < 128).any()) for st in strips] == [True] * n + [False] * (10 - n)
        assert not np.array_equal(strips[0], strips[1])  # "0" and "1"
    # the gallery: index -> layers -> units, every reference resolves to a file
    index = parse_page(reference / "index.html")
    assert index.layers == ["conv2d2", "mixed3a"]
    pages = [reference / "index.html"]
    for d in m["layers"]:
        page = parse_page(reference / d["page"])
        layer_units = [u.label for u in units if u.layer == d["layer"]]
        assert page.units == layer_units and page.missing == []
        pages.append(reference / d["page"])
        for u in units:
            if u.layer == d["layer"]:
                unit_page = layer_dir(reference, u.layer) / f"{u.key}.html"
                assert parse_page(unit_page).units == [u.label]
                text = unit_page.read_text()
                assert f"{u.key}.png" in text and "recipe hash" in text and recipe.hash() in text
                pages.append(unit_page)
    for page in pages:
        for ref in parse_page(page).refs:
            assert not re.match(r"^[a-z]+:|^/", ref), f"{page}: non-relative link {ref}"
            assert (page.parent / unquote(ref.split("#")[0])).is_file(), f"{page}: broken link {ref}"  # #cN: permalinks


def test_finalize_shows_missing_units_and_extra_images(model, recipe, units, reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    d = layer_dir(out, "mixed3a")
    (d / "mixed3a-00002.json").unlink()
    rec = json.loads((d / "mixed3a-00003.json").read_text())
    rec["examples_png"] = "mixed3a-00003.png"
    rec["images"].append({"label": "negative", "png": "mixed3a-00004.png"})
    (d / "mixed3a-00003.json").write_text(json.dumps(rec))
    m = finalize(out)
    assert not m["complete"] and m["units"]["missing_units"] == ["mixed3a:2"]
    layer_page = parse_page(d / "index.html")
    assert layer_page.missing == ["mixed3a:2"] and "mixed3a:2" not in layer_page.units
    assert not (d / "mixed3a-00002.html").exists()  # no page outlives its unit
    page = (d / "mixed3a-00003.html").read_text()
    assert "negative" in page and "dataset examples" in page
    assert "1 unit(s) missing" in (out / "index.html").read_text()


# -- kill -9 at random moments, then resume ----------------------------------------------------------------------


def _snapshot(out: Path) -> dict[str, int]:
    found = {}
    for p in (out / "layers").glob("*/*.json"):
        try:
            found[p.stem] = p.stat().st_ino
        except FileNotFoundError:
            pass
    return found


KILL_SPECS = ["mixed3a:0-31", "conv2d2:0-15"]  # 12 batches of 4
KILL_STEPS = 24  # ~0.5 s per batch on a quiet 2-core machine (12 steps finished before the third kill there)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(model, tmp_path):
    """SIGKILL the sweep several times at random moments (while it renders or writes a batch), then let it finish:
    no corrupt file ever, every unit exactly once, done units never rewritten, the bytes of an uninterrupted run."""
    recipe = load_recipe(None, [f"render.steps={KILL_STEPS}", f"render.size={SIZE}", "model.weights=random:0"])
    units = select_units(model, KILL_SPECS)
    reference = tmp_path / "reference"
    run_sweep(model, recipe, units, reference, batch_size=4)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fvcli", "sweep", *KILL_SPECS, "-w", "random:0", "--steps", str(KILL_STEPS),
           "--size", str(SIZE), "-b", "4", "-o", str(out), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same bytes as this process
    rng = random.Random(1234)
    kills, attempts, done_before = 0, 0, {}
    while kills < 3 and attempts < 8:
        attempts += 1
        seen = _snapshot(out) if out.exists() else {}
        # kill once 1-5 new records exist (possibly in the middle of a batch's writes), after 0-0.5 s more
        # (possibly in the middle of the next batch's optimization)
        want, delay = len(seen) + rng.randint(1, 5), rng.uniform(0.0, 0.5)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and len(_snapshot(out)) >= want:
                break
            time.sleep(0.005)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:  # it finished before it could be killed
            assert proc.returncode == 0
            break
        kills += 1
        done_before.update(_snapshot(out))
        # whatever was on disk at the moment of the kill: complete PNGs and parseable records only
        for p in (out / "layers").glob("*/*.png"):
            read_png(p)
        for p in out.rglob("*.json"):
            json.loads(p.read_text())
    assert kills >= 3, f"only {kills} kill(s) in {attempts} runs: the sweep finished too fast"
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert f"{len(units) - len(done_before)} rendered, {len(done_before)} already done" in final.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["units"]["done"] == len(units)
    # every unit exactly once: one record and one image each, nothing else, no temporary files
    names = sorted(p.name for p in (out / "layers").glob("*/*") if p.is_file())
    expected = sorted([f"{u.key}{ext}" for u in units for ext in (".json", ".png", ".html")] + ["index.html"] * 2
                      + ["sheet.png"] * 2)
    assert names == expected
    assert not [p for p in out.rglob("*.tmp")]
    # the resumed runs wrote only the missing units: records done before a kill were never replaced
    after = _snapshot(out)
    assert all(after[k] == ino for k, ino in done_before.items())
    assert pngs(out) == pngs(reference)  # and the pictures are those of the uninterrupted run
    assert len({run["pid"] for s in m["shards"] for run in s["runs"]}) == attempts + 1  # every run, and the last


def test_time_limit_and_a_busy_shard_do_no_work(model, recipe, units, tmp_path):
    import fcntl

    out = tmp_path / "sweep"
    job = prepare_sweep(model, recipe, units, out, batch_size=4, shard=(1, 2))
    report = job.run(time_limit=0)  # cron time slice already used up: no new batch is started
    assert report.stopped_early and report.rendered == 0 and not report.complete
    state = json.loads(job.state_path.read_text())
    assert state["runs"][-1]["status"] == "stopped" and state["shard"] == 1 and state["of"] == 2
    with open(job.state_path.with_suffix(".lock"), "a+") as held:  # another process renders this shard
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        busy = prepare_sweep(model, recipe, units, out, batch_size=4, shard=(1, 2)).run()
    assert busy.busy and busy.rendered == 0
    assert not list((out / "layers").glob("*/*.json"))
