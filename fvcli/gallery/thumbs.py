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
PER_SPRITE = 1024  # tiles per sprite of a large layer (build_sprites): 32 x 32 tiles, 2048 px square


def sprite_cell(index: int, shown: int) -> str:
    """The inline style placing tile `index` in a cell `shown` px wide."""
    r, c = divmod(index, COLS)
    return f"background-position:-{c * shown}px -{r * shown}px"


def build_sprite(d: Path, pngs: list[tuple[str, str]], name: str = NAME, sig_name: str = SIG) -> str | None:
    """Write d/thumbs.jpg (or d/`name`) from [(key, png name)] in this order (tile i = pngs[i]); its name, or None
    if empty."""
    if not pngs:
        return None
    stamps = []
    for _key, png in pngs:
        try:
            st = (d / png).stat()
            stamps.append([png, st.st_size, st.st_mtime_ns])
        except OSError:
            stamps.append([png, None, None])
    sig = hashlib.sha256(json.dumps([TILE, COLS, stamps]).encode()).hexdigest()
    try:
        if (d / sig_name).read_text() == sig and (d / name).is_file():
            return name
    except OSError:
        pass
    rows = (len(pngs) + COLS - 1) // COLS
    canvas = np.full((rows * TILE, min(COLS, len(pngs)) * TILE, 3), 225, np.uint8)
    for i, (_key, png) in enumerate(pngs):
        try:
            with Image.open(d / png) as im:
                t = np.asarray(im.convert("RGB").resize((TILE, TILE), Image.BILINEAR))
        except OSError:
            continue
        r, c = divmod(i, COLS)
        canvas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = t
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=85)
    atomic_write_bytes(d / name, buf.getvalue())
    atomic_write_bytes(d / sig_name, sig.encode())
    return name


def build_sprites(d: Path, pngs: list[tuple[str, str]], per: int = PER_SPRITE) -> list[str]:
    """A large layer's thumbnails as sprites of `per` tiles each (gallery/thumbs-000.jpg, ...; tile i is tile
    i % per of sprite i // per): one 2048 px JPEG would be 65,536 px tall at 32,768 units, beyond what JPEG and
    browsers take, and the first screen needs only the first. Each chunk is rebuilt only when its own PNGs
    changed; chunks left from a larger earlier layer are removed."""
    names = []
    for k in range(0, len(pngs), per):
        i = k // per
        names.append(build_sprite(d, pngs[k:k + per], f"gallery/thumbs-{i:03d}.jpg", f"gallery/thumbs-{i:03d}.sig"))
    for old in (d / "gallery").glob("thumbs-*.*"):
        if old.stem.split("-")[1].isdigit() and int(old.stem.split("-")[1]) >= len(names):
            old.unlink(missing_ok=True)
    return [n for n in names if n]
