"""The `fv` command line: thin Typer commands over the library.

Errors: an FvError prints one line `fv: error: ...` and exits 2 (bad input) or 1 (runtime failure); nothing is
written before the input is validated. Every command's output ends with a newline, and every command takes
`--quiet`: no progress bars, no warnings, no headers or hints -- only its results (paths, data) and errors.
Shell completion is Typer's (`fv --install-completion`); its callbacks (fvcli/cli/completion.py) never import torch.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import FvError
from .common import (  # noqa: F401  (app, handle_errors, version_text: the public entry points)
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
    VerboseOpt,
    WeightsOpt,
    _model_of_units,
    _progress,
    _setup,
    app,
    build_recipe,
    handle_errors,
    log,
    version_text,
)


@app.command()
@handle_errors
def render(
    units: Annotated[Optional[list[str]], typer.Argument(help="Units: mixed4a:11, mixed4a:0-15, mixed4a:11@7,7, blocks.6:10@cls (a ViT's class token), logit:208, prob:208, dream:mixed4a, or expressions: \"mixed4a:476 + 0.5*mixed4a:460\", \"-mixed4a:492\", \"mixed4d:dir=random:7\".")] = None,
    recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
    steps: StepsOpt = None, size: SizeOpt = None, seed: SeedOpt = None, batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("out"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    diversity: Annotated[Optional[int], typer.Option("--diversity", min=1, max=64, help="Render N facets of each unit jointly with the article's diversity term (KEY-div0..; recipe variants.diversity).")] = None,
    diversity_weight: Annotated[Optional[float], typer.Option("--diversity-weight", min=0.0, help="Weight of the diversity term (recipe variants.diversity_weight: lucid's 1e2).")] = None,
    diversity_layer: Annotated[Optional[str], typer.Option("--diversity-layer", help="Layer whose Gram matrices are compared (default: the unit's layer).")] = None,
    negative: Annotated[bool, typer.Option("--negative", help="Render the most inhibiting image instead (KEY-neg; recipe variants.sign: negative).")] = False,
    both: Annotated[bool, typer.Option("--both", help="Render the negative and positive pair (KEY-neg, KEY-pos; recipe variants.sign: both).")] = False,
    budget: Annotated[Optional[float], typer.Option("--budget", min=0.0, help="Seconds per unit: render on the best measured schedule (size, steps, levers; fvcli/budget/schedules.yaml) that fits on this machine, timed before rendering. --size keeps the size fixed.")] = None,
) -> None:
    """Render units: KEY.png + KEY.json each in --out, and grid.png for several."""
    _setup(verbose, quiet)
    from ..api import render as render_api

    items = list(units or [])
    model = _model_of_units(items, model)
    if negative and both:
        raise FvError("--negative and --both exclude each other: --both renders the negative and the positive")
    sign = "both" if both else "negative" if negative else None
    rec = build_recipe(recipe, set_, model, weights, steps, size, seed, batch_size, device, {
        "variants.diversity": diversity, "variants.diversity_weight": diversity_weight,
        "variants.diversity_layer": diversity_layer, "variants.sign": sign})
    items = items or list(rec.units)
    if not items:
        raise FvError("no units given: name some (e.g. `fv render mixed4a:11`) or list them under `units:` in the recipe")
    target = None
    if budget is not None:
        if steps is not None:
            raise FvError("--budget chooses the steps itself; drop --steps (--size fixes the size)")
        from ..budget import plan_render_budget
        from ..models import load_model
        from ..units.expr import parse_unit_arg

        target = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
        choice = plan_render_budget(target, rec, [u for t in items for u in parse_unit_arg(t, target)], budget, size)
        typer.echo(choice.describe(budget))
        rec = choice.recipe
    result = render_api(target, items, recipe=rec, out=out, progress=False if quiet else None)  # the library call
    for p in result.pngs:
        typer.echo(str(p))
    if result.grid:
        typer.echo(f"grid: {result.grid}")
    _note_saturation(result.records)


def _note_saturation(records: list[dict]) -> None:
    """A warning when pictures came out largely clipped at 0 or 255 (record `clipped`): there the sigmoid passes almost
    no gradient, and a milder start finished higher on the network where it was measured (docs/guide/speed.md)."""
    from ..optvis.metrics import SATURATED

    hot = [r for r in records if (r.get("clipped") or 0.0) > SATURATED]
    if hot:
        worst = max(hot, key=lambda r: r["clipped"])
        log.warning("%d of %d pictures have more than %d %% of their values clipped at 0 or 255 (%s: %.0f %%): the "
                    "sigmoid saturated there and passes almost no gradient; --set param.decay_from=1.25 (a milder "
                    "start) finished higher on such a network (docs/guide/speed.md, rounds 9-10)", len(hot),
                    len(records), round(SATURATED * 100), worst.get("unit"), 100 * worst["clipped"])


@app.command()
@handle_errors
def interpolate(
    unit_a: Annotated[Optional[str], typer.Argument(metavar="A", help="Start unit or expression (frame 0), e.g. mixed4a:476. Default: the recipe's first unit.")] = None,
    unit_b: Annotated[Optional[str], typer.Argument(metavar="B", help="End unit or expression (last frame), e.g. mixed4a:460. Default: the recipe's second unit.")] = None,
    frames: Annotated[Optional[int], typer.Option("--frames", "-n", min=2, max=64, help="Number of frames (recipe interpolation.frames: 6).")] = None,
    align_layer: Annotated[Optional[str], typer.Option("--align-layer", help="Layer of the alignment term (default: the main layer before A's).")] = None,
    align_weight: Annotated[Optional[float], typer.Option("--align-weight", min=0.0, help="Weight of the alignment term (0: off; recipe interpolation.align_weight: 0.1).")] = None,
    align_decay: Annotated[Optional[float], typer.Option("--align-decay", min=1e-6, help="lucid's decay_ratio: frames d apart weigh decay**-d (2).")] = None,
    recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
    steps: StepsOpt = None, size: SizeOpt = None, seed: SeedOpt = None, device: DeviceOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("out"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Interpolate between two units over N frames: A_KEY--B_KEY.png (strip), -frameNN.png, .json."""
    _setup(verbose, quiet)
    from ..figures.interpolation import interpolate as run_interpolation
    from ..figures.interpolation import write_interpolation
    from ..models import load_model
    from ..units.expr import parse_unit_arg

    model = _model_of_units([u for u in (unit_a, unit_b) if u is not None], model)
    rec = build_recipe(recipe, set_, model, weights, steps, size, seed, None, device, {
        "interpolation.frames": frames, "interpolation.align_layer": align_layer,
        "interpolation.align_weight": align_weight, "interpolation.align_decay": align_decay})
    ip = rec.interpolation
    frames, align_layer, align_weight, align_decay = ip.frames, ip.align_layer, ip.align_weight, ip.align_decay
    pair = [unit_a, unit_b] if unit_a is not None and unit_b is not None else list(rec.units)
    if unit_a is not None and unit_b is None or len(pair) != 2:
        raise FvError("interpolation needs two units: `fv interpolate A B`, or exactly two under `units:` in the "
                      f"recipe (got {len(pair) if unit_a is None else 1})")
    m = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    ends = []
    for text in pair:
        us = parse_unit_arg(text, m)
        if len(us) != 1:
            raise FvError(f"unit {text!r} names {len(us)} units; interpolation needs one unit at each end")
        ends.append(us[0])
    with _progress(rec.render.steps, f"{frames} frames", quiet) as bar:
        res = run_interpolation(m, rec, ends[0], ends[1], frames, align_layer=align_layer, align_weight=align_weight,
                                align_decay=align_decay, on_step=lambda _s: bar.update(1))
    paths = write_interpolation(out, m, rec, res)
    for p in paths["frames"]:
        typer.echo(str(p))
    typer.echo(f"strip: {paths['strip']}")


