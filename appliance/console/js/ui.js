// Small DOM helpers shared by every page. Text from the API (VM names, guest
// file names, error reasons) is only ever set as text, never parsed as HTML.

// h('a', {href: '#/jobs', class: 'btn', onclick: fn}, 'Jobs', child, ...)
// Attributes: class, id, dataset {}, on<event> functions, boolean values
// (true sets, false omits), everything else as a string attribute.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function')
      el.addEventListener(k.slice(2), v);
    else if (k === 'dataset')
      Object.assign(el.dataset, v);
    else if (k === 'value' && 'value' in el)
      el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled')
      el[k] = !!v;
    else
      el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtBytes(n) {
  if (n === undefined || n === null || isNaN(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0, v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? v.toFixed(0) :
                    v.toFixed(
                        v < 10      ? 2 :
                            v < 100 ? 1 :
                                      0)) +
      ' ' + units[i];
}

// A Date from an API time: ISO 8601 text or seconds since the epoch.
export function toDate(t) {
  if (t === undefined || t === null || t === '') return null;
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  return isNaN(d.getTime()) ? null : d;
}

export function fmtTime(t) {
  const d = toDate(t);
  if (!d) return '–';
  return d.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit'
  });
}

export function fmtAgo(t) {
  const d = toDate(t);
  if (!d) return 'never';
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  const future = s < 0, a = Math.abs(s);
  const word = a < 60 ? `${a} s` :
      a < 3600 ? `${Math.round(a / 60)} min` :
      a < 172800 ? `${Math.round(a / 3600)} h` :
                   `${Math.round(a / 86400)} days`;
  return future ? `in ${word}` : `${word} ago`;
}

export function fmtDuration(sec) {
  if (sec === undefined || sec === null || sec < 0 || isNaN(sec)) return '–';
  sec = Math.round(sec);
  if (sec < 60) return `${sec} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${sec % 60} s`;
  return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
}

// An <time> element showing "3 h ago" with the full time as its title.
export function timeAgo(t) {
  const d = toDate(t);
  if (!d) return h('span', {class: 'muted'}, 'never');
  return h('time', {datetime: d.toISOString(), title: fmtTime(t)}, fmtAgo(t));
}

// A state word as a coloured badge: ok/succeeded, failed, running, ...
export function badge(state, text) {
  const cls = {
    succeeded: 'ok',
    ok: 'ok',
    done: 'ok',
    passed: 'ok',
    complete: 'ok',
    failed: 'bad',
    error: 'bad',
    interrupted: 'bad',
    overdue: 'warn',
    missing: 'warn',
    running: 'run',
    queued: 'wait',
    cancelled: 'muted',
    canceled: 'muted',
    warning: 'warn',
    partial: 'warn',
    never: 'warn',
  }[String(state).toLowerCase()] ||
      'muted';
  return h(
      'span', {class: `badge ${cls}`, dataset: {state: String(state)}},
      text ?? String(state));
}

// A progress bar; fraction 0..1 or null (unknown: an indeterminate bar).
export function progressBar(fraction, label) {
  const known = typeof fraction === 'number' && isFinite(fraction);
  const pct =
      known ? Math.max(0, Math.min(100, Math.round(fraction * 100))) : null;
  const bar =
      h('div', {
        class: 'progress' + (known ? '' : ' indeterminate'),
        role: 'progressbar',
        'aria-valuemin': '0',
        'aria-valuemax': '100',
        'aria-valuenow': known ? String(pct) : null,
        'aria-label': label || 'progress'
      },
        h('div', {class: 'fill'}));
  // The width through the CSS object model: the console's policy refuses
  // style="" attributes.
  if (known) bar.firstChild.style.width = pct + '%';
  return bar;
}

// Updates a bar made by progressBar in place.
export function setProgress(bar, fraction) {
  const known = typeof fraction === 'number' && isFinite(fraction);
  const pct =
      known ? Math.max(0, Math.min(100, Math.round(fraction * 100))) : 0;
  bar.classList.toggle('indeterminate', !known);
  if (known)
    bar.setAttribute('aria-valuenow', String(pct));
  else
    bar.removeAttribute('aria-valuenow');
  bar.firstChild.style.width = known ? pct + '%' : '';
}

// An error shown in words (role=alert, so screen readers announce it).
export function errorBox(err, what) {
  const msg = err && err.message ? err.message : String(err);
  return h(
      'div', {class: 'error', role: 'alert'},
      what ? h('strong', {}, what + ': ') : null, msg);
}

export function notice(text, kind = 'info') {
  return h('div', {class: `notice ${kind}`, role: 'status'}, text);
}

