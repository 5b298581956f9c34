"""The GPU check's report (scripts/gpu_report.py) from the files a GPU run leaves, made up here.

Why: the report is what comes back from minutes of scarce GPU time; its arithmetic (utilisation inside the sweep's
window, the ratio to lucent, the estimate against the real sweep, which target is met) must be right before that
run, and it can only be checked here on files shaped like the GPU run's. `make gpu-check` itself runs end to end on
the CPU in about two minutes (too slow for the suite); its shell is checked for syntax here.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def report_module():
    spec = importlib.util.spec_from_file_location("gpu_report_for_test", ROOT / "scripts" / "gpu_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def smi_line(t: float, util: int) -> str:
    stamp = datetime.fromtimestamp(t).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    return f"{stamp}, {util}, 40, 20000, 350.5"


def fake_gpu_run(work: Path, out: Path) -> None:
    (work / "phases.tsv").write_text("install\t0\t9\tok\nsweep\t0\t60\tok\nbench-matrix\t124\t140\ttimed out after 140s\n")
    (work / "machine.json").write_text(json.dumps({"gpu": "NVIDIA H100 80GB HBM3", "memory_gib": 79.2,
                                                   "torch": "2.11.0+cu130", "cuda_build": "13.0"}))
    t0 = 1_800_000_000.0
    (work / "sweep.start.t").write_text(f"{t0 + 10}\n")
    (work / "sweep.end.t").write_text(f"{t0 + 20}\n")
    # 2 s idle before the sweep (not counted), then 10 s: 9 busy samples, 1 idle
    lines = [smi_line(t0 + 8 + i * 0.5, 0) for i in range(4)]
    lines += [smi_line(t0 + 10.5 + i, 95 if i != 3 else 0) for i in range(10)]
    lines += [smi_line(t0 + 25, 0)]
    (out / "nvidia-smi.csv").write_text("\n".join(lines) + "\n")
    layer = work / "sweep" / "layers" / "mixed4a"
    layer.mkdir(parents=True)
    for c, s in enumerate((0.04, 0.06)):
        (layer / f"mixed4a-{c:05d}.json").write_text(json.dumps(
            {"key": f"mixed4a-{c:05d}", "seconds": s, "batch_size": 128, "device": "cuda",
             "recipe": {"render": {"steps": 512}}}))
    (layer / "state.json").write_text("{}")  # not a unit record
    line = ("estimate, shard 0/1 on cuda (NVIDIA H100 80GB HBM3, 16 threads): {u} units in {b} batch(es) of up to "
            "{bs}; measured mixed4a 0.050 s/step; predicted 0 h {m:02d} min ({s} s)")
    (work / "estimate.log").write_text("loading\n" + line.format(u=5484, b=11, bs=512, m=12, s=720) + "\n")
    (work / "estimate-layer.log").write_text(line.format(u=256, b=2, bs=128, m=0, s=15) + "\n")
    (work / "matrix.json").write_text(json.dumps({"summaries": {"inceptionv1": {
        "setup": {"steps": 48}, "columns": ["fv fp32", "lucent b1"],
        "fv fp32": {"batch_size": 8, "precision": "fp32", "seconds_per_unit": 0.05, "image_steps_per_s": 960.0},
        "lucent b1": {"batch_size": 1, "precision": "fp32", "seconds_per_unit": 0.6, "image_steps_per_s": 80.0}}},
        "unavailable": {"mobilenet_v2": "no weights"}}))
    bench = {"setup": {"model": "inceptionv1", "layer": "mixed4a", "device_name": "NVIDIA H100", "size": 224,
                       "steps": 10, "warmup": 18, "torch": "2.11"},
             "best_batch": {"batch": 256, "image_steps_per_s": 4800.0},
             "cpu_vs_gpu": {"relative_difference": 0.03, "tolerance": 0.1, "within": True, "pixel_correlation": 0.97}}
    (work / "ttq.json").write_text(json.dumps([{"model": "inceptionv1", "units": ["mixed4a:0"] * 8, "rows": {
        "fv default": {"seconds": {"32": 0.1, "64": 0.2, "512": 1.6}, "objective": {"32": 50, "64": 90, "512": 200}},
        "lucent": {"seconds": {"32": 1.0, "64": 2.0, "512": 16.0}, "objective": {"32": 10, "64": 20, "512": 100}}}}]))
    (work / "gpu-bench").mkdir()
    (work / "gpu-bench" / "gpu-bench.json").write_text(json.dumps(bench))


def test_report_states_each_target_with_its_figure(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir(), out.mkdir()
    fake_gpu_run(work, out)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_report.py"), "--work", str(work), "--out",
                        str(out), "--mode", "cuda", "--elapsed", "400", "--finished", "2026-12-07T06:00:00Z"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    ratio = next(x for x in rep["targets"] if "lucent" in x["target"])
    assert ratio["figure"] == 12.0 and ratio["met"] is False  # 0.6 / 0.05 at batch 8
    assert "at fv's best batch (256" in ratio["note"] and "60.0x" in ratio["note"]  # 0.6 / (48 / 4800)
    busy = next(x for x in rep["targets"] if "busy" in x["target"])
    assert busy["figure"] == 85.5 and busy["met"] is True  # the mean over the sweep's window only (9 x 95 % + 0)
    assert rep["utilisation"]["samples"] == 10 and rep["utilisation"]["busy_samples_pct"] == 90.0
    google = next(x for x in rep["targets"] if "GoogLeNet" in x["target"])
    assert google["figure"] == 720 and google["met"] is True
    check = next(x for x in rep["targets"] if "real sweep" in x["target"])
    assert check["figure"] == round((15 / 256) / 0.05, 3)  # predicted / measured seconds per unit
    ttq = next(x for x in rep["targets"] if "time to lucent" in x["target"])
    assert ttq["figure"] == round(16.0 / (0.2 + 1.4 * 10 / 110), 2)  # fv reaches lucent's 100 between 64 and 512
    same = next(x for x in rep["targets"] if "CPU and GPU" in x["target"])
    assert same["figure"] == 0.03 and same["met"] is True
    assert rep["sweep"]["units"] == 2 and rep["unavailable"] == {"mobilenet_v2": "no weights"}
    md = (out / "report.md").read_text()
    assert "| bench-matrix | timed out after 140s | 140 |" in md and "NVIDIA H100 80GB HBM3" in md
    assert "No CUDA" not in md


def test_a_cpu_run_claims_no_target(tmp_path):
    mod = report_module()
    targets = mod.targets("cpu", [], None, None, None, {"seconds": 4, "line": "x"}, None)
    assert all(x["met"] is None for x in targets)  # toy sizes on a CPU: no verdict either way


def test_the_check_script_parses():
    r = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_gpu_bench_runs_on_the_cpu_stand_in(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--device", "cpu", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "gpu-bench.json").read_text())
    assert [x["batch"] for x in res["scaling"]] == [1, 4] and res["best_batch"]["image_steps_per_s"] > 0
    assert [p["path"] for p in res["paths"]] == ["baseline (fp32, channels_last, TF32)", "channels_last off"]
    assert res["cpu_vs_gpu"]["relative_difference"] == 0.0  # CPU against CPU: the same render
    assert "## Batch size" in (tmp_path / "gpu-bench.md").read_text()
