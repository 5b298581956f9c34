"""The pre-activation of a layer whose output is a ReLU's: what a negative (the most inhibiting image) minimizes.

Why: a ReLU's output has its minimum, 0, wherever its input is negative, so minimizing a unit after a ReLU (the
demo's blocks, most torchvision layers, MobileNetV2's ReLU6 expansions) has nothing to optimize once the unit is
off -- the picture stays the flat gray of its initial noise (lucid #68, lucent #34). Its input, the pre-activation,
keeps going down: minimizing it gives what inhibits the unit most. InceptionV1 names it (`mixed4a_pre_relu`); for
the other models it is found here, generically, from one probe forward at the native size:

1. `LAYER_pre_relu` in the catalog (InceptionV1, and any model that names it the same way) is used as is;
2. otherwise the probe hooks every ReLU-family module (nn.ReLU, nn.ReLU6, fv's RedirectedReLU) inside the layer's
   module (the module itself included) and finds the call whose output *is* the layer's output tensor (a ReLU
   module, a Sequential or a block that ends in one: torchvision's Conv2dNormActivation, BasicBlock and Bottleneck,
   whose `self.relu` is called three times, the last call giving the block's output). Its input is the
   pre-activation. When a catalogued module outputs that very tensor (the demo's `block3.conv`, MobileNetV2's
   `features.18.1` batch norm) that layer is used; otherwise (a ResNet block's `out + identity`) a layer
   `LAYER_pre_relu` is added to the model's catalog that `Capture` reads as the input of the ReLU's last call.

No ReLU module made the output (a linear bottleneck such as MobileNetV2's `features.13`, a logit, a functional
`F.relu` that no hook can see): the layer itself is minimized, and the note says why (and whether the output was
non-negative on the probe's random image, the sign of a hidden functional ReLU). The answer is cached per model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from .layers import RedirectedReLU

if TYPE_CHECKING:
    from . import LoadedModel

RELU_TYPES = (nn.ReLU, nn.ReLU6, RedirectedReLU)
PRE_RELU_SUFFIX = "_pre_relu"


@dataclass(frozen=True)
class PreActivation:
    layer: str  # the layer asked about
    name: str  # the layer to minimize: its pre-activation, or `layer` itself when none was found
    found: bool  # a pre-activation was found
    note: str  # how it was found, or why there is none


class _Stop(Exception):
    pass


def pre_activation(model: LoadedModel, layer: str) -> PreActivation:
    """The layer a negative of a unit on `layer` minimizes (see the module docstring)."""
    cache = model.extra.setdefault("pre_activation", {})
    if layer not in cache:
        cache[layer] = _find(model, layer)
    return cache[layer]


def _find(model: LoadedModel, layer: str) -> PreActivation:
    info = model.layer(layer)
    if info.hook == "input":  # a pre-activation found here earlier: nothing floors it
        return PreActivation(layer, layer, False, "a pre-activation itself (the input of a ReLU): minimized as is")
    named = model.catalog.get(layer + PRE_RELU_SUFFIX)
    if named is not None and not named.problem and named.channels == info.channels:
        return PreActivation(layer, named.name, True, f"the model's own pre-ReLU layer {named.name}")
    net = model.net
    root = dict(net.named_modules()).get(info.path)
    if root is None:
        return PreActivation(layer, layer, False, "the layer is not a module of the network")
    prefix = info.path + "."
    sub = [(p, m) for p, m in net.named_modules() if p == info.path or p.startswith(prefix)]
    outputs: dict[str, list[tuple[torch.Tensor, int]]] = {}  # module path -> (output, its version), per call
    relu_calls: list[tuple[str, int, torch.Tensor, int, torch.Tensor]] = []  # (path, call, input, version, output)
    handles = []

    def make_hook(path: str, module: nn.Module, inside: bool):
        def hook(_m, inp, out):
            if isinstance(out, torch.Tensor):
                outputs.setdefault(path, []).append((out, out._version))
                if inside and isinstance(module, RELU_TYPES) and inp and isinstance(inp[0], torch.Tensor):
                    # the input's version as the ReLU read it (an in-place ReLU bumps it after)
                    v = inp[0]._version - (1 if inp[0] is out else 0)
                    relu_calls.append((path, len(outputs[path]) - 1, inp[0], v, out))
            if path == info.path:
                raise _Stop

        return hook

    inside = {p for p, _ in sub}
    for p, m in net.named_modules():  # every module: the one making the pre-activation may sit outside the layer's
        handles.append(m.register_forward_hook(make_hook(p, m, p in inside)))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, model.native_size, model.native_size, generator=g).to(model.device)
    try:
        with torch.no_grad():
            net(model.preprocess.apply(x))
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    out = (outputs.get(info.path) or [(None, 0)])[-1][0]
    if out is None:
        return PreActivation(layer, layer, False, "the layer's module gave no tensor in a forward pass")
    made = [c for c in relu_calls if c[4] is out]
    if not made:
        nonneg = bool(out.min() >= 0)
        return PreActivation(layer, layer, False, "no ReLU module makes this layer's output: it is minimized as is"
                             + ("; it was >= 0 on a random image, so a functional ReLU (that no hook sees) may "
                                "floor it at 0" if nonneg else " (it takes negative values)"))
    path, call, pre, version, _ = made[-1]
    by_path = {i.path: i for i in model.catalog.values() if i.hook == "output" and not i.problem}
    for p, outs in outputs.items():
        # the same tensor, not changed since that module made it (a ResNet block adds the shortcut in place)
        if (len(outs) == 1 and outs[0][0] is pre and outs[0][1] == version and p in by_path
                and by_path[p].channels == info.channels):
            return PreActivation(layer, by_path[p].name, True, f"the input of ReLU {path}: the output of {p}")
    name = layer + PRE_RELU_SUFFIX
    model.catalog[name] = replace(info, name=name, path=path, shape=tuple(pre.shape), hook="input", call=call)
    return PreActivation(layer, name, True, f"the input of ReLU {path} (call {call + 1} of {len(outputs[path])})")
