"""Per-feature statistics of a sparse autoencoder, and the exact second look at a trained one.

Why: a dictionary of 4,096 features is only browsable with numbers beside each row -- how often it fires, how
strongly, whether it is dead -- and an SAE's quality is two numbers, how well it reconstructs and how sparse it is.

`FeatureStats` accumulates over a stream of codes z (n, K): per feature the firing count (z > 0), the sum of its
activation where it fired, and the sample index at which it last fired, so that `dead` means "did not fire on any of
the last `window` samples" (Gao et al. 2024 count a latent dead after 10M tokens without firing; a folder of images
gives far fewer samples, so the window is a setting). `frequency` = count / samples, `mean_when_firing` =
sum / count. Its state is a dict of tensors (saved in the trainer's checkpoints).

`SAEMeasure` streams the samples again with the trained SAE fixed (as `factorize.Measure` does for NMF and k-means):
fraction of variance explained 1 - SSE / SST (SST about the mean), relative error ||X - X^|| / ||X||, mean L0, each
feature's share of the reconstruction (sum over samples of (z_k * |w_k|)^2, normalized), and `FeatureStats` over
every sample of that pass, whose `dead` is then "never fired on the folder".
"""
from __future__ import annotations

import torch

from .sae import Codes, SparseAutoencoder


class FeatureStats:
    def __init__(self, features: int, window: int) -> None:
        self.window = int(window)
        self.count = torch.zeros(features, dtype=torch.float64)
        self.total = torch.zeros(features, dtype=torch.float64)
        self.last = torch.full((features,), -1, dtype=torch.int64)  # sample index of the last firing (-1: never)
        self.n = 0

    def update(self, z: torch.Tensor | Codes) -> None:
        """Codes of n consecutive samples: sparse `Codes` or a dense (n, K) tensor (on any device; the sums stay
        there)."""
        c = z if isinstance(z, Codes) else Codes.from_dense(z.detach())
        dev = c.vals.device
        if self.count.device != dev:
            self.count, self.total, self.last = (t.to(dev) for t in (self.count, self.total, self.last))
        on = c.vals > 0
        cols, rows, vals = c.cols[on], c.rows[on], c.vals[on].detach()
        k = self.count.shape[0]
        self.count += torch.bincount(cols, minlength=k).to(torch.float64)
        self.total += torch.bincount(cols, weights=vals.to(torch.float64), minlength=k)
        self.last.scatter_reduce_(0, cols, self.n + rows, reduce="amax")  # the last sample each feature fired on
        self.n += c.n

    def dead(self) -> torch.Tensor:
        """(K,) bool: no firing on the last `window` samples (or on all of them, when fewer were seen)."""
        return self.last < self.n - min(self.window, self.n)

    def frequency(self) -> torch.Tensor:
        return self.count / max(1, self.n)

    def mean_when_firing(self) -> torch.Tensor:
        return torch.where(self.count > 0, self.total / self.count.clamp_min(1), torch.zeros((), dtype=self.total.dtype,
                                                                                          device=self.total.device))

    def state(self) -> dict:
        return {"count": self.count.cpu(), "total": self.total.cpu(), "last": self.last.cpu(), "n": self.n,
                "window": self.window}

    def load(self, st: dict) -> None:
        self.count, self.total, self.last = st["count"].clone(), st["total"].clone(), st["last"].clone()
        self.n, self.window = int(st["n"]), int(st["window"])

    def summary(self) -> dict:
        """JSON: per-feature lists (6 significant digits) and the dead features."""
        dead = self.dead().cpu()
        return {"samples": self.n, "dead_window": self.window,
                "frequency": [float(f"{v:.6g}") for v in self.frequency().cpu().tolist()],
                "mean_when_firing": [float(f"{v:.6g}") for v in self.mean_when_firing().cpu().tolist()],
                "dead": [int(i) for i in dead.nonzero().flatten().tolist()], "dead_count": int(dead.sum())}


class SAEMeasure:
    """How much of the activations the trained SAE explains, and its features' statistics (module docstring)."""

    def __init__(self, sae: SparseAutoencoder) -> None:
        self.sae = sae
        k = sae.features
        self.stats = FeatureStats(k, window=2**62)  # dead = never fired over the whole pass
        self.n = 0
        self.sx: torch.Tensor | None = None
        self.sxx = self.sse = self.l0 = 0.0
        self.usage = torch.zeros(k, dtype=torch.float64)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.to(self.sae.w_dec.device, torch.float32)
        c = self.sae.codes(self.sae.pre(x))
        xh = self.sae.decode_codes(c) * self.sae.scale
        xd = x.double()
        self.sx = xd.sum(0).cpu() if self.sx is None else self.sx + xd.sum(0).cpu()
        self.sxx += float((xd * xd).sum())
        self.sse += float((xd - xh.double()).pow(2).sum())
        self.l0 += float((c.vals > 0).sum())
        self.n += x.shape[0]
        w = (c.vals.double() * float(self.sae.scale)).pow(2)  # rows have unit norm
        self.usage += torch.bincount(c.cols, weights=w, minlength=self.usage.shape[0]).cpu()
        self.stats.update(c)

    def result(self) -> dict:
        mean = self.sx / max(1, self.n) if self.sx is not None else torch.zeros(1, dtype=torch.float64)
        sst = self.sxx - self.n * float(mean @ mean)
        u = self.usage / self.usage.sum().clamp_min(1e-30)
        return {"samples": self.n, "fraction_of_variance_explained": 1.0 - self.sse / sst if sst > 0 else 0.0,
                "relative_reconstruction_error": (self.sse / self.sxx) ** 0.5 if self.sxx > 0 else 0.0,
                "sse": self.sse, "sst": sst, "mean_l0": self.l0 / max(1, self.n),
                "share_per_concept": [round(float(v), 6) for v in u], "feature_stats": self.stats.summary()}
