"""Continuous batching: a unit whose picture has stopped improving leaves the batch, and the next unit takes its slot.

`optimize()` (fvcli/optvis/loop.py) runs every image of a batch for all its steps, even after the picture has
stopped changing, and a batch is as slow as its slowest unit. Here the batch is a set of *slots*. Each slot holds
one unit at its own step: its own rows of the parameterization and of Adam's state (`RowAdam`), its own transform
schedule (drawn from its own generator, indexed by its own step), the redirected-ReLU gradient during its own first
REDIRECT_STEPS steps (a per-image mask). When a unit finishes -- it reached `steps`, or its objective converged --
its final snapshot is taken, it leaves, and the next unit of the queue enters that slot at step 0: batches stay
full until the queue runs dry, then shrink. A unit's picture depends only on its own seed, objective and stop step,
never on its batch-mates (up to the float rounding of batched kernels, as for ordinary batches).

The stop criterion (`Convergence`): every `window` steps after `min_steps`, the mean of the unit's objective over
the last `window` steps (on the transformed images the optimizer sees, which is what is available for free) is
compared with the mean over the `window` steps before; when it rose by less than `tol` of the earlier mean's
magnitude, the picture has stopped improving and the unit stops. The record says at which step and why.

Only the per-image parameterizations can change rows (pixel, Fourier, MACO without its alpha map); the runner
(fvcli/runner/batch.py) uses plain batches for anything else.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models import Capture, LoadedModel
from .decay_schedule import add_rows, decay_at, keep_rows, set_row_decays
from .loop import (
    FINITE_CHECK_EVERY,
    REDIRECT_STEPS,
    LoopSettings,
    NumericalFault,
    Snapshot,
    _nonfinite_rows,
    autocast,
    unit_generators,
)
from .objectives import Objective, PerImage
from .optim import RowAdam, lr_factor
from .param import make_param
from .transforms import Schedule, strength

STREAM_PARAMS = ("pixel", "fourier", "maco")


@dataclass(frozen=True)
class Convergence:
    """When a unit's objective has stopped improving (see the module header)."""

    min_steps: int = 128  # never before this step (the redirect phase and the first large moves are over)
    window: int = 32  # steps per mean
    tol: float = 0.01  # the last window's mean rose by less than this fraction of the one before

    def stopped(self, history: Sequence[float]) -> bool:
        n, w = len(history), self.window
        if n < max(self.min_steps, 2 * w) or n % w:
            return False
        last = sum(history[-w:]) / w
        prev = sum(history[-2 * w:-w]) / w
        return last - prev < self.tol * abs(prev)

    def describe(self) -> str:
        return (f"mean objective over the last {self.window} steps rose by less than {self.tol:g} of the mean over "
                f"the {self.window} before (checked every {self.window} steps from step {self.min_steps})")


@dataclass
class StreamItem:
    objective: Objective
    seed: int


@dataclass
class Finished:
    """One unit done: its snapshots (B = 1) at its thresholds and at its last step, and why it stopped."""

    index: int  # position in the items given to `render_stream`
    snapshots: list[Snapshot]
    stop_step: int
    reason: str  # "steps" (it ran them all), "converged" or "fault" (non-finite values: re-render it elsewhere)
    fault: NumericalFault | None = None
    seconds: float = 0.0  # its share of the wall time: each step's time divided among the units in the batch


@dataclass
class _Slot:
    index: int
    item: StreamItem
    schedule: Schedule | None
    t: int = 0
    history: list[float] = field(default_factory=list)
    snaps: list[Snapshot] = field(default_factory=list)
    seconds: float = 0.0


def _per_row_parameters(param: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(mod, name) for mod in param.modules() for name, _ in mod.named_parameters(recurse=False)]


