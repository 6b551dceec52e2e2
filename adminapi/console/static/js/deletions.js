// Deletions and wipes page: lifecycle deletions held for approval (each one
// previewed as the backend calls it would make, approved or rejected after a
// confirmation step), the deletion queue with each step's progress and
// cancel, a WipeCtcAll request previewed by its dry run before it is
// confirmed, and the suspend flags. Every action is one admin API call with
// the signed-in token (GET/POST /v1/deletions…, POST/DELETE /v1/wipes,
// PATCH /v1/config).

import {h, field, checkbox, button, table, fmtTime, hashLink, hashOf, section, errorBox, flash, clear} from './dom.js';
import * as api from './api.js';
import {confirmStep} from './confirm.js';
import {go} from './subject.js';

const STATES = ['held', 'queued', 'running', 'suspended', 'failed', 'done', 'rejected', 'not_executable', 'cancelled'];
const KINDS = ['wipe', 'erasure', 'purge'];

const KIND_TEXT = {
  wipe: 'the whole subject (WipeCtcAll)',
  erasure: 'some sensitivities',
  purge: 'evidence records',
};

export async function render(main, params, rest, stale) {
  const state = STATES.includes(params.state) ? params.state : 'held';
  const kind = KINDS.includes(params.kind) ? params.kind : '';
  main.append(h('h1', null, 'Deletions and wipes'));
  // The confirmation steps open here, above what they act on.
  const slot = h('div', {id: 'confirm-slot'});
  main.append(slot);

  const wipeSec = wipeSection(slot, params);
  const wantsWipe = !!params.wipe_id;
  if (wantsWipe) main.append(wipeSec.section);

  const filter = filterForm(state, kind);
  const list = h('div', {id: 'deletion-list', 'aria-busy': 'true'});
  main.append(section('Deletion work', filter, list));
  if (!wantsWipe) main.append(wipeSec.section);
  const flags = h('div');
  if (api.can('edit_items')) main.append(section('Suspend flags and lifecycle', flags));

  const loads = [loadList(list, slot, state, kind, stale)];
  if (api.can('edit_items')) loads.push(loadFlags(flags, stale));
  await Promise.all(loads);
  return wantsWipe ? wipeSec.focus : undefined;
}

function filterForm(state, kind) {
  const st = field('State', {tag: 'select', name: 'state', options: STATES.map(s => ({value: s, label: s.replace('_', ' '), selected: s === state}))});
  const kd = field('Kind', {tag: 'select', name: 'kind', options: [{value: '', label: 'any', selected: !kind}].concat(KINDS.map(k => ({value: k, label: k, selected: k === kind})))});
  const form = h('form', {class: 'inline', 'aria-label': 'Filter the deletion work'}, st.wrap, kd.wrap,
    h('div', {class: 'field'}, h('button', {type: 'submit', class: 'secondary'}, 'Show')));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    go(hashOf(['deletions'], {state: st.input.value, kind: kd.input.value}));
  });
  return form;
}

// reload renders the page again, with a message for its live region.
function reload(message, kind) {
  if (message) flash(message, kind || 'ok');
  window.dispatchEvent(new HashChangeEvent('hashchange'));
}

function subjectLink(ref) {
  return hashLink(['subject'], {entity: ref.entity, id: ref.id}, ref.entity + '/' + ref.id);
}

// whatItDeletes says in words what a deletion removes.
function whatItDeletes(d) {
  const k = d.kind || 'wipe';
  if (k === 'erasure' && d.sensitivities && d.sensitivities.length) return 'the sensitivities ' + d.sensitivities.join(', ');
  return KIND_TEXT[k] || k;
}

// stepList previews the backend calls of a deletion, with their progress.
function stepList(steps, withStatus) {
  if (!steps || !steps.length) return h('p', {class: 'muted'}, 'No backend call is configured for it.');
  return h('ol', {class: 'steps'}, steps.map(st => h('li', null,
    h('code', null, st.method + ' ' + st.path),
    st.body ? [' body ', h('code', null, st.body)] : null,
    st.issue ? h('span', {class: 'muted'}, ' (issues: held while suspend_wipe_issue is set)') : null,
    withStatus ? [' — ', h('span', {class: 'step-' + st.status}, st.status),
      st.attempts ? ', ' + st.attempts + ' attempt' + (st.attempts > 1 ? 's' : '') : '',
      st.last_error ? [', last error: ', h('span', {class: 'muted'}, st.last_error)] : ''] : null)));
}

