"""Can "alone or in a batch" be bitwise by design, and at what cost? (issue #27; docs/reports/guarantees.md)

fv gives a unit the same seed, initial image and transforms in any batch, but its final picture moves with the batch's
float rounding (tests/drift.py). Two designs would make it bitwise; this script measures what each would cost:

1. **Every image its own batch** (per-image forward and backward): the kernels see one shape, so batch-mates cannot
   matter. Cost: the batching itself -- measured as seconds per image-step for B images rendered one at a time vs
   in one batch of B.
2. **A fixed batch shape per plan** (a lone unit padded to the plan's B rows): only bitwise if, at one shape, a row's
   result does not depend on the other rows' contents. Checked here: unit X rendered in two batches of the same
   shape with different batch-mates. Cost: a lone `fv render` does B images' work.

And the drift the promise has to state: X alone vs in a batch of B (mean / p99 / max in 8-bit levels, objective),
at 1 and 2 threads. One process, alternating the arms; name the CPU beside the numbers.

    python scripts/bench_batch_invariance.py --models demo,mobilenet_v2,inceptionv1 --size 128 --steps 16 -b 8
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from drift import drift  # noqa: E402
from fvcli.models import load_model  # noqa: E402
from fvcli.outputs import cpu_description  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.runner.batch import run_batch  # noqa: E402
from fvcli.units.unit import parse_units  # noqa: E402

MODELS = {  # name -> (recipe sets, units: the first is X, the rest are batch-mates)
    "demo": (["model.name=demo"], "block3:0-15"),
    "mobilenet_v2": (None, "features.14:0-15"),
    "inceptionv1": (["model.weights=random:0"], "mixed4a:0-15"),
}


def recipe_for(name: str, size: int, steps: int):
    sets, _units = MODELS[name]
    base = [f"render.size={size}", f"render.steps={steps}", "render.device=cpu", "render.thresholds=[0]"]
    return load_recipe("mobilenet_v2" if sets is None else None, [*(sets or []), *base])


def timed(model, rec, units) -> tuple[float, object]:
    t0 = time.perf_counter()
    res = run_batch(model, rec, units)
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="demo,mobilenet_v2,inceptionv1")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("-b", "--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"CPU: {cpu_description()}, torch {torch.__version__}, ATen {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; {args.size} px, {args.steps} steps, batch {args.batch}")
    rows = []
    for name in args.models.split(","):
        rec = recipe_for(name, args.size, args.steps)
        model = load_model(rec.model_options(), "cpu")
        units = parse_units(MODELS[name][1], model)
        b = args.batch
        x, mates, other_mates = units[0], units[1:b], units[b:2 * b - 1]
        t_batch = t_single = 0.0
        for _ in range(args.rounds):  # alternate the arms
            t, batch = timed(model, rec, [x, *mates])
            t_batch += t
            for u in [x, *mates]:
                t, res = timed(model, rec, [u])
                t_single += t
                if u == x:
                    alone = res
        t, other = timed(model, rec, [x, *other_mates])
        same_shape = torch.equal(batch.snapshots[-1].images[0], other.snapshots[-1].images[0])
        d2 = drift(alone.snapshots[-1].images[0], batch.snapshots[-1].images[0], alone.snapshots[-1].scores[0],
                   batch.snapshots[-1].scores[0])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        a1, b1 = run_batch(model, rec, [x]), run_batch(model, rec, [x, *mates])
        torch.set_num_threads(threads)
        d1 = drift(a1.snapshots[-1].images[0], b1.snapshots[-1].images[0], a1.snapshots[-1].scores[0],
                   b1.snapshots[-1].scores[0])
        rows.append((name, t_single / t_batch, same_shape, d1, d2))
        print(f"{name}: per-image batches cost {t_single / t_batch:.2f}x the batch of {b} "
              f"({t_batch / args.rounds / b / args.steps * 1e3:.1f} vs "
              f"{t_single / args.rounds / b / args.steps * 1e3:.1f} ms per image-step); same shape, other mates: "
              f"{'bitwise' if same_shape else 'NOT bitwise'}", flush=True)
    print("\n| model | per-image batches / one batch | same shape, other batch-mates | alone vs batch, 1 thread "
          "(mean / p99 / max levels, objective) | alone vs batch, 2 threads |")
    print("| --- | --- | --- | --- | --- |")
    for name, ratio, same, d1, d2 in rows:
        f = lambda d: (f"{d['mean_levels']:.2f} / {d['p99_levels']:.0f} / {d['max_levels']} / "  # noqa: E731
                       f"{d['score_rel']:.1e}")
        print(f"| {name} | {ratio:.2f}x | {'bitwise' if same else 'differs'} | {f(d1)} | {f(d2)} |")


if __name__ == "__main__":
    main()
