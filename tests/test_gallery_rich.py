"""The rich gallery (issue #23) end to end: a demo sweep of 224 units with diversity facets, negatives and dataset
examples, opened from disk in headless Chromium -- every page, link and image resolves, sorting, the dead filter,
the channel jump and keyboard navigation work, no console errors --, every extra byte-identical after a killed run
is resumed, and a fabricated layer of 1,024 units showing its first screen within 1 s.

Needs Debian's `chromium` (`make chromium`); the browser tests are skipped without it, the rest still run.
FV_BROWSER_TEST_OUT=DIR keeps the demo sweep in DIR.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fvcli.cli.gallery import Extras, add_extras, parse_with
from fvcli.errors import FvError
from fvcli.gallery.curve import curve_svg
from fvcli.gallery.facts import dead_flags
from fvcli.gallery.layer_page import layer_html
from fvcli.gallery.script import JS
from fvcli.gallery.thumbs import build_sprite
from fvcli.models import load_model
from fvcli.models.demo_data import DEMO_CLASSES, generate
from fvcli.outputs import save_png
from fvcli.recipe import load_recipe
from fvcli.sweep import layer_dir, run_sweep, select_units
from fvcli.units.unit import Unit

from gallery_harness import FIRST_SCREEN, INTERACT
from test_gallery_browser import CHROMIUM, CRAWLER, chromium

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: `make chromium`")
LAYERS = ["block1", "block2", "block3"]  # 32 + 64 + 128 = 224 units
FACETS = 2


def make_images(root: Path, n: int = 24, size: int = 48) -> Path:
    """A small ImageFolder of the demo model's procedural classes."""
    rng = np.random.default_rng(0)
    for i in range(n):
        c = i % len(DEMO_CLASSES)
        (root / DEMO_CLASSES[c]).mkdir(parents=True, exist_ok=True)
        Image.fromarray((generate(c, size, rng) * 255).round().astype(np.uint8)).save(root / DEMO_CLASSES[c] / f"{i:03d}.png")
    return root


