"""The one error family of fv.

`FvError` is bad input (exit code 2): its message names the bad value and the valid choices.
`FvRuntimeError` is a failure while doing valid work (exit code 1): disk full, numerical trouble.
The CLI prints either as one line without a traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def one_line(text: str) -> str:
    """Escape control characters so that an error message (which may quote user input) stays one line."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in str(text))


class FvError(Exception):
    """Bad input: unknown name, value out of range, malformed recipe, unreadable weights."""

    exit_code = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(one_line(message))


class FvRuntimeError(FvError):
    """A failure while doing valid work (I/O, numerical faults)."""

    exit_code = 1


def did_you_mean(bad: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    close = difflib.get_close_matches(str(bad), list(choices), n=n, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def summarize_choices(choices: Iterable[str], limit: int = 12) -> str:
    """A short comma list of valid choices, elided after `limit` entries."""
    items = list(choices)
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"
