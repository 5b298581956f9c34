"""The layer catalog: every addressable layer of a network, with its channels, its positions and its *layout*.

A layer's output is not always (B, C, H, W). Four layouts are known:

  nchw    (B, C, H, W)  convolutions; the channel axis comes first
  nhwc    (B, H, W, C)  Swin stages, the inside of ConvNeXt blocks (Permute, LayerNorm over the last axis, Linear)
  tokens  (B, N, D)     a transformer's sequence: `prefix` tokens (class / distillation / registers) before a patch
                        grid of gh x gw tokens in row-major order (N = prefix + gh * gw); D is the channel axis
  vector  (B, C)        logits, pooled features

Reading one layout as another is a silent wrong picture (a Swin stage read as NCHW optimizes a row of the map, not a
channel), so the layout is decided once here, from evidence in this order:

1. the recipe (`model.layouts`: {layer or glob: nchw | nhwc | tokens | vector | {layout: tokens, prefix: N,
   grid: [H, W]}});
2. the module type: a Conv2d / BatchNorm2d / pooling output is NCHW; a Linear or a LayerNorm over the last axis on a
   4-D tensor is NHWC; a Permute says where its axes go; a model's own prefix-token count (timm's
   `num_prefix_tokens`, torchvision's ViT class token) splits a (B, N, D) sequence;
3. the shape at the native (square) size: (B, C, S, S) is NCHW and (B, S, S, C) is NHWC when C != S;
4. a second probe at another input size: the axes that scale with the image are the spatial ones, and for tokens the
   growth of N gives the prefix count (only run when 2-3 leave a layer undecided).

A layer still undecided stays in the catalog with the reason (`problem`); addressing it raises an FvError that names
the layer and the recipe key, rather than guessing. `build_catalog` runs at the native size (fixed-size models such as
torchvision's ViT accept nothing else); when the second probe fails, the catalog records the model as fixed-size and
activation capture resizes other input sizes to the native one (capture.py).
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import FvError
from .meta import shape_forward

LAYOUTS = ("nchw", "nhwc", "tokens", "vector")
_RANK = {"nchw": 4, "nhwc": 4, "tokens": 3, "vector": 2}
# Output of these module types is channel-first (B, C, H, W) whatever its shape.
_NCHW_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
               nn.AdaptiveMaxPool2d, nn.LocalResponseNorm, nn.GroupNorm, nn.InstanceNorm2d)
MAX_PREFIX = 64  # prefix tokens searched by the two-size probe (ViTs use 1 class + up to 4-16 registers)


@dataclass(frozen=True)
class Layout:
    """How to read a layer's output; `prefix` and `grid` only for tokens (None: detect)."""

    kind: str  # nchw | nhwc | tokens | vector
    prefix: int | None = None
    grid: tuple[int, int] | None = None

    def describe(self) -> str:
        if self.kind != "tokens" or (self.prefix is None and self.grid is None):
            return self.kind
        return f"tokens(prefix={self.prefix}, grid={self.grid})"


@dataclass(frozen=True)
class LayerInfo:
    name: str
    path: str  # module path in the network
    channels: int  # 0 when the layout is undecided
    spatial: tuple[int, int] | None  # (H, W) of the position grid at the native size; None for vectors
    order: int  # position in the forward pass
    layout: str = "nchw"  # nchw | nhwc | tokens | vector; "" when undecided (see `problem`)
    prefix: int = 0  # tokens: prefix tokens (class, distillation, registers) before the patch grid
    shape: tuple[int, ...] = ()  # the raw output shape at the native size, batch 1
    problem: str = ""  # why the layout could not be decided
    hook: str = "output"  # "input": the tensor is the module's input at its `call`-th call (a pre-activation)
    call: int = 0  # which call of the module, 0-based, for hook="input" (a ReLU shared inside a ResNet block)

    def describe(self) -> str:
        """`nhwc 96 @ 56x56`, `tokens 768 @ 14x14 + 1 prefix`, `vector 1000`, or `? (1, 50, 50, 50)`."""
        if self.problem:
            return f"? {self.shape}"
        sp = f" @ {self.spatial[0]}x{self.spatial[1]}" if self.spatial else ""
        pre = f" + {self.prefix} prefix" if self.prefix else ""
        return f"{self.layout} {self.channels}{sp}{pre}"


class Catalog(dict):
    """{layer name: LayerInfo} in forward order, plus what the probe learned about the whole model."""

    fixed_size: bool = False  # the network only accepts its native input size

    def __init__(self, items=(), fixed_size: bool = False) -> None:
        super().__init__(items)
        self.fixed_size = fixed_size


