#!/usr/bin/env python
"""The GPU check's report (scripts/gpu_check.sh): what each phase did and the issue #28 targets, as report.md + report.json.

    python scripts/gpu_report.py --work WORK --out OUT --mode cuda|cpu --elapsed SECONDS

Why a separate script: gpu_check.sh rewrites the report after every phase, so a run cut off from outside still
leaves one, and the figures are read from the files the phases wrote (no torch import: it takes a fraction of a
second). It reads, in WORK: phases.tsv (name, exit status, seconds, verdict), machine.json, the sweep's unit
records (sweep/layers/*/*.json), the estimates' logs, gpu-bench/gpu-bench.json, matrix.json, ttq.json, the phase time marks
(*.t) and, in OUT, nvidia-smi.csv (utilisation sampled every 200 ms). Each target is stated with its figure, or
with why the figure is missing.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from datetime import datetime
from pathlib import Path

TARGET_RATIO = 20.0  # fv >= 20x lucent per unit, InceptionV1 mixed4a
TARGET_BUSY = 80.0  # GPU busy >= 80 % of a sweep's wall time
TARGET_GOOGLENET_S = 3600.0  # every GoogLeNet channel within an hour


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def phases(work: Path) -> list[dict]:
    rows = []
    p = work / "phases.tsv"
    if p.exists():
        for line in p.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                rows.append({"phase": parts[0], "exit": parts[1], "seconds": int(parts[2] or 0), "verdict": parts[3]})
    return rows


def sweep_units(work: Path) -> dict | None:
    recs = [read_json(p) for p in sorted((work / "sweep" / "layers").glob("*/*.json"))]
    recs = [r for r in recs if isinstance(r, dict) and "seconds" in r and "key" in r]
    if not recs:
        return None
    secs = [r["seconds"] for r in recs]
    return {"units": len(recs), "seconds_per_unit": round(sum(secs) / len(secs), 4),
            "batch_size": recs[0].get("batch_size"), "steps": recs[0].get("recipe", {}).get("render", {}).get("steps"),
            "device": recs[0].get("device")}


ESTIMATE = re.compile(r"estimate, shard .*?: (\d+) units in (\d+) batch\(es\) of up to (\d+);.*?\((\d+) s\)")


def estimate(work: Path, name: str) -> dict | None:
    p = work / f"{name}.log"
    m = ESTIMATE.search(p.read_text()) if p.exists() else None
    if not m:
        return None
    units, batches, bs, secs = (int(g) for g in m.groups())
    return {"units": units, "batches": batches, "batch_size": bs, "seconds": secs,
            "seconds_per_unit": round(secs / max(1, units), 4), "line": m.group(0)}


def window(work: Path, name: str) -> tuple[float, float] | None:
    try:
        return float((work / f"{name}.start.t").read_text()), float((work / f"{name}.end.t").read_text())
    except (OSError, ValueError):
        return None


def utilisation(csv_path: Path, span: tuple[float, float] | None) -> dict | None:
    """Mean utilization.gpu and the share of samples with any kernel (> 0) inside `span` (epoch seconds)."""
    if span is None or not csv_path.exists():
        return None
    util, mem = [], []
    with csv_path.open() as f:
        for row in csv.reader(f):
            try:
                t = datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
                u, m = float(row[1]), float(row[3])
            except (ValueError, IndexError):
                continue
            if span[0] <= t <= span[1]:
                util.append(u)
                mem.append(m)
    if not util:
        return None
    return {"samples": len(util), "mean_utilization_pct": round(sum(util) / len(util), 1),
            "busy_samples_pct": round(100 * sum(u > 0 for u in util) / len(util), 1), "max_memory_mib": max(mem)}


def matrix_rows(work: Path) -> tuple[list[dict], dict]:
    m = read_json(work / "matrix.json") or {}
    rows = []
    for key, s in (m.get("summaries") or {}).items():
        for col in s.get("columns", []):
            if col in s:
                c = s[col]
                rows.append({"model": key, "tool": col, "batch": c.get("batch_size"), "precision": c.get("precision"),
                             "seconds_per_unit": c.get("seconds_per_unit"), "image_steps_per_s": c.get("image_steps_per_s"),
                             "peak_cuda_mb": c.get("peak_cuda_mb"), "steps": s["setup"]["steps"]})
    return rows, m.get("unavailable") or {}


def first_time(seconds: dict, quality: dict, level: float) -> tuple[float | None, bool]:
    """Seconds per unit at which a curve (snapshot step -> seconds, objective) first reaches `level`, linearly
    interpolated; (seconds, True) when its first snapshot is already there (a lower bound); (None, False) never."""
    pts = [(seconds[k], quality[k]) for k in sorted(seconds, key=int) if k in quality]
    if not pts:
        return None, False
    if pts[0][1] >= level:
        return pts[0][0], True
    for (t0, q0), (t1, q1) in zip(pts, pts[1:]):
        if q1 >= level:
            return t0 + (t1 - t0) * (level - q0) / (q1 - q0), False
    return None, False


def time_to_quality(work: Path) -> dict | None:
    """scripts/bench_time_to_quality.py's curves: fv default's seconds per unit to lucent's final objective."""
    data = read_json(work / "ttq.json")
    entry = data[0] if isinstance(data, list) and data else None
    rows = (entry or {}).get("rows", {})
    fv, lu = rows.get("fv default"), rows.get("lucent")
    if not fv or not lu or not lu.get("objective"):
        return None
    last = max(lu["objective"], key=int)
    level = lu["objective"][last]
    t_lu, _ = first_time(lu["seconds"], lu["objective"], level)
    t_fv, bound = first_time(fv["seconds"], fv["objective"], level)
    return {"model": entry.get("model"), "units": len(entry.get("units", [])), "steps": int(last),
            "lucent_objective": round(level, 4), "lucent_seconds_per_unit": t_lu,
            "fv_seconds_per_unit": t_fv, "lower_bound": bound,
            "ratio": round(t_lu / t_fv, 2) if t_lu and t_fv else None}


