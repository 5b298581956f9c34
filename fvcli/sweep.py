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
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import heapq
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from .errors import FvError, FvRuntimeError
from .models import LoadedModel, fit_input
from .outputs import atomic_write_bytes, atomic_write_json, grid, png_bytes, save_png, versions
from .recipe import MAX_BATCH, Recipe
from .runner import OomBackoff, auto_batch_size, run_batch, unit_record
from .units import Unit, parse_units, safe_name

log = logging.getLogger(__name__)

FORMAT = "fv-sweep/1"
SPRITE = 10  # channels per sprite sheet, as the Distill appendix
STALE_TMP_SECONDS = 600  # a temporary file this old belongs to a killed writer (a write takes milliseconds)
SWEEP_KINDS = ("channel", "neuron", "logit", "prob")  # units with a channel number (dream units have none)


# ------------------------------------------------------------------------------------------------------------------
# Units and plan


def select_units(model: LoadedModel, specs: Sequence[str] | None) -> list[Unit]:
    """`LAYER` (every channel), `LAYER:0-63`, `logit:all`, ... -> units; default: every channel of the main layers."""
    specs = list(specs or [])
    if not specs:
        specs = list(model.main_layers)
        if not specs:
            raise FvError(f"model {model.name} has no main layers; name the layers to sweep (`fv layers {model.name}`)")
    units: list[Unit] = []
    for text in specs:
        text = text.strip()
        if ":" not in text:
            model.layer(text)  # validates, with a did-you-mean
            text = f"{text}:all"
        for u in parse_units(text, model):
            if u.kind not in SWEEP_KINDS or (u.kind == "neuron" and (u.x is not None or u.prefix is not None)):
                raise FvError(f"fv sweep renders channels (LAYER, LAYER:0-63, logit:all, LAYER:5@center), "
                              f"not {u.label!r}; use `fv render` for it")
            units.append(u)
    return list(dict.fromkeys(units))


@dataclass(frozen=True)
class PlannedBatch:
    index: int  # position in the plan
    layer: str
    kind: str
    chunk: int  # channels [chunk*B, (chunk+1)*B) of the layer
    units: tuple[Unit, ...]
    cost: int  # estimated cost (FLOPs of the truncated forward pass x images)

    @property
    def id(self) -> str:
        return f"{safe_name(self.layer)}/{self.kind}-{self.chunk:05d}"


_KIND_ORDER = {k: i for i, k in enumerate(SWEEP_KINDS)}


