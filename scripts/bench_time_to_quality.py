#!/usr/bin/env python
"""Time to quality (issue #20): how many wall seconds per unit until a picture is as good as lucent's at 512 steps?

    make bench-ttq                                    # every model of the matrix (bench venv: lucent + matplotlib)
    .venv-bench/bin/python scripts/bench_time_to_quality.py --only mobilenet_v2 --classes 32 --size 128
    .venv-bench/bin/python scripts/bench_time_to_quality.py --only resnet50,convnext_tiny --units 4 --size 128
    .venv-bench/bin/python scripts/bench_time_to_quality.py --only mobilenet_v2 --score-only   # tables + plots only

Models: scripts/bench_matrix.py's five (InceptionV1 `mixed4a` with random weights, the real MobileNetV2's class
logits, ResNet-50 `layer3`, ConvNeXt-T `features.5`, ViT-B/16 `encoder_layer_6`; the torchvision ones with random
weights: nothing downloads here). Units: the MobileNetV2's logits of the first `--classes` BENCH classes
(scripts/bench_imagenet_quality.py's rule, every 15th index from 1); on the other models channels 0..`--units`-1.

Rows, every one on the same units, `--size`, `--steps` (the article's own 2560 steps are not used: every row stops at
`--steps`), seed 0, `--batch` images per batch for both tools:
  fv default    the model's default recipe (configs/default.yaml, or configs/mobilenet_v2.yaml for the MobileNetV2)
  fv article    the same model with configs/article.yaml's param, transforms, regularizers and render settings
  fv converge   fv default + `stop.converge=true` (fvcli/runner/stream.py: a unit whose objective stopped improving
                leaves its batch, the next unit of the chunk takes its slot; its record says at which step)
  lucent        torch-lucent's `render_vis` defaults (FFT + decorrelation, its standard transforms, Adam 0.05),
                the units of a batch rendered jointly (a sum of per-image objectives: lucent's batch use; faster per
                unit than one call per unit, so this favours lucent). Two facts of the models, not tuning (as in
                bench_imagenet_quality.py / bench_lucent.py): the network is the plain one as its builder makes it
                behind the model's own preprocessing (the MobileNetV2's [0,1] -> [-1,1]; fv's random:0 weights for
                InceptionV1 too, so both tools render the same network), `preprocess=False`, and
                `fixed_image_size` = the render size.

Processes: the units are cut into chunks of `--chunk` (default: the batch); one round per chunk; in a round every row
runs in its own fresh process, the order of the rows flipping every round. Renders are cached under
runs/ttq/MODEL-SIZEpx-STEPS/ROW/ (PNG per unit and snapshot, chunk-KK.json with the clock readings): a rerun only
runs the missing (row, chunk) processes.

Seconds per unit at a snapshot step s (every row): the parent reads the wall clock (time.time()) just before it
spawns the worker; the worker reads it when its first batch starts (so interpreter start, imports and model
loading are counted) and after every optimization step. For one chunk, time to s = (first batch start - spawn) +
sum over the chunk's batches of (clock after step s - batch start); seconds per unit = sum over chunks / units.
With one batch per chunk (the default) this is simply "wall seconds from spawn to the s-th step / units". The
converge row has no per-step clock of its own per unit (units leave at different steps), so it is one point: the
chunk's wall seconds from spawn until its last unit finished / units, at its final pictures.

Quality of a snapshot (every snapshot saved as an 8-bit PNG and read back, what a user sees):
  objective   on every model, the unit's own fv objective (fvcli.units.unit.parse_units -> unit.objective(model)) on
              the PNG, untransformed, through the model's preprocessing (fvcli.models.Capture); the mean over units;
              the same number for lucent's PNGs
  judge top-1 on the MobileNetV2, the fraction of classes the independent judge (../shared/judges, MobileNetV1
              0.5/160; evaluated with, never optimized against) ranks first, with a 95 % Wilson interval

Summary per model and quality measure: lucent's level L = its quality at `--steps`; lucent's seconds = the first
time its own curve reaches L; fv's seconds = the first time fv default's curve reaches L; both by linear
interpolation in (seconds per unit, quality) between consecutive snapshots. When fv's first snapshot is already at
or above L its time is that snapshot's, and the ratio is a lower bound (printed `>=`); fv never reaching L is
printed as such. Time-to-quality ratio = lucent's seconds / fv's seconds. "fv above at every budget": for every time
budget T from the first snapshot on until lucent's last, the last fv default snapshot taken by T is at least as
good (>=) as lucent's last snapshot taken by T (a row with no snapshot yet by T has nothing; fv keeps its final
picture after it finished).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import bench_imagenet_quality as biq  # noqa: E402  (BENCH rule, judge, Wilson)
from bench_matrix import MATRIX  # noqa: E402  (the five models)
from ttq_levers import LEVERS  # noqa: E402  (the early-quality levers)
from ttq_report import plot_model, print_model, summary_table  # noqa: E402  (the analysis half)
from ttq_workers import fv_recipe, label_of, png, slug, spec_of, worker_fv, worker_lucent  # noqa: E402

ROWS = ("fv default", "fv article", "fv converge", "lucent", "lucent batched")
LUCENT_ROWS = ("lucent", "lucent batched")
IMG_DIR = ROOT / "docs" / "img"


def all_rows() -> tuple[str, ...]:
    return ROWS + tuple(f"fv {name}" for name in LEVERS)


def interleaved(classes: list[int], ways: int = 10) -> list[int]:
    """The classes in the order they are rendered: every 10th first, so that any prefix (a run cut short by time)
    spans the whole index range (ImageNet's first 400 classes are animals) instead of its first part."""
    return [c for k in range(ways) for c in classes[k::ways]]


def unit_strings(key: str, args) -> list[str]:
    if key == "mobilenet_v2":
        return [f"logit:{c}" for c in interleaved(list(biq.CLASS_RULES[args.set]))[: args.classes]]
    return [f"{spec_of(key)['layer']}:{c}" for c in range(args.units)]


# ------------------------------------------------------------------------------------------------------------------
# fv's recipes


# ------------------------------------------------------------------------------------------------------------------
# the parent: rounds of fresh processes, then scoring


def model_dir(key: str, args) -> Path:
    where = "" if args.device == "cpu" else f"-{args.device.split(':')[0]}"  # GPU renders cached apart
    cls = f"-{args.set}" if key == "mobilenet_v2" else ""  # chunks are numbered within a class set
    return Path(args.out or ROOT / "runs" / "ttq") / f"{key}{cls}-{args.size}px-{args.steps}{where}"


def clock_path(out: Path, row: str, k: int) -> Path:
    return out / slug(row) / f"chunk-{k:02d}.json"


def cached_hash(cp: Path, want: str | None) -> None:
    """A cached fv chunk is reused only if it was rendered with the row's recipe as it is now (a default or a lever
    that changed since would otherwise pass old pictures off as new): its recipe hash must match."""
    if want is None:
        return
    got = json.loads(cp.read_text()).get("hash")
    if got != want:
        raise SystemExit(f"bench_time_to_quality: {cp} was rendered with recipe {got or '(no hash recorded)'}, the row "
                         f"is now {want} (its recipe changed since): move {cp.parent} away to render it again, or "
                         f"name the old recipe as a lever of its own (scripts/ttq_levers.py, e.g. prev-default)")


def run_model(key: str, args, lucent_path: str) -> None:
    out = model_dir(key, args)
    names = unit_strings(key, args)
    chunks = [names[i:i + args.chunk] for i in range(0, len(names), args.chunk)]
    rows = [r for r in all_rows() if r in args.rows]
    hashes = {r: fv_recipe(key, r, args.size, args.steps, args.thresholds, args.batch).hash()
              for r in rows if r.startswith("fv ")}
    for k, chunk in enumerate(chunks):
        for row in (rows if k % 2 == 0 else rows[::-1]):
            cp = clock_path(out, row, k)
            if cp.is_file():
                cached_hash(cp, hashes.get(row))
                continue
            cp.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, __file__, "--worker", row, "--model-key", key, "--worker-units", ",".join(chunk),
                   "--out", str(args.out or ROOT / "runs" / "ttq"), "--size", str(args.size), "--steps",
                   str(args.steps), "--thresholds", ",".join(map(str, args.thresholds)), "--batch", str(args.batch),
                   "--threads", str(args.threads), "--lucent-path", lucent_path, "--device", args.device,
                   "--set", args.set]
            t0 = time.time()
            path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
            p = subprocess.run(cmd + ["--t0", repr(t0)], env={**os.environ, "PYTHONPATH": path},
                               capture_output=True, text=True)
            if p.returncode != 0:
                sys.stderr.write(p.stderr[-3000:])
                raise SystemExit(f"bench_time_to_quality: {key} {row} chunk {k} failed")
            clock = json.loads(p.stdout.strip().splitlines()[-1])
            clock.update(units=chunk, load=[round(x, 2) for x in os.getloadavg()])
            cp.write_text(json.dumps(clock))
            print(f"# {key} chunk {k} ({len(chunk)} units) {row}: {clock['end'] - t0:.0f} s, load "
                  f"{clock['load']}", file=sys.stderr, flush=True)


