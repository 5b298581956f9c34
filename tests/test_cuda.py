"""fv on a real GPU (marker `cuda`): every stage on the device, the CUDA paths against fp32 eager, and CPU vs GPU.

Why here and not only in test_cuda_guards.py: that file checks each CUDA path's *logic* on the CPU; these tests run
the paths themselves, so they need a CUDA device and skip cleanly without one (`make test` on a CPU-only machine is
unchanged). `make gpu-check` (scripts/gpu_check.sh) runs them first on a GPU machine: `pytest -m cuda`. Everything
uses the demo model at 32-64 px and a few dozen steps, so the whole file takes seconds on a GPU (plus one
torch.compile). Tolerances are stated where they are used: the same unit rendered two ways (precision, memory
format, TF32, compile, CPU vs GPU) must give the same kind of picture, its objective within the stated fraction.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import tiny_recipe, write_demo_images
from fvcli.models import Capture, load_model
from fvcli.optvis.loop import LoopSettings, render_batch
from fvcli.optvis.objectives import Channel, ClassLogit, PerImage
from fvcli.optvis.transforms import Blur, Crop, Jitter, Noise, Pad, Rotate, Scale
from fvcli.outputs import to_uint8

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (make gpu-check runs these)")]

CHAIN = (Pad(4), Jitter(4), Scale((0.95, 1.05)), Rotate((-5.0, 5.0)), Crop(), Blur(0.0, 1.0), Noise(0.01))
SET = LoopSettings(steps=32, size=48, transforms=CHAIN)
SAME_OBJECTIVE = 0.10  # two ways of rendering one unit: objectives within 10 % of each other
SAME_OBJECTIVE_REDUCED = 0.25  # bf16 / fp16 against fp32


@pytest.fixture(scope="module")
def gpu_demo():
    return load_model("demo", "cuda")


@pytest.fixture(scope="module")
def cpu_demo():
    return load_model("demo", "cpu")


def final(model, objective, seeds, settings, on_step=None):
    *_, snap = render_batch(model, objective, seeds, settings, on_step=on_step)
    return snap


def png_objective(cpu_model, objective, images: torch.Tensor) -> np.ndarray:
    """The objective of each final picture as the user gets it (8 bits), scored on the CPU."""
    x = torch.stack([torch.from_numpy(to_uint8(im).astype(np.float32) / 255).permute(2, 0, 1) for im in images])
    with torch.no_grad(), Capture(cpu_model, objective.layers) as cap:
        return objective(cap(cpu_model.preprocess.apply(x)), x).numpy()


def close(a, b, tol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(np.abs(a - b) <= tol * np.maximum(np.abs(a), np.abs(b))))


def logits(n: int = 3) -> PerImage:
    return PerImage(tuple(ClassLogit("fc", c) for c in range(n)))


def test_every_stage_runs_on_the_gpu_and_only_snapshots_come_back(gpu_demo):
    seen: dict[str, set] = {"inputs": set(), "outputs": set(), "formats": set()}

    def where(_m, inputs, output) -> None:  # returns None: the output is left as it is
        seen["inputs"].update(t.device.type for t in inputs if isinstance(t, torch.Tensor))
        seen["outputs"].add(output.device.type)

    def memory_format(_m, inputs) -> None:
        seen["formats"].add(inputs[0].is_contiguous(memory_format=torch.channels_last))

    hooks = [m.register_forward_hook(where) for m in gpu_demo.net.modules() if not list(m.children())]
    first = next(m for m in gpu_demo.net.modules() if isinstance(m, torch.nn.Conv2d))
    hooks.append(first.register_forward_pre_hook(memory_format))
    try:
        snaps = list(render_batch(gpu_demo, logits(), [1, 2, 3], replace(SET, thresholds=(8,))))
    finally:
        for h in hooks:
            h.remove()
    assert seen["inputs"] == {"cuda"} and seen["outputs"] == {"cuda"}  # every layer, transforms (blur, noise) too
    assert seen["formats"] == {True}  # channels_last reaches the network
    assert [s.step for s in snaps] == [8, 32]
    for s in snaps:  # snapshots come back to the host, finite, in [0, 1]
        assert s.images.device.type == "cpu" and s.scores.device.type == "cpu"
        assert torch.isfinite(s.images).all() and 0 <= s.images.min() and s.images.max() <= 1
    assert (snaps[-1].scores > snaps[0].scores).all()  # the logits climb


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_climbs_like_fp32(gpu_demo, cpu_demo, precision):
    obj = logits()
    ref = final(gpu_demo, obj, [1, 2, 3], SET)
    low = final(gpu_demo, obj, [1, 2, 3], replace(SET, precision=precision))
    assert torch.isfinite(low.scores).all()
    start = final(gpu_demo, obj, [1, 2, 3], replace(SET, steps=1))
    assert (low.scores > start.scores).all()
    assert close(png_objective(cpu_demo, obj, low.images), png_objective(cpu_demo, obj, ref.images),
                 SAME_OBJECTIVE_REDUCED)


def test_tf32_is_on_after_loading_and_changes_no_picture_visibly(gpu_demo, cpu_demo):
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    obj = logits()
    on = final(gpu_demo, obj, [1, 2, 3], SET)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        off = final(gpu_demo, obj, [1, 2, 3], SET)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    assert close(png_objective(cpu_demo, obj, on.images), png_objective(cpu_demo, obj, off.images), SAME_OBJECTIVE)


def test_channels_last_and_contiguous_render_the_same_units(gpu_demo, cpu_demo):
    obj = logits()
    a = final(gpu_demo, obj, [4, 5, 6], SET)
    b = final(gpu_demo, obj, [4, 5, 6], replace(SET, channels_last=False))
    assert close(png_objective(cpu_demo, obj, a.images), png_objective(cpu_demo, obj, b.images), SAME_OBJECTIVE)


def test_torch_compile_renders_what_eager_renders(gpu_demo, cpu_demo):
    obj = PerImage((Channel("block2", 3), Channel("block2", 5)))
    # crosses the redirected-ReLU switch at step 16 (one recompile); no Blur: inductor fails on the blur's
    # replicate padding in the backward (a stride assertion, seen on the CPU; docs/reports/performance.md)
    settings = replace(SET, steps=24, transforms=tuple(t for t in CHAIN if not isinstance(t, Blur)))
    eager = final(gpu_demo, obj, [7, 8], settings)
    compiled = final(gpu_demo, obj, [7, 8], replace(settings, compile=True))
    assert torch.isfinite(compiled.scores).all()
    assert close(png_objective(cpu_demo, obj, compiled.images), png_objective(cpu_demo, obj, eager.images),
                 SAME_OBJECTIVE)


def test_a_real_out_of_memory_halves_the_batch_and_every_item_is_rendered():
    from fvcli.runner.batch import OomBackoff

    dev = torch.device("cuda")
    free, total = torch.cuda.mem_get_info(dev)
    done: list[list[int]] = []

    def render(items: list[int]) -> list[int]:
        if len(items) > 2:  # more than two items "need" more than the card has: a real CUDA OOM
            torch.empty(int(total) * 2, dtype=torch.uint8, device=dev)
        done.append(items)
        return [i * 10 for i in items]

    back = OomBackoff(dev)
    assert back(render, list(range(8))) == [i * 10 for i in range(8)]
    assert all(len(d) <= 2 for d in done) and back.parts >= 4
    assert back.events and back.events[0]["event"] == "out_of_memory"
    assert torch.cuda.mem_get_info(dev)[0] >= 0.9 * free  # the failed allocation left nothing behind


def test_auto_batch_size_follows_free_memory(gpu_demo, monkeypatch):
    from fvcli.runner import batch as runner

    recipe = tiny_recipe(size=32, device="cuda")
    seen: list[tuple[int, int]] = []
    fit = runner.batch_from_memory
    monkeypatch.setattr(runner, "batch_from_memory", lambda p, f, **k: seen.append((p, f)) or fit(p, f, **k))
    full = runner.auto_batch_size(gpu_demo, recipe, 100_000)
    per_image, free = seen[-1]
    assert per_image > 0 and free > 0 and full == fit(per_image, free) >= 16  # many demo images fit on any GPU
    real = torch.cuda.mem_get_info
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (40 * per_image, real(d)[1]))
    small = runner.auto_batch_size(gpu_demo, recipe, 100_000)
    assert small == fit(seen[-1][0], 40 * per_image) and small < full  # 40 images' worth free: 80 % of them


def syncs(model, settings: LoopSettings, steps: int) -> int:
    """The synchronizing calls of one render, as torch's sync debug mode counts them."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            final(model, logits(), [1, 2, 3], replace(settings, steps=steps))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(x.message).lower() for x in w)