def plan_sweep(units: Sequence[Unit], batch_size: int, cost_per_image: Mapping[str, int],
               order: Mapping[str, int] | None = None) -> list[PlannedBatch]:
    """Cut units into batches: one (layer, kind) per batch, batch k holding channels [k*B, (k+1)*B).

    Batches are ordered by the layers' position in the network (`order`), then kind and chunk, so the plan is the
    same whatever the order of the arguments."""
    if batch_size < 1:
        raise FvError(f"bad batch size {batch_size}: expected >= 1")
    order = order or {}
    groups: dict[tuple[str, str, int], list[Unit]] = {}
    for u in dict.fromkeys(units):
        groups.setdefault((u.layer, u.kind, u.channel // batch_size), []).append(u)
    keys = sorted(groups, key=lambda k: (order.get(k[0], 1 << 30), k[0], _KIND_ORDER[k[1]], k[2]))
    plan = []
    for i, (layer, kind, chunk) in enumerate(keys):
        members = tuple(sorted(groups[(layer, kind, chunk)], key=lambda u: u.channel))
        plan.append(PlannedBatch(i, layer, kind, chunk, members, max(1, int(cost_per_image.get(layer, 1))) * len(members)))
    return plan


def assign_shards(costs: Sequence[int], n: int) -> list[int]:
    """Greedy longest-processing-time: the costliest batch first, each to the least-loaded shard (ties: lowest index).

    Deterministic; the most and least loaded shards differ by at most one batch's cost."""
    if n < 1:
        raise FvError(f"bad shard count {n}: expected >= 1")
    out = [0] * len(costs)
    heap = [(0, s) for s in range(n)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, s = heapq.heappop(heap)
        out[i] = s
        heapq.heappush(heap, (load + costs[i], s))
    return out


class _Seen(Exception):
    """Raised by a hook once every layer has been reached (the rest of the forward pass is skipped)."""


def layer_costs(model: LoadedModel, layers: Iterable[str], size: int) -> dict[str, int]:
    """Multiply-adds of the convolutions and linear layers run before each layer's output, per image at `size` px.

    One forward pass of a (1, 3, size, size) zero image with hooks; depends only on the architecture and the size."""
    layers = list(dict.fromkeys(layers))
    total = [0]
    at_path: dict[str, int] = {}
    handles = []

    def count(m: nn.Module, _inp, out) -> None:
        if not isinstance(out, torch.Tensor):
            return
        per_image = out.numel() // max(1, out.shape[0])
        if isinstance(m, nn.Conv2d):
            total[0] += per_image * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += per_image * m.in_features

    modules = dict(model.net.named_modules())
    paths = {model.layer(name).path for name in layers}

    def mark(path: str):
        def hook(_m, _inp, _out) -> None:
            at_path.setdefault(path, total[0])
            if len(at_path) == len(paths):
                raise _Seen  # stop at the deepest layer asked for, as the rendering does
        return hook

    try:
        for m in modules.values():  # counting hooks first: a layer that is itself a conv includes its own cost
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                handles.append(m.register_forward_hook(count))
        for p in paths:
            handles.append(modules[p].register_forward_hook(mark(p)))
        with torch.no_grad():
            model.net(fit_input(model, model.preprocess.apply(torch.zeros(1, 3, size, size, device=model.device))))
    except _Seen:
        pass
    except RuntimeError as exc:
        raise FvError(f"{model.name} cannot run up to {', '.join(layers)} at {size} px ({exc}); use a larger "
                      f"--size") from None
    finally:
        for h in handles:
            h.remove()
    fallback = max([total[0], 1])
    return {name: max(1, at_path.get(model.layer(name).path, fallback)) for name in layers}


# ------------------------------------------------------------------------------------------------------------------
# Shards


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (0 <= I < N) -> (I, N)."""
    i_s, sep, n_s = text.strip().partition("/")
    if not sep or not i_s.strip().isdigit() or not n_s.strip().isdigit():
        raise FvError(f"bad shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    i, n = int(i_s), int(n_s)
    if n < 1:
        raise FvError(f"bad shard {text!r}: the shard count N must be at least 1, e.g. 0/4")
    if not 0 <= i < n:
        raise FvError(f"bad shard {text!r}: the index must be in 0-{n - 1} for {n} shard(s)")
    return i, n


def _env_int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    text = str(env[name]).strip()
    if not text.isdigit() or int(text) < minimum:
        raise FvError(f"bad {name}={env[name]!r} in the environment: expected an integer >= {minimum}")
    return int(text)


def shard_from_env(env: Mapping[str, str] | None = None, count: int | None = None) -> tuple[int, int] | None:
    """The shard given by the environment, or None.

    FV_SHARD=I/N; SLURM job arrays: (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP of
    SLURM_ARRAY_TASK_COUNT (--array=0-7, 1-8, 0-14:2 and a %K concurrency cap all work; a list such as 1,3,7 does
    not); Kubernetes indexed jobs: JOB_COMPLETION_INDEX of FV_SHARD_COUNT or `count` (a pod does not see its job's
    completions count, so set FV_SHARD_COUNT to it in the pod template)."""
    env = os.environ if env is None else env
    if env.get("FV_SHARD"):
        return parse_shard(env["FV_SHARD"])
    if env.get("SLURM_ARRAY_TASK_ID"):
        if not count and not env.get("SLURM_ARRAY_TASK_COUNT"):
            raise FvError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard-count N")
        n = count or _env_int(env, "SLURM_ARRAY_TASK_COUNT", 1)
        offset = _env_int(env, "SLURM_ARRAY_TASK_ID") - (_env_int(env, "SLURM_ARRAY_TASK_MIN")
                                                         if env.get("SLURM_ARRAY_TASK_MIN") else 0)
        step = _env_int(env, "SLURM_ARRAY_TASK_STEP", 1) if env.get("SLURM_ARRAY_TASK_STEP") else 1
        if offset < 0 or offset % step:
            raise FvError(f"SLURM array task {env['SLURM_ARRAY_TASK_ID']} is not in the array's range (min "
                          f"{env.get('SLURM_ARRAY_TASK_MIN')}, step {step}); use a range such as --array=0-{n - 1}")
        return parse_shard(f"{offset // step}/{n}")
    if env.get("JOB_COMPLETION_INDEX"):
        if not count and not env.get("FV_SHARD_COUNT"):
            raise FvError("JOB_COMPLETION_INDEX is set but the shard count is unknown: set FV_SHARD_COUNT to the "
                          "job's completions (or pass --shard-count N)")
        n = count or _env_int(env, "FV_SHARD_COUNT", 1)
        return parse_shard(f"{_env_int(env, 'JOB_COMPLETION_INDEX')}/{n}")
    if count:
        raise FvError("--shard-count needs a shard index from the environment (SLURM_ARRAY_TASK_ID or "
                      "JOB_COMPLETION_INDEX); or pass --shard I/N")
    return None


# ------------------------------------------------------------------------------------------------------------------
# Rendering (pluggable)


@dataclass
class UnitImage:
    label: str  # shown in the gallery: 'final', 'step 32', 'negative', ...
    name: str  # file name in the layer's directory, e.g. mixed4a-00011.png
    image: torch.Tensor | np.ndarray  # (3, H, W) in [0, 1] or (H, W, 3) uint8


@dataclass
class UnitOutput:
    unit: Unit
    images: list[UnitImage]  # the first is the unit's main image (thumbnail, contact sheets)
    record: dict  # runner.unit_record(...) or similar; the sweep adds `images`, `png` and `sweep`


class BatchRenderer(Protocol):
    """Maps one planned batch to outputs; must be deterministic given (model, recipe, batch).

    An optional attribute `images_per_unit` (default 1) makes the plan put batch_size // images_per_unit units in
    each batch."""

    def identity(self) -> dict: ...  # part of the directory's identity (name and options)

    def __call__(self, model: LoadedModel, recipe: Recipe, batch: PlannedBatch,
                 on_step: Callable[[int], None] | None = None) -> list[UnitOutput]: ...


@dataclass(frozen=True)
class ChannelRenderer:
    """The default renderer: each unit's final image (KEY.png) and its threshold snapshots (KEY.stepNNNNN.png)."""

    name: str = "unit"
    images_per_unit: int = 1

    def identity(self) -> dict:
        return {"name": self.name}

    def __call__(self, model: LoadedModel, recipe: Recipe, batch: PlannedBatch,
                 on_step: Callable[[int], None] | None = None) -> list[UnitOutput]:
        res = run_batch(model, recipe, batch.units, on_step=on_step)
        outs = []
        for b, u in enumerate(res.units):
            rec = unit_record(model, recipe, u, res.seeds[b], res.objectives[b], res.snapshots, b, res.seconds,
                              len(res.units), res.faults[b] if res.faults else None)
            images = [UnitImage("final", f"{u.key}.png", res.snapshots[-1].images[b])]
            images += [UnitImage(f"step {s.step}", f"{u.key}.step{s.step:05d}.png", s.images[b])
                       for s in res.snapshots[:-1]]
            outs.append(UnitOutput(u, images, rec))
        return outs


# ------------------------------------------------------------------------------------------------------------------
# The directory


def default_out(recipe: Recipe, root: Path = Path("runs"), renderer: BatchRenderer | None = None) -> Path:
    """runs/MODEL-RECIPEHASH (a new recipe gets a new directory); -NAME added for a renderer other than the default."""
    name = renderer.identity().get("name", "unit") if renderer is not None else "unit"
    suffix = "" if name == "unit" else f"-{safe_name(str(name))}"
    return root / f"{safe_name(recipe.model.name.replace(':', '-'))}-{recipe.hash()}{suffix}"


def layer_dir(out: Path, layer: str) -> Path:
    return Path(out) / "layers" / safe_name(layer)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _id(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def sweep_identity(model: LoadedModel, recipe: Recipe, batch_size: int, renderer: BatchRenderer) -> dict:
    """What must agree for two runs to share a directory (everything that changes the pictures' bytes)."""
    return {"model": model.name, "weights_sha256": model.weights_sha256, "recipe_hash": recipe.hash(),
            "batch_size": int(batch_size), "renderer": renderer.identity()}


def read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _create_exclusive_json(path: Path, obj: object) -> bool:
    """Create `path` with `obj` unless it exists (atomically: complete content or nothing). True if created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(obj, indent=1) + "\n").encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if `path` exists: the first writer wins
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: a small race, but never a partial file
            if path.exists():
                return False
            os.replace(tmp, path)
            return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _describe_mismatch(old: dict, new: dict) -> str:
    names = {"model": "model", "weights_sha256": "weights (sha256)", "recipe_hash": "recipe hash",
             "batch_size": "batch size", "renderer": "renderer"}
    diffs = [f"{names[k]} {old.get(k)!r} (this run: {new[k]!r})" for k in names if old.get(k) != new[k]]
    return "; ".join(diffs)


def open_sweep(out: Path, identity: dict, recipe: Recipe, model: LoadedModel, overwrite: bool = False) -> dict:
    """Create OUT/sweep.json, or check that it holds the same sweep; --overwrite replaces a different one."""
    out = Path(out)
    sid = _id(identity)
    doc = {"format": FORMAT, "id": sid, **identity, "weights": model.weights_source, "recipe": recipe.to_dict(),
           "created": _now(), "created_by": {"host": socket.gethostname(), "pid": os.getpid()}}
    path = out / "sweep.json"
    try:
        if _create_exclusive_json(path, doc):
            return doc
    except OSError as exc:
        raise FvRuntimeError(f"cannot write {path}: {exc.strerror or exc}") from None
    old = read_json(path)
    if old is not None and old.get("id") == sid:
        return old
    if overwrite:
        log.warning("%s: replacing the sweep %s with %s (--overwrite)", out, old and old.get("id"), sid)
        atomic_write_json(path, doc)
        return doc
    if old is None:
        raise FvError(f"{path} is unreadable; pass --overwrite to start a new sweep in {out}, or use a new --out")
    raise FvError(f"{out} holds a different sweep: {_describe_mismatch(old, identity)}. Use a new --out (the default "
                  f"runs/MODEL-RECIPEHASH is per recipe), or --overwrite to re-render everything in {out}")


def unit_done(out: Path, unit: Unit, sweep_id: str) -> bool:
    """The unit's record names this sweep and every image it lists exists."""
    d = layer_dir(out, unit.layer)
    rec = read_json(d / f"{unit.key}.json")
    if rec is None or not isinstance(rec.get("sweep"), dict) or rec["sweep"].get("id") != sweep_id:
        return False
    images = rec.get("images")
    return isinstance(images, list) and bool(images) and all(
        isinstance(im, dict) and (d / str(im.get("png"))).is_file() for im in images)


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or name != safe_name(name):
        raise FvRuntimeError(f"renderer produced an unsafe file name {name!r}")
    return name


def write_unit(out: Path, o: UnitOutput, sweep_meta: dict) -> Path:
    """Images first, the record last (the record is what marks the unit done)."""
    d = layer_dir(out, o.unit.layer)
    listed = []
    for im in o.images:
        save_png(d / _check_name(im.name), im.image)
        listed.append({"label": im.label, "png": im.name})
    rec = dict(o.record)
    rec["images"] = listed
    rec["png"] = listed[0]["png"]
    rec["sweep"] = sweep_meta
    path = d / f"{o.unit.key}.json"
    atomic_write_json(path, rec)
    return path


def remove_stale_tmp(out: Path, older_than: float = STALE_TMP_SECONDS) -> int:
    """Remove temporary files left by killed writers (`.NAME.<random>.tmp`, older than `older_than` seconds)."""
    n, now = 0, time.time()
    for p in list(Path(out).glob(".*.tmp")) + list(Path(out).glob("*/.*.tmp")) + list(Path(out).glob("layers/*/.*.tmp")) \
            + list(Path(out).glob("layers/*/sprites/.*.tmp")):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime >= older_than:
                p.unlink()
                n += 1
    return n


# ------------------------------------------------------------------------------------------------------------------
# Selections (what a shard was asked to do), stored in its state file


def _ranges(nums: Iterable[int]) -> str:
    nums = sorted(set(nums))
    parts, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


def _unranges(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def selection_doc(units: Sequence[Unit], order: Mapping[str, int]) -> list[dict]:
    groups: dict[tuple[str, str], list[int]] = {}
    for u in units:
        groups.setdefault((u.layer, u.kind), []).append(u.channel)
    keys = sorted(groups, key=lambda k: (order.get(k[0], 1 << 30), k[0], _KIND_ORDER[k[1]]))
    return [{"layer": layer, "kind": kind, "order": order.get(layer), "channels": _ranges(groups[(layer, kind)])}
            for layer, kind in keys]


def selection_units(doc: Sequence[dict]) -> list[Unit]:
    return [Unit(g["kind"], g["layer"], c) for g in doc for c in _unranges(g["channels"])]


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
            remove_stale_tmp(self.out)
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
                    outputs = backoff(lambda us, b=batch: self.renderer(
                        self.model, self.recipe, replace(b, units=tuple(us)), on_step), batch.units)
                    meta = {"id": self.sweep_id, "batch": batch.id, "batch_size": self.batch_size,
                            "members": [u.key for u in batch.units], "shard": f"{i}/{n}"}
                    if len(backoff.events) > n_events or backoff.parts > 1:  # rendered in pieces after an OOM
                        meta["oom"] = {"parts": backoff.parts, "events": backoff.events[n_events:]}
                    wanted = set(missing)
                    for o in outputs:
                        if o.unit in wanted and not unit_done(self.out, o.unit, self.sweep_id):
                            write_unit(self.out, o, meta)
                            report.rendered += 1
                    run_info["rendered"] = report.rendered
                    try:
                        save()
                    except FvRuntimeError as exc:  # the state file is informational; the records are what count
                        log.warning("%s", exc)
                    if on_batch:
                        on_batch(batch, len(missing))
                status = "stopped" if report.stopped_early else "done"
            finally:
                report.seconds = time.monotonic() - t0
                with contextlib.suppress(FvError):
                    save(status)
        report.complete = self.all_done()
        if report.complete and finalize_when_done:
            report.manifest = finalize(self.out)
        return report


def prepare_sweep(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], out: Path, *,
                  batch_size: int | str | None = None, shard: tuple[int, int] = (0, 1), overwrite: bool = False,
                  renderer: BatchRenderer | None = None) -> SweepJob:
    """Check or create the directory's identity, plan the batches, pick this shard's and find what is missing.

    batch_size: an int, or 'auto'/None (the recipe's; 'auto' reuses the directory's batch size when it has one)."""
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
        probe = sweep_identity(model, recipe, 1, renderer)
        same = old is not None and all(old.get(k) == v for k, v in probe.items() if k != "batch_size")
        # The directory's batch size wins (byte-identical resumes); otherwise one that depends on the device only.
        bs = int(old["batch_size"]) if same and not overwrite else auto_batch_size(model, recipe, MAX_BATCH)
    bs = int(bs)
    if not 1 <= bs <= MAX_BATCH:
        raise FvError(f"bad batch size {bs}: expected 1-{MAX_BATCH} or auto")
    sweep = open_sweep(out, sweep_identity(model, recipe, bs, renderer), recipe, model, overwrite)
    order = {name: info.order for name, info in model.catalog.items()}
    costs = layer_costs(model, sorted({u.layer for u in units}, key=lambda l: order.get(l, 0)), recipe.render.size)
    # a renderer drawing several images per unit (e.g. appendix panels) gets fewer units per batch
    per_batch = max(1, bs // max(1, int(getattr(renderer, "images_per_unit", 1))))
    plan = plan_sweep(units, per_batch, costs, order)
    assignment = assign_shards([b.cost for b in plan], n)
    job = SweepJob(model, recipe, out, renderer, sweep, units, plan, assignment, (i, n), selection_doc(units, order))
    job.refresh_todo()
    return job


def run_sweep(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], out: Path, **kw) -> SweepReport:
    """prepare_sweep(...) then run(): the library entry point behind `fv sweep`."""
    run_kw = {k: kw.pop(k) for k in ("on_step", "on_batch", "time_limit", "finalize_when_done") if k in kw}
    return prepare_sweep(model, recipe, units, out, **kw).run(**run_kw)


# ------------------------------------------------------------------------------------------------------------------
# Finalize: sheets, manifest, gallery from whatever the shards wrote


def _tile(path: Path | None, size: int, tile: int) -> np.ndarray:
    if path is None:
        return np.full((tile, tile, 3), 225, np.uint8)  # a missing unit: light grey
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (tile, tile):
                im = im.resize((tile, tile), Image.BILINEAR)
            return np.asarray(im)
    except OSError:
        return np.full((tile, tile, 3), 225, np.uint8)


def sheet_tile(n: int, size: int) -> tuple[int, int]:
    """(columns, tile px) of a whole-layer sheet: at most ~32 columns and ~4k px wide."""
    cols = 10 if n <= 100 else 20 if n <= 400 else 32
    return cols, max(16, min(size, 4096 // cols - 4, 128))


def build_sheets(out: Path, layer: str, entries: Sequence[tuple[Unit, dict | None]], size: int) -> dict:
    """Sprites of 10 channels (A--B.png, as the appendix) and a whole-layer sheet with channel numbers."""
    d = layer_dir(out, layer)
    sprites = []
    for k in range(0, len(entries), SPRITE):
        group = entries[k: k + SPRITE]
        tiles = [_tile(d / rec["png"] if rec else None, size, size) for _u, rec in group]
        name = f"{group[0][0].key}--{group[-1][0].key}.png"
        atomic_write_bytes(d / "sprites" / name, png_bytes(grid(tiles, [str(u.channel) for u, _ in group],
                                                               cols=SPRITE, tile=size)))
        sprites.append(f"sprites/{name}")
    cols, t = sheet_tile(len(entries), size)
    tiles = [_tile(d / rec["png"] if rec else None, size, t) for _u, rec in entries]
    atomic_write_bytes(d / "sheet.png", png_bytes(grid(tiles, [str(u.channel) for u, _ in entries], cols=cols, tile=t)))
    return {"sheet": "sheet.png", "sprites": sprites, "panel_sheets": build_panel_sheets(d, entries, size)}


def build_panel_sheets(d: Path, entries: Sequence[tuple[Unit, dict | None]], size: int) -> list[str]:
    """Appendix sweeps: the rows (KEY-panels.png) of 10 channels stacked, one row per channel, as the appendix."""
    if not any(rec and rec.get("panels_png") for _u, rec in entries):
        return []
    names = []
    t = min(size, 128)
    for k in range(0, len(entries), SPRITE):
        group = entries[k: k + SPRITE]
        n = max(len(rec.get("panels") or []) for _u, rec in group if rec) if any(rec for _u, rec in group) else 7
        tiles, labels, rows_labels = [], [], []
        for u, rec in group:
            files = [p.get("png") for p in (rec or {}).get("panels") or []]
            order = [p.get("panel") for p in (rec or {}).get("panels") or []]
            # the appendix's order: neuron, channel, negative, facets (records list the channel first)
            by_name = dict(zip(order, files))
            wanted = ["neuron", "channel", "channel-negative"] + sorted(x for x in order if x and x.startswith(
                "channel-diversity-"))
            row = [by_name.get(w) for w in wanted] if rec else []
            row += [None] * (n - len(row))
            tiles += [_tile(d / f if f else None, size, t) for f in row]
            labels += [w.replace("channel-", "").replace("diversity-", "div ") for w in wanted] + [""] * (n - len(wanted))
            rows_labels.append(str(u.channel))
        name = f"panels/{group[0][0].key}--{group[-1][0].key}.png"
        atomic_write_bytes(d / name, png_bytes(grid(tiles, labels, cols=n, tile=t, rows_labels=rows_labels)))
        names.append(name)
    return names


def collect(out: Path) -> tuple[dict, list[dict], list[dict]]:
    """(sweep.json, shard states, layers) where each layer is {layer, kind, order, units: [(Unit, record|None)]}."""
    out = Path(out)
    sweep = read_json(out / "sweep.json")
    if sweep is None or sweep.get("format") != FORMAT:
        raise FvError(f"{out} holds no sweep (no readable sweep.json); run `fv sweep --out {out}` first")
    sid = sweep["id"]
    states = []
    for p in sorted((out / "shards").glob("*.json")):
        st = read_json(p)
        if st and st.get("sweep_id") == sid:
            st["file"] = str(p.relative_to(out))
            states.append(st)
    expected: dict[Unit, int] = {}
    for st in states:
        for g in st.get("selection") or []:
            for u in selection_units([g]):
                expected.setdefault(u, g.get("order") if g.get("order") is not None else 1 << 30)
    found: dict[Unit, dict] = {}
    for p in sorted((out / "layers").glob("*/*.json")):
        if p.name.startswith("."):
            continue
        rec = read_json(p)
        if not rec or not isinstance(rec.get("sweep"), dict) or rec["sweep"].get("id") != sid:
            continue
        try:
            u = Unit(rec["kind"], rec["layer"], int(rec["channel"]))
        except (KeyError, TypeError, ValueError):
            continue
        if u.key == p.stem and unit_done(out, u, sid):
            if (p.parent / f"{u.key}.examples.png").is_file():  # `fv examples --out` this sweep (fvcli/examples.py)
                rec["examples_png"] = f"{u.key}.examples.png"
            found[u] = rec
            expected.setdefault(u, 1 << 30)
    groups: dict[tuple[str, str], dict] = {}
    for u, order in expected.items():
        g = groups.setdefault((u.layer, u.kind), {"layer": u.layer, "kind": u.kind, "order": order, "units": []})
        g["order"] = min(g["order"], order)
        g["units"].append((u, found.get(u)))
    layers = sorted(groups.values(), key=lambda g: (g["order"], g["layer"], _KIND_ORDER.get(g["kind"], 9)))
    for g in layers:
        g["units"].sort(key=lambda e: e[0].channel)
    return sweep, states, layers


def finalize(out: Path, *, sheets: bool = True) -> dict:
    """Build contact sheets, manifest.json and the HTML gallery from what is in `out` (all shards' records)."""
    out = Path(out)
    collect(out)  # fails early (exit 2) when `out` holds no sweep
    with open(out / ".finalize.lock", "a+") as lock:  # concurrent finalizers (the last shards) take turns
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        return _finalize(out, sheets)


def _finalize(out: Path, sheets: bool) -> dict:
    from .gallery import write_gallery

    sweep, states, layers = collect(out)
    size = int(sweep["recipe"]["render"]["size"])
    records = [rec for g in layers for _u, rec in g["units"] if rec]
    n_expected = sum(len(g["units"]) for g in layers)
    missing = [u.label for g in layers for u, rec in g["units"] if rec is None]
    layer_docs = []
    for g in layers:
        done = sum(1 for _u, rec in g["units"] if rec)
        files = build_sheets(out, g["layer"], g["units"], size) if sheets and g["units"] else {"sheet": None, "sprites": []}
        base = f"layers/{safe_name(g['layer'])}/"
        layer_docs.append({"layer": g["layer"], "kind": g["kind"], "units": len(g["units"]), "done": done,
                           "dir": base, "page": base + "index.html",
                           "sheet": base + files["sheet"] if files["sheet"] else None,
                           "sprites": [base + s for s in files["sprites"]],
                           "panel_sheets": [base + s for s in files.get("panel_sheets") or []]})
    unit_seconds = sum(float(r.get("seconds") or 0) for r in records)
    runs = [r for st in states for r in st.get("runs") or []]
    starts = [r["started"] for r in runs if r.get("started")]
    ends = [r.get("ended") for r in runs if r.get("ended")] + [st.get("updated") for st in states if st.get("updated")]
    wall = None
    if starts and ends:
        wall = (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(min(starts))).total_seconds()
    manifest = {
        "format": "fv-sweep-manifest/1",
        "finalized": _now(),
        "sweep": {k: sweep.get(k) for k in ("id", "model", "weights", "weights_sha256", "recipe_hash", "batch_size",
                                            "renderer", "created")},
        "recipe": sweep.get("recipe"),
        "complete": not missing,
        "units": {"expected": n_expected, "done": len(records), "missing": len(missing),
                  "missing_units": missing[:1000]},
        "layers": layer_docs,
        "timings": {
            "render_seconds": round(unit_seconds, 3),  # sum over units of their share of their batch's time
            "seconds_per_unit": round(unit_seconds / len(records), 4) if records else None,
            "units_per_hour_per_process": round(3600 * len(records) / unit_seconds, 1) if unit_seconds else None,
            "wall_seconds": round(wall, 1) if wall is not None else None,  # first shard start to last update
        },
        "devices": sorted({str(r.get("device")) for r in records}),
        "versions": versions(),
        "record_versions": sorted({json.dumps(r.get("versions"), sort_keys=True) for r in records})[:8],
        "shards": [{k: st.get(k) for k in ("file", "shard", "of", "selection_id", "units", "done", "cost",
                                           "cost_total", "updated", "runs")} for st in states],
        "gallery": "index.html",
    }
    write_gallery(out, manifest, layers)
    atomic_write_json(out / "manifest.json", manifest)
    remove_stale_tmp(out, 0 if manifest["complete"] else STALE_TMP_SECONDS)
    return manifest
