"""A layer's thumbnails as one sprite (layers/LAYER/gallery/thumbs.jpg), so a layer page of 1,024 units opens at once.

Measured in headless Chromium from file://: with one <img loading="lazy"> per unit, all 1,024 PNGs were still
requested before the load event (lazy loading did not defer them there), and the first paint of a fabricated
1,024-unit layer came after ~0.9-1.4 s on this shared machine. One JPEG of small tiles is a single request and a single
decode; each cell shows its tile as a CSS background (position in its inline style), so sorting the grid moves
nodes, never images. The sprite is rebuilt only when a unit's PNG changed (a signature of the PNGs' sizes and
mtimes is kept beside it), so re-finalizing a sweep does not decode every picture again.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..outputs import atomic_write_bytes

TILE = 64  # px per tile in the sprite (shown at THUMB px; the browser scales)
COLS = 32
NAME = "gallery/thumbs.jpg"  # under the layer directory: the gallery's own files keep to a subfolder
SIG = "gallery/thumbs.sig"


def sprite_cell(index: int, shown: int) -> str:
    """The inline style placing tile `index` in a cell `shown` px wide."""
    r, c = divmod(index, COLS)
    return f"background-position:-{c * shown}px -{r * shown}px"


def build_sprite(d: Path, pngs: list[tuple[str, str]]) -> str | None:
    """Write d/thumbs.jpg from [(key, png name)] in this order (tile i = pngs[i]); its name, or None if empty."""
    if not pngs:
        return None
    stamps = []
    for _key, name in pngs:
        try:
            st = (d / name).stat()
            stamps.append([name, st.st_size, st.st_mtime_ns])
        except OSError:
            stamps.append([name, None, None])
    sig = hashlib.sha256(json.dumps([TILE, COLS, stamps]).encode()).hexdigest()
    try:
        if (d / SIG).read_text() == sig and (d / NAME).is_file():
            return NAME
    except OSError:
        pass
    rows = (len(pngs) + COLS - 1) // COLS
    canvas = np.full((rows * TILE, min(COLS, len(pngs)) * TILE, 3), 225, np.uint8)
    for i, (_key, name) in enumerate(pngs):
        try:
            with Image.open(d / name) as im:
                t = np.asarray(im.convert("RGB").resize((TILE, TILE), Image.BILINEAR))
        except OSError:
            continue
        r, c = divmod(i, COLS)
        canvas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = t
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=85)
    atomic_write_bytes(d / NAME, buf.getvalue())
    atomic_write_bytes(d / SIG, sig.encode())
    return NAME
