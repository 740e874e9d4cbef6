// VM restore wizard (#/restore/vm?vm=NAME&point=ID, both optional):
//   VM -> recovery point -> target -> options -> plan (a dry run stored by
//   havend, shown in words) -> run (the stored plan as a job, live progress)
//   -> result (what was created, or what went wrong and what to do).
// Over the public API only: POST /restores/vm/plan, POST /restores/vm,
// GET /jobs/{id}, GET /events, and the read side (points, hosts, this
// host's networks and storage pools).
//
// The helpers exported below (network mapping, plan and result in words,
// watching a restore job) are shared with the host-loss wizard.
import * as api from '../api.js';
import {badge, clear, errorBox, field, fmtBytes, fmtDuration, fmtTime, h, notice, pageTitle, progressBar, radioChoice, setProgress, timeAgo, wizardSteps} from '../ui.js';

const enc = encodeURIComponent;
export const RECREATE = '@recreate';
const ENDED =
    new Set(['succeeded', 'failed', 'cancelled', 'interrupted', 'partial']);

// ------------------------------------------------------------ shared helpers

// The networks and bridges a domain XML's interfaces use, in order, each
// once: [{name, type: 'network'|'bridge', macs: []}]. The XML is untrusted:
// it is parsed as data and only its attribute values are read.
export function domainNetworks(xml) {
  const out = new Map();
  if (!xml) return [];
  let doc;
  try {
    doc = new DOMParser().parseFromString(xml, 'application/xml');
  } catch {
    return [];
  }
  if (doc.getElementsByTagName('parsererror').length) return [];
  for (const iface of doc.querySelectorAll('devices > interface')) {
    const type = iface.getAttribute('type');
    const src = iface.querySelector('source');
    const name = type === 'network' ? src?.getAttribute('network') :
        type === 'bridge'           ? src?.getAttribute('bridge') :
                                      null;
    if (!name) continue;
    const key = type + ':' + name;
    if (!out.has(key)) out.set(key, {name, type, macs: []});
    const mac = iface.querySelector('mac')?.getAttribute('address');
    if (mac) out.get(key).macs.push(mac);
  }
  return [...out.values()];
}

// Every point GET /points lists for `params`, page by page (newest first),
// at most `max`: {points, errors}.
export async function allPoints(params, max = 20000) {
  const points = [], errors = [];
  let before;
  do {
    const r = await api.get('/points', {...params, limit: 1000, before});
    points.push(...(r.points || []));
    errors.push(...(r.errors || []));
    before = r.next_before;
  } while (before && points.length < max);
  return {points, errors};
}

// This host's networks and usable storage pools (GET /hosts/{host}/networks
// and /pools). An error is kept in `error` (an older havend, libvirt down):
// the wizard then offers only what needs no list.
export async function hostResources(host) {
  const res = {networks: null, pools: [], error: null};
  try {
    res.networks = (await api.get(`/hosts/${enc(host)}/networks`)).networks;
  } catch (e) {
    res.error = e;
  }
  try {
    res.pools = (await api.get(`/hosts/${enc(host)}/pools`)).pools;
  } catch { /* no pools: the folder field is enough */
  }
  return res;
}

function netWords(n) {
  const parts = [n.active ? 'active' : 'not active'];
  if (n.forward) parts.push(n.forward);
  if (n.bridge) parts.push('bridge ' + n.bridge);
  return parts.join(', ');
}

