"""The `fv` command line: thin Typer commands over the library, and nothing else.

Each command parses its arguments, builds a recipe (defaults < YAML < `--set` < flags) and calls one library
function; errors become one line and an exit code (2 bad input, 1 runtime failure). The parts: `common` (the app,
shared option types, error handling, logging), `commands` (render, interpolate, layers, examples, article,
spectrum), `sweep`, `gallery`, `concepts`, `circuit`, `admin` (weights and recipes) and `completion` (shell
completion that never imports torch). Importing this package imports neither torch nor torchvision: `fv --help` stays instant.
"""
from __future__ import annotations

# Importing a module registers its commands on `app`, in this order (the order of `fv --help`).
from . import commands, sweep, gallery, concepts, circuit, admin  # noqa: F401,I001
from .commands import app, main

__all__ = ["app", "main"]