def _rebind(param: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    for mod, name in _per_row_parameters(param):
        setattr(mod, name, nn.Parameter(fn(getattr(mod, name).detach())))


def render_stream(model: LoadedModel, items: Sequence[StreamItem], s: LoopSettings, slots: int,
                  convergence: Convergence | None = None,
                  on_step: Callable[[int], None] | None = None) -> Iterator[Finished]:
    """Render `items` through `slots` continuously refilled slots; yield each unit as it finishes (not in order)."""
    if s.param not in STREAM_PARAMS or s.maco_alpha:
        raise ValueError(f"continuous batching needs a per-image param ({', '.join(STREAM_PARAMS)}), got {s.param}")
    h = w = s.size
    thresholds = sorted({t for t in s.thresholds if 0 < t <= s.steps} | {s.steps})
    queue = list(enumerate(items))[::-1]  # pop() takes the next unit of the plan
    active: list[_Slot] = []
    param: nn.Module | None = None
    opt: RowAdam | None = None
    fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    prep = model.preprocess.apply
    layers = frozenset().union(*(it.objective.layers for it in items)) if items else frozenset()
    decay = s.decay()  # the spectrum's decay over each unit's own steps (fvcli/optvis/decay_schedule.py)

    def new_param(entering: list[_Slot]) -> nn.Module:
        return make_param(s.param, unit_generators([sl.item.seed for sl in entering], "init"), h, w,
                          decay_at(0, decay) if decay else s.decay_power, s.decorrelate, s.sigmoid,
                          init_std=s.init_std, spectrum=s.spectrum).to(model.device)

    def refill() -> None:
        nonlocal param, opt
        entering = []
        while queue and len(active) + len(entering) < slots:
            i, item = queue.pop()
            sched = Schedule.build(s.transforms, s.steps, unit_generators([item.seed], "transforms"), h, w,
                                   model.device, strength(s.steps, s.transforms_from, s.transforms_ramp))
            entering.append(_Slot(i, item, sched))
        if not entering:
            return
        fresh = new_param(entering)
        if param is None:
            param, opt = fresh, RowAdam(fresh.parameters(), lr=s.lr, betas=s.betas,
                                        beta1_ramp=s.beta1_schedule())
        else:
            news = iter([p.detach() for _, p in fresh.named_parameters()])
            _rebind(param, lambda old: torch.cat([old, next(news)]))
            if decay:
                add_rows(param, fresh, len(active))
            opt.add_rows(len(entering))
            opt.params = list(param.parameters())
        active.extend(entering)

    def drop(done: set[int]) -> None:
        keep = torch.tensor([j for j in range(len(active)) if j not in done], dtype=torch.long)
        _rebind(param, lambda old: old[keep.to(old.device)])
        if decay:
            keep_rows(param, keep)
        opt.keep_rows(keep)
        opt.params = list(param.parameters())
        active[:] = [active[j] for j in keep.tolist()]

    def drawn() -> tuple | None:
        """This step's transforms, each slot's from its own schedule at its own step, copy-major like Schedule's."""
        if active[0].schedule is None:
            return None
        parts = [sl.schedule.draws(sl.t) for sl in active]
        k = active[0].schedule.copies
        theta = torch.stack([p[0].view(k, 2, 3) for p in parts], dim=1).reshape(-1, 2, 3)
        sig = torch.stack([p[1] for p in parts], dim=1).reshape(-1) if parts[0][1] is not None else None
        noise = torch.stack([p[2].view(k, *p[2].shape[1:]) for p in parts], dim=1).flatten(0, 1) \
            if parts[0][2] is not None else None
        return theta, sig, noise

    refill()
    with Capture(model, layers) as cap:
        def objective() -> PerImage:
            return PerImage(tuple(sl.item.objective for sl in active))

        def net_input(img: torch.Tensor) -> torch.Tensor:
            return prep(img).contiguous(memory_format=fmt)

        def snapshot(rows: list[int]) -> dict[int, Snapshot]:
            model.set_redirect(False)
            with torch.no_grad():
                img = param()
                scores = objective()(cap(net_input(img)), img).float()
            out = {}
            for j in rows:
                if _nonfinite_rows(img[j:j + 1]) or not torch.isfinite(scores[j]):
                    raise NumericalFault([j], active[j].t, "image or objective")
                out[j] = Snapshot(active[j].t, img[j:j + 1].detach().float().cpu(), scores[j:j + 1].cpu())
            return out

        try:
            while active:
                t_step = time.perf_counter()
                early = [sl.t < REDIRECT_STEPS for sl in active]  # a mask only while some image needs it
                model.set_redirect(torch.tensor(early) if any(early) else False)
                if decay and any(sl.t <= decay[2] for sl in active):
                    set_row_decays(param, [sl.t for sl in active], decay, opt)
                opt.zero_grad()
                obj = objective()
                with autocast(model.device, s.precision):
                    img = param()
                    d = drawn()
                    if d is None:
                        scores = obj(cap(net_input(img)), img)
                    else:
                        sched = active[0].schedule
                        acts = cap(net_input(sched.transform(img, d)))
                        b, k = img.shape[0], sched.copies
                        scores = obj(acts, img) if k == 1 else torch.stack(
                            [obj({n: a[i * b:(i + 1) * b] for n, a in acts.items()}, img) for i in range(k)]).mean(0)
                (-scores.float().sum()).backward()
                faulty: set[int] = set()
                if any((sl.t + 1) % FINITE_CHECK_EVERY == 0 or sl.t == 0 for sl in active):
                    faulty = set(_nonfinite_rows(scores.detach()[:, None]))
                    for p in param.parameters():
                        if p.grad is not None:
                            faulty |= set(_nonfinite_rows(p.grad)) | set(_nonfinite_rows(p))
                if s.lr_schedule != "constant" or s.lr_warmup:  # each unit at its own step of the schedule
                    opt.step(torch.tensor([s.lr * lr_factor(s.lr_schedule, sl.t, s.steps, s.lr_warmup)
                                           for sl in active], dtype=torch.float64))
                else:
                    opt.step()
                vals = scores.detach().float().cpu().tolist()
                done: dict[int, str] = {}
                for j, sl in enumerate(active):
                    sl.t += 1
                    sl.history.append(vals[j])
                    if j in faulty:
                        done[j] = "fault"
                    elif sl.t >= s.steps:
                        done[j] = "steps"
                    elif convergence is not None and convergence.stopped(sl.history):
                        done[j] = "converged"
                if on_step is not None:
                    on_step(max(sl.t for sl in active))
                need = [j for j, sl in enumerate(active) if j not in faulty and (sl.t in thresholds or j in done)]
                if need:
                    try:
                        for j, snap in snapshot(need).items():
                            active[j].snaps.append(snap)
                    except NumericalFault as fault:
                        done[fault.images[0]] = "fault"
                share = (time.perf_counter() - t_step) / len(active)
                for sl in active:
                    sl.seconds += share
                for j in sorted(done):
                    sl = active[j]
                    fault = NumericalFault([0], sl.t, "objective, gradient or parameter") if done[j] == "fault" \
                        else None
                    yield Finished(sl.index, sl.snaps, sl.t, done[j], fault, sl.seconds)
                if done:
                    drop(set(done))
                    if active or queue:
                        refill()
        finally:
            model.set_redirect(False)