// A table: columns [{title, cell(row) -> node|string, class?}], rows [].
export function table(columns, rows, opts = {}) {
  const head =
      h('thead', {},
        h('tr', {},
          columns.map(c => h('th', {scope: 'col', class: c.class}, c.title))));
  const body =
      h('tbody', {},
        rows.map(
            r =>
                h('tr', {dataset: opts.rowData ? opts.rowData(r) : undefined},
                  columns.map(
                      c =>
                          h('td', {class: c.class, 'data-label': c.title},
                            c.cell(r))))));
  if (!rows.length && opts.empty)
    body.append(
        h('tr', {},
          h('td', {colspan: String(columns.length), class: 'muted empty'},
            opts.empty)));
  return h(
      'div', {class: 'table-wrap'},
      h('table', {class: 'data ' + (opts.class || ''), id: opts.id}, head,
        body));
}

// A labelled form field around `input` (an <input>, <select>, ...).
export function field(label, input, hint) {
  if (!input.id) input.id = 'f-' + Math.random().toString(36).slice(2, 9);
  return h('div', {class: 'field'}, h('label', {for: input.id
           }, label), input, hint ? h('div', {class: 'hint'}, hint) : null);
}

export function section(title, ...children) {
  return h('section', {class: 'card'}, h('h2', {}, title), ...children);
}

export function pageTitle(title, ...actions) {
  document.title = `${title} · Haven`;
  return h(
      'div', {class: 'page-head'}, h('h1', {}, title),
      h('div', {class: 'actions'}, actions));
}

// A button that shows it is working while `fn` runs, and shows fn's error
// in `errorTarget` (or after itself) instead of throwing.
export function actionButton(text, fn, attrs = {}) {
  const btn = h('button', {type: 'button', ...attrs}, text);
  btn.addEventListener('click', async () => {
    if (btn.disabled) return;
    btn.disabled = true;
    const old = btn.textContent;
    btn.textContent = old + '…';
    const holder = attrs.errorTarget || null;
    try {
      await fn(btn);
    } catch (e) {
      const box = errorBox(e);
      if (holder)
        clear(holder, box);
      else
        btn.after(box);
    } finally {
      btn.disabled = false;
      btn.textContent = old;
    }
  });
  return btn;
}

// The link to a file download (GET): the browser streams it with the
// session cookie.
export function downloadLink(href, text, attrs = {}) {
  return h('a', {href, download: '', ...attrs}, text);
}

// Decodes a hash route's query: '#/files?repo=a&id=b' -> {repo:'a', id:'b'}.
export function routeParams() {
  const i = location.hash.indexOf('?');
  return Object.fromEntries(
      new URLSearchParams(i < 0 ? '' : location.hash.slice(i + 1)));
}

export function go(route, params) {
  const q = params ? new URLSearchParams(Object.entries(params).filter(
                                             ([, v]) => v !== undefined &&
                                                 v !== null && v !== ''))
                         .toString() :
                     '';
  location.hash = route + (q ? '?' + q : '');
}

export function modeString(mode) {
  if (mode === undefined || mode === null) return '';
  if (typeof mode === 'string') return mode;
  const t = (mode & 0o170000) === 0o040000 ? 'd' :
      (mode & 0o170000) === 0o120000       ? 'l' :
                                             '-';
  let s = t;
  const bits = 'rwxrwxrwx';
  for (let i = 0; i < 9; i++) s += (mode & (1 << (8 - i))) ? bits[i] : '-';
  return s;
}

/* --- restore wizards --- */

// A wizard's progress indicator: an ol.steps of `steps` ([[key, title]...]).
// set(key) marks that step current (aria-current="step") and those before
// it done.
export function wizardSteps(steps, label = 'Steps') {
  const items =
      steps.map(([key, title]) => h('li', {dataset: {stepKey: key}}, title));
  const el = h('ol', {class: 'steps wizard-steps', 'aria-label': label}, items);
  const set = (key) => {
    const at = steps.findIndex(([k]) => k === key);
    items.forEach((li, i) => {
      li.classList.toggle('done', i < at);
      if (i === at)
        li.setAttribute('aria-current', 'step');
      else
        li.removeAttribute('aria-current');
    });
  };
  return {el, set};
}

// A radio choice: <label class="choice"><input type=radio> title,
// detail</label>.
export function radioChoice(name, value, checked, title, detail, attrs = {}) {
  const input = h('input', {type: 'radio', name, value, checked, ...attrs});
  return h(
      'label', {class: 'choice' + (attrs.disabled ? ' disabled' : '')}, input,
      h('span', {class: 'choice-text'}, h('strong', {}, title),
        detail ? h('span', {class: 'choice-detail'}, detail) : null));
}
