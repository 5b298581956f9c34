"""gallery-units.js: the large layer page's script (indexed_layer_page.py), a virtual grid over the layer's index.

Plain JavaScript, shipped as OUT/gallery-units.js, nothing fetched. It reads window.fvUnits (layer_index.py) and
keeps a *view*: the positions of the rows that pass the search and the dead filter, in the chosen order. The grid
is one tall box of the view's height; on scroll it writes only the rows of cells on screen (plus two above and
below) as absolutely placed cells, so a 32,768-unit layer costs as much to show as a 100-unit one, and sorting or
searching is an array operation over the index (a few ms for 32,768 rows), never DOM work over every unit: each
sort order and the search text of every row are computed once, while the reader looks at the first screen.
- search: a number is a channel (exact); text matches the unit's name, label or unit label (case-insensitive);
- sort: channel, firing frequency, final objective or HF fraction, largest first, absent values last;
- the map (<canvas id=map>): every unit a dot (dead red, in the view blue, others grey); a click opens the nearest
  unit of the view; hovering names it;
- #cN (the unit pages' "up" link) scrolls to channel N and marks it; the view is kept in the hash
  (#q=..&sort=..&dead=..). window.fvView() returns the view's channels (for tests); window.fvWarm() does the
  idle work at once (benchmarks time it apart from the searches).
"""
from __future__ import annotations

