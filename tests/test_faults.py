"""Resource faults and concurrency with real processes: out-of-memory backoff (injected on the CPU), a sweep that
fills a real small filesystem and resumes once space is back, SIGINT/SIGTERM in the middle of a sweep, and two
shards plus a finalizer writing into one directory at the same time."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fvcli.cli import app
from fvcli.errors import FvRuntimeError
from fvcli.outputs import read_png
from fvcli.recipe import load_recipe
from fvcli.runner.batch import OomBackoff, is_out_of_memory
from fvcli.runner.job import render_units
from fvcli.sweep import ChannelRenderer, finalize, run_sweep, select_units
from fvcli.units.unit import parse_units

from drift import same_picture

SETS = ["render.steps=2", "render.size=32", "model.weights=random:0"]


def oom() -> BaseException:
    cls = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return cls("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(None, SETS)


def unit_pngs(out: Path) -> dict[str, np.ndarray]:
    return {p.name: read_png(p).astype(int) for p in sorted((out / "layers").glob("*/*.png")) if p.name != "sheet.png"}


# -- out of memory ---------------------------------------------------------------------------------------------


class OomAbove:
    """A sweep renderer that raises CUDA's OOM for batches larger than `limit` (what a too-large batch does)."""

    name, images_per_unit = "unit", 1

    def __init__(self, limit: int) -> None:
        self.limit, self.sizes, self.inner = limit, [], ChannelRenderer()

    def identity(self) -> dict:
        return self.inner.identity()

    def __call__(self, model, recipe, batch, on_step=None):
        self.sizes.append(len(batch.units))
        if len(batch.units) > self.limit:
            raise oom()
        return self.inner(model, recipe, batch, on_step)


def test_out_of_memory_in_a_sweep_halves_the_batch_and_continues(iv1, recipe, tmp_path):
    units = select_units(iv1, ["mixed3a:0-7", "conv2d2:0-3"])
    ref = tmp_path / "ref"
    run_sweep(iv1, recipe, units, ref, batch_size=4)
    flaky = OomAbove(limit=2)
    out = tmp_path / "oom"
    report = run_sweep(iv1, recipe, units, out, batch_size=4, renderer=flaky)
    assert report.complete and report.rendered == len(units)
    # first batch: 4 -> OOM -> 2 + 2; the split is sticky, so every later batch starts at 2
    assert flaky.sizes == [4, 2, 2, 2, 2, 2, 2]
    recs = [json.loads(p.read_text()) for p in sorted((out / "layers").glob("*/*.json"))]
    assert len(recs) == len(units) and all(r["sweep"]["oom"]["parts"] == 2 for r in recs)
    assert recs[0]["sweep"]["oom"]["events"] == [{"event": "out_of_memory", "items": 4, "split_into": 2}]
    a, b = unit_pngs(ref), unit_pngs(out)
    assert a.keys() == b.keys()
    scores = [{r["key"]: r["final_score"] for r in (json.loads(p.read_text()) for p in
                                                     sorted((d / "layers").glob("*/*.json")))} for d in (ref, out)]
    for k in a:  # same seeds; only the batch's float rounding (batches of 2 after the split, 4 in the reference)
        key = k.removesuffix(".png")
        same_picture(a[k], b[k], scores[0][key], scores[1][key], what="oom: InceptionV1 unit in a batch of 2 vs 4")


def test_out_of_memory_with_one_image_is_a_clear_error(iv1, recipe, tmp_path):
    units = select_units(iv1, ["conv2d2:0-1"])
    with pytest.raises(FvRuntimeError, match="out of memory on cpu with a single image; lower render.size"):
        run_sweep(iv1, recipe, units, tmp_path / "s", batch_size=2, renderer=OomAbove(limit=0))
    assert not list((tmp_path / "s" / "layers").glob("*/*.json"))


def test_out_of_memory_in_fv_render_halves_too(iv1, recipe, tmp_path, monkeypatch):
    import fvcli.runner.job as runner  # where render_units looks run_batch up

    real, sizes = runner.run_batch, []

    def run_batch(model, rec, units, *a, **kw):
        sizes.append(len(units))
        if len(units) > 1:
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB; out of memory")
        return real(model, rec, units, *a, **kw)

    monkeypatch.setattr(runner, "run_batch", run_batch)
    units = parse_units("mixed3a:0-2", iv1)
    res = render_units(iv1, recipe, units, tmp_path, batch_size=3)
    assert sizes == [3, 2, 1, 1, 1] and len(res["pngs"]) == 3 and (tmp_path / "grid.png").is_file()
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and is_out_of_memory(oom())
    other = OomBackoff(torch.device("cpu"))
    with pytest.raises(ValueError):  # anything but OOM goes through untouched
        other(lambda items: (_ for _ in ()).throw(ValueError("boom")), [1, 2])
    assert other.events == []


