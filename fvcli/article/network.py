"""Which network the article's figures are made with, and which units they show.

The article used GoogLeNet (InceptionV1). Its weights cannot always be downloaded, so without `--model` or
`--recipe` the figures use, in order: InceptionV1 when its weights are in the cache; else the real ImageNet
MobileNetV2 in ../shared (recipe `mobilenet_v2`) when present; else fv's own offline demo model. The choice, and why,
is logged and printed on the page (`Network.note`).

Units: on InceptionV1 the article's own (mixed4a:476 and mixed4a:460 from the interpolation figure, mixed4a:97 from
the diversity figure); elsewhere a channel of the main layer about 60 % of the way up, picked by the seed, and its
neighbour. `--unit` and `--class` override them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace

from ..errors import FvError
from ..models import LoadedModel, expected_weights_path, get_spec
from ..optvis.loop import derive_seed
from ..recipe import Recipe, load_recipe
from ..units.unit import Unit, parse_units
from .core import Network

log = logging.getLogger(__name__)

IV1_UNITS = ("mixed4a:476", "mixed4a:460", "mixed4a:97")  # the article's interpolation and diversity units
CLASS_NAMES = ("flamingo", "goldfish", "strawberry")  # a class whose look everyone knows, when the labels have it
LAYER_DEPTH = 0.6  # how far up the main layers the default unit sits
DEMO_SIZE = 64  # the demo model's native size


def inceptionv1_cached() -> bool:
    path = expected_weights_path(get_spec("inceptionv1"))
    return path is not None and path.is_file()


def mobilenet_available() -> bool:
    try:
        rec = load_recipe("mobilenet_v2")
    except FvError:
        return False
    return rec.model.weights is not None and os.path.isfile(rec.model.weights)


def choose_network(recipe: str | None, sets: list[str], overrides: dict) -> Network:
    """The recipe to use (defaults < recipe file < --set < overrides) and a note saying which network and why."""
    requested = recipe is not None or overrides.get("model.name") is not None
    if requested:
        rec = _demo_size(load_recipe(recipe, sets, overrides), sets, overrides)
        return Network(rec, f"network {rec.model.name} (as requested)", True)
    if inceptionv1_cached():
        return Network(load_recipe(None, sets, overrides), "network inceptionv1, the article's (weights cached)", False)
    if mobilenet_available():
        rec = load_recipe("mobilenet_v2", sets, overrides)
        return Network(rec, "InceptionV1 weights are not cached (`fv weights fetch inceptionv1`): using the real "
                            "ImageNet MobileNetV2 (recipe mobilenet_v2) instead", False)
    rec = _demo_size(load_recipe(None, sets, {**overrides, "model.name": "demo"}), sets, overrides)
    return Network(rec, "InceptionV1 weights are not cached and the real MobileNetV2 is not in ../shared: using "
                        "fv's offline demo model instead", False)


def _demo_size(rec: Recipe, sets: list[str], overrides: dict) -> Recipe:
    """The demo model renders at its native 64 px unless a size was asked for."""
    asked = overrides.get("render.size") is not None or any(x.startswith("render.size=") for x in sets)
    if rec.model.name != "demo" or asked or rec.render.size != Recipe().render.size:
        return rec
    return replace(rec, render=replace(rec.render, size=DEMO_SIZE))


def _one(text: str, model: LoadedModel, what: str) -> Unit:
    units = parse_units(text, model)
    if len(units) != 1 or units[0].kind != "channel":
        raise FvError(f"bad {what} {text!r}: expected one channel LAYER:CHANNEL, e.g. {model.main_layers[0]}:3")
    return units[0]


def default_units(model: LoadedModel, seed: int, unit: str | None = None) -> tuple[Unit, Unit, Unit]:
    """(main unit, second unit of the same layer, diversity unit)."""
    if unit is not None:
        a = _one(unit, model, "--unit")
        b = Unit("channel", a.layer, (a.channel + 1) % model.layer(a.layer).channels)
        return a, b, a
    if model.name == "inceptionv1":
        a, b, d = (_one(t, model, "unit") for t in IV1_UNITS)
        return a, b, d
    spatial = [n for n in model.main_layers if model.layer(n).spatial is not None] or list(model.main_layers)
    layer = spatial[round(LAYER_DEPTH * (len(spatial) - 1))]
    n = model.layer(layer).channels
    ch = derive_seed(seed, model.name, "article-unit") % n
    a = Unit("channel", layer, ch)
    return a, Unit("channel", layer, (ch + 1) % n), a


def default_class(model: LoadedModel, cls: str | None = None) -> int:
    if cls is not None:
        return model.class_index(cls)
    if model.labels:
        for name in CLASS_NAMES:
            try:
                return model.class_index(name)
            except FvError:
                continue
    return 1 % model.num_classes


def make_context(network: Network, model: LoadedModel, *, steps_scale: float = 1.0, unit: str | None = None,
                 cls: str | None = None, images=None):
    """The figures' context for `model` (loaded from `network.recipe`)."""
    from pathlib import Path

    from .core import Context

    if not 0 < steps_scale <= 100:
        raise FvError(f"bad steps scale {steps_scale!r}: expected a number in (0, 100]")
    if images is not None and not Path(images).is_dir():
        raise FvError(f"--images {images}: not a directory")
    a, b, d = default_units(model, network.recipe.render.seed, unit)
    return Context(model, network.recipe, network, a, b, d, default_class(model, cls), steps_scale,
                   Path(images) if images is not None else None)
