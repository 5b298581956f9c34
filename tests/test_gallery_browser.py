"""The sweep gallery in a real browser: headless Chromium opens it from disk (file://, no server), every layer and unit
appears, every link and image resolves; screenshots are saved under the run directory.

Needs Debian's `chromium`: `make test` and `make test-browser` install it with apt-get (as root) when it is missing;
skipped otherwise, with the reason.
FV_BROWSER_TEST_OUT=DIR keeps the run (and its screenshots) in DIR instead of a temporary directory.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
import torch

from fvcli.recipe import load_recipe
from fvcli.sweep import layer_dir, run_sweep, select_units

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: `make chromium` (run by `make "
                                                          "test`) installs Debian's with apt-get as root")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

# A crawler page: starting at the gallery's index it fetches every linked page (XHR on file:// needs
# --allow-file-access-from-files), parses it, loads every image with new Image() and fetches every other link; the
# result goes into <pre id=result>, which --dump-dom prints once the page is idle (--virtual-time-budget).
CRAWLER = r"""<!doctype html><html><body><pre id="result">pending</pre><script>
const start = new URL(decodeURIComponent(location.hash.slice(1)));
const pages = {}, images = {}, files = {}, broken = [];
function get(url) { return new Promise(res => { const x = new XMLHttpRequest(); x.open('GET', url);
  x.onload = () => res(x.responseText); x.onerror = () => res(null); try { x.send(); } catch (e) { res(null); } }); }
function img(url) { return new Promise(res => { const i = new Image(); i.onload = () => res([i.naturalWidth, i.naturalHeight]);
  i.onerror = () => res(null); i.src = url; }); }
async function checkImage(u) { if (u in images) return; images[u] = await img(u); if (!images[u]) broken.push(u); }
async function crawl() {
  const queue = [start.href];
  while (queue.length) {
    const u = queue.shift(); if (u in pages) continue;
    const text = await get(u); if (text === null) { pages[u] = null; broken.push(u); continue; }
    const doc = new DOMParser().parseFromString(text, 'text/html');
    const all = sel => [...doc.querySelectorAll(sel)];
    pages[u] = {page: doc.body.dataset.page, title: doc.title,
                units: all('[data-unit]').map(e => e.dataset.unit), layers: all('[data-layer]').map(e => e.dataset.layer),
                missing: all('[data-missing]').map(e => e.dataset.missing)};
    for (const im of all('img[src]')) await checkImage(new URL(im.getAttribute('src'), u).href);
    for (const a of all('a[href]')) {
      const h = new URL(a.getAttribute('href'), u); h.hash = '';
      if (h.protocol !== 'file:') { broken.push('not local: ' + h.href); continue; }
      if (h.pathname.endsWith('.html')) queue.push(h.href);
      else if (h.pathname.endsWith('.png')) await checkImage(h.href);
      else if (!(h.href in files)) { files[h.href] = (await get(h.href)) !== null; if (!files[h.href]) broken.push(h.href); }
    }
  }
  document.getElementById('result').textContent = JSON.stringify({pages, images, files, broken});
}
crawl();
</script></body></html>"""


def chromium(args: list[str], profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, iv1):
    keep = os.environ.get("FV_BROWSER_TEST_OUT")
    out = Path(keep).resolve() if keep else tmp_path_factory.mktemp("browser") / "run"
    if keep and out.exists():
        shutil.rmtree(out)
    model = iv1  # conftest: InceptionV1 with random:0 weights
    recipe = load_recipe(None, ["render.steps=2", "render.size=32", "render.thresholds=[1]"])
    units = select_units(model, ["conv2d2:0-12", "mixed3a:0-3"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: one thread is faster on a shared machine
    try:
        report = run_sweep(model, recipe, units, out, batch_size=8)
    finally:
        torch.set_num_threads(threads)
    assert report.complete
    return out, units


def test_gallery_opens_from_disk_with_every_layer_unit_link_and_image(gallery, tmp_path):
    out, units = gallery
    (tmp_path / "crawl.html").write_text(CRAWLER)
    r = chromium(["--allow-file-access-from-files", "--virtual-time-budget=120000", "--dump-dom",
                  f"file://{tmp_path / 'crawl.html'}#{(out / 'index.html').as_uri()}"], tmp_path / "profile")
    m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
    assert m, f"chromium printed no result (rc {r.returncode}): {r.stderr[-2000:]}"
    assert m.group(1) != "pending", "the crawl did not finish"
    res = json.loads(unescape(m.group(1)))
    assert res["broken"] == []
    pages = res["pages"]
    by_kind: dict[str, list] = {}
    for url, info in pages.items():
        by_kind.setdefault(info["page"], []).append((url, info))
    (index_url, index), = by_kind["index"]
    assert index["layers"] == ["conv2d2", "mixed3a"]
    layer_pages = {Path(url).parent.name: info for url, info in by_kind["layer"]}
    assert sorted(layer_pages) == ["conv2d2", "mixed3a"]
    for layer, info in layer_pages.items():
        assert info["units"] == [u.label for u in units if u.layer == layer] and info["missing"] == []
    unit_pages = {info["units"][0] for _url, info in by_kind["unit"]}
    assert unit_pages == {u.label for u in units}  # every unit has a page, reached by following links
    # every unit image, its threshold snapshot, the sprites and sheets were loaded and decoded by the browser
    for u in units:
        d = layer_dir(out, u.layer)
        for name in (f"{u.key}.png", f"{u.key}.step00001.png"):
            size = res["images"][(d / name).as_uri()]
            assert size == [32, 32]
    assert res["images"][(layer_dir(out, "conv2d2") / "sprites" / "conv2d2-00010--conv2d2-00012.png").as_uri()]
    assert res["files"][(out / "manifest.json").as_uri()]


def test_screenshots_of_the_gallery(gallery, tmp_path):
    out, _units = gallery
    shots = {"screenshot-index.png": out / "index.html",
             "screenshot-layer.png": layer_dir(out, "conv2d2") / "index.html",
             "screenshot-unit.png": layer_dir(out, "mixed3a") / "mixed3a-00001.html"}
    for name, page in shots.items():
        r = chromium([f"--screenshot={out / name}", "--window-size=1200,800", "--hide-scrollbars",
                      page.as_uri()], tmp_path / f"profile-{name}")
        assert (out / name).is_file(), r.stderr[-2000:]
        from fvcli.outputs import read_png

        shot = read_png(out / name)
        assert shot.shape == (800, 1200, 3)
        assert (shot < 200).any(axis=2).mean() > 0.01  # something was drawn: text and thumbnails, not a blank page