@app.command()
@handle_errors
def layers(
    model_name: ModelArg = "inceptionv1",
    recipe: RecipeOpt = None, set_: SetOpt = None,
    main: Annotated[bool, typer.Option("--main", help="Only the main layers (the sweep default).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """List every addressable layer with its layout (nchw, nhwc, tokens, vector), channel count and position grid at
    the model's native input size; `?` marks a layer whose layout must be declared (recipe key model.layouts)."""
    from ..models import load_model

    rec = build_recipe(recipe, set_, model_name)
    opts = rec.model_options()
    from dataclasses import replace

    m = load_model(replace(opts, weights="random:0"), "cpu", channels_last=False)  # shapes only
    fixed = f"; fixed size: other sizes are resized to {m.native_size}" if m.fixed_size else ""
    if not quiet:
        typer.echo(f"# {m.name}: {len(m.catalog)} layers at {m.native_size}x{m.native_size} (* = main layer){fixed}")
    undecided = 0
    for info in m.catalog.values():
        if main and info.name not in m.main_layers:
            continue
        star = "*" if info.name in m.main_layers else " "
        path = f"  ({info.path})" if info.path != info.name else ""
        if info.problem:
            undecided += 1
            typer.echo(f"{star} {info.name:<40} {'?':<6} {'?':>6}  {'?':>9}  output {info.shape}{path}")
            continue
        sp = "x".join(map(str, info.spatial)) if info.spatial else "-"
        pre = ("" if not info.prefix else "  + 1 class token" if info.prefix == 1
               else f"  + {info.prefix} prefix tokens (class first)")
        typer.echo(f"{star} {info.name:<40} {info.layout:<6} {info.channels:>6}  {sp:>9}{pre}{path}")
    if undecided and not quiet:
        typer.echo(f"# ?: {undecided} layer(s) whose layout could not be detected; declare one to use it, e.g. "
                   f"--set 'model.layouts={{LAYER: nhwc}}' (nchw, nhwc, tokens, vector)")


@app.command("examples")
@handle_errors
def examples_cmd(
    images_dir: Annotated[Optional[Path], typer.Argument(metavar="IMAGES_DIR", help="Folder of images (ImageFolder layout or flat; .jpg .jpeg .png .webp .bmp; recursive). Default: the recipe's examples.images.")] = None,
    units: Annotated[Optional[list[str]], typer.Argument(metavar="UNITS", help="Units: a layer name (every channel), mixed4a:11, mixed4a:0-15, mixed4a:11@7,7, logit:208, logit:tiger_cat, prob:208. Default: the recipe's units.")] = None,
    recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
    device: DeviceOpt = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", min=1, max=1000, help="Examples kept at each end (recipe examples.top_k: 10).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N images (after --sample).")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", min=1, help="Use a random sample of N images (see --seed).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Seed of --sample and of the quantile reservoir.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Images per forward pass (32).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=0, max=64, help="Data-loader processes (2; 0 loads in the main process).")] = None,
    size: Annotated[Optional[int], typer.Option("--size", min=8, help="Network input size (default: the model's native size).")] = None,
    reduce: Annotated[Optional[str], typer.Option("--reduce", help="Channel score over positions: max (the appendix; default) or mean (what fv render optimizes).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", min=1, help="Batches between checkpoints of the running state (50).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, max=1024, help="CPU threads of the forward passes (default: torch's, all cores). On a machine busy with other work, 1 can be 2-3x faster.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore a checkpoint of an interrupted pass and start again.")] = False,
    no_grids: Annotated[bool, typer.Option("--no-grids", help="Write only the JSON records (grids cost ~0.1 s per unit).")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (a sweep's directory puts examples beside its renders).")] = Path("out"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Dataset examples: for each unit the images that excite and inhibit it most, in one pass over a folder.
    Writes KEY.examples.png and KEY.examples.json per unit, and examples-summary.json, in --out."""
    _setup(verbose, quiet)
    from tqdm import tqdm

    from ..examples import (
        ExampleSettings,
        list_images,
        parse_example_units,
        run_examples,
        write_examples,
    )
    from ..models import load_model
    from ..recipe import load_recipe

    items = list(units or [])
    model = _model_of_units(items, model)
    rec = load_recipe(recipe, set_ or [], {
        "model.name": model, "model.weights": weights, "render.device": device, "examples.top_k": top_k,
        "examples.limit": limit, "examples.sample": sample, "examples.seed": seed, "examples.batch_size": batch_size,
        "examples.workers": workers, "examples.size": size, "examples.reduce": reduce,
        "examples.checkpoint_every": checkpoint_every})
    ex = rec.examples
    folder_arg = images_dir if images_dir is not None else ex.images
    if folder_arg is None:
        raise FvError("no images folder given: `fv examples IMAGES_DIR UNITS...` or examples.images in the recipe")
    items = items or list(rec.units)
    if not items:
        raise FvError("no units given: name some (e.g. `fv examples DIR mixed4a` for every channel of mixed4a, or "
                      "logit:208) or list them under `units:` in the recipe")
    settings = ExampleSettings.from_recipe(ex)
    folder = list_images(folder_arg, limit=ex.limit, sample=ex.sample, seed=ex.seed, exclude=out)
    m = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    parsed = parse_example_units(items, m)
    with tqdm(total=len(folder.files), desc=f"{len(parsed)} unit(s)", unit="img", disable=quiet or None,
              leave=False, file=sys.stderr) as bar:
        res = run_examples(m, parsed, folder, settings, out=out, on_batch=bar.update, resume=not fresh)
        bar.update(len(folder.files) - bar.n)
    summary = write_examples(out, res, pngs=not no_grids)
    bad = f", {summary['unreadable']} unreadable file(s) skipped" if summary["unreadable"] else ""
    resumed = f" (resumed after {res.resumed_from})" if res.resumed_from else ""
    typer.echo(f"{summary['readable']} images{resumed}{bad}, {len(parsed)} unit(s), "
               f"{summary['images_per_second']:.1f} images/s")
    from ..examples import refresh_sweep_gallery

    manifest = refresh_sweep_gallery(out)  # a sweep's directory: examples beside the renders, gallery rebuilt
    where = f"{out}/layers/<layer>" if manifest is not None else str(out)
    typer.echo(f"examples: {where}/<unit>.examples.png|json; summary: {out / 'examples-summary.json'}")
    if manifest is not None:
        typer.echo(f"gallery: {out / 'index.html'} (optimized images beside dataset examples)")


QUICK_SCALE = 1 / 64  # --quick: 8 steps for a 512-step render, 40 for the 2560-step filmstrip
QUICK_SIZE = 64


@app.command("article")
@handle_errors
def article_cmd(
    figures: Annotated[Optional[list[str]], typer.Argument(metavar="[FIGURE]...", help="Figures to build (default: all): objectives, examples, diversity, interaction, enemy, regularization, preconditioning, checkerboard, progress, appendix.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (FIGURE.png + .json, index.html).")] = Path("runs/article"),
    recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
    size: SizeOpt = None, seed: SeedOpt = None, device: DeviceOpt = None,
    steps_scale: Annotated[float, typer.Option("--steps-scale", help="Multiply every step count (0.125: 64 instead of 512, 320 instead of 2560).")] = 1.0,
    quick: Annotated[bool, typer.Option("--quick", help=f"A fast preview: --steps-scale 1/64 and at most {QUICK_SIZE} px.")] = False,
    unit: Annotated[Optional[str], typer.Option("--unit", help="The channel the figures show, LAYER:CHANNEL (default: the article's on InceptionV1, else one picked by the seed).")] = None,
    class_: Annotated[Optional[str], typer.Option("--class", help="The class of the logit / probability panels (index or name).")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Image folder: adds the dataset-examples figure (fv examples).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Reproduce the article's figures: FIGURE.png + FIGURE.json each and index.html; rerun to resume."""
    _setup(verbose)
    from ..article import build_article, select_figures
    from ..article.network import choose_network, make_context
    from ..models import load_model

    select_figures(figures or [])  # unknown names fail before anything is loaded
    network = choose_network(recipe, set_ or [], {"model.name": model, "model.weights": weights,
                                                   "render.size": size, "render.seed": seed, "render.device": device})
    if quick:
        steps_scale = QUICK_SCALE
        if network.recipe.render.size > QUICK_SIZE:
            from dataclasses import replace

            network = replace(network, recipe=replace(network.recipe, render=replace(network.recipe.render,
                                                                                     size=QUICK_SIZE)))
    log.info("fv article: %s", network.note)
    typer.echo(f"network: {network.note}", err=True)  # always said: the figures may not be on the article's network
    rec = network.recipe
    m = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    ctx = make_context(network, m, steps_scale=steps_scale, unit=unit, cls=class_, images=images)
    report = build_article(ctx, out, figures or [],
                           on_figure=lambda fid, what: typer.echo(f"{what}: {out / (fid + '.png')}"))
    for fid, why in report.not_built.items():
        typer.echo(f"not built: {fid} ({why})", err=True)
    typer.echo(f"page: {report.page}")


@app.command("spectrum")
@handle_errors
def spectrum_cmd(
    images: Annotated[Path, typer.Argument(metavar="IMAGES_DIR", help="Folder of images (recursive; any sizes).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Spectrum file to write (torch.save).")] = Path(
        "spectrum.pt"),
    size: Annotated[int, typer.Option("--size", min=8, max=2048, help="Spectrum side: each image is resized "
                                      "(short side) and center-cropped to it.")] = 224,
) -> None:
    """The mean magnitude spectrum of natural images, for MACO (`param.kind: maco`, `param.spectrum: FILE`)."""
    from ..optvis.spectrum import (
        compute_spectrum,
        fit_power_law,
        image_files,
        save_spectrum,
    )

    files = image_files(images)
    mag, n = compute_spectrum(files, size)
    save_spectrum(output, mag, n)
    alphas, amps = fit_power_law(mag)
    typer.echo(f"spectrum of {n} images at {size}x{size}: {output}")
    typer.echo("power-law fit per decorrelated channel: alpha " + ", ".join(f"{a:.2f}" for a in alphas)
               + "; amplitude " + ", ".join(f"{a:.2f}" for a in amps))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
