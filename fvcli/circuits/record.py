"""A unit's circuit record: its strongest inputs in an earlier layer by both methods, with their kernels.

One JSON object per unit (KEY.circuit.json beside its render in a sweep, or beside `fv circuit`'s figure):

  unit, key, layer, channel, from, from_channels, top_k, model, weights_sha256
  expanded     {path, bypassed, kept, exact, position, footprint, weights (one signed sum per input channel),
                excitatory [[channel, weight], ...], inhibitory [...]}          (expanded.py)
  attribution  {images: {render, examples}, values (one per input channel, mean over the images),
                excitatory [...], inhibitory [...]}  or null without images  (attribution.py)
  kernels      {"CHANNEL": [[...]]} for every channel either method ranks: the expanded-weight kernel on the
               footprint (rows top to bottom); kernel_max is the largest |value| among them (the figures' colour scale)

Excitatory: the K largest positive values, strongest first; inhibitory: the K most negative. Every float is rounded
to 6 significant digits, so a record is a function of the numbers and not of their last bits (resumed sweeps write
the same bytes). The gallery reads these files by name (fvcli/gallery/circuit_section.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models import LoadedModel
from ..units.unit import Unit
from .expanded import ExpandedWeights

FORMAT = 1
TOP_K = 4  # inputs per sign: the Circuits figures show a handful


def circuit_name(key: str) -> str:
    """The record's file name for unit KEY."""
    return f"{key}.circuit.json"


def r6(v: float) -> float:
    return float(f"{float(v):.6g}")


def ranked(values: Sequence[float], k: int) -> tuple[list[list], list[list]]:
    """([[channel, value]] of the k largest positive values, of the k most negative), strongest first."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    exc = [[i, values[i]] for i in order[:k] if values[i] > 0]
    inh = [[i, values[i]] for i in reversed(order[-k:]) if values[i] < 0] if k else []
    inh.sort(key=lambda p: (p[1], p[0]))
    return exc, inh


def build_record(model: LoadedModel, unit: Unit, n: int, ew: ExpandedWeights, attr: torch.Tensor | None,
                 sources: dict, top_k: int = TOP_K) -> dict:
    """The record of `unit`, row n of `ew`; `attr` its (C_A,) mean attribution (None: no images)."""
    weights = [r6(v) for v in ew.weights()[n].tolist()]
    exc, inh = ranked(weights, top_k)
    expanded = {"path": list(ew.path), "bypassed": ew.bypassed, "kept": ew.kept, "exact": ew.exact,
                "position": list(ew.position) if ew.position else None, "footprint": list(ew.footprint(n)),
                "weights": weights, "excitatory": exc, "inhibitory": inh}
    attribution = None
    shown = {c for c, _v in exc + inh}
    if attr is not None:
        values = [r6(v) for v in attr.tolist()]
        a_exc, a_inh = ranked(values, top_k)
        attribution = {"images": sources, "values": values, "excitatory": a_exc, "inhibitory": a_inh}
        shown |= {c for c, _v in a_exc + a_inh}
    kernels = {str(c): [[r6(v) for v in row] for row in ew.kernel(n, c).tolist()] for c in sorted(shown)}
    kmax = max((abs(v) for k in kernels.values() for row in k for v in row), default=0.0)
    return {"format": FORMAT, "unit": unit.label, "key": unit.key, "layer": unit.layer, "channel": unit.channel,
            "from": ew.from_layer, "from_channels": len(weights), "top_k": top_k, "model": model.name,
            "weights_sha256": model.weights_sha256, "expanded": expanded, "attribution": attribution,
            "kernels": kernels, "kernel_max": r6(kmax)}


def top_inputs(rec: dict, method: str = "expanded") -> list[tuple[int, float]]:
    """(channel, value) of the record's excitatory then inhibitory inputs by `method` (expanded | attribution;
    attribution falls back to expanded when the record has none)."""
    part = rec.get(method) or rec["expanded"]
    return [(int(c), float(v)) for c, v in part["excitatory"] + part["inhibitory"]]
