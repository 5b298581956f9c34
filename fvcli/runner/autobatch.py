"""`--batch-size auto` on the CPU: the batch size measured fastest for this model, cached.

A larger batch amortizes per-op overhead but stops paying once the activations spill out of the caches; where that
happens depends on the model, the image size, the precision and the CPU (InceptionV1 at 224 px peaks at 4-16 images
on this project's 2-core VM, 32 is slower; small networks at 64 px keep gaining to larger batches). So instead of a
constant, the first `auto` run times a few optimization steps at each candidate batch size (one warm-up step, then
the fastest of PROBE_STEPS timed steps, per candidate) and keeps the smallest batch within TIE of the best
image*steps per second (less memory for the same speed). The choice is cached in a small JSON file under the user's
cache directory (`$FV_CACHE_DIR`, else `$XDG_CACHE_HOME/fv`, else `~/.cache/fv`), keyed by model, probe layer,
size, device, precision, threads and torch version, so later runs pay nothing.

Images do not depend on the batch size (per-image seeds and transforms), and a sweep directory records its batch
size at creation, so a resumed or sharded sweep keeps it whatever a later probe says.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..models import LoadedModel
from ..optvis.loop import LoopSettings, render_batch

log = logging.getLogger(__name__)

CANDIDATES = (1, 2, 4, 8, 16)  # 32 measured slower than 8-16 for InceptionV1 at 224 px (performance facts)
PROBE_STEPS = 2  # timed steps per candidate, after one warm-up step
TIE = 0.03  # within 3 % of the best throughput counts as a tie; the smaller batch wins
CACHE_NAME = "batch_size.json"


def cache_file() -> Path:
    base = os.environ.get("FV_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fv")
    return Path(base) / CACHE_NAME


def probe_layer(model: LoadedModel) -> str:
    """The layer the probe optimizes: the deepest main layer (the costliest forward), else the logits."""
    return model.main_layers[-1] if model.main_layers else model.logits_layer


def cache_key(model: LoadedModel, settings: LoopSettings, candidates: tuple[int, ...] = CANDIDATES) -> str:
    return "|".join(str(p) for p in (model.name, model.num_classes, probe_layer(model), settings.size,
                                     model.device.type, settings.precision, torch.get_num_threads(),
                                     torch.__version__, max(candidates)))


def pick(throughput: dict[int, float], tie: float = TIE) -> int:
    """The smallest batch size whose image*steps per second is within `tie` of the best."""
    best = max(throughput.values())
    return min(b for b, v in throughput.items() if v >= (1 - tie) * best)


def measure(model: LoadedModel, settings: LoopSettings, candidates: tuple[int, ...] = CANDIDATES,
            steps: int = PROBE_STEPS) -> dict[int, float]:
    """Image*steps per second of the render loop at each candidate batch size (best of `steps` timed steps)."""
    from ..optvis.objectives import LayerDream

    layer = probe_layer(model)
    short = replace(settings, steps=steps + 1, thresholds=())
    out: dict[int, float] = {}
    for b in candidates:
        marks = [time.perf_counter()]

        def on_step(_s: int, marks: list[float] = marks) -> None:
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            marks.append(time.perf_counter())

        for _ in render_batch(model, LayerDream(layer), list(range(b)), short, on_step=on_step):
            pass
        step_seconds = min(t1 - t0 for t0, t1 in zip(marks[1:], marks[2:]))  # marks[0..1] is the warm-up step
        out[b] = b / max(step_seconds, 1e-9)
        best_smaller = max((v for c, v in out.items() if c != b), default=None)
        if best_smaller is not None and out[b] < (1 + TIE) * best_smaller:
            break  # a larger batch stopped paying: larger ones would only cost probe time (minutes on a ViT-B)
    return out


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def measured_batch_size(model: LoadedModel, settings: LoopSettings, candidates: tuple[int, ...] = CANDIDATES) -> int:
    """The cached choice for this model and settings, or a fresh measurement (then cached)."""
    from ..outputs import atomic_write_json

    path, key = cache_file(), cache_key(model, settings, candidates)
    entry = _read_cache(path).get(key)
    if isinstance(entry, dict) and entry.get("batch_size") in candidates:
        return int(entry["batch_size"])
    t0 = time.perf_counter()
    throughput = measure(model, settings, candidates)
    best = pick(throughput)
    log.info("batch size auto: %d (image*steps/s by batch size: %s; %.1f s probe, cached in %s)", best,
             {b: round(v, 2) for b, v in throughput.items()}, time.perf_counter() - t0, path)
    data = _read_cache(path)  # re-read: another process may have added entries meanwhile
    data[key] = {"batch_size": best, "image_steps_per_s": {str(b): round(v, 3) for b, v in throughput.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)
    except OSError as exc:  # a read-only home must not stop a render
        log.warning("could not cache the batch size probe in %s: %s", path, exc)
    return best