function preview(d) {
  const n = (d.steps || []).length;
  return h('details', {class: 'preview'}, h('summary', null, 'Preview: ' + n + ' backend call' + (n === 1 ? '' : 's')), stepList(d.steps, false));
}

async function loadList(list, slot, state, kind, stale) {
  let res;
  try {
    res = await api.call('GET', '/v1/deletions', {query: {state, kind, limit: 500}});
  } catch (e) {
    list.setAttribute('aria-busy', 'false');
    list.append(errorBox(e, 'The deletion work could not be read'));
    return;
  }
  if (stale()) return;
  list.setAttribute('aria-busy', 'false');
  const ds = res.data.deletions || [];
  if (state === 'held') renderHeld(list, slot, ds, kind);
  else renderQueue(list, slot, ds, state);
}

function renderHeld(list, slot, ds, kind) {
  // Cascaded wipes are decided with the wipe they belong to.
  const top = ds.filter(d => !d.parent);
  const children = new Map();
  for (const d of ds.filter(d => d.parent)) children.set(d.parent, (children.get(d.parent) || []).concat(d));
  list.append(h('p', null, top.length === 0 ? 'No deletion is held for approval.' :
    top.length + ' deletion' + (top.length === 1 ? ' is' : 's are') + ' held for approval' + (kind ? ' (' + kind + ')' : '') +
    '. Approving one queues its backend calls; rejecting one drops it (the data stays hidden by the lifecycle).'));
  if (top.length === 0) return;
  const boxes = [];
  const rows = top.map(d => {
    const cb = checkbox('Select ' + d.id, {name: 'select', value: d.id, class: 'select'});
    cb.wrap.classList.add('select-only');
    boxes.push({d, input: cb.input});
    const kids = children.get(d.id) || [];
    return {
      attrs: {'data-id': d.id},
      cells: [
        cb.wrap,
        [h('code', null, d.id), h('br'), d.kind || 'wipe'],
        subjectLink(d.subject),
        [whatItDeletes(d), kids.length ? [h('br'), h('span', {class: 'muted'}, 'with ' + kids.length + ' cascaded wipe' + (kids.length === 1 ? '' : 's') + ': '), kids.map(k => k.subject.entity + '/' + k.subject.id).join(', ')] : null],
        [d.held_for === 'mass_deletion_guard' ? 'the mass-deletion guard' : 'approval', h('br'), h('span', {class: 'muted'}, (d.reason || 'request') + (d.requested_by ? ', by ' + d.requested_by : ''))],
        fmtTime(d.created_at),
        [preview(d), h('p', {class: 'actions'},
          button('Approve…', () => decide(slot, [d], true, children), {'data-action': 'approve'}),
          button('Reject…', () => decide(slot, [d], false, children), {class: 'secondary', 'data-action': 'reject'}))],
      ],
    };
  });
  const selected = () => boxes.filter(b => b.input.checked).map(b => b.d);
  const none = h('span', {class: 'form-error', 'aria-live': 'polite'});
  const bulk = (approve) => () => {
    const sel = selected();
    if (!sel.length) {
      none.textContent = 'Select deletions first.';
      return;
    }
    none.textContent = '';
    decide(slot, sel, approve, children);
  };
  list.append(h('p', {class: 'actions'},
    button('Approve selected…', bulk(true), {id: 'approve-selected'}),
    button('Reject selected…', bulk(false), {class: 'secondary', id: 'reject-selected'}), none));
  list.append(table('Held deletions, oldest first', ['Select', 'Deletion', 'Subject', 'Deletes', 'Held for', 'Created', 'Preview and decision'], rows, {id: 'held'}));
}

// decideURL is the decision endpoint for one deletion or several.
function decideURL(ds, approve) {
  return ds.length === 1
    ? '/v1/deletions/' + api.seg(ds[0].id) + '/' + (approve ? 'approve' : 'reject')
    : '/v1/deletions:' + (approve ? 'approve' : 'reject');
}

function decideBody(ds, extra) {
  return ds.length === 1 ? {...extra} : {...extra, ids: ds.map(d => d.id)};
}

