"""Interpolation between two units: the weighted objective, alignment, the shared parameterization, and frames that
move monotonically from one unit's activation to the other's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fvcli.cli import app
from fvcli.models import Capture, ModelOptions, load_model
from fvcli.optvis.coupled_objectives import Alignment, Interpolate
from fvcli.optvis.objectives import Channel
from fvcli.optvis.param import SharedImage
from fvcli.figures.interpolation import default_alignment_layer, interpolate, write_interpolation
from fvcli.recipe import load_recipe
from fvcli.units.unit import parse_units

MOBILENET = Path(__file__).resolve().parents[2] / "shared" / "weights" / "mobilenet_v2_imagenet"


@pytest.fixture(scope="module")
def mobilenet():
    if not MOBILENET.is_dir():
        pytest.skip(f"real MobileNetV2 weights not found at {MOBILENET}")
    return load_model(load_recipe("mobilenet_v2").model_options(), "cpu", channels_last=False)


def test_interpolate_objective_weights():
    act = torch.randn(5, 8, 3, 3)
    obj = Interpolate.frames(Channel("l", 1), Channel("l", 2), 5)
    assert obj.ts == (0.0, 0.25, 0.5, 0.75, 1.0)
    a, b = act[:, 1].mean((1, 2)), act[:, 2].mean((1, 2))
    assert torch.allclose(obj({"l": act}, act), (1 - torch.tensor(obj.ts)) * a + torch.tensor(obj.ts) * b)


def test_alignment_matches_lucid():
    torch.manual_seed(0)
    act = torch.randn(6, 4, 3, 3)
    s = Alignment("l", decay_ratio=2)({"l": act}, act)
    lucid = sum(((act[i] - act[i + d]) ** 2).mean() / 2**d for d in (1, 2, 3, 4) for i in range(6 - d))
    assert float(s.sum()) == pytest.approx(-float(lucid), rel=1e-5) and (s <= 0).all()
    same = act[:1].expand(6, -1, -1, -1)
    assert torch.equal(Alignment("l")({"l": same}, same), torch.zeros(6))
    # groups: frames of different groups are not neighbours
    g = Alignment("l", groups=(0, 0, 0, 1, 1, 1))({"l": act}, act)
    assert float(g.sum()) == pytest.approx(float(Alignment("l")({"l": act[:3]}, act[:3]).sum()
                                                 + Alignment("l")({"l": act[3:]}, act[3:]).sum()), rel=1e-5)


def test_shared_image_blends_across_frames():
    gens = [torch.Generator().manual_seed(i) for i in range(5)]
    p = SharedImage.lucid(gens, 32, 32, shared_gen=torch.Generator().manual_seed(9))
    assert [tuple(x.shape) for x in p.shared] == [(1, 3, 16, 16), (1, 3, 8, 8), (1, 3, 4, 4), (1, 3, 2, 2)]
    assert [tuple(x.shape) for x in p.blend] == [(2, 3, 4, 4), (2, 3, 2, 2)]
    with torch.no_grad():
        p.own.spectrum.zero_()
        for x in p.shared:
            x.zero_()
        for x in p.blend:
            x.normal_(0, 1)
        img = p()
    assert img.shape == (5, 3, 32, 32) and 0 <= float(img.min()) and float(img.max()) <= 1
    logit = torch.logit(img.double())
    # with only the blended tensors left (decorrelation is linear), frame i blends the first and the last frame
    for i, t in enumerate(torch.linspace(0, 1, 5).double()):
        assert torch.allclose(logit[i], (1 - t) * logit[0] + t * logit[4], atol=1e-4)
    # the shared tensors get gradient from every frame
    p2 = SharedImage.lucid(gens, 32, 32)
    p2()[2].sum().backward()
    assert p2.shared[0].grad.abs().sum() > 0 and p2.own.spectrum.grad[2].abs().sum() > 0
    assert p2.own.spectrum.grad[0].abs().sum() == 0


def test_frames_move_monotonically(mobilenet, tmp_path):
    """features.14:7 -> features.14:20 over 6 frames (64 px, 96 steps, alignment 0.1 at features.13).

    Measured: A 18.1, 16.7, 12.9, 9.6, 7.0, 1.8 and B 4.7, 8.2, 14.6, 18.0, 18.6, 19.0. Thresholds: A never rises
    and B never falls by more than 3 % of its range from one frame to the next, and both move by at least half
    of the first frame's A score over the strip."""
    rec = load_recipe("mobilenet_v2", [], {"render.steps": 96, "render.size": 64})
    a, b = parse_units("features.14:7", mobilenet)[0], parse_units("features.14:20", mobilenet)[0]
    res = interpolate(mobilenet, rec, a, b, 6)
    sa, sb = res.score_a, res.score_b
    assert res.align_layer == "features.13"
    tol_a, tol_b = 0.03 * (max(sa) - min(sa)), 0.03 * (max(sb) - min(sb))
    assert all(sa[i + 1] <= sa[i] + tol_a for i in range(5)), sa
    assert all(sb[i + 1] >= sb[i] - tol_b for i in range(5)), sb
    assert sa[0] - sa[-1] > 0.5 * sa[0] and sb[-1] - sb[0] > 0.5 * sa[0], (sa, sb)
    out = write_interpolation(tmp_path, mobilenet, rec, res)
    assert out["strip"].name == "features.14-00007--features.14-00020.png" and len(out["frames"]) == 6
    recd = json.loads(out["record"].read_text())
    assert [f["score_a"] for f in recd["frames"]] == sa and recd["alignment"]["layer"] == "features.13"


