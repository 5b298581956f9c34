"""Negatives that mean something (models/preact.py) and pictures flagged when their objective did not move
(runner/flat.py), on the demo model and a torchvision ResNet with random weights (the structure is what counts).

A negative of a unit after a ReLU must minimize the ReLU's input (else the picture stays gray: the ReLU's output is 0
wherever the input is negative) and say so in its record; a picture whose objective stayed where its initial noise
put it must be flagged `flat` with the reason (and shown as a flag on its unit page), and a normal one must not.
"""
from __future__ import annotations

import json

import pytest
import torch

import fvcli
from conftest import tiny_recipe
from fvcli.gallery.unit_page import _variant
from fvcli.models import Capture
from fvcli.models.preact import pre_activation
from fvcli.optvis.objectives import Channel, Objective
from fvcli.runner.flat import FLAT_SIGMAS, movement
from fvcli.runner.variants import render_variants
from fvcli.units.expr import parse_unit_arg

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo():
    return fvcli.load_model("demo")


class Constant(Objective):
    """An objective that no image can change."""

    layers = frozenset({"block3"})

    def score(self, acts, image):
        return acts["block3"].sum((1, 2, 3)) * 0.0

    def describe(self) -> str:
        return "constant"


def test_negative_of_a_post_relu_layer_minimizes_its_pre_activation_and_moves(demo, tmp_path):
    pa = pre_activation(demo, "block3")
    assert (pa.found, pa.name) == (True, "block3.conv")
    rec = tiny_recipe(steps=48, size=64)
    units = parse_unit_arg("block3:1-2", demo)
    res = render_variants(demo, rec, units, tmp_path, negative=True)
    for it in res["items"]:
        r = json.loads((tmp_path / f"{it['key']}.json").read_text())
        assert r["negative_layer"] == "block3.conv" and "block3.relu" in r["negative_note"]
        assert "block3.conv" in r["objective"]
        m = r["movement"]
        assert r["flat"] is False and m["gain"] > 2 * m["margin"] > 0, m  # moved well beyond the margin
        # the pre-activation went below zero: the post-ReLU unit is off, with something to show for it
        with torch.no_grad(), Capture(demo, ["block3.conv"]) as cap:
            from PIL import Image
            import numpy as np

            img = torch.from_numpy(np.asarray(Image.open(tmp_path / f"{it['key']}.png"), dtype=np.float32) / 255)
            a = cap(demo.preprocess.apply(img.permute(2, 0, 1)[None]))["block3.conv"]
        assert float(a[0, r["channel"]].mean()) < -1.0
    assert "0" not in json.loads((tmp_path / f"{res['items'][0]['key']}.json").read_text())["scores"]  # step 0 unasked


def test_layer_without_relu_module_is_minimized_as_is(demo):
    pa = pre_activation(demo, "fc")
    assert (pa.found, pa.name) == (False, "fc") and "no ReLU module" in pa.note
    pool = pre_activation(demo, "pool1")  # a max-pool of a ReLU: >= 0, and the note says it may be floored
    assert not pool.found and "functional ReLU" in pool.note


def test_resnet_block_pre_activation_is_the_input_of_its_shared_relus_last_call():
    m = fvcli.load_model("torchvision:resnet18", weights="random:0")
    pa = pre_activation(m, "layer3")
    assert pa.found and pa.name == "layer3_pre_relu" and "layer3.1.relu (call 2 of 2)" in pa.note
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), Capture(m, ["layer3", pa.name]) as cap:
        a = cap(m.preprocess.apply(x))
    pre, post = a[pa.name], a["layer3"]
    assert torch.equal(pre.relu(), post) and float(pre.min()) < 0  # the ReLU's input: the block's sum + shortcut
    with torch.no_grad(), Capture(m, [pa.name]) as cap:  # alone: truncated at the ReLU, the same values
        assert torch.equal(cap(m.preprocess.apply(x))[pa.name], pre)
    assert pre_activation(m, "relu").name == "bn1"  # the stem: a catalogued module makes the ReLU's input
    again = pre_activation(m, "layer3_pre_relu")  # a pre-activation is its own: not the ReLU's first call's input
    assert (again.found, again.name) == (False, "layer3_pre_relu")
    rec = tiny_recipe(steps=12, size=64)
    res = render_variants(m, rec, parse_unit_arg("layer3:7", m), None, negative=True)
    r = res["items"][0]["record"]  # random weights, 12 steps: whether it moved is not the point; the record is
    assert r["negative_layer"] == "layer3_pre_relu" and r["objective"].endswith("layer3_pre_relu:7")
    assert r["flat"] == (r["movement"]["gain"] <= r["movement"]["margin"]) and r["movement"]["margin"] > 0