// One row of the network mapping: the backup's network `net` ({name, type,
// macs}) and a select.net-map[data-network=name] of where its interfaces
// go: an existing network of this host, or RECREATE (from the backup's
// definition, `hasXml`), preselected where this host lacks it.
export function netMapRow(net, hostNets, hasXml, preset) {
  const sel = h('select', {class: 'net-map', dataset: {network: net.name}});
  const hint = h('div', {class: 'hint', 'aria-live': 'polite'});
  if (net.type === 'bridge') {
    sel.append(
        h('option', {value: net.name}, `Host bridge ${net.name} (as before)`));
    const bridges = new Set();
    for (const n of hostNets || [])
      if (n.bridge && n.bridge !== net.name && !bridges.has(n.bridge)) {
        bridges.add(n.bridge);
        sel.append(
            h('option', {value: n.bridge},
              `Bridge ${n.bridge} (network ${n.name})`));
      }
    hint.textContent =
        'A bridge of the host, not a libvirt network: it must exist on this host.';
    return {
      row:
          h('div', {class: 'net-row'},
            h('label',
              {for: sel.id = 'net-' + Math.random().toString(36).slice(2, 8)
              },
              `Bridge ${net.name}`),
            sel, hint),
      sel
    };
  }
  const exists = (hostNets || []).find(n => n.name === net.name);
  for (const n of hostNets || [])
    sel.append(
        h('option', {value: n.name},
          n.name === net.name ?
              `${n.name} — the same network here (${netWords(n)})` :
              `${n.name} (${netWords(n)})`));
  if (!exists) {
    sel.prepend(h(
        'option', {value: RECREATE, disabled: !hasXml},
        hasXml ?
            `Recreate "${net.name}" from the backup` :
            `Recreate "${
                net.name}" (not possible: the backup has no definition of it)`));
    if (!hostNets)
      sel.append(h(
          'option', {value: net.name},
          `"${net.name}" as it is named (this host's networks could not be listed)`));
  }
  sel.value =
      preset && [...sel.options].some(o => o.value === preset && !o.disabled) ?
      preset :
      exists ? net.name :
      hasXml ? RECREATE :
               (sel.options[1]?.value ?? '');
  const update = () => {
    const v = sel.value;
    hint.textContent = v === RECREATE ?
        `This host has no network "${
            net.name}": it is created from the definition saved with the backup, started and marked autostart.` :
        v === net.name ?
        `Its interfaces stay on "${net.name}", which this host has.` :
        `Its interfaces are attached to "${v}" instead of "${net.name}".`;
  };
  sel.addEventListener('change', update);
  update();
  sel.id = 'net-' + Math.random().toString(36).slice(2, 8);
  const macs = net.macs.length ?
      ` (${net.macs.length} interface${net.macs.length === 1 ? '' : 's'})` :
      '';
  return {
    row:
        h('div', {class: 'net-row'},
          h('label',
            {for: sel.id
            },
            `Network ${net.name}${macs}`),
          sel, hint),
    sel
  };
}

// The request fields of a network mapping made of netMapRow selects.
export function networkRequest(selects) {
  const map = {};
  let recreate = false;
  for (const sel of selects) {
    const from = sel.dataset.network, to = sel.value;
    if (to === RECREATE)
      recreate = true;
    else if (to && to !== from)
      map[from] = to;
  }
  return {network_map: map, recreate_networks: recreate};
}

const NET_ACTION = {
  create: (n) => `Create network "${
      n.name}" from the backup's definition, start it and mark it autostart.`,
  restore: (n) => `Attach to network "${n.name}", which the restore of ${
      n.by} creates first.`,
  resume: (n) => `Use network "${
      n.name}", created by an interrupted run of this restore (started if stopped).`,
  exists: (n) => `Attach to network "${n.name}", which this host has.`,
  mapped: (n) => `Attach the interfaces of "${
      n.from}" to this host's network "${n.name}".`,
  bridge: (n) => `Attach to the host bridge "${n.name}".`,
  missing: (n) => `Network "${
      n.name}" is missing on this host (a conflict: map it or recreate it).`,
};

// The restore core words some conflicts for its command line ("pass
// --new-identity"); in the console they name the wizard's options.
export function consoleWords(text) {
  return String(text)
      .replace(
          /--name NEW --new-identity/g,
          'another name with "New UUID and MAC addresses"')
      .replace(
          /(use |pass )?--new-identity/g,
          (m, verb) => (verb ? verb.trim() + ' ' : '') +
              '"New UUID and MAC addresses" (restore one VM)')
      .replace(
          /(pass )?--replace/g,
          (m, verb) => (verb ? 'choose ' : '') + '"Replace"')
      .replace(
          /(another )?--storage-dir/g,
          (m, a) => a ? 'another storage folder' : 'a storage folder')
      .replace(/--network-map|--map-network/g, 'the network mapping');
}

