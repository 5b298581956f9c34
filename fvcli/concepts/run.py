"""`fv concepts`: find K concept directions of a layer from a folder of images, as a dictionary `fv sweep` can render.

The pass streams the folder with the dataset-examples reader (fvcli/examples/folder.py: the same centred square at
the model's size, the same DataLoader workers and the same BatchNorm folding as `fv examples`), captures the layer
channel-first (so NCHW, NHWC and token layers alike give samples of C numbers: each spatial position or patch token
of each image is one sample) and feeds minibatches to a streaming factorization (fvcli/concepts/factorize.py).
Memory is bounded by one batch of activations plus the factorization's statistics, whatever the folder's size.

The images are visited in a seeded random order rather than the folder's sorted one: an ImageFolder layout is
sorted by class, and an online method that saw one class first would initialize every concept on it.

NMF and k-means then make a second pass with the dictionary fixed, to measure exactly how much of the activations it
explains (PCA's fraction comes from its eigenvalues, no second pass). `write_concepts` writes OUT.npy (K, C)
float32, OUT.json (method, layer, model, fraction of variance explained, relative reconstruction error, per-concept
shares, time, images) and OUT.names.txt (one name per row: what `fv sweep --directions OUT.npy` shows).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import FvError
from ..examples.folder import ImageFolder, _FolderDataset
from ..examples.scan import fold_batchnorm
from ..models import Capture, LoadedModel
from ..outputs import atomic_write_bytes, atomic_write_json, versions
from ..units.dictionary_stats import stats_document, stats_path
from .factorize import Measure, make_factorizer


@dataclass
class ConceptsResult:
    dictionary: torch.Tensor  # (K, C) float32
    report: dict = field(default_factory=dict)


def shuffled(folder: ImageFolder, seed: int) -> ImageFolder:
    """The same files in a seeded random order (so a class-sorted folder does not reach the factorization in runs)."""
    perm = np.random.default_rng(seed).permutation(len(folder.files))
    return replace(folder, files=tuple(folder.files[i] for i in perm))


def _samples(a: torch.Tensor, max_positions: int | None, g: torch.Generator) -> torch.Tensor:
    """Channel-first activations (B, C, H, W) or (B, C) -> samples (n, C): one per position of each image."""
    if a.dim() == 2:
        return a.float()
    b, c, h, w = a.shape
    x = a.float().permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, HW, C)
    if max_positions is not None and h * w > max_positions:
        idx = torch.stack([torch.randperm(h * w, generator=g)[:max_positions] for _ in range(b)])
        x = x.gather(1, idx[:, :, None].expand(-1, -1, c))
    return x.reshape(-1, c)


def _stream(model: LoadedModel, layer: str, folder: ImageFolder, size: int, batch_size: int, workers: int,
            max_positions: int | None, seed: int, on_batch: Callable[[int], None] | None):
    """Yield (n, C) sample batches of `layer` over `folder`; the same samples on every pass (seeded)."""
    g = torch.Generator().manual_seed(seed)
    ds = _FolderDataset(folder, size)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                         num_workers=workers if len(ds) > batch_size else 0)
    with torch.no_grad(), Capture(model, [layer]) as cap:
        for _idx, imgs, ok, _w, _h in loader:
            if ok.any():
                x = imgs[ok].to(model.device).float().div_(255)
                x = model.preprocess.apply(x).contiguous(memory_format=torch.channels_last)
                yield _samples(cap(x)[layer], max_positions, g)
            if on_batch is not None:
                on_batch(len(imgs))


def run_concepts(model: LoadedModel, layer: str, folder: ImageFolder, k: int, method: str = "nmf", *,
                 batch_size: int = 32, size: int | None = None, seed: int = 0, workers: int = 2,
                 max_positions: int | None = None, measure: bool = True,
                 on_batch: Callable[[int], None] | None = None) -> ConceptsResult:
    """Factorize `layer`'s activations over `folder` into `k` directions (see the module docstring)."""
    info = model.layer(layer)
    if k > info.channels and method != "kmeans":
        raise FvError(f"--k {k} is more than layer {info.name}'s {info.channels} channels; valid 1-{info.channels}")
    size = size or model.native_size
    fac = make_factorizer(method, k, seed)
    net, _ = fold_batchnorm(model, keep=[info.name])
    order = shuffled(folder, seed)
    t0 = time.perf_counter()
    args = (net, info.name, order, size, batch_size, workers, max_positions, seed, on_batch)
    for x in _stream(*args):
        fac.partial_fit(x)
    d = fac.finish()  # (K, C)
    fit_s = time.perf_counter() - t0
    report = {"format": "fv-concepts/1", "method": method, "k": k, "layer": info.name, "layout": info.layout,
              "channels": info.channels, "model": model.name, "weights_sha256": model.weights_sha256,
              "images_dir": str(folder.root.resolve()), "images": len(folder.files), "size": size, "seed": seed,
              "batch_size": batch_size, "max_positions_per_image": max_positions, **fac.info()}
    if method == "pca":
        top, total = float(fac.eigenvalues.sum()), fac.total_variance
        n, sxx = fac.n, float(fac.ss.diagonal().sum())
        sse = n * (total - top)
        report.update({"samples": n, "fraction_of_variance_explained": top / total if total > 0 else 0.0,
                       "relative_reconstruction_error": (sse / sxx) ** 0.5 if sxx > 0 else 0.0,
                       "share_per_concept": [round(float(v) / top, 6) for v in fac.eigenvalues] if top else []})
    elif measure:
        m = Measure(method, d)
        for x in _stream(*args):
            m.update(x)
        report.update(m.result())
    t1 = time.perf_counter()
    report.update({"seconds_fit": round(fit_s, 2), "seconds_total": round(t1 - t0, 2),
                   "passes": 1 if method == "pca" or not measure else 2, "versions": versions()})
    return ConceptsResult(d, report)


