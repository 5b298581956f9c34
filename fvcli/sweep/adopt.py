"""Dataset examples written into a directory before it became a sweep's: moved to where the gallery looks.

`fv examples --out DIR` puts a unit's `KEY.examples.{json,png}` beside the unit's render when DIR is a sweep's
directory (`OUT/layers/LAYER/`), and at the top of DIR otherwise. Whether DIR is a sweep's is a fact that can change
while the pass runs: a sweep started at the same time, or later, claims the directory by creating `sweep.json`. The
placement of the files would then depend on timing, and the gallery would miss the examples written at the top.

The sweep settles it: each finalize (under its lock) moves top-level examples of the sweep's layers into their
layer directories -- a rename on one filesystem, so no file is ever half there -- and rewrites the `records` paths of
`examples-summary.json` to match. Whatever the order in which the two commands ran, the directory ends the same,
byte for byte (tests/test_examples_into_sweep.py, scripts/chaos.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..outputs import atomic_write_json
from .directory import layer_dir, read_json

log = logging.getLogger(__name__)

SUFFIXES = (".examples.json", ".examples.png")  # the files `fv examples` writes per unit (fvcli/examples/results.py)
SUMMARY = "examples-summary.json"


def adopt_examples(out: Path, layers: set[str]) -> int:
    """Move OUT/KEY.examples.{json,png} of units of `layers` into OUT/layers/LAYER/; returns the files moved."""
    out = Path(out)
    moved: dict[str, str] = {}  # old relative path -> new one (the summary's records)
    for rec_path in sorted(out.glob("*" + SUFFIXES[0])):
        rec = read_json(rec_path)
        if not rec or rec.get("layer") not in layers or not isinstance(rec.get("key"), str):
            continue
        key, d = rec["key"], layer_dir(out, rec["layer"])
        if rec_path.name != key + SUFFIXES[0]:
            continue  # not a record fv wrote under its own key: leave it alone
        d.mkdir(parents=True, exist_ok=True)
        # the picture first, the record last: a record is the sign that its files are complete (as when written)
        for suffix in SUFFIXES[::-1]:
            src, dst = out / f"{key}{suffix}", d / f"{key}{suffix}"
            if not src.is_file():
                continue
            if dst.is_file() and dst.read_bytes() != src.read_bytes():
                log.warning("%s: not moved, %s holds other examples for %s", src, dst, key)
                continue
            os.replace(src, dst)
            moved[src.relative_to(out).as_posix()] = dst.relative_to(out).as_posix()
    if moved:
        _rewrite_summary(out / SUMMARY, moved)
        log.info("%s: moved %d examples file(s) written before the sweep claimed the directory", out, len(moved))
    return len(moved)


def _rewrite_summary(path: Path, moved: dict[str, str]) -> None:
    summary = read_json(path)
    if not summary or not isinstance(summary.get("records"), list):
        return
    records = [moved.get(r, r) for r in summary["records"]]
    if records != summary["records"]:
        summary["records"] = records
        atomic_write_json(path, summary)