// decide opens the confirmation of approving or rejecting deletions. Its
// content is the server's own preview of the decision (?dry_run=true): the
// records it would decide (cascaded wipes included) with their backend
// calls, and what the mass-deletion guard would count.
async function decide(slot, ds, approve, children) {
  const verb = approve ? 'Approve' : 'Reject';
  const n = ds.length;
  let pv = null;
  let pvErr = null;
  try {
    pv = (await api.call('POST', decideURL(ds, approve), {query: {dry_run: 'true'}, body: decideBody(ds, {})})).data;
  } catch (e) {
    pvErr = e;
  }
  const shown = pv ? pv.deletions : ds;
  const body = [
    h('p', null, approve
      ? 'These backend calls will be queued and sent by the wipe worker. Data deleted in the backend cannot be restored.'
      : 'These deletions will not run. The data stays hidden as the lifecycle says; the sweeper does not create them again.'),
    h('ul', {class: 'decide-list', id: 'decide-list'}, shown.map(d => h('li', null,
      h('code', null, d.id), ' — ', d.subject.entity + '/' + d.subject.id, ': ', whatItDeletes(d),
      d.parent ? ' (cascaded with ' + d.parent + ')' : (children.get(d.id) || []).length && !pv ? ' (and its cascaded wipes)' : '',
      stepList(d.steps, false)))),
  ];
  if (pv) {
    const skipped = pv.decisions.filter(x => x.status !== 'queued' && x.status !== 'rejected');
    if (skipped.length) {
      body.push(h('p', {class: 'alert warn'}, 'Not decidable now: ' + skipped.map(x => x.id + ' (' + x.status + (x.error ? ': ' + x.error : '') + ')').join(', ')));
    }
    if (approve) {
      body.push(h('p', {id: 'decide-guard'}, 'The mass-deletion guard counts ' + pv.guard.asked + ' deletion' + (pv.guard.asked === 1 ? '' : 's') +
        ' for this approval; it admits ' + pv.guard.per_minute + ' per minute across every sidecar.'));
      if (pv.suspend_wipes) body.push(h('p', {class: 'alert warn'}, 'suspend_wipes is set: approved deletions wait until it is lifted.'));
    }
  } else {
    body.push(errorBox(pvErr, 'The server could not preview this decision; the list above is what the page read'));
  }
  confirmStep(slot, {
    title: verb + ' ' + n + ' held deletion' + (n === 1 ? '' : 's') + '?',
    body,
    label: verb + (n === 1 ? ' this deletion' : ' ' + n + ' deletions'),
    danger: approve,
    run: async pastGuard => {
      const res = await api.call('POST', decideURL(ds, approve), {body: decideBody(ds, pastGuard ? {confirm: true} : {})});
      const decisions = res.data.decisions;
      const top = new Set(ds.map(d => d.id));
      const ok = decisions.filter(x => top.has(x.id) && (x.status === 'queued' || x.status === 'rejected')).length;
      const failed = decisions.filter(x => x.status !== 'queued' && x.status !== 'rejected');
      return (approve ? 'Approved' : 'Rejected') + ' ' + ok + ' deletion' + (ok === 1 ? '' : 's') +
        (failed.length ? '; not decided: ' + failed.map(x => x.id + ' (' + x.status + (x.error ? ': ' + x.error : '') + ')').join(', ') : '') + '.';
    },
    done: msg => reload(msg),
  });
}

function progress(d) {
  const steps = d.steps || [];
  const done = steps.filter(s => s.status === 'done').length;
  return [h('progress', {max: String(Math.max(steps.length, 1)), value: String(done), 'aria-label': 'Steps done of ' + d.id}),
    ' ' + done + ' of ' + steps.length + ' step' + (steps.length === 1 ? '' : 's') + ' done'];
}

function cancellable(d) {
  return (d.kind || 'wipe') === 'wipe' && (d.status === 'queued' || d.status === 'suspended') &&
    !(d.steps || []).some(s => s.status === 'done' || s.attempts > 0);
}

