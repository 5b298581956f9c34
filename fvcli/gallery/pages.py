"""Writing the gallery: which pages exist, in what order, and with which neighbours.

The finalizer (fvcli/sweep/finalizer.py) calls `write_gallery` with the manifest and the collected records; this
module decides the site's shape -- OUT/index.html (model page), OUT/gallery.js, layers/L/index.html per layer,
layers/L/KEY.html per done unit -- and links neighbours (prev / next unit in channel order, prev / next layer).
What each page holds is in index_page.py, layer_page.py and unit_page.py. Pages are written atomically (without fsync:
they are derived, and a fsync per page was half the cost of a cold gallery), and only when their bytes change, so
re-finalizing a large sweep rewrites only what moved.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..outputs import atomic_write_bytes
from ..units.unit import Unit, safe_name
from .circuit_section import CircuitIndex
from .facts import layer_facts
from .index_page import index_html
from .layer_page import layer_html
from .script import JS
from .thumbs import build_sprite
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
    written = [out / "index.html", out / "gallery.js"]
    _write(out / "gallery.js", JS.encode())
    _write(out / "index.html", index_html(manifest, layers))
    docs = manifest["layers"]
    circuits = CircuitIndex(out, layers)  # KEY.circuit.json of every layer: inputs and outputs of each unit
    for i, (g, doc) in enumerate(zip(layers, docs)):
        d = out / "layers" / safe_name(g["layer"])
        facts = layer_facts(d, g["units"])
        sprite = build_sprite(d, [(unit.key, str(rec["png"])) for unit, rec in g["units"] if rec])
        _write(d / "index.html", layer_html(manifest, g, doc, facts, docs[i - 1] if i > 0 else None,
                                            docs[i + 1] if i + 1 < len(docs) else None, sprite))
        written.append(d / "index.html")
        done = [(unit, rec) for unit, rec in g["units"] if rec]
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
