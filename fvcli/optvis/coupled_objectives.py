"""Objectives that couple the images of a batch: diversity, alignment, and interpolation across frames.

They still return one score per image ([B]), but image b's score may depend on other images of the batch, so the
images of one group must be rendered in one batch. `groups` says which images belong together: groups[b] is image
b's group id, images with the same id are coupled, and id -1 (or None for the whole batch as one group) leaves an
image out. Several units' groups can so share one batch with independent images (a sweep's appendix panels).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .objectives import Acts, Objective


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
