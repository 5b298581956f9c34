"""A unit page's circuit: its strongest inputs (with their kernels) and the units it feeds most.

The gallery learns about circuits from files, by name, as it does about the other extras (facts.py): KEY.circuit.json
beside a unit's render (written by fvcli/circuits, `fv sweep --with circuits`). `CircuitIndex` reads every swept
layer's records once per finalize and answers two questions per unit:

  inputs   the record's excitatory and inhibitory inputs by expanded weights and by attribution; each input is a
           thumbnail linked to its unit page when its layer was swept (a channel number otherwise) with its kernel
           beside it, drawn as a small inline SVG heatmap (`kernel_svg`)
  outputs  the units of other swept layers whose records read their inputs from this unit's layer, ranked by the
           expanded weight from this unit (strongest first, excitatory and inhibitory apart)

Colours are the Circuits figures' convention, one place for the gallery and the figures (fvcli/circuits/figure.py):
`sign_rgb` is white at 0, red for a positive (excitatory) weight, blue for a negative (inhibitory) one.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..units.unit import Unit, safe_name
from .layout import e, u

CIRCUIT_SUFFIX = ".circuit.json"  # fvcli/circuits/record.py: circuit_name
OUTPUTS_SHOWN = 4  # per sign
KINDS = ("channel", "logit")  # the sweep kinds that get circuits
THUMB = 64  # px


def sign_rgb(v: float, vmax: float) -> tuple[int, int, int]:
    """White at 0, red (214, 39, 40) at +vmax, blue (31, 119, 180) at -vmax, linear in between."""
    t = max(-1.0, min(1.0, v / vmax)) if vmax > 0 else 0.0
    end = (214, 39, 40) if t >= 0 else (31, 119, 180)
    a = abs(t)
    return tuple(round(255 + (c - 255) * a) for c in end)  # type: ignore[return-value]


def kernel_svg(kernel: Sequence[Sequence[float]], vmax: float, px: int = 48) -> str:
    """A kernel as an inline SVG heatmap of px x px (cells square, rows top to bottom)."""
    h, w = len(kernel), max((len(r) for r in kernel), default=0)
    if not h or not w:
        return ""
    cell = px / max(h, w)
    rects = "".join(f'<rect x="{x * cell:.2f}" y="{y * cell:.2f}" width="{cell:.2f}" height="{cell:.2f}" '
                    f'fill="rgb{sign_rgb(v, vmax)}"/>' for y, row in enumerate(kernel) for x, v in enumerate(row))
    return (f'<svg class="kernel" width="{w * cell:.0f}" height="{h * cell:.0f}" viewBox="0 0 {w * cell:.2f} '
            f'{h * cell:.2f}" style="border:1px solid #ccc;vertical-align:middle">{rects}</svg>')


class CircuitIndex:
    """Every circuit record of a sweep's done units; `section(unit)` is the unit page's HTML (empty without)."""

    def __init__(self, out: Path, layers: Sequence[dict]) -> None:
        self.records: dict[str, dict[int, dict]] = {}
        self.done: dict[str, set[int]] = {}
        for g in layers:
            d = Path(out) / "layers" / safe_name(g["layer"])
            try:
                names = set(os.listdir(d))
            except OSError:
                continue
            for unit, rec in g["units"]:
                if not rec or unit.kind not in KINDS:
                    continue
                if unit.kind == "channel":
                    self.done.setdefault(g["layer"], set()).add(unit.channel)
                if unit.key + CIRCUIT_SUFFIX in names:
                    try:
                        self.records.setdefault(g["layer"], {})[unit.channel] = json.loads(
                            (d / (unit.key + CIRCUIT_SUFFIX)).read_text())
                    except (OSError, ValueError):
                        continue
        # (source layer, channel) -> [(layer, channel, expanded weight, key, label)] over every record reading from it
        self.feeds: dict[tuple[str, int], list[tuple[str, int, float, str, str]]] = {}
        for layer, recs in self.records.items():
            for ch, rec in recs.items():
                for c, w in enumerate((rec.get("expanded") or {}).get("weights") or []):
                    if w:
                        self.feeds.setdefault((rec["from"], c), []).append(
                            (layer, ch, float(w), str(rec["key"]), str(rec["unit"])))

    def _link(self, layer: str, ch: int, value: float, kernel: list | None, vmax: float, key: str | None = None,
              label: str | None = None) -> str:
        if key is None and ch in self.done.get(layer, ()):
            key = Unit("channel", layer, ch).key
        if key is not None:
            base = f"../{safe_name(layer)}/{key}"
            pic = (f'<a href="{u(base + ".html")}"><img src="{u(base + ".png")}" alt="{e(layer)}:{ch}" '
                   f'loading="lazy" width="{THUMB}" height="{THUMB}" style="vertical-align:middle"></a>')
        else:
            pic = ""
        ker = kernel_svg(kernel, vmax) if kernel else ""
        return (f'<span class="cin" style="display:inline-block;margin:0 10px 8px 0;font-size:11px;color:#555">'
                f'{pic} {ker}<br>{e(label or f"{layer}:{ch}")} '
                f'<span style="color:rgb{sign_rgb(value, abs(value) or 1)}">'
                f'{value:+.4g}</span></span>')

    def _inputs(self, rec: dict) -> str:
        src, vmax, kernels = rec["from"], float(rec.get("kernel_max") or 0), rec.get("kernels") or {}
        parts = []
        for method, what in (("expanded", "expanded weights"), ("attribution", "attribution")):
            part = rec.get(method)
            if not part:
                continue
            for sign in ("excitatory", "inhibitory"):
                items = "".join(self._link(src, int(c), float(v), kernels.get(str(int(c))), vmax)
                                for c, v in part[sign])
                parts.append(f'<h3>{e(sign)} &middot; {e(what)}</h3><div class="cinputs" data-method="{e(method)}" '
                             f'data-sign="{e(sign)}">{items or "<span class=keys>none</span>"}</div>')
        ex = rec["expanded"]
        kept = ", ".join(ex.get("kept") or {}) or "none"
        imgs = (rec.get("attribution") or {}).get("images") or {}
        n_ex = imgs.get("examples")
        note = (f'from {e(src)} through {e(" > ".join(ex.get("path") or []))}; linearized: '
                f'{e(", ".join(ex.get("bypassed") or {}) or "nothing")}; nonlinear kept: {e(kept)}. Kernels: the '
                f'expanded weights on {e(src)} around the unit\'s centre (red +, blue -). Attribution: gradient x '
                f'activation summed over positions, on the render{f" and {n_ex} dataset examples" if n_ex else ""}.')
        return f'<h2>inputs</h2><p class="keys">{note}</p>{"".join(parts)}'

    def _outputs(self, layer: str, ch: int) -> str:
        feeds = self.feeds.get((layer, ch))
        if not feeds:
            return ""
        parts = []
        for sign, pick in (("excitatory", lambda w: w > 0), ("inhibitory", lambda w: w < 0)):
            best = sorted((f for f in feeds if pick(f[2])), key=lambda f: (-abs(f[2]), f[0], f[1]))[:OUTPUTS_SHOWN]
            items = "".join(self._link(lay, c, w, None, 0.0, key, label) for lay, c, w, key, label in best)
            parts.append(f'<h3>{e(sign)}</h3><div class="coutputs" data-sign="{e(sign)}">'
                         f'{items or "<span class=keys>none</span>"}</div>')
        return ('<h2>outputs</h2><p class="keys">the swept units this one feeds most (expanded weight from this unit)'
                f'</p>{"".join(parts)}')

    def section(self, unit: Unit) -> str:
        if unit.kind not in KINDS:
            return ""
        rec = self.records.get(unit.layer, {}).get(unit.channel)
        return (self._inputs(rec) if rec else "") + self._outputs(unit.layer, unit.channel)
