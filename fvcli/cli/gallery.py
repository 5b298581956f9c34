"""`fv gallery DIR` and the `--with` extras of `fv sweep`: the rich gallery in one command.

A sweep's unit pages become Microscope-like when extras sit beside the renders: diversity facets and the
negative (fvcli/sweep/extras.py, rendered by runner/variants with the sweep's recipe and per-unit seeds), dataset
examples (fvcli/examples, `fv examples IMAGES --out DIR`) and circuits (fvcli/circuits: each unit's strongest inputs
and the units it feeds). `fv gallery DIR --with diversity,negative,examples=IMAGES`
adds whichever are missing to an existing sweep directory and rebuilds the gallery; `fv sweep ... --with ...` does
the same right after rendering. Everything is resumable: an extra that is already there is not redone, and a killed
run redoes only what is missing. Each extra's cost is printed. Registered on the app when commands.py imports this.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import FvError
from .common import QuietOpt, VerboseOpt, _setup, app, handle_errors

log = logging.getLogger(__name__)

SMALL_FOLDER = 256  # images: below this, dataset examples are read in the main process
WITH_CHOICES = "diversity[=N], negative, examples=IMAGES_DIR, circuits[=FROM_LAYER]"


@dataclass(frozen=True)
class Extras:
    """What `--with` asked for."""

    diversity: int = 0  # facets per unit (0: none)
    negative: bool = False
    examples: Path | None = None  # the image folder
    circuits: bool = False  # each unit's strongest inputs (fvcli/circuits)
    circuits_from: str | None = None  # the layer they are read from (None: the main layer before each swept layer)

    def __bool__(self) -> bool:
        return bool(self.diversity or self.negative or self.examples or self.circuits)


def parse_with(text: str | None) -> Extras:
    """'diversity,negative,examples=DIR,circuits' (diversity=N for N facets, default 4; circuits=LAYER to read
    every swept layer's inputs from LAYER) -> Extras."""
    from ..sweep.extras import DEFAULT_FACETS

    if not text:
        return Extras()
    div, neg, ex, circ, circ_from = 0, False, None, False, None
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, _, val = item.partition("=")
        if name == "diversity":
            try:
                div = int(val) if val else DEFAULT_FACETS
            except ValueError:
                raise FvError(f"bad --with item {item!r}: diversity=N needs a whole number of facets >= 2") from None
            if div < 2:
                raise FvError(f"bad --with item {item!r}: diversity=N needs N >= 2 facets")
        elif name == "negative" and not val:
            neg = True
        elif name == "examples" and val:
            ex = Path(val)
            if not ex.is_dir():
                raise FvError(f"bad --with item {item!r}: {ex} is not a folder of images")
        elif name == "circuits":
            circ, circ_from = True, val or None
        else:
            raise FvError(f"unknown --with item {item!r}: valid {WITH_CHOICES}")
    return Extras(div, neg, ex, circ, circ_from)


def add_extras(out: Path, extras: Extras, *, top_k: int | None = None, limit: int | None = None,
               quiet: bool = False) -> list[dict]:
    """Render / compute the missing extras of the sweep in `out` (its own model and recipe), then finalize.
    Returns each extra's cost."""
    from ..models import load_model
    from ..recipe import from_dict
    from ..sweep import collect, finalize
    from ..sweep.extras import check_sweep_model, done_units, render_extra

    sweep, _states, _layers = collect(out)
    recipe = from_dict(sweep["recipe"])
    units = done_units(out)
    costs = []
    if extras and units:
        model = load_model(recipe.model_options(), recipe.render.device, recipe.render.channels_last)
        check_sweep_model(out, model, recipe)
        bs = int(sweep.get("batch_size") or 8)
        if extras.diversity:
            costs.append(render_extra(model, recipe, out, units, "diversity", facets=extras.diversity, batch_size=bs))
        if extras.negative:
            costs.append(render_extra(model, recipe, out, units, "negative", batch_size=bs))
        if extras.examples is not None:
            costs.append(_examples(model, recipe, out, units, extras.examples, top_k, limit))
        if extras.circuits:  # after the examples: attribution averages over them where they exist
            from ..circuits import sweep_circuits

            costs.append(sweep_circuits(model, out, units, extras.circuits_from))
    finalize(out)
    if not quiet:
        for c in costs:
            per = f", {c['seconds_per_unit']:.3f} s/unit" if c.get("seconds_per_unit") else ""
            typer.echo(f"{c['extra']}: {c['rendered']} unit(s) done now, {c['skipped']} already there "
                       f"({c['seconds']:.1f} s{per})")
    return costs


def _examples(model, recipe, out: Path, units: list, images: Path, top_k: int | None, limit: int | None) -> dict:
    """Dataset examples for the units that have none from this folder (and this top-k) yet."""
    import time

    from ..examples import ExampleSettings, list_images, run_examples, write_examples
    from ..sweep import layer_dir, read_json

    settings = ExampleSettings.from_recipe(recipe.examples)
    if top_k is not None:
        settings = ExampleSettings(**{**settings.__dict__, "top_k": top_k})
    root = str(images.resolve())
    todo = []
    for u in units:
        rec = read_json(layer_dir(out, u.layer) / f"{u.key}.examples.json")
        if not (rec and rec.get("images_dir") == root and rec.get("top_k") == settings.top_k):
            todo.append(u)
    t0 = time.perf_counter()
    if todo:
        folder = list_images(images, limit=limit, exclude=out)
        if len(folder.files) < SMALL_FOLDER:  # starting loader processes costs more than reading a few images
            settings = ExampleSettings(**{**settings.__dict__, "workers": 0})
        res = run_examples(model, todo, folder, settings, out=out, resume=True)
        write_examples(out, res, pngs=False)  # the unit page draws its own crops (gallery/media.py); grids ~0.1 s/unit
    seconds = time.perf_counter() - t0
    log.info("examples: %d unit(s) scanned, %d already done: %.1f s", len(todo), len(units) - len(todo), seconds)
    return {"extra": "examples", "units": len(units), "rendered": len(todo), "skipped": len(units) - len(todo),
            "batches": 1 if todo else 0, "seconds": round(seconds, 2),
            "seconds_per_unit": round(seconds / len(todo), 4) if todo else None}


@app.command("gallery")
@handle_errors
def gallery_cmd(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="A sweep directory (fv sweep --out DIR).")],
    with_: Annotated[Optional[str], typer.Option("--with", help=f"Extras to add where missing: {WITH_CHOICES} (comma-separated).")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, max=1000, help="Dataset examples kept at each end (recipe examples.top_k).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Dataset examples: use only the first N images.")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rebuild a sweep's gallery, first adding the extras --with names (resumable): facets, negatives, examples."""
    _setup(verbose, quiet)
    add_extras(out, parse_with(with_), top_k=top_k, limit=limit, quiet=quiet)
    typer.echo(f"gallery: {out / 'index.html'}")
