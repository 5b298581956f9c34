"""Weights: where a model's file comes from, a torch-style cache, safe loading and checksums.

Weight files are untrusted input: always `torch.load(..., weights_only=True)`, then keys and shapes are checked
against the model before `load_state_dict(strict=True)`. The cache is torch's own, `$TORCH_HOME/hub/checkpoints/`.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import FvError, FvRuntimeError


@dataclass(frozen=True)
class WeightsFile:
    """A model's published weight file: its name in the cache and its public URL."""

    filename: str
    url: str
    sha256: str | None = None  # known checksum, checked after download when given


def cache_dir() -> Path:
    """torch's checkpoint cache: `$TORCH_HOME/hub/checkpoints` (default ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(sd: Mapping[str, torch.Tensor]) -> str:
    """A checksum of a state_dict's names, shapes, dtypes and values (for weights that have no file)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def load_state_dict_file(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a state_dict safely. Refuses pickles that need code (weights_only=True) and non-dict payloads."""
    path = Path(path)
    if not path.is_file():
        raise FvError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted input is bad input
        raise FvError(f"cannot read weights file {path}: refused, not a plain tensor state_dict "
                      f"({_load_error_reason(exc)})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FvError(f"weights file {path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(obj)


_TORCH_LOAD_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _load_error_reason(exc: Exception) -> str:
    """The informative line of a torch.load failure. torch's weights_only message opens with generic advice to
    re-run with weights_only=False (unsafe for untrusted files); the reason (e.g. 'unsupported GLOBAL posix.system')
    comes later."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # torch 2.4-2.5 number their advice "(1) ... (2) ..." before the reason; newer releases lead with the reason
    useful = [ln for ln in lines if not ln.startswith(_TORCH_LOAD_BOILERPLATE) and ln[:3] not in ("(1)", "(2)")]
    named = [ln.split("WeightsUnpickler error:", 1)[-1].strip() for ln in lines
             if "GLOBAL" in ln or "WeightsUnpickler error:" in ln]  # what it refused (inside advice on torch 2.4)
    reason = (named or useful or [type(exc).__name__])[0]
    return reason[:200]


def check_state_dict(net: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise FvError naming the missing, unexpected and mis-shaped keys when `sd` does not fit `net` exactly."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k} {got[k]} (expected {expected[k]})" for k in expected if k in got and got[k] != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                more = f" ... ({len(items)} in all)" if len(items) > 4 else ""
                parts.append(f"{label}: {', '.join(items[:4])}{more}")
        raise FvError(f"weights {source} do not match the model: " + "; ".join(parts))


def check_finite(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise FvError naming the first tensor holding NaN or Inf values.

    Why at load: a NaN weight otherwise surfaces only inside the optimizer, as three failed retries per unit and a
    message about the loss, long after the real cause (a corrupt or diverged checkpoint) could have been named."""
    for name, t in sd.items():
        if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        if bool(torch.isfinite(t).all()):
            continue
        nan = int(torch.isnan(t).sum())
        inf = int(torch.isinf(t).sum())
        bad = sum(1 for v in sd.values() if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()))
        more = f" ({bad} tensors in all are not finite)" if bad > 1 else ""
        raise FvError(f"weights file {source}: tensor {name!r} has {nan} NaN / {inf} Inf values{more}; "
                      f"the checkpoint is corrupt or diverged, re-export or pick another")


def apply_state_dict(net: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    check_state_dict(net, sd, source)
    check_finite(sd, source)
    net.load_state_dict(sd, strict=True)


def download(wf: WeightsFile, dest_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Download `wf` into the cache atomically (a partial download never appears under the final name)."""
    dest_dir = dest_dir or cache_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / wf.filename
    fd, tmp = tempfile.mkstemp(prefix=f".{wf.filename}.", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(wf.url, timeout=timeout) as resp:  # noqa: S310
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
        if wf.sha256 and file_sha256(tmp) != wf.sha256:
            raise FvRuntimeError(f"download of {wf.url} has the wrong sha256 (expected {wf.sha256})")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise FvRuntimeError(
            f"cannot download {wf.url}: {getattr(exc, 'reason', exc)}. On a machine without network, copy the file "
            f"from elsewhere and run `fv weights add MODEL FILE`, or pass `--weights PATH`"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