def test_flat_flag_for_a_picture_that_cannot_move_and_not_for_a_normal_one(demo):
    gray = torch.full((2, 3, 64, 64), 0.5)
    res = render_variants(demo, tiny_recipe(steps=48, size=64), parse_unit_arg("block3:2", demo), None, both=True)
    pos = res["items"][1]
    assert pos["key"].endswith("-pos") and pos["record"]["flat"] is False
    bright = torch.stack([pos["image"]] * 2)  # a render of channel 2
    objs = [Constant(), Channel("block3", 2)]
    # the constant objective cannot move; channel 2 gains from gray to a picture that excites it
    moved = movement(demo, objs, [None, None], gray, bright)
    assert moved[0]["flat"] is True and moved[0]["gain"] == 0 and "moved by 0" in moved[0]["flat_reason"]
    assert moved[1]["flat"] is False and moved[1]["gain"] > FLAT_SIGMAS * moved[1]["noise_spread"]
    still = movement(demo, objs[1:], [None], gray[:1], gray[:1])
    assert still[0]["flat"] is True  # nothing moved: flagged, whatever the objective
    # a facet that gained far less than its best sibling collapsed
    g = ("block3-00002", 1.0)
    facets = movement(demo, [Channel("block3", 2)] * 2, [g, g], gray, torch.stack([gray[0], bright[1]]))
    assert facets[0]["flat"] and facets[0]["gain"] == 0
    assert not facets[1]["flat"]


def test_collapsed_facets_are_flagged_in_their_records(demo):
    rec = tiny_recipe(steps=32, size=64)
    res = render_variants(demo, rec, parse_unit_arg("logit:3", demo), None, facets=4)
    recs = [it["record"] for it in res["items"]]
    assert all("flat" in r and "movement" in r for r in recs)
    best = max(r["movement"]["gain"] for r in recs)
    assert not all(r["flat"] for r in recs)
    for r in recs:  # flagged exactly when below the margin or a quarter of the best facet's gain
        m = r["movement"]
        assert r["flat"] == (m["gain"] <= m["margin"] or m["gain"] < 0.25 * best), r


def test_unit_page_shows_a_flat_picture_as_a_flag(tmp_path):
    (tmp_path / "b-neg.json").write_text(json.dumps({"flat": True, "flat_reason": "moved by 0", "layer": "b",
                                                     "negative_layer": "b.conv"}))
    (tmp_path / "b-div0.json").write_text(json.dumps({"flat": False}))
    html = _variant(tmp_path, "b-neg.png", "negative")
    assert "flat" in html and "moved by 0" in html and "<img" not in html and "on b.conv" in html
    assert "<img" in _variant(tmp_path, "b-div0.png", "facet 0")


def test_a_negative_made_before_pre_activations_is_made_again(demo, tmp_path):
    from fvcli.runner.variants import expand
    from fvcli.sweep.extras import _variant_done

    v = expand(parse_unit_arg("block3:1", demo), negative=True)[0]
    (tmp_path / f"{v.key}.png").write_bytes(b"png")
    (tmp_path / f"{v.key}.json").write_text(json.dumps({"seed": 7, "facets": 1}))  # an old record
    assert not _variant_done(tmp_path, v, 7, 1)
    (tmp_path / f"{v.key}.json").write_text(json.dumps({"seed": 7, "facets": 1, "negative_layer": "block3.conv"}))
    assert _variant_done(tmp_path, v, 7, 1)
