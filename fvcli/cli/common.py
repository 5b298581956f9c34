"""What every `fv` command shares: the Typer apps, error handling, logging, `--version`, the option types.

The commands themselves live in fvcli/cli/commands.py (rendering) and fvcli/cli/admin.py (weights and recipes); both import
from here. Errors: an FvError prints one line `fv: error: ...` and exits 2 (bad input) or 1 (runtime failure); SIGINT
and SIGTERM stop a command between two writes. Nothing here imports torch: `fv --help` and completion stay fast.
"""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import signals
from ..errors import FvError
from .completion import complete_model, complete_recipe

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fv: feature visualization by optimization (Olah et al., Distill 2017) for PyTorch models.")
weights_app = typer.Typer(no_args_is_help=True, help="Model weights: list the cache, fetch, import.")
recipe_app = typer.Typer(no_args_is_help=True, help="Recipes: list the named ones, show the resolved recipe, validate files.")
app.add_typer(weights_app, name="weights")
app.add_typer(recipe_app, name="recipe")

log = logging.getLogger("fvcli")


def handle_errors(fn):
    """Map the FvError family to a one-line message and its exit code (2 bad input, 1 runtime); SIGINT/SIGTERM
    stop the command between two writes (every file is written atomically) with exit code 130/143."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = signals.install(during_command=True)  # a signal now unwinds (never inside an import)
        try:
            return fn(*args, **kwargs)
        except FvError as exc:
            typer.echo(f"fv: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            term = isinstance(exc, signals.Terminated)
            typer.echo(f"fv: {'terminated' if term else 'interrupted'}; finished files are kept, rerun to resume",
                       err=True)
            raise typer.Exit(143 if term else 130) from None
        finally:
            signals.restore(previous)

    return wrapper


def _setup(verbose: bool, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(level)  # basicConfig does nothing when logging is already configured (e.g. a second command in-process)


def version_text() -> str:
    """`fv --version`: fv, where it is installed, torch / torchvision and CUDA (what every record's versions hold)."""
    from ..outputs import versions

    package_file = Path(__file__).resolve().parents[1] / "__init__.py"  # the fvcli package in use

    v = versions()
    cuda = (f"CUDA {v['cuda']} available ({v['cuda_devices']} device(s))" if v["cuda_available"]
            else f"CUDA not available (torch built {'with CUDA ' + v['cuda'] if v['cuda'] else 'for CPU only'})")
    return (f"fv {v['fv']} ({Path(package_file).parent})\n"
            f"torch {v['torch']}, torchvision {v['torchvision']}, python {v['python']}\n{cuda}")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_show_version, is_eager=True, help="Show fv's version, torch / torchvision versions and CUDA availability, then exit.")] = False,
) -> None:
    """fv: feature visualization by optimization (Olah et al., Distill 2017) for PyTorch models."""


# Shared options ------------------------------------------------------------------------------------------------
RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", "-r", autocompletion=complete_recipe, help="Recipe YAML file, or a named recipe (default, article, ...: `fv recipe list`).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key: --set render.steps=64 (repeatable).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", autocompletion=complete_model, help="inceptionv1 (default), demo, torchvision:NAME, timm:NAME (needs timm), or your own code: path/to/net.py:CALLABLE or package.module:CALLABLE returning an nn.Module (importing it runs it).")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", "-w", help="PATH (a state_dict, a training checkpoint or .safetensors), random:SEED, torchvision or timm (published weights). Your own code without --weights: its own weights.")]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Optimization steps.")]
SizeOpt = Annotated[Optional[int], typer.Option("--size", help="Image size in pixels.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Run seed (each unit's seed derives from it).")]
BatchOpt = Annotated[Optional[str], typer.Option("--batch-size", "-b", help="Images per batch, or auto.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors: no progress bar, warnings, headers or hints.")]
ModelArg = Annotated[str, typer.Argument(metavar="MODEL", autocompletion=complete_model, help="inceptionv1, demo, torchvision:NAME, timm:NAME, path/to/net.py:CALLABLE, package.module:CALLABLE")]


def _batch_value(b: Optional[str]):
    if b is None or b == "auto":
        return b
    if not b.isdigit():
        raise FvError(f"bad --batch-size {b!r}: expected a positive integer or auto")
    return int(b)


def build_recipe(recipe: Optional[str], sets: Optional[list[str]], model: Optional[str] = None,
                 weights: Optional[str] = None, steps: Optional[int] = None, size: Optional[int] = None,
                 seed: Optional[int] = None, batch_size: Optional[str] = None, device: Optional[str] = None,
                 extra: Optional[dict] = None):
    """The recipe: defaults < file < --set < these flags (None = not given); `extra` maps more dotted keys."""
    from ..recipe import load_recipe

    return load_recipe(recipe, sets or [], {
        "model.name": model, "model.weights": weights, "render.steps": steps, "render.size": size,
        "render.seed": seed, "render.batch_size": _batch_value(batch_size), "render.device": device,
        **(extra or {}),
    })


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=quiet or None, leave=False, file=sys.stderr)


def _model_of_units(units: list[str], model: Optional[str]) -> Optional[str]:
    """A leading registered model name in the units (`demo:logit:3`) selects the model unless --model does."""
    from ..units.unit import split_model_prefix

    prefixes = {split_model_prefix(u)[0] for u in units} - {None}
    if len(prefixes) > 1:
        raise FvError(f"units name different models: {', '.join(sorted(prefixes))}; run them separately")
    return prefixes.pop() if prefixes and model is None else model
