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
around the position of that maximum (fvcli/receptive.py); a neuron by its activation at its position (cropped the
same way); a class logit or probability (and a DeepDream layer score) by its value, shown as the whole network input.
Crop boxes are stored in the original image's pixel coordinates.

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
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import FvError
from .models import Capture, LoadedModel, prefix_key
from .outputs import atomic_write_bytes, atomic_write_json, grid, png_bytes, versions
from .receptive import ReceptiveField, receptive_field
from .units import Unit, parse_units, split_model_prefix

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
FORMAT = 1  # version of the checkpoint and record layout
SPECTRUM_NAMES = ("minimum", "slightly_negative", "slightly_positive", "maximum")
MAX_LISTED_UNREADABLE = 100  # unreadable files named in the summary (all are counted)


# ----------------------------------------------------------------------------------------------------------------
# Settings, units


@dataclass(frozen=True)
class ExampleSettings:
    """How one pass runs (see recipe.ExamplesRecipe for the documented defaults)."""

    top_k: int = 10
    batch_size: int = 32
    workers: int = 2
    size: int | None = None  # None: the model's native size
    reduce: str = "max"  # channel score over positions: max (the appendix) or mean (what `fv render` optimizes)
    spectrum: tuple[float, float] = (0.4, 0.6)  # quantiles of the slightly negative / slightly positive columns
    reservoir: int = 512
    seed: int = 0
    checkpoint_every: int = 50
    tile: int = 96
    fold_bn: bool = True  # fold BatchNorm into convolutions for the pass (see fold_batchnorm)

    def __post_init__(self) -> None:
        if self.reduce not in ("max", "mean"):
            raise FvError(f"bad reduce {self.reduce!r}: valid max, mean")
        q = tuple(self.spectrum)
        if len(q) != 2 or not 0.0 < q[0] < q[1] < 1.0:
            raise FvError(f"bad examples.spectrum {list(q)}: expected two quantiles 0 < low < high < 1, e.g. [0.4, 0.6]")
        if self.top_k < 1 or self.batch_size < 1 or self.reservoir < 1 or self.checkpoint_every < 1:
            raise FvError("top_k, batch_size, reservoir and checkpoint_every must be positive")

    @classmethod
    def from_recipe(cls, ex) -> ExampleSettings:
        return cls(top_k=ex.top_k, batch_size=ex.batch_size, workers=ex.workers, size=ex.size, reduce=ex.reduce,
                   spectrum=tuple(ex.spectrum), reservoir=ex.reservoir, seed=ex.seed,
                   checkpoint_every=ex.checkpoint_every, tile=ex.tile)


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
# The image folder


@dataclass(frozen=True)
class ImageFolder:
    """The images of a folder, in a fixed order (sorted relative paths), after sampling and limiting."""

    root: Path
    files: tuple[str, ...]  # posix paths relative to root
    ignored: int = 0  # files without an image extension
    total: int = 0  # image files found before sampling / limiting

    def path(self, i: int) -> Path:
        return self.root / self.files[i]

    def signature(self) -> str:
        """Identifies the list (names and sizes) so that a checkpoint is only resumed on the same images."""
        h = hashlib.sha256()
        for f in self.files:
            try:
                size = (self.root / f).stat().st_size
            except OSError:
                size = -1
            h.update(f"{f}\0{size}\n".encode())
        return h.hexdigest()


def list_images(root: str | Path, limit: int | None = None, sample: int | None = None, seed: int = 0,
                exclude: Path | None = None) -> ImageFolder:
    """Every image file under `root` (recursive, hidden entries skipped), sorted; optionally a seeded random sample
    of `sample` of them and then the first `limit`. Raises FvError when there is none."""
    root = Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise FvError(f"images folder {root} does not exist or is not a directory")
    files: list[str] = []
    ignored = 0
    excl = exclude.resolve() if exclude is not None and exclude.exists() else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (excl is None or (d / n).resolve() != excl))
        for name in filenames:
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append((d / name).relative_to(root).as_posix())
            else:
                ignored += 1
    files.sort()
    total = len(files)
    if not files:
        raise FvError(f"no images in {root}: looked recursively for {', '.join(IMAGE_EXTENSIONS)} files"
                      + (f" ({ignored} other file(s) ignored)" if ignored else ""))
    if sample is not None and sample < len(files):
        pick = np.random.default_rng(seed).choice(len(files), size=sample, replace=False)
        files = [files[i] for i in sorted(pick)]
    if limit is not None:
        files = files[:limit]
    return ImageFolder(root, tuple(files), ignored, total)


