"""Dataset examples on a unit page: each top / bottom image whole (with its receptive-field box) beside the crop.

The examples records (fvcli/examples/results.py) keep each example's original path and its crop box in the
original image's pixels; the pictures themselves live outside the sweep. For the gallery to open from anywhere
(another machine, a static host) the pixels it shows must be inside the folder, so this writes small JPEGs under
layers/LAYER/ex/: one thumbnail per distinct source image (shared by every unit whose examples it is in) and one
crop per (image, box). File names are hashes of what they show, so a rerun finds them (resumable, nothing redone)
and writes the same bytes; a changed example gets a new name.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from ..outputs import atomic_write_bytes

WHOLE = 128  # px, the longer side of a whole-image thumbnail
CROP = 96  # px, a crop's side
QUALITY = 85
SHOWN = 6  # examples per end on the page (the records may hold more)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=QUALITY, optimize=False)
    return buf.getvalue()


def _name(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16] + ".jpg"


def example_media(d: Path, examples_json: str) -> dict:
    """{'top': [...], 'bottom': [...], 'score': str} where each item is {activation, whole, crop, box: [l, t, w, h]
    in % of the whole image, size: [w, h] of the thumbnail, relpath}; files written under d/ex/ when missing."""
    try:
        rec = json.loads((d / examples_json).read_text())
    except (OSError, ValueError):
        return {"top": [], "bottom": [], "score": ""}
    out = {"score": str(rec.get("score") or ""), "images_dir": str(rec.get("images_dir") or "")}
    for end in ("top", "bottom"):
        items = []
        for ex in (rec.get(end) or [])[:SHOWN]:
            try:
                path, box = str(ex["path"]), [float(v) for v in ex["crop_box"]]
                iw, ih = (int(v) for v in ex["image_size"])
            except (KeyError, TypeError, ValueError):
                continue
            whole, crop = _name("whole", path, iw, ih, WHOLE), _name("crop", path, iw, ih, *box, CROP)
            tw, th = (WHOLE, max(1, round(WHOLE * ih / iw))) if iw >= ih else (max(1, round(WHOLE * iw / ih)), WHOLE)
            if not (d / "ex" / whole).is_file() or not (d / "ex" / crop).is_file():
                try:
                    with Image.open(path) as im:
                        im = im.convert("RGB")
                        if not (d / "ex" / whole).is_file():
                            atomic_write_bytes(d / "ex" / whole, _jpeg(im.resize((tw, th), Image.BILINEAR)))
                        l, t, r, b = box
                        atomic_write_bytes(d / "ex" / crop, _jpeg(im.resize((CROP, CROP), Image.BILINEAR,
                                                                            box=(l, t, max(r, l + 1), max(b, t + 1)))))
                except OSError:
                    continue  # the source image is gone: the example is left out
            l, t, r, b = box
            items.append({"activation": float(ex.get("activation", 0.0)), "whole": f"ex/{whole}", "crop": f"ex/{crop}",
                          "box": [100 * l / iw, 100 * t / ih, 100 * (r - l) / iw, 100 * (b - t) / ih],
                          "size": [tw, th], "relpath": str(ex.get("relpath") or Path(path).name)})
        out[end] = items
    return out
