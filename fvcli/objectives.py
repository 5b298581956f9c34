"""Objectives: what we want more of.

An objective is a small frozen value object. Called with the captured activations `acts` ({layer: tensor}) and the
image batch `image` ((B, 3, H, W) in [0, 1], before transforms), it returns **one score per image, shape [B]**.
Objectives compose: `a + b`, `a - b`, `-a`, `0.2 * a`; `layers` says which activations they need.
`PerImage` gives every image of a batch its own objective (one unit per image in a sweep).

Activations arrive channel-first whatever the layer's layout (models/capture.py): `acts[layer]` is (B, C, H, W) or
(B, C); a token layer's prefix tokens (class, registers) are `acts[prefix_key(layer)]`, (B, C, P). So "channel" means
the mean over the positions of the grid (a ViT's patch tokens) on every layout, and a `Neuron` may name a prefix
token as its position.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .models.capture import prefix_key

Acts = Mapping[str, torch.Tensor]


class Objective:
    """Base class: subclasses define `layers` and `score`."""

    layers: frozenset[str] = frozenset()

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:  # -> [B]
        raise TypeError(f"{type(self).__name__} does not define score()")

    def __call__(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        return self.score(acts, image)

    def __add__(self, other: Objective) -> Objective:
        return Sum.of((1.0, self), (1.0, other))

    def __sub__(self, other: Objective) -> Objective:
        return Sum.of((1.0, self), (-1.0, other))

    def __neg__(self) -> Objective:
        return Sum.of((-1.0, self))

    def __mul__(self, w: float) -> Objective:
        return Sum.of((float(w), self))

    __rmul__ = __mul__

    def describe(self) -> str:
        return repr(self)


def _channel_map(act: torch.Tensor, channel: int) -> torch.Tensor:
    return act[:, channel]  # (B, H, W) or (B,)


@dataclass(frozen=True)
class Channel(Objective):
    """Mean activation of one channel over all positions."""

    layer: str
    channel: int

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        a = _channel_map(acts[self.layer], self.channel)
        return a.flatten(1).mean(1) if a.dim() > 1 else a

    def describe(self) -> str:
        return f"channel {self.layer}:{self.channel}"


@dataclass(frozen=True)
class Neuron(Objective):
    """One channel at one position; the center (H//2, W//2) of the activation map by default, as lucid. With
    `prefix`, the position is that prefix token of a token layer instead (0: the class token)."""

    layer: str
    channel: int
    x: int | None = None
    y: int | None = None
    prefix: int | None = None

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        if self.prefix is not None:
            return acts[prefix_key(self.layer)][:, self.channel, self.prefix]  # (B, C, P) -> (B,)
        a = acts[self.layer][:, self.channel]  # (B, H, W)
        h, w = a.shape[-2:]
        y = h // 2 if self.y is None else min(self.y, h - 1)
        x = w // 2 if self.x is None else min(self.x, w - 1)
        return a[:, y, x]

    def describe(self) -> str:
        pos = "" if self.x is None else f"@{self.x},{self.y}"
        if self.prefix is not None:
            pos = "@cls" if self.prefix == 0 else f"@prefix{self.prefix}"
        return f"neuron {self.layer}:{self.channel}{pos}"


@dataclass(frozen=True)
class LayerDream(Objective):
    """DeepDream: mean of squared activations of a whole layer."""

    layer: str

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        return acts[self.layer].pow(2).flatten(1).mean(1)

    def describe(self) -> str:
        return f"deepdream {self.layer}"


@dataclass(frozen=True)
class ClassLogit(Objective):
    """A class's pre-softmax logit (the article found logits give better images than probabilities)."""

    layer: str  # the model's logits layer
    cls: int

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        return acts[self.layer][:, self.cls]

    def describe(self) -> str:
        return f"logit {self.cls}"


@dataclass(frozen=True)
class ClassProb(Objective):
    """A class's softmax probability, computed from the logits layer.

    The score's value is the probability p, but its gradient is that of log p: the same ascent direction
    (log is monotone), without the vanishing step of a class that starts at p ~ 1e-8, where the gradient of p
    itself is smaller than Adam's epsilon and optimization stalls."""

    layer: str
    cls: int

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        logp = acts[self.layer].float().log_softmax(dim=1)[:, self.cls]  # (B,)
        return logp.detach().exp() + (logp - logp.detach())  # value p, gradient d(log p)

    def describe(self) -> str:
        return f"probability {self.cls}"


@dataclass(frozen=True)
class Direction(Objective):
    """A direction in a layer's activation space: mean over positions of the dot product (lucid), or lucid's
    cosine-weighted variant `dot * max(cos, 0.1)**cossim_pow` when `cossim_pow > 0`."""

    layer: str
    vector: tuple[float, ...]
    cossim_pow: float = 0.0
    label: str = ""

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        a = acts[self.layer]
        v = torch.tensor(self.vector, dtype=a.dtype, device=a.device)
        if a.dim() == 2:
            a = a[:, :, None, None]
        dot = torch.einsum("bchw,c->bhw", a, v)  # (B, H, W)
        if self.cossim_pow > 0:
            cos = dot / (a.norm(dim=1) * v.norm() + 1e-6)
            dot = dot * cos.clamp_min(0.1).pow(self.cossim_pow)
        return dot.flatten(1).mean(1)

    def describe(self) -> str:
        return f"direction {self.layer}:{self.label or 'vector'}"


@dataclass(frozen=True)
class L1(Objective):
    """Penalty term: L1 distance of the image from `constant` (use with a negative weight)."""

    constant: float = 0.5

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        return (image - self.constant).abs().flatten(1).sum(1)


@dataclass(frozen=True)
class TotalVariation(Objective):
    """Penalty term: total variation (sum of absolute neighbour differences) of the image."""

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().flatten(1).sum(1)
        dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().flatten(1).sum(1)
        return dx + dy


@dataclass(frozen=True)
class BlurEachStep(Objective):
    """lucid's blur_input_each_step: -0.5 * ||x - stopgrad(blur3x3(x))||^2. Its gradient moves the image towards
    its own blur at every step (weight 1 is one full blur step per step)."""

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        k = torch.ones(3, 1, 3, 3, dtype=image.dtype, device=image.device) / 9.0
        with torch.no_grad():
            blurred = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), k, groups=3)
        return -0.5 * (image - blurred).pow(2).flatten(1).sum(1)


