#!/usr/bin/env python
"""Accuracy of reduced-precision autocast: render the same units with the same seeds in fp32 and in bf16 (CUDA or
CPU) or fp16 (CUDA) and print the relative difference of the final objective values. Exit status 1 if outside the
tolerance.

    .venv/bin/python scripts/check_precision.py --layer mixed4a --units 8 --steps 256 --weights random:0
    .venv/bin/python scripts/check_precision.py --device cpu --units 4 --steps 256     # bf16 on the CPU

The tolerance fv states for `render.precision: bf16|fp16`: the final objective (mean activation of the unit,
scored on the untransformed image) within 5 % of fp32's, median over the units, same seeds. Single units can differ
more: the two optimizations follow different paths from the same start (rounding differs from the first step), so
this checks that reduced precision optimizes as well, not that it reproduces fp32's pixels. fp16 is CUDA-only (no
fast fp16 on CPUs); bf16 on a CPU is fast only with bf16 instructions (AVX512-BF16 or AMX).

    .venv/bin/python scripts/check_precision.py --matrix --units 4 --steps 128     # every model of bench_matrix.py

`--matrix` runs the check on each model of scripts/bench_matrix.py (InceptionV1, the real MobileNetV2's logits,
ResNet-50, ConvNeXt-T, ViT-B/16) and prints one line per model; a model that cannot be loaded is reported as
unavailable. Exit status 1 if any model is outside the tolerance.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dataclasses import replace  # noqa: E402

from fvcli.models import ModelOptions, load_model  # noqa: E402
from fvcli.optvis.objectives import Channel, PerImage  # noqa: E402
from fvcli.optvis.loop import LoopSettings, render_batch  # noqa: E402
from fvcli.optvis.transforms import ARTICLE  # noqa: E402

TOLERANCE = 0.05


def check(opts: ModelOptions, layer: str, units: int, steps: int, size: int, precision: str,
          device: str) -> tuple[float, list[float], dict]:
    """(median relative difference, all of them, final objectives by precision) of fp32 vs `precision`."""
    model = load_model(opts, device)
    obj = PerImage(tuple(Channel(layer, c) for c in range(units)))
    base = LoopSettings(steps=steps, size=size, transforms=ARTICLE)
    finals, seconds = {}, {}
    for prec in ("fp32", precision):
        t0 = time.perf_counter()
        snaps = list(render_batch(model, obj, list(range(units)), replace(base, precision=prec)))
        finals[prec], seconds[prec] = snaps[-1].scores, time.perf_counter() - t0
    finals["seconds"] = seconds
    rel = ((finals[precision] - finals["fp32"]).abs() / finals["fp32"].abs().clamp_min(1e-6)).tolist()
    return statistics.median(rel), rel, finals


def matrix(args, device: str) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_matrix import MATRIX

    from fvcli.recipe import load_recipe

    worst = 0.0
    only = set(args.only.split(",")) if args.only else None
    for key, label, spec, _conv in MATRIX:
        if only is not None and key not in only:
            continue
        opts = (load_recipe(spec["recipe"]).model_options() if "recipe" in spec
                else ModelOptions(spec["model"], spec["weights"]))
        try:
            med, rel, finals = check(opts, spec["layer"], args.units, args.steps, args.size, args.precision, device)
        except Exception as exc:  # noqa: BLE001 - reported; the other models go on
            print(f"{key:<14} unavailable: {type(exc).__name__}: {exc}")
            continue
        worst = max(worst, med)
        print(f"{key:<14} {args.precision} vs fp32, final objective: median relative difference {med:.4f}, max "
              f"{max(rel):.4f}; mean fp32 {statistics.mean(finals['fp32'].tolist()):.3f}, {args.precision} "
              f"{statistics.mean(finals[args.precision].tolist()):.3f} -> "
              f"{'within' if med <= TOLERANCE else 'OUTSIDE'} the {TOLERANCE:.0%} tolerance; time "
              f"{finals['seconds'][args.precision] / finals['seconds']['fp32']:.2f}x fp32's", flush=True)
    print(f"{args.units} units, {args.steps} steps, {args.size} px, device {device}")
    return 0 if worst <= TOLERANCE else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matrix", action="store_true", help="check every model of scripts/bench_matrix.py")
    ap.add_argument("--only", default=None, help="--matrix: comma-separated subset of the models (bench_matrix keys)")
    ap.add_argument("--model", default="inceptionv1")
    ap.add_argument("--weights", default="random:0")
    ap.add_argument("--layer", default="mixed4a")
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cpu" and args.precision == "fp16":
        print("fp16 autocast is CUDA-only in fv (it is a no-op on the CPU); nothing to check here.")
        return 0
    if args.matrix:
        return matrix(args, device)
    med, rel, finals = check(ModelOptions(args.model, args.weights), args.layer, args.units, args.steps, args.size,
                             args.precision, device)
    print(f"fp32 final objective: {[round(v, 3) for v in finals['fp32'].tolist()]}")
    print(f"{args.precision} final objective: {[round(v, 3) for v in finals[args.precision].tolist()]}")
    print(f"relative difference: median {med:.4f}, max {max(rel):.4f} (tolerance: median <= {TOLERANCE}); "
          f"mean objective fp32 {statistics.mean(finals['fp32'].tolist()):.3f}, "
          f"{args.precision} {statistics.mean(finals[args.precision].tolist()):.3f}; device {device}")
    return 0 if med <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
