#!/usr/bin/env python
"""fv vs lucent on five models: the benchmark matrix (`make bench-matrix`), printed as a ready-to-paste markdown table.

    .venv-bench/bin/python scripts/bench_matrix.py --steps 48 --rounds 2
    .venv-bench/bin/python scripts/bench_matrix.py --only resnet50,mobilenet_v2 --steps 24   # a subset, quicker

Rows (8 units each, 224 px, the default recipe's loop and the article's transforms for both tools):
InceptionV1 `mixed4a` (random weights), the real MobileNetV2's class logits (recipe `mobilenet_v2`, weights in
../shared), torchvision ResNet-50 `layer3`, ConvNeXt-T `features.5` and ViT-B/16 `encoder.layers.encoder_layer_6`
(random weights). Columns: fv fp32 and fv bf16 (bf16 on CUDA or a CPU with bf16 instructions; batch `--batch-size`,
sweep mode) and lucent's `render_vis` one unit at a time (its normal use: batch 1, its Fourier image, Adam lr 0.05; see scripts/bench_render.py for the details).

Every (model, tool, round) runs in its own fresh process (scripts/bench_render.py's worker); within a round the
models follow each other and, per model, the tools alternate, the order flipping every round; a model's figures are
its best round. The printed targets are ratios: lucent's seconds per unit over fv's (target >= 5x) and, for the
convolutional models, fv's achieved GFLOP/s (counted FLOPs of the executed step) over the machine's convolution
throughput measured in the same process (target >= 50 %). A model or layer fv cannot load is listed as
`unavailable: <reason>` and the others go on. `--device auto` (the default) uses CUDA when there is one; the device
is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_render as br  # noqa: E402

# (key, label, worker arguments, convolutional?)
MATRIX = (
    ("inceptionv1", "InceptionV1 `mixed4a` (random)", {"model": "inceptionv1", "weights": "random:0",
                                                       "layer": "mixed4a"}, True),
    ("mobilenet_v2", "MobileNetV2 (real) class logits", {"recipe": "mobilenet_v2", "layer": "classifier"}, True),
    ("resnet50", "ResNet-50 `layer3` (random)", {"model": "torchvision:resnet50", "weights": "random:0",
                                                 "layer": "layer3"}, True),
    ("convnext_tiny", "ConvNeXt-T `features.5` (random)", {"model": "torchvision:convnext_tiny",
                                                           "weights": "random:0", "layer": "features.5"}, True),
    ("vit_b_16", "ViT-B/16 `encoder_layer_6` (random)", {"model": "torchvision:vit_b_16", "weights": "random:0",
                                                         "layer": "encoder.layers.encoder_layer_6"}, False),
)
TARGET_RATIO = 5.0
TARGET_FRACTION = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8, help="fv images per batch")
    ap.add_argument("--lucent-batch", type=int, default=1, help="lucent images per render_vis call (1: its normal use)")
    ap.add_argument("--precision", default="auto",
                    help="fv precisions, comma-separated; auto: fp32, and bf16 on CUDA or a CPU with bf16 instructions")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(m[0] for m in MATRIX)}")
    ap.add_argument("--no-lucent", action="store_true", help="fv columns only")
    ap.add_argument("--ab-rewrites", action="store_true",
                    help="add an fv fp32 column without the load-time rewrites (BatchNorm folding, dropout removal)")
    ap.add_argument("--lucent-python", default=None)
    ap.add_argument("--json-out", default=None, help="also write every result as JSON here")
    args = ap.parse_args()
    device = resolve_matrix_device(args.device)
    if args.precision == "auto":
        args.precision = "fp32,bf16" if device == "cuda" or cpu_has_fast_bf16() else "fp32"
        if args.precision == "fp32":
            print("# bf16 left out: this CPU has no bf16 instructions (oneDNN emulates it, 10-13x slower than fp32; "
                  "--precision fp32,bf16 to measure it anyway)", file=sys.stderr, flush=True)
    rows = [m for m in MATRIX if not args.only or m[0] in args.only.split(",")]
    if not rows:
        raise SystemExit(f"--only {args.only!r}: valid keys are {', '.join(m[0] for m in MATRIX)}")
    lucent_py = None if args.no_lucent else (args.lucent_python or br._find_lucent_python())
    configs = [(f"fv {p}", "fv", {"precision": p}) for p in args.precision.split(",")]
    if args.ab_rewrites:
        configs.append(("fv fp32 plain", "fv", {"precision": "fp32", "no_rewrites": True}))
    if lucent_py:
        configs.append((f"lucent b{args.lucent_batch}", "lucent", {"lucent_batch": args.lucent_batch}))
    print(f"# device {device}; {len(rows)} models x {len(configs)} tools x {args.rounds} rounds, {args.units} units, "
          f"{args.size} px, {args.steps} steps", file=sys.stderr, flush=True)
    ns = {key: SimpleNamespace(**({"model": None, "weights": None, "recipe": None} | spec), units=args.units, size=args.size,
                               steps=args.steps, batch_size=args.batch_size, device=device, threads=args.threads,
                               rounds=args.rounds)
          for key, _, spec, _ in rows}
    runs: dict[str, dict[str, list[dict]]] = {key: {c[0]: [] for c in configs} for key, *_ in rows}
    unavailable: dict[str, str] = {}
    load_before, t0 = br.load_avg(), time.perf_counter()
    for r in range(args.rounds):
        for key, label, _, _ in rows:
            for name, tool, extra in (configs if r % 2 == 0 else configs[::-1]):
                if key in unavailable:
                    break
                res = br.spawn(tool, ns[key], sys.executable if tool == "fv" else lucent_py, extra)
                if "unavailable" in res:
                    unavailable[key] = res["unavailable"]
                    print(f"# {key}: unavailable: {res['unavailable']}", file=sys.stderr, flush=True)
                    break
                res["load"], res["round"] = br.load_avg(), r
                runs[key][name].append(res)
                print(f"# round {r} {key} {name}: {res['seconds']:.1f} s ({res.get('device', '?')}), load "
                      f"{res['load']}", file=sys.stderr, flush=True)
    load_after, wall = br.load_avg(), time.perf_counter() - t0
    summaries = {key: br.summarize(ns[key], runs[key], load_before, load_after, wall)
                 for key, *_ in rows if key not in unavailable}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"summaries": summaries, "unavailable": unavailable, "runs": runs}, f)
    print_markdown(args, device, rows, summaries, unavailable, load_before, load_after, wall)


def cpu_has_fast_bf16() -> bool:
    from fvcli.optvis.loop import cpu_has_fast_bf16 as probe

    return probe()


def resolve_matrix_device(device: str) -> str:
    """auto: CUDA when present, else the CPU (the workers then run on it and report it)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _fmt(v, spec: str, dash: str = "—") -> str:
    return dash if v is None else format(v, spec)


