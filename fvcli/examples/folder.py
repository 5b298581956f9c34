"""The image folder of a dataset-examples pass: which files, in which order, and how each becomes network input.

The order is fixed (sorted relative paths) because an image's index is its identity everywhere else: ties in the
top-k are broken by it, the reservoir's draws are derived from it, and a checkpoint resumes after it. A file's
input is its centred square resized to the model's size in one PIL call, so that an activation's position maps back
exactly to a box in the original image (`square_box`, used for the crops in the records). An unreadable file is
skipped and counted, never fatal.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import FvError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class ImageFolder:
    """The images of a folder, in a fixed order (sorted relative paths), after sampling and limiting."""

    root: Path
    files: tuple[str, ...]  # posix paths relative to root
    ignored: int = 0  # files without an image extension
    total: int = 0  # image files found before sampling / limiting

    def path(self, i: int) -> Path:
        return self.root / self.files[i]

    def signature(self) -> str:
        """Identifies the list (names and sizes) so that a checkpoint is only resumed on the same images."""
        h = hashlib.sha256()
        for f in self.files:
            try:
                size = (self.root / f).stat().st_size
            except OSError:
                size = -1
            h.update(f"{f}\0{size}\n".encode())
        return h.hexdigest()


def list_images(root: str | Path, limit: int | None = None, sample: int | None = None, seed: int = 0,
                exclude: Path | None = None) -> ImageFolder:
    """Every image file under `root` (recursive, hidden entries skipped), sorted; optionally a seeded random sample
    of `sample` of them and then the first `limit`. Raises FvError when there is none."""
    root = Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise FvError(f"images folder {root} does not exist or is not a directory")
    files: list[str] = []
    ignored = 0
    excl = exclude.resolve() if exclude is not None and exclude.exists() else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (excl is None or (d / n).resolve() != excl))
        for name in filenames:
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append((d / name).relative_to(root).as_posix())
            else:
                ignored += 1
    files.sort()
    total = len(files)
    if not files:
        raise FvError(f"no images in {root}: looked recursively for {', '.join(IMAGE_EXTENSIONS)} files"
                      + (f" ({ignored} other file(s) ignored)" if ignored else ""))
    if sample is not None and sample < len(files):
        pick = np.random.default_rng(seed).choice(len(files), size=sample, replace=False)
        files = [files[i] for i in sorted(pick)]
    if limit is not None:
        files = files[:limit]
    return ImageFolder(root, tuple(files), ignored, total)


def square_box(w: int, h: int) -> tuple[float, float, float, float]:
    """The centred square of an image that the network sees (resize shorter side + centre crop), original pixels."""
    s = min(w, h)
    left, top = (w - s) / 2, (h - s) / 2
    return left, top, left + s, top + s


def load_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode `path`, take its centred square and resize it to `size`: (size, size, 3) uint8 and the original (W, H).

    One PIL resize of the square box (bilinear, antialiased), so input pixel u maps exactly to original coordinate
    left + u * side / size. JPEGs are decoded at the smallest 1/2^n scale that keeps the square >= size (draft)."""
    with Image.open(path) as im:
        w, h = im.size
        if w < 1 or h < 1:
            raise ValueError("empty image")
        s = min(w, h)
        if im.format == "JPEG":
            im.draft("RGB", (math.ceil(w * size / s), math.ceil(h * size / s)))
        f = im.size[0] / w  # draft scale (1 when not a JPEG or not reduced)
        box = tuple(v * f for v in square_box(w, h))
        rgb = im.convert("RGB").resize((size, size), Image.BILINEAR, box=box)
        return np.array(rgb, dtype=np.uint8), (w, h)  # a writable copy (torch.from_numpy)


class _FolderDataset(torch.utils.data.Dataset):
    """Items (index, image (3, S, S) uint8, ok, (W, H)); an unreadable file gives ok=False instead of an error."""

    def __init__(self, folder: ImageFolder, size: int, start: int = 0) -> None:
        self.folder, self.size, self.start = folder, size, start

    def __len__(self) -> int:
        return len(self.folder.files) - self.start

    def __getitem__(self, i: int):
        idx = self.start + i
        try:
            arr, (w, h) = load_image(self.folder.path(idx), self.size)
            return idx, torch.from_numpy(arr).permute(2, 0, 1).contiguous(), True, w, h
        except Exception as exc:  # any decoding failure (PIL raises many types): skip and count
            log.debug("unreadable image %s: %s", self.folder.files[idx], exc)
            return idx, torch.zeros(3, self.size, self.size, dtype=torch.uint8), False, 0, 0
