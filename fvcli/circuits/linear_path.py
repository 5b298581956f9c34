"""The linear path between two layers: ReLUs bypassed, max pooling read as average pooling, everything else kept.

Expanded weights (Olah et al. 2020, "Zoom In"; Voss et al. 2021, "Visualizing Weights") are the linear map from one
layer's activations to a later layer's pre-activation *as if the nonlinearities between them were not there*.
Between adjacent layers of a CNN what stands in the way is almost always a ReLU (or ReLU6), sometimes a max pool
(InceptionV1's pool branches, a stem). This mode makes that precise for any network, without knowing its code:
inside `LinearPath`, every torch function call is seen (a `TorchFunctionMode`), so a ReLU written as a module, as
`F.relu(x, inplace=True)` in a forward method or as fv's own RedirectedReLU all meet the same rule:

  relu, relu6, hardtanh, clamp with a lower bound of 0   -> identity (the ReLU "doesn't matter": bypassed)
  max_pool2d                                             -> avg_pool2d over the same window (padding excluded)
  any other nonlinear function (sigmoid, tanh, GELU, SiLU, softmax, local response norm, layer norm, ...)
                                                         -> kept, and named in `kept`: the map is then the
                                                            Jacobian at the point it was evaluated at, not exact

Convolutions, linear layers, batch norm (folded or affine in eval), concatenations, additions and average pooling
are linear (affine) already. `bypassed` and `kept` count what was met, so a record can say which path it took.
"""
from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, torch.Tensor.relu, torch.Tensor.relu_}
_HARDTANHS = {F.hardtanh, F.hardtanh_}  # ReLU6 (and fv's RedirectedReLU(6)) when the lower bound is 0
_CLAMPS = {torch.clamp, torch.clamp_min, torch.clip, torch.Tensor.clamp, torch.Tensor.clamp_min, torch.Tensor.clip}
_MAX_POOLS = {F.max_pool2d, torch.max_pool2d, F._max_pool2d}  # type: ignore[attr-defined]
_NONLINEAR = {torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid,
              F.elu, F.selu, F.leaky_relu, F.softmax, torch.softmax, F.log_softmax, F.local_response_norm,
              F.layer_norm, F.group_norm, F.normalize, torch.exp, torch.log, torch.sqrt, torch.rsqrt,
              torch.Tensor.sigmoid, torch.Tensor.tanh, torch.Tensor.softmax, torch.Tensor.exp, torch.Tensor.pow,
              torch.pow, torch.max, torch.Tensor.max}


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


class LinearPath(TorchFunctionMode):
    """Within `with LinearPath() as lp:`, ReLU-like calls return their input and max pools average; `lp.bypassed`
    and `lp.kept` count the calls by function name -- only calls on tensors that require grad, i.e. that depend on
    the earlier layer's activation (the network's weights never require grad in fv)."""

    def __init__(self) -> None:
        super().__init__()
        self.bypassed: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input")
        live = isinstance(x, torch.Tensor) and x.requires_grad  # on the path from the earlier layer
        if live and func in _RELUS:
            self.bypassed[_name(func)] += 1
            return x
        if live and func in _HARDTANHS:
            lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
            if float(lo) == 0.0:
                self.bypassed["hardtanh"] += 1
                return x
            self.kept["hardtanh"] += 1
            return func(*args, **kwargs)
        if live and func in _CLAMPS:
            lo = args[1] if len(args) > 1 else kwargs.get("min")
            if lo is not None and not isinstance(lo, torch.Tensor) and float(lo) == 0.0:
                self.bypassed["clamp"] += 1
                return x
            self.kept[_name(func)] += 1
            return func(*args, **kwargs)
        if live and func in _MAX_POOLS:
            return self._average(func, args, kwargs)
        if live and func in _NONLINEAR:
            self.kept[_name(func)] += 1
        return func(*args, **kwargs)

    def _average(self, func, args, kwargs):
        names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        a = {**dict(zip(names, args)), **kwargs}
        dilation = a.get("dilation", 1)
        if a.get("return_indices") or dilation not in (1, (1, 1), [1, 1]):
            self.kept["max_pool2d"] += 1
            return func(*args, **kwargs)
        self.bypassed["max_pool2d->avg_pool2d"] += 1
        stride = a.get("stride")
        return F.avg_pool2d(a["input"], a["kernel_size"], stride if stride not in (None, (), []) else None,
                            a.get("padding", 0), bool(a.get("ceil_mode", False)), count_include_pad=False)
