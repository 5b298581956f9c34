"""The gallery: a sweep's static HTML site -- an index of layers, a page per layer, a page per unit.

Written by the sweep's finalizer (fvcli/sweep/finalizer.py) from the manifest and the per-unit records; plain HTML
and CSS that open from disk (`file://`) or any static host, with nothing fetched and nothing to run.
"""
from __future__ import annotations

from .pages import CSS, THUMB, unit_page_name, write_gallery

__all__ = ["CSS", "THUMB", "unit_page_name", "write_gallery"]
