"""Activation capture with truncation, and the one layout adapter.

`Capture` hooks only the layers an objective needs and stops the forward pass as soon as they are all seen
(truncation). It hands every activation over in one channel-first form, whatever the layer's layout (catalog.py):

  nchw                 (B, C, H, W)  as is
  nhwc                 (B, H, W, C)  -> (B, C, H, W)  (a permuted view, no copy)
  tokens               (B, N, D)     -> the patch grid (B, D, gh, gw) under the layer's name, and its prefix tokens
                                        (class / distillation / registers) as (B, D, P) under `prefix_key(layer)`
  vector               (B, C)        as is

So objectives, diversity (Gram matrices over positions), dataset examples and sweeps read `acts[layer]` as
(B, C, H, W) or (B, C) and never look at layouts; only an objective that names a prefix position (a unit such as
`encoder.layers.encoder_layer_6:10@cls`) reads `acts[prefix_key(layer)]`.

Fixed-size networks (the catalog found they accept only the native size, e.g. torchvision's ViT) get their input
resized to the native size here (`fit_input`), inside the differentiable pipeline, so every caller may render at any
size. Any other network that fails at a non-native size gives a one-line FvError, not a traceback.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import FvError
from .catalog import LayerInfo

if TYPE_CHECKING:
    from . import LoadedModel

PREFIX_SUFFIX = "@prefix"


def prefix_key(layer: str) -> str:
    """Where Capture puts a token layer's prefix tokens, (B, D, P), beside its patch grid."""
    return layer + PREFIX_SUFFIX


def fit_input(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """The network input at a size the network accepts: resized (bilinear; antialiased when shrinking) to the
    native size for a fixed-size network, unchanged otherwise. (B, 3, H, W) -> (B, 3, n, n)."""
    n = model.native_size
    if not model.fixed_size or tuple(x.shape[-2:]) == (n, n):
        return x
    shrink = x.shape[-1] > n or x.shape[-2] > n
    return F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False, antialias=shrink)


def token_grid(info: LayerInfo, n: int, in_hw: tuple[int, int], native: int) -> tuple[int, int]:
    """The patch grid of `n` patch tokens for an input of `in_hw` pixels (the catalog knows it at `native`)."""
    assert info.spatial is not None
    gh, gw = info.spatial
    if n == gh * gw:
        return gh, gw
    sh, sw = round(gh * in_hw[0] / native), round(gw * in_hw[1] / native)
    if sh * sw == n:
        return sh, sw
    r = math.isqrt(n)
    if r * r == n:
        return r, r
    raise FvError(f"layer {info.name}: {n} patch tokens at {in_hw[0]}x{in_hw[1]} px do not form a grid; declare "
                  f"it in the recipe (model.layouts: {{{info.name}: {{layout: tokens, prefix: {info.prefix}, "
                  f"grid: [H, W]}}}})")


def channel_first(out: torch.Tensor, info: LayerInfo, in_hw: tuple[int, int],
                  native: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A layer's raw output -> (channel-first positions (B, C, H, W) or (B, C), prefix tokens (B, C, P) or None)."""
    want = {"nchw": 4, "nhwc": 4, "tokens": 3, "vector": 2}[info.layout]
    if out.dim() != want:
        raise FvError(f"layer {info.name}: output {tuple(out.shape)} does not fit its layout {info.layout} "
                      f"(expected {want}-D); set model.layouts for it")
    if info.layout == "nhwc":
        return out.permute(0, 3, 1, 2), None  # (B, C, H, W) view
    if info.layout != "tokens":
        return out, None
    b, n, d = out.shape
    p = info.prefix
    gh, gw = token_grid(info, n - p, in_hw, native)
    grid = out[:, p:].reshape(b, gh, gw, d).permute(0, 3, 1, 2)  # row-major patches -> (B, D, gh, gw)
    return grid, (out[:, :p].transpose(1, 2) if p else None)  # (B, D, P)


class _Truncate(Exception):
    """Raised by a hook once every requested layer is captured: the rest of the forward pass is skipped."""


class Capture:
    """Context manager: hook `layers` of `model`, run forwards, return {layer: channel-first activation} (and
    {prefix_key(layer): prefix tokens} for token layers); hooks always removed.

    >>> with Capture(model, ["mixed4a"]) as cap:
    ...     acts = cap(x)   # x is the network input, (B, 3, H, W)
    """

    def __init__(self, model: LoadedModel, layers: Iterable[str], truncate: bool = True) -> None:
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.infos = {name: model.layer(name) for name in self.layers}  # validates (and refuses undecided layouts)
        self.truncate = truncate
        self._acts: dict[str, torch.Tensor] = {}
        self._seen: set[tuple] = set()
        self._calls: dict[tuple, int] = {}
        self._handles: list = []
        self._in_hw: tuple[int, int] = (model.native_size, model.native_size)

    def __enter__(self) -> Capture:
        modules = dict(self.model.net.named_modules())
        by_site: dict[tuple[str, str, int], list[str]] = {}  # (path, output | input, call) -> layer names
        for name in self.layers:
            i = self.infos[name]
            by_site.setdefault((i.path, i.hook, i.call if i.hook == "input" else 0), []).append(name)
        need = len(by_site)

        def keep(value: torch.Tensor, names: list[str], site: tuple) -> None:
            for n in names:
                grid, prefix = channel_first(value, self.infos[n], self._in_hw, self.model.native_size)
                self._acts[n] = grid
                if prefix is not None:
                    self._acts[prefix_key(n)] = prefix
            self._seen.add(site)
            if self.truncate and len(self._seen) >= need:
                raise _Truncate

        for site, names in by_site.items():
            path, kind, call = site
            if kind == "input":  # a pre-activation (models/preact.py): the input of the call-th call
                def pre_hook(_m, inp, names=names, site=site, call=call):
                    k = self._calls.get(site, 0)
                    self._calls[site] = k + 1
                    if k == call:
                        keep(inp[0].clone(), names, site)  # clone: an in-place ReLU would overwrite it

                self._handles.append(modules[path].register_forward_pre_hook(pre_hook))
            else:
                def hook(_m, _inp, out, names=names, site=site):
                    keep(out, names, site)

                self._handles.append(modules[path].register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._acts = {}
        self._seen: set[tuple] = set()
        self._calls: dict[tuple, int] = {}
        x = fit_input(self.model, x)
        self._in_hw = (int(x.shape[-2]), int(x.shape[-1]))
        try:
            self.model.net(x)
        except _Truncate:
            pass
        except (RuntimeError, AssertionError, ValueError) as exc:
            n = self.model.native_size
            if isinstance(exc, torch.OutOfMemoryError) or self._in_hw == (n, n):
                raise
            raise FvError(f"{self.model.name} failed at {self._in_hw[0]}x{self._in_hw[1]} px "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); it may accept only "
                          f"its native size: use --size {n}") from None
        missing = [n for n in self.layers if n not in self._acts]
        if missing:
            raise FvError(f"layers {missing} were not reached in the forward pass of {self.model.name}")
        return self._acts
