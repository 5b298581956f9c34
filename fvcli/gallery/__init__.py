"""The gallery: a sweep's static HTML site -- a model page, a page per layer, a page per unit.

Written by the sweep's finalizer (fvcli/sweep/finalizer.py) from the manifest and the per-unit records, plus the
files the extras left beside them (diversity facets, negatives, dataset examples, MACO alpha maps; see facts.py).
HTML and CSS with one small shipped script (gallery.js) for keys, sorting and the channel jump; it opens from disk
(`file://`) or any static host, with nothing fetched and nothing to run. One idea per file: layout (CSS, escaping),
pages (which pages, their neighbours), index_page / layer_page / unit_page, curve (SVG), facts (HF, dead, extras),
media (dataset-example thumbnails and crops), script (gallery.js). A layer of thousands of units (an SAE
dictionary's) gets an indexed page instead: layer_index (the compact index script), indexed_layer_page,
script_units (gallery-units.js, a virtual grid with search and sort), unit_map (its 2-D map); cofire gives every
unit page the units that fire with it (shared top dataset examples).
"""
from __future__ import annotations

from .facts import DEAD_RULE
from .layout import CSS, THUMB
from .pages import unit_page_name, write_gallery

__all__ = ["CSS", "DEAD_RULE", "THUMB", "unit_page_name", "write_gallery"]
