// Host-loss wizard (#/restore/host?host=NAME optional): bring the VMs of a
// lost host back on this one.
//   host (hosts known only from their points are lost ones) -> VMs (each
//   VM's latest good point, with its networks; choose which) -> boot order
//   -> options (network mapping, storage, start) -> plan (stored dry run,
//   in words) -> run (live progress) -> report (#host-report: what came
//   back, in order, and what did not, with the reason).
// POST /restores/host/plan takes the points in a list: the restore (and,
// with start, each VM's start) follows that list, which is the boot order.
import * as api from '../api.js';
import {badge, clear, errorBox, field, fmtBytes, fmtTime, h, notice} from '../ui.js';

import {allPoints, collectOptions, definedVms, domainNetworks, followRun, hostResources, jobLogLink, makePlan, netMapRow, placeRequest, planSection, planSummary, planWords, resourcesError, restoreWizard, resultList, runPanel, runPlan, storageOptions, whatToDo} from './restore_common.js';

const enc = encodeURIComponent;

const STEPS = [
  ['host', 'Lost host'], ['vms', 'VMs'], ['order', 'Boot order'],
  ['options', 'Options'], ['plan', 'Plan'], ['run', 'Restore'],
  ['report', 'Report']
];

export async function render(view, ctx) {
  const st = {
    host: ctx.params.host || '',
    vms: [],
    picked: new Set(),
    order: [],
    details: new Map(),
    netChoice: {},
    storage: '',
    pool: '',
    format: 'qcow2',
    start: true,
    replace: false,
    plan: null,
    job: null,
    finished: null,
  };
  const wiz = restoreWizard(view, ctx, {
    title: 'Restore a lost host',
    link: h('a', {href: '#/restore/vm'}, 'Restore one VM'),
    steps: STEPS,
    label: 'Host restore steps'
  });
  const {section} = wiz;

  const hosts = (await api.get('/hosts')).hosts || [];
  const local = hosts.find(x => x.local) || {name: 'this host'};
  const localVms = await definedVms(local.name);
  let res = null;

  wiz.next = {
    host: () => wiz.nextButton(
        'Next: its VMs', 'vms',
        () => {
          if (!st.host) throw new Error('Choose the host that was lost.');
        },
        !hosts.length),
    vms: () => wiz.nextButton(
        'Next: boot order', 'order',
        () => {
          wiz.collect();
          if (!st.picked.size)
            throw new Error('Choose at least one VM to bring back.');
        }),
    order: () => wiz.nextButton('Next: options', 'options'),
    options: () => wiz.planButton(st),
    plan: () => wiz.runButton(
        `Restore ${st.order.length} VM${st.order.length > 1 ? 's' : ''} now`,
        st, run),
    run: () => null,
    report: () => wiz.againButton('wizard-again', 'Start over', '', st, 'host'),
  };

  // ---- step 1: the lost host
  const hostStep = () => {
    if (!hosts.length)
      return section(
          'host', 'Which host was lost?',
          notice(
              'havend knows no host yet: no VM has been backed up.', 'warn'));
    const lost = hosts.filter(x => !x.local);
    if (!st.host || !hosts.some(x => x.name === st.host))
      st.host = (lost[0] || local).name;
    const sel =
        h('select', {id: 'host-select'},
          hosts.map(
              x => h(
                  'option', {value: x.name},
                  x.local ? `${x.name} — this host` :
                            `${x.name} — lost (known only from its backups)`)));
    sel.value = st.host;
    const about = h('div', {'aria-live': 'polite'});
    const describe = () => {
      const x = hosts.find(y => y.name === sel.value);
      if (st.host !== sel.value) {
        st.picked = new Set();
        st.order = [];
      }
      st.host = sel.value;
      const facts = x.facts || {};
      clear(
          about,
          h('dl', {class: 'props'}, h('dt', {}, 'State'),
            h('dd', {},
              x.local ? badge(
                            x.reachable ? 'ok' : 'failed',
                            x.reachable ? 'this host, reachable' :
                                          'this host, libvirt not reachable') :
                        badge('warning', 'lost')),
            h('dt', {}, 'VMs with backups'),
            h('dd', {}, String(x.vms_with_points ?? 0)),
            h('dt', {}, 'Recovery points'), h('dd', {}, String(x.points ?? 0)),
            h('dt', {}, 'Latest backup'),
            h('dd', {}, fmtTime(x.latest_point_time)),
            facts.hypervisor ?
                [
                  h('dt', {}, 'Hypervisor'),
                  h('dd', {},
                    `${facts.hypervisor} ${facts.hypervisor_version || ''}`
                        .trim())
                ] :
                null,
            facts.libvirt_version ?
                [
                  h('dt', {}, 'libvirt'),
                  h('dd', {}, String(facts.libvirt_version))
                ] :
                null,
            facts.cpu_model ?
                [
                  h('dt', {}, 'CPU model'), h('dd', {}, String(facts.cpu_model))
                ] :
                null),
          x.local ?
              notice(
                  'This is the host havend runs on: choose it to restore its own VMs again (same-named VMs that exist here are conflicts unless replaced).',
                  'info') :
              null);
    };
    sel.addEventListener('change', describe);
    describe();
    return section(
        'host', 'Which host was lost?',
        h('p', {class: 'muted'},
          `Its VMs come back on this host (${local.name}).`),
        field('Host', sel), about);
  };

  // ---- step 2: its VMs and their latest good points
  const vmsStep = async () => {
    const r = await allPoints({kind: 'vm', agent: st.host});
    const byVm = new Map();
    for (const p of r.points || []) {  // newest first
      if (!byVm.has(p.name))
        byVm.set(p.name, {name: p.name, point: null, skipped: 0});
      const e = byVm.get(p.name);
      if (e.point) continue;
      if (p.repaired)
        e.skipped++;
      else
        e.point = p;
    }
    st.vms = [...byVm.values()]
                 .filter(v => v.point)
                 .sort((a, b) => a.name.localeCompare(b.name));
    if (!st.vms.length)
      return section(
          'vms', `VMs of ${st.host}`,
          notice(`No usable VM backup of ${st.host} was found.`, 'warn'));
    await Promise.all(st.vms.map(async v => {
      const key = v.point.repository + '/' + v.point.id;
      if (!st.details.has(key))
        st.details.set(
            key,
            await api
                .get(`/points/${enc(v.point.repository)}/${enc(v.point.id)}`)
                .catch(e => ({error: e})));
      v.detail = st.details.get(key);
      v.nets = domainNetworks(v.detail.domain_xml);
    }));
    if (!st.picked.size || ![...st.picked].every(n => byVm.has(n)))
      st.picked = new Set(st.vms.map(v => v.name));
    const rows = st.vms.map(v => {
      const cb = h('input', {
        type: 'checkbox',
        class: 'vm-pick',
        value: v.name,
        checked: st.picked.has(v.name),
        id: 'pick-' + v.name.replace(/[^A-Za-z0-9_-]/g, '_')
      });
      const p = v.point;
      const nets = v.nets.length ?
          v.nets.map(n => `${n.type === 'bridge' ? 'bridge ' : ''}${n.name}`)
              .join(', ') :
          'no networks';
      return h(
          'tr', {dataset: {vm: v.name}}, h('td', {'data-label': 'Restore'}, cb),
          h('td', {'data-label': 'VM'},
            h('div', {},
              h('label',
                {for: cb.id
                },
                h('strong', {}, v.name)),
              localVms.has(v.name) ?
                  h('div', {class: 'muted'}, 'a VM of this name exists here') :
                  null)),
          h('td', {'data-label': 'Latest good point'},
            h('div', {}, fmtTime(p.time),
              h('div', {class: 'muted mono'},
                p.id.slice(0, 8) + ' · ' + p.repository),
              v.skipped ? h('div', {class: 'muted'},
                            `${v.skipped} newer repaired point(s) skipped`) :
                          null)),
          h('td', {'data-label': 'Consistency'},
            badge(
                p.consistency === 'crash-consistent' ? 'warning' : 'ok',
                p.consistency || 'unknown')),
          h('td', {'data-label': 'Size', class: 'num'},
            fmtBytes(p.logical_bytes)),
          h('td', {'data-label': 'Networks'},
            v.detail.error ? errorBox(v.detail.error) : nets));
    });
    const tbl =
        h('div', {class: 'table-wrap'},
          h('table', {class: 'data stack', id: 'host-vms'},
            h('thead', {},
              h('tr', {},
                [
                  'Restore', 'VM', 'Latest good point', 'Consistency', 'Size',
                  'Networks'
                ].map(t => h('th', {scope: 'col'}, t)))),
            h('tbody', {}, rows)));
    const all = h('button', {type: 'button', class: 'link'}, 'all');
    const none = h('button', {type: 'button', class: 'link'}, 'none');
    const setAll = (on) =>
        tbl.querySelectorAll('input.vm-pick').forEach(c => c.checked = on);
    all.addEventListener('click', () => setAll(true));
    none.addEventListener('click', () => setAll(false));
    wiz.collect = () => {
      st.picked = new Set([
        ...tbl.querySelectorAll('input.vm-pick')
      ].filter(c => c.checked).map(c => c.value));
      st.order = st.order.filter(n => st.picked.has(n));
      for (const v of st.vms)
        if (st.picked.has(v.name) && !st.order.includes(v.name))
          st.order.push(v.name);
    };
    return section(
        'vms', `VMs of ${st.host}`,
        h('p', {class: 'muted'},
          'Each VM\'s newest recovery point that was not repaired. Choose which to bring back: ',
          all, ' · ', none),
        tbl);
  };

  // ---- step 3: boot order
  const orderStep = () => {
    const list = h('ol', {class: 'order-list', id: 'boot-order'});
    const draw = (focus) => {
      clear(list, st.order.map((name, i) => {
        const up =
            h('button', {
              type: 'button',
              class: 'up',
              'aria-label': `Move ${name} up`,
              disabled: i === 0
            },
              '↑ Up');
        const down =
            h('button', {
              type: 'button',
              class: 'down',
              'aria-label': `Move ${name} down`,
              disabled: i === st.order.length - 1
            },
              '↓ Down');
        up.addEventListener('click', () => move(i, -1, 'up'));
        down.addEventListener('click', () => move(i, 1, 'down'));
        return h(
            'li', {dataset: {vm: name}}, h('span', {class: 'name'}, name), up,
            down);
      }));
      if (focus) {
        const li = list.children[focus.index];
        const b = li &&
            (li.querySelector('button.' + focus.dir + ':not(:disabled)') ||
             li.querySelector('button:not(:disabled)'));
        b && b.focus();
      }
    };
    const move = (i, by, dir) => {
      const j = i + by;
      if (j < 0 || j >= st.order.length) return;
      [st.order[i], st.order[j]] = [st.order[j], st.order[i]];
      draw({index: j, dir});
      live.textContent = `${st.order[j]} is now number ${j + 1}.`;
    };
    const live = h('p', {class: 'muted', 'aria-live': 'polite'});
    draw();
    return section(
        'order', 'Boot order',
        h('p', {class: 'muted'},
          'The VMs are restored in this order and, if they are to be started, each starts as soon as it is restored — put what others need (directory, database) first.'),
        list, live);
  };

  // ---- step 4: options
  const optionsStep = async () => {
    if (!res) res = await hostResources(local.name);
    const chosen = st.vms.filter(v => st.picked.has(v.name));
    const nets = new Map();
    for (const v of chosen)
      for (const n of v.nets) {
        const key = n.type + ':' + n.name;
        if (!nets.has(key))
          nets.set(key, {...n, macs: [...n.macs], hasXml: false, vms: []});
        const e = nets.get(key);
        e.vms.push(v.name);
        if (v.detail.network_xml && v.detail.network_xml[n.name])
          e.hasXml = true;
      }
    const rows = [...nets.values()].map(n => {
      const r = netMapRow(n, res.networks, n.hasXml, st.netChoice[n.name]);
      r.row.querySelector('label').append(
          h('span', {class: 'muted'}, ` — used by ${n.vms.join(', ')}`));
      return r;
    });
    const opts = storageOptions(st, res);
    const {format, storage, pool, usable, start} = opts;
    const replace =
        h('input', {type: 'checkbox', id: 'opt-replace', checked: st.replace});
    const clash = chosen.filter(v => localVms.has(v.name)).map(v => v.name);
    wiz.collect = () => {
      st.replace = replace.checked;
      collectOptions(st, opts, rows);
    };
    return section(
        'options', 'Options', h('h3', {}, 'Networks'), resourcesError(res),
        rows.length ?
            h('div', {}, rows.map(r => r.row)) :
            h('p', {class: 'muted'},
              'The chosen VMs have no interfaces on libvirt networks or bridges.'),
        h('h3', {}, 'Storage'),
        h('div', {class: 'inline-fields'},
          field(
              'Storage folder', storage,
              'For every VM\'s disk files (absolute path). Empty: /var/lib/libvirt/images.'),
          field(
              'or a storage pool', pool,
              usable.length ?
                  'A folder-backed libvirt pool of this host.' :
                  'This host has no active folder pool (dir, fs, netfs).'),
          field('Disk format', format)),
        h('label', {class: 'checkline'}, start,
          h('span', {}, h('strong', {}, 'Start each VM once it is restored'),
            h('span', {class: 'muted'}, ' (in the boot order)'))),
        h('label', {class: 'checkline'}, replace,
          h('span', {}, h('strong', {}, 'Replace same-named VMs on this host'),
            h('span', {class: 'muted'},
              clash.length ?
                  ` — ${clash.join(', ')} exist${
                      clash.length === 1 ?
                          's' :
                          ''} here: replacing stops and undefines ${
                      clash.length === 1 ?
                          'it' :
                          'them'} and overwrites their disk files. Everything written since the backup is lost.` :
                  ' — none of the chosen VMs exists here.'))));
  };

  // ---- step 5: plan
  const planStep = async () => {
    const chosen = st.order.map(n => st.vms.find(v => v.name === n));
    const repos = new Set(chosen.map(v => v.point.repository));
    if (repos.size > 1)
      throw new Error(`The chosen VMs' points are in ${
          repos.size} repositories (${
              [...repos].join(
                  ', ')}); one plan restores from one repository. Go back and choose the VMs of one repository, then restore the others with a second plan.`);
    const req = {
      repository: [...repos][0],
      points: chosen.map(v => v.point.id),
      format: st.format,
      start: st.start,
      replace: st.replace,
      ...placeRequest(st),
    };
    const vms = await makePlan(st, '/restores/host/plan', req);
    const text =
        h('div', {id: 'plan-text', class: 'plan-text'},
          h('p', {},
            h('strong', {},
              `Bring back ${vms.length} VM${vms.length > 1 ? 's' : ''} of ${
                  st.host} on ${local.name}, in this order:`)),
          h('ol', {},
            vms.map(
                v =>
                    h('li', {},
                      planWords(v, st, st.replace, local.name, localVms)))),
          planSummary(st.plan));
    return planSection(wiz, text);
  };

  // ---- step 6: run
  const run = () => runPlan(wiz, st, '/restores/host');
  const runStep = () => {
    const panel = runPanel(st.job, ctx, st.order);
    followRun(wiz, st, ctx, panel, 'report');
    return section(
        'run',
        `Restoring ${st.order.length} VM${st.order.length > 1 ? 's' : ''} of ${
            st.host}`,
        panel.el,
        h('p', {class: 'muted'},
          `In order: ${
              st.order.join(
                  ' → ')}. One VM failing does not stop the others.`));
  };

  // ---- step 7: report
  const reportStep = () => {
    const job = st.finished;
    const {list, vms} = resultList(job);
    const back = vms.filter(v => v.ok), lost = vms.filter(v => !v.ok);
    const headline = job.state === 'succeeded' ?
        notice(
            `All ${back.length} VM${
                back.length > 1 ? 's are' : ' is'} back on ${local.name}.`,
            'ok') :
        h('div', {class: 'error', role: 'alert'},
          h('strong', {},
            `${back.length} of ${
                vms.length || st.order.length} VMs came back. `),
          job.error || '');
    const box =
        h('div', {id: 'host-report', dataset: {state: job.state}}, headline,
          h('h3', {}, 'In restore order'),
          vms.length ? list : h('p', {}, 'No VM was restored.'),
          lost.length || job.state !== 'succeeded' ? whatToDo(job) : null,
          jobLogLink(job));
    return section('report', 'Report', box);
  };

  wiz.views = {
    host: hostStep,
    vms: vmsStep,
    order: orderStep,
    options: optionsStep,
    plan: planStep,
    run: runStep,
    report: reportStep
  };
  await wiz.start('host');
}
