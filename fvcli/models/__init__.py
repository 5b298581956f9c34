"""The model zoo: a registry of model specs, loading with weights, the layer catalog and activation capture.

A `ModelSpec` says how to build a network, how to map an image in [0, 1] to its input, its native size, its labels
and where its weights come from. `load_model()` returns a `LoadedModel`: the frozen network on its device plus its
`catalog` of addressable layers (catalog.py: name -> module path, layout, channels, position grid at the native size).
`Capture` (capture.py) hooks only the layers an objective needs, stops the forward pass as soon as they are all seen
(truncation) and hands every activation over channel-first, whatever its layout.

Registered: `inceptionv1` (the article's network), `demo` (a small network fv trains itself), any
`torchvision:NAME` classifier, any `timm:NAME` model (models/timm_models.py, when timm is installed), and the
user's own code: `path/to/net.py:build` or `package.module:build`, or a module already in memory (models/user.py).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import FvError, did_you_mean, summarize_choices
from . import rewrites
from .capture import Capture, channel_first, fit_input, prefix_key  # noqa: F401  (re-exported)
from .catalog import (  # noqa: F401  (re-exported)
    LAYOUTS,
    Catalog,
    LayerInfo,
    Layout,
    build_catalog,
    parse_layouts,
    undecided_message,
)
from .families import main_layers as family_main_layers
from .layers import (
    RedirectedReLU,
    install_redirected_relu,
    install_stem_conv,
    set_relu_redirect,
)
from .weights import (
    WeightsFile,
    apply_state_dict,
    cache_dir,
    download,
    file_sha256,
    load_state_dict_file,
    state_dict_sha256,
)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Map an RGB image in [0, 1] to the network's input: a value range, or per-channel mean/std."""

    value_range: tuple[float, float] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def apply(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0, 1]
        if self.value_range is not None:
            lo, hi = self.value_range
            return x * (hi - lo) + lo
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            return (x - mean) / std
        return x

    def describe(self) -> dict:
        if self.value_range is not None:
            return {"value_range": list(self.value_range)}
        if self.mean is not None:
            return {"mean": list(self.mean), "std": list(self.std or ())}
        return {}


@dataclass(frozen=True)
class ModelOptions:
    """What a recipe may say about the model (see recipe.ModelRecipe)."""

    name: str = "inceptionv1"
    weights: str | None = None  # None: the model's default file; PATH; "random:SEED"; "torchvision"
    num_classes: int | None = None
    preprocess: Preprocess | None = None
    labels: str | None = None  # path of a labels file, one name per line, line i = class i
    redirect_relu: bool | None = None  # None: the model's default
    kwargs: Mapping | None = None  # keyword arguments of a user callable (`net.py:build`)
    weights_key: str | None = None  # the key of a checkpoint dict holding the state_dict (None: found)
    native_size: int | None = None  # None: the model's own (224 for user models)
    layouts: tuple[tuple[str, Layout], ...] = ()  # declared layer layouts (recipe model.layouts, catalog.py)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model."""

    name: str
    description: str
    build: Callable[[ModelOptions], nn.Module]
    preprocess: Preprocess
    native_size: int
    num_classes: int
    main_layers: tuple[str, ...]
    logits_layer: str
    default_weights: WeightsFile | None = None
    layer_paths: Callable[[], list[tuple[str, str]]] | None = None  # None: every module path
    redirect_relu_default: bool = False
    labels: Callable[[], tuple[str, ...] | None] = lambda: None
    builtin_weights: Path | None = None  # weights shipped inside the package
    own_weights: bool = False  # no --weights: keep the weights the build returned (user code, in-memory modules)
    # Named weight sources besides PATH and random:SEED (e.g. {"timm": ...}): name -> loader(spec, net, opts)
    # returning (source description, sha256).
    named_weights: Mapping[str, Callable[[ModelSpec, nn.Module, ModelOptions], tuple[str, str]]] = field(
        default_factory=dict)
    interpolation: str = "bilinear"  # how the model's data pipeline resizes images (timm's pretrained_cfg)


