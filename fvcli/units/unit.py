"""Units: the parts of a network we visualize, parsed from strings at the edge into typed values.

Syntax (checked against the model's layer catalog; errors name the valid range):
  mixed4a:11          channel 11 of mixed4a (mean over positions)
  mixed4a:0-15        channels 0..15          mixed4a:3,7,11   channels 3, 7 and 11     mixed4a:all
  mixed4a:11@7,7      neuron: channel 11 at x=7, y=7 of the activation map
  mixed4a:11@center   neuron at the center of the map (lucid's default position)
  blocks.6:10@cls     channel 10 of a token layer's class token (prefix token 0; @prefix1 .. the next ones)
  logit:208           class 208's logit       prob:208   its probability    logit:tiger_cat   by label
  logit:0-9, logit:all  several classes
  dream:mixed4a       DeepDream: mean of squares of the whole layer
  mixed4d:dir=sae.npy#12   row 12 of a dictionary of directions (#0-63, #3,7, #all; :cossim=P; see dictionary.py)
A leading registered model name selects the model: `demo:logit:3`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import FvError
from ..models import LoadedModel, registered_names
from ..optvis.objectives import (
    Channel,
    ClassLogit,
    ClassProb,
    Direction,
    LayerDream,
    Neuron,
    Objective,
)
from .dictionary import DictSource, load_dictionary, match_ref, open_source, parse_rows

MAX_UNITS_PER_SPEC = 100_000
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(s: str) -> str:
    """A file-name-safe version of a name: no separators, no '..' escapes, bounded length."""
    out = _SAFE.sub("_", s).strip(".") or "_"
    return out[:120]


@dataclass(frozen=True)
class Unit:
    kind: str  # channel | neuron | logit | prob | dream | direction (channel: the dictionary's row)
    layer: str
    channel: int | None = None
    x: int | None = None
    y: int | None = None
    prefix: int | None = None  # neuron at a token layer's prefix token (0: the class token) instead of x, y
    source: DictSource | None = None  # a direction's dictionary (fvcli/units/dictionary.py)

    @property
    def position(self) -> str:
        """The neuron's position as written after '@': center, X,Y, cls or prefixN."""
        if self.prefix is not None:
            return "cls" if self.prefix == 0 else f"prefix{self.prefix}"
        return "center" if self.x is None else f"{self.x},{self.y}"

    @property
    def key(self) -> str:
        """Stable identifier, also the file stem (the appendix's zero-padded channel numbers)."""
        if self.kind == "dream":
            return safe_name(f"dream-{self.layer}")
        if self.kind in ("logit", "prob"):
            return f"{self.kind}-{self.channel:05d}"
        if self.kind == "direction":
            cos = f"-cossim{self.source.cossim:g}" if self.source.cossim else ""
            return safe_name(f"{self.layer}-dir-{self.source.stem}{cos}-{self.channel:05d}")
        base = safe_name(f"{self.layer}-{self.channel:05d}")
        if self.kind == "neuron":
            if self.prefix is not None:
                return f"{base}-neuron-{self.position}"
            return base + ("-neuron" if self.x is None else f"-neuron-{self.x}x{self.y}")
        return base

    @property
    def label(self) -> str:
        if self.kind == "dream":
            return f"dream:{self.layer}"
        if self.kind in ("logit", "prob"):
            return f"{self.kind}:{self.channel}"
        if self.kind == "direction":
            p = f":cossim={self.source.cossim:g}" if self.source.cossim else ""
            return f"{self.layer}:dir={self.source.display}#{self.channel}{p}"
        if self.kind == "neuron":
            return f"{self.layer}:{self.channel}@{self.position}"
        return f"{self.layer}:{self.channel}"

    def objective(self, model: LoadedModel) -> Objective:
        if self.kind == "channel":
            return Channel(self.layer, self.channel)
        if self.kind == "neuron":
            return Neuron(self.layer, self.channel, self.x, self.y, self.prefix)
        if self.kind == "logit":
            return ClassLogit(self.layer, self.channel)
        if self.kind == "prob":
            return ClassProb(self.layer, self.channel)
        if self.kind == "direction":
            d = load_dictionary(self.source, self.layer, model.layer(self.layer).channels)
            return Direction(self.layer, tuple(d.matrix[self.channel].tolist()), self.source.cossim,
                             f"{self.source.display}#{self.channel}")
        return LayerDream(self.layer)

    def row_name(self, model: LoadedModel) -> str | None:
        """A direction's name from its dictionary's names file (None without one, or for other kinds)."""
        if self.kind != "direction":
            return None
        return load_dictionary(self.source, self.layer, model.layer(self.layer).channels).name(self.channel)

    def row_stats(self, model: LoadedModel) -> dict[str, float]:
        """A direction's statistics read with its dictionary (an SAE's firing frequency, ...); {} otherwise."""
        if self.kind != "direction":
            return {}
        return load_dictionary(self.source, self.layer, model.layer(self.layer).channels).row_stats(self.channel)


