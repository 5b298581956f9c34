"""The `fv` command line: thin Typer commands over the library.

Errors: an FvError prints one line `fv: error: ...` and exits 2 (bad input) or 1 (runtime failure); nothing is
written before the input is validated.
"""
from __future__ import annotations

import functools
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import FvError, FvRuntimeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fv: feature visualization by optimization (Olah et al., Distill 2017) for PyTorch models.")
weights_app = typer.Typer(no_args_is_help=True, help="Model weights: list the cache, fetch, import.")
recipe_app = typer.Typer(no_args_is_help=True, help="Recipes: show the resolved recipe, validate a file.")
app.add_typer(weights_app, name="weights")
app.add_typer(recipe_app, name="recipe")

log = logging.getLogger("fvcli")


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that it unwinds like Ctrl-C (files are only ever renamed into place)."""


def _on_sigterm(signum, _frame):
    raise Terminated()


def handle_errors(fn):
    """Map the FvError family to a one-line message and its exit code (2 bad input, 1 runtime); SIGINT/SIGTERM
    stop the command between two writes (every file is written atomically) with exit code 130/143."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = None
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread (e.g. some test runners): leave signals alone
            pass
        try:
            return fn(*args, **kwargs)
        except FvError as exc:
            typer.echo(f"fv: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            term = isinstance(exc, Terminated)
            typer.echo(f"fv: {'terminated' if term else 'interrupted'}; finished files are kept, rerun to resume",
                       err=True)
            raise typer.Exit(143 if term else 130) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _setup(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# Shared options ------------------------------------------------------------------------------------------------
RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe YAML file, or a name in configs/ (default, article, ...).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key: --set render.steps=64 (repeatable).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="inceptionv1 (default), demo, or torchvision:NAME.")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", "-w", help="PATH, random:SEED, or torchvision (published torchvision weights).")]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Optimization steps.")]
SizeOpt = Annotated[Optional[int], typer.Option("--size", help="Image size in pixels.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Run seed (each unit's seed derives from it).")]
BatchOpt = Annotated[Optional[str], typer.Option("--batch-size", "-b", help="Images per batch, or auto.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]


def _batch_value(b: Optional[str]):
    if b is None or b == "auto":
        return b
    if not b.isdigit():
        raise FvError(f"bad --batch-size {b!r}: expected a positive integer or auto")
    return int(b)


def build_recipe(recipe: Optional[str], sets: Optional[list[str]], model: Optional[str] = None,
                 weights: Optional[str] = None, steps: Optional[int] = None, size: Optional[int] = None,
                 seed: Optional[int] = None, batch_size: Optional[str] = None, device: Optional[str] = None):
    from .recipe import load_recipe

    return load_recipe(recipe, sets or [], {
        "model.name": model, "model.weights": weights, "render.steps": steps, "render.size": size,
        "render.seed": seed, "render.batch_size": _batch_value(batch_size), "render.device": device,
    })


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=quiet or None, leave=False, file=sys.stderr)


@app.command()
@handle_errors
def render(
    units: Annotated[Optional[list[str]], typer.Argument(help="Units: mixed4a:11, mixed4a:0-15, mixed4a:11@7,7, logit:208, prob:208, dream:mixed4a.")] = None,
    recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
    steps: StepsOpt = None, size: SizeOpt = None, seed: SeedOpt = None, batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("out"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Render units: KEY.png + KEY.json each in --out, and grid.png for several."""
    _setup(verbose)
    from .models import load_model
    from .runner import render_units
    from .units import parse_units, split_model_prefix

    items = list(units or [])
    prefixes = {split_model_prefix(u)[0] for u in items} - {None}
    if len(prefixes) > 1:
        raise FvError(f"units name different models: {', '.join(sorted(prefixes))}; render them separately")
    if prefixes and model is None:
        model = prefixes.pop()
    rec = build_recipe(recipe, set_, model, weights, steps, size, seed, batch_size, device)
    items = items or list(rec.units)
    if not items:
        raise FvError("no units given: name some (e.g. `fv render mixed4a:11`) or list them under `units:` in the recipe")
    m = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    parsed = [u for text in items for u in parse_units(text, m)]
    from .runner import plan_batches, resolve_batch_size

    bs = resolve_batch_size(m, rec, len(parsed))
    n_batches = len(plan_batches(parsed, bs))
    with _progress(rec.render.steps * n_batches, f"{len(parsed)} unit(s)", quiet) as bar:
        result = render_units(m, rec, parsed, out, on_step=lambda _s: bar.update(1), batch_size=bs)
    for p in result["pngs"]:
        typer.echo(str(p))
    if result["grid"]:
        typer.echo(f"grid: {result['grid']}")


@app.command()
@handle_errors
def layers(
    model_name: Annotated[str, typer.Argument(metavar="MODEL", help="inceptionv1, demo, torchvision:NAME")] = "inceptionv1",
    recipe: RecipeOpt = None, set_: SetOpt = None,
    main: Annotated[bool, typer.Option("--main", help="Only the main layers (the sweep default).")] = False,
) -> None:
    """List every addressable layer with its channel count and spatial size at the model's native input size."""
    from .models import load_model

    rec = build_recipe(recipe, set_, model_name)
    opts = rec.model_options()
    from dataclasses import replace

    m = load_model(replace(opts, weights="random:0"), "cpu", channels_last=False)  # shapes only
    typer.echo(f"# {m.name}: {len(m.catalog)} layers at {m.native_size}x{m.native_size} (* = main layer)")
    for info in m.catalog.values():
        if main and info.name not in m.main_layers:
            continue
        sp = "x".join(map(str, info.spatial)) if info.spatial else "-"
        star = "*" if info.name in m.main_layers else " "
        path = f"  ({info.path})" if info.path != info.name else ""
        typer.echo(f"{star} {info.name:<40} {info.channels:>6}  {sp:>9}{path}")


@weights_app.command("list")
@handle_errors
def weights_list() -> None:
    """Known models, where their weight file is expected, whether it is there, and its sha256."""
    from .models import _REGISTRY, expected_weights_path
    from .weights import cache_dir, file_sha256

    typer.echo(f"# cache: {cache_dir()}  (set TORCH_HOME to move it)")
    for name, spec in sorted(_REGISTRY.items()):
        path = expected_weights_path(spec)
        if path is None:
            typer.echo(f"{name:<14} (no default weights)")
            continue
        there = path.is_file()
        sha = file_sha256(path) if there else "-"
        url = spec.default_weights.url if spec.default_weights else "shipped with fv"
        typer.echo(f"{name:<14} {'cached ' if there else 'MISSING'} {path}\n{'':<14} sha256 {sha}\n{'':<14} from {url}")
    typer.echo("torchvision:NAME  published torchvision weights, cached in the same directory (--weights torchvision)")


@weights_app.command("fetch")
@handle_errors
def weights_fetch(model_name: Annotated[str, typer.Argument(metavar="MODEL")]) -> None:
    """Download a model's published weights into the cache (needs network)."""
    from .models import get_spec
    from .weights import download, file_sha256

    if model_name.startswith("torchvision:"):
        from .models import load_model

        m = load_model(__import__("fvcli.models", fromlist=["ModelOptions"]).ModelOptions(model_name, "torchvision"))
        typer.echo(f"{m.weights_source}\nsha256 {m.weights_sha256}")
        return
    spec = get_spec(model_name)
    if spec.default_weights is None:
        raise FvError(f"model {model_name} has no published weights to fetch")
    path = download(spec.default_weights)
    typer.echo(f"{path}\nsha256 {file_sha256(path)}")


@weights_app.command("add")
@handle_errors
def weights_add(model_name: Annotated[str, typer.Argument(metavar="MODEL")],
                file: Annotated[Path, typer.Argument(help="A local state_dict file.")]) -> None:
    """Import a local weight file into the cache after checking its keys and shapes against the model."""
    from .models import ModelOptions, expected_weights_path, get_spec
    from .outputs import atomic_write_bytes
    from .weights import check_state_dict, file_sha256, load_state_dict_file

    spec = get_spec(model_name)
    dest = expected_weights_path(spec)
    if dest is None or spec.default_weights is None:
        raise FvError(f"model {model_name} has no cache file; use --weights PATH directly")
    sd = load_state_dict_file(file)
    check_state_dict(spec.build(ModelOptions(name=model_name)), sd, str(file))
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise FvError(f"cannot read {file}: {exc.strerror}") from None
    atomic_write_bytes(dest, data)
    typer.echo(f"{dest}\nsha256 {file_sha256(dest)}")


@recipe_app.command("show")
@handle_errors
def recipe_show(recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
                steps: StepsOpt = None, size: SizeOpt = None, seed: SeedOpt = None, batch_size: BatchOpt = None,
                device: DeviceOpt = None) -> None:
    """Print the fully resolved recipe (defaults < file < --set < flags) and its hash."""
    from .recipe import to_yaml

    rec = build_recipe(recipe, set_, model, weights, steps, size, seed, batch_size, device)
    typer.echo(f"# recipe hash {rec.hash()}")
    typer.echo(to_yaml(rec), nl=False)


@recipe_app.command("validate")
@handle_errors
def recipe_validate(files: Annotated[list[str], typer.Argument(help="Recipe files or names.")]) -> None:
    """Check recipe files; exit 2 with the first problem of each bad one."""
    from .recipe import load_recipe

    bad = 0
    for f in files:
        try:
            rec = load_recipe(f)
            typer.echo(f"ok {f} (hash {rec.hash()})")
        except FvError as exc:
            typer.echo(f"fv: error: {f}: {exc}", err=True)
            bad += 1
    if bad:
        raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
