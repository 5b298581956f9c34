"""How one dataset-examples pass runs: top-k, batch size, workers, size, the score over positions, quantiles.

A frozen value object built from the recipe's `examples:` section (fvcli/recipe/schema.py documents each default).
It is part of a pass's identity (fvcli/examples/state.py hashes it into the checkpoint name), so it is checked once,
here, when it is made: a bad quantile pair or a non-positive count is an FvError before any image is read.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import FvError


@dataclass(frozen=True)
class ExampleSettings:
    """How one pass runs (see recipe.ExamplesRecipe for the documented defaults)."""

    top_k: int = 10
    batch_size: int = 32
    workers: int = 2
    size: int | None = None  # None: the model's native size
    reduce: str = "max"  # channel score over positions: max (the appendix) or mean (what `fv render` optimizes)
    spectrum: tuple[float, float] = (0.4, 0.6)  # quantiles of the slightly negative / slightly positive columns
    reservoir: int = 512
    seed: int = 0
    checkpoint_every: int = 50
    tile: int = 96
    fold_bn: bool = True  # fold BatchNorm into convolutions for the pass (see fold_batchnorm)

    def __post_init__(self) -> None:
        if self.reduce not in ("max", "mean"):
            raise FvError(f"bad reduce {self.reduce!r}: valid max, mean")
        q = tuple(self.spectrum)
        if len(q) != 2 or not 0.0 < q[0] < q[1] < 1.0:
            raise FvError(f"bad examples.spectrum {list(q)}: expected two quantiles 0 < low < high < 1, e.g. [0.4, 0.6]")
        if self.top_k < 1 or self.batch_size < 1 or self.reservoir < 1 or self.checkpoint_every < 1:
            raise FvError("top_k, batch_size, reservoir and checkpoint_every must be positive")

    @classmethod
    def from_recipe(cls, ex) -> ExampleSettings:
        return cls(top_k=ex.top_k, batch_size=ex.batch_size, workers=ex.workers, size=ex.size, reduce=ex.reduce,
                   spectrum=tuple(ex.spectrum), reservoir=ex.reservoir, seed=ex.seed,
                   checkpoint_every=ex.checkpoint_every, tile=ex.tile)
