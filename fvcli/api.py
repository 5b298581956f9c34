"""The Python API: the functions the `fv` commands are built on, for notebooks and scripts.

    import fvcli
    m = fvcli.load_model(net)                       # an nn.Module in memory, or "inceptionv1", "timm:resnet18", ...
    res = fvcli.render(m, "layer4.1:7", steps=256)  # or fvcli.render(net, ...) directly
    res.images      # (N, 3, H, W) float tensor in [0, 1]
    res.pil()       # the same as PIL images (exactly the pixels of the PNGs)
    res.records     # the JSON records `fv render` writes beside its PNGs

`render()` writes files only when `out` is given, and then exactly what `fv render --out DIR` writes: the command
is a thin wrapper over it, so the same recipe and seed give the same PNG bytes from either. The recipe is built
as on the command line: defaults < `recipe` (a file, a configs/ name, a YAML-shaped dict or a Recipe) < `sets`
(`["render.lr=0.1"]`) < keyword arguments (steps=, size=, ...). A module given in memory is copied (fv installs
its own ReLUs and freezes the copy), so the caller's module is left as it was.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import FvError

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

    from .models import LoadedModel
    from .recipe import Recipe


def make_recipe(recipe: Recipe | str | Path | dict | None = None, sets: Sequence[str] = (),
                **overrides: Any) -> Recipe:
    """A validated Recipe: defaults < `recipe` < `sets` items < `overrides` (dotted keys given with `__` or as
    plain render keys: steps=64, size=128, seed=1, batch_size=4, device="cpu", weights="random:0", model=...).
    None values are ignored."""
    from .recipe import Recipe, from_dict, load_recipe, parse_set, set_path

    dotted = {_dotted(k): v for k, v in overrides.items() if v is not None}
    if isinstance(recipe, Recipe) and not sets and not dotted:
        return recipe
    if recipe is None or isinstance(recipe, (str, Path)):
        return load_recipe(str(recipe) if recipe is not None else None, list(sets), dotted)
    if isinstance(recipe, Recipe):
        raw = recipe.to_dict()
    elif isinstance(recipe, dict):
        import copy

        raw = copy.deepcopy(recipe)
    else:
        raise FvError(f"recipe: expected a file, a name in configs/, a dict or a Recipe, got {type(recipe).__name__}")
    for item in sets:
        set_path(raw, *parse_set(item))
    for key, val in dotted.items():
        set_path(raw, key.split("."), val)
    return from_dict(raw)


_SHORT_KEYS = {"model": "model.name", "weights": "model.weights", "steps": "render.steps", "size": "render.size",
               "seed": "render.seed", "lr": "render.lr", "batch_size": "render.batch_size",
               "device": "render.device"}


def _dotted(key: str) -> str:
    return _SHORT_KEYS.get(key, key.replace("__", "."))


def load_model(model: nn.Module | str | None = None, weights: str | None = None, *,
               recipe: Recipe | str | Path | dict | None = None, device: str | None = None, name: str | None = None,
               sets: Sequence[str] = ()) -> LoadedModel:
    """A model ready to render: frozen, on its device, with its catalog of layers (`.catalog`).

    `model`: an nn.Module already in memory (used with its own weights unless `weights` is given; fv works on a
    copy), or a name as `--model` takes it ("inceptionv1", "torchvision:resnet18", "timm:resnet18",
    "path/to/net.py:build", "package.module:build"); None: the recipe's. `weights`: as `--weights` (PATH,
    random:SEED, torchvision, timm). `recipe` gives preprocessing, labels, native size, kwargs (its model
    section) and the device; `name` names an in-memory module in records (default: where its class lives,
    e.g. `__main__:Net`)."""
    from torch import nn

    if isinstance(model, nn.Module):
        name = name or _module_name(model)
    rec = make_recipe(recipe, sets, weights=weights, device=device,
                      model=name or (model if isinstance(model, str) else None))
    return _load(model, rec)


def _module_name(net: nn.Module) -> str:
    from .models.user import module_name

    return module_name(net)


def _load(model: nn.Module | str | None, rec: Recipe) -> LoadedModel:
    from torch import nn

    from .models import load_model as load

    spec = None
    if isinstance(model, nn.Module):
        from .models.user import module_spec

        spec = module_spec(model, rec.model.name)
    elif model is not None and not isinstance(model, str):
        raise FvError(f"model: expected an nn.Module or a model name such as 'inceptionv1', got "
                      f"{type(model).__name__}")
    return load(rec.model_options(), rec.render.device, rec.render.channels_last, spec=spec)


@dataclass
class Picture:
    """One rendered image: its key (file stem), label, image, the record `fv render` writes, and its path."""

    key: str
    label: str
    image: torch.Tensor  # (3, H, W) float in [0, 1], CPU
    record: dict
    png: Path | None = None  # where it was written (None without `out`)
    history: dict[int, torch.Tensor] = field(default_factory=dict)  # render.thresholds: step -> image

    def pil(self) -> Image.Image:
        """The image as PIL: exactly the pixels of the PNG."""
        from PIL import Image

        from .outputs import to_uint8

        return Image.fromarray(to_uint8(self.image))


@dataclass
class Rendering:
    """What `render()` returns: the pictures in rendering order (the units of one layer together; index them by
    key or label with `res["layer4.1:7"]`), plus where files went (if anywhere)."""

    pictures: list[Picture]
    model: LoadedModel
    recipe: Recipe
    batch_size: int
    grid: Path | None = None

    @property
    def images(self) -> torch.Tensor:  # (N, 3, H, W)
        import torch

        return torch.stack([p.image for p in self.pictures])

    @property
    def records(self) -> list[dict]:
        return [p.record for p in self.pictures]

    @property
    def pngs(self) -> list[Path]:
        return [p.png for p in self.pictures if p.png is not None]

    def pil(self) -> list[Image.Image]:
        return [p.pil() for p in self.pictures]

    def __len__(self) -> int:
        return len(self.pictures)

    def __iter__(self) -> Iterator[Picture]:
        return iter(self.pictures)

    def __getitem__(self, i: int | str) -> Picture:
        if isinstance(i, str):
            for p in self.pictures:
                if i in (p.key, p.label):
                    return p
            raise KeyError(i)
        return self.pictures[i]


def render(model: nn.Module | LoadedModel | str | None, units: str | Sequence[Any] | None = None, *,
           steps: int | None = None, size: int | None = None, seed: int | None = None, lr: float | None = None,
           recipe: Recipe | str | Path | dict | None = None, sets: Sequence[str] = (), weights: str | None = None,
           device: str | None = None, batch_size: int | str | None = None, out: str | Path | None = None,
           diversity: int | None = None, diversity_weight: float | None = None, diversity_layer: str | None = None,
           negative: bool = False, both: bool = False, name: str | None = None, progress: bool | None = False,
           on_step: Callable[[int], None] | None = None) -> Rendering:
    """Render units of a model; returns the images and their records, and writes PNG + JSON (+ grid.png) into
    `out` when given, exactly as `fv render`.

    `model`: a LoadedModel (`load_model()`), an nn.Module in memory, a model name as `--model` takes it, or None
    (the recipe's). `units`: one unit string or a list, in `fv render`'s syntax ("layer4.1:7", "layer4:0-7",
    "logit:3", "dream:layer3", expressions); None: the recipe's `units`. Keyword arguments override the recipe
    like the command's flags. `progress`: a tqdm bar on stderr (None: only on a terminal)."""
    from .models import LoadedModel

    if negative and both:
        raise FvError("negative and both exclude each other: both renders the negative and the positive")
    sign = "both" if both else "negative" if negative else None
    if isinstance(model, LoadedModel):
        if weights is not None:
            raise FvError(f"weights {weights!r}: model {model.name} is already loaded; pass weights to load_model")
        name = model.name
    elif name is None and model is not None and not isinstance(model, str):
        from torch import nn

        name = _module_name(model) if isinstance(model, nn.Module) else None
    rec = make_recipe(recipe, sets, model=name or (model if isinstance(model, str) else None), weights=weights,
                      steps=steps, size=size, seed=seed, lr=lr, batch_size=batch_size, device=device,
                      variants__diversity=diversity, variants__diversity_weight=diversity_weight,
                      variants__diversity_layer=diversity_layer, variants__sign=sign)
    texts = [units] if isinstance(units, str) else list(units) if units is not None else list(rec.units)
    if not texts:
        raise FvError("no units given: name some (e.g. 'mixed4a:11') or list them under `units:` in the recipe")
    m = model if isinstance(model, LoadedModel) else _load(model, rec)
    from .units.expr import parse_unit_arg

    parsed = [u for t in texts for u in (parse_unit_arg(t, m) if isinstance(t, str) else [t])]
    return _render_parsed(m, rec, parsed, Path(out) if out is not None else None, progress, on_step)


def _render_parsed(m: LoadedModel, rec: Recipe, parsed: list, out: Path | None, progress: bool | None,
                   on_step: Callable[[int], None] | None) -> Rendering:
    from .runner.batch import plan_batches, resolve_batch_size
    from .runner.job import render_units

    v = rec.variants
    variants = v.diversity > 1 or v.sign != "positive"
    if variants:
        from .runner.variants import n_variant_batches, render_variants

        neg, both = v.sign == "negative", v.sign == "both"
        bs = resolve_batch_size(m, rec, len(parsed) * v.diversity * (2 if both else 1))
        n_batches = n_variant_batches(m, parsed, bs, v.diversity, neg, both)
    else:
        bs = resolve_batch_size(m, rec, len(parsed))
        n_batches = len(plan_batches(parsed, bs))
    with _progress_bar(rec.render.steps * n_batches, f"{len(parsed)} unit(s)", progress) as bar:
        def step(s: int) -> None:
            if bar is not None:
                bar.update(1)
            if on_step is not None:
                on_step(s)

        if variants:
            result = render_variants(m, rec, parsed, out, facets=v.diversity, negative=neg, both=both,
                                     diversity_weight=v.diversity_weight, diversity_layer=v.diversity_layer,
                                     batch_size=bs, on_step=step)
        else:
            result = render_units(m, rec, parsed, out, on_step=step, batch_size=bs)
    pictures = [Picture(it["key"], it["label"], it["image"], it["record"],
                        out / f"{it['key']}.png" if out is not None else None, it["history"])
                for it in result["items"]]
    return Rendering(pictures, m, rec, bs, result["grid"])


def _progress_bar(total: int, desc: str, progress: bool | None):
    if progress is False:
        return contextlib.nullcontext(None)
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=None if progress is None else not progress,
                leave=False, file=sys.stderr)
