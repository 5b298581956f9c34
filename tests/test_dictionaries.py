"""Dictionaries of directions (fvcli/units/dictionary.py) and `fv concepts` (fvcli/concepts), against ground truth.

The demo model averages `block4` over positions and applies `fc`, so the rows of `fc.weight` as a dictionary over
`block4` are the class logits minus their bias: the Direction objective (mean over positions of the dot product)
must equal logit - bias exactly, renders of the rows must be classified as their classes, and normalized rows give
(logit - bias) / |row|. Then the file formats, the one-line errors, sweeps (plan, resume, a changed file refused,
names in the gallery), examples ranked by projection, NHWC / token layers, and concepts that separate the demo
classes' families.
"""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

import fvcli
from conftest import raw_output, write_demo_images
from fvcli.errors import FvError
from fvcli.models import Capture, load_model
from fvcli.models.demo_data import DEMO_CLASSES
from fvcli.optvis.objectives import PerImage
from fvcli.sweep import finalize, plan_sweep, run_sweep, select_units
from fvcli.units.expr import parse_unit_arg


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny renders run on one thread


@pytest.fixture(scope="module")
def demo():
    return fvcli.load_model("demo")


@pytest.fixture(scope="module")
def fc(demo, tmp_path_factory):
    d = tmp_path_factory.mktemp("dict")
    w = demo.net.fc.weight.detach().double().numpy()  # (12, 192)
    np.save(d / "fc.npy", w)
    (d / "fc.names.txt").write_text("\n".join(DEMO_CLASSES) + "\n")
    return d / "fc.npy"


def _acts(model, layer, x):
    with torch.no_grad(), Capture(model, [layer], truncate=False) as cap:
        return cap(model.preprocess.apply(x))


def test_fc_rows_over_block4_are_the_logits_minus_the_bias_exactly(demo, fc):
    units = parse_unit_arg(f"block4:dir={fc}#all", demo)
    assert len(units) == 12 and units[3].label == "block4:dir=fc.npy#3" and units[3].key == "block4-dir-fc-00003"
    x = torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    acts = _acts(demo, "block4", x)
    with torch.no_grad():
        logits32 = demo.net(demo.preprocess.apply(x)).double()  # the model's own float32 forward pass
    bias = demo.net.fc.bias.double()
    a64 = {"block4": acts["block4"].double()}
    # the model's head (gap, then fc) in float64 on the same block4: the ground truth to 1e-9
    logits = torch.nn.functional.linear(demo.net.gap(a64["block4"]).flatten(1), demo.net.fc.weight.double(), bias)
    assert torch.allclose(logits, logits32, rtol=1e-5, atol=1e-5)
    for u in units:  # one objective at a time
        got = u.objective(demo)(a64, x)
        assert torch.allclose(got, logits[:, u.channel] - bias[u.channel], atol=1e-9, rtol=1e-9)
        assert torch.allclose(got, logits32[:, u.channel] - bias[u.channel], atol=1e-5, rtol=1e-5)
    # the batched path (one einsum, image b scored by row b) gives the same numbers
    batched = PerImage(tuple(u.objective(demo) for u in units))(a64, x)
    assert torch.allclose(batched, (logits - bias).diagonal(), atol=1e-9)
    # normalized rows: (logit - bias) / |row|
    w = demo.net.fc.weight.detach().double()
    np.save(fc.parent / "fcn.npy", (w / w.norm(dim=1, keepdim=True)).numpy())
    (u5,) = parse_unit_arg(f"block4:dir={fc.parent / 'fcn.npy'}#5", demo)
    assert torch.allclose(u5.objective(demo)(a64, x), (logits[:, 5] - bias[5]) / w[5].norm(), atol=1e-9)


def _classify(demo, res):
    imgs = torch.stack([p.image for p in res.pictures])
    with torch.no_grad():
        return imgs, demo.net(demo.preprocess.apply(imgs))


