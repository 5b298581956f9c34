#!/usr/bin/env python
"""Benchmark: a dictionary of D rows sweeps like a layer of D channels (same plan, same per-unit cost).

    .venv/bin/python scripts/bench_directions.py --recipe mobilenet_v2 --layer features.14 --rows 4096 \
        --batches 3 --batch-size 16 --size 128 --steps 32 --threads 2

Two claims, two measurements:

1. The plan. A sweep of every row of a (D, C) random dictionary and a sweep of every channel of a D-channel layer are
   cut into the same batches (sizes and count) and, at equal per-image cost, the same shard loads: the plan only
   sees unit numbers. Checked for D = --rows against a synthetic D-channel layer (no model has 4,096 channels here).
2. The cost. The same layer's channels and the dictionary's rows are rendered by the sweep's own renderer, batch
   for batch, alternating (channel batch, row batch, ...) so that a noisy neighbour on a shared machine hits both
   alike; per-unit seconds are compared (median over batches). The extra work of a row is one einsum of the
   activations with the batch's stacked rows instead of a gather, negligible beside the forward and backward pass.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_common import cpu_name, peak_rss_mb  # noqa: E402

from fvcli.models import load_model  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.sweep import ChannelRenderer, assign_shards, plan_sweep, select_units  # noqa: E402
from fvcli.units.unit import Unit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="mobilenet_v2", help="a recipe (its model section), or demo")
    ap.add_argument("--layer", default="features.14")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=3, help="batches of each kind to time")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shards", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rec = load_recipe(None if args.recipe == "demo" else args.recipe, [
        *(["model.name=demo"] if args.recipe == "demo" else []), f"render.steps={args.steps}", f"render.size={args.size}",
                                    f"render.batch_size={args.batch_size}", "render.thresholds=[]"])
    m = load_model(rec.model_options(), "cpu", rec.render.channels_last)
    info = m.layer(args.layer)
    tmp = tempfile.mkdtemp(prefix="bench-dir-")
    path = os.path.join(tmp, "random.npy")
    np.save(path, np.random.default_rng(0).standard_normal((args.rows, info.channels)).astype(np.float32))

    # 1. the plan
    rows = select_units(m, [info.name], directions=path)
    fake = [Unit("channel", "wide", c) for c in range(args.rows)]
    p_rows = plan_sweep(rows, args.batch_size, {info.name: 1000})
    p_chan = plan_sweep(fake, args.batch_size, {"wide": 1000})
    same_plan = [len(b.units) for b in p_rows] == [len(b.units) for b in p_chan]
    same_shards = assign_shards([b.cost for b in p_rows], args.shards) == assign_shards([b.cost for b in p_chan],
                                                                                         args.shards)
    print(f"plan: {len(rows)} rows of {os.path.basename(path)} over {info.name} -> {len(p_rows)} batches; "
          f"{args.rows} channels -> {len(p_chan)} batches; same batches: {same_plan}; same {args.shards}-shard "
          f"assignment: {same_shards}")

    # 2. the cost, alternating
    chans = select_units(m, [info.name])
    p_c = plan_sweep(chans, args.batch_size, {info.name: 1})
    renderer = ChannelRenderer()
    t_c, t_r = [], []
    for i in range(args.batches):
        for plan, out in ((p_c, t_c), (p_rows, t_r)):
            b = plan[i]
            t0 = time.perf_counter()
            renderer(m, rec, b)
            out.append((time.perf_counter() - t0) / len(b.units))
    mc, mr = statistics.median(t_c), statistics.median(t_r)
    print(f"per-unit seconds ({args.batches} batches of {args.batch_size}, {args.steps} steps, {args.size} px, "
          f"{args.threads} threads): channels {mc:.3f} {[round(t, 3) for t in t_c]}, rows {mr:.3f} "
          f"{[round(t, 3) for t in t_r]}; rows / channels = {mr / mc:.3f}")
    print(f"model {m.name} layer {info.name} ({info.channels} channels); CPU: {cpu_name()}; torch "
          f"{torch.__version__}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
