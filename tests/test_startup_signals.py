"""SIGINT / SIGTERM at any moment of start-up, imports included: exit 130 / 143, one line, no traceback.

The chaos run (scripts/chaos.py) found signals landing inside an import -- numpy's, a lazy `fvcli.recipe` attribute --
that left a module half-made and ended in a traceback and exit 1. fvcli/signals.py defers a signal until the import
is over; fvcli/entry.py installs it before fv imports anything heavy. The first test pins the deferral exactly (a
module that signals itself in the middle of its own import); the second sends real signals to real `fv` processes at
spread-out moments of their start-up, after the entry point's handlers are in place (read from /proc: SigCgt).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(extra_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(extra_path or ""), str(ROOT),
                                                                    os.environ.get("PYTHONPATH", "")])))
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("during_command", [False, True])
def test_a_signal_inside_an_import_waits_for_the_import_to_finish(tmp_path, sig, code, during_command):
    (tmp_path / "selfkill.py").write_text(textwrap.dedent(f"""
        import os, signal, time
        os.kill(os.getpid(), {int(sig)})   # lands here, in the middle of this module's import
        time.sleep(0.2)                    # the import goes on (several retries of the deferred delivery)
        import json                        # a nested import after the signal
        COMPLETE = True
    """))
    script = textwrap.dedent(f"""
        import sys, time
        from fvcli import signals
        signals.install(during_command={during_command})
        try:
            import selfkill
            time.sleep(5)  # delivered once the import is over (within a retry), not after this
            print("never delivered", file=sys.stderr)
            sys.exit(0)
        except KeyboardInterrupt as exc:
            assert sys.modules["selfkill"].COMPLETE  # the import ran to its end: no half-made module
            print("unwound after the import:", type(exc).__name__, file=sys.stderr)
            sys.exit({code})
    """)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and "never delivered" not in r.stderr, r.stderr
    assert time.monotonic() - t0 < 4
    want = ("Terminated" if sig == signal.SIGTERM else "KeyboardInterrupt") if during_command else "no file was being written"
    assert want in r.stderr, r.stderr


def _caught(pid: int) -> int:
    """The signals a process catches (its SigCgt mask from /proc), 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc to see when handlers are in place")
def test_signals_at_any_moment_of_fv_start_up_exit_cleanly(tmp_path):
    """Eight real `fv sweep` processes (the demo model; start-up imports typer, numpy, torch, torchvision), each
    signalled once at a different moment between the entry point's first line and the first rendered unit."""
    want = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    results = []
    for i, delay in enumerate([0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2]):
        sig = (signal.SIGTERM, signal.SIGINT)[i % 2]
        out = tmp_path / f"s{i}"
        p = subprocess.Popen([sys.executable, "-m", "fvcli", "sweep", "block3:0-7", "--model", "demo", "--size", "24",
                              "--steps", "8", "--device", "cpu", "-o", str(out), "-q"],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while _caught(p.pid) & want != want and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        results.append((delay, signal.Signals(sig).name, p.returncode, err.strip()[-400:]))
    # 130 / 143: fv's handlers; the signal's own death (-2 / -15): it landed while Python was shutting down, after the
    # work (the interpreter puts the default handlers back then) -- also a clean exit by the signal, with no traceback
    bad = [r for r in results if "Traceback" in r[3]
           or r[2] not in (0, {"SIGINT": 130, "SIGTERM": 143}[r[1]], -getattr(signal, r[1]))]
    assert not bad, "\n".join(map(str, bad))
    assert sum(1 for r in results if r[2] in (130, 143)) >= 6, results  # most landed before the work was done
