// Every request the console makes goes through this module, to havend's
// public API under /api/v1: the console has no other way in, so all it does
// can be scripted as well (docs/openapi.json).
//
// Errors come back as ApiError, whose message is a sentence for a person:
// what failed and, from havend's {"error": "..."} answer, why. Never raw
// JSON.

let csrfToken = null;

export class ApiError extends Error {
  constructor(status, message, reason) {
    super(message);
    this.status = status;  // HTTP status, 0 when havend could not be reached
    this.reason = reason;  // havend's own words, may be ""
  }
}

const STATUS_WORDS = {
  400: 'havend did not accept this request',
  401: 'You are not logged in, or your session has ended. Log in again.',
  403: 'Your role does not allow this',
  404: 'This does not exist (any more)',
  405: 'This action is not possible here',
  408: 'The request took too long',
  409: 'This conflicts with the current state',
  410: 'This has expired',
  413: 'The request is too large',
  422: 'The values given are not valid',
  429: 'Too many attempts; wait a little and try again',
  500: 'havend failed while doing this',
  502: 'A service havend depends on did not answer',
  503: 'havend is busy or shutting down; try again shortly',
};

// Listeners for "the session has ended" (app.js sends the user to login).
const unauthorizedListeners = new Set();
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

export function query(params) {
  if (!params) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

async function errorFrom(res) {
  let reason = '';
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      reason = typeof j.error === 'string' ? j.error :
          typeof j.message === 'string'    ? j.message :
                                             '';
    } catch {
      reason =
          text.length < 300 && !text.trim().startsWith('<') ? text.trim() : '';
    }
  } catch { /* body unreadable */
  }
  const base = STATUS_WORDS[res.status] ||
      `havend answered with an error (HTTP ${res.status})`;
  let message = base;
  if (reason) message = base.replace(/[.]$/, '') + ': ' + reason;
  if (res.status === 429) {
    const after = res.headers.get('Retry-After');
    if (after) message += ` (try again in ${after} s)`;
  }
  return new ApiError(res.status, message, reason);
}

// request('GET', '/points', undefined, {vm: 'web'}) -> parsed JSON.
// `opts.raw`: return the Response itself (downloads).
export async function request(method, path, body, params, opts = {}) {
  const headers = {Accept: 'application/json'};
  const init = {method, headers, credentials: 'same-origin', cache: 'no-store'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrfToken)
    headers['X-CSRF-Token'] = csrfToken;
  let res;
  try {
    res = await fetch('/api/v1' + path + query(params), init);
  } catch (e) {
    throw new ApiError(
        0,
        'havend cannot be reached: check that it is running and that this computer can reach it.',
        String(e));
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401 && path !== '/login')
      unauthorizedListeners.forEach(fn => fn(err));
    throw err;
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  if (!type.includes('json')) return res.text();
  return res.json();
}

export const get = (path, params) => request('GET', path, undefined, params);
export const post = (path, body, params) =>
    request('POST', path, body ?? {}, params);
export const put = (path, body) => request('PUT', path, body ?? {});
export const del = (path) => request('DELETE', path);

// Who is logged in: {name, role, session, csrf_token?} or null.
export async function whoami() {
  try {
    const me = await get('/me');
    csrfToken = me.csrf_token || null;
    return me;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function login(user, password) {
  const r = await request('POST', '/login', {user, password});
  csrfToken = r.csrf_token || null;
  return r;
}

export async function logout() {
  try {
    await request('POST', '/logout', {});
  } finally {
    csrfToken = null;
  }
}

const ROLE_RANK = {
  auditor: 1,
  operator: 2,
  admin: 3
};
// Whether `me` has at least `role` (so pages hide what would be a 403).
export function hasRole(me, role) {
  return !!me && (ROLE_RANK[me.role] || 0) >= (ROLE_RANK[role] || 99);
}

// Live job events (GET /events, Server-Sent Events), over ONE stream the
// whole console shares: havend serves few streams at a time (each holds a
// handler thread) and frees a closed one's slot only when its next write
// fails, up to 15 s later, so a stream per page would run out when someone
// goes dashboard -> job -> jobs quickly. The stream stays open a while
// after its last subscriber leaves, so the next page takes it over. When
// havend refuses it (503, which EventSource does not retry) it is tried
// again after 15 s; pages poll meanwhile.
//
// events({progress(obj), state(obj), dropped()}, jobId?) -> {close()};
// with jobId only that job's events reach the handlers.
const shared = {
  src: null,
  subs: new Set(),
  closeTimer: null,
  retryTimer: null
};
const LINGER_MS = 10000, RETRY_MS = 15000;

function openShared() {
  if (shared.src && shared.src.readyState !== EventSource.CLOSED) return;
  const src = new EventSource('/api/v1/events');
  const dispatch = type => ev => {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return;
    }
    for (const s of [...shared.subs]) {
      if (s.job !== undefined && s.job !== null && data && data.id !== s.job)
        continue;
      try {
        s.handlers[type] && s.handlers[type](data);
      } catch (e) {
        console.warn('event handler', e);
      }
    }
  };
  src.addEventListener('progress', dispatch('progress'));
  src.addEventListener('state', dispatch('state'));
  src.addEventListener(
      'dropped',
      () =>
          shared.subs.forEach(s => s.handlers.dropped && s.handlers.dropped()));
  src.onerror = () => {
    if (src.readyState !== EventSource.CLOSED)
      return;  // reconnecting by itself
    clearTimeout(shared.retryTimer);
    shared.retryTimer = setTimeout(() => {
      if (shared.subs.size) openShared();
    }, RETRY_MS);
  };
  shared.src = src;
}

function closeShared() {
  clearTimeout(shared.retryTimer);
  if (shared.src) shared.src.close();
  shared.src = null;
}

export function events(handlers, jobId) {
  const sub = {
    handlers,
    job: jobId === undefined || jobId === null ? null : Number(jobId)
  };
  clearTimeout(shared.closeTimer);
  shared.subs.add(sub);
  openShared();
  return {
    close() {
      shared.subs.delete(sub);
      if (!shared.subs.size) {
        clearTimeout(shared.closeTimer);
        shared.closeTimer = setTimeout(closeShared, LINGER_MS);
      }
    },
  };
}
onUnauthorized(() => {
  shared.subs.clear();
  closeShared();
});

// Saves a response body as a file the browser downloads. For GET downloads
// prefer a plain link (downloadLink in ui.js): the browser streams it.
export async function saveResponse(res, fallbackName) {
  const cd = res.headers.get('Content-Disposition') || '';
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
  const name = m ? decodeURIComponent(m[1]) : fallbackName;
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

export function csrf() {
  return csrfToken;
}
