// #/dashboard: the state of every backup at a glance. Every VM of every
// host (this one and the lost ones, known only from their points) and
// every file-level agent with its last backup, size, consistency, the next
// scheduled run that covers it and whether it is overdue; the jobs running
// now with live progress; the failed jobs of the last 7 days; each
// repository's usage over time.
import * as api from '../api.js';
import {badge, clear, errorBox, fmtBytes, fmtDuration, fmtTime, go, h, notice, pageTitle, setProgress, table, timeAgo, toDate} from '../ui.js';

import {bar, debounce, FINAL_STATES, jobLink, jobTarget, kindWords, liveEvents, OUTCOME_STATE, progressFraction, progressText, stateBadge} from './jobs.js';

const HOUR = 3600e3, DAY = 86400e3;
// A file-level agent runs on its own machine's timer; havend does not
// know when it should have run. Older than this is marked.
const AGENT_STALE_MS = 2 * DAY;

// ---- small pure helpers

function globRegExp(glob) {
  let re = '';
  for (const c of glob) {
    if (c === '*')
      re += '.*';
    else if (c === '?')
      re += '.';
    else
      re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

// Whether a backup schedule's params cover the VM `name`.
function covers(schedule, name) {
  const p = schedule.params || {};
  if (Array.isArray(p.vms) && !p.all) return p.vms.includes(name);
  if (p.all) {
    const ex = Array.isArray(p.exclude) ? p.exclude : [];
    return !ex.some(g => g === name || globRegExp(g).test(name));
  }
  return false;
}

function ms(t) {
  const d = toDate(t);
  return d ? d.getTime() : null;
}

function spanWords(msSpan) {
  return fmtDuration(msSpan / 1000).replace(/ 0 s$/, '').replace(/ 0 min$/, '');
}

function daysWords(msSpan) {
  const d = msSpan / DAY;
  if (d >= 2) return `${Math.floor(d)} days`;
  const hrs = Math.round(msSpan / HOUR);
  return hrs <= 1 ? '1 hour' : `${hrs} hours`;
}

// The state of a VM's last backup: what its last attempt ended with, else
// (no job history, e.g. backed up with the CLI) its last point's existence.
function lastState(vm) {
  const a = vm.last_attempt;
  if (a && a.outcome) return OUTCOME_STATE[a.outcome] || a.outcome;
  if (a && a.failed) return 'failed';
  if (vm.last_point) return 'succeeded';
  return 'never';
}

// For each covering schedule: is the VM overdue? Returns
// {schedule, next, overdue, expect} with the next run of all covering
// schedules and, when overdue, the words why.
function scheduleView(vm, schedules) {
  // A VM no longer defined here is backed up only by a schedule naming it
  // (where it fails); "all VMs" means the defined ones.
  const cov = schedules.filter(
      s => s.kind === 'backup' && covers(s, vm.name) &&
          (vm.defined !== false || !(s.params || {}).all));
  const enabled = cov.filter(s => s.enabled !== false);
  let next = null;
  for (const s of enabled) {
    const t = ms(s.next_run);
    if (t !== null && (next === null || t < next.time))
      next = {time: t, schedule: s};
  }
  // Overdue is havend's judgement (the rule of its overdue notifications,
  // appliance/overdue.h), not the console's.
  let overdue = null;
  if (vm.overdue) {
    const o = vm.overdue;
    overdue = {
      schedule:
          schedules.find(s => s.name === o.schedule) || {name: o.schedule},
      interval: (o.expected_interval_seconds || 0) * 1000,
      never: o.last_success === null
    };
  }
  return {covering: cov, enabled, next, overdue};
}

// ---- SVG

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {}))
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children)
    if (c) el.append(c);
  return el;
}

