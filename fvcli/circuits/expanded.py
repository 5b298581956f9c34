"""Expanded weights: the linear map from every channel of an earlier layer to one unit, as small spatial kernels.

For a unit (channel j of layer B) and an earlier layer A, the expanded weight from A's channel i is the gradient of
B's channel j at the centre position with respect to A's activation map, computed on the linear path between them
(linear_path.py: ReLUs bypassed, max pooling averaged). On that path the map A -> B is affine, so its gradient is the
same at every point: it *is* the product of the weights along every route from A to B (a 1x1 conv then a 3x3 conv, a
concatenation, an average pool, a residual addition), summed -- what "Zoom In" calls expanded weights. Its spatial
footprint on A is the kernel: 3x3 for one 3x3 conv, 5x5 for a 3x3 after a 3x3, the whole map for a global pool.

How it is computed, for any network fv can load (no knowledge of its code): one forward pass at the model's native
size with A's output replaced by a zero leaf tensor that requires grad (batch = one copy per unit of a chunk),
stopped as soon as B is reached; the sum over the batch of (copy b's own unit at the centre) is backpropagated once,
so copy b's gradient is unit b's map. Modules whose output depended on A during that pass are the `path`.

For a vector layer B (logits) the "position" is the vector itself: on the demo model, block4 -> gap -> fc gives every
position of block4's channel i the weight fc.weight[j, i] / (H * W).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import FvError
from ..models import LoadedModel
from ..models.capture import channel_first
from .linear_path import LinearPath

CHUNK = 16  # units per forward pass: their maps are (CHUNK, C_A, H_A, W_A) floats
MAX_KERNEL = 11  # a kernel wider than this is cropped around the footprint's centre (its sum still counts it all)


@dataclass(frozen=True)
class ExpandedWeights:
    """The expanded weights of some units of one layer from an earlier layer."""

    to_layer: str
    from_layer: str
    channels: tuple[int, ...]  # the units' channels in `to_layer`
    maps: torch.Tensor  # (N, C_A, H_A, W_A) or (N, C_A): d unit / d activation of A, on the linear path
    position: tuple[int, int] | None  # (y, x) in B's map the units were read at; None for a vector layer
    path: tuple[str, ...]  # module paths between A and B, in forward order
    bypassed: dict[str, int]  # nonlinear calls on the path, made linear (linear_path.py)
    kept: dict[str, int]  # nonlinear calls left as they are (the map is then a local Jacobian)

    @property
    def exact(self) -> bool:
        """The map is the exact expanded weight (no nonlinearity was kept on the path)."""
        return not self.kept

    def weights(self) -> torch.Tensor:
        """(N, C_A): each channel's total linear effect (the kernel summed over its footprint)."""
        return self.maps.flatten(2).sum(2) if self.maps.dim() == 4 else self.maps

    def footprint(self, n: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of unit n's kernel on A's map: where any channel's weight is non-zero,
        cropped to MAX_KERNEL around its centre."""
        m = self.maps[n]
        if m.dim() == 1:
            return (0, 0, 1, 1)
        nz = (m.abs() > 0).any(0)  # (H_A, W_A)
        if not bool(nz.any()):
            h, w = m.shape[-2:]
            return (h // 2, w // 2, 1, 1)
        ys, xs = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
        top, left = int(ys[0]), int(xs[0])
        h, w = int(ys[-1]) - top + 1, int(xs[-1]) - left + 1
        if h > MAX_KERNEL:
            top, h = top + (h - MAX_KERNEL) // 2, MAX_KERNEL
        if w > MAX_KERNEL:
            left, w = left + (w - MAX_KERNEL) // 2, MAX_KERNEL
        return (top, left, h, w)

    def kernel(self, n: int, channel: int) -> torch.Tensor:
        """(h, w) kernel of unit n from A's `channel` (a (1, 1) tensor for a vector layer A)."""
        m = self.maps[n, channel]
        if m.dim() == 0:
            return m.view(1, 1)
        top, left, h, w = self.footprint(n)
        return m[top:top + h, left:left + w]


class _Reached(Exception):
    """B was reached: the rest of the forward pass is not needed."""


def check_pair(model: LoadedModel, to_layer: str, from_layer: str) -> None:
    """FvError unless both layers exist and `from_layer` comes first in the forward pass."""
    a, b = model.layer(from_layer), model.layer(to_layer)
    if a.order >= b.order:
        raise FvError(f"--from {from_layer!r} is not before {to_layer!r} in the forward pass of {model.name}; pick an "
                      f"earlier layer (`fv layers {model.name}`)")


def expanded_weights(model: LoadedModel, to_layer: str, channels: Sequence[int], from_layer: str,
                     chunk: int = CHUNK) -> ExpandedWeights:
    """The expanded weights of `to_layer`'s `channels` from `from_layer` (see the module docstring)."""
    check_pair(model, to_layer, from_layer)
    a_info, b_info = model.layer(from_layer), model.layer(to_layer)
    modules = dict(model.net.named_modules())
    n = model.native_size
    maps: list[torch.Tensor] = []
    path: dict[str, None] = {}
    position = None
    lp = LinearPath()  # replaced per chunk: each pass meets the same calls; the last one's counts are kept
    for start in range(0, len(channels), chunk):
        chans = list(channels[start:start + chunk])
        leaf: list[torch.Tensor] = []
        reached: list[torch.Tensor] = []

        def replace_a(_m, _inp, out, k=len(chans)):
            z = torch.zeros((k, *out.shape[1:]), dtype=out.dtype, device=out.device, requires_grad=True)
            leaf.append(z)
            return z

        def catch_b(_m, _inp, out):
            reached.append(out)
            raise _Reached

        def on_path(name):
            def hook(_m, _inp, out):
                if isinstance(out, torch.Tensor) and out.requires_grad and not reached:
                    path.setdefault(name, None)
            return hook

        handles = [modules[a_info.path].register_forward_hook(replace_a),
                   modules[b_info.path].register_forward_hook(catch_b)]
        handles += [m.register_forward_hook(on_path(name)) for name, m in model.net.named_modules()
                    if name and not any(True for _ in m.children()) and name != a_info.path]
        x = torch.zeros(len(chans), 3, n, n, device=model.device)
        lp = LinearPath()
        try:
            with torch.enable_grad(), lp:
                model.net(x)
        except _Reached:
            pass
        finally:
            for h in handles:
                h.remove()
        if not leaf or not reached:
            raise FvError(f"{from_layer!r} -> {to_layer!r}: the forward pass of {model.name} did not reach both layers")
        b, _ = channel_first(reached[0], b_info, (n, n), n)  # (k, C_B, H, W) or (k, C_B)
        idx = torch.arange(len(chans), device=b.device)
        ch = torch.tensor(chans, device=b.device)
        if b.dim() == 4:
            position = (b.shape[2] // 2, b.shape[3] // 2)
            picked = b[idx, ch, position[0], position[1]]
        else:
            picked = b[idx, ch]
        if not picked.requires_grad:
            raise FvError(f"{to_layer!r} does not depend on {from_layer!r} in {model.name}")
        (grad,) = torch.autograd.grad(picked.sum(), leaf[0])
        g, _ = channel_first(grad, a_info, (n, n), n)
        maps.append(g.detach().float().cpu())
    path.pop(b_info.path, None)
    return ExpandedWeights(to_layer, from_layer, tuple(int(c) for c in channels), torch.cat(maps), position,
                           tuple(path) + (b_info.path,), dict(lp.bypassed), dict(lp.kept))
