"""Dataset examples: the images of a folder that excite (and inhibit) each unit most, the other half of the article.

One streaming pass over a folder serves every requested unit at once. Images are read by a DataLoader (several
worker processes), resized so the shorter side is the model's native size and centre-cropped to a square, then run
through the network in batches under `torch.no_grad()`, truncated after the deepest layer the units need. Every batch
becomes a score matrix `[B, U]` (one score per image and unit) and is merged into a bounded running state:

- top-k and bottom-k per unit: values, image indices and activation-map positions, `(U, k)` each. The merge sorts
  by value with ties broken by the lower image index, so the result is *exactly* the brute-force top-k of all
  scores, whatever the batch size or the point where a pass was interrupted and resumed.
- a reservoir of R image slots shared by all units (Vitter's algorithm R, with each image's draw derived from the
  seed and its index), `(U, R)` scores: the "slightly negative" and "slightly positive" columns of the article's
  spectrum are the examples around the 40th and 60th percentile (`examples.spectrum`) of each unit's scores. The
  quantiles are exact when the folder has at most R readable images, else estimates from a uniform sample of R
  (rank error about sqrt(q(1-q)/R): ~2 percentile points at R=512).
- sums and sums of squares for each unit's mean and standard deviation.

Scores per unit kind: a channel is scored by its maximal activation over positions (the appendix's dataset examples;
`reduce=mean` ranks by the mean, what `fv render` optimizes) and its example is cropped to the unit's receptive field
around the position of that maximum (fvcli/models/receptive.py); a neuron by its activation at its position (cropped the
same way); a class logit or probability (and a DeepDream layer score) by its value, shown as the whole network input.
A dictionary's row (`mixed4d:dir=sae.npy#12`) is scored like a channel,
on the projection of the activations onto the row (max or mean over positions). Crop boxes are stored in the
original image's pixel coordinates.

Every `checkpoint_every` batches, on Ctrl-C / SIGTERM, and at the end of the pass (until every record is written)
the state is written atomically to OUT/.examples-<ID>.ckpt; rerunning the same command resumes after the last
checkpointed batch, and the result is the same as an uninterrupted pass (bitwise with the same batch size). Files
that cannot be decoded are skipped and counted; a folder without images is an FvError.

For speed the pass runs on a copy of the network with BatchNorm folded into the preceding convolutions
(`fold_batchnorm`; activations agree with the unfolded network to ~1e-5).

Outputs per unit: OUT/<unit key>.examples.json (paths, activations, crop boxes, model, weights sha256) and
OUT/<unit key>.examples.png (rows: maximum, slightly positive, slightly negative, minimum); the unit key is the one
`fv render` and `fv sweep` use for OUT/<unit key>.json. Plus OUT/examples-summary.json for the pass. When OUT is a
sweep's directory (it has sweep.json), each unit's files go beside its render, OUT/layers/<layer>/, and
`refresh_sweep_gallery` rebuilds the gallery, whose unit pages then show the optimized images and the dataset
examples side by side.

The parts, one idea per file: fvcli/examples/settings.py (how a pass runs), fvcli/examples/folder.py (the images and
their input), fvcli/examples/state.py (the bounded streaming state and its checkpoints), fvcli/examples/results.py
(what a pass produced: records, grids, summary). This module holds the scoring of units and the pass itself;
`fvcli.examples` is the one import path of them all.
"""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..errors import FvError
from ..models import Capture, LoadedModel, prefix_key
from ..models.receptive import receptive_field
from ..units.unit import Unit, parse_units, split_model_prefix
from .folder import ImageFolder, _FolderDataset
from .results import ExamplesResult
from .settings import ExampleSettings
from .state import StreamState, checkpoint_path, load_checkpoint, pass_id, save_checkpoint

log = logging.getLogger(__name__)



# ----------------------------------------------------------------------------------------------------------------
# Settings, units


def parse_example_units(texts: Sequence[str], model: LoadedModel) -> list[Unit]:
    """Unit strings as `fv render` takes them, plus a bare layer name for every channel of that layer."""
    out: list[Unit] = []
    for text in texts:
        _, body = split_model_prefix(text.strip())
        if ":" not in body:  # a bare layer: every channel (an unknown name gets the valid layers)
            out += parse_units(f"{model.layer(body).name}:all", model)
        else:
            out += parse_units(text, model)
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------------------------------------------
# Scores


