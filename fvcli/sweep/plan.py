"""Sweep planning: which units a sweep renders, how they are cut into batches, what each batch costs, and which
shard renders which batch.

Everything here is a pure function of the selection, the batch size and the architecture -- never of the shard, of
what is already done or of the order of the arguments -- so independent processes (shards of a SLURM array, a rerun
after a crash) compute the same plan without talking to each other. That is what makes a unit's PNG the same
whichever shard renders it (see fvcli/sweep/run.py). The selection is also written into each shard's state file in a
compact form (`selection_doc`), so that `finalize` knows what was asked for even for units no shard has written yet.
"""
from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import FvError
from ..models import LoadedModel
from ..models.layer_costs import layer_costs  # noqa: F401  (re-exported: the plan's costs)
from ..units.dictionary import DictSource
from ..units.unit import Unit, dictionary_units, parse_units, safe_name

# units with a channel number (dream units have none); a direction's number is its row in its dictionary
SWEEP_KINDS = ("channel", "neuron", "logit", "prob", "direction")


# ------------------------------------------------------------------------------------------------------------------
# Units and plan


def select_units(model: LoadedModel, specs: Sequence[str] | None, directions: str | None = None,
                 names: str | None = None, cossim: float = 0.0) -> list[Unit]:
    """`LAYER` (every channel), `LAYER:0-63`, `logit:all`, ... -> units; default: every channel of the main layers.

    With `directions` (a dictionary FILE or FILE:KEY), `LAYER` is every row of it over that layer and `LAYER:0-63`
    rows 0-63 (fvcli/units/dictionary.py)."""
    specs = list(specs or [])
    if directions is not None:
        if not specs:
            raise FvError(f"--directions {directions} needs the layer it is a dictionary of: fv sweep LAYER "
                          f"--directions {directions}")
        units = []
        for text in specs:
            layer, _, rows = text.strip().partition(":")
            units += dictionary_units(model, layer, directions, rows or "all", cossim=cossim, names=names)
        return list(dict.fromkeys(units))
    if not specs:
        specs = list(model.main_layers)
        if not specs:
            raise FvError(f"model {model.name} has no main layers; name the layers to sweep (`fv layers {model.name}`)")
    units: list[Unit] = []
    for text in specs:
        text = text.strip()
        if ":" not in text:
            model.layer(text)  # validates, with a did-you-mean
            text = f"{text}:all"
        for u in parse_units(text, model):
            if u.kind not in SWEEP_KINDS or (u.kind == "neuron" and (u.x is not None or u.prefix is not None)):
                raise FvError(f"fv sweep renders channels (LAYER, LAYER:0-63, logit:all, LAYER:5@center), "
                              f"not {u.label!r}; use `fv render` for it")
            units.append(u)
    return list(dict.fromkeys(units))


@dataclass(frozen=True)
class PlannedBatch:
    index: int  # position in the plan
    layer: str
    kind: str
    chunk: int  # channels [chunk*B, (chunk+1)*B) of the layer
    units: tuple[Unit, ...]
    cost: int  # estimated cost (FLOPs of the truncated forward pass x images)
    source: DictSource | None = None  # a dictionary's batch: rows [chunk*B, (chunk+1)*B) of it

    @property
    def id(self) -> str:
        kind = self.kind if self.source is None else f"dir-{self.source.stem}"
        return f"{safe_name(self.layer)}/{kind}-{self.chunk:05d}"


_KIND_ORDER = {k: i for i, k in enumerate(SWEEP_KINDS)}