function renderQueue(list, slot, ds, state) {
  if (ds.length === 0) {
    list.append(h('p', null, 'No deletion is ' + state.replace('_', ' ') + '.'));
    return;
  }
  const rows = ds.map(d => ({
    attrs: {'data-id': d.id},
    cells: [
      [h('code', null, d.id), h('br'), d.kind || 'wipe', d.parent ? [h('br'), h('span', {class: 'muted'}, 'cascaded from ' + d.parent)] : null],
      subjectLink(d.subject),
      whatItDeletes(d),
      [d.status, d.error ? [h('br'), h('span', {class: 'muted'}, d.error)] : null],
      progress(d),
      [h('details', null, h('summary', null, 'Steps'), stepList(d.steps, true))],
      [d.requested_by || '—', d.decided_by ? [h('br'), (d.status === 'rejected' ? 'rejected' : 'approved') + ' by ' + d.decided_by] : null],
      fmtTime(d.updated_at),
      cancellable(d) ? button('Cancel…', () => cancelWipe(slot, d), {class: 'secondary', 'data-action': 'cancel'}) : '—',
    ],
  }));
  list.append(table('Deletions ' + state.replace('_', ' ') + ', newest first', ['Deletion', 'Subject', 'Deletes', 'Status', 'Progress', 'Steps', 'Requested / decided', 'Updated', 'Cancel'], rows, {id: 'queue'}));
}

function cancelWipe(slot, d) {
  confirmStep(slot, {
    title: 'Cancel wipe ' + d.id + '?',
    body: [h('p', null, 'The wipe of ', d.subject.entity + '/' + d.subject.id, ' has not deleted anything yet. Cancelling it skips every step and lifts the restriction: the subject\'s data is shown again as its state allows.')],
    label: 'Cancel the wipe',
    danger: false,
    run: async () => {
      await api.call('DELETE', '/v1/wipes/' + api.seg(d.id));
      return 'Wipe ' + d.id + ' cancelled.';
    },
    done: msg => reload(msg),
  });
}

// wipeSection requests a WipeCtcAll: a dry run first, then the request,
// which needs the subject's id typed again.
function wipeSection(slot, params) {
  const ent = field('Entity', {name: 'wipe_entity', value: params.wipe_entity || 'contact', list: 'wipe-entities', autocomplete: 'off', required: true});
  const sid = field('Id', {name: 'wipe_id', value: params.wipe_id || '', autocomplete: 'off', spellcheck: 'false', required: true});
  const out = h('div', {id: 'wipe-preview'});
  const form = h('form', {class: 'inline', 'aria-label': 'Preview a wipe'}, ent.wrap, sid.wrap,
    h('datalist', {id: 'wipe-entities'}, h('option', {value: 'contact'})),
    h('div', {class: 'field'}, h('button', {type: 'submit'}, 'Preview the wipe')));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const ref = {entity: ent.input.value.trim(), id: sid.input.value};
    if (!ref.entity || !ref.id) {
      (ref.entity ? sid.input : ent.input).focus();
      return;
    }
    clear(out);
    let res;
    try {
      res = await api.call('POST', '/v1/wipes', {query: {dry_run: 'true'}, body: ref});
    } catch (e) {
      out.append(errorBox(e, 'The wipe cannot be planned'));
      return;
    }
    showWipePreview(out, slot, ref, res.data);
  });
  const sec = section('Wipe a subject (WipeCtcAll)',
    h('p', null, 'A wipe hides the subject at once (gdprgate answers 404 for it) and queues the backend calls that delete it and everything related, including the subjects below it (its phone numbers). Preview it first: nothing changes until you confirm.'),
    form, out);
  sec.id = 'wipe';
  return {section: sec, focus: sid.input.value ? form.querySelector('button[type=submit]') : sid.input};
}

