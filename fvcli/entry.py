"""The `fv` program's first line: signal handling before any heavy import, then the command line.

Starting `fv` imports Typer, then (per command) numpy, torch and torchvision: seconds in which a Ctrl-C or a
scheduler's SIGTERM used to land in the middle of an import and end in a traceback and exit 1. fvcli.signals is
installed here before anything else is imported, so a signal at any moment of start-up exits 130 / 143 with one line,
as a signal during the work does (`fv` and `python -m fvcli` both start here; tests/test_startup_signals.py).
"""
from __future__ import annotations

from . import signals


def main() -> None:
    signals.install()
    from .cli import main as cli_main

    cli_main()
