"""Outputs: atomic files, 8-bit PNGs, labelled grids and JSON records.

Every file is written to a temporary name in the same directory, flushed to disk and renamed over the final name,
so a reader (or a killed process) never sees a truncated PNG or JSON. A full disk or unwritable directory becomes an
FvRuntimeError naming the file; the partial temporary file is removed. A process killed in the middle of a write
leaves its temporary file behind; the name says whose it is (`.NAME.HOST~PID~RANDOM.tmp`), so a later run can tell
a dead writer's leftovers from a live writer's file in progress and remove only the former (`tmp_writer_alive`).
"""
from __future__ import annotations

import errno
import io
import json
import os
import platform
import re
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import FvRuntimeError


def _file_mode() -> int:
    """0666 minus the process umask: what open() would give (mkstemp's temporary files are 0600, which would make
    a sweep's outputs unreadable to colleagues and web servers on a shared machine)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()
_TMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]+)~(?P<pid>\d+)~[^~/]*\.tmp$")


def host_tag(host: str | None = None) -> str:
    """A host name (default: this host's) as it appears in temporary file names: letters, digits, - and _."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname() if host is None else host) or "host"


def tmp_prefix(name: str) -> str:
    """The start of a temporary file's name for the final name `name`, saying which process writes it."""
    return f".{name}.{host_tag()}~{os.getpid()}~"


def tmp_writer_alive(path: Path) -> bool | None:
    """Whether the process that is writing temporary file `path` still runs: True or False when it ran on this host
    (False for this very process, which is between two writes when it asks), None when that cannot be told here
    (another host, or a name without an owner)."""
    m = _TMP_NAME.match(Path(path).name)
    if m is None or m["host"] != host_tag():
        return None
    pid = int(m["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return None
    return True


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` atomically: a temporary file in the same directory, fsync, rename. `durable=False`
    skips the fsync, for files any run can derive again (gallery pages): still never partial to a reader."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FvRuntimeError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        why = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        raise FvRuntimeError(f"cannot write {path}: {why}; nothing partial was left") from None


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 (round half up, deterministic)."""
    a = image.detach().float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8)
    return a.permute(1, 2, 0).cpu().numpy()


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_png(path: Path, image: torch.Tensor | np.ndarray) -> None:
    arr = to_uint8(image) if isinstance(image, torch.Tensor) else image
    atomic_write_bytes(path, png_bytes(arr))


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def grid(tiles: Sequence[np.ndarray], labels: Sequence[str] | None = None, cols: int | None = None,
         tile: int | None = None, pad: int = 4, label_h: int = 14, rows_labels: Sequence[str] | None = None) -> np.ndarray:
    """A contact sheet: tiles (H, W, 3) uint8 resized to `tile` px, optional label under each, white background."""
    if not tiles:
        return np.full((8, 8, 3), 255, np.uint8)
    n = len(tiles)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    t = tile or tiles[0].shape[0]
    lh = label_h if labels else 0
    left = 0
    if rows_labels:
        left = 8 + 7 * max(len(s) for s in rows_labels)
    canvas = Image.new("RGB", (left + cols * (t + pad) + pad, rows * (t + pad + lh) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, arr in enumerate(tiles):
        r, c = divmod(i, cols)
        im = Image.fromarray(arr)
        if im.size != (t, t):
            im = im.resize((t, t), Image.BILINEAR)
        x0, y0 = left + pad + c * (t + pad), pad + r * (t + pad + lh)
        canvas.paste(im, (x0, y0))
        if labels:
            draw.text((x0, y0 + t + 1), str(labels[i])[: max(4, t // 6)], fill="black", font=font)
    if rows_labels:
        for r, s in enumerate(rows_labels[:rows]):
            draw.text((4, pad + r * (t + pad + lh) + t // 2 - 5), s, fill="black", font=font)
    return np.asarray(canvas)


def cpu_description() -> str:
    """The CPU model, its logical CPU count and the vector extensions that decide fv's fast paths (bf16 is fast only
    with AVX512-BF16 or AMX): printed beside every measured time (`fv sweep --estimate`, the benchmarks)."""
    name, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("?", platform.processor()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                     ("amx_bf16", "AMX-BF16")) if flag in flags]
    return f"{name} x{os.cpu_count()}" + (f" ({', '.join(isa)})" if isa else "")


def versions() -> dict[str, str | bool | int | None]:
    """What produced a file: written into every record and manifest, and shown by `fv --version`."""
    from ._version import __version__

    cuda_available = torch.cuda.is_available()
    return {"fv": __version__, "torch": torch.__version__, "torchvision": _torchvision_version(),
            "cuda": torch.version.cuda, "cuda_available": cuda_available,
            "cuda_devices": torch.cuda.device_count() if cuda_available else 0,
            "numpy": np.__version__, "python": sys.version.split()[0], "platform": platform.platform()}


def _torchvision_version() -> str:
    """torchvision.__version__ without importing torchvision when fv does not use it (the import costs ~1 s, most of
    it torch._dynamo, which torchvision.ops pulls in): read from its version.py, which is all __version__ is."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"].__version__
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return "not installed"
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        text = ""
    m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    if m:
        return m.group(1)
    import torchvision  # an unusual install: ask the package itself

    return torchvision.__version__