def ceiling(fv: dict, luc: dict | None, steps: int) -> float | None:
    """The largest lucent ÷ fv ratio fv's arithmetic allows: lucent's measured seconds per unit over the seconds fv's
    counted FLOPs per unit would take at 100 % of the machine's measured convolution throughput. Below 5, no speed
    work at this precision reaches the 5x target; only less arithmetic per step would."""
    if not fv or not luc or not fv.get("machine_conv_gflops"):
        return None
    return luc["seconds_per_unit"] / (fv["gflop_per_image_step"] * steps / fv["machine_conv_gflops"])


def print_markdown(args, device, rows, summaries, unavailable, load_before, load_after, wall) -> None:
    first = next(iter(summaries.values()), None)
    cpu = first["setup"]["cpu"] if first else br.cpu_name()
    threads = first["setup"]["threads"] if first else "?"
    import torch

    print(f"\nfv vs lucent, {args.units} units, {args.size} px, {args.steps} steps, best of {args.rounds} rounds; "
          f"device {device}, {cpu}, {threads} threads, torch {torch.__version__}; 1-min load average "
          f"{load_before[0]} before, {load_after[0]} after ({os.cpu_count()} cores); wall {wall / 60:.1f} min\n")
    precs = args.precision.split(",")
    lu = f"lucent b{args.lucent_batch}"
    head = (["model"] + [f"fv {p} s/unit" for p in precs] + [f"{lu} s/unit"]
            + [f"lucent ÷ fv {p}" for p in precs] + ["ceiling: lucent ÷ fv at 100 % of conv",
                                                      "fv fp32 image·steps/s", "GFLOP/image·step (fv, lucent)",
                                                     "fv fp32 GFLOP/s", "of machine conv (fp32)",
                                                     "peak RSS GB (fv fp32, lucent)"])
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for key, label, _, conv in rows:
        if key in unavailable:
            print(f"| {label} | unavailable: {unavailable[key]} |" + " |" * (len(head) - 2))
            continue
        s = summaries[key]
        fv = s.get("fv fp32", {})
        luc = s.get(lu)
        cells = [label]
        cells += [_fmt(s.get(f"fv {p}", {}).get("seconds_per_unit"), ".2f") for p in precs]
        cells.append(_fmt(luc and luc["seconds_per_unit"], ".2f"))
        for p in precs:
            ratio = next((x["best_rounds"] for x in s["ratios"] if x["fv"] == f"fv {p}"), None)
            mark = "" if ratio is None else (" ✓" if ratio >= TARGET_RATIO else f" ({ratio / TARGET_RATIO:.0%} of 5×)")
            cells.append(_fmt(ratio, ".1f") + ("×" if ratio is not None else "") + mark)
        cells.append(_fmt(ceiling(fv, luc, args.steps), ".1f") + ("×" if ceiling(fv, luc, args.steps) else ""))
        cells.append(_fmt(fv.get("image_steps_per_s"), ".1f"))
        cells.append(f"{_fmt(fv.get('gflop_per_image_step'), '.2f')}, {_fmt(luc and luc['gflop_per_image_step'], '.2f')}")
        cells.append(_fmt(fv.get("achieved_gflops"), ".0f"))
        frac = fv.get("fraction_of_conv")
        fmark = "" if frac is None or not conv else (" ✓" if frac >= TARGET_FRACTION else " (target 50 %)")
        cells.append(_fmt(frac, ".0%") + (fmark if conv else " (not a conv net)"))
        cells.append(f"{_fmt(fv.get('peak_rss_mb') and fv['peak_rss_mb'] / 1024, '.2f')}, "
                     f"{_fmt(luc and luc['peak_rss_mb'] / 1024, '.2f')}")
        print("| " + " | ".join(cells) + " |")
    print("\nPer round, seconds per unit (each model's tools ran next to each other):")
    for key, label, _, _ in rows:
        if key in summaries:
            s = summaries[key]
            per = "; ".join(f"{c}: {' '.join(f'{v:.2f}' for v in s[c]['seconds_per_unit_rounds'])}"
                            for c in s["columns"] if c in s)
            plain = s.get("fv fp32 plain")
            ab = "" if not plain or "fv fp32" not in s else (
                f"; load-time rewrites: {plain['seconds_per_unit'] / s['fv fp32']['seconds_per_unit']:.2f}x faster")
            print(f"- {label}: {per}; machine conv {s[s['columns'][0]]['machine_conv_gflops']:.0f} GFLOP/s{ab}")


if __name__ == "__main__":
    main()
