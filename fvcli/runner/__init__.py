"""The runner: units in, pictures and records out -- batching, seeding, retries, files.

`batch` turns a list of units into batches (one layer per batch, a batch size probed for the machine by
`autobatch`), gives each unit its own seed, runs the optimization loop (fvcli/optvis), retries a batch after a
numerical fault or an out-of-memory error, and writes each unit's PNG and JSON record. `variants` does the same for
renders that couple images: diversity facets and negatives. `stream` renders units through one continuously
refilled batch, each leaving when its picture has stopped improving (recipe `stop.converge`), and `job` is `fv
render`'s: planned batches or the stream, files as soon as a unit is done. Every job above (render, sweep, article, panels) renders
through here, so a unit's picture is the same whichever job asked for it.
"""
from __future__ import annotations

from .batch import (
    BatchResult,
    plan_batches,
    resolve_batch_size,
    run_batch,
    unit_seed,
)
from .job import render_units
from .stream import run_stream, streams
from .variants import Variant, expand, render_variants

__all__ = ["BatchResult", "Variant", "expand", "plan_batches", "render_units", "render_variants",
           "resolve_batch_size", "run_batch", "run_stream", "streams", "unit_seed"]
