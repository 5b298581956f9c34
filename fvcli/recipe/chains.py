"""Transform chains <-> recipe YAML.

A recipe names its transformation robustness either by a preset (`transforms: article`) or as a list of one-key steps
(`- pad: 16`, `- jitter: 16`, `- scale: [...]`, ...), in chain order. This module turns that YAML into the frozen
steps of fvcli/optvis/transforms.py (every value checked, an unknown step named with the valid ones) and back, so
`fv recipe show` prints a chain that reads back to the same steps and the recipe hash sees exactly what renders.
"""
from __future__ import annotations

from typing import Any

from ..errors import FvError, did_you_mean
from ..optvis.transforms import (
    PRESETS,
    Blur,
    Copies,
    Crop,
    Jitter,
    Noise,
    Pad,
    Rotate,
    Scale,
    Step,
    Zoom,
)
from .values import MAX_SIZE, num, num_list, num_range

_STEP_KINDS = ("pad", "jitter", "scale", "rotate", "crop", "zoom", "noise", "blur", "copies")
MAX_COPIES = 64


def transforms_to_yaml(chain: tuple[Step, ...]) -> list[dict]:
    out: list[dict] = []
    for s in chain:
        if isinstance(s, Pad):
            out.append({"pad": s.pixels} if s.value == 0.5 else {"pad": {"pixels": s.pixels, "value": s.value}})
        elif isinstance(s, Jitter):
            out.append({"jitter": s.pixels})
        elif isinstance(s, Scale):
            out.append({"scale": list(s.factors)})
        elif isinstance(s, Rotate):
            out.append({"rotate": list(s.degrees)})
        elif isinstance(s, Crop):
            out.append({"crop": True})
        elif isinstance(s, Zoom):
            out.append({"zoom": [s.lo, s.hi]})
        elif isinstance(s, Noise):
            out.append({"noise": s.std})
        elif isinstance(s, Blur):
            out.append({"blur": [s.lo, s.hi]})
        elif isinstance(s, Copies):
            out.append({"copies": s.n})
    return out


def parse_transforms(v: Any, path: str = "transforms") -> tuple[Step, ...]:
    if isinstance(v, str):
        if v not in PRESETS:
            raise FvError(f"recipe key {path}: unknown preset {v!r}{did_you_mean(v, PRESETS)}; "
                          f"valid: {', '.join(PRESETS)} or a list of steps ({', '.join(_STEP_KINDS)})")
        return PRESETS[v]
    if v is None:
        return ()
    if not isinstance(v, list):
        raise FvError(f"recipe key {path}: expected a preset name ({', '.join(PRESETS)}) or a list of steps")
    chain: list[Step] = []
    for i, item in enumerate(v):
        p = f"{path}[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise FvError(f"recipe key {p}: each step is a one-key mapping, one of: {', '.join(_STEP_KINDS)}")
        ((kind, arg),) = item.items()
        if kind == "pad":
            if isinstance(arg, dict):
                extra = set(arg) - {"pixels", "value"}
                if extra:
                    raise FvError(f"recipe key {p}.pad: unknown keys {sorted(extra)}; valid: pixels, value")
                chain.append(Pad(int(num(arg.get("pixels", 0), f"{p}.pad.pixels", 0, MAX_SIZE, True)),
                                 float(num(arg.get("value", 0.5), f"{p}.pad.value", 0, 1))))
            else:
                chain.append(Pad(int(num(arg, f"{p}.pad", 0, MAX_SIZE, True))))
        elif kind == "jitter":
            chain.append(Jitter(int(num(arg, f"{p}.jitter", 0, MAX_SIZE, True))))
        elif kind == "scale":
            chain.append(Scale(num_list(arg, f"{p}.scale", 0.05, 20.0)))
        elif kind == "rotate":
            chain.append(Rotate(num_list(arg, f"{p}.rotate", -360.0, 360.0)))
        elif kind == "crop":
            chain.append(Crop())
        elif kind == "zoom":  # [low, high] zoom factors (> 1 crops in, < 1 shrinks)
            chain.append(Zoom(*num_range(arg, f"{p}.zoom", 0.05, 20.0)))
        elif kind == "noise":  # std of Gaussian noise in [0, 1] image units
            chain.append(Noise(float(num(arg, f"{p}.noise", 0.0, 1.0))))
        elif kind == "blur":  # [low, high] sigma in pixels
            chain.append(Blur(*num_range(arg, f"{p}.blur", 0.0, 32.0)))
        elif kind == "copies":
            chain.append(Copies(int(num(arg, f"{p}.copies", 1, MAX_COPIES, True))))
        else:
            raise FvError(f"recipe key {p}: unknown transform {kind!r}{did_you_mean(str(kind), _STEP_KINDS)}; "
                          f"valid: {', '.join(_STEP_KINDS)}")
    return tuple(chain)
