"""Pages that drive the gallery inside headless Chromium (tests/test_gallery_rich.py): an interaction script run
against the real pages in an iframe (sorting, the channel jump, keyboard navigation), and a first-screen timer.

They run from file:// with --allow-file-access-from-files (so the iframe's document is reachable) and write their
result as JSON into <pre id=result>, which --dump-dom prints.
"""
from __future__ import annotations

# `#` + the layer page's URL + `|` + a unit page's URL. Steps: sort by final objective, check the order; hide dead
# units, check; jump to a channel; on the unit page press -> then <- then ^ and check where each lands.
INTERACT = r"""<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" style="width:1200px;height:800px"></iframe><script>
const [layerUrl, unitUrl] = decodeURIComponent(location.hash.slice(1)).split('|');
const f = document.getElementById('f'), out = {errors: []};
function load(url) { return new Promise(res => { f.onload = () => { res(f.contentWindow); }; if (url) f.src = url; }); }
function watch(w) { w.addEventListener('error', ev => out.errors.push(String(ev.message))); }
function key(w, k) { const p = load(null); w.document.dispatchEvent(new w.KeyboardEvent('keydown', {key: k, bubbles: true})); return p; }
const nums = (w, a) => [...w.document.getElementById('units').children].filter(c => !c.hidden).map(c => parseFloat(c.dataset[a]));
async function run() {
  let w = await load(layerUrl); watch(w);
  const d = w.document, sort = d.getElementById('sort'), dead = d.getElementById('dead');
  out.initial = nums(w, 'ch');
  sort.value = 'score'; sort.dispatchEvent(new w.Event('change'));
  out.byScore = nums(w, 'score');
  sort.value = 'hf'; sort.dispatchEvent(new w.Event('change'));
  out.byHf = nums(w, 'hf');
  dead.value = 'hide'; dead.dispatchEvent(new w.Event('change'));
  out.aliveDead = [...d.getElementById('units').children].filter(c => !c.hidden).map(c => c.dataset.dead);
  dead.value = 'only'; dead.dispatchEvent(new w.Event('change'));
  out.onlyDead = [...d.getElementById('units').children].filter(c => !c.hidden).map(c => c.dataset.dead);
  dead.value = 'show'; dead.dispatchEvent(new w.Event('change'));
  const form = d.getElementById('jump'); form.elements.c.value = '7'; form.requestSubmit();
  out.jumped = [...d.querySelectorAll('.unit.hit')].map(c => c.id);
  out.hash = w.location.hash;
  form.elements.c.value = '99999'; form.requestSubmit();  // out of the layer's range: the form refuses it
  out.overflow = form.elements.c.validity.rangeOverflow; out.note = d.getElementById('note').textContent;
  w = await load(unitUrl); watch(w);
  out.start = w.document.querySelector('h1').dataset.unit;
  w = await key(w, 'ArrowRight'); watch(w); out.right = w.document.querySelector('h1').dataset.unit;
  w = await key(w, 'ArrowLeft'); watch(w); out.left = w.document.querySelector('h1').dataset.unit;
  w = await key(w, 'ArrowUp'); watch(w); out.up = [w.document.body.dataset.page, w.location.hash];
  w = await key(w, 'ArrowUp'); out.up2 = w.document.body.dataset.page;
  document.getElementById('result').textContent = JSON.stringify(out);
}
run().catch(e => { out.errors.push('harness: ' + e); document.getElementById('result').textContent = JSON.stringify(out); });
</script></body></html>"""

# `#` + a layer page's URL: when the parent's load event fires, the iframe's page and everything on its first screen
# (the thumbnails sprite) has loaded; report its navigation timing and whether the sprite was there by then.
FIRST_SCREEN = r"""<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" style="width:1200px;height:800px"></iframe><script>
const f = document.getElementById('f');
f.src = decodeURIComponent(location.hash.slice(1));
window.addEventListener('load', () => {
  const w = f.contentWindow, nav = w.performance.getEntriesByType('navigation')[0];
  // file:// loads leave no resource-timing entries: ask the image cache instead -- a sprite that arrived before
  // the load event is complete at once when asked for again
  const th = w.document.querySelector('.th'), url = th && w.getComputedStyle(th).backgroundImage.slice(5, -2);
  const probe = new w.Image(); if (url) probe.src = url;
  const sprite = {url: url || null, complete: probe.complete && probe.naturalWidth > 0, width: probe.naturalWidth};
  const cells = [...w.document.querySelectorAll('#units > *')];
  const first = cells.filter(c => { const r = c.getBoundingClientRect(); return r.top < 800 && r.bottom > 0; }).length;
  document.getElementById('result').textContent = JSON.stringify({load: nav.loadEventEnd, dcl: nav.domContentLoadedEventEnd,
    sprite, cells: cells.length, first});
});
</script></body></html>"""