def dictionary_units(model: LoadedModel, layer: str, spec: str, rows: str = "all", base_dir=None,
                     cossim: float = 0.0, names=None) -> list[Unit]:
    """The rows of dictionary `spec` (FILE or FILE:KEY) over `layer` as units, checked against the layer's width."""
    info = model.layer(layer)
    src = open_source(spec, base_dir, cossim, names)
    d = load_dictionary(src, info.name, info.channels)
    return [Unit("direction", info.name, r, source=src) for r in parse_rows(rows, d.rows, f"dictionary {spec!r}")]


def split_model_prefix(text: str) -> tuple[str | None, str]:
    """`demo:logit:3` -> ('demo', 'logit:3'); otherwise (None, text)."""
    head, sep, rest = text.partition(":")
    if sep and head in registered_names() and ":" in rest:
        return head, rest
    if sep and head in registered_names() and rest.startswith("dream"):
        return head, rest
    return None, text


def _int(s: str, what: str, text: str) -> int:
    s = s.strip()
    if not re.fullmatch(r"\d{1,9}", s):
        raise FvError(f"bad {what} {s!r} in unit {text!r}: expected a non-negative integer")
    return int(s)


def _channel_list(spec: str, text: str, n: int, layer: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part.strip()[1:]:
            a, b = part.split("-", 1)
            lo, hi = _int(a, "channel", text), _int(b, "channel", text)
            if hi < lo:
                raise FvError(f"bad channel range {part!r} in unit {text!r}: {hi} < {lo}")
            if hi - lo + 1 > MAX_UNITS_PER_SPEC:
                raise FvError(f"channel range {part!r} in unit {text!r} is too long")
            out.extend(range(lo, hi + 1))
        else:
            out.append(_int(part, "channel", text))
    for c in out:
        if c >= n:
            raise FvError(f"channel {c} out of range for layer {layer}: valid 0-{n - 1} ({n} channels)")
    return list(dict.fromkeys(out))


def parse_units(text: str, model: LoadedModel) -> list[Unit]:
    """One unit string (possibly a range or list) -> units, validated against `model`."""
    text = text.strip()
    _, body = split_model_prefix(text)
    ref = match_ref(body)
    if ref:
        return dictionary_units(model, ref["layer"], ref["file"], ref["rows"], cossim=float(ref["p"] or 0.0))
    if ":" not in body:
        raise FvError(f"bad unit {text!r}: expected LAYER:CHANNEL (e.g. mixed4a:11), logit:CLASS, prob:CLASS "
                      f"or dream:LAYER")
    head, spec = body.rsplit(":", 1) if not body.startswith(("logit:", "prob:", "dream:")) else body.split(":", 1)
    head, spec = head.strip(), spec.strip()
    if head in ("logit", "prob"):
        layer = model.logits_layer
        n = model.num_classes
        if spec == "all":
            return [Unit(head, layer, c) for c in range(n)]
        out: list[Unit] = []
        for part in spec.split(","):
            part = part.strip()
            if re.fullmatch(r"\d+\s*-\s*\d+", part):
                out += [Unit(head, layer, c) for c in _channel_list(part, text, n, layer)]
            else:
                out.append(Unit(head, layer, model.class_index(part)))
        return list(dict.fromkeys(out))
    if head == "dream":
        model.layer(spec)
        return [Unit("dream", spec)]
    info = model.layer(head)
    if "@" in spec:
        ch_s, pos = spec.split("@", 1)
        ch = _channel_list(ch_s, text, info.channels, head)
        if len(ch) != 1:
            raise FvError(f"bad unit {text!r}: a neuron names one channel")
        if pos.strip() == "center":
            return [Unit("neuron", head, ch[0])]
        pm = re.fullmatch(r"\s*(cls|prefix(\d{1,6}))\s*", pos)
        if pm:
            p = 0 if pm.group(1) == "cls" else int(pm.group(2))
            if info.prefix == 0:
                raise FvError(f"bad position @{pos.strip()} in unit {text!r}: layer {head} ({info.layout}) has no "
                              f"prefix tokens; @cls needs a token layer with a class token")
            if p >= info.prefix:
                raise FvError(f"bad position @{pos.strip()} in unit {text!r}: layer {head} has {info.prefix} prefix "
                              f"token(s): valid @cls (= @prefix0) .. @prefix{info.prefix - 1}")
            return [Unit("neuron", head, ch[0], prefix=p)]
        m = re.fullmatch(r"\s*(\d{1,6})\s*,\s*(\d{1,6})\s*", pos)
        if not m:
            raise FvError(f"bad neuron position {pos!r} in unit {text!r}: expected X,Y (e.g. @7,7), @center, "
                          f"@cls or @prefixN")
        x, y = int(m.group(1)), int(m.group(2))
        if info.spatial is None:
            raise FvError(f"layer {head} has no spatial positions; use {head}:{ch[0]}")
        h, w = info.spatial
        if x >= w or y >= h:
            raise FvError(f"neuron position {x},{y} out of range for layer {head}: valid x 0-{w - 1}, y 0-{h - 1} "
                          f"(at the native {model.native_size} px)")
        return [Unit("neuron", head, ch[0], x, y)]
    if spec == "all":
        return [Unit("channel", head, c) for c in range(info.channels)]
    return [Unit("channel", head, c) for c in _channel_list(spec, text, info.channels, head)]
