"""Objectives and units: parsing at the edge into typed objectives, arithmetic, and that optimization raises each
score (and the regularizers lower their penalties)."""
from __future__ import annotations

import pytest
import torch

from fvcli.errors import FvError
from conftest import tiny_recipe
from fvcli.optvis.metrics import high_frequency_energy
from fvcli.models import Capture
from fvcli.optvis.objectives import Channel, ClassLogit, ClassProb, LayerDream, Neuron, PerImage, Sum, random_direction
from fvcli.optvis.penalties import L1, BlurEachStep, TotalVariation, regularizers
from fvcli.optvis.loop import LoopSettings, render_batch
from fvcli.runner.batch import run_batch
from fvcli.units.unit import Unit, parse_units

SIZE, STEPS = 32, 24  # InceptionV1 (random:0) renders: one size for all tests (each new shape costs a warm-up)


def rise(model, objectives, size=SIZE, steps=STEPS, seeds=None, **kw):
    """Render one image per objective in one batch; (scores at step 0, scores at the end, final images)."""
    seeds = list(range(len(objectives))) if seeds is None else seeds
    snaps = list(render_batch(model, PerImage(tuple(objectives)), seeds,
                              LoopSettings(steps=steps, size=size, thresholds=(0,), **kw)))
    assert [s.step for s in snaps] == [0, steps]
    return snaps[0].scores, snaps[-1].scores, snaps[-1].images


# -- units -> typed objectives -----------------------------------------------------------------------------------


def test_unit_syntax(iv1):
    (u,) = parse_units("mixed4a:11", iv1)
    assert u == Unit("channel", "mixed4a", 11) and u.key == "mixed4a-00011" and u.label == "mixed4a:11"
    assert u.objective(iv1) == Channel("mixed4a", 11)
    assert [v.channel for v in parse_units("mixed4a:0-15", iv1)] == list(range(16))
    assert [v.channel for v in parse_units("mixed4a:3,7,11", iv1)] == [3, 7, 11]
    assert [v.channel for v in parse_units("mixed4a: 3, 7 ,3", iv1)] == [3, 7]  # spaces; duplicates once
    assert len(parse_units("mixed4a:all", iv1)) == 508

    (n,) = parse_units("mixed4a:11@7,7", iv1)
    assert n == Unit("neuron", "mixed4a", 11, 7, 7) and n.key == "mixed4a-00011-neuron-7x7"
    assert n.objective(iv1) == Neuron("mixed4a", 11, 7, 7)
    (c,) = parse_units("mixed4a:11@center", iv1)
    assert c == Unit("neuron", "mixed4a", 11) and c.objective(iv1) == Neuron("mixed4a", 11)
    assert c.key != u.key != n.key

    (lg,) = parse_units("logit:208", iv1)
    assert lg == Unit("logit", "softmax2_pre_activation", 208) and lg.key == "logit-00208"
    assert lg.objective(iv1) == ClassLogit("softmax2_pre_activation", 208)
    (pr,) = parse_units("prob:208", iv1)
    assert pr.objective(iv1) == ClassProb("softmax2_pre_activation", 208) and pr.key == "prob-00208"
    assert [v.channel for v in parse_units("logit:0-2,5", iv1)] == [0, 1, 2, 5]

    (d,) = parse_units("dream:mixed4a", iv1)
    assert d == Unit("dream", "mixed4a") and d.objective(iv1) == LayerDream("mixed4a") and d.key == "dream-mixed4a"
    assert parse_units("inceptionv1:mixed4a:11", iv1) == [u]  # a leading model name
    assert parse_units("mixed4a_3x3_pre_relu:5", iv1) == [Unit("channel", "mixed4a_3x3_pre_relu", 5)]


def test_class_names_with_labels(mobilenet):
    assert mobilenet.labels[283] == "tiger cat" and mobilenet.labels[968] == "espresso"
    assert parse_units("logit:tiger_cat", mobilenet) == [Unit("logit", "classifier", 283)]
    assert parse_units("prob:Tiger Cat", mobilenet) == [Unit("prob", "classifier", 283)]
    assert [u.channel for u in parse_units("logit:espresso,283", mobilenet)] == [968, 283]
    with pytest.raises(FvError, match=r"unknown class 'tigr_cat'.*did you mean: tiger_cat"):
        parse_units("logit:tigr_cat", mobilenet)


