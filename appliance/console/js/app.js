// The console's shell: login gate, navigation and a hash router. Each page
// is a module in js/pages/ exporting
//   render(view, ctx)   ctx = {me, params, route, onLeave(fn)}
// which fills `view` (the <main> element). Pages register clean-ups (event
// streams, timers) with ctx.onLeave; they run when the user navigates away.
import * as api from './api.js';
import {clear, errorBox, h, routeParams} from './ui.js';

const ROUTES = {
  'dashboard': 'dashboard',
  'jobs': 'jobs',
  'job': 'job',
  'schedules': 'schedules',
  'schedule': 'schedule',
  'points': 'points',
  'point': 'point',
  'files': 'files',
  'restore/vm': 'restore_vm',
  'restore/host': 'restore_host',
  'settings': 'settings',
  // --- agents ---
  'agents': 'agents',
  // --- copies ---
  'remotes': 'remotes',
};
const NAV_OF = {
  job: 'jobs',
  schedule: 'schedules',
  point: 'points',
  files: 'points',
  'restore/vm': 'restore',
  'restore/host': 'restore-host'
};

let me = null;
let leaving = [];

function routeName() {
  const hash = location.hash.replace(/^#\/?/, '');
  const i = hash.indexOf('?');
  return (i < 0 ? hash : hash.slice(0, i)) || 'dashboard';
}

function runLeave() {
  const fns = leaving;
  leaving = [];
  for (const fn of fns) {
    try {
      fn();
    } catch { /* a clean-up must not stop the next page */
    }
  }
}

async function show() {
  runLeave();
  const view = document.getElementById('view');
  const route = routeName();
  if (!me) {
    renderLogin(view);
    return;
  }
  document.getElementById('top').hidden = false;
  document.getElementById('who').textContent = `${me.name} (${me.role})`;
  const nav = NAV_OF[route] || route;
  for (const a of document.querySelectorAll('#nav a'))
    a.toggleAttribute('aria-current', a.dataset.nav === nav);
  closeMenu();
  const mod = ROUTES[route];
  if (!mod) {
    clear(
        view, h('h1', {}, 'Page not found'),
        h('p', {}, h('a', {href: '#/dashboard'}, 'Go to the dashboard')));
    return;
  }
  clear(view, h('p', {class: 'muted'}, 'Loading…'));
  try {
    const page = await import(`./pages/${mod}.js`);
    const ctx =
        {me, route, params: routeParams(), onLeave: fn => leaving.push(fn)};
    clear(view);
    await page.render(view, ctx);
  } catch (e) {
    if (e && e.status === 401) return;  // onUnauthorized shows the login
    clear(view, h('h1', {}, 'This page could not be shown'), errorBox(e));
  }
  view.focus({preventScroll: true});
}

function renderLogin(view, message) {
  document.getElementById('top').hidden = true;
  document.title = 'Log in · Haven';
  const user = h('input', {
    id: 'login-user',
    name: 'username',
    autocomplete: 'username',
    required: true,
    value: 'admin'
  });
  const pass = h('input', {
    id: 'login-password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true
  });
  const status = h('div', {id: 'login-error', 'aria-live': 'polite'});
  const button =
      h('button', {type: 'submit', id: 'login-submit', class: 'primary'},
        'Log in');
  const form =
      h('form', {class: 'login card', id: 'login-form'},
        h('h1', {},
          h('img', {src: '/img/haven.svg', alt: '', width: 28, height: 28}),
          ' Haven'),
        h('p', {class: 'muted'}, 'Log in to the backup appliance.'),
        message ? h('div', {class: 'notice info', role: 'status'}, message) :
                  null,
        h('div', {class: 'field'}, h('label', {for: 'login-user'
          }, 'User'), user), h('div', {class: 'field'}, h('label', {for: 'login-password'
                               }, 'Password'), pass), status, button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    clear(status);
    try {
      await api.login(user.value.trim(), pass.value);
      me = await api.whoami();
      if (!location.hash || location.hash === '#/login')
        location.hash = '#/dashboard';
      show();
    } catch (e) {
      const words =
          e.status === 401 ? 'Wrong user name or password.' : e.message;
      clear(status, h('div', {class: 'error', role: 'alert'}, words));
      pass.select();
    } finally {
      button.disabled = false;
    }
  });
  clear(view, h('div', {class: 'login-wrap'}, form));
  (user.value ? pass : user).focus();
}

function closeMenu() {
  document.getElementById('nav').classList.remove('open');
  document.getElementById('menu-toggle').setAttribute('aria-expanded', 'false');
}

async function start() {
  api.onUnauthorized(() => {
    if (!me) return;
    me = null;
    runLeave();
    renderLogin(
        document.getElementById('view'),
        'Your session has ended. Log in again to go on.');
  });
  document.getElementById('logout').addEventListener('click', async () => {
    try {
      await api.logout();
    } catch { /* the session may be gone already */
    }
    me = null;
    runLeave();
    renderLogin(document.getElementById('view'), 'You are logged out.');
  });
  document.getElementById('menu-toggle').addEventListener('click', () => {
    const nav = document.getElementById('nav');
    const open = nav.classList.toggle('open');
    document.getElementById('menu-toggle')
        .setAttribute('aria-expanded', String(open));
  });
  window.addEventListener('hashchange', show);
  try {
    me = await api.whoami();
  } catch (e) {
    clear(document.getElementById('view'), errorBox(e, 'havend'));
    return;
  }
  show();
}

start();
