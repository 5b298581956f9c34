"""Circuits for a whole sweep: every done unit's KEY.circuit.json, beside its render, resumable.

For each swept layer L, the inputs come from `from_layer` when it is given and lies before L, else from the main
layer just before L in the catalog (a layer with none before it is skipped, and so is one that `from_layer` does not
precede). Attribution reads each unit's own render (KEY.png) and its top dataset examples when KEY.examples.json is
there.

Resumable like the other extras (fvcli/sweep/extras.py): units are cut into chunks by channel (chunk k holds the done
units with channel in [k*CHUNK, (k+1)*CHUNK)); a chunk whose records all exist and match (same from-layer, top-k,
weights, and the same presence of dataset examples) is skipped, any other chunk is computed again whole, so its
passes -- and every byte it writes -- are those of an uninterrupted run. Records are written atomically.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..models import LoadedModel
from ..outputs import atomic_write_json
from ..runner.variants import main_layer_before
from ..sweep import layer_dir, read_json
from ..units.unit import Unit
from .compute import example_images, read_png, unit_circuits
from .expanded import CHUNK
from .record import TOP_K, circuit_name

log = logging.getLogger(__name__)

KINDS = ("channel", "logit")  # sweeps of channels and of classes (`logit:all`) get circuits


def source_layer(model: LoadedModel, layer: str, from_layer: str | None) -> str | None:
    """Where `layer`'s inputs are read from (None: nowhere -- no earlier main layer, or `from_layer` not before)."""
    if from_layer is not None:
        return from_layer if model.layer(from_layer).order < model.layer(layer).order else None
    before = main_layer_before(model, layer)
    return before if before != layer else None


def _done(d: Path, u: Unit, src: str, top_k: int, sha: str) -> bool:
    rec = read_json(d / circuit_name(u.key))
    has_examples = (d / f"{u.key}.examples.json").is_file()
    return (rec is not None and rec.get("from") == src and rec.get("top_k") == top_k
            and rec.get("weights_sha256") == sha
            and bool((rec.get("attribution") or {}).get("images", {}).get("examples")) == has_examples)


def sweep_circuits(model: LoadedModel, out: Path, units: Sequence[Unit], from_layer: str | None = None,
                   top_k: int = TOP_K, on_chunk: Callable[[int], None] | None = None) -> dict:
    """Write the missing circuit records of `units` (done units of the sweep in `out`); returns the cost:
    {extra, units, rendered, skipped, batches, seconds, seconds_per_unit, layers: {layer: from}}."""
    if from_layer is not None:
        model.layer(from_layer)  # validates
    t0 = time.perf_counter()
    done = skipped = chunks = 0
    sources: dict[str, str | None] = {}
    by_chunk: dict[tuple[str, str, int], list[Unit]] = {}
    for u in units:
        if u.kind in KINDS and u.channel is not None:
            by_chunk.setdefault((u.layer, u.kind, u.channel // CHUNK), []).append(u)
    for (layer, _kind, _k), chunk in sorted(by_chunk.items(),
                                            key=lambda kv: (model.layer(kv[0][0]).order, kv[0][1], kv[0][2])):
        if layer not in sources:
            sources[layer] = source_layer(model, layer, from_layer)
            if sources[layer] is None:
                log.info("circuits: %s has no earlier layer to read inputs from; skipped", layer)
        src = sources[layer]
        if src is None:
            continue
        d = layer_dir(out, layer)
        if all(_done(d, u, src, top_k, model.weights_sha256) for u in chunk):
            skipped += len(chunk)
            continue
        renders, examples = [], []
        for u in chunk:
            rec = read_json(d / f"{u.key}.json") or {}
            png = d / str(rec.get("png") or f"{u.key}.png")
            renders.append(read_png(png) if png.is_file() else None)
            ex = d / f"{u.key}.examples.json"
            try:
                examples.append(example_images(json.loads(ex.read_text())) if ex.is_file() else [])
            except (OSError, ValueError):
                examples.append([])
        for u, rec in zip(chunk, unit_circuits(model, chunk, src, renders, examples, top_k)):
            atomic_write_json(d / circuit_name(u.key), rec)
        done += len(chunk)
        chunks += 1
        if on_chunk:
            on_chunk(len(chunk))
    seconds = time.perf_counter() - t0
    log.info("circuits: %d unit(s) computed in %d chunk(s), %d already done: %.2f s", done, chunks, skipped, seconds)
    return {"extra": "circuits", "units": len(units), "rendered": done, "skipped": skipped, "batches": chunks,
            "seconds": round(seconds, 2), "seconds_per_unit": round(seconds / done, 4) if done else None,
            "layers": {k: v for k, v in sources.items()}}
