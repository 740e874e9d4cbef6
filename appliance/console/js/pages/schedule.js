// #/schedule?id=N edits a schedule, #/schedule (no id) creates one. The
// calendar expression is checked by havend as it is typed (GET /calendar):
// its normalized form and next five runs, or what is wrong with it.
import * as api from '../api.js';
import {actionButton, badge, clear, errorBox, field, fmtTime, go, h, notice, pageTitle, section, timeAgo} from '../ui.js';
import {retentionWords, whatItRuns} from './schedules.js';

const KEEPS = [
  ['keep_last', 'Last', 'the newest N points'],
  ['keep_hourly', 'Hourly', 'one per hour for N hours'],
  ['keep_daily', 'Daily', 'one per day for N days'],
  ['keep_weekly', 'Weekly', 'one per week for N weeks'],
  ['keep_monthly', 'Monthly', 'one per month for N months'],
  ['keep_yearly', 'Yearly', 'one per year for N years'],
];

function numInput(name, value, attrs = {}) {
  return h('input', {
    type: 'number',
    name,
    inputmode: 'numeric',
    min: '0',
    value: value === undefined || value === null ? '' : String(value),
    class: 'num-input',
    ...attrs
  });
}

function checkbox(name, checked, attrs = {}) {
  return h('input', {type: 'checkbox', name, checked: !!checked, ...attrs});
}

function checkField(input, text, hint) {
  if (!input.id) input.id = 'f-' + Math.random().toString(36).slice(2, 9);
  return h('div', {class: 'field check-field'},
           h('label', {for: input.id}, input, ' ', text),
           hint ? h('div', {class: 'hint'}, hint) : null);
}

