"""CUDA-only speedups are guarded; their logic is checked here on the CPU."""
from __future__ import annotations

import contextlib

import pytest
import torch

from fvcli.errors import FvError
from fvcli.models import configure_backends, resolve_device
from fvcli.render import autocast


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
