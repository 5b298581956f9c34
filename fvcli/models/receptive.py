"""Receptive fields: which input pixels one position of a layer can see, measured on the network itself.

For a spatial layer, `receptive_field(model, layer)` returns a `ReceptiveField(size, stride, offset)` in input pixels:
the unit at activation-map position (x, y) is centred on input pixel (offset + x * stride, offset + y * stride) and
sees a `size` x `size` square around it. The dataset-examples appendix crops each example to this square around the
position of maximal activation.

Why measured rather than derived from kernel sizes: the registered networks branch (Inception mixes, residual adds),
and an analytic walk would need a rule per module type. The gradient of one activation with respect to the input is
non-zero exactly on the input pixels connected to it (its theoretical receptive field), whatever the architecture.
One backward pass at the native size, for a random input, measures two edges: the far (right/bottom) edge of the
first position's field and the near (left/top) edge of the last position's field. Padding clips only the near edge
of the first field and the far edge of the last, so these two edges are exact, and with a square symmetric field
centred on `offset + i * stride` they give both the size and the offset. The stride is input size / map size. A
field that reaches across the whole input is reported with `clipped=True` (its crops are the whole image anyway).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import FvError
from . import Capture, LoadedModel


@dataclass(frozen=True)
class ReceptiveField:
    size: float  # side of the square, input pixels
    stride: float  # input pixels between neighbouring positions of the activation map
    offset: float  # input x (and y) of the centre of position 0
    clipped: bool = False  # True when the field spans the whole input (size is then only a lower bound)

    def center(self, x: int, y: int) -> tuple[float, float]:
        return self.offset + x * self.stride, self.offset + y * self.stride

    def box(self, x: int, y: int, limit: float | None = None) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of position (x, y)'s field in input pixels, clipped to [0, limit] if given."""
        cx, cy = self.center(x, y)
        h = self.size / 2
        box = (cx - h, cy - h, cx + h, cy + h)
        if limit is None:
            return box
        return tuple(min(max(v, 0.0), float(limit)) for v in box)  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return {"size": self.size, "stride": self.stride, "offset": self.offset, "clipped": self.clipped}


_CACHE: dict[tuple[str, str, str, int], ReceptiveField] = {}


def _extents(model: LoadedModel, layer: str, seed: int = 0) -> tuple[int, int, int, int, int]:
    """At the native size: the far (right/bottom) edge of the first position's field and the near (left/top) edge of
    the last position's field, in pixel-edge coordinates, for x and y; and the map width."""
    n = model.native_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, n, n, generator=gen).to(model.device).requires_grad_(True)
    with torch.enable_grad(), Capture(model, [layer]) as cap:
        act = cap(model.preprocess.apply(x))[layer]  # (2, C, H, W)
        if act.dim() != 4:
            raise FvError(f"layer {layer} has no spatial positions, so no receptive field")
        h, w = act.shape[-2:]
        (act[0, :, 0, 0].sum() + act[1, :, h - 1, w - 1].sum()).backward()
    g = x.grad.abs().sum(1)  # (2, n, n)
    first, last = torch.nonzero(g[0] > 0), torch.nonzero(g[1] > 0)  # (K, 2) rows of (y, x)
    if len(first) == 0 or len(last) == 0:  # a dead position (every ReLU off for this input): try another input
        if seed < 4:
            return _extents(model, layer, seed + 1)
        raise FvError(f"could not measure the receptive field of layer {layer}: zero gradient")
    return (int(first[:, 1].max()) + 1, int(first[:, 0].max()) + 1, int(last[:, 1].min()), int(last[:, 0].min()),
            int(w))


def receptive_field(model: LoadedModel, layer: str) -> ReceptiveField:
    """The receptive field of one position of `layer` (see the module docstring); cached per model and layer."""
    info = model.layer(layer)
    if info.spatial is None:
        raise FvError(f"layer {layer} has no spatial positions, so no receptive field")
    key = (model.name, model.weights_sha256, layer, model.native_size)
    if key in _CACHE:
        return _CACHE[key]
    n = model.native_size
    model.set_redirect(False)
    right, bottom, left, top, w = _extents(model, layer)
    stride = n / w
    span = (w - 1) * stride  # distance between the centres of the first and the last position
    # first position: far edge = offset + half; last position: near edge = offset + span - half.
    far, near = max(right, bottom), min(left, top)
    offset = (far + near - span) / 2
    half = (far - near + span) / 2
    clipped = far >= n or near <= 0  # the field reaches across the whole input: only a lower bound is known
    if clipped:
        half = max(half, float(n))
        offset = stride / 2
    rf = ReceptiveField(size=2 * half, stride=stride, offset=offset, clipped=clipped)
    _CACHE[key] = rf
    return rf