def test_no_host_synchronisation_per_step(gpu_demo):
    """Between its NaN checks (the first step, then every FINITE_CHECK_EVERY) and its snapshots the loop makes the
    host wait for nothing: 3 and 14 steps (the redirected-ReLU phase included) have the same check and snapshot, so
    the same number of synchronizing calls, as torch's sync debug mode counts them."""
    settings = replace(SET, thresholds=())
    syncs(gpu_demo, settings, 3)  # warm-up: first-call allocations, cudnn's autotuning
    short, long = syncs(gpu_demo, settings, 3), syncs(gpu_demo, settings, 14)
    assert short > 0  # the check and the snapshot do synchronize: the counter sees them
    assert long == short


def test_the_decay_schedule_runs_on_the_gpu_like_the_cpu_without_host_synchronisation(gpu_demo, cpu_demo):
    """param.decay_from / decay_ramp (fvcli/optvis/decay_schedule.py): the new scale is computed on the device every
    step of the ramp, so the ramp adds no synchronizing call; the picture is the CPU's kind."""
    settings = replace(SET, thresholds=(), decay_from=1.5, decay_ramp=24)
    syncs(gpu_demo, settings, 3)
    assert syncs(gpu_demo, settings, 14) == syncs(gpu_demo, settings, 3)
    obj = logits(3)
    gpu = final(gpu_demo, obj, [5, 6, 7], replace(settings, steps=48, size=64))
    cpu = final(cpu_demo, obj, [5, 6, 7], replace(settings, steps=48, size=64))
    assert close(png_objective(cpu_demo, obj, gpu.images), png_objective(cpu_demo, obj, cpu.images), SAME_OBJECTIVE)