function showWipePreview(out, slot, ref, p) {
  const name = ref.entity + '/' + ref.id;
  const warn = [];
  if (p.suspend_wipes) warn.push(h('p', {class: 'alert warn'}, 'suspend_wipes is set: the wipe will be queued, its steps wait until it is lifted.'));
  else if (p.suspend_wipe_issue) warn.push(h('p', {class: 'alert warn'}, 'suspend_wipe_issue is set: the steps deleting issues wait until it is lifted.'));
  const cascade = p.cascade || [];
  const confirmField = field('Type the id ' + JSON.stringify(ref.id) + ' to confirm', {name: 'confirm_id', autocomplete: 'off', spellcheck: 'false'});
  const wipeBtn = button('Wipe ' + name, () => request(false), {class: 'danger', id: 'wipe-confirm', disabled: true});
  confirmField.input.addEventListener('input', () => {
    wipeBtn.disabled = confirmField.input.value !== ref.id;
  });
  const result = h('div', {'aria-live': 'assertive'});
  const heading = h('h3', {tabindex: '-1'}, 'Dry run: what wiping ' + name + ' does');
  out.append(...[heading, ...warn,
    h('p', null, 'Backend calls for ', h('strong', null, name), ':'), stepList(p.steps, true),
    cascade.length ? [h('p', null, 'And ' + cascade.length + ' subject' + (cascade.length === 1 ? '' : 's') + ' below it, wiped with it:'),
      h('ul', null, cascade.map(c => h('li', null, c.subject.entity + '/' + c.subject.id, stepList(c.steps, false))))] : h('p', {class: 'muted'}, 'No subject below it.'),
    confirmField.wrap, h('p', {class: 'actions'}, wipeBtn), result].flat());
  heading.focus();
  async function request(pastGuard) {
    wipeBtn.disabled = true;
    clear(result);
    try {
      const res = await api.call('POST', '/v1/wipes', {body: {...ref, ...(pastGuard ? {confirm: true} : {})}});
      const w = res.data;
      clear(out);
      flash(w.existing ? name + ' is already being wiped by ' + w.id + ' (' + w.status + ').' : 'Wipe ' + w.id + ' of ' + name + ' queued; ' + name + ' is hidden now.', 'ok');
      go2queue();
    } catch (e) {
      wipeBtn.disabled = false;
      if (e.status === 429 && e.data && e.data.error === 'mass_deletion_guard') {
        const again = button('Wipe ' + name + ' past the guard', () => request(true), {class: 'danger', id: 'wipe-guard'});
        result.append(h('div', {class: 'alert warn', role: 'alert'}, h('strong', null, 'The mass-deletion guard stopped this'), h('p', null, e.data.message), h('p', {class: 'actions'}, again)));
        again.focus();
      } else {
        result.append(errorBox(e, 'The wipe was not requested'));
      }
    }
  }
}

function go2queue() {
  go(hashOf(['deletions'], {state: 'queued'}));
}

async function loadFlags(box, stale) {
  let cfg, life;
  try {
    [cfg, life] = await Promise.all([api.call('GET', '/v1/config'), api.call('GET', '/v1/lifecycle')]);
  } catch (e) {
    box.append(errorBox(e, 'The configuration could not be read'));
    return;
  }
  if (stale()) return;
  const c = cfg.data;
  const l = life.data;
  const facts = h('dl', {class: 'facts'});
  const fact = (k, ...v) => facts.append(h('dt', null, k), h('dd', null, ...v));
  fact('Lifecycle deletions', l.deletions === 'hold' ? 'held for approval (lifecycle.deletions: hold)' : 'executed without approval (lifecycle.deletions: auto)');
  fact('Held now', String(l.held_deletions));
  fact('Subjects indexed / due now', l.indexed_subjects + ' / ' + l.due_subjects);
  fact('Wipes', c.suspend_wipes ? h('span', {class: 'flag-on'}, 'suspended (suspend_wipes)') : 'running');
  fact('Issue deletions', c.suspend_wipe_issue ? h('span', {class: 'flag-on'}, 'suspended (suspend_wipe_issue)') : 'running');
  const flag = (key, on, label) => button(label, async ev => {
    const b = ev.currentTarget;
    b.disabled = true;
    try {
      await api.call('PATCH', '/v1/config', {body: {[key]: on}, etag: cfg.etag});
      reload(key + (on ? ' set.' : ' lifted.'));
    } catch (e) {
      b.disabled = false;
      if (e.status === 412) {
        reload('Not changed: the configuration changed meanwhile (another tab or admin). This is its current state.', 'warn');
        return;
      }
      box.append(errorBox(e, 'Not changed'));
    }
  }, {class: 'secondary', 'data-flag': key});
  box.append(facts, h('p', {class: 'actions'},
    flag('suspend_wipes', !c.suspend_wipes, c.suspend_wipes ? 'Resume wipes' : 'Suspend all wipes'),
    flag('suspend_wipe_issue', !c.suspend_wipe_issue, c.suspend_wipe_issue ? 'Resume issue deletions' : 'Suspend issue deletions')));
}
