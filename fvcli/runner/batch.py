"""Running units: plan them into batches (one layer per batch), render each batch, write PNG + JSON per unit.

fvcli/runner/job.py's `render_units()` is what `fv render` calls (through `api.render`); `fv sweep` builds on
`plan_batches()` and `run_batch()`; fvcli/runner/stream.py renders a continuously refilled batch instead.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..errors import FvError, FvRuntimeError
from ..models import LoadedModel
from ..optvis.loop import NumericalFault, Snapshot, derive_seed, render_batch
from ..optvis.metrics import clipped_fraction
from ..optvis.objectives import Objective, PerImage
from ..optvis.penalties import regularizers
from ..outputs import atomic_write_json, save_png, versions
from ..recipe import Recipe
from ..units.unit import Unit

log = logging.getLogger(__name__)

CPU_BATCH = 8  # the CPU fallback when the batch-size probe fails (4-16 is InceptionV1's sweet spot at 224 px)


def unit_seed(recipe: Recipe, model: LoadedModel, unit: Unit, variant: str = "") -> int:
    """Each unit's seed depends only on the run seed, the model and the unit (never on its batch)."""
    return derive_seed(recipe.render.seed, model.name, unit.key, variant)


def plan_batches(units: Sequence[Unit], batch_size: int) -> list[list[Unit]]:
    """Group units by layer (first-appearance order) and cut each group into batches of `batch_size`."""
    by_layer: dict[str, list[Unit]] = {}
    for u in units:
        by_layer.setdefault(u.layer, []).append(u)
    return [group[i : i + batch_size] for group in by_layer.values() for i in range(0, len(group), batch_size)]


def auto_batch_size(model: LoadedModel, recipe: Recipe, n_units: int) -> int:
    """CPU: the batch size measured fastest for this model and settings (fvcli/runner/autobatch.py; probed once, cached).
    CUDA: as many images as fit in 80 % of free memory, measured with one probe step."""
    if n_units <= 1:
        return 1
    if model.device.type != "cuda":
        from .autobatch import CANDIDATES, measured_batch_size

        candidates = tuple(c for c in CANDIDATES if c <= n_units) or (1,)  # never probe beyond what will run
        try:
            return max(1, min(n_units, measured_batch_size(model, recipe.loop_settings(), candidates)))
        except (FvError, RuntimeError) as exc:  # a numerical fault, or a probe layer the size cannot reach (the
            # deepest main layer at a tiny --size): fall back, never stop the run
            log.warning("batch size probe failed (%s); using %d", exc, CPU_BATCH)
            return max(1, min(n_units, CPU_BATCH))
    return max(1, min(n_units, _cuda_batch_probe(model, recipe)))


