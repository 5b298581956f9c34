"""A dictionary's per-row statistics (firing frequency, mean activation when firing, dead) from a JSON sidecar.

A sparse autoencoder's trainer knows things about each feature that no rendering can tell: how often it fires on
data, how strongly, whether it never fires (dead). The gallery sorts and filters a 32,768-unit layer by them, so
they travel beside the dictionary file, in one small JSON file per dictionary, read here and nowhere else:

  FILE's stem + `.stats.json`   (sae.npy -> sae.stats.json; sae.pt:decoder.weight -> sae.stats.json)

  {"format": "fv-dictionary-stats/1",
   "rows": 32768,                         # optional; when given, every array must have this length
   "firing_frequency": [0.012, ...],      # share of (image, position) samples where the feature is > 0
   "mean_activation": [1.7, ...],         # mean activation over the samples where it fires
   "dead": [false, ...],                  # never fired (default when absent: firing_frequency == 0)
   "labels": ["stripes", ...]}            # optional text per row (e.g. an automatic interpretation)

Every field is optional and the file itself is: a missing, unreadable or malformed file, or an array of the wrong
length or type, is dropped with one log line and the gallery shows the rest. Entries may be null (unknown).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = "fv-dictionary-stats/1"
SUFFIX = ".stats.json"
NUMBER_FIELDS = ("firing_frequency", "mean_activation")
MAX_BYTES = 256 << 20  # a sidecar larger than this is not a stats file


def stats_path(dictionary_file: str | Path) -> Path:
    """The sidecar of a dictionary file: its stem + `.stats.json`, in the same folder."""
    p = Path(dictionary_file)
    return p.with_name(p.stem + SUFFIX)


def _numbers(v: object) -> list[float | None] | None:
    if not isinstance(v, list):
        return None
    out: list[float | None] = []
    for x in v:
        if x is None:
            out.append(None)
        elif isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
            out.append(float(x))
        else:
            return None
    return out


def stats_document(frequency: list[float], mean_activation: list[float], dead_rows: list[int]) -> dict:
    """The sidecar for a dictionary whose trainer measured its rows (`fv concepts --method sae` writes it)."""
    dead = set(dead_rows)
    return {"format": FORMAT, "rows": len(frequency), "firing_frequency": frequency,
            "mean_activation": mean_activation, "dead": [i in dead for i in range(len(frequency))]}


def read_dictionary_stats(dictionary_file: str | Path) -> dict[str, list]:
    """{field: per-row list} for the fields the sidecar holds correctly ({} without a sidecar). `dead` is filled
    from `firing_frequency == 0` when the file has frequencies but no dead flags."""
    p = stats_path(dictionary_file)
    try:
        if p.stat().st_size > MAX_BYTES:
            log.warning("dictionary stats %s: larger than %d bytes, ignored", p, MAX_BYTES)
            return {}
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("dictionary stats %s unreadable (%s), ignored", p, exc)
        return {}
    if not isinstance(doc, dict) or doc.get("format", FORMAT) != FORMAT:
        log.warning("dictionary stats %s: not a %s object, ignored", p, FORMAT)
        return {}
    rows = doc.get("rows")
    out: dict[str, list] = {}
    for k in NUMBER_FIELDS:
        if k in doc:
            v = _numbers(doc[k])
            if v is None:
                log.warning("dictionary stats %s: %r is not a list of numbers, ignored", p, k)
            else:
                out[k] = v
    if "dead" in doc:
        v = doc["dead"]
        if isinstance(v, list) and all(x is None or isinstance(x, (bool, int)) for x in v):
            out["dead"] = [None if x is None else bool(x) for x in v]
        else:
            log.warning("dictionary stats %s: 'dead' is not a list of booleans, ignored", p)
    if "labels" in doc:
        v = doc["labels"]
        if isinstance(v, list) and all(x is None or isinstance(x, str) for x in v):
            out["labels"] = v
        else:
            log.warning("dictionary stats %s: 'labels' is not a list of strings, ignored", p)
    if "dead" not in out and "firing_frequency" in out:
        out["dead"] = [None if f is None else f == 0.0 for f in out["firing_frequency"]]
    if isinstance(rows, int):
        for k in [k for k, v in out.items() if len(v) != rows]:
            log.warning("dictionary stats %s: %r has %d entries, the file says rows=%d; ignored", p, k,
                        len(out[k]), rows)
            del out[k]
    return out


def row_stat(stats: dict[str, list], field: str, row: int) -> object:
    """stats[field][row], or None when the field or the row is absent."""
    v = stats.get(field)
    return v[row] if v is not None and 0 <= row < len(v) else None
