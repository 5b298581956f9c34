#!/usr/bin/env python
"""What circuits cost beside rendering: one swept layer rendered, then its circuits, timed side by side.

    PYTHONPATH=. .venv/bin/python scripts/bench_circuits.py                                   # demo block4, all 192
    PYTHONPATH=. .venv/bin/python scripts/bench_circuits.py --model inceptionv1 --weights random:0 \
        --layer mixed4a --units 32 --size 224 --steps 512

The layer (its first --units channels) is swept into a fresh directory with the default recipe (its steps, size and
batch size unless given), then `sweep_circuits` -- what `fv sweep --with circuits` runs -- computes every unit's
inputs from the main layer before it: expanded weights and attribution on the renders. Both are timed in the same
process, one after the other, so the ratio is a fair comparison on a shared machine even when the seconds are not.
It prints the CPU or GPU, the seconds of each, seconds per unit and the ratio (the issue's target: < 10 %).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from fvcli.circuits import sweep_circuits
from fvcli.models import load_model
from fvcli.outputs import cpu_description
from fvcli.recipe import load_recipe
from fvcli.sweep import run_sweep, select_units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--layer", default="block4")
    ap.add_argument("--units", type=int, default=0, help="the first N channels (0: all)")
    ap.add_argument("--steps", type=int, default=None, help="default: the recipe's (512)")
    ap.add_argument("--size", type=int, default=None, help="default: the model's native size")
    ap.add_argument("--batch-size", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="sweep directory (default: a fresh temporary one)")
    a = ap.parse_args()
    overrides = {"model.name": a.model, "render.device": a.device}
    if a.weights:
        overrides["model.weights"] = a.weights
    if a.steps:
        overrides["render.steps"] = a.steps
    recipe = load_recipe(None, [], overrides)
    model = load_model(recipe.model_options(), recipe.render.device, recipe.render.channels_last)
    size = a.size or model.native_size
    recipe = load_recipe(None, [], {**overrides, "render.size": size})
    channels = model.layer(a.layer).channels
    n = a.units or channels
    units = select_units(model, [f"{a.layer}:0-{n - 1}"])
    out = Path(a.out or tempfile.mkdtemp(prefix="fv-bench-circuits-"))
    where = cpu_description() if model.device.type == "cpu" else torch.cuda.get_device_name(model.device)
    print(f"{model.name} {a.layer}: {n} of {channels} units, {recipe.render.steps} steps at {size} px, on "
          f"{model.device} ({where}, {torch.get_num_threads()} threads), load {os.getloadavg()[0]:.1f}")
    t = time.perf_counter()
    report = run_sweep(model, recipe, units, out, batch_size=a.batch_size or recipe.render.batch_size,
                       finalize_when_done=False)
    render_s = time.perf_counter() - t
    assert report.complete, "the sweep did not complete"
    t = time.perf_counter()
    cost = sweep_circuits(model, out, units)
    circuits_s = time.perf_counter() - t
    print(f"render:   {render_s:9.2f} s  ({render_s / n:.4f} s/unit)")
    print(f"circuits: {circuits_s:9.2f} s  ({circuits_s / n:.4f} s/unit, from {cost['layers'][a.layer]})")
    print(f"ratio circuits / render: {100 * circuits_s / render_s:.2f} %   (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
