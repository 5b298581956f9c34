#!/usr/bin/env python
"""Render-quality benchmark with known ground truth (fvcli/figures/quality.py): the demo model, trained by fv on procedural
classes, and its independently trained judge.

For every class, render its logit with each recipe variant and report:
  transfer  -- fraction of renders the *judge* classifies as the intended class (do the images carry the class's
               real visual features, or adversarial noise only the rendering model reads?)
  own_conf  -- the rendering model's own softmax probability of the class (mean)
  hf_energy -- fraction of spectral power above 0.25 cycles/pixel (lower = less high-frequency noise)

Variants: plain pixel optimization; pixel + L1/TV/blur (lucid's regularization weights); pixel + the article's
transforms; Fourier + color decorrelation; the article's full recipe (Fourier + decorrelation + transforms).

    .venv/bin/python scripts/bench_quality.py                 # 12 classes x 4 seeds, 512 steps (the default recipe's)
    .venv/bin/python scripts/bench_quality.py --steps 128 --seeds 1 --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fvcli.models import ModelOptions, load_model  # noqa: E402
from fvcli.figures.quality import LEVERS, VARIANTS, quality_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--weights", default=None, help="rendering model weights (default: the shipped demo model)")
    ap.add_argument("--judge-weights", default=None, help="judge weights (default: the shipped demo judge)")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=4, help="run seeds per class (renders = classes x seeds)")
    ap.add_argument("--classes", default="", help="comma list of class indices (default: all)")
    ap.add_argument("--variants", default="", help=f"comma list of variants (default: all): {', '.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--levers", action="store_true", help=f"the levers of time to quality instead: {', '.join(LEVERS)}")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.judge_weights is None:
        from fvcli.models.demo import JUDGE_WEIGHTS

        args.judge_weights = str(JUDGE_WEIGHTS)
    table = LEVERS if args.levers else VARIANTS
    variants = table
    if args.variants:
        unknown = [v for v in args.variants.split(",") if v not in table]
        if unknown:
            sys.exit(f"bench_quality: unknown variant {unknown[0]!r}; valid: {', '.join(table)}")
        variants = {v: table[v] for v in args.variants.split(",")}
    model = load_model(ModelOptions(args.model, args.weights), "cpu")
    judge = load_model(ModelOptions(args.model, args.judge_weights), "cpu")
    classes = list(range(model.num_classes)) if not args.classes else [int(c) for c in args.classes.split(",")]
    head = (f"# {model.name}: {len(classes)} classes x {args.seeds} seeds, {args.steps} steps, {args.size} px, "
            f"judge = independently trained model ({os.path.basename(args.judge_weights)}); "
            f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)")
    if not args.json:
        print(head)
        print(f"{'variant':<24} {'transfer':>9} {'own_conf':>9} {'hf_energy':>10} {'renders':>8} {'seconds':>8}",
              flush=True)

    def show(row) -> None:
        if not args.json:
            print(f"{row.variant:<24} {row.transfer:>9.2f} {row.own_conf:>9.2f} {row.hf_energy:>10.3f} "
                  f"{row.renders:>8} {row.seconds:>8}", flush=True)

    t0 = time.perf_counter()
    rows = quality_table(model, judge, classes, args.steps, args.size, args.seeds, variants, on_row=show)
    if args.json:
        print(json.dumps({"model": model.name, "steps": args.steps, "size": args.size, "seeds": args.seeds,
                          "classes": len(classes), "variants": [asdict(r) for r in rows],
                          "seconds": round(time.perf_counter() - t0, 1)}))
    else:
        print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