def undecided_message(info: LayerInfo) -> str:
    example = "{layout: tokens, prefix: 1}" if len(info.shape) == 3 else "nhwc"
    return (f"layer {info.name}: {info.problem}; declare its layout in the recipe, e.g. "
            f"--set 'model.layouts={{{info.name}: {example}}}' (key model.layouts: one of {', '.join(LAYOUTS)}; "
            f"tokens may give prefix and grid: {{layout: tokens, prefix: 1, grid: [14, 14]}})")


# ----------------------------------------------------------------------------------------------------------------
# Declared layouts (recipe key model.layouts)


def parse_layouts(raw: Mapping | None, path: str = "model.layouts") -> tuple[tuple[str, Layout], ...]:
    """The recipe's {layer or glob pattern: layout} -> ((pattern, Layout), ...); FvError naming the bad entry."""
    if not raw:
        return ()
    if not isinstance(raw, Mapping):
        raise FvError(f"recipe key {path}: expected a mapping {{layer: layout}}, got {raw!r}")
    out = []
    for pat, v in raw.items():
        p = f"{path}.{pat}"
        if isinstance(v, str):
            if v not in LAYOUTS:
                raise FvError(f"recipe key {p}: unknown layout {v!r}; valid: {', '.join(LAYOUTS)}")
            out.append((str(pat), Layout(v)))
            continue
        if not isinstance(v, Mapping):
            raise FvError(f"recipe key {p}: expected one of {', '.join(LAYOUTS)} or {{layout: tokens, prefix: N, "
                          f"grid: [H, W]}}, got {v!r}")
        extra = set(v) - {"layout", "prefix", "grid"}
        if extra:
            raise FvError(f"recipe key {p}: unknown keys {sorted(extra)}; valid: layout, prefix, grid")
        kind = v.get("layout", "tokens")
        if kind != "tokens":
            raise FvError(f"recipe key {p}.layout: prefix and grid belong to tokens, got layout {kind!r}")
        prefix = v.get("prefix")
        if prefix is not None and (isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0):
            raise FvError(f"recipe key {p}.prefix: expected an integer >= 0, got {prefix!r}")
        grid = v.get("grid")
        if grid is not None:
            if (not isinstance(grid, (list, tuple)) or len(grid) != 2
                    or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid)):
                raise FvError(f"recipe key {p}.grid: expected [H, W] (two positive integers), got {grid!r}")
            grid = (int(grid[0]), int(grid[1]))
        out.append((str(pat), Layout("tokens", prefix, grid)))
    return tuple(out)


def declared_layout(name: str, path: str, declared: tuple[tuple[str, Layout], ...]) -> Layout | None:
    """The recipe's layout for a layer: an exact name first, else the first glob matching its name or path."""
    for pat, lay in declared:
        if pat in (name, path):
            return lay
    for pat, lay in declared:
        if fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(path, pat):
            return lay
    return None


# ----------------------------------------------------------------------------------------------------------------
# Evidence


def model_prefix_tokens(net: nn.Module) -> int | None:
    """The prefix-token count a model states about itself: timm's `num_prefix_tokens`, torchvision ViT's class
    token; None when it says nothing."""
    n = getattr(net, "num_prefix_tokens", None)
    if isinstance(n, int) and not isinstance(n, bool):
        return n
    if type(net).__name__ == "VisionTransformer" and hasattr(net, "class_token"):  # torchvision
        return 1
    return None


def _type_layout(module: nn.Module, shape: tuple[int, ...]) -> str | None:
    """What a module's type says about its 4-D output: nchw, nhwc or None (nothing)."""
    if len(shape) != 4:
        return None
    if isinstance(module, _NCHW_TYPES):
        return "nchw"
    if isinstance(module, nn.Linear):
        return "nhwc"  # a Linear maps the last axis: that axis is the channels
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1 and shape[3] == module.normalized_shape[0]:
        return "nhwc"
    dims = getattr(module, "dims", None)  # torchvision.ops.Permute
    if type(module).__name__ == "Permute" and isinstance(dims, (list, tuple)) and len(dims) == 4:
        if list(dims) == [0, 2, 3, 1]:
            return "nhwc"
        if list(dims) == [0, 3, 1, 2]:
            return "nchw"
    return None


def _square_layout(shape: tuple[int, ...]) -> str | None:
    """(B, C, S, S) with C != S is NCHW, (B, S, S, C) with C != S is NHWC (the probe image is square)."""
    _, a, b, c = shape
    if b == c and a != b:
        return "nchw"
    if a == b and b != c:
        return "nhwc"
    return None