def targets(mode: str, rows: list[dict], bench: dict | None, sweep: dict | None, util: dict | None,
            est: dict | None, est_layer: dict | None, ttq: dict | None = None) -> list[dict]:
    out = []
    gpu = mode == "cuda"
    why_cpu = "no GPU on this run (CPU stand-in at toy sizes)"
    # fv vs lucent per unit on InceptionV1 mixed4a
    iv1 = [r for r in rows if r["model"] == "inceptionv1"]
    luc = next((r for r in iv1 if r["tool"].startswith("lucent")), None)
    fvs = [r for r in iv1 if r["tool"].startswith("fv") and r["seconds_per_unit"]]
    fig, note = None, ""
    if luc and fvs:
        best = min(fvs, key=lambda r: r["seconds_per_unit"])
        fig = luc["seconds_per_unit"] / best["seconds_per_unit"]
        note = f"{best['tool']} at batch {best['batch']} vs {luc['tool']}, {best['steps']} steps"
        setup = (bench or {}).get("setup", {})
        if setup.get("model") == "inceptionv1" and setup.get("layer") == "mixed4a" and \
                bench.get("best_batch", {}).get("image_steps_per_s"):
            b = bench["best_batch"]
            fv_full = 1 / b["image_steps_per_s"] * best["steps"]  # seconds per unit at the best batch, same steps
            note += (f"; at fv's best batch ({b['batch']}, gpu_bench, steady steps without start-up) "
                     f"{luc['seconds_per_unit'] / fv_full:.1f}x")
    out.append({"target": f"fv >= {TARGET_RATIO:g}x lucent per unit (InceptionV1 mixed4a)",
                "figure": None if fig is None else round(fig, 2),
                "met": None if fig is None or not gpu else fig >= TARGET_RATIO,
                "note": note or ("no lucent row: lucent not installed (no .whl/) or its worker failed (see the "
                                 "bench-matrix phase)" if not luc else "no fv row")})
    # nvidia-smi's utilization.gpu: the share of its sample period in which a kernel ran; its mean over the sweep's
    # window is the share of the sweep's wall time the GPU was busy
    out.append({"target": f"GPU busy >= {TARGET_BUSY:g} % of a sweep's wall time",
                "figure": util["mean_utilization_pct"] if util else None,
                "met": (util["mean_utilization_pct"] >= TARGET_BUSY) if util and gpu else None,
                "note": (f"mean utilization.gpu over {util['samples']} samples (200 ms); samples with any kernel: "
                         f"{util['busy_samples_pct']} %"
                         if util else why_cpu if not gpu else "no nvidia-smi samples in the sweep's window")})
    out.append({"target": "every GoogLeNet channel (mixed3a..mixed5b) in <= 1 hour on one GPU (fv sweep --estimate)",
                "figure": est["seconds"] if est else None,
                "met": (est["seconds"] <= TARGET_GOOGLENET_S) if est and gpu else None,
                "note": est["line"] if est else "no estimate"})
    if sweep and est_layer:
        ratio = (est_layer["seconds_per_unit"] / sweep["seconds_per_unit"]
                 if sweep["seconds_per_unit"] and est_layer["seconds"] else None)
        out.append({"target": "the estimate against a real sweep of one layer (predicted / measured seconds per unit)",
                    "figure": None if ratio is None else round(ratio, 3), "met": None,
                    "note": f"measured {sweep['seconds_per_unit']} s/unit over {sweep['units']} units at batch "
                            f"{sweep['batch_size']}; predicted {est_layer['seconds_per_unit']} s/unit at batch "
                            f"{est_layer['batch_size']}"})
    out.append({"target": "time to lucent's quality (unit objective on the 8-bit PNG; lucent's units jointly, "
                          "bench_time_to_quality.py)",
                "figure": (ttq or {}).get("ratio"), "met": None,
                "note": (f"{ttq['model']}, {ttq['units']} units, lucent's objective {ttq['lucent_objective']} at "
                         f"{ttq['steps']} steps: lucent {num(ttq['lucent_seconds_per_unit'])} s/unit, fv default "
                         f"{'<= ' if ttq['lower_bound'] else ''}{num(ttq['fv_seconds_per_unit'])} s/unit"
                         + ("" if ttq["fv_seconds_per_unit"] else " (fv never reaches it)")
                         if ttq else "not measured (lucent missing, or the phase was skipped: see the phases)")})
    c = (bench or {}).get("cpu_vs_gpu")
    out.append({"target": "CPU and GPU renders of the same unit: objective within the stated tolerance",
                "figure": c.get("relative_difference") if isinstance(c, dict) else None,
                "met": c.get("within") if isinstance(c, dict) and gpu else None,
                "note": (f"tolerance {c['tolerance']}, pixel correlation {c['pixel_correlation']}"
                         if isinstance(c, dict) else str(c))})
    return out


