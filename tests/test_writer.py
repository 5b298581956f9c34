"""The sweep's background writer (fvcli/runner/writer.py): order, bound, errors, and a sweep that resumes after one.

Why: a batch's PNGs and records are written on a thread while the next batch renders (the GPU must not wait for the
disk), which must change nothing a user relies on: every unit's files written whole, PNGs before the record, a
failed write raised in the caller, and a resumed sweep byte-identical to an uninterrupted one.
"""
from __future__ import annotations

import threading
import time

import pytest

from fvcli.models import load_model
from fvcli.recipe import load_recipe
from fvcli.runner.writer import BackgroundWriter
from fvcli.sweep import layer_dir, run_sweep, select_units, unit_done
from fvcli.sweep import run as sweep_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_jobs_run_in_order_on_one_writer_thread_and_drain_waits_for_them():
    seen: list[tuple[int, str]] = []
    w = BackgroundWriter(depth=2)
    for i in range(6):
        w.submit(lambda i=i: (time.sleep(0.01), seen.append((i, threading.current_thread().name))))
    w.drain()
    assert [i for i, _ in seen] == list(range(6))
    assert {name.startswith("fv-writer") for _, name in seen} == {True}
    w.close()
    inline = BackgroundWriter(depth=0)  # depth 0: in the caller's thread
    inline.submit(lambda: seen.append((6, threading.current_thread().name)))
    assert seen[-1] == (6, threading.current_thread().name)


def test_at_most_depth_jobs_wait():
    gate = threading.Event()
    w = BackgroundWriter(depth=2)
    w.submit(gate.wait)  # running
    w.submit(lambda: None)  # waiting: 2 submitted, none done
    third = threading.Thread(target=w.submit, args=(lambda: None,))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # the third submit blocks until the first job is done
    gate.set()
    third.join(5)
    assert not third.is_alive()
    w.close()


def test_a_failed_write_is_raised_in_the_caller():
    w = BackgroundWriter(depth=1)

    def boom() -> None:
        raise OSError("disk full")

    w.submit(boom)
    with pytest.raises(OSError, match="disk full"):
        w.submit(lambda: None)  # the next submit waits for the failed one
    w.submit(boom)
    with pytest.raises(OSError, match="disk full"):
        w.drain()
    w.submit(boom)
    w.close(quiet=True)  # another error is on its way: logged, not raised


def test_a_sweep_whose_write_fails_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    model = load_model("demo", "cpu")
    recipe = load_recipe(None, ["render.steps=2", "render.size=32"])
    units = select_units(model, ["block2:0-5"])
    ref = run_sweep(model, recipe, units, tmp_path / "ref", batch_size=2, finalize_when_done=False)
    assert ref.rendered == 6
    real = sweep_run.write_units
    calls: list[int] = []

    def second_fails(out, outputs, meta):
        calls.append(len(outputs))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(out, outputs, meta)

    monkeypatch.setattr(sweep_run, "write_units", second_fails)
    out = tmp_path / "resumed"
    with pytest.raises(OSError, match="disk full"):
        run_sweep(model, recipe, units, out, batch_size=2, finalize_when_done=False)
    done = [u for u in units if unit_done(out, u, sweep_id=_sweep_id(out))]
    # every batch whose write was already queued is whole (each unit on its own); the failed one is not done
    assert done == units[:2] + units[4:]
    monkeypatch.setattr(sweep_run, "write_units", real)
    again = run_sweep(model, recipe, units, out, batch_size=2, finalize_when_done=False)
    assert again.rendered == 2 and again.skipped == 4
    for u in units:
        name = f"{u.key}.png"
        assert (layer_dir(out, u.layer) / name).read_bytes() == (layer_dir(tmp_path / "ref", u.layer) / name).read_bytes()


def _sweep_id(out) -> str:
    import json

    state = json.loads(next((out / "shards").glob("*.json")).read_text())
    return state["sweep_id"]
