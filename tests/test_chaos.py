"""A short chaos run (scripts/chaos.py) inside the suite: >= 10 random SIGKILL / SIGTERM / SIGINT across 3 concurrent
shards (one double-submitted), an `fv examples` pass and the finalizer, then zero byte differences from an
uninterrupted run, no temporary file, no partial JSON, every unit once.

Why here: `make chaos` (>= 100 kills) takes minutes and runs on demand; this keeps the same machinery honest on every
`make test`. The seed is fixed so that a failure can be replayed with `python scripts/chaos.py --seed 22 ...`.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_chaos_run_has_no_mismatch(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--kills", "10", "--seed", "22", "--units",
           "block2:0-11", "--images", "16", "--max-delay", "2", "--cap", "3", "--workdir", str(tmp_path / "w"),
           "--max-rounds", "6", "--require", "examples,finalizer,shard"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    last = out.strip().splitlines()[-1]
    m = re.search(r"kills survived: (\d+) \((.*)\); files compared: (\d+); mismatches: (\d+); failures: (\d+)", last)
    assert m, out
    kills, victims, files, mismatches, failures = int(m[1]), m[2], int(m[3]), int(m[4]), int(m[5])
    assert kills >= 10 and mismatches == 0 and failures == 0 and files > 100, last
    per = {x.split(" ", 1)[1]: int(x.split(" ", 1)[0]) for x in victims.split(", ")}  # "2 examples, 1 finalizer"
    # the examples pass starts with the shards, before or after they claim the directory (fvcli/sweep/adopt.py)
    assert per.get("finalizer", 0) >= 1 and per.get("examples", 0) >= 1, last
    assert sum(v for k, v in per.items() if k.startswith("shard")) >= 1, last