def extras_files(out: Path) -> dict[str, str]:
    """sha256 of every file an extra or the gallery's media wrote (facets, negatives, crops, thumbs, sprites)."""
    pats = ["layers/*/*-div*.png", "layers/*/*-neg.png", "layers/*/ex/*.jpg", "layers/*/gallery/thumbs.jpg",
            "layers/*/*.examples.json"]
    files = {}
    for pat in pats:
        for p in sorted(out.glob(pat)):
            data = p.read_bytes()
            if p.name.endswith(".examples.json"):  # the record of the pass: its timing-free part
                rec = json.loads(data)
                data = json.dumps({k: rec[k] for k in ("top", "bottom", "stats")}, sort_keys=True).encode()
            files[str(p.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return files


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    keep = os.environ.get("FV_BROWSER_TEST_OUT")
    root = Path(keep).resolve() if keep else tmp_path_factory.mktemp("rich")
    out = root / "run"
    if out.exists():
        shutil.rmtree(out)
    images = make_images(root / "images")
    recipe = load_recipe(None, ["render.thresholds=[1]", "transforms=none"], {"model.name": "demo", "render.steps": 2,
                                                           "render.size": 16, "render.device": "cpu"})
    model = load_model(recipe.model_options(), "cpu", recipe.render.channels_last)
    units = select_units(model, LAYERS)
    t0 = time.perf_counter()
    report = run_sweep(model, recipe, units, out, batch_size=64)
    sweep_s = time.perf_counter() - t0
    assert report.complete and len(units) == 224
    costs = add_extras(out, Extras(FACETS, True, images), top_k=3, quiet=True)
    print(f"demo sweep of 224 units: {sweep_s:.1f} s; extras: {costs}")
    return out, units, costs, sweep_s


def test_with_parsing_names_the_bad_item_and_the_choices():
    assert parse_with("diversity,negative") == Extras(4, True, None)
    assert parse_with("diversity=3").diversity == 3
    with pytest.raises(FvError, match=r"unknown --with item 'negatives'.*valid diversity\[=N\], negative, examples="):
        parse_with("negatives")
    with pytest.raises(FvError, match="N >= 2"):
        parse_with("diversity=1")
    with pytest.raises(FvError, match="not a folder"):
        parse_with("examples=/nonexistent/fv-images")


def test_curve_dead_rule_and_escaping():
    svg = curve_svg({"1": 0.5, "32": 2.0, "64": 3.0}, 16)
    assert svg.startswith("<svg") and svg.count("<circle") == 3 and "redirect ends" in svg
    assert curve_svg({}) == ""
    recs = [{"final_score": 5.0, "scores": {"32": 5.0}}, {"final_score": 0.0, "scores": {"8": 3.0, "32": 0.0}},
            {"final_score": 4.0, "scores": {"32": 4.0}}, {"final_score": 6.0, "scores": {"32": 6.0}},
            {"final_score": 0.01, "scores": {"32": 0.01}}]
    # the layer's median final score is 4.0, so the limit is 0.04: a unit at 0 after the redirect phase (its 3.0 at
    # step 8, inside the phase, does not count) and one at 0.01 are dead
    assert dead_flags(recs) == [False, True, False, False, True]
    u = Unit("channel", "x<y", 0)
    page = layer_html({"sweep": {"model": "<b>m</b>", "recipe_hash": "h"}},
                      {"layer": "x<y", "kind": "channel", "units": [(u, {"png": "a\"b.png", "final_score": 1.0,
                                                                         "class_label": "<script>"})]},
                      {"done": 1, "units": 1}, {}).decode()
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "&lt;b&gt;m&lt;/b&gt;" in page
    assert 'a%22b.png' in page


def test_extras_costs_and_rerun_does_nothing(rich):
    out, units, costs, _ = rich
    by = {c["extra"]: c for c in costs}
    assert set(by) == {"diversity", "negative", "examples"}
    assert all(c["rendered"] == 224 and c["skipped"] == 0 and c["seconds"] > 0 for c in costs)
    again = add_extras(out, Extras(FACETS, True, by and rich[0].parent / "images"), top_k=3, quiet=True)
    assert [(c["rendered"], c["skipped"]) for c in again] == [(0, 224)] * 3
    d = layer_dir(out, "block2")
    for k in range(FACETS):
        assert (d / f"block2-00005-div{k}.png").is_file()
    assert (d / "block2-00005-neg.png").is_file() and (d / "block2-00005.examples.json").is_file()
    page = (d / "block2-00005.html").read_text()
    flat = [json.loads((d / f"block2-00005-div{k}.json").read_text())["flat"] for k in range(FACETS)]
    # a facet is a picture (link + image) or, when its objective did not move, a flag (link only)
    assert page.count("block2-00005-div") == 2 * FACETS - sum(flat) and "block2-00005-neg.png" in page
    assert page.count('class="small flat"') >= sum(flat)
    assert page.count('class="crop"') == 6 and page.count('class="box"') == 6  # 3 top + 3 bottom, crop beside whole
    assert "<svg class=\"curve\"" in page and "HF fraction" in page and "&quot;steps&quot;: 2" in page


def test_every_extra_is_byte_identical_after_a_killed_run_resumes(rich):
    out, _units, _costs, _ = rich
    before = extras_files(out)
    assert len([k for k in before if re.search(r"-div\d\.png$", k)]) == 224 * FACETS
    d = layer_dir(out, "block3")
    # a run killed half-way: a facet's PNG and record gone, a negative's record gone, crops and the sprite gone
    for name in ("block3-00070-div1.png", "block3-00070-div1.json", "block3-00100-neg.json", "gallery/thumbs.jpg"):
        (d / name).unlink()
    for p in sorted((d / "ex").glob("*.jpg"))[:5]:
        p.unlink()
    (layer_dir(out, "block1") / "block1-00003.examples.json").unlink()
    costs = {c["extra"]: c for c in add_extras(out, Extras(FACETS, True, out.parent / "images"), top_k=3, quiet=True)}
    assert costs["diversity"]["rendered"] == 64 // FACETS and costs["negative"]["rendered"] == 64
    assert costs["examples"]["rendered"] == 1
    assert extras_files(out) == before


@needs_chromium
def test_rich_gallery_in_chromium(rich, tmp_path):
    out, units, _costs, _ = rich
    (tmp_path / "crawl.html").write_text(CRAWLER)
    r = chromium(["--allow-file-access-from-files", "--virtual-time-budget=300000", "--dump-dom",
                  f"file://{tmp_path / 'crawl.html'}#{(out / 'index.html').as_uri()}"], tmp_path / "p1", timeout=300)
    m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
    assert m and m.group(1) != "pending", r.stderr[-2000:]
    res = json.loads(unescape(m.group(1)))
    assert res["broken"] == []
    kinds = [p["page"] for p in res["pages"].values()]
    assert kinds.count("unit") == 224 and kinds.count("layer") == 3 and kinds.count("index") == 1
    d = layer_dir(out, "block2")
    for name in ["block2-00005.png", "block2-00005-neg.png"] + [f"block2-00005-div{k}.png" for k in range(FACETS)]:
        assert res["images"][(d / name).as_uri()] == [16, 16]
    crops = [u for u in res["images"] if "/ex/" in u]
    assert crops and all(res["images"][u] for u in crops)
    assert res["files"][(d / "gallery" / "thumbs.jpg").as_uri()]

    (tmp_path / "interact.html").write_text(INTERACT)
    target = f"{(d / 'index.html').as_uri()}|{(d / 'block2-00005.html').as_uri()}"
    r = chromium(["--allow-file-access-from-files", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=60000",
                  "--dump-dom", f"file://{tmp_path / 'interact.html'}#{target}"], tmp_path / "p2")
    m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
    assert m and m.group(1) != "pending", r.stderr[-2000:]
    res = json.loads(unescape(m.group(1)))
    assert res["errors"] == []
    assert not [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "Error" in ln)]
    assert res["initial"] == list(range(64))
    assert res["byScore"] == sorted(res["byScore"], reverse=True) and len(res["byScore"]) == 64
    assert res["byHf"] == sorted(res["byHf"], reverse=True)
    assert set(res["aliveDead"]) <= {"0"} and set(res["onlyDead"]) <= {"1"}
    assert len(res["aliveDead"]) + len(res["onlyDead"]) == 64
    assert res["jumped"] == ["c7"] and "c=7" in res["hash"] and res["overflow"] and res["note"] == "channel 7"
    assert (res["start"], res["right"], res["left"]) == ("block2:5", "block2:6", "block2:5")
    assert res["up"][0] == "layer" and res["up"][1].endswith("c=5") and res["up2"] == "index"


@needs_chromium
def test_layer_page_of_1024_units_shows_its_first_screen_within_a_second(tmp_path):
    out = tmp_path / "big"
    d = out / "layers" / "big"
    rng = np.random.default_rng(0)
    units = []
    for c in range(1024):  # fabricated records and pictures: smooth random colour fields, like renders
        u = Unit("channel", "big", c)
        small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        save_png(d / f"{u.key}.png", np.asarray(Image.fromarray(small).resize((64, 64), Image.BILINEAR)))
        units.append((u, {"png": f"{u.key}.png", "final_score": float(rng.random()), "scores": {"64": 1.0}}))
    facts = {u.key: {"hf": float(rng.random()), "dead": c % 17 == 0} for c, (u, _r) in enumerate(units)}
    sprite = build_sprite(d, [(u.key, r["png"]) for u, r in units])
    (d / "index.html").write_bytes(layer_html({"sweep": {"model": "fabricated", "recipe_hash": "0"}},
                                              {"layer": "big", "kind": "channel", "units": units},
                                              {"done": 1024, "units": 1024}, facts, sprite=sprite))
    (out / "gallery.js").write_text(JS)
    (tmp_path / "first.html").write_text(FIRST_SCREEN)
    loads = []
    for k in range(2):  # the second from a warm disk cache, as a reader's second visit
        r = chromium(["--allow-file-access-from-files", "--window-size=1300,900", "--dump-dom",
                      f"file://{tmp_path / 'first.html'}#{(d / 'index.html').as_uri()}"], tmp_path / f"p{k}")
        m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
        assert m and m.group(1) != "pending", r.stderr[-2000:]
        res = json.loads(unescape(m.group(1)))
        assert res["cells"] == 1024 and res["first"] >= 40
        assert res["sprite"]["url"].endswith("/thumbs.jpg") and res["sprite"]["complete"]  # arrived before load
        assert res["sprite"]["width"] == 32 * 64
        loads.append(res["load"])
    print(f"1024-unit layer page: load event at {loads} ms")
    assert min(loads) < 1000


def test_fv_gallery_command(rich):
    from typer.testing import CliRunner

    from fvcli.cli import app

    out = rich[0]
    r = CliRunner().invoke(app, ["gallery", str(out), "--with", "negative"])
    assert r.exit_code == 0, r.output
    assert "negative: 0 unit(s) done now, 224 already there" in r.output and f"gallery: {out / 'index.html'}" in r.output
    r = CliRunner().invoke(app, ["gallery", str(out), "--with", "negatives"])
    assert r.exit_code == 2 and "unknown --with item 'negatives'" in r.output
    r = CliRunner().invoke(app, ["gallery", str(out.parent / "nothing-here")])
    assert r.exit_code == 2 and "holds no sweep" in r.output