function intOf(input) {
  const v = input.value.trim();
  if (v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : v;  // havend names a bad value
}

function splitList(text) {
  return text.split(/[\s,]+/).map(s => s.trim()).filter(Boolean);
}

// A retention policy editor (keep_* counts and keep_within). get() returns
// the policy or null when every field is empty.
function retentionEditor(prefix, policy) {
  policy = policy || {};
  const inputs = {};
  const grid = h('div', {class: 'keep-grid'});
  for (const [key, label, hint] of KEEPS) {
    inputs[key] = numInput(key, policy[key], {id: `${prefix}-${key}`, max: '1000000'});
    grid.append(field(label, inputs[key], hint));
  }
  inputs.keep_within = h('input', {
    name: 'keep_within',
    id: `${prefix}-keep_within`,
    value: policy.keep_within || '',
    placeholder: '7d',
    class: 'num-input'
  });
  grid.append(field('Within', inputs.keep_within, 'all points younger than this ("7d", "1y6m")'));
  return {
    node: grid,
    get() {
      const out = {};
      for (const [key] of KEEPS) {
        const v = intOf(inputs[key]);
        if (v !== undefined) out[key] = v;
      }
      const w = inputs.keep_within.value.trim();
      if (w) out.keep_within = w;
      return Object.keys(out).length ? out : null;
    }
  };
}

async function loadVms() {
  try {
    const hosts = await api.get('/hosts');
    const local = (hosts.hosts || []).find(x => x.local);
    if (!local) return [];
    const r = await api.get(`/hosts/${encodeURIComponent(local.name)}/vms`);
    return (r.vms || []).filter(v => v.defined).map(v => v.name);
  } catch {
    return [];  // the VM list only helps; names can be typed
  }
}

// The agents a schedule may back up: enrolled, not revoked.
async function loadAgents() {
  try {
    const r = await api.get('/agents');
    return (r.agents || []).filter(a => !a.revoked);
  } catch {
    return [];  // the list only helps; the select then says so
  }
}

function linesOf(text) {
  return text.split('\n').map(s => s.trim()).filter(Boolean);
}

export async function render(view, ctx) {
  const id = ctx.params.id;
  const isAdmin = api.hasRole(ctx.me, 'admin');
  const isOperator = api.hasRole(ctx.me, 'operator');
  clear(view, pageTitle(id ? 'Schedule' : 'New schedule'), h('p', {class: 'muted'}, 'Loading…'));

  let s = null, repos = [], vms = [], agents = [];
  try {
    const [sched, rep, vmNames, agentList] = await Promise.all([
      id ? api.get(`/schedules/${encodeURIComponent(id)}`) : null,
      api.get('/repositories').catch(() => ({repositories: []})),
      loadVms(),
      loadAgents(),
    ]);
    s = sched;
    repos = (rep.repositories || []).map(r => r.name);
    vms = vmNames;
    agents = agentList;
  } catch (e) {
    clear(view, pageTitle('Schedule'), errorBox(e, 'The schedule could not be read'),
          h('p', {}, h('a', {href: '#/schedules'}, 'Back to the schedules')));
    return;
  }
  if (!id && !isAdmin) {
    clear(view, pageTitle('New schedule'),
          notice('Only an admin can create schedules.', 'warn'),
          h('p', {}, h('a', {href: '#/schedules'}, 'Back to the schedules')));
    return;
  }
  const spec = s || {
    name: '',
    calendar: 'daily',
    kind: 'backup',
    repository: repos[0] || '',
    params: {all: true},
    retention: null,
    random_delay_seconds: 0,
    persistent: true,
    enabled: true
  };
  const params = spec.params || {};

  // ------------------------------------------------------------ basics
  const name = h('input', {
    id: 'sched-name',
    name: 'name',
    required: true,
    value: spec.name,
    maxlength: '64',
    pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}',
    autocomplete: 'off'
  });
  const calendar = h('input', {
    id: 'sched-calendar',
    name: 'calendar',
    required: true,
    value: spec.calendar,
    maxlength: '256',
    autocomplete: 'off',
    spellcheck: 'false',
    class: 'mono wide'
  });
  const preview = h('div', {id: 'calendar-preview', class: 'calendar-preview', 'aria-live': 'polite'});
  const delay = numInput('random_delay_seconds', spec.random_delay_seconds || 0,
                         {id: 'sched-delay', max: '86400'});
  const persistent = checkbox('persistent', spec.persistent !== false, {id: 'sched-persistent'});
  const enabled = checkbox('enabled', spec.enabled !== false, {id: 'sched-enabled'});
  const kind = h('select', {id: 'sched-kind', name: 'kind'}, [
    ['backup', 'Back up VMs'], ['forget', 'Forget old points (retention)'],
    ['check', 'Check the repository'], ['gc', 'Free space (gc)'],
    ['agent-backup', 'Back up an agent’s files']
  ].map(([v, t]) => h('option', {value: v, selected: spec.kind === v}, t)));
  const repoNames = repos.includes(spec.repository) || !spec.repository ?
      repos : [spec.repository, ...repos];
  const repository = h('select', {id: 'sched-repository', name: 'repository'},
                       repoNames.map(r => h('option', {value: r, selected: r === spec.repository}, r)));

  // ---------------------------------------------------- per-kind params
  // backup
  const allVms = h('input', {type: 'radio', name: 'vm-scope', value: 'all', id: 'scope-all',
                             checked: params.all === true || !params.vms});
  const someVms = h('input', {type: 'radio', name: 'vm-scope', value: 'some', id: 'scope-some',
                              checked: Array.isArray(params.vms)});
  const chosen = new Set(Array.isArray(params.vms) ? params.vms : []);
  const vmBoxes = vms.map(v => h('label', {class: 'vm-choice'},
                                 h('input', {type: 'checkbox', class: 'sched-vm', value: v,
                                             checked: chosen.has(v)}), ' ', v));
  const otherVms = h('input', {
    id: 'sched-vms-other',
    value: [...chosen].filter(v => !vms.includes(v)).join(', '),
    placeholder: 'web-*, db1',
    class: 'wide'
  });
  const exclude = h('input', {
    id: 'sched-exclude',
    value: (params.exclude || []).join(', '),
    placeholder: 'test-*',
    class: 'wide'
  });
  const parallel = numInput('parallel', params.parallel, {id: 'sched-parallel', min: '1', max: '32'});
  const limitRead = numInput('limit_read', params.limit_read, {id: 'sched-limit-read'});
  const adaptive = checkbox('adaptive', params.adaptive, {id: 'sched-adaptive'});
  const full = checkbox('full', params.full, {id: 'sched-full'});
  const keepAfter = checkbox('retention-on', !!spec.retention, {id: 'sched-retention-on'});
  const backupRetention = retentionEditor('ret', spec.retention);
  const retentionBox = h('div', {class: 'retention-box'}, backupRetention.node);
  const syncRetention = () => { retentionBox.hidden = !keepAfter.checked; };
  keepAfter.addEventListener('change', syncRetention);
  syncRetention();
  const vmList = h('div', {class: 'vm-list'},
                   vmBoxes.length ? vmBoxes : h('span', {class: 'muted'}, 'No VMs are defined on this host.'),
                   field('Other VM names or patterns', otherVms, 'comma-separated; * and ? match'));
  const syncScope = () => { vmList.hidden = !someVms.checked; };
  allVms.addEventListener('change', syncScope);
  someVms.addEventListener('change', syncScope);
  syncScope();
  const backupBox = h('div', {'data-kind': 'backup'},
    h('fieldset', {class: 'plain'},
      h('legend', {}, 'Which VMs'),
      h('label', {class: 'choice', for: 'scope-all'}, allVms, h('span', {}, h('strong', {}, 'All VMs of this host'),
        h('div', {class: 'hint'}, 'VMs defined later are included'))),
      h('label', {class: 'choice', for: 'scope-some'}, someVms, h('span', {}, h('strong', {}, 'These VMs'))),
      vmList),
    field('Leave out', exclude, 'VM names or patterns never backed up by this schedule'),
    h('div', {class: 'row'},
      field('VMs at once', parallel, '1–32; empty: havend\'s default'),
      field('Read limit (MB/s)', limitRead, 'empty: no limit')),
    checkField(adaptive, 'Adaptive: slow down while the host is busy'),
    checkField(full, 'Full read every time (no incremental backups)'),
    h('h3', {}, 'Retention'),
    checkField(keepAfter, 'After each run, forget old points of the VMs it backed up',
               'Points not kept by any rule are forgotten; "Free space (gc)" then frees their space.'),
    retentionBox);

  // forget
  const forgetPolicy = retentionEditor('fgt', spec.kind === 'forget' ? params : null);
  const forgetName = h('input', {id: 'sched-forget-name', value: spec.kind === 'forget' ? (params.name || '') : '',
                                 placeholder: 'every VM'});
  const forgetDry = checkbox('dry_run', spec.kind === 'forget' && params.dry_run, {id: 'sched-forget-dry'});
  const forgetBox = h('div', {'data-kind': 'forget'},
    h('p', {class: 'muted'}, 'Keeps the points a rule selects, per VM, and forgets the rest.'),
    forgetPolicy.node,
    field('Only the points of', forgetName, 'a VM (backup) name; empty: every VM'),
    checkField(forgetDry, 'Dry run: only report what would be forgotten'));

  // check
  const readPct = numInput('read_data_percent', spec.kind === 'check' ? params.read_data_percent : '',
                           {id: 'sched-read-pct', max: '100'});
  const checkBox = h('div', {'data-kind': 'check'},
    field('Read this % of the data', readPct, '0–100; empty or 0 checks the structure only'));

  // gc
  const repack = numInput('repack_below', spec.kind === 'gc' ? params.repack_below : '', {id: 'sched-repack', max: '100'});
  const maxUnused = numInput('max_unused', spec.kind === 'gc' ? params.max_unused : '', {id: 'sched-max-unused', max: '100'});
  const gcDry = checkbox('dry_run', spec.kind === 'gc' && params.dry_run, {id: 'sched-gc-dry'});
  const gcBox = h('div', {'data-kind': 'gc'},
    h('div', {class: 'row'},
      field('Repack packs less used than (%)', repack),
      field('Most unused space to leave (%)', maxUnused)),
    checkField(gcDry, 'Dry run: only report what would be freed'));

  // agent-backup: an agent (by name), its paths, a backup name, excludes
  const ap = spec.kind === 'agent-backup' ? params : {};
  const agentLabel = a => a.hostname && a.hostname !== a.name ?
      `${a.name} (${a.hostname})` :
      a.name;
  const known = agents.some(a => a.name === ap.agent || a.id === ap.agent);
  const agentOptions = [
    ...(ap.agent && !known ? [h('option', {value: ap.agent, selected: true},
                                `${ap.agent} (not enrolled now)`)] :
                             []),
    ...agents.map(
        a => h(
            'option',
            {value: a.name, selected: ap.agent === a.name || ap.agent === a.id},
            agentLabel(a))),
  ];
  const noAgent = h('option', {value: ''}, 'no agent is enrolled');
  const agentSel =
      h('select', {id: 'sched-agent', name: 'agent'},
        (agentOptions.length && agentOptions) || noAgent);
  const agentPaths =
      h('textarea', {
        id: 'sched-agent-paths',
        name: 'paths',
        rows: '3',
        spellcheck: 'false',
        class: 'mono wide',
        placeholder: '/etc\n/home'
      },
        (ap.paths || []).join('\n'));
  const agentName = h('input', {
    id: 'sched-agent-name',
    name: 'backup-name',
    value: ap.name || '',
    maxlength: '255',
    autocomplete: 'off',
    placeholder: 'the agent’s name'
  });
  const agentExcludes =
      h('textarea', {
        id: 'sched-agent-excludes',
        name: 'excludes',
        rows: '2',
        spellcheck: 'false',
        class: 'mono wide',
        placeholder: '*.tmp'
      },
        (ap.excludes || []).join('\n'));
  const agentHint = h('span', {id: 'sched-agent-repo'});
  // The job runs in the agent's repository: the select follows the agent.
  const syncAgent = (moveRepo = true) => {
    const a = agents.find(x => x.name === agentSel.value);
    if (moveRepo && a && a.repository &&
        [...repository.options].some(o => o.value === a.repository))
      repository.value = a.repository;
    agentHint.textContent = a ?
        `its points go to the repository ${a.repository || '(default)'}` :
        '';
  };
  agentSel.addEventListener('change', () => syncAgent());
  const noAgents = agents.length ?
      null :
      notice(
          h('span', {}, 'No agent is enrolled. Enroll one on the ',
            h('a', {href: '#/agents'}, 'Agents'), ' page first.'),
          'warn');
  const agentBox = h(
      'div', {'data-kind': 'agent-backup'}, noAgents,
      h('div', {class: 'row agent-fields'}, field('Agent', agentSel, agentHint),
        field('Backup name', agentName, 'empty: the agent’s name')),
      h('div', {class: 'row agent-fields'},
        field('Paths on the agent', agentPaths, 'absolute paths, one per line'),
        field('Exclude', agentExcludes, 'optional: globs, one per line')));

  const kindBoxes = [backupBox, forgetBox, checkBox, gcBox, agentBox];
  const syncKind = () => {
    for (const b of kindBoxes) b.hidden = b.dataset.kind !== kind.value;
  };
  kind.addEventListener('change', () => {
    syncKind();
    if (kind.value === 'agent-backup') syncAgent();
  });
  syncKind();
  syncAgent(false);

  function collectParams() {
    const k = kind.value;
    if (k === 'backup') {
      const p = {};
      if (allVms.checked) {
        p.all = true;
      } else {
        const names = [...view.querySelectorAll('input.sched-vm:checked')].map(x => x.value);
        p.vms = [...new Set([...names, ...splitList(otherVms.value)])];
      }
      const ex = splitList(exclude.value);
      if (ex.length) p.exclude = ex;
      const par = intOf(parallel);
      if (par !== undefined) p.parallel = par;
      const lr = intOf(limitRead);
      if (lr !== undefined && lr !== 0) p.limit_read = lr;
      if (adaptive.checked) p.adaptive = true;
      if (full.checked) p.full = true;
      return p;
    }
    if (k === 'forget') {
      const p = forgetPolicy.get() || {};
      if (forgetName.value.trim()) p.name = forgetName.value.trim();
      if (forgetDry.checked) p.dry_run = true;
      return p;
    }
    if (k === 'agent-backup') {
      const p = {agent: agentSel.value, paths: linesOf(agentPaths.value)};
      if (agentName.value.trim()) p.name = agentName.value.trim();
      const ex = linesOf(agentExcludes.value);
      if (ex.length) p.excludes = ex;
      return p;
    }
    if (k === 'check') {
      const v = intOf(readPct);
      return v === undefined ? {} : {read_data_percent: v};
    }
    const p = {};
    const r = intOf(repack), m = intOf(maxUnused);
    if (r !== undefined) p.repack_below = r;
    if (m !== undefined) p.max_unused = m;
    if (gcDry.checked) p.dry_run = true;
    return p;
  }

  function collect() {
    const body = {
      name: name.value.trim(),
      calendar: calendar.value.trim(),
      kind: kind.value,
      repository: repository.value,
      params: collectParams(),
      random_delay_seconds: intOf(delay) ?? 0,
      persistent: persistent.checked,
      enabled: enabled.checked,
    };
    body.retention = kind.value === 'backup' && keepAfter.checked ? backupRetention.get() : null;
    if (kind.value === 'backup' && keepAfter.checked && !body.retention)
      throw new Error('Retention is on but has no rule: give at least one "keep" number, or turn it off.');
    if (kind.value === 'backup' && body.params.vms && !body.params.vms.length)
      throw new Error('Choose at least one VM, or "All VMs of this host".');
    if (kind.value === 'agent-backup' && !body.params.agent)
      throw new Error(
          'Choose the agent to back up (enroll one on the Agents page first).');
    if (kind.value === 'agent-backup' && !body.params.paths.length)
      throw new Error(
          'Give at least one path on the agent to back up, such as /etc.');
    return body;
  }

  // ------------------------------------------------- calendar preview
  let seq = 0, timer = null;
  async function updatePreview() {
    const expr = calendar.value.trim();
    const mine = ++seq;
    if (!expr) {
      clear(preview, h('div', {class: 'error'}, 'Give a calendar event, such as "daily" or "Mon..Fri 02:00".'));
      return;
    }
    preview.classList.add('checking');
    try {
      const r = await api.get('/calendar', {expr, count: 5});
      if (mine !== seq) return;
      const d = Number(delay.value) || 0;
      clear(preview,
            h('div', {class: 'cal-ok'}, badge('ok', 'valid'), ' ', h('span', {class: 'muted'}, 'as systemd reads it: '),
              h('code', {id: 'calendar-normalized'}, r.normalized)),
            r.next && r.next.length ?
                h('ol', {class: 'next-runs', id: 'calendar-next'},
                  r.next.map(n => h('li', {}, h('time', {datetime: n.time}, fmtTime(n.time)),
                                    ' ', h('span', {class: 'muted'}, `(${n.local})`)))) :
                h('p', {class: 'muted'}, 'This event never comes again.'),
            d > 0 ? h('p', {class: 'hint'}, `Each run starts up to ${d} s later (random delay).`) : null);
    } catch (e) {
      if (mine !== seq) return;
      clear(preview, h('div', {class: 'error', id: 'calendar-error'},
                       e.status === 400 && e.reason ? e.reason : e.message));
    } finally {
      if (mine === seq) preview.classList.remove('checking');
    }
  }
  calendar.addEventListener('input', () => {
    clearTimeout(timer);
    preview.classList.add('checking');
    timer = setTimeout(updatePreview, 300);
  });
  delay.addEventListener('change', updatePreview);
  ctx.onLeave(() => { clearTimeout(timer); seq++; });

  // ----------------------------------------------------------- actions
  const status = h('div', {id: 'sched-status', 'aria-live': 'polite'});
  const save = h('button', {type: 'submit', class: 'primary', id: 'sched-save'}, id ? 'Save changes' : 'Create schedule');
  const form = h('form', {id: 'schedule-form', novalidate: true},
    section('When',
      field('Name', name, 'letters, digits, ".", "_" and "-"'),
      field('Calendar event', calendar,
            h('span', {}, 'systemd calendar syntax: "daily", "Mon..Fri 02:00", "*-*-* 00/6:00:00". Local time of the appliance unless it ends in UTC.')),
      preview,
      h('div', {class: 'row'},
        field('Random delay (seconds)', delay, 'spreads the start; 0–86400')),
      checkField(persistent, 'Catch up: a run missed while havend was down runs once when it starts'),
      checkField(enabled, 'Enabled')),
    section('What',
      h('div', {class: 'row'}, field('Job', kind), field('Repository', repository)),
      kindBoxes),
    isAdmin ? h('div', {class: 'actions form-actions'}, save, h('a', {href: '#/schedules', class: 'btn'}, 'Cancel')) : null,
    status);
  if (!isAdmin)
    for (const el of form.querySelectorAll('input, select, textarea')) el.disabled = true;

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!isAdmin) return;
    clear(status);
    let body;
    try {
      body = collect();
    } catch (e) {
      clear(status, errorBox(e));
      return;
    }
    save.disabled = true;
    try {
      if (id) {
        await api.put(`/schedules/${encodeURIComponent(id)}`, body);
        await render(view, ctx);
        const st = view.querySelector('#sched-status');
        if (st) clear(st, notice('Saved.', 'ok'));
      } else {
        const r = await api.post('/schedules', body);
        go('#/schedule', {id: r.id});
      }
    } catch (e) {
      clear(status, errorBox(e, id ? 'Not saved' : 'Not created'));
    } finally {
      save.disabled = false;
    }
  });

  const headActions = [];
  if (s && isOperator)
    headActions.push(actionButton('Run now', async () => {
      const r = await api.post(`/schedules/${s.id}/run`);
      go('#/job', {id: r.job});
    }, {id: 'sched-run', class: 'primary'}));
  if (s && isAdmin)
    headActions.push(actionButton('Delete', async () => {
      if (!confirm(`Delete the schedule "${s.name}"? Its jobs stay in the history.`)) return;
      await api.del(`/schedules/${s.id}`);
      go('#/schedules');
    }, {id: 'sched-delete', class: 'danger'}));

  const summary = s ? section('Now',
    h('dl', {class: 'props'},
      h('dt', {}, 'Runs'), h('dd', {}, whatItRuns(s), s.retention ? ` — ${retentionWords(s.retention)}` : ''),
      h('dt', {}, 'State'), h('dd', {}, s.enabled ? badge('ok', 'enabled') : badge('disabled', 'disabled')),
      h('dt', {}, 'Next run'), h('dd', {id: 'sched-next'}, s.next_run ? [timeAgo(s.next_run), ' — ', fmtTime(s.next_run)] : 'none'),
      h('dt', {}, 'Last run'), h('dd', {},
        s.last_triggered ? [timeAgo(s.last_triggered), ' — ', fmtTime(s.last_triggered)] : 'not run yet',
        s.last_job ? [' · ', h('a', {href: `#/job?id=${s.last_job}`}, `job ${s.last_job}`)] : null),
      s.last_error ? [h('dt', {}, 'Last error'), h('dd', {class: 'error'}, s.last_error)] : null,
      h('dt', {}, 'Changed'), h('dd', {}, fmtTime(s.changed_at || s.created_at)))) : null;
  if (summary) summary.classList.add('schedule-now');

  clear(view,
        pageTitle(s ? `Schedule ${s.name}` : 'New schedule', ...headActions),
        h('p', {}, h('a', {href: '#/schedules'}, '← All schedules')),
        isAdmin ? null : notice('Only an admin can change schedules; you can read this one' +
                                (isOperator ? ' and run it now.' : '.')),
        summary, form);
  updatePreview();
}
