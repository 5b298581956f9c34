"""What a dataset-examples pass writes: one JSON record and one PNG grid per unit, and a summary of the pass.

The records are the result (paths, activations, crop boxes in the original image's pixels, model and weights
checksum); the grids are for looking at them -- rows maximum, slightly positive, slightly negative, minimum, the
article's spectrum -- and are drawn from the records alone. In a sweep's directory a unit's files go beside its
render, so the gallery's unit page shows the optimized image and the dataset examples together. The checkpoint is
removed only after every record is written, so an interrupted write resumes instead of starting the pass again.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models import LoadedModel
from ..models.receptive import ReceptiveField
from ..outputs import atomic_write_bytes, atomic_write_json, grid, png_bytes, versions
from ..units.unit import Unit
from .folder import ImageFolder, square_box
from .settings import ExampleSettings
from .state import FORMAT, StreamState, checkpoint_path, pass_id

SPECTRUM_NAMES = ("minimum", "slightly_negative", "slightly_positive", "maximum")
MAX_LISTED_UNREADABLE = 100  # unreadable files named in the summary (all are counted)


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
             "logit": "logit", "prob": "softmax probability", "dream": "mean of squared activations",
             "direction": f"projection onto the row, {res.settings.reduce} over positions"}[u.kind]
    if u.kind in ("channel", "direction") and res.map_sizes.get(u.layer) is None:
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
    if u.kind == "direction":  # ranked by the projection onto the dictionary's row
        rec["class_label"] = u.row_name(m)
        rec["dictionary"] = u.source.to_dict()
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
        from ..sweep import layer_dir

        return layer_dir(out, unit.layer)
    return Path(out)


def refresh_sweep_gallery(out: Path) -> dict | None:
    """Rebuild a sweep directory's sheets, manifest and gallery so that its unit pages show the dataset examples
    just written; the manifest, or None when `out` is no sweep directory."""
    if not is_sweep_dir(out):
        return None
    from ..sweep import finalize

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
