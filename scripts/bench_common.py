"""What the speed benchmark's workers share: the machine's measured throughput, FLOP counts, memory, the model.

A speed figure on a shared VM means little alone. Every benchmark worker (scripts/bench_render.py, bench_matrix.py)
measures, just before it renders, the throughput this machine reaches right now on the shape of fv's work (a large
matmul, a 3x3 and a 1x1 channels_last convolution, forward + input gradient), counts the FLOPs of what it executed
(torch's FlopCounterMode), and reports memory and load; the fraction of the machine's throughput is then a ratio of
two measurements taken side by side, which survives a noisy neighbour far better than seconds do. Both tools load
the model named the same way (`model_options`: a recipe's model section, or --model / --weights).
"""
from __future__ import annotations

import os
import resource
import time

import torch
import torch.nn.functional as F


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _timed(fn, min_seconds: float = 0.6, device: torch.device | None = None) -> float:
    """Best seconds per call of fn over at least `min_seconds` of calls (after one warm-up)."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return best


def machine_gflops(device: torch.device, bf16: bool = False) -> dict:
    """Throughput this machine reaches right now: a large matmul; a 3x3 and a 1x1 convolution (channels_last,
    batch 8, forward + input gradient, weights frozen -- the shape of fv's work); with bf16, the 3x3 one in bf16."""
    out = {}
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    out["matmul"] = 2 * 2048**3 / _timed(lambda: a @ b, device=device) / 1e9
    cl = torch.channels_last
    for name, (cin, cout, k, hw) in {"conv3x3": (256, 256, 3, 28), "conv1x1": (480, 192, 1, 14)}.items():
        x = torch.randn(8, cin, hw, hw, device=device).contiguous(memory_format=cl).requires_grad_()
        w = torch.randn(cout, cin, k, k, device=device).contiguous(memory_format=cl)
        flops = 2 * (2 * 8 * cout * cin * k * k * hw * hw)  # forward + input gradient

        def step(x=x, w=w, k=k):
            F.conv2d(x, w, padding=k // 2).sum().backward()

        out[name] = flops / _timed(step, device=device) / 1e9
    out["conv"] = max(out["conv3x3"], out["conv1x1"])
    if bf16:
        x = torch.randn(8, 256, 28, 28, device=device, dtype=torch.bfloat16).contiguous(memory_format=cl)
        w = torch.randn(256, 256, 3, 3, device=device, dtype=torch.bfloat16).contiguous(memory_format=cl)
        x.requires_grad_()
        out["conv_bf16"] = 2 * (2 * 8 * 256 * 256 * 9 * 28 * 28) / _timed(
            lambda: F.conv2d(x, w, padding=1).sum().backward(), device=device) / 1e9
    return out


def count_flops(fn) -> tuple[float, dict]:
    """(total FLOPs, {module: FLOPs}) of what fn executes, from torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    return float(counter.get_total_flops()), per_module


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_name() -> str:
    """The CPU model, its logical CPU count and the vector extensions (fvcli.outputs.cpu_description)."""
    from fvcli.outputs import cpu_description

    return cpu_description()


def model_options(args):
    """The model options of `--recipe` (its model section) or of `--model`/`--weights`."""
    from fvcli.models import ModelOptions

    if getattr(args, "recipe", None):
        from fvcli.recipe import load_recipe

        return load_recipe(args.recipe).model_options()
    return ModelOptions(args.model, args.weights)
