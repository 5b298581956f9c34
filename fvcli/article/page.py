"""The article page: every figure in the article's order, with its caption and numbers (index.html).

Built from the FIGURE.json records in the output directory, so a run of a few figures adds to the page of earlier
runs. Same look as the sweep gallery (its CSS), plain HTML, no scripts, relative links: it opens from disk. A
figure not built yet has a placeholder saying why (`data-missing`); built ones carry `data-figure`.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from ..gallery.layout import CSS, THUMB
from ..outputs import atomic_write_bytes
from .core import Figure, read_record

PAGE_CSS = """
.fig{margin:0 0 2.2em 0;max-width:1100px}.fig h2{font-size:1.15em;margin:.2em 0 .4em}
.fig img{max-width:100%;height:auto;display:block;border:1px solid #eee}
.fig .cap{color:#333;margin:.5em 0}.fig .note{color:#a60}
.fig table{font-size:12px;margin-top:.4em}.network{background:#f3f6fb;padding:8px 10px;border-left:3px solid #15c}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def figure_html(number: int, fig: Figure, rec: dict | None, reason: str) -> str:
    if rec is None:
        return (f"<section class=\"fig missing\" data-missing=\"{_e(fig.id)}\" id=\"{_e(fig.id)}\">"
                f"<h2>Figure {number}. {_e(fig.title)}</h2><p class=\"cap\">{_e(fig.caption)}</p>"
                f"<p class=\"note\">not built: {_e(reason)}</p></section>")
    rows = "".join(f"<tr><td>{_e(p.get('label'))}</td><td>{_num(p.get('score'))}</td>"
                   f"<td>{_num(p.get('hf_fraction'))}</td></tr>" for p in rec.get("panels") or [])
    table = (f"<table><tr><th>panel</th><th>objective</th><th>HF fraction</th></tr>{rows}</table>" if rows else "")
    note = f"<p class=\"note\">{_e(rec['note'])}</p>" if rec.get("note") else ""
    steps = rec.get("steps")
    steps_s = ", ".join(map(str, steps)) if isinstance(steps, list) else str(steps)
    png = quote(rec["png"])
    return (f"<section class=\"fig\" data-figure=\"{_e(fig.id)}\" id=\"{_e(fig.id)}\">"
            f"<h2>Figure {number}. {_e(fig.title)}</h2>"
            f"<a href=\"{png}\"><img src=\"{png}\" alt=\"{_e(fig.title)}\"></a>"
            f"<p class=\"cap\">{_e(fig.caption)}</p>{note}"
            f"<p>unit {_e(rec.get('unit'))} &middot; {_e(rec.get('size'))} px &middot; steps {_e(steps_s)} &middot; "
            f"seed {_e(rec.get('seed'))} &middot; <a href=\"{quote(fig.id + '.json')}\">record (JSON)</a></p>"
            f"{table}</section>")


def page_html(figures: Sequence[Figure], out: Path, network_note: str, model: str, reasons: dict[str, str]) -> bytes:
    parts, notes = [], set()
    for number, fig in enumerate(figures, 1):
        rec = read_record(out / f"{fig.id}.json")
        if rec is not None and not (out / str(rec.get("png", ""))).is_file():
            rec = None
        if rec is not None:
            notes.add((rec.get("network") or {}).get("model"))
        parts.append(figure_html(number, fig, rec, reasons.get(fig.id, "not requested in any run yet")))
    mixed = sorted(n for n in notes if n and n != model)
    warn = f" Some figures were made with another network: {_e(', '.join(mixed))}." if mixed else ""
    title = "Feature Visualization (Olah, Mordvintsev, Schubert, Distill 2017): the figures, reproduced by fv"
    body = (f"<h1>{_e(title)}</h1>\n<p class=\"network\" data-network=\"{_e(model)}\">{_e(network_note)}.{warn}</p>\n"
            + "\n".join(parts))
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title>"
            f"<style>{CSS % {'t': THUMB}}{PAGE_CSS}</style></head>\n<body data-page=\"article\">\n{body}\n"
            f"</body></html>\n").encode()


def write_page(out: Path, figures: Sequence[Figure], network_note: str, model: str,
               reasons: dict[str, str]) -> Path:
    path = Path(out) / "index.html"
    atomic_write_bytes(path, page_html(figures, Path(out), network_note, model, reasons))
    return path
