"""Recipes: YAML -> frozen, validated dataclasses.

Precedence: defaults < YAML file < `--set key=value` < explicit CLI flags. Every key has a type and bounds; an unknown
or mistyped key is an FvError naming its dotted path and the valid keys. Relative paths in a recipe file
(`model.weights`, `model.labels`) are relative to that file. `Recipe.hash()` identifies everything that changes the
pictures (not the batch size, device or unit list), so sweeps can resume safely.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import FvError, did_you_mean
from .models import ModelOptions, Preprocess, parse_layouts
from .named_recipes import CONFIG_DIR, named_recipes  # noqa: F401  (CONFIG_DIR: for callers)
from .preconditioners import KINDS as PRECONDITIONERS, SPATIAL as SPATIAL_PRECONDITIONERS, GradientSpec
from .loop import LoopSettings
from .recipe_transforms import parse_transforms, transforms_to_yaml
from .recipe_values import MAX_SIZE, num, num_list
from .transforms import PRESETS, Step, at_size


# Documented bounds: large enough for any real use, small enough that a typo cannot exhaust the machine.
MAX_STEPS = 100_000
MAX_BATCH = 1024


def _bounds(lo: float | None = None, hi: float | None = None, choices: tuple | None = None) -> dict:
    return {"lo": lo, "hi": hi, "choices": choices}


@dataclass(frozen=True)
class ModelRecipe:
    # a registered model (`fv weights list`), torchvision:NAME, timm:NAME, path/to/net.py:CALLABLE, pkg.mod:CALLABLE
    name: str = "inceptionv1"
    weights: str | None = None  # None: the model's default; PATH; random:SEED; torchvision; timm
    num_classes: int | None = field(default=None, metadata=_bounds(1, 100_000))
    preprocess: dict | None = None  # {value_range: [lo, hi]} or {mean: [r,g,b], std: [r,g,b]}
    labels: str | None = None  # labels file: line i names class i
    redirect_relu: bool | None = None  # None: the model's default (on for inceptionv1, as lucid)
    kwargs: dict | None = None  # keyword arguments of the model's callable (user code, timm.create_model)
    weights_key: str | None = None  # the key holding the state_dict in a checkpoint dict (None: found)
    native_size: int | None = field(default=None, metadata=_bounds(8, MAX_SIZE))  # None: the model's (user: 224)
    # {layer or glob: nchw | nhwc | tokens | vector, or {layout: tokens, prefix: N, grid: [H, W]}}; None: detected
    layouts: dict | None = None


@dataclass(frozen=True)
class RenderRecipe:
    steps: int = field(default=512, metadata=_bounds(1, MAX_STEPS))
    lr: float = field(default=0.05, metadata=_bounds(1e-6, 100.0))  # Adam learning rate (the article: 0.05)
    size: int = field(default=224, metadata=_bounds(8, MAX_SIZE))
    batch_size: int | str = field(default="auto", metadata=_bounds(1, MAX_BATCH))  # or "auto"
    seed: int = field(default=0, metadata=_bounds(0, 2**62))
    thresholds: tuple[int, ...] = ()  # extra snapshot steps (the last step is always one)
    device: str = field(default="auto", metadata=_bounds(choices=("auto", "cpu", "cuda")))
    channels_last: bool = True
    precision: str = field(default="fp32", metadata=_bounds(choices=("fp32", "bf16", "fp16")))  # bf16: CUDA+CPU; fp16: CUDA
    compile: bool = False  # torch.compile the step (for CUDA; slower on the CPU); not hashed: same pictures
    # the render size the transforms' pixel amounts (pad, jitter, blur) are written for: at another size they are
    # scaled by size / transforms_at_size, the same relative strength (None: used as written, the article's way)
    transforms_at_size: int | None = field(default=224, metadata=_bounds(8, MAX_SIZE))


@dataclass(frozen=True)
class ParamRecipe:
    kind: str = field(default="fourier", metadata=_bounds(choices=("fourier", "pixel", "maco")))
    decorrelate: bool = True  # lucid's color decorrelation
    sigmoid: bool = True
    decay_power: float = field(default=1.0, metadata=_bounds(0.0, 4.0))  # spectrum scale 1/f**decay_power
    spectrum: str | None = None  # maco: magnitude spectrum file from `fv spectrum` (None: fitted 1/f**alpha)
    maco_alpha: bool = False  # maco: also write the transparency map KEY.alpha.png


@dataclass(frozen=True)
class RegularizerRecipe:
    l1: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # weight of the L1 penalty
    l1_constant: float = field(default=0.5, metadata=_bounds(0.0, 1.0))
    tv: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # weight of the total-variation penalty
    blur: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # weight of lucid's blur-each-step term
    bilateral: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # the same with a bilateral filter (edges kept)


@dataclass(frozen=True)
class GradientRecipe:
    """A gradient preconditioner applied before every optimizer step (fvcli/preconditioners.py)."""

    precondition: str = field(default="none", metadata=_bounds(choices=PRECONDITIONERS))  # blur/laplacian: pixel param
    sigma: float = field(default=1.0, metadata=_bounds(0.1, 64.0))  # blur: Gaussian sigma in pixels
    levels: int = field(default=4, metadata=_bounds(1, 12))  # laplacian: pyramid levels


@dataclass(frozen=True)
class ExamplesRecipe:
    """`fv examples` (dataset examples, fvcli/examples.py); not part of Recipe.hash(): it changes no rendering."""

    images: str | None = None  # folder of images (ImageFolder or flat, recursive); relative to the recipe file
    top_k: int = field(default=10, metadata=_bounds(1, 1000))  # examples kept at each end of every unit
    limit: int | None = field(default=None, metadata=_bounds(1, 10**9))  # first N images (after sampling)
    sample: int | None = field(default=None, metadata=_bounds(1, 10**9))  # a random sample of N images ...
    seed: int = field(default=0, metadata=_bounds(0, 2**62))  # ... drawn with this seed (also the reservoir's)
    batch_size: int = field(default=32, metadata=_bounds(1, MAX_BATCH))
    workers: int = field(default=2, metadata=_bounds(0, 64))  # data-loader processes (0: load in the main one)
    size: int | None = field(default=None, metadata=_bounds(8, MAX_SIZE))  # None: the model's native size
    reduce: str = field(default="max", metadata=_bounds(choices=("max", "mean")))  # channel score over positions
    spectrum: tuple[float, ...] = field(default=(0.4, 0.6), metadata=_bounds(0.0, 1.0))  # slightly -/+ quantiles
    reservoir: int = field(default=512, metadata=_bounds(16, 1_000_000))  # sampled scores per unit for quantiles
    checkpoint_every: int = field(default=50, metadata=_bounds(1, 10**9))  # batches between checkpoints
    tile: int = field(default=96, metadata=_bounds(16, 1024))  # grid tile size in pixels


@dataclass(frozen=True)
class VariantsRecipe:
    """Several pictures per unit (`fv render --diversity/--negative/--both`, `fv sweep --panels`)."""

    diversity: int = field(default=1, metadata=_bounds(1, 64))  # facets per unit rendered jointly (1: off)
    diversity_weight: float = field(default=1e2, metadata=_bounds(0.0, 1e6))  # lucid's notebooks: 1e2
    diversity_layer: str | None = None  # layer of the Gram matrices (None: the unit's own layer)
    sign: str = field(default="positive", metadata=_bounds(choices=("positive", "negative", "both")))
    panels: str = field(default="none", metadata=_bounds(choices=("none", "appendix")))  # fv sweep only


@dataclass(frozen=True)
class InterpolationRecipe:
    """`fv interpolate A B`: frames and the alignment term (the article's interpolation section)."""

    frames: int = field(default=6, metadata=_bounds(2, 64))
    align_layer: str | None = None  # None: the main layer before A's
    align_weight: float = field(default=0.1, metadata=_bounds(0.0, 1e6))  # "a small alignment objective"; 0: off
    align_decay: float = field(default=2.0, metadata=_bounds(1e-6, 1e6))  # lucid's decay_ratio


@dataclass(frozen=True)
class Recipe:
    model: ModelRecipe = ModelRecipe()
    render: RenderRecipe = RenderRecipe()
    param: ParamRecipe = ParamRecipe()
    transforms: tuple[Step, ...] = PRESETS["strong"]  # the `quality` recipe's (README: quality on ImageNet)
    regularizers: RegularizerRecipe = RegularizerRecipe()
    units: tuple[str, ...] = ()  # units to render when the command line names none
    examples: ExamplesRecipe = ExamplesRecipe()  # `fv examples` settings (not hashed)
    variants: VariantsRecipe = VariantsRecipe()  # diversity facets, negatives, appendix panels
    interpolation: InterpolationRecipe = InterpolationRecipe()  # `fv interpolate`
    gradient: GradientRecipe = GradientRecipe()  # gradient preconditioner (default: none)

    # -- derived views --------------------------------------------------------------------------------------
    def model_options(self) -> ModelOptions:
        pre = None
        if self.model.preprocess:
            p = self.model.preprocess
            pre = Preprocess(value_range=tuple(p["value_range"])) if "value_range" in p else Preprocess(
                mean=tuple(p["mean"]), std=tuple(p["std"]))
        m = self.model
        return ModelOptions(m.name, m.weights, m.num_classes, pre, m.labels, m.redirect_relu, m.kwargs,
                            m.weights_key, m.native_size, layouts=parse_layouts(m.layouts))

    def loop_settings(self) -> LoopSettings:
        r, p = self.render, self.param
        return LoopSettings(steps=r.steps, lr=r.lr, size=r.size, thresholds=r.thresholds, param=p.kind,
                            decorrelate=p.decorrelate, sigmoid=p.sigmoid, decay_power=p.decay_power,
                            transforms=at_size(self.transforms, r.size, r.transforms_at_size), spectrum=p.spectrum, maco_alpha=p.maco_alpha,
                            channels_last=r.channels_last, precision=r.precision,
                            compile=r.compile, gradient=GradientSpec(**dataclasses.asdict(self.gradient)))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["transforms"] = transforms_to_yaml(self.transforms)
        d["render"]["thresholds"] = list(self.render.thresholds)
        d["units"] = list(self.units)
        d["examples"]["spectrum"] = list(self.examples.spectrum)
        return d

    def hash(self) -> str:
        """sha256 (16 hex) of what determines the pictures: not batch size, device or unit list."""
        d = self.to_dict()
        d["render"].pop("batch_size")
        d["render"].pop("device")
        d["render"].pop("compile")  # same pictures up to float rounding, like the device
        r = self.render
        if at_size(self.transforms, r.size, r.transforms_at_size) == self.transforms:  # scaling changes nothing
            d["render"].pop("transforms_at_size")  # (at its size, no pixel amounts, or null): the hash it always had
        d.pop("units")
        d.pop("examples")
        for key in _NEWER_MODEL_KEYS:  # unset, they add nothing: recipes written before them keep their hash
            if d["model"].get(key) is None:
                d["model"].pop(key)
        if self.regularizers.bilateral == 0:  # recipes from before the key existed keep their hash
            d["regularizers"].pop("bilateral")
        d["param"].pop("maco_alpha")  # an extra output, same pictures
        if self.param.spectrum is None:  # keys added with MACO: recipes without it keep their hash
            d["param"].pop("spectrum")
        for name, cls in (("variants", VariantsRecipe), ("interpolation", InterpolationRecipe),
                          ("gradient", GradientRecipe)):
            if getattr(self, name) == cls():  # at their defaults they add nothing: plain recipes keep their hash
                d.pop(name)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


_NEWER_MODEL_KEYS = ("kwargs", "weights_key", "native_size", "layouts")


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
        raise FvError(errors[0] if errors else f"recipe key {path}: bad value {v!r}")
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
        if cls is RenderRecipe and key == "batch_size" and v == "auto":
            kwargs[key] = v
            continue
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
            "gradient": GradientRecipe}
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
    parse_layouts(kw["model"].layouts)  # validates now: a bad layout is a recipe error, not a late surprise
    kw["transforms"] = parse_transforms(raw["transforms"]) if "transforms" in raw else PRESETS["strong"]
    units = raw.get("units") or []
    if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
        raise FvError("recipe key units: expected a list of unit strings such as 'mixed4a:11'")
    kw["units"] = tuple(units)
    return Recipe(**kw)


