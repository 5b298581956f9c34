"""Circuits (fvcli/circuits): ground truth first, then the sweep extra, the gallery sections and `fv circuit`.

Ground truth: a network with a planted circuit (one unit = ReLU(a * K1 * x1 - b * K2 * x2 + small noise) of the
channels below it) must come out of both methods with x1 first excitatory, x2 first inhibitory and the kernels' shapes;
the demo model's expanded weights from block4 to a logit must be that row of fc.weight over the pooling size
(exactly); InceptionV1's 1x1 -> 3x3 branch must compose its two convolutions.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import fvcli
from fvcli.circuits import attribution, expanded_weights, sweep_circuits, unit_circuits
from fvcli.circuits.linear_path import LinearPath
from fvcli.cli.gallery import Extras, add_extras, parse_with
from fvcli.errors import FvError
from fvcli.recipe import load_recipe
from fvcli.sweep import layer_dir, run_sweep, select_units
from fvcli.units.unit import Unit, parse_units

from test_gallery_rich import make_images

pytestmark = pytest.mark.usefixtures("one_thread")

K1 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])  # a vertical bar
K2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # a diagonal


class Planted(nn.Module):
    """below: 4 channels (x0..x3) of the image, always on (bias 1); above:0 = ReLU(2 K1*x1 - 1.5 K2*x2 + noise)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.below = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.above = nn.Sequential(nn.Conv2d(4, 2, 3, padding=1), nn.ReLU())
        with torch.no_grad():
            self.below[0].weight.copy_(torch.randn(4, 3, 3, 3, generator=g) * 0.3)
            self.below[0].bias.fill_(1.0)
            w = torch.randn(2, 4, 3, 3, generator=g) * 0.01  # the small noise on every connection
            w[0, 1] += 2.0 * K1
            w[0, 2] -= 1.5 * K2
            self.above[0].weight.copy_(w)
            self.above[0].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.above(self.below(x))


@pytest.fixture(scope="module")
def planted():
    return fvcli.load_model(Planted(), sets=["model.native_size=32"])


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def test_planted_circuit_is_recovered_by_both_methods(planted):
    res = fvcli.render(planted, "above:0", steps=32, size=32)
    unit = parse_units("above:0", planted)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # stand-ins for dataset examples
    (rec,) = unit_circuits(planted, unit, "below", [res.images[0]], [list(images)])
    for method in ("expanded", "attribution"):
        assert rec[method]["excitatory"][0][0] == 1, (method, rec[method])
        assert rec[method]["inhibitory"][0][0] == 2, (method, rec[method])
    assert rec["attribution"]["images"] == {"render": True, "examples": 3}
    # the kernels are the planted shapes (the noise is 0.5 % of them), not flipped: conv2d is a cross-correlation
    assert _corr(torch.tensor(rec["kernels"]["1"]), K1) > 0.99 and _corr(torch.tensor(rec["kernels"]["2"]), -K2) > 0.99
    assert rec["expanded"]["exact"] and rec["expanded"]["footprint"][2:] == [3, 3]
    assert rec["expanded"]["path"] == ["above.0", "above.1", "above"] and rec["expanded"]["bypassed"] == {"relu": 1}
    # attribution is the mean over the render and the examples of gradient x activation
    each = attribution(planted, unit, torch.cat([res.images[:1], images]), [0, 0, 0, 0], "below")
    assert torch.allclose(torch.tensor(rec["attribution"]["values"]), each.mean(0), rtol=1e-4, atol=1e-6)


def test_demo_logit_expanded_weights_are_the_fc_row_over_the_pool_size():
    m = fvcli.load_model("demo")
    ew = expanded_weights(m, "fc", list(range(12)), "block4")
    fc = dict(m.net.named_modules())["fc"].weight  # (12, 192)
    h, w = m.catalog["block4"].spatial
    assert ew.maps.shape == (12, 192, h, w) and ew.exact and ew.path == ("gap", "fc")
    assert (ew.maps - fc[:, :, None, None] / (h * w)).abs().max() < 1e-6
    assert (ew.weights() - fc).abs().max() < 1e-5  # summed over the pool: the row itself
    # one conv through its ReLU: the kernel is the conv's weight, exactly
    conv = dict(m.net.named_modules())["block4.conv"].weight
    ew4 = expanded_weights(m, "block4", [5, 17], "block3")
    assert ew4.bypassed == {"relu": 1} and torch.equal(ew4.kernel(1, 7), conv[17, 7])


