"""Building blocks shared by the model zoo: a branch-free redirected ReLU and a cheap LRN.

`RedirectedReLU` behaves as a ReLU in the forward pass. In the backward pass, while its `redirect` flag is on
(lucid turns it on for the first 16 optimization steps), an image whose ordinary ReLU gradient is entirely zero gets
the *redirected* gradient instead: the incoming gradient passes through, except where descending it would push an
already-negative input further down (lucid `misc/redirected_relu_grad.py`). The rule is written with `torch.where`
only, so it costs a few element-wise kernels instead of lucent's boolean indexing.

`StemConv2d` is an `nn.Conv2d` (same parameters, same forward) for a network's first, strided convolution on the
RGB image, whose input gradient is computed through a space-to-depth rewrite (see its docstring).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reads_are_free(t: torch.Tensor) -> bool:
    """Can the host read `t` without waiting for a device? (Only on the CPU; tests emulate a GPU by patching it.)"""
    return t.device.type == "cpu"


class _RedirectedReluFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float, rows: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.upper = upper
        ctx.rows = rows  # (B,) bool: the images whose gradient may be redirected (None: all)
        y = x.clamp_min(0.0)
        return y.clamp_max(upper) if upper != float("inf") else y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        upper = ctx.upper
        zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
        if upper == float("inf"):  # ReLU: the fused kernel autograd itself uses (grad where x > 0)
            relu_grad = torch.ops.aten.threshold_backward(grad, x, 0.0)
        else:  # ReLU6: grad where 0 < x < upper, one fused kernel (a where over two comparisons is four passes)
            relu_grad = torch.ops.aten.hardtanh_backward(grad, x, 0.0, upper)
        # (B,): does the true gradient reach this image? (a reduction per image, no bool copy: 6x cheaper than
        # ne + flatten + any on a channels_last map, which copies)
        alive = relu_grad.abs().amax(dim=tuple(range(1, grad.dim()))) > 0 if grad.dim() > 1 else relu_grad.ne(0)
        if ctx.rows is not None:  # continuous batching: only the images still in their first steps
            alive = alive | ~ctx.rows.repeat(grad.shape[0] // ctx.rows.shape[0]).to(alive.device, non_blocking=True)
        if reads_are_free(alive) and bool(alive.all()):  # the usual case on the CPU: nothing to redirect
            return relu_grad, None, None
        # on a GPU, branch-free: reading `alive` would make the host wait for the GPU at every ReLU of every early
        # step; the where below returns relu_grad itself wherever nothing is dead
        # Loss gradient > 0 means gradient descent lowers x: block that where x is already negative.
        blocked = (x < 0) & (grad > 0)
        if upper != float("inf"):
            blocked = blocked | ((x > upper) & (grad < 0))
        redirected = torch.where(blocked, zero, grad)
        dead = ~alive.view(-1, *([1] * (grad.dim() - 1)))  # (B, 1, 1, 1)
        return torch.where(dead, redirected, relu_grad), None, None


class RedirectedReLU(nn.Module):
    """ReLU (or ReLU6 with `upper=6`) whose gradient can be redirected; `redirect` is toggled by the render loop:
    True / False for the whole batch, or a (B,) bool tensor for some images only (a continuously refilled batch,
    fvcli/optvis/stream.py, where each image is at its own step)."""

    def __init__(self, upper: float = float("inf")) -> None:
        super().__init__()
        self.upper = upper
        self.redirect: bool | torch.Tensor = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.redirect if isinstance(self.redirect, torch.Tensor) else None
        on = bool(rows.any()) if rows is not None else self.redirect
        if on and torch.is_grad_enabled() and x.requires_grad:
            return _RedirectedReluFn.apply(x, self.upper, rows)
        # hardtanh, not clamp: the same values, but clamp's backward is a composite of four element-wise passes
        # (where, logical_and, lt, gt) and hardtanh's one fused kernel: 2.2x faster forward + backward, 37 % of a
        # MobileNetV2 step before (scripts/bench_render.py --profile)
        return F.hardtanh(x, 0.0, self.upper) if self.upper != float("inf") else F.relu(x)

    def extra_repr(self) -> str:
        return "" if self.upper == float("inf") else f"upper={self.upper}"


def install_redirected_relu(net: nn.Module) -> int:
    """Replace every nn.ReLU / nn.ReLU6 of `net` by a RedirectedReLU (also removes in-place ReLUs). Returns count."""
    count = 0
    for name, child in list(net.named_children()):
        if isinstance(child, nn.ReLU6):
            setattr(net, name, RedirectedReLU(6.0))
            count += 1
        elif isinstance(child, nn.ReLU):
            setattr(net, name, RedirectedReLU())
            count += 1
        else:
            count += install_redirected_relu(child)
    return count


def set_relu_redirect(net: nn.Module, on: bool | torch.Tensor) -> None:
    """Switch the redirected gradient of every RedirectedReLU in `net` on or off (or on for the rows of a mask)."""
    for m in net.modules():
        if isinstance(m, RedirectedReLU):
            m.redirect = on


def _autocast_on(x: torch.Tensor) -> bool:
    """Is autocast on for x's device? (False for devices without autocast, e.g. meta, where torch would raise.)"""
    return x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)


