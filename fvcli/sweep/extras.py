"""A sweep's extras: each unit's diversity facets and its negative, rendered into the sweep's directory.

The gallery's unit pages (fvcli/gallery) show them beside the unit's visualization; they are made here, after the
sweep (or any time later), by the existing variants machinery (fvcli/runner/variants.py), so a facet or a negative
is exactly the picture `fv render --diversity N` / `--negative` makes, with the same per-unit seeds
(`runner.unit_seed(recipe, model, unit, 'div<i>' | 'neg')`). Files go beside the unit's render:

  OUT/layers/LAYER/KEY-div0.png .. KEY-div{N-1}.png (+ .json)     diversity facets (one coupled group of N)
  OUT/layers/LAYER/KEY-neg.png (+ .json)                            the negative

Resumable like the sweep: a variant is done when its record (written after its PNG) names the seed and number of
facets this run would use and its PNG exists. Batches are cut by channel, as the sweep's own plan (chunk k of a
layer holds the done units with channel in [k*m, (k+1)*m), m = batch size // pictures per unit); a chunk with any
variant missing is rendered again whole, so its composition -- and with it every byte -- is the same as in an
uninterrupted run. Each extra's cost (batches, seconds, seconds per unit) is logged and returned.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import FvError
from ..models import LoadedModel
from ..recipe import Recipe
from ..runner.batch import unit_seed
from ..runner.variants import DIVERSITY_WEIGHT, check_weight, expand, run_variant_batch, write_variant_batch
from ..units.unit import Unit
from .directory import layer_dir, read_json
from .finalizer import collect

log = logging.getLogger(__name__)

EXTRAS = ("diversity", "negative")
DEFAULT_FACETS = 4  # the Distill appendix's four diversity facets per channel


def check_sweep_model(out: Path, model: LoadedModel, recipe: Recipe) -> dict:
    """sweep.json of `out`, after checking that `model` and `recipe` are the ones it was rendered with."""
    sweep, _states, _layers = collect(out)
    if sweep.get("weights_sha256") != model.weights_sha256 or sweep.get("recipe_hash") != recipe.hash():
        raise FvError(f"{out} was rendered with model {sweep.get('model')!r} (weights sha256 "
                      f"{str(sweep.get('weights_sha256'))[:12]}, recipe {sweep.get('recipe_hash')}); extras need the same "
                      f"model, weights and recipe (got {model.name!r}, {model.weights_sha256[:12]}, {recipe.hash()})")
    return sweep


def done_units(out: Path) -> list[Unit]:
    """The units of the sweep in `out` that are done, in layer then channel order."""
    _sweep, _states, layers = collect(out)
    return [u for g in layers for u, rec in g["units"] if rec]


def _variant_done(d: Path, v, seed: int, facets: int) -> bool:
    rec = read_json(d / f"{v.key}.json")
    # a negative rendered before negatives minimized the pre-activation (no `negative_layer`) is made again
    return (rec is not None and rec.get("seed") == seed and (rec.get("facets") or 1) == facets
            and (v.sign > 0 or "negative_layer" in rec) and (d / f"{v.key}.png").is_file())


def render_extra(model: LoadedModel, recipe: Recipe, out: Path, units: Sequence[Unit], kind: str, *,
                 facets: int = DEFAULT_FACETS, batch_size: int = 8, diversity_weight: float = DIVERSITY_WEIGHT,
                 on_step: Callable[[int], None] | None = None) -> dict:
    """Render one extra ('diversity' or 'negative') for `units` into the sweep directory `out`; returns its cost:
    {extra, units, rendered, skipped, batches, seconds, seconds_per_unit}."""
    if kind not in EXTRAS:
        raise FvError(f"unknown extra {kind!r}: valid {', '.join(EXTRAS)}")
    check_weight(diversity_weight)
    n = facets if kind == "diversity" else 1
    if n < 2 and kind == "diversity":
        raise FvError(f"bad number of diversity facets {facets}: expected 2 or more")
    per_chunk = max(1, int(batch_size) // n)
    t0 = time.perf_counter()
    rendered = skipped = batches = 0
    by_chunk: dict[tuple[str, str, int], list[Unit]] = {}
    for u in units:
        by_chunk.setdefault((u.layer, u.kind, u.channel // per_chunk), []).append(u)
    for (layer, _k, _c), chunk in by_chunk.items():
        variants = expand(chunk, n, negative=kind == "negative") if kind == "negative" else expand(chunk, n)
        d = layer_dir(out, layer)
        if all(_variant_done(d, v, unit_seed(recipe, model, v.base, v.seed_tag), n if kind == "diversity" else 1)
               for v in variants):
            skipped += len(chunk)
            continue
        res = run_variant_batch(model, recipe, variants, diversity_weight, None, on_step)
        write_variant_batch(d, model, recipe, res)
        rendered += len(chunk)
        batches += 1
    seconds = time.perf_counter() - t0
    cost = {"extra": kind, "units": len(units), "rendered": rendered, "skipped": skipped, "batches": batches,
            "seconds": round(seconds, 2), "seconds_per_unit": round(seconds / rendered, 4) if rendered else None}
    log.info("%s: %d unit(s) rendered in %d batch(es), %d already done: %.1f s%s", kind, rendered, batches, skipped,
             seconds, f" ({seconds / rendered:.3f} s/unit)" if rendered else "")
    return cost
