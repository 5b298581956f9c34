"""Shared fixtures: small models, tiny recipes, a private weights cache, the shared facts and real weights.

Everything here is cheap and deterministic: InceptionV1 with `random:0` weights, the real MobileNetV2 from
../shared (tests that use it skip cleanly when it is absent), recipes at 32-96 px with a few dozen steps.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fvcli.cli import app
from fvcli.models import ModelOptions, load_model
from fvcli.recipe import Recipe, load_recipe

# `--batch-size auto` caches its CPU probe (fvcli/runner/autobatch.py): keep the tests' entries out of the user's cache
os.environ.setdefault("FV_CACHE_DIR", tempfile.mkdtemp(prefix="fv-test-cache-"))

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACTS = SHARED / "facts"
MOBILENET_DIR = SHARED / "weights" / "mobilenet_v2_imagenet"
IV1_STATE_DICT_JSON = FACTS / "inceptionv1_state_dict.json"

FUZZ_CASES: dict[str, int] = {}  # fuzzed cases run, by kind (tests/test_fuzz.py, tests/test_expr.py)


def pytest_terminal_summary(terminalreporter):
    if FUZZ_CASES:
        terminalreporter.write_line("fuzz cases run: " + ", ".join(f"{k}={v}" for k, v in sorted(FUZZ_CASES.items()))
                                    + f" ({sum(FUZZ_CASES.values())} in all)")


def tiny_recipe(*sets: str, name: str | None = None, **render: object) -> Recipe:
    """A recipe (default: configs' defaults) with `--set` items and render.* overrides, always on the CPU."""
    overrides = {f"render.{k}": v for k, v in render.items()}
    overrides.setdefault("render.device", "cpu")
    return load_recipe(name, list(sets), overrides)


def iv1_shapes() -> dict[str, tuple[int, ...]]:
    """InceptionV1's parameter shapes: from the shared facts file when present, else from the model itself."""
    if IV1_STATE_DICT_JSON.is_file():
        return {k: tuple(v) for k, v in json.loads(IV1_STATE_DICT_JSON.read_text()).items()}
    from fvcli.models.inceptionv1 import InceptionV1

    return {k: tuple(v.shape) for k, v in InceptionV1().state_dict().items()}


def synthetic_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    """Random tensors with InceptionV1's names and shapes (a stand-in for inception5h.pth, which is offline)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in iv1_shapes().items()}


def raw_output(model, path: str, x: torch.Tensor) -> torch.Tensor:
    """The output of the module at `path` for input x, read by a plain hook (no layout adapter)."""
    got = {}
    h = dict(model.net.named_modules())[path].register_forward_hook(lambda _m, _i, o: got.setdefault("o", o))
    try:
        with torch.no_grad():
            model.net(model.preprocess.apply(x))
    finally:
        h.remove()
    return got["o"]


def write_demo_images(root: Path, n: int, size: int, seed: int, flat: bool = False) -> Path:
    """n procedural images of the demo model's classes (fvcli/models/demo_data.py) as PNGs under `root`: in one
    folder per class (ImageFolder's layout), or `flat` as CLASS-NNNN.png. Returns `root`."""
    import numpy as np
    from PIL import Image

    from fvcli.models.demo_data import DEMO_CLASSES, make_batch

    imgs, labels = make_batch(n, size, seed)
    for i, (x, c) in enumerate(zip(imgs, labels)):
        name = DEMO_CLASSES[int(c)]
        path = root / f"{name}-{i:04d}.png" if flat else root / name / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny renders: on a busy 2-core machine, two OpenMP threads that wait on
    each other run many times slower (use: pytestmark = pytest.mark.usefixtures("one_thread"))."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def iv1():
    """InceptionV1 with deterministic random weights on the CPU."""
    return load_model(ModelOptions(weights="random:0"), "cpu")


@pytest.fixture(scope="session")
def mobilenet():
    """The real ImageNet MobileNetV2 (configs/mobilenet_v2.yaml); skips when ../shared is not there."""
    if not MOBILENET_DIR.is_dir():
        pytest.skip(f"real MobileNetV2 weights not found at {MOBILENET_DIR}")
    return load_model(load_recipe("mobilenet_v2").model_options(), "cpu")


@pytest.fixture(scope="session")
def synthetic_weights(tmp_path_factory) -> Path:
    """A synthetic InceptionV1 state_dict saved with torch.save."""
    path = tmp_path_factory.mktemp("weights") / "inception5h-synthetic.pth"
    torch.save(synthetic_state_dict(), path)
    return path


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty private torch cache (TORCH_HOME); returns its checkpoints directory."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home / "hub" / "checkpoints"


@pytest.fixture
def cli():
    """Invoke `fv ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: object):
        return runner.invoke(app, [str(a) for a in args])

    return invoke
