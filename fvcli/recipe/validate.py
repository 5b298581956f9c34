"""Recipe validation: a raw YAML-shaped mapping -> a `Recipe`, or an FvError naming the bad key and the valid ones.

Generic over the dataclasses of fvcli/recipe/schema.py: each section's keys, types and bounds are read from the
dataclass fields, so a new key needs no code here. A few cross-key checks (preprocessing, model kwargs, a spatial
gradient preconditioner needing the pixel param, layouts) run after the sections are built, so a bad combination is
a recipe error at load time, not a late surprise in the middle of a sweep.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

from ..errors import FvError, did_you_mean
from ..models import parse_layouts
from ..optvis.preconditioners import SPATIAL as SPATIAL_PRECONDITIONERS
from ..optvis.transforms import PRESETS
from .chains import parse_transforms
from .values import num, num_list
from .schema import (
    DEFAULT_DECAY,
    ExamplesRecipe,
    GradientRecipe,
    InterpolationRecipe,
    ModelRecipe,
    ParamRecipe,
    Recipe,
    RegularizerRecipe,
    RenderRecipe,
    StopRecipe,
    VariantsRecipe,
)

# ------------------------------------------------------------------------------------------------------------------
# generic section validation


def _check_value(v: Any, tp: Any, path: str, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(v, a, path, meta)
            except FvError as e:
                errors.append(str(e))
        head = f"recipe key {path}: "  # a word: each alternative's complaint ("expected an integer ... or ...");
        said = errors if isinstance(v, str) else errors[:1]  # a number: the number's
        raise FvError(head + " or ".join(e.removeprefix(head) for e in said) if said else f"{head}bad value {v!r}")
    if tp is bool:
        if not isinstance(v, bool):
            raise FvError(f"recipe key {path}: expected true or false, got {v!r}")
        return v
    if tp is int or tp is float:
        lo = meta.get("lo") if meta.get("lo") is not None else -math.inf
        hi = meta.get("hi") if meta.get("hi") is not None else math.inf
        x = num(v, path, lo, hi, integer=tp is int)
        return float(x) if tp is float else int(x)
    if tp is str:
        if not isinstance(v, str) or len(v) > 4096 or "\x00" in v:
            raise FvError(f"recipe key {path}: expected a string, got {v!r}")
        choices = meta.get("choices")
        if choices and v not in choices:
            raise FvError(f"recipe key {path}: {v!r} is not one of {', '.join(choices)}{did_you_mean(v, choices)}")
        return v
    if tp is dict:
        if not isinstance(v, dict):
            raise FvError(f"recipe key {path}: expected a mapping, got {v!r}")
        return v
    if origin is tuple:
        if not isinstance(v, (list, tuple)) or len(v) > 10_000:
            raise FvError(f"recipe key {path}: expected a list, got {v!r}")
        return tuple(_check_value(x, args[0], f"{path}[{i}]", meta) for i, x in enumerate(v))
    raise FvError(f"recipe key {path}: unsupported value {v!r}")  # pragma: no cover


def _build_section(cls: type, raw: Any, path: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise FvError(f"recipe key {path}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, v in raw.items():
        if key not in names:
            raise FvError(f"unknown recipe key {path}.{key}{did_you_mean(str(key), names)}; "
                          f"valid keys of {path}: {', '.join(names)}")
        f = next(f for f in dataclasses.fields(cls) if f.name == key)
        kwargs[key] = _check_value(v, hints[key], f"{path}.{key}", dict(f.metadata))
    return cls(**kwargs)


def _check_preprocess(p: dict | None) -> None:
    if p is None:
        return
    if "value_range" in p and set(p) == {"value_range"}:
        vr = p["value_range"]
        if not (isinstance(vr, list) and len(vr) == 2):
            raise FvError("recipe key model.preprocess.value_range: expected [low, high]")
        num_list(vr, "model.preprocess.value_range", -1e6, 1e6)
        return
    if set(p) == {"mean", "std"}:
        for k in ("mean", "std"):
            if not (isinstance(p[k], list) and len(p[k]) == 3):
                raise FvError(f"recipe key model.preprocess.{k}: expected three numbers [r, g, b]")
            num_list(p[k], f"model.preprocess.{k}", -1e6, 1e6)
        if any(s == 0 for s in p["std"]):
            raise FvError("recipe key model.preprocess.std: must not contain 0")
        return
    raise FvError(f"recipe key model.preprocess: expected {{value_range: [lo, hi]}} or {{mean: [..], std: [..]}}, "
                  f"got keys {sorted(p)}")


def _check_kwargs(kwargs: dict | None) -> None:
    if kwargs is None:
        return
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise FvError(f"recipe key model.kwargs: keys must be argument names, got {bad}")
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError):
        raise FvError(f"recipe key model.kwargs: values must be plain YAML (numbers, strings, lists, mappings), "
                      f"got {kwargs!r}") from None


SECTIONS = {"model": ModelRecipe, "render": RenderRecipe, "param": ParamRecipe, "regularizers": RegularizerRecipe,
            "examples": ExamplesRecipe, "variants": VariantsRecipe, "interpolation": InterpolationRecipe,
            "gradient": GradientRecipe, "stop": StopRecipe}
TOP_KEYS = tuple(SECTIONS) + ("transforms", "units")


def from_dict(raw: Any) -> Recipe:
    """Validate a raw (YAML-shaped) mapping into a Recipe."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise FvError(f"recipe must be a mapping with keys {', '.join(TOP_KEYS)}, got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_KEYS:
            raise FvError(f"unknown recipe key {key}{did_you_mean(str(key), TOP_KEYS)}; valid: {', '.join(TOP_KEYS)}")
    kw: dict[str, Any] = {name: _build_section(cls, raw.get(name), name) for name, cls in SECTIONS.items()}
    _check_preprocess(kw["model"].preprocess)
    _check_kwargs(kw["model"].kwargs)
    pre = kw["gradient"].precondition
    if pre in SPATIAL_PRECONDITIONERS and kw["param"].kind != "pixel":
        raise FvError(f"recipe key gradient.precondition: {pre!r} reshapes an image-shaped gradient and needs "
                      f"param.kind: pixel (got {kw['param'].kind!r}); with any param use one of: none, sign")
    ren = kw["render"]
    if kw["stop"].converge and (ren.coarse or ren.coarse_steps not in (0, "auto")):  # (auto: none in a stream)
        raise FvError("recipe keys stop.converge and render.coarse cannot be combined (a continuously refilled "
                      "batch renders at one size): set one of them off")
    par = kw["param"]
    if par.decay_ramp and par.decay_from != par.decay_power and (par.decay_from, par.decay_ramp) != DEFAULT_DECAY:
        if par.kind != "fourier":  # a schedule the recipe wrote (the default one is simply not a pixel's)
            raise FvError(f"recipe keys param.decay_from / param.decay_ramp schedule a Fourier spectrum's decay; "
                          f"param.kind is {par.kind!r}: set param.kind: fourier or param.decay_ramp: 0")
    if par.init_std is not None and par.kind == "maco":
        raise FvError(f"recipe key param.init_std={par.init_std} sets the initial noise of a fourier or pixel param; "
                      f"param.kind is 'maco' (its phase starts at random, its magnitudes are fixed): "
                      f"set param.kind: fourier or pixel, or remove param.init_std")
    parse_layouts(kw["model"].layouts)  # validates now: a bad layout is a recipe error, not a late surprise
    kw["transforms"] = parse_transforms(raw["transforms"]) if "transforms" in raw else PRESETS["strong"]
    units = raw.get("units") or []
    if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
        raise FvError("recipe key units: expected a list of unit strings such as 'mixed4a:11'")
    kw["units"] = tuple(units)
    return Recipe(**kw)
