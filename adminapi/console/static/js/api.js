// The admin API client. The token lives in this tab's sessionStorage only
// (gone when the tab closes) and travels in the Authorization header, never
// in a URL; nothing here logs it.

const TOKEN_KEY = 'gdprgate.token';
const WHO_KEY = 'gdprgate.whoami';

export class APIError extends Error {
  constructor(status, data) {
    super((data && data.message) || 'HTTP ' + status);
    this.status = status;
    this.data = data || {};
  }
}

let onUnauthorized = () => {};

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function whoami() {
  try {
    return JSON.parse(sessionStorage.getItem(WHO_KEY) || 'null');
  } catch {
    return null;
  }
}

// can reports whether the signed-in token holds scope (admin holds all).
export function can(scope) {
  const w = whoami();
  return !!w && (w.scopes.includes(scope) || w.scopes.includes('admin'));
}

export async function signIn(tok) {
  const res = await fetch('/v1/whoami', {headers: {Authorization: 'Bearer ' + tok}, cache: 'no-store', credentials: 'omit'});
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new APIError(res.status, data);
  sessionStorage.setItem(TOKEN_KEY, tok);
  sessionStorage.setItem(WHO_KEY, JSON.stringify(data));
  return data;
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(WHO_KEY);
}

// call sends one admin API request. opts: query (object), body (JSON value),
// etag (sent as If-Match), accept, raw (answer the Response, unread).
// It resolves to {status, data, etag} and rejects with APIError.
export async function call(method, path, opts = {}) {
  const tok = token();
  if (!tok) {
    onUnauthorized('Sign in first.');
    throw new APIError(401, {error: 'unauthenticated', message: 'not signed in'});
  }
  const headers = {Authorization: 'Bearer ' + tok};
  if (opts.etag) headers['If-Match'] = opts.etag;
  if (opts.accept) headers.Accept = opts.accept;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(opts.query || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const url = path + (q.toString() ? '?' + q.toString() : '');
  const res = await fetch(url, {method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error'});
  if (res.status === 401) {
    signOut();
    onUnauthorized('The token is no longer accepted; sign in again.');
  }
  if (opts.raw && res.ok) return res;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = {message: text};
    }
  }
  if (!res.ok) throw new APIError(res.status, data);
  return {status: res.status, data, etag: res.headers.get('ETag')};
}

// seg encodes one path segment (ids may hold '/', '?', '#'). "." and ".."
// cannot be one: URLs resolve them before any server sees
// them, so such an id would name another resource.
export function seg(v) {
  const s = String(v);
  if (s === '' || s === '.' || s === '..') {
    throw new APIError(400, {error: 'bad_id', message: 'the id ' + JSON.stringify(s) + ' cannot be used in a URL path'});
  }
  return encodeURIComponent(s);
}

// version is an ETag's register version ("12" → 12).
export function version(etag) {
  return etag ? etag.replace(/^W\//, '').replace(/"/g, '') : '?';
}
