"""`fv weights ...` and `fv recipe ...`: the model weights cache and the named recipes.

Thin commands over fvcli/models/weights.py, fvcli/models and fvcli/recipe, registered on the sub-apps of
fvcli/cli/common.py when fvcli/cli/commands.py imports this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import FvError
from .common import (
    BatchOpt,
    DeviceOpt,
    ModelArg,
    ModelOpt,
    QuietOpt,
    RecipeOpt,
    SeedOpt,
    SetOpt,
    SizeOpt,
    StepsOpt,
    WeightsOpt,
    build_recipe,
    handle_errors,
    recipe_app,
    weights_app,
)
from .completion import complete_recipe


@weights_app.command("list")
@handle_errors
def weights_list(quiet: QuietOpt = False) -> None:
    """Known models, where their weight file is expected, whether it is there, and its sha256."""
    from ..models import _REGISTRY, expected_weights_path
    from ..models.weights import cache_dir, file_sha256

    if not quiet:
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
    if not quiet:
        typer.echo("torchvision:NAME  published torchvision weights, cached in the same directory (--weights torchvision)")
        typer.echo("timm:NAME         published timm weights, cached by Hugging Face in $HF_HOME/hub (--weights timm)")


@weights_app.command("fetch")
@handle_errors
def weights_fetch(model_name: ModelArg, quiet: QuietOpt = False) -> None:
    """Download a model's published weights into the cache (needs network)."""
    from ..models import get_spec
    from ..models.weights import download, file_sha256

    if model_name.startswith(("torchvision:", "timm:")):  # published weights, cached by torchvision / timm
        from ..models import ModelOptions, load_model

        m = load_model(ModelOptions(model_name, model_name.split(":", 1)[0]))
        typer.echo(f"{m.weights_source}\nsha256 {m.weights_sha256}")
        return
    spec = get_spec(model_name)
    if spec.default_weights is None:
        raise FvError(f"model {model_name} has no published weights to fetch")
    path = download(spec.default_weights)
    typer.echo(f"{path}\nsha256 {file_sha256(path)}")


@weights_app.command("add")
@handle_errors
def weights_add(model_name: ModelArg, file: Annotated[Path, typer.Argument(help="A local state_dict file.")],
                quiet: QuietOpt = False) -> None:
    """Import a local weight file into the cache after checking its keys and shapes against the model."""
    from ..models import ModelOptions, expected_weights_path, get_spec
    from ..models.weights import check_finite, check_state_dict, file_sha256, load_state_dict_file
    from ..outputs import atomic_write_bytes

    spec = get_spec(model_name)
    dest = expected_weights_path(spec)
    if dest is None or spec.default_weights is None:
        raise FvError(f"model {model_name} has no cache file; use --weights PATH directly")
    sd = load_state_dict_file(file)
    check_state_dict(spec.build(ModelOptions(name=model_name)), sd, str(file))
    check_finite(sd, str(file))  # a corrupt checkpoint never enters the cache
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
                device: DeviceOpt = None, quiet: QuietOpt = False) -> None:
    """Print the fully resolved recipe (defaults < file < --set < flags) and its hash."""
    from ..optvis.coarse import coarse_size
    from ..recipe import to_yaml

    rec = build_recipe(recipe, set_, model, weights, steps, size, seed, batch_size, device)
    typer.echo(f"# recipe hash {rec.hash()}")
    if rec.render.coarse_steps == "auto":  # what `auto` comes to at this size and length
        n = rec.coarse_steps()
        typer.echo(f"# render.coarse_steps auto: {n} of {rec.render.steps} steps at "
                   f"{coarse_size(rec.render.size, rec.render.coarse_scale)} px first" if n else
                   "# render.coarse_steps auto: 0 (full size from the first step at this size)")
    typer.echo(to_yaml(rec).rstrip("\n"))


@recipe_app.command("list")
@handle_errors
def recipe_list(quiet: QuietOpt = False) -> None:
    """The named recipes shipped with fv (`--recipe NAME`), each with its one-line description."""
    from ..recipe.named import CONFIG_DIR, describe, named_recipes

    recipes = named_recipes()
    if not quiet:
        typer.echo(f"# {len(recipes)} named recipe(s) in {CONFIG_DIR}; use one with --recipe NAME")
    width = max((len(n) for n in recipes), default=0)
    for name, path in recipes.items():
        typer.echo(f"{name:<{width}}  {describe(path)}".rstrip())


@recipe_app.command("validate")
@handle_errors
def recipe_validate(files: Annotated[list[str], typer.Argument(autocompletion=complete_recipe, help="Recipe files or names.")],
                    quiet: QuietOpt = False) -> None:
    """Check recipe files; exit 2 with the first problem of each bad one."""
    from ..recipe import load_recipe

    bad = 0
    for f in files:
        try:
            rec = load_recipe(f)
            if not quiet:
                typer.echo(f"ok {f} (hash {rec.hash()})")
        except FvError as exc:
            typer.echo(f"fv: error: {f}: {exc}", err=True)
            bad += 1
    if bad:
        raise typer.Exit(2)