def num(v) -> str:
    return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(rep: dict) -> str:
    mach = rep.get("machine") or {}
    lines = [f"# fv GPU check ({rep['mode']})", "",
             f"{rep['finished'] or 'in progress'}; {rep['elapsed_s']} s; "
             f"GPU: {mach.get('gpu', 'none')} ({mach.get('memory_gib', '—')} GiB); torch {mach.get('torch', '?')} "
             f"(CUDA {mach.get('cuda_build')}); CPU: {mach.get('cpu', '?')}, {mach.get('cpu_threads', '?')} threads.", ""]
    if rep["mode"] != "cuda":
        lines += ["**No CUDA on this machine: every figure below comes from the CPU stand-in at toy sizes and only "
                  "proves the script.**", ""]
    lines += ["## Targets", "", "| target | figure | met | note |", "|---|---|---|---|"]
    for t in rep["targets"]:
        met = "—" if t["met"] is None else "yes" if t["met"] else "NO"
        lines.append(f"| {t['target']} | {'—' if t['figure'] is None else t['figure']} | {met} | {t['note']} |")
    lines += ["", "## Phases", "", "| phase | verdict | seconds |", "|---|---|---|"]
    lines += [f"| {p['phase']} | {p['verdict']} | {p['seconds']} |" for p in rep["phases"]]
    if rep["matrix"]:
        lines += ["", "## fv vs lucent (scripts/bench_matrix.py)", "",
                  "| model | tool | batch | s/unit | image*steps/s | peak CUDA MB |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['tool']} | {r['batch']} | {num(r['seconds_per_unit'])} | "
                  f"{num(r['image_steps_per_s'])} | {num(r['peak_cuda_mb'])} |" for r in rep["matrix"]]
    for k, why in rep["unavailable"].items():
        lines.append(f"- {k}: unavailable: {why}")
    if rep.get("sweep"):
        s = rep["sweep"]
        lines += ["", "## Sweep", "", f"{s['units']} units on {s['device']} at batch {s['batch_size']}, "
                  f"{s['steps']} steps: {s['seconds_per_unit']} s per unit; utilisation: {rep.get('utilisation')}"]
    for name in ("estimate", "estimate_layer"):
        if rep.get(name):
            lines += ["", f"- {name}: {rep[name]['line']}"]
    if rep.get("gpu_bench_md"):
        lines += ["", rep["gpu_bench_md"].replace("# gpu_bench", "## gpu_bench", 1)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", default="unknown")
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--finished", default="")
    a = ap.parse_args()
    work, out = Path(a.work), Path(a.out)
    bench = read_json(work / "gpu-bench" / "gpu-bench.json")
    rows, unavailable = matrix_rows(work)
    sweep = sweep_units(work)
    util = utilisation(out / "nvidia-smi.csv", window(work, "sweep"))
    est, est_layer = estimate(work, "estimate"), estimate(work, "estimate-layer")
    ttq = time_to_quality(work)
    md_path = work / "gpu-bench" / "gpu-bench.md"
    rep = {"mode": a.mode, "elapsed_s": a.elapsed, "finished": a.finished, "machine": read_json(work / "machine.json"),
           "phases": phases(work), "targets": targets(a.mode, rows, bench, sweep, util, est, est_layer, ttq),
           "time_to_quality": ttq,
           "matrix": rows, "unavailable": unavailable, "sweep": sweep, "utilisation": util,
           "utilisation_bench": utilisation(out / "nvidia-smi.csv", window(work, "bench")),
           "estimate": est, "estimate_layer": est_layer, "gpu_bench": bench,
           "gpu_bench_md": md_path.read_text() if md_path.exists() else ""}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({k: v for k, v in rep.items() if k != "gpu_bench_md"}, indent=1))
    (out / "report.md").write_text(markdown(rep))
    print(out / "report.md")


if __name__ == "__main__":
    main()
