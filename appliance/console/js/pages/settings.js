// #/settings: who may use the appliance and how it tells people.
//   Users          GET/POST /users, PUT/DELETE /users/{name}
//   API tokens     GET/POST /tokens, DELETE /tokens/{id} (the secret is shown
//                  once, right after it is made, and never kept here)
//   Notifications  GET/PUT /settings/notifications, POST .../test
// All three are admin-only in the API; other roles see a notice instead.
// Each section loads and fails on its own, with its error in words.
import * as api from '../api.js';
import {
  actionButton, badge, clear, errorBox, field, h, notice, pageTitle, section,
  table, timeAgo,
} from '../ui.js';

const ROLES = ['admin', 'operator', 'auditor'];
const ROLE_WORDS = {
  admin: 'admin — everything, also users, tokens and settings',
  operator: 'operator — runs backups and restores',
  auditor: 'auditor — reads everything, changes nothing',
};
const MIN_PASSWORD = 12;

export async function render(view, ctx) {
  view.append(pageTitle('Settings'));
  if (!api.hasRole(ctx.me, 'admin')) {
    view.append(section(
        'Your account',
        h('dl', {class: 'props'}, h('dt', {}, 'User'), h('dd', {}, ctx.me.name),
          h('dt', {}, 'Role'), h('dd', {}, ROLE_WORDS[ctx.me.role] || ctx.me.role)),
        notice(
            'Users, API tokens and notifications are managed by an admin. ' +
                'Ask one if you need another role, a token or a password reset.',
            'info')));
    return;
  }
  const jump = h(
      'nav', {class: 'settings-jump', 'aria-label': 'Settings sections'},
      ['Users', 'API tokens', 'Notifications'].map(
          (t, i) => h(
              'button', {
                type: 'button',
                class: 'link',
                onclick: () => document.getElementById(`settings-s${i}`)
                                   .scrollIntoView({behavior: 'smooth'})
              },
              t)));
  const users = h('div', {id: 'settings-s0'});
  const tokens = h('div', {id: 'settings-s1'});
  const notify = h('div', {id: 'settings-s2'});
  view.append(jump, users, tokens, notify);
  await Promise.all([
    renderUsers(users, ctx), renderTokens(tokens, ctx), renderNotify(notify, ctx)
  ]);
}

function roleSelect(attrs, value) {
  return h(
      'select', attrs,
      ROLES.map(r => h('option', {value: r, selected: r === value}, r)));
}

function passwordInput(attrs) {
  return h('input', {
    type: 'password',
    autocomplete: 'new-password',
    minlength: String(MIN_PASSWORD),
    ...attrs
  });
}

// ------------------------------------------------------------------ users

async function renderUsers(box, ctx) {
  const status = h('div', {'aria-live': 'polite'});
  const list = h('div', {}, h('p', {class: 'muted'}, 'Loading users…'));
  const reload = async () => {
    let data;
    try {
      data = await api.get('/users');
    } catch (e) {
      clear(list, errorBox(e, 'The users could not be listed'));
      return;
    }
    clear(list, usersTable(data.users, ctx, status, reload));
  };
  clear(
      box,
      section(
          'Users', h('p', {class: 'muted'},
                     'People who log in to this console. Changing a user\'s ' +
                         'role or password, or deleting it, logs that user ' +
                         'out everywhere at once.'),
          status, list, userCreateForm(status, reload)));
  await reload();
}

function usersTable(users, ctx, status, reload) {
  const admins = users.filter(u => u.role === 'admin').length;
  const columns = [
    {
      title: 'User',
      cell: u => h('span', {}, h('strong', {}, u.name),
                   u.you ? h('span', {class: 'muted'}, ' (you)') : null)
    },
    {title: 'Role', cell: u => roleCell(u, admins, status, reload)},
    {
      title: 'Logged in',
      class: 'num',
      cell: u => u.sessions ? `${u.sessions} session${u.sessions > 1 ? 's' : ''}`
                            : h('span', {class: 'muted'}, 'no')
    },
    {title: 'Changed', cell: u => timeAgo(u.changed)},
    {title: 'Actions', cell: u => userActions(u, admins, status, reload)},
  ];
  return table(columns, users, {
    id: 'user-table',
    class: 'stack',
    rowData: u => ({user: u.name}),
    empty: 'No users yet — add one below.',
  });
}

