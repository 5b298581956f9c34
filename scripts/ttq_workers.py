"""The worker half of scripts/bench_time_to_quality.py: what runs in each fresh process (one per row and chunk).

`worker_fv` renders a chunk of units with a fv row's recipe (the model's default, the article's settings, the
convergence stop, or a lever of scripts/ttq_levers.py), `worker_lucent` with torch-lucent's `render_vis` -- one call
per unit (`lucent`, as its README runs it) or the chunk jointly (`lucent batched`). Both save every snapshot as an
8-bit PNG and return the wall clock after every step; the parent (bench_time_to_quality.py) turns those into seconds
per unit and scores the PNGs.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import torch

from bench_matrix import MATRIX  # the five models
from ttq_levers import lever_sets  # the early-quality levers


def slug(row: str) -> str:
    return row.replace(" ", "-")


def spec_of(key: str) -> dict:
    for k, _label, spec, _conv in MATRIX:
        if k == key:
            return spec
    raise SystemExit(f"--only: unknown model {key!r}; valid: {', '.join(m[0] for m in MATRIX)}")


def label_of(key: str) -> str:
    return next(label for k, label, _s, _c in MATRIX if k == key)


def fv_recipe(key: str, row: str, size: int, steps: int, thresholds: list[int], batch: int, device: str = "cpu"):
    import copy

    from fvcli.recipe import from_dict, parse_set, read_yaml, resolve_recipe_path, set_path

    spec = spec_of(key)
    raw = copy.deepcopy(read_yaml(resolve_recipe_path(spec.get("recipe") or "default")))
    if not spec.get("recipe"):
        raw["model"] = {"name": spec["model"], "weights": spec["weights"]}
    if row == "fv article":
        art = read_yaml(resolve_recipe_path("article"))
        for sec in ("param", "transforms", "regularizers", "gradient"):
            if sec in art:
                raw[sec] = copy.deepcopy(art[sec])
        for k, v in (art.get("render") or {}).items():
            if k not in ("steps", "size", "thresholds", "seed", "batch_size", "device"):
                raw.setdefault("render", {})[k] = v
    if row == "fv converge":
        raw.setdefault("stop", {})["converge"] = True
    for item in lever_sets(row, steps):  # scripts/ttq_levers.py
        parts, val = parse_set(item)
        set_path(raw, parts, val)
    raw.setdefault("render", {}).update(size=size, steps=steps, thresholds=[t for t in thresholds if t < steps],
                                        seed=0, device=device, batch_size=batch)
    return from_dict(raw)


def clocked(device: str, steps: list[int]):
    """`clock_at(marks, s)`: the wall clock after step s (the first reading of s wins); on CUDA the GPU is waited
    for at the snapshot steps only, so the steps between still queue ahead as they do in a real run."""
    cuda, wanted = device.startswith("cuda"), set(steps)

    def clock_at(marks: dict, s: int) -> None:
        if cuda and s in wanted:
            torch.cuda.synchronize()
        marks.setdefault(s, time.time())

    return clock_at


def png(out: Path, row: str, unit: str, step: int) -> Path:
    return out / slug(row) / f"{unit.replace(':', '-')}.step{step:05d}.png"


def worker_fv(a) -> dict:
    torch.set_num_threads(a.threads)
    from fvcli.models import load_model
    from fvcli.outputs import save_png
    from fvcli.runner.batch import run_batch
    from fvcli.runner.stream import run_stream, streams
    from fvcli.units.unit import parse_units

    rec = fv_recipe(a.model_key, a.row, a.size, a.steps, a.thresholds, a.batch, a.device)
    model = load_model(rec.model_options(), a.device)
    names = a.units.split(",")
    units = [u for s in names for u in parse_units(s, model)]
    steps = sorted(set(a.thresholds) | {a.steps})
    clock_at = clocked(a.device, steps)
    clock: dict = {"spawn": a.t0, "ready": time.time(), "batches": [], "stopped": {}, "hash": rec.hash()}
    if streams(rec):
        for res in run_stream(model, rec, units, min(a.batch, len(units))):
            i = units.index(res.units[0])
            by_step = {s.step: s for s in res.snapshots}
            for t in steps:
                save_png(png(a.out, a.row, names[i], t), (by_step.get(t) or res.snapshots[-1]).images[0])
            st = res.stops[0] if res.stops and res.stops[0] else {}
            clock["stopped"][names[i]] = {"step": st.get("step", res.snapshots[-1].step), "reason": st.get("reason"),
                                          "t": time.time()}
    else:
        for k in range(0, len(units), a.batch):
            marks: dict[int, float] = {}
            begin = time.time()
            res = run_batch(model, rec, units[k:k + a.batch], on_step=lambda s: clock_at(marks, s))
            for s in res.snapshots:
                for b, name in enumerate(names[k:k + a.batch]):
                    save_png(png(a.out, a.row, name, s.step), s.images[b])
            clock["batches"].append({"begin": begin, "n": len(res.units), "at": {t: marks[t] for t in steps}})
    clock["end"] = time.time()
    return clock


def worker_lucent(a) -> dict:
    torch.set_num_threads(a.threads)
    import warnings

    import numpy as np
    from bench_lucent import _refuse_download, lucent_channel, plain_network

    warnings.filterwarnings("ignore")
    torch.hub.load_state_dict_from_url = _refuse_download
    torch.hub.download_url_to_file = _refuse_download
    from lucent.optvis import param, render

    from fvcli.optvis.loop import derive_seed
    from fvcli.outputs import save_png

    from fvcli.models import resolve_device

    spec = spec_of(a.model_key)
    ns = SimpleNamespace(model=spec.get("model"), weights=spec.get("weights"), recipe=spec.get("recipe"))
    net, prefix = plain_network(ns)
    dev = resolve_device(a.device)  # lucent puts its image on CUDA whenever there is one: the network follows
    net = net.to(dev)
    make = lucent_channel(net, f"{prefix}.{a.lucent_path}", a.size, dev)  # as bench_lucent.py (token layers too)

    names = a.units.split(",")
    chans = [int(s.rsplit(":", 1)[1]) for s in names]
    steps = sorted(set(a.thresholds) | {a.steps})
    clock_at = clocked(a.device, steps)
    clock: dict = {"spawn": a.t0, "ready": time.time(), "batches": [], "stopped": {}}
    per = 1 if a.row == "lucent" else a.batch  # as lucent's README runs it: one render_vis per unit
    for k in range(0, len(chans), per):
        chunk = chans[k:k + per]
        seed = derive_seed(0, "lucent", a.model_key, *chunk) % 2**31
        torch.manual_seed(seed)
        np.random.seed(seed)
        obj = make(chunk[0], 0)
        for i, c in enumerate(chunk[1:], 1):
            obj = obj + make(c, i)
        marks: dict[int, float] = {}

        def optimizer(params, marks=marks):  # lucent's default (Adam, lr 5e-2), with a clock after every step
            opt = torch.optim.Adam(params, lr=5e-2)
            opt.register_step_post_hook(lambda *_: clock_at(marks, len(marks) + 1))
            return opt

        begin = time.time()
        imgs = render.render_vis(net, obj, lambda: param.image(a.size, batch=len(chunk)), optimizer=optimizer,
                                 thresholds=tuple(steps), preprocess=False, show_image=False, progress=False,
                                 fixed_image_size=a.size)
        for step, arr in zip(steps, imgs):  # (B, H, W, 3) float in [0, 1]
            for b, nm in enumerate(names[k:k + per]):
                save_png(png(a.out, a.row, nm, step), torch.from_numpy(np.ascontiguousarray(arr[b])).permute(2, 0, 1))
        clock["batches"].append({"begin": begin, "n": len(chunk), "at": {t: marks[t] for t in steps}, "seed": seed})
    clock["end"] = time.time()
    return clock


