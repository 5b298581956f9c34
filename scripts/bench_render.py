#!/usr/bin/env python
"""Benchmark fv's render loop (and, with --vs-lucent, torch-lucent's) on the same units in the same run, on any
model fv can load.

    .venv/bin/python scripts/bench_render.py --layer mixed4a --units 8 --size 224 --steps 64
    .venv/bin/python scripts/bench_render.py --model torchvision:resnet50 --layer layer3 --vs-lucent
    .venv/bin/python scripts/bench_render.py --recipe mobilenet_v2 --layer classifier --vs-lucent
    make bench-lucent    # creates .venv-bench with torch-lucent, then runs this with --vs-lucent
    make bench-matrix    # scripts/bench_matrix.py: five models, fv fp32/bf16 vs lucent, a markdown table

For every tool it prints: image*steps per second, seconds per unit, peak memory, and achieved GFLOP/s -- FLOPs of
the executed forward and backward of one step, counted with torch.utils.flop_counter.FlopCounterMode (convolutions
and matmuls), times the steps, over the measured time -- as a fraction of the machine's throughput, measured by this
script in the same run, in the same process, just before the tool's render (a 2048^3 matmul and two representative
channels_last convolutions, forward + input gradient; the best of them is the denominator).

The machine is shared and noisy: each (tool, round) runs in its own fresh subprocess, tools alternate within a
round (the order flips each round), every figure is given per round, and the summary uses the fastest round of
each tool; the ratio vs lucent is also given per round (each fv round against the lucent round next to it). The
load average is printed before and after.

fv runs exactly what `fv sweep` runs per batch (the default recipe's loop: Fourier param, decorrelated colors,
sigmoid, Adam lr 0.05, with the article's transforms (as lucent's; the default's stronger suite costs the same one
affine warp per step), redirected ReLU for the first 16 steps where the model uses it),
on the model and weights given (`--model`/`--weights`, or a recipe's model with `--recipe`).
lucent runs `render_vis` on the same weights: for inceptionv1 its own InceptionV1 (random weights,
`pretrained=False`; any download attempt is refused and fails the run), for any other model the plain network as
its builder makes it (no fv rewrites, no channels_last) behind the model's own preprocessing, `preprocess=False`.
It uses the article's transforms written with lucent's own transform functions, its Fourier image, Adam lr 0.05,
and `fixed_image_size` = the render size so that its network input is as large as fv's. lucent renders
`--lucent-batch` units jointly (a sum of per-image channel objectives; 1 = one unit per `render_vis` call, its normal
use); its default is fv's batch size. A token layer (B, N, D) gets a lucent objective on the patch tokens.

A model or layer that cannot be loaded is reported as `unavailable: <reason>` (exit status 0), not a failure.

Worker mode (`--worker fv|lucent`) is internal: it prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from bench_common import (count_flops, cpu_name, load_avg, machine_gflops, model_options,  # noqa: E402
                          peak_rss_mb, rss_mb)
from bench_lucent import worker_lucent  # noqa: E402

REDIRECT_STEPS = 16  # fv: lucid's redirected-ReLU phase (fvcli.optvis.loop.REDIRECT_STEPS); slower steps
FULL_STEPS = 512  # the default recipe's step count, for the "seconds per unit at 512 steps" line


# ------------------------------------------------------------------------------------------------------------------
# fv


def worker_fv(args) -> dict:
    from dataclasses import replace

    from fvcli.models import load_model
    from fvcli.optvis.objectives import Channel, PerImage
    from fvcli.recipe import Recipe
    from fvcli.optvis.loop import render_batch
    from fvcli.optvis.transforms import ARTICLE

    from fvcli.models import resolve_device

    dev = resolve_device(args.device)
    if args.no_rewrites:  # A/B of fvcli/models/rewrites.py (BatchNorm folding, dropout removal)
        from fvcli.models import rewrites

        rewrites.apply_rewrites = lambda net: {}
    try:
        model = load_model(model_options(args), dev)
        model.layer(args.layer)  # FvError naming the valid layers when it is not in the catalog
        if model.catalog[args.layer].channels < args.units:
            raise ValueError(f"layer {args.layer} has {model.catalog[args.layer].channels} channels < {args.units}")
    except Exception as exc:  # noqa: BLE001 - reported, the matrix goes on
        return {"tool": "fv", "unavailable": f"{type(exc).__name__}: {exc}"}
    base_rss = rss_mb()
    settings = replace(Recipe().loop_settings(), steps=args.steps, size=args.size, thresholds=(),
                       precision=args.precision, transforms=ARTICLE)  # the transforms lucent gets too
    units = list(range(args.units))
    bs = min(args.batch_size, len(units))
    batches = [units[i : i + bs] for i in range(0, len(units), bs)]

    def objective(chunk):
        return PerImage(tuple(Channel(args.layer, c) for c in chunk))

    # FLOPs of one step after the redirect phase (the redirect changes no convolution): steps = 2 with the
    # redirect phase skipped is not available from outside, so count 2 steps + the final snapshot forward, and
    # 1 step + the snapshot, and take the difference.
    def run(n):
        for _ in render_batch(model, objective(batches[0]), batches[0], replace(settings, steps=n)):
            pass

    tot2, _ = count_flops(lambda: run(2))
    tot1, _ = count_flops(lambda: run(1))
    step_flops = tot2 - tot1
    # The model's own work, as ../shared/facts/performance.md tabulates it: 2x the truncated forward (forward +
    # input gradient, weights frozen), counted on a plain forward, without the LRN band matrix (fv computes LRN's
    # 9-channel window sums as a dense C x C 1x1 convolution: executed FLOPs, but not the network's arithmetic).
    from fvcli.models import Capture

    x = torch.rand(bs, 3, args.size, args.size, device=dev).contiguous(memory_format=torch.channels_last)
    with Capture(model, objective(batches[0]).layers) as cap, torch.no_grad():
        fwd, mods = count_flops(lambda: cap(model.preprocess.apply(x)))
    lrn_fwd = sum(v for k, v in mods.items() if k.rsplit(".", 1)[-1].startswith("localresponsenorm"))
    model_flops = 2 * (fwd - lrn_fwd)
    machine = machine_gflops(dev, bf16=args.precision == "bf16")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    marks: list[float] = []
    seconds = 0.0
    redirect_s = 0.0
    for chunk in batches:
        marks.clear()
        t0 = time.perf_counter()
        on_step = (lambda s: marks.append(time.perf_counter())) if dev.type == "cpu" else None
        for _ in render_batch(model, objective(chunk), chunk, settings, on_step=on_step):
            pass
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        if len(marks) > REDIRECT_STEPS:
            redirect_s += marks[REDIRECT_STEPS - 1] - t0
    out = {
        "tool": "fv", "device": str(dev), "precision": args.precision, "batch_size": bs, "seconds": seconds, "units": len(units), "steps": args.steps,
        "flops_per_image_step": step_flops / bs, "model_flops_per_image_step": model_flops / bs,
        "machine": machine, "base_rss_mb": base_rss, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(),
    }
    if dev.type == "cpu" and args.steps > REDIRECT_STEPS:
        out["redirect_seconds"] = redirect_s
    if dev.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def profile(args) -> None:
    """Where fv's step goes: torch.profiler over 4 steps after the redirect phase, top ops by self CPU time."""
    from dataclasses import replace

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    from fvcli.models import load_model, resolve_device
    from fvcli.optvis.objectives import Channel, PerImage
    from fvcli.recipe import Recipe
    from fvcli.optvis.loop import render_batch
    from fvcli.optvis.transforms import ARTICLE

    model = load_model(model_options(args), resolve_device(args.device))
    bs = min(args.batch_size, args.units)
    settings = replace(Recipe().loop_settings(), steps=REDIRECT_STEPS + 4, size=args.size, thresholds=(),
                       precision=args.precision.split(",")[0], transforms=ARTICLE)
    prof = tprofile(activities=[ProfilerActivity.CPU])

    def on_step(s: int) -> None:
        if s == REDIRECT_STEPS:
            prof.__enter__()

    for _ in render_batch(model, PerImage(tuple(Channel(args.layer, c) for c in range(bs))), list(range(bs)),
                          settings, on_step=on_step):
        pass
    prof.__exit__(None, None, None)
    print(f"{args.recipe or args.model} {args.layer}, batch {bs}, {args.size} px, 4 steps after the redirect phase")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