// One VM of a plan (an entry of HostRestoreResultJson's vms) in words.
export function vmPlanWords(v, opts = {}) {
  const items = [];
  const li = (...c) => items.push(h('li', {}, ...c));
  const point =
      `recovery point ${v.snapshot.slice(0, 8)} of ${fmtTime(v.time)}`;
  let head;
  if (v.state === 'done')
    head =
        `"${v.name}" was already restored from ${point}: it is left as it is` +
        (opts.start ? ' (started if it is shut off).' : '.');
  else if (v.state === 'finish')
    head = `Finish the interrupted restore of "${v.name}" from ${point}.`;
  else if (opts.replace && opts.replaces)
    head = `Replace the VM "${v.name}" on ${
        opts.host}: it is stopped, undefined and defined again from ${point}.`;
  else
    head = `Define a new VM "${v.name}" on ${opts.host || 'this host'} from ${
               point}` +
        (v.source_name && v.source_name !== v.name ?
             ` (backed up as "${v.source_name}").` :
             '.');
  const uuid = v.new_uuid ? `New UUID ${v.uuid}` : `Keeps its UUID ${v.uuid}`;
  li(uuid + (v.macs?.length ? '; new MAC addresses:' : '.'),
     v.macs?.length ?
         h('ul', {},
           v.macs.map(
               m => h(
                   'li', {class: 'mono'}, `${m.old || '(none)'} → ${m.new}`))) :
         null);
  if (v.create_dirs?.length)
    li(`Create the folder${v.create_dirs.length > 1 ? 's' : ''} `,
       h('span', {class: 'mono'}, v.create_dirs.join(', ')), '.');
  for (const d of v.disks || []) {
    const how = d.resume === 'placed' ?
        'already in place from an interrupted run' :
        d.resume === 'staged' ?
        'already written by an interrupted run; moved into place' :
        `${fmtBytes(d.needs)} of data to write` +
            (d.needs < d.size ? ', the rest stays sparse' : '');
    li(`Disk ${d.target}: `, h('span', {class: 'mono'}, d.path),
       ` — ${d.format}, ${fmtBytes(d.size)} (${how}).`);
  }
  if (v.nvram)
    li('UEFI variables (NVRAM): ', h('span', {class: 'mono'}, v.nvram), '.');
  if (v.space && v.state === 'restore')
    li(`Space: needs ${fmtBytes(v.space.needed)} in `,
       h('span', {class: 'mono'}, v.dir || '?'),
       `, where ${fmtBytes(v.space.free)} ${
           v.space.free === 1 ? 'is' : 'are'} free now.`);
  for (const n of v.networks || [])
    li((NET_ACTION[n.action] ||
        (() => `Network "${n.name}": ${n.action}.`))(n));
  if (!v.networks?.length)
    li('It has no network interfaces on libvirt networks or bridges.');
  if (v.state !== 'done')
    li(opts.start ? 'Start it once it is defined.' :
                    'Leave it shut off once it is defined.');
  const box =
      h('div', {class: 'vm-plan', dataset: {vm: v.name}},
        h('p', {}, h('strong', {}, head)), h('ul', {}, items));
  if (v.warnings?.length)
    box.append(
        h('div', {class: 'notice warn'},
          h('strong', {}, 'Warnings (it runs anyway): '),
          h('ul', {}, v.warnings.map(w => h('li', {}, consoleWords(w))))));
  if (v.conflicts?.length)
    box.append(h(
        'div', {class: 'error', role: 'alert'},
        h('strong', {},
          `${v.conflicts.length} conflict${
              v.conflicts.length > 1 ? 's' : ''} — these block the restore: `),
        h('ul', {}, v.conflicts.map(c => h('li', {}, consoleWords(c))))));
  return box;
}

// A stored plan's summary line and footer.
export function planSummary(stored) {
  const n = stored.conflicts;
  return n > 0 ?
      h('div', {class: 'error', role: 'alert'},
        `This plan has ${n} conflict${
            n > 1 ?
                's' :
                ''} and cannot run. Go back, change what the conflicts name (another name, folder or network, or replace), and plan again.`) :
      notice(
          `Nothing has changed yet. This plan is stored by havend (id ${
              stored.id.slice(0, 8)}, valid until ${
              fmtTime(
                  stored.expires_at)}); "Restore now" runs exactly this plan.`,
          'ok');
}

// Follows a job: SSE progress and state events, and a poll of GET /jobs/{id}
// every 3 s in case the stream drops. `onProgress(p)`, `onJob(job)` (every
// poll), resolves with the job once it has ended.
export function watchJob(jobId, ctx, onProgress, onJob) {
  return new Promise((resolve) => {
    let done = false, timer = null, stream = null;
    const finish = (job) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      stream && stream.close();
      resolve(job);
    };
    const poll = async () => {
      try {
        const job = await api.get(`/jobs/${jobId}`);
        if (done) return;
        onJob && onJob(job);
        if (job.progress) onProgress && onProgress(job.progress);
        if (ENDED.has(job.state)) finish(job);
      } catch (e) {
        if (e.status === 401) finish(null);
      }
    };
    try {
      stream = api.events(
          {
            progress: (p) => {
              if (!done && p.id === jobId) onProgress && onProgress(p);
            },
            state: (s) => {
              if (!done && s.id === jobId) {
                onJob && onJob({
                  id: jobId,
                  state: s.state,
                  error: s.error,
                  partialEvent: true
                });
                if (ENDED.has(s.state)) poll();
              }
            },
          },
          jobId);
    } catch { /* polling alone */
    }
    timer = setInterval(poll, 3000);
    ctx.onLeave(() => finish(null));
    poll();
  });
}

