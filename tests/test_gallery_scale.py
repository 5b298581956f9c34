"""The gallery of a large layer (issue #30): the indexed layer page, its index, the map and co-firing.

- a real demo sweep of a 40-row dictionary (with the threshold for the indexed page lowered to 8 units) finalizes into
  units-index.js whose rows carry the dictionary stats sidecar, the names file, the objective, HF, dead flags, tiles
  and map coordinates; the map is the PCA of the rows (two planted clusters land apart);
- co-firing: partners by shared top images (Jaccard), hub images left out, and the unit page's section with links;
- headless Chromium on 3,000 fabricated units from file://: search by index, name and label, sort by firing
  frequency, the dead filter, scrolling reaches the last unit, a click on the map opens that unit's page.
Chromium tests are skipped without it (`make chromium`), as in test_gallery_browser.py.
"""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fvcli.gallery import pages as gallery_pages
from fvcli.gallery.cofire import partners
from fvcli.gallery.layer_index import COLUMNS, INDEX, read_index
from fvcli.gallery.pages import write_gallery
from fvcli.gallery.unit_map import MAP
from fvcli.units.dictionary import open_source
from fvcli.units.dictionary_stats import read_dictionary_stats
from fvcli.units.unit import Unit
from test_gallery_browser import CHROMIUM, chromium

pytestmark = pytest.mark.usefixtures("one_thread")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: `make chromium`")
COL = {c: i for i, c in enumerate(COLUMNS)}


