// VM restore wizard (#/restore/vm?vm=NAME&point=ID, both optional):
//   VM -> recovery point -> target -> options -> plan (a dry run stored by
//   havend, shown in words) -> run (the stored plan as a job, live progress)
//   -> result (what was created, or what went wrong and what to do).
// Over the public API only: POST /restores/vm/plan, POST /restores/vm,
// GET /jobs/{id}, GET /events, and the read side (points, hosts, this
// host's networks and storage pools, the enrolled host agents).
//
// The target may be another hypervisor through its host agent
// (docs/agents.md): the agent makes the plan against its own host (the
// plan request waits for it, or answers with the planning job, which this
// page then follows) and runs that stored plan.
//
// The helpers shared with the host-loss wizard (network mapping, plan and
// result in words, watching a restore job, the wizard's frame) are in
// restore_common.js.
import * as api from '../api.js';
import {badge, clear, field, fmtBytes, fmtTime, h, notice, radioChoice, timeAgo} from '../ui.js';

import {allPoints, collectOptions, definedVms, domainNetworks, followRun, hostResources, jobLogLink, makePlan, netMapRow, placeRequest, planSection, planSummary, planWords, resourcesError, restoreWizard, resultList, runPanel, runPlan, storageOptions, whatToDo} from './restore_common.js';

const enc = encodeURIComponent;

// ------------------------------------------------------------------ the page

const STEPS = [
  ['vm', 'VM'], ['point', 'Recovery point'], ['target', 'Target'],
  ['options', 'Options'], ['plan', 'Plan'], ['run', 'Restore'],
  ['result', 'Result']
];

