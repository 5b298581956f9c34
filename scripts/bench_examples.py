"""Benchmark `fv examples`: images per second of one streaming pass over a folder of synthetic JPEGs.

    .venv/bin/python scripts/bench_examples.py                                   # MobileNetV2, features.14, 256 imgs
    .venv/bin/python scripts/bench_examples.py --units mixed4a --recipe default --weights random:0   # InceptionV1
    .venv/bin/python scripts/bench_examples.py --grid          # threads x workers side by side, interleaved

The images are ImageNet-like in size and file type (JPEG, 500x375 and 375x500, quality 90) with random textures,
written once to a temporary directory (or --dir). Timing covers the pass only (decode, resize, forward, merges), not
model loading, the receptive-field probe or writing the records; `--write` also times writing records and grids.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fvcli.examples import ExampleSettings, list_images, parse_example_units, run_examples, write_examples  # noqa: E402
from fvcli.models import load_model  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402


def make_images(d: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = (375, 500) if i % 3 else (500, 375)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        f = rng.uniform(0.02, 0.3, 3)
        a = 0.5 + 0.25 * np.sin(f[0] * xx + f[1] * yy)[..., None] * rng.random(3) + 0.25 * rng.random((h, w, 3))
        Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(d / f"img{i:05d}.jpg", quality=90)


def run(model, units, folder, batch: int, workers: int, threads: int, size: int | None, out: Path | None):
    torch.set_num_threads(threads)
    s = ExampleSettings(top_k=10, batch_size=batch, workers=workers, size=size)
    t0 = time.perf_counter()
    res = run_examples(model, units, folder, s)
    t1 = time.perf_counter()
    if out is not None:
        write_examples(out, res)
    return len(folder.files) / (t1 - t0), time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="mobilenet_v2", help="recipe giving the model (default: the real MobileNetV2)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--units", nargs="+", default=["features.14"], help="units; a bare layer = all its channels")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--dir", type=Path, default=None, help="reuse/write the synthetic images here")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="default: torch's (all cores)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--grid", action="store_true", help="compare threads 1/2 x workers 0/1/2, interleaved, twice")
    ap.add_argument("--write", action="store_true", help="also write records and grids (timed separately)")
    args = ap.parse_args()

    rec = load_recipe(args.recipe, [], {"model.weights": args.weights, "render.device": "cpu"})
    model = load_model(rec.model_options(), "cpu")
    units = parse_example_units(args.units, model)
    with tempfile.TemporaryDirectory() as tmp:
        d = args.dir or Path(tmp) / "imgs"
        if not d.is_dir() or len(list(d.glob("*.jpg"))) < args.images:
            make_images(d, args.images)
        folder = list_images(d, limit=args.images)
        run(model, units, list_images(d, limit=2 * args.batch_size), args.batch_size, 0, args.threads, args.size, None)
        print(f"# {model.name}, {len(units)} unit(s) ({', '.join(args.units)}), {len(folder.files)} JPEGs "
              f"500x375, batch {args.batch_size}, size {args.size or model.native_size}, "
              f"{len(os.sched_getaffinity(0))} core(s), load average {os.getloadavg()[0]:.1f}")
        if args.grid:
            configs = [(t, w) for t in (1, 2) for w in (0, 1, 2)]
            results: dict = {c: [] for c in configs}
            for _ in range(2):
                for t, w in configs:
                    results[(t, w)].append(run(model, units, folder, args.batch_size, w, t, args.size, None)[0])
            for (t, w), r in results.items():
                print(f"threads {t} workers {w}: {max(r):6.1f} images/s (runs: {', '.join(f'{x:.1f}' for x in r)})")
            return
        out = Path(tmp) / "out" if args.write else None
        ips, write_s = run(model, units, folder, args.batch_size, args.workers, args.threads, args.size, out)
        print(f"{ips:.1f} images/s (threads {args.threads}, workers {args.workers})")
        if args.write:
            print(f"records + grids for {len(units)} units: {write_s:.1f} s")


if __name__ == "__main__":
    main()
