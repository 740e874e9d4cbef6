// Code shared by the two restore wizards (#/restore/vm in restore_vm.js,
// #/restore/host in restore_host.js): network mapping, the plan and the
// result in words, watching a restore job, and the wizard's frame (step
// indicator, step sections, navigation buttons, showing a step) with the
// option fields and plan, run and result parts both wizards have.
import * as api from '../api.js';
import {badge, clear, errorBox, fmtBytes, fmtDuration, fmtTime, h, notice, pageTitle, progressBar, setProgress, wizardSteps} from '../ui.js';

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
  exists: (n, where) => `Attach to network "${n.name}", which ${where} has.`,
  mapped: (n, where) =>
      `Attach the interfaces of "${n.from}" to ${where}'s network "${n.name}".`,
  bridge: (n) => `Attach to the host bridge "${n.name}".`,
  missing: (n, where) => `Network "${n.name}" is missing on ${
      where} (a conflict: map it or recreate it).`,
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
    li((NET_ACTION[n.action] || (() => `Network "${n.name}": ${n.action}.`))(
        n, opts.where || 'this host'));
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
export function resultList(job, where = 'this host') {
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
              `Defined on ${where} with UUID ${v.uuid}.`);
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

// ------------------------------------------------------------ wizard frame

// The frame of a restore wizard, appended to view: title (with a link to
// the other wizard or page), step indicator, the step's body, a line for
// errors and the navigation buttons; a notice when the role cannot
// restore. The page fills in wiz.views (step -> async () => section) and
// wiz.next (step -> () => its forward button or null), sets wiz.collect
// (reads the shown step's inputs into the page's state) in a step view,
// and calls wiz.start(first step).
export function restoreWizard(view, ctx, {title, link, steps, label}) {
  const canRestore = api.hasRole(ctx.me, 'operator');
  view.append(pageTitle(title, link));
  const indicator = wizardSteps(steps, label);
  const body = h('div');
  const nav = h('div', {class: 'wizard-nav'});
  const navErr = h('div', {'aria-live': 'assertive'});
  view.append(indicator.el, body, navErr, nav);
  if (!canRestore)
    body.before(notice(
        `Your role (${
            ctx.me
                .role}) can look at backups but not restore. Ask an operator or admin to run the restore.`,
        'warn'));

  const wiz = {canRestore, navErr, views: {}, next: {}, collect: () => {}};
  wiz.section = (key, title, ...children) =>
      h('section', {class: 'card wizard-step', dataset: {step: key}},
        h('h2', {tabindex: '-1'}, title), ...children);
  wiz.button = (id, text, cls, fn, disabled) => {
    const b = h('button', {type: 'button', id, class: cls, disabled}, text);
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
  // Shows a step: the shown step's inputs are read first; a step that
  // cannot be shown (its data failed to load) throws and leaves the shown
  // one as it was. Back goes to the previous step from the second step to
  // the plan.
  wiz.show = async (step) => {
    wiz.collect();
    const was = wiz.collect;
    wiz.collect = () => {};
    let el;
    try {
      el = await wiz.views[step]();
    } catch (e) {
      wiz.collect = was;  // still on the step that was shown
      throw e;
    }
    indicator.set(step);
    clear(navErr);
    clear(body, el);
    const i = steps.findIndex(([k]) => k === step);
    const back = i > 0 && i <= 4 ?
        wiz.button('wizard-back', 'Back', '', () => wiz.show(steps[i - 1][0])) :
        h('span', {class: 'spacer'});
    clear(nav, back, wiz.next[step]());
    el.querySelector('h2').focus();
  };
  // The forward button: check() (throws what is missing) and show step.
  wiz.nextButton = (text, step, check, disabled) =>
      wiz.button('wizard-next', text, 'primary', async () => {
        if (check) check();
        await wiz.show(step);
      }, disabled);
  // The options step's forward button: reads and checks the options
  // (check(), then the storage folder) and makes the plan.
  wiz.planButton = (st, check) =>
      wiz.nextButton('Next: make the plan', 'plan', () => {
        wiz.collect();
        if (check) check();
        checkStorage(st);
      }, !canRestore);
  // The plan step's button that runs the plan (st.plan) when it can run.
  wiz.runButton = (text, st, run) => wiz.button(
      'wizard-run', text, 'primary', run,
      !(st.plan && st.plan.runnable && canRestore));
  // A button that forgets the plan and its job and shows step.
  wiz.againButton = (id, text, cls, st, step) =>
      wiz.button(id, text, cls, async () => {
        st.plan = null;
        st.job = null;
        st.finished = null;
        await wiz.show(step);
      });
  wiz.start = async (step) => {
    try {
      await wiz.show(step);
    } catch (e) {
      clear(navErr, errorBox(e));
    }
  };
  return wiz;
}

// The VMs defined on host, by name (empty when they cannot be listed:
// conflicts then show in the plan).
export async function definedVms(host) {
  const out = new Map();
  try {
    const r = await api.get(`/hosts/${enc(host)}/vms`);
    for (const v of r.vms || [])
      if (v.defined) out.set(v.name, v);
  } catch { /* unknown */
  }
  return out;
}

// The options both wizards have: storage folder or pool, disk format,
// start afterwards; from st and this host's resources (res).
export function storageOptions(st, res) {
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
  const pool =
      h('select', {id: 'opt-pool'},
        h('option', {value: ''}, '— none: use the folder —'),
        usable.map(p => h('option', {value: p.name}, `${p.name} (${p.path})`)));
  pool.value = st.pool;
  pool.addEventListener('change', () => storage.disabled = !!pool.value);
  storage.disabled = !!pool.value;
  const start =
      h('input', {type: 'checkbox', id: 'opt-start', checked: st.start});
  return {format, storage, pool, usable, start};
}

// Reads storageOptions' fields and the network mapping rows into st.
export function collectOptions(st, o, rows) {
  st.format = o.format.value;
  st.storage = o.storage.value.trim();
  st.pool = o.pool.value;
  st.start = o.start.checked;
  for (const r of rows) st.netChoice[r.sel.dataset.network] = r.sel.value;
  st.selects = rows.map(r => r.sel);
}

// Throws when the storage folder given is not an absolute path.
export function checkStorage(st) {
  if (st.storage && !st.storage.startsWith('/'))
    throw new Error(
        'The storage folder must be an absolute path (starting with /).');
}

// The network mapping and where the disks go, for a plan request.
export function placeRequest(st) {
  const req = {...networkRequest(st.selects || [])};
  if (st.pool)
    req.pool = st.pool;
  else if (st.storage)
    req.storage_dir = st.storage;
  return req;
}

// Shown when this host's networks could not be listed.
export function resourcesError(res) {
  return res.error ?
      errorBox(res.error, 'This host\'s networks could not be listed') :
      null;
}

// Makes the plan (a dry run havend stores) with POST path: st.plan; its
// VMs are returned.
export async function makePlan(st, path, req, ctx) {
  st.plan = null;
  let r = await api.post(path, req);
  // A host agent slow to answer: the plan is its planning job's result.
  if (r.job && !r.id) {
    const job = await waitForJob(r.job, ctx);
    if (job.state !== 'succeeded')
      throw new Error(`The host agent could not make the plan: ${
          job.error || 'job ' + r.job + ' ' + job.state}`);
    r = job.result;
  }
  st.plan = r;
  return st.plan.plan?.vms || [];
}

// The job `id` once it has ended (polled; stops when the page is left).
async function waitForJob(id, ctx) {
  for (;;) {
    const job = await api.get(`/jobs/${id}`);
    if (!['queued', 'running'].includes(job.state)) return job;
    if (ctx?.gone?.()) return job;
    await new Promise(r => setTimeout(r, 1000));
  }
}

// One VM of the plan in words, restored to host (localVms: the VMs defined
// there), started afterwards if st.start.
export function planWords(v, st, replace, host, localVms, where) {
  return vmPlanWords(
      v,
      {host, where, start: st.start, replace, replaces: localVms.has(v.name)});
}

// The plan step's section around the plan in words (#plan-text).
export function planSection(wiz, text, where = 'this host') {
  return wiz.section(
      'plan', 'The plan',
      h('p', {class: 'muted'},
        `What the restore will do, checked against ${where} now.`),
      text);
}

// Runs the stored plan (st.plan) with POST path and shows the run step.
export async function runPlan(wiz, st, path) {
  const r = await api.post(path, {plan: st.plan.id});
  st.job = r.job;
  await wiz.show('run');
}

// Watches the restore job of the run step (its panel from runPanel); when
// it ends, st.finished is the job and the step `then` is shown.
export function followRun(wiz, st, ctx, panel, then) {
  watchJob(st.job, ctx, panel.progress, panel.job).then(job => {
    if (!job) return;
    st.finished = job;
    wiz.show(then).catch(e => clear(wiz.navErr, errorBox(e)));
  });
}

// What to do after a failed restore, under its heading.
export function whatToDo(job) {
  return h('div', {}, h('h3', {}, 'What to do'), failureAdvice(job));
}

// The link to the restore job's page (its log).
export function jobLogLink(job) {
  return h(
      'p', {},
      h('a', {href: `#/job?id=${job.id}`}, `Open job #${job.id} (its log)`));
}