def test_alignment_term_aligns_frames(mobilenet):
    """Same seeds with and without the alignment term (48 px, 48 steps, 4 frames): the Alignment score at the
    alignment layer rises. Measured: -32.2 without, -20.9 with (65 %); threshold: at most 85 % of the unaligned
    penalty."""
    rec = load_recipe("mobilenet_v2", [], {"render.steps": 48, "render.size": 48})
    a, b = parse_units("features.14:7", mobilenet)[0], parse_units("features.14:20", mobilenet)[0]
    lay = default_alignment_layer(mobilenet, a.layer)
    scores = []
    for w in (0.0, 0.1):
        res = interpolate(mobilenet, rec, a, b, 4, align_weight=w, align_layer=lay)
        with torch.no_grad(), Capture(mobilenet, [lay]) as cap:
            acts = cap(mobilenet.preprocess.apply(res.frames))
        scores.append(float(Alignment(lay)(acts, res.frames).sum()))
    assert scores[1] > 0.85 * scores[0] and scores[1] < 0, scores


def test_default_alignment_layer_inceptionv1():
    m = load_model(ModelOptions(weights="random:0"), "cpu", channels_last=False)
    assert default_alignment_layer(m, "mixed4a") == "mixed3b"  # as lucid's notebook
    assert default_alignment_layer(m, "conv2d0") == "conv2d0"


def test_cli_interpolate(mobilenet, tmp_path):
    r = CliRunner().invoke(app, ["interpolate", "-r", "mobilenet_v2", "features.14:7", "features.14:20 + features.14:21",
                                 "--frames", "3", "--steps", "4", "--size", "32", "-o", str(tmp_path), "-q"])
    assert r.exit_code == 0, r.output
    (strip,) = [p for p in tmp_path.glob("*.png") if "frame" not in p.name]
    assert strip.name.startswith("features.14-00007--expr-features.14_20_features.14_21-")
    assert len(list(tmp_path.glob("*-frame0?.png"))) == 3 and strip.with_suffix(".json").is_file()
    bad = CliRunner().invoke(app, ["interpolate", "-r", "mobilenet_v2", "features.14:7", "features.14:1-3", "-q"])
    assert bad.exit_code == 2 and "interpolation needs one unit at each end" in bad.output


def test_cli_interpolate_takes_the_model_from_the_units_prefix(cli, tmp_path):
    # `demo:logit:0` selects the demo model, as it does for fv render (no InceptionV1 weights needed)
    r = cli("interpolate", "demo:logit:0", "demo:logit:1", "--frames", "2", "--steps", "2", "--size", "32",
            "-o", tmp_path, "-q")
    assert r.exit_code == 0, r.output
    (rec,) = tmp_path.glob("*.json")
    assert json.loads(rec.read_text())["model"] == "demo"
    mixed = cli("interpolate", "demo:logit:0", "inceptionv1:mixed4a:1", "-q")
    assert mixed.exit_code == 2 and "different models" in mixed.output
