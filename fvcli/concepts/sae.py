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

The input scale s = sqrt(mean ||x||^2 / C) is measured once, on the first full shuffle buffer, so that one learning
rate suits any layer (a post-ReLU map near 0..5 and a pre-activation in the hundreds alike); b_dec starts at that
buffer's mean (Gao's geometric median; the mean is its cheap stand-in).
"""
from __future__ import annotations

import torch
from torch import nn

AUX_COEF = 1.0 / 32  # Gao et al. 2024, section 2.4 (AuxK)
THRESHOLD_MOMENTUM = 0.99  # BatchTopK: running mean of the smallest kept activation


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

    def sparsify(self, z_pre: torch.Tensor, train: bool = False) -> torch.Tensor:
        """(n, K) pre-activations -> (n, K) codes with at most `topk` non-zeros per sample (on average, BatchTopK)."""
        if self.batchtopk and not train:
            return torch.where(z_pre > self.threshold, z_pre, z_pre.new_zeros(())).relu()
        if self.batchtopk:
            flat = z_pre.relu().flatten()
            vals, idx = flat.topk(min(flat.numel(), self.topk * z_pre.shape[0]))
            z = torch.zeros_like(flat).scatter(0, idx, vals).view_as(z_pre)
            kept = vals[vals > 0]
            if kept.numel():
                with torch.no_grad():
                    self.threshold.mul_(THRESHOLD_MOMENTUM).add_((1 - THRESHOLD_MOMENTUM) * kept.min())
            return z
        vals, idx = z_pre.topk(min(self.topk, z_pre.shape[1]), dim=1)
        return torch.zeros_like(z_pre).scatter(1, idx, vals.relu())

    def encode(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        return self.sparsify(self.pre(x), train)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, K) codes -> (n, C) reconstruction in the raw units of the layer."""
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
        z_pre = self.pre(x)
        z = self.sparsify(z_pre, train=True)
        rec = z @ self.w_dec + self.b_dec  # (n, C), normalized units
        err = xs - rec
        mse = err.pow(2).sum(1).mean()
        var = (xs - xs.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
        total = mse
        aux = torch.zeros(())
        if dead is not None and bool(dead.any()):
            k_aux = min(int(dead.sum()), max(1, x.shape[1] // 2))  # Gao: k_aux = d_model / 2
            zd = torch.where(dead, z_pre, z_pre.new_full((), -torch.inf)).relu()
            vals, idx = zd.topk(k_aux, dim=1)
            e_hat = torch.zeros_like(zd).scatter(1, idx, vals) @ self.w_dec
            aux = (err.detach() - e_hat).pow(2).sum(1).mean() / err.detach().pow(2).sum(1).mean().clamp_min(1e-12)
            total = total + AUX_COEF * aux
        return total, {"nmse": float(mse.detach() / var), "l0": float((z > 0).sum(1).float().mean()),
                       "aux": float(aux.detach()), "codes": z.detach()}

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the decoder gradient's component along each (unit) row: the step then only turns the rows."""
        if self.w_dec.grad is not None:
            w = self.w_dec
            w.grad.sub_((w.grad * w).sum(1, keepdim=True) * w)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.w_dec.div_(self.w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))
