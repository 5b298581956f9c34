"""Dictionaries of directions: a `(D, C)` matrix over a layer with C channels, whose D rows are units like channels.

Interpretability moved from single neurons to directions: features of a sparse autoencoder trained on a layer,
linear probes, concept vectors, concepts factorized out of a layer's activations (`fv concepts`). A dictionary holds
thousands of them, so it is addressed like a layer's channels -- `mixed4d:dir=sae.npy#12`, `#0-63`, `#all`, or
`fv sweep mixed4d --directions sae.npy` -- and each row becomes a `Unit(kind="direction", channel=ROW, source=...)`
scored by the existing `Direction` objective (dot product averaged over positions, or lucid's cosine-weighted
variant). Everything downstream (batching, shards, resume, sheets, gallery, dataset examples) sees a unit with a
channel number, so it works unchanged.

Files (the matrix is read once per file and content, `load_dictionary` caches by path + sha256):
  FILE.npy                      a 2-D numeric array (no pickles)
  FILE.pt | FILE.pth            a tensor, or a state dict with one 2-D tensor (torch.load(weights_only=True))
  FILE.pt:KEY                   the state dict's tensor KEY, e.g. sae.pt:decoder.weight
  FILE.safetensors[:KEY]        read as weights files are (fvcli/models/checkpoint.py: the safetensors package)
A matrix stored `(C, D)` (e.g. an SAE decoder's weight, whose columns are the features) is transposed when only its
first axis matches the layer's width. Row names: FILE's stem + `.names.txt` beside it (one name per row), or given.
A width that does not match the layer, a non-finite or a zero row is a one-line FvError naming file, row and width.

Per-row statistics travel with the rows when the file has them: a state dict's 1-D tensors of one value per row
named like an SAE trainer's (`feature_frequency`, `frequency`, `sparsity`, `feature_sparsity`,
`log_feature_sparsity` (log10 of the firing frequency, SAELens), `mean_activation`, `mean_when_firing`), or, beside
a `.npy` written by `fv concepts --method sae`, FILE's stem + `.json` with its `feature_stats`. A unit's record
carries its row's values (`row_stats`).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FvError
from ..models.checkpoint import load_file
from ..models.weights import file_sha256

MAX_ROWS = 1_000_000
TENSOR_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
STAT_KEYS = ("feature_frequency", "frequency", "sparsity", "feature_sparsity", "log_feature_sparsity",
             "mean_activation", "mean_when_firing")


@dataclass(frozen=True)
class DictSource:
    """Which dictionary a unit is a row of: the file (absolute), the tensor key, its content hash, the objective's
    cosine power and an optional names file. Hashable: part of a unit's identity."""

    path: str
    key: str | None = None
    sha256: str = ""
    cossim: float = 0.0
    names: str | None = None

    @property
    def stem(self) -> str:
        """File-name part of the units' keys: `sae` or `sae-decoder.weight`."""
        return _stem(self.path, self.key)

    @property
    def display(self) -> str:
        """`sae.npy`, `sae.pt:decoder.weight` (+ `:cossim=P`): how a unit label names the file."""
        return Path(self.path).name + (f":{self.key}" if self.key else "")

    def to_dict(self) -> dict:
        return {"path": self.path, "key": self.key, "sha256": self.sha256, "cossim": self.cossim,
                "names": self.names}

    @staticmethod
    def from_dict(d: dict) -> DictSource:
        return DictSource(str(d["path"]), d.get("key"), str(d.get("sha256") or ""), float(d.get("cossim") or 0.0),
                          d.get("names"))


