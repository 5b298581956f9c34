#!/usr/bin/env python
"""fv's CUDA paths measured on the GPU they are meant for (issue #28), one process, one JSON + one markdown file.

    python scripts/gpu_bench.py --device cuda --out runs/gpu-bench     # scripts/gpu_check.sh runs this
    python scripts/gpu_bench.py --device cpu --out /tmp/gb             # toy sizes: proves the script, no figures

Why: each CUDA path (bf16 / fp16 autocast, channels_last, TF32, torch.compile, the batch size) is to be kept only
where it wins on the GPU, and GPU time comes in minutes, so one script measures them all side by side in one process
on the same model, units and steps, and says which won. The render loop is fv's own (fvcli.optvis.loop.render_batch,
what `fv sweep` runs per batch) on InceptionV1 `mixed4a` with random weights at 224 px, the default recipe's loop.

Sections:
  scaling   image*steps per second and peak CUDA memory against the batch size (doubling until out of memory, the
            budget, or a doubling that gains < 3 %); the best one is the batch the paths are compared at
  paths     at that batch, from the baseline (fp32, channels_last, TF32 on -- what load_model sets on CUDA): bf16,
            fp16, channels_last off, TF32 off, torch.compile (its compile seconds apart from its steady steps)
  cpu_vs_gpu  the same unit with the same seed rendered on the CPU and on the GPU: the unit's objective on each 8-bit
            picture (both scored on the CPU), their relative difference against the stated tolerance, and the
            correlation of the two pictures' pixels
Timing: `--warmup` untimed steps (on CUDA 18: the redirected-ReLU phase, cudnn's autotuning and torch.compile's
compile and recompile at step 16 are not timed, but reported as `first_step_seconds` / `warmup_seconds`), then `--steps` steps between two torch.cuda.synchronize() calls (the loop itself
never synchronizes per step). On the CPU (`--device cpu`) the demo model at 32 px stands in, compile and the
CPU-vs-GPU comparison are skipped, and the figures mean nothing but that the script runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fvcli.models import load_model  # noqa: E402
from fvcli.models import ModelOptions  # noqa: E402
from fvcli.optvis.loop import render_batch  # noqa: E402
from fvcli.optvis.objectives import Channel, PerImage  # noqa: E402
from fvcli.outputs import to_uint8  # noqa: E402
from fvcli.recipe.files import load_recipe  # noqa: E402
from fvcli.runner.batch import is_out_of_memory  # noqa: E402

CPU_GPU_TOLERANCE = 0.10  # relative difference of the unit's objective on the CPU's and the GPU's 8-bit pictures
GAIN = 0.03  # a doubling of the batch must gain this much throughput to go on


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def objective(model, layer: str, batch: int) -> PerImage:
    channels = model.layer(layer).channels or 1
    return PerImage(tuple(Channel(layer, i % channels) for i in range(batch)))


def timed(model, layer: str, settings, batch: int, warmup: int, steps: int) -> dict:
    """Image*steps/s of `steps` steps after `warmup` (the first step's seconds apart: compile, cudnn's autotuning)."""
    dev = model.device
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    marks: dict[int, float] = {}
    run = replace(settings, steps=warmup + steps, thresholds=())

    def on_step(s: int) -> None:
        if s in (1, warmup, warmup + steps):
            sync(dev)
            marks[s] = time.perf_counter()

    t0 = time.perf_counter()
    for _ in render_batch(model, objective(model, layer, batch), list(range(batch)), run, on_step=on_step):
        pass
    first, warm, end = marks[1] - t0, marks[warmup], marks[warmup + steps]
    out = {"batch": batch, "image_steps_per_s": round(batch * steps / (end - warm), 2),
           "seconds_per_step": round((end - warm) / steps, 5), "first_step_seconds": round(first, 3),
           "warmup_seconds": round(warm - t0, 3)}
    if dev.type == "cuda":
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return out


def scaling(model, layer, settings, args, deadline: float) -> list[dict]:
    rows: list[dict] = []
    b = 1
    while b <= args.max_batch and time.perf_counter() < deadline:
        try:
            r = timed(model, layer, settings, b, args.warmup, args.steps)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory ends the scan quietly
            if not is_out_of_memory(exc):
                raise
            rows.append({"batch": b, "out_of_memory": True})
            break
        rows.append(r)
        print(f"scaling: batch {b}: {r}", flush=True)
        best_before = max((x["image_steps_per_s"] for x in rows[:-1] if "image_steps_per_s" in x), default=None)
        if best_before is not None and r["image_steps_per_s"] < (1 + GAIN) * best_before and b >= 64:
            break
        b = b * 4 if b < 64 else b * 2  # 1, 4, 16, 64, 128, 256, 512
    return rows


def paths(model, layer, settings, batch: int, args, deadline: float, variants: list[tuple], base: float | None = None,
          other_model=None) -> list[dict]:
    """Each variant (name, settings changes, TF32 or None, use `other_model`) timed at `batch`; `base`: the
    baseline's image*steps/s (default: the first variant's)."""
    rows = []
    for name, change, tf32, other in variants:
        if time.perf_counter() > deadline:
            rows.append({"path": name, "skipped": "out of time"})
            continue
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        try:
            m = other_model() if other else model
            r = timed(m, layer, replace(settings, **change), batch, args.warmup, args.steps)
            rows.append({"path": name, **r})
        except Exception as exc:  # noqa: BLE001 - a path that breaks is a finding, not the end of the bench
            rows.append({"path": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
        print(f"paths: {rows[-1]}", flush=True)
    base = base or rows[0].get("image_steps_per_s")
    for r in rows:
        if base and "image_steps_per_s" in r:
            r["vs_baseline"] = round(r["image_steps_per_s"] / base, 3)
            r["wins"] = r["vs_baseline"] > 1 + GAIN
    return rows


def cpu_vs_gpu(opts: ModelOptions, layer: str, channel: int, settings, gpu_model) -> dict:
    """One unit, one seed, on both devices; each final picture as 8 bits, scored by the CPU model."""
    cpu_model = load_model(opts, "cpu")
    obj = PerImage((Channel(layer, channel),))
    pics = {}
    for name, model in (("cpu", cpu_model), ("cuda", gpu_model)):  # "cuda": the device under test
        t0 = time.perf_counter()
        *_, snap = render_batch(model, obj, [1234], settings)
        pics[name] = (to_uint8(snap.images[0]), time.perf_counter() - t0, float(snap.scores[0]))
    from fvcli.models import Capture

    scores = {}
    with torch.no_grad(), Capture(cpu_model, obj.layers) as cap:
        for name, (u8, _, _) in pics.items():
            x = torch.from_numpy(u8.astype(np.float32) / 255).permute(2, 0, 1)[None]
            scores[name] = float(obj(cap(cpu_model.preprocess.apply(x)), x)[0])
    a, b = (pics[k][0].astype(np.float64).ravel() for k in ("cpu", "cuda"))
    rel = abs(scores["cuda"] - scores["cpu"]) / max(abs(scores["cpu"]), 1e-9)
    return {"unit": f"{layer}:{channel}", "steps": settings.steps, "size": settings.size,
            "objective_png_cpu": round(scores["cpu"], 4), "objective_png_cuda": round(scores["cuda"], 4),
            "relative_difference": round(rel, 4), "tolerance": CPU_GPU_TOLERANCE, "within": rel <= CPU_GPU_TOLERANCE,
            "pixel_correlation": round(float(np.corrcoef(a, b)[0, 1]), 4),
            "seconds": {k: round(v[1], 2) for k, v in pics.items()}}


def markdown(res: dict) -> str:
    lines = [f"# gpu_bench: {res['setup']['model']} `{res['setup']['layer']}` on {res['setup']['device_name']}", "",
             f"{res['setup']['size']} px, {res['setup']['steps']} timed steps after {res['setup']['warmup']} "
             f"warm-up steps, torch {res['setup']['torch']}.", "", "## Batch size", "",
             "| batch | image*steps/s | s/step | first step s | peak CUDA MiB |", "|---|---|---|---|---|"]
    for r in res.get("scaling", []):
        if r.get("out_of_memory"):
            lines.append(f"| {r['batch']} | out of memory | | | |")
        else:
            lines.append(f"| {r['batch']} | {r['image_steps_per_s']} | {r['seconds_per_step']} | "
                         f"{r['first_step_seconds']} | {r.get('peak_cuda_mib', '—')} |")
    lines += ["", f"## Paths at batch {res.get('paths_batch')}", "",
              "| path | image*steps/s | vs baseline | wins | first step s | peak CUDA MiB |", "|---|---|---|---|---|---|"]
    for r in res.get("paths", []):
        if "image_steps_per_s" in r:
            lines.append(f"| {r['path']} | {r['image_steps_per_s']} | {r.get('vs_baseline', '—')} | "
                         f"{'yes' if r.get('wins') else 'no'} | {r['first_step_seconds']} | {r.get('peak_cuda_mib', '—')} |")
        else:
            lines.append(f"| {r['path']} | {r.get('error') or r.get('skipped')} | | | | |")
    c = res.get("cpu_vs_gpu")
    lines += ["", "## CPU vs GPU, the same unit and seed", ""]
    if isinstance(c, dict) and "objective_png_cpu" in c:
        lines.append(f"{c['unit']}, {c['steps']} steps at {c['size']} px: objective on the 8-bit picture "
                     f"{c['objective_png_cpu']} (CPU) vs {c['objective_png_cuda']} (GPU), relative difference "
                     f"{c['relative_difference']} (tolerance {c['tolerance']}: {'within' if c['within'] else 'OUTSIDE'}); "
                     f"pixel correlation {c['pixel_correlation']}; seconds {c['seconds']}. {c.get('note', '')}")
    else:
        lines.append(str(c))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds for the whole bench (sections share it)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 10 on CUDA, 2 on the CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 18 on CUDA, 1 on the CPU)")
    ap.add_argument("--max-batch", type=int, default=None, help="largest batch tried (default 512 on CUDA, 4 on CPU)")
    ap.add_argument("--cpu-steps", type=int, default=64, help="steps of the CPU-vs-GPU render")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    args.steps = args.steps or (10 if cuda else 2)
    args.warmup = args.warmup or (18 if cuda else 1)  # CUDA: time steady steps, after the redirected-ReLU phase
    args.max_batch = args.max_batch or (512 if cuda else 4)
    start = time.perf_counter()
    if cuda:
        opts, layer, size = ModelOptions(name="inceptionv1", weights="random:0"), "mixed4a", 224
    else:
        opts, layer, size = ModelOptions(name="demo"), "block2", 32
    settings = load_recipe(None, [], {"render.size": size, "render.device": args.device}).loop_settings()
    model = load_model(opts, dev)
    res: dict = {"setup": {"model": opts.name, "weights": opts.weights, "layer": layer, "size": size,
                           "steps": args.steps, "warmup": args.warmup, "torch": torch.__version__,
                           "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if cuda else "CPU",
                           "recipe": "default (its loop; transforms strong)"}}
    res["scaling"] = scaling(model, layer, settings, args, start + 0.45 * args.budget)
    ok = [r for r in res["scaling"] if "image_steps_per_s" in r]
    best = max(ok, key=lambda r: r["image_steps_per_s"]) if ok else {"batch": 1}
    res["best_batch"] = best
    res["paths_batch"] = min(best["batch"], 128 if cuda else 4)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every section: a bench cut off by its time limit still leaves what it measured
        res["seconds"] = round(time.perf_counter() - start, 1)
        (out / "gpu-bench.json").write_text(json.dumps(res, indent=1))
        (out / "gpu-bench.md").write_text(markdown(res))

    save()
    contiguous: list = []

    def contiguous_model():  # channels_last off: the network's weights too, not only its input
        if not contiguous:
            contiguous.append(load_model(opts, dev, channels_last=False))
        return contiguous[0]

    variants = [("baseline (fp32, channels_last, TF32)", {}, None, False),
                ("channels_last off", {"channels_last": False}, None, True)]
    if cuda:  # reduced precision and TF32 are CUDA paths
        variants[1:1] = [("bf16 autocast", {"precision": "bf16"}, None, False),
                         ("fp16 autocast", {"precision": "fp16"}, None, False)]
        variants.append(("TF32 off", {}, False, False))
    res["paths"] = paths(model, layer, settings, res["paths_batch"], args, start + 0.7 * args.budget, variants,
                         other_model=contiguous_model)
    contiguous.clear()
    save()
    try:  # on the CPU stand-in both sides are the CPU: it proves the code, the difference is 0 by construction
        res["cpu_vs_gpu"] = cpu_vs_gpu(opts, layer, 11 if cuda else 1,
                                       replace(settings, steps=args.cpu_steps if cuda else 4, thresholds=()), model)
        if not cuda:
            res["cpu_vs_gpu"]["note"] = "no GPU: CPU against CPU, only to prove the code"
    except Exception as exc:  # noqa: BLE001 - recorded, the report says so
        res["cpu_vs_gpu"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
    save()
    if cuda:  # last: its compile takes the longest (cached by torch between processes)
        res["paths"] += paths(model, layer, settings, res["paths_batch"], args, start + args.budget,
                              [("torch.compile", {"compile": True}, None, False)],
                              base=res["paths"][0].get("image_steps_per_s"))
        save()
    print(markdown(res))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