@dataclass
class LoadedModel:
    """A frozen network on a device with everything needed to address its units."""

    name: str
    net: nn.Module
    preprocess: Preprocess
    catalog: dict[str, LayerInfo]  # a catalog.Catalog from load_model
    native_size: int
    logits_layer: str
    main_layers: tuple[str, ...]
    labels: tuple[str, ...] | None
    weights_source: str
    weights_sha256: str
    device: torch.device
    redirect_relu: bool
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.main_layers = tuple(m for m in self.main_layers if m in self.catalog and not self.catalog[m].problem)

    @property
    def fixed_size(self) -> bool:
        """The network accepts only its native input size (Capture resizes other sizes to it)."""
        return bool(getattr(self.catalog, "fixed_size", False))

    def layer(self, name: str) -> LayerInfo:
        """A layer's catalog entry; FvError for an unknown name or a layer whose layout is undecided."""
        try:
            info = self.catalog[name]
        except KeyError:
            raise FvError(
                f"unknown layer {name!r} for model {self.name}{did_you_mean(name, self.catalog)}; "
                f"main layers: {', '.join(self.main_layers)} (`fv layers {self.name}` lists all {len(self.catalog)})"
            ) from None
        if info.problem:
            raise FvError(undecided_message(info))
        return info

    @property
    def num_classes(self) -> int:
        if self.logits_layer not in self.catalog:
            raise FvError(f"model {self.name} has no logits layer (no layer with a vector output); name a layer's "
                          f"channels instead (`fv layers {self.name}`)")
        return self.catalog[self.logits_layer].channels

    def class_index(self, cls: str | int) -> int:
        """A class by index or, when labels are known, by name (spaces or underscores, any case)."""
        n = self.num_classes
        if isinstance(cls, int) or (isinstance(cls, str) and cls.lstrip("-").isdigit()):
            i = int(cls)
            if not 0 <= i < n:
                raise FvError(f"class {i} out of range for model {self.name}: valid 0-{n - 1}")
            return i
        if not self.labels:
            raise FvError(f"class {cls!r}: model {self.name} has no labels; give a class index 0-{n - 1}")
        norm = {lab.lower().replace(" ", "_"): i for i, lab in enumerate(self.labels)}
        key = cls.lower().replace(" ", "_")
        if key not in norm:
            raise FvError(f"unknown class {cls!r} for model {self.name}{did_you_mean(key, norm)}; valid: "
                          f"{summarize_choices(self.labels)} or an index 0-{n - 1}")
        return norm[key]

    def label(self, i: int) -> str | None:
        return self.labels[i] if self.labels and 0 <= i < len(self.labels) else None

    def set_redirect(self, on: bool | torch.Tensor) -> None:
        """Redirected ReLU gradients on / off, or on for the images of a (B,) bool mask (continuous batching)."""
        set_relu_redirect(self.net, on if self.redirect_relu else False)


