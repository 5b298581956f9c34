"""The Distill appendix's panel rows: for each channel, neuron, channel, negative and four diversity facets.

The appendix of the article shows every channel of GoogLeNet as one row of pictures. `render_panels` renders those
rows (for `fv render`-style output and the article's appendix figure) and `PanelRenderer` is the same row as a sweep
renderer (`fv sweep --panels appendix`). Each panel is a variant of the channel (fvcli/runner/variants.py), named and
seeded as the corresponding `fv render` output, so a panel is the picture `fv render` makes for it; the seven
variants of a row form one block and are never split across batches (the facets are coupled).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import FvError
from ..models import LoadedModel
from ..outputs import atomic_write_json, grid, save_png, to_uint8
from ..recipe import Recipe
from ..runner.batch import resolve_batch_size
from ..runner.variants import (
    DIVERSITY_WEIGHT,
    Variant,
    check_weight,
    plan_variant_batches,
    run_variant_batch,
    variant_record,
)
from ..units.unit import Unit

APPENDIX_FACETS = 4  # the Distill appendix shows 4 diversity images per channel
PANEL_NAMES = ("neuron", "channel", "channel-negative") + tuple(f"channel-diversity-{i}" for i in range(APPENDIX_FACETS))


def panel_variants(unit: Unit, facets: int = APPENDIX_FACETS) -> list[Variant]:
    """The appendix row of one channel: neuron, channel, negative, diversity facets."""
    if unit.kind != "channel":
        raise FvError(f"appendix panels need channel units (e.g. mixed4a:11), got {unit.label}")
    blk = unit.key
    return ([Variant(Unit("neuron", unit.layer, unit.channel), panel="neuron", block=blk),
             Variant(unit, panel="channel", block=blk),
             Variant(unit, "neg", -1.0, panel="channel-negative", block=blk)]
            + [Variant(unit, f"div{i}", 1.0, i, facets, panel=f"channel-diversity-{i}", block=blk)
               for i in range(facets)])


# ------------------------------------------------------------------------------------------------------------------
# Appendix panel rows (for sweeps)


@dataclass
class Panel:
    """One cell of an appendix row."""

    name: str  # one of PANEL_NAMES
    key: str  # file stem, e.g. mixed4a-00011-neg
    image: torch.Tensor  # (3, H, W) float in [0, 1], CPU: the final snapshot
    seed: int
    activation: float  # the unit's own objective on the final image (low for the negative)
    gram_cosine: float | None  # diversity facets: mean Gram cosine to the other facets
    record: dict  # the JSON record, as `fv render` writes it
    history: dict[int, torch.Tensor] = field(default_factory=dict)  # earlier thresholds: step -> image


@dataclass
class PanelRow:
    unit: Unit
    panels: list[Panel]  # in PANEL_NAMES order
    seconds: float  # the row's share of its batch's time


def render_panels(model: LoadedModel, recipe: Recipe, units: Sequence[Unit], *, facets: int = APPENDIX_FACETS,
                  diversity_weight: float = DIVERSITY_WEIGHT, diversity_layer: str | None = None,
                  batch_size: int | None = None, on_step: Callable[[int], None] | None = None) -> Iterator[PanelRow]:
    """Render the appendix row (neuron, channel, channel-negative, channel-diversity-0..N-1) of each channel
    unit, several channels per batch (`batch_size` images; a row is never split), yielding rows as their batch
    finishes, in the order of `units` within each layer (layers in first-appearance order)."""
    check_weight(diversity_weight)
    if diversity_layer is not None:
        model.layer(diversity_layer)
    rows = {u.key: panel_variants(u, facets) for u in units}
    per_row = 3 + facets
    bs = batch_size or max(per_row, resolve_batch_size(model, recipe, per_row * len(units)))
    flat = [v for vs in rows.values() for v in vs]
    by_key = {u.key: u for u in units}
    for batch in plan_variant_batches(flat, bs):
        res = run_variant_batch(model, recipe, batch, diversity_weight, diversity_layer, on_step)
        index = {v.key: b for b, v in enumerate(batch)}
        for ukey in dict.fromkeys(v.block for v in batch):
            panels = []
            for v in rows[ukey]:
                b = index[v.key]
                panels.append(Panel(v.panel, v.key, res.snapshots[-1].images[b], res.seeds[b], res.activation[b],
                                    res.gram_cosine[b], variant_record(model, recipe, res, b),
                                    {s.step: s.images[b] for s in res.snapshots[:-1]}))
            yield PanelRow(by_key[ukey], panels, res.seconds * len(panels) / len(batch))


def panel_strip(row: PanelRow, tile: int | None = None, labels: bool = True) -> np.ndarray:
    """One row of tiles (H, W, 3) uint8, labelled with the panel names, as the appendix lays them out."""
    return grid([to_uint8(p.image) for p in row.panels],
                [p.name.replace("channel-", "") for p in row.panels] if labels else None,
                cols=len(row.panels), tile=tile)


def write_panel_row(out_dir: Path, row: PanelRow, tile: int | None = None) -> list[Path]:
    """KEY.png + KEY.json per panel (as `fv render` names them) and UNITKEY-panels.png, the labelled strip."""
    out_dir = Path(out_dir)
    paths = []
    for p in row.panels:
        for step, img in p.history.items():
            save_png(out_dir / f"{p.key}.step{step:05d}.png", img)
        save_png(out_dir / f"{p.key}.png", p.image)
        atomic_write_json(out_dir / f"{p.key}.json", p.record)
        paths.append(out_dir / f"{p.key}.png")
    strip = out_dir / f"{row.unit.key}-panels.png"
    save_png(strip, panel_strip(row, tile))
    return paths + [strip]


# ------------------------------------------------------------------------------------------------------------------
# Appendix panels in sweeps (`fv sweep --panels appendix`)


@dataclass(frozen=True)
class PanelRenderer:
    """A sweep renderer (sweep.BatchRenderer) drawing each channel's appendix row: neuron, channel, negative
    channel and `facets` diversity facets, in batches (a row is never split).

    The unit's main image (thumbnail, contact sheets) is its channel panel; the unit's record is the channel
    panel's record plus `panels`, one entry per panel (name, file, seed, activation, Gram cosine), and the files
    include the labelled strip KEY-panels.png (the appendix's row)."""

    facets: int = APPENDIX_FACETS
    diversity_weight: float = DIVERSITY_WEIGHT
    diversity_layer: str | None = None
    name: str = "appendix"

    @property
    def images_per_unit(self) -> int:
        return 3 + self.facets

    def identity(self) -> dict:
        return {"name": self.name, "facets": self.facets, "diversity_weight": self.diversity_weight,
                "diversity_layer": self.diversity_layer}

    def __call__(self, model: LoadedModel, recipe: Recipe, batch, on_step=None) -> list:
        from ..sweep import UnitImage, UnitOutput

        check_weight(self.diversity_weight)
        units = list(batch.units)
        rows = {u.key: panel_variants(u, self.facets) for u in units}
        flat = [v for vs in rows.values() for v in vs]
        res = run_variant_batch(model, recipe, flat, self.diversity_weight, self.diversity_layer, on_step)
        index = {v.key: b for b, v in enumerate(flat)}
        outs = []
        for u in units:
            order = sorted(rows[u.key], key=lambda v: v.panel != "channel")  # the channel panel first
            row = PanelRow(u, [], 0.0)
            images, panels_doc = [], []
            for v in order:
                b = index[v.key]
                img = res.snapshots[-1].images[b]
                images.append(UnitImage(v.panel, f"{v.key}.png", img))
                panels_doc.append({"panel": v.panel, "png": f"{v.key}.png", "seed": res.seeds[b],
                                   "objective": res.objectives[b].describe(), "activation": res.activation[b],
                                   "gram_cosine": res.gram_cosine[b],
                                   "scores": {str(s.step): float(s.scores[b]) for s in res.snapshots}})
            for v in rows[u.key]:  # the strip in the appendix's order
                b = index[v.key]
                row.panels.append(Panel(v.panel, v.key, res.snapshots[-1].images[b], res.seeds[b],
                                        res.activation[b], res.gram_cosine[b], {}))
            images.append(UnitImage("appendix row", f"{u.key}-panels.png", panel_strip(row)))
            rec = variant_record(model, recipe, res, index[u.key])
            rec["seconds"] = round(res.seconds * len(rows[u.key]) / len(flat), 4)  # the row's share
            rec["panels"] = panels_doc
            rec["panels_png"] = f"{u.key}-panels.png"
            outs.append(UnitOutput(u, images, rec))
        return outs