# ------------------------------------------------------------------------------------------------------------------
# Estimate for a whole-network sweep (counted FLOPs, not a measurement)

# Assumed sustained throughput of one modern GPU on this workload (batch >= 128, small convolutions): an assumption,
# stated with the estimate. ~40 TFLOP/s is a third of an A100's dense TF32 peak (156) or ~8 % of an H100's (495);
# ~150 TFLOP/s is half of an A100's dense bf16 peak (312) or ~15 % of an H100's (989).
GPU_ASSUMED_TFLOPS = {"fp32/TF32": 40.0, "bf16": 150.0}


def sweep_estimate(args) -> dict:
    """Counted FLOPs of one optimization step per image (executed: forward + backward, as fv runs it) for each main
    layer of InceptionV1, times its channels and the steps: the arithmetic of rendering every channel."""
    from dataclasses import replace

    from fvcli.models import ModelOptions, load_model
    from fvcli.optvis.objectives import Channel, PerImage
    from fvcli.recipe import Recipe
    from fvcli.optvis.loop import render_batch

    model = load_model(ModelOptions("inceptionv1", args.weights), "cpu")
    settings = replace(Recipe().loop_settings(), size=args.size, thresholds=())
    rows = []
    for layer in model.main_layers:
        def run(n, layer=layer):
            for _ in render_batch(model, PerImage((Channel(layer, 0),)), [0], replace(settings, steps=n)):
                pass

        per_step = count_flops(lambda: run(2))[0] - count_flops(lambda: run(1))[0]
        ch = model.catalog[layer].channels
        rows.append({"layer": layer, "channels": ch, "gflop_per_image_step": per_step / 1e9,
                     "pflop": per_step * ch * args.sweep_steps / 1e15})
    out = {"size": args.size, "steps": args.sweep_steps, "layers": rows, "gpu_assumed_tflops": GPU_ASSUMED_TFLOPS}
    for name, first in (("mixed3a..mixed5b", "mixed3a"), ("conv2d0..mixed5b", "conv2d0")):
        sel = rows[[r["layer"] for r in rows].index(first):]
        pf = sum(r["pflop"] for r in sel)
        out[name] = {"channels": sum(r["channels"] for r in sel), "pflop": pf,
                     "gpu_minutes": {k: pf * 1e15 / (v * 1e12) / 60 for k, v in GPU_ASSUMED_TFLOPS.items()}}
    return out