def _fmt(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format


class _LrnFn(torch.autograd.Function):
    """y = x * r with r = s**-beta, s = k + conv1x1(x**2, band). Hand-written backward: it keeps every tensor in
    x's memory format (a mixed channels_last/contiguous element-wise op is ~8x slower on CPU), needs one conv and
    few memory passes (element-wise passes over these 56x56 maps are memory-bound on CPU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, band: torch.Tensor, k: float, beta: float) -> torch.Tensor:  # type: ignore[override]
        s = F.conv2d(x * x, band) + k
        r = torch.rsqrt(s) if beta == 0.5 else s.pow(-beta)
        y = x * r
        w = y / s  # = x * r / s, what the backward needs
        ctx.save_for_backward(x, band, r, w)
        ctx.beta = beta
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, band, r, w = ctx.saved_tensors
        g = g.contiguous(memory_format=_fmt(x))
        # dL/dx_j = g_j r_j - 2 beta x_j sum_i band_ij g_i x_i r_i / s_i
        t = F.conv2d(g * w, band.transpose(0, 1))
        return (g * r).sub_(x * t, alpha=2 * ctx.beta), None, None, None


class LocalResponseNorm(nn.Module):
    """`F.local_response_norm` semantics (alpha divided by size, as the PyTorch port of inception5h runs it).

    The sum of squares over a window of channels is one 1x1 convolution with a fixed band matrix, which oneDNN runs
    at full speed in channels_last; measured 4-6x faster than `F.local_response_norm` (a 3-D average pool) for
    forward + backward on this project's CPU, with the same values to float rounding."""

    def __init__(self, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self._band: dict[tuple, torch.Tensor] = {}

    def band(self, c: int, ref: torch.Tensor) -> torch.Tensor:
        key = (c, ref.device, ref.dtype)
        if key not in self._band:
            i = torch.arange(c, device=ref.device)
            d = i[None, :] - i[:, None]  # input channel - output channel
            inside = (d >= -(self.size // 2)) & (d <= (self.size - 1) // 2)
            self._band[key] = (inside.to(ref.dtype) * (self.alpha / self.size))[:, :, None, None]  # (C, C, 1, 1)
        return self._band[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        if _autocast_on(x):
            # k + alpha/size * sum(x^2) is 1 + a small term: bf16's 8-bit mantissa would round it away. fp32 here.
            with torch.autocast(x.device.type, enabled=False):
                x = x.float()
                return _LrnFn.apply(x, self.band(x.shape[1], x), self.k, self.beta)
        return _LrnFn.apply(x, self.band(x.shape[1], x), self.k, self.beta)


# ----------------------------------------------------------------------------------------------------------------
# The image-facing strided convolution


def space_to_depth_weight(w: torch.Tensor, stride: int) -> torch.Tensor:
    """(O, C, k, k) stride-s kernel -> the (O, C*s*s, K/s, K/s) stride-1 kernel of the same convolution applied to
    `pixel_unshuffle(x, s)` (K = k rounded up to a multiple of s; the extra taps are zero). Channel c*s*s + dy*s + dx
    of the rewritten input holds pixel (s*i + dy, s*j + dx) of channel c, as `F.pixel_unshuffle` orders them."""
    o, c, kh, kw = w.shape
    kh2, kw2 = -(-kh // stride) * stride, -(-kw // stride) * stride
    w = F.pad(w, (0, kw2 - kw, 0, kh2 - kh))
    w = w.view(o, c, kh2 // stride, stride, kw2 // stride, stride).permute(0, 1, 3, 5, 2, 4)
    return w.reshape(o, c * stride * stride, kh2 // stride, kw2 // stride)


class _StemConvFn(torch.autograd.Function):
    """Frozen-weight strided convolution; backward gives the input gradient only, via space-to-depth."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                padding: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(weight)
        ctx.stride, ctx.padding, ctx.in_shape = stride, padding, x.shape
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        h, w = ctx.in_shape[-2] + 2 * p, ctx.in_shape[-1] + 2 * p  # the padded input the conv read
        ws = space_to_depth_weight(weight, s).to(dtype=g.dtype, memory_format=_fmt(g))  # bf16 under autocast
        gs = F.conv_transpose2d(g, ws)  # (B, C*s*s, H'/s, W'/s): gradient of the unshuffled, padded input
        gx = F.pixel_shuffle(gs, s)  # (B, C, H', W'), H' >= the rows the conv can read
        # Rows/columns past H' were never read (zero gradient); those past h belong to no input pixel.
        gx = F.pad(gx, (0, max(0, w - gx.shape[-1]), 0, max(0, h - gx.shape[-2])))[..., :h, :w]
        if p:
            gx = gx[..., p : h - p, p : w - p]
        return gx.contiguous(memory_format=_fmt(g)), None, None, None, None


class StemConv2d(nn.Conv2d):
    """A network's first convolution (few input channels, stride > 1), with a faster input gradient.

    oneDNN's backward-data kernel for a strided convolution with 3 input channels runs at a fraction of the machine's
    speed (measured: 5x slower than the forward on this project's CPU; ~15 % of an InceptionV1 step at mixed4a).
    The same convolution is a stride-1 one on `pixel_unshuffle(x, s)` (C*s*s channels, kernel ceil(k/s)), whose
    input gradient is a stride-1 transposed convolution followed by `pixel_shuffle`: 2.4x faster, same values to
    float rounding. The forward is the ordinary strided convolution. Used only while the weights are frozen and the
    input needs a gradient (feature visualization); otherwise exactly `nn.Conv2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = (torch.is_grad_enabled() and x.requires_grad and not self.weight.requires_grad
                and (self.bias is None or not self.bias.requires_grad))
        if _autocast_on(x):
            # The image-facing conv stays fp32 under reduced precision: its input is the image itself, and bf16's
            # 8-bit mantissa would quantize both the pixels and their gradient (the only signal the image gets).
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.float())
        if not fast:
            return super().forward(x)
        return _StemConvFn.apply(x, self.weight, self.bias, self.stride[0], self.padding[0])

    @staticmethod
    def eligible(m: nn.Module) -> bool:
        return (type(m) is nn.Conv2d and m.in_channels <= 4 and m.groups == 1 and m.stride[0] == m.stride[1] > 1
                and m.dilation == (1, 1) and isinstance(m.padding, tuple) and m.padding[0] == m.padding[1]
                and m.padding_mode == "zeros")


def install_stem_conv(net: nn.Module) -> int:
    """Replace every eligible `nn.Conv2d` (image-facing: <= 4 input channels, square stride > 1) by a StemConv2d
    sharing its parameters (state_dict keys unchanged). Returns the count."""
    count = 0
    for name, child in list(net.named_children()):
        if StemConv2d.eligible(child):
            new = StemConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                             bias=child.bias is not None, device="meta")
            new.weight, new.bias = child.weight, child.bias
            setattr(net, name, new)
            count += 1
        else:
            count += install_stem_conv(child)
    return count
