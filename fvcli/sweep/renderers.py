"""Sweep renderers: what turns one planned batch into files.

A sweep does not know how a unit is drawn. A `BatchRenderer` maps a planned batch to `UnitOutput`s -- any number of
labelled images and one record per unit -- and the sweep only writes them (fvcli/sweep/directory.py) and lays them out
(fvcli/sweep/finalizer.py). The default `ChannelRenderer` draws one image per unit plus its threshold snapshots;
fvcli/figures/panels.py's appendix renderer draws seven. The renderer's `identity()` is part of the directory's identity,
because it changes the pictures' bytes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..models import LoadedModel
from ..recipe import Recipe
from ..runner.batch import batch_records, run_batch
from ..runner.stream import run_stream, streams
from ..units.unit import Unit
from .plan import PlannedBatch

# ------------------------------------------------------------------------------------------------------------------
# Rendering (pluggable)


@dataclass
class UnitImage:
    label: str  # shown in the gallery: 'final', 'step 32', 'negative', ...
    name: str  # file name in the layer's directory, e.g. mixed4a-00011.png
    image: torch.Tensor | np.ndarray  # (3, H, W) in [0, 1] or (H, W, 3) uint8


@dataclass
class UnitOutput:
    unit: Unit
    images: list[UnitImage]  # the first is the unit's main image (thumbnail, contact sheets)
    record: dict  # runner.unit_record(...) or similar; the sweep adds `images`, `png` and `sweep`


class BatchRenderer(Protocol):
    """Maps one planned batch to outputs; must be deterministic given (model, recipe, batch).

    An optional attribute `images_per_unit` (default 1) makes the plan put batch_size // images_per_unit units in
    each batch."""

    def identity(self) -> dict: ...  # part of the directory's identity (name and options)

    def __call__(self, model: LoadedModel, recipe: Recipe, batch: PlannedBatch,
                 on_step: Callable[[int], None] | None = None) -> list[UnitOutput]: ...


@dataclass(frozen=True)
class ChannelRenderer:
    """The default renderer: each unit's final image (KEY.png) and its threshold snapshots (KEY.stepNNNNN.png)."""

    name: str = "unit"
    images_per_unit: int = 1
    slots: int = 0  # with the recipe's stop.converge: images in flight (the sweep's batch size); not in identity()

    def identity(self) -> dict:
        return {"name": self.name}

    def __call__(self, model: LoadedModel, recipe: Recipe, batch: PlannedBatch,
                 on_step: Callable[[int], None] | None = None) -> list[UnitOutput]:
        if streams(recipe):  # a planned batch of stop.queue units per slot, continuously refilled
            results = list(run_stream(model, recipe, batch.units, self.slots or len(batch.units), on_step))
        else:
            results = [run_batch(model, recipe, batch.units, on_step=on_step)]
        outs = []
        for res in results:
            for b, (u, rec) in enumerate(zip(res.units, batch_records(model, recipe, res))):
                images = [UnitImage("final", f"{u.key}.png", res.snapshots[-1].images[b])]
                images += [UnitImage(f"step {s.step}", f"{u.key}.step{s.step:05d}.png", s.images[b])
                           for s in res.snapshots[:-1]]
                outs.append(UnitOutput(u, images, rec))
        return outs
