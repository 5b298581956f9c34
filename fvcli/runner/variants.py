"""Several pictures of one unit: its negative and its diversity facets.

A `Variant` is one picture of a unit: its objective (the unit's, or its negation for the most inhibiting image),
and, for a diversity facet, its place in a group of N facets rendered jointly with the article's diversity term
(`coupled_objectives.Diversity`: each facet is pushed away from the Gram matrices of the other facets of its
group).
Variants duck-type `units.Unit` (key, label, layer, ...) so the runner's records apply unchanged; the appendix's
panel rows (fvcli/figures/panels.py) are variants too, one block of seven per channel.

File stems (KEY = the unit's key, e.g. mixed4a-00097):
  KEY-neg                   the negative (`fv render --negative`); with `--both` also KEY-pos (the positive)
  KEY-div0 .. KEY-div{N-1}  diversity facets (`--diversity N`); KEY-neg-div0 .. for negative facets
Seeds: a variant's seed is `unit_seed(recipe, model, unit, tag)` with tag '' for the positive (so KEY-pos is the
image `fv render KEY` makes), 'neg', 'div<i>', 'neg-div<i>'. Facets of one group must share a batch (they are
coupled); everything else is per image, so a variant's picture does not depend on its batch-mates.

A negative of a channel, a neuron or a dictionary row minimizes the layer's pre-activation when the layer's output is
a ReLU's (models/preact.py: after a ReLU the minimum, 0, is everywhere and the picture stays gray); its record says
which layer (`negative_layer`) and how it was found or why not (`negative_note`). Every variant's record also says
whether its objective moved from its initial noise (`flat`, `flat_reason`, `movement`: fvcli/runner/flat.py).

Default diversity layer: the unit's own layer (lucid's notebooks pair channel mixed5a_pre_relu:9 with
diversity("mixed5a"), the same layer after its ReLU); for a layer without positions (logits), the deepest main
layer before it. Default weight 1e2, lucid's notebooks' value, on the same scale (see `Diversity`).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import FvError, FvRuntimeError
from ..models import Capture, LoadedModel
from ..models.preact import PreActivation, pre_activation
from ..optvis.coupled_objectives import Diversity, gram_cosines
from ..optvis.loop import NumericalFault, derive_seed, render_batch
from ..optvis.objectives import Objective, PerImage
from ..optvis.penalties import regularizers
from ..outputs import atomic_write_json, grid, save_png, to_uint8
from ..recipe import Recipe
from ..units.unit import Unit
from .flat import movement
from .batch import (
    MAX_RETRIES,
    BatchResult,
    rendered_items,
    resolve_batch_size,
    unit_record,
    unit_seed,
)

log = logging.getLogger(__name__)

DIVERSITY_WEIGHT = 1e2  # lucid notebooks (neuron_diversity.ipynb): channel - 1e2 * diversity
PREACT_KINDS = ("channel", "neuron", "direction")  # units whose objective reads one layer's channels


def main_layer_before(model: LoadedModel, layer: str, inclusive: bool = False, spatial: bool = False) -> str:
    """The deepest main layer before `layer` in the forward pass (or `layer` itself when `inclusive`); `layer`
    when there is none."""
    order = model.layer(layer).order
    cands = [model.catalog[n] for n in model.main_layers
             if (model.catalog[n].order <= order if inclusive else model.catalog[n].order < order)
             and (not spatial or model.catalog[n].spatial is not None)]
    return max(cands, key=lambda i: i.order).name if cands else layer


def check_weight(w: float, what: str = "diversity weight") -> None:
    if not math.isfinite(w) or w < 0:
        raise FvError(f"bad {what} {w!r}: expected a finite number >= 0")


def default_diversity_layer(model: LoadedModel, layer: str) -> str:
    """The unit's own layer; for a layer without positions (logits) the deepest spatial main layer before it."""
    if model.layer(layer).spatial is not None:
        return layer
    return main_layer_before(model, layer, spatial=True)