def square_box(w: int, h: int) -> tuple[float, float, float, float]:
    """The centred square of an image that the network sees (resize shorter side + centre crop), original pixels."""
    s = min(w, h)
    left, top = (w - s) / 2, (h - s) / 2
    return left, top, left + s, top + s


def load_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode `path`, take its centred square and resize it to `size`: (size, size, 3) uint8 and the original (W, H).

    One PIL resize of the square box (bilinear, antialiased), so input pixel u maps exactly to original coordinate
    left + u * side / size. JPEGs are decoded at the smallest 1/2^n scale that keeps the square >= size (draft)."""
    with Image.open(path) as im:
        w, h = im.size
        if w < 1 or h < 1:
            raise ValueError("empty image")
        s = min(w, h)
        if im.format == "JPEG":
            im.draft("RGB", (math.ceil(w * size / s), math.ceil(h * size / s)))
        f = im.size[0] / w  # draft scale (1 when not a JPEG or not reduced)
        box = tuple(v * f for v in square_box(w, h))
        rgb = im.convert("RGB").resize((size, size), Image.BILINEAR, box=box)
        return np.array(rgb, dtype=np.uint8), (w, h)  # a writable copy (torch.from_numpy)


class _FolderDataset(torch.utils.data.Dataset):
    """Items (index, image (3, S, S) uint8, ok, (W, H)); an unreadable file gives ok=False instead of an error."""

    def __init__(self, folder: ImageFolder, size: int, start: int = 0) -> None:
        self.folder, self.size, self.start = folder, size, start

    def __len__(self) -> int:
        return len(self.folder.files) - self.start

    def __getitem__(self, i: int):
        idx = self.start + i
        try:
            arr, (w, h) = load_image(self.folder.path(idx), self.size)
            return idx, torch.from_numpy(arr).permute(2, 0, 1).contiguous(), True, w, h
        except Exception as exc:  # any decoding failure (PIL raises many types): skip and count
            log.debug("unreadable image %s: %s", self.folder.files[idx], exc)
            return idx, torch.zeros(3, self.size, self.size, dtype=torch.uint8), False, 0, 0


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
# The streaming state


def merge_extreme(vals: torch.Tensor, idx: torch.Tensor, pos: torch.Tensor, new_vals: torch.Tensor,
                  new_idx: torch.Tensor, new_pos: torch.Tensor, k: int, largest: bool = True):
    """Merge a batch into a running top-k (largest) or bottom-k: vals/idx/pos (U, k'), new_vals/new_pos (U, B),
    new_idx (B,). Order: by value, ties by the lower image index, so merging is associative and equals a sort of
    everything seen. NaN scores never rank."""
    u = new_vals.shape[0]
    v = torch.cat([vals, new_vals], 1)
    i = torch.cat([idx, new_idx.unsqueeze(0).expand(u, -1)], 1)
    p = torch.cat([pos, new_pos], 1)
    v = torch.where(torch.isnan(v), -math.inf if largest else math.inf, v)
    o = torch.argsort(i, dim=1, stable=True)
    v, i, p = v.gather(1, o), i.gather(1, o), p.gather(1, o)
    o = torch.argsort(v, dim=1, descending=largest, stable=True)[:, :k]
    return v.gather(1, o), i.gather(1, o), p.gather(1, o)


def reservoir_draw(seed: int, index: int, seen: int) -> int:
    """Algorithm R's draw for the image with dataset index `index`, the `seen`-th readable image (0-based):
    uniform in [0, seen], derived from (seed, index) alone so that a resumed pass draws the same numbers."""
    d = hashlib.blake2b(f"fv-examples:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "little") % (seen + 1)


@dataclass
class StreamState:
    """Everything a pass accumulates; bounded by units x (2k + R), never by the number of images."""

    n_units: int
    k: int
    reservoir: int
    seed: int
    next_index: int = 0  # dataset index of the next image to read
    seen: int = 0  # readable images so far
    unreadable: list[int] = field(default_factory=list)
    top: tuple | None = None  # (vals, idx, pos) each (U, <=k)
    bottom: tuple | None = None
    res_idx: torch.Tensor | None = None  # (R,) image index per slot, -1 empty
    res_vals: torch.Tensor | None = None  # (U, R)
    res_pos: torch.Tensor | None = None  # (U, R)
    total: torch.Tensor | None = None  # (U,) float64 sums
    total_sq: torch.Tensor | None = None

    def __post_init__(self) -> None:
        u = self.n_units
        if self.top is None:
            empty = (torch.empty(u, 0), torch.empty(u, 0, dtype=torch.int64), torch.empty(u, 0, dtype=torch.int64))
            self.top, self.bottom = empty, empty
            self.res_idx = torch.full((self.reservoir,), -1, dtype=torch.int64)
            self.res_vals = torch.full((u, self.reservoir), math.nan)
            self.res_pos = torch.full((u, self.reservoir), -1, dtype=torch.int64)
            self.total = torch.zeros(u, dtype=torch.float64)
            self.total_sq = torch.zeros(u, dtype=torch.float64)

    def update(self, indices: torch.Tensor, scores: torch.Tensor, pos: torch.Tensor) -> None:
        """Add a batch of readable images: indices (B,) in increasing order, scores and positions (B, U)."""
        sv, sp = scores.t().contiguous(), pos.t().contiguous()  # (U, B)
        self.top = merge_extreme(*self.top, sv, indices, sp, self.k, largest=True)
        self.bottom = merge_extreme(*self.bottom, sv, indices, sp, self.k, largest=False)
        s64 = sv.double()
        s64 = torch.where(torch.isfinite(s64), s64, 0.0)  # NaN / inf scores do not poison the mean
        self.total += s64.sum(1)
        self.total_sq += s64.pow(2).sum(1)
        slots: dict[int, int] = {}  # reservoir slot -> column of the batch (a later image overwrites an earlier)
        for col, n in enumerate(indices.tolist()):
            slot = self.seen if self.seen < self.reservoir else reservoir_draw(self.seed, n, self.seen)
            if slot < self.reservoir:
                slots[slot] = col
            self.seen += 1
        if slots:
            s = torch.tensor(list(slots))
            c = torch.tensor(list(slots.values()))
            self.res_idx[s] = indices[c]
            self.res_vals[:, s] = sv[:, c]
            self.res_pos[:, s] = sp[:, c]

    def to_dict(self) -> dict:
        return {"n_units": self.n_units, "k": self.k, "reservoir": self.reservoir, "seed": self.seed,
                "next_index": self.next_index, "seen": self.seen, "unreadable": list(self.unreadable),
                "top": list(self.top), "bottom": list(self.bottom), "res_idx": self.res_idx,
                "res_vals": self.res_vals, "res_pos": self.res_pos, "total": self.total, "total_sq": self.total_sq}

    @classmethod
    def from_dict(cls, d: dict) -> StreamState:
        return cls(d["n_units"], d["k"], d["reservoir"], d["seed"], d["next_index"], d["seen"], list(d["unreadable"]),
                   tuple(d["top"]), tuple(d["bottom"]), d["res_idx"], d["res_vals"], d["res_pos"], d["total"],
                   d["total_sq"])

    def spectrum_ranks(self, q: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per unit, the k reservoir entries around quantile q, sorted by value: (vals, idx, pos) each (U, <=k)."""
        filled = self.res_idx >= 0
        vals = self.res_vals[:, filled]
        idx = self.res_idx[filled].unsqueeze(0).expand(self.n_units, -1)
        pos = self.res_pos[:, filled]
        n = vals.shape[1]
        if n == 0:
            return vals, idx, pos
        v = torch.where(torch.isnan(vals), math.inf, vals)
        o = torch.argsort(idx, dim=1, stable=True)
        v, i, p = v.gather(1, o), idx.gather(1, o), pos.gather(1, o)
        o = torch.argsort(v, dim=1, stable=True)
        v, i, p = v.gather(1, o), i.gather(1, o), p.gather(1, o)
        kk = min(self.k, n)
        r = int(round(q * (n - 1)))
        lo = min(max(r - kk // 2, 0), n - kk)
        return v[:, lo:lo + kk], i[:, lo:lo + kk], p[:, lo:lo + kk]


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def pass_id(model: LoadedModel, units: Sequence[Unit], folder: ImageFolder, settings: ExampleSettings,
            size: int) -> str:
    """What determines the result of a pass (not the batch size, workers or checkpoint period)."""
    ident = {"format": FORMAT, "model": model.name, "weights_sha256": model.weights_sha256,
             "preprocess": model.preprocess.describe(), "units": [u.label for u in units], "k": settings.top_k,
             "reservoir": settings.reservoir, "seed": settings.seed, "size": size, "reduce": settings.reduce,
             "fold_bn": settings.fold_bn, "root": str(folder.root.resolve()), "files": folder.signature()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_path(out: Path, pid: str) -> Path:
    return Path(out) / f".examples-{pid}.ckpt"


def save_checkpoint(path: Path, state: StreamState, pid: str, batch_size: int) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "id": pid, "batch_size": batch_size, "state": state.to_dict()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, pid: str) -> tuple[StreamState, int] | None:
    """The checkpointed state and batch size, or None when there is none (or it belongs to another pass)."""
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if d.get("format") != FORMAT or d.get("id") != pid:
            return None
        return StreamState.from_dict(d["state"]), int(d["batch_size"])
    except Exception as exc:  # a damaged checkpoint is not fatal: start again
        log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return None


# ----------------------------------------------------------------------------------------------------------------
# The pass


@dataclass
class ExamplesResult:
    model: LoadedModel
    units: list[Unit]
    folder: ImageFolder
    settings: ExampleSettings
    size: int
    state: StreamState
    fields: dict[str, ReceptiveField | None]  # layer -> receptive field (None: no spatial positions)
    map_sizes: dict[str, tuple[int, int] | None]  # layer -> (H, W) of the activation map at `size`
    resumed_from: int = 0  # images already done by an earlier, interrupted pass
    seconds: float = 0.0
    images_per_second: float = 0.0
    folded_bn: int = 0  # BatchNorms folded into their convolutions for the pass


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


# ----------------------------------------------------------------------------------------------------------------
# Records and grids


def crop_box(res: ExamplesResult, unit: Unit, flat_pos: int, image_size: tuple[int, int]) -> list[float]:
    """The example's box (left, top, right, bottom) in the original image's pixels: the receptive field around the
    position (clipped to what the network saw), or the whole centred square for units without a position."""
    w, h = image_size
    left, top, right, bottom = square_box(w, h)
    rf = res.fields.get(unit.layer)
    ms = res.map_sizes.get(unit.layer)
    if flat_pos < 0 or rf is None or ms is None:
        return [round(v, 2) for v in (left, top, right, bottom)]
    x, y = flat_pos % ms[1], flat_pos // ms[1]
    bx = rf.box(x, y, limit=res.size)
    f = (right - left) / res.size  # input pixels -> original pixels
    return [round(left + bx[0] * f, 2), round(top + bx[1] * f, 2), round(left + bx[2] * f, 2),
            round(top + bx[3] * f, 2)]


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _entries(res: ExamplesResult, j: int, vals: torch.Tensor, idx: torch.Tensor, pos: torch.Tensor,
             sizes: dict[int, tuple[int, int]]) -> list[dict]:
    unit = res.units[j]
    ms = res.map_sizes.get(unit.layer)
    out = []
    for r in range(vals.shape[1]):
        v, i, p = float(vals[j, r]), int(idx[j, r]), int(pos[j, r])
        if not math.isfinite(v):
            continue
        if i not in sizes:
            sizes[i] = _image_size(res.folder.path(i))
        e = {"rank": r, "path": str(res.folder.path(i).resolve()), "relpath": res.folder.files[i], "index": i,
             "activation": v}
        if p >= 0 and ms is not None:
            e["position"] = {"x": p % ms[1], "y": p // ms[1]}
        e["image_size"] = list(sizes[i])
        e["crop_box"] = crop_box(res, unit, p, sizes[i])
        out.append(e)
    return out


def unit_examples(res: ExamplesResult, j: int, sizes: dict[int, tuple[int, int]] | None = None) -> dict:
    """The JSON record of unit j."""
    sizes = {} if sizes is None else sizes
    st, m, u = res.state, res.model, res.units[j]
    n = st.seen
    mean = float(st.total[j]) / n
    var = max(float(st.total_sq[j]) / n - mean * mean, 0.0)
    exact = n <= st.reservoir
    q_lo, q_hi = res.settings.spectrum
    spectrum = {
        "minimum": {"quantile": 0.0, "exact": True, "examples": _entries(res, j, *st.bottom, sizes)},
        "slightly_negative": {"quantile": q_lo, "exact": exact,
                              "examples": _entries(res, j, *st.spectrum_ranks(q_lo), sizes)},
        "slightly_positive": {"quantile": q_hi, "exact": exact,
                              "examples": _entries(res, j, *st.spectrum_ranks(q_hi), sizes)},
        "maximum": {"quantile": 1.0, "exact": True, "examples": _entries(res, j, *st.top, sizes)},
    }
    rf = res.fields.get(u.layer)
    score = {"channel": f"{res.settings.reduce} over positions", "neuron": "activation at the position",
             "logit": "logit", "prob": "softmax probability", "dream": "mean of squared activations"}[u.kind]
    if u.kind == "channel" and res.map_sizes.get(u.layer) is None:
        score = "activation"
    rec = {
        "format": FORMAT, "unit": u.label, "key": u.key, "kind": u.kind, "layer": u.layer, "channel": u.channel,
        "score": score, "top": spectrum["maximum"]["examples"], "bottom": spectrum["minimum"]["examples"],
        "spectrum": spectrum,
        "stats": {"images": n, "mean": mean, "std": math.sqrt(var),
                  "max": spectrum["maximum"]["examples"][0]["activation"] if spectrum["maximum"]["examples"] else None,
                  "min": spectrum["minimum"]["examples"][0]["activation"] if spectrum["minimum"]["examples"] else None},
        "receptive_field": rf.to_dict() if rf is not None else None,
        "images_dir": str(res.folder.root.resolve()), "images": len(res.folder.files), "readable": n,
        "unreadable": len(st.unreadable), "top_k": st.k, "size": res.size, "reservoir": st.reservoir,
        "seed": st.seed, "model": m.name, "weights": m.weights_source, "weights_sha256": m.weights_sha256,
        "preprocess": m.preprocess.describe(), "examples_png": f"{u.key}.examples.png", "versions": versions(),
    }
    if u.kind == "neuron" and u.prefix is None:
        ms = res.map_sizes.get(u.layer)
        if ms is not None:
            rec["position"] = {"x": min(u.x if u.x is not None else ms[1] // 2, ms[1] - 1),
                               "y": min(u.y if u.y is not None else ms[0] // 2, ms[0] - 1)}
    if u.kind in ("logit", "prob"):
        rec["class_label"] = m.label(u.channel)
    return rec


class _ImageCache:
    """A small LRU of decoded originals: the same images top many channels of a layer."""

    def __init__(self, capacity: int = 128) -> None:
        self.capacity, self.items = capacity, OrderedDict()

    def get(self, path: str) -> Image.Image:
        if path in self.items:
            self.items.move_to_end(path)
            return self.items[path]
        with Image.open(path) as im:
            img = im.convert("RGB")
        self.items[path] = img
        if len(self.items) > self.capacity:
            self.items.popitem(last=False)
        return img


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _tile(img: Image.Image, box: Sequence[float], tile: int) -> np.ndarray:
    """The crop, scaled to fit a tile x tile square without distortion (grey margins when the box was clipped)."""
    l, t, r, b = box
    w, h = max(r - l, 1.0), max(b - t, 1.0)
    s = tile / max(w, h)
    crop = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR, box=(l, t, l + w, t + h),
                      reducing_gap=2.0)
    canvas = Image.new("RGB", (tile, tile), (200, 200, 200))
    canvas.paste(crop, ((tile - crop.size[0]) // 2, (tile - crop.size[1]) // 2))
    return np.asarray(canvas)


def examples_grid(rec: dict, tile: int = 96, cache: _ImageCache | None = None) -> np.ndarray:
    """Rows maximum, slightly positive, slightly negative, minimum; each tile the example's crop, its activation below."""
    cache = cache or _ImageCache()
    rows = [("max", rec["spectrum"]["maximum"]),
            (f"q{rec['spectrum']['slightly_positive']['quantile']:.2f}", rec["spectrum"]["slightly_positive"]),
            (f"q{rec['spectrum']['slightly_negative']['quantile']:.2f}", rec["spectrum"]["slightly_negative"]),
            ("min", rec["spectrum"]["minimum"])]
    cols = max(1, max(len(r[1]["examples"]) for r in rows))
    tiles, labels = [], []
    blank = np.full((tile, tile, 3), 255, np.uint8)
    for _name, col in rows:
        exs = col["examples"]
        if col is not rec["spectrum"]["minimum"]:
            exs = sorted(exs, key=lambda e: -e["activation"])  # rows read downwards from high to low; min: lowest first
        for c in range(cols):
            if c < len(exs):
                e = exs[c]
                try:
                    tiles.append(_tile(cache.get(e["path"]), e["crop_box"], tile))
                except (OSError, ValueError):
                    tiles.append(blank)
                labels.append(_fmt(e["activation"]))
            else:
                tiles.append(blank)
                labels.append("")
    return grid(tiles, labels, cols=cols, tile=tile, rows_labels=[r[0] for r in rows])


def is_sweep_dir(out: Path) -> bool:
    """True when `out` is an `fv sweep` directory (examples then go beside each unit's render)."""
    return (Path(out) / "sweep.json").is_file()


def examples_dir(out: Path, unit: Unit) -> Path:
    """Where a unit's KEY.examples.{json,png} go: OUT, or OUT/layers/<layer>/ in a sweep's directory."""
    if is_sweep_dir(out):
        from .sweep import layer_dir

        return layer_dir(out, unit.layer)
    return Path(out)


def refresh_sweep_gallery(out: Path) -> dict | None:
    """Rebuild a sweep directory's sheets, manifest and gallery so that its unit pages show the dataset examples
    just written; the manifest, or None when `out` is no sweep directory."""
    if not is_sweep_dir(out):
        return None
    from .sweep import finalize

    return finalize(Path(out))


def write_examples(out: Path, res: ExamplesResult, on_unit: Callable[[int], None] | None = None,
                   pngs: bool = True) -> dict:
    """Write <key>.examples.json (+ .png) for every unit (in OUT, or beside the renders in a sweep's directory: see
    `examples_dir`) and OUT/examples-summary.json; remove the checkpoint. Returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[int, tuple[int, int]] = {}
    cache = _ImageCache()
    written = []
    for j, u in enumerate(res.units):
        rec = unit_examples(res, j, sizes)
        d = examples_dir(out, u)
        if pngs:
            atomic_write_bytes(d / f"{u.key}.examples.png", png_bytes(examples_grid(rec, res.settings.tile, cache)))
        else:
            rec.pop("examples_png")
        atomic_write_json(d / f"{u.key}.examples.json", rec)
        written.append((d / f"{u.key}.examples.json").relative_to(out).as_posix())
        if on_unit is not None:
            on_unit(j)
    st = res.state
    summary = {
        "format": FORMAT, "images_dir": str(res.folder.root.resolve()), "image_files": res.folder.total,
        "selected": len(res.folder.files), "readable": st.seen, "unreadable": len(st.unreadable),
        "unreadable_files": [res.folder.files[i] for i in st.unreadable[:MAX_LISTED_UNREADABLE]],
        "ignored_non_image_files": res.folder.ignored, "units": len(res.units), "records": written,
        "model": res.model.name, "weights": res.model.weights_source, "weights_sha256": res.model.weights_sha256,
        "size": res.size, "top_k": st.k, "reduce": res.settings.reduce, "spectrum": list(res.settings.spectrum),
        "reservoir": st.reservoir, "quantiles_exact": st.seen <= st.reservoir, "seed": st.seed,
        "batch_size": res.settings.batch_size, "workers": res.settings.workers, "resumed_from": res.resumed_from,
        "folded_batchnorms": res.folded_bn, "threads": torch.get_num_threads(),
        "seconds": round(res.seconds, 3), "images_per_second": round(res.images_per_second, 2),
        "device": str(res.model.device), "versions": versions(),
    }
    atomic_write_json(out / "examples-summary.json", summary)
    ckpt = checkpoint_path(out, pass_id(res.model, res.units, res.folder, res.settings, res.size))
    try:
        ckpt.unlink()
    except FileNotFoundError:
        pass
    return summary
