"""A 2-D map of a layer's units, precomputed at finalize, so a reader finds neighbourhoods among 32,768 features.

Which coordinates, in order of preference:
  1. the dictionary's rows (`--directions` sweeps): each row scaled to unit length (a direction's scale means
     nothing to its objective's argmax), then the first two principal components. Rows that point the same way land
     together. The file is read again at finalize and used only when its sha256 is still the one the sweep recorded
     (a changed file would map other directions); a (C, D) file is read as rows when the swept rows exceed its
     first axis, as the sweep does.
  2. co-firing (`fv examples` ran): the (unit x top image) incidence matrix, rows scaled to unit length, first two
     principal components: units that share top images land together (cofire.py says what is shared).
  3. neither: no map.
Principal components by torch.pca_lowrank with a fixed seed (randomized, so 32,768 x 2,048 takes a second, and the
same input gives the same map). Coordinates are scaled into 0..MAP-1 (one scale for both axes, so distances keep
their aspect) and stored as integers in the layer's index (layer_index.py); the page draws them on a <canvas>.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import FvError
from ..models.weights import file_sha256
from ..units.dictionary import _load  # the raw matrix: the layer's width, which load_dictionary checks, is unknown here
from ..units.unit import Unit
from .cofire import incidence

log = logging.getLogger(__name__)

MAP = 1000  # the map's integer grid


def pca_2d(x: torch.Tensor) -> np.ndarray:
    """(N, 2) first two principal-component coordinates of the rows of x (dense or sparse COO)."""
    n, c = x.shape
    if n < 2:
        return np.zeros((n, 2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        q = min(6, n, c)
        _u, _s, v = torch.pca_lowrank(x, q=q, center=True, niter=4)
    w = v[:, :2]
    if x.is_sparse:  # (x - mean) @ w without making x dense
        mean = torch.sparse.sum(x, 0).to_dense() / n
        xy = (torch.sparse.mm(x, w) - mean @ w).numpy()
    else:
        xy = ((x - x.mean(0, keepdim=True)) @ w).numpy()
    if xy.shape[1] < 2:
        xy = np.concatenate([xy, np.zeros((n, 2 - xy.shape[1]))], 1)
    for j in range(2):  # a sign convention: the column's largest magnitude is positive
        if xy[np.abs(xy[:, j]).argmax(), j] < 0:
            xy[:, j] = -xy[:, j]
    return xy


def quantize(xy: np.ndarray) -> np.ndarray:
    """Coordinates into integers 0..MAP-1, one scale for both axes (centred on the shorter one)."""
    lo, hi = xy.min(0), xy.max(0)
    span = float(max((hi - lo).max(), 1e-12))
    q = (xy - lo) / span * (MAP - 1)
    q += ((MAP - 1) - (hi - lo) / span * (MAP - 1)) / 2
    return np.clip(np.rint(q), 0, MAP - 1).astype(np.int64)


def dictionary_rows(units: Sequence[Unit]) -> torch.Tensor | None:
    """The (N, C) rows the units were rendered from, unit length; None if any unit is not a direction or its file
    is gone or changed since the sweep."""
    if not units or any(u.kind != "direction" or u.source is None for u in units):
        return None
    mats: dict = {}
    for src in {u.source for u in units}:
        try:
            if file_sha256(Path(src.path)) != src.sha256:
                log.info("dictionary %s changed since the sweep: no map from its rows", src.path)
                return None
            m = _load(src).matrix
        except (OSError, FvError) as exc:
            log.info("dictionary %s unreadable (%s): no map from its rows", src.path, exc)
            return None
        top = max(u.channel for u in units if u.source == src)
        if top >= m.shape[0]:
            m = m.T
        if top >= m.shape[0]:
            return None
        mats[src] = m
    widths = {m.shape[1] for m in mats.values()}
    if len(widths) != 1:
        return None
    rows = torch.stack([mats[u.source][u.channel] for u in units]).to(torch.float32)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


def layer_map(units: Sequence[Unit], tops: Sequence[Sequence[str]] | None) -> tuple[str, list | None] | None:
    """(what the map is made of, [[x, y] or None per unit]) or None when there is nothing to make it of."""
    rows = dictionary_rows(units)
    if rows is not None and len(units) >= 2:
        return "dictionary rows (PCA)", quantize(pca_2d(rows)).tolist()
    if tops is None:
        return None
    us, ims, n_img = incidence(tops)
    have = np.unique(us)
    if len(have) < 2 or n_img < 2:
        return None
    pos = {int(u): i for i, u in enumerate(have)}
    r = torch.tensor([pos[int(u)] for u in us])
    size = torch.bincount(r, minlength=len(have)).to(torch.float32)
    vals = 1.0 / size[r].sqrt()
    x = torch.sparse_coo_tensor(torch.stack([r, torch.from_numpy(ims)]), vals, (len(have), n_img)).coalesce()
    q = quantize(pca_2d(x))
    out: list = [None] * len(units)
    for i, u in enumerate(have):
        out[int(u)] = q[i].tolist()
    return "co-firing on top dataset examples (PCA)", out