# ----------------------------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("torchvision:"):
        from .tv import torchvision_spec

        return torchvision_spec(name)
    if name.startswith("timm:"):
        from .timm_models import timm_spec

        return timm_spec(name)
    from .user import is_user_reference, user_spec

    if is_user_reference(name):
        return user_spec(name)
    raise FvError(
        f"unknown model {name!r}{did_you_mean(name, _REGISTRY)}; valid: {', '.join(registered_names())}, "
        f"torchvision:NAME (e.g. torchvision:googlenet), timm:NAME, or your own code as path/to/net.py:CALLABLE "
        f"or package.module:CALLABLE"
    )


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise FvError("device 'cuda' requested but CUDA is not available here; valid: auto, cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise FvError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    return torch.device(device)


def configure_backends(device: torch.device) -> dict[str, bool]:
    """CUDA-only speedups, guarded: cudnn autotuning (fixed shapes per batch make it pay) and TF32 matmuls.
    Returns what was switched on (nothing on CPU)."""
    if device.type != "cuda":
        return {}
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return {"cudnn_benchmark": True, "tf32": True}


def expected_weights_path(spec: ModelSpec) -> Path | None:
    if spec.builtin_weights is not None:
        return spec.builtin_weights
    if spec.default_weights is None:
        return None
    return cache_dir() / spec.default_weights.filename


def _missing_weights_message(spec: ModelSpec, path: Path) -> str:
    url = spec.default_weights.url if spec.default_weights else "?"
    return (
        f"weights for {spec.name} not found: {path} is missing. Provide them one of three ways: "
        f"`fv weights fetch {spec.name}` (downloads {url}), "
        f"`fv weights add {spec.name} FILE` (imports a local copy), "
        f"or `--weights PATH` (uses a file directly); `--weights random:SEED` renders with random weights"
    )


def _load_weights(spec: ModelSpec, net: nn.Module, opts: ModelOptions) -> tuple[str, str]:
    """Fill `net` with weights per `opts.weights`; returns (source description, sha256)."""
    w = opts.weights
    if w is not None and w.startswith("random:"):
        seed_s = w.split(":", 1)[1]
        if not seed_s.lstrip("-").isdigit():
            raise FvError(f"bad weights {w!r}: expected random:SEED with an integer SEED")
        gen = torch.Generator().manual_seed(int(seed_s))
        _random_init(net, gen)
        return w, state_dict_sha256(net.state_dict())
    if w is None and spec.own_weights:
        return f"{spec.name} (the weights it was built with)", state_dict_sha256(net.state_dict())
    if w is not None and w in spec.named_weights:
        return spec.named_weights[w](spec, net, opts)
    if w in ("torchvision", "timm") and not spec.name.startswith(f"{w}:"):
        named = "".join(f", {n}" for n in spec.named_weights)
        raise FvError(f"--weights {w} loads the published weights of {w}:NAME models; {spec.name} takes PATH, "
                      f"random:SEED{named}")
    if w == "torchvision":
        from .tv import load_torchvision_default

        return load_torchvision_default(spec, net)
    if w is None:
        path = expected_weights_path(spec)
        if path is None:
            named = "".join(f"{n} (published), " for n in spec.named_weights)
            raise FvError(f"model {spec.name} has no default weights; pass --weights {named}PATH or random:SEED")
        if not path.is_file():
            raise FvError(_missing_weights_message(spec, path))
    else:
        path = Path(os.path.expanduser(w))
    from .checkpoint import read_weights

    sd, where = read_weights(path, net, opts.weights_key)  # a state_dict, or the one inside a checkpoint dict
    apply_state_dict(net, sd, where)
    return where, file_sha256(path)


def _random_init(net: nn.Module, gen: torch.Generator) -> None:
    """Deterministic random weights from one generator (He-style for convs and linears)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("weight"):  # norm scales
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)


def load_model(opts: ModelOptions | str = "inceptionv1", device: str | torch.device = "cpu",
               channels_last: bool = True, spec: ModelSpec | None = None) -> LoadedModel:
    """Build, load and freeze a model; probe its layer catalog. Raises FvError on bad names or weights.

    `spec` overrides the lookup of `opts.name` (an in-memory module: `user.module_spec`); the public, friendlier
    entry point is `fvcli.load_model` (api.py)."""
    if isinstance(opts, str):
        opts = ModelOptions(name=opts)
    spec = spec or get_spec(opts.name)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    net = spec.build(opts)
    # timm and user models: the family rules read the module tree (families.py), as torchvision's specs do
    main_layers = spec.main_layers or family_main_layers(net)
    source, sha = _load_weights(spec, net, opts)
    redirect = spec.redirect_relu_default if opts.redirect_relu is None else opts.redirect_relu
    if redirect or not spec.layer_paths:
        # torchvision nets: in-place ReLUs would overwrite captured activations; RedirectedReLU is never in-place.
        install_redirected_relu(net)
    install_stem_conv(net)  # the image-facing strided conv: a 2.4x faster input gradient (same parameters)
    net.eval().requires_grad_(False).to(dev)
    rewrites.apply_rewrites(net)  # fold BatchNorm into convs, drop dropout (after the checksum; names unchanged)
    configure_backends(dev)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    candidates = spec.layer_paths() if spec.layer_paths else [(n, n) for n, _ in net.named_modules() if n]
    native = opts.native_size or spec.native_size
    catalog = build_catalog(net, candidates, native, dev, opts.layouts)
    logits = spec.logits_layer or next((i.name for i in reversed(catalog.values()) if i.layout == "vector"), "")
    labels = spec.labels()
    if opts.labels:
        labels = read_labels(opts.labels)
    preprocess = opts.preprocess or spec.preprocess
    return LoadedModel(
        name=spec.name, net=net, preprocess=preprocess, catalog=catalog, native_size=native,
        logits_layer=logits, main_layers=tuple(m for m in main_layers if m in catalog),
        labels=labels, weights_source=source, weights_sha256=sha, device=dev, redirect_relu=redirect,
        extra={"interpolation": spec.interpolation},
    )


def read_labels(path: str | Path) -> tuple[str, ...]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FvError(f"cannot read labels file {p}: {exc.strerror or exc}") from None
    return tuple(line.strip() for line in lines)


from . import registry as _registry  # noqa: E402,F401  (registers the built-in models)
