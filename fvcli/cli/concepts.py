"""`fv concepts IMAGES_DIR LAYER --k K`: concept directions of a layer from a folder, as a dictionary to sweep.

A thin command over fvcli/concepts (the streaming pass and the factorizations), registered on the app of
fvcli/cli/common.py when fvcli/cli/commands.py imports this module. The output is ready for
`fv sweep LAYER --directions OUT.npy` (its names file, OUT.names.txt, is picked up beside it).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    RecipeOpt,
    SetOpt,
    VerboseOpt,
    WeightsOpt,
    _setup,
    app,
    handle_errors,
)


@app.command("concepts")
@handle_errors
def concepts_cmd(
    images_dir: Annotated[Path, typer.Argument(metavar="IMAGES_DIR", help="Folder of images (the `fv examples` reader: recursive, .jpg .jpeg .png .webp .bmp).")],
    layer: Annotated[str, typer.Argument(metavar="LAYER", help="The layer to factorize (`fv layers MODEL`).")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100_000, help="Number of concepts (rows of the dictionary).")] = 8,
    method: Annotated[str, typer.Option("--method", help="nmf (non-negative factorization, Building Blocks / CRAFT), pca (principal components), kmeans (minibatch k-means centers), sae (TopK sparse autoencoder: the decoder's rows) or batchtopk (BatchTopK SAE).")] = "nmf",
    out: Annotated[Path, typer.Option("--out", "-o", help="The dictionary (K, C) as .npy; OUT.json (how much it explains) and OUT.names.txt beside it.")] = Path("concepts.npy"),
    recipe: RecipeOpt = None, model: ModelOpt = None, weights: WeightsOpt = None, device: DeviceOpt = None,
    set_: SetOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N images (after --sample).")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", min=1, help="Use a random sample of N images.")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the image order, the initialization and --sample.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass (and per minibatch of the factorization).")] = 32,
    workers: Annotated[int, typer.Option("--workers", "-j", min=0, max=64, help="Data-loader processes.")] = 2,
    size: Annotated[Optional[int], typer.Option("--size", min=8, help="Network input size (default: the model's native size).")] = None,
    max_positions: Annotated[Optional[int], typer.Option("--max-positions", min=1, help="At most N random positions per image (default: all).")] = None,
    topk: Annotated[int, typer.Option("--topk", min=1, help="SAE: active features per position (BatchTopK: on average).")] = 16,
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=1000, help="SAE: passes over the folder.")] = 1,
    lr: Annotated[float, typer.Option("--lr", min=1e-8, max=1.0, help="SAE: Adam's learning rate (inputs normalized to unit mean square).")] = 2e-3,
    sae_batch: Annotated[int, typer.Option("--sae-batch", min=1, help="SAE: positions per training step.")] = 4096,
    buffer: Annotated[int, typer.Option("--buffer", min=1, help="SAE: positions held by the shuffle buffer (memory: buffer x channels floats).")] = 65536,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="SAE: save the training state here every minute; rerun with the same file to resume.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, max=1024, help="CPU threads of the forward passes (default: torch's).")] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Find K concept directions of LAYER from a folder of images (NMF, PCA, k-means or a sparse autoencoder over
    every position's activations, streamed) and write them as a dictionary for `fv sweep LAYER --directions OUT.npy`."""
    _setup(verbose, quiet)
    from tqdm import tqdm

    from ..concepts import ALL_METHODS, SAE_METHODS, SAESettings, run_concepts, run_sae, write_concepts
    from ..errors import FvError
    from ..examples import list_images
    from ..models import load_model
    from ..recipe import load_recipe

    if method not in ALL_METHODS:
        raise FvError(f"unknown --method {method!r}; valid: {', '.join(ALL_METHODS)}")
    sae = SAESettings(features=k, topk=topk, batchtopk=method == "batchtopk", batch=sae_batch, lr=lr,
                      buffer=max(buffer, sae_batch), epochs=epochs, seed=seed) if method in SAE_METHODS else None
    if sae is not None:
        sae.check()
    elif checkpoint is not None:
        raise FvError(f"--checkpoint is for --method {' or '.join(SAE_METHODS)} (their training resumes); "
                      f"--method {method} runs in one go")
    rec = load_recipe(recipe, set_ or [], {"model.name": model, "model.weights": weights, "render.device": device})
    folder = list_images(images_dir, limit=limit, sample=sample, seed=seed)
    m = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    passes = 1 if method == "pca" else epochs + 1 if sae is not None else 2
    with tqdm(total=passes * len(folder.files), desc=f"{method} {layer} k={k}", unit="img", disable=quiet or None,
              leave=False, file=sys.stderr) as bar:
        if sae is not None:
            res = run_sae(m, layer, folder, sae, batch_size=batch_size, size=size, workers=workers,
                          max_positions=max_positions, checkpoint=checkpoint, on_batch=bar.update)
        else:
            res = run_concepts(m, layer, folder, k, method, batch_size=batch_size, size=size, seed=seed,
                               workers=workers, max_positions=max_positions, on_batch=bar.update)
    files = write_concepts(out, res)
    r = res.report
    typer.echo(f"{r['images']} images, {r['samples']} samples of {r['channels']} channels: {k} {method} concepts "
               f"explain {100 * r['fraction_of_variance_explained']:.1f}% of the variance (relative error "
               f"{r['relative_reconstruction_error']:.3f}) in {r['seconds_total']:.1f} s")
    clamped = r.get("clamped_negative_fraction") or 0.0
    if clamped > 0.1:  # NMF reads only the positive part: a linear bottleneck or pre-ReLU layer loses the rest
        typer.echo(f"note: {100 * clamped:.0f}% of {r['layer']}'s activation mass is negative and was clamped for NMF; "
                   f"a layer after a ReLU suits NMF better, or use --method pca")
    if sae is not None:
        st = r["feature_stats"]
        typer.echo(f"mean L0 {r['mean_l0']:.1f} active features per position; {st['dead_count']} of {k} features "
                   f"never fired; {r['sae']['steps']} training steps; curve: {files['curve']}")
    typer.echo(f"dictionary: {files['npy']} ({k}, {r['channels']}); report: {files['json']}; names: {files['names']}")
    typer.echo(f"render them: fv sweep {r['layer']} --directions {files['npy']}"
               + (f" --recipe {recipe}" if recipe else f" --model {m.name}" if model else ""))