# -- full disk, for real ------------------------------------------------------------------------------------------


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def _cmd(out: Path, specs: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "fvcli", "sweep", *specs, "-w", "random:0", "--steps", "2", "--size", "32",
            "-b", "2", "-o", str(out), "-q", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_sweep_that_fills_the_disk_fails_cleanly_and_resumes_when_space_is_back(tmp_path):
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "600k"):
        pytest.skip("cannot mount a tmpfs here (not root or not permitted)")
    try:
        filler = mnt / "filler.bin"
        filler.write_bytes(os.urandom(560 * 1024))  # leaves room for the sweep's first few files only
        out = mnt / "sweep"
        specs = ["mixed3a:0-9"]
        first = subprocess.run(_cmd(out, specs), capture_output=True, text=True, env=_env(), timeout=300)
        assert first.returncode == 1, first.stderr
        lines = first.stderr.strip().splitlines()
        assert lines[-1].startswith("fv: error: ") and "disk full" in lines[-1] and "Traceback" not in first.stderr
        # nothing partial: no temporary files, every PNG decodes, every record parses and lists existing images
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
        for p in out.rglob("*.png"):
            read_png(p)
        done = [json.loads(p.read_text()) for p in (out / "layers").glob("*/*.json")] if (out / "layers").exists() else []
        assert len(done) < 10
        filler.unlink()  # space is back
        second = subprocess.run(_cmd(out, specs), capture_output=True, text=True, env=_env(), timeout=300)
        assert second.returncode == 0, second.stderr
        assert f"{10 - len(done)} rendered, {len(done)} already done" in second.stdout
        assert json.loads((out / "manifest.json").read_text())["complete"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# -- signals in the middle of a sweep -----------------------------------------------------------------------------


def _records(out: Path) -> list[Path]:
    return sorted((out / "layers").glob("*/*.json")) if (out / "layers").exists() else []


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_a_sweep_cleanly_and_the_next_run_resumes(tmp_path, sig, code):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "fvcli", "sweep", "mixed3a:0-11", "-w", "random:0", "--steps", "40", "--size",
           "32", "-b", "2", "-o", str(out), "-q"]
    # SIGINT's default disposition in the child: a shell's background job (`make test &`) starts with SIGINT
    # ignored, which a child would inherit (Python then installs no KeyboardInterrupt handler).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not _records(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "rerun to resume" in err and "Traceback" not in err
    state = json.loads(next((out / "shards").glob("*.json")).read_text())
    assert state["runs"][-1]["status"] == "interrupted"  # the shard's state was flushed on the way out
    done = len(_records(out))
    assert 0 < done < 12
    for p in _records(out):
        json.loads(p.read_text())
    again = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{12 - done} rendered, {done} already done" in again.stdout


# -- two writers at once ------------------------------------------------------------------------------------------


def test_two_shards_and_a_finalizer_share_one_directory(tmp_path):
    """Two shard processes render at the same time while a third process finalizes over and over; afterwards
    every unit exists once with a sound record, and the bytes are those of a single-process run."""
    specs = ["mixed3a:0-7", "conv2d2:0-7"]
    ref = tmp_path / "ref"
    assert subprocess.run(_cmd(ref, specs), capture_output=True, env=_env(), timeout=300).returncode == 0
    out = tmp_path / "shared"
    shards = [subprocess.Popen(_cmd(out, specs, "--shard", f"{i}/2"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env()) for i in range(2)]
    finalizer_runs = 0
    while any(p.poll() is None for p in shards):
        if (out / "sweep.json").exists():
            r = subprocess.run([sys.executable, "-m", "fvcli", "sweep", "--finalize", "-o", str(out)],
                               capture_output=True, text=True, env=_env(), timeout=120)
            assert r.returncode == 0, r.stderr
            finalizer_runs += 1
        else:
            time.sleep(0.05)
    for p in shards:
        _, err = p.communicate()
        assert p.returncode == 0, err
    assert finalizer_runs >= 1
    m = finalize(out)
    assert m["complete"] and m["units"]["done"] == 16
    recs = [json.loads(p.read_text()) for p in _records(out)]
    assert {r["sweep"]["shard"] for r in recs} == {"0/2", "1/2"}  # both shards did their part
    assert len({r["key"] for r in recs}) == 16
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    a = {p.name: p.read_bytes() for p in (ref / "layers").glob("*/*.png") if p.name != "sheet.png"}
    b = {p.name: p.read_bytes() for p in (out / "layers").glob("*/*.png") if p.name != "sheet.png"}
    assert a == b
    r = CliRunner().invoke(app, ["sweep", "--finalize", "-o", str(out)])
    assert r.exit_code == 0 and "(16 units, complete)" in r.output
