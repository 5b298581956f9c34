"""The page of a large layer (INDEXED_FROM units or more, e.g. a 32,768-row dictionary): drawn from an index.

layer_page.py writes every unit as a cell of HTML, which is right up to a few thousand units and too slow beyond
(markup and layout grow with the layer, the first screen waits for all of it). This page is a fixed shell of a few
kilobytes whatever the layer's size: the tools (search by index, name or label; sort by channel, firing frequency,
final objective or HF fraction; dead units shown, hidden or alone), the 2-D map of the units on a <canvas> when
there is one, and an empty grid that gallery-units.js (script_units.py) fills with the cells on screen only, from
gallery/units-index.js (layer_index.py) and the chunked thumbnail sprites. The view (query, sort, dead filter,
#cN) is kept in the URL's hash, as on the small page.
"""
from __future__ import annotations

from .facts import DEAD_RULE
from .layer_index import INDEX
from .layout import THUMB, e, page, title, u

HEAD = (f"<style>#vgrid{{position:relative;min-height:{THUMB + 22}px}}"
        f"#vgrid .unit{{position:absolute;height:{THUMB + 18}px;overflow:hidden;white-space:nowrap;"
        f"text-overflow:ellipsis}}"
        f"#vgrid .th{{display:block;width:{THUMB}px;height:{THUMB}px;background:#eee no-repeat}}"
        f"#vgrid .ph{{width:{THUMB}px;height:{THUMB}px;background:#e3e3e3}}"
        f"#map{{border:1px solid #ddd;background:#fafafa;cursor:crosshair;width:360px;max-width:100%;aspect-ratio:1}}"
        f".vwrap{{display:flex;gap:1em;align-items:flex-start}}#vgrid{{flex:1}}"
        f".mapbox{{position:sticky;top:0;flex:none;width:362px;max-width:40vw;font-size:12px;color:#555}}"
        f"#q{{width:14em}}@media (max-width:600px){{.vwrap{{flex-direction:column-reverse}}.mapbox{{position:static;"
        f"max-width:95vw}}}}</style>")


def indexed_layer_html(manifest: dict, g: dict, doc: dict, n_dead: int, map_source: str | None,
                       prev: dict | None = None, nxt: dict | None = None) -> bytes:
    """The shell; the cells come from INDEX (written beside it) through gallery-units.js."""
    links = ["<a href=\"../../index.html\" rel=\"up\">&uarr; all layers</a>"]
    if prev is not None:
        links.insert(0, f"<a href=\"../../{u(prev['page'])}\" rel=\"prev\">&larr; {e(prev['layer'])}</a>")
    if nxt is not None:
        links.append(f"<a href=\"../../{u(nxt['page'])}\" rel=\"next\">{e(nxt['layer'])} &rarr;</a>")
    sheet = f"<a href=\"{u('sheet.png')}\">whole-layer sheet</a>" if doc.get("sheet") else ""
    n_sprites = len(doc.get("sprites") or [])
    sprites = (f"{n_sprites} of 10 channels each, sprites/A--B.png (not listed: one link per sprite would weigh more "
               f"than the page)" if n_sprites else "none")
    mapbox = (f"<aside class=\"mapbox\"><canvas id=\"map\" width=\"720\" height=\"720\" role=\"img\" "
              f"aria-label=\"map of the units\"></canvas><br>map: {e(map_source)}; a click opens the nearest unit"
              f"<br><span id=\"mapnote\"></span></aside>" if map_source else "")
    body = f"""<nav><a href="../../index.html">{e(manifest['sweep'].get('model'))}</a> / {e(g['layer'])}
&nbsp; {' &middot; '.join(links)}</nav>
<h1>{e(g['layer'])}</h1>
<p>{doc['done']} / {doc['units']} {e(g['kind'])} units &middot; {n_dead} dead &middot; {sheet}</p>
<form class="tools" id="vtools" action="#"><label>search <input id="q" type="search"
placeholder="index, name or label" autocomplete="off"></label>
<label>sort <select id="sort"><option value="ch">channel</option><option value="freq">firing frequency</option>
<option value="obj">final objective</option><option value="hf">HF fraction</option></select></label>
<label>dead units <select id="dead"><option value="show">show</option><option value="hide">hide</option>
<option value="only">only</option></select></label> <span id="note" aria-live="polite"></span></form>
<p class="keys">search: a number finds that channel, text the units whose name or label contains it. dead:
{e(DEAD_RULE)}, or the dictionary's stats say the feature never fires. Keys: &larr; / &rarr; layers, &uarr; model.</p>
<div class="vwrap"><div id="vgrid" data-units="{doc['units']}"><noscript>This layer has {doc['units']} units; its
page draws them with JavaScript. Each unit's page is KEY.html in this folder; the sprites below show them all.
</noscript></div>
{mapbox}</div>
<p style="clear:both">sprites: {sprites}</p>
<script src="{u(INDEX)}"></script><script src="../../gallery-units.js"></script>"""
    return page(f"{g['layer']} - {title(manifest)}", body, "layer", "../..", HEAD)
