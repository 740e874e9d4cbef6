// #/remotes: the remote appliances this one copies points to and from
// (off-site copies, docs/copies.md). Each remote with its points (asked of
// it now), and "Sync now" buttons that start a sync job (pull its points
// here, or push this appliance's points there) and open the job. Admins
// only: a remote's token opens every point there. An admin adds a remote
// with its URL, certificate fingerprint and an admin token of that remote;
// the token is kept by havend and never shown again.
import * as api from '../api.js';
import {actionButton, clear, errorBox, field, fmtTime, go, h, notice, pageTitle, section, table, timeAgo} from '../ui.js';

const KIND_WORDS = {vm: 'VM', image: 'disk image', files: 'files'};

function syncButtons(remote) {
  const out = h('div', {class: 'actions'});
  const errors = h('div', {});
  for (const [direction, text] of [['pull', 'Sync now: pull here'], ['push', 'Sync now: push there']]) {
    out.append(actionButton(text, async () => {
      const r = await api.post('/sync', {remote: remote.name, direction});
      go('#/job', {id: r.job});
    }, {id: `sync-${direction}-${remote.name}`, class: direction === 'pull' ? 'primary' : '', errorTarget: errors}));
  }
  return [out, errors];
}

async function remoteSection(remote) {
  const body = h('div', {}, h('p', {class: 'muted'}, 'Asking the remote for its points…'));
  const sec = section(remote.name,
    h('p', {class: 'muted small'}, remote.url, ' · certificate ', h('code', {}, remote.fingerprint),
      remote.token_set ? '' : ' · no token set'),
    ...syncButtons(remote), body);
  sec.dataset.remote = remote.name;
  (async () => {
    let r;
    try {
      r = await api.get(`/remotes/${encodeURIComponent(remote.name)}/points`);
    } catch (e) {
      clear(body, errorBox(e, 'Its points could not be listed'));
      return;
    }
    const points = r.points || [];
    const errs = (r.errors || []).map(e => notice(String(e), 'warn'));
    clear(body, errs, table([
      {title: 'Time', cell: p => h('span', {}, fmtTime(p.time), h('div', {class: 'muted small'}, timeAgo(p.time)))},
      {title: 'Name', cell: p => h('span', {}, p.name, h('div', {class: 'muted small'}, KIND_WORDS[p.kind] || p.kind))},
      {title: 'Id', cell: p => h('code', {title: p.id}, p.id.slice(0, 8))},
    ], points, {
      class: 'stack remote-points', rowData: p => ({point: p.id}),
      empty: 'No recovery points there yet.'
    }));
  })();
  return sec;
}

function addForm(onAdded) {
  const name = h('input', {name: 'name', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._-]{0,63}', placeholder: 'offsite'});
  const url = h('input', {name: 'url', required: true, placeholder: 'https://10.0.0.2:8421'});
  const fp = h('input', {name: 'fingerprint', required: true, placeholder: 'SHA256:AB:CD:…'});
  const token = h('input', {name: 'token', type: 'password', required: true, autocomplete: 'off'});
  const status = h('div', {'aria-live': 'polite'});
  const form = h('form', {class: 'card', id: 'remote-add'},
    h('h2', {}, 'Add a remote appliance'),
    h('div', {class: 'row'},
      field('Name', name, 'letters, digits, . _ -'),
      field('URL', url, 'https://HOST:PORT of its havend'),
      field('Certificate fingerprint', fp, 'havend prints it at start; it is pinned'),
      field('Admin token of the remote', token, 'kept on this appliance (0600), never shown again')),
    status,
    h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Add')));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    try {
      await api.post('/remotes', {name: name.value.trim(), url: url.value.trim(),
                                  fingerprint: fp.value.trim(), token: token.value});
      token.value = '';
      onAdded();
    } catch (e) {
      clear(status, errorBox(e, 'The remote was not added'));
    }
  });
  return form;
}

export async function render(view, ctx) {
  if (!api.hasRole(ctx.me, 'admin')) {
    clear(view, pageTitle('Remote appliances'),
      notice('Remote appliances and their copies are for admins.', 'info'));
    return;
  }
  let r;
  try {
    r = await api.get('/remotes');
  } catch (e) {
    clear(view, pageTitle('Remote appliances'), errorBox(e, 'The remotes could not be listed'));
    return;
  }
  const remotes = r.remotes || [];
  const sections = [];
  for (const remote of remotes) sections.push(await remoteSection(remote));
  clear(view, pageTitle('Remote appliances'),
    h('p', {class: 'muted'}, 'Off-site copies: a sync sends only the chunks the other side lacks. ',
      'Both repositories must share their chunk-id keys (haven init --copy-params-from).'),
    remotes.length ? sections :
      h('div', {class: 'card empty-state'}, h('p', {}, 'No remote appliance yet.')),
    addForm(() => go('#/remotes', {t: Date.now()})));
}
