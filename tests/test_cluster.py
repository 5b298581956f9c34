"""A real SLURM cluster (one node, localhost): an array sweep through scripts/slurm_sweep.sbatch, then the result.

Not part of `make test` (it installs and starts daemons, and needs root): run `make test-cluster`, which sets
FV_CLUSTER_TEST=1. scripts/cluster_test.sh installs slurmctld, slurmd, slurm-client and munge from Debian's
packages if needed and starts a private single-node cluster; the run is kept in runs/test-cluster/.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fvcli.models import ModelOptions, load_model
from fvcli.recipe import load_recipe
from fvcli.sweep import run_sweep, select_units

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.environ.get("FV_CLUSTER_TEST") != "1",
                                reason="real SLURM test: run `make test-cluster` (needs root; installs slurm)")

SHARDS = 3
SPECS = ["conv2d2:0-7", "mixed3a:0-11"]  # batch size 4: 2 + 3 batches of different costs
ARGS = ["-w", "random:0", "--size", "32", "--steps", "4", "-b", "4"]


def sh(*cmd: str, env=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0 and not shutil.which("sbatch"):
        pytest.skip("needs root to install and start slurm, or a running cluster")
    up = sh(str(ROOT / "scripts" / "cluster_test.sh"), "up", timeout=900)
    print(up.stdout.strip())
    conf = sh(str(ROOT / "scripts" / "cluster_test.sh"), "env").stdout.strip().split("=", 1)[1]
    return {**os.environ, "SLURM_CONF": conf, "FV": str(Path(sys.executable).parent / "fv")}


def wait_for(job: str, env: dict, timeout: float = 1800) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not sh("squeue", "-h", "-j", job, env=env, check=False).stdout.strip():
            return
        time.sleep(2)
    raise AssertionError(f"job {job} still queued or running after {timeout} s")


def job_states(job: str, env: dict) -> dict[str, str]:
    """{task id: 'STATE exit code'} from scontrol (kept for MinJobAge=3600 s; there is no accounting database)."""
    out = sh("scontrol", "-o", "show", "job", job, env=env).stdout
    states = {}
    for line in out.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        states[f.get("ArrayTaskId", "?")] = f"{f.get('JobState')} {f.get('ExitCode')}"
    return states


def test_array_sweep_on_slurm(slurm):
    out = ROOT / "runs" / "test-cluster" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    t0 = time.monotonic()
    job = sh("sbatch", "--parsable", f"--array=0-{SHARDS - 1}", "--cpus-per-task=1", f"--chdir={ROOT}",
             f"--output={out}/slurm-%A_%a.out", str(ROOT / "scripts" / "slurm_sweep.sbatch"), *SPECS, *ARGS,
             "-o", str(out), env=slurm).stdout.strip()
    # the README's pattern: a finalize job once every array task has ended, whatever their outcome
    fin = sh("sbatch", "--parsable", f"--dependency=afterany:{job}", f"--chdir={ROOT}", f"--output={out}/finalize.out",
             "--wrap", f"{slurm['FV']} sweep --finalize -o {out}", env=slurm).stdout.strip()
    wait_for(fin, slurm)
    elapsed = time.monotonic() - t0
    states = job_states(job, slurm)
    assert sorted(states) == [str(i) for i in range(SHARDS)] and set(states.values()) == {"COMPLETED 0:0"}, states
    assert job_states(fin, slurm) == {"?": "COMPLETED 0:0"}
    logs = sorted(out.glob("slurm-*.out"))
    assert len(logs) == SHARDS
    for i in range(SHARDS):  # each task took its shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT
        text = (out / f"slurm-{job}_{i}.out").read_text()
        assert f"shard {i}/{SHARDS}:" in text, text
    m = json.loads((out / "manifest.json").read_text())
    units_n = 8 + 12
    assert m["complete"] and m["units"]["done"] == units_n and m["units"]["expected"] == units_n
    assert sorted((s["shard"], s["of"]) for s in m["shards"]) == [(i, SHARDS) for i in range(SHARDS)]
    assert all(s["runs"][-1]["status"] == "done" and s["runs"][-1]["threads"] == 1 for s in m["shards"])
    assert sum(s["units"] for s in m["shards"]) == units_n
    recs = [json.loads(p.read_text()) for p in (out / "layers").glob("*/*.json")]
    assert len(recs) == units_n and {r["sweep"]["shard"] for r in recs} == {f"{i}/{SHARDS}" for i in range(SHARDS)}
    assert (out / "index.html").is_file() and (out / "layers" / "mixed3a" / "sheet.png").is_file()
    # byte-identical to the same sweep rendered here in one process with the same thread count (1)
    torch.set_num_threads(1)
    model = load_model(ModelOptions(weights="random:0"), "cpu")
    recipe = load_recipe(None, ["model.weights=random:0", "render.size=32", "render.steps=4"])
    local = out.parent / (out.name + "-local")
    run_sweep(model, recipe, select_units(model, SPECS), local, batch_size=4)
    for p in sorted((out / "layers").glob("*/*-0*.png")):
        assert p.read_bytes() == (local / p.relative_to(out)).read_bytes(), p
    print(f"\nSLURM array of {SHARDS} tasks + finalize job: {units_n} units in {elapsed:.0f} s; result in {out}")
