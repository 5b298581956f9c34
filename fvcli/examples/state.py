"""The streaming state of a dataset-examples pass, and its checkpoints.

A pass over a large folder must fit in memory and survive being killed, so what it keeps is bounded by
units x (2k + R) whatever the number of images, and merging a batch into it is exact: top-k and bottom-k are a
stable sort by (value, image index), and the reservoir's draw for an image depends only on the seed and the image's
index. Hence a pass resumed from a checkpoint, or run with another batch size, keeps the same extremes as one
uninterrupted pass (see fvcli/examples/scan.py for the method). `pass_id` names what determines the result, so a
checkpoint is only ever resumed by the same pass.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..models import LoadedModel
from ..outputs import atomic_write_bytes
from ..units.unit import Unit

if TYPE_CHECKING:
    from .folder import ImageFolder
    from .settings import ExampleSettings

log = logging.getLogger(__name__)

FORMAT = 1  # version of the checkpoint and record layout


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
             "preprocess": model.preprocess.describe(), "units": [u.label + (f"@{u.source.sha256}" if getattr(u, "source", None) else "") for u in units], "k": settings.top_k,
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
