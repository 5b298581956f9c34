#!/usr/bin/env python
"""Write fvcli/budget/schedules.yaml -- the schedules `fv sweep --deadline` and `fv render --budget` choose from --
from TUNE200 runs of scripts/bench_time_to_quality.py (its --json-out files).

    .venv-bench/bin/python scripts/ttq_schedules.py runs/ttq-tune-224.json runs/ttq-tune-128.json \\
        --rows "fv default,fv ramp" --out fvcli/budget/schedules.yaml

A schedule is a row of a run (fv default, or a lever that won on BENCH200: scripts/ttq_levers.py) stopped at one of
its snapshot steps: a snapshot at step s of a render whose schedules are in absolute steps (constant learning rate,
the transform ramp) is, up to its random draws, the picture an s-step render of that row gives. A snapshot in a
coarse-to-fine row's coarse phase is that of a plain render at the coarse size (its transforms scaled to it): it
becomes a schedule at that size. Its quality: the open judge's top-1 over the run's classes at that step (and
the mean class logit). When two runs measured the same (size, row, steps), the one with more classes wins.

Runs from before the default changed (`--previous-default FILE,...`; a run whose `fv default` row came from the
cache of such a run is one too): every row of theirs gets scripts/ttq_levers.py's PREVIOUS_DEFAULT items first, its
own levers after (they win), and its name says which of the previous default's items stayed (`adam0.9`, `decay1`).
A row with the lever that became the default (DEFAULT_LEVER) is named without it (its items stay written out, so the
row means the same if the default changes again).

Every row is written out full size unless it has a coarse phase (scripts/ttq_levers.py's FULL_SIZE: the default
takes a coarse phase at 224 px and more since the sixth session of #29). The runs listed in schedules.yaml were all
made before that, when `fv default` was full size; in a later run the default's 224 px picture is `fv coarse96`'s
(the same recipe hash: the benchmark checks a cached chunk's hash, not its row's name): ask for it by that name.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from ttq_levers import DEFAULT_LEVER, PREVIOUS_DEFAULT, lever_sets  # noqa: E402

from fvcli.optvis.coarse import coarse_size  # noqa: E402

OUT = HERE.parent / "fvcli" / "budget" / "schedules.yaml"


def label_of(row: str, previous: bool) -> str:
    """A row's name in the table: its levers (DEFAULT_LEVER, when all of it is there, is the default and not named),
    `default` for none; in a run from before the change, `adam0.9` / `decay1` for the previous default's items that
    the row's own levers do not override."""
    levers = [p for p in row.removeprefix("fv ").split("+") if p != "default"]
    if set(DEFAULT_LEVER.split("+")) <= set(levers):
        levers = [p for p in levers if p not in DEFAULT_LEVER.split("+")]
    if previous:
        written = {x.split("=", 1)[0] for x in lever_sets(row, 1)}
        levers += [tag for key, tag in (("render.beta1", "adam0.9"), ("param.decay_ramp", "decay1"))
                   if key not in written]
    return "+".join(levers) or "default"


def last_wins(sets: list[str]) -> list[str]:
    """`--set` items with each key once, where it came first, at its last value (a lever's items override
    PREVIOUS_DEFAULT's and FULL_SIZE's)."""
    out: dict[str, str] = {}
    for x in sets:
        key, value = x.split("=", 1)
        out[key] = value
    return [f"{k}={v}" for k, v in out.items()]


