"""Recipe values: the number checks every recipe key goes through.

A recipe is untrusted text typed by a person; a wrong value must fail at load time with its dotted path, what was
expected and the allowed range, never later as a shape error in the middle of a sweep. These three checks (a number,
a list of numbers, a [low, high] range) are shared by the section dataclasses (fvcli/recipe/schema.py) and the transform
steps (fvcli/recipe/chains.py), so every key words its errors the same way.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import FvError

MAX_SIZE = 2048  # the largest render size (and pixel amount of a transform step)


def num_range(v: Any, path: str, lo: float, hi: float) -> tuple[float, float]:
    r = num_list(v, path, lo, hi)
    if len(r) != 2 or r[0] > r[1]:
        raise FvError(f"recipe key {path}: expected [low, high] with low <= high, got {v!r}")
    return r[0], r[1]


def num(v: Any, path: str, lo: float, hi: float, integer: bool = False) -> float:
    if isinstance(v, str) and not integer:  # YAML 1.1 reads exponents without a dot (1e-4) as strings
        try:
            v = float(v)
        except ValueError:
            pass
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
        raise FvError(f"recipe key {path}: expected {'an integer' if integer else 'a number'}, got {v!r}")
    if not lo <= v <= hi:
        raise FvError(f"recipe key {path}: {v!r} out of range [{lo:g}, {hi:g}]")
    return v


def num_list(v: Any, path: str, lo: float, hi: float) -> tuple[float, ...]:
    if not isinstance(v, list) or not v or len(v) > 1000:
        raise FvError(f"recipe key {path}: expected a non-empty list of numbers, got {v!r}")
    return tuple(float(num(x, f"{path}[{i}]", lo, hi)) for i, x in enumerate(v))
