"""How far a unit's picture moves with its batch, per CPU instruction set: the numbers behind tests/drift.py.

Runs the suite's alone-vs-batch comparisons (every test that calls `drift.same_picture`) once per instruction set
that this CPU can emulate -- oneDNN capped with ONEDNN_MAX_CPU_ISA, ATen's vector kernels with ATEN_CPU_CAPABILITY --
each in a fresh pytest process with FV_DRIFT_LOG set, then prints one markdown table: per comparison and ISA, the
worst mean and 99th-percentile difference in 8-bit levels, the most-moved pixel and the objective's relative change,
beside the bounds the tests assert. Run it on each CPU kind you meet (`make drift-report`) and paste the table into
docs/reports/guarantees.md with the CPU's name; a new bound is set from these numbers, never widened until green.

    python scripts/drift_report.py                     # native, AVX512_CORE, AVX2 (those this CPU has)
    python scripts/drift_report.py --isas native,avx2  # a subset
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from drift import BATCH_DRIFT  # noqa: E402  (tests/drift.py: the bounds the suite asserts)
sys.path.insert(0, str(ROOT))
from fvcli.outputs import cpu_description  # noqa: E402

# name -> (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY); None leaves the variable unset (the CPU's best)
ISAS = {
    "native": (None, None),
    "avx512_core": ("AVX512_CORE", "avx512"),  # AVX-512 without the bf16 / VNNI / AMX extensions
    "avx2": ("AVX2", "avx2"),  # an AVX2-only CPU
}
COMPARISONS = [  # every call of drift.same_picture in the suite
    "tests/test_render.py::test_unit_alone_and_in_a_batch_of_four",
    "tests/test_diversity.py::test_appendix_panels",
    "tests/test_coarse.py::test_the_seed_alone_decides_the_picture",
    "tests/test_lr_schedule.py::test_in_a_stream_each_unit_follows_its_own_schedule",
    "tests/test_reliability.py::test_nan_is_retried_with_new_seed_and_lower_lr_and_recorded",
    "tests/test_stream.py::test_a_unit_that_runs_all_its_steps_is_the_plain_batch_unit",
    "tests/test_stream.py::test_a_units_picture_does_not_depend_on_its_batch_mates_or_entry_time",
    "tests/test_faults.py::test_out_of_memory_in_a_sweep_halves_the_batch_and_continues",
]


def isa_env(name: str) -> dict[str, str]:
    env = dict(os.environ)
    onednn, aten = ISAS[name]
    for var, value in (("ONEDNN_MAX_CPU_ISA", onednn), ("ATEN_CPU_CAPABILITY", aten)):
        env.pop(var, None)
        if value:
            env[var] = value
    return env


def run(isas: list[str], tests: list[str]) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for name in isas:
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
            log = Path(f.name)
        env = {**isa_env(name), "FV_DRIFT_LOG": str(log)}
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        tail = r.stdout.strip().splitlines()[-1:] or ["(no output)"]
        print(f"drift-report: {name}: pytest exit {r.returncode}: {tail[0]}", file=sys.stderr, flush=True)
        rows[name] = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        log.unlink()
    return rows


def table(rows: dict[str, list[dict]]) -> str:
    worst: dict[tuple[str, str], dict] = defaultdict(lambda: {"mean_levels": 0.0, "p99_levels": 0.0, "max_levels": 0,
                                                              "score_rel": 0.0, "n": 0, "threads": set()})
    for isa, entries in rows.items():
        for e in entries:
            w = worst[(e["what"], isa)]
            for k in ("mean_levels", "p99_levels", "max_levels", "score_rel"):
                w[k] = max(w[k], e.get(k, 0.0))
            w["n"] += 1
            w["threads"].add(e["threads"])
    out = [f"CPU: {cpu_description()}; bounds asserted (tests/drift.py): mean <= {BATCH_DRIFT.mean_levels} levels, "
           f"p99 <= {BATCH_DRIFT.p99_levels} levels, objective <= {BATCH_DRIFT.score_rtol:.0%}", "",
           "| comparison | ISA | threads | pairs | mean (levels) | p99 (levels) | max pixel (levels) | objective (rel.) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (what, isa), w in sorted(worst.items()):
        out.append(f"| {what} | {isa} | {','.join(map(str, sorted(w['threads'])))} | {w['n']} | "
                   f"{w['mean_levels']:.3f} | {w['p99_levels']:.1f} | {w['max_levels']} | {w['score_rel']:.1e} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--isas", default=",".join(ISAS), help=f"comma-separated, of {', '.join(ISAS)}")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args()
    isas = [i for i in args.isas.split(",") if i]
    unknown = [i for i in isas if i not in ISAS]
    if unknown:
        raise SystemExit(f"unknown ISA {unknown[0]!r}: valid {', '.join(ISAS)}")
    rows = run(isas, COMPARISONS)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