def clustered_rows(n: int, c: int, seed: int = 0) -> np.ndarray:
    """Rows in two tight clusters (even rows near +v, odd rows near -v): their map must put them apart."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(c)
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
    return sign * v[None, :] + 0.05 * rng.standard_normal((n, c))


def write_stats(npy: Path, n: int, dead_every: int = 7) -> dict:
    freq = [0.0 if r % dead_every == 0 else round(0.001 * (1 + (r * 37) % 500), 4) for r in range(n)]
    labels = [f"label {r}" for r in range(n)]
    labels[n - 3] = "zebra crossing"
    doc = {"format": "fv-dictionary-stats/1", "rows": n, "firing_frequency": freq,
           "mean_activation": [1.0] * n, "labels": labels}
    npy.with_name(npy.stem + ".stats.json").write_text(json.dumps(doc))
    return doc


def test_dictionary_stats_sidecar_is_tolerant(tmp_path):
    npy = tmp_path / "sae.npy"
    assert read_dictionary_stats(npy) == {}  # no sidecar: nothing, no error
    side = tmp_path / "sae.stats.json"
    side.write_text("{not json")
    assert read_dictionary_stats(npy) == {}
    side.write_text(json.dumps({"rows": 3, "firing_frequency": [0.5, 0.0, None], "mean_activation": [1, 2],
                                "labels": ["a", None, "c"]}))
    st = read_dictionary_stats(npy)
    assert st["firing_frequency"] == [0.5, 0.0, None] and st["dead"] == [False, True, None]
    assert "mean_activation" not in st  # wrong length for rows=3: dropped, the rest kept
    side.write_text(json.dumps({"firing_frequency": ["x"], "dead": [True]}))
    assert read_dictionary_stats(npy) == {"dead": [True]}


def test_cofire_partners_by_shared_top_images_without_hubs():
    tops = [["a", "b", "c"], ["a", "b", "d"], ["c", "x"], ["y"], ["hub"], ["hub"], ["hub"]]
    found = partners(tops, k=8, hub=2)
    assert found[0] == [(1, 0.5, 2), (2, 0.25, 1)]  # |{a,b}| / |{a,b,c,d}|; then |{c}| / |{a,b,c,x}|
    assert found[1] == [(0, 0.5, 2)]
    assert found[3] == [] and found[4] == []  # "hub" tops 3 units > hub=2: it links nobody
    assert partners(tops, k=1, hub=3)[4] == [(5, 1.0, 1)]  # with the hub allowed, ties go to the lower unit


def test_finalized_sweep_writes_the_layer_index(tmp_path, monkeypatch):
    from fvcli.models import load_model
    from fvcli.recipe import load_recipe
    from fvcli.outputs import read_png, save_png
    from fvcli.sweep import finalize, run_sweep, select_units

    monkeypatch.setattr(gallery_pages, "INDEXED_FROM", 8)
    recipe = load_recipe(None, ["render.thresholds=[1]"], {"model.name": "demo", "render.steps": 2,
                                                           "render.size": 16, "render.device": "cpu"})
    model = load_model(recipe.model_options(), "cpu", recipe.render.channels_last)
    n = 40
    npy = tmp_path / "sae.npy"
    np.save(npy, clustered_rows(n, model.layer("block2").channels))
    (tmp_path / "sae.names.txt").write_text("".join(f"feature{r}\n" for r in range(n)))
    stats = write_stats(npy, n)
    units = select_units(model, [f"block2:dir={npy}#all", "block1:0-3"])
    out = tmp_path / "run"
    assert run_sweep(model, recipe, units, out, batch_size=64).complete
    d = out / "layers" / "block2"
    idx = read_index(d / INDEX)
    rows = idx["rows"]
    assert idx["cols"] == list(COLUMNS) and [r[COL["ch"]] for r in rows] == list(range(n))
    assert idx["key"] == ["block2-dir-sae-", "", 5] and idx["unit"] == ["block2:dir=sae.npy#", "", 0]
    recs = {r: json.loads((d / f"block2-dir-sae-{r:05d}.json").read_text()) for r in range(n)}
    for r, row in enumerate(rows):
        assert row[COL["name"]] == f"feature{r}" and row[COL["label"]] == stats["labels"][r]
        assert row[COL["freq"]] == pytest.approx(stats["firing_frequency"][r], rel=1e-3)
        assert row[COL["obj"]] == pytest.approx(recs[r]["final_score"], rel=1e-3)
        assert 0 <= row[COL["hf"]] <= 1 and row[COL["tile"]] == r
        if r % 7 == 0:
            assert row[COL["dead"]] == 1  # never fires, by the stats
        assert 0 <= row[COL["x"]] < MAP and 0 <= row[COL["y"]] < MAP
    xs = np.array([r[COL["x"]] for r in rows])
    assert abs(xs[0::2].mean() - xs[1::2].mean()) > MAP / 2  # the two clusters of rows, apart on the map
    assert idx["sprites"] == ["gallery/thumbs-000.jpg"] and (d / "gallery" / "thumbs-000.jpg").is_file()
    html = (d / "index.html").read_text()
    assert "units-index.js" in html and "gallery-units.js" in html and 'id="map"' in html
    assert (out / "gallery-units.js").is_file()
    small = (out / "layers" / "block1" / "index.html").read_text()  # 4 units: the plain grid, as before
    assert 'id="units"' in small and "units-index.js" not in small
    assert "fires together" not in (d / "block2-dir-sae-00003.html").read_text()  # no examples: no section

    # re-finalizing redraws only what changed: nothing, then the sprites and sheets of one re-rendered unit
    def stamps() -> dict[str, int]:
        return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in sorted(d.rglob("*")) if p.is_file()}

    before = stamps()
    finalize(out)
    after = stamps()
    assert after == before  # not one file of the layer rewritten
    png = d / "block2-dir-sae-00013.png"
    save_png(png, 255 - read_png(png))
    finalize(out)
    changed = {k for k, v in stamps().items() if after.get(k) != v}
    assert {"sheet.png", "sprites/block2-dir-sae-00010--block2-dir-sae-00019.png", "gallery/thumbs-000.jpg",
            "block2-dir-sae-00013.png"} <= changed
    assert not {k for k in changed if k.startswith("sprites/") and "00010--" not in k}  # the other 3 sprites kept
    assert not {k for k in changed if k.endswith(".html") and k != "index.html"}  # no unit page changed


def fabricate(root: Path, n: int, missing: tuple[int, ...] = ()) -> tuple[Path, list[Unit]]:
    """A gallery of n direction units written by write_gallery from fabricated records and 16 px pictures; units
    0-29 have examples records whose top images are shared in groups of 10 (co-firing)."""
    out = root / "big"
    d = out / "layers" / "feat"
    d.mkdir(parents=True)
    npy = root / "sae.npy"
    np.save(npy, clustered_rows(n, 8))
    (root / "sae.names.txt").write_text("".join(("tiger stripes" if r == 17 else f"f{r}") + "\n" for r in range(n)))
    write_stats(npy, n)
    src = open_source(str(npy))
    rng = np.random.default_rng(0)
    entries = []
    for c in range(n):
        u = Unit("direction", "feat", c, source=src)
        if c in missing:
            entries.append((u, None))
            continue
        Image.fromarray(rng.integers(0, 255, (2, 2, 3), dtype=np.uint8)).resize((16, 16), Image.BILINEAR).save(
            d / f"{u.key}.png")
        rec = {"png": f"{u.key}.png", "final_score": float(rng.random() + 1), "scores": {"32": 1.0},
               "class_label": "tiger stripes" if c == 17 else f"f{c}"}
        entries.append((u, rec))
        if c < 30:
            top = [{"path": f"/nonexistent/img{c // 10}-{k}.jpg"} for k in range(4)]
            (d / f"{u.key}.examples.json").write_text(json.dumps({"top": top, "bottom": []}))
    layers = [{"layer": "feat", "kind": "direction", "order": 0, "units": entries}]
    done = n - len(missing)
    manifest = {"sweep": {"model": "fabricated", "recipe_hash": "0"}, "recipe": {}, "complete": not missing,
                "units": {"expected": n, "done": done, "missing": len(missing)}, "timings": {},
                "finalized": "now", "layers": [{"layer": "feat", "kind": "direction", "units": n, "done": done,
                                                "dir": "layers/feat/", "page": "layers/feat/index.html",
                                                "sheet": None, "sprites": []}]}
    write_gallery(out, manifest, layers)
    return d, [u for u, _r in entries]


def test_cofire_section_links_the_units_that_share_top_images(tmp_path):
    d, units = fabricate(tmp_path, 40)  # below INDEXED_FROM: the plain page, co-firing is there too
    page = (d / f"{units[3].key}.html").read_text()
    sec = page[page.index("fires together with"):]
    linked = re.findall(r'href="(feat-dir-sae-\d+)\.html" title', sec)
    assert linked == [units[c].key for c in (0, 1, 2, 4, 5, 6, 7, 8)]  # 8 partners of its group of 10, Jaccard 1
    assert "fires together" not in (d / f"{units[35].key}.html").read_text()  # no examples record


# `#` + the layer page's URL. Drives the indexed page: search, sort, dead filter, scroll to the end, a map click.
DRIVE = r"""<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" style="width:1200px;height:800px"></iframe><script>
const f = document.getElementById('f'), out = {errors: []};
const t0 = performance.now();
function load(url) { return new Promise(res => { f.onload = () => res(f.contentWindow); if (url) f.src = url; }); }
function set(w, id, v, ev) { const el = w.document.getElementById(id); el.value = v; el.dispatchEvent(new w.Event(ev)); }
async function run() {
  const [url, target] = decodeURIComponent(location.hash.slice(1)).split('|');
  let w = await load(url);
  out.loaded = performance.now() - t0;
  w.addEventListener('error', ev => out.errors.push(String(ev.message)));
  const d = w.document, grid = d.getElementById('vgrid');
  out.first = [...grid.querySelectorAll('.unit')].map(c => +c.dataset.ch);
  out.n = w.fvView().length;
  set(w, 'q', '2345', 'input'); out.byIndex = w.fvView(); out.ms = [+grid.dataset.ms];
  set(w, 'q', 'zebra', 'input'); out.byLabel = w.fvView(); out.ms.push(+grid.dataset.ms);
  set(w, 'q', 'TIGER', 'input'); out.byName = w.fvView(); out.ms.push(+grid.dataset.ms);
  set(w, 'q', '', 'input');
  set(w, 'sort', 'freq', 'change'); out.ms.push(+grid.dataset.ms);
  const C = {}; w.fvUnits.cols.forEach((c, i) => C[c] = i);
  out.freqs = w.fvView().map(ch => w.fvUnits.rows[ch][C.freq]);
  set(w, 'sort', 'ch', 'change');
  set(w, 'dead', 'hide', 'change'); out.aliveDead = w.fvView().map(ch => w.fvUnits.rows[ch][C.dead]);
  set(w, 'dead', 'show', 'change');
  w.scrollTo(0, d.documentElement.scrollHeight); w.dispatchEvent(new w.Event('scroll'));
  out.last = [...grid.querySelectorAll('.unit')].map(c => +c.dataset.ch);
  const cv = d.getElementById('map'), r = w.fvUnits.rows[+target], b = cv.getBoundingClientRect();
  const p = load(null);
  cv.dispatchEvent(new w.MouseEvent('click', {clientX: b.left + r[C.x] / 1000 * b.width,
                                               clientY: b.top + r[C.y] / 1000 * b.height, bubbles: true}));
  w = await p; out.clicked = w.document.querySelector('h1').dataset.unit;
  document.getElementById('result').textContent = JSON.stringify(out);
}
run().catch(e => { out.errors.push('harness: ' + e); document.getElementById('result').textContent = JSON.stringify(out); });
</script></body></html>"""


@needs_chromium
def test_indexed_layer_page_in_chromium(tmp_path):
    n = 3000
    d, units = fabricate(tmp_path, n, missing=(5,))
    idx = read_index(d / INDEX)
    assert len(idx["rows"]) == n and idx["map"] == "dictionary rows (PCA)"
    assert idx["rows"][5][COL["tile"]] == -1 and not (d / f"{units[5].key}.html").exists()
    xy = np.array([[r[COL["x"]], r[COL["y"]]] if r[COL["tile"]] >= 0 else [-MAP, -MAP] for r in idx["rows"]], float)
    gap = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(gap, np.inf)
    gap[5] = 0  # the missing unit: not on the map
    target = int(gap.min(1).argmax())  # the most isolated unit on the map: a click on it is unambiguous
    assert gap[target].min() > 16
    (tmp_path / "drive.html").write_text(DRIVE)
    r = chromium(["--allow-file-access-from-files", "--window-size=1300,900", "--virtual-time-budget=30000",
                  "--dump-dom", f"file://{tmp_path / 'drive.html'}#{(d / 'index.html').as_uri()}|{target}"], tmp_path / "p")
    m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
    assert m and m.group(1) != "pending", r.stderr[-2000:]
    res = json.loads(unescape(m.group(1)))
    assert res["errors"] == []
    assert res["n"] == n and res["first"][:8] == list(range(8)) and len(res["first"]) < 200  # only the screen
    assert res["byIndex"] == [2345] and res["byLabel"] == [n - 3] and res["byName"] == [17]
    freqs = res["freqs"]
    assert len(freqs) == n and freqs == sorted(freqs, reverse=True)
    assert set(res["aliveDead"]) == {0} and len(res["aliveDead"]) == n - len(range(0, n, 7))
    assert n - 1 in res["last"]  # scrolling to the bottom draws the last unit
    assert res["clicked"] == units[target].label
    assert max(res["ms"]) < 100  # search and sort of 3,000 rows (the 32,768 figure: scripts/bench_gallery_scale.py)
