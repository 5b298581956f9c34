"""Writing the gallery: which pages exist, in what order, and with which neighbours.

The finalizer (fvcli/sweep/finalizer.py) calls `write_gallery` with the manifest and the collected records; this
module decides the site's shape -- OUT/index.html (model page), OUT/gallery.js, gallery-units.js and gallery.css,
layers/L/index.html per layer, layers/L/KEY.html per done unit -- and links neighbours (prev / next unit in channel
order, prev / next layer). A layer of INDEXED_FROM units or more gets the indexed page (its index, map and chunked
sprites); every layer whose units have dataset examples gets co-firing partners on its unit pages (cofire.py).
What each page holds is in index_page.py, layer_page.py, indexed_layer_page.py and unit_page.py. Pages are written
atomically (without fsync: they are derived, and a fsync per page was half the cost of a cold gallery), and only
when their bytes change, so re-finalizing a large sweep rewrites only what moved.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..outputs import atomic_write_bytes
from ..units.unit import Unit, safe_name
from .circuit_section import CircuitIndex
from .cofire import partners, read_top_images
from .facts import layer_facts
from .index_page import index_html
from .indexed_layer_page import indexed_layer_html
from .layer_index import COLUMNS, INDEX, INDEXED_FROM, index_js, index_rows
from .layer_page import layer_html
from .layout import CSS_FILE, THUMB, css_text
from .script import JS
from .script_units import JS_UNITS
from .thumbs import build_sprite, build_sprites
from .unit_map import layer_map
from .unit_page import unit_html


def unit_page_name(unit: Unit) -> str:
    return f"{unit.key}.html"


def _write(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write_bytes(path, data, durable=False)  # derived from the records: the next finalize rewrites it


def write_gallery(out: Path, manifest: dict, layers: Sequence[dict]) -> list[Path]:
    """index.html, gallery.js, layers/L/index.html and layers/L/KEY.html for every unit that is done."""
    out = Path(out)
    written = [out / "index.html", out / "gallery.js", out / "gallery-units.js", out / CSS_FILE]
    _write(out / CSS_FILE, css_text().encode())
    _write(out / "gallery.js", JS.encode())
    _write(out / "gallery-units.js", JS_UNITS.encode())
    _write(out / "index.html", index_html(manifest, layers))
    docs = manifest["layers"]
    circuits = CircuitIndex(out, layers)  # KEY.circuit.json of every layer: inputs and outputs of each unit
    for i, (g, doc) in enumerate(zip(layers, docs)):
        d = out / "layers" / safe_name(g["layer"])
        facts = layer_facts(d, g["units"])
        done = [(unit, rec) for unit, rec in g["units"] if rec]
        examples = [facts.get(unit.key, {}).get("examples_json") for unit, _rec in done]
        tops = read_top_images(d, examples) if any(examples) else None
        if tops is not None:
            _add_cofire(facts, done, tops)
        prev_doc, next_doc = docs[i - 1] if i > 0 else None, docs[i + 1] if i + 1 < len(docs) else None
        if len(g["units"]) >= INDEXED_FROM:  # a large layer: the page draws its units from an index
            _write(d / "index.html", _indexed_layer(d, manifest, g, doc, facts, done, tops, prev_doc, next_doc))
        else:
            sprite = build_sprite(d, [(unit.key, str(rec["png"])) for unit, rec in done])
            build_sprites(d, [])  # a large layer's sprites and index, from before, go
            (d / INDEX).unlink(missing_ok=True)
            _write(d / "index.html", layer_html(manifest, g, doc, facts, prev_doc, next_doc, sprite))
        written.append(d / "index.html")
        for unit, rec in g["units"]:
            if rec is None:  # a page left from an earlier finalize must not outlive its unit
                (d / unit_page_name(unit)).unlink(missing_ok=True)
        for k, (unit, rec) in enumerate(done):
            prev = done[k - 1][0] if k > 0 else None
            nxt = done[k + 1][0] if k + 1 < len(done) else None
            _write(d / unit_page_name(unit), unit_html(manifest, g, unit, rec, prev, nxt, facts.get(unit.key, {}), d,
                                                            circuits.section(unit)))
            written.append(d / unit_page_name(unit))
    return written


def _indexed_layer(d: Path, manifest: dict, g: dict, doc: dict, facts: dict[str, dict], done: list,
                   tops: list[list[str]] | None, prev_doc: dict | None, next_doc: dict | None) -> bytes:
    """A large layer's sprites, map and index (written here) and its page (returned)."""
    pngs = [(unit.key, str(rec["png"])) for unit, rec in done]
    sprites = build_sprites(d, pngs)
    made = layer_map([unit for unit, _rec in done], tops)
    xy = {unit.key: p for (unit, _rec), p in zip(done, made[1]) if p} if made else None
    rows = index_rows(g, facts, {key: k for k, (key, _png) in enumerate(pngs)}, xy)
    _write(d / INDEX, index_js(g, rows, sprites, made[0] if made else None, THUMB))
    for old in ("thumbs.jpg", "thumbs.sig"):  # a small layer's sprite, from before
        (d / "gallery" / old).unlink(missing_ok=True)
    n_dead = sum(r[COLUMNS.index("dead")] for r in rows)
    return indexed_layer_html(manifest, g, doc, n_dead, made[0] if made else None, prev_doc, next_doc)


def _add_cofire(facts: dict[str, dict], done: list, tops: list[list[str]]) -> None:
    """facts[KEY]["cofire"]: the unit's best co-firing partners (cofire.py) as the unit page links them."""
    for (unit, _rec), found in zip(done, partners(tops)):
        if found and unit.key in facts:
            facts[unit.key]["cofire"] = [
                {"key": done[j][0].key, "label": done[j][0].label, "caption": _caption(*done[j]),
                 "png": str(done[j][1]["png"]), "jaccard": jac, "shared": shared} for j, jac, shared in found]


def _caption(unit: Unit, rec: dict) -> str:
    """A partner's caption under its thumbnail: its channel (and name), as on the layer page."""
    return f"{unit.channel} {rec['class_label']}" if rec.get("class_label") else str(unit.channel)
