// Audit trail page: the entries of GET /v1/audit, oldest first, filtered by
// actor, action (exact, or a prefix ending in "."), subject (entity and id,
// matched by the server through the subject's keyed hash: the trail holds no
// id in clear) and time; paged with the server's cursor; the same selection
// exported as NDJSON (?format=ndjson) into a file the browser saves.

import {h, field, button, table, fmtTime, hashLink, hashOf, section, errorBox, clear} from './dom.js';
import * as api from './api.js';
import {go} from './subject.js';

const FILTERS = ['actor', 'action', 'entity', 'id', 'since', 'until'];

// toRFC3339 reads a datetime-local value as UTC.
function toRFC3339(v) {
  if (!v) return '';
  return v.length === 16 ? v + ':00Z' : v + 'Z';
}

function fromRFC3339(v) {
  return v ? v.replace(/Z$/, '').slice(0, 16) : '';
}

export async function render(main, params, rest, stale) {
  main.append(h('h1', null, 'Audit trail'));
  const f = {};
  for (const k of FILTERS) f[k] = params[k] || '';
  const actor = field('Actor', {name: 'actor', value: f.actor, autocomplete: 'off'}, 'A token name, "lifecycle", a caller id.');
  const action = field('Action', {name: 'action', value: f.action, autocomplete: 'off', list: 'audit-actions'}, 'Exact, or a prefix ending in "." such as wipe.');
  const entity = field('Subject entity', {name: 'entity', value: f.entity, autocomplete: 'off'});
  const id = field('Subject id', {name: 'id', value: f.id, autocomplete: 'off', spellcheck: 'false'}, 'Matched by its keyed hash.');
  const since = field('Since (UTC)', {name: 'since', type: 'datetime-local', value: fromRFC3339(f.since)});
  const until = field('Until (UTC)', {name: 'until', type: 'datetime-local', value: fromRFC3339(f.until)});
  const form = h('form', {class: 'inline', 'aria-label': 'Filter the audit trail'},
    actor.wrap, action.wrap, entity.wrap, id.wrap, since.wrap, until.wrap,
    h('datalist', {id: 'audit-actions'}, ['register.', 'evidence.', 'wipe.', 'deletion.', 'subject.'].map(v => h('option', {value: v}))),
    h('div', {class: 'field'}, h('button', {type: 'submit'}, 'Filter')));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    go(hashOf(['audit'], {
      actor: actor.input.value.trim(), action: action.input.value.trim(),
      entity: entity.input.value.trim(), id: id.input.value,
      since: toRFC3339(since.input.value), until: toRFC3339(until.input.value),
    }));
  });
  main.append(section('Filter', form));

  const query = {};
  for (const k of FILTERS) if (f[k]) query[k] = f[k];
  const exportOut = h('span', {id: 'export-out', 'aria-live': 'polite'});
  const exportBtn = button('Export this selection as NDJSON', async () => {
    exportBtn.disabled = true;
    clear(exportOut).append('Exporting…');
    try {
      const res = await api.call('GET', '/v1/audit', {query: {...query, format: 'ndjson'}, accept: 'application/x-ndjson', raw: true});
      const text = await res.text();
      const lines = text.split('\n').filter(Boolean).length;
      const url = URL.createObjectURL(new Blob([text], {type: 'application/x-ndjson'}));
      const name = 'gdprgate-audit-' + new Date().toISOString().replace(/[:.]/g, '-') + '.ndjson';
      clear(exportOut).append(h('a', {href: url, download: name, id: 'export-link', 'data-lines': String(lines)},
        'Save ' + name + ' (' + lines + ' entr' + (lines === 1 ? 'y' : 'ies') + ')'));
      exportOut.querySelector('a').focus();
    } catch (e) {
      clear(exportOut).append(errorBox(e, 'The export failed'));
    } finally {
      exportBtn.disabled = false;
    }
  }, {class: 'secondary', id: 'export'});

  let res;
  try {
    res = await api.call('GET', '/v1/audit', {query: {...query, after: params.after, limit: 100}});
  } catch (e) {
    main.append(errorBox(e, 'The audit trail could not be read'));
    return;
  }
  if (stale()) return;
  const r = res.data;
  const entries = r.entries || [];
  const rows = entries.map(e => ({
    attrs: {'data-id': e.id || ''},
    cells: [
      fmtTime(e.time),
      e.actor || '—',
      h('code', null, e.action),
      e.object || '—',
      e.subject ? h('code', {title: e.subject}, e.subject.slice(0, 12) + '…') : '—',
      e.before_version || e.after_version ? (e.before_version || 0) + ' → ' + (e.after_version || 0) : '—',
      e.detail && Object.keys(e.detail).length ? h('ul', null, Object.entries(e.detail).map(([k, v]) => h('li', null, k + ': ' + v))) : '—',
    ],
  }));
  const nav = h('p', {class: 'actions'});
  if (params.after) nav.append(hashLink(['audit'], query, 'First page'));
  if (!r.end && r.next) nav.append(hashLink(['audit'], {...query, after: r.next}, 'Next page'));
  const filtered = Object.keys(query).length > 0;
  main.append(section('Entries',
    h('p', null, entries.length + ' entr' + (entries.length === 1 ? 'y' : 'ies') + ' on this page, oldest first' +
      (filtered && r.scanned !== undefined ? ' (' + r.scanned + ' examined' + (r.end ? ', the trail is exhausted' : '') + ')' : '') + '.'),
    h('p', {class: 'actions'}, exportBtn, exportOut),
    entries.length ? table(null, ['Time', 'Actor', 'Action', 'Object', 'Subject (hash)', 'Versions', 'Detail'], rows, {id: 'audit'}) : h('p', null, 'No entry matches.'),
    nav));
}
