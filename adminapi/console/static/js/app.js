// The console's shell: sign-in, navigation and the hash router. Pages are
// modules exporting render(main, params, rest, stale), which may resolve to
// the element to focus; each one talks to the admin API with the signed-in
// token only.

import {h, clear, button, field, announce, takeFlash, errorText} from './dom.js';
import * as api from './api.js';
import * as subject from './subject.js';
import * as registers from './registers.js';
import * as deletions from './deletions.js';
import * as due from './due.js';
import * as auditPage from './audit.js';

// Pages in navigation order, with the scope each needs.
const PAGES = [
  {route: 'subject', title: 'Subject', scope: 'export_evidence', mod: subject},
  {route: 'registers', title: 'Registers', scope: 'edit_items', mod: registers},
  {route: 'deletions', title: 'Deletions and wipes', scope: 'wipe', mod: deletions},
  {route: 'due', title: 'Due report', scope: 'export_evidence', mod: due},
  {route: 'audit', title: 'Audit trail', scope: 'audit_read', mod: auditPage},
];

const main = () => document.getElementById('main');

// parseHash reads "#/route/a/b?x=1" into {route, rest, params}.
function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [path, qs] = raw.split('?', 2);
  const parts = path.split('/').filter(Boolean).map(p => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return {route: parts[0] || '', rest: parts.slice(1), params: Object.fromEntries(new URLSearchParams(qs || ''))};
}

function renderSignIn(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  const m = clear(main());
  const tok = field('Admin token', {type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true},
    'The bearer token of an admin API token. It stays in this browser tab (sessionStorage) and is sent only to this server.');
  const err = h('div', {class: 'form-error', 'aria-live': 'assertive'});
  const form = h('form', {class: 'signin', 'aria-labelledby': 'signin-title', novalidate: true},
    h('h1', {id: 'signin-title', tabindex: '-1'}, 'Sign in'),
    tok.wrap, err,
    h('button', {type: 'submit'}, 'Sign in'));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    err.textContent = '';
    const value = tok.input.value.trim();
    if (!value) {
      err.textContent = 'Enter a token.';
      tok.input.focus();
      return;
    }
    try {
      await api.signIn(value);
      tok.input.value = '';
      if (!location.hash.startsWith('#/')) {
        location.hash = '#/' + firstPage().route; // hashchange renders it
        return;
      }
      focusAfter(await route());
    } catch (e) {
      err.textContent = e.status === 401 ? 'This token is not valid.' : 'Sign-in failed: ' + errorText(e);
      tok.input.select();
      tok.input.focus();
    }
  });
  m.append(form);
  if (message) announce(message, 'warn');
  tok.input.focus();
  return tok.input;
}

function firstPage() {
  return PAGES.find(p => api.can(p.scope)) || PAGES[0];
}

function renderShell(current) {
  const w = api.whoami();
  const nav = clear(document.getElementById('nav'));
  const ul = h('ul');
  for (const p of PAGES) {
    if (!api.can(p.scope)) continue;
    ul.append(h('li', null, h('a', {href: '#/' + p.route, 'aria-current': p.route === current ? 'page' : false}, p.title)));
  }
  nav.append(ul);
  nav.hidden = false;
  const who = clear(document.getElementById('who'));
  who.append(h('span', null, 'Signed in as ', h('strong', null, w.name), ' (', w.scopes.join(', ') || 'no scopes', ')'),
    button('Sign out', () => {
      api.signOut();
      location.hash = '';
      renderSignIn('Signed out.');
    }, {class: 'secondary'}));
  who.hidden = false;
}

let renderSeq = 0;

async function route() {
  if (!api.token() || !api.whoami()) return renderSignIn();
  const {route: r, rest, params} = parseHash();
  const page = PAGES.find(p => p.route === r);
  if (!page) {
    location.replace('#/' + firstPage().route);
    return;
  }
  renderShell(page.route);
  document.title = page.title + ' — gdprgate console';
  const m = clear(main());
  const f = takeFlash();
  announce(f.msg, f.kind);
  if (!api.can(page.scope)) {
    m.append(h('h1', {tabindex: '-1'}, page.title),
      h('p', {class: 'alert warn'}, 'The token you signed in with lacks the "' + page.scope + '" scope this page needs.'));
    return;
  }
  const seq = ++renderSeq;
  try {
    return await page.mod.render(m, params, rest, () => seq !== renderSeq);
  } catch (e) {
    if (seq === renderSeq) m.append(h('div', {class: 'alert error', role: 'alert'}, errorText(e)));
  }
}

// focusAfter moves the focus after a navigation: to the element the page
// asked for (the field to fill in), else to the page's heading, so a
// keyboard or screen reader user starts on the new page.
function focusAfter(el) {
  if (el instanceof HTMLElement && el.isConnected) {
    el.focus();
    return;
  }
  const h1 = main().querySelector('h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    h1.focus();
  }
}

api.setUnauthorizedHandler(msg => renderSignIn(msg));

window.addEventListener('hashchange', async () => {
  if (!location.hash.startsWith('#/')) return; // the skip link
  focusAfter(await route());
});

route().then(focusAfter);