def _scaling_layout(s1: tuple[int, ...], s2: tuple[int, ...]) -> str | None:
    """The axes that change with the input size are spatial."""
    moved = {i for i, (x, y) in enumerate(zip(s1, s2)) if x != y}
    if moved == {2, 3}:
        return "nchw"
    if moved == {1, 2}:
        return "nhwc"
    return None


def _isqrt_exact(n: int) -> int | None:
    if n <= 0:
        return None
    r = math.isqrt(n)
    return r if r * r == n else None


def _prefix_from_two_sizes(n1: int, n2: int, size1: int, size2: int) -> int | None:
    """The one prefix count P for which both sequences are P + a square grid that scales with the image."""
    found = []
    for p in range(0, min(n1, n2, MAX_PREFIX + 1)):
        g1, g2 = _isqrt_exact(n1 - p), _isqrt_exact(n2 - p)
        if g1 and g2 and g1 != g2 and abs(g1 * size2 - g2 * size1) <= max(size1, size2) / min(g1, g2):
            found.append(p)
    return found[0] if len(found) == 1 else None


def _tokens_info(name: str, path: str, order: int, shape: tuple[int, ...], prefix: int | None,
                 grid: tuple[int, int] | None, why_prefix: str) -> LayerInfo:
    n, d = shape[1], shape[2]
    if prefix is not None and not 0 <= prefix < n:
        return LayerInfo(name, path, 0, None, order, "", 0, shape,
                         f"output {shape}: {prefix} prefix tokens leave no patch grid")
    if prefix is None:
        return LayerInfo(name, path, 0, None, order, "", 0, shape,
                         f"output {shape} looks like tokens but the number of prefix tokens is unknown ({why_prefix})")
    if grid is None:
        g = _isqrt_exact(n - prefix)
        if g is None:
            return LayerInfo(name, path, 0, None, order, "", 0, shape,
                             f"output {shape}: {n} tokens minus {prefix} prefix is not a square patch grid")
        grid = (g, g)
    if prefix + grid[0] * grid[1] != n:
        return LayerInfo(name, path, 0, None, order, "", 0, shape,
                         f"output {shape}: {prefix} prefix + {grid[0]}x{grid[1]} grid != {n} tokens")
    return LayerInfo(name, path, d, grid, order, "tokens", prefix, shape)


def _declared_tokens(decl: Layout, shape: tuple[int, ...], hint: int | None):
    """(prefix, grid, why) for a layer the recipe declares as tokens: a missing prefix is what the grid leaves, else
    the model's own count, else 0."""
    prefix = decl.prefix
    if prefix is None:
        prefix = shape[1] - decl.grid[0] * decl.grid[1] if decl.grid else (hint if hint is not None else 0)
    return (prefix, decl.grid, "")


def _info(name: str, path: str, order: int, shape: tuple[int, ...], kind: str | None, why: str,
          tokens: tuple[int | None, tuple[int, int] | None, str] = (None, None, "")) -> LayerInfo:
    if kind is not None and len(shape) != _RANK[kind]:
        return LayerInfo(name, path, 0, None, order, "", 0, shape,
                         f"declared layout {kind} needs a {_RANK[kind]}-D output, got {shape}")
    if kind == "vector":
        return LayerInfo(name, path, shape[1], None, order, "vector", 0, shape)
    if kind == "nchw":
        return LayerInfo(name, path, shape[1], (shape[2], shape[3]), order, "nchw", 0, shape)
    if kind == "nhwc":
        return LayerInfo(name, path, shape[3], (shape[1], shape[2]), order, "nhwc", 0, shape)
    if kind == "tokens":
        return _tokens_info(name, path, order, shape, *tokens)
    return LayerInfo(name, path, 0, None, order, "", 0, shape, why)


# ----------------------------------------------------------------------------------------------------------------
# The probe


def _run_probe(net: nn.Module, paths: list[str], size: int, device: torch.device):
    """One forward of a zero image: {path: output shape} (tensors only), {path: number of calls}, {path: order}."""
    modules = dict(net.named_modules())
    shapes: dict[str, tuple] = {}
    calls: dict[str, int] = {}
    order: dict[str, int] = {}
    handles = []

    def make_hook(path: str):
        def hook(_m, _inp, out):
            calls[path] = calls.get(path, 0) + 1
            order.setdefault(path, len(order))
            if isinstance(out, torch.Tensor):
                shapes[path] = tuple(out.shape)

        return hook

    for path in dict.fromkeys(paths):
        if path in modules:
            handles.append(modules[path].register_forward_hook(make_hook(path)))
    try:
        shape_forward(net, size, device)  # on the meta device when cheaper: shapes only, no arithmetic
    finally:
        for h in handles:
            h.remove()
    return shapes, calls, order


