"""Circuit records for a group of units of one layer: expanded weights and attribution together.

The images a unit's attribution is read on are its visualization (a PNG) and, where `fv examples` ran, the top dataset
examples of its KEY.examples.json (each decoded as the examples pass did: centred square, resized to the size it was
scanned at). The mean over those images ranks the inputs; the record says how many of each there were.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models import LoadedModel
from ..units.unit import Unit
from .attribution import attribution
from .expanded import expanded_weights
from .record import TOP_K, build_record

log = logging.getLogger(__name__)

MAX_EXAMPLES = 8  # top dataset examples a unit's attribution is averaged over


def read_png(path: Path, size: int | None = None) -> torch.Tensor:
    """(3, H, W) in [0, 1] from an image file (resized to size x size when given)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        if size is not None and rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def example_images(examples: dict | None, limit: int = MAX_EXAMPLES) -> list[torch.Tensor]:
    """The top dataset examples of an examples record, as the pass saw them (unreadable files skipped)."""
    if not examples:
        return []
    from ..examples.folder import load_image

    size = int(examples.get("size") or 224)
    out = []
    for e in (examples.get("top") or [])[:limit]:
        try:
            arr, _wh = load_image(Path(e["path"]), size)
        except (OSError, ValueError, KeyError):
            log.warning("dataset example %s cannot be read; left out of the attribution", e.get("path"))
            continue
        out.append(torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0)
    return out


def unit_circuits(model: LoadedModel, units: Sequence[Unit], from_layer: str,
                  renders: Sequence[torch.Tensor | None], examples: Sequence[list[torch.Tensor]] = (),
                  top_k: int = TOP_K) -> list[dict]:
    """The circuit records of `units` (one layer) from `from_layer`: renders[i] is unit i's visualization (3, H, W)
    or None, examples[i] its top dataset examples (same size as each other)."""
    units = list(units)
    examples = list(examples) or [[] for _ in units]
    ew = expanded_weights(model, units[0].layer, [u.channel for u in units], from_layer)
    groups: list[tuple[list[int], torch.Tensor]] = []  # same-size images -> one attribution pass each
    for batch in ([(i, r) for i, r in enumerate(renders) if r is not None],
                  [(i, x) for i, xs in enumerate(examples) for x in xs]):
        by_size: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
        for i, x in batch:
            by_size.setdefault(tuple(x.shape), []).append((i, x))
        for items in by_size.values():
            groups.append(([i for i, _x in items], torch.stack([x for _i, x in items])))
    sums = torch.zeros(len(units), model.layer(from_layer).channels)
    counts = torch.zeros(len(units))
    for owners, images in groups:
        a = attribution(model, units, images, owners, from_layer)
        sums.index_add_(0, torch.tensor(owners), a)
        counts.index_add_(0, torch.tensor(owners), torch.ones(len(owners)))
    records = []
    for i, u in enumerate(units):
        attr = sums[i] / counts[i] if counts[i] > 0 else None
        sources = {"render": renders[i] is not None, "examples": len(examples[i])}
        records.append(build_record(model, u, i, ew, attr, sources, top_k))
    return records
