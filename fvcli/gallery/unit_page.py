"""A unit page (layers/LAYER/KEY.html): everything fv knows about one unit, as OpenAI Microscope shows it.

Top to bottom: the visualization (every image the record lists) with MACO's alpha map when there is one; its
diversity facets and its negative (fvcli/sweep/extras.py); the dataset examples that excite it most and least, each
crop around the maximal activation (the receptive field) beside the whole image with the box drawn on it
(media.py); its circuit -- strongest inputs with their kernels, the units it feeds (circuit_section.py); the
objective-vs-step curve (curve.py) with the final score, HF fraction and dead flag (facts.py); the
recipe; the record's metadata. prev / next / up are rel links, which gallery.js binds to <- / -> / ^. The file name
KEY.html is the unit's permalink.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from ..units.unit import Unit
from .curve import curve_svg
from .facts import DEAD_RULE, REDIRECT_STEPS
from .layout import e, page, title, u
from .media import example_media


DEAD_HTML = ' &middot; <strong class="deadflag">dead</strong>'


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _fig(src: str, label: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return (f"<figure{attr}><a href=\"{u(src)}\"><img src=\"{u(src)}\" "
            f"alt=\"{e(label)}\"></a><figcaption>{e(label)}</figcaption></figure>")


def _variant(d: Path, png: str, label: str) -> str:
    """A facet's or negative's figure; a flat one (its record says its objective did not move from the initial
    noise, fvcli/runner/flat.py) is shown as a flag with the reason and a link, not as a result."""
    try:
        rec = json.loads((d / png).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rec = {}
    if rec.get("negative_layer") and rec.get("negative_layer") != rec.get("layer"):
        label += f", on {rec['negative_layer']}"
    if not rec.get("flat"):
        return _fig(png, label, "small")
    return (f"<figure class=\"small flat\"><p class=\"flatflag\"><strong>flat</strong>: not a result</p>"
            f"<figcaption>{e(label)}: {e(rec.get('flat_reason') or '')} (<a href=\"{u(png)}\">picture</a>)"
            f"</figcaption></figure>")


def _examples(ex: dict, end: str) -> str:
    items = []
    for x in ex.get(end) or []:
        l, t, w, h = x["box"]
        items.append(f"<div class=\"ex\"><span class=\"whole\" style=\"width:{x['size'][0]}px;height:{x['size'][1]}px\">"
                     f"<img src=\"{u(x['whole'])}\" alt=\"{e(x['relpath'])}\" loading=\"lazy\" width=\"{x['size'][0]}\" "
                     f"height=\"{x['size'][1]}\" style=\"width:{x['size'][0]}px;height:{x['size'][1]}px\">"
                     f"<span class=\"box\" style=\"left:{l:.2f}%;top:{t:.2f}%;width:{w:.2f}%;height:{h:.2f}%\"></span>"
                     f"</span> <img class=\"crop\" src=\"{u(x['crop'])}\" alt=\"crop of {e(x['relpath'])}\" "
                     f"loading=\"lazy\" width=\"96\" height=\"96\"><br>{e(format(x['activation'], '.4g'))} "
                     f"&middot; {e(x['relpath'])}</div>")
    return "".join(items)


@functools.lru_cache(maxsize=8)
def _recipe_text(compact: str) -> str:
    """The recipe as the page shows it (every unit of a sweep has the same one: formatted once, not per page)."""
    return json.dumps(json.loads(compact), indent=1, sort_keys=True)


def _cofire(items: list[dict]) -> str:
    """The units that fire together with this one (cofire.py: shared top dataset examples), each a link."""
    cells = "".join(
        f"<a class=\"unit\" href=\"{u(x['key'] + '.html')}\" title=\"{e(x['label'])}: Jaccard {x['jaccard']:.3g}, "
        f"{x['shared']} shared\"><img src=\"{u(x['png'])}\" alt=\"{e(x['label'])}\" loading=\"lazy\" width=\"96\" "
        f"height=\"96\">{e(x.get('caption') or x['label'])}<br>{x['jaccard']:.2f}</a>" for x in items)
    return (f"<h2>fires together with</h2><p class=\"keys\">the units whose top dataset examples overlap this one's "
            f"most (Jaccard index of the top-image sets)</p><div class=\"grid cofire\">{cells}</div>")


def unit_html(manifest: dict, g: dict, unit: Unit, rec: dict, prev: Unit | None, nxt: Unit | None, facts: dict,
              d: Path, circuit: str = "") -> bytes:
    """The page of `unit` (record `rec`, facts.layer_facts' entry `facts`, layer directory `d`; `circuit`: its
    inputs / outputs section, circuit_section.py)."""
    figs = [_fig(im["png"], im.get("label", "")) for im in rec.get("images") or []]
    shown = {str(im.get("png")) for im in rec.get("images") or []}  # appendix sweeps list facets as images
    facts = {**facts, "facets": [p for p in facts.get("facets") or [] if p not in shown],
             "negative": None if facts.get("negative") in shown else facts.get("negative")}
    if facts.get("alpha"):
        figs.append(_fig(facts["alpha"], "MACO alpha map"))
    extras = []
    if facts.get("facets"):
        extras.append("<h2>diversity facets</h2>" + "".join(
            _variant(d, p, f"facet {i}") for i, p in enumerate(facts["facets"])))
    if facts.get("negative"):
        extras.append("<h2>negative</h2>" + _variant(d, facts["negative"], "negative (minimizes the objective)"))
    if facts.get("examples_json"):
        ex = example_media(d, facts["examples_json"])
        extras.append(f"<h2>dataset examples</h2><p class=\"keys\">score: {e(ex.get('score'))}; box: the receptive field "
                      f"around the maximal activation; from {e(ex.get('images_dir'))}</p>"
                      f"<h3>top</h3><div class=\"exrow\" data-end=\"top\">{_examples(ex, 'top')}</div>"
                      f"<h3>bottom</h3><div class=\"exrow\" data-end=\"bottom\">{_examples(ex, 'bottom')}</div>")
    if facts.get("cofire"):
        extras.append(_cofire(facts["cofire"]))
    grid = facts.get("examples_png") or rec.get("examples_png")
    if grid:
        extras.append(f"<figure class=\"examples\"><img src=\"{u(str(grid))}\" alt=\"dataset examples\" loading=\"lazy\">"
                      f"<figcaption>dataset examples: maximum, slightly positive, slightly negative, minimum</figcaption>"
                      f"</figure>")
    hf = facts.get("hf")
    stats = (f"final objective {e(_fmt(rec.get('final_score')))} &middot; HF fraction "
             f"{e(f'{hf:.3f}' if hf is not None else '-')}"
             f"{DEAD_HTML if facts.get('dead') else ''}")
    curve = curve_svg(rec.get("scores") or {}, REDIRECT_STEPS)
    sweep = rec.get("sweep") or {}
    fields = [("unit", rec.get("unit")), ("objective", rec.get("objective")), ("class", rec.get("class_label")),
              ("row statistics", rec.get("row_stats") or None),
              ("final score", rec.get("final_score")), ("scores by step", rec.get("scores")),
              ("clipped at 0 or 255", rec.get("clipped")),
              ("seed", rec.get("seed")), ("size", rec.get("size")),
              ("steps", (rec.get("recipe") or {}).get("render", {}).get("steps")),
              ("model", rec.get("model")), ("weights", rec.get("weights")),
              ("weights sha256", rec.get("weights_sha256")), ("recipe hash", rec.get("recipe_hash")),
              ("device", rec.get("device")), ("seconds", rec.get("seconds")),
              ("batch", f"{sweep.get('batch')} ({len(sweep.get('members') or [])} units)"),
              ("shard", sweep.get("shard")), ("faults", rec.get("faults") or None),
              ("torch", (rec.get("versions") or {}).get("torch"))]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(_fmt(v))}</td></tr>" for k, v in fields if v is not None)
    links = []
    if prev is not None:
        links.append(f"<a href=\"{u(prev.key + '.html')}\" rel=\"prev\">&larr; {e(prev.label)}</a>")
    links.append(f"<a href=\"index.html#c{unit.channel}\" rel=\"up\">&uarr; {e(g['layer'])}</a>")
    if nxt is not None:
        links.append(f"<a href=\"{u(nxt.key + '.html')}\" rel=\"next\">{e(nxt.label)} &rarr;</a>")
    recipe = _recipe_text(json.dumps(rec.get("recipe") or {}, sort_keys=True))
    label = e(unit.label) + (" &middot; " + e(rec["class_label"]) if rec.get("class_label") else "")
    body = f"""<nav><a href="../../index.html">{e(manifest['sweep'].get('model'))}</a> /
<a href="index.html">{e(g['layer'])}</a> / {e(unit.label)} &nbsp; {' &middot; '.join(links)}</nav>
<h1 data-unit="{e(unit.label)}">{label}</h1>
<div class="images">{''.join(figs)}</div>
{''.join(extras)}{circuit}
<h2>optimization</h2><p>{stats}</p>{curve}
<p class="keys">dead: {e(DEAD_RULE)}. Keys: &larr; / &rarr; units, &uarr; layer.</p>
<table>{rows}</table>
<h2>recipe</h2><pre>{e(recipe)}</pre>
<p><a href="{u(unit.key + '.json')}">record (JSON)</a></p>"""
    return page(f"{unit.label} - {title(manifest)}", body, "unit", "../..")
