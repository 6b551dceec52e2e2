// Registers page: sensitivities, categories, purposes, legalisations (with
// their prepared/active/retired status), roles and rules, each listed from
// GET /v1/<register>. A record is edited as its JSON document: the impact of
// the change on the subjects gdprgate knows is previewed (PUT ?dry_run=true)
// before it is saved, and the save carries the version the editor read
// (If-Match), so a change made meanwhile in another tab or by another admin
// is a conflict shown to the user, never overwritten.

import {h, field, button, table, hashOf, section, errorBox, flash, clear} from './dom.js';
import * as api from './api.js';
import {confirmStep} from './confirm.js';

const KINDS = [
  {name: 'sensitivities', title: 'Sensitivities', key: 'id'},
  {name: 'categories', title: 'Categories', key: 'id'},
  {name: 'purposes', title: 'Purposes', key: 'id'},
  {name: 'legalisations', title: 'Legalisations', key: 'id'},
  {name: 'roles', title: 'Roles', key: 'name'},
  {name: 'rules', title: 'Rules', key: 'id'},
  {name: 'config', title: 'Configuration', single: true},
];

export async function render(main, params, rest) {
  const kind = KINDS.find(k => k.name === rest[0]) || KINDS[0];
  main.append(h('h1', null, 'Registers: ' + kind.title));
  main.append(h('nav', {class: 'sub-tabs', 'aria-label': 'Registers'}, h('ul', null, KINDS.map(k =>
    h('li', null, h('a', {href: hashOf(['registers', k.name]), 'aria-current': k === kind ? 'page' : false}, k.title))))));
  const slot = h('div', {id: 'editor-slot'});
  main.append(slot);
  if (kind.single) return renderConfig(main, slot, kind);
  let res;
  try {
    res = await api.call('GET', '/v1/' + kind.name);
  } catch (e) {
    main.append(errorBox(e, 'The register could not be read'));
    return;
  }
  const items = res.data.items || [];
  const version = api.version(res.etag);
  const cols = columns(items, kind);
  const rows = items.map(it => ({
    attrs: {'data-key': String(it[kind.key])},
    cells: cols.map(c => cell(c, it[c])).concat([
      h('span', {class: 'actions'},
        button('Edit…', () => edit(slot, kind, it, res.etag, false), {class: 'secondary', 'data-action': 'edit', 'aria-label': 'Edit ' + it[kind.key]}),
        button('Delete…', () => remove(slot, kind, it, res.etag), {class: 'secondary', 'data-action': 'delete', 'aria-label': 'Delete ' + it[kind.key]})),
    ]),
  }));
  const template = {...(items[0] || {[kind.key]: ''})};
  template[kind.key] = '';
  main.append(section(kind.title + ' (registers version ' + version + ')',
    h('p', {class: 'actions'}, button('New ' + kind.title.toLowerCase().replace(/ies$/, 'y').replace(/s$/, '') + '…', () => edit(slot, kind, template, res.etag, true), {class: 'secondary', id: 'register-new'})),
    items.length ? table(null, cols.concat(['Change']), rows, {id: 'register'}) : h('p', null, 'None.')));
}

// columns are the members the records have, the key first; nested values
// are shown as JSON.
function columns(items, kind) {
  const seen = [];
  for (const it of items) {
    for (const k of Object.keys(it)) if (!seen.includes(k)) seen.push(k);
  }
  return [kind.key].concat(seen.filter(k => k !== kind.key));
}

function cell(col, v) {
  if (v === undefined || v === null || v === '') return '—';
  if (col === 'status' && typeof v === 'string') return h('span', {class: 'badge lg-' + v}, v);
  if (typeof v === 'object') return h('code', null, JSON.stringify(v));
  return String(v);
}

// renderConfig shows the system configuration (one document) and edits it
// with the same editor.
async function renderConfig(main, slot, kind) {
  let res;
  try {
    res = await api.call('GET', '/v1/config');
  } catch (e) {
    main.append(errorBox(e, 'The configuration could not be read'));
    return;
  }
  const c = res.data;
  const facts = h('dl', {class: 'facts', id: 'config'});
  for (const [k, v] of Object.entries(c)) {
    facts.append(h('dt', null, k), h('dd', null, k === 'gdpr_enforced' && v === false ? h('span', {class: 'flag-on'}, 'false — the lifecycle is frozen, archived and expired data counts as active') : cell(k, v)));
  }
  main.append(section('Configuration (registers version ' + api.version(res.etag) + ')', facts,
    h('p', {class: 'actions'}, button('Edit…', () => edit(slot, kind, c, res.etag, false), {class: 'secondary', id: 'config-edit'}))));
}

