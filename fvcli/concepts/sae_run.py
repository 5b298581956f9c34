"""`fv concepts --method sae|batchtopk`: a sparse autoencoder trained on a layer over a folder, resumable.

The pass reads the folder as the other methods do (fvcli/concepts/run.py: the `fv examples` reader, BatchNorm
folded, every position of every image a sample of C numbers) and feeds the samples to `SAETrainer`
(fvcli/concepts/sae_train.py), for `epochs` passes, each over the folder in its own seeded order. What can vary
between runs is fixed by the seed: the image order of epoch e is `shuffled(folder, derive(seed, e))`, the positions
kept from image batch i of epoch e (with --max-positions) are drawn by a generator seeded with (seed, e, i), and the
shuffle buffer's generator is part of the trainer's state.

Checkpoints (`checkpoint=PATH`): every `checkpoint_every` seconds, after an image batch, the trainer's state and
where the pass stands (epoch, next image batch) plus the run's identity (model, weights sha256, layer, folder
signature, settings) are written atomically with torch.save; a run given the same PATH reloads it with
torch.load(weights_only=True) and continues from the next image batch, so a killed run ends with the same
dictionary, bit for bit, as one that was never stopped (tests/test_sae.py). A checkpoint of another run is refused.
After training the checkpoint is marked done; the measuring pass (`SAEMeasure`: fraction of variance explained,
L0, per-feature frequency, mean activation when firing, dead features) is cheap to redo and is not checkpointed.
Memory: one image batch of activations, the shuffle buffer (`buffer` x C floats) and the SAE with Adam's moments
(4 x K x C floats), whatever the folder's size.
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import FvError
from ..examples.folder import ImageFolder, _FolderDataset
from ..examples.scan import fold_batchnorm
from ..models import Capture, LoadedModel
from ..optvis.loop import derive_seed
from ..outputs import atomic_write_bytes, versions
from .run import ConceptsResult, _samples, shuffled
from .sae_stats import SAEMeasure
from .sae_train import SAESettings, SAETrainer

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "fv-sae-checkpoint/1"


def _batches(model: LoadedModel, layer: str, folder: ImageFolder, size: int, batch_size: int, workers: int,
             max_positions: int | None, seed: int, epoch: int, start: int = 0):
    """Yield (i, samples (n, C), images in the batch) for image batches i >= `start` of `folder` (its order)."""
    ds = _FolderDataset(folder, size, start * batch_size)
    if len(ds) <= 0:
        return
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                         num_workers=workers if len(ds) > batch_size else 0)
    with torch.no_grad(), Capture(model, [layer]) as cap:
        for j, (_idx, imgs, ok, _w, _h) in enumerate(loader):
            i = start + j
            x = None
            if ok.any():
                batch = imgs[ok].to(model.device).float().div_(255)
                batch = model.preprocess.apply(batch).contiguous(memory_format=torch.channels_last)
                g = torch.Generator().manual_seed(derive_seed(seed, epoch, i))
                x = _samples(cap(batch)[layer], max_positions, g)
            yield i, x, len(imgs)


def _identity(model: LoadedModel, layer: str, folder: ImageFolder, s: SAESettings, size: int, batch_size: int,
              max_positions: int | None) -> dict:
    return {"format": CHECKPOINT_FORMAT, "model": model.name, "weights_sha256": model.weights_sha256, "layer": layer,
            "folder": folder.signature(), "size": size, "batch_size": batch_size, "max_positions": max_positions,
            "settings": s.to_dict()}


def _save(path: Path, ident: dict, trainer: SAETrainer, epoch: int, next_batch: int, done: bool) -> None:
    buf = io.BytesIO()
    torch.save({"identity": ident, "trainer": trainer.state(), "epoch": epoch, "next_batch": next_batch,
                "done": done}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _resume(path: Path, ident: dict, trainer: SAETrainer) -> tuple[int, int, bool]:
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: say which and why
        raise FvError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); delete it or "
                      f"use another --checkpoint") from None
    if not isinstance(st, dict) or st.get("identity") != ident:
        have = st.get("identity") if isinstance(st, dict) else None
        diff = sorted(k for k in ident if not isinstance(have, dict) or have.get(k) != ident[k])
        raise FvError(f"checkpoint {path} belongs to another run (differs in: {', '.join(diff) or 'format'}); "
                      f"use another --checkpoint, or the same model, layer, folder and settings")
    trainer.load(st["trainer"])
    return int(st["epoch"]), int(st["next_batch"]), bool(st["done"])


def run_sae(model: LoadedModel, layer: str, folder: ImageFolder, settings: SAESettings, *, batch_size: int = 32,
            size: int | None = None, workers: int = 2, max_positions: int | None = None,
            checkpoint: Path | None = None, checkpoint_every: float = 60.0, measure: bool = True,
            on_batch: Callable[[int], None] | None = None) -> ConceptsResult:
    """Train an SAE on `layer` over `folder` (see the module docstring); the decoder's rows (K, C) are the result."""
    info = model.layer(layer)
    size = size or model.native_size
    settings.check()
    trainer = SAETrainer(settings, info.channels, model.device)
    ident = _identity(model, info.name, folder, settings, size, batch_size, max_positions)
    epoch0, batch0, done = 0, 0, False
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.is_file():
        epoch0, batch0, done = _resume(checkpoint, ident, trainer)
        log.info("resuming %s from epoch %d, image batch %d%s", checkpoint, epoch0, batch0, " (trained)" if done else "")
    net, _ = fold_batchnorm(model, keep=[info.name])
    t0 = time.perf_counter()
    last_save = t0
    n_batches = -(-len(folder.files) // batch_size)
    if not done:
        for epoch in range(epoch0, settings.epochs):
            order = shuffled(folder, derive_seed(settings.seed, "epoch", epoch) if epoch else settings.seed)
            start = batch0 if epoch == epoch0 else 0
            if on_batch is not None and epoch == epoch0 and (epoch or start):  # what was done before, for the bar
                on_batch(epoch * len(folder.files) + min(len(folder.files), start * batch_size))
            for i, x, n_imgs in _batches(net, info.name, order, size, batch_size, workers, max_positions,
                                         settings.seed, epoch, start):
                if x is not None:
                    trainer.partial_fit(x)
                if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every:
                    nxt = (epoch, i + 1) if i + 1 < n_batches else (epoch + 1, 0)
                    _save(checkpoint, ident, trainer, *nxt, done=False)
                    last_save = time.perf_counter()
                if on_batch is not None:
                    on_batch(n_imgs)
        trainer.finish()
        if checkpoint is not None:
            _save(checkpoint, ident, trainer, settings.epochs, 0, done=True)
    elif on_batch is not None:
        on_batch(settings.epochs * len(folder.files))
    fit_s = time.perf_counter() - t0
    sae = trainer.sae
    d = sae.w_dec.detach().float().cpu().clone()  # (K, C), unit rows
    report = {"format": "fv-concepts/1", "method": "batchtopk" if settings.batchtopk else "sae",
              "k": settings.features, "layer": info.name, "layout": info.layout, "channels": info.channels,
              "model": model.name, "weights_sha256": model.weights_sha256, "images_dir": str(folder.root.resolve()),
              "images": len(folder.files), "size": size, "seed": settings.seed, "batch_size": batch_size,
              "max_positions_per_image": max_positions, "sae": {**settings.to_dict(), "steps": trainer.step,
              "samples_trained": trainer.samples, "input_scale": float(sae.scale),
              "batchtopk_threshold": float(sae.threshold) if settings.batchtopk else None,
              "training_dead": trainer.stats.summary()["dead_count"]},
              "checkpoint": str(checkpoint) if checkpoint is not None else None,
              "curve": trainer.curve_summary()}
    if measure:
        m = SAEMeasure(sae)
        for _i, x, n_imgs in _batches(net, info.name, shuffled(folder, settings.seed), size, batch_size, workers,
                                      max_positions, settings.seed, -1):
            if x is not None:
                m.update(x)
            if on_batch is not None:
                on_batch(n_imgs)
        report.update(m.result())
    else:
        st = trainer.stats.summary()
        report.update({"samples": trainer.samples, "feature_stats": st})
    t1 = time.perf_counter()
    report.update({"seconds_fit": round(fit_s, 2), "seconds_total": round(t1 - t0, 2),
                   "passes": settings.epochs + (1 if measure else 0), "versions": versions()})
    return ConceptsResult(d, report)
