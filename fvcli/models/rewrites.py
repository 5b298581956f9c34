"""Load-time rewrites of a frozen network: the same function, less work per optimization step.

A feature-visualization step runs the network forward and back through its input for every image, hundreds of
times, with the weights frozen. Some of a trained network's modules exist only for training, and cost real time on
every step:

- **BatchNorm after a convolution.** In eval mode a BatchNorm is a per-channel affine map `y = s*x + t`, so it can
  be folded into the convolution before it (`W' = s*W`, `b' = s*b + t`). MobileNet, ResNet and EfficientNet have one
  after almost every convolution; on a CPU the BatchNorm's memory traffic (forward and backward) costs about as much
  as a depthwise convolution. Measured on the real MobileNetV2 (../shared/facts/performance.md): -25 % per step.
- **Dropout and stochastic depth** are the identity in eval mode; replacing them by `nn.Identity` removes a module
  call (and, for torchvision's StochasticDepth, a Python branch) per block.
- **Batch-first self-attention** (`nn.MultiheadAttention(batch_first=True)`, torchvision's ViT and many user models).
  With gradients on, torch transposes the tokens to sequence-first and runs the input projection on that
  transposed view, which `matmul` cannot fold into one GEMM: it becomes one tiny GEMM per token against the weight
  expanded 197 times, forward and backward (37 % of a ViT-B step in the profile, ~5x the time of the same
  projection as one GEMM). `FastSelfAttention` (the same module, parameters and name) computes the projection on
  the batch-first tokens, then `scaled_dot_product_attention` and the output projection, whenever the call is plain
  self-attention (query is key is value, no masks, no weights asked for, eval mode); any other call is torch's.

Addressing is unchanged. A folded BatchNorm becomes `FoldedBatchNorm` (an `nn.Identity`) under the same name, so
hooking it gives the convolution's new output, which *is* the BatchNorm's output. The convolution keeps its name and
class but hooks registered on it see its *unfolded* output, `(y - t) / s`, recomputed only when something hooks it:
hooking `features.1.conv.0.0` still gives the raw convolution, to float rounding. A pair is folded only when the
convolution's output feeds the BatchNorm and nothing else (checked on the module tree for `nn.Sequential`, and on a
`torch.fx` trace of the module graph otherwise) and when no scale is so small that undoing it would lose precision.

The weights' sha256 of a loaded model is computed from the file (or the random init) before these rewrites.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

MIN_SCALE = 1e-4  # |s| below this (relative to the largest |s| of the layer): keep the pair, undoing s is unstable
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class FoldedBatchNorm(nn.Identity):
    """A BatchNorm2d folded into the convolution before it: the identity, kept under the BatchNorm's name."""

    def __init__(self, into: str) -> None:
        super().__init__()
        self.into = into

    def extra_repr(self) -> str:
        return f"folded into {self.into}"


