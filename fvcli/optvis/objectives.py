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

from ..models.capture import prefix_key

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

    def tensor(self) -> torch.Tensor:
        """The vector as a float64 tensor, built once per objective (a dictionary row is thousands of floats)."""
        t = self.__dict__.get("_tensor")
        if t is None:
            t = torch.tensor(self.vector, dtype=torch.float64)
            object.__setattr__(self, "_tensor", t)  # a cache, not a field: equality and hash ignore it
        return t

    def score(self, acts: Acts, image: torch.Tensor) -> torch.Tensor:
        a = acts[self.layer]
        return direction_scores(a, self.tensor().to(a.device, a.dtype)[None].expand(a.shape[0], -1), self.cossim_pow)

    def describe(self) -> str:
        return f"direction {self.layer}:{self.label or 'vector'}"


def direction_scores(a: torch.Tensor, v: torch.Tensor, cossim_pow: float = 0.0) -> torch.Tensor:
    """Image b's score for direction v[b]: activations (B, C, H, W) or (B, C), vectors (B, C) -> (B,)."""
    if a.dim() == 2:
        a = a[:, :, None, None]
    dot = (a * v[:, :, None, None]).sum(1)  # (B, H, W); ~4x faster than the einsum on a CPU, backward included
    if cossim_pow > 0:
        cos = dot / (a.norm(dim=1) * v.norm(dim=1)[:, None, None] + 1e-6)
        dot = dot * cos.clamp_min(0.1).pow(cossim_pow)
    return dot.flatten(1).mean(1)


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
        if (all(type(o) is Direction for o in objs) and len({o.layer for o in objs}) == 1
                and len({o.cossim_pow for o in objs}) == 1):
            # A dictionary sweep's batch: one einsum of (B, C, H, W) with the stacked rows (B, C), the same cost
            # as a channel batch's gather. Per image the values are Direction.score's.
            a = acts[objs[0].layer]
            v = torch.stack([o.tensor() for o in objs]).to(a.device, a.dtype)
            return direction_scores(a, v, objs[0].cossim_pow)
        rows = []
        for b, obj in enumerate(self.objectives):
            sub = {k: v[b : b + 1] for k, v in acts.items()}
            rows.append(obj.score(sub, image[b : b + 1]))
        return torch.cat(rows)


def random_direction(layer: str, channels: int, seed: int, cossim_pow: float = 0.0) -> Direction:
    """A direction with standard normal entries drawn from `seed` (lucid: np.random.randn(channels))."""
    g = torch.Generator().manual_seed(int(seed))
    vec = torch.randn(channels, generator=g, dtype=torch.float64)
    return Direction(layer, tuple(float(v) for v in vec), cossim_pow, f"random:{seed}")