function roleCell(u, admins, status, reload) {
  const lastAdmin = u.role === 'admin' && admins <= 1;
  const sel = roleSelect(
      {
        class: 'user-role',
        'aria-label': `Role of ${u.name}`,
        disabled: lastAdmin,
        title: lastAdmin ? 'The last admin keeps the admin role: make ' +
                    'another user admin first.' :
                           null,
      },
      u.role);
  sel.addEventListener('change', async () => {
    const role = sel.value;
    const you = u.you ? ' You will have to log in again.' : '';
    if (!confirm(`Make ${u.name} ${role}? ${u.name} is logged out everywhere.${you}`)) {
      sel.value = u.role;
      return;
    }
    sel.disabled = true;
    try {
      await api.put(`/users/${encodeURIComponent(u.name)}`, {role});
      clear(status, notice(`${u.name} is now ${role}.`, 'ok'));
      await reload();
    } catch (e) {
      sel.value = u.role;
      sel.disabled = false;
      clear(status, errorBox(e, `The role of ${u.name} was not changed`));
    }
  });
  return sel;
}

function userActions(u, admins, status, reload) {
  const wrap = h('div', {class: 'row-actions'});
  const reset = h(
      'button', {type: 'button', class: 'reset-password'}, 'Reset password');
  reset.addEventListener('click', () => {
    reset.hidden = true;
    wrap.append(resetForm(u, status, reload, () => {
      reset.hidden = false;
      reset.focus();
    }));
  });
  const lastAdmin = u.role === 'admin' && admins <= 1;
  const why = u.you ? 'You cannot delete your own account.' :
      lastAdmin     ? 'The last admin cannot be deleted.' :
                      null;
  const del = actionButton('Delete', async () => {
    if (!confirm(`Delete the user ${u.name}? ${u.name} is logged out at once.`))
      return;
    await api.del(`/users/${encodeURIComponent(u.name)}`);
    clear(status, notice(`The user ${u.name} was deleted.`, 'ok'));
    await reload();
  }, {class: 'danger delete-user', disabled: !!why, title: why, errorTarget: status});
  wrap.append(reset, del);
  if (why) wrap.append(h('span', {class: 'hint muted'}, why));
  return wrap;
}

function resetForm(u, status, reload, done) {
  const pw = passwordInput({
    required: true,
    'aria-label': `New password for ${u.name}`,
    placeholder: `at least ${MIN_PASSWORD} characters`
  });
  const err = h('div', {'aria-live': 'polite'});
  const form = h(
      'form', {class: 'inline-form', novalidate: true}, pw,
      h('button', {type: 'submit', class: 'primary'}, 'Set password'),
      h('button', {
        type: 'button',
        onclick: () => {
          form.remove();
          done();
        }
      },
        'Cancel'),
      err);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    if ([...pw.value].length < MIN_PASSWORD) {
      clear(err, errorBox(`A password has at least ${MIN_PASSWORD} characters.`));
      pw.focus();
      return;
    }
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      await api.put(
          `/users/${encodeURIComponent(u.name)}`, {password: pw.value});
      pw.value = '';
      clear(status, notice(
          `The password of ${u.name} was changed; ${u.name} is logged out ` +
              'and logs in with the new one.', 'ok'));
      await reload();
    } catch (e) {
      clear(err, errorBox(e, 'The password was not changed'));
      btn.disabled = false;
    }
  });
  setTimeout(() => pw.focus(), 0);
  return form;
}

