"""The optimization loop: gradient ascent on an objective from noise.

`optimize()` is the core loop: one short generator that yields `Snapshot`s at the threshold steps; it never prints
or saves. `render_batch()` builds what the loop needs for a batch of units (one generator per unit for the initial
image and for the transforms, the param, the transform schedule) and runs it.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..errors import FvRuntimeError
from ..models import Capture, LoadedModel
from .coarse import COARSE_PARAMS, coarse_size, hand_on, upsample
from .decay_schedule import Decay, decay_at, set_decay
from .objectives import Objective
from .optim import BETAS, Adam, Beta1Ramp, lr_factor
from .param import make_param
from .preconditioners import GradientSpec, apply_preconditioner, make_preconditioner
from .transforms import Schedule, Step, strength

log = logging.getLogger(__name__)

REDIRECT_STEPS = 16  # lucid applies the redirected ReLU gradient during the first 16 steps
FINITE_CHECK_EVERY = 16  # steps between NaN/Inf checks (a check syncs a GPU; NaNs persist in Adam's state)


class NumericalFault(FvRuntimeError):
    """Non-finite values appeared in the images, scores or gradients of some images of a batch."""

    def __init__(self, images: list[int], step: int, what: str) -> None:
        super().__init__(f"non-finite {what} at step {step} in image(s) {images}")
        self.images, self.step, self.what = images, step, what


def _nonfinite_rows(t: torch.Tensor) -> list[int]:
    bad = ~torch.isfinite(t.detach().flatten(1)).all(dim=1)
    return bad.nonzero().flatten().tolist() if bool(bad.any()) else []


@dataclass
class Snapshot:
    step: int  # number of optimization steps taken
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], float32, CPU
    scores: torch.Tensor  # (B,) objective on the untransformed images, CPU
    alpha: torch.Tensor | None = None  # (B, 1, H, W) in [0, 1]: MACO's transparency map, when the param tracks it


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (never Python's salted hash())."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Does oneDNN run bf16 natively on this CPU? (False on AVX2-only CPUs, where it emulates bf16 slowly.)"""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume it does, as before
        return True


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def autocast(device: torch.device, precision: str):
    """Reduced-precision autocast: bf16 or fp16 on CUDA; bf16 on the CPU (oneDNN's bf16 convolutions, 2.2x the
    fp32 throughput on an AVX512-BF16 CPU; 10-13x slower than fp32 on an AVX2-only one, with a warning); fp16 on the
    CPU and fp32 are a no-op. Opt-in (`render.precision`); the default fp32 is what the determinism contract covers.
    scripts/check_precision.py states and checks the tolerance."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        if device.type == "cpu" and not cpu_has_fast_bf16():
            _warn_once("render.precision=bf16 on a CPU without bf16 instructions (oneDNN reports no bf16 support; "
                       "AVX512-BF16 or AMX needed): measured 10-13x slower than fp32 on such a CPU; use fp32")
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def compile_step(fn: Callable, device: torch.device, enabled: bool, backend: str = "inductor") -> Callable:
    """`torch.compile` the differentiable part of a step when asked (recipe `render.compile`), else `fn` itself.

    Off by default. Meant for CUDA, where it fuses the element-wise work between convolutions; on the CPU it is
    allowed but measured slower than eager (and ~2 minutes of cold compile), so it is logged as such. Shapes are
    static per batch (`dynamic=False`); the redirected-ReLU switch at step 16 costs one recompile."""
    if not enabled:
        return fn
    if device.type != "cuda":
        log.warning("render.compile on %s: torch.compile is slower than eager on the CPU (measured); use it on CUDA",
                    device)
    return torch.compile(fn, backend=backend, dynamic=False)


def optimize(model: LoadedModel, objective: Objective, param: torch.nn.Module, schedule: Schedule | None,
             steps: int, lr: float, thresholds: Sequence[int], *, channels_last: bool = True,
             precision: str = "fp32", on_step: Callable[[int], None] | None = None,
             compile: bool = False, compile_backend: str = "inductor",
             precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
             start: int = 0, final: bool = True, lr_schedule: str = "constant",
             lr_warmup: int = 0, schedule_steps: int | None = None,
             decay: Decay | None = None, betas: tuple[float, float] = BETAS,
             beta1_ramp: Beta1Ramp | None = None) -> Iterator[Snapshot]:
    """Maximise `objective` (one score per image; loss = -sum) over `param` with Adam; yield at `thresholds`.
    `precondition` (fvcli/optvis/preconditioners.py) maps each parameter's gradient before the optimizer step.
    `start`: the steps already taken by an earlier phase (coarse to fine): this one runs steps start..steps-1
    (`schedule` drawn for those), with the redirected ReLU only where step < REDIRECT_STEPS; `final`: also
    yield at `steps`. `lr_schedule`, `lr_warmup`: the learning rate over the steps (fvcli/optvis/optim.py) of the
    whole render (`schedule_steps`, default `steps`: a coarse phase follows the schedule of the render it opens).
    `decay`: the spectrum's decay over the (absolute) steps, fvcli/optvis/decay_schedule.py (None: as built).
    `betas`: Adam's moments (the article's: 0.9, 0.999); `beta1_ramp`: beta1 over the (absolute) steps, from
    beta1_ramp[0] to betas[0] at step beta1_ramp[1] (fvcli/optvis/optim.py; None: betas[0] throughout)."""
    thresholds = sorted({t for t in thresholds if start <= t <= steps} | ({steps} if final else set()))
    # torch.optim.Adam's arithmetic, without its torch._dynamo import
    opt = Adam(param.parameters(), lr=lr, betas=betas, beta1_ramp=beta1_ramp, first_step=start)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    prep = model.preprocess.apply

    def net_input(img: torch.Tensor) -> torch.Tensor:
        return prep(img).contiguous(memory_format=fmt)

    with Capture(model, objective.layers) as cap:

        def scores_of(img: torch.Tensor, drawn: tuple | None) -> torch.Tensor:
            # The differentiable part of a step: the transforms (one affine warp, then blur / noise; K copies per
            # image), the truncated forward, scores (the mean over the copies: (B,)).
            if drawn is None:
                return objective(cap(net_input(img)), img)
            acts = cap(net_input(schedule.transform(img, drawn)))
            b, k = img.shape[0], schedule.copies
            if k == 1:
                return objective(acts, img)
            return torch.stack([objective({n: a[i * b:(i + 1) * b] for n, a in acts.items()}, img)
                                for i in range(k)]).mean(0)

        step_scores = compile_step(scores_of, model.device, compile, compile_backend)

        def snapshot(step: int) -> Snapshot:
            model.set_redirect(False)
            with torch.no_grad():  # fp32 even under reduced precision: the recorded score is a measurement
                img = param()
                scores = objective(cap(net_input(img)), img).float()
            bad = sorted(set(_nonfinite_rows(img)) | set(_nonfinite_rows(scores[:, None])))
            if bad:
                raise NumericalFault(bad, step, "image or objective")
            alpha = param.alpha_map() if hasattr(param, "alpha_map") else None
            return Snapshot(step, img.detach().float().cpu(), scores.cpu(), alpha)

        def check(step: int, scores: torch.Tensor) -> None:
            bad = set(_nonfinite_rows(scores.detach()[:, None]))
            for p in param.parameters():
                if p.grad is not None and p.dim() > 0 and p.shape[0] == scores.shape[0]:
                    bad |= set(_nonfinite_rows(p.grad)) | set(_nonfinite_rows(p))
            if bad:
                raise NumericalFault(sorted(bad), step, "objective, gradient or parameter")

        if start in thresholds:
            yield snapshot(start)
        try:
            for step in range(start, steps):
                model.set_redirect(step < REDIRECT_STEPS)
                if decay is not None and step <= decay[2]:
                    set_decay(param, decay_at(step, decay), opt)
                opt.zero_grad(set_to_none=True)
                with autocast(model.device, precision):
                    img = param()  # (B, 3, H, W) in [0, 1]
                    scores = step_scores(img, schedule.draws(step - start) if schedule is not None else None)
                (-scores.float().sum()).backward()
                if (step + 1) % FINITE_CHECK_EVERY == 0 or step == start:
                    check(step + 1, scores)
                apply_preconditioner(param.parameters(), precondition)
                if lr_schedule != "constant" or lr_warmup:
                    opt.lr = lr * lr_factor(lr_schedule, step, schedule_steps or steps, lr_warmup)
                opt.step()
                if on_step is not None:
                    on_step(step + 1)
                if step + 1 in thresholds:
                    yield snapshot(step + 1)
        finally:
            model.set_redirect(False)


def unit_generators(seeds: Sequence[int], stream: str) -> list[torch.Generator]:
    """One CPU generator per unit and purpose ('init', 'transforms'), derived from the unit's seed."""
    return [torch.Generator().manual_seed(derive_seed(s, stream)) for s in seeds]


