"""The sweep directory: its identity, its unit records and what makes a unit done.

Many processes share one directory (shards on a cluster, a rerun after a crash, a finalizer) and none of them is in
charge, so the files themselves carry the state:

- OUT/sweep.json names what the directory holds (model, weights, recipe hash, batch size, renderer). It is created
  once with a hard link (the first writer wins, atomically) and a run with another identity is refused: mixing two
  recipes' pictures in one gallery would be silent and wrong.
- a unit is done when its record OUT/layers/LAYER/KEY.json names this sweep and every image it lists exists; the
  record is written after the images, so a writer killed half-way leaves a unit that is simply not done yet.
- every file is written atomically (fvcli/outputs.py: a temporary file, then a rename); `remove_stale_tmp` removes
  the temporary files a killed writer left behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import tempfile
import time
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path

from ..errors import FvError, FvRuntimeError
from ..models import LoadedModel
from ..outputs import (
    atomic_write_json,
    host_tag,
    save_png,
    tmp_prefix,
    tmp_writer_alive,
)
from ..recipe import Recipe
from ..units.unit import Unit, safe_name
from .renderers import BatchRenderer, UnitOutput

log = logging.getLogger(__name__)

FORMAT = "fv-sweep/1"
STALE_TMP_SECONDS = 600  # a temporary file this old belongs to a killed writer (a write takes milliseconds)


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


def sweep_identity(model: LoadedModel, recipe: Recipe, batch_size: int, renderer: BatchRenderer,
                   units: Sequence[Unit] = ()) -> dict:
    """What must agree for two runs to share a directory (everything that changes the pictures' bytes).

    A sweep of a dictionary's rows also names each dictionary's file and sha256 (and objective options): a changed
    file is a different sweep, refused rather than resumed with old and new rows mixed. Channel sweeps have no such
    entry, so their identity (and id) is what it always was."""
    ident = {"model": model.name, "weights_sha256": model.weights_sha256, "recipe_hash": recipe.hash(),
             "batch_size": int(batch_size), "renderer": renderer.identity()}
    dicts = sorted({u.source for u in units if getattr(u, "source", None) is not None}, key=lambda s: (s.path, s.key or ""))
    if dicts:
        ident["dictionaries"] = [{"file": s.display, "path": s.path, "key": s.key, "sha256": s.sha256,
                                  "cossim": s.cossim} for s in dicts]
    return ident


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
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
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
    diffs = [f"{names[k]} {old.get(k)!r} (this run: {new[k]!r})" for k in names if old.get(k) != new.get(k)]
    od, nd = old.get("dictionaries") or [], new.get("dictionaries") or []
    if od != nd:
        o = {d.get("path"): d.get("sha256") for d in od}
        changed = [d for d in nd if d["path"] in o and o[d["path"]] != d["sha256"]]
        if changed:
            diffs += [f"dictionary {d['path']} changed since the sweep began: sha256 {str(o[d['path']])[:16]} "
                      f"(this run: {d['sha256'][:16]})" for d in changed]
        else:
            diffs.append(f"dictionaries {[d.get('file') for d in od] or 'none'} (this run: "
                         f"{[d.get('file') for d in nd] or 'none'})")
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


def write_units(out: Path, outputs: Sequence[UnitOutput], sweep_meta: dict) -> list[Path]:
    """`write_unit` for each of a batch's outputs, in order (one job of the sweep's background writer)."""
    return [write_unit(out, o, sweep_meta) for o in outputs]


def remove_stale_tmp(out: Path, older_than: float = STALE_TMP_SECONDS, held_lock: Path | None = None) -> int:
    """Remove the temporary files that killed writers left in `out` (call it between two writes of this process).

    A file whose writer ran on this host goes as soon as that process is gone (a live one's stays, unless it is
    older than STALE_TMP_SECONDS: its pid was reused). One from another host goes when the shard that wrote it has
    no live process (its lock is free, or it is `held_lock`, the shard lock the caller holds: its last run was an
    earlier one), or when it is older than `older_than` seconds (a write takes milliseconds)."""
    out = Path(out)
    n, now = 0, time.time()
    dead = None  # (host, pid) of the shards' last runs whose lock is free: computed when first needed
    for p in [*out.glob(".*.tmp"), *out.glob("*/.*.tmp"), *out.glob("layers/*/.*.tmp"), *out.glob("layers/*/*/.*.tmp")]:
        with contextlib.suppress(OSError):
            age = now - p.stat().st_mtime
            alive = tmp_writer_alive(p)
            if alive is None and age < older_than:
                dead = _dead_shard_writers(out, held_lock) if dead is None else dead
                alive = False if _tmp_owner(p) in dead else None
            if alive is False or age >= (STALE_TMP_SECONDS if alive else older_than):
                p.unlink()
                n += 1
    return n


def _tmp_owner(p: Path) -> tuple[str, int] | None:
    """(host, pid) from a temporary file's name (fvcli/outputs.py `tmp_prefix`), or None."""
    parts = p.name[: -len(".tmp")].rsplit(".", 1)[-1].split("~")
    return (parts[0], int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else None


def _dead_shard_writers(out: Path, held_lock: Path | None = None) -> set[tuple[str, int]]:
    """(host, pid) of each shard's last run whose shard lock is free (or held by the caller): that process ended."""
    dead = set()
    for lock_path in out.glob("shards/*.lock"):
        runs = (read_json(lock_path.with_suffix(".json")) or {}).get("runs") or []
        if not runs or not isinstance(runs[-1], dict):
            continue
        if held_lock is None or lock_path.resolve() != Path(held_lock).resolve():
            try:
                with open(lock_path, "a+") as f:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            except OSError:
                continue  # held: a live process renders that shard
        with contextlib.suppress(TypeError, ValueError):
            host = host_tag(str(runs[-1].get("host")))
            dead.add((host, int(runs[-1].get("pid") or -1)))
    return dead
