#!/usr/bin/env python
"""Are the negatives of a layer real pictures? Render them twice -- minimizing the pre-activation (what fv does) and
the post-ReLU output (what it did before) -- and count the flat ones (fvcli/runner/flat.py).

    .venv/bin/python scripts/check_negatives.py --model demo --layer block3 --channels 0-127 --steps 128 --size 64
    .venv/bin/python scripts/check_negatives.py --model torchvision:resnet50 --weights random:0 --layer layer3 \
        --channels 0-15 --steps 64 --size 128

Prints, for both ways, how many negatives are flat, the median gain in margins (gain / (3 x spread)), and the
pre-activation layer used, with the CPU. Random weights are fine for ResNet-50: what is checked is structural (the
pre-activation is found and the objective has somewhere to go).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import fvcli  # noqa: E402
from bench_common import cpu_name  # noqa: E402
from fvcli.models import preact  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.runner import variants  # noqa: E402
from fvcli.units.expr import parse_unit_arg  # noqa: E402


def run(model, recipe, units, batch_size: int) -> list[dict]:
    res = variants.render_variants(model, recipe, units, None, negative=True, batch_size=batch_size)
    return [it["record"] for it in res["items"]]


def summary(recs: list[dict]) -> str:
    flat = sum(r["flat"] for r in recs)
    ratios = [r["movement"]["gain"] / r["movement"]["margin"] if r["movement"]["margin"] > 0 else float("inf")
              for r in recs]
    return (f"{flat} of {len(recs)} flat; gain / margin median {statistics.median(ratios):.1f}, "
            f"min {min(ratios):.2f}; layer {recs[0].get('negative_layer')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--layer", default="block3")
    ap.add_argument("--channels", default="0-15")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = fvcli.load_model(args.model, weights=args.weights) if args.weights else fvcli.load_model(args.model)
    recipe = load_recipe(None, [], {"render.steps": args.steps, "render.size": args.size, "render.device": "cpu"})
    units = parse_unit_arg(f"{args.layer}:{args.channels}", model)
    print(f"{args.model} {args.layer} channels {args.channels}, {args.steps} steps at {args.size} px; "
          f"pre-activation: {preact.pre_activation(model, args.layer)}")
    t0 = time.perf_counter()
    new = run(model, recipe, units, args.batch_size)
    t1 = time.perf_counter()
    print(f"pre-activation (fv): {summary(new)} ({t1 - t0:.0f} s)")
    found = preact.pre_activation(model, args.layer)
    model.extra["pre_activation"][args.layer] = preact.PreActivation(args.layer, args.layer, False, "the old way")
    old = run(model, recipe, units, args.batch_size)
    model.extra["pre_activation"][args.layer] = found
    print(f"post-ReLU output (before): {summary(old)} ({time.perf_counter() - t1:.0f} s)")
    for r in new:
        if r["flat"]:
            print(f"  flat: {r['unit']}: {r['flat_reason']}")
    print(f"CPU: {cpu_name()}, {args.threads} threads")


if __name__ == "__main__":
    main()