@dataclass(frozen=True)
class Variant:
    """One picture of a unit (see the module docstring). Duck-types `units.Unit` for records and planning."""

    base: Unit  # or expr.ExprUnit
    tag: str = ""  # key suffix: '', 'neg', 'pos', 'div0', 'neg-div0'
    sign: float = 1.0  # -1: minimize the unit (its most inhibiting image)
    facet: int | None = None  # index in its diversity group; None: rendered on its own
    facets: int = 1  # size of its diversity group
    panel: str = ""  # appendix panel name, when part of a panel row
    block: str = ""  # variants with the same block are planned into the same batch ('' = the unit's key)

    @property
    def key(self) -> str:
        return f"{self.base.key}-{self.tag}" if self.tag else self.base.key

    @property
    def label(self) -> str:
        return f"{self.base.label} {self.tag}" if self.tag else self.base.label

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def layer(self) -> str:
        return self.base.layer

    @property
    def channel(self) -> int | None:
        return self.base.channel

    @property
    def source(self):  # a dictionary row's dictionary (units/dictionary.py), else None
        return getattr(self.base, "source", None)

    def row_name(self, model: LoadedModel) -> str | None:
        return self.base.row_name(model) if hasattr(self.base, "row_name") else None

    def row_stats(self, model: LoadedModel) -> dict[str, float]:
        return self.base.row_stats(model) if hasattr(self.base, "row_stats") else {}

    @property
    def x(self) -> int | None:
        return self.base.x

    @property
    def y(self) -> int | None:
        return self.base.y

    @property
    def prefix(self) -> int | None:
        return getattr(self.base, "prefix", None)

    @property
    def seed_tag(self) -> str:
        return "" if self.tag == "pos" else self.tag

    @property
    def group(self) -> tuple[str, float] | None:
        """Facets of the same unit and sign form one diversity group."""
        return None if self.facet is None else (self.base.key, self.sign)

    def negative_target(self, model: LoadedModel) -> PreActivation | None:
        """A negative's layer: the pre-activation of a channel's, neuron's or row's layer (None: not a negative)."""
        if self.sign >= 0:
            return None
        if getattr(self.base, "kind", None) not in PREACT_KINDS:
            return PreActivation(self.base.layer, self.base.layer, False,
                                 f"a {self.base.kind} unit: its own objective is minimized")
        return pre_activation(model, self.base.layer)

    def objective(self, model: LoadedModel) -> Objective:
        base = self.base
        target = self.negative_target(model)
        if target is not None and target.found and target.name != base.layer:
            base = replace(base, layer=target.name)
        o = base.objective(model)
        return -o if self.sign < 0 else o


def expand(units: Sequence[Unit], facets: int = 1, negative: bool = False, both: bool = False) -> list[Variant]:
    """The variants `fv render` makes: per unit, the positive and/or negative, each as 1 or `facets` facets."""
    if facets < 1:
        raise FvError(f"bad number of diversity facets {facets}: expected 1 or more")
    signs = [(-1.0, "neg"), (1.0, "pos")] if both else [(-1.0, "neg")] if negative else [(1.0, "")]
    out: list[Variant] = []
    for u in units:
        for sign, name in signs:
            if facets == 1:
                out.append(Variant(u, name, sign))
            else:
                pre = f"{name}-" if name else ""
                out += [Variant(u, f"{pre}div{i}", sign, i, facets) for i in range(facets)]
    return out


def plan_variant_batches(variants: Sequence[Variant], batch_size: int) -> list[list[Variant]]:
    """One layer per batch (first-appearance order); a block (a diversity group, or a panel row) is never split.
    A block larger than `batch_size` gets a batch of its own."""
    by_layer: dict[str, dict[str, list[Variant]]] = {}
    for v in variants:
        blk = v.block or (f"{v.base.key}|{v.sign}" if v.facet is not None else v.key)
        by_layer.setdefault(v.layer, {}).setdefault(blk, []).append(v)
    batches: list[list[Variant]] = []
    for blocks in by_layer.values():
        cur: list[Variant] = []
        for block in blocks.values():
            if cur and len(cur) + len(block) > batch_size:
                batches.append(cur)
                cur = []
            cur = cur + block
        if cur:
            batches.append(cur)
    return batches


@dataclass
class VariantBatch(BatchResult):
    """A rendered batch of variants plus what was measured on the final images (no transforms)."""

    activation: list[float] = field(default_factory=list)  # the unit's own objective (unsigned)
    gram_cosine: list[float | None] = field(default_factory=list)  # facets: mean cosine to the group's others
    diversity_layers: list[str | None] = field(default_factory=list)
    diversity_weight: float = 0.0
    movement: list[dict] = field(default_factory=list)  # did each picture move (fvcli/runner/flat.py)


