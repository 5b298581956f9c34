"""`fv circuit UNIT`: compute a unit's circuit (and its inputs' circuits, with --depth) and draw the figure.

Pictures come from the cheapest place that has them: a sweep directory rendered with the same weights
(OUT/layers/LAYER/KEY.png, `--sweep DIR`), then pictures this command rendered before with the same recipe
(OUT/pictures-RECIPEHASH/), else they are rendered now with the recipe (all missing units of a level in one call).
The records go beside the figure (OUT/KEY-from-LAYER.circuit.json, one per unit whose inputs were computed), and
the figure is OUT/circuit-KEY-from-LAYER[-depthN][-attribution].svg and .png.

Level 1 reads the unit's inputs from `--from` (default: the main layer before the unit's layer); each deeper level
reads from the main layer before the previous one. Below level 1 each input keeps its `BRANCH` strongest inputs (by
|value|), so a depth-2 figure stays readable.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import FvError
from ..models import LoadedModel
from ..outputs import atomic_write_bytes, atomic_write_json
from ..recipe import Recipe
from ..runner.job import render_units
from ..sweep import layer_dir, read_json
from ..units.unit import Unit, safe_name
from .compute import example_images, read_png, unit_circuits
from .figure import Node, layout, to_png, to_svg
from .record import TOP_K, circuit_name, top_inputs
from .sweep_job import source_layer

log = logging.getLogger(__name__)

BRANCH = 2  # inputs kept per unit below the first level
METHODS = ("expanded", "attribution")
KINDS = ("channel", "logit", "neuron")


@dataclass(frozen=True)
class CircuitFigure:
    svg: Path
    png: Path
    records: list[Path]
    rendered: int  # pictures rendered by this call
    reused: int  # pictures found in the sweep directory or an earlier call's folder


class _Pictures:
    """Pictures of units: from the sweep, from an earlier call, or rendered now (and kept for the next call)."""

    def __init__(self, model: LoadedModel, recipe: Recipe, out: Path, sweep: Path | None) -> None:
        self.model, self.recipe, self.sweep = model, recipe, sweep
        self.cache = out / f"pictures-{recipe.hash()}"
        self.rendered = self.reused = 0
        self._counted: set[Unit] = set()
        if sweep is not None:
            doc = read_json(sweep / "sweep.json")
            if doc is None:
                raise FvError(f"--sweep {sweep}: no sweep.json there; name a directory `fv sweep --out` wrote")
            if doc.get("weights_sha256") != model.weights_sha256:
                raise FvError(f"--sweep {sweep} was rendered with other weights (sha256 "
                              f"{str(doc.get('weights_sha256'))[:12]}) than {model.name}'s {model.weights_sha256[:12]}")

    def path(self, u: Unit) -> Path | None:
        places = [layer_dir(self.sweep, u.layer)] if self.sweep else []
        for p in [d / f"{u.key}.png" for d in places + [self.cache]]:
            if p.is_file():
                return p
        return None

    def get(self, units: list[Unit]) -> dict[Unit, np.ndarray]:
        missing = [u for u in dict.fromkeys(units) if self.path(u) is None]
        self.reused += len(set(units) - self._counted - set(missing))
        self._counted |= set(units)
        if missing:
            render_units(self.model, self.recipe, missing, self.cache)
            self.rendered += len(missing)
        out = {}
        for u in units:
            with Image.open(self.path(u)) as im:
                out[u] = np.asarray(im.convert("RGB"))
        return out

    def examples(self, u: Unit) -> list:
        if self.sweep is None:
            return []
        p = layer_dir(self.sweep, u.layer) / f"{u.key}.examples.json"
        try:
            return example_images(json.loads(p.read_text())) if p.is_file() else []
        except (OSError, ValueError):
            return []


def _records(model: LoadedModel, pics: _Pictures, units: list[Unit], src: str, top_k: int) -> list[dict]:
    pics.get(units)  # rendered now where missing
    renders = [read_png(pics.path(u)) for u in units]
    return unit_circuits(model, units, src, renders, [pics.examples(u) for u in units], top_k)


def circuit_figure(model: LoadedModel, recipe: Recipe, unit: Unit, out: Path, *, from_layer: str | None = None,
                   depth: int = 1, top_k: int = TOP_K, method: str = "expanded",
                   sweep: Path | None = None) -> CircuitFigure:
    """The figure (SVG and PNG) and records of `unit`'s circuit, `depth` layers down (see the module docstring)."""
    if unit.kind not in KINDS or unit.channel is None:
        raise FvError(f"fv circuit draws a channel, neuron or logit unit, not {unit.label!r}")
    if method not in METHODS:
        raise FvError(f"unknown method {method!r}: valid {', '.join(METHODS)}")
    if not 1 <= depth <= 3:
        raise FvError(f"bad depth {depth}: expected 1-3")
    out = Path(out)
    pics = _Pictures(model, recipe, out, sweep)
    src = source_layer(model, unit.layer, from_layer)
    if src is None:
        raise FvError(f"{unit.layer!r} has no earlier main layer to read inputs from" if from_layer is None else
                      f"--from {from_layer!r} is not before {unit.layer!r} in {model.name}")
    written: list[Path] = []
    level: list[tuple[Unit, str]] = [(unit, src)]  # (unit, the layer its inputs are read from)
    edges: dict[Unit, list[tuple[Unit, float, tuple]]] = {}
    for d in range(depth):
        by_src: dict[str, list[Unit]] = {}
        for u, s in level:
            by_src.setdefault(s, []).append(u)
        level = []
        for s, us in by_src.items():
            us = list(dict.fromkeys(us))
            for u, rec in zip(us, _records(model, pics, us, s, top_k)):
                path = out / circuit_name(safe_name(f"{u.key}-from-{s}"))
                atomic_write_json(path, rec)
                written.append(path)
                picked = top_inputs(rec, method)
                if d:
                    picked = sorted(picked, key=lambda p: -abs(p[1]))[:BRANCH]
                deeper = source_layer(model, s, None) if d + 1 < depth else None
                for c, v in picked:
                    child = Unit("channel", s, c)
                    edges.setdefault(u, []).append((child, v, tuple(tuple(r) for r in rec["kernels"][str(c)])))
                    if deeper is not None:
                        level.append((child, deeper))
        if not level:
            break
    every = [unit] + [c for kids in edges.values() for c, _v, _k in kids]
    pictures = pics.get(every)

    def node(u: Unit, v: float = 0.0, kernel: tuple | None = None, seen: frozenset = frozenset()) -> Node:
        kids = tuple(node(c, cv, ck, seen | {u}) for c, cv, ck in edges.get(u, []) if c not in seen)
        name = model.label(u.channel) if u.kind in ("logit", "prob") else None
        return Node(u.label + (f" {name}" if name else ""), pictures.get(u), v, kernel, kids,
                    f"{v:+.3g}" if kernel is not None else "")

    deep = f", depth {depth}" if depth > 1 else ""
    canvas = layout(node(unit), f"{unit.label} <- {src} ({model.name}, {method}{deep})",
                    "edges: red excitatory, blue inhibitory, width = strength; heatmap on an edge: the expanded-weight "
                    "kernel on the input layer")
    stem = safe_name(f"circuit-{unit.key}-from-{src}" + (f"-depth{depth}" if depth > 1 else "")
                     + (f"-{method}" if method != "expanded" else ""))
    svg, png = out / f"{stem}.svg", out / f"{stem}.png"
    atomic_write_bytes(svg, to_svg(canvas).encode())
    atomic_write_bytes(png, to_png(canvas))
    log.info("circuit of %s: %d picture(s) rendered, %d reused", unit.label, pics.rendered, pics.reused)
    return CircuitFigure(svg, png, written, pics.rendered, pics.reused)