def timings(out: Path, row: str, steps: list[int]) -> tuple[list[str], dict[int, float], float | None, dict]:
    """(units timed, {step: seconds per unit}, converge row's seconds per unit, stopped) over the cached chunks."""
    units: list[str] = []
    tot = {s: 0.0 for s in steps}
    end_tot, stopped = 0.0, {}
    for cp in sorted((out / slug(row)).glob("chunk-*.json")):
        c = json.loads(cp.read_text())
        units += c["units"]
        end_tot += c["end"] - c["spawn"]
        stopped.update(c.get("stopped") or {})
        for s in steps:
            tot[s] += (c["ready"] - c["spawn"]) + sum(b["at"][str(s)] - b["begin"] for b in c["batches"])
    n = max(1, len(units))
    per = {s: v / n for s, v in tot.items()} if units and row != "fv converge" else {}
    return units, per, (end_tot / n if units else None), stopped


def score_model(key: str, args) -> dict:
    import numpy as np

    from fvcli.models import Capture
    from fvcli.outputs import read_png
    from fvcli.units.unit import parse_units

    out = model_dir(key, args)
    steps = sorted(set(args.thresholds) | {args.steps})
    rows = [r for r in all_rows() if r in args.rows]
    for r in rows:  # the pictures scored are those of the row's recipe as it is now
        if r.startswith("fv "):
            want = fv_recipe(key, r, args.size, args.steps, args.thresholds, args.batch).hash()
            for cp in sorted((out / slug(r)).glob("chunk-*.json")):
                cached_hash(cp, want)
    tim = {r: timings(out, r, steps) for r in rows}
    common = [u for u in unit_strings(key, args) if all(u in tim[r][0] for r in rows)]
    res: dict = {"model": key, "label": label_of(key), "units": common, "steps": steps, "rows": {}, "size": args.size,
                 "set": args.set if key == "mobilenet_v2" else None}
    if not common:
        return res
    rec = fv_recipe(key, "fv default", args.size, args.steps, args.thresholds, args.batch)
    from fvcli.models import load_model

    model = load_model(rec.model_options(), "cpu")
    units = [u for s in common for u in parse_units(s, model)]
    objs = [u.objective(model) for u in units]
    judge = None
    if key == "mobilenet_v2":
        sys.path.insert(0, str(biq.JUDGE_DIR))
        from judge import load_judge

        judge = load_judge(str(biq.JUDGE))
    for row in rows:
        r: dict = {"seconds": tim[row][1], "converge_seconds": tim[row][2], "objective": {}, "top1": {}}
        if row == "fv converge":
            st = tim[row][3]
            r["stop_steps"] = [st[u]["step"] for u in common if u in st]
        for s in steps:
            x = torch.stack([torch.from_numpy(read_png(png(out, row, u, s)).copy()).permute(2, 0, 1).float() / 255
                             for u in common])
            vals = []
            with torch.no_grad():
                for i in range(0, len(units), 16):
                    xb = x[i:i + 16]
                    ob = objs[i:i + 16]
                    layers = sorted({ly for o in ob for ly in o.layers})
                    with Capture(model, layers) as cap:
                        acts = cap(model.preprocess.apply(xb))
                    # each unit's objective on its own image (acts sliced to that image)
                    vals += [float(o({n: v[j:j + 1] for n, v in acts.items()}, xb[j:j + 1])[0])
                             for j, o in enumerate(ob)]
                r["objective"][s] = float(np.mean(vals))
                if judge is not None:
                    logits = torch.cat([judge(x[i:i + 32]) for i in range(0, len(x), 32)])
                    target = torch.tensor([u.channel for u in units])
                    k1 = int((logits.argmax(1) == target).sum())
                    r["top1"][s] = {"p": k1 / len(units), "k": k1, "ci": biq.wilson(k1, len(units))}
        res["rows"][row] = r
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help=f"comma list of: {', '.join(m[0] for m in MATRIX)}")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma list of rows (default: all four)")
    ap.add_argument("--units", type=int, default=8, help="channels per model (not the MobileNetV2)")
    ap.add_argument("--set", default="bench200", help=f"the MobileNetV2's class set: {', '.join(biq.CLASS_RULES)}")
    ap.add_argument("--classes", type=int, default=None, help="only the first N classes of the set (interleaved)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--thresholds", default="8,16,24,32,48,64,96,128,192,256,384", help="snapshot steps below --steps")
    ap.add_argument("--batch", type=int, default=16, help="images per batch, both tools")
    ap.add_argument("--chunk", type=int, default=None, help="units per process (default: --batch)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: both tools render there (scoring is on the CPU)")
    ap.add_argument("--out", default=None, help="render cache (default runs/ttq)")
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-key", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-units", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--lucent-path", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.thresholds = sorted({int(t) for t in args.thresholds.split(",") if t.strip() and int(t) < args.steps})
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    args.chunk = args.chunk or args.batch
    if args.worker:
        w = SimpleNamespace(row=args.worker, model_key=args.model_key, units=args.worker_units,
                            out=model_dir(args.model_key, args), size=args.size, steps=args.steps,
                            thresholds=args.thresholds, batch=args.batch, threads=args.threads,
                            lucent_path=args.lucent_path, t0=args.t0, device=args.device)
        clock = worker_lucent(w) if args.worker in LUCENT_ROWS else worker_fv(w)
        print(json.dumps(clock))
        return
    torch.set_num_threads(args.threads)
    keys = args.only.split(",") if args.only else [m[0] for m in MATRIX]
    for k in keys:
        spec_of(k)
    if "mobilenet_v2" in keys and not (biq.MODEL_DIR.is_dir() and biq.JUDGE.is_file()):
        print("# mobilenet_v2 skipped: ../shared (weights, judge) not found", file=sys.stderr)
        keys.remove("mobilenet_v2")
    if set(LUCENT_ROWS) & set(args.rows):
        try:
            import lucent  # noqa: F401
        except ImportError:
            sys.exit("bench_time_to_quality: torch-lucent is not importable: run it with the bench venv "
                     "(`make bench-ttq` creates .venv-bench)")
    from bench_common import cpu_name

    results = []
    t_start = time.time()
    for key in keys:
        from fvcli.models import load_model

        rec = fv_recipe(key, "fv default", args.size, args.steps, args.thresholds, args.batch)
        if not args.score_only:
            model = load_model(rec.model_options(), "cpu")
            from fvcli.units.unit import parse_units

            u0 = parse_units(unit_strings(key, args)[0], model)[0]
            lucent_path = model.layer(u0.layer).path
            del model
            run_model(key, args, lucent_path)
        res = score_model(key, args)
        results.append(res)
        if not res["units"]:
            print(f"# {key}: nothing rendered yet", file=sys.stderr)
            continue
        for line in print_model(res, args):
            print(line)
        if not args.no_plot:
            p = plot_model(res, args, IMG_DIR)
            if p:
                print(f"\n![{key}]({os.path.relpath(p, ROOT / 'docs' / 'reports')})")
    results = [r for r in results if r["units"]]
    print(f"\n## Time to quality: {args.size} px, {args.steps} steps, batch {args.batch}, {args.threads} thread(s) per "
          f"process; {cpu_name()}; 1-min load {os.getloadavg()[0]:.2f}; {(time.time() - t_start) / 60:.1f} min\n")
    for line in summary_table(results, args):
        print(line)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