def diversity_term(model: LoadedModel, variants: Sequence[Variant], weight: float,
                   layer: str | None = None) -> tuple[Objective | None, list[str | None]]:
    """`weight * Diversity(...)` for the facet groups of a batch (one term per diversity layer), and each
    variant's diversity layer (None when it is not a facet)."""
    ids: dict[tuple, int] = {}
    layers: list[str | None] = []
    for v in variants:
        if v.group is None:
            layers.append(None)
            continue
        ids.setdefault(v.group, len(ids))
        layers.append(layer or default_diversity_layer(model, v.layer))
    if layer is not None:
        model.layer(layer)  # validates
    if not ids or weight == 0:
        return None, layers
    term: Objective | None = None
    for lay in dict.fromkeys(x for x in layers if x is not None):
        groups = tuple(ids[v.group] if v.group is not None and layers[b] == lay else -1
                       for b, v in enumerate(variants))
        t = weight * Diversity(lay, groups)
        term = t if term is None else term + t
    return term, layers


def run_variant_batch(model: LoadedModel, recipe: Recipe, variants: Sequence[Variant],
                      diversity_weight: float = DIVERSITY_WEIGHT, diversity_layer: str | None = None,
                      on_step: Callable[[int], None] | None = None) -> VariantBatch:
    """Render one batch of variants jointly: each image its own (signed) objective, plus the diversity term of
    its facet group. A numerical fault re-renders the batch with new seeds for the faulty images and half the
    learning rate (up to MAX_RETRIES times); every record of the batch lists it."""
    variants = list(variants)
    r = recipe.regularizers
    reg = regularizers(r.l1, r.l1_constant, r.tv, r.blur, r.bilateral)
    base_objs = [v.objective(model) for v in variants]
    objs = [o + reg for o in base_objs] if reg is not None else base_objs
    div, div_layers = diversity_term(model, variants, diversity_weight, diversity_layer)
    joint: Objective = PerImage(tuple(objs)) if div is None else PerImage(tuple(objs)) + div
    seeds = [unit_seed(recipe, model, v.base, v.seed_tag) for v in variants]
    settings = recipe.loop_settings()
    asked = settings.thresholds
    settings = replace(settings, thresholds=tuple(sorted({0, *asked})))  # the initial images, to measure movement
    faults: list[list[dict]] = [[] for _ in variants]
    t0 = time.perf_counter()
    for attempt in range(MAX_RETRIES + 1):
        try:
            snaps = list(render_batch(model, joint, seeds, settings, on_step=on_step if attempt == 0 else None))
            break
        except NumericalFault as fault:
            if attempt == MAX_RETRIES:
                raise FvRuntimeError(f"units {[variants[b].label for b in fault.images]}: non-finite values after "
                                     f"{MAX_RETRIES} retries ({fault.what} at step {fault.step})") from None
            log.warning("batch %s: %s; retrying", [v.label for v in variants], fault)
            for b in fault.images:
                seeds[b] = derive_seed(seeds[b], "retry", attempt + 1)
            settings = replace(settings, lr=settings.lr / 2)
            for b in range(len(variants)):
                faults[b].append({"attempt": attempt + 1, "step": fault.step, "what": fault.what,
                                  "images": list(fault.images), "seed": seeds[b], "lr": settings.lr})
    seconds = time.perf_counter() - t0
    moved = movement(model, base_objs, [v.group for v in variants], snaps[0].images, snaps[-1].images)
    if 0 not in asked and len(snaps) > 1:
        snaps = snaps[1:]
    described = [o if l is None or div is None else o + diversity_weight * Diversity(l)
                 for o, l in zip(objs, div_layers)]
    act, cos = measure(model, variants, base_objs, div_layers, snaps[-1].images)
    return VariantBatch(list(variants), seeds, snaps, seconds, described, faults, activation=act, gram_cosine=cos,
                        diversity_layers=div_layers, diversity_weight=diversity_weight if div is not None else 0.0,
                        movement=moved)


def measure(model: LoadedModel, variants: Sequence[Variant], objectives: Sequence[Objective],
            div_layers: Sequence[str | None], images: torch.Tensor) -> tuple[list[float], list[float | None]]:
    """On the final images (untransformed): each variant's unsigned unit score, and each facet's mean Gram cosine
    to the other facets of its group at its diversity layer."""
    unsigned = [o if v.sign > 0 else -o for v, o in zip(variants, objectives)]
    layers = set().union(*(o.layers for o in unsigned)) | {l for l in div_layers if l}
    with torch.no_grad(), Capture(model, layers) as cap:
        x = images.to(model.device)
        acts = cap(model.preprocess.apply(x))
        act = PerImage(tuple(unsigned))(acts, x).float().cpu().tolist()
        cos: list[float | None] = [None] * len(variants)
        for lay in {l for l in div_layers if l}:
            c = gram_cosines(acts[lay]).cpu()
            for b, v in enumerate(variants):
                if div_layers[b] != lay:
                    continue
                peers = [j for j, w in enumerate(variants) if j != b and w.group == v.group and div_layers[j] == lay]
                cos[b] = float(c[b, peers].mean()) if peers else None
    return act, cos


