// Due report page: the subjects with a lifecycle transition or an evidence
// purge within a window (GET /v1/reports/due?within=), the weekly "records
// due for deletion": per subject, each bit's next moves, whether a deletion
// step is configured for an obliviation, and the evidence records whose
// retention ends.

import {h, field, table, fmtTime, relative, hashLink, hashOf, section, errorBox, stateBadge} from './dom.js';
import * as api from './api.js';
import {go} from './subject.js';

const WINDOWS = [
  {value: '1d', label: 'the next day'},
  {value: '7d', label: 'the next 7 days'},
  {value: '30d', label: 'the next 30 days'},
  {value: '90d', label: 'the next 90 days'},
  {value: '366d', label: 'the next year'},
];

export async function render(main, params, rest, stale) {
  const within = WINDOWS.some(w => w.value === params.within) ? params.within : '7d';
  main.append(h('h1', null, 'Due report'));
  const win = field('Due within', {tag: 'select', name: 'within', options: WINDOWS.map(w => ({value: w.value, label: w.label, selected: w.value === within}))});
  const form = h('form', {class: 'inline', 'aria-label': 'Choose the window'}, win.wrap,
    h('div', {class: 'field'}, h('button', {type: 'submit', class: 'secondary'}, 'Show')));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    go(hashOf(['due'], {within: win.input.value}));
  });
  main.append(section('Window', form));

  let res;
  try {
    res = await api.call('GET', '/v1/reports/due', {query: {within, limit: 1000}});
  } catch (e) {
    main.append(errorBox(e, 'The due report could not be read'));
    return;
  }
  if (stale()) return;
  const r = res.data;
  const subjects = r.subjects || [];
  const facts = h('dl', {class: 'facts'});
  const fact = (k, ...v) => facts.append(h('dt', null, k), h('dd', null, ...v));
  fact('From', fmtTime(r.at));
  fact('Until', fmtTime(r.until));
  fact('Subjects', String(subjects.length) + (r.truncated ? ' (the first ones only: the report is truncated)' : ''));
  fact('Lifecycle deletions', r.deletions === 'hold' ? 'held for approval' : 'executed without approval');
  if (!r.gdpr_enforced) fact('GDPR enforcement', h('span', {class: 'flag-on'}, 'off: the lifecycle is frozen, nothing moves'));
  const pending = subjects.filter(s => s.transitions.some(t => t.pending)).length;
  fact('Obliviated, deletion not created yet', String(pending));
  const summary = [facts];
  if (api.can('wipe')) summary.push(h('p', null, hashLink(['deletions'], {state: 'held'}, 'Deletions held for approval')));
  main.append(section('Summary', ...summary));

  if (!subjects.length) {
    main.append(section('Subjects', h('p', null, 'Nothing is due in this window.')));
    return;
  }
  const rows = subjects.map(s => ({
    attrs: {'data-subject': s.subject.entity + '/' + s.subject.id},
    cells: [
      hashLink(['subject'], {entity: s.subject.entity, id: s.subject.id}, s.subject.entity + '/' + s.subject.id),
      h('ul', {class: 'moves'}, s.transitions.map(t => h('li', null,
        h('strong', null, t.sensitivity), ': ',
        t.from === t.to ? [stateBadge(t.to), ' since ', fmtTime(t.at)] : [stateBadge(t.from), ' → ', stateBadge(t.to), ' at ', fmtTime(t.at), ' (', relative(t.at, r.at), ')'],
        t.pending ? h('span', {class: 'flag-on'}, ' — deletion not created yet') : null,
        t.executable === false ? h('span', {class: 'flag-on'}, ' — no deletion step configured: reported, not executed') : null))),
      s.evidence_purges && s.evidence_purges.length
        ? h('ul', null, s.evidence_purges.map(e => h('li', null, e.evidence_id, ' (', e.legalisation_id, ') at ', fmtTime(e.at))))
        : '—',
    ],
  }));
  main.append(section('Subjects', table('Due within ' + within + ', earliest first', ['Subject', 'Transitions', 'Evidence purged'], rows, {id: 'due'})));
}
