"""A render record's `clipped`: the share of the final PNG's values at 0 or 255 (fvcli/optvis/metrics.py), where the
sigmoid saturated -- the cause of the steep start's late cost on ResNet-50 (issue #29, rounds 9-10). It is the PNG's
own bytes, and a render pushed into saturation reports far more of it than a plain one."""
from __future__ import annotations

import json
import logging

import numpy as np
import torch

from fvcli.optvis.metrics import clipped_fraction
from fvcli.outputs import read_png, to_uint8


def test_clipped_fraction_counts_what_the_png_stores_at_the_ends():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x[0, :, :8] = 1.0  # half of image 0 saturated high ...
    x[1, 0] = 0.0  # ... a third of image 1 low
    x[1, 1, 0, 0] = 0.999  # rounds to 255 in the PNG: clipped too
    x[1, 2, 0, 0] = 0.001  # rounds to 0
    got = clipped_fraction(x)
    for b in range(2):
        png = to_uint8(x[b])
        assert float(got[b]) == np.isin(png, (0, 255)).mean()
    assert 0.5 <= float(got[0]) < 0.52 and 1 / 3 < float(got[1]) < 0.35
    assert float(clipped_fraction(torch.full((1, 3, 4, 4), 0.5))[0]) == 0.0


def test_a_record_reports_the_final_pictures_clipped_share(cli, tmp_path):
    base = ["-q", "--set", "model.name=demo", "--set", "render.size=48", "--set", "render.steps=32", "--device", "cpu"]
    clipped = {}
    for name, extra in (("plain", []), ("hot", ["--set", "render.lr=1.0", "--set", "render.beta1=0.0"])):
        out = tmp_path / name
        r = cli("render", "logit:3", *base, *extra, "-o", out)
        assert r.exit_code == 0, r.output
        rec = json.loads(next(out.glob("*.json")).read_text())
        png = read_png(out / rec["png"])
        assert rec["clipped"] == round(float(np.isin(png, (0, 255)).mean()), 4)  # the PNG's bytes
        clipped[name] = rec["clipped"]
    assert clipped["hot"] > 0.3 and clipped["hot"] > 5 * clipped["plain"], clipped


def test_render_warns_when_pictures_come_out_saturated(cli, tmp_path, caplog):
    """A render pushed into saturation is told so (a warning), with the unit and its share; a plain one is not."""
    caplog.set_level(logging.WARNING, logger="fvcli")
    base = ["--set", "model.name=demo", "--set", "render.size=48", "--set", "render.steps=32", "--device", "cpu"]
    hot = cli("render", "logit:3", *base, "--set", "render.lr=4.0", "--set", "render.beta1=0.0", "-o", tmp_path / "h")
    assert hot.exit_code == 0, hot.output
    rec = json.loads(next((tmp_path / "h").glob("*.json")).read_text())
    assert rec["clipped"] > 0.5
    assert f"1 of 1 pictures have more than 25 % of their values clipped at 0 or 255 (logit:3: " \
           f"{100 * rec['clipped']:.0f} %)" in caplog.text
    caplog.clear()
    plain = cli("render", "logit:3", *base, "-o", tmp_path / "p")
    assert plain.exit_code == 0 and "clipped" not in caplog.text