// A live progress panel for a restore job: bar (#job-progress-like, but
// scoped), words, a cancel button for operators. Returns {el, progress(p),
// job(j)}.
export function runPanel(jobId, ctx, order) {
  const bar = progressBar(null, 'Restore progress');
  const state = h('span', {}, badge('queued'));
  const words =
      h('p', {class: 'muted', 'aria-live': 'polite'},
        'Waiting for the job to start…');
  const cancel = api.hasRole(ctx.me, 'operator') ?
      h('button', {type: 'button', class: 'danger', id: 'restore-cancel'},
        'Cancel the restore') :
      null;
  const err = h('div');
  cancel && cancel.addEventListener('click', async () => {
    if (!confirm(
            'Cancel this restore? A VM being written is not defined; files it wrote are removed.'))
      return;
    cancel.disabled = true;
    try {
      await api.post(`/jobs/${jobId}/cancel`);
    } catch (e) {
      clear(err, errorBox(e));
      cancel.disabled = false;
    }
  });
  const el =
      h('div', {class: 'run-status'},
        h('div', {class: 'row'},
          h('span', {}, 'Job ',
            h('a', {href: `#/job?id=${jobId}`}, `#${jobId}`), ': '),
          state),
        bar, words, h('div', {class: 'actions'}, cancel), err);
  return {
    el,
    progress(p) {
      const frac = p.total_bytes > 0 ? p.done_bytes / p.total_bytes : null;
      setProgress(bar, frac);
      const parts = [];
      if (p.item && order && order.length > 1) {
        const at =
            order.findIndex(n => p.item === n || p.item.startsWith(n + ' '));
        if (at >= 0) parts.push(`VM ${at + 1} of ${order.length}`);
      }
      if (p.item) parts.push(`Writing ${p.item}`);
      if (p.total_bytes > 0)
        parts.push(`${fmtBytes(p.done_bytes)} of ${fmtBytes(p.total_bytes)}`);
      if (p.bytes_per_second > 0)
        parts.push(`${fmtBytes(p.bytes_per_second)}/s`);
      if (p.eta_seconds > 0)
        parts.push(`about ${fmtDuration(p.eta_seconds)} left`);
      words.textContent = parts.join(' · ') || 'Working…';
    },
    job(j) {
      clear(state, badge(j.state));
      if (j.state === 'queued')
        words.textContent =
            j.queue_reason ? `Queued: ${j.queue_reason}` : 'Queued…';
      if (j.state === 'running' && words.textContent.startsWith('Waiting'))
        words.textContent = 'Started…';
      if (ENDED.has(j.state)) {
        if (j.state === 'succeeded') setProgress(bar, 1);
        cancel && cancel.remove();
      }
    },
  };
}

// What a finished restore job did, per VM, in order, as an <ol>: what came
// back (defined, started, disks, networks created) and what did not, with
// the reason.
export function resultList(job) {
  const vms =
      job?.result?.vms || (job?.items || []).map(i => i.detail).filter(Boolean);
  const list = h('ol', {class: 'report-list'});
  for (const v of vms) {
    const ok = v.ok;
    const lines = [];
    if (ok) {
      lines.push(
          v.already ?
              `Already restored from this point before; left as it was.` :
              `Defined on this host with UUID ${v.uuid}.`);
      lines.push(
          v.started   ? 'Started.' :
              v.error ? `Not started: ${v.error}` :
                        'Left shut off (not asked to start it).');
      for (const d of v.disks || [])
        lines.push(
            h('span', {}, `Disk ${d.target}: `,
              h('span', {class: 'mono'}, d.path),
              ` (${d.format}, ${fmtBytes(d.size)})`));
      for (const n of v.networks_created || [])
        lines.push(`Created network "${n}".`);
      for (const n of v.networks || [])
        if (n.action !== 'create')
          lines.push(
              `Attached to ${n.action === 'bridge' ? 'bridge' : 'network'} "${
                  n.name}"` +
              (n.from && n.from !== n.name ? ` (was "${n.from}").` : '.'));
      if (v.seconds !== undefined)
        lines.push(
            v.seconds < 1 ? 'Took less than a second.' :
                            `Took ${fmtDuration(v.seconds)}.`);
    } else {
      lines.push(
          h('span', {},
            h('strong', {},
              v.outcome === 'cancelled'   ? 'Cancelled: ' :
                  v.outcome === 'skipped' ? 'Not restored: ' :
                                            'Failed: '),
            consoleWords(v.error || 'no reason was given')));
    }
    list.append(
        h('li', {dataset: {vm: v.name, outcome: v.outcome}},
          h('div', {}, h('strong', {}, v.name), ' ',
            badge(
                ok ? (v.outcome === 'partial' ? 'partial' : 'ok') :
                    v.outcome === 'cancelled' ? 'cancelled' :
                                                'failed',
                ok ? (v.outcome === 'partial' ? 'back, not started' : 'back') :
                    v.outcome === 'cancelled' ? 'cancelled' :
                                                'not back')),
          h('ul', {}, lines.map(l => h('li', {}, l)))));
  }
  return {list, vms};
}