// remove deletes one record after a confirmation; the server refuses (409
// in_use, naming them) while other records reference it.
function remove(slot, kind, item, etag) {
  const key = String(item[kind.key]);
  confirmStep(slot, {
    title: 'Delete ' + kind.name + '/' + key + '?',
    body: [h('p', null, 'The record is removed from the registers (the change is audited). A record still referenced by others is not deleted: the answer names them.')],
    label: 'Delete ' + key,
    danger: true,
    run: async () => {
      const res = await api.call('DELETE', '/v1/' + kind.name + '/' + api.seg(key), {etag});
      return 'Deleted ' + kind.name + '/' + key + ' (registers version ' + api.version(res.etag) + ').';
    },
    done: msg => {
      flash(msg, 'ok');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    },
  });
}

// edit opens the editor of one record (or of a new one) above the list.
function edit(slot, kind, item, etag, isNew) {
  let key = String(item[kind.key]);
  const back = document.activeElement;
  let version = etag;
  const heading = h('h2', {tabindex: '-1', id: 'editor-title'}, isNew ? 'New record of ' + kind.name : kind.single ? 'Edit the configuration' : 'Edit ' + kind.name + '/' + key);
  const ver = h('p', {class: 'muted', id: 'editor-version'});
  const showVersion = () => {
    ver.textContent = isNew ? 'Based on registers version ' + api.version(version) + '. Fill in the ' + kind.key + ' and the members; absent ones take their zero value.'
      : 'Editing registers version ' + api.version(version) + '. PUT replaces the whole record: every member must stay.';
  };
  showVersion();
  const doc = field('The record as JSON', {tag: 'textarea', name: 'doc', spellcheck: 'false', rows: '14'});
  doc.input.value = pretty(item);
  const out = h('div', {id: 'editor-out', 'aria-live': 'polite'});
  const close = () => {
    clear(slot);
    if (back instanceof HTMLElement && back.isConnected) back.focus();
  };
  const parse = () => {
    try {
      const v = JSON.parse(doc.input.value);
      doc.input.removeAttribute('aria-invalid');
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('the record must be a JSON object');
      delete v.status; // derived (legalisations); the server ignores it
      return v;
    } catch (e) {
      doc.input.setAttribute('aria-invalid', 'true');
      clear(out).append(h('div', {class: 'alert error', role: 'alert'}, 'Not valid JSON: ' + e.message + '. Nothing was sent.'));
      doc.input.focus();
      return null;
    }
  };
  const itemPath = () => kind.single ? '/v1/' + kind.name : '/v1/' + kind.name + '/' + api.seg(key);
  // A new record is POSTed to the register; an edit PUT to its own path.
  const target = body => {
    if (!isNew) return {method: 'PUT', path: itemPath()};
    key = String(body[kind.key] || '');
    return {method: 'POST', path: '/v1/' + kind.name};
  };
  const previewBtn = button('Preview the impact', async () => {
    const body = parse();
    if (!body) return;
    clear(out);
    try {
      const tg = target(body);
      const res = await api.call(tg.method, tg.path, {query: {dry_run: 'true'}, body, etag: version});
      out.append(previewBox(res.data.preview, res.data));
    } catch (e) {
      out.append(failure(e));
    }
  }, {class: 'secondary', id: 'editor-preview'});
  const save = async (confirm, confirmMember) => {
    const body = parse();
    if (!body) return;
    if (confirmMember) body.confirm = true;
    clear(out);
    try {
      const tg = target(body);
      const res = await api.call(tg.method, tg.path, {query: confirm ? {confirm: 'true'} : {}, body, etag: version});
      flash('Saved ' + (kind.single ? kind.name : kind.name + '/' + key) + ' (registers version ' + api.version(res.etag) + ').', 'ok');
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } catch (e) {
      if (e.status === 409 && e.data && e.data.error === 'confirmation_required') {
        const again = button('Save and create these deletions', () => save(true), {class: 'danger', id: 'editor-confirm'});
        out.append(h('div', {class: 'alert warn', role: 'alert'}, h('strong', null, 'Not saved: this change needs a confirmation'),
          h('p', null, e.data.message)), previewBox(e.data.preview), h('p', {class: 'actions'}, again));
        again.focus();
        return;
      }
      const fields = (e.data && e.data.errors) || [];
      if (e.status === 422 && fields.length && fields.every(fe => fe.field === 'confirm')) {
        // Turning gdpr_enforced off: the server wants "confirm": true.
        const again = button('Save and confirm', () => save(confirm, true), {class: 'danger', id: 'editor-confirm'});
        out.append(h('div', {class: 'alert warn', role: 'alert'}, h('strong', null, 'Not saved: this change needs a confirmation'),
          h('p', null, fields[0].reason), h('p', {class: 'actions'}, again)));
        again.focus();
        return;
      }
      out.append(failure(e));
    }
  };
  const saveBtn = button('Save', () => save(false), {id: 'editor-save'});
  const failure = e => {
    if (e.status !== 412) return errorBox(e, 'Not saved');
    // Someone saved the registers since this editor read them: keep what
    // the user typed, offer the current record.
    const mine = doc.input.value;
    const load = button('Load the current version', async () => {
      try {
        const cur = await api.call('GET', isNew ? '/v1/' + kind.name : itemPath());
        if (isNew) {
          // A new record: only the version moves on; the text stays.
          version = cur.etag;
          showVersion();
          clear(out).append(h('p', {class: 'alert'}, 'Now based on version ' + api.version(cur.etag) + '. Save again if the record still makes sense.'));
          doc.input.focus();
          return;
        }
        version = cur.etag;
        doc.input.value = pretty(cur.data);
        showVersion();
        clear(out).append(h('p', {class: 'alert'}, 'Loaded version ' + api.version(cur.etag) + '. Your edit is below; apply it again if it still holds.'),
          h('details', {open: true}, h('summary', null, 'Your edit (not saved)'), h('pre', {id: 'editor-mine'}, mine)));
        doc.input.focus();
      } catch (e2) {
        clear(out).append(errorBox(e2, 'The current version could not be read'));
      }
    }, {id: 'editor-load'});
    const box = h('div', {class: 'alert error', role: 'alert', id: 'editor-conflict'},
      h('strong', null, 'Conflict: not saved'),
      h('p', null, 'The registers changed since you opened this editor (you edited version ' + api.version(version) + '), in another tab or by another admin. Nothing was overwritten.'),
      h('p', {class: 'actions'}, load));
    setTimeout(() => load.focus(), 0);
    return box;
  };
  const panel = h('section', {class: 'panel editor', role: 'region', 'aria-labelledby': 'editor-title'},
    heading, ver, doc.wrap,
    h('p', {class: 'actions'}, previewBtn, saveBtn, button('Close', close, {class: 'secondary', id: 'editor-close'})), out);
  panel.addEventListener('keydown', ev => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      close();
    }
  });
  clear(slot).append(panel);
  heading.focus();
}