class UnitScorer:
    """Turns captured activations into scores (B, U) and flat positions (B, U) (-1: no position) for all units."""

    def __init__(self, model: LoadedModel, units: Sequence[Unit], reduce: str = "max") -> None:
        self.model, self.units, self.reduce = model, list(units), reduce
        self.layers = list(dict.fromkeys(u.layer for u in self.units))
        for u in self.units:
            model.layer(u.layer)
        # group the units of one layer and kind so each group is one vectorized op
        groups: dict[tuple[str, str], list[int]] = {}
        for j, u in enumerate(self.units):  # a neuron at a prefix token (@cls) reads the layer's prefix tokens
            groups.setdefault((u.layer, "prefix" if getattr(u, "prefix", None) is not None else u.kind), []).append(j)
        self.groups = [(layer, kind, cols, torch.tensor([self.units[j].channel or 0 for j in cols]))
                       for (layer, kind), cols in groups.items()]
        # a dictionary's rows (any dictionaries of a layer together): (u, C), one projection per group
        self.rows = {layer: torch.stack([self.units[j].objective(model).tensor() for j in cols]).float()
                     for layer, kind, cols, _ in self.groups if kind == "direction"}

    def __call__(self, acts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        b = next(iter(acts.values())).shape[0]
        scores = torch.empty(b, len(self.units), dtype=torch.float32)
        pos = torch.full((b, len(self.units)), -1, dtype=torch.int64)
        for layer, kind, cols, ch in self.groups:
            a = acts[layer].float()
            idx = torch.tensor(cols)
            if kind == "dream":
                scores[:, idx] = a.pow(2).flatten(1).mean(1).cpu().unsqueeze(1)
                continue
            if kind == "prefix":  # (B, C, P): one token, no position in the image
                p = torch.tensor([self.units[j].prefix for j in cols], device=a.device)
                scores[:, idx] = acts[prefix_key(layer)].float()[:, ch.to(a.device), p].cpu()
                continue
            if kind == "prob":
                a = torch.softmax(a.flatten(1), dim=1)
            if kind == "direction":  # projections onto the rows: (B, C[, H, W]) x (u, C) -> (B, u[, H, W])
                sel = torch.einsum("bc...,uc->bu...", a, self.rows[layer].to(a.device))
            else:
                sel = a[:, ch.to(a.device)]  # (B, u) or (B, u, H, W)
            if sel.dim() == 2:
                scores[:, idx] = sel.cpu()
            elif kind == "neuron":
                h, w = sel.shape[-2:]
                xy = [(min(self.units[j].x if self.units[j].x is not None else w // 2, w - 1),
                       min(self.units[j].y if self.units[j].y is not None else h // 2, h - 1)) for j in cols]
                xs = torch.tensor([p[0] for p in xy], device=sel.device)
                ys = torch.tensor([p[1] for p in xy], device=sel.device)
                ar = torch.arange(len(cols), device=sel.device)
                scores[:, idx] = sel[:, ar, ys, xs].cpu()
                pos[:, idx] = (ys * w + xs).cpu().unsqueeze(0).expand(b, -1)
            else:  # channel: max (or mean) over positions; the position of the maximum for the crop
                flat = sel.flatten(2)  # (B, u, H*W)
                mx, arg = flat.max(dim=2)
                scores[:, idx] = (mx if self.reduce == "max" else flat.mean(2)).cpu()
                pos[:, idx] = arg.cpu()
        return scores, pos


# ----------------------------------------------------------------------------------------------------------------
# The pass


def fold_batchnorm(model: LoadedModel, keep: Sequence[str] = ()) -> tuple[LoadedModel, int]:
    """A copy of `model` for inference with every BatchNorm2d that directly follows a Conv2d inside an nn.Sequential
    folded into that convolution (the BN becomes Identity, so module paths and hooks still work). Convolutions
    whose own output is a requested layer (`keep`, layer names) are left alone. Eval-mode BN is an affine map, so
    the activations agree to float rounding (~1e-5); MobileNetV2's examples pass runs ~1.5x faster (BN and its memory
    traffic cost as much as the depthwise convolutions on a CPU). Returns (model, number of folded pairs); the
    original model is returned unchanged when there is nothing to fold."""
    from dataclasses import replace

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    keep_paths = {model.catalog[n].path for n in keep if n in model.catalog}
    paths = {id(mod): name for name, mod in model.net.named_modules()}
    pairs = []
    for mod in model.net.modules():
        if not isinstance(mod, nn.Sequential):
            continue
        kids = list(mod.named_children())
        for (a, ca), (b, cb) in zip(kids, kids[1:]):
            if (isinstance(ca, nn.Conv2d) and isinstance(cb, nn.BatchNorm2d) and cb.track_running_stats
                    and paths[id(ca)] not in keep_paths):
                pairs.append((paths[id(mod)], a, b))
    if not pairs:
        return model, 0
    net = copy.deepcopy(model.net).eval()
    modules = dict(net.named_modules())
    for parent, a, b in pairs:
        seq = modules[parent]
        setattr(seq, a, fuse_conv_bn_eval(getattr(seq, a), getattr(seq, b)))
        setattr(seq, b, nn.Identity())
    net.requires_grad_(False)
    channels_last = any(p.dim() == 4 and p.shape[-1] > 1 and not p.is_contiguous()
                        and p.is_contiguous(memory_format=torch.channels_last) for p in model.net.parameters())
    if channels_last:  # keep the original's memory format (fused weights are created contiguous)
        net.to(memory_format=torch.channels_last)
    return replace(model, net=net), len(pairs)


def _map_sizes(model: LoadedModel, layers: Sequence[str], size: int) -> dict[str, tuple[int, int] | None]:
    x = torch.zeros(1, 3, size, size, device=model.device)
    with torch.no_grad(), Capture(model, layers) as cap:
        acts = cap(model.preprocess.apply(x))
    return {n: (tuple(a.shape[-2:]) if a.dim() == 4 else None) for n, a in acts.items()}


def run_examples(model: LoadedModel, units: Sequence[Unit], folder: ImageFolder, settings: ExampleSettings,
                 out: Path | None = None, on_batch: Callable[[int], None] | None = None,
                 resume: bool = True) -> ExamplesResult:
    """Stream `folder` through `model` once and keep each unit's extremes (see the module docstring).

    With `out`, the running state is checkpointed there and a matching checkpoint is resumed. `on_batch(n)` is called
    after each batch with the number of images it read (readable or not)."""
    units = list(units)
    if not units:
        raise FvError("no units given: name some, e.g. `fv examples DIR mixed4a` or `fv examples DIR logit:208`")
    size = settings.size or model.native_size
    model, folded = fold_batchnorm(model, keep=[u.layer for u in units]) if settings.fold_bn else (model, 0)
    scorer = UnitScorer(model, units, settings.reduce)
    map_sizes = _map_sizes(model, scorer.layers, size)
    fields = {layer: (receptive_field(model, layer) if map_sizes[layer] is not None else None)
              for layer in scorer.layers}
    pid = pass_id(model, units, folder, settings, size)
    ckpt = checkpoint_path(out, pid) if out is not None else None
    state = None
    if ckpt is not None and resume:
        loaded = load_checkpoint(ckpt, pid)
        if loaded is not None:
            state, old_bs = loaded
            log.info("resuming %s after %d of %d images", ckpt, state.next_index, len(folder.files))
            if old_bs != settings.batch_size:
                log.warning("resuming with batch size %d (the checkpoint used %d): results may differ in the last "
                            "bits of the activations", settings.batch_size, old_bs)
    if state is None:
        state = StreamState(len(units), settings.top_k, settings.reservoir, settings.seed)
    resumed_from = state.next_index
    n_files = len(folder.files)
    ds = _FolderDataset(folder, size, start=state.next_index)
    loader = torch.utils.data.DataLoader(ds, batch_size=settings.batch_size, shuffle=False,
                                         num_workers=settings.workers if len(ds) > settings.batch_size else 0,
                                         pin_memory=model.device.type == "cuda")
    model.set_redirect(False)
    t0 = time.perf_counter()
    batches = 0
    consistent = True  # False while a batch is half merged: such a state is never checkpointed
    try:
        with torch.no_grad(), Capture(model, scorer.layers) as cap:
            for idx, imgs, ok, _w, _h in loader:
                consistent = False
                if ok.any():
                    x = imgs[ok].to(model.device, non_blocking=True).float().div_(255)
                    x = model.preprocess.apply(x).contiguous(memory_format=torch.channels_last)
                    scores, pos = scorer(cap(x))
                    state.update(idx[ok], scores, pos)
                state.unreadable += idx[~ok].tolist()
                state.next_index = int(idx[-1]) + 1
                consistent = True
                batches += 1
                if ckpt is not None and batches % settings.checkpoint_every == 0 and state.next_index < n_files:
                    save_checkpoint(ckpt, state, pid, settings.batch_size)
                if on_batch is not None:
                    on_batch(len(idx))
    except KeyboardInterrupt:
        if ckpt is not None and consistent and state.next_index > resumed_from:
            save_checkpoint(ckpt, state, pid, settings.batch_size)
        raise
    seconds = time.perf_counter() - t0
    if state.seen == 0:
        raise FvError(f"none of the {n_files} image file(s) in {folder.root} could be read "
                      f"(e.g. {folder.files[state.unreadable[0]] if state.unreadable else '?'})")
    if ckpt is not None and state.next_index > resumed_from:
        save_checkpoint(ckpt, state, pid, settings.batch_size)  # kept until write_examples has written every record
    done = n_files - resumed_from
    return ExamplesResult(model, units, folder, settings, size, state, fields, map_sizes, resumed_from, seconds,
                          done / seconds if seconds > 0 else 0.0, folded)
