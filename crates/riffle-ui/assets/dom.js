// Building the page: every element is made with createElement / createElementNS and
// every piece of stored text goes in through textContent or an attribute, so no data
// is ever parsed as markup. Also: formatting of times, durations and sizes.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h('a', {href: '#/runs'}, 'Runs'). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** An SVG element. */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** A link to a page of the dashboard; path segments are encoded. */
function link(text, ...segments) {
  return h('a', { href: route(...segments) }, text);
}

function route(...segments) {
  let query = '';
  if (segments.length && typeof segments[segments.length - 1] === 'object') {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(segments.pop())) if (v !== null && v !== undefined && v !== '') params.set(k, v);
    const text = params.toString();
    if (text) query = '?' + text;
  }
  return '#/' + segments.map((s) => encodeURIComponent(String(s))).join('/') + query;
}

function pad(n, width = 2) { return String(n).padStart(width, '0'); }

/** A time in the viewer's zone: 2024-03-01 14:05:09. */
function fmtTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return i === 0 ? `${n} B` : `${x.toFixed(1)} ${units[i]}`;
}

/** A run id for reading: time-ordered ids share their first digits, so show both ends. */
function shortId(id) {
  const s = String(id || '');
  return s.length > 13 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s;
}

function badge(status) { return h('span', { class: `badge status-${status}` }, String(status).replace('_', ' ')); }

/** A two-column table of label / value rows (values may be nodes). */
function facts(rows) {
  return h('table', { class: 'facts' },
    h('tbody', {}, rows.filter(Boolean).map(([label, value]) => h('tr', {}, h('th', {}, label), h('td', {}, value)))));
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