@dataclass(frozen=True)
class Sum(Objective):
    """A weighted sum of objectives: what `+`, `-`, unary minus and scalar `*` build."""

    terms: tuple[tuple[float, Objective], ...] = field(default_factory=tuple)

    @staticmethod
    def of(*terms: tuple[float, Objective]) -> Sum:
        flat: list[tuple[float, Objective]] = []
        for w, t in terms:
            if isinstance(t, Sum):
                flat.extend((w * w2, t2) for w2, t2 in t.terms)
            else:
                flat.append((w, t))
        return Sum(tuple(flat))

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        out: frozenset[str] = frozenset()
        for _, t in self.terms:
            out |= t.layers
        return out

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        total = None
        for w, t in self.terms:
            s = w * t.score(acts, image)
            total = s if total is None else total + s
        assert total is not None, "empty objective sum"
        return total

    def describe(self) -> str:
        parts = []
        for w, t in self.terms:
            sign = "-" if w < 0 else "+"
            mag = abs(w)
            parts.append(f"{sign} {'' if mag == 1 else f'{mag:g}*'}{t.describe()}")
        s = " ".join(parts)
        return s[2:] if s.startswith("+ ") else s


@dataclass(frozen=True)
class PerImage(Objective):
    """Image b of the batch is scored by `objectives[b]` alone: a batch of independent units.

    Because the loss is `-scores.sum()`, each image's gradient depends only on its own objective."""

    objectives: tuple[Objective, ...]

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        out: frozenset[str] = frozenset()
        for o in self.objectives:
            out |= o.layers
        return out

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        assert image.shape[0] == len(self.objectives), "one objective per image"
        objs = self.objectives
        if all(type(o) is Channel for o in objs) and len({o.layer for o in objs}) == 1:
            # A sweep's batch: one gather instead of B slices, whose backward would fill and add B full-size
            # gradients (O(B^2) memory traffic). Per image the values are the same as Channel.score's.
            a = acts[objs[0].layer]
            idx = torch.tensor([o.channel for o in objs], device=a.device)
            sel = a[torch.arange(len(objs), device=a.device), idx]  # (B, H, W) or (B,)
            return sel.flatten(1).mean(1) if sel.dim() > 1 else sel
        rows = []
        for b, obj in enumerate(self.objectives):
            sub = {k: v[b : b + 1] for k, v in acts.items()}
            rows.append(obj.score(sub, image[b : b + 1]))
        return torch.cat(rows)


def regularizers(l1: float = 0.0, l1_constant: float = 0.5, tv: float = 0.0, blur: float = 0.0,
                 bilateral: float = 0.0) -> Objective | None:
    """The recipe's penalty terms as one objective to add (weights are penalties: they are subtracted)."""
    terms: list[tuple[float, Objective]] = []
    if l1:
        terms.append((-l1, L1(l1_constant)))
    if tv:
        terms.append((-tv, TotalVariation()))
    if blur:
        terms.append((blur, BlurEachStep()))
    if bilateral:
        from .bilateral import BilateralEachStep  # it builds on this module

        terms.append((bilateral, BilateralEachStep()))
    return Sum(tuple(terms)) if terms else None


# ----------------------------------------------------------------------------------------------------------------
# Objectives that couple the images of a batch (diversity, alignment) and interpolate across it.
#
# They still return one score per image ([B]); image b's score may depend on other images of the batch. `groups`
# says which images belong together: groups[b] is image b's group id, images with the same id are coupled, and id
# -1 (or None for the whole batch as one group) leaves an image out. Several units' groups can so share one batch
# with independent images (a sweep's appendix panels).


