#!/usr/bin/env python
"""Accuracy of reduced-precision autocast (CUDA): render the same units with the same seeds in fp32 and in
bf16/fp16 and print the relative difference of the final objective values.

    .venv/bin/python scripts/check_precision.py --layer mixed4a --units 8 --steps 256 --weights random:0

The tolerance fv states for `render.precision: bf16|fp16`: final objective within 5 % of fp32 (median over units).
On a machine without CUDA the script says so and exits 0: autocast is CUDA-only in fv (bf16 convolutions on this
project's CPU measured 30x slower than fp32).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dataclasses import replace  # noqa: E402

from fvcli.models import ModelOptions, load_model  # noqa: E402
from fvcli.objectives import Channel, PerImage  # noqa: E402
from fvcli.render import LoopSettings, render_batch  # noqa: E402
from fvcli.transforms import ARTICLE  # noqa: E402

TOLERANCE = 0.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="inceptionv1")
    ap.add_argument("--weights", default="random:0")
    ap.add_argument("--layer", default="mixed4a")
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("CUDA is not available: reduced-precision autocast is CUDA-only in fv; nothing to check here.")
        return 0
    model = load_model(ModelOptions(args.model, args.weights), "cuda")
    obj = PerImage(tuple(Channel(args.layer, c) for c in range(args.units)))
    base = LoopSettings(steps=args.steps, size=args.size, transforms=ARTICLE)
    finals = {}
    for prec in ("fp32", args.precision):
        snaps = list(render_batch(model, obj, list(range(args.units)), replace(base, precision=prec)))
        finals[prec] = snaps[-1].scores
    rel = ((finals[args.precision] - finals["fp32"]).abs() / finals["fp32"].abs().clamp_min(1e-6)).tolist()
    med = statistics.median(rel)
    print(f"fp32 final objective: {[round(v, 3) for v in finals['fp32'].tolist()]}")
    print(f"{args.precision} final objective: {[round(v, 3) for v in finals[args.precision].tolist()]}")
    print(f"relative difference: median {med:.4f}, max {max(rel):.4f} (tolerance {TOLERANCE})")
    return 0 if med <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
