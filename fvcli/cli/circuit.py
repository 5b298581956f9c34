"""`fv circuit UNIT`: a unit's strongest inputs, their pictures and kernels, as one figure (fvcli/circuits).

Kept in its own file beside the other commands; registered on the app when cli/__init__.py imports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import FvError
from .common import (
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    RecipeOpt,
    SeedOpt,
    SetOpt,
    SizeOpt,
    StepsOpt,
    VerboseOpt,
    WeightsOpt,
    _model_of_units,
    _setup,
    app,
    build_recipe,
    handle_errors,
)


@app.command("circuit")
@handle_errors
def circuit_cmd(
    unit: Annotated[str, typer.Argument(metavar="UNIT", help="A channel, neuron or logit unit: mixed4a:11, block4:7, logit:3.")],
    from_: Annotated[Optional[str], typer.Option("--from", help="Layer to read the inputs from (default: the main layer before the unit's).")] = None,
    depth: Annotated[int, typer.Option("--depth", min=1, max=3, help="Layers down: 2 also shows each input's strongest inputs.")] = 1,
    top: Annotated[int, typer.Option("--top", min=1, max=16, help="Strongest inputs per sign (excitatory, inhibitory).")] = 4,
    method: Annotated[str, typer.Option("--method", help="Which ranking picks the inputs drawn: expanded (weights) or attribution (gradient x activation on the pictures).")] = "expanded",
    sweep: Annotated[Optional[Path], typer.Option("--sweep", help="A sweep directory of the same weights: its pictures (and dataset examples) are reused.")] = None,
    recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
    steps: StepsOpt = None, size: SizeOpt = None, seed: SeedOpt = None, device: DeviceOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (figure, records, rendered pictures).")] = Path("out"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Draw a unit's circuit: its picture, its strongest inputs' pictures and kernels (SVG + PNG), and the records."""
    _setup(verbose, quiet)
    from ..circuits import circuit_figure
    from ..models import load_model
    from ..units.expr import parse_unit_arg
    from ..units.unit import Unit

    model = _model_of_units([unit], model)
    rec = build_recipe(recipe, set_, model, weights, steps, size, seed, None, device, {})
    m = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    units = parse_unit_arg(unit, m)
    if len(units) != 1 or not isinstance(units[0], Unit):
        raise FvError(f"unit {unit!r} names {len(units)} units or an expression; fv circuit draws one unit")
    fig = circuit_figure(m, rec, units[0], out, from_layer=from_, depth=depth, top_k=top, method=method, sweep=sweep)
    typer.echo(str(fig.svg))
    typer.echo(str(fig.png))
    if not quiet:
        typer.echo(f"records: {len(fig.records)} in {out}; pictures: {fig.rendered} rendered, {fig.reused} reused")
