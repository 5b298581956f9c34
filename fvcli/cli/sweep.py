"""`fv sweep`: every channel (or dictionary row) of some layers into one resumable, shardable directory.

The command parses the shard (from --shard or the cluster's environment), builds the recipe and the renderer
(plain units, or the appendix's panels), and hands the rest to fvcli/sweep: `--estimate` prices the plan without
writing anything, `--finalize` only builds sheets, manifest and gallery, `--with` adds the gallery's extras once the
sweep is complete (fvcli/cli/gallery.py). Kept apart from fvcli/cli/commands.py because it is the longest command
and the one cluster jobs call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import FvError
from . import gallery as cli_gallery
from .common import (
    BatchOpt,
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
    _progress,
    _setup,
    app,
    build_recipe,
    handle_errors,
)


@app.command("sweep")
@handle_errors
def sweep_cmd(
    layer_specs: Annotated[Optional[list[str]], typer.Argument(metavar="LAYER", help="Layers to sweep (every channel), or LAYER:CHANNELS (mixed4a:0-63), logit:all; default: the model's main layers.")] = None,
    recipe: RecipeOpt = None, set_: SetOpt = None, model: ModelOpt = None, weights: WeightsOpt = None,
    steps: StepsOpt = None, size: SizeOpt = None, seed: SeedOpt = None, batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory (default: runs/MODEL-RECIPEHASH).")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Render shard I of N (0-based), e.g. 3/8. Default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, JOB_COMPLETION_INDEX/FV_SHARD_COUNT or FV_SHARD=I/N; else 0/1.")] = None,
    shard_count: Annotated[Optional[int], typer.Option("--shard-count", min=1, help="Number of shards when the index comes from the environment (e.g. a Kubernetes indexed job's completions).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Take over a directory that holds a different sweep (other recipe, weights or batch size): its units are rendered again.")] = False,
    finalize_only: Annotated[bool, typer.Option("--finalize", help="Render nothing: build contact sheets, manifest.json and the HTML gallery from what the shards wrote.")] = False,
    no_finalize: Annotated[bool, typer.Option("--no-finalize", help="Do not build sheets and gallery when the sweep completes.")] = False,
    panels: Annotated[Optional[str], typer.Option("--panels", help="none (one image per channel) or appendix: per channel the appendix's row of neuron, channel, negative and 4 diversity facets (recipe variants.panels).")] = None,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", min=0.0, help="Start no new batch after this many minutes (for cron time slices); rerun to continue.")] = None,
    with_: Annotated[Optional[str], typer.Option("--with", help=f"Extras for the gallery's unit pages once the sweep is complete: {cli_gallery.WITH_CHOICES} (see `fv gallery`).")] = None,
    directions: Annotated[Optional[str], typer.Option("--directions", help="Sweep the rows of a dictionary (D, C) over LAYER instead of its channels: FILE.npy, FILE.pt[:KEY], FILE.safetensors[:KEY] (docs/guide/dictionaries.md); LAYER:0-63 picks rows.")] = None,
    names: Annotated[Optional[Path], typer.Option("--names", help="With --directions: a text file, one name per row (default FILE's stem + .names.txt if it exists).")] = None,
    cossim: Annotated[float, typer.Option("--cossim", min=0.0, help="With --directions: lucid's cosine-weighted dot product, dot * max(cos, 0.1)**P (0: plain dot).")] = 0.0,
    estimate: Annotated[bool, typer.Option("--estimate", help="Render nothing and write nothing: plan this shard, time a few steps on this machine and print the predicted wall time (with --deadline: the schedule it would choose).")] = False,
    deadline: Annotated[Optional[str], typer.Option("--deadline", help="Finish by then: 8h, 1h30m, 90m, or a time of day (06:30). Each batch gets the best measured schedule (size, steps, levers; fvcli/budget/schedules.yaml) that fits the time left; a sweep that falls behind moves its remaining units to a cheaper one. --size keeps the size fixed. Writes into OUT-deadline.")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Render every channel of some layers into one directory: resumable, shardable; then sheets, manifest, gallery."""
    _setup(verbose, quiet)
    import time

    from ..sweep import (
        default_out,
        finalize,
        parse_shard,
        prepare_sweep,
        select_units,
        shard_from_env,
    )

    t_deadline = None
    if deadline is not None:  # the clock starts now: loading and timing the machine count against it
        from ..budget import parse_deadline

        t_deadline = time.monotonic() + parse_deadline(deadline)
    rec = build_recipe(recipe, set_, model, weights, steps, size, seed, batch_size, device,
                       {"variants.panels": panels})
    extras = cli_gallery.parse_with(with_)
    renderer = None
    if rec.variants.panels == "appendix":
        from ..figures.panels import APPENDIX_FACETS, PanelRenderer

        v = rec.variants
        renderer = PanelRenderer(v.diversity if v.diversity > 1 else APPENDIX_FACETS, v.diversity_weight,
                                 v.diversity_layer)
    if t_deadline is not None:
        from ..sweep.deadline import check_deadline_recipe, deadline_renderer

        if steps is not None:
            raise FvError("--deadline chooses the steps itself; drop --steps (--size fixes the size)")
        check_deadline_recipe(rec)
        renderer = deadline_renderer(renderer)
    out = out if out is not None else default_out(rec, renderer=renderer)
    if directions is not None and out == default_out(rec, renderer=renderer):  # not the channels' directory
        out = out.with_name(f"{out.name}-dir-{Path(directions.split(':')[0]).stem}")

    def summary(manifest: dict) -> None:
        u = manifest["units"]
        state = "complete" if manifest["complete"] else f"{u['missing']} of {u['expected']} units missing"
        typer.echo(f"gallery: {out / 'index.html'} ({u['done']} units, {state})")
        typer.echo(f"manifest: {out / 'manifest.json'}")

    if finalize_only:
        summary(finalize(out))
        return
    i_n = parse_shard(shard) if shard else shard_from_env(count=shard_count) or (0, 1)
    from ..models import load_model

    m = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    units = select_units(m, layer_specs, directions, str(names) if names else None, cossim)
    if getattr(renderer, "diversity_layer", None) is not None:
        m.layer(renderer.diversity_layer)  # validates (names the valid layers)
    job = prepare_sweep(m, rec, units, out, batch_size=rec.render.batch_size, shard=i_n, overwrite=overwrite,
                        renderer=renderer, dry=estimate)
    i, n = i_n
    planner = None
    if t_deadline is not None:
        from ..budget import load_schedules
        from ..sweep.deadline import plan_deadline

        planner = plan_deadline(job, renderer, t_deadline, load_schedules(), size)
        typer.echo(f"deadline {deadline}, shard {i}/{n}: {planner.describe()}")
        if estimate:
            layers = planner.by_layer(planner.choose()[0])
            typer.echo("per layer: " + ", ".join(f"{ly} {s / 60:.2f} min" for ly, s in layers.items()))
            return
    if estimate:
        import torch

        from ..outputs import cpu_description
        from ..sweep.estimate import estimate as estimate_sweep

        where = cpu_description() if m.device.type == "cpu" else torch.cuda.get_device_name(m.device)
        typer.echo(f"estimate, shard {i}/{n} on {m.device} ({where}, {torch.get_num_threads()} threads): "
                   f"{estimate_sweep(job).describe()}")
        return
    total_steps = rec.render.steps * len(job.todo)
    if planner is not None:
        total_steps = planner.recipe_of(planner.choose()[0]).render.steps * len(job.todo)
    with _progress(total_steps, f"shard {i}/{n}", quiet) as bar:
        report = job.run(on_step=lambda _s: bar.update(1), finalize_when_done=not no_finalize,
                         time_limit=None if time_limit is None else 60 * time_limit)
    if report.busy:
        typer.echo(f"shard {i}/{n} of {out} is being rendered by another process; nothing to do")
        return
    typer.echo(f"shard {i}/{n}: {report.batches} batch(es), {report.units} units (batch size {job.batch_size}): "
               f"{report.rendered} rendered, {report.skipped} already done ({report.seconds:.1f} s)")
    if planner is not None:
        from ..sweep.deadline import usage

        typer.echo(usage(planner))
    if report.stopped_early:  # the sweep's state is a result (cron logs want it), not a hint
        typer.echo("time limit reached; rerun the same command to continue")
    if report.complete and extras:
        cli_gallery.add_extras(out, extras, quiet=quiet)
    if report.manifest:
        summary(report.manifest)
    elif not report.complete:
        typer.echo(f"not complete yet (other shards?); `fv sweep --finalize --out {out}` builds the gallery from "
                   f"what exists")
