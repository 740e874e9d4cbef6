// Agents (#/agents): the agents enrolled with this appliance and when each
// was last heard of; an admin adds one (a one-time enrollment token and
// the command to run on the agent, shown once) or revokes one.
//   GET  /agents                    the table (auditor)
//   POST /agents/enrollments        a token and its command (admin)
//   POST /agents/{id}/revoke        (admin)
//   POST /agents/{id}/backup        "Back up now" (operator): a job, then #/job
//   GET  /points?repository=R&agent=HOSTNAME&kind=file
//                                   each agent's latest point (matched by
//                                   agent_id)
// Everything an agent reports (name, hostname, version) is set as text.
import * as api from '../api.js';
import {actionButton, badge, clear, errorBox, field, fmtAgo, fmtTime, go, h, notice, pageTitle, section, table, timeAgo, toDate} from '../ui.js';

// An agent not heard of for longer than this is flagged.
const QUIET_SECONDS = 2 * 86400;

export async function render(view, ctx) {
  const admin = api.hasRole(ctx.me, 'admin');
  const operator = api.hasRole(ctx.me, 'operator');
  const status = h('div', {'aria-live': 'polite'});
  const once = h('div', {id: 'enroll-box'});
  const list = h('div', {}, h('p', {class: 'muted'}, 'Loading agents…'));
  const form = admin ? addForm(once, status, () => reload()) : null;
  const add = admin ?
      h('button', {type: 'button', id: 'add-agent', class: 'primary'},
        'Add agent') :
      null;
  if (add) {
    add.addEventListener('click', () => {
      form.hidden = false;
      form.querySelector('input').focus();
    });
  }
  const reload = async () => {
    let agents;
    try {
      agents = (await api.get('/agents')).agents;
    } catch (e) {
      clear(list, errorBox(e, 'The agents could not be listed'));
      return;
    }
    clear(list, agentsTable(agents, admin, operator, status, reload));
    latestPoints(list, agents);
  };
  clear(
      view, pageTitle('Agents', add),
      h('p', {class: 'muted'},
        'Agents are the haven program on guests (file backups) and on ' +
            'other hypervisor hosts. Each one connects to this appliance ' +
            'itself, pins its certificate and may only add and read its own ' +
            'recovery points.'),
      admin ? null :
              notice('Agents are added and revoked by an admin.', 'info'),
      status, once, form, section('Enrolled agents', list));
  await reload();
  // A refresh would drop a "Back up now" form being filled in.
  const timer = setInterval(() => {
    if (!list.querySelector('.agent-backup-row')) reload();
  }, 60000);
  ctx.onLeave(() => clearInterval(timer));
}

function lastContact(a) {
  const d = toDate(a.last_contact);
  const quiet = !d || (Date.now() - d.getTime()) / 1000 > QUIET_SECONDS;
  if (a.revoked || !quiet) return timeAgo(a.last_contact);
  return h(
      'span', {}, timeAgo(a.last_contact), ' ',
      h('span', {
        title: d ? 'not heard of for more than 2 days' :
                   'has not called the appliance yet'
      },
        badge('warning', d ? 'quiet' : 'never')));
}

// Each agent's latest point, filled in after the table is shown: the
// points of its repository taken on its host name, the first one its own
// (agent_id). A listing that fails leaves "–" (the points page says why).
async function latestPoints(list, agents) {
  await Promise.all(agents.map(async a => {
    const cell =
        list.querySelector(`tr[data-id="${CSS.escape(a.id)}"] .agent-latest`);
    if (!cell) return;
    if (!a.hostname || !a.repository) {
      clear(cell, '–');
      return;
    }
    try {
      const r = await api.get('/points', {
        repository: a.repository,
        agent: a.hostname,
        kind: a.kind === 'host' ? 'vm' : 'file',
        limit: 100
      });
      const p = (r.points || []).find(x => x.agent_id === a.id);
      clear(
          cell,
          p ? h('a', {
            href: `#/point?repo=${
                encodeURIComponent(p.repository || a.repository)}&id=${
                encodeURIComponent(p.id)}`,
            title: `${p.name} — ${fmtTime(p.time)}`
          },
                timeAgo(p.time)) :
              h('span', {class: 'muted'}, 'none yet'));
    } catch {
      clear(cell, '–');
    }
  }));
}

