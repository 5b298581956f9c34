"""CUDA-only speedups are guarded; their logic is checked here on the CPU."""
from __future__ import annotations

import contextlib

import pytest
import torch

from fvcli.errors import FvError
from fvcli.models import configure_backends, resolve_device
from fvcli.optvis.loop import autocast


def test_autocast_is_a_no_op_for_fp32_and_cpu_fp16_and_reduced_precision_otherwise():
    assert isinstance(autocast(torch.device("cpu"), "fp32"), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu"), "fp16"), contextlib.nullcontext)  # no fast fp16 on CPUs
    cpu = autocast(torch.device("cpu"), "bf16")
    assert isinstance(cpu, torch.autocast) and cpu.fast_dtype == torch.bfloat16 and cpu.device == "cpu"
    assert isinstance(autocast(torch.device("cuda"), "fp32"), contextlib.nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        ctx = autocast(torch.device("cuda"), "bf16")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        ctx16 = autocast(torch.device("cuda"), "fp16")
    assert ctx16.fast_dtype == torch.float16


def test_backend_flags_only_on_cuda():
    before = torch.backends.cudnn.benchmark
    assert configure_backends(torch.device("cpu")) == {}
    assert torch.backends.cudnn.benchmark == before
    try:
        assert configure_backends(torch.device("cuda")) == {"cudnn_benchmark": True, "tf32": True}
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before
        torch.backends.cuda.matmul.allow_tf32 = False


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FvError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(FvError, match="valid: auto, cpu, cuda"):
        resolve_device("tpu")


def test_auto_batch_size_dispatches_by_device_and_fits_cuda_memory(monkeypatch):
    from dataclasses import replace

    from conftest import tiny_recipe
    from fvcli.runner import autobatch
    from fvcli.runner import batch as runner
    from fvcli.models import load_model

    cpu = load_model("demo", "cpu")
    recipe = tiny_recipe(size=32)
    # CUDA: the memory probe decides, never the CPU timing probe
    monkeypatch.setattr(runner, "_cuda_batch_probe", lambda model, rec: 300)
    monkeypatch.setattr(autobatch, "measured_batch_size", lambda *a, **k: pytest.fail("CPU probe on CUDA"))
    fake_cuda = replace(cpu, device=torch.device("cuda"))
    assert runner.auto_batch_size(fake_cuda, recipe, 5000) == 300
    assert runner.auto_batch_size(fake_cuda, recipe, 7) == 7
    # CPU: the timing probe decides, never the memory one
    monkeypatch.setattr(runner, "_cuda_batch_probe", lambda model, rec: pytest.fail("CUDA probe on CPU"))
    monkeypatch.setattr(autobatch, "measured_batch_size", lambda *a, **k: 4)
    assert runner.auto_batch_size(cpu, recipe, 100) == 4
    # the memory arithmetic: 80 % of free memory over the per-image peak, within [1, 1024]
    assert runner.batch_from_memory(100 * 2**20, 10 * 2**30) == 81
    assert runner.batch_from_memory(2**40, 2**30) == 1 and runner.batch_from_memory(1, 2**40) == 1024


def test_bench_matrix_picks_cuda_when_present_and_lists_every_model():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_matrix.py"
    spec = importlib.util.spec_from_file_location("bench_matrix_for_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert [m[0] for m in mod.MATRIX] == ["inceptionv1", "mobilenet_v2", "resnet50", "convnext_tiny", "vit_b_16"]
    assert mod.resolve_matrix_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert mod.resolve_matrix_device("cpu") == "cpu"