// What to do after a failure, in words.
export function failureAdvice(job) {
  const msg = job?.error || '';
  const tips = [];
  if (/space|ENOSPC|No space/i.test(msg))
    tips.push(
        'Free space in the storage folder, or choose another folder or pool.');
  if (/permission|denied/i.test(msg))
    tips.push('Check that havend and QEMU may write to the storage folder.');
  if (/network/i.test(msg))
    tips.push(
        'Check the network mapping: map to an existing network, or recreate it from the backup.');
  if (/directory|folder|No such file/i.test(msg))
    tips.push(
        'Check the storage folder: it must be a folder (or a path havend can create) that havend can write to.');
  if (/cancel/i.test(job?.state || ''))
    tips.push(
        'The restore was cancelled: VMs not yet defined were not restored.');
  tips.push(
      'A VM that failed was not defined: the disk files its restore wrote are removed, networks it created stay.');
  tips.push(
      'Fix the cause, then make a new plan (change the options, or start over). A restore that was interrupted picks up its own finished work again.');
  tips.push('The job\'s log has every step.');
  return h('ul', {}, tips.map(t => h('li', {}, t)));
}

// ------------------------------------------------------------------ the page

const STEPS = [
  ['vm', 'VM'], ['point', 'Recovery point'], ['target', 'Target'],
  ['options', 'Options'], ['plan', 'Plan'], ['run', 'Restore'],
  ['result', 'Result']
];