def plan_sweep(units: Sequence[Unit], batch_size: int, cost_per_image: Mapping[str, int],
               order: Mapping[str, int] | None = None) -> list[PlannedBatch]:
    """Cut units into batches: one (layer, kind) per batch, batch k holding channels [k*B, (k+1)*B).

    Batches are ordered by the layers' position in the network (`order`), then kind and chunk, so the plan is the
    same whatever the order of the arguments."""
    if batch_size < 1:
        raise FvError(f"bad batch size {batch_size}: expected >= 1")
    order = order or {}
    groups: dict[tuple, list[Unit]] = {}
    for u in dict.fromkeys(units):
        groups.setdefault((u.layer, u.kind, u.source, u.channel // batch_size), []).append(u)
    keys = sorted(groups, key=lambda k: (order.get(k[0], 1 << 30), k[0], _KIND_ORDER[k[1]],
                                         k[2].path if k[2] else "", k[2].sha256 if k[2] else "", k[3]))
    plan = []
    for i, (layer, kind, source, chunk) in enumerate(keys):
        members = tuple(sorted(groups[(layer, kind, source, chunk)], key=lambda u: u.channel))
        plan.append(PlannedBatch(i, layer, kind, chunk, members,
                                 max(1, int(cost_per_image.get(layer, 1))) * len(members), source))
    return plan


def assign_shards(costs: Sequence[int], n: int) -> list[int]:
    """Greedy longest-processing-time: the costliest batch first, each to the least-loaded shard (ties: lowest index).

    Deterministic; the most and least loaded shards differ by at most one batch's cost."""
    if n < 1:
        raise FvError(f"bad shard count {n}: expected >= 1")
    out = [0] * len(costs)
    heap = [(0, s) for s in range(n)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, s = heapq.heappop(heap)
        out[i] = s
        heapq.heappush(heap, (load + costs[i], s))
    return out


# ------------------------------------------------------------------------------------------------------------------
# Shards


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (0 <= I < N) -> (I, N)."""
    i_s, sep, n_s = text.strip().partition("/")
    if not sep or not i_s.strip().isdigit() or not n_s.strip().isdigit():
        raise FvError(f"bad shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    i, n = int(i_s), int(n_s)
    if n < 1:
        raise FvError(f"bad shard {text!r}: the shard count N must be at least 1, e.g. 0/4")
    if not 0 <= i < n:
        raise FvError(f"bad shard {text!r}: the index must be in 0-{n - 1} for {n} shard(s)")
    return i, n


def _env_int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    text = str(env[name]).strip()
    if not text.isdigit() or int(text) < minimum:
        raise FvError(f"bad {name}={env[name]!r} in the environment: expected an integer >= {minimum}")
    return int(text)


def shard_from_env(env: Mapping[str, str] | None = None, count: int | None = None) -> tuple[int, int] | None:
    """The shard given by the environment, or None.

    FV_SHARD=I/N; SLURM job arrays: (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP of
    SLURM_ARRAY_TASK_COUNT (--array=0-7, 1-8, 0-14:2 and a %K concurrency cap all work; a list such as 1,3,7 does
    not); Kubernetes indexed jobs: JOB_COMPLETION_INDEX of FV_SHARD_COUNT or `count` (a pod does not see its job's
    completions count, so set FV_SHARD_COUNT to it in the pod template)."""
    env = os.environ if env is None else env
    if env.get("FV_SHARD"):
        return parse_shard(env["FV_SHARD"])
    if env.get("SLURM_ARRAY_TASK_ID"):
        if not count and not env.get("SLURM_ARRAY_TASK_COUNT"):
            raise FvError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard-count N")
        n = count or _env_int(env, "SLURM_ARRAY_TASK_COUNT", 1)
        offset = _env_int(env, "SLURM_ARRAY_TASK_ID") - (_env_int(env, "SLURM_ARRAY_TASK_MIN")
                                                         if env.get("SLURM_ARRAY_TASK_MIN") else 0)
        step = _env_int(env, "SLURM_ARRAY_TASK_STEP", 1) if env.get("SLURM_ARRAY_TASK_STEP") else 1
        if offset < 0 or offset % step:
            raise FvError(f"SLURM array task {env['SLURM_ARRAY_TASK_ID']} is not in the array's range (min "
                          f"{env.get('SLURM_ARRAY_TASK_MIN')}, step {step}); use a range such as --array=0-{n - 1}")
        return parse_shard(f"{offset // step}/{n}")
    if env.get("JOB_COMPLETION_INDEX"):
        if not count and not env.get("FV_SHARD_COUNT"):
            raise FvError("JOB_COMPLETION_INDEX is set but the shard count is unknown: set FV_SHARD_COUNT to the "
                          "job's completions (or pass --shard-count N)")
        n = count or _env_int(env, "FV_SHARD_COUNT", 1)
        return parse_shard(f"{_env_int(env, 'JOB_COMPLETION_INDEX')}/{n}")
    if count:
        raise FvError("--shard-count needs a shard index from the environment (SLURM_ARRAY_TASK_ID or "
                      "JOB_COMPLETION_INDEX); or pass --shard I/N")
    return None


# ------------------------------------------------------------------------------------------------------------------
# Selections (what a shard was asked to do), stored in its state file


def channel_ranges(nums: Iterable[int]) -> str:
    """Channel numbers as compact text: [0, 1, 2, 3, 7] -> "0-3,7" (read back by `_unranges`)."""
    nums = sorted(set(nums))
    parts, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


def _unranges(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def selection_doc(units: Sequence[Unit], order: Mapping[str, int]) -> list[dict]:
    groups: dict[tuple, list[int]] = {}
    for u in units:
        groups.setdefault((u.layer, u.kind, u.source), []).append(u.channel)
    keys = sorted(groups, key=lambda k: (order.get(k[0], 1 << 30), k[0], _KIND_ORDER[k[1]], k[2].path if k[2] else ""))
    return [{"layer": layer, "kind": kind, "order": order.get(layer), "channels": channel_ranges(groups[(layer, kind, src)]),
             **({"dictionary": src.to_dict()} if src is not None else {})}
            for layer, kind, src in keys]


def selection_units(doc: Sequence[dict]) -> list[Unit]:
    out = []
    for g in doc:
        src = DictSource.from_dict(g["dictionary"]) if g.get("dictionary") else None
        out += [Unit(g["kind"], g["layer"], c, source=src) for c in _unranges(g["channels"])]
    return out