def test_cpu_and_gpu_render_the_same_kind_of_picture(gpu_demo, cpu_demo):
    obj = logits(4)
    settings = replace(SET, steps=48, size=64)
    gpu = final(gpu_demo, obj, [11, 12, 13, 14], settings)
    cpu = final(cpu_demo, obj, [11, 12, 13, 14], settings)
    assert close(png_objective(cpu_demo, obj, gpu.images), png_objective(cpu_demo, obj, cpu.images), SAME_OBJECTIVE)
    corr = [np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1] for a, b in zip(gpu.images, cpu.images)]
    assert min(corr) > 0.8, corr  # the same seed and transforms: the same picture up to float rounding


def test_fv_render_sweep_and_estimate_on_cuda(cli, tmp_path):
    r = cli("render", "block2:0-3", "--model", "demo", "--size", "32", "--steps", "8", "--device", "cuda",
            "--out", tmp_path / "r", "-q")
    assert r.exit_code == 0, r.output
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "r").glob("block2-*.json"))]
    assert len(recs) == 4 and all(x["device"].startswith("cuda") for x in recs)
    r = cli("sweep", "block2:0-7", "--model", "demo", "--size", "32", "--steps", "8", "--device", "cuda",
            "--batch-size", "auto", "--out", tmp_path / "s", "-q")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "s" / "layers" / "block2").glob("*.png"))) >= 8
    r = cli("sweep", "block1", "block2", "--model", "demo", "--size", "32", "--device", "cuda", "--estimate",
            "--out", tmp_path / "e")
    assert r.exit_code == 0 and "predicted" in r.output and "cuda" in r.output, r.output


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_demo_images(tmp_path_factory.mktemp("cuda-imgs"), 96, 64, 3)


def test_fv_examples_on_cuda_ranks_what_the_cpu_ranks(cli, folder, tmp_path):
    tops = {}
    for dev in ("cpu", "cuda"):
        r = cli("examples", folder, "block3:0-3", "--model", "demo", "--device", dev, "-j", "0", "--top-k", "5",
                "--no-grids", "--out", tmp_path / dev, "-q")
        assert r.exit_code == 0, r.output
        tops[dev] = {p.name: json.loads(p.read_text())["top"] for p in (tmp_path / dev).glob("*.examples.json")}
    assert len(tops["cuda"]) == 4 and tops["cuda"].keys() == tops["cpu"].keys()
    for name, top in tops["cuda"].items():
        ref = tops["cpu"][name]
        assert top[0]["relpath"] == ref[0]["relpath"]
        assert close([e["activation"] for e in top], [e["activation"] for e in ref], 1e-2)


def test_fv_concepts_on_cuda(cli, folder, tmp_path):
    out = tmp_path / "c.npy"
    r = cli("concepts", folder, "block3", "--k", "4", "--model", "demo", "--device", "cuda", "-o", out, "-j", "0")
    assert r.exit_code == 0, r.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert np.load(out).shape == (4, 128) and report["fraction_of_variance_explained"] > 0.5
