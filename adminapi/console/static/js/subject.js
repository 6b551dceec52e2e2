// Subject page: a subject's computed state per sensitivity bit, with its
// coverage colour, the evidence behind each bit and a timeline of each bit's
// transitions (GET /v1/subjects/{entity}/{id}).

import {h, field, table, fmtTime, relative, coverageBadge, stateBadge, hashLink, hashOf, section, errorBox} from './dom.js';
import * as api from './api.js';
import {drawTimeline, transitionsTable} from './timeline.js';

export async function render(main, params, rest, stale) {
  const entity = params.entity || 'contact';
  const id = params.id || '';
  const looked = !!params.id;
  main.append(h('h1', null, looked ? 'Subject ' + entity + '/' + id : 'Subject'));

  const ent = field('Entity', {name: 'entity', value: entity, list: 'entities', autocomplete: 'off', required: true});
  const sid = field('Id', {name: 'id', value: id, autocomplete: 'off', spellcheck: 'false', required: true});
  const form = h('form', {class: 'inline', 'aria-label': 'Look up a subject'},
    ent.wrap, sid.wrap,
    h('datalist', {id: 'entities'}, h('option', {value: 'contact'}), h('option', {value: 'phone_number'})),
    h('div', {class: 'field'}, h('button', {type: 'submit'}, 'Look up')));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const e = ent.input.value.trim();
    const i = sid.input.value;
    if (!e || !i) {
      (e ? sid.input : ent.input).focus();
      return;
    }
    go(hashOf(['subject'], {entity: e, id: i}));
  });
  main.append(section('Look up', form));
  if (!looked) return sid.input;

  let res;
  try {
    res = await api.call('GET', '/v1/subjects/' + api.seg(entity) + '/' + api.seg(id));
  } catch (e) {
    main.append(errorBox(e, 'The subject could not be read'));
    return;
  }
  if (stale()) return;
  renderState(main, res.data);
}

// go navigates to a hash, re-rendering when it is the current one.
export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

function renderState(main, v) {
  const now = v.at;
  const facts = h('dl', {class: 'facts'});
  const fact = (k, ...val) => facts.append(h('dt', null, k), h('dd', null, ...val));
  fact('Known', v.known ? 'yes' : 'no — gdprgate has no record of it; evaluated as if first seen now, and nothing was stored');
  fact('Coverage', coverageBadge(v.coverage));
  fact('Data origin', v.origin ? fmtTime(v.origin) + ' (' + relative(v.origin, now) + ')' : '—');
  if (v.parent) fact('Parent', hashLink(['subject'], {entity: v.parent.entity, id: v.parent.id}, v.parent.entity + '/' + v.parent.id), ' (evidence inherited from it)');
  fact('Restricted', v.restricted ? h('span', {class: 'flag-on'}, 'yes — hidden by wipe ', v.restriction || '') : 'no');
  fact('Next transition', v.next_transition ? fmtTime(v.next_transition) + ' (' + relative(v.next_transition, now) + ')' : 'none');
  fact('Evaluated at', fmtTime(now) + ', registers version ' + v.registers_version + (v.stale ? ' (from a cached state: the store did not answer)' : ''));
  if (v.lifecycle_frozen) {
    fact('Lifecycle', h('span', {class: 'flag-on'}, 'frozen — gdpr_enforced is off: nothing is archived, expired or obliviated'));
  }
  main.append(section('State', facts, links(v)));

  const rows = v.bits.map(b => ({
    cells: [
      String(b.bit),
      b.sensitivity,
      stateBadge(b.state),
      b.since ? fmtTime(b.since) : 'the start',
      coverageBadge(b.coverage),
      b.next_transition ? [b.next_transition.from + ' → ' + b.next_transition.to + ' at ' + fmtTime(b.next_transition.at), h('br'), h('span', {class: 'muted'}, relative(b.next_transition.at, now))] : 'none',
      b.evidence.length ? h('ul', null, b.evidence.map(e => h('li', null,
        e.id, ' (', e.legalisation_id, e.inherited ? ', inherited' : '', '): ', e.state, e.counts ? '' : ' — not in force'))) : 'none: the sensitivity\'s defaults apply',
    ],
  }));
  main.append(section('Sensitivity bits',
    table(null, ['Bit', 'Sensitivity', 'State', 'Since', 'Coverage', 'Next transition', 'Evidence behind it'], rows, {id: 'bits'})));

  const tl = h('div', {class: 'timeline', id: 'timeline'});
  main.append(section('Timeline',
    h('p', {class: 'muted'}, 'Each bit from the data origin with today\'s registers and evidence: active → archived → expired → obliviated. "now" is marked; each bit\'s next transition is a yellow diamond.'),
    tl,
    h('details', null, h('summary', null, 'Transitions as a table'), transitionsTable(v))));
  drawTimeline(tl, v);

  const ev = (v.evidence || []).map(e => ({e, inherited: false})).concat((v.inherited_evidence || []).map(e => ({e, inherited: true})));
  const idle = new Map((v.idle_evidence || []).map(x => [(x.inherited ? 'i:' : 'o:') + x.id, x.reason]));
  const covers = new Map();
  for (const b of v.bits) {
    for (const e of b.evidence) {
      const k = (e.inherited ? 'i:' : 'o:') + e.id;
      covers.set(k, (covers.get(k) || []).concat(b.sensitivity));
    }
  }
  main.append(section('Evidence', ev.length === 0 ? h('p', null, 'No evidence is recorded for this subject.') :
    table(null, ['Id', 'Legalisation', 'Origin', 'Recorded', 'Renewed', 'Evidence key', 'Covers now'], ev.map(({e, inherited}) => {
      const k = (inherited ? 'i:' : 'o:') + e.id;
      return {cells: [
        [e.id, inherited ? h('span', {class: 'muted'}, ' (inherited from the parent)') : null],
        e.legalisation_id,
        fmtTime(e.origin),
        [fmtTime(e.created_at), e.created_by ? ' by ' + e.created_by : ''],
        e.renewed_at ? fmtTime(e.renewed_at) : '—',
        e.evidence_key || '—',
        covers.has(k) ? covers.get(k).join(', ') : (idle.get(k) ? 'nothing: ' + idle.get(k) : 'nothing'),
      ]};
    }), {id: 'evidence'})));
}

function links(v) {
  const out = h('p', {class: 'actions'});
  if (api.can('audit_read')) out.append(hashLink(['audit'], {entity: v.subject.entity, id: v.subject.id}, 'Audit trail of this subject'));
  if (api.can('wipe')) out.append(hashLink(['deletions'], {wipe_entity: v.subject.entity, wipe_id: v.subject.id}, 'Wipe this subject (WipeCtcAll)…'));
  return out;
}