def concept_names(res: ConceptsResult) -> list[str]:
    """`nmf 0 (21.4%)`: the method, the row and its share of the reconstruction; an SAE's features by how often
    they fire: `sae 12 (fires 1.3%)`, `sae 40 (dead)`."""
    stats = res.report.get("feature_stats")
    if stats:
        dead = set(stats["dead"])
        return [f"{res.report['method']} {i} " + ("(dead)" if i in dead else f"(fires {100 * f:.2g}%)")
                for i, f in enumerate(stats["frequency"])]
    shares = res.report.get("share_per_concept") or []
    return [f"{res.report['method']} {i}" + (f" ({100 * shares[i]:.1f}%)" if i < len(shares) else "")
            for i in range(res.dictionary.shape[0])]


def write_concepts(out: Path, res: ConceptsResult) -> dict[str, Path]:
    """OUT.npy (K, C) float32, OUT.json (the report) and OUT.names.txt (and, for an SAE, OUT.curve.json: the training
    curve); returns their paths."""
    out = Path(out)
    if out.suffix != ".npy":
        raise FvError(f"bad output {out}: the dictionary is written as a .npy file, e.g. -o concepts.npy")
    import io

    buf = io.BytesIO()
    np.save(buf, res.dictionary.numpy().astype(np.float32))
    atomic_write_bytes(out, buf.getvalue())
    js, names = out.with_suffix(".json"), out.with_name(out.stem + ".names.txt")
    atomic_write_bytes(names, ("\n".join(concept_names(res)) + "\n").encode())
    report = dict(res.report)
    files = {"npy": out, "json": js, "names": names}
    curve = report.pop("curve", None)
    if curve is not None:
        files["curve"] = out.with_name(out.stem + ".curve.json")
        atomic_write_json(files["curve"], {"layer": report["layer"], "method": report["method"], **curve})
        report["curve"] = files["curve"].name
    st = report.get("feature_stats")
    if st:  # an SAE measured its features: the sidecar the gallery sorts and filters by (units/dictionary_stats.py)
        files["stats"] = stats_path(out)
        atomic_write_json(files["stats"], stats_document(st["frequency"], st["mean_when_firing"], st["dead"]))
    atomic_write_json(js, {**report, "dictionary": out.name, "names": names.name})
    return files
