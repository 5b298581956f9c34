"""Which units fire together: pairs of a layer's units that share their top dataset examples (`fv examples`).

A dataset-examples pass keeps, per unit, the k images of the folder that excite it most (`KEY.examples.json`,
"top"); what it does not keep is every activation, so co-firing is measured on what it keeps. Two units fire
together when the images that drive one to its maximum also drive the other: their score is the Jaccard index of
their top-image sets, |T_a & T_b| / |T_a | T_b|, and a unit page lists its PARTNERS best partners (ties: more shared
images, then the lower channel). An image that is among the top examples of more than HUB units of the layer is left
out of the count: such images (high contrast, saturated colour) excite nearly everything and would link every unit
to every other, as stop words do in text retrieval; leaving them out also bounds the work to
O(units x k x HUB) however the images are shared, never O(units^2).

Computed at finalize from the examples records alone (numpy, one pass over the (unit, image) pairs); without
examples a layer has no co-firing and the unit pages no such section.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PARTNERS = 8
HUB = 128


def read_top_images(d: Path, examples: Sequence[str | None]) -> list[list[str]]:
    """For each examples record name (None: the unit has none), the paths of its top images ([] when unreadable)."""
    out = []
    for name in examples:
        paths: list[str] = []
        if name:
            try:
                rec = json.loads((d / name).read_text())
                paths = [str(x["path"]) for x in rec.get("top") or [] if isinstance(x, dict) and "path" in x]
            except (OSError, ValueError, TypeError):
                paths = []
        out.append(paths)
    return out


def incidence(tops: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, int]:
    """(unit index, image index) of every distinct (unit, top image) pair, and the number of distinct images."""
    ids: dict[str, int] = {}
    us, ims = [], []
    for i, paths in enumerate(tops):
        for p in dict.fromkeys(paths):
            us.append(i)
            ims.append(ids.setdefault(p, len(ids)))
    return np.asarray(us, np.int64), np.asarray(ims, np.int64), len(ids)


def partners(tops: Sequence[Sequence[str]], k: int = PARTNERS, hub: int = HUB) -> list[list[tuple[int, float, int]]]:
    """For each unit (by position in `tops`), up to k (other unit's position, Jaccard, shared images), best first."""
    n = len(tops)
    result: list[list[tuple[int, float, int]]] = [[] for _ in range(n)]
    us, ims, n_img = incidence(tops)
    if not len(us):
        return result
    size = np.bincount(us, minlength=n)  # |T_u|
    per_img = np.bincount(ims, minlength=n_img)
    keep = per_img[ims] <= hub
    us, ims = us[keep], ims[keep]
    if not len(us):
        return result
    order = np.argsort(ims, kind="stable")
    u_sorted, img_sorted = us[order], ims[order]
    counts = np.bincount(img_sorted, minlength=n_img)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rep = counts[img_sorted]  # each entry pairs with every member of its image's group
    a = np.repeat(u_sorted, rep)
    first = np.repeat(np.cumsum(rep) - rep, rep)
    b = u_sorted[np.repeat(starts[img_sorted], rep) + (np.arange(len(a)) - first)]
    mask = a != b
    code, shared = np.unique(a[mask] * n + b[mask], return_counts=True)
    a, b = code // n, code % n
    jac = shared / (size[a] + size[b] - shared)
    o = np.lexsort((b, -shared, -jac, a))  # by unit, then best first
    a, b, jac, shared = a[o], b[o], jac[o], shared[o]
    first_of = np.searchsorted(a, np.arange(n))
    rank = np.arange(len(a)) - first_of[a]
    for i in np.nonzero(rank < k)[0]:
        result[int(a[i])].append((int(b[i]), round(float(jac[i]), 4), int(shared[i])))
    return result
