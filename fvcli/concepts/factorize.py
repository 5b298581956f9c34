"""Streaming factorizations of a layer's activations into K concept directions: NMF, PCA and k-means, in torch.

A layer's activations over a folder are far too many to hold (10,000 images x 14 x 14 positions x 1,280 channels is
10 GB), so each method learns from minibatches of samples `X (n, C)` -- one row per spatial position (or token) of
one image -- keeping only sufficient statistics of a size independent of the folder:

- NMF (Building Blocks of Interpretability; CRAFT): X ~ H W with W (K, C) >= 0 the concepts, H (n, K) >= 0. Online
  NMF with Mairal et al.'s sufficient statistics (JMLR 2010): per minibatch, H by multiplicative updates with W
  fixed, then A += H'H (K, K), B += H'X (K, C) and W by multiplicative updates of the surrogate
  tr(W'AW) - 2 tr(W'B) (Lee & Seung's rule W <- W * B / (A W)). W is initialized by a batch NMF of the first
  minibatch; activations below zero (a layer before its ReLU) are clamped and counted.
- PCA: the streamed mean and covariance (float64, (C, C)), then its top-K eigenvectors; each sign chosen so that
  the component's mean projection is >= 0 (a direction that the data tends to excite, for rendering).
- k-means: minibatch k-means (Sculley, WWW 2010): centers from k-means++ on the first minibatch, then each center
  moves toward its assigned samples at rate 1 / (its count so far).

`Measure` is the exact second look: with the dictionary fixed, it streams the samples again and sums the residual
(NMF: ||X - HW||^2 with H re-solved; PCA: the part of the centred X outside the components' span; k-means: the
squared distance to the nearest center) against the total sum of squares about the mean, giving the fraction of
variance explained, 1 - SSE / SST, and the relative reconstruction error ||X - X^||_F / ||X||_F.
"""
from __future__ import annotations

import torch

from ..errors import FvError

METHODS = ("nmf", "pca", "kmeans")
EPS = 1e-10
NMF_H_ITERS = 50  # multiplicative updates of H per minibatch (converges to ~1e-3 relative change on 8-32 concepts)
NMF_W_ITERS = 10  # updates of W per minibatch from the running statistics
NMF_INIT_ITERS = 200  # batch NMF of the first minibatch (initialization)


def solve_h(x: torch.Tensor, w: torch.Tensor, iters: int = NMF_H_ITERS) -> torch.Tensor:
    """H >= 0 minimizing ||X - H W||^2 for fixed W by multiplicative updates: X (n, C), W (K, C) -> H (n, K)."""
    xw = x @ w.T  # (n, K)
    ww = w @ w.T  # (K, K)
    h = xw.clamp_min(0) / (ww.diagonal() + EPS)  # least squares of each concept alone: a good start
    h = h.clamp_min(EPS)
    for _ in range(iters):
        h = h * xw.clamp_min(0) / (h @ ww + EPS)
    return h


