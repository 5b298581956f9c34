"""Adam for the image parameters, without torch.optim.

Why not `torch.optim.Adam`: its first use imports `torch._dynamo` (torch.optim wraps `add_param_group` and `step`
in `torch._disable_dynamo`, which imports the compiler stack lazily), 1.5-6 s on this project's machine, more than
the rest of fv's startup together. A one-step `fv render` paid it every time. This is the same algorithm (Kingma &
Ba 2015, Algorithm 1, with the bias corrections folded into the step size and the denominator) written with the same
tensor operations in the same order as torch's single-tensor CPU implementation, so the images are bitwise those
`torch.optim.Adam` gives (tests/test_fast_paths.py checks it). No weight decay, AMSGrad or maximize: fv needs none.

A schedule of beta1 (`render.beta1_from`, `render.beta1_ramp`; issue #29): little momentum for the first steps, which
lays out a picture sooner, and more for the finish (measured in round 9 and not kept: it changed neither the early
pictures nor the late ones, docs/reports/time-to-quality.md; off by default). With beta1 b_t at
step t the running mean is m_t = b_t m_(t-1) + (1 - b_t) g_t, whose weights sum to 1 - prod(b_1..b_t): that product
is the bias correction (Kingma & Ba's 1 - beta1**t when b is constant, which the constant case still computes as
torch does, bit for bit).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

BETAS = (0.9, 0.999)  # Kingma & Ba's defaults, as torch.optim.Adam's
EPS = 1e-8
LR_SCHEDULES = ("constant", "cosine")
Beta1Ramp = tuple[float, int]  # (beta1 at step 0, the step where it reaches the optimizer's beta1)


def beta1_at(step: int | torch.Tensor, final: float, ramp: Beta1Ramp | None) -> float | torch.Tensor:
    """beta1 of step `step` (0-based; a tensor of steps gives a tensor): linear from ramp[0] at step 0 to `final` at
    step ramp[1], then `final` (no ramp: `final` throughout)."""
    if ramp is None:
        return final
    start, steps = ramp
    if isinstance(step, torch.Tensor):
        return start + (final - start) * (step / steps).clamp(max=1.0)
    return final if step >= steps else start + (final - start) * step / steps


def lr_factor(schedule: str, step: int, steps: int, warmup: int = 0) -> float:
    """The learning rate of step `step` (0-based) of `steps`, as a fraction of the recipe's `render.lr`.

    constant: 1 (the article's, lucid's and lucent's). cosine: half a cosine from 1 down to 0 at the last step
    (Loshchilov & Hutter 2017, without restarts): large moves first, fine detail at the end. `warmup` steps ramp
    linearly up to the schedule first (Goyal et al. 2017)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))


@torch.no_grad()
def rescale_moments(opt: Adam | RowAdam, param: torch.Tensor, factor: torch.Tensor) -> None:
    """`param`'s gradients are now `factor` times what they were (a reparameterization, e.g. a new spectrum scale,
    fvcli/optvis/decay_schedule.py): its moments follow, the first by `factor`, the second by its square."""
    i = next(i for i, p in enumerate(opt.params) if p is param)
    opt.exp_avg[i].mul_(factor)
    opt.exp_avg_sq[i].mul_(factor * factor)


