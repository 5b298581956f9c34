"""A large layer's compact index (layers/LAYER/gallery/units-index.js): one short row per unit, for the indexed page.

A 32,768-unit layer cannot be an HTML grid: 32,768 cells are ~15 MB of markup and seconds of layout before the first
screen. From file:// a page cannot fetch() JSON either, so the page loads this one script, which assigns the index to
`window.fvUnits`, and draws only the cells on screen (script_units.py). One row per unit, in channel order:

  [channel, name, label, firing frequency, final objective, HF fraction, dead (0/1), tile, map x, map y]

name: the row's name (a dictionary's names file, a class label); label: the dictionary stats' label
(units/dictionary_stats.py, e.g. an automatic interpretation); firing frequency: from the same stats; dead: the
stats' flag or facts.DEAD_RULE; tile: the unit's tile in the thumbnail sprites (thumbs.build_sprites; -1 for a unit
not rendered yet); map x, y: unit_map.py's coordinates. Absent values are null. Unit keys and labels are stored as
a prefix plus the channel when every unit follows that pattern (they do for a layer or a dictionary), otherwise per
row. Numbers keep 4 significant digits: ~40 bytes a unit, ~1.3 MB for 32,768.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..units.dictionary_stats import read_dictionary_stats, row_stat
from ..units.unit import Unit
from .thumbs import COLS, PER_SPRITE

INDEXED_FROM = 2048  # a layer of this many units or more gets the indexed page (indexed_layer_page.py)
INDEX = "gallery/units-index.js"
COLUMNS = ("ch", "name", "label", "freq", "obj", "hf", "dead", "tile", "x", "y")


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        return None
    return float(f"{v:.4g}")


def _template(texts: Sequence[str], chans: Sequence[int], pad: int) -> list | None:
    """[prefix, suffix, pad] when every text is prefix + channel (zero-padded to `pad`) + suffix, else None."""
    if not texts:
        return None
    c0 = f"{chans[0]:0{pad}d}"
    i = texts[0].rfind(c0)
    if i < 0:
        return None
    pre, suf = texts[0][:i], texts[0][i + len(c0):]
    ok = all(t == f"{pre}{c:0{pad}d}{suf}" for t, c in zip(texts, chans))
    return [pre, suf, pad] if ok else None


def dictionary_stats(units: Sequence[Unit]) -> dict:
    """{DictSource: its sidecar's stats} for the direction units' dictionaries."""
    return {src: read_dictionary_stats(src.path) for src in {u.source for u in units if u.source is not None}}


def index_rows(g: dict, facts: dict[str, dict], tiles: dict[str, int], xy: dict[str, list] | None) -> list[list]:
    """The rows of COLUMNS for every unit of layer group `g` (done or not), in channel order."""
    stats = dictionary_stats([u for u, _r in g["units"]])
    rows = []
    for unit, rec in g["units"]:
        st = stats.get(unit.source, {}) if unit.source is not None else {}
        f = facts.get(unit.key, {})
        sdead = row_stat(st, "dead", unit.channel)
        dead = bool(f.get("dead")) or bool(sdead)
        p = (xy or {}).get(unit.key)
        rows.append([unit.channel, (rec or {}).get("class_label"), row_stat(st, "labels", unit.channel),
                     _num(row_stat(st, "firing_frequency", unit.channel)), _num((rec or {}).get("final_score")),
                     _num(f.get("hf")), int(dead), tiles.get(unit.key, -1),
                     p[0] if p else None, p[1] if p else None])
    return rows


def index_js(g: dict, rows: list[list], sprites: list[str], map_source: str | None, thumb: int) -> bytes:
    """The script that sets window.fvUnits for the layer page (`rows`: index_rows)."""
    units = [u for u, _r in g["units"]]
    chans = [u.channel for u in units]
    keys, labels = [u.key for u in units], [u.label for u in units]
    doc: dict = {"layer": g["layer"], "cols": list(COLUMNS), "rows": rows,
                 "sprites": sprites, "per": PER_SPRITE, "spriteCols": COLS, "thumb": thumb, "map": map_source}
    kt, lt = _template(keys, chans, 5), _template(labels, chans, 0)
    if kt:
        doc["key"] = kt
    else:
        doc["keys"] = keys
    if lt:
        doc["unit"] = lt
    else:
        doc["units"] = labels
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=True).replace("</", "<\\/")
    return f"window.fvUnits={text};\n".encode()


def read_index(path: Path) -> dict:
    """The index a units-index.js holds (for tests and tools)."""
    text = path.read_text()
    return json.loads(text[len("window.fvUnits="):].rstrip().rstrip(";").replace("<\\/", "</"))