@dataclass(frozen=True)
class LoopSettings:
    """What `render_batch` needs from a recipe (see recipe.Recipe)."""

    steps: int = 512
    lr: float = 0.05
    size: int = 224
    thresholds: tuple[int, ...] = ()
    param: str = "fourier"
    decorrelate: bool = True
    sigmoid: bool = True
    decay_power: float = 1.0
    transforms: tuple[Step, ...] = ()
    spectrum: str | None = None  # maco: the magnitude spectrum file (None: the fitted power law)
    maco_alpha: bool = False  # maco: accumulate the transparency map
    channels_last: bool = True
    precision: str = "fp32"
    compile: bool = False
    gradient: GradientSpec | None = None  # a gradient preconditioner (None: the plain gradient)
    coarse_steps: int = 0  # coarse to fine (fvcli/optvis/coarse.py): the first steps at a lower resolution
    coarse_scale: float = 0.5  # ... at this fraction of the size
    coarse_transforms: tuple[Step, ...] = ()  # ... with the transforms scaled to that size
    lr_schedule: str = "constant"  # the learning rate over the steps (optim.lr_factor)
    lr_warmup: int = 0
    transforms_from: float = 1.0  # the transforms' strength at step 0 ... (transforms.strength)
    transforms_ramp: int = 0  # ... rising (or falling) linearly to 1 at this step (0: 1 throughout)
    decay_from: float = 1.0  # the spectrum's decay at step 0 ... (fvcli/optvis/decay_schedule.py)
    decay_ramp: int = 0  # ... linear to decay_power at this step (0: decay_power throughout)
    betas: tuple[float, float] = BETAS  # Adam's moments
    beta1_from: float | None = None  # beta1 at step 0 ... (fvcli/optvis/optim.py)
    beta1_ramp: int = 0  # ... linear to betas[0] at this step (0, or beta1_from None: betas[0] throughout)
    init_std: float | None = None  # the initial image's noise (None: the param's own default)

    def decay(self) -> Decay | None:
        """The spectrum's decay schedule, or None (off, or not a Fourier param)."""
        if self.decay_ramp <= 0 or self.decay_from == self.decay_power or self.param != "fourier":
            return None
        return (self.decay_power, self.decay_from, self.decay_ramp)

    def beta1_schedule(self) -> Beta1Ramp | None:
        """Adam's beta1 over the steps as (beta1 at step 0, ramp steps), or None (constant)."""
        if self.beta1_ramp <= 0 or self.beta1_from is None or self.beta1_from == self.betas[0]:
            return None
        return (self.beta1_from, self.beta1_ramp)


