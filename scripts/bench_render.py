#!/usr/bin/env python
"""Benchmark fv's render loop (and, with --vs-lucent, torch-lucent's) on the same units in the same run.

Prints: image*steps per second, seconds per unit, peak memory, achieved GFLOP/s (conv + matmul FLOPs of the executed
forward and backward, counted with torch.utils.flop_counter) as a fraction of the machine's throughput measured by
this script in this run (a large matmul and a representative channels_last convolution).

    .venv/bin/python scripts/bench_render.py --layer mixed4a --units 8 --size 224 --steps 48
    make bench-lucent    # creates .venv-bench with torch-lucent, then runs with --vs-lucent

The machine is shared and noisy: fv and lucent are measured interleaved (rounds), and ratios are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fvcli.models import ModelOptions, load_model  # noqa: E402
from fvcli.objectives import Channel, PerImage  # noqa: E402
from fvcli.render import LoopSettings, render_batch  # noqa: E402
from fvcli.transforms import ARTICLE  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_gflops(device: torch.device, reps: int = 5) -> dict:
    """Measured throughput: a 2048^3 matmul, and a 3x3 256->256 conv at 28x28 (batch 8, channels_last) fwd+bwd."""
    out = {}
    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    out["matmul"] = 2 * 2048**3 * reps / (time.perf_counter() - t) / 1e9
    x = torch.randn(8, 256, 28, 28, device=device).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(256, 256, 3, 3, device=device).contiguous(memory_format=torch.channels_last)
    flops = 2 * 8 * 256 * 256 * 9 * 28 * 28 * 2  # forward + input gradient
    F.conv2d(x, w, padding=1).sum().backward()
    t = time.perf_counter()
    for _ in range(reps):
        F.conv2d(x, w, padding=1).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    out["conv"] = flops * reps / (time.perf_counter() - t) / 1e9
    return out


def count_step_flops(model, objective, seeds, settings) -> float:
    """FLOPs of one optimization step (forward + backward), counted by torch's FlopCounterMode."""
    from dataclasses import replace

    from torch.utils.flop_counter import FlopCounterMode

    gen = render_batch(model, objective, seeds, replace(settings, steps=2, thresholds=()))
    counter = FlopCounterMode(display=False)
    # The counter wraps both steps and the final no-grad snapshot forward; subtract the latter.
    with counter:
        for _ in gen:
            pass
    total = counter.get_total_flops()
    fwd = FlopCounterMode(display=False)
    with fwd, torch.no_grad():
        from fvcli.models import Capture

        with Capture(model, objective.layers) as cap:
            cap(model.preprocess.apply(torch.rand(len(seeds), 3, settings.size, settings.size, device=model.device))
                .contiguous(memory_format=torch.channels_last))
    return (total - fwd.get_total_flops()) / 2


def bench_fv(args, model, units) -> dict:
    settings = LoopSettings(steps=args.steps, size=args.size, transforms=ARTICLE)
    seeds = list(range(len(units)))
    times = []
    for i in range(0, len(units), args.batch_size):
        chunk = units[i : i + args.batch_size]
        obj = PerImage(tuple(Channel(args.layer, c) for c in chunk))
        t = time.perf_counter()
        for _ in render_batch(model, obj, seeds[i : i + len(chunk)], settings):
            pass
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return {"seconds": sum(times), "units": len(units)}


def bench_lucent(args, units) -> dict:
    from lucent.modelzoo import inceptionv1
    from lucent.optvis import param, render, transform

    torch.manual_seed(0)
    model = inceptionv1(pretrained=False).to(args.device).eval()
    tfs = [transform.pad(16), transform.jitter(16), transform.random_scale([1, 0.975, 1.025, 0.95, 1.05]),
           transform.random_rotate(list(range(-5, 6))), transform.jitter(8)]
    t = time.perf_counter()
    for c in units:
        render.render_vis(model, f"{args.layer}:{c}", lambda: param.image(args.size), transforms=tfs,
                          thresholds=(args.steps,), show_image=False, progress=False, fixed_image_size=args.size)
    return {"seconds": time.perf_counter() - t, "units": len(units)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="inceptionv1")
    ap.add_argument("--weights", default="random:0")
    ap.add_argument("--layer", default="mixed4a")
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved fv/lucent rounds")
    ap.add_argument("--vs-lucent", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    model = load_model(ModelOptions(args.model, args.weights), dev)
    units = list(range(args.units))
    machine = machine_gflops(dev)
    bs = min(args.batch_size, len(units))
    flops_step = count_step_flops(model, PerImage(tuple(Channel(args.layer, c) for c in units[:bs])),
                                  list(range(bs)), LoopSettings(steps=2, size=args.size, transforms=ARTICLE))
    flops_per_image_step = flops_step / bs
    fv_runs, lu_runs = [], []
    for _ in range(args.rounds):
        fv_runs.append(bench_fv(args, model, units))
        if args.vs_lucent:
            lu_runs.append(bench_lucent(args, units))
    fv_s = min(r["seconds"] for r in fv_runs)
    res = {
        "model": args.model, "layer": args.layer, "size": args.size, "steps": args.steps, "units": len(units),
        "batch_size": bs, "device": str(dev), "threads": torch.get_num_threads(),
        "machine_gflops_matmul": round(machine["matmul"], 1), "machine_gflops_conv": round(machine["conv"], 1),
        "gflop_per_image_step": round(flops_per_image_step / 1e9, 3),
        "fv_image_steps_per_s": round(len(units) * args.steps / fv_s, 2),
        "fv_seconds_per_unit": round(fv_s / len(units), 3),
        "fv_seconds_per_unit_at_512_steps": round(fv_s / len(units) * 512 / args.steps, 2),
    }
    achieved = flops_per_image_step * len(units) * args.steps / fv_s / 1e9
    res["fv_achieved_gflops"] = round(achieved, 1)
    res["fv_fraction_of_conv_throughput"] = round(achieved / machine["conv"], 3)
    res["peak_rss_mb"] = round(peak_rss_mb(), 0)
    if dev.type == "cuda":
        res["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 0)
    if lu_runs:
        lu_s = min(r["seconds"] for r in lu_runs)
        res["lucent_seconds_per_unit"] = round(lu_s / len(units), 3)
        res["lucent_image_steps_per_s"] = round(len(units) * args.steps / lu_s, 2)
        res["speedup_vs_lucent"] = round(lu_s / fv_s, 2)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:<36} {v}")


if __name__ == "__main__":
    main()