def _cuda_batch_probe(model: LoadedModel, recipe: Recipe, probe: int = 2) -> int:
    # Memory of one optimization step at batch `probe`, scaled to the free memory (activations dominate).
    from ..optvis.objectives import LayerDream

    layer = model.main_layers[-1] if model.main_layers else model.logits_layer
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(model.device)
    base = torch.cuda.memory_allocated(model.device)
    settings = recipe.loop_settings()
    from dataclasses import replace

    for _ in render_batch(model, LayerDream(layer), list(range(probe)), replace(settings, steps=1, thresholds=())):
        pass
    per_image = max(1, (torch.cuda.max_memory_allocated(model.device) - base) // probe)
    free, _total = torch.cuda.mem_get_info(model.device)
    return batch_from_memory(per_image, free)


def batch_from_memory(per_image_bytes: int, free_bytes: int, fraction: float = 0.8, cap: int = 1024) -> int:
    """As many images as fit in `fraction` of the free device memory (at least 1, at most `cap`)."""
    return int(min(cap, max(1, fraction * free_bytes // max(1, per_image_bytes))))


def resolve_batch_size(model: LoadedModel, recipe: Recipe, n_units: int) -> int:
    bs = recipe.render.batch_size
    return auto_batch_size(model, recipe, n_units) if bs == "auto" else int(bs)


MAX_RETRIES = 3  # attempts after a numerical fault, each with a new seed and half the learning rate


def is_out_of_memory(exc: BaseException) -> bool:
    """A device out-of-memory error (torch.OutOfMemoryError on CUDA; allocator RuntimeErrors elsewhere)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class OomBackoff:
    """Runs `render(items)` for a batch; on out-of-memory it halves the batch and goes on with the halves.

    The split is sticky: after an OOM every later batch starts at the reduced size (`self.parts` pieces), so a
    sweep does not hit the same wall on each batch. One item that still does not fit is an FvRuntimeError that
    says what to lower. `events` lists what happened (for the records)."""

    def __init__(self, device: torch.device, what: str = "batch") -> None:
        self.device, self.what, self.parts = device, what, 1
        self.events: list[dict] = []

    def __call__(self, render: Callable[[list], list], items: Sequence) -> list:
        items = list(items)
        size = max(1, -(-len(items) // self.parts))
        out: list = []
        for k in range(0, len(items), size):
            out += self._run(render, items[k: k + size])
        return out

    def _run(self, render: Callable[[list], list], items: list) -> list:
        try:
            return render(items)
        except Exception as exc:  # noqa: BLE001 - only OOM is handled; everything else is re-raised
            if not is_out_of_memory(exc):
                raise
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(items) == 1:
            raise FvRuntimeError(f"out of memory on {self.device} with a single image; lower render.size or "
                                 "use --device cpu")
        half = -(-len(items) // 2)
        self.parts = max(self.parts * 2, -(-len(items) // half))
        self.events.append({"event": "out_of_memory", "items": len(items), "split_into": half})
        log.warning("out of memory with %d images in a %s; halving to %d and continuing", len(items), self.what, half)
        return self._run(render, items[:half]) + self._run(render, items[half:])


@dataclass
class BatchResult:
    units: list[Unit]
    seeds: list[int]
    snapshots: list[Snapshot]
    seconds: float
    objectives: list[Objective]
    faults: list[list[dict]] = field(default_factory=list)  # per unit: what went wrong and how it was retried
    stops: list[dict | None] = field(default_factory=list)  # per unit: when and why it stopped early (stream)


def run_batch(model: LoadedModel, recipe: Recipe, units: Sequence[Unit],
              objectives: Sequence[Objective] | None = None, seeds: Sequence[int] | None = None,
              on_step: Callable[[int], None] | None = None) -> BatchResult:
    """Render one batch of units (each image its own objective and seed) and collect the snapshots.

    A numerical fault (NaN/Inf) never reaches the outputs: the healthy units are re-rendered together (their
    seeds unchanged, so their images are the same), and each faulty unit is retried alone up to MAX_RETRIES
    times with a new seed and half the learning rate; its record lists what happened. A unit still failing
    after that raises FvRuntimeError."""
    r = recipe.regularizers
    reg = regularizers(r.l1, r.l1_constant, r.tv, r.blur, r.bilateral)
    objs = list(objectives) if objectives is not None else [u.objective(model) for u in units]
    if reg is not None:
        objs = [o + reg for o in objs]
    seeds = list(seeds) if seeds is not None else [unit_seed(recipe, model, u) for u in units]
    settings = recipe.loop_settings()
    t0 = time.perf_counter()
    faults: list[list[dict]] = [[] for _ in units]
    try:
        snaps = list(render_batch(model, PerImage(tuple(objs)), seeds, settings, on_step=on_step))
    except NumericalFault as fault:
        log.warning("batch %s: %s; retrying", [u.label for u in units], fault)
        bad = set(fault.images)
        per_step: dict[int, list] = {}
        good = [b for b in range(len(units)) if b not in bad]
        if good:
            sub = run_batch(model, recipe, [units[b] for b in good], [objs[b] for b in good],
                            [seeds[b] for b in good], on_step=None) if reg is None else run_batch(
                model, _no_reg(recipe), [units[b] for b in good], [objs[b] for b in good],
                [seeds[b] for b in good], on_step=None)
            for j, b in enumerate(good):
                faults[b] = sub.faults[j]
                for s in sub.snapshots:
                    per_step.setdefault(s.step, [None] * len(units))[b] = (s.images[j], s.scores[j])
        for b in sorted(bad):
            lr, seed = settings.lr, seeds[b]
            for attempt in range(1, MAX_RETRIES + 1):
                faults[b].append({"attempt": attempt, "step": fault.step, "what": fault.what, "old_seed": seed})
                seed, lr = derive_seed(seed, "retry", attempt), lr / 2
                faults[b][-1].update(seed=seed, lr=lr)
                try:
                    one = list(render_batch(model, PerImage((objs[b],)), [seed], replace(settings, lr=lr)))
                except NumericalFault as again:
                    fault = again
                    continue
                seeds[b] = seed
                for s in one:
                    per_step.setdefault(s.step, [None] * len(units))[b] = (s.images[0], s.scores[0])
                break
            else:
                raise FvRuntimeError(f"unit {units[b].label}: non-finite values after {MAX_RETRIES} retries "
                                     f"({fault.what} at step {fault.step})") from None
        snaps = [Snapshot(step, torch.stack([x[0] for x in row]), torch.stack([x[1] for x in row]))
                 for step, row in sorted(per_step.items())]
    return BatchResult(list(units), seeds, snaps, time.perf_counter() - t0, objs, faults)


def _no_reg(recipe: Recipe) -> Recipe:
    """The recipe without regularizers (used when objectives already include them)."""
    from ..recipe import RegularizerRecipe

    return replace(recipe, regularizers=RegularizerRecipe())


def unit_record(model: LoadedModel, recipe: Recipe, unit: Unit, seed: int, objective: Objective,
                snaps: Sequence[Snapshot], b: int, seconds: float, batch_size: int,
                faults: list[dict] | None = None, stopped: dict | None = None) -> dict:
    rec = {
        "unit": unit.label,
        "key": unit.key,
        "kind": unit.kind,
        "layer": unit.layer,
        "channel": unit.channel,
        "position": ([unit.x, unit.y] if unit.x is not None
                     else getattr(unit, "position", None) if getattr(unit, "prefix", None) is not None else None),
        "class_label": (model.label(unit.channel) if unit.kind in ("logit", "prob")
                        else unit.row_name(model) if unit.kind == "direction" else None),
        **({"dictionary": unit.source.to_dict()} if getattr(unit, "source", None) is not None else {}),
        **({"row_stats": unit.row_stats(model)} if unit.kind == "direction" and hasattr(unit, "row_stats") else {}),
        "objective": objective.describe(),
        "model": model.name,
        "weights": model.weights_source,
        "weights_sha256": model.weights_sha256,
        "redirect_relu": model.redirect_relu,
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.hash(),
        "seed": seed,
        "size": recipe.render.size,
        "coarse_steps": recipe.coarse_steps(),  # the first steps at coarse size (render.coarse_steps resolved)
        "scores": {str(s.step): float(s.scores[b]) for s in snaps},
        "final_score": float(snaps[-1].scores[b]),
        # the final picture's values at 0 or 255: a saturated sigmoid, nearly no gradient (optvis/metrics.py)
        "clipped": round(float(clipped_fraction(snaps[-1].images[b:b + 1])[0]), 4),
        "device": str(model.device),
        "batch_size": batch_size,
        "seconds": round(seconds / max(1, batch_size), 4),
        "versions": versions(),
        "png": f"{unit.key}.png",
        "faults": faults or [],
    }
    if stopped is not None:  # continuous batching (recipe stop.converge): at which step and why the unit stopped
        rec["stopped"] = stopped
    return rec


def batch_records(model: LoadedModel, recipe: Recipe, res: BatchResult) -> list[dict]:
    """The JSON record of each unit of a rendered batch."""
    return [unit_record(model, recipe, unit, res.seeds[b], res.objectives[b], res.snapshots, b, res.seconds,
                        len(res.units), res.faults[b] if res.faults else None, res.stops[b] if res.stops else None)
            for b, unit in enumerate(res.units)]


def write_batch(out_dir: Path, model: LoadedModel, recipe: Recipe, res: BatchResult,
                records: Sequence[dict] | None = None) -> list[Path]:
    """PNG per threshold (the last one as KEY.png) and one JSON record per unit; PNG first, record last."""
    paths = []
    final = res.snapshots[-1]
    records = records if records is not None else batch_records(model, recipe, res)
    for b, unit in enumerate(res.units):
        for s in res.snapshots[:-1]:
            save_png(out_dir / f"{unit.key}.step{s.step:05d}.png", s.images[b])
        save_png(out_dir / f"{unit.key}.png", final.images[b])
        if final.alpha is not None:  # MACO's transparency map (param.maco_alpha)
            save_png(out_dir / f"{unit.key}.alpha.png", final.alpha[b].expand(3, -1, -1))
        atomic_write_json(out_dir / f"{unit.key}.json", records[b])
        paths.append(out_dir / f"{unit.key}.png")
    return paths


def rendered_items(res: BatchResult, records: Sequence[dict]) -> list[dict]:
    """Per unit of a batch: key, label, final image (3, H, W) in [0, 1] on the CPU, record, earlier snapshots."""
    return [{"key": u.key, "label": u.label, "image": res.snapshots[-1].images[b], "record": records[b],
             "history": {s.step: s.images[b] for s in res.snapshots[:-1]}} for b, u in enumerate(res.units)]