def variant_record(model: LoadedModel, recipe: Recipe, res: VariantBatch, b: int) -> dict:
    v: Variant = res.units[b]  # type: ignore[assignment]
    rec = unit_record(model, recipe, v, res.seeds[b], res.objectives[b], res.snapshots, b, res.seconds,
                      len(res.units), res.faults[b] if res.faults else None)
    rec.update({
        "base_unit": v.base.label,
        "base_key": v.base.key,
        "variant": v.tag or "positive",
        "panel": v.panel or None,
        "sign": v.sign,
        "facet": v.facet,
        "facets": v.facets,
        "diversity": None if v.facet is None else {"layer": res.diversity_layers[b], "weight": res.diversity_weight,
                                                   "gram_cosine": res.gram_cosine[b]},
        "activation": res.activation[b],
    })
    target = v.negative_target(model)
    if target is not None:
        rec.update({"negative_layer": target.name, "negative_note": target.note})
    if res.movement:
        m = res.movement[b]
        rec.update({"flat": m["flat"], "flat_reason": m["flat_reason"],
                    "movement": {k: m[k] for k in ("initial", "final", "gain", "noise_spread", "margin")}})
    return rec


def write_variant_batch(out_dir: Path, model: LoadedModel, recipe: Recipe, res: VariantBatch,
                        records: Sequence[dict] | None = None) -> list[Path]:
    """KEY.png (and KEY.stepNNNNN.png per extra threshold) and KEY.json per variant; PNG first, record last."""
    paths = []
    for b, v in enumerate(res.units):
        for s in res.snapshots[:-1]:
            save_png(out_dir / f"{v.key}.step{s.step:05d}.png", s.images[b])
        save_png(out_dir / f"{v.key}.png", res.snapshots[-1].images[b])
        rec = records[b] if records is not None else variant_record(model, recipe, res, b)
        atomic_write_json(out_dir / f"{v.key}.json", rec)
        paths.append(out_dir / f"{v.key}.png")
    return paths


def render_variants(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], out_dir: Path | None, *,
                    facets: int = 1, negative: bool = False, both: bool = False,
                    diversity_weight: float = DIVERSITY_WEIGHT, diversity_layer: str | None = None,
                    batch_size: int | None = None, on_step: Callable[[int], None] | None = None) -> dict:
    """`fv render` with --diversity / --negative / --both: PNG + JSON per variant, and grid.png (one row per unit
    when there are several pictures), into `out_dir` (None: no files). Returns what `runner.render_units` does."""
    out_dir = Path(out_dir) if out_dir is not None else None
    check_weight(diversity_weight)
    variants = expand(units, facets, negative, both)
    if diversity_layer is not None:
        model.layer(diversity_layer)
    bs = batch_size or resolve_batch_size(model, recipe, len(variants))
    written: list[Path] = []
    items: list[dict] = []
    tiles: dict[str, np.ndarray] = {}
    for batch in plan_variant_batches(variants, bs):
        res = run_variant_batch(model, recipe, batch, diversity_weight, diversity_layer, on_step)
        records = [variant_record(model, recipe, res, b) for b in range(len(batch))]
        if out_dir is not None:
            written += write_variant_batch(out_dir, model, recipe, res, records)
        items += rendered_items(res, records)
        for b, v in enumerate(batch):
            tiles[v.key] = to_uint8(res.snapshots[-1].images[b])
    grid_path = None
    if len(variants) > 1 and out_dir is not None:
        per_unit = len(variants) // max(1, len(units))
        grid_path = out_dir / "grid.png"
        save_png(grid_path, grid([tiles[v.key] for v in variants], [v.tag or v.label for v in variants],
                                 cols=per_unit if per_unit > 1 else None, tile=min(224, recipe.render.size),
                                 rows_labels=[u.label for u in units] if per_unit > 1 else None))
    return {"pngs": written, "grid": grid_path, "batch_size": bs, "variants": variants, "items": items}


def n_variant_batches(model: LoadedModel, units: Sequence[Unit], batch_size: int, facets: int = 1,
                      negative: bool = False, both: bool = False) -> int:
    """How many batches `render_variants` will run (for a progress bar)."""
    return len(plan_variant_batches(expand(units, facets, negative, both), batch_size))