JS_UNITS = r"""(function () {
'use strict';
var D = window.fvUnits, box = document.getElementById('vgrid');
if (!D || !box) return;
var C = {}; D.cols.forEach(function (c, i) { C[c] = i; });
var rows = D.rows, n = rows.length, T = D.thumb, CW = T + 8, CH = T + 24;
var q = document.getElementById('q'), sortSel = document.getElementById('sort'), deadSel = document.getElementById('dead');
var note = document.getElementById('note'), canvas = document.getElementById('map');
var view = [], cols = 1, drawn = '', hit = -1, hay = null, inView = null;
function pad(c, w) { var s = String(c); while (s.length < w) s = '0' + s; return s; }
function key(i) { return D.keys ? D.keys[i] : D.key[0] + pad(rows[i][C.ch], D.key[2]) + D.key[1]; }
function label(i) { return D.units ? D.units[i] : D.unit[0] + rows[i][C.ch] + D.unit[1]; }
function esc(s) { return String(s).replace(/[&<>"']/g, function (c) {
  return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]; }); }
function haystack() {
  if (hay) return hay;
  hay = new Array(n);
  for (var i = 0; i < n; i++) {
    var r = rows[i]; hay[i] = ((r[C.name] || '') + '\n' + (r[C.label] || '') + '\n' + label(i)).toLowerCase();
  }
  return hay;
}
var orders = {};
function order(k) {  // every row's position sorted by column k (largest first, absent last), computed once
  if (orders[k]) return orders[k];
  var col = C[k], all = new Array(n);
  for (var i = 0; i < n; i++) all[i] = i;
  if (k !== 'ch') {
    all.sort(function (a, b) {
      var x = rows[a][col], y = rows[b][col];
      if (x === null || y === null) return (x === null) - (y === null) || rows[a][C.ch] - rows[b][C.ch];
      return (y - x) || (rows[a][C.ch] - rows[b][C.ch]);
    });
  }
  orders[k] = all;
  return all;
}
function compute() {
  var t0 = performance.now(), text = q.value.trim().toLowerCase(), dv = deadSel.value, out = [];
  var num = /^#?\d+$/.test(text) ? parseInt(text.replace('#', ''), 10) : null, h = text && num === null ? haystack() : null;
  var ord = order(sortSel.value);
  for (var p = 0; p < n; p++) {
    var i = ord[p], r = rows[i], dead = r[C.dead] === 1;
    if ((dv === 'hide' && dead) || (dv === 'only' && !dead)) continue;
    if (num !== null ? r[C.ch] !== num : h && h[i].indexOf(text) < 0) continue;
    out.push(i);
  }
  view = out; inView = null;
  box.setAttribute('data-ms', (performance.now() - t0).toFixed(2));
  if (note) note.textContent = view.length + (view.length === 1 ? ' unit' : ' units') + (text ? ' found' : '');
}
function layout() {
  cols = Math.max(1, Math.floor(box.clientWidth / CW));
  box.style.height = Math.max(1, Math.ceil(view.length / cols)) * CH + 'px';
  drawn = ''; draw();
}
function cell(p) {
  var i = view[p], r = rows[i], x = (p % cols) * CW, y = Math.floor(p / cols) * CH, ch = r[C.ch];
  var cap = ch + (r[C.name] ? ' ' + r[C.name] : '') + (r[C.label] ? ' ' + r[C.label] : '');
  var tip = label(i) + (r[C.obj] !== null ? ': objective ' + r[C.obj] : '') + (r[C.freq] !== null ? ', fires ' + r[C.freq] : '') +
    (r[C.hf] !== null ? ', HF ' + r[C.hf] : '');
  var cls = 'unit' + (r[C.dead] ? ' dead' : '') + (i === hit ? ' hit' : ''), pos = 'left:' + x + 'px;top:' + y + 'px;width:' + T + 'px';
  if (r[C.tile] < 0) return '<div class="' + cls + ' missing" style="' + pos + '" data-ch="' + ch + '"><div class="ph"></div>' + esc(cap) + '</div>';
  var t = r[C.tile], s = Math.floor(t / D.per), j = t % D.per, sc = D.spriteCols;
  var bg = 'background-image:url(' + D.sprites[s] + ');background-size:' + (sc * T) + 'px auto;background-position:-' +
    ((j % sc) * T) + 'px -' + (Math.floor(j / sc) * T) + 'px';
  return '<a class="' + cls + '" style="' + pos + '" href="' + encodeURIComponent(key(i)) + '.html" data-ch="' + ch + '" title="' +
    esc(tip) + '"><span class="th" style="' + bg + '"></span>' + esc(cap) + '</a>';
}
function draw() {
  var top = box.getBoundingClientRect().top, vh = window.innerHeight || 800, nr = Math.ceil(view.length / cols);
  var r0 = Math.max(0, Math.floor(-top / CH) - 2), r1 = Math.min(nr, Math.ceil((vh - top) / CH) + 2);
  var sig = r0 + ':' + r1 + ':' + cols + ':' + hit;
  if (sig === drawn) return;
  drawn = sig;
  var html = [];
  for (var p = r0 * cols; p < Math.min(view.length, r1 * cols); p++) html.push(cell(p));
  box.innerHTML = html.join('');
}
function setHash(extra) {
  history.replaceState(null, '', '#q=' + encodeURIComponent(q.value) + '&sort=' + sortSel.value + '&dead=' + deadSel.value + (extra || ''));
}
function update() { compute(); layout(); paint(); setHash(); }
function scrollToCh(ch) {
  var p = -1;
  for (var k = 0; k < view.length; k++) { if (rows[view[k]][C.ch] === ch) { p = k; break; } }
  if (p < 0) { if (note) note.textContent = 'no channel ' + ch + ' in this view'; return false; }
  hit = view[p];
  var y = box.getBoundingClientRect().top + window.pageYOffset + Math.floor(p / cols) * CH;
  window.scrollTo(0, Math.max(0, y - (window.innerHeight || 800) / 2));
  drawn = ''; draw(); return true;
}
// the map: dots on a canvas, written as pixels (ImageData), not 32,768 fillRect calls; MAP = 1000 units across
var ctx = canvas && canvas.getContext ? canvas.getContext('2d') : null, img = null, px = null;
var GREY = 0xffcccccc, BLUE = 0xffcc5511, RED = 0xff3333cc;  // ABGR: little-endian RGBA bytes as one uint32
function dot(i, colour) {
  var r = rows[i], w = canvas.width, s = w / 1000, cx = Math.round(r[C.x] * s), cy = Math.round(r[C.y] * s);
  for (var y = Math.max(0, cy - 1); y <= Math.min(canvas.height - 1, cy + 1); y++) {
    for (var x = Math.max(0, cx - 1); x <= Math.min(w - 1, cx + 1); x++) px[y * w + x] = colour;
  }
}
function paint() {
  if (!ctx) return;
  var i;
  if (!img) { img = ctx.createImageData(canvas.width, canvas.height); px = new Uint32Array(img.data.buffer); }
  px.fill(0xfffafafa);
  inView = new Uint8Array(n); for (i = 0; i < view.length; i++) inView[view[i]] = 1;
  for (i = 0; i < n; i++) { if (rows[i][C.x] !== null && !inView[i]) dot(i, rows[i][C.dead] ? RED : GREY); }
  for (i = 0; i < view.length; i++) { if (rows[view[i]][C.x] !== null) dot(view[i], rows[view[i]][C.dead] ? RED : BLUE); }
  ctx.putImageData(img, 0, 0);
}
function nearest(ev) {
  var b = canvas.getBoundingClientRect(), mx = (ev.clientX - b.left) / b.width * 1000, my = (ev.clientY - b.top) / b.height * 1000;
  var best = -1, bd = Infinity;
  for (var k = 0; k < view.length; k++) {
    var r = rows[view[k]]; if (r[C.x] === null) continue;
    var d = (r[C.x] - mx) * (r[C.x] - mx) + (r[C.y] - my) * (r[C.y] - my);
    if (d < bd) { bd = d; best = view[k]; }
  }
  return best;
}
if (ctx) {
  canvas.addEventListener('click', function (ev) {
    var i = nearest(ev); if (i >= 0 && rows[i][C.tile] >= 0) location.href = encodeURIComponent(key(i)) + '.html';
  });
  canvas.addEventListener('mousemove', function (ev) {
    var i = nearest(ev), m = document.getElementById('mapnote'); if (m && i >= 0) m.textContent = label(i);
  });
}
window.fvView = function () { return view.map(function (i) { return rows[i][C.ch]; }); };
var s = {}; location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
  var p = kv.split('='); if (p.length === 2) s[p[0]] = decodeURIComponent(p[1]); });
if (s.q) q.value = s.q;
if (s.sort && sortSel.querySelector('option[value="' + s.sort + '"]')) sortSel.value = s.sort;
if (s.dead && deadSel.querySelector('option[value="' + s.dead + '"]')) deadSel.value = s.dead;
q.addEventListener('input', update);
sortSel.addEventListener('change', update);
deadSel.addEventListener('change', update);
document.getElementById('vtools').addEventListener('submit', function (ev) { ev.preventDefault(); update(); });
window.addEventListener('scroll', draw, {passive: true});
window.addEventListener('resize', layout);
compute(); layout();
var c0 = s.c || (/^#c\d+$/.test(location.hash) ? location.hash.slice(2) : null);
if (c0 !== null && c0 !== undefined) scrollToCh(parseInt(c0, 10));
if (window.requestAnimationFrame) requestAnimationFrame(paint); else paint();
window.fvWarm = function () { haystack(); order('freq'); order('obj'); order('hf'); };
setTimeout(window.fvWarm, 100);  // once the first screen is up
})();
"""
