// #/jobs: every job havend ran or runs, newest first, with filters (state,
// kind, repository, since; kept in the address so a filtered list can be
// bookmarked) and paging (before). Running jobs show live progress from
// the event stream.
//
// Also the job helpers the dashboard and the job page share: words for a
// job, its progress as a fraction and as text.
import * as api from '../api.js';
import {badge, clear, errorBox, fmtBytes, fmtDuration, go, h, notice, pageTitle, progressBar, setProgress, table, timeAgo} from '../ui.js';

export const FINAL_STATES =
    ['succeeded', 'partial', 'failed', 'cancelled', 'interrupted'];
export const JOB_STATES = ['queued', 'running', ...FINAL_STATES];
// An item's outcome (job items, a VM's last backup) as a state for badges.
export const OUTCOME_STATE = {
  ok: 'succeeded',
  partial: 'partial',
  failed: 'failed',
  cancelled: 'cancelled',
  skipped: 'skipped'
};
export const JOB_KINDS = [
  'backup', 'forget', 'gc', 'check', 'restore-vm', 'restore-host',
  'restore-files'
];

const KIND_WORDS = {
  backup: 'Backup',
  forget: 'Forget (retention)',
  gc: 'Garbage collection',
  check: 'Repository check',
  'restore-vm': 'VM restore',
  'restore-host': 'Host restore',
  'restore-files': 'File restore',
};

export function kindWords(kind) {
  return KIND_WORDS[kind] || kind || 'Job';
}

// What a job works on, in a few words: "cdash-web, cdash-db", "all VMs".
export function jobTarget(job) {
  const p = job.params || {};
  if (job.kind === 'backup') {
    if (p.all) {
      const ex = Array.isArray(p.exclude) && p.exclude.length ?
          ` except ${p.exclude.join(', ')}` :
          '';
      return 'all VMs' + ex;
    }
    if (Array.isArray(p.vms)) return p.vms.join(', ');
  }
  if (Array.isArray(p.vms) && p.vms.length) return p.vms.join(', ');
  if (typeof p.vm === 'string') return p.vm;
  if (typeof p.host === 'string') return 'host ' + p.host;
  return job.repository ? 'repository ' + job.repository : '';
}

// A job's progress as a fraction 0..1, or null when it cannot be told
// (an indeterminate bar).
export function progressFraction(state, progress) {
  if (state === 'succeeded') return 1;
  if (state === 'queued') return 0;
  const p = progress;
  if (!p) return state === 'running' ? null : 0;
  if (p.total_bytes > 0)
    return Math.min(1, Math.max(0, p.done_bytes / p.total_bytes));
  const items =
      (p.items_done || 0) + (p.items_running || 0) + (p.items_waiting || 0);
  if (items > 0) return (p.items_done || 0) / items;
  return state === 'running' ? null : 0;
}

// "backup · cdash-web · 120 MiB of 256 MiB · 45 MiB/s · about 3 s left"
export function progressText(state, progress, queueReason) {
  if (state === 'queued')
    return 'Waiting to start' + (queueReason ? `: ${queueReason}` : '');
  const p = progress;
  if (!p) return state === 'running' ? 'Starting…' : '';
  const parts = [];
  if (p.phase) parts.push(p.phase);
  if (p.item) parts.push(p.item);
  if (p.total_bytes > 0)
    parts.push(`${fmtBytes(p.done_bytes)} of ${fmtBytes(p.total_bytes)}`);
  else if (p.done_bytes > 0)
    parts.push(fmtBytes(p.done_bytes));
  const items =
      (p.items_done || 0) + (p.items_running || 0) + (p.items_waiting || 0);
  if (items > 1)
    parts.push(
        `${p.items_done || 0} of ${items} done` +
        (p.items_failed ? `, ${p.items_failed} failed` : ''));
  if (state === 'running') {
    if (p.bytes_per_second > 0) parts.push(`${fmtBytes(p.bytes_per_second)}/s`);
    if (p.eta_seconds > 0.5)
      parts.push(`about ${fmtDuration(p.eta_seconds)} left`);
  }
  return parts.join(' · ');
}

// progressBar, with its first value set through the element's style (CSP
// refuses a style attribute).
export function bar(fraction, label) {
  const b = progressBar(null, label);
  setProgress(b, fraction);
  return b;
}

