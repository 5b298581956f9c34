"""The callables an untrusted pickle would call, read without running it -- for the message when it is refused.

`torch.load(..., weights_only=True)` refuses a pickle that reaches for anything but tensors and plain containers;
that refusal is the protection. Its message is torch's, and it varies by release: torch 2.6+ names the global it
refused ("Unsupported global: GLOBAL posix.system"), torch 2.4 sometimes says only "Unsupported operand 149" (a
protocol-4 opcode it does not parse) after advice to switch the protection off. A user who got a file from someone
else needs to know what it tried to do, whatever the torch release, so this module lists the globals a pickle names
by reading its opcodes with `pickletools.genops`, which parses and never executes.

Reads `data.pkl` inside a torch zip file, or the leading pickles of a legacy / plain pickle file (at most
`MAX_BYTES`); anything unreadable gives an empty list (the message then stays torch's).
"""
from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

MAX_BYTES = 8 << 20  # a state_dict's pickle is kilobytes: the tensors' bytes live elsewhere in the file
# modules whose globals a weights file legitimately names (tensor rebuilding, containers)
SAFE_MODULES = ("torch", "collections", "builtins", "__builtin__", "copyreg", "_codecs", "numpy")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _pickle_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return b""
            with z.open(name) as f:
                return f.read(MAX_BYTES)
    with open(path, "rb") as f:
        return f.read(MAX_BYTES)


def named_globals(data: bytes) -> list[str]:
    """`module.name` of every GLOBAL / STACK_GLOBAL in the pickles of `data`, in order, without duplicates."""
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        strings: list[str] = []  # the latest string pushes: STACK_GLOBAL takes its module and name from them
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in _STRING_OPS:
                    strings = [*strings[-1:], str(arg)]
                elif op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                    found.append(".".join(strings))
        except Exception:  # noqa: BLE001 - truncated or not a pickle: what was read so far is the answer
            break
    return list(dict.fromkeys(found))


def unsafe_globals(path: Path) -> list[str]:
    """The globals a pickle file names outside SAFE_MODULES (what it would call if it were loaded unsafely)."""
    try:
        names = named_globals(_pickle_bytes(Path(path)))
    except (OSError, zipfile.BadZipFile):
        return []
    return [n for n in names if n.split(".", 1)[0] not in SAFE_MODULES]