class _FoldedConvMixin:
    """Mixed into a convolution whose BatchNorm was folded in: hooks see the unfolded (raw convolution) output."""

    fold_scale: torch.Tensor  # (C,) the BatchNorm's s
    fold_shift: torch.Tensor  # (C,) the BatchNorm's beta - mean * s: folded output y = s * raw + fold_shift

    def _unfold(self, y: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (y.dim() - 2)
        return (y - self.fold_shift.to(y.dtype).view(shape)) / self.fold_scale.to(y.dtype).view(shape)

    def _refold(self, raw: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (raw.dim() - 2)
        return raw * self.fold_scale.to(raw.dtype).view(shape) + self.fold_shift.to(raw.dtype).view(shape)

    def register_forward_hook(self, hook, *, prepend: bool = False, with_kwargs: bool = False,
                              always_call: bool = False):
        def unfolded(module, args, *rest):
            out = rest[-1]
            raw = self._unfold(out) if isinstance(out, torch.Tensor) else out
            res = hook(module, args, *rest[:-1], raw)
            return None if res is None else self._refold(res)

        return super().register_forward_hook(unfolded, prepend=prepend, with_kwargs=with_kwargs,  # type: ignore[misc]
                                             always_call=always_call)


_FOLDED_CLASSES: dict[type, type] = {}


def _folded_class(cls: type) -> type:
    if cls not in _FOLDED_CLASSES:
        _FOLDED_CLASSES[cls] = type(cls.__name__, (_FoldedConvMixin, cls), {"__module__": cls.__module__})
    return _FOLDED_CLASSES[cls]


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and not isinstance(conv, _FoldedConvMixin) and type(bn) is nn.BatchNorm2d
            and bn.running_mean is not None and bn.running_var is not None and not bn.training
            and conv.out_channels == bn.num_features)


def _sequential_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """(conv path, bn path) for a Conv2d directly followed by a BatchNorm2d inside a plain nn.Sequential (whose
    forward feeds each child's output to the next child only)."""
    pairs = []
    for parent, mod in net.named_modules():
        if not isinstance(mod, nn.Sequential) or type(mod).forward is not nn.Sequential.forward:
            continue
        kids = list(mod.named_children())
        for (a, ca), (b, cb) in zip(kids, kids[1:]):
            if _foldable(ca, cb):
                pre = f"{parent}." if parent else ""
                pairs.append((pre + a, pre + b))
    return pairs


def _traced_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """(conv path, bn path) where a torch.fx trace (every childless module a leaf) shows the convolution's output
    used by the BatchNorm only. [] when the network cannot be traced (data-dependent control flow)."""
    import torch.fx as fx

    class LeafTracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return next(iter(m.children()), None) is None or super().is_leaf_module(m, qualname)

    try:
        graph = LeafTracer().trace(net)
    except Exception as exc:  # noqa: BLE001 - any tracing failure only means: no folding outside Sequentials
        log.debug("fx trace failed (%s: %s); folding only inside nn.Sequential", type(exc).__name__, exc)
        return []
    modules = dict(net.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1 and len(node.args) == 1
                and not node.kwargs and _foldable(modules[src.target], modules[node.target])):
            pairs.append((src.target, node.target))
    return pairs


def _set(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, module)


@torch.no_grad()
def _fold(net: nn.Module, conv_path: str, bn_path: str) -> bool:
    conv, bn = net.get_submodule(conv_path), net.get_submodule(bn_path)
    w = conv.weight.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(w[:, 0, 0, 0])
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(gamma)
    s = gamma / torch.sqrt(bn.running_var.double() + bn.eps)  # (C,)
    if s.abs().min() <= MIN_SCALE * s.abs().max().clamp_min(1e-30):
        return False
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(s)
    shift = beta - bn.running_mean.double() * s  # BN(raw) = s * raw + shift, raw = conv(x, W, b)
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((w * s.view(-1, 1, 1, 1)).to(dtype), requires_grad=False)
    conv.bias = nn.Parameter((b * s + shift).to(dtype), requires_grad=False)
    conv.__class__ = _folded_class(type(conv))
    conv.register_buffer("fold_scale", s.to(dtype), persistent=False)
    conv.register_buffer("fold_shift", shift.to(dtype), persistent=False)
    _set(net, bn_path, FoldedBatchNorm(conv_path))
    return True


def fold_batchnorms(net: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d whose input is only a Conv2d's output into that Conv2d. Returns the count."""
    pairs = _sequential_pairs(net)
    if any(type(m) is nn.BatchNorm2d for m in net.modules()) and len(pairs) < sum(
            type(m) is nn.BatchNorm2d for m in net.modules()):
        seen = {p[1] for p in pairs}
        pairs += [p for p in _traced_pairs(net) if p[1] not in seen]
    return sum(_fold(net, c, b) for c, b in pairs)


def drop_dropout(net: nn.Module) -> int:
    """Replace dropout and stochastic-depth modules (identities in eval mode) by nn.Identity. Returns the count."""
    paths = [p for p, m in net.named_modules()
             if p and (isinstance(m, _DROPOUTS) or type(m).__name__ == "StochasticDepth")]
    for p in paths:
        _set(net, p, nn.Identity())
    return len(paths)


class FastSelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention with plain batch-first self-attention as three GEMM-shaped steps (module docstring)."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if (query is key and key is value and query.dim() == 3 and key_padding_mask is None and attn_mask is None
                and not need_weights and not is_causal and not self.training):
            n, tokens, e = query.shape
            heads = self.num_heads
            qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)  # (N, L, 3E): one GEMM over N*L rows
            q, k, v = qkv.view(n, tokens, 3, heads, e // heads).permute(2, 0, 3, 1, 4)  # each (N, H, L, E/H)
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, tokens, e)
            return F.linear(out, self.out_proj.weight, self.out_proj.bias), None
        return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                               attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)


def fast_self_attention(net: nn.Module) -> int:
    """Give every plain batch-first nn.MultiheadAttention the FastSelfAttention forward. Returns the count."""
    count = 0
    for m in net.modules():
        if (type(m) is nn.MultiheadAttention and m.batch_first and m._qkv_same_embed_dim and m.bias_k is None
                and m.bias_v is None and not m.add_zero_attn and m.in_proj_weight is not None):
            m.__class__ = FastSelfAttention
            count += 1
    return count


def apply_rewrites(net: nn.Module) -> dict[str, int]:
    """The frozen-network rewrites, done once at load on an eval-mode network. Returns what was rewritten."""
    done = {"batchnorm_folded": fold_batchnorms(net), "dropout_removed": drop_dropout(net),
            "self_attention": fast_self_attention(net)}
    if any(done.values()):
        log.debug("load-time rewrites: %s", done)
    return done
