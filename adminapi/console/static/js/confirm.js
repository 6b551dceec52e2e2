// A confirmation step in the page (not window.confirm, which a keyboard or
// screen reader user meets without context): it names what will happen, moves
// the focus to its heading, and runs the action only on its own button.
// Escape or "Back" closes it and returns the focus where it was.
//
// The mass-deletion guard (429 mass_deletion_guard) is a second, explicit
// step: the panel shows the server's reason and offers the same action again
// with "confirm": true.

import {h, button, clear, errorBox, errorText} from './dom.js';

// confirmStep fills slot with the panel. opts: title, body (nodes),
// label (the action's button), danger (red button), run(pastGuard) → a
// promise of a message to announce; done(message) after success.
export function confirmStep(slot, opts) {
  const back = document.activeElement;
  const close = () => {
    clear(slot);
    if (back instanceof HTMLElement && back.isConnected) back.focus();
  };
  const heading = h('h2', {tabindex: '-1', id: 'confirm-title'}, opts.title);
  const out = h('div', {class: 'confirm-out', 'aria-live': 'assertive'});
  const act = button(opts.label, () => attempt(false), {class: opts.danger ? 'danger' : '', id: 'confirm-action'});
  const cancel = button('Back', close, {class: 'secondary', id: 'confirm-back'});
  const panel = h('section', {class: 'panel confirm', role: 'region', 'aria-labelledby': 'confirm-title'},
    heading, ...(opts.body || []), h('p', {class: 'actions'}, act, cancel), out);
  panel.addEventListener('keydown', ev => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      close();
    }
  });
  let busy = false;
  async function attempt(pastGuard) {
    if (busy) return;
    busy = true;
    act.disabled = true;
    clear(out);
    try {
      const msg = await opts.run(pastGuard);
      clear(slot);
      opts.done(msg);
    } catch (e) {
      act.disabled = false;
      if (e.status === 429 && e.data && e.data.error === 'mass_deletion_guard') {
        const again = button(opts.label + ' past the guard', () => attempt(true), {class: 'danger', id: 'confirm-guard'});
        out.append(h('div', {class: 'alert warn', role: 'alert'},
          h('strong', null, 'The mass-deletion guard stopped this'),
          h('p', null, errorText(e)),
          h('p', null, 'Many deletions were admitted in the last minute. Go on only if this many deletions are intended.'),
          h('p', {class: 'actions'}, again)));
        again.focus();
      } else {
        out.append(errorBox(e, 'Nothing was changed'));
        act.focus();
      }
    } finally {
      busy = false;
    }
  }
  clear(slot).append(panel);
  heading.focus();
  return panel;
}