function agentsTable(agents, admin, operator, status, reload) {
  const columns = [
    {title: 'Name', cell: a => h('strong', {}, a.name)},
    {title: 'Kind', cell: a => a.kind},
    {title: 'Host name', cell: a => a.hostname || '–'},
    {title: 'Version', cell: a => a.version || '–'},
    {title: 'Repository', cell: a => a.repository},
    {title: 'Last contact', cell: lastContact},
    {
      title: 'Latest point',
      cell: () => h('span', {class: 'agent-latest'}, '…')
    },
    {
      title: 'State',
      cell: a => a.revoked ?
          h('span', {}, badge('cancelled', 'revoked'),
            h('span', {class: 'muted'}, ' ' + fmtTime(a.revoked))) :
          badge('ok', 'enrolled')
    },
  ];
  if (operator)
    columns.push({
      title: 'Actions',
      cell: a => a.revoked ? '' :
                             h('div', {class: 'agent-actions'}, backupButton(a),
                               admin ? revokeButton(a, status, reload) : null)
    });
  return table(columns, agents, {
    id: 'agent-table',
    class: 'stack',
    rowData: a => ({agent: a.name, id: a.id}),
    empty: admin ? 'No agents yet — add one with “Add agent”.' :
                   'No agents are enrolled yet.',
  });
}

function revokeButton(a, status, reload) {
  return actionButton('Revoke', async () => {
    if (!confirm(
            `Revoke the agent ${a.name}? Its credential is refused from ` +
            'now on; its recovery points stay. To use it again, enroll ' +
            'it with a new token.'))
      return;
    await api.post(`/agents/${encodeURIComponent(a.id)}/revoke`);
    clear(status, notice(`The agent ${a.name} was revoked.`, 'ok'));
    await reload();
  }, {class: 'danger revoke-agent', errorTarget: status});
}

// "Back up now": a small form under the agent's row (paths one per line,
// the backup's name, exclude globs); on 202 the job page shows progress.
function backupButton(a) {
  const btn = h(
      'button', {type: 'button', class: 'backup-agent primary'}, 'Back up now');
  btn.addEventListener('click', () => {
    const row = btn.closest('tr');
    const open = row.nextElementSibling;
    if (open && open.classList.contains('agent-backup-row')) {
      open.querySelector('textarea, input').focus();
      return;
    }
    const cols = row.children.length;
    const formRow =
        h('tr', {class: 'agent-backup-row', 'data-agent': a.name},
          h('td', {colspan: String(cols)},
            (a.kind === 'host' ? vmBackupForm : backupForm)(a, () => {
              formRow.remove();
              btn.focus();
            })));
    row.after(formRow);
    formRow.querySelector('textarea, input').focus();
  });
  return btn;
}

// `haven agent run` asks for work at least every 55 s: an agent silent for
// longer may not be running, and its job would wait (15 minutes, then fail).
function quietWarning(a) {
  const d = toDate(a.last_contact);
  if (d && (Date.now() - d.getTime()) / 1000 < 180) return null;
  return notice(
      d ? `${a.name} last called ${fmtAgo(a.last_contact)}. The job waits ` +
              'until “haven agent run” on it asks for work, and fails after ' +
              '15 minutes if it does not.' :
          `${a.name} has not called this appliance yet: start ` +
              '“haven agent run” (systemctl enable --now haven-agent) on it, ' +
              'or the job fails after 15 minutes.',
      'warn');
}

function lines(text) {
  return text.split('\n').map(s => s.trim()).filter(Boolean);
}