def resolve_recipe_path(name: str) -> Path:
    """A recipe file path, or a bare name of a file in configs/ (e.g. `article`)."""
    p = Path(os.path.expanduser(name))
    if p.is_file():
        return p
    known = named_recipes()
    if "/" not in name and name in known:
        return known[name]
    raise FvError(f"recipe {name!r} not found: not a file, nor a named recipe ({', '.join(known) or 'none shipped'}; "
                  f"`fv recipe list`)")


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FvError(f"cannot read recipe {path}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FvError(f"malformed YAML in recipe {path}{where}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FvError(f"recipe {path} must be a mapping with keys {', '.join(TOP_KEYS)}")
    base = path.resolve().parent
    model = raw.get("model")
    if isinstance(model, dict):  # relative paths in a recipe are relative to the recipe file
        for key in ("weights", "labels"):
            v = model.get(key)
            named = v in ("torchvision", "timm") or str(v).startswith("random:")
            if isinstance(v, str) and v and not named and not os.path.isabs(os.path.expanduser(v)):
                model[key] = str((base / v).resolve())
        v = model.get("name")
        if isinstance(v, str) and ".py:" in v and not os.path.isabs(os.path.expanduser(v)):  # path/to/net.py:build
            model["name"] = str((base / v).resolve())
    par = raw.get("param")
    if isinstance(par, dict) and isinstance(par.get("spectrum"), str) and par["spectrum"] and not os.path.isabs(
            os.path.expanduser(par["spectrum"])):
        par["spectrum"] = str((base / par["spectrum"]).resolve())
    ex = raw.get("examples")
    if isinstance(ex, dict) and isinstance(ex.get("images"), str) and ex["images"] and not os.path.isabs(
            os.path.expanduser(ex["images"])):
        ex["images"] = str((base / ex["images"]).resolve())
    return raw


def parse_set(item: str) -> tuple[list[str], Any]:
    """`render.steps=64` -> (['render', 'steps'], 64); the value is read as a YAML scalar or list."""
    if "=" not in item:
        raise FvError(f"bad --set {item!r}: expected key=value, e.g. render.steps=64")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise FvError(f"bad --set {item!r}: empty key part in {key!r}")
    try:
        val = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        val = value
    return parts, val


def set_path(raw: dict, parts: list[str], value: Any) -> None:
    cur = raw
    for i, p in enumerate(parts[:-1]):
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise FvError(f"bad override {'.'.join(parts)}: {'.'.join(parts[: i + 1])} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def load_recipe(path: str | None = None, sets: list[str] | tuple[str, ...] = (),
                overrides: dict[str, Any] | None = None) -> Recipe:
    """defaults < YAML file < `--set` items < explicit overrides ({'render.steps': 64, ...})."""
    raw = copy.deepcopy(read_yaml(resolve_recipe_path(path))) if path else {}
    for item in sets:
        parts, val = parse_set(item)
        set_path(raw, parts, val)
    for key, val in (overrides or {}).items():
        if val is not None:
            set_path(raw, key.split("."), val)
    return from_dict(raw)


def to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