def render_batch(model: LoadedModel, objective: Objective, seeds: Sequence[int], s: LoopSettings,
                 on_step: Callable[[int], None] | None = None) -> Iterator[Snapshot]:
    """Render len(seeds) images jointly (image b seeded by seeds[b]) and yield snapshots."""
    h = w = s.size
    decay = s.decay()
    power = decay_at(0, decay) if decay else s.decay_power  # a decay schedule starts as a render at its first power
    param = make_param(s.param, unit_generators(seeds, "init"), h, w, power, s.decorrelate, s.sigmoid,
                       init_std=s.init_std, spectrum=s.spectrum, maco_alpha=s.maco_alpha)
    param = param.to(model.device)
    run = functools.partial(optimize, model, objective, channels_last=s.channels_last, precision=s.precision,
                            on_step=on_step, compile=s.compile, precondition=make_preconditioner(s.gradient),
                            lr_schedule=s.lr_schedule, lr_warmup=s.lr_warmup, decay=decay, betas=s.betas,
                            beta1_ramp=s.beta1_schedule())
    start = 0
    if s.coarse_steps > 0 and s.param in COARSE_PARAMS:  # coarse to fine (fvcli/optvis/coarse.py)
        start = min(s.coarse_steps, s.steps)
        c = coarse_size(s.size, s.coarse_scale)
        small = make_param(s.param, unit_generators(seeds, "init"), c, c, power, s.decorrelate,
                           s.sigmoid, init_std=s.init_std).to(model.device)
        sched = Schedule.build(s.coarse_transforms, start, unit_generators(seeds, "transforms"), c, c, model.device,
                               strength(start, s.transforms_from, s.transforms_ramp))
        for snap in run(small, sched, start, s.lr, [t for t in s.thresholds if t < start], final=False,
                        schedule_steps=s.steps):
            yield Snapshot(snap.step, upsample(snap.images, s.size), snap.scores, None)
        if decay:
            set_decay(param, decay_at(start, decay))  # the fine phase goes on at the schedule's power of its step
        hand_on(small, param)
    gens = unit_generators(seeds, "transforms" if start == 0 else "transforms-fine")
    schedule = Schedule.build(s.transforms, s.steps - start, gens, h, w, model.device,
                              strength(s.steps - start, s.transforms_from, s.transforms_ramp, offset=start))
    yield from run(param, schedule, s.steps, s.lr, s.thresholds, start=start)
