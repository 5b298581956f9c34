"""The `demo` model: a compact CNN that fv trains itself on procedural images whose classes are known
(fvcli/models/demo_data.py; scripts/train_demo_model.py reproduces the shipped weights). It runs offline, so a newcomer
sees fv work without downloading anything, and tests can check that a visualization shows the class's real look.

Two independently trained copies ship: the model (seed 0) and a judge (seed 1) used by scripts/bench_quality.py.
"""
from __future__ import annotations

from pathlib import Path

from . import ModelOptions, ModelSpec, Preprocess, register

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MODEL_WEIGHTS = WEIGHTS_DIR / "demo_seed0.pt"
JUDGE_WEIGHTS = WEIGHTS_DIR / "demo_judge_seed1.pt"
NATIVE_SIZE = 64
PREPROCESS = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _build(opts: ModelOptions):
    from .demo_data import DEMO_CLASSES
    from .demo_net import build_demo_net

    return build_demo_net(opts.num_classes or len(DEMO_CLASSES))


def _labels():
    from .demo_data import DEMO_CLASSES

    return tuple(DEMO_CLASSES)


def _num_classes() -> int:
    try:
        from .demo_data import DEMO_CLASSES

        return len(DEMO_CLASSES)
    except ImportError:  # the generator is part of the package; this only guards a broken install
        return 0


register(ModelSpec(
    name="demo",
    description="fv's own demo CNN, trained on procedural stripes/checkers/dots/rings/blobs (offline)",
    build=_build,
    preprocess=PREPROCESS,
    native_size=NATIVE_SIZE,
    num_classes=_num_classes(),
    main_layers=("block1", "block2", "block3", "block4"),
    logits_layer="fc",
    default_weights=None,
    layer_paths=None,
    # A grey start leaves ~60% of block3's and block4's channels at zero (alive on data, dead at grey): without
    # lucid's redirected ReLU for the first steps their renders stay grey.
    redirect_relu_default=True,
    labels=_labels,
    builtin_weights=MODEL_WEIGHTS,
))