export function stateBadge(state, attrs = {}) {
  const b = badge(state);
  for (const [k, v] of Object.entries(attrs)) b.setAttribute(k, v);
  return b;
}

export function jobLink(job) {
  return h('a', {href: `#/job?id=${encodeURIComponent(job.id)}`}, `#${job.id}`);
}

// handlers: {progress(obj), state(obj), dropped()} for every job's events,
// over the one stream the console shares (api.events). Returns {close()}.
export function liveEvents(handlers) {
  return api.events(handlers);
}

// Calls fn at most once per `ms` (the last call wins, run at the end).
export function debounce(fn, ms) {
  let t = null;
  const d = () => {
    clearTimeout(t);
    t = setTimeout(() => {
      t = null;
      fn();
    }, ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

// A since=... value from the form: a date (YYYY-MM-DD) or a span: 24h, 7d.
function sinceValue(v) {
  const m = /^(\d+)([hd])$/.exec(v || '');
  if (!m) return v;
  const ms = Number(m[1]) * (m[2] === 'h' ? 3600e3 : 86400e3);
  return new Date(Date.now() - ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

const SINCE_CHOICES = [
  ['', 'any time'], ['24h', 'the last 24 hours'], ['7d', 'the last 7 days'],
  ['30d', 'the last 30 days']
];

export async function render(view, ctx) {
  const params = ctx.params;
  const PAGE = 50;
  view.append(pageTitle('Jobs'));

  let repos = [];
  try {
    repos = (await api.get('/repositories')).repositories || [];
  } catch { /* the filter then offers only "any" */
  }

  const select = (name, label, choices) => {
    const s =
        h('select', {id: `filter-${name}`, name},
          choices.map(
              ([v, t]) =>
                  h('option', {value: v, selected: params[name] === v}, t)));
    return h('div', {class: 'field'}, h('label', {for: s.id
             }, label), s);
  };
  const form =
      h('form', {class: 'row card filters', id: 'job-filters'},
        select('state', 'State', [['', 'any'], ...JOB_STATES.map(s => [s, s])]),
        select(
            'kind', 'Kind',
            [['', 'any'], ...JOB_KINDS.map(k => [k, kindWords(k)])]),
        select(
            'repository', 'Repository',
            [['', 'any'], ...repos.map(r => [r.name, r.name])]),
        select('since', 'Queued in', SINCE_CHOICES),
        h(
            'div',
            {class: 'field'},
            h('button', {type: 'submit', class: 'primary'}, 'Show'),
            ),
        Object.keys(params).length ?
            h('div', {class: 'field'},
              h('a', {href: '#/jobs', class: 'btn'}, 'Clear filters')) :
            null);
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const f = new FormData(form);
    go('/jobs', {
      state: f.get('state'),
      kind: f.get('kind'),
      repository: f.get('repository'),
      since: f.get('since')
    });
  });
  view.append(form);

  const holder =
      h('div', {id: 'job-list'}, h('p', {class: 'muted'}, 'Loading…'));
  view.append(holder);

  const filtered =
      params.state || params.kind || params.repository || params.since;
  const empty = filtered ?
      'No job matches these filters.' :
      params.before ?
      'No older jobs.' :
      'No jobs yet — start a backup from the dashboard, or create a schedule.';
  let bars = new Map();  // job id -> {bar, text}
  let jobs = [];
  const cols = [
    {title: 'Job', class: 'lead', cell: j => jobLink(j)},
    {title: 'State', cell: j => stateBadge(j.state)},
    {
      title: 'What',
      cell: j =>
          h('span', {}, h('strong', {}, kindWords(j.kind)),
            jobTarget(j) ? h('span', {class: 'muted'}, ' · ', jobTarget(j)) :
                           null)
    },
    {title: 'Repository', cell: j => j.repository || '–'},
    {
      title: 'Queued',
      cell: j =>
          h('span', {}, timeAgo(j.queued_at),
            h('span', {class: 'muted small'}, ' by ',
              j.schedule_id != null ?
                  h('a', {href: `#/schedule?id=${j.schedule_id}`},
                    `schedule ${j.schedule_id}`) :
                  (j.requested_by || '?')))
    },
    {
      title: 'Duration / progress',
      cell: j => {
        if (j.state === 'running' || j.state === 'queued') {
          const b = bar(progressFraction(j.state, j.progress), `job ${j.id}`);
          const t =
              h('div', {class: 'muted small'},
                progressText(j.state, j.progress, j.queue_reason));
          bars.set(String(j.id), {bar: b, text: t, state: j.state});
          return h('div', {class: 'job-progress-cell'}, b, t);
        }
        return fmtDuration(j.duration_seconds);
      }
    },
    {
      title: 'Data',
      class: 'num',
      cell: j => j.kind === 'backup' && FINAL_STATES.includes(j.state) ?
          h('span',
            {
              title: `read ${fmtBytes(j.read_bytes)}, new ${
                  fmtBytes(j.new_bytes)}, stored ${fmtBytes(j.stored_bytes)}`
            },
            `${fmtBytes(j.stored_bytes)} stored`) :
          '–'
    },
    {
      title: 'Error',
      cell: j => j.error ?
          h('span', {class: j.state === 'cancelled' ? 'muted' : 'err-text'},
            j.error) :
          ''
    },
  ];

  let left = false;
  let shownKey = null;
  async function loadList() {
    const query = {
      state: params.state,
      kind: params.kind,
      repository: params.repository,
      since: sinceValue(params.since),
      limit: PAGE,
      before: params.before,
    };
    let data;
    try {
      data = await api.get('/jobs', query);
    } catch (e) {
      if (!left) clear(holder, errorBox(e, 'The jobs could not be listed'));
      return;
    }
    if (left) return;
    // The same jobs in the same states: only the bars move (the table stays,
    // and with it the keyboard focus).
    const key = (data.jobs || []).map(j => `${j.id}:${j.state}`).join(',') +
        `/${data.next_before}`;
    if (key === shownKey) {
      for (const j of data.jobs || []) {
        const b = bars.get(String(j.id));
        if (!b || !j.progress) continue;
        setProgress(b.bar, progressFraction(j.state, j.progress));
        b.text.textContent = progressText(j.state, j.progress, j.queue_reason);
      }
      return;
    }
    shownKey = key;
    jobs = data.jobs || [];
    bars = new Map();
    const pager = h('div', {class: 'row pager'});
    if (params.before)
      pager.append(
          h('a', {
            href: '#/jobs?' +
                new URLSearchParams(Object.entries({...params, before: ''})
                                        .filter(([, v]) => v))
                    .toString(),
            class: 'btn'
          },
            '← Newest'));
    if (data.next_before != null && jobs.length)
      pager.append(
          h('a', {
            class: 'btn',
            id: 'jobs-older',
            href: '#/jobs?' +
                new URLSearchParams(
                    Object
                        .entries({...params, before: String(data.next_before)})
                        .filter(([, v]) => v))
                    .toString()
          },
            'Older jobs →'));
    clear(
        holder, table(cols, jobs, {
          id: 'jobs-table',
          class: 'stack',
          empty,
          rowData: j => ({job: String(j.id), state: j.state})
        }),
        pager);

    if (filtered || params.before)
      holder.prepend(notice(
          `Showing ${jobs.length} job${jobs.length === 1 ? '' : 's'}` +
          (params.since ? ` queued in ${
                              (SINCE_CHOICES.find(c => c[0] === params.since) ||
                               [0, params.since])[1]}` :
                          '') +
          '.'));
  }

  await loadList();
  // Live: the bars of the running ones move with the event stream; a state
  // change reloads the list in place (on later pages only when it concerns
  // a job shown). A poll is the fallback
  const reload = debounce(loadList, 800);
  const stream = liveEvents({
    progress: p => {
      const b = bars.get(String(p.id));
      if (!b) return;
      setProgress(b.bar, progressFraction('running', p));
      b.text.textContent = progressText('running', p);
    },
    state: s => {
      const known = jobs.some(j => String(j.id) === String(s.id));
      if (known || !params.before) reload();
    },
  });
  // (every 5 s while one runs; on the first page every 15 s for new ones).
  let ticks = 0;
  const poll = setInterval(() => {
    ticks++;
    if (bars.size || (!params.before && ticks % 3 === 0)) loadList();
  }, 5000);
  ctx.onLeave(() => {
    left = true;
    stream.close();
    reload.cancel();
    clearInterval(poll);
  });
}