@functools.lru_cache(maxsize=64)
def _stem(path: str, key: str | None) -> str:  # cached: a 32,768-unit sweep asks for its units' keys ~10^6 times
    base = Path(path).stem + (f"-{key}" if key else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", base).strip(".")[:60] or "dict"


@dataclass(frozen=True)
class Dictionary:
    source: DictSource
    matrix: torch.Tensor  # (D, C) float64
    names: tuple[str, ...] | None
    stats: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (name, one value per row) read beside the matrix

    @property
    def rows(self) -> int:
        return int(self.matrix.shape[0])

    def name(self, row: int) -> str | None:
        return self.names[row] if self.names else None

    def row_stats(self, row: int) -> dict[str, float]:
        """The statistics of one row ({} when the file has none)."""
        return {k: v[row] for k, v in self.stats}


def split_spec(spec: str) -> tuple[str, str | None]:
    """`sae.pt:decoder.weight` -> ('sae.pt', 'decoder.weight'); a plain path -> (path, None)."""
    for suf in TENSOR_SUFFIXES:
        i = spec.find(suf + ":")
        if i > 0:
            return spec[: i + len(suf)], spec[i + len(suf) + 1:] or None
    return spec, None


def open_source(spec: str, base_dir: str | Path | None = None, cossim: float = 0.0,
                names: str | Path | None = None) -> DictSource:
    """A dictionary spec (FILE or FILE:KEY) -> its DictSource, with the file's sha256 (the file must exist)."""
    file, key = split_spec(spec.strip())
    p = Path(file).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.is_file():
        raise FvError(f"dictionary file {file!r} not found ({p}); expected a .npy, .pt/.pth or .safetensors matrix")
    if names is None:
        side = p.with_name(p.stem + ".names.txt")
        names = side if side.is_file() else None
    return DictSource(str(p.resolve()), key, file_sha256(p), float(cossim), str(Path(names).resolve()) if names else None)


def _stats_of(obj: dict, key: str | None) -> dict[str, torch.Tensor]:
    """1-D statistics tensors of a state dict (beside `key`'s module, e.g. `sae.feature_frequency` for
    `sae.W_dec`, or at the top level)."""
    parts = key.split(".")[:-1] if key else []
    prefixes = [".".join(parts[:i]) + "." for i in range(len(parts), 0, -1)] + [""]  # deepest module first
    out = {}
    for name in STAT_KEYS:
        for k in (p + name for p in prefixes):
            v = obj.get(k)
            if isinstance(v, torch.Tensor) and v.dim() == 1:
                out[name] = v.detach().to(torch.float64)
                break
    return out


def _sidecar_stats(p: Path) -> dict[str, torch.Tensor]:
    """`fv concepts --method sae`'s FILE.json beside FILE.npy: its per-feature statistics."""
    side = p.with_suffix(".json")
    try:
        st = json.loads(side.read_text(encoding="utf-8")).get("feature_stats") if side.is_file() else None
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(st, dict):
        return {}
    out = {k: torch.tensor(st[k], dtype=torch.float64) for k in ("frequency", "mean_when_firing")
           if isinstance(st.get(k), list) and all(isinstance(v, (int, float)) for v in st[k])}
    if out and isinstance(st.get("dead"), list):
        n = len(next(iter(out.values())))
        dead = torch.zeros(n, dtype=torch.float64)
        idx = [i for i in st["dead"] if isinstance(i, int) and 0 <= i < n]
        dead[idx] = 1.0
        out["dead"] = dead
    return out


def _read(src: DictSource) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The matrix, and the per-row statistics found with it."""
    p = Path(src.path)
    if p.suffix == ".npy":
        return _read_matrix(src), _sidecar_stats(p)
    if p.suffix not in TENSOR_SUFFIXES:
        return _read_matrix(src), {}
    obj = load_file(p, "dictionary file")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    stats = _stats_of(obj, src.key) if isinstance(obj, dict) else {}
    return _read_matrix(src, obj), stats


def _read_matrix(src: DictSource, loaded: object = None) -> torch.Tensor:
    p = Path(src.path)
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FvError(f"dictionary file {p} is not a .npy array: {exc}") from None
        if arr.dtype.kind not in "fiu":
            raise FvError(f"dictionary file {p} must hold a numeric array, not {arr.dtype}")
        return torch.from_numpy(arr.astype(np.float64))
    if p.suffix in TENSOR_SUFFIXES:
        # the weights' reader: weights_only, or safetensors
        obj: object = loaded if loaded is not None else load_file(p, "dictionary file")
    else:
        raise FvError(f"dictionary file {p}: unknown format {p.suffix!r}; valid: .npy, .pt, .pth, .bin, .safetensors")
    if isinstance(obj, dict):
        if "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        mats = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and v.dim() == 2}
        if src.key is not None:
            if src.key not in obj or not isinstance(obj[src.key], torch.Tensor):
                raise FvError(f"dictionary file {p} has no tensor {src.key!r}; valid keys: "
                              f"{', '.join(sorted(map(str, mats))) or '(no 2-D tensors)'}")
            obj = obj[src.key]
        elif len(mats) == 1:
            obj = next(iter(mats.values()))
        else:
            raise FvError(f"dictionary file {p} holds {len(mats)} 2-D tensors; name one as {p.name}:KEY, valid KEY: "
                          f"{', '.join(sorted(map(str, mats)))[:400]}")
    if not isinstance(obj, torch.Tensor):
        raise FvError(f"dictionary file {p} holds a {type(obj).__name__}, not a tensor or a state dict")
    return obj.detach().to(torch.float64)


def _read_names(src: DictSource, rows: int) -> tuple[str, ...] | None:
    if not src.names:
        return None
    try:
        names = tuple(Path(src.names).read_text(encoding="utf-8").splitlines())
    except OSError as exc:
        raise FvError(f"cannot read names file {src.names}: {exc.strerror or exc}") from None
    while names and not names[-1].strip():
        names = names[:-1]
    if len(names) != rows:
        raise FvError(f"names file {src.names} has {len(names)} line(s); dictionary {Path(src.path).name} has "
                      f"{rows} rows (one name per row)")
    return names


@functools.lru_cache(maxsize=16)
def _load(src: DictSource) -> Dictionary:
    m, raw_stats = _read(src)
    if m.dim() != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise FvError(f"dictionary {src.display} has shape {tuple(m.shape)}; expected a 2-D (rows, channels) matrix")
    if m.shape[0] > MAX_ROWS:
        raise FvError(f"dictionary {src.display} has {m.shape[0]} rows; at most {MAX_ROWS}")
    return Dictionary(src, m.contiguous(), _read_names(src, int(m.shape[0])), _check_stats(raw_stats, m.shape))


def _check_stats(raw: dict[str, torch.Tensor], shape) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Statistics with one finite value per row (of either axis: a (C, D) decoder is transposed later)."""
    return tuple((k, tuple(float(x) for x in v.tolist())) for k, v in raw.items()
                 if v.numel() in (shape[0], shape[1]) and bool(torch.isfinite(v).all()))


@functools.lru_cache(maxsize=64)
def load_dictionary(src: DictSource, layer: str, channels: int) -> Dictionary:
    """The dictionary as rows over `layer` (`channels` wide), checked: width, finite rows, no zero row. Cached (a
    sweep asks once per unit: the checks of a (4096, C) matrix would otherwise cost more than the unit's objective)."""
    d = _load(src)
    m = d.matrix
    if m.shape[1] != channels:
        if m.shape[0] == channels:  # stored (C, D): an SAE decoder's weight has one feature per column
            d = Dictionary(src, m.T.contiguous(), d.names if d.names is None or len(d.names) == m.shape[1] else None,
                           d.stats)
            m = d.matrix
        else:
            raise FvError(f"dictionary {src.display} has shape {tuple(m.shape)}: its rows are {m.shape[1]} wide; "
                          f"layer {layer} has {channels} channels, so expected shape (rows, {channels})")
    finite = torch.isfinite(m).all(1)
    if not finite.all():
        r = int((~finite).nonzero()[0])
        raise FvError(f"dictionary {src.display}: row {r} is not finite (NaN or inf); every row of the "
                      f"(rows, {channels}) matrix must be finite")
    zero = ~m.abs().amax(1).gt(0)
    if zero.any():
        r = int(zero.nonzero()[0])
        raise FvError(f"dictionary {src.display}: row {r} is all zeros (no direction); every row of the "
                      f"(rows, {channels}) matrix must be non-zero")
    if d.stats and any(len(v) != d.rows for _, v in d.stats):
        d = Dictionary(src, d.matrix, d.names, tuple((k, v) for k, v in d.stats if len(v) == d.rows))
    return d


def parse_rows(spec: str, n: int, what: str) -> list[int]:
    """`12`, `0-63`, `3,7,11`, `all` -> row numbers, checked against the dictionary's `n` rows."""
    spec = spec.strip()
    if spec == "all":
        return list(range(n))
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d{1,9})\s*(?:-\s*(\d{1,9})\s*)?", part)
        if not m:
            raise FvError(f"bad row {part!r} in {what}: expected ROW, A-B, a comma list or all")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise FvError(f"bad row range {part!r} in {what}: {hi} < {lo}")
        out.extend(range(lo, hi + 1))
    for r in out:
        if r >= n:
            raise FvError(f"row {r} out of range in {what}: valid 0-{n - 1} ({n} rows)")
    return list(dict.fromkeys(out))


_REF = re.compile(r"^(?P<layer>[^:\s]+):dir=(?P<file>[^#\s]+)#(?P<rows>[0-9,\-\s]+|all)(?::cossim=(?P<p>\d+\.?\d*|\.\d+))?$")


def match_ref(text: str) -> re.Match | None:
    """`LAYER:dir=FILE[:KEY]#ROWS[:cossim=P]` (a dictionary reference), or None."""
    return _REF.match(text.strip())
