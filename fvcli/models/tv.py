"""Any torchvision classifier as `torchvision:NAME` (e.g. torchvision:googlenet, torchvision:mobilenet_v2).

Layers are addressed by module path (`features.14`, `inception4a`). Weights: a local state_dict file
(`--weights PATH`), torchvision's published weights (`--weights torchvision`, downloaded into torch's cache), or
`random:SEED`. Class count, preprocessing and labels come from the recipe (`model.num_classes`, `model.preprocess`,
`model.labels`); the defaults are torchvision's 1000 ImageNet classes and mean/std.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import FvError, FvRuntimeError, did_you_mean, summarize_choices
from . import IMAGENET_MEAN, IMAGENET_STD, ModelOptions, ModelSpec, Preprocess
from .families import main_layers as family_main_layers
from .weights import (
    WeightsFile,
    apply_state_dict,
    cache_dir,
    download,
    file_sha256,
    load_state_dict_file,
)

# Main layers for `fv sweep` given by name; other architectures: the family rules of families.py.
_MAIN_LAYERS = {
    "googlenet": ("conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b",
                  "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"),
}


def _classifier_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def _builder(arch: str):
    def build(opts: ModelOptions) -> nn.Module:
        import torchvision.models as tvm

        kwargs: dict = {"weights": None, "num_classes": opts.num_classes or 1000}
        if arch == "googlenet":
            kwargs.update(aux_logits=False, init_weights=False, transform_input=False)
        if arch.startswith("inception_v3"):
            kwargs.update(aux_logits=False, init_weights=False)
        return tvm.get_model(arch, **kwargs)

    return build


def torchvision_spec(name: str) -> ModelSpec:
    arch = name.split(":", 1)[1]
    names = _classifier_names()
    if arch not in names:
        raise FvError(f"unknown torchvision classifier {arch!r}{did_you_mean(arch, names)}; "
                      f"valid: {summarize_choices(names)}")

    def main_layers() -> tuple[str, ...]:
        return _MAIN_LAYERS.get(arch) or _family_main_layers(arch)

    def labels():
        try:
            import torchvision.models as tvm

            return tuple(tvm.get_model_weights(arch).DEFAULT.meta["categories"])
        except Exception:  # noqa: BLE001 - labels are optional
            return None

    return ModelSpec(
        name=name,
        description=f"torchvision {arch}",
        build=_builder(arch),
        preprocess=Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        native_size=299 if arch.startswith("inception_v3") else 224,
        num_classes=1000,
        main_layers=main_layers(),
        logits_layer=_logits_path(arch),
        default_weights=None,
        layer_paths=None,
        redirect_relu_default=False,
        labels=labels,
    )


def _family_main_layers(arch: str) -> tuple[str, ...]:
    """families.py's rules on the architecture's module tree, built on the meta device (no memory, no weights;
    RegNet's initialisation reads tensor values, so it is built on the CPU)."""
    build = _builder(arch)
    try:
        with torch.device("meta"):
            net = build(ModelOptions(name=f"torchvision:{arch}"))
    except (NotImplementedError, RuntimeError):
        net = build(ModelOptions(name=f"torchvision:{arch}"))
    return family_main_layers(net)


def _logits_path(arch: str) -> str:
    if arch.startswith(("mobilenet", "efficientnet", "vgg", "alexnet", "convnext", "mnasnet")):
        return "classifier"
    if arch.startswith("vit"):
        return "heads"
    if arch.startswith("swin"):
        return "head"
    return "fc"


def load_torchvision_default(spec: ModelSpec, net: nn.Module) -> tuple[str, str]:
    """torchvision's published default weights, from torch's cache or downloaded into it."""
    import torchvision.models as tvm

    arch = spec.name.split(":", 1)[1]
    w = tvm.get_model_weights(arch).DEFAULT
    wf = WeightsFile(filename=w.url.rsplit("/", 1)[1], url=w.url)
    path = cache_dir() / wf.filename
    if not path.is_file():
        try:
            path = download(wf)
        except FvRuntimeError as exc:
            raise FvError(f"torchvision weights for {arch} are not cached at {path} and {exc}") from None
    sd = load_state_dict_file(path)
    if arch == "googlenet":  # published file carries the aux heads, which fv does not build
        sd = {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2."))}
    apply_state_dict(net, sd, str(path))
    return str(path), file_sha256(path)