function backupForm(a, close) {
  const paths = h('textarea', {
    name: 'paths',
    rows: '3',
    required: true,
    spellcheck: 'false',
    class: 'mono',
    placeholder: '/etc\n/home'
  });
  const name = h('input', {
    name: 'name',
    value: a.name,
    maxlength: '255',
    autocomplete: 'off',
    required: true
  });
  const excludes = h('textarea', {
    name: 'excludes',
    rows: '2',
    spellcheck: 'false',
    class: 'mono',
    placeholder: '*.tmp'
  });
  const err = h('div', {'aria-live': 'polite'});
  const submit =
      h('button', {type: 'submit', class: 'primary backup-agent-start'},
        'Start backup');
  const cancel = h('button', {type: 'button'}, 'Cancel');
  cancel.addEventListener('click', close);
  paths.addEventListener('input', () => clear(err));
  const nameField = field(
      'Backup name', name,
      'points of one name form one series (default: the agent’s name)');
  nameField.classList.add('field-name');
  const form =
      h('form', {class: 'agent-backup card', novalidate: true},
        h('h3', {}, `Back up files of ${a.name}`), quietWarning(a),
        h('div', {class: 'row'},
          field('Paths on the agent', paths, 'absolute paths, one per line'),
          field('Exclude', excludes, 'optional: globs, one per line')),
        nameField, err, h('div', {class: 'actions'}, submit, cancel));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    clear(err);
    const body = {
      name: name.value.trim() || a.name,
      paths: lines(paths.value),
      excludes: lines(excludes.value)
    };
    if (!body.paths.length) {
      clear(
          err,
          h('div', {class: 'error'},
            'Give at least one path to back up, such as /etc.'));
      paths.focus();
      return;
    }
    submit.disabled = true;
    try {
      const r =
          await api.post(`/agents/${encodeURIComponent(a.id)}/backup`, body);
      go('#/job', {id: r.job});
    } catch (e) {
      clear(err, errorBox(e, 'The backup was not started'));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// A host agent backs up one of its libvirt VMs (bitmap-incremental after the
// first point; docs/agents.md "Host agents").
function vmBackupForm(a, close) {
  const vm = h('input', {
    name: 'vm',
    maxlength: '255',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'web1'
  });
  const full = h('input', {type: 'checkbox', name: 'full'});
  const err = h('div', {'aria-live': 'polite'});
  const submit =
      h('button', {type: 'submit', class: 'primary backup-agent-start'},
        'Start backup');
  const cancel = h('button', {type: 'button'}, 'Cancel');
  cancel.addEventListener('click', close);
  vm.addEventListener('input', () => clear(err));
  const form = h(
      'form', {class: 'agent-backup card', novalidate: true},
      h('h3', {}, `Back up a VM on ${a.name}`), quietWarning(a),
      field(
          'VM', vm,
          'the libvirt domain’s name on that host; the point is named after it'),
      h('label', {class: 'checkline'}, full,
        h('span', {}, h('strong', {}, 'Read every disk whole'),
          h('span', {class: 'muted'},
            ' — otherwise only what changed since its last point (dirty bitmaps).'))),
      err, h('div', {class: 'actions'}, submit, cancel));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    clear(err);
    const name = vm.value.trim();
    if (!name) {
      clear(
          err,
          h('div', {class: 'error'}, 'Give the name of the VM to back up.'));
      vm.focus();
      return;
    }
    submit.disabled = true;
    try {
      const r = await api.post(
          `/agents/${encodeURIComponent(a.id)}/backup`,
          {vm: name, full: full.checked});
      go('#/job', {id: r.job});
    } catch (e) {
      clear(err, errorBox(e, 'The backup was not started'));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function addForm(onceBox, status, reload) {
  const name = h('input', {
    name: 'name',
    autocomplete: 'off',
    pattern: '[A-Za-z0-9._\\-]{1,64}',
    maxlength: '64',
    placeholder: 'e.g. web1'
  });
  const kind = h(
      'select', {name: 'kind'}, h('option', {value: 'guest'}, 'guest (files)'),
      h('option', {value: 'host'}, 'host (VMs)'));
  const err = h('div', {'aria-live': 'polite'});
  const submit =
      h('button', {type: 'submit', class: 'primary'}, 'Make enrollment token');
  const cancel = h('button', {type: 'button'}, 'Cancel');
  const form =
      h('form', {id: 'agent-create', class: 'card', hidden: true},
        h('h2', {}, 'Add an agent'),
        h('div', {class: 'row'},
          field(
              'Name', name,
              'optional: letters, digits, . _ - (default: its host name)'),
          field('Kind', kind, 'guest: files inside a VM; host: a hypervisor')),
        err, h('div', {class: 'actions'}, submit, cancel));
  cancel.addEventListener('click', () => {
    form.reset();
    clear(err);
    form.hidden = true;
  });
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    clear(err);
    submit.disabled = true;
    try {
      const body = {kind: kind.value};
      if (name.value.trim()) body.name = name.value.trim();
      const made = await api.post('/agents/enrollments', body);
      form.reset();
      form.hidden = true;
      clear(status);
      showOnce(onceBox, made);
      await reload();
    } catch (e) {
      clear(err, errorBox(e, 'No token was made'));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// The token and the command, once: dismissing the box forgets them.
function showOnce(box, made) {
  const command = h('pre', {id: 'enroll-command', tabindex: '0'}, made.command);
  const copied = h('span', {class: 'muted', 'aria-live': 'polite'});
  const copy =
      h('button', {type: 'button', id: 'enroll-copy', class: 'primary'},
        'Copy command');
  copy.addEventListener('click', async () => {
    const range = document.createRange();
    range.selectNodeContents(command);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try {
      await navigator.clipboard.writeText(made.command);
      copied.textContent = 'Copied.';
    } catch {
      copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  });
  const done = h('button', {type: 'button', id: 'enroll-done'}, 'Done');
  done.addEventListener('click', () => clear(box));
  const who = made.name ? `the ${made.kind} agent ${made.name}` :
                          `a ${made.kind} agent (named after its host)`;
  clear(
      box,
      h('div', {class: 'notice warn', role: 'alert'},
        h('strong', {}, `Enrollment token for ${who}. `),
        `It is shown once; expires at ${fmtTime(made.expires)} and works ` +
            'for one agent only. Run this as root on the agent:',
        command,
        h('p', {class: 'muted enroll-note'},
          `Its points go to the repository ${made.repository}. The agent ` +
              `pins this appliance's certificate (${made.fingerprint}); if ` +
              `${made.url} is not how the agent reaches this appliance, ` +
              'change the address in the command.'),
        h('div', {class: 'secret-row'}, copy, done), copied));
  command.focus();
}
