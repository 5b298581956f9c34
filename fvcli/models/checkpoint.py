"""Reading weights from what training code actually saves: a state_dict, or a checkpoint dict around one.

Training scripts rarely save a bare state_dict. They save `{"epoch": 7, "state_dict": ..., "optimizer": ...}`
(or `model`, `model_state_dict`, `net`, `ema`, ...), often from a model wrapped in DataParallel/DDP (every key
prefixed `module.`) or `torch.compile` (`_orig_mod.`). `read_weights()` finds the state_dict inside (or takes the
one named by the recipe's `model.weights_key`), strips those wrapper prefixes, and leaves the strict key and shape
check to `weights.apply_state_dict`, whose error names the missing, unexpected and mis-shaped keys.

The file is untrusted input: `torch.load(..., weights_only=True)` always (a pickle that would run code is refused);
`.safetensors` files are read with the safetensors package (installed with timm), which cannot run code at all.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import FvError, summarize_choices
from .pickle_globals import unsafe_globals
from .weights import _load_error_reason

log = logging.getLogger(__name__)

# Keys under which training code commonly stores the weights, most likely first (ties are broken in this order;
# an EMA copy is taken only when nothing else is there, or when named by model.weights_key).
COMMON_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "weights", "params",
               "model_ema", "state_dict_ema", "ema")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_file(path: Path, what: str = "weights file") -> object:
    """The file's payload: torch.load(weights_only=True), or a safetensors file. `what` names the file in errors
    (weights, or a dictionary of directions: fvcli/units/dictionary.py reads its tensors here too)."""
    if not path.is_file():
        raise FvError(f"{what} not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file as load_safetensors
        except ImportError:
            raise FvError(f"cannot read {path}: .safetensors files need the safetensors package "
                          "(`pip install safetensors`, or `pip install 'fvcli[timm]'`)") from None
        try:
            return load_safetensors(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - a corrupt file is bad input
            raise FvError(f"cannot read {what} {path}: not a valid safetensors file ({exc})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted input is bad input
        calls = unsafe_globals(path)  # named by fv, whatever torch's message says in this release
        reason = f"it would call {', '.join(calls[:5])}" if calls else _load_error_reason(exc)
        raise FvError(f"cannot read {what} {path}: refused, not plain tensors and containers "
                      f"({reason}); save only the weights, e.g. torch.save(model.state_dict(), 'weights.pth')") from None


def strip_prefixes(sd: Mapping[str, torch.Tensor], net: nn.Module | None = None) -> tuple[dict, list[str]]:
    """Remove wrapper prefixes that every key carries (`module.`, `_orig_mod.`); with `net`, also a common
    first component (a Lightning module's `model.`) when only that makes the keys fit. Returns (sd, removed)."""
    sd, removed = dict(sd), []
    while True:
        pre = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in sd)), None)
        if pre is None:
            break
        sd = {k[len(pre):]: v for k, v in sd.items()}
        removed.append(pre)
    if net is not None:
        want = set(net.state_dict())
        firsts = {k.split(".", 1)[0] for k in sd}
        if len(firsts) == 1 and all("." in k for k in sd) and not want & set(sd):
            pre = f"{firsts.pop()}."
            stripped = {k[len(pre):]: v for k, v in sd.items()}
            if want & set(stripped):
                sd = stripped
                removed.append(pre)
    return sd, removed


def _overlap(sd: Mapping[str, torch.Tensor], net: nn.Module | None) -> int:
    if net is None:
        return 0
    return len(set(net.state_dict()) & set(strip_prefixes(sd, net)[0]))


def find_state_dict(obj: object, source: str, net: nn.Module | None = None,
                    key: str | None = None) -> tuple[Mapping[str, torch.Tensor], str | None]:
    """The state_dict in a loaded file: the file itself, the entry named `key`, or the entry that fits `net` best
    (ties: COMMON_KEYS order). Returns (state_dict, the key used or None)."""
    if key is not None:
        if not isinstance(obj, Mapping) or _is_state_dict(obj):
            raise FvError(f"model.weights_key {key!r}: {source} is a plain state_dict, not a checkpoint dict; "
                          "leave model.weights_key unset")
        if key not in obj:
            raise FvError(f"model.weights_key {key!r} not found in checkpoint {source}; its keys: "
                          f"{summarize_choices(map(str, obj))}")
        if not _is_state_dict(obj[key]):
            raise FvError(f"model.weights_key {key!r} in {source} does not hold a state_dict (a mapping of names to "
                          f"tensors) but a {type(obj[key]).__name__}")
        return obj[key], key
    if _is_state_dict(obj):
        return obj, None  # type: ignore[return-value]
    if not isinstance(obj, Mapping):
        raise FvError(f"weights file {source} does not hold a state_dict (a mapping of names to tensors) nor a "
                      f"checkpoint dict, but a {type(obj).__name__}")
    cands = [k for k, v in obj.items() if isinstance(k, str) and _is_state_dict(v)]
    if not cands:
        raise FvError(f"checkpoint {source} holds no state_dict (a mapping of names to tensors) under any key; its "
                      f"keys: {summarize_choices(map(str, obj))}")
    rank = {k: i for i, k in enumerate(COMMON_KEYS)}
    best = sorted(cands, key=lambda k: (-_overlap(obj[k], net), rank.get(k, len(rank))))
    if len(best) > 1 and best[0] not in rank and _overlap(obj[best[0]], net) == _overlap(obj[best[1]], net):
        raise FvError(f"checkpoint {source} holds several state_dicts ({', '.join(cands)}); name one with "
                      f"--set model.weights_key=KEY")
    return obj[best[0]], best[0]


def read_weights(path: Path | str, net: nn.Module | None = None,
                 key: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """A state_dict ready for `net` from a weights file or training checkpoint; returns (state_dict, source
    description for records and errors: the path, and the key used inside a checkpoint)."""
    path = Path(path)
    obj = load_file(path)
    sd, used = find_state_dict(obj, str(path), net, key)
    sd, removed = strip_prefixes(sd, net)
    if used or removed:
        log.info("weights %s: key %r, prefixes removed %s", path, used, removed)
    return sd, f"{path}[{used}]" if used else str(path)