def test_max_pool_is_averaged_and_the_composition_is_exact():
    """block2 from block1 on the demo: max-pool 2x2 then a 3x3 conv -> the conv composed with a 2x2 average."""
    m = fvcli.load_model("demo")
    ew = expanded_weights(m, "block2", [3], "block1")
    assert ew.bypassed == {"max_pool2d->avg_pool2d": 1, "relu": 1} and ew.exact
    conv = dict(m.net.named_modules())["block2.conv"].weight  # (64, 32, 3, 3)
    a = torch.zeros(1, 32, 32, 32, requires_grad=True)
    b = F.conv2d(F.avg_pool2d(a, 2), conv, padding=1)  # the linear path written by hand
    (g,) = torch.autograd.grad(b[0, 3, 8, 8], a)
    assert torch.allclose(ew.maps[0], g[0], atol=1e-7)


def test_inceptionv1_branch_composes_1x1_then_3x3(iv1):
    ew = expanded_weights(iv1, "mixed3b", [0, 130, 330, 460], "mixed3a")
    assert [ew.footprint(i)[2:] for i in range(4)] == [(1, 1), (3, 3), (5, 5), (3, 3)]  # 1x1, 3x3, 5x5, pool
    assert ew.exact and ew.bypassed["max_pool2d->avg_pool2d"] == 1
    assert "mixed3b_3x3_bottleneck_pre_relu_conv" in ew.path and "mixed3b_pool_reduce_pre_relu_conv" in ew.path
    mods = dict(iv1.net.named_modules())
    w1 = mods["mixed3b_3x3_bottleneck_pre_relu_conv"].weight[:, :, 0, 0]  # (K, 256)
    w3 = mods["mixed3b_3x3_pre_relu_conv"].weight[130 - 128]  # (K, 3, 3): channel 130 is the 3x3 branch's 2
    want = torch.einsum("kyx,ki->iyx", w3, w1)
    got = torch.stack([ew.kernel(1, i) for i in range(256)])
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_nonlinearities_other_than_relu_are_named():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.b(torch.sigmoid(F.relu(self.a(x), inplace=True)))

    m = fvcli.load_model(Net(), sets=["model.native_size=16"])
    ew = expanded_weights(m, "b", [0], "a")
    assert ew.kept == {"sigmoid": 1} and not ew.exact and ew.bypassed == {"relu": 1}
    with LinearPath() as lp:
        x = torch.tensor([-3.0, -0.5, 0.2, 2.0, 7.5], requires_grad=True)  # both sides of every bound below
        assert torch.equal(F.relu(x), x) and torch.equal(F.hardtanh(x, 0.0, 6.0), x)
        assert not torch.equal(F.hardtanh(x, -1.0, 1.0), x)
    assert lp.bypassed == {"relu": 1, "hardtanh": 1} and lp.kept == {"hardtanh": 1}
    with pytest.raises(FvError, match="is not before"):
        expanded_weights(m, "a", [0], "b")


# ---------------------------------------------------------------------------------------------------------------
# The sweep extra and the gallery


def _circuit_files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("layers/*/*.circuit.json"))}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("circuits")
    out = root / "run"
    recipe = load_recipe(None, ["render.thresholds=[1]", "transforms=none"],
                         {"model.name": "demo", "render.steps": 2, "render.size": 16, "render.device": "cpu"})
    model = fvcli.load_model("demo")
    units = select_units(model, ["block3:0-19", "block4:0-11", "logit:all"])
    assert run_sweep(model, recipe, units, out, batch_size=64).complete
    costs = add_extras(out, Extras(examples=make_images(root / "images"), circuits=True), top_k=3, quiet=True)
    return out, units, {c["extra"]: c for c in costs}


def test_with_circuits_parses_and_names_the_choice():
    assert parse_with("circuits") == Extras(circuits=True)
    assert parse_with("negative,circuits=block2") == Extras(negative=True, circuits=True, circuits_from="block2")
    with pytest.raises(FvError, match=r"valid .*circuits\[=FROM_LAYER\]"):
        parse_with("circuit")


