"""Sweeps: every unit of some layers, rendered into one resumable directory, by any number of shards.

`plan` decides what to render and who renders it (selections, batches, shards), `directory` owns the directory's
identity and the atomic per-unit files that make resuming safe, `renderers` render one planned batch (plain
channels, or with panels), `run` is the job that ties them together, and `finalizer` makes the sheets, the
manifest and the gallery (fvcli/gallery) once every unit is done. fvcli/sweep/run.py's header tells the whole story.
"""
from __future__ import annotations

from .directory import (
    FORMAT,
    STALE_TMP_SECONDS,
    default_out,
    layer_dir,
    open_sweep,
    read_json,
    remove_stale_tmp,
    sweep_identity,
    unit_done,
    write_unit,
)
from .finalizer import (
    SPRITE,
    build_panel_sheets,
    build_sheets,
    collect,
    finalize,
    sheet_tile,
)
from .plan import (
    SWEEP_KINDS,
    PlannedBatch,
    assign_shards,
    layer_costs,
    parse_shard,
    plan_sweep,
    select_units,
    selection_doc,
    selection_units,
    shard_from_env,
)
from .renderers import BatchRenderer, ChannelRenderer, UnitImage, UnitOutput
from .run import SweepJob, SweepReport, prepare_sweep, run_sweep

__all__ = ["BatchRenderer", "ChannelRenderer", "FORMAT", "PlannedBatch", "SPRITE", "STALE_TMP_SECONDS", "SWEEP_KINDS",
           "SweepJob", "SweepReport", "UnitImage", "UnitOutput", "assign_shards", "build_panel_sheets", "build_sheets",
           "collect", "default_out", "finalize", "layer_costs", "layer_dir", "open_sweep", "parse_shard", "plan_sweep",
           "prepare_sweep", "read_json", "remove_stale_tmp", "run_sweep", "select_units", "selection_doc",
           "selection_units", "shard_from_env", "sheet_tile", "sweep_identity", "unit_done", "write_unit"]
