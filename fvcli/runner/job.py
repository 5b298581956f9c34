"""`fv render`'s job: units in, KEY.png + KEY.json each and a grid out, in planned batches or through a stream.

`render_units()` is what `api.render` calls for plain units (variants -- diversity facets, negatives -- go through
fvcli/runner/variants.py). It renders in planned batches (fvcli/runner/batch.py), or, when the recipe's
`stop.converge` is on, through one continuously refilled batch (fvcli/runner/stream.py); either way every unit's
files are written as soon as the unit is done and the grid keeps the order the units were given in.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..models import LoadedModel
from ..outputs import grid, save_png, to_uint8
from ..recipe import Recipe
from ..units.unit import Unit
from .batch import (BatchResult, OomBackoff, batch_records, plan_batches, rendered_items, resolve_batch_size, run_batch,
                    write_batch)
from .stream import run_stream, streams


def render_units(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], out_dir: Path | None,
                 on_step: Callable[[int], None] | None = None, batch_size: int | None = None) -> dict:
    """Render `units`: KEY.png + KEY.json each, and grid.png when there are several, into `out_dir` (None: no
    files). Returns {"pngs", "grid", "batch_size", "items" (see `rendered_items`)}."""
    out_dir = Path(out_dir) if out_dir is not None else None
    bs = batch_size or resolve_batch_size(model, recipe, len(units))
    written: list[Path] = []
    items: list[dict] = []
    tiles, labels = [], []
    backoff = OomBackoff(model.device)

    def written_out(res: BatchResult) -> None:
        records = batch_records(model, recipe, res)
        if out_dir is not None:
            written.extend(write_batch(out_dir, model, recipe, res, records))  # written as soon as a batch is done
        items.extend(rendered_items(res, records))
        for b, u in enumerate(res.units):
            tiles.append(to_uint8(res.snapshots[-1].images[b]))
            lab = model.label(u.channel) if u.kind in ("logit", "prob") else None
            labels.append(f"{u.label} {lab}" if lab else u.label)

    def one(batch: list[Unit]) -> list[Unit]:
        written_out(run_batch(model, recipe, batch, on_step=on_step))
        return batch

    if streams(recipe):
        for res in run_stream(model, recipe, units, bs, on_step=on_step):
            written_out(res)
        order = {u.key: i for i, u in enumerate(units)}  # the grid and the items in the order given
        perm = sorted(range(len(items)), key=lambda i: order[items[i]["key"]])
        items[:], tiles[:], labels[:] = [items[i] for i in perm], [tiles[i] for i in perm], [labels[i] for i in perm]
    else:
        for batch in plan_batches(units, bs):
            backoff(one, batch)
    grid_path = None
    if len(units) > 1 and out_dir is not None:
        grid_path = out_dir / "grid.png"
        save_png(grid_path, grid(tiles, labels, tile=min(224, recipe.render.size)))
    return {"pngs": written, "grid": grid_path, "batch_size": bs, "items": items}
