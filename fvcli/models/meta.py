"""Layer shapes without arithmetic: one forward pass on the `meta` device.

Building a model's layer catalog needs each layer's output shape at the native size. A real forward at 224 px costs
0.1-0.5 s on a CPU (and more for the first call, which sets up oneDNN's kernels for shapes the render never uses):
a visible share of a one-step `fv render`. On the meta device every op only computes its output's shape, so the
same forward, with the same hooks, costs only its Python overhead. The parameters are swapped for meta tensors for
the duration of the call (`torch.nn.utils.stateless`), so the network itself is untouched. Networks whose forward
needs real values (data-dependent control flow, `.item()`) fall back to a real forward.

But several ops (ReLU among them) compute meta shapes through torch's Python references, whose first use imports
`torch._dynamo` (1.5 s or more). So the meta pass is used only when that stack is already loaded -- always after
`import torchvision`, i.e. for torchvision models, whose real probe forward is also the costliest -- and small
built-in networks (InceptionV1, demo) are probed for real.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def shape_forward(net: nn.Module, size: int, device: torch.device) -> None:
    """Run `net` on one (1, 3, size, size) input for the sake of its forward hooks: on meta tensors when possible,
    else for real on `device` (zeros)."""
    import sys

    if "torch._dynamo" not in sys.modules:  # the meta pass would import it: cheaper to measure for real
        with torch.no_grad():
            net(torch.zeros(1, 3, size, size, device=device))
        return
    from torch.nn.utils.stateless import _reparametrize_module

    tensors = {k: torch.empty_like(v, device="meta") for k, v in
               [*net.named_parameters(remove_duplicate=False), *net.named_buffers(remove_duplicate=False)]}
    try:
        with torch.no_grad(), _reparametrize_module(net, tensors, tie_weights=True):
            net(torch.zeros(1, 3, size, size, device="meta"))
        return
    except Exception as exc:  # noqa: BLE001 - any failure on meta means: measure for real
        log.debug("meta-device shape pass failed (%s: %s); running a real forward", type(exc).__name__, exc)
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size, device=device))
