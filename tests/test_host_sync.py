"""No host synchronisation per optimization step, pinned on the CPU.

Why: on a GPU every read of a device value by the host (`.item()`, `float(t)`, `bool(t)`, `.tolist()`, `.cpu()`,
`nonzero`) makes the host wait until the GPU has finished everything queued, so the GPU idles while the host
prepares the next step. fv's loop reads device values only at its NaN checks (every FINITE_CHECK_EVERY steps and at
the first step) and at its snapshots. tests/test_cuda.py checks this with torch's own sync debug mode on a GPU; here
the same property is checked without one: the tensor methods that would synchronize are counted, and the code that
reads a value only where reads are free (`fvcli.models.layers.reads_are_free`: on the CPU) is told it is on a GPU.
Two renders with the same checks and snapshots but different step counts must make the same number of reads.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch

from conftest import tiny_recipe
from fvcli.models import layers, load_model
from fvcli.optvis.loop import FINITE_CHECK_EVERY, render_batch
from fvcli.optvis.objectives import Channel, PerImage

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero", "cpu", "numpy")


@pytest.fixture
def counted(monkeypatch):
    """Counts every call of a synchronizing tensor method; the redirected ReLU believes it is on a GPU."""
    calls: Counter = Counter()
    for name in READS:
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    monkeypatch.setattr(layers, "reads_are_free", lambda t: False)
    return calls


def reads(counted: Counter, model, settings, steps: int) -> Counter:
    counted.clear()
    objective = PerImage(tuple(Channel("block2", c) for c in range(3)))
    for _ in render_batch(model, objective, [1, 2, 3], replace(settings, steps=steps, thresholds=())):
        pass
    return Counter(counted)


@pytest.mark.parametrize("recipe", ["default", "article"])
def test_steps_between_checks_read_nothing_back(counted, recipe, one_thread):
    model = load_model("demo", "cpu")
    settings = tiny_recipe(name=None if recipe == "default" else recipe, size=32).loop_settings()
    # the redirected-ReLU phase (steps 1-16) included: 3 and 14 steps have the same check (step 1) and snapshot
    assert FINITE_CHECK_EVERY > 14
    short, long = reads(counted, model, settings, 3), reads(counted, model, settings, 14)
    assert sum(short.values()) > 0  # the check and the snapshot do read (the counter sees them)
    assert long == short, (short, long)


def test_a_check_is_what_reads(counted, one_thread):
    """The count moves by exactly one check's reads when a check is added (FINITE_CHECK_EVERY steps later)."""
    model = load_model("demo", "cpu")
    settings = tiny_recipe(size=32).loop_settings()
    n = FINITE_CHECK_EVERY
    base, one_more = reads(counted, model, settings, n - 1), reads(counted, model, settings, n + 1)
    later = reads(counted, model, settings, n + 5)
    assert one_more != base and later == one_more
