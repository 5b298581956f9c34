#!/usr/bin/env python
"""Render-quality benchmark with known ground truth: the demo model (trained by fv on procedural classes) and an
independently trained judge.

For every class, render its logit with each recipe variant and report:
  transfer  -- fraction of renders the *judge* classifies as the intended class (do the images carry the class's
               real visual features, or adversarial noise only the rendering model reads?)
  own_conf  -- the rendering model's own softmax probability of the class (mean)
  hf_energy -- fraction of spectral power above 0.25 cycles/pixel (fvcli.metrics; lower = less high-frequency noise)

Variants: plain pixel optimization; pixel + L1/TV/blur (lucid's regularization demo weights); pixel + the
article's transforms; Fourier + color decorrelation; the article's full recipe (Fourier + decorrelation +
transforms).

    .venv/bin/python scripts/bench_quality.py                 # all classes, 2 seeds, 256 steps
    .venv/bin/python scripts/bench_quality.py --json          # one JSON line
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fvcli.metrics import high_frequency_energy  # noqa: E402
from fvcli.models import Capture, ModelOptions, load_model  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.runner import run_batch  # noqa: E402
from fvcli.units import Unit  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "pixel": ["param.kind=pixel", "param.decorrelate=false", "transforms=none"],
    "pixel+L1/TV/blur": ["param.kind=pixel", "param.decorrelate=false", "transforms=none",
                         "regularizers.l1=0.05", "regularizers.tv=0.25", "regularizers.blur=1.0"],
    "pixel+transforms": ["param.kind=pixel", "param.decorrelate=false", "transforms=article"],
    "fourier+decorrelation": ["param.kind=fourier", "param.decorrelate=true", "transforms=none"],
    "article (full)": ["param.kind=fourier", "param.decorrelate=true", "transforms=article"],
}


def classify(model, images: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (B, classes) of images in [0, 1] at the model's native size."""
    x = images.to(model.device)
    if x.shape[-1] != model.native_size:
        x = torch.nn.functional.interpolate(x, size=(model.native_size,) * 2, mode="bilinear", align_corners=False)
    with torch.no_grad(), Capture(model, [model.logits_layer]) as cap:
        logits = cap(model.preprocess.apply(x))[model.logits_layer]
    return logits.float().softmax(dim=1).cpu()


def run(args) -> dict:
    model = load_model(ModelOptions(args.model, args.weights), "cpu")
    judge = load_model(ModelOptions(args.model, args.judge_weights), "cpu")
    classes = list(range(model.num_classes)) if not args.classes else [int(c) for c in args.classes.split(",")]
    table = {}
    for name, sets in VARIANTS.items():
        t0 = time.perf_counter()
        rec = load_recipe(None, sets + [f"render.steps={args.steps}", f"render.size={args.size}",
                                         f"model.name={args.model}"])
        correct, conf, hf = [], [], []
        for seed in range(args.seeds):
            rec_s = load_recipe(None, sets + [f"render.steps={args.steps}", f"render.size={args.size}",
                                               f"render.seed={seed}"])
            units = [Unit("logit", model.logits_layer, c) for c in classes]
            res = run_batch(model, rec_s, units)
            imgs = res.snapshots[-1].images
            target = torch.tensor(classes)
            pj = classify(judge, imgs)
            po = classify(model, imgs)
            correct += (pj.argmax(1) == target).tolist()
            conf += po[torch.arange(len(classes)), target].tolist()
            hf += high_frequency_energy(imgs).tolist()
        del rec
        table[name] = {"transfer": sum(correct) / len(correct), "own_conf": sum(conf) / len(conf),
                       "hf_energy": sum(hf) / len(hf), "renders": len(correct),
                       "seconds": round(time.perf_counter() - t0, 1)}
    return {"model": args.model, "steps": args.steps, "size": args.size, "seeds": args.seeds,
            "classes": len(classes), "variants": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--weights", default=None, help="rendering model weights (default: the shipped demo model)")
    ap.add_argument("--judge-weights", default=None, help="judge weights (default: the shipped demo judge)")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--classes", default="", help="comma list of class indices (default: all)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.judge_weights is None:
        from fvcli.models.demo import JUDGE_WEIGHTS

        args.judge_weights = str(JUDGE_WEIGHTS)
    res = run(args)
    if args.json:
        print(json.dumps(res))
        return
    print(f"# {res['model']}: {res['classes']} classes x {res['seeds']} seeds, {res['steps']} steps, "
          f"{res['size']} px; judge = independently trained model")
    print(f"{'variant':<24} {'transfer':>9} {'own_conf':>9} {'hf_energy':>10} {'seconds':>8}")
    for name, row in res["variants"].items():
        print(f"{name:<24} {row['transfer']:>9.2f} {row['own_conf']:>9.2f} {row['hf_energy']:>10.3f} "
              f"{row['seconds']:>8}")


if __name__ == "__main__":
    main()