def rows_of(spec: str, wanted: set[str], previous: bool = False) -> list[dict]:
    """One entry per (row, step) of a run's MobileNetV2 result (`FILE` or `FILE:SIZE` for a file without its size);
    `previous`: a run from before the default changed (see the module's docstring)."""
    name, _, given = spec.partition(":")
    path = Path(name)
    out = []
    for res in json.loads(path.read_text()):
        if res.get("model") != "mobilenet_v2":
            continue
        size = int(res.get("size") or given)
        n = len(res["units"])
        for row, r in res["rows"].items():
            if row not in wanted or not r.get("top1"):
                continue
            for s, t in r["top1"].items():
                steps = int(s)
                # the default of the run written out first (the row means the same if the default changes again)
                sets = (PREVIOUS_DEFAULT if previous else lever_sets("fv " + DEFAULT_LEVER, steps)) + \
                    lever_sets(row, steps)
                lever = dict(x.split("=", 1) for x in sets)
                name, at = f"{size}px-{label_of(row, previous)}-{steps}", size
                if int(lever.get("render.coarse_steps", 0)) >= steps:
                    # still in the coarse phase: the picture of a plain render at the coarse size (coarse_scale of
                    # the size, the transforms scaled to it), upsampled for the judge -- that render's schedule
                    at = coarse_size(size, float(lever.get("render.coarse_scale", 0.5)))
                    sets = ["render.coarse_steps=0"] + [x for x in sets if not x.startswith("render.coarse")]
                    label = "+".join(p for p in row.removeprefix("fv ").split("+") if not p.startswith("coarse"))
                    name = f"{at}px-{label_of('fv ' + (label or 'default'), previous)}-{steps}"
                out.append({"name": name, "size": at, "steps": steps, "set": last_wins(sets), "top1": round(float(t["p"]), 4),
                            "objective": round(float(r["objective"][s]), 3), "n": n,
                            "ci": [round(float(c), 3) for c in t["ci"]], "run": path.name})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="--json-out files of TUNE200 runs (FILE, or FILE:SIZE)")
    ap.add_argument("--rows", default="fv default", help="the rows that become schedules (default + kept levers)")
    ap.add_argument("--min-steps", type=int, default=16, help="shorter snapshots are not offered")
    ap.add_argument("--note", default="", help="a line for the header (machine, date, what was run)")
    ap.add_argument("--previous-default", default="", help="run files (names) from before the default changed")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    wanted = {r.strip() for r in a.rows.split(",") if r.strip()}
    best: dict[tuple, dict] = {}
    previous = {x.strip() for x in a.previous_default.split(",") if x.strip()}
    for p in a.runs:
        for e in rows_of(p, wanted, Path(p.split(":")[0]).name in previous):
            key = (e["size"], e["name"])
            if e["steps"] >= a.min_steps and (key not in best or e["n"] > best[key]["n"]):
                best[key] = e
    if not best:
        sys.exit("ttq_schedules: no MobileNetV2 rows with judge scores in those runs")
    entries = sorted(best.values(), key=lambda e: (e["size"], e["name"].rsplit("-", 1)[0], e["steps"]))
    lines = [
        "# Render schedules for `fv sweep --deadline` and `fv render --budget` (fvcli/budget), written by",
        "# scripts/ttq_schedules.py from scripts/bench_time_to_quality.py runs on the TUNE200 classes of the real",
        "# MobileNetV2 (../shared): top1 = the open judge's top-1 over n classes at that step (ci: 95 % Wilson),",
        "# objective = the mean class logit. Measured, never edited by hand; docs/reports/time-to-quality.md.",
        f"# Written {time.strftime('%Y-%m-%d')} from: {', '.join(Path(p.split(':')[0]).name for p in a.runs)}; "
        f"rows: {', '.join(sorted(wanted))}.",
    ] + ([f"# {a.note}"] if a.note else []) + ["schedules:"]
    for e in entries:
        lines.append(f"  - {{name: {e['name']}, size: {e['size']}, steps: {e['steps']}, set: {json.dumps(e['set'])}, "
                     f"top1: {e['top1']}, objective: {e['objective']}, n: {e['n']}, ci: {json.dumps(e['ci'])}}}")
    a.out.write_text("\n".join(lines) + "\n")
    print(f"{a.out}: {len(entries)} schedules")


if __name__ == "__main__":
    main()