export async function render(view, ctx) {
  const canRestore = api.hasRole(ctx.me, 'operator');
  const st = {
    step: 'vm',
    vm: ctx.params.vm || '',
    pointId: ctx.params.point || '',
    point: null,
    detail: null,
    target: 'new',
    name: '',
    nameTouched: false,
    newIdentity: null,
    format: 'qcow2',
    storage: '',
    pool: '',
    netChoice: {},
    start: false,
    plan: null,
    job: null,
    jobState: null,
  };
  view.append(
      pageTitle('Restore a VM', h('a', {href: '#/points'}, 'Recovery points')));
  const steps = wizardSteps(STEPS, 'Restore steps');
  const body = h('div');
  const nav = h('div', {class: 'wizard-nav'});
  const navErr = h('div', {'aria-live': 'assertive'});
  view.append(steps.el, body, navErr, nav);
  if (!canRestore)
    body.before(notice(
        `Your role (${
            ctx.me
                .role}) can look at backups but not restore. Ask an operator or admin to run the restore.`,
        'warn'));

  // The data every step reads.
  const [hosts, listing] =
      await Promise.all([api.get('/hosts'), allPoints({kind: 'vm'})]);
  const local = (hosts.hosts || []).find(x => x.local) || {name: 'this host'};
  let localVms = new Map();
  try {
    const r = await api.get(`/hosts/${enc(local.name)}/vms`);
    for (const v of r.vms || [])
      if (v.defined) localVms.set(v.name, v);
  } catch { /* shown as unknown */
  }
  const byVm = new Map();
  for (const p of listing.points || []) {
    if (!byVm.has(p.name))
      byVm.set(p.name, {name: p.name, latest: p, count: 0, hosts: new Set()});
    const e = byVm.get(p.name);
    e.count++;
    e.hosts.add(p.hostname);
  }
  if (st.vm && !byVm.has(st.vm)) {
    navErr.append(notice(
        `There is no backup of a VM named "${st.vm}". Choose one below.`,
        'warn'));
    st.vm = '';
  }
  let res = null;  // this host's networks and pools, loaded once

  const section = (key, title, ...children) => {
    const h2 = h('h2', {tabindex: '-1'}, title);
    return h(
        'section', {class: 'card wizard-step', dataset: {step: key}}, h2,
        ...children);
  };
  const button = (id, text, cls, fn, disabled) => {
    const b = h('button', {type: 'button', id, class: cls, disabled});
    b.textContent = text;
    b.addEventListener('click', async () => {
      if (b.disabled) return;
      clear(navErr);
      b.disabled = true;
      try {
        await fn();
      } catch (e) {
        clear(navErr, errorBox(e));
      } finally {
        if (b.isConnected) b.disabled = false;
      }
    });
    return b;
  };
  let collect = () => {};  // reads the current step's inputs into st

  async function show(step) {
    collect();
    const was = collect;
    collect = () => {};
    let el;
    try {
      el = await STEP_VIEWS[step]();
    } catch (e) {
      collect = was;  // still on the step that was shown
      throw e;
    }
    st.step = step;
    steps.set(step);
    clear(navErr);
    clear(body, el);
    const back = ['point', 'target', 'options', 'plan'].includes(step) ?
        button(
            'wizard-back', 'Back', '',
            () => show(STEPS[STEPS.findIndex(([k]) => k === step) - 1][0])) :
        null;
    const next = {
      vm: () => button(
          'wizard-next', 'Next: recovery point', 'primary',
          async () => {
            if (!st.vm) throw new Error('Choose the VM to restore.');
            await show('point');
          }),
      point: () => button(
          'wizard-next', 'Next: target', 'primary',
          async () => {
            if (!st.point) throw new Error('Choose a recovery point.');
            await show('target');
          }),
      target: () => button(
          'wizard-next', 'Next: options', 'primary', () => show('options')),
      options: () => button(
          'wizard-next', 'Next: make the plan', 'primary',
          async () => {
            collect();
            if (!st.name.trim()) throw new Error('Give the VM a name.');
            if (st.storage && !st.storage.startsWith('/'))
              throw new Error(
                  'The storage folder must be an absolute path (starting with /).');
            await show('plan');
          },
          !canRestore),
      plan: () => button(
          'wizard-run', 'Restore now', 'primary', run,
          !(st.plan && st.plan.runnable && canRestore)),
      run: () => null,
      result: () =>
          h('div', {class: 'actions'},
            st.finished && st.finished.state !== 'succeeded' && canRestore ?
                button(
                    'wizard-retry', 'Change the options and plan again',
                    'primary',
                    async () => {
                      st.plan = null;
                      st.job = null;
                      await show('options');
                    }) :
                null,
            button(
                'wizard-again', 'Restore another VM', '',
                async () => {
                  st.plan = null;
                  st.job = null;
                  await show('vm');
                })),
    }[step]();
    clear(nav, back || h('span', {class: 'spacer'}), next);
    el.querySelector('h2').focus({preventScroll: false});
  }

  // ---- step 1: VM
  const vmStep = () => {
    const vms = [...byVm.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (!vms.length)
      return section(
          'vm', 'Which VM?',
          h('p', {}, 'No VM backups yet — back up a VM from the ',
            h('a', {href: '#/dashboard'}, 'dashboard'),
            ' first; it can then be restored here.'));
    if (!st.vm) st.vm = vms.length === 1 ? vms[0].name : '';
    const list =
        h('div', {class: 'choices', role: 'radiogroup', 'aria-label': 'VM'},
          vms.map(v => {
            const here = localVms.get(v.name);
            const detail = [
              `${v.count} point${v.count > 1 ? 's' : ''}, latest ${
                  fmtTime(v.latest.time)} (${
                  v.latest.consistency || 'consistency unknown'})`,
              `backed up on ${[...v.hosts].join(', ')}`,
              here ? `defined on this host (${here.state})` :
                     'not defined on this host',
            ].join(' · ');
            return radioChoice('vm', v.name, v.name === st.vm, v.name, detail);
          }));
    list.addEventListener('change', (e) => {
      if (e.target.name === 'vm') {
        st.vm = e.target.value;
        st.point = null;
        st.pointId = '';
        st.nameTouched = false;
        st.netChoice = {};
      }
    });
    return section(
        'vm', 'Which VM?',
        h('p', {class: 'muted'}, 'Every VM with a backup in the repositories.'),
        listing.errors.length ?
            notice(
                'Some backups could not be listed: ' +
                    listing.errors
                        .map(
                            e => typeof e === 'string' ?
                                e :
                                (e.error || e.message || String(e)))
                        .join('; '),
                'warn') :
            null,
        list);
  };

  // ---- step 2: point
  const pointStep = async () => {
    const r = await api.get('/points', {vm: st.vm, kind: 'vm', limit: 200});
    const points = r.points || [];
    if (!points.length)
      return section(
          'point', `Which recovery point of ${st.vm}?`,
          notice('This VM has no recovery points any more.', 'warn'));
    let chosen = points.find(
                     p => st.point && p.id === st.point.id &&
                         p.repository === st.point.repository) ||
        (st.pointId && points.find(p => p.id.startsWith(st.pointId))) ||
        points[0];
    st.point = chosen;
    const list = h(
        'div',
        {class: 'choices', role: 'radiogroup', 'aria-label': 'Recovery point'},
        points.map((p, i) => {
          const detail =
              h('span', {},
                badge(
                    p.consistency === 'crash-consistent' ? 'warning' :
                        p.consistency                    ? 'ok' :
                                                           'muted',
                    p.consistency || 'unknown'),
                ' ',
                `${fmtBytes(p.logical_bytes)} · ${
                    timeAgo(p.time).textContent} · id ${p.id.slice(0, 8)} · ${
                    p.repository} · from ${p.hostname}`,
                p.repaired ? ' · repaired (some data was lost)' : '',
                i === 0 ? ' · latest' : '');
          return radioChoice(
              'point', p.id, p === chosen, fmtTime(p.time), detail,
              {dataset: {repo: p.repository}});
        }));
    list.addEventListener('change', (e) => {
      if (e.target.name === 'point') {
        st.point = points.find(
            p => p.id === e.target.value &&
                p.repository === e.target.dataset.repo);
        st.detail = null;
      }
    });
    const more = r.total > points.length ?
        h('p', {class: 'muted'},
          `Showing the newest ${points.length} of ${r.total}.`) :
        null;
    return section(
        'point', `Which recovery point of ${st.vm}?`,
        h('p', {class: 'muted'},
          'The latest is chosen. Application-consistent points were taken with the guest agent; crash-consistent ones are like a power cut.'),
        list, more);
  };

  // ---- step 3: target
  const targetStep = () => {
    const here = localVms.get(st.vm);
    if (!here && st.target === 'replace') st.target = 'new';
    const list = h(
        'div', {class: 'choices', role: 'radiogroup', 'aria-label': 'Target'},
        radioChoice(
            'target', 'new', st.target === 'new',
            `This host (${local.name}), as a new VM`,
            here ?
                `"${st.vm}" stays as it is; the restored VM gets another name and new UUID and MAC addresses, so both can run.` :
                `Defined as "${st.vm}" (no VM of that name is defined here).`),
        radioChoice(
            'target', 'replace', st.target === 'replace',
            `This host, replacing "${st.vm}"`,
            here ?
                h('span', {},
                  h('strong', {class: 'danger-text'},
                    'Destroys the current VM: '),
                  `"${st.vm}" (now ${
                      here.state}) is stopped and undefined with its snapshot and checkpoint metadata, then defined again from the point of ${
                      fmtTime(
                          st.point
                              ?.time)}. Disk files at the paths the restore writes (the plan lists them) are overwritten: everything written in the VM since that point is lost.`) :
                `No VM named "${
                    st.vm}" is defined on this host: there is nothing to replace.`,
            {disabled: !here}),
        radioChoice(
            'target', 'agent', false, 'Another host, through its host agent',
            'No host agents are enrolled yet: restores go to this host only.',
            {disabled: true}));
    list.addEventListener('change', (e) => {
      if (e.target.name === 'target') {
        st.target = e.target.value;
        st.nameTouched = false;
        st.newIdentity = null;
      }
    });
    return section('target', 'Where to?', list);
  };

  // ---- step 4: options
  const optionsStep = async () => {
    if (!st.detail)
      st.detail = await api.get(
          `/points/${enc(st.point.repository)}/${enc(st.point.id)}`);
    if (!res) res = await hostResources(local.name);
    const here = localVms.get(st.vm);
    if (!st.nameTouched)
      st.name = st.target === 'replace' || !here ?
          st.vm :
          uniqueName(st.vm + '-restored');
    if (st.newIdentity === null) st.newIdentity = st.target === 'new' && !!here;
    const name = h('input', {
      id: 'opt-name',
      value: st.name,
      required: true,
      autocomplete: 'off',
      spellcheck: 'false',
      readonly: st.target === 'replace'
    });
    name.addEventListener('input', () => st.nameTouched = true);
    const ident =
        h('input',
          {type: 'checkbox', id: 'opt-new-identity', checked: st.newIdentity});
    const format =
        h('select', {id: 'opt-format'},
          h('option', {value: 'qcow2'}, 'qcow2 (sparse, snapshots possible)'),
          h('option', {value: 'raw'}, 'raw (plain image file)'));
    format.value = st.format;
    const storage = h('input', {
      id: 'opt-storage',
      value: st.storage,
      placeholder: '/var/lib/libvirt/images',
      autocomplete: 'off',
      spellcheck: 'false'
    });
    const usable = (res.pools || []).filter(p => p.usable);
    const pool = h(
        'select', {id: 'opt-pool'},
        h('option', {value: ''}, '— none: use the folder —'),
        usable.map(p => h('option', {value: p.name}, `${p.name} (${p.path})`)));
    pool.value = st.pool;
    const syncPool = () => {
      storage.disabled = !!pool.value;
    };
    pool.addEventListener('change', syncPool);
    syncPool();
    const start =
        h('input', {type: 'checkbox', id: 'opt-start', checked: st.start});
    const nets = domainNetworks(st.detail.domain_xml);
    const xmls = st.detail.network_xml || {};
    const rows = nets.map(
        n => netMapRow(n, res.networks, !!xmls[n.name], st.netChoice[n.name]));
    collect = () => {
      st.name = name.value.trim();
      st.newIdentity = ident.checked;
      st.format = format.value;
      st.storage = storage.value.trim();
      st.pool = pool.value;
      st.start = start.checked;
      for (const r of rows) st.netChoice[r.sel.dataset.network] = r.sel.value;
      st.selects = rows.map(r => r.sel);
    };
    const disks = (st.detail.disks || [])
                      .map(d => `${d.name} (${fmtBytes(d.size)})`)
                      .join(', ');
    return section(
        'options', 'Options',
        h('div', {class: 'inline-fields'},
          field(
              'Name of the VM', name,
              st.target === 'replace' ?
                  'Replacing keeps the name of the VM it replaces.' :
                  'A VM of this name must not exist on this host.'),
          field(
              'Disk format', format,
              `Disks in the backup: ${disks || 'none'}.`)),
        h('label', {class: 'checkline'}, ident,
          h('span', {}, h('strong', {}, 'New UUID and MAC addresses'),
            h('span', {class: 'muted'},
              ' — needed to run it beside the original VM; leave it off to restore the same machine identity.'))),
        h('div', {class: 'inline-fields'},
          field(
              'Storage folder', storage,
              'Where the disk files go (absolute path). Empty: /var/lib/libvirt/images.'),
          field(
              'or a storage pool', pool,
              usable.length ?
                  'A folder-backed libvirt pool of this host; its folder is used.' :
                  'This host has no active folder pool (dir, fs, netfs).')),
        h('h3', {}, 'Networks'),
        res.error ?
            errorBox(res.error, 'This host\'s networks could not be listed') :
            null,
        nets.length ?
            h('div', {}, rows.map(r => r.row)) :
            h('p', {class: 'muted'},
              'The VM has no interfaces on libvirt networks or bridges.'),
        h('label', {class: 'checkline'}, start,
          h('span', {}, h('strong', {}, 'Start the VM afterwards'))));
  };
  const uniqueName = (base) => {
    let n = base, i = 2;
    while (localVms.has(n)) n = `${base}-${i++}`;
    return n;
  };

  // ---- step 5: plan
  const planStep = async () => {
    const req = {
      repository: st.point.repository,
      point: st.point.id,
      name: st.name,
      new_identity: st.newIdentity,
      format: st.format,
      replace: st.target === 'replace',
      start: st.start,
      ...networkRequest(st.selects || []),
    };
    if (st.pool)
      req.pool = st.pool;
    else if (st.storage)
      req.storage_dir = st.storage;
    const text =
        h('div', {id: 'plan-text', class: 'plan-text', 'aria-live': 'polite'},
          h('p', {class: 'muted'},
            'Making the plan (a dry run: nothing changes)…'));
    st.plan = null;
    st.plan = await api.post('/restores/vm/plan', req);
    const vms = st.plan.plan?.vms || [];
    clear(
        text, vms.map(v => vmPlanWords(v, {
                        host: local.name,
                        start: st.start,
                        replace: req.replace,
                        replaces: localVms.has(v.name)
                      })),
        planSummary(st.plan));
    return section(
        'plan', 'The plan',
        h('p', {class: 'muted'},
          'What the restore will do, checked against this host now.'),
        text);
  };

  // ---- step 6: run
  async function run() {
    const r = await api.post('/restores/vm', {plan: st.plan.id});
    st.job = r.job;
    await show('run');
  }
  const runStep = () => {
    const panel = runPanel(st.job, ctx);
    const el = section('run', `Restoring ${st.name}`, panel.el);
    watchJob(st.job, ctx, panel.progress, panel.job).then(job => {
      if (!job) return;
      st.finished = job;
      show('result');
    });
    return el;
  };

  // ---- step 7: result
  const resultStep = () => {
    const job = st.finished;
    const {list, vms} = resultList(job);
    const ok = job.state === 'succeeded';
    const box = h(
        'div', {id: 'restore-result', dataset: {state: job.state}},
        ok ? notice(`The VM "${st.name}" is restored.`, 'ok') :
             h('div', {class: 'error', role: 'alert'},
               h('strong', {},
                 `The restore ${
                     job.state === 'cancelled'   ? 'was cancelled' :
                         job.state === 'partial' ? 'only partly succeeded' :
                                                   'failed'}: `),
               job.error || 'no reason was given'),
        vms.length ? list : null,
        ok ? null : h('div', {}, h('h3', {}, 'What to do'), failureAdvice(job)),
        h('p', {},
          h('a', {href: `#/job?id=${job.id}`},
            `Open job #${job.id} (its log)`)));
    return section('result', 'Result', box);
  };

  const STEP_VIEWS = {
    vm: vmStep,
    point: pointStep,
    target: targetStep,
    options: optionsStep,
    plan: planStep,
    run: runStep,
    result: resultStep
  };
  try {
    await show('vm');
  } catch (e) {
    clear(navErr, errorBox(e));
  }
}