def print_estimate(e: dict) -> None:
    print(f"ESTIMATE from counted FLOPs (not measured): every channel, {e['size']} px, {e['steps']} steps\n")
    print(f"{'layer':<10}{'channels':>10}{'GFLOP/img*step':>16}{'PFLOP':>10}")
    for r in e["layers"]:
        print(f"{r['layer']:<10}{r['channels']:>10}{r['gflop_per_image_step']:>16.3f}{r['pflop']:>10.2f}")
    for name in ("mixed3a..mixed5b", "conv2d0..mixed5b"):
        t = e[name]
        gpu = ", ".join(f"{m:.1f} min at {k} {e['gpu_assumed_tflops'][k]:.0f} TFLOP/s" for k, m in t["gpu_minutes"].items())
        print(f"{name}: {t['channels']} channels, {t['pflop']:.1f} PFLOP -> one GPU (assumed throughput): {gpu}")


# ------------------------------------------------------------------------------------------------------------------
# Driver


WORKER_ARGS = ("model", "weights", "recipe", "no_rewrites", "layer", "units", "size", "steps", "batch_size", "device", "threads")


def spawn(tool: str, args, python: str, extra: dict) -> dict:
    opts = {k: v for k, v in vars(args).items() if k in WORKER_ARGS and v is not None} | extra
    cmd = [python, os.path.abspath(__file__), "--worker", tool] + [
        f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in opts.items() if v is not False]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"bench_render: the {tool} worker failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def derived(r: dict) -> dict:
    """Per-run figures from one worker result."""
    n_img_steps = r["units"] * r["steps"]
    conv_key = "conv_bf16" if r.get("precision") == "bf16" else "conv"
    d = {
        "image_steps_per_s": n_img_steps / r["seconds"],
        "seconds_per_unit": r["seconds"] / r["units"],
        "gflop_per_image_step": r["flops_per_image_step"] / 1e9,
        "achieved_gflops": r["flops_per_image_step"] * n_img_steps / r["seconds"] / 1e9,
        "machine_conv_gflops": r["machine"][conv_key],
        "machine_matmul_gflops": r["machine"]["matmul"],
    }
    d["fraction_of_conv"] = d["achieved_gflops"] / d["machine_conv_gflops"]
    if "redirect_seconds" in r:
        # The redirect phase is a fixed 16 steps per render: extrapolate the rest linearly.
        per_batch_rest = (r["seconds"] - r["redirect_seconds"]) / (r["steps"] - REDIRECT_STEPS)
        d["seconds_per_unit_at_512"] = (r["redirect_seconds"] + per_batch_rest * (FULL_STEPS - REDIRECT_STEPS)) \
            / r["units"]
        d["steady_image_steps_per_s"] = r["units"] * (r["steps"] - REDIRECT_STEPS) / (r["seconds"] - r["redirect_seconds"])
    else:
        d["seconds_per_unit_at_512"] = d["seconds_per_unit"] * FULL_STEPS / r["steps"]
    return d


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="inceptionv1")
    ap.add_argument("--weights", default="random:0")
    ap.add_argument("--recipe", "-r", default=None, help="take the model (name, weights, preprocessing) from a recipe")
    ap.add_argument("--layer", default="mixed4a")
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="fv images per batch (sweep mode)")
    ap.add_argument("--no-rewrites", action="store_true",
                    help="fv without its load-time rewrites (BatchNorm folding, dropout removal)")
    ap.add_argument("--ab-rewrites", action="store_true",
                    help="add an fv fp32 column without the load-time rewrites (A/B of fvcli/models/rewrites.py)")
    ap.add_argument("--precision", default="fp32",
                    help="fv precision(s), comma-separated: fp32 (the default recipe), bf16 (opt-in autocast)")
    ap.add_argument("--lucent-batch", default=None,
                    help="lucent images per render_vis call, comma-separated for several (default: --batch-size)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds over all configurations")
    ap.add_argument("--vs-lucent", action="store_true")
    ap.add_argument("--lucent-python", default=None,
                    help="python with torch-lucent (default: this one if it imports lucent, else .venv-bench)")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of tables")
    ap.add_argument("--sweep-estimate", action="store_true",
                    help="only print the FLOP-count estimate for every channel of InceptionV1 (mixed3a..mixed5b)")
    ap.add_argument("--sweep-steps", type=int, default=FULL_STEPS, help="steps per unit for --sweep-estimate")
    ap.add_argument("--profile", action="store_true",
                    help="only print torch.profiler's top ops (self CPU time) of fv's steps 17-20 on one batch")
    ap.add_argument("--worker", choices=["fv", "lucent"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker and args.lucent_batch is not None:
        args.lucent_batch = int(args.lucent_batch)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        res = worker_fv(args) if args.worker == "fv" else worker_lucent(args)
        print(json.dumps(res))
        return
    if args.profile:
        profile(args)
        return
    if args.sweep_estimate:
        e = sweep_estimate(args)
        print(json.dumps(e) if args.json else "", end="\n" if args.json else "")
        if not args.json:
            print_estimate(e)
        return
    lucent_py = (args.lucent_python or _find_lucent_python()) if args.vs_lucent else None
    configs = [(f"fv {p} b{args.batch_size}", "fv", {"precision": p}) for p in args.precision.split(",")]
    if args.ab_rewrites:
        configs.append((f"fv fp32 b{args.batch_size} plain", "fv", {"precision": "fp32", "no_rewrites": True}))
    if args.vs_lucent:
        configs += [(f"lucent b{b}", "lucent", {"lucent_batch": b})
                    for b in _ints(args.lucent_batch or str(args.batch_size))]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    load_before = load_avg()
    t_start = time.perf_counter()
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for name, tool, extra in order:
            res = spawn(tool, args, sys.executable if tool == "fv" else lucent_py, extra)
            if "unavailable" in res:
                print(f"{args.recipe or args.model} {args.layer}: unavailable: {res['unavailable']}")
                return
            res["load"] = load_avg()
            res["round"] = r
            runs[name].append(res)
            print(f"# round {r} {name}: {res['seconds']:.1f} s, load {res['load']}", file=sys.stderr, flush=True)
    summary = summarize(args, runs, load_before, load_avg(), time.perf_counter() - t_start)
    if args.json:
        print(json.dumps(summary))
    else:
        print_tables(summary)


def _find_lucent_python() -> str:
    try:
        import lucent  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    py = os.path.join(ROOT, ".venv-bench", "bin", "python")
    if not os.path.exists(py):
        raise SystemExit("torch-lucent is not installed: `make bench-lucent` creates .venv-bench with it")
    return py


def summarize(args, runs, load_before, load_after, wall) -> dict:
    out = {
        "setup": {"model": args.model, "weights": args.weights, "layer": args.layer, "size": args.size,
                  "steps": args.steps, "units": args.units, "device": args.device, "rounds": args.rounds,
                  "torch": torch.__version__, "cpu": cpu_name(), "python": platform.python_version(),
                  "threads": next(iter(runs.values()))[0]["threads"], "load_before": load_before,
                  "load_after": load_after, "wall_seconds": round(wall, 1)},
        "columns": list(runs),
    }
    for tool, rs in runs.items():
        if not rs:
            continue
        ds = [derived(r) for r in rs]
        best = min(range(len(rs)), key=lambda i: rs[i]["seconds"])
        b, d = rs[best], ds[best]
        t = {"batch_size": b["batch_size"], "best_round": best, "precision": b.get("precision", "fp32"),
             "seconds_per_unit": d["seconds_per_unit"], "seconds_per_unit_rounds": [x["seconds_per_unit"] for x in ds],
             "image_steps_per_s": d["image_steps_per_s"], "seconds_per_unit_at_512": d["seconds_per_unit_at_512"],
             "gflop_per_image_step": d["gflop_per_image_step"], "achieved_gflops": d["achieved_gflops"],
             "machine_conv_gflops": d["machine_conv_gflops"], "machine_matmul_gflops": d["machine_matmul_gflops"],
             "machine_conv3x3_gflops": b["machine"]["conv3x3"], "machine_conv1x1_gflops": b["machine"]["conv1x1"],
             "machine_conv_bf16_gflops": b["machine"].get("conv_bf16"),
             "fraction_of_conv": d["fraction_of_conv"], "fraction_of_conv_rounds": [x["fraction_of_conv"] for x in ds],
             "peak_rss_mb": b["peak_rss_mb"], "base_rss_mb": b["base_rss_mb"],
             "load_rounds": [r["load"][0] for r in rs]}
        if "steady_image_steps_per_s" in d:
            t["steady_image_steps_per_s"] = d["steady_image_steps_per_s"]
            t["redirect_phase_seconds_per_unit"] = b["redirect_seconds"] / b["units"]
        if "model_flops_per_image_step" in b:
            net = b["model_flops_per_image_step"] / 1e9
            t["model_gflop_per_image_step"] = net
            t["model_achieved_gflops"] = d["achieved_gflops"] * net / d["gflop_per_image_step"]
            t["model_fraction_of_conv"] = d["fraction_of_conv"] * net / d["gflop_per_image_step"]
        if "peak_cuda_mb" in b:
            t["peak_cuda_mb"] = b["peak_cuda_mb"]
        out[tool] = t
    # lucent seconds per unit / fv seconds per unit, for every (fv, lucent) pair: best rounds, and round by round
    # (each round's runs are next to each other in time).
    out["ratios"] = []
    for f in (c for c in runs if c.startswith("fv")):
        for lu in (c for c in runs if c.startswith("lucent")):
            out["ratios"].append({
                "fv": f, "lucent": lu,
                "best_rounds": out[lu]["seconds_per_unit"] / out[f]["seconds_per_unit"],
                "per_round": [b["seconds"] / a["seconds"] for a, b in zip(runs[f], runs[lu])],
                "at_512_steps": out[lu]["seconds_per_unit_at_512"] / out[f]["seconds_per_unit_at_512"],
            })
    return out


def print_tables(s: dict) -> None:
    st = s["setup"]
    print(f"{st['model']} {st['weights']} {st['layer']} {st['size']}px {st['steps']} steps, {st['units']} units, "
          f"{st['device']}, {st['threads']} threads, {st['rounds']} round(s); {st['cpu']}; torch {st['torch']}")
    print(f"load average before {st['load_before']}, after {st['load_after']}; wall {st['wall_seconds']} s")
    rows = [
        ("batch size", "batch_size", "{}"),
        ("precision", "precision", "{}"),
        ("seconds per unit (best round)", "seconds_per_unit", "{:.2f}"),
        ("seconds per unit, each round", "seconds_per_unit_rounds", "list"),
        ("image*steps per second", "image_steps_per_s", "{:.2f}"),
        ("  after the 16 redirect steps", "steady_image_steps_per_s", "{:.2f}"),
        ("seconds per unit at 512 steps (extrapolated)", "seconds_per_unit_at_512", "{:.1f}"),
        ("GFLOP per image*step (counted, executed)", "gflop_per_image_step", "{:.3f}"),
        ("  the model's (2x fwd, no LRN band matrix)", "model_gflop_per_image_step", "{:.3f}"),
        ("achieved GFLOP/s (executed)", "achieved_gflops", "{:.1f}"),
        ("  the model's", "model_achieved_gflops", "{:.1f}"),
        ("machine conv GFLOP/s (3x3, 1x1; same process)", ("machine_conv3x3_gflops", "machine_conv1x1_gflops"), "pair"),
        ("machine bf16 conv GFLOP/s (3x3)", "machine_conv_bf16_gflops", "{:.0f}"),
        ("fraction denominator (conv GFLOP/s)", "machine_conv_gflops", "{:.0f}"),
        ("machine matmul GFLOP/s", "machine_matmul_gflops", "{:.1f}"),
        ("fraction of measured conv throughput", "fraction_of_conv", "{:.1%}"),
        ("  each round", "fraction_of_conv_rounds", "pct"),
        ("  the model's FLOPs only", "model_fraction_of_conv", "{:.1%}"),
        ("peak RSS MB (after model load)", ("peak_rss_mb", "base_rss_mb"), "rss"),
        ("peak CUDA MB", "peak_cuda_mb", "{:.0f}"),
        ("1-min load at each round's end", "load_rounds", "list"),
    ]
    tools = s["columns"]
    print(f"\n{'':<48}" + "".join(f"{t:>16}" for t in tools))
    for label, key, fmt in rows:
        cells = []
        for t in tools:
            d = s[t]
            if isinstance(key, tuple):
                if key[0] not in d:
                    cells.append("-")
                elif fmt == "pair":
                    cells.append(f"{d[key[0]]:.0f}, {d[key[1]]:.0f}")
                else:
                    cells.append(f"{d[key[0]]:.0f} ({d[key[1]]:.0f})")
            elif d.get(key) is None:
                cells.append("-")
            elif fmt == "list":
                cells.append(" ".join(f"{v:.2f}" for v in d[key]))
            elif fmt == "pct":
                cells.append(" ".join(f"{v:.0%}" for v in d[key]))
            else:
                cells.append(fmt.format(d[key]))
        if any(c != "-" for c in cells):
            print(f"{label:<48}" + "".join(f"{c:>16}" for c in cells))
    if s["ratios"]:
        print()
    for r in s["ratios"]:
        print(f"{r['lucent']} / {r['fv']} seconds per unit: {r['best_rounds']:.2f}x (best rounds); per round "
              f"{' '.join(f'{v:.2f}' for v in r['per_round'])}; extrapolated to 512 steps {r['at_512_steps']:.2f}x")


if __name__ == "__main__":
    main()
