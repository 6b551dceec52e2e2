// DOM helpers. Every string from the API is put into the page as text
// (text nodes, textContent, setAttribute of a known-safe attribute), never
// parsed as markup: subject ids, register names and audit details are
// strings an attacker may have chosen. The page's Content-Security-Policy
// requires Trusted Types, so an HTML sink would throw anyway.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Attributes that may carry a URL or script are refused outright, except
// href, which is checked (only same-document "#..." links and "blob:").
const FORBIDDEN_ATTR = /^(on|formaction$|action$|src$|srcdoc$|xlink:href$)/i;

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      continue;
    }
    if (k === 'text') {
      el.textContent = String(v);
      continue;
    }
    if (FORBIDDEN_ATTR.test(k)) throw new Error('refused attribute ' + k);
    if (k === 'href' && !/^(#|blob:)/.test(String(v))) throw new Error('refused link target');
    el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// h builds an HTML element: h('p', {class: 'x'}, 'text', child...).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// hashLink is a link inside the console: route and query parameters are
// encoded, so an id can never change the route.
export function hashLink(route, params, ...children) {
  return h('a', {href: hashOf(route, params)}, ...children);
}

export function hashOf(route, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const qs = q.toString();
  return '#/' + route.map(encodeURIComponent).join('/') + (qs ? '?' + qs : '');
}

let fieldSeq = 0;

// field is a labelled input: field('Id', {name: 'id'}) → {wrap, input}.
export function field(label, attrs, hint) {
  const id = attrs.id || 'f' + (++fieldSeq);
  const tag = attrs.tag || 'input';
  const a = {...attrs, id};
  delete a.tag;
  let hintEl = null;
  if (hint) {
    hintEl = h('span', {class: 'hint', id: id + '-hint'}, hint);
    a['aria-describedby'] = id + '-hint';
  }
  const input = tag === 'select' ? h('select', a, ...(attrs.options || []).map(o => h('option', {value: o.value, selected: o.selected}, o.label)))
    : h(tag, a);
  if (tag === 'select') input.removeAttribute('options');
  const wrap = h('div', {class: 'field'}, h('label', {for: id}, label), input, hintEl);
  return {wrap, input};
}

// checkbox is a labelled checkbox (label after the box).
export function checkbox(label, attrs) {
  const id = attrs.id || 'f' + (++fieldSeq);
  const input = h('input', {...attrs, id, type: 'checkbox'});
  return {wrap: h('div', {class: 'check'}, input, h('label', {for: id}, label)), input};
}

export function button(label, onClick, attrs) {
  return h('button', {type: 'button', ...(attrs || {}), on: {click: onClick}}, label);
}

// table builds a responsive table: on narrow screens each row becomes a
// card and every cell shows its column's name (data-label).
export function table(caption, columns, rows, attrs) {
  const head = h('thead', null, h('tr', null, columns.map(c => h('th', {scope: 'col'}, c))));
  const body = h('tbody', null, rows.map(r => {
    const tr = h('tr', r.attrs || null);
    r.cells.forEach((cell, i) => tr.append(h('td', {'data-label': columns[i]}, cell)));
    return tr;
  }));
  return h('div', {class: 'table-wrap'}, h('table', {class: 'cards', ...(attrs || {})}, caption ? h('caption', null, caption) : null, head, body));
}

// UTC times, as the API gives them.
export function fmtTime(v) {
  if (!v) return '—';
  const d = new Date(v);
  if (isNaN(d)) return String(v);
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

export function fmtDate(v) {
  if (!v) return '—';
  const d = new Date(v);
  return isNaN(d) ? String(v) : d.toISOString().slice(0, 10);
}

// relative: "in 230 days", "135 days ago".
export function relative(v, now) {
  if (!v) return '';
  const ms = new Date(v) - (now ? new Date(now) : new Date());
  const days = Math.round(Math.abs(ms) / 86400000);
  const hours = Math.round(Math.abs(ms) / 3600000);
  const span = days >= 2 ? days + ' days' : hours >= 1 ? hours + ' h' : 'minutes';
  return ms >= 0 ? 'in ' + span : span + ' ago';
}

const COVERAGE_TEXT = {
  red: 'red — no evidence in force',
  blue: 'blue — explicit evidence',
  green: 'green — inherited evidence',
};

// coverageBadge shows a coverage colour with its name and meaning: the
// colour is never the only signal.
export function coverageBadge(c) {
  return h('span', {class: 'badge cov-' + (COVERAGE_TEXT[c] ? c : 'unknown')},
    h('span', {class: 'swatch', 'aria-hidden': 'true'}), COVERAGE_TEXT[c] || String(c));
}

const STATE_MARK = {active: '●', archived: '◐', expired: '○', obliviated: '✕'};

export function stateBadge(st) {
  return h('span', {class: 'badge st-' + (STATE_MARK[st] ? st : 'unknown')},
    h('span', {'aria-hidden': 'true'}, (STATE_MARK[st] || '?') + ' '), String(st));
}

// flash keeps a message for the next page rendered (a navigation clears
// the live region first).
let pending = null;

export function flash(msg, kind) {
  pending = {msg, kind};
}

export function takeFlash() {
  const p = pending;
  pending = null;
  return p || {msg: '', kind: undefined};
}

// announce puts a message in the page's live region.
export function announce(msg, kind) {
  const el = document.getElementById('status');
  if (!el) return;
  el.className = 'status ' + (kind || 'info');
  el.textContent = msg;
}

// errorBox renders an API error: its code, message and field errors.
export function errorBox(err, title) {
  const box = h('div', {class: 'alert error', role: 'alert'},
    h('strong', null, title || 'The request was refused'),
    h('p', null, errorText(err)));
  if (err && err.data && Array.isArray(err.data.errors) && err.data.errors.length) {
    box.append(h('ul', null, err.data.errors.map(fe => h('li', null, h('code', null, fe.field), ': ', fe.reason))));
  }
  if (err && err.data && Array.isArray(err.data.used_by)) {
    box.append(h('p', null, 'Still referenced by:'), h('ul', null, err.data.used_by.map(u => h('li', null, u))));
  }
  return box;
}

export function errorText(err) {
  if (!err) return 'unknown error';
  if (err.data && err.data.message) return err.status + ' ' + (err.data.error || '') + ': ' + err.data.message;
  return err.message || String(err);
}

// clear empties a node.
export function clear(el) {
  el.replaceChildren();
  return el;
}

export function section(title, ...children) {
  return h('section', {class: 'panel'}, h('h2', null, title), ...children);
}
