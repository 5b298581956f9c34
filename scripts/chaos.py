"""Chaos run: a cluster losing nodes all night, on one machine, checked byte for byte.

Why: fv's promise is that a sweep killed at any moment resumes to the files an uninterrupted run writes. Unit tests
kill a few processes at chosen moments; this script kills many at random ones (seeded, the seed printed) across every
writer that shares a sweep directory:

  * 3 shards of a demo-model sweep running at once, shard 0 double-submitted (two processes on the same shard, as a
    re-queued cluster job would be; the second must wait on the shard lock or find nothing to do),
  * an `fv examples` pass over a generated image folder into the same directory (its checkpoints killed too),
  * then the finalizer (`fv sweep --finalize`),

each process sent SIGKILL, SIGTERM or SIGINT at a random moment and restarted until it exits 0 (a victim killed
`--cap` times in one round is then left to finish, so every round ends). Any other exit code is a failure. Rounds
repeat, each in a fresh directory, until `--kills` kills were survived. Each round's directory is then compared with
one uninterrupted reference run: the same file names, every file byte-identical except the timing and process fields
of the JSON records (`VOLATILE`, which an interrupted run legitimately changes), no temporary file left, every JSON
parseable, every unit's record present once. It prints kills survived, files compared and mismatches, and exits 1
on any mismatch.

    python scripts/chaos.py --kills 100 [--seed N]      (make chaos)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
# how a killed fv may end: finished just before the signal (0), fv's own exits for SIGINT / SIGTERM (130 / 143), or
# the signal's default action (before fv's handlers are installed, e.g. while torch imports)
SIGNAL_EXITS = {0, 130, 143, -signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT}
# JSON fields that differ between any two runs (clocks, processes, hosts), or between an interrupted and an
# uninterrupted run (per-run timing, the list of runs a shard's state keeps, how far an examples pass resumed from).
VOLATILE = {"finalized", "created", "created_by", "started", "ended", "updated", "finished", "generated", "seconds", "wall_seconds",
            "render_seconds", "seconds_per_unit", "units_per_hour_per_process", "images_per_second", "runs", "host",
            "pid", "threads", "resumed_from", "timing", "time", "elapsed", "date", "timestamp"}
# a unit page shows its record's timing (the HTML twin of the "seconds" field)
# and the sweep's page its throughput and the finalizer's clock
HTML_VOLATILE = re.compile(r"<th>seconds</th><td>[^<]*</td>|[0-9.]+ units/hour/process|finalized [0-9T:+-]+")
# the gallery's stat caches: file sizes and mtime_ns of the images they summarise (a restarted writer rewrites them
# at another time), and the signatures over them (thumbs.sig, a large layer's thumbs-NNN.sig, the sheets'
# sheets.json); they are derived, rebuilt whenever they disagree
STAT_CACHES = ("gallery/cache.json", "gallery/sheets.json", ".sig")
# files that exist only while (or because) processes ran: locks; they hold no result
IGNORED_NAMES = {".finalize.lock"}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@dataclass
class Job:
    """One command to run to completion (exit 0), restarted after each kill."""

    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    kill_at: float | None = None
    kills: int = 0
    done: bool = False
    log: list[str] = field(default_factory=list)


def fv(*args: str) -> list[str]:
    return [sys.executable, "-m", "fvcli", *args]


def sweep_args(out: Path, units: list[str], shard: str | None) -> list[str]:
    a = ["sweep", *units, "--model", "demo", "--size", "32", "--steps", "8", "-b", "4", "--device", "cpu",
         "-o", str(out), "-q"]
    return fv(*a, *(["--shard", shard] if shard else []))


def examples_args(out: Path, images: Path, layer: str) -> list[str]:
    return fv("examples", str(images), layer, "--model", "demo", "-o", str(out), "-q", "--workers", "0",
              "--batch-size", "4", "--checkpoint-every", "1", "--threads", "1", "--top-k", "3", "--device", "cpu")


def make_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    from fvcli.models.demo_data import DEMO_CLASSES, generate

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = generate(i % len(DEMO_CLASSES), 48, rng)
        Image.fromarray((img * 255).round().astype("uint8")).save(folder / f"img{i:03d}.png")


def run_plain(*argvs: list[str]) -> None:
    """Run commands concurrently, each to completion; any failure ends the script."""
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) for a in argvs]
    for a, p in zip(argvs, procs):
        _, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"reference run failed ({p.returncode}): {' '.join(a)}\n{err}")


def reference(out: Path, units: list[str], images: Path, layer: str) -> None:
    """The uninterrupted run: the chaos run's phases, untouched (the shards and the examples pass at once, then the
    finalizer)."""
    run_plain(sweep_args(out, units, "0/3"), sweep_args(out, units, "1/3"))
    run_plain(sweep_args(out, units, "2/3"), examples_args(out, images, layer))  # sweep.json exists already
    run_plain(fv("sweep", "--finalize", "-o", str(out), "-q"))


def _start(job: Job, rng: random.Random, max_delay: float, cap: int, kills_left: int) -> None:
    job.proc = subprocess.Popen(job.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    job.kill_at = time.monotonic() + rng.uniform(0.2, max_delay) if job.kills < cap and kills_left > 0 else None


def run_phase(jobs: list[Job], rng: random.Random, max_delay: float, cap: int, budget: list[int],
              failures: list[str]) -> int:
    """Run `jobs` concurrently, killing at random, restarting, until each exits 0; returns kills done."""
    kills = 0
    for j in jobs:
        _start(j, rng, max_delay, cap, budget[0])
    while not all(j.done for j in jobs):
        time.sleep(0.05)
        for j in jobs:
            if j.done or j.proc is None:
                continue
            code = j.proc.poll()
            if code is None:
                if j.kill_at is not None and time.monotonic() >= j.kill_at and budget[0] > 0:
                    sig = rng.choice(SIGNALS)
                    j.proc.send_signal(sig)
                    _, err = j.proc.communicate(timeout=300)
                    j.kills += 1
                    kills += 1
                    budget[0] -= 1
                    j.log.append(f"{signal.Signals(sig).name} -> {j.proc.returncode}")
                    if j.proc.returncode not in SIGNAL_EXITS:  # e.g. 1: an error on the way out
                        failures.append(f"{j.name} exited {j.proc.returncode} after {signal.Signals(sig).name}: "
                                        f"{err.strip()[-300:]}")
                    if j.proc.returncode == 0:  # it finished just before the signal landed
                        j.done = True
                    else:
                        _start(j, rng, max_delay, cap, budget[0])
                continue
            _, err = j.proc.communicate()
            if code == 0:
                j.done = True
            else:  # an exit nobody asked for: a real failure
                failures.append(f"{j.name} exited {code} unprompted: {err.strip()[-400:]}")
                j.done = True
    return kills


# -- comparison --------------------------------------------------------------------------------------------------


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def files_of(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in IGNORED_NAMES and p.suffix != ".lock"}


def compare(ref: Path, out: Path, expected_units: int) -> tuple[int, list[str]]:
    """(files compared, problems) of a chaos round's directory against the reference."""
    problems: list[str] = []
    a, b = files_of(ref), files_of(out)
    for name in sorted(set(a) ^ set(b)):
        problems.append(f"{name}: only in {'the reference' if name in a else 'the chaos run'}")
    temps = [n for n in b if n.endswith(".tmp") or "~" in Path(n).name or Path(n).name.startswith(".") and
             n.endswith(".part")]
    problems += [f"{n}: temporary file left behind" for n in temps]
    compared = 0
    for name in sorted(set(a) & set(b)):
        compared += 1
        x, y = a[name].read_bytes(), b[name].read_bytes()
        if name.endswith(".json"):
            try:
                jy = json.loads(y)
            except ValueError as exc:
                problems.append(f"{name}: unparseable JSON ({exc})")
                continue
            if x != y and not name.endswith(STAT_CACHES) and _strip(json.loads(x)) != _strip(jy):
                problems.append(f"{name}: JSON differs beyond timing fields")
        elif name.endswith(STAT_CACHES):
            continue
        elif name.endswith(".html") and x != y:
            if HTML_VOLATILE.sub("", x.decode()) != HTML_VOLATILE.sub("", y.decode()):
                problems.append(f"{name}: HTML differs beyond the timing field")
        elif x != y:
            problems.append(f"{name}: bytes differ")
    records = [n for n in b if n.startswith("layers/") and n.endswith(".json") and n.count("/") == 2
               and not n.endswith(".examples.json")]
    keys = [json.loads(b[n].read_text()).get("key") for n in records]
    if len(keys) != len(set(keys)) or len(keys) != expected_units:
        problems.append(f"unit records: {len(keys)} files, {len(set(keys))} distinct keys, {expected_units} expected")
    return compared, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=100, help="kills to survive in all (rounds repeat until then)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the kill schedule (default: random, printed)")
    ap.add_argument("--units", default="block2:0-23,block3:0-11", help="the sweep's units (comma-separated specs)")
    ap.add_argument("--images", type=int, default=48, help="images of the examples pass")
    ap.add_argument("--max-delay", type=float, default=6.0, help="a kill lands 0.2 s to this long after a start")
    ap.add_argument("--cap", type=int, default=4, help="kills per victim per round, after which it may finish")
    ap.add_argument("--max-rounds", type=int, default=50)
    ap.add_argument("--finalizer-kills", type=int, default=2, help="kills of each round's budget kept for the finalizer")
    ap.add_argument("--require", default="examples,finalizer,shard",
                    help="victims that must have been killed at least once (rounds repeat until then)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep everything here (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"chaos: seed {seed} (rerun with --seed {seed})", flush=True)
    rng = random.Random(seed)
    units = args.units.split(",")
    layer = units[0].split(":")[0]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fv-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        images = work / "images"
        make_images(images, args.images)
        ref = work / "reference"
        shutil.rmtree(ref, ignore_errors=True)
        reference(ref, units, images, layer)
        expected = len([p for p in (ref / "layers").glob("*/*.json") if not p.name.endswith(".examples.json")])
        t_ref = time.monotonic() - t0
        print(f"chaos: reference run {t_ref:.0f} s, {len(files_of(ref))} files, {expected} units", flush=True)
        budget, total_kills, total_files, mismatches, failures, rounds = [args.kills], 0, 0, [], [], 0
        by_victim: dict[str, int] = {}
        required = [r for r in args.require.split(",") if r]

        def more() -> bool:
            unmet = [r for r in required if not any(by_victim.get(v) for v in by_victim if v.startswith(r))]
            return budget[0] > 0 or rounds == 0 or bool(unmet)

        while more() and rounds < args.max_rounds:
            if rounds and budget[0] <= 0:  # another round only for a victim not yet killed: a small budget
                budget[0] = args.finalizer_kills + 3
            rounds += 1
            out = work / f"round{rounds:02d}"
            shutil.rmtree(out, ignore_errors=True)
            phase1 = [Job(f"shard {s}", sweep_args(out, units, s)) for s in ("0/3", "1/3", "2/3")]
            phase1.insert(1, Job("shard 0/3 (double-submitted)", sweep_args(out, units, "0/3")))
            # `fv examples` starts at once, with the shards: whether it writes before or after a shard claims the
            # directory (sweep.json), its files must end beside the renders (the finalizer adopts top-level ones,
            # fvcli/sweep/adopt.py), as in the reference where the directory is a sweep's already
            phase1.append(Job("examples", examples_args(out, images, layer)))
            p1 = [max(0, budget[0] - args.finalizer_kills)]  # some kills kept for the finalizer
            k = run_phase(phase1, rng, args.max_delay, args.cap, p1, failures)
            budget[0] -= k
            fin = [Job("finalizer", fv("sweep", "--finalize", "-o", str(out), "-q"))]
            k += run_phase(fin, rng, min(args.max_delay, 3.0), args.cap, budget, failures)
            for j in phase1 + fin:
                by_victim[j.name] = by_victim.get(j.name, 0) + j.kills
            n, problems = compare(ref, out, expected)
            total_kills += k
            total_files += n
            mismatches += [f"round {rounds}: {p}" for p in problems]
            print(f"chaos: round {rounds}: {k} kills, {n} files compared, {len(problems)} mismatch(es)", flush=True)
            if not args.workdir:
                shutil.rmtree(out, ignore_errors=True)
        for line in failures + mismatches[:50]:
            print(f"chaos: FAIL {line}", flush=True)
        print(f"chaos: seed {seed}; {rounds} round(s); kills survived: {total_kills} "
              f"({', '.join(f'{n} {v}' for v, n in by_victim.items())}); files compared: {total_files}; "
              f"mismatches: {len(mismatches)}; failures: {len(failures)}; {time.monotonic() - t0:.0f} s", flush=True)
        return 1 if mismatches or failures else 0
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
