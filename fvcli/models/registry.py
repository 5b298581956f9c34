"""The built-in model specs: `inceptionv1` (the article's network, the default) and `demo`.

A spec is data (how to build the network, its preprocessing, native size and weights file), registered by name so
`--model NAME` and `fv weights fetch NAME` find it; the other sources (torchvision, timm, the user's code) build
their specs on demand in their own modules. InceptionV1's weights are the converted lucid graph, checked against
an exact key and shape list when loaded, because a mislabelled checkpoint would otherwise render silently wrong.
"""
from __future__ import annotations

from pathlib import Path

from . import ModelOptions, ModelSpec, Preprocess, register
from . import inceptionv1 as iv1
from .weights import WeightsFile

INCEPTION5H = WeightsFile(
    filename="inception5h.pth",
    # The converted lucid graph used by lucent and faccent (see ../shared/facts/inceptionv1.md).
    url="https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
)


def _build_inceptionv1(opts: ModelOptions):
    return iv1.InceptionV1(num_classes=opts.num_classes or iv1.NUM_CLASSES)


register(ModelSpec(
    name="inceptionv1",
    description="InceptionV1 / GoogLeNet as in lucid (inception5h), the article's network",
    build=_build_inceptionv1,
    preprocess=Preprocess(value_range=iv1.VALUE_RANGE),
    native_size=224,
    num_classes=iv1.NUM_CLASSES,
    main_layers=iv1.MAIN_LAYERS,
    logits_layer="softmax2_pre_activation",
    default_weights=INCEPTION5H,
    layer_paths=iv1.layer_paths,
    redirect_relu_default=True,
))

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

from . import demo as _demo  # noqa: E402,F401  (registers 'demo')