def second_size(native: int) -> int:
    """Another input size for the layout probe: about 3/4 of the native size, a multiple of 32 (patch sizes and
    strides divide it), or twice the native size for small networks."""
    s = (native * 3 // 4) // 32 * 32
    return s if s >= 32 and s != native else native * 2


def build_catalog(net: nn.Module, candidates: list[tuple[str, str]], size: int, device: torch.device,
                  declared: tuple[tuple[str, Layout], ...] = ()) -> Catalog:
    """Probe `net` at its native `size` to learn each candidate layer's (name, module path) shape and layout.

    Modules called more than once per forward (e.g. a ReLU shared inside a ResNet block) are left out: their name
    does not denote one tensor. So are outputs that are not 2-, 3- or 4-D tensors."""
    modules = dict(net.named_modules())
    shapes, calls, order = _run_probe(net, [p for _, p in candidates], size, device)
    hint = model_prefix_tokens(net)
    layers = [(n, p) for n, p in candidates
              if p in shapes and calls.get(p) == 1 and len(shapes[p]) in (2, 3, 4)]

    seq_lengths = {shapes[p][1] for _, p in layers if len(shapes[p]) == 3}  # N of (B, N, D) outputs
    decided: dict[str, tuple[str | None, str, tuple]] = {}  # name -> (kind, why-undecided, tokens args)
    for name, path in layers:
        shp = shapes[path]
        decl = declared_layout(name, path, declared)
        if decl is not None:
            decided[name] = (decl.kind, "", _declared_tokens(decl, shp, hint) if len(shp) == 3 else ())
        elif len(shp) == 2:
            decided[name] = ("vector", "", ())
        elif len(shp) == 4:
            kind = _type_layout(modules[path], shp)
            if kind is None and not set(shp[1:]) & seq_lengths:  # (B, heads, N, N) is attention, not a map
                kind = _square_layout(shp)
            decided[name] = (kind, f"output {shp} could be NCHW or NHWC (or attention over tokens)", ())
        elif hint is not None:
            # a patch embedding's output has no prefix tokens yet: N itself is the square grid
            p = 0 if _isqrt_exact(shp[1] - hint) is None and _isqrt_exact(shp[1]) else hint
            decided[name] = ("tokens", "", (p, None, ""))
        else:
            decided[name] = (None, f"output {shp} is 3-D", ())

    pending = [n for n, _ in layers if decided[n][0] is None]
    fixed = False
    if pending or any(len(shapes[p]) == 3 for _, p in layers):
        # A second probe at another size settles what the first left open, and finds fixed-size networks
        # (transformers whose patch embedding or position table accepts one size: it fails at once).
        s2 = second_size(size)
        try:
            shapes2, _, _ = _run_probe(net, [p for n, p in layers if n in pending], s2, device)
        except Exception:  # noqa: BLE001 - any failure at another size: a fixed-size network
            shapes2, fixed = {}, True
        for name, path in layers:
            if name not in pending:
                continue
            s1, s2shape = shapes[path], shapes2.get(path)
            why = decided[name][1] + ("; the network accepts only its native size, so a second probe at "
                                      f"{s2} px could not tell" if fixed else "")
            if s2shape is None or len(s2shape) != len(s1):
                decided[name] = (None, why, ())
            elif len(s1) == 4:  # (attention over tokens scales like a map: it stays undecided)
                kind = None if set(s1[1:]) & seq_lengths else _scaling_layout(s1, s2shape)
                decided[name] = (kind, why, ())
            elif s1[2] == s2shape[2] and s1[1] != s2shape[1]:  # (B, N, D): N scales with the image
                p = _prefix_from_two_sizes(s1[1], s2shape[1], size, s2)
                decided[name] = ("tokens", "", (p, None, f"two probe sizes ({size}, {s2} px) do not settle it"))
            else:
                decided[name] = (None, why, ())

    infos = [_info(name, path, order[path], shapes[path], decided[name][0], decided[name][1], decided[name][2])
             for name, path in layers]
    return Catalog(((i.name, i) for i in sorted(infos, key=lambda i: i.order)), fixed_size=fixed)
