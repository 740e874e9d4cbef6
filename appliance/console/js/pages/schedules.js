// #/schedules: every schedule with what it runs, when it runs next and how
// its last run went. Admins create and edit (#/schedule), operators run one
// now, auditors read.
import * as api from '../api.js';
import {actionButton, badge, clear, errorBox, fmtTime, go, h, notice, pageTitle, section, table, timeAgo} from '../ui.js';

const KIND_WORDS = {
  backup: 'Back up',
  forget: 'Forget old points',
  gc: 'Free space (gc)',
  check: 'Check',
  'agent-backup': 'Back up an agent',
  sync: 'Sync with a remote appliance'
};

// What a schedule's job does, in words: "Back up all VMs", "Back up web, db".
export function whatItRuns(s) {
  const p = s.params || {};
  if (s.kind === 'backup') {
    const who = p.all ? 'all VMs' :
                        (Array.isArray(p.vms) ? p.vms.join(', ') : '');
    const ex = Array.isArray(p.exclude) && p.exclude.length ?
        ` except ${p.exclude.join(', ')}` :
        '';
    return `Back up ${who}${ex}`;
  }
  if (s.kind === 'forget')
    return 'Forget old points' + (p.name ? ` of ${p.name}` : '') +
        (retentionWords(p) ? ` (${retentionWords(p)})` : '') +
        (p.dry_run ? ', dry run' : '');
  if (s.kind === 'agent-backup') {
    const paths = Array.isArray(p.paths) ? p.paths.join(', ') : '';
    const ex = Array.isArray(p.excludes) && p.excludes.length ?
        ` except ${p.excludes.join(', ')}` :
        '';
    return `Back up ${paths} on agent ${p.agent || '?'}` +
        (p.name ? ` as ${p.name}` : '') + ex;
  }
  if (s.kind === 'sync')
    return (p.direction === 'push' ? `Push points to remote ${p.remote || '?'}` :
                                     `Pull points from remote ${p.remote || '?'}`) +
        (Array.isArray(p.names) && p.names.length ? ` (${p.names.join(', ')})` : '') +
        (p.dry_run ? ', dry run' : '');
  if (s.kind === 'check')
    return 'Check' +
        (p.read_data_percent ? `, reading ${p.read_data_percent}% of the data` :
                               '');
  return KIND_WORDS[s.kind] || s.kind;
}

export function retentionWords(r) {
  if (!r) return '';
  const parts = [];
  const names = {
    keep_last: 'last',
    keep_hourly: 'hourly',
    keep_daily: 'daily',
    keep_weekly: 'weekly',
    keep_monthly: 'monthly',
    keep_yearly: 'yearly'
  };
  for (const [k, w] of Object.entries(names))
    if (r[k]) parts.push(`${r[k]} ${w}`);
  if (r.keep_within) parts.push(`all within ${r.keep_within}`);
  return parts.length ? 'keeps ' + parts.join(', ') : '';
}

function nextCell(s) {
  if (!s.enabled) return badge('disabled', 'disabled');
  if (!s.next_run) return h('span', {class: 'muted'}, 'never again');
  return h('span', {}, timeAgo(s.next_run),
           h('div', {class: 'muted small'}, fmtTime(s.next_run)));
}

function lastCell(s) {
  if (!s.last_triggered)
    return h('span', {class: 'muted'}, 'not run yet');
  return h(
      'span', {}, timeAgo(s.last_triggered),
      s.last_job ? [' · ', h('a', {href: `#/job?id=${s.last_job}`}, `job ${s.last_job}`)] :
                   null,
      s.last_error ?
          h('div', {class: 'error small'}, 'Could not start: ', s.last_error) :
          null);
}

export async function render(view, ctx) {
  const isAdmin = api.hasRole(ctx.me, 'admin');
  const isOperator = api.hasRole(ctx.me, 'operator');
  const status = h('div', {'aria-live': 'polite'});
  const body = h('div', {}, h('p', {class: 'muted'}, 'Loading…'));
  clear(
      view,
      pageTitle(
          'Schedules',
          isAdmin ? h('a', {href: '#/schedule', class: 'btn primary', id: 'schedule-new'},
                      'New schedule') :
                    null),
      status, body);

  let data;
  try {
    data = await api.get('/schedules');
  } catch (e) {
    clear(body, errorBox(e, 'The schedules could not be read'));
    return;
  }
  const list = (data.schedules || []).slice().sort((a, b) => {
    const ta = a.enabled && a.next_run ? Date.parse(a.next_run) : Infinity;
    const tb = b.enabled && b.next_run ? Date.parse(b.next_run) : Infinity;
    return ta - tb || String(a.name).localeCompare(String(b.name));
  });
  if (!list.length) {
    clear(
        body,
        h('div', {class: 'card empty-state'},
          h('p', {}, 'No schedules yet — nothing is backed up automatically.'),
          isAdmin ? h('a', {href: '#/schedule', class: 'btn primary'},
                      'Create a schedule') :
                    h('p', {class: 'muted'},
                      'An admin can create one (Schedules → New schedule).')));
    return;
  }
  const failing = list.filter(s => s.last_error);
  const columns = [
    {
      title: 'Name',
      cell: s => h('a', {href: `#/schedule?id=${s.id}`}, s.name)
    },
    {
      title: 'Runs',
      cell: s => h(
          'span', {}, whatItRuns(s),
          s.kind === 'backup' && s.retention ?
              h('div', {class: 'muted small'}, retentionWords(s.retention)) :
              null,
          h('div', {class: 'muted small'}, 'into ', s.repository))
    },
    {
      title: 'When',
      cell: s => h('code', {title: s.calendar}, s.normalized || s.calendar)
    },
    {title: 'Next run', cell: nextCell},
    {title: 'Last run', cell: lastCell},
  ];
  if (isOperator)
    columns.push({
      title: '',
      cell: s => actionButton('Run now', async () => {
        const r = await api.post(`/schedules/${s.id}/run`);
        go('#/job', {id: r.job});
      }, {class: 'run-now', 'data-schedule': String(s.id)})
    });
  clear(
      body,
      failing.length ?
          notice(
              `${failing.length} schedule${failing.length > 1 ? 's' : ''} could not start its last run: see "Last run".`,
              'warn') :
          null,
      section(
          `${list.length} schedule${list.length > 1 ? 's' : ''}`,
          table(columns, list, {
            id: 'schedule-table',
            class: 'stack',
            rowData: s => ({schedule: String(s.id)})
          })));
}
