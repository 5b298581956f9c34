"""The cost of reaching a layer: multiply-adds of the convolutions and linear layers run before its output.

Counted, not timed, so it depends only on the architecture and the size: the sweep's planner shares batches among
shards by it (fvcli/sweep/plan.py), and the cost model of `--estimate`, `--deadline` and `--budget`
(fvcli/budget/cost.py) fits measured seconds per step linear in it between two timed layers.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import FvError
from .capture import fit_input

if TYPE_CHECKING:
    from . import LoadedModel


class _Seen(Exception):
    """Raised by a hook once every layer has been reached (the rest of the forward pass is skipped)."""


def layer_costs(model: LoadedModel, layers: Iterable[str], size: int) -> dict[str, int]:
    """Multiply-adds of the convolutions and linear layers run before each layer's output, per image at `size` px.

    One forward pass of a (1, 3, size, size) zero image with hooks; depends only on the architecture and the size."""
    layers = list(dict.fromkeys(layers))
    total = [0]
    at_path: dict[str, int] = {}
    handles = []

    def count(m: nn.Module, _inp, out) -> None:
        if not isinstance(out, torch.Tensor):
            return
        per_image = out.numel() // max(1, out.shape[0])
        if isinstance(m, nn.Conv2d):
            total[0] += per_image * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += per_image * m.in_features

    modules = dict(model.net.named_modules())
    paths = {model.layer(name).path for name in layers}

    def mark(path: str):
        def hook(_m, _inp, _out) -> None:
            at_path.setdefault(path, total[0])
            if len(at_path) == len(paths):
                raise _Seen  # stop at the deepest layer asked for, as the rendering does
        return hook

    try:
        for m in modules.values():  # counting hooks first: a layer that is itself a conv includes its own cost
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                handles.append(m.register_forward_hook(count))
        for p in paths:
            handles.append(modules[p].register_forward_hook(mark(p)))
        with torch.no_grad():
            model.net(fit_input(model, model.preprocess.apply(torch.zeros(1, 3, size, size, device=model.device))))
    except _Seen:
        pass
    except RuntimeError as exc:
        raise FvError(f"{model.name} cannot run up to {', '.join(layers)} at {size} px ({exc}); use a larger "
                      f"--size") from None
    finally:
        for h in handles:
            h.remove()
    fallback = max([total[0], 1])
    return {name: max(1, at_path.get(model.layer(name).path, fallback)) for name in layers}
