"""Finalizing a sweep: contact sheets, manifest and HTML gallery from whatever the shards wrote.

Finalizing reads only the directory (sweep.json, the shards' state files, the unit records), never a plan in memory,
so any process can do it at any time: the last shard to finish, `fv sweep --finalize` after an array job, or
`fv examples` when it adds dataset examples beside the renders. Units not written yet show as grey tiles and are
listed as missing in the manifest. Concurrent finalizers take turns on a lock file.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import FvError
from ..outputs import atomic_write_bytes, atomic_write_json, grid, png_bytes, versions
from ..units.unit import Unit, safe_name
from .adopt import adopt_examples
from .directory import FORMAT, _now, layer_dir, read_json, remove_stale_tmp, unit_done
from ..units.dictionary import DictSource
from .plan import _KIND_ORDER, selection_units

SPRITE = 10  # channels per sprite sheet, as the Distill appendix


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


SHEETS_SIG = "gallery/sheets.json"  # per sheet file, a hash of the (PNG, size, mtime) of the units it shows


def _stamps(d: Path, entries: Sequence[tuple[Unit, dict | None]]) -> list:
    out = []
    for u, rec in entries:
        try:
            st = (d / rec["png"]).stat() if rec else None
            out.append([u.channel, rec["png"], st.st_size, st.st_mtime_ns] if st else [u.channel])
        except OSError:
            out.append([u.channel, rec["png"]])
    return out


def _sig(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def build_sheets(out: Path, layer: str, entries: Sequence[tuple[Unit, dict | None]], size: int) -> dict:
    """Sprites of 10 channels (A--B.png, as the appendix) and a whole-layer sheet with channel numbers. A sheet whose
    units' PNGs did not change since it was made (SHEETS_SIG) is kept: re-finalizing a 32,768-unit layer redraws
    only the sprites of what moved. Written without fsync, as the pages are: they are derived from the records, and
    a fsync took ~4 ms here (3,277 sprites of a 32,768-unit layer: ~13 s of a finalize)."""
    d = layer_dir(out, layer)
    old = read_json(d / SHEETS_SIG) or {}
    stamps = _stamps(d, entries)
    new: dict[str, str] = {}
    sprites = []
    for k in range(0, len(entries), SPRITE):
        group = entries[k: k + SPRITE]
        name = f"{group[0][0].key}--{group[-1][0].key}.png"
        sprites.append(f"sprites/{name}")
        new[f"sprites/{name}"] = sig = _sig(size, stamps[k: k + SPRITE])
        if old.get(f"sprites/{name}") == sig and (d / "sprites" / name).is_file():
            continue
        tiles = [_tile(d / rec["png"] if rec else None, size, size) for _u, rec in group]
        atomic_write_bytes(d / "sprites" / name, png_bytes(grid(tiles, [str(u.channel) for u, _ in group],
                                                               cols=SPRITE, tile=size)), durable=False)
    cols, t = sheet_tile(len(entries), size)
    new["sheet.png"] = sig = _sig(size, cols, t, stamps)
    if old.get("sheet.png") != sig or not (d / "sheet.png").is_file():
        tiles = [_tile(d / rec["png"] if rec else None, size, t) for _u, rec in entries]
        atomic_write_bytes(d / "sheet.png", png_bytes(grid(tiles, [str(u.channel) for u, _ in entries], cols=cols,
                                                           tile=t)), durable=False)
    if new != old:
        atomic_write_json(d / SHEETS_SIG, new)
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
        atomic_write_bytes(d / name, png_bytes(grid(tiles, labels, cols=n, tile=t, rows_labels=rows_labels)),
                           durable=False)
        names.append(name)
    return names


def _sweep_json(out: Path) -> dict:
    sweep = read_json(out / "sweep.json")
    if sweep is None or sweep.get("format") != FORMAT:
        raise FvError(f"{out} holds no sweep (no readable sweep.json); run `fv sweep --out {out}` first")
    return sweep


def collect(out: Path) -> tuple[dict, list[dict], list[dict]]:
    """(sweep.json, shard states, layers) where each layer is {layer, kind, order, units: [(Unit, record|None)]}."""
    out = Path(out)
    sweep = _sweep_json(out)
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
            src = DictSource.from_dict(rec["dictionary"]) if rec.get("dictionary") else None
            u = Unit(rec["kind"], rec["layer"], int(rec["channel"]), source=src)
        except (KeyError, TypeError, ValueError):
            continue
        if u.key == p.stem and unit_done(out, u, sid):
            if (p.parent / f"{u.key}.examples.png").is_file():  # `fv examples --out` this sweep (fvcli/examples/scan.py)
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
    _sweep_json(out)  # fails early (exit 2) when `out` holds no sweep; collect() would read every record for that
    with open(out / ".finalize.lock", "a+") as lock:  # concurrent finalizers (the last shards) take turns
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        return _finalize(out, sheets)


def _finalize(out: Path, sheets: bool) -> dict:
    from ..gallery.pages import write_gallery

    sweep, states, layers = collect(out)
    adopt_examples(out, {g["layer"] for g in layers})  # `fv examples` that ran before the sweep claimed `out`
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
    remove_stale_tmp(out)  # a dead writer's at once; an unknown (other host) writer's once it is old
    return manifest
