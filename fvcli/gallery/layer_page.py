"""A layer page (layers/LAYER/index.html): every unit of the layer as a thumbnail, sortable and filterable.

Built to scale to a layer of 1,024 units: the grid is plain HTML (so it shows before any script runs), every
thumbnail has loading="lazy" and a fixed size (so the first screen lays out at once and only its images load), and
each cell carries what the script sorts and filters by -- data-ch, data-score (final objective), data-hf (HF
fraction), data-dead (facts.DEAD_RULE) -- so sorting is a reorder of existing nodes, never a re-render. Each cell's
id is cN, a permalink to channel N; the jump box scrolls to it.
"""
from __future__ import annotations

from pathlib import Path

from .facts import DEAD_RULE
from .layout import THUMB, e, page, title, u
from .thumbs import COLS, sprite_cell


def _sprites(paths: list[str]) -> str:
    return " ".join(f"<a href=\"{u(p.split('/', 2)[2])}\">{e(Path(p).stem).replace('--', '&ndash;')}</a>" for p in paths)


def layer_html(manifest: dict, g: dict, doc: dict, facts: dict[str, dict], prev: dict | None = None,
               nxt: dict | None = None, sprite: str | None = None) -> bytes:
    """The page; `sprite` is the thumbnails sprite (thumbs.py; tile i = the i-th done unit), None: one lazy <img>
    per unit."""
    cells = []
    n_dead = 0
    tile = 0
    for unit, rec in g["units"]:
        cap = str(unit.channel)
        if rec and rec.get("class_label"):
            cap += f" {rec['class_label']}"
        if rec:
            f = facts.get(unit.key, {})
            dead = bool(f.get("dead"))
            n_dead += dead
            score, hf = rec.get("final_score"), f.get("hf")
            tip = f"{unit.label}: objective {score:.4g}" if isinstance(score, (int, float)) else unit.label
            if hf is not None:
                tip += f", HF {hf:.3f}"
            cells.append(f"<a class=\"unit{' dead' if dead else ''}\" id=\"c{unit.channel}\" href=\"{u(unit.key + '.html')}\" "
                         f"data-unit=\"{e(unit.label)}\" data-ch=\"{unit.channel}\" data-score=\"{e(score if score is not None else '')}\" "
                         f"data-hf=\"{e(hf if hf is not None else '')}\" data-dead=\"{int(dead)}\" title=\"{e(tip)}\">"
                         f"{_thumb(rec, unit, sprite, tile)}{e(cap)}</a>")
            tile += 1
        else:
            cells.append(f"<div class=\"unit missing\" id=\"c{unit.channel}\" data-ch=\"{unit.channel}\" data-score=\"\" "
                         f"data-hf=\"\" data-dead=\"0\" data-missing=\"{e(unit.label)}\"><div class=\"ph\">?</div>{e(cap)}</div>")
    sheet = f"<a href=\"{u('sheet.png')}\">whole-layer sheet</a>" if doc.get("sheet") else ""
    if sprite:
        sheet += f" &middot; <a href=\"{u(sprite)}\">thumbnails</a>"
    sprites = _sprites(doc.get("sprites") or [])
    if doc.get("panel_sheets"):
        sprites += " &middot; appendix panels: " + _sprites(doc["panel_sheets"])
    links = [f"<a href=\"../../index.html\" rel=\"up\">&uarr; all layers</a>"]
    if prev is not None:
        links.insert(0, f"<a href=\"../../{u(prev['page'])}\" rel=\"prev\">&larr; {e(prev['layer'])}</a>")
    if nxt is not None:
        links.append(f"<a href=\"../../{u(nxt['page'])}\" rel=\"next\">{e(nxt['layer'])} &rarr;</a>")
    chans = [unit.channel for unit, _r in g["units"]]
    lo, hi = (min(chans), max(chans)) if chans else (0, 0)
    body = f"""<nav><a href="../../index.html">{e(manifest['sweep'].get('model'))}</a> / {e(g['layer'])}
&nbsp; {' &middot; '.join(links)}</nav>
<h1>{e(g['layer'])}</h1>
<p>{doc['done']} / {doc['units']} {e(g['kind'])} units &middot; {n_dead} dead &middot; {sheet}</p>
<form class="tools" id="jump" action="#"><label>sort <select id="sort"><option value="channel">channel</option>
<option value="score">final objective</option><option value="hf">HF fraction</option></select></label>
<label>dead units <select id="dead"><option value="show">show</option><option value="hide">hide</option>
<option value="only">only</option></select></label>
<label>channel <input type="number" name="c" min="{lo}" max="{hi}" placeholder="{lo}-{hi}"></label>
<button type="submit">jump</button> <span id="note" aria-live="polite"></span></form>
<p class="keys">dead: {e(DEAD_RULE)}. Keys: &larr; / &rarr; layers, &uarr; model.</p>
<div class="grid" id="units">
{chr(10).join(cells)}
</div>
<p>sprites: {sprites}</p>"""
    head = (f"<style>.th{{display:block;width:{THUMB}px;height:{THUMB}px;background:#eee url({u(sprite)}) no-repeat;"
            f"background-size:{COLS * THUMB}px auto}}</style>" if sprite else "")
    return page(f"{g['layer']} - {title(manifest)}", body, "layer", "../..", head)


def _thumb(rec: dict, unit, sprite: str | None, tile: int) -> str:
    if sprite:
        return f"<span class=\"th\" role=\"img\" aria-label=\"{e(unit.label)}\" style=\"{sprite_cell(tile, THUMB)}\"></span>"
    return (f"<img src=\"{u(str(rec['png']))}\" alt=\"{e(unit.label)}\" loading=\"lazy\" decoding=\"async\" "
            f"width=\"{THUMB}\" height=\"{THUMB}\">")
