"""Sweeps: every channel of a model, batched, resumable and sharded (what the article's appendix did for GoogLeNet).

A sweep renders a set of units (default: every channel of the model's main layers) into one directory:

  OUT/sweep.json                        what the directory holds: model, weights checksum, recipe and its hash, batch
                                        size, renderer. Created once (atomically; the first writer wins). A run whose
                                        identity differs is refused (exit 2) unless --overwrite.
  OUT/layers/LAYER/KEY.png, KEY.json    each unit's image(s) and record; the record is written last, so a unit is
                                        done when its record names this sweep and the images it lists exist
  OUT/layers/LAYER/sprites/A--B.png     contact sheets of 10 channels, named as in the Distill appendix
  OUT/layers/LAYER/sheet.png            the whole layer, channel numbers under the tiles
  OUT/shards/SEL-I-of-N.json            per-shard state: plan, progress, timings, host, device (SEL: the selection)
  OUT/manifest.json, OUT/index.html, OUT/layers/LAYER/index.html, OUT/layers/LAYER/KEY.html     (`finalize`)

Planning. Units are grouped by (layer, kind) and cut by channel number: batch k of a layer holds the selected channels
in [k*B, (k+1)*B). A batch's composition depends only on the batch size and the selection -- never on the shard, on
what is already done or on the order of the arguments -- and each unit's seed is `runner.unit_seed` (never its
batch). So a unit's PNG is byte-identical whichever shard renders it and whether or not the run was resumed (same
device type and software). The batch size is part of the directory's identity for that reason.

Resume. A batch whose units are all done is skipped; a partly done batch (killed while writing it) is rendered again
whole, to keep its composition, and only its missing units are written.

Sharding. Batches go to N shards by greedy longest-processing-time on an estimated cost: the FLOPs of the forward pass
truncated at the batch's layer (per image, at the recipe's size) times the batch's length. The assignment depends only
on the plan, so independent processes agree on it without talking to each other; their files never overlap, and a
shard's state file is its own.

Rendering is pluggable: a `BatchRenderer` maps one planned batch to `UnitOutput`s (any number of labelled images and a
record per unit); `ChannelRenderer` (one image per unit, plus threshold snapshots) is the default.

The parts, one idea per file: fvcli/sweep/plan.py (selection, plan, costs, shards), fvcli/sweep/renderers.py (what
draws a batch), fvcli/sweep/directory.py (the directory's identity, records, done-ness), fvcli/sweep/finalizer.py (sheets,
manifest, gallery). This module holds the job that ties them together -- one shard of one selection in one
directory, under the shard's lock; `fvcli.sweep` is the one import path of them all.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..errors import FvError, FvRuntimeError
from ..models import LoadedModel
from ..outputs import atomic_write_json
from ..recipe import MAX_BATCH, Recipe
from ..runner.batch import OomBackoff, auto_batch_size
from ..runner.stream import streams
from ..runner.writer import BackgroundWriter
from ..units.unit import Unit
from .directory import (
    FORMAT,
    _id,
    _now,
    open_sweep,
    read_json,
    remove_stale_tmp,
    sweep_identity,
    unit_done,
    write_units,
)
from .finalizer import (
    finalize,
)
from .plan import (
    SWEEP_KINDS,
    PlannedBatch,
    assign_shards,
    channel_ranges,
    layer_costs,
    plan_sweep,
    selection_doc,
)
from .renderers import BatchRenderer, ChannelRenderer

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------------------
# A job: one shard of one selection in one directory


@dataclass
class SweepReport:
    out: Path
    shard: tuple[int, int]
    batches: int  # this shard's batches
    units: int  # this shard's units
    rendered: int  # units written by this run
    skipped: int  # units already done
    seconds: float
    stopped_early: bool = False  # --time-limit reached
    complete: bool = False  # every unit of the selection (all shards) is done
    manifest: dict | None = None
    busy: bool = False  # another process holds this shard's lock: nothing was done


@dataclass
class SweepJob:
    """Everything decided before rendering: identity, plan, this shard's batches and what is left to do."""

    model: LoadedModel
    recipe: Recipe
    out: Path
    renderer: BatchRenderer
    sweep: dict  # OUT/sweep.json
    units: list[Unit]
    plan: list[PlannedBatch]
    assignment: list[int]
    shard: tuple[int, int]
    selection: list[dict]
    todo: list[PlannedBatch] = field(default_factory=list)

    @property
    def sweep_id(self) -> str:
        return self.sweep["id"]

    @property
    def batch_size(self) -> int:
        return int(self.sweep["batch_size"])

    @property
    def mine(self) -> list[PlannedBatch]:
        return [b for b, s in zip(self.plan, self.assignment) if s == self.shard[0]]

    @property
    def selection_id(self) -> str:
        return _id(self.selection)[:8]

    @property
    def state_path(self) -> Path:
        i, n = self.shard
        return self.out / "shards" / f"{self.selection_id}-{i:04d}-of-{n:04d}.json"

    def missing(self, batch: PlannedBatch) -> list[Unit]:
        return [u for u in batch.units if not unit_done(self.out, u, self.sweep_id)]

    def refresh_todo(self) -> list[PlannedBatch]:
        self.todo = [b for b in self.mine if self.missing(b)]
        return self.todo

    def all_done(self) -> bool:
        return all(unit_done(self.out, u, self.sweep_id) for u in self.units)

    def run(self, on_step: Callable[[int], None] | None = None,
            on_batch: Callable[[PlannedBatch, int], None] | None = None,
            time_limit: float | None = None, finalize_when_done: bool = True) -> SweepReport:
        """Render this shard's missing batches; finalize when the whole selection is done."""
        t0 = time.monotonic()
        i, n = self.shard
        mine = self.mine
        report = SweepReport(self.out, self.shard, len(mine), sum(len(b.units) for b in mine), 0, 0, 0.0)
        lock_path = self.state_path.with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                log.warning("shard %d/%d of %s is being rendered by another process; nothing to do", i, n, self.out)
                report.busy = True
                return report
            remove_stale_tmp(self.out, held_lock=lock_path)
            state = read_json(self.state_path) or {}
            if state.get("sweep_id") != self.sweep_id:
                state = {}
            run_info = {"started": _now(), "ended": None, "status": "running", "host": socket.gethostname(),
                        "pid": os.getpid(), "device": str(self.model.device), "threads": torch.get_num_threads(),
                        "rendered": 0, "seconds": 0.0}
            state = {"format": FORMAT, "sweep_id": self.sweep_id, "shard": i, "of": n,
                     "selection_id": self.selection_id, "selection": self.selection,
                     "batches": [b.id for b in mine], "units": report.units,
                     "cost": sum(b.cost for b in mine), "cost_total": sum(b.cost for b in self.plan),
                     "done": 0, "runs": (state.get("runs") or [])[-49:] + [run_info], "updated": _now()}

            def save(status: str | None = None) -> None:
                run_info["seconds"] = round(time.monotonic() - t0, 3)
                if status:
                    run_info["status"] = status
                    run_info["ended"] = _now()
                state["done"] = report.skipped + report.rendered
                state["updated"] = _now()
                atomic_write_json(self.state_path, state)

            save()
            status = "interrupted"
            backoff = OomBackoff(self.model.device, "sweep batch")
            writer = BackgroundWriter()  # a batch's files are written while the next one renders
            failed = True
            try:
                for batch in mine:
                    missing = self.missing(batch)
                    if not missing:
                        report.skipped += len(batch.units)
                        continue
                    if time_limit is not None and time.monotonic() - t0 >= time_limit:
                        report.stopped_early = True
                        break
                    report.skipped += len(batch.units) - len(missing)
                    n_events = len(backoff.events)
                    wanted = set(missing)
                    # a stream renders each unit independently of its batch-mates: only the missing ones
                    todo = [u for u in batch.units if u in wanted] if streams(self.recipe) else batch.units
                    outputs = backoff(lambda us, b=batch: self.renderer(
                        self.model, self.recipe, replace(b, units=tuple(us)), on_step), todo)
                    meta = {"id": self.sweep_id, "batch": batch.id, "batch_size": self.batch_size,
                            "members": channel_ranges(u.channel for u in batch.units), "shard": f"{i}/{n}"}
                    if len(backoff.events) > n_events or backoff.parts > 1:  # rendered in pieces after an OOM
                        meta["oom"] = {"parts": backoff.parts, "events": backoff.events[n_events:]}
                    new = [o for o in outputs if o.unit in wanted and not unit_done(self.out, o.unit, self.sweep_id)]
                    writer.submit(write_units, self.out, new, meta)
                    report.rendered += len(new)
                    run_info["rendered"] = report.rendered
                    try:
                        save()
                    except FvRuntimeError as exc:  # the state file is informational; the records are what count
                        log.warning("%s", exc)
                    if on_batch:
                        on_batch(batch, len(missing))
                writer.drain()
                failed = False
                status = "stopped" if report.stopped_early else "done"
            finally:
                writer.close(quiet=failed)  # the writes already submitted finish: each unit whole or not at all
                report.seconds = time.monotonic() - t0
                with contextlib.suppress(FvError):
                    save(status)
        report.complete = self.all_done()
        if report.complete and finalize_when_done:
            report.manifest = finalize(self.out)
        return report


