"""The objective-vs-step curve of a unit, as inline SVG drawn from the scores its record keeps per snapshot.

Inline SVG because it needs no image file, no script and no font: it is part of the unit page's bytes, so it is
reproducible and opens from disk. A record keeps one score per threshold (`scores: {"step": value}`); with a
single threshold the curve is one point, which is drawn as a dot with its value.
"""
from __future__ import annotations

from .layout import e

W, H, PAD = 320, 140, 28


def curve_svg(scores: dict, redirect_steps: int | None = None) -> str:
    """An SVG polyline of score against step ('' when the record has no scores)."""
    pts = []
    for k, v in (scores or {}).items():
        try:
            pts.append((int(k), float(v)))
        except (TypeError, ValueError):
            continue
    if not pts:
        return ""
    pts.sort()
    x0, x1 = 0, max(p[0] for p in pts)
    lo, hi = min(0.0, *(p[1] for p in pts)), max(0.0, *(p[1] for p in pts))
    if hi - lo < 1e-12:
        hi = lo + 1.0

    def X(s: float) -> float:
        return PAD + (W - 2 * PAD) * (s - x0) / max(1, x1 - x0)

    def Y(v: float) -> float:
        return H - PAD + (2 * PAD - H) * (v - lo) / (hi - lo)

    line = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in pts)
    dots = "".join(f"<circle cx=\"{X(s):.1f}\" cy=\"{Y(v):.1f}\" r=\"2.5\"><title>step {s}: {v:.6g}</title></circle>"
                   for s, v in pts)
    red = ""
    if redirect_steps and redirect_steps < x1:
        red = (f"<line x1=\"{X(redirect_steps):.1f}\" y1=\"{PAD / 2}\" x2=\"{X(redirect_steps):.1f}\" y2=\"{H - PAD}\" "
               f"stroke=\"#bbb\" stroke-dasharray=\"3 3\"/><text x=\"{X(redirect_steps) + 3:.1f}\" y=\"{PAD:.0f}\" "
               f"font-size=\"9\" fill=\"#999\">redirect ends</text>")
    return (f"<svg class=\"curve\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" "
            f"aria-label=\"objective by step\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\">"
            f"<line x1=\"{PAD}\" y1=\"{Y(0):.1f}\" x2=\"{W - PAD}\" y2=\"{Y(0):.1f}\" stroke=\"#ccc\"/>{red}"
            f"<polyline points=\"{line}\" fill=\"none\" stroke=\"#15c\" stroke-width=\"1.5\"/>"
            f"<g fill=\"#15c\">{dots}</g>"
            f"<text x=\"{PAD}\" y=\"{H - 8}\" font-size=\"10\" fill=\"#555\">step 0</text>"
            f"<text x=\"{W - PAD}\" y=\"{H - 8}\" font-size=\"10\" fill=\"#555\" text-anchor=\"end\">step {x1}</text>"
            f"<text x=\"2\" y=\"{Y(hi) + 4:.1f}\" font-size=\"10\" fill=\"#555\">{e(f'{hi:.3g}')}</text>"
            f"<text x=\"2\" y=\"{Y(lo):.1f}\" font-size=\"10\" fill=\"#555\">{e(f'{lo:.3g}')}</text></svg>")
