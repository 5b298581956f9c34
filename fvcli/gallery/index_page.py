"""The model page (OUT/index.html): every layer with its unit count, how many are done, and a strip of its first
units, so a reader sees the whole model at a glance and picks a layer; the sweep's settings and timings below.

Only the strip's few thumbnails load per layer (lazily), so a model with thousands of units opens at once.
"""
from __future__ import annotations

from collections.abc import Sequence

from .layout import e, page, title, u

STRIP = 8  # thumbnails per layer on the model page


def index_html(manifest: dict, layers: Sequence[dict]) -> bytes:
    s, units, t = manifest["sweep"], manifest["units"], manifest["timings"]
    render = (manifest.get("recipe") or {}).get("render", {})
    rows = []
    for g, doc in zip(layers, manifest["layers"]):
        pct = 100 * doc["done"] / max(1, doc["units"])
        base = doc["dir"]
        strip = "".join(
            f"<a href=\"{u(base + unit.key + '.html')}\" title=\"{e(unit.label)}\"><img src=\"{u(base + str(rec['png']))}\" "
            f"alt=\"{e(unit.label)}\" loading=\"lazy\" width=\"48\" height=\"48\"></a>"
            for unit, rec in [x for x in g["units"] if x[1]][:STRIP])
        sheet = f"<a href=\"{u(doc['sheet'])}\">sheet</a>" if doc.get("sheet") else ""
        kind = "" if g["kind"] == "channel" else f" ({e(g['kind'])})"
        rows.append(f"<tr data-layer=\"{e(g['layer'])}\" id=\"{e('layer-' + g['layer'])}\"><td><a href=\"{u(doc['page'])}\">"
                    f"{e(g['layer'])}</a>{kind}</td><td>{doc['units']}</td><td>{doc['done']}</td>"
                    f"<td><span class=\"bar\" style=\"width:{pct:.0f}px\"></span></td><td class=\"strip\">{strip}</td>"
                    f"<td>{sheet}</td></tr>")
    state = "complete" if manifest["complete"] else f"{units['missing']} unit(s) missing"
    body = f"""<h1>{e(title(manifest))}</h1>
<p>{units['done']} / {units['expected']} units ({e(state)}) &middot; weights {e(s.get('weights'))}
&middot; {e(render.get('size'))} px, {e(render.get('steps'))} steps, seed {e(render.get('seed'))},
batch size {e(s.get('batch_size'))} &middot; devices {e(', '.join(manifest.get('devices') or []) or '-')}
&middot; {e(t.get('units_per_hour_per_process') or '-')} units/hour/process</p>
<table class="layers"><tr><th>layer</th><th>units</th><th>done</th><th></th><th>first units</th><th></th></tr>
{''.join(rows)}
</table>
<p><a href="manifest.json">manifest.json</a> &middot; <a href="sweep.json">sweep.json</a> &middot;
finalized {e(manifest.get('finalized'))}</p>"""
    return page(title(manifest), body, "index", ".")