function pretty(v) {
  const c = {...v};
  delete c.status;
  return JSON.stringify(c, null, 2);
}

// previewBox shows a ChangePreview: the subjects that change state, per
// sensitivity and move, and the deletion work the change creates.
function previewBox(p, answer) {
  if (!p) return h('p', null, 'No preview.');
  const d = p.deletions || {};
  const moves = [];
  for (const [sens, byMove] of Object.entries(p.bits || {})) {
    for (const [move, n] of Object.entries(byMove)) moves.push({cells: [sens, move.replace('→', ' → '), String(n)]});
  }
  return h('div', {class: 'panel', id: 'editor-impact'},
    h('h3', null, 'Impact on the subjects gdprgate knows'),
    h('p', null, p.subjects + ' subject' + (p.subjects === 1 ? '' : 's') + ' scanned; ' + p.changed + ' would change state' + (p.partial ? ' (at least: the scan stopped early)' : '') + '.'),
    moves.length ? table(null, ['Sensitivity', 'Move', 'Subjects'], moves, {id: 'impact-moves'}) : h('p', {class: 'muted'}, 'No bit moves.'),
    h('p', null, 'Deletions it creates: ' + (d.total || 0) + ' (' + (d.wipes || 0) + ' wipes, ' + (d.erasures || 0) + ' erasures)' +
      (d.not_executable ? '; ' + d.not_executable + ' obliviated bits with no deletion step (reported, not executed)' : '') + '.'),
    answer && answer.needs_confirm ? h('p', {class: 'alert warn'}, 'More than lifecycle.max_deletions_per_change (' + answer.max_deletions_per_change + '): saving it needs a confirmation.') : null,
    h('p', {class: 'muted'}, 'A dry run: nothing was changed.'));
}