def _group_mask(groups: tuple[int, ...] | None, b: int, device: torch.device) -> torch.Tensor:
    """(B, B) bool: True where images i != j are in the same group (id >= 0)."""
    g = torch.zeros(b, dtype=torch.long, device=device) if groups is None else torch.tensor(groups, device=device)
    assert g.numel() == b, f"groups has {g.numel()} entries for a batch of {b}"
    same = (g[:, None] == g[None, :]) & (g[:, None] >= 0)
    return same & ~torch.eye(b, dtype=torch.bool, device=device)


def gram_cosines(act: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) activations -> (B, B) cosine similarities of the images' Gram matrices.

    G_b = A_b A_b^T over positions (C x C), flattened and L2-normalised (lucid's diversity, eps 1e-10)."""
    a = act.float().flatten(2) if act.dim() > 2 else act.float()[:, :, None]  # (B, C, HW)
    g = torch.bmm(a, a.transpose(1, 2)).flatten(1)  # (B, C*C)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-10)
    return g @ g.t()


@dataclass(frozen=True)
class Diversity(Objective):
    """The article's diversity term: image b scores -(sum over the other images b' of its group of the cosine
    similarity of their Gram matrices at `layer`). Higher is more diverse; add it with a positive weight:
    `unit + 100 * Diversity(layer)`.

    Summed over the batch this is -sum_b sum_{b' != b} cos(G_b, G_b'), lucid's `diversity()` times B; lucid's
    channel objective is a mean over the batch, so `channel + w * Diversity` here has the same gradients (up to the
    factor B, which Adam ignores) as lucid's `channel - w * diversity` with the same w (lucid notebooks: w = 1e2)."""

    layer: str
    groups: tuple[int, ...] | None = None  # per image: group id (-1: not diversified); None: one group

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        act = acts[self.layer]
        cos = gram_cosines(act)  # (B, B)
        mask = _group_mask(self.groups, act.shape[0], act.device)
        return -(cos * mask).sum(1)

    def describe(self) -> str:
        return f"diversity {self.layer}"


@dataclass(frozen=True)
class Alignment(Objective):
    """lucid's alignment: penalize the squared difference of the activations at `layer` of images d = 1..4 apart
    in the batch (mean over the activation's elements), weighted by decay_ratio**-d. Each pair's penalty is split
    between its two images; higher is better aligned (scores <= 0). Used with interpolation frames."""

    layer: str
    decay_ratio: float = 2.0  # lucid's default
    max_distance: int = 4  # lucid compares frames up to 4 apart
    groups: tuple[int, ...] | None = None  # frames are neighbours only within a group; None: the whole batch

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset([self.layer])

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        act = acts[self.layer].float()
        b = act.shape[0]
        same = _group_mask(self.groups, b, act.device)
        out = act.new_zeros(b)
        for d in range(1, min(self.max_distance, b - 1) + 1):
            pen = (act[:-d] - act[d:]).pow(2).flatten(1).mean(1) / self.decay_ratio**d  # (B-d,)
            pen = pen * same.diagonal(d).to(pen.dtype)  # only pairs within a group
            out = out.index_add(0, torch.arange(b - d, device=act.device), -0.5 * pen)
            out = out.index_add(0, torch.arange(d, b, device=act.device), -0.5 * pen)
        return out

    def describe(self) -> str:
        return f"alignment {self.layer}"


@dataclass(frozen=True)
class Interpolate(Objective):
    """Image i is scored by (1 - t_i) * a + t_i * b: lucid's channel_interpolate for any two objectives, with
    t_i = i / (n - 1) across n frames by default (see `Interpolate.frames`)."""

    a: Objective
    b: Objective
    ts: tuple[float, ...]

    @staticmethod
    def frames(a: Objective, b: Objective, n: int) -> Interpolate:
        return Interpolate(a, b, tuple(i / (n - 1) if n > 1 else 0.0 for i in range(n)))

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return self.a.layers | self.b.layers

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        sa, sb = self.a.score(acts, image), self.b.score(acts, image)
        assert sa.shape[0] == len(self.ts), "one interpolation weight per image"
        t = torch.tensor(self.ts, dtype=sa.dtype, device=sa.device)
        return (1 - t) * sa + t * sb

    def describe(self) -> str:
        return f"interpolate({self.a.describe()} -> {self.b.describe()}, {len(self.ts)} frames)"


def random_direction(layer: str, channels: int, seed: int, cossim_pow: float = 0.0) -> Direction:
    """A direction with standard normal entries drawn from `seed` (lucid: np.random.randn(channels))."""
    g = torch.Generator().manual_seed(int(seed))
    vec = torch.randn(channels, generator=g, dtype=torch.float64)
    return Direction(layer, tuple(float(v) for v in vec), cossim_pow, f"random:{seed}")