def test_sweep_circuits_records_and_resume_is_byte_identical(swept):
    out, units, costs = swept
    c = costs["circuits"]
    assert c["rendered"] == 44 and c["skipped"] == 0
    assert c["layers"] == {"block3": "block2", "block4": "block3", "fc": "block4"}
    rec = json.loads((layer_dir(out, "block4") / "block4-00005.circuit.json").read_text())
    assert rec["from"] == "block3" and rec["attribution"]["images"] == {"render": True, "examples": 3}
    assert len(rec["expanded"]["weights"]) == 128 and rec["expanded"]["exact"]
    before = _circuit_files(out)
    assert len(before) == 44
    model = fvcli.load_model("demo")
    logit = json.loads((layer_dir(out, "fc") / "logit-00003.circuit.json").read_text())
    fc = dict(model.net.named_modules())["fc"].weight[3]
    assert logit["from"] == "block4" and torch.allclose(torch.tensor(logit["expanded"]["weights"]), fc, rtol=1e-5)
    again = sweep_circuits(model, out, units)
    assert (again["rendered"], again["skipped"]) == (0, 44)
    # killed half-way through a chunk: one record of block3's first chunk gone, one of block4's stale
    (layer_dir(out, "block3") / "block3-00007.circuit.json").unlink()
    stale = layer_dir(out, "block4") / "block4-00002.circuit.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "from": "block1"}))
    resumed = sweep_circuits(model, out, units)
    assert resumed["rendered"] == 16 + 12 and resumed["skipped"] == 4 + 12  # the two chunks again, whole
    assert _circuit_files(out) == before


def test_a_killed_circuits_run_resumes_byte_identical(swept, tmp_path):
    """`fv gallery DIR --with circuits` killed (SIGKILL) as soon as its first record lands, then run again."""
    out, units, _costs = swept
    before = _circuit_files(out)
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    for p in copy.glob("layers/*/*.circuit.json"):
        p.unlink()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fvcli.cli", "gallery", str(copy), "--with", "circuits", "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not any(copy.glob("layers/*/*.circuit.json")) and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    partial = len(_circuit_files(copy))
    assert partial < 44, "the run finished before it could be killed"
    cost = sweep_circuits(fvcli.load_model("demo"), copy, units)
    assert cost["skipped"] == 44 - cost["rendered"] and cost["rendered"] >= 44 - partial
    assert _circuit_files(copy) == before


def test_unit_pages_link_inputs_and_outputs(swept):
    out, _units, _costs = swept
    rec = json.loads((layer_dir(out, "block4") / "block4-00005.circuit.json").read_text())
    page = (layer_dir(out, "block4") / "block4-00005.html").read_text()
    assert "<h2>inputs</h2>" in page and page.count('<svg class="kernel"') >= 4
    for c, _v in rec["expanded"]["excitatory"] + rec["expanded"]["inhibitory"]:
        key = Unit("channel", "block3", c).key
        assert (f'href="../block3/{key}.html"' in page) == (c < 20)  # only block3:0-19 were swept
    # block3's pages show the block4 units they feed most: the largest |weight| over block4's records
    feeds = []
    for p in sorted(layer_dir(out, "block4").glob("*.circuit.json")):
        r = json.loads(p.read_text())
        feeds.append((r["expanded"]["weights"][3], r["channel"]))
    best = max((f for f in feeds if f[0] > 0), key=lambda f: f[0])[1]
    page3 = (layer_dir(out, "block3") / "block3-00003.html").read_text()
    assert "<h2>outputs</h2>" in page3 and f'href="../block4/{Unit("channel", "block4", best).key}.html"' in page3
    # block4's pages feed the logits: links to the classes' pages
    assert 'href="../fc/logit-000' in (layer_dir(out, "block4") / "block4-00005.html").read_text()
    assert "<h2>inputs</h2>" in (layer_dir(out, "fc") / "logit-00003.html").read_text()


def test_fv_circuit_command_draws_svg_and_png(swept, cli, tmp_path):
    out, _units, _costs = swept
    r = cli("circuit", "demo:block4:5", "--sweep", out, "--out", tmp_path, "--depth", "2", "--top", "2",
            "--steps", "2", "--size", "16", "--set", "transforms=none")
    assert r.exit_code == 0, r.output
    svg = tmp_path / "circuit-block4-00005-from-block3-depth2.svg"
    root = ET.parse(svg).getroot()
    images = [e for e in root.iter() if e.tag.endswith("image")]
    assert len(images) == 1 + 4 + 8  # the unit, its 2 + 2 inputs, 2 inputs of each
    with Image.open(svg.with_suffix(".png")) as im:
        assert im.size == (int(root.get("width")), int(root.get("height")))
    rendered, reused = map(int, re.search(r"pictures: (\d+) rendered, (\d+) reused", r.output).groups())
    assert reused >= 1 and rendered >= 1  # block4:5 comes from the sweep; block2 was not swept: rendered
    assert (tmp_path / "block4-00005-from-block3.circuit.json").is_file()
    bad = cli("circuit", "demo:block2:0", "--from", "block4", "--out", tmp_path)
    assert bad.exit_code == 2 and "is not before" in bad.output
