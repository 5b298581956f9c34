#!/usr/bin/env python
"""fv's own share of a one-step render: the wall time of `fv render ... --steps 1 --size 64` minus that of
`python -c "import torch, torchvision"` (what any PyTorch tool pays), best of `--rounds` fresh processes each,
the commands alternating so that both see the same machine.

    .venv/bin/python scripts/bench_startup.py            # make bench-startup
    .venv/bin/python scripts/bench_startup.py --rounds 5 --profile

Cases: InceptionV1 with random weights (`mixed4a:0 --weights random:0`) and the demo model (`logit:0 --model demo`),
both 1 step at 64 px into a temporary directory. Target: fv's share under 1 s. `--profile` also prints the top
functions (cProfile, cumulative) of one in-process InceptionV1 run after torch and torchvision are imported.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TARGET_SECONDS = 1.0
CASES = {
    "inceptionv1 random:0": ["mixed4a:0", "--weights", "random:0"],
    "demo": ["logit:0", "--model", "demo"],
}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"bench_startup: {' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    py = sys.executable
    base_cmd = [py, "-c", "import torch, torchvision"]
    with tempfile.TemporaryDirectory() as tmp:
        cmds = {"import torch, torchvision": base_cmd}
        for name, extra in CASES.items():
            cmds[f"fv render, {name}"] = [py, "-m", "fvcli", "render", *extra, "--steps", "1", "--size", "64",
                                         "--out", os.path.join(tmp, name.split()[0])]
        times: dict[str, list[float]] = {k: [] for k in cmds}
        load = [round(x, 2) for x in os.getloadavg()]
        for r in range(args.rounds):
            for name, cmd in (cmds.items() if r % 2 == 0 else reversed(cmds.items())):
                times[name].append(timed(cmd))
    base = min(times["import torch, torchvision"])
    print(f"best of {args.rounds} fresh processes each, alternating; 1-min load average {load[0]} before, "
          f"{round(os.getloadavg()[0], 2)} after ({os.cpu_count()} cores)")
    for name, ts in times.items():
        print(f"{name:<36} best {min(ts):6.2f} s   (each: {' '.join(f'{t:.2f}' for t in ts)})")
    for name in CASES:
        share = min(times[f"fv render, {name}"]) - base
        verdict = "met" if share < TARGET_SECONDS else f"not met ({share / TARGET_SECONDS:.1f}x the target)"
        print(f"fv's own share, {name}: {share:.2f} s (target < {TARGET_SECONDS:.0f} s: {verdict})")
    if args.profile:
        code = ("import cProfile, pstats, sys, tempfile, torch, torchvision\n"
                "from fvcli.cli import main\n"
                "sys.argv = ['fv', 'render', 'mixed4a:0', '--weights', 'random:0', '--steps', '1', '--size', '64',"
                " '--out', tempfile.mkdtemp()]\n"
                "pr = cProfile.Profile(); pr.enable()\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "pr.disable(); pstats.Stats(pr).sort_stats('cumulative').print_stats(25)\n")
        print(subprocess.run([py, "-c", code], capture_output=True, text=True, env=_env()).stdout)


if __name__ == "__main__":
    main()
