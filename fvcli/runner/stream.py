"""Rendering a list of units through one continuously refilled batch (recipe `stop.converge`).

The optimization itself is fvcli/optvis/stream.py; this is the runner's side of it, the same contract as
`run_batch` (fvcli/runner/batch.py) one unit at a time: each finished unit comes back as a one-unit `BatchResult`
whose record says when and why it stopped (`stopped: {step, reason, criterion, slots}`), so the writers, sweeps
and galleries need nothing new. A unit that hits non-finite values leaves the stream and is rendered again by
`run_batch`, which retries it with new seeds exactly as for ordinary batches. Units are streamed one layer at a
time, in plan order, so the truncated forward pass stays as short as in a planned batch.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from ..models import LoadedModel
from ..optvis.penalties import regularizers
from ..optvis.stream import STREAM_PARAMS, Convergence, StreamItem, render_stream
from ..recipe import Recipe
from ..units.unit import Unit
from .batch import BatchResult, run_batch, unit_seed

log = logging.getLogger(__name__)


def streams(recipe: Recipe) -> bool:
    """Does this recipe render through the stream? (stop.converge, with a per-image param.)"""
    if not recipe.stop.converge:
        return False
    if recipe.param.kind not in STREAM_PARAMS or recipe.param.maco_alpha:
        log.info("stop.converge: param %s%s renders in plain batches", recipe.param.kind,
                 " with maco_alpha" if recipe.param.maco_alpha else "")
        return False
    return True


def convergence(recipe: Recipe) -> Convergence:
    st = recipe.stop
    return Convergence(st.min_steps, st.window, st.tol)


def run_stream(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], slots: int,
               on_step: Callable[[int], None] | None = None) -> Iterator[BatchResult]:
    """Render `units` with `slots` images in flight; yield each as a one-unit BatchResult when it finishes."""
    r = recipe.regularizers
    reg = regularizers(r.l1, r.l1_constant, r.tv, r.blur, r.bilateral)
    crit = convergence(recipe)
    by_layer: dict[str, list[Unit]] = {}
    for u in units:
        by_layer.setdefault(u.layer, []).append(u)
    for group in by_layer.values():
        objs = [u.objective(model) for u in group]
        if reg is not None:
            objs = [o + reg for o in objs]
        seeds = [unit_seed(recipe, model, u) for u in group]
        items = [StreamItem(o, sd) for o, sd in zip(objs, seeds)]
        for fin in render_stream(model, items, recipe.loop_settings(), min(slots, len(group)), crit, on_step):
            u = group[fin.index]
            if fin.reason == "fault":
                log.warning("unit %s: %s in the stream; rendering it again in a batch of its own", u.label, fin.fault)
                res = run_batch(model, replace(recipe, stop=replace(recipe.stop, converge=False)), [u])
                yield res
                continue
            stopped = {"step": fin.stop_step, "reason": fin.reason, "of": recipe.render.steps,
                       "criterion": crit.describe(), "slots": slots}
            yield BatchResult([u], [seeds[fin.index]], fin.snapshots, fin.seconds, [objs[fin.index]], [[]], [stopped])
