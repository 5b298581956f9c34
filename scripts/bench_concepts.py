#!/usr/bin/env python
"""Benchmark `fv concepts` on a large generated folder: time and peak memory (max RSS) of the whole command.

    .venv/bin/python scripts/bench_concepts.py --images 10000 --folder /tmp/concepts-10k \
        --recipe mobilenet_v2 --layer features.13 --k 16 --method nmf --threads 2

The folder is generated first when it holds fewer than --images files: procedural demo images
(fvcli/models/demo_data.py, 12 labelled classes) drawn at --px pixels (224 by default) and saved as JPEG in one
folder per class. Then `fv concepts` runs as a child process (the command a user types, data-loader workers
included) and the script prints its wall time, images per second and the peak resident memory of the child and its
workers (getrusage RUSAGE_CHILDREN: the largest max RSS among them), with the CPU it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_common import cpu_name  # noqa: E402


def make_folder(root: Path, n: int, px: int, seed: int = 0) -> float:
    from PIL import Image

    from fvcli.models.demo_data import DEMO_CLASSES, balanced_labels, generate

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    labels = balanced_labels(n, rng)
    for i, c in enumerate(labels):
        d = root / DEMO_CLASSES[int(c)]
        d.mkdir(parents=True, exist_ok=True)
        img = generate(int(c), px, rng)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(d / f"{i:06d}.jpg", quality=90)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--px", type=int, default=224)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/fv-concepts-bench"))
    ap.add_argument("--recipe", default="mobilenet_v2")
    ap.add_argument("--layer", default="features.13")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--method", default="nmf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--make-only", action="store_true")
    ap.add_argument("--extra", default="", help="more `fv concepts` options, e.g. '--topk 16 --epochs 1' for --method sae")
    args = ap.parse_args()

    have = sum(1 for _ in args.folder.rglob("*.jpg")) if args.folder.is_dir() else 0
    if have < args.images:
        s = make_folder(args.folder, args.images, args.px)
        print(f"generated {args.images} images of {args.px} px in {args.folder} ({s:.0f} s)")
    if args.make_only:
        return
    out = args.out or args.folder.parent / f"{args.folder.name}-{args.method}{args.k}.npy"
    cmd = [sys.executable, "-m", "fvcli", "concepts", str(args.folder), args.layer, "--k", str(args.k),
           "--method", args.method, "--sample", str(args.images), "-o", str(out), "--threads", str(args.threads),
           "-j", str(args.workers), "-b", str(args.batch_size), "--quiet", *args.extra.split()]
    cmd += ["--model", "demo"] if args.recipe == "demo" else ["--recipe", args.recipe]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"fv concepts failed ({r.returncode}):\n{r.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rep = json.loads(out.with_suffix(".json").read_text())
    print(r.stdout.strip())
    print(f"fv concepts {args.method} k={args.k} on {rep['model']} {rep['layer']} over {rep['images']} images at "
          f"{rep['size']} px ({rep['samples']} samples x {rep['channels']} channels, {rep['passes']} passes): "
          f"{wall:.1f} s wall ({rep['passes'] * rep['images'] / wall:.1f} images/s over the passes), peak RSS "
          f"{peak:.0f} MB, explains {100 * rep['fraction_of_variance_explained']:.1f}% of the variance; "
          f"{args.threads} threads, {args.workers} loader worker(s); CPU: {cpu_name()}")


if __name__ == "__main__":
    main()