class OnlineNMF:
    def __init__(self, k: int, seed: int = 0) -> None:
        self.k, self.seed = k, seed
        self.w: torch.Tensor | None = None
        self.a = self.b = None
        self.n = 0
        self.clamped = 0.0  # sum of the negative parts clamped away
        self.mass = 0.0  # sum of |x|

    def partial_fit(self, x: torch.Tensor) -> None:
        x = x.double()
        self.mass += float(x.abs().sum())
        neg = x.clamp_max(0)
        self.clamped += float(-neg.sum())
        x = x - neg  # clamp at 0
        if self.w is None:
            if x.shape[0] < self.k:
                raise FvError(f"the first minibatch has {x.shape[0]} samples, fewer than --k {self.k}; use a larger "
                              f"--batch-size or a smaller --k")
            self.w = self._init(x)
            self.a = torch.zeros(self.k, self.k, dtype=torch.float64)
            self.b = torch.zeros(self.k, x.shape[1], dtype=torch.float64)
        h = solve_h(x, self.w)
        self.a += h.T @ h
        self.b += h.T @ x
        self.n += x.shape[0]
        w = self.w
        for _ in range(NMF_W_ITERS):
            w = w * self.b / (self.a @ w + EPS)
        self.w = self._rescale(w)

    def _init(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        w = x[torch.randperm(x.shape[0], generator=g)[: self.k]] + 1e-3 * x.mean()
        w = w + 1e-6
        for _ in range(NMF_INIT_ITERS // 10):
            h = solve_h(x, w, 10)
            for _ in range(10):
                w = w * (h.T @ x) / (h.T @ h @ w + EPS)
        return self._rescale(w)

    @staticmethod
    def _rescale(w: torch.Tensor) -> torch.Tensor:
        return w / w.norm(dim=1, keepdim=True).clamp_min(EPS)  # unit rows: the scale lives in H

    def finish(self) -> torch.Tensor:
        if self.w is None:
            raise FvError("no activations were read: the folder has no readable images")
        return self.w.float()

    def info(self) -> dict:
        return {"clamped_negative_fraction": self.clamped / self.mass if self.mass else 0.0}


class StreamingPCA:
    def __init__(self, k: int, seed: int = 0) -> None:
        self.k = k
        self.n = 0
        self.s = self.ss = None
        self.eigenvalues: torch.Tensor | None = None

    def partial_fit(self, x: torch.Tensor) -> None:
        x = x.double()
        if self.s is None:
            self.s = torch.zeros(x.shape[1], dtype=torch.float64)
            self.ss = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        self.s += x.sum(0)
        self.ss += x.T @ x
        self.n += x.shape[0]

    def finish(self) -> torch.Tensor:
        if not self.n:
            raise FvError("no activations were read: the folder has no readable images")
        mean = self.s / self.n
        cov = self.ss / self.n - torch.outer(mean, mean)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        order = evals.argsort(descending=True)[: self.k]
        comps = evecs[:, order].T  # (K, C)
        sign = torch.where(comps @ mean < 0, -1.0, 1.0).double()  # excite, on average
        self.eigenvalues = evals[order].clamp_min(0)
        self.total_variance = float(evals.clamp_min(0).sum())
        return (comps * sign[:, None]).float()

    def info(self) -> dict:
        ev = self.eigenvalues
        return {"explained_variance_ratio_per_component": [round(float(v) / self.total_variance, 6) for v in ev]}


class MiniBatchKMeans:
    def __init__(self, k: int, seed: int = 0) -> None:
        self.k, self.seed = k, seed
        self.c: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    def partial_fit(self, x: torch.Tensor) -> None:
        x = x.double()
        if self.c is None:
            if x.shape[0] < self.k:
                raise FvError(f"the first minibatch has {x.shape[0]} samples, fewer than --k {self.k}; use a larger "
                              f"--batch-size or a smaller --k")
            self.c = kmeans_pp(x, self.k, self.seed)
            self.counts = torch.zeros(self.k, dtype=torch.float64)
        assign = torch.cdist(x, self.c).argmin(1)  # (n,)
        n_k = torch.bincount(assign, minlength=self.k).double()
        sums = torch.zeros_like(self.c).index_add_(0, assign, x)
        self.counts += n_k
        rate = (n_k / self.counts.clamp_min(1))[:, None]  # Sculley's per-center learning rate, for the whole batch
        upd = n_k > 0
        self.c[upd] = self.c[upd] + rate[upd] * (sums[upd] / n_k[upd, None] - self.c[upd])

    def finish(self) -> torch.Tensor:
        if self.c is None:
            raise FvError("no activations were read: the folder has no readable images")
        return self.c.float()

    def info(self) -> dict:
        tot = float(self.counts.sum())
        return {"cluster_fraction": [round(float(v) / tot, 6) for v in self.counts]}


def kmeans_pp(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on samples x (n, C) -> (k, C)."""
    g = torch.Generator().manual_seed(seed)
    idx = [int(torch.randint(x.shape[0], (1,), generator=g))]
    d2 = ((x - x[idx[0]]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / len(d2))
        i = int(torch.multinomial(p.float(), 1, generator=g))
        idx.append(i)
        d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
    return x[idx].clone()


def make_factorizer(method: str, k: int, seed: int = 0):
    if method not in METHODS:
        raise FvError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if k < 1:
        raise FvError(f"bad --k {k}: expected at least 1 concept")
    return {"nmf": OnlineNMF, "pca": StreamingPCA, "kmeans": MiniBatchKMeans}[method](k, seed)


class Measure:
    """How much of the activations a fixed dictionary (K, C) explains, accumulated over minibatches."""

    def __init__(self, method: str, dictionary: torch.Tensor, mean: torch.Tensor | None = None) -> None:
        self.method, self.d = method, dictionary.double()
        self.mean = mean  # PCA's centre
        self.n = 0
        self.sx = None
        self.sxx = 0.0  # sum of ||x||^2
        self.sse = 0.0
        self.usage = torch.zeros(self.d.shape[0], dtype=torch.float64)  # per concept: its share of the reconstruction

    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        if self.method == "nmf":
            x = x.clamp_min(0)
        self.sx = x.sum(0) if self.sx is None else self.sx + x.sum(0)
        self.sxx += float((x * x).sum())
        self.n += x.shape[0]
        if self.method == "nmf":
            h = solve_h(x, self.d)
            self.sse += float(((x - h @ self.d) ** 2).sum())
            self.usage += (h * self.d.norm(dim=1)).pow(2).sum(0)
        elif self.method == "pca":
            xc = x - self.mean
            p = xc @ self.d.T  # (n, K) with orthonormal rows
            self.sse += float((xc * xc).sum() - (p * p).sum())
            self.usage += (p * p).sum(0)
        else:
            dist = torch.cdist(x, self.d)
            m, arg = dist.min(1)
            self.sse += float((m * m).sum())
            self.usage += torch.bincount(arg, minlength=self.d.shape[0]).double()

    def result(self) -> dict:
        mean = self.sx / max(1, self.n)
        sst = self.sxx - self.n * float(mean @ mean)  # total sum of squares about the mean
        u = self.usage / self.usage.sum().clamp_min(EPS)
        return {"samples": self.n, "fraction_of_variance_explained": 1.0 - self.sse / sst if sst > 0 else 0.0,
                "relative_reconstruction_error": (self.sse / self.sxx) ** 0.5 if self.sxx > 0 else 0.0,
                "sse": self.sse, "sst": sst, "share_per_concept": [round(float(v), 6) for v in u]}
