"""The static HTML gallery of a sweep: index (layers) -> layer page (grid of channel thumbnails) -> unit page.

Plain HTML and CSS, no scripts, no server: every link is relative, so the directory can be opened from disk
(`file://.../index.html`), copied, or served by any static web server. Pages are written atomically.

A unit page shows every image its record lists (`images: [{"label", "png"}]`; renderers may produce several, e.g.
the appendix panels), dataset examples when the record has `examples_png`, and the record's metadata.
"""
from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from ..outputs import atomic_write_bytes
from ..units.unit import Unit, safe_name

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
a{color:#15c;text-decoration:none}a:hover{text-decoration:underline}
nav{margin-bottom:1em;color:#666}h1{font-size:1.4em;margin:.2em 0 .6em}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
th{color:#555;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:6px}
.unit{display:block;width:%(t)dpx;text-align:center;font-size:11px;color:#333}
.unit img{width:%(t)dpx;height:%(t)dpx;display:block;image-rendering:auto;background:#eee}
.missing .ph{width:%(t)dpx;height:%(t)dpx;background:#e3e3e3;display:flex;align-items:center;justify-content:center;color:#999}
.layers img{height:48px;vertical-align:middle}
figure{display:inline-block;margin:0 12px 12px 0}figure img{width:224px;height:auto;display:block}
.examples img{width:auto;max-width:672px}figcaption{font-size:12px;color:#555}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:24em}
.bar{display:inline-block;height:8px;background:#4a4;vertical-align:middle}
"""
THUMB = 96


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _u(path: str) -> str:
    """A relative URL for a file path (each segment percent-encoded)."""
    return "/".join(quote(p) for p in path.split("/"))


def _page(title: str, body: str, kind: str, root: str) -> bytes:
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title>"
            f"<style>{CSS % {'t': THUMB}}</style></head>\n<body data-page=\"{kind}\" data-root=\"{_e(root)}\">\n"
            f"{body}\n</body></html>\n").encode()


def unit_page_name(unit: Unit) -> str:
    return f"{unit.key}.html"


def _title(manifest: dict) -> str:
    s = manifest["sweep"]
    return f"fv sweep: {s.get('model')} (recipe {s.get('recipe_hash')})"


def write_gallery(out: Path, manifest: dict, layers: Sequence[dict]) -> list[Path]:
    """index.html, layers/L/index.html and layers/L/KEY.html for every unit that is done."""
    out = Path(out)
    written = [out / "index.html"]
    atomic_write_bytes(out / "index.html", index_html(manifest, layers))
    for g, doc in zip(layers, manifest["layers"]):
        d = out / "layers" / safe_name(g["layer"])
        atomic_write_bytes(d / "index.html", layer_html(manifest, g, doc))
        written.append(d / "index.html")
        done = [(u, rec) for u, rec in g["units"] if rec]
        for u, rec in g["units"]:
            if rec is None:  # a page left from an earlier finalize must not outlive its unit
                (d / unit_page_name(u)).unlink(missing_ok=True)
        for k, (u, rec) in enumerate(done):
            prev = done[k - 1][0] if k > 0 else None
            nxt = done[k + 1][0] if k + 1 < len(done) else None
            atomic_write_bytes(d / unit_page_name(u), unit_html(manifest, g, u, rec, prev, nxt))
            written.append(d / unit_page_name(u))
    return written


def index_html(manifest: dict, layers: Sequence[dict]) -> bytes:
    s, units, t = manifest["sweep"], manifest["units"], manifest["timings"]
    r = manifest.get("recipe") or {}
    render = r.get("render", {})
    rows = []
    for g, doc in zip(layers, manifest["layers"]):
        pct = 100 * doc["done"] / max(1, doc["units"])
        preview = (f"<a href=\"{_u(doc['sprites'][0])}\"><img src=\"{_u(doc['sprites'][0])}\" alt=\"\"></a>"
                   if doc["sprites"] and doc["done"] else "")
        sheet = f"<a href=\"{_u(doc['sheet'])}\">sheet</a>" if doc["sheet"] else ""
        kind = "" if g["kind"] == "channel" else f" ({_e(g['kind'])})"
        rows.append(f"<tr data-layer=\"{_e(g['layer'])}\"><td><a href=\"{_u(doc['page'])}\">{_e(g['layer'])}</a>{kind}</td>"
                    f"<td>{doc['done']} / {doc['units']}</td><td><span class=\"bar\" style=\"width:{pct:.0f}px\"></span></td>"
                    f"<td>{sheet}</td><td>{preview}</td></tr>")
    state = "complete" if manifest["complete"] else f"{units['missing']} unit(s) missing"
    body = f"""<h1>{_e(_title(manifest))}</h1>
<p>{units['done']} / {units['expected']} units ({_e(state)}) &middot; weights {_e(s.get('weights'))}
&middot; {_e(render.get('size'))} px, {_e(render.get('steps'))} steps, seed {_e(render.get('seed'))},
batch size {_e(s.get('batch_size'))} &middot; devices {_e(', '.join(manifest.get('devices') or []) or '-')}
&middot; {_e(t.get('units_per_hour_per_process') or '-')} units/hour/process</p>
<table class="layers"><tr><th>layer</th><th>done</th><th></th><th></th><th>first sprite</th></tr>
{''.join(rows)}
</table>
<p><a href="manifest.json">manifest.json</a> &middot; <a href="sweep.json">sweep.json</a> &middot;
finalized {_e(manifest.get('finalized'))}</p>"""
    return _page(_title(manifest), body, "index", ".")


def layer_html(manifest: dict, g: dict, doc: dict) -> bytes:
    cells = []
    for u, rec in g["units"]:
        cap = str(u.channel)
        if rec and rec.get("class_label"):
            cap += f" {rec['class_label']}"
        if rec:
            cells.append(f"<a class=\"unit\" href=\"{_u(unit_page_name(u))}\" data-unit=\"{_e(u.label)}\" "
                         f"title=\"{_e(u.label)}\"><img src=\"{_u(rec['png'])}\" alt=\"{_e(u.label)}\" "
                         f"loading=\"lazy\">{_e(cap)}</a>")
        else:
            cells.append(f"<div class=\"unit missing\" data-missing=\"{_e(u.label)}\"><div class=\"ph\">?</div>"
                         f"{_e(cap)}</div>")
    sprites = " ".join(f"<a href=\"{_u(p.split('/', 2)[2])}\">{_e(Path(p).stem).replace('--', '&ndash;')}</a>"
                       for p in doc["sprites"])
    sheet = f"<a href=\"{_u('sheet.png')}\">whole-layer sheet</a>" if doc["sheet"] else ""
    if doc.get("panel_sheets"):
        sprites += " &middot; appendix panels: " + " ".join(
            f"<a href=\"{_u(p.split('/', 2)[2])}\">{_e(Path(p).stem).replace('--', '&ndash;')}</a>"
            for p in doc["panel_sheets"])
    body = f"""<nav><a href="../../index.html">{_e(manifest['sweep'].get('model'))}</a> / {_e(g['layer'])}</nav>
<h1>{_e(g['layer'])}</h1>
<p>{doc['done']} / {doc['units']} {_e(g['kind'])} units &middot; {sheet}</p>
<p>sprites: {sprites}</p>
<div class="grid">
{chr(10).join(cells)}
</div>"""
    return _page(f"{g['layer']} - {_title(manifest)}", body, "layer", "../..")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def unit_html(manifest: dict, g: dict, u: Unit, rec: dict, prev: Unit | None, nxt: Unit | None) -> bytes:
    figs = [f"<figure><a href=\"{_u(im['png'])}\"><img src=\"{_u(im['png'])}\" alt=\"{_e(im.get('label', ''))}\"></a>"
            f"<figcaption>{_e(im.get('label', ''))}</figcaption></figure>" for im in rec.get("images") or []]
    if rec.get("examples_png"):
        figs.append(f"<figure class=\"examples\"><img src=\"{_u(str(rec['examples_png']))}\" alt=\"dataset examples\">"
                    f"<figcaption>dataset examples</figcaption></figure>")
    sweep = rec.get("sweep") or {}
    fields = [("unit", rec.get("unit")), ("objective", rec.get("objective")), ("class", rec.get("class_label")),
              ("final score", rec.get("final_score")), ("scores by step", rec.get("scores")),
              ("seed", rec.get("seed")), ("size", rec.get("size")),
              ("steps", (rec.get("recipe") or {}).get("render", {}).get("steps")),
              ("model", rec.get("model")), ("weights", rec.get("weights")),
              ("weights sha256", rec.get("weights_sha256")), ("recipe hash", rec.get("recipe_hash")),
              ("device", rec.get("device")), ("seconds", rec.get("seconds")),
              ("batch", f"{sweep.get('batch')} ({len(sweep.get('members') or [])} units)"),
              ("shard", sweep.get("shard")), ("faults", rec.get("faults") or None),
              ("torch", (rec.get("versions") or {}).get("torch"))]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in fields if v is not None)
    links = []
    if prev is not None:
        links.append(f"<a href=\"{_u(unit_page_name(prev))}\" rel=\"prev\">&larr; {_e(prev.label)}</a>")
    if nxt is not None:
        links.append(f"<a href=\"{_u(unit_page_name(nxt))}\" rel=\"next\">{_e(nxt.label)} &rarr;</a>")
    body = f"""<nav><a href="../../index.html">{_e(manifest['sweep'].get('model'))}</a> /
<a href="index.html">{_e(g['layer'])}</a> / {_e(u.label)} &nbsp; {' &middot; '.join(links)}</nav>
<h1 data-unit="{_e(u.label)}">{_e(u.label)}{' &middot; ' + _e(rec['class_label']) if rec.get('class_label') else ''}</h1>
<div class="images">{''.join(figs)}</div>
<table>{rows}</table>
<p><a href="{_u(u.key + '.json')}">record (JSON)</a></p>"""
    return _page(f"{u.label} - {_title(manifest)}", body, "unit", "../..")