def test_renders_of_the_fc_rows_are_classified_as_their_classes(demo, fc):
    res = fvcli.render(demo, f"block4:dir={fc}#all", steps=48, size=64, seed=0, batch_size=12)
    imgs, logits = _classify(demo, res)
    labels = [int(p.record["channel"]) for p in res.pictures]
    assert labels == list(range(12))
    pred = logits.argmax(1).tolist()
    assert sum(p == c for p, c in zip(pred, labels)) >= 11, pred
    # the row is the logit up to a constant (the same gradient), so the row's pictures are classified as the logits'
    # own are -- up to the one class whose picture sits near a decision boundary, where 48 steps of gradient ascent
    # grow the two objectives' different float rounding into different pictures
    _, logit_logits = _classify(demo, fvcli.render(demo, "logit:0-11", steps=48, size=64, seed=0, batch_size=12))
    assert sum(p == q for p, q in zip(pred, logit_logits.argmax(1).tolist())) >= 11
    assert [p.record["class_label"] for p in res.pictures] == [DEMO_CLASSES[c] for c in labels]
    # each picture's row score on the clean picture is its logit minus its bias
    a = _acts(demo, "block4", imgs)["block4"].double()
    for b, p in enumerate(res.pictures):
        (u,) = parse_unit_arg(f"block4:dir={fc}#{labels[b]}", demo)
        s = u.objective(demo)({"block4": a[b:b + 1]}, imgs[b:b + 1])
        assert float(s) == pytest.approx(float(logits[b, labels[b]] - demo.net.fc.bias[labels[b]]), rel=1e-5,
                                         abs=1e-4)


def test_formats_pt_state_dict_key_and_safetensors_and_a_transposed_decoder(demo, fc, tmp_path):
    w = torch.from_numpy(np.load(fc))
    torch.save(w, tmp_path / "t.pt")
    torch.save({"encoder.weight": w.T.contiguous(), "decoder.weight": w.T.contiguous(), "b": torch.zeros(3)},
               tmp_path / "sae.pt")
    from safetensors.torch import save_file

    save_file({"dirs": w.float().contiguous()}, str(tmp_path / "d.safetensors"))
    ref = parse_unit_arg(f"block4:dir={fc}#7", demo)[0].objective(demo).tensor()
    for spec in ("t.pt", "sae.pt:decoder.weight", "d.safetensors"):
        (u,) = parse_unit_arg(f"block4:dir={spec}#7", demo, base_dir=tmp_path)
        assert torch.allclose(u.objective(demo).tensor(), ref, atol=1e-6), spec
    with pytest.raises(FvError, match=r"holds 2 2-D tensors; name one as sae.pt:KEY.*decoder.weight"):
        parse_unit_arg("block4:dir=sae.pt#0", demo, base_dir=tmp_path)


def test_bad_widths_non_finite_and_zero_rows_are_one_line_errors(demo, tmp_path):
    np.save(tmp_path / "narrow.npy", np.ones((4, 100)))
    with pytest.raises(FvError, match=r"narrow.npy has shape \(4, 100\).*layer block4 has 192 channels.*\(rows, 192\)"):
        parse_unit_arg(f"block4:dir={tmp_path / 'narrow.npy'}#0", demo)
    bad = np.ones((5, 192))
    bad[3, 7] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(FvError, match=r"nan.npy: row 3 is not finite.*\(rows, 192\)") as e:
        parse_unit_arg(f"block4:dir={tmp_path / 'nan.npy'}#0", demo)
    assert "\n" not in str(e.value)
    bad = np.ones((5, 192))
    bad[2] = 0
    np.save(tmp_path / "zero.npy", bad)
    with pytest.raises(FvError, match=r"zero.npy: row 2 is all zeros"):
        parse_unit_arg(f"block4:dir={tmp_path / 'zero.npy'}#0-4", demo)
    with pytest.raises(FvError, match=r"dictionary file .*nope.npy' not found"):
        parse_unit_arg(f"block4:dir={tmp_path}/nope.npy#12", demo)
    np.save(tmp_path / "ok.npy", np.ones((12, 192)))
    with pytest.raises(FvError, match=r"row 12 out of range.*valid 0-11 \(12 rows\)"):
        parse_unit_arg(f"block4:dir={tmp_path / 'ok.npy'}#12", demo)


def test_a_dictionary_sweep_plans_like_channels_resumes_shows_names_and_refuses_a_changed_file(demo, fc, tmp_path):
    rec = fvcli.make_recipe(model="demo", steps=4, size=48, batch_size=4)
    units = select_units(demo, ["block4:0-7"], directions=str(fc))
    chans = select_units(demo, ["block4:0-7"])
    shape = [len(b.units) for b in plan_sweep(units, 4, {"block4": 1})]
    assert shape == [len(b.units) for b in plan_sweep(chans, 4, {"block4": 1})] == [4, 4]
    out = tmp_path / "sweep"
    r0 = run_sweep(demo, rec, units, out, shard=(0, 2), finalize_when_done=False)
    r1 = run_sweep(demo, rec, units, out, shard=(1, 2))
    assert r0.rendered + r1.rendered == 8 and r1.complete
    again = run_sweep(demo, rec, units, out)
    assert again.rendered == 0 and again.skipped == 8
    manifest = finalize(out)
    assert manifest["complete"] and manifest["units"]["done"] == 8
    page = (out / "layers" / "block4" / "index.html").read_text()
    assert "stripes_45" in page and "grid" in page  # row names from fc.names.txt
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["dictionaries"][0]["sha256"] == units[0].source.sha256
    w = np.load(fc)
    w[0] *= 2
    np.save(fc, w)
    try:
        changed = select_units(demo, ["block4:0-7"], directions=str(fc))
        with pytest.raises(FvError, match=r"dictionary .*fc.npy changed since the sweep began: sha256"):
            run_sweep(demo, rec, changed, out)
    finally:
        w[0] /= 2
        np.save(fc, w)


