"""What "the same picture, up to float rounding" means when a unit is rendered in a different batch.

A unit gets the same seed, initial image and transforms alone, in a batch of 64 or in any shard (bitwise: those are
drawn per unit). Its final picture is the same only up to float rounding: the libraries under torch pick kernels by
batch shape and by CPU (oneDNN differs between AVX2, AVX-512 and AMX), so a batch of 14 sums in another order than a
batch of 1, and tens of steps of gradient ascent through random transforms amplify the last bits into visible pixel
differences on a few pixels. Where the batch plan is the same (shards, resume, a killed and rerun sweep) fv promises
bitwise equality, and the suite tests it bitwise; this module is for the other half of the promise.

`same_picture` compares two renders the way the promise is stated (docs/reports/guarantees.md): the mean absolute
difference and the 99th percentile in 8-bit levels, and the unit's objective within a relative error. The largest
single-pixel difference is reported but not bounded: it is the statistic that chaos moves most (6 levels on an
Intel AMX CPU where AMD gives 2, on the same 14-image panel batch) and says least about whether the picture is the
same. The bounds below come from `make drift-report` (scripts/drift_report.py) run on the CPU kinds we meet, the
instruction sets emulated with ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY; its table is in docs/reports/guarantees.md.
With FV_DRIFT_LOG=FILE every comparison appends its numbers to FILE (a JSON line) before asserting.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Drift:
    """Bounds on the difference of two renders of one unit, in 8-bit levels and relative objective."""

    mean_levels: float  # mean |a - b| over all pixels and channels
    p99_levels: float  # 99th percentile of |a - b|
    score_rtol: float  # |score_a - score_b| / max(|score_a|, |score_b|, SCORE_FLOOR)


SCORE_FLOOR = 1.0  # objectives near 0 compare absolutely (a channel mean of ~1e-3 has no meaningful relative error)

# Set from measurements (`make drift-report`; table in docs/reports/guarantees.md, "Alone or in a batch"). Worst seen
# on AMD EPYC (AVX-512 + bf16) under the native, AVX512_CORE and AVX2 ISAs alike: mean 0.12 levels, p99 1 level,
# most-moved pixel 2, objective 1.8e-4 (the 14-image panel batch at one thread; every other comparison was 0 levels).
# Intel AMX moved that same pixel 6 levels (issue #27): 3x AMD. The bounds leave that factor and 2x more on the mean,
# and take the AMX pixel as the p99's ceiling. A real change of picture -- another seed, i.e. a batch-mate's
# randomness leaking in -- measures mean >= 18 levels, p99 >= 70, objective >= 16 % (MobileNetV2 and demo, same
# settings), so it still fails by a factor of ten or more.
BATCH_DRIFT = Drift(mean_levels=1.0, p99_levels=6.0, score_rtol=0.01)


def _levels(image) -> np.ndarray:
    """(3, H, W) float in [0, 1] (torch) or (H, W, 3) uint8 (numpy) -> int levels, channels last."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.asarray(image).astype(np.int64)


def drift(a, b, score_a=None, score_b=None) -> dict:
    """The numbers `same_picture` bounds (and the max, reported only)."""
    d = np.abs(_levels(a) - _levels(b))
    out = {"mean_levels": float(d.mean()), "p99_levels": float(np.percentile(d, 99)), "max_levels": int(d.max()),
           "differing": float((d > 0).mean())}
    if score_a is not None and score_b is not None:
        sa, sb = float(score_a), float(score_b)
        out["score_rel"] = abs(sa - sb) / max(abs(sa), abs(sb), SCORE_FLOOR)
    return out


def same_picture(a, b, score_a=None, score_b=None, *, what: str, tol: Drift = BATCH_DRIFT) -> dict:
    """Assert that two renders of one unit (alone / in another batch) are the same picture within `tol`."""
    got = drift(a, b, score_a, score_b)
    log = os.environ.get("FV_DRIFT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"what": what, "threads": torch.get_num_threads(),
                                "isa": torch.backends.cpu.get_cpu_capability(),
                                "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"), **got}) + "\n")
    assert got["mean_levels"] <= tol.mean_levels and got["p99_levels"] <= tol.p99_levels, (what, got, tol)
    assert got.get("score_rel", 0.0) <= tol.score_rtol, (what, got, tol)
    return got
