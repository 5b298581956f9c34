#!/usr/bin/env python
"""Check `fv sweep --deadline` against reality: plan every GoogLeNet channel for a deadline, then render one layer of
that plan for real and compare its time with the plan's prediction for it (issue #29: within 15 %).

    .venv/bin/python scripts/check_deadline.py                       # 8 h, mixed3a, batch 16, random weights
    .venv/bin/python scripts/check_deadline.py --deadline 8h --layer mixed4a --units 64

1. `fv sweep mixed3a ... mixed5b --deadline D --estimate`: the schedule chosen for all 5,484 units, its expected
   quality, the predicted finish and the predicted minutes per layer (nothing is written).
2. `fv sweep LAYER[:0-N] --size S --set render.steps=N --set LEVERS...`: the chosen schedule as a plain sweep of one
   layer, timed by the sweep's own report (rendering and files; not the model load).
3. The ratio of the real time to the plan's time for those units (the plan's per-layer minutes x units / channels).
Weights do not change the speed: InceptionV1 with random weights runs anywhere offline.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import cpu_name  # noqa: E402

GOOGLENET_MIXED = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed5a", "mixed5b")


def fv(*args: str) -> str:
    cmd = [sys.executable, "-m", "fvcli", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        sys.exit(f"check_deadline: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deadline", default="8h")
    ap.add_argument("--layer", default="mixed3a", help="the layer rendered for real")
    ap.add_argument("--units", type=int, default=None, help="only channels 0..N-1 of it (default: all)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--weights", default="random:0")
    a = ap.parse_args()
    common = ["--weights", a.weights, "--batch-size", str(a.batch), "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        plan = fv("sweep", *GOOGLENET_MIXED, *common, "--deadline", a.deadline, "--estimate", "--out", f"{tmp}/plan")
        print(plan.strip())
        print(f"(planning took {time.time() - t0:.0f} s)")
        m = re.search(r"schedule (\S+) \((\d+) px, (\d+) steps(?:, ([^)]*))?\)", plan)
        per_layer = dict((ly, float(v)) for ly, v in re.findall(r"(mixed\w+) ([\d.]+) min", plan))
        if not m or a.layer not in per_layer:
            sys.exit("check_deadline: could not read the plan")
        name, size, steps, sets = m.group(1), m.group(2), m.group(3), (m.group(4) or "").split()
        from fvcli.models import ModelOptions, load_model

        channels = load_model(ModelOptions(name="inceptionv1", weights=a.weights), "cpu").layer(a.layer).channels
        n = min(a.units or channels, channels)
        predicted = per_layer[a.layer] * 60 * n / channels
        spec = a.layer if n == channels else f"{a.layer}:0-{n - 1}"
        run = fv("sweep", spec, *common, "--size", size, "--set", f"render.steps={steps}",
                 *[x for s in sets for x in ("--set", s)], "--no-finalize", "--out", f"{tmp}/run")
        took = float(re.search(r"\(([\d.]+) s\)", run).group(1))
    ratio = took / predicted
    print(f"\n{cpu_name()}; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}; schedule {name}")
    print(f"{spec} ({n} units): predicted {predicted:.0f} s by the {a.deadline} plan, rendered in {took:.0f} s: "
          f"{ratio:.2f}x the plan ({'within' if abs(ratio - 1) <= 0.15 else 'NOT within'} 15 %)")


if __name__ == "__main__":
    main()
