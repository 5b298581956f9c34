"""Did a picture move? The flag for a render whose objective stayed where its initial noise put it.

Why: a picture is presented as what a unit responds to; one whose optimization did nothing (a ReLU's output pushed
below 0, a diversity facet that the diversity term kept away from everything the unit likes) is still an image --
gray noise -- and looks like a result. So every variant (negatives, diversity facets; fvcli/runner/variants.py)
is measured before and after:

- `initial`, `final`: the variant's own signed objective (no penalties, no diversity term) on its initial and its
  final image, untransformed;
- `noise_spread`: the objective's own scale, in its own units: its standard deviation over NOISE_IMAGES images of
  uniform random pixels (seeded, at the render's size). fv's initial images are nearly uniform gray (a small random
  spectrum), so the spread over them is ~0 and says nothing; random pictures say how much the objective varies
  between images that mean nothing. A unit that never fires on noise (a spread of 0) gets its layer's typical
  spread instead: the median over the layer's channels of their position-averaged spread over the same images;
- `gain` = final - initial. The picture is **flat** when gain <= FLAT_SIGMAS * noise_spread: the optimization moved
  its objective by no more than the difference between two meaningless pictures. 3 standard deviations: under a
  normal spread a noise picture gets that far by chance 0.1 % of the time; real renders gain many times more (the
  128 negatives of the demo's `block3`, 128 steps: a median of 17 margins, the least 1.02; minimizing the post-ReLU
  output instead left 93 of them flat -- scripts/check_negatives.py);
- a diversity facet is also flat when its gain is under FACET_SHARE of the largest gain in its group: the facet
  collapsed (the diversity term won) while its siblings found the unit.

A flat picture keeps its PNG (the evidence), and its record says `"flat": true` with the reason; the gallery's unit
page shows the flag in place of the picture.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models import Capture, LoadedModel
from ..optvis.objectives import Objective

FLAT_SIGMAS = 3.0
FACET_SHARE = 0.25
NOISE_IMAGES = 16
NOISE_SEED = 0


def noise_images(size: int, n: int = NOISE_IMAGES) -> torch.Tensor:
    """(n, 3, size, size) uniform random pixels in [0, 1], the same for every batch."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(NOISE_SEED))


def _scores(model: LoadedModel, objectives: Sequence[Objective], images: torch.Tensor,
            floor: bool = False) -> torch.Tensor:
    """(V, B): objective v on each of the B images; with `floor`, (V,): each objective's spread over the images,
    at least its layers' typical channel spread (the module docstring)."""
    layers = set().union(*(o.layers for o in objectives))
    with torch.no_grad(), Capture(model, layers) as cap:
        x = images.to(model.device)
        acts = cap(model.preprocess.apply(x))
        scores = torch.stack([o(acts, x).float().cpu() for o in objectives])
        if not floor:
            return scores
        typical = {}
        for name in layers:
            a = acts[name].float()
            per_channel = a.flatten(2).mean(2) if a.dim() > 2 else a  # (n, C)
            typical[name] = float(per_channel.std(0).median())
    return torch.tensor([max([float(scores[v].std())] + [typical[n] for n in o.layers])
                         for v, o in enumerate(objectives)])


def movement(model: LoadedModel, objectives: Sequence[Objective], groups: Sequence[object | None],
             first: torch.Tensor, last: torch.Tensor) -> list[dict]:
    """Per image b of a batch: {initial, final, gain, noise_spread, flat, flat_reason} (module docstring).
    `objectives[b]`: image b's own signed objective; `groups[b]`: its diversity group (None: not a facet);
    `first`, `last`: the initial and final images (B, 3, S, S)."""
    b = len(objectives)
    idx = torch.arange(b)
    spread = _scores(model, objectives, noise_images(int(first.shape[-1])), floor=True)  # (B,)
    initial = _scores(model, objectives, first)[idx, idx]  # image b under its own objective
    final = _scores(model, objectives, last)[idx, idx]
    gain = final - initial
    best: dict[object, float] = {}
    for i, g in enumerate(groups):
        if g is not None:
            best[g] = max(best.get(g, float("-inf")), float(gain[i]))
    out = []
    for i in range(b):
        g, s = float(gain[i]), float(spread[i])
        reason = None
        if not g > FLAT_SIGMAS * s:
            reason = (f"the objective moved by {g:.4g} from its initial noise, not more than {FLAT_SIGMAS:g} x its "
                      f"spread over random pictures ({s:.4g})")
        elif groups[i] is not None and best[groups[i]] > 0 and g < FACET_SHARE * best[groups[i]]:
            reason = (f"collapsed facet: its objective gained {g:.4g}, under {FACET_SHARE:g} of the best facet's "
                      f"{best[groups[i]]:.4g}")
        out.append({"initial": float(initial[i]), "final": float(final[i]), "gain": g, "noise_spread": s,
                    "margin": FLAT_SIGMAS * s, "flat": reason is not None, "flat_reason": reason})
    return out
