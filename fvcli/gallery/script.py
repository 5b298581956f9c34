"""gallery.js: the only script of the gallery, for what HTML alone cannot do.

Plain JavaScript, shipped as OUT/gallery.js (written by the finalizer; no build step, no CDN, nothing fetched):
- every page: keyboard navigation -- <- / -> follow the page's rel="prev" / rel="next" link (units of a layer,
  layers of the model), ^ follows rel="up" (unit -> layer -> model);
- a layer page: sort the grid by channel, final objective or HF fraction (data-* attributes on each cell), hide or
  show only dead units, jump to a channel by number (scrolls to #cN, the cell's permalink, and marks it). The
  choice is kept in the URL's hash (#sort=score&dead=hide&c=12), so a sorted view is a permalink too.
Without the script every page still works: links, lazy images and #cN anchors are HTML.
"""
from __future__ import annotations

JS = r"""(function () {
'use strict';
function go(rel) { var a = document.querySelector('a[rel="' + rel + '"]'); if (a) { location.href = a.href; } }
document.addEventListener('keydown', function (ev) {
  var t = ev.target && ev.target.tagName;
  if (t === 'INPUT' || t === 'SELECT' || t === 'TEXTAREA' || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  if (ev.key === 'ArrowLeft') { go('prev'); } else if (ev.key === 'ArrowRight') { go('next'); }
  else if (ev.key === 'ArrowUp') { go('up'); } else { return; }
  ev.preventDefault();
});
var grid = document.getElementById('units');
if (!grid) return;
var sortSel = document.getElementById('sort'), deadSel = document.getElementById('dead');
var jump = document.getElementById('jump'), note = document.getElementById('note');
var cells = Array.prototype.slice.call(grid.children);
function num(el, k) { var v = parseFloat(el.getAttribute('data-' + k)); return isNaN(v) ? -Infinity : v; }
function state() {
  var s = {}; location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
    var p = kv.split('='); if (p.length === 2) s[p[0]] = decodeURIComponent(p[1]); });
  return s;
}
function setHash(extra) {
  var h = 'sort=' + sortSel.value + '&dead=' + deadSel.value + (extra || '');
  history.replaceState(null, '', '#' + h);
}
function apply() {
  var k = sortSel.value, sorted = cells.slice();
  if (k === 'channel') { sorted.sort(function (a, b) { return num(a, 'ch') - num(b, 'ch'); }); }
  else { sorted.sort(function (a, b) { return (num(b, k) - num(a, k)) || (num(a, 'ch') - num(b, 'ch')); }); }
  var frag = document.createDocumentFragment(), shown = 0;
  sorted.forEach(function (c) {
    var dead = c.getAttribute('data-dead') === '1';
    var hide = (deadSel.value === 'hide' && dead) || (deadSel.value === 'only' && !dead);
    c.hidden = hide; if (!hide) shown++; frag.appendChild(c);
  });
  grid.appendChild(frag);
  grid.setAttribute('data-order', sorted.map(function (c) { return c.getAttribute('data-ch'); }).join(','));
  if (note) note.textContent = shown + ' shown';
}
function jumpTo(ch) {
  var el = document.getElementById('c' + ch);
  if (note) note.textContent = el ? 'channel ' + ch : 'no channel ' + ch + ' on this page';
  if (!el) return false;
  cells.forEach(function (c) { c.classList.remove('hit'); });
  el.hidden = false; el.classList.add('hit'); el.scrollIntoView({block: 'center'});
  setHash('&c=' + ch); return true;
}
var s = state();
if (s.sort && sortSel.querySelector('option[value="' + s.sort + '"]')) sortSel.value = s.sort;
if (s.dead && deadSel.querySelector('option[value="' + s.dead + '"]')) deadSel.value = s.dead;
sortSel.addEventListener('change', function () { apply(); setHash(); });
deadSel.addEventListener('change', function () { apply(); setHash(); });
jump.addEventListener('submit', function (ev) { ev.preventDefault(); jumpTo(parseInt(jump.elements.c.value, 10)); });
apply();
var c0 = s.c || (/^#c\d+$/.test(location.hash) ? location.hash.slice(2) : null);
if (c0 !== null && c0 !== undefined) jumpTo(parseInt(c0, 10));
})();
"""
