"""A sparse autoencoder (SAE) over a layer's activations: TopK (Gao et al. 2024) or BatchTopK, written in torch.

Why an SAE: NMF, PCA and k-means give a handful of directions, fewer than the layer has channels; interpretability
of vision models has moved to overcomplete dictionaries (thousands of features per layer) whose features each fire
on few positions. Each sample x (C,) (one position of one image) is encoded into K >> C features of which at most
`topk` are non-zero, and decoded as their sum of unit directions -- the decoder's rows are the dictionary fv renders:

    z_pre = ((x / s) - b_dec) W_enc + b_enc                     (K,)    s: the input scale, fixed at the start
    z     = ReLU(TopK(z_pre))   (TopK: keep the k largest)      (K,)
    x^    = (z W_dec + b_dec) * s                               (C,)    W_dec (K, C), rows of unit norm

following "Scaling and evaluating sparse autoencoders" (Gao et al., 2024): the pre-encoder bias b_dec is subtracted
before encoding, W_enc starts as W_dec's transpose, W_dec's rows are kept at unit norm (the gradient's component
along each row is removed before the Adam step, and the rows renormalized after it), and an auxiliary loss (AuxK,
coefficient 1/32) lets the `k_aux` largest pre-activations of the *dead* features reconstruct the residual, so that
features that stopped firing get a gradient again. BatchTopK (Bussmann et al., 2024) keeps the k * n largest
activations over a minibatch of n samples instead of k per sample; at inference it keeps those above a threshold,
the running mean of the smallest activation kept in training.

The codes stay sparse (`Codes`: row, feature, value triplets, k per sample): the decoder sums each sample's active
rows of W_dec, and in training the dense (n, K) product that picks the active features runs without a graph; only
the picked pre-activations are recomputed with their gradient, so the backward pass costs nnz x C, not n x K x C
(4 to 5 times faster per sample than the dense version on a CPU, K = 4,096, C = 96).

The input scale s = sqrt(mean ||x||^2 / C) is measured once, on the first full shuffle buffer, so that one learning
rate suits any layer (a post-ReLU map near 0..5 and a pre-activation in the hundreds alike); b_dec starts at that
buffer's mean (Gao's geometric median; the mean is its cheap stand-in).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

AUX_COEF = 1.0 / 32  # Gao et al. 2024, section 2.4 (AuxK)
THRESHOLD_MOMENTUM = 0.99  # BatchTopK: running mean of the smallest kept activation


@dataclass(frozen=True)
class Codes:
    """Sparse codes of n samples over K features: sample `rows[i]` has feature `cols[i]` at value `vals[i]`."""

    n: int
    features: int
    rows: torch.Tensor  # (nnz,) int64
    cols: torch.Tensor  # (nnz,) int64
    vals: torch.Tensor  # (nnz,) >= 0

    @staticmethod
    def from_dense(z: torch.Tensor) -> Codes:
        rows, cols = z.nonzero(as_tuple=True)
        return Codes(z.shape[0], z.shape[1], rows, cols, z[rows, cols])

    def dense(self) -> torch.Tensor:
        z = torch.zeros(self.n, self.features, device=self.vals.device, dtype=self.vals.dtype)
        return z.index_put((self.rows, self.cols), self.vals, accumulate=True)

    def detached(self) -> Codes:
        return Codes(self.n, self.features, self.rows, self.cols, self.vals.detach())


class SparseAutoencoder(nn.Module):
    """See the module docstring. `features` K, `channels` C, `topk` active features per sample."""

    def __init__(self, channels: int, features: int, topk: int, batchtopk: bool = False, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(features, channels, generator=g, dtype=torch.float32)
        w = w / w.norm(dim=1, keepdim=True)
        self.topk, self.batchtopk = int(topk), bool(batchtopk)
        self.w_dec = nn.Parameter(w)  # (K, C): the dictionary
        self.w_enc = nn.Parameter(w.T.clone())  # (C, K)
        self.b_enc = nn.Parameter(torch.zeros(features))
        self.b_dec = nn.Parameter(torch.zeros(channels))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("threshold", torch.zeros(()))  # BatchTopK's inference threshold

    @property
    def features(self) -> int:
        return int(self.w_dec.shape[0])

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C) raw activations -> (n, K) pre-activations."""
        return (x / self.scale - self.b_dec) @ self.w_enc + self.b_enc

    def codes(self, z_pre: torch.Tensor, train: bool = False) -> Codes:
        """(n, K) pre-activations -> the sparse codes: at most `topk` active features per sample (on average, for
        BatchTopK), as (row, feature, value) triplets; the values carry the gradient in training."""
        n, k = z_pre.shape
        if self.batchtopk and not train:
            rows, cols = (z_pre > self.threshold.clamp_min(0)).nonzero(as_tuple=True)
            return Codes(n, k, rows, cols, z_pre[rows, cols])
        if self.batchtopk:
            vals, idx = z_pre.relu().flatten().topk(min(n * k, self.topk * n))
            kept = vals > 0
            if bool(kept.any()):
                with torch.no_grad():
                    self.threshold.mul_(THRESHOLD_MOMENTUM).add_((1 - THRESHOLD_MOMENTUM) * vals[kept].min())
            return Codes(n, k, idx // k, idx % k, vals)
        vals, idx = z_pre.topk(min(self.topk, k), dim=1)  # (n, topk)
        rows = torch.arange(n, device=z_pre.device)[:, None].expand_as(idx)
        return Codes(n, k, rows.reshape(-1), idx.reshape(-1), vals.relu().reshape(-1))

    def encode(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """(n, C) raw activations -> (n, K) dense codes (for a few samples; the training and the measuring pass keep
        the codes sparse)."""
        return self.codes(self.pre(x), train).dense()

    def decode_codes(self, c: Codes) -> torch.Tensor:
        """Sparse codes -> (n, C) reconstruction in normalized units: the sum of each sample's active rows of W_dec
        (nnz x C work instead of n x K x C)."""
        out = torch.zeros(c.n, self.w_dec.shape[1], device=self.w_dec.device, dtype=self.w_dec.dtype)
        return out.index_add(0, c.rows, c.vals[:, None] * self.w_dec[c.cols]) + self.b_dec

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, K) dense codes -> (n, C) reconstruction in the raw units of the layer."""
        return (z @ self.w_dec + self.b_dec) * self.scale

    @torch.no_grad()
    def start(self, x: torch.Tensor) -> None:
        """Fix the input scale and the decoder bias from a first sample of the data (n, C)."""
        self.scale.fill_(float((x.pow(2).sum(1).mean() / x.shape[1]).sqrt().clamp_min(1e-12)))
        self.b_dec.copy_(x.mean(0) / self.scale)

    def loss(self, x: torch.Tensor, dead: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """The training loss on a minibatch x (n, C), in normalized units, and what to log: normalized MSE
        (||x - x^||^2 / ||x - mean||^2) and L0. `dead` (K,) bool: features that get the AuxK loss."""
        xs = x / self.scale
        xc = xs - self.b_dec  # (n, C)
        with torch.no_grad():  # which features are active: one dense product, no graph
            z_pre = xc @ self.w_enc + self.b_enc  # (n, K)
        c = self.codes(z_pre, train=True)
        c = self._with_grad(xc, c, relu=True)
        err = xs - self.decode_codes(c)  # (n, C), normalized units
        mse = err.pow(2).sum(1).mean()
        var = (xs - xs.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
        total = mse
        aux = torch.zeros(())
        if dead is not None and bool(dead.any()):
            k_aux = min(int(dead.sum()), max(1, x.shape[1] // 2))  # Gao: k_aux = d_model / 2
            zd = torch.where(dead, z_pre, z_pre.new_full((), -torch.inf)).relu()
            vals, idx = zd.topk(k_aux, dim=1)
            rows = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(idx).reshape(-1)
            e = err.detach()
            dc = self._with_grad(xc, Codes(x.shape[0], zd.shape[1], rows, idx.reshape(-1), vals.reshape(-1)), True)
            e_hat = self.decode_codes(dc) - self.b_dec
            aux = (e - e_hat).pow(2).sum(1).mean() / e.pow(2).sum(1).mean().clamp_min(1e-12)
            total = total + AUX_COEF * aux
        return total, {"nmse": float(mse.detach() / var), "l0": float((c.vals > 0).sum()) / x.shape[0],
                       "aux": float(aux.detach()), "codes": c.detached()}

    def _with_grad(self, xc: torch.Tensor, c: Codes, relu: bool) -> Codes:
        """The active pre-activations recomputed with their gradient, from the centred input xc (n, C): nnz dot
        products, so the backward pass is sparse too (the dense (n, K) product ran without a graph)."""
        v = (xc[c.rows] * self.w_enc.T[c.cols]).sum(1) + self.b_enc[c.cols]
        return Codes(c.n, c.features, c.rows, c.cols, v.relu() if relu else v)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the decoder gradient's component along each (unit) row: the step then only turns the rows."""
        if self.w_dec.grad is not None:
            w = self.w_dec
            w.grad.sub_((w.grad * w).sum(1, keepdim=True) * w)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.w_dec.div_(self.w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))