def prepare_sweep(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], out: Path, *,
                  batch_size: int | str | None = None, shard: tuple[int, int] = (0, 1), overwrite: bool = False,
                  renderer: BatchRenderer | None = None, dry: bool = False) -> SweepJob:
    """Check or create the directory's identity, plan the batches, pick this shard's and find what is missing.

    batch_size: an int, or 'auto'/None (the recipe's; 'auto' reuses the directory's batch size when it has one).
    dry: write nothing (`fv sweep --estimate`): the identity is only computed, what is missing only read."""
    renderer = renderer or ChannelRenderer()
    out = Path(out)
    units = list(dict.fromkeys(units))
    if not units:
        raise FvError("nothing to sweep: no units selected")
    for u in units:
        if u.kind not in SWEEP_KINDS or u.channel is None:
            raise FvError(f"fv sweep renders channels, not {u.label!r}")
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise FvError(f"bad shard {i}/{n}: the index must be in 0-{max(0, n - 1)}")
    bs = batch_size if batch_size is not None else recipe.render.batch_size
    if bs == "auto":
        old = read_json(out / "sweep.json")
        probe = sweep_identity(model, recipe, 1, renderer, units)
        same = old is not None and all(old.get(k) == v for k, v in probe.items() if k != "batch_size")
        # The directory's batch size wins (byte-identical resumes); otherwise one that depends on the device only.
        bs = int(old["batch_size"]) if same and not overwrite else auto_batch_size(model, recipe, MAX_BATCH)
    bs = int(bs)
    if not 1 <= bs <= MAX_BATCH:
        raise FvError(f"bad batch size {bs}: expected 1-{MAX_BATCH} or auto")
    identity = sweep_identity(model, recipe, bs, renderer, units)
    sweep = {"id": _id(identity), **identity} if dry else open_sweep(out, identity, recipe, model, overwrite)
    order = {name: info.order for name, info in model.catalog.items()}
    costs = layer_costs(model, sorted({u.layer for u in units}, key=lambda l: order.get(l, 0)), recipe.render.size)
    # a renderer drawing several images per unit (e.g. appendix panels) gets fewer units per batch
    per_batch = max(1, bs // max(1, int(getattr(renderer, "images_per_unit", 1))))
    if streams(recipe) and isinstance(renderer, ChannelRenderer):  # continuous batching: bs slots, a queue each
        renderer = replace(renderer, slots=bs)
        per_batch = bs * recipe.stop.queue
    plan = plan_sweep(units, per_batch, costs, order)
    assignment = assign_shards([b.cost for b in plan], n)
    job = SweepJob(model, recipe, out, renderer, sweep, units, plan, assignment, (i, n), selection_doc(units, order))
    job.refresh_todo()
    return job


def run_sweep(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], out: Path, **kw) -> SweepReport:
    """prepare_sweep(...) then run(): the library entry point behind `fv sweep`."""
    run_kw = {k: kw.pop(k) for k in ("on_step", "on_batch", "time_limit", "finalize_when_done") if k in kw}
    return prepare_sweep(model, recipe, units, out, **kw).run(**run_kw)
