"""What the gallery knows about a unit beyond its record: HF fraction, dead or alive, and which extras exist.

The gallery sits below the sweep and the examples stages, so it learns about their outputs from the files in the
layer's directory, by name, never by importing them:

  KEY-neg.png                the negative (fvcli/sweep/extras.py, through runner/variants)
  KEY-div0.png ..            diversity facets
  KEY.alpha.png              MACO's alpha (attribution) map (param.maco_alpha)
  KEY.examples.json / .png   dataset examples (`fv examples --out SWEEPDIR`)

HF fraction: the share of the final image's spectral power above 0.25 cycles per pixel, as
fvcli/optvis/metrics.high_frequency_energy (numpy here, same formula; ~0.8 is white noise, natural images are far
lower). It is cached per layer in gallery/cache.json, keyed by the PNG's size and mtime, so re-finalizing a sweep
decodes only new pictures.

Dead units (`DEAD_RULE`): a unit is flagged dead when every score its record holds after the redirected-ReLU phase
(steps > REDIRECT_STEPS; the final score when no snapshot is that late) is at most DEAD_FRACTION of the layer's median
final score (and at most DEAD_ABS in absolute value when that median is ~0): the optimizer found nothing that
excites it once the gradient is no longer redirected.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..outputs import atomic_write_json

HF_CUTOFF = 0.25  # cycles per pixel, as optvis.metrics.HF_CUTOFF
REDIRECT_STEPS = 16  # as optvis.loop.REDIRECT_STEPS: lucid redirects ReLU gradients for the first 16 steps
DEAD_FRACTION = 0.01
DEAD_ABS = 1e-6
DEAD_RULE = (f"every score after step {REDIRECT_STEPS} (the redirected-ReLU phase) is <= {DEAD_FRACTION:g} x the "
             f"layer's median final score (or <= {DEAD_ABS:g})")
CACHE = "gallery/cache.json"  # the gallery's own files keep to a subfolder of the layer's


def hf_fraction(png: Path) -> float | None:
    """Fraction of the image's spectral power above HF_CUTOFF (mean removed, all channels), None if unreadable."""
    try:
        with Image.open(png) as im:
            x = np.asarray(im.convert("RGB"), np.float64).transpose(2, 0, 1) / 255.0
    except OSError:
        return None
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.rfft2(x)) ** 2).sum(axis=0)
    h, w = x.shape[1:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    high = np.sqrt(fx * fx + fy * fy) > HF_CUTOFF
    return round(float((power * high).sum() / max(power.sum(), 1e-12)), 4)


def late_scores(rec: dict) -> list[float]:
    """The record's scores after the redirect phase (the final score when none is that late)."""
    pts = []
    for k, v in (rec.get("scores") or {}).items():
        try:
            pts.append((int(k), float(v)))
        except (TypeError, ValueError):
            continue
    late = [v for s, v in pts if s > REDIRECT_STEPS]
    if not late and rec.get("final_score") is not None:
        late = [float(rec["final_score"])]
    return late


def dead_flags(records: list[dict]) -> list[bool]:
    """DEAD_RULE for each record of one layer."""
    finals = [float(r["final_score"]) for r in records if r.get("final_score") is not None]
    med = float(np.median(finals)) if finals else 0.0
    limit = max(DEAD_FRACTION * med, DEAD_ABS)
    return [bool(late) and max(late) <= limit for late in (late_scores(r) for r in records)]


def layer_facts(d: Path, entries: list[tuple[object, dict | None]]) -> dict[str, dict]:
    """KEY -> {hf, dead, negative, facets, alpha, examples_json, examples_png} for the done units of one layer."""
    try:
        names = set(os.listdir(d))
    except OSError:
        names = set()
    cache_path = d / CACHE
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    new_cache = {}
    done = [(unit, rec) for unit, rec in entries if rec]
    dead = dead_flags([rec for _u, rec in done])
    facts = {}
    for (unit, rec), is_dead in zip(done, dead):
        key = unit.key
        png = d / str(rec.get("png") or f"{key}.png")
        try:
            st = png.stat()
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None
        old = cache.get(key)
        hf = old[2] if isinstance(old, list) and len(old) == 3 and old[:2] == stamp else hf_fraction(png)
        new_cache[key] = [*(stamp or [None, None]), hf]
        facets = []
        while f"{key}-div{len(facets)}.png" in names:
            facets.append(f"{key}-div{len(facets)}.png")
        facts[key] = {
            "hf": hf, "dead": is_dead, "facets": facets,
            "negative": f"{key}-neg.png" if f"{key}-neg.png" in names else None,
            "alpha": f"{key}.alpha.png" if f"{key}.alpha.png" in names else None,
            "examples_json": f"{key}.examples.json" if f"{key}.examples.json" in names else None,
            "examples_png": f"{key}.examples.png" if f"{key}.examples.png" in names else None,
        }
    if new_cache != cache and (done or cache):
        atomic_write_json(cache_path, new_cache)
    return facts