// A line chart of stored and logical bytes over time (one scale from 0, so
// the gap between them is the space deduplication and compression save).
function usageChart(samples, repoName) {
  const W = 600, H = 140, PAD = 4;
  const pts = samples
                  .map(s => ({
                         t: ms(s.time),
                         logical: Number(s.logical_bytes) || 0,
                         stored: Number(s.stored_bytes) || 0
                       }))
                  .filter(s => s.t !== null)
                  .sort((a, b) => a.t - b.t);
  const t0 = pts[0].t, t1 = pts[pts.length - 1].t;
  const max = Math.max(1, ...pts.map(p => Math.max(p.logical, p.stored)));
  const x = t => t1 === t0 ? W / 2 : PAD + (t - t0) / (t1 - t0) * (W - 2 * PAD);
  const y = v => H - PAD - v / max * (H - 2 * PAD);
  const line = key =>
      pts.map(p => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
  const last = pts[pts.length - 1];
  const grid = [0.5, 1].map(f => svg('line', {
                              class: 'grid',
                              x1: 0,
                              x2: W,
                              y1: y(max * f).toFixed(1),
                              y2: y(max * f).toFixed(1)
                            }));
  const chart =
      svg('svg', {
        class: 'chart usage-chart',
        viewBox: `0 0 ${W} ${H}`,
        preserveAspectRatio: 'none',
        role: 'img',
        'aria-label':
            `${repoName}: stored ${fmtBytes(last.stored)} and logical ${
                fmtBytes(last.logical)} over ${pts.length} samples from ${
                fmtTime(new Date(t0))} to ${fmtTime(new Date(t1))}`
      },
          ...grid, svg('polyline', {
            class: 'logical',
            points: line('logical'),
            'vector-effect': 'non-scaling-stroke'
          }),
          svg('polyline', {
            class: 'stored',
            points: line('stored'),
            'vector-effect': 'non-scaling-stroke'
          }));
  return h(
      'figure', {class: 'usage'},
      h('div', {class: 'chart-top muted small'}, fmtBytes(max)), chart,
      h('div', {class: 'chart-axis muted small'},
        h('span', {}, fmtTime(new Date(t0))),
        h('span', {}, fmtTime(new Date(t1)))),
      h('figcaption', {class: 'legend'},
        h('span', {class: 'k-stored'}, `stored ${fmtBytes(last.stored)}`),
        h('span', {class: 'k-logical'}, `logical ${fmtBytes(last.logical)}`)));
}

// ---- the page

export async function render(view, ctx) {
  const me = ctx.me;
  const canRun = api.hasRole(me, 'operator');
  const allBtn = canRun ?
      h('button', {type: 'button', id: 'backup-all', class: 'primary'},
        'Back up all VMs now') :
      null;
  const updated =
      h('span', {class: 'muted small', id: 'dash-updated', 'aria-live': 'off'});
  const headErr = h('div');
  view.append(pageTitle('Dashboard', updated, allBtn), headErr);

  const summary = h('div', {id: 'dash-summary'});
  const lost = h('div', {id: 'lost-hosts'});
  const running = h('div', {id: 'running-jobs', 'aria-live': 'polite'});
  const vmHolder = h('div', {}, h('p', {class: 'muted'}, 'Loading…'));
  const agentHolder = h('div');
  const failedHolder = h('div');
  const repoHolder = h('div', {id: 'repositories'});
  view.append(
      summary, lost,
      h('section', {class: 'card'}, h('h2', {}, 'Running jobs'), running),
      h('section', {class: 'card'}, h('h2', {}, 'Virtual machines'), vmHolder),
      h('section', {class: 'card'}, h('h2', {}, 'Failed jobs, last 7 days'),
        failedHolder),
      h('section', {class: 'card', id: 'agents'},
        h('h2', {}, 'File-level agents'), agentHolder),
      h('section', {class: 'card'}, h('h2', {}, 'Repositories'), repoHolder));

  if (allBtn) {
    allBtn.addEventListener('click', async () => {
      if (!window.confirm('Back up every VM of this host now?')) return;
      allBtn.disabled = true;
      try {
        const r = await api.post('/backups', {all: true});
        go('/job', {id: r.job});
      } catch (e) {
        clear(headErr, errorBox(e, 'The backup could not be started'));
      } finally {
        allBtn.disabled = false;
      }
    });
  }

  let left = false;
  let schedules = [];

  // ---- running jobs (live)
  const runRows = new Map();  // id -> {row, bar, text, state}

  function runRow(job) {
    const b = bar(
        progressFraction(job.state, job.progress), `job ${job.id} progress`);
    const text =
        h('div', {class: 'muted small'},
          progressText(job.state, job.progress, job.queue_reason));
    const st = h('span', {}, stateBadge(job.state));
    const row =
        h('div', {class: 'run-row', dataset: {job: String(job.id)}},
          h('div', {class: 'run-head'}, st, ' ', jobLink(job), ' ',
            h('strong', {}, kindWords(job.kind)), ' ',
            h('span', {class: 'muted'}, jobTarget(job))),
          b, text);
    const r = {
      row,
      bar: b,
      text,
      st,
      job,
      state: job.state,
      queue_reason: job.queue_reason
    };
    runRows.set(String(job.id), r);
    return row;
  }

  function runEmpty() {
    const old = running.querySelector('.run-empty');
    if (old) old.remove();
    if (runRows.size) return;
    let next = null;
    for (const s of schedules)
      if (s.enabled !== false && s.next_run &&
          (!next || ms(s.next_run) < ms(next.next_run)))
        next = s;
    running.append(
        h('p', {class: 'muted run-empty'}, 'No job is running.',
          next ?
              [
                ' Next scheduled: ',
                h('a', {href: `#/schedule?id=${next.id}`}, next.name),
                ` (${kindWords(next.kind).toLowerCase()}) `,
                timeAgo(next.next_run), '.'
              ] :
              ' No schedule is set up — ',
          next ? null : h('a', {href: '#/schedules'}, 'create one'),
          next ? null : '.'));
  }

  async function loadRunning() {
    const [r, q] = await Promise.all([
      api.get('/jobs', {state: 'running', limit: 100}),
      api.get('/jobs', {state: 'queued', limit: 100})
    ]);
    const jobs =
        [...(r.jobs || []), ...(q.jobs || [])].sort((a, b) => a.id - b.id);
    const ids = new Set(jobs.map(j => String(j.id)));
    let changed = false;
    for (const [id, rr] of runRows)
      if (!ids.has(id) && !rr.ending) {
        rr.row.remove();
        runRows.delete(id);
        changed = true;
      }
    for (const j of jobs) {
      const rr = runRows.get(String(j.id));
      if (rr) {
        updateRun(rr, j.state, j.progress, j.queue_reason);
      } else {
        running.append(runRow(j));
        changed = true;
      }
    }
    runEmpty();
    return changed;
  }

  function updateRun(rr, state, progress, queueReason) {
    if (state && state !== rr.state) {
      rr.state = state;
      clear(rr.st, stateBadge(state));
    }
    if (queueReason !== undefined) rr.queue_reason = queueReason;
    if (progress) rr.progress = progress;
    setProgress(rr.bar, progressFraction(rr.state, rr.progress));
    rr.text.textContent = progressText(rr.state, rr.progress, rr.queue_reason);
  }

  async function jobStarted(id) {
    if (runRows.has(String(id))) return;
    try {
      const j = await api.get(`/jobs/${id}`);
      if (left || runRows.has(String(id)) || FINAL_STATES.includes(j.state))
        return;
      running.append(runRow(j));
      runEmpty();
      reload();
    } catch { /* the poll will catch up */
    }
  }

  function jobEnded(id, state) {
    const rr = runRows.get(String(id));
    if (!rr) return;
    rr.ending = true;
    updateRun(rr, state, null);
    rr.text.textContent =
        state === 'succeeded' ? 'Finished' : `Ended: ${state}`;
    setTimeout(() => {
      rr.row.remove();
      runRows.delete(String(id));
      runEmpty();
    }, 4000);
  }

  // ---- VMs, agents, failed jobs, repositories

  // The running or queued backup job that covers the VM `name`, if any.
  function runningFor(name) {
    for (const rr of runRows.values()) {
      const j = rr.job;
      if (!j || j.kind !== 'backup' || rr.ending) continue;
      if (covers({params: j.params}, name)) return {id: j.id, state: rr.state};
    }
    return null;
  }

  function vmRow(v, host, now) {
    const state = lastState(v);
    const sv = host.local ? scheduleView(v, schedules) : null;
    const lastOk = v.last_point ? v.last_point.time : null;
    const a = v.last_attempt;

    const stateCell = h('div', {class: 'cell-stack'});
    const b = badge(state, state === 'never' ? 'never backed up' : state);
    stateCell.append(
        h('div', {}, b, ' ',
          state === 'never'                            ? null :
              a && a.ended_at && state !== 'succeeded' ? timeAgo(a.ended_at) :
                                                         timeAgo(lastOk)));
    if (state !== 'succeeded' && state !== 'never' && lastOk)
      stateCell.append(
          h('div', {class: 'muted small'}, 'last success ', timeAgo(lastOk)));
    else if (state !== 'succeeded' && state !== 'never' && !lastOk)
      stateCell.append(
          h('div', {class: 'muted small'}, 'no successful backup yet'));
    if (a && a.error && state !== 'succeeded')
      stateCell.append(h('div', {class: 'err-text small'}, a.error));
    if (a && a.job)
      stateCell.append(
          h('div', {class: 'small'},
            h('a', {href: `#/job?id=${a.job}`}, `job #${a.job}`)));
    const busy = host.local ? runningFor(v.name) : null;
    if (busy)
      stateCell.append(h(
          'div', {class: 'small'},
          badge(
              'running', busy.state === 'queued' ? 'queued' : 'backing up now'),
          ' ', h('a', {href: `#/job?id=${busy.id}`}, `job #${busy.id}`)));
    if (sv && sv.overdue) {
      const o = sv.overdue;
      stateCell.append(
          h('div', {class: 'overdue'}, badge('overdue', 'overdue'), ' ',
            h('span', {class: 'warn-text small'},
              o.never ?
                  `never backed up, though schedule ${
                      o.schedule.name} runs every ${spanWords(o.interval)}` :
                  `no backup for ${daysWords(now - ms(lastOk))}; schedule ${
                      o.schedule.name} runs every ${spanWords(o.interval)}`)));
    }

    const lp = v.last_point;
    const size = lp ?
        h('div', {class: 'cell-stack'},
          h('span', {}, fmtBytes(lp.logical_bytes)),
          h('span',
            {class: 'muted small', title: 'new data stored by that backup'},
            `+${fmtBytes(lp.new_stored_bytes)} stored`)) :
        '–';
    const cons = lp && lp.consistency ?
        h('span',
          {class: 'cons cons-' + lp.consistency.replace(/[^a-z-]/g, '')},
          lp.consistency) :
        '–';

    let next;
    if (!host.local) {
      next = h('span', {class: 'muted'}, 'none — host lost');
    } else if (sv.next) {
      next = h(
          'div', {class: 'cell-stack'},
          h('span', {}, timeAgo(new Date(sv.next.time))),
          h('a', {class: 'small', href: `#/schedule?id=${sv.next.schedule.id}`},
            sv.next.schedule.name));
    } else if (sv.covering.length) {
      next = h('span', {class: 'warn-text'}, 'schedule disabled');
    } else {
      next = h('span', {class: 'warn-text'}, 'not in any schedule');
    }

    const actions = h('div', {class: 'row-actions'});
    const rowErr = h('div');
    if (canRun && host.local && v.defined !== false) {
      const btn =
          h('button', {
            type: 'button',
            class: 'backup-vm',
            'aria-label': `Back up ${v.name} now`
          },
            'Back up now');
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        clear(rowErr);
        try {
          const r = await api.post('/backups', {vms: [v.name]});
          go('/job', {id: r.job});
        } catch (e) {
          clear(
              rowErr,
              errorBox(e, `The backup of ${v.name} could not be started`));
          btn.disabled = false;
        }
      });
      actions.append(btn);
    }
    if (canRun && v.points > 0)
      actions.append(h(
          'a',
          {class: 'btn', href: `#/restore/vm?vm=${encodeURIComponent(v.name)}`},
          'Restore…'));
    actions.append(rowErr);

    const vmCell = h(
        'div', {class: 'cell-stack'},
        h('a',
          {href: `#/points?vm=${encodeURIComponent(v.name)}`, class: 'vm-name'},
          v.name),
        h('span', {class: 'muted small'}, [
          host.local && v.defined === false    ? 'not defined here any more' :
              v.state && v.state !== 'unknown' ? v.state :
                                                 '',
          v.points ? `${v.points} point${v.points === 1 ? '' : 's'}` :
                     'no points'
        ].filter(Boolean).join(' · ')));
    const hostCell = host.local ?
        h('span', {}, host.name) :
        h('span', {class: 'cell-stack'},
          h('span', {}, host.name, ' ', badge('lost', 'lost')),
          canRun ? h('a', {
            class: 'small',
            href: `#/restore/host?host=${encodeURIComponent(host.name)}`
          },
                     'Restore this host…') :
                   null);
    return {
      v,
      host,
      state,
      overdue: !!(sv && sv.overdue),
      cells: {
        vm: vmCell,
        state: stateCell,
        size,
        cons,
        next,
        host: hostCell,
        actions
      }
    };
  }

  function renderVms(hostsData, now) {
    const rows = [];
    for (const {host, vms} of hostsData)
      for (const v of vms) rows.push(vmRow(v, host, now));
    const multi = hostsData.length > 1;
    const cols = [
      {title: 'VM', class: 'lead', cell: r => r.cells.vm},
      {title: 'Last backup', cell: r => r.cells.state},
      {title: 'Size', class: 'num', cell: r => r.cells.size},
      {title: 'Consistency', cell: r => r.cells.cons},
      {title: 'Next run', cell: r => r.cells.next},
      multi ? {title: 'Host', cell: r => r.cells.host} : null,
      {title: '', class: 'actions-col', cell: r => r.cells.actions},
    ].filter(Boolean);
    const t = table(cols, rows, {
      id: 'vm-table',
      class: 'stack',
      empty:
          'No VMs found on this host and no VM backups yet. Define a VM in libvirt, then back it up here or with a schedule.',
      rowData: r => ({
        vm: r.v.name,
        host: r.host.name,
        state: r.state,
        overdue: r.overdue ? 'yes' : 'no'
      })
    });
    for (const tr of t.querySelectorAll(
             'tbody tr[data-overdue=yes], tbody tr[data-state=failed]'))
      tr.classList.add('attention');
    for (const tr of t.querySelectorAll('tbody tr[data-host]'))
      if (!hostsData.find(d => d.host.name === tr.dataset.host)?.host.local)
        tr.classList.add('lost-row');
    return {table: t, rows};
  }

  function renderAgents(points, now) {
    const byKey = new Map();
    for (const p of points) {
      const k = `${p.name}\u0000${p.hostname}`;
      const e = byKey.get(k);
      if (!e)
        byKey.set(k, {latest: p, count: 1});
      else
        e.count++;
    }
    const rows = [...byKey.values()].sort(
        (a, b) => a.latest.name.localeCompare(b.latest.name));
    const cols = [
      {
        title: 'Backup name',
        class: 'lead',
        cell: r =>
            h('div', {class: 'cell-stack'},
              h('a', {href: `#/points?vm=${encodeURIComponent(r.latest.name)}`},
                r.latest.name),
              h('span', {class: 'muted small'},
                `${r.count}${r.count >= 1000 ? '+' : ''} point${
                    r.count === 1 ? '' : 's'}`))
      },
      {title: 'Machine', cell: r => r.latest.hostname || '–'},
      {
        title: 'Last backup',
        cell: r => {
          const p = r.latest, age = now - ms(p.time);
          const st = p.partial ? 'partial' : 'succeeded';
          return h(
              'div', {class: 'cell-stack'},
              h('div', {}, badge(st), ' ', timeAgo(p.time)),
              p.partial ? h('div', {class: 'warn-text small'},
                            'some files could not be read') :
                          null,
              age > AGENT_STALE_MS ?
                  h('div', {class: 'overdue'}, badge('overdue', 'stale'), ' ',
                    h('span', {class: 'warn-text small'},
                      `no backup for ${daysWords(age)}`)) :
                  null);
        }
      },
      {
        title: 'Size',
        class: 'num',
        cell: r =>
            h('div', {class: 'cell-stack'},
              h('span', {}, fmtBytes(r.latest.logical_bytes)),
              h('span', {class: 'muted small'},
                `+${fmtBytes(r.latest.new_stored_bytes)} stored`))
      },
      {
        title: 'Consistency',
        cell: r =>
            h('span', {title: r.latest.consistency_reason || ''},
              r.latest.consistency || '–')
      },
      {
        title: 'Next run',
        cell: () => h('span', {class: 'muted'}, 'set on that machine')
      },
      {
        title: '',
        class: 'actions-col',
        cell: r =>
            h('a', {
              class: 'btn',
              href:
                  `#/point?repo=${encodeURIComponent(r.latest.repository)}&id=${
                      encodeURIComponent(r.latest.id)}`
            },
              'Browse files…')
      },
    ];
    return table(cols, rows, {
      id: 'agent-table',
      class: 'stack',
      empty:
          'No file-level backups yet. Machines that are not VMs here back up with `haven backup files` into a repository of this appliance.',
      rowData: r => ({agent: r.latest.name, host: r.latest.hostname || ''})
    });
  }

  function renderFailed(jobs) {
    if (!jobs.length) return notice('No failed jobs in the last 7 days.', 'ok');
    const cols = [
      {
        title: 'Job',
        class: 'lead',
        cell: j =>
            h('span', {}, jobLink(j), ' ', kindWords(j.kind), ' ',
              h('span', {class: 'muted'}, jobTarget(j)))
      },
      {title: 'State', cell: j => stateBadge(j.state)},
      {title: 'When', cell: j => timeAgo(j.ended_at || j.queued_at)},
      {
        title: 'Error',
        cell: j => h('span', {class: 'err-text'}, j.error || 'see the job')
      },
    ];
    return h(
        'div', {}, table(cols, jobs, {
          id: 'failed-jobs',
          class: 'stack',
          rowData: j => ({job: String(j.id)})
        }),
        h('p', {},
          h('a', {href: '#/jobs?state=failed&since=7d'}, 'All failed jobs →')));
  }

  async function repoCard(r) {
    const card =
        h('div', {class: 'repo', dataset: {repository: r.name}},
          h('h3', {}, r.name, ' ',
            h('span', {class: 'muted small mono'}, r.path || '')));
    if (r.error) {
      card.append(errorBox(r.error, 'This repository cannot be opened'));
      return card;
    }
    const used =
        r.filesystem_bytes > 0 ? 1 - r.free_bytes / r.filesystem_bytes : null;
    const fsBar =
        used !== null ? bar(used, `${r.name} file system used`) : null;
    if (fsBar && used > 0.9) fsBar.classList.add('full');
    const KIND = {files: 'file-level', vm: 'VM', image: 'image'};
    const kindsText = r.points_by_kind ?
        Object.entries(r.points_by_kind)
            .map(([k, n]) => `${n} ${KIND[k] || k}`)
            .join(', ') :
        '';
    const body = h('div', {class: 'repo-body'});
    card.append(body);
    body.append(
        h('dl', {class: 'props'}, h('dt', {}, 'Points'),
          h('dd', {}, String(r.points ?? '–'),
            kindsText ? h('span', {class: 'muted'}, ` (${kindsText})`) : null,
            r.unreadable_points ? h('span', {class: 'err-text'},
                                    ` · ${r.unreadable_points} unreadable`) :
                                  null),
          h('dt', {}, 'Latest'), h('dd', {}, timeAgo(r.latest_point_time)),
          h('dt', {}, 'Logical'),
          h('dd', {}, fmtBytes(r.logical_bytes),
            h('span', {class: 'muted'}, ' (what the points hold)')),
          h('dt', {}, 'Stored'),
          h('dd', {}, fmtBytes(r.stored_bytes),
            r.reduction_ratio > 0 ?
                h('span', {class: 'muted'},
                  ` (${
                      r.reduction_ratio >= 10 ?
                          Math.round(r.reduction_ratio) :
                          r.reduction_ratio.toFixed(1)}× smaller)`) :
                null),
          h('dt', {}, 'Free'),
          h('dd', {},
            r.free_bytes != null ?
                `${fmtBytes(r.free_bytes)} of ${fmtBytes(r.filesystem_bytes)}` :
                '–',
            fsBar)));
    const chartHolder =
        h('div', {class: 'chart-holder'},
          h('p', {class: 'muted small'}, 'Loading the usage history…'));
    body.append(chartHolder);
    try {
      const u = await api.get(
          `/repositories/${encodeURIComponent(r.name)}/usage`, {days: 30});
      const samples = (u && u.samples) || [];
      if (samples.length >= 2)
        clear(
            chartHolder, h('div', {class: 'muted small'}, 'Last 30 days'),
            usageChart(samples, r.name));
      else
        clear(
            chartHolder,
            h('p', {class: 'muted small'},
              'The usage history starts with the next backup.'));
    } catch (e) {
      clear(
          chartHolder,
          h('p', {class: 'muted small'},
            e.status === 404 ?
                'The usage history starts with the next backup.' :
                `No usage history: ${e.message}`));
    }
    return card;
  }

  function renderSummary(vmRows, agentCount, hostsData) {
    const local = vmRows.filter(r => r.host.local);
    const failed = vmRows.filter(
        r => r.host.local && ['failed', 'partial'].includes(r.state));
    const overdue = vmRows.filter(r => r.overdue);
    const never = local.filter(r => r.state === 'never');
    const ok = local.filter(r => r.state === 'succeeded' && !r.overdue);
    const stat = (n, words, cls, href) =>
        h(href ? 'a' : 'div', {class: `stat-box ${cls}`, href},
          h('span', {class: 'stat'}, String(n)), h('span', {}, words));
    const boxes =
        h('div', {class: 'stats'},
          stat(
              ok.length, `of ${local.length} ${local.length === 1 ? 'VM' : 'VMs'} backed up on time`,
              ok.length === local.length && local.length ? 'good' : ''),
          stat(failed.length, 'last backup failed', failed.length ? 'bad' : ''),
          stat(overdue.length, 'overdue', overdue.length ? 'warn' : ''),
          stat(never.length, 'never backed up', never.length ? 'warn' : ''),
          stat(agentCount, 'file-level agents', ''));
    const names = rs => rs.map(r => r.v.name).join(', ');
    const lostHosts = hostsData.filter(d => !d.host.local);
    const out = [boxes];
    if (failed.length)
      out.push(
          h('div', {class: 'error', role: 'status'},
            h('strong', {}, 'Last backup failed: '), names(failed), '. ',
            'Open its job (in the row) to see why' +
                (canRun ? '; “Back up now” runs it again.' : '.')));
    if (overdue.length)
      out.push(
          h('div', {class: 'notice warn', role: 'status'},
            h('strong', {}, 'Overdue: '), names(overdue), '. ',
            'Their schedule should have backed them up by now' +
                (canRun ? '; “Back up now” in the row starts one.' : '.')));
    if (!failed.length && !overdue.length && local.length && !never.length &&
        !lostHosts.length)
      out.push(notice(
          local.length === 1 ? 'The VM of this host has a recent backup.' : `All ${local.length} VMs of this host have a recent backup.`, 'ok'));
    return out;
  }

  function renderLost(hostsData) {
    const out = [];
    for (const {host, vms, error} of hostsData) {
      if (host.local) {
        if (host.reachable === false || error)
          out.push(errorBox(
              error || 'libvirt does not answer', `Host ${host.name}`));
        continue;
      }
      const n = vms.length || host.vms_with_points || 0;
      out.push(
          h('div', {
            class: 'notice warn lost-host',
            role: 'status',
            dataset: {host: host.name}
          },
            h('span', {},
              h('strong', {}, `Host ${host.name} is lost or not connected`),
              ` — known only from its backups: ${n} VM${
                  n === 1 ? '' : 's'}, latest point `,
              timeAgo(host.latest_point_time), '.'),
            canRun ? h('a', {
              href: `#/restore/host?host=${encodeURIComponent(host.name)}`,
              class: 'btn primary'
            },
                       'Restore this host…') :
                     h('span', {class: 'muted small'},
                       'An operator can restore its VMs.')));
    }
    return out;
  }

  let loading = false;
  async function load() {
    if (loading || left) return;
    loading = true;
    const focusVm = document.activeElement && document.activeElement.closest &&
        document.activeElement.closest('#vm-table tr[data-vm]');
    const focusKey = focusVm ?
        [
          focusVm.dataset.vm, focusVm.dataset.host,
          document.activeElement.className
        ] :
        null;
    try {
      const since =
          new Date(Date.now() - 7 * DAY).toISOString().replace(/\.\d+Z$/, 'Z');
      const [hostsR, schedR, repoR, filesR, ...failedR] =
          await Promise.allSettled([
            api.get('/hosts'), api.get('/schedules'), api.get('/repositories'),
            api.get('/points', {kind: 'files', limit: 1000}),
            ...['failed', 'partial', 'interrupted'].map(
                st => api.get('/jobs', {state: st, since, limit: 50}))
          ]);
      if (left) return;
      const errs = [];
      if (schedR.status === 'fulfilled') {
        schedules = schedR.value.schedules || [];
      } else {
        errs.push(errorBox(
            schedR.reason,
            'Schedules could not be read (no next runs or overdue marks)'));
      }
      // hosts and their VMs
      const now = Date.now();
      let hostsData = [];
      if (hostsR.status === 'fulfilled') {
        const hosts = hostsR.value.hosts || [];
        for (const e of hostsR.value.errors || [])
          errs.push(errorBox(e, 'Hosts'));
        hostsData = await Promise.all(hosts.map(async host => {
          try {
            const r =
                await api.get(`/hosts/${encodeURIComponent(host.name)}/vms`);
            for (const e of r.errors || [])
              errs.push(errorBox(e, `Host ${host.name}`));
            return {
              host,
              vms: (r.vms || [])
                       .slice()
                       .sort((a, b) => a.name.localeCompare(b.name)),
              error: r.libvirt_error
            };
          } catch (e) {
            return {host, vms: [], error: e.message};
          }
        }));
        hostsData.sort(
            (a, b) => (b.host.local ? 1 : 0) - (a.host.local ? 1 : 0) ||
                a.host.name.localeCompare(b.host.name));
        const {table: t, rows} = renderVms(hostsData, now);
        clear(vmHolder, t);
        clear(lost, renderLost(hostsData));
        const agents =
            filesR.status === 'fulfilled' ? filesR.value.points || [] : [];
        const agentNames =
            new Set(agents.map(p => `${p.name}\u0000${p.hostname}`));
        clear(summary, renderSummary(rows, agentNames.size, hostsData));
      } else {
        clear(vmHolder, errorBox(hostsR.reason, 'The VMs could not be listed'));
      }
      if (filesR.status === 'fulfilled') {
        clear(agentHolder, renderAgents(filesR.value.points || [], now));
        for (const e of filesR.value.errors || [])
          errs.push(errorBox(e, 'Recovery points'));
      } else {
        clear(
            agentHolder,
            errorBox(
                filesR.reason, 'The file-level backups could not be listed'));
      }
      const failedJobs = [], failedErr = [];
      for (const f of failedR) {
        if (f.status === 'fulfilled')
          failedJobs.push(...(f.value.jobs || []));
        else
          failedErr.push(f.reason);
      }
      failedJobs.sort((a, b) => b.id - a.id);
      clear(
          failedHolder,
          failedErr.length ?
              errorBox(failedErr[0], 'The failed jobs could not be listed') :
              renderFailed(failedJobs));
      if (repoR.status === 'fulfilled') {
        const repos = repoR.value.repositories || [];
        const cards = await Promise.all(repos.map(repoCard));
        if (left) return;
        clear(
            repoHolder,
            cards.length ?
                h('div', {class: 'repo-list'}, cards) :
                h('p', {class: 'muted'},
                  'No repository is configured. Give havend one with --repository NAME=PATH (or Repository= in havend.conf).'));
      } else {
        clear(
            repoHolder,
            errorBox(repoR.reason, 'The repositories could not be read'));
      }
      clear(headErr, errs);
      updated.textContent = `Updated ${fmtTime(new Date())}`;
      runEmpty();
      if (focusKey) {
        const sel = `#vm-table tr[data-vm="${
            CSS.escape(focusKey[0])}"][data-host="${CSS.escape(focusKey[1])}"]`;
        const tr = document.querySelector(sel);
        const el = tr && focusKey[2] &&
            tr.querySelector('.' + focusKey[2].split(' ')[0]);
        if (el) el.focus();
      }
    } finally {
      loading = false;
    }
  }

  const reload = debounce(load, 1500);
  try {
    await loadRunning();
  } catch (e) {
    clear(running, errorBox(e, 'The running jobs could not be listed'));
  }
  await load();

  const stream = liveEvents({
    dropped: () => {
      loadRunning().catch(() => {});
      reload();
    },
    progress: p => {
      const rr = runRows.get(String(p.id));
      if (rr)
        updateRun(rr, rr.state === 'queued' ? 'running' : rr.state, p);
      else
        jobStarted(p.id);
    },
    state: s => {
      if (FINAL_STATES.includes(s.state)) {
        jobEnded(s.id, s.state);
        reload();
      } else {
        const rr = runRows.get(String(s.id));
        if (rr)
          updateRun(rr, s.state, null, s.queue_reason);
        else
          jobStarted(s.id);
      }
    },
  });
  // The fallback when the stream is refused or a proxy buffers it, and the
  // ages ("3 min ago") kept current.
  // Every 3 s while jobs run (their bars move without the stream too),
  // else every 10 s.
  let pollRun = null;
  const pollLoop = () => {
    pollRun = setTimeout(async () => {
      try {
        if (await loadRunning()) reload();
      } catch { /* shown by the next load */
      }
      if (!left) pollLoop();
    }, runRows.size ? 3000 : 10000);
  };
  pollLoop();
  const pollAll = setInterval(load, 60000);
  ctx.onLeave(() => {
    left = true;
    stream.close();
    clearTimeout(pollRun);
    clearInterval(pollAll);
    reload.cancel();
  });
}
