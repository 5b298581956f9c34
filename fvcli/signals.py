"""SIGINT and SIGTERM: exit 130 / 143 cleanly whenever they land -- but never in the middle of an import.

fv stops between two writes when it is interrupted: every file is renamed into place whole, so during a command the
signal is raised as an exception (KeyboardInterrupt for Ctrl-C, its subclass `Terminated` for SIGTERM) that unwinds
the stack, and the command line turns it into one line and exit 130 / 143 (fvcli/cli/common.py). Before a command has
started -- while `fv` imports Typer and parses its arguments -- nothing has been written, so the signal exits at once
(`SystemExit`, not an exception that Click would turn into "Aborted!" and exit 1).

One moment is not safe either way: while a module is being imported. An exception there leaves the module half-made
-- `from fvcli.recipe import Recipe` then fails with an ImportError, numpy's lazy `__getattr__` recurses -- and the
process ends in a traceback and exit 1 (both found by scripts/chaos.py). So the handlers look at the interrupted
stack: inside the import machinery (`importlib._bootstrap` frames) the signal is only noted, and re-checked every
`RETRY_SECONDS` by an interval timer (SIGALRM) until the import is over; then it is delivered as above.

`install(during_command=False)` is the first thing the `fv` entry point does (fvcli/entry.py), before any heavy import;
each command installs `during_command=True` for its duration and `restore`s the entry's handlers afterwards.
Signal handlers are the process's, by nature: the one piece of module state here is the signal noted during an import.
"""
from __future__ import annotations

import signal
import sys
from types import FrameType

RETRY_SECONDS = 0.02  # how often a signal that landed inside an import checks whether the import is over
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as a shell reports it
_IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
_pending: list[int] = []  # a signal noted during an import, delivered once the import is over


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that it unwinds like Ctrl-C (files are only ever renamed into place)."""


def importing(frame: FrameType | None) -> bool:
    """True when `frame` runs inside an import: some frame below it belongs to the import machinery."""
    while frame is not None:
        if frame.f_code.co_filename in _IMPORT_MACHINERY:
            return True
        frame = frame.f_back
    return False


def _handlers(during_command: bool):
    def deliver(signum: int) -> None:
        _pending.clear()
        if during_command:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        what = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"fv: {what} outside a command's work (starting or ending); no file was being written", file=sys.stderr)
        raise SystemExit(EXIT_CODES[signum])

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not importing(frame):
            deliver(signum)
        elif not _pending:
            _pending.append(signum)
            signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)

    def on_alarm(_signum: int, frame: FrameType | None) -> None:
        if not _pending:
            return
        if importing(frame):
            signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        else:
            deliver(_pending[0])

    return on_signal, on_alarm


def install(during_command: bool = False) -> dict[int, object] | None:
    """Install the handlers; returns the previous ones (for `restore`), or None off the main thread (where Python
    allows no signal handlers, e.g. some test runners), leaving signals alone."""
    on_signal, on_alarm = _handlers(during_command)
    try:
        previous = {s: signal.signal(s, on_signal) for s in EXIT_CODES}
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_alarm)
    except ValueError:
        return None
    return previous


def restore(previous: dict[int, object] | None) -> None:
    """Put back the handlers `install` replaced (a no-op for None). A signal still waiting for its import to end
    goes to the restored handler, so it is neither lost nor left to a timer whose handler is gone."""
    if previous is None:
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    for s, handler in previous.items():
        signal.signal(s, handler)
    if _pending:
        signal.raise_signal(_pending.pop())