def test_nhwc_and_token_layers_score_the_projection_of_the_channel_first_view(tmp_path):
    from fvcli.models import ModelOptions

    g = torch.Generator().manual_seed(0)
    for arch, layer, path, hw in (("swin_t", "features.3", "features.3", 64),
                                  ("vit_b_16", "encoder.layers.encoder_layer_1", "encoder.layers.encoder_layer_1", 224)):
        m = load_model(ModelOptions(name=f"torchvision:{arch}", weights="random:0"), "cpu")
        c = m.layer(layer).channels
        v = torch.randn(3, c, generator=g, dtype=torch.float64)
        np.save(tmp_path / f"{arch}.npy", v.numpy())
        x = torch.rand(1, 3, hw, hw, generator=g)
        raw = raw_output(m, path, x).double()
        grid = raw.flatten(1, 2) if raw.dim() == 4 else raw[:, 1:]  # NHWC (B, H, W, C) or tokens after the class
        acts = {k: t.double() for k, t in _acts(m, layer, x).items()}
        for u in parse_unit_arg(f"{layer}:dir={tmp_path / arch}.npy#0-2", m):
            want = (grid @ v[u.channel]).mean(1)
            assert torch.allclose(u.objective(m)(acts, x), want, rtol=1e-6, atol=1e-6), arch


FAMILIES = {"stripes": ("stripes_0", "stripes_45", "stripes_90", "stripes_135", "rings"),
            "lattice": ("checkerboard", "dots", "grid"),
            "blobs": ("red_blobs", "yellow_blobs", "green_blobs", "blue_blobs")}
FAMILY = {c: f for f, cs in FAMILIES.items() for c in cs}


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    return write_demo_images(tmp_path_factory.mktemp("imgs"), 240, 64, 1)


def test_fv_concepts_finds_directions_whose_examples_separate_the_class_families(demo, demo_folder, tmp_path, cli):
    out = tmp_path / "concepts.npy"
    r = cli("concepts", str(demo_folder), "block3", "--k", "6", "--model", "demo", "-o", str(out), "-j", "0",
            "-b", "48")
    assert r.exit_code == 0, r.output
    d = np.load(out)
    report = json.loads(out.with_suffix(".json").read_text())
    assert d.shape == (6, 128) and (d >= 0).all() and report["method"] == "nmf"
    assert 0.75 < report["fraction_of_variance_explained"] <= 1 and report["samples"] == 240 * 64
    assert "explain" in r.output and "fv sweep block3 --directions" in r.output
    from fvcli.examples import ExampleSettings, list_images, run_examples, write_examples

    units = parse_unit_arg(f"block3:dir={out}#all", demo)
    res = run_examples(demo, units, list_images(demo_folder), ExampleSettings(top_k=12, batch_size=48, workers=0))
    write_examples(tmp_path / "ex", res, pngs=False)
    families, classes = [], []
    for u in units:  # the examples are ranked by the projection onto the concept (max over positions)
        top = json.loads((tmp_path / "ex" / f"{u.key}.examples.json").read_text())["top"]
        fam = collections.Counter(FAMILY[e["relpath"].split("/")[0]] for e in top)
        family, n = fam.most_common(1)[0]
        assert n >= 10, (u.label, fam)  # each concept's top examples: >= 10 of 12 from one family
        families.append(family)
        classes.append(collections.Counter(e["relpath"].split("/")[0] for e in top).most_common(1)[0][0])
    assert {"stripes", "blobs"} <= set(families), families  # a stripes concept and a blob concept
    assert len(set(classes)) >= 4, classes  # and different concepts pick different classes
    for method in ("pca", "kmeans"):
        o = tmp_path / f"{method}.npy"
        r = cli("concepts", str(demo_folder), "block3", "--k", "4", "--method", method, "--model", "demo", "-o",
                str(o), "-j", "0", "-b", "48", "--limit", "96")
        assert r.exit_code == 0, r.output
        rep = json.loads(o.with_suffix(".json").read_text())
        assert np.load(o).shape == (4, 128) and 0.3 < rep["fraction_of_variance_explained"] <= 1
