"""`--deadline` values: a duration (`8h`, `1h30m`, `90m`, `3600s`, `2d`) or a wall-clock time (`06:30`).

A cron job started at 22:00 says `--deadline 06:30` (the next 06:30, local time); a cluster job with a time limit
says `--deadline 7h45m`. Either way the planner gets seconds from now.
"""
from __future__ import annotations

import datetime as dt
import re

from ..errors import FvError

_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def fmt_duration(seconds: float) -> str:
    """`42 s`, `12.5 min`, `7.6 h`: a duration as a person reads it."""
    s = abs(seconds)
    text = f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"
    return ("-" if seconds < 0 else "") + text


def parse_duration(text: str) -> float:
    """Seconds in `8h`, `1h30m`, `90m`, `45s`, `2d`, `1.5h` (a bare number is hours)."""
    t = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t) * 3600.0
    parts = _DURATION.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise FvError(f"bad duration {text!r}: expected e.g. 8h, 1h30m, 90m, 3600s, 2d (or a time of day, 06:30)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def parse_deadline(text: str, now: dt.datetime | None = None) -> float:
    """Seconds from `now` until the deadline `text`: a duration, or the next HH:MM (local time)."""
    m = _CLOCK.match(text.strip())
    if m:
        now = now or dt.datetime.now()
        at = now.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)
        if at <= now:
            at += dt.timedelta(days=1)
        return (at - now).total_seconds()
    seconds = parse_duration(text)
    if seconds <= 0:
        raise FvError(f"bad deadline {text!r}: it must be later than now")
    return seconds
