#!/usr/bin/env python
"""Benchmark `fv sweep`: units per hour for one layer at a given size and step count, on this machine.

    .venv/bin/python scripts/bench_sweep.py --layer mixed4a --units 16 --size 224 --steps 64
    .venv/bin/python scripts/bench_sweep.py --layer mixed4a --units 8 --size 128 --steps 32 --threads 2

It runs a real sweep (planning, batching, PNG + JSON writes; not the model load) of channels 0..N-1 of the layer into a
temporary directory, and prints units/hour with the machine it ran on. It also extrapolates, by FLOPs (the sweep's
own cost model), to the article's sweep: every channel of mixed3a..mixed5b at the same size and --full-steps.
Weights do not change the speed: random weights (the default) run anywhere offline.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fvcli.models import load_model  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.sweep import layer_costs, prepare_sweep  # noqa: E402
from fvcli.units.unit import Unit  # noqa: E402

GOOGLENET_MIXED = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed5a", "mixed5b")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return (f"{cpu_name()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, "
            f"load average {load:.1f} at start, torch {torch.__version__}, {platform.system()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="inceptionv1")
    ap.add_argument("--weights", default="random:0")
    ap.add_argument("--layer", default="mixed4a")
    ap.add_argument("--units", type=int, default=16, help="channels 0..N-1 of the layer")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch-size", default="auto")
    ap.add_argument("--recipe", default=None, help="recipe file or name (default: fv's defaults)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--full-steps", type=int, default=512, help="steps assumed by the extrapolation")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rec = load_recipe(a.recipe, [], {"model.name": a.model, "model.weights": a.weights, "render.steps": a.steps,
                                     "render.size": a.size, "render.device": a.device,
                                     "render.batch_size": a.batch_size if a.batch_size == "auto" else int(a.batch_size)})
    model = load_model(rec.model_options(), rec.render.device, rec.render.channels_last)
    n = min(a.units, model.layer(a.layer).channels)
    units = [Unit("channel", a.layer, c) for c in range(n)]
    print(f"machine: {machine(model.device)}")
    with tempfile.TemporaryDirectory(prefix="fv-bench-sweep-") as tmp:
        job = prepare_sweep(model, rec, units, tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        report = job.run(finalize_when_done=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert report.rendered == n
    per_hour = 3600 * n / seconds
    print(f"{model.name} {a.layer}, {a.size} px, {a.steps} steps, batch size {job.batch_size}: {n} units in "
          f"{seconds:.1f} s -> {per_hour:.0f} units/hour ({seconds / n:.2f} s/unit, "
          f"{n * a.steps / seconds:.1f} image-steps/s)")
    if model.device.type == "cpu":  # on a shared machine, how much CPU this process actually got
        print(f"CPU time {cpu:.1f} s = {cpu / seconds:.2f} cores busy on average "
              f"(-> {3600 * n / cpu * torch.get_num_threads():.0f} units/hour if its {torch.get_num_threads()} "
              f"threads had the cores to themselves)")
    if model.name == "inceptionv1":
        costs = layer_costs(model, (a.layer,) + GOOGLENET_MIXED, a.size)
        unit_step = seconds / (n * a.steps) / costs[a.layer]  # seconds per unit-step per unit of cost
        total = sum(model.layer(l).channels * costs[l] for l in GOOGLENET_MIXED) * unit_step * a.full_steps
        channels = sum(model.layer(l).channels for l in GOOGLENET_MIXED)
        print(f"extrapolated (by FLOPs): {a.layer} at {a.full_steps} steps ~ {per_hour * a.steps / a.full_steps:.0f} "
              f"units/hour; every channel of mixed3a..mixed5b ({channels:,}) at {a.size} px x {a.full_steps} steps "
              f"~ {total / 3600:.1f} h on one such process")


if __name__ == "__main__":
    main()