function userCreateForm(status, reload) {
  const name = h('input', {
    name: 'name',
    required: true,
    autocomplete: 'username',
    pattern: '[A-Za-z0-9._\\-]{1,64}',
    maxlength: '64'
  });
  const role = roleSelect({name: 'role'}, 'operator');
  const pw = passwordInput({name: 'password', required: true});
  const pw2 = passwordInput({name: 'password2', required: true});
  const err = h('div', {'aria-live': 'polite'});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Add user');
  const form = h(
      'form', {id: 'user-create', class: 'sub-form'}, h('h3', {}, 'Add a user'),
      h('div', {class: 'row'},
        field('Name', name, 'letters, digits, . _ -'),
        field('Role', role, 'operator: backups and restores'),
        field('Password', pw, `at least ${MIN_PASSWORD} characters`),
        field('Password again', pw2)),
      err, submit);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    clear(err);
    if (pw.value !== pw2.value) {
      clear(err, errorBox('The two passwords differ.'));
      pw2.focus();
      return;
    }
    if ([...pw.value].length < MIN_PASSWORD) {
      clear(err, errorBox(`A password has at least ${MIN_PASSWORD} characters.`));
      pw.focus();
      return;
    }
    submit.disabled = true;
    try {
      const made = await api.post(
          '/users', {name: name.value.trim(), role: role.value, password: pw.value});
      form.reset();
      role.value = 'operator';
      clear(status, notice(
          `${made.name} can now log in as ${made.role}. Tell them their ` +
              'password in person or by another channel.', 'ok'));
      await reload();
    } catch (e) {
      clear(err, errorBox(e, 'The user was not added'));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// ------------------------------------------------------------------ tokens

async function renderTokens(box, ctx) {
  const status = h('div', {'aria-live': 'polite'});
  const secret = h('div', {id: 'token-secret-box'});
  const list = h('div', {}, h('p', {class: 'muted'}, 'Loading tokens…'));
  const showAll = h('input', {type: 'checkbox', id: 'token-show-all'});
  let tokens = [];
  const draw = () => clear(list, tokensTable(tokens, showAll.checked, status, reload));
  const reload = async () => {
    try {
      tokens = (await api.get('/tokens')).tokens;
    } catch (e) {
      clear(list, errorBox(e, 'The tokens could not be listed'));
      return;
    }
    draw();
  };
  showAll.addEventListener('change', draw);
  clear(
      box,
      section(
          'API tokens',
          h('p', {class: 'muted'},
            'For scripts, monitoring (Prometheus: an auditor token) and the ' +
                'haven command line. A token acts with its role until it ' +
                'expires or is revoked.'),
          status, secret,
          h('label', {class: 'check', for: 'token-show-all'}, showAll,
            ' Show revoked and expired tokens'),
          list, tokenCreateForm(secret, status, reload)));
  await reload();
}

function tokenState(t) {
  if (t.revoked) return badge('cancelled', 'revoked');
  if (!t.active) return badge('warning', 'expired');
  return badge('ok', 'active');
}

function tokensTable(tokens, showAll, status, reload) {
  const rows = tokens.filter(t => showAll || t.active).reverse();
  const hidden = tokens.length - rows.length;
  const columns = [
    {title: 'Name', cell: t => h('strong', {}, t.name)},
    {title: 'Role', cell: t => t.role},
    {title: 'State', cell: tokenState},
    {
      title: 'Created',
      cell: t => h('span', {}, timeAgo(t.created),
                   h('span', {class: 'muted'}, ` by ${t.created_by}`))
    },
    {
      title: 'Expires',
      cell: t => t.expires ? timeAgo(t.expires) :
                             h('span', {class: 'muted'}, 'never')
    },
    {title: 'Last used', cell: t => timeAgo(t.last_used)},
    {
      title: 'Actions',
      cell: t => t.active ?
          actionButton('Revoke', async () => {
            if (!confirm(`Revoke the token ${t.name}? Whatever uses it is ` +
                         'refused from now on. This cannot be undone.'))
              return;
            await api.del(`/tokens/${t.id}`);
            clear(status, notice(`The token ${t.name} was revoked.`, 'ok'));
            await reload();
          }, {class: 'danger revoke-token', errorTarget: status}) :
          ''
    },
  ];
  return h(
      'div', {},
      table(columns, rows, {
        id: 'token-table',
        class: 'stack',
        rowData: t => ({token: String(t.id), name: t.name}),
        empty: hidden ? 'No active tokens (the others are revoked or expired).' :
                        'No tokens yet — create one below.',
      }));
}

function tokenCreateForm(secretBox, status, reload) {
  const name = h('input', {
    name: 'name',
    required: true,
    autocomplete: 'off',
    pattern: '[A-Za-z0-9._\\-]{1,64}',
    maxlength: '64',
    placeholder: 'e.g. prometheus'
  });
  const role = roleSelect({name: 'role'}, 'auditor');
  const days = h('input', {
    name: 'expires_days',
    type: 'number',
    min: '0',
    max: '3650',
    step: '1',
    value: '365',
    required: true
  });
  days.defaultValue = '365';  // what form.reset() goes back to
  const err = h('div', {'aria-live': 'polite'});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Create token');
  const form = h(
      'form', {id: 'token-create', class: 'sub-form'},
      h('h3', {}, 'Create a token'),
      h('div', {class: 'row'}, field('Name', name, 'letters, digits, . _ -'),
        field('Role', role, 'give the least role that does the job'),
        field('Expires after (days)', days, '0: never')),
      err, submit);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    clear(err);
    const n = Number(days.value);
    if (!Number.isInteger(n) || n < 0 || n > 3650) {
      clear(err, errorBox('Expiry is a whole number of days from 0 (never) to 3650.'));
      days.focus();
      return;
    }
    submit.disabled = true;
    try {
      const made = await api.post(
          '/tokens', {name: name.value.trim(), role: role.value, expires_days: n});
      form.reset();
      role.value = 'auditor';
      clear(status);
      showSecret(secretBox, made);
      await reload();
    } catch (e) {
      clear(err, errorBox(e, 'The token was not created'));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// The new token, once: a read-only field to copy from, a copy button and a
// warning. Dismissing it forgets the secret.
function showSecret(box, made) {
  const value = h('input', {
    id: 'token-secret',
    class: 'mono',
    readonly: true,
    value: made.token,
    'aria-label': `The secret of token ${made.name}`,
    autocomplete: 'off',
    spellcheck: 'false'
  });
  const copied = h('span', {class: 'muted', 'aria-live': 'polite'});
  const copy = h('button', {type: 'button', id: 'token-copy', class: 'primary'}, 'Copy');
  copy.addEventListener('click', async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(value.value);
      copied.textContent = 'Copied.';
    } catch {
      // Without the clipboard API (or its permission): selected, copy by hand.
      copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  });
  const done = h('button', {type: 'button', id: 'token-done'}, 'I have saved it');
  done.addEventListener('click', () => clear(box));
  clear(
      box,
      h('div', {class: 'notice warn token-once', role: 'alert'},
        h('strong', {}, `Token ${made.name} (${made.role}) — copy it now. `),
        'This is the only time it is shown: havend keeps only a hash of it. ' +
            'Anyone who has it can act as ' + made.role +
            '; keep it in a file only its user can read.',
        h('div', {class: 'secret-row'}, value, copy, done), copied));
  value.focus();
  value.select();
}

// ------------------------------------------------------------ notifications

async function renderNotify(box, ctx) {
  const body = h('div', {}, h('p', {class: 'muted'}, 'Loading notification settings…'));
  clear(
      box,
      section(
          'Notifications',
          h('p', {class: 'muted'},
            'Who hears of failed, partial and interrupted jobs, VMs overdue ' +
                'for a backup, and the daily report: a webhook (a signed ' +
                'JSON POST) and/or e-mail. Saved settings apply at once.'),
          body));
  let settings;
  try {
    settings = await api.get('/settings/notifications');
  } catch (e) {
    clear(body, errorBox(e, 'The notification settings could not be read'));
    return;
  }
  clear(body, notifyForm(settings));
}

function effectLine(s) {
  const parts = [];
  parts.push(s.active.webhook ? badge('ok', 'webhook on') : badge('muted', 'webhook off'));
  parts.push(' ');
  parts.push(s.active.mail ? badge('ok', 'e-mail on') : badge('muted', 'e-mail off'));
  parts.push(' ');
  parts.push(
      s.source === 'api' ?
          h('span', {class: 'muted'}, 'Saved here by ', s.changed_by || '?', ' ',
            timeAgo(s.changed), '.') :
          h('span', {class: 'muted'},
            'From havend.conf ([Notify]); saving here replaces it.'));
  return h('p', {class: 'notify-effect', id: 'notify-effect'}, parts);
}

function secretField(label, name, isSet, hint) {
  const input = h('input', {
    name,
    type: 'password',
    autocomplete: 'new-password',
    placeholder: isSet ? 'set — leave empty to keep' : 'not set',
  });
  const removeBox = h('input', {type: 'checkbox', name: name + '_remove', disabled: !isSet});
  const remove = h('label', {class: 'check'}, removeBox, ' Remove it');
  removeBox.addEventListener('change', () => {
    input.disabled = removeBox.checked;
    if (removeBox.checked) input.value = '';
  });
  const f = field(label, input, hint);
  if (isSet) f.append(remove);
  return {node: f, input, removeBox};
}

function notifyForm(s) {
  const effect = h('div', {}, effectLine(s));
  const text = (name, value, attrs = {}) =>
      h('input', {name, value: value || '', autocomplete: 'off', ...attrs});
  const webhookUrl = text('webhook_url', s.webhook_url, {
    type: 'url',
    placeholder: 'https://hooks.example.org/haven',
    spellcheck: 'false'
  });
  const webhookSecret = secretField(
      'Webhook secret', 'webhook_secret', s.webhook_secret.set,
      'HMAC key for the X-Haven-Signature header');
  const smtpUrl = text(
      'smtp_url', s.smtp_url,
      {placeholder: 'smtp://mail.example.org:587', spellcheck: 'false'});
  const from = text('smtp_from', s.smtp_from, {type: 'email', placeholder: 'haven@example.org'});
  const to = text('smtp_to', (s.smtp_to || []).join(', '), {placeholder: 'ops@example.org, oncall@example.org'});
  const user = text('smtp_user', s.smtp_user);
  const pass = secretField('SMTP password', 'smtp_password', s.smtp_password.set,
                           'needed with a user; sent only over TLS');
  const report = text('daily_report', s.daily_report, {placeholder: '08:00'});
  const onSuccess = h('input', {type: 'checkbox', name: 'on_success', checked: s.on_success});
  const err = h('div', {'aria-live': 'polite'});
  const testOut = h('div', {id: 'notify-test-result', 'aria-live': 'polite'});
  const save = h('button', {type: 'submit', class: 'primary', id: 'notify-save'}, 'Save');
  let dirty = false;
  const test = actionButton('Send a test', async () => {
    if (dirty) {
      clear(testOut, notice('Save your changes first: the test goes through the saved settings.', 'warn'));
      return;
    }
    clear(testOut, h('p', {class: 'muted'}, 'Sending… (a receiver that does not answer takes up to 20 s)'));
    const r = await api.post('/settings/notifications/test', {});
    clear(testOut, testResults(r));
  }, {id: 'notify-test', errorTarget: testOut});

  const form = h(
      'form', {id: 'notify-form', novalidate: true}, effect,
      h('fieldset', {},
        h('legend', {}, 'Webhook'),
        h('div', {class: 'row'},
          h('div', {class: 'field-wide'}, field('Webhook URL', webhookUrl, 'empty: no webhook')),
          webhookSecret.node)),
      h('fieldset', {},
        h('legend', {}, 'E-mail'),
        h('div', {class: 'row'},
          h('div', {class: 'field-wide'},
            field('SMTP server', smtpUrl,
                  'smtp:// (STARTTLS when offered) or smtps://; empty: no e-mail')),
          field('From', from), h('div', {class: 'field-wide'}, field('To', to, 'addresses, separated by commas'))),
        h('div', {class: 'row'}, field('SMTP user', user, 'empty: no login'), pass.node)),
      h('fieldset', {},
        h('legend', {}, 'When'),
        h('div', {class: 'row'},
          field('Daily report at', report,
                'a calendar event: 08:00, Mon..Fri 07:30; empty: no report (e-mail only)')),
        h('label', {class: 'check'}, onSuccess,
          ' Also tell of jobs that succeeded (failures, partial and interrupted jobs are always told)')),
      err, h('div', {class: 'actions'}, save, test), testOut);
  form.addEventListener('input', () => {
    if (!dirty) clear(testOut);  // a result of the saved settings, not these
    dirty = true;
  });
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    clear(err);
    const body = {
      webhook_url: webhookUrl.value.trim(),
      smtp_url: smtpUrl.value.trim(),
      smtp_from: from.value.trim(),
      smtp_to: to.value.split(/[\s,;]+/).filter(Boolean),
      smtp_user: user.value.trim(),
      daily_report: report.value.trim(),
      on_success: onSuccess.checked,
    };
    // A secret is sent only when typed (or removed): an empty field keeps it.
    for (const [key, f] of [['webhook_secret', webhookSecret], ['smtp_password', pass]]) {
      if (f.removeBox.checked) body[key] = '';
      else if (f.input.value) body[key] = f.input.value;
    }
    save.disabled = true;
    try {
      const saved = await api.put('/settings/notifications', body);
      dirty = false;
      for (const f of [webhookSecret, pass]) f.input.value = '';
      // Redraw with what havend now holds (secrets as set / not set).
      form.replaceWith(notifyForm(saved));
      const again = document.getElementById('notify-form');
      again.querySelector('.form-status').replaceChildren(
          notice('Saved. The new settings apply now; send a test to check them.', 'ok'));
    } catch (e) {
      clear(err, errorBox(e, 'The settings were not saved'));
    } finally {
      save.disabled = false;
    }
  });
  form.prepend(h('div', {class: 'form-status', 'aria-live': 'polite'}));
  return form;
}

function testResults(r) {
  const items = r.results.map(x => h(
      'li', {dataset: {channel: x.channel, sent: String(x.sent)}},
      x.sent ? badge('ok', 'arrived') : badge('failed', 'failed'), ' ',
      x.channel === 'mail' ? 'E-mail via ' : 'Webhook to ', h('code', {}, x.receiver),
      x.sent ? (x.channel === 'mail' ? ': the server took it; check the inbox.' :
                                       ': the receiver took it.') :
               h('span', {}, ': ', x.error || 'no reason given')));
  return h(
      'div', {class: r.sent ? 'notice ok' : 'notice warn', role: 'status'},
      h('strong', {}, r.sent ? 'Test sent.' : 'The test did not get through everywhere.'),
      h('ul', {class: 'plain'}, items));
}