export async function render(view, ctx) {
  const st = {
    vm: ctx.params.vm || '',
    pointId: ctx.params.point || '',
    point: null,
    detail: null,
    target: 'new',
    agent: '',  // the host agent's id when target is 'agent'
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
  const wiz = restoreWizard(view, ctx, {
    title: 'Restore a VM',
    link: h('a', {href: '#/points'}, 'Recovery points'),
    steps: STEPS,
    label: 'Restore steps'
  });
  const {canRestore, section, navErr} = wiz;

  // The data every step reads.
  const [hosts, listing, agentList] = await Promise.all([
    api.get('/hosts'), allPoints({kind: 'vm'}),
    // Host agents a VM can be restored onto; a role that cannot list
    // agents sees this host only.
    api.get('/agents').catch(() => ({agents: []}))
  ]);
  const hostAgents = (agentList.agents || [])
                         .filter(a => a.kind === 'host' && !a.revoked)
                         .sort((a, b) => a.name.localeCompare(b.name));
  const agentOf = (id) => hostAgents.find(a => a.id === id);
  // Where the restore goes, in words.
  const targetHost = () => st.target === 'agent' ?
      `${agentOf(st.agent)?.name || 'the host agent'} (host agent)` :
      local.name;
  const local = (hosts.hosts || []).find(x => x.local) || {name: 'this host'};
  const localVms = await definedVms(local.name);
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

  wiz.next = {
    vm: () => wiz.nextButton(
        'Next: recovery point', 'point',
        () => {
          if (!st.vm) throw new Error('Choose the VM to restore.');
        }),
    point: () => wiz.nextButton(
        'Next: target', 'target',
        () => {
          if (!st.point) throw new Error('Choose a recovery point.');
        }),
    target: () => wiz.nextButton('Next: options', 'options'),
    options: () => wiz.planButton(
        st,
        () => {
          if (!st.name.trim()) throw new Error('Give the VM a name.');
        }),
    plan: () => wiz.runButton('Restore now', st, run),
    run: () => null,
    result: () =>
        h('div', {class: 'actions'},
          st.finished && st.finished.state !== 'succeeded' && canRestore ?
              wiz.againButton(
                  'wizard-retry', 'Change the options and plan again',
                  'primary', st, 'options') :
              null,
          wiz.againButton('wizard-again', 'Restore another VM', '', st, 'vm')),
  };

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
            'target', 'agent', st.target === 'agent',
            'Another host, through its host agent',
            hostAgents.length ?
                'The host agent plans the restore against its own host and runs it; the disks come from this appliance over the agent\'s pinned connection.' :
                'No host agents are enrolled: enroll one on the other hypervisor (Agents → Add agent, kind host) to restore there.',
            {disabled: !hostAgents.length}));
    if (st.target === 'agent' && !agentOf(st.agent))
      st.agent = hostAgents[0]?.id || '';
    const pick =
        h('select', {id: 'target-agent', disabled: st.target !== 'agent'},
          hostAgents.map(
              a => h(
                  'option', {value: a.id, selected: a.id === st.agent},
                  `${a.name} — ${a.hostname || 'host unknown'}, last contact ${
                      a.last_contact ? fmtTime(a.last_contact) : 'never'}`)));
    pick.addEventListener('change', () => st.agent = pick.value);
    list.addEventListener('change', (e) => {
      if (e.target.name === 'target') {
        st.target = e.target.value;
        st.nameTouched = false;
        st.newIdentity = null;
        pick.disabled = st.target !== 'agent';
        if (st.target === 'agent' && !st.agent) st.agent = pick.value;
      }
    });
    return section(
        'target', 'Where to?', list,
        hostAgents.length ? field('Host agent', pick) : null);
  };

  // ---- step 4: options
  const optionsStep = async () => {
    if (!st.detail)
      st.detail = await api.get(
          `/points/${enc(st.point.repository)}/${enc(st.point.id)}`);
    if (!res) res = await hostResources(local.name);
    const remote = st.target === 'agent';
    // On a host agent's host this page knows no VMs, networks or pools: the
    // agent's plan checks them.
    const here = remote ? null : localVms.get(st.vm);
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
    const opts = storageOptions(st, remote ? {networks: [], pools: []} : res);
    const {format, storage, pool, usable, start} = opts;
    const nets = remote ? [] : domainNetworks(st.detail.domain_xml);
    const xmls = st.detail.network_xml || {};
    const rows = nets.map(
        n => netMapRow(n, res.networks, !!xmls[n.name], st.netChoice[n.name]));
    wiz.collect = () => {
      st.name = name.value.trim();
      st.newIdentity = ident.checked;
      collectOptions(st, opts, rows);
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
        h('h3', {}, 'Networks'), remote ? null : resourcesError(res),
        remote ?
            h('p', {class: 'muted'},
              'Networks the VM used and that host lacks are created there from the backup; the plan lists them.') :
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
    const remote = st.target === 'agent';
    const req = {
      ...(remote ? {agent: st.agent} : {}),
      repository: st.point.repository,
      point: st.point.id,
      name: st.name,
      new_identity: st.newIdentity,
      format: st.format,
      replace: st.target === 'replace',
      start: st.start,
      ...placeRequest(st),
    };
    const text =
        h('div', {id: 'plan-text', class: 'plan-text', 'aria-live': 'polite'},
          h('p', {class: 'muted'},
            'Making the plan (a dry run: nothing changes)…'));
    const vms = await makePlan(st, '/restores/vm/plan', req, ctx);
    clear(
        text,
        vms.map(
            v => planWords(
                v, st, req.replace, targetHost(), remote ? new Map() : localVms,
                remote ? targetHost() : 'this host')),
        planSummary(st.plan));
    return planSection(
        wiz, text,
        remote ?
            `${agentOf(st.agent)?.name || 'the host'}'s host by its agent` :
            'this host');
  };

  // ---- step 6: run
  const run = () => runPlan(wiz, st, '/restores/vm');
  const runStep = () => {
    const panel = runPanel(st.job, ctx);
    const el = section('run', `Restoring ${st.name}`, panel.el);
    followRun(wiz, st, ctx, panel, 'result');
    return el;
  };

  // ---- step 7: result
  const resultStep = () => {
    const job = st.finished;
    const {list, vms} =
        resultList(job, st.target === 'agent' ? targetHost() : 'this host');
    const ok = job.state === 'succeeded';
    const box =
        h('div', {id: 'restore-result', dataset: {state: job.state}},
          ok ? notice(
                   `The VM "${st.name}" is restored${
                       st.target === 'agent' ? ' on ' + targetHost() : ''}.`,
                   'ok') :
               h('div', {class: 'error', role: 'alert'},
                 h('strong', {},
                   `The restore ${
                       job.state === 'cancelled'   ? 'was cancelled' :
                           job.state === 'partial' ? 'only partly succeeded' :
                                                     'failed'}: `),
                 job.error || 'no reason was given'),
          vms.length ? list : null, ok ? null : whatToDo(job), jobLogLink(job));
    return section('result', 'Result', box);
  };

  wiz.views = {
    vm: vmStep,
    point: pointStep,
    target: targetStep,
    options: optionsStep,
    plan: planStep,
    run: runStep,
    result: resultStep
  };
  await wiz.start('vm');
}