@pytest.mark.parametrize("text, words", [
    ("mixed4a", ["bad unit 'mixed4a'", "LAYER:CHANNEL"]),
    ("mixed4a:abc", ["bad channel 'abc'", "non-negative integer"]),
    ("mixed4a:-1", ["'-1'"]),
    ("mixed4a:508", ["channel 508 out of range", "valid 0-507"]),
    ("mixed4a:500-510", ["channel 508 out of range", "valid 0-507"]),
    ("mixed4a:15-3", ["bad channel range", "3 < 15"]),
    ("mixed4a:11@14,3", ["position 14,3 out of range", "x 0-13, y 0-13"]),
    ("mixed4a:11@7", ["bad neuron position '7'", "@center"]),
    ("mixed4a:1,2@7,7", ["a neuron names one channel"]),
    ("mixed4x:1", ["unknown layer 'mixed4x'", "did you mean: mixed4e"]),
    ("dream:mixd4a", ["unknown layer 'mixd4a'", "did you mean: mixed4a"]),
    ("logit:1008", ["class 1008 out of range", "valid 0-1007"]),
    ("logit:tiger_cat", ["class 'tiger_cat'", "no labels", "0-1007"]),
    ("softmax2_pre_activation:3@1,1", ["no spatial positions", "softmax2_pre_activation:3"]),
])
def test_bad_units_name_the_bad_value_and_the_valid_range(iv1, text, words):
    with pytest.raises(FvError) as err:
        parse_units(text, iv1)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


# -- arithmetic --------------------------------------------------------------------------------------------------


def test_objective_arithmetic_is_the_weighted_sum():
    g = torch.Generator().manual_seed(0)
    acts = {"a": torch.randn(3, 6, 4, 4, generator=g), "b": torch.randn(3, 5, 2, 2, generator=g)}
    image = torch.rand(3, 3, 8, 8, generator=g)
    ca, cb, dream = Channel("a", 1), Neuron("b", 2, 1, 0), LayerDream("a")
    obj = ca + 0.5 * cb - dream * 2 + (-ca)
    assert isinstance(obj, Sum) and obj.layers == {"a", "b"}
    want = ca(acts, image) + 0.5 * cb(acts, image) - 2 * dream(acts, image) - ca(acts, image)
    torch.testing.assert_close(obj(acts, image), want)
    assert obj(acts, image).shape == (3,)
    assert (-ca).describe() == "- channel a:1"
    assert torch.equal(cb(acts, image), acts["b"][:, 2, 0, 1])  # x=1, y=0
    assert torch.equal(Neuron("a", 1)(acts, image), acts["a"][:, 1, 2, 2])  # center
    # penalties: regularizers() subtracts L1 and TV, adds the blur term
    reg = regularizers(l1=0.1, tv=0.2, blur=1.0)
    want = -0.1 * L1()(acts, image) - 0.2 * TotalVariation()(acts, image) + BlurEachStep()(acts, image)
    torch.testing.assert_close(reg(acts, image), want)
    assert regularizers() is None


def test_per_image_scores_each_image_by_its_own_objective():
    g = torch.Generator().manual_seed(1)
    acts = {"a": torch.randn(2, 6, 4, 4, generator=g)}
    image = torch.rand(2, 3, 8, 8, generator=g)
    s = PerImage((Channel("a", 0), Channel("a", 5)))(acts, image)
    assert torch.equal(s, torch.stack([acts["a"][0, 0].mean(), acts["a"][1, 5].mean()]))


# -- optimization raises every objective -------------------------------------------------------------------------


