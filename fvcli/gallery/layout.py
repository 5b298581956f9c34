"""The frame every gallery page shares: escaping, relative URLs, the CSS and the HTML shell.

Kept apart from the pages so that the look (and the phone layout) is changed in one place, and so that every page
escapes the same way: every string that comes from a record or a path goes through `e()` (text and attributes) or
`u()` (a relative URL, each segment percent-encoded). Pages load one shipped script, OUT/gallery.js
(fvcli/gallery/script.py), by a relative path: nothing is fetched over the network, so the folder works from file://.
"""
from __future__ import annotations

import html
from urllib.parse import quote

THUMB = 96  # px of a layer page's thumbnail (the unit PNG scaled down by the browser)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 1.5em;color:#222;background:#fff}
a{color:#15c;text-decoration:none}a:hover{text-decoration:underline}
nav{margin-bottom:.6em;color:#666}h1{font-size:1.4em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1em 0 .4em}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
th{color:#555;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:6px}
.unit{display:block;width:%(t)dpx;text-align:center;font-size:11px;color:#333;position:relative}
.unit img{width:%(t)dpx;height:%(t)dpx;display:block;background:#eee}
.unit.dead img{opacity:.45}.unit.dead::after{content:"dead";position:absolute;top:2px;left:2px;font-size:10px;
background:#c33;color:#fff;padding:0 3px;border-radius:2px}
.unit:target,.unit.hit{outline:3px solid #f90}
.cofire .unit{overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.missing .ph{width:%(t)dpx;height:%(t)dpx;background:#e3e3e3;display:flex;align-items:center;justify-content:center;color:#999}
.strip img{width:48px;height:48px;vertical-align:middle;margin-right:2px;background:#eee}
.tools{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;margin:.4em 0 1em}
.tools input[type=number]{width:6em}
figure{display:inline-block;margin:0 12px 12px 0;vertical-align:top}figure img{width:224px;height:auto;display:block}
figure.small img{width:112px}figcaption{font-size:12px;color:#555}
figure.flat{width:112px}.flatflag{width:112px;height:112px;margin:0;display:flex;align-items:center;justify-content:center;background:#f3f3f3;color:#a33}
.examples img{width:auto;max-width:100%%}
.ex{display:inline-block;margin:0 8px 8px 0;font-size:11px;color:#555;vertical-align:top}
.ex .whole{position:relative;display:inline-block;width:96px;height:96px;background:#eee;vertical-align:top}
.ex .whole img{width:96px;height:96px;object-fit:fill;display:block}
.ex .box{position:absolute;border:2px solid #f30;box-sizing:border-box}
.ex .crop{width:96px;height:96px;display:inline-block;vertical-align:top;background:#eee}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:24em}
.bar{display:inline-block;height:8px;background:#4a4;vertical-align:middle}
svg.curve{background:#fafafa;border:1px solid #ddd;max-width:100%%;height:auto}
.keys{color:#888;font-size:12px}
@media (max-width:600px){body{margin:.5em}figure img{width:44vw}figure.small img{width:28vw}
td,th{font-size:12px;word-break:break-all}}
"""


def e(x: object) -> str:
    """Text or attribute value, HTML-escaped (quotes too)."""
    return html.escape(str(x), quote=True)


def u(path: str) -> str:
    """A relative URL for a file path (each segment percent-encoded)."""
    return "/".join(quote(p) for p in str(path).split("/"))


CSS_FILE = "gallery.css"  # OUT/gallery.css: the CSS of the unit pages (pages.write_gallery writes it)


def css_text() -> str:
    return CSS % {"t": THUMB}


def page(title: str, body: str, kind: str, root: str, head: str = "") -> bytes:
    """The HTML shell: viewport meta (phones), the CSS, `data-page` for tests and the script, gallery.js. Unit pages
    link the CSS (OUT/gallery.css, one file for a layer's 32,768 pages instead of 2 kB more in each); the model and
    layer pages, one per layer, keep it inline so that each shows styled on its own."""
    style = (f"<link rel=\"stylesheet\" href=\"{u(root)}/{CSS_FILE}\">" if kind == "unit"
             else f"<style>{css_text()}</style>")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{e(title)}</title>"
            f"{style}{head}</head>\n<body data-page=\"{kind}\" data-root=\"{e(root)}\">\n"
            f"{body}\n<script src=\"{u(root)}/gallery.js\"></script>\n</body></html>\n").encode()


def title(manifest: dict) -> str:
    s = manifest["sweep"]
    return f"fv sweep: {s.get('model')} (recipe {s.get('recipe_hash')})"
