"""Benchmark the gallery of a 32,768-unit layer: finalize cost per unit, bytes per unit, first screen and search time.

    .venv/bin/python scripts/bench_gallery_scale.py                       # 32,768 rows on demo block3, 16 px, 2 steps
    .venv/bin/python scripts/bench_gallery_scale.py --rows 4096 --dir /tmp/b   # smaller, keep the folder

1. A real sweep of a (rows, 128) random dictionary on the demo model's block3 (`fv sweep --directions`), tiny
   pictures and few steps: the plan, the extras and the gallery are what is measured, not the optimization. A stats
   sidecar (units/dictionary_stats.py: firing frequencies with 5 % dead, labels) and a names file sit beside it.
   The sweep runs without its final finalize; then `finalize` is timed cold (every gallery file, sheet and sprite
   removed first) and warm (nothing changed), and `write_gallery` alone (the pages, sprites, index and map).
2. Co-firing at that size: fabricated examples records (top 6 of a pool of 4,000 images per unit) are written and
   the gallery timed again, then removed (a real `fv examples` over 32,768 directions writes a PNG grid per unit,
   minutes of its own; the gallery's share is what this measures).
3. Bytes on disk per unit: the sweep's own files (picture, snapshot, record) and the gallery's (unit page, layer
   index, thumbnail sprites, 10-channel sprites, whole-layer sheet, caches).
4. Headless Chromium from file:// (needs `chromium`): the layer page's load event and first drawn cells, and the
   time of a search (index, name, label) and a sort over all rows, each the whole synchronous update (filter,
   sort, redraw of the grid and the map) timed inside the page.
Prints one JSON line; name the CPU beside the numbers when you quote them.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html import unescape
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import cpu_name  # noqa: E402

from fvcli.gallery import write_gallery  # noqa: E402
from fvcli.models import load_model  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.sweep import collect, finalize, run_sweep, select_units  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--allow-file-access-from-files", "--window-size=1300,900"]

# `#` + the layer page's URL + `|` + the queries (JSON). Reports the load event, the cells drawn by then, and for
# each query the whole synchronous update's time (input event -> grid and map redrawn), after the page's idle work.
PROBE = r"""<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" style="width:1200px;height:800px"></iframe><script>
const [url, qs] = decodeURIComponent(location.hash.slice(1)).split('|'), queries = JSON.parse(qs);
const f = document.getElementById('f'); f.src = url;
window.addEventListener('load', () => {
  const w = f.contentWindow, d = w.document, nav = w.performance.getEntriesByType('navigation')[0];
  const grid = d.getElementById('vgrid'), out = {load: nav.loadEventEnd, dcl: nav.domContentLoadedEventEnd,
    cells: grid.querySelectorAll('.unit').length, units: w.fvView().length, search: [], sort: []};
  const th = grid.querySelector('.th'), bg = th && w.getComputedStyle(th).backgroundImage.slice(5, -2);
  const probe = new w.Image(); if (bg) probe.src = bg; out.sprite_before_load = probe.complete && probe.naturalWidth > 0;
  const t0 = w.performance.now(); w.fvWarm(); out.idle_work_ms = w.performance.now() - t0;  // the page does it 100 ms
  // after its first screen, before a reader can type: the search text of every row and the three sort orders
  for (const q of queries) {
    const el = d.getElementById('q'); el.value = q; const t = w.performance.now();
    el.dispatchEvent(new w.Event('input')); const ms = w.performance.now() - t;
    out.search.push({q, ms, filter_ms: +grid.dataset.ms, found: w.fvView().length});
  }
  const el = d.getElementById('q'); el.value = ''; el.dispatchEvent(new w.Event('input'));
  for (const k of ['freq', 'obj', 'hf']) {
    const s = d.getElementById('sort'); s.value = k; const t = w.performance.now();
    s.dispatchEvent(new w.Event('change')); out.sort.push({k, ms: w.performance.now() - t});
  }
  document.getElementById('result').textContent = JSON.stringify(out);
});
</script></body></html>"""


def queries(rows: int) -> list[str]:
    """An index, a name (11 hits at 32,768 rows), a label (1 hit) and a label prefix (many hits)."""
    return [str(rows - 1), "feature1234", "zebra", "concept 1"]


def clear_gallery(out: Path) -> None:
    """Remove the pages, sheets, sprites, index and caches (a cold finalize)."""
    for pat in ("index.html", "gallery*.js", "gallery.css", "manifest.json", "layers/*/*.html", "layers/*/gallery/*",
                "layers/*/sheet.png"):
        for p in out.glob(pat):
            p.unlink()
    for p in out.glob("layers/*/sprites"):
        shutil.rmtree(p)


def bytes_per_unit(d: Path, n: int) -> dict:
    sizes: dict[str, int] = {}
    for p in d.rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(d)
        if rel.parts[0] in ("gallery", "sprites"):
            k = f"{rel.parts[0]}/" + ("units-index.js" if p.name == "units-index.js" else
                                       "thumbs-*.jpg" if p.name.startswith("thumbs") else p.name
                                       if rel.parts[0] == "gallery" else "*.png")
        elif p.suffix == ".html":
            k = "unit pages" if p.name != "index.html" else "layer page"
        elif p.name.endswith(".step00001.png"):
            k = "snapshot png"
        else:
            k = {".png": "png" if p.name != "sheet.png" else "sheet.png", ".json": "record json"}.get(p.suffix, p.name)
        sizes[k] = sizes.get(k, 0) + p.stat().st_size
    own = sum(v for k, v in sizes.items() if k in ("png", "snapshot png", "record json"))
    return {"per_unit": {k: round(v / n, 1) for k, v in sorted(sizes.items())},
            "sweep_own_per_unit": round(own / n, 1), "gallery_per_unit": round((sum(sizes.values()) - own) / n, 1)}


def fabricate_examples(d: Path, keys: list[str], pool: int = 4000, k: int = 6, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for key in keys:
        top = [{"path": f"/images/img{i:05d}.jpg"} for i in rng.choice(pool, k, replace=False)]
        p = d / f"{key}.examples.json"
        p.write_text(json.dumps({"top": top, "bottom": []}))
        paths.append(p)
    return paths


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return round(time.perf_counter() - t0, 3)


def browser(page: Path, work: Path, queries: list[str]) -> list[dict] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    (work / "probe.html").write_text(PROBE)
    runs = []
    for k in range(3):  # the first from a cold browser profile; the disk cache is warm after the first
        r = subprocess.run([chromium, *FLAGS, f"--user-data-dir={work / f'profile{k}'}", "--dump-dom",
                            f"file://{work / 'probe.html'}#{page.as_uri()}|{json.dumps(queries)}"],
                           capture_output=True, text=True, timeout=300)
        m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
        runs.append(json.loads(unescape(m.group(1))) if m and m.group(1) != "pending" else {"error": r.stderr[-500:]})
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=32768)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--dir", type=Path, default=None, help="work here and keep it (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="time the gallery of the sweep already in --dir again")
    ap.add_argument("--browser-only", action="store_true",
                    help="only the Chromium timings of the gallery already in --dir (its gallery-units.js rewritten)")
    a = ap.parse_args()
    root = a.dir or Path(tempfile.mkdtemp(prefix="fv-bench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    out = root / "run"
    if a.browser_only:
        from fvcli.gallery.script_units import JS_UNITS

        (out / "gallery-units.js").write_text(JS_UNITS)
        res = json.loads((root / "bench.json").read_text())
        res["browser"] = browser(out / "layers" / "block3" / "index.html", root, queries(a.rows))
        print(json.dumps(res))
        (root / "bench.json").write_text(json.dumps(res) + "\n")
        return
    if out.exists() and not a.reuse:
        shutil.rmtree(out)
    recipe = load_recipe(None, ["render.thresholds=[1]"],
                         {"model.name": "demo", "render.steps": a.steps, "render.size": a.size, "render.device": "cpu"})
    model = load_model(recipe.model_options(), "cpu", recipe.render.channels_last)
    c = model.layer("block3").channels
    rng = np.random.default_rng(0)
    npy = root / "sae.npy"
    np.save(npy, rng.standard_normal((a.rows, c)).astype(np.float32))
    (root / "sae.names.txt").write_text("".join(f"feature{r}\n" for r in range(a.rows)))
    freq = np.where(rng.random(a.rows) < 0.05, 0.0, rng.random(a.rows) * 0.05).round(5)
    labels = [f"concept {r}" for r in range(a.rows)]
    labels[a.rows - 7] = "zebra stripes"
    (root / "sae.stats.json").write_text(json.dumps({"format": "fv-dictionary-stats/1", "rows": a.rows,
                                                     "firing_frequency": freq.tolist(), "labels": labels}))
    units = select_units(model, [f"block3:dir={npy}#all"])
    res: dict = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "rows": a.rows, "size": a.size,
                 "steps": a.steps, "batch_size": a.batch_size}
    if a.reuse:  # the earlier run's sweep (the dictionary above is the same: same seed)
        res["sweep_render_s"] = json.loads((root / "bench.json").read_text())["sweep_render_s"]
    else:
        t0 = time.perf_counter()
        report = run_sweep(model, recipe, units, out, batch_size=a.batch_size, finalize_when_done=False)
        res["sweep_render_s"] = round(time.perf_counter() - t0, 2)
        assert report.rendered + report.skipped == a.rows, report
    clear_gallery(out)
    res["finalize_cold_s"] = timed(lambda: finalize(out))
    res["finalize_warm_s"] = timed(lambda: finalize(out))
    manifest = json.loads((out / "manifest.json").read_text())
    for p in out.glob("layers/*/*.html"):
        p.unlink()
    for p in out.glob("layers/*/gallery/*"):
        p.unlink()
    res["write_gallery_cold_s"] = timed(lambda: write_gallery(out, manifest, collect(out)[2]))
    res["write_gallery_warm_s"] = timed(lambda: write_gallery(out, manifest, collect(out)[2]))
    res["finalize_cold_ms_per_unit"] = round(1000 * res["finalize_cold_s"] / a.rows, 3)
    res["finalize_cold_pct_of_sweep"] = round(100 * res["finalize_cold_s"] / res["sweep_render_s"], 1)
    d = out / "layers" / "block3"
    res["bytes"] = bytes_per_unit(d, a.rows)
    keys = [u.key for u in units]
    ex = fabricate_examples(d, keys)
    res["write_gallery_with_cofire_s"] = timed(lambda: write_gallery(out, manifest, collect(out)[2]))
    page = (d / f"{keys[0]}.html").read_text()
    res["cofire_section_on_unit_pages"] = "fires together with" in page
    for p in ex:
        p.unlink()
    write_gallery(out, manifest, collect(out)[2])
    runs = browser(d / "index.html", root, queries(a.rows))
    if runs is not None:
        res["browser"] = runs
    print(json.dumps(res))
    (root / "bench.json").write_text(json.dumps(res) + "\n")
    if not a.dir:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