def test_each_objective_rises_within_a_few_dozen_steps(iv1):
    logits = iv1.logits_layer
    objectives = {
        "channel": Channel("mixed4a", 11),
        "neuron": Neuron("mixed4a", 11, 1, 1),
        "neuron center": Neuron("mixed3b", 20),
        "deepdream": LayerDream("mixed4a"),
        "class logit": ClassLogit(logits, 208),
        "direction": random_direction("mixed4a", 508, seed=7),
        "weighted sum": Channel("mixed4a", 11) + 0.5 * Channel("mixed4a", 12) - Channel("mixed4a", 13),
        "negated channel": -Channel("mixed4a_pre_relu", 11),
    }
    first, last, _ = rise(iv1, list(objectives.values()))
    report = {k: (round(float(a), 3), round(float(b), 3)) for k, a, b in zip(objectives, first, last)}
    print("\nscore at step 0 -> step", STEPS, report)
    for (name, (a, b)) in report.items():
        assert b > a + max(1.0, abs(a)), f"{name}: {a} -> {b} ({report})"
    # minimizing the negated channel lowers the channel itself (pre-ReLU: it can go well below zero)
    a, b = report["negated channel"]
    assert -b < -a - 1.0 and -b < 0


def test_class_logit_and_probability_rise_on_a_real_network(mobilenet):
    tiger_cat = 283
    objectives = [ClassLogit("classifier", tiger_cat), ClassProb("classifier", tiger_cat)]
    first, last, images = rise(mobilenet, objectives, size=64, steps=16)
    print(f"\nMobileNetV2 tiger cat: logit {float(first[0]):.2f} -> {float(last[0]):.2f}, "
          f"probability {float(first[1]):.4f} -> {float(last[1]):.4f}")
    assert last[0] > first[0] + 5
    assert first[1] < 0.05 and last[1] > 0.5


def test_regularizers_lower_their_measure(iv1):
    """One unit, one seed, four images: plain, - L1, - TV, + blur each step. Each penalty lowers its own measure
    relative to the plain image (pixel parameterization, where nothing else smooths the image), while the unit's
    score still rises. Weights measured for this random network (its gradients are large)."""
    unit = Channel("mixed4a", 11)
    objectives = [unit, unit - 2.0 * L1(), unit - 1.0 * TotalVariation(), unit + 32.0 * BlurEachStep()]
    first, _, img = rise(iv1, objectives, seeds=[5] * 4, param="pixel", decorrelate=False)
    l1 = (img - 0.5).abs().flatten(1).sum(1)
    tv = TotalVariation()({}, img)
    blur = -BlurEachStep()({}, img)  # squared distance of the image from its own 3x3 blur
    hf = high_frequency_energy(img)
    with torch.no_grad(), Capture(iv1, ["mixed4a"]) as cap:
        channel = unit(cap(iv1.preprocess.apply(img)), img)
    print(f"\n(plain, L1, TV, blur)\nL1 {l1.tolist()}\nTV {tv.tolist()}\nblur distance {blur.tolist()}\n"
          f"HF energy {hf.tolist()}\nchannel {channel.tolist()}")
    measures = f"L1 {l1.tolist()}, TV {tv.tolist()}, blur {blur.tolist()}, HF {hf.tolist()}, channel {channel.tolist()}"
    assert l1[1] < 0.6 * l1[0], measures
    assert tv[2] < 0.6 * tv[0], measures
    assert blur[3] < 0.5 * blur[0], measures
    assert hf[2] < hf[0] and hf[3] < hf[0], measures  # TV and blur remove high frequencies
    assert (channel > 10 * first[0].abs() + 1).all(), measures  # the unit is still visualized


def test_recipe_regularizers_are_added_to_every_unit(iv1):
    rec = tiny_recipe("regularizers.l1=0.05", "regularizers.l1_constant=0.4", "regularizers.tv=0.25",
                      "regularizers.blur=1", steps=1, size=SIZE, thresholds=[])
    units = parse_units("mixed4a:1,2", iv1)
    res = run_batch(iv1, rec, units)
    reg = regularizers(l1=0.05, l1_constant=0.4, tv=0.25, blur=1.0)
    assert res.objectives == [u.objective(iv1) + reg for u in units]
    assert "- 0.05*" in res.objectives[0].describe()