class Adam:
    """`torch.optim.Adam(params, lr)` for fv's loop: `zero_grad()` (to None) and `step()`. `beta1_ramp`: beta1 from
    ramp[0] at step 0 to betas[0] at step ramp[1]; `first_step`: the absolute step of this optimizer's first (a fine
    phase after a coarse one goes on along the render's schedule)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = BETAS,
                 eps: float = EPS, beta1_ramp: Beta1Ramp | None = None, first_step: int = 0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.beta1_ramp, self.first_step = beta1_ramp, first_step
        self.beta1_prod = 1.0  # the product of the betas1 so far (a schedule's bias correction)
        self.t = 0
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        if self.beta1_ramp is not None:
            beta1 = beta1_at(self.first_step + self.t, beta1, self.beta1_ramp)
            self.beta1_prod *= beta1
        self.t += 1
        # torch keeps the step count in a float32 tensor and reads it back as a Python float: the same rounding,
        # without a tensor (a tensor read per step is what a GPU loop must avoid, tests/test_host_sync.py)
        t = float(np.float32(self.t))
        bias_correction1 = 1 - beta1**t if self.beta1_ramp is None else 1 - self.beta1_prod
        bias_correction2 = 1 - beta2**t
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            g = p.grad
            if g is None:
                continue
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


class RowAdam:
    """Adam whose rows (dimension 0 of every parameter: one image each) keep their own step count.

    In a continuously refilled batch (fvcli/optvis/stream.py) an image joins when another leaves, so the images of
    one batch are at different steps: each row's bias corrections use its own count, and `reset_rows` / `keep_rows`
    / `add_rows` follow the rows in and out. Per row the arithmetic is Adam's (Kingma & Ba 2015, Algorithm 1), the
    same as `Adam` above up to float rounding (the step size is a tensor here, a Python float there); a beta1 schedule
    follows each row's own step."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = BETAS,
                 eps: float = EPS, beta1_ramp: Beta1Ramp | None = None) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.beta1_ramp = lr, betas, eps, beta1_ramp
        rows = self.params[0].shape[0]
        self.t = torch.zeros(rows, dtype=torch.float64)  # (B,) steps taken by each row
        self.beta1_prod = torch.ones(rows, dtype=torch.float64)  # (B,) each row's product of betas1 (a schedule's)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def keep_rows(self, idx: torch.Tensor) -> None:
        """Only the rows `idx` (in that order) stay; the parameters themselves are re-bound by the caller."""
        self.t = self.t[idx]
        self.beta1_prod = self.beta1_prod[idx]
        self.exp_avg = [m[idx.to(m.device)] for m in self.exp_avg]
        self.exp_avg_sq = [v[idx.to(v.device)] for v in self.exp_avg_sq]

    def add_rows(self, n: int) -> None:
        """n new rows at the end, at step 0."""
        self.t = torch.cat([self.t, torch.zeros(n, dtype=torch.float64)])
        self.beta1_prod = torch.cat([self.beta1_prod, torch.ones(n, dtype=torch.float64)])
        self.exp_avg = [torch.cat([m, m.new_zeros((n, *m.shape[1:]))]) for m in self.exp_avg]
        self.exp_avg_sq = [torch.cat([v, v.new_zeros((n, *v.shape[1:]))]) for v in self.exp_avg_sq]

    @torch.no_grad()
    def step(self, lr: torch.Tensor | None = None) -> None:
        """One step; `lr` (B,): each row's learning rate this step (default: the constant `self.lr`)."""
        beta1, beta2 = self.betas
        rows_beta1 = None
        if self.beta1_ramp is not None:  # (B,): each row's beta1 at its own step
            rows_beta1 = beta1_at(self.t, beta1, self.beta1_ramp)
            self.beta1_prod = self.beta1_prod * rows_beta1
        self.t += 1
        bc1 = 1 - beta1**self.t if rows_beta1 is None else 1 - self.beta1_prod
        step_size = ((self.lr if lr is None else lr.double()) / bc1).float()  # (B,)
        bc2_sqrt = ((1 - beta2**self.t) ** 0.5).float()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            g = p.grad
            if g is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            if rows_beta1 is None:
                m.lerp_(g, 1 - beta1)
            else:
                m.lerp_(g, (1 - rows_beta1).to(m.dtype).to(p.device, non_blocking=True).view(shape))
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            # host-side (B,) tensors: copied without making the host wait for the GPU
            denom = (v.sqrt() / bc2_sqrt.to(p.device, non_blocking=True).view(shape)).add_(self.eps)
            p.sub_(step_size.to(p.device, non_blocking=True).view(shape) * m / denom)
