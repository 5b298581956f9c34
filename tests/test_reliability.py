"""Faults never reach the outputs: NaN/Inf retries, full disks, signals."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch

from fvcli.errors import FvRuntimeError
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.objectives import Channel, Objective
from fvcli.outputs import atomic_write_bytes, atomic_write_json
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch, write_batch
from fvcli.units.unit import Unit, safe_name

from drift import same_picture


@pytest.fixture(scope="module")
def model():
    return load_model(ModelOptions(weights="random:0"), "cpu")


@dataclass(frozen=True)
class NaNAt(Objective):
    """Channel objective that turns non-finite on its `at`-th call (a simulated numerical blow-up)."""

    layer: str
    channel: int
    at: int
    counter: list

    @property
    def layers(self):
        return frozenset([self.layer])

    def score(self, acts, image):
        self.counter[0] += 1
        s = acts[self.layer][:, self.channel].mean((1, 2))
        return s * float("nan") if self.counter[0] == self.at else s


def test_nan_is_retried_with_new_seed_and_lower_lr_and_recorded(model, tmp_path):
    rec = load_recipe(None, ["render.steps=20", "render.size=48"])
    units = [Unit("channel", "mixed3a", c) for c in range(3)]
    objs = [Channel("mixed3a", 0), NaNAt("mixed3a", 1, at=3, counter=[0]), Channel("mixed3a", 2)]
    res = run_batch(model, rec, units, objs)
    assert res.faults[0] == [] and res.faults[2] == []
    (fault,) = res.faults[1]
    assert fault["attempt"] == 1 and fault["lr"] == pytest.approx(0.025) and fault["seed"] != fault["old_seed"]
    assert torch.isfinite(res.snapshots[-1].images).all() and torch.isfinite(res.snapshots[-1].scores).all()
    # healthy units are unaffected by their neighbour's fault
    alone = run_batch(model, rec, [units[0], units[2]], [objs[0], objs[2]])
    for i, j in ((0, 0), (1, 2)):
        same_picture(alone.snapshots[-1].images[i], res.snapshots[-1].images[j], alone.snapshots[-1].scores[i],
                     res.snapshots[-1].scores[j], what="faults: healthy unit beside a retried one vs without it")
    write_batch(tmp_path, model, rec, res)
    record = json.loads((tmp_path / f"{units[1].key}.json").read_text())
    assert record["faults"][0]["what"] and record["seed"] == fault["seed"]


def test_unit_that_keeps_failing_is_an_error_not_garbage(model, tmp_path):
    @dataclass(frozen=True)
    class AlwaysNaN(Objective):
        @property
        def layers(self):
            return frozenset(["mixed3a"])

        def score(self, acts, image):
            return acts["mixed3a"][:, 0].mean((1, 2)) * float("nan")

    rec = load_recipe(None, ["render.steps=4", "render.size=32"])
    with pytest.raises(FvRuntimeError, match="non-finite values after 3 retries"):
        run_batch(model, rec, [Unit("channel", "mixed3a", 0)], [AlwaysNaN()])


def test_full_disk_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(FvRuntimeError, match="disk full"):
        atomic_write_json(target, {"v": 2})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    atomic_write_json(target, {"v": 3})  # space is back: writing resumes
    assert json.loads(target.read_text()) == {"v": 3}


def test_real_small_filesystem_fills_up_cleanly(tmp_path):
    """A 256 KiB tmpfs: writes that do not fit fail cleanly; skipped where mounting is not allowed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root or not permitted)")
    try:
        atomic_write_bytes(mnt / "small.bin", b"x" * 1000)
        with pytest.raises(FvRuntimeError, match="disk full"):
            atomic_write_bytes(mnt / "big.bin", os.urandom(1 << 20))
        assert sorted(p.name for p in mnt.iterdir()) == ["small.bin"]
        assert (mnt / "small.bin").read_bytes() == b"x" * 1000
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(FvRuntimeError, match="cannot write"):
        atomic_write_bytes(blocker / "sub" / "x.png", b"data")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path", "a/b", "..", ".hidden", "x\x00y", "é" * 300])
def test_output_names_cannot_escape_the_output_directory(tmp_path, name):
    stem = safe_name(name)
    assert "/" not in stem and "\\" not in stem and not stem.startswith(".") and len(stem) <= 120
    assert (tmp_path / f"{stem}.png").resolve().parent == tmp_path.resolve()


def test_sigterm_stops_render_cleanly(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "fvcli", "render", "mixed3a:0-3", "-w", "random:0",
                             "--steps", "5000", "--size", "48", "-o", str(out), "-q"],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"] if out.exists() else []
    assert leftovers == []


def test_atomic_writes_make_normally_readable_files(tmp_path):
    """Not mkstemp's 0600: outputs on a shared machine are readable as open() would make them (0666 - umask)."""
    mask = os.umask(0o022)
    try:
        from fvcli import outputs

        monkey = outputs._FILE_MODE
        outputs._FILE_MODE = outputs._file_mode()
        atomic_write_bytes(tmp_path / "a.png", b"x")
        assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
        outputs._FILE_MODE = monkey
    finally:
        os.umask(mask)
