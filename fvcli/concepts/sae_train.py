"""Training a sparse autoencoder on a stream of samples: the shuffle buffer, the Adam steps, the curve, the state.

Why a buffer: the samples arrive image by image, and the positions of one image are strongly correlated (a stripe
image gives 196 near-identical stripe vectors); a minibatch drawn from them would pull the SAE toward one image at a
time. `ShuffleBuffer` holds a fixed number of samples (memory bounded whatever the folder's size); once full, each
training minibatch is a random draw from it, and the drawn slots are refilled with the incoming samples. At the end
it is drained in a random order. Its generator is seeded, so the minibatches are a function of the seed and the
stream alone.

`SAETrainer.partial_fit(x)` feeds samples (n, C); `finish()` drains the buffer; `state()` / `load(state)` are a
dict of tensors and plain numbers (model, Adam's moments, the buffer's content and generator, the feature
statistics, the curve, the step), written by the pass (fvcli/concepts/sae_run.py) as a checkpoint and reloaded
with torch.load(weights_only=True): a run resumed from it continues exactly as the uninterrupted run would.
The curve records, per step, the samples seen, the normalized MSE ||x - x^||^2 / ||x - mean||^2 of the minibatch,
its L0 (mean number of active features) and the AuxK loss.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from ..errors import FvError
from .sae import SparseAutoencoder
from .sae_stats import FeatureStats

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 6.25e-10  # Gao et al. 2024: a small epsilon (the normalized inputs give small gradients)


@dataclass(frozen=True)
class SAESettings:
    features: int  # K, rows of the dictionary
    topk: int = 16  # active features per sample (BatchTopK: on average)
    batchtopk: bool = False  # BatchTopK instead of TopK
    batch: int = 4096  # samples per training step
    lr: float = 2e-3  # Adam's learning rate (on inputs normalized to unit mean square per channel)
    buffer: int = 65536  # samples held by the shuffle buffer
    epochs: int = 1  # passes over the folder
    dead_window: int = 1_000_000  # a feature is dead after this many samples without firing
    seed: int = 0

    def check(self) -> None:
        if self.features < 1:
            raise FvError(f"bad --k {self.features}: expected at least 1 feature")
        if not 1 <= self.topk <= self.features:
            raise FvError(f"bad --topk {self.topk}: expected 1 to --k ({self.features})")
        if self.batch < 1 or self.buffer < self.batch:
            raise FvError(f"bad SAE batch {self.batch} / buffer {self.buffer}: expected 1 <= batch <= buffer")
        if self.epochs < 1:
            raise FvError(f"bad --epochs {self.epochs}: expected 1 or more")
        if not self.lr > 0:
            raise FvError(f"bad --lr {self.lr}: expected a number > 0")

    def to_dict(self) -> dict:
        return asdict(self)


class ShuffleBuffer:
    """A fixed-size pool of samples; see the module docstring."""

    def __init__(self, capacity: int, channels: int, seed: int) -> None:
        self.data = torch.empty(capacity, channels)
        self.fill = 0
        self.g = torch.Generator().manual_seed(seed)

    def push(self, x: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
        """Add samples x (n, C); yield a random minibatch of `batch` samples each time `batch` slots are refilled."""
        x = x.detach().to("cpu", torch.float32)
        cap = self.data.shape[0]
        while x.shape[0]:
            if self.fill < cap:
                take = min(cap - self.fill, x.shape[0])
                self.data[self.fill:self.fill + take] = x[:take]
                self.fill += take
                x = x[take:]
                continue
            m = min(batch, x.shape[0])
            slots = torch.randperm(cap, generator=self.g)[:batch]
            out = self.data[slots].clone()
            self.data[slots[:m]] = x[:m]  # the slots not refilled (a short tail) keep their samples: drawn again
            x = x[m:]
            yield out

    def drain(self, batch: int) -> Iterator[torch.Tensor]:
        perm = torch.randperm(self.fill, generator=self.g)
        for i in range(0, self.fill, batch):
            yield self.data[perm[i:i + batch]].clone()
        self.fill = 0

    def state(self) -> dict:
        return {"data": self.data[: self.fill].clone(), "rng": self.g.get_state()}

    def load(self, st: dict) -> None:
        n = st["data"].shape[0]
        self.data[:n] = st["data"]
        self.fill = n
        self.g.set_state(st["rng"])


class SAETrainer:
    def __init__(self, s: SAESettings, channels: int, device: torch.device | str = "cpu") -> None:
        s.check()
        self.s = s
        self.device = torch.device(device)
        self.sae = SparseAutoencoder(channels, s.features, s.topk, s.batchtopk, s.seed).to(self.device)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=s.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        self.buffer = ShuffleBuffer(s.buffer, channels, s.seed)
        self.stats = FeatureStats(s.features, s.dead_window)
        self.curve: list[list[float]] = []  # [step, samples, nmse, l0, aux]
        self.step = 0
        self.samples = 0
        self.started = False

    def partial_fit(self, x: torch.Tensor) -> None:
        for mb in self.buffer.push(x, self.s.batch):
            self._step(mb)

    def finish(self) -> SparseAutoencoder:
        """Train on what the buffer still holds; the trained SAE (also when the stream was shorter than the buffer)."""
        if self.buffer.fill == 0 and not self.started:
            raise FvError("no activations were read: the folder has no readable images")
        for mb in self.buffer.drain(self.s.batch):
            self._step(mb)
        return self.sae

    def _step(self, x: torch.Tensor) -> None:
        if not self.started:  # scale and decoder bias from the first full buffer (or all the data, if less)
            self.sae.start(self.buffer.data[: self.buffer.fill].to(self.device))
            self.started = True
        x = x.to(self.device)
        dead = self.stats.dead() if self.stats.n >= self.s.dead_window else None
        with torch.enable_grad():  # the samples may come from a stream that runs under no_grad
            loss, log = self.sae.loss(x, dead)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        self.sae.remove_parallel_grad()
        self.opt.step()
        self.sae.normalize_decoder()
        self.stats.update(log["codes"])
        self.step += 1
        self.samples += x.shape[0]
        self.curve.append([self.step, self.samples, log["nmse"], log["l0"], log["aux"]])

    def state(self) -> dict:
        return {"sae": {k: v.detach().cpu() for k, v in self.sae.state_dict().items()},
                "opt": _to_cpu(self.opt.state_dict()), "buffer": self.buffer.state(), "stats": self.stats.state(),
                "curve": torch.tensor(self.curve, dtype=torch.float64).reshape(-1, 5), "step": self.step,
                "samples": self.samples, "started": self.started, "settings": self.s.to_dict()}

    def load(self, st: dict) -> None:
        if st.get("settings") != self.s.to_dict():
            raise FvError(f"the checkpoint was made with other SAE settings ({st.get('settings')}); this run: "
                          f"{self.s.to_dict()}: use another --checkpoint, or the same settings")
        self.sae.load_state_dict(st["sae"])
        self.opt.load_state_dict(st["opt"])
        self.buffer.load(st["buffer"])
        self.stats.load(st["stats"])
        self.curve = [list(r) for r in st["curve"].tolist()]
        self.step, self.samples, self.started = int(st["step"]), int(st["samples"]), bool(st["started"])

    def curve_summary(self, points: int = 200) -> dict:
        """The training curve, thinned to about `points` evenly spaced steps (always the last): JSON lists."""
        c = self.curve
        every = max(1, len(c) // points)
        rows = [r for i, r in enumerate(c) if i % every == 0 or i == len(c) - 1]
        return {"step": [int(r[0]) for r in rows], "samples": [int(r[1]) for r in rows],
                "nmse": [round(r[2], 6) for r in rows], "l0": [round(r[3], 3) for r in rows],
                "aux": [round(r[4], 6) for r in rows]}


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
