// #/points: recovery points of every repository. A timeline per VM (or
// file backup) and host, newest right, whose ticks open the point; below,
// the list with filters (vm, host, kind, since, until) and paging. The
// filters live in the route (#/points?vm=web&kind=vm) so Back works.
import * as api from '../api.js';
import {badge, clear, errorBox, fmtBytes, fmtTime, go, h, notice, pageTitle, section, table, timeAgo, toDate} from '../ui.js';

const PAGE = 100;

const KIND_WORDS = {vm: 'VM', image: 'disk image', files: 'files'};

// The last verified restore of a VM point (haven verify-restore, or a
// scheduled "verify" job): passed, failed, or never.
export function verifiedBadge(v) {
  if (!v)
    return h(
        'span', {
          class: 'muted',
          title:
              'never booted as a test (haven verify-restore, or a verify schedule)'
        },
        'never');
  if (v.error) return badge('failed', 'unreadable');
  const el =
      badge(v.passed ? 'ok' : 'failed', v.passed ? 'booted' : 'did not boot');
  el.title = `${fmtTime(v.time)}: ${v.passed ? v.check : v.reason}`;
  return el;
}

export function consistencyBadge(p) {
  const c = String(p.consistency || 'unknown');
  const cls = /application|filesystem-consistent|fs-consistent/.test(c) ? 'ok' :
      /crash/.test(c) ? 'warn' : c === 'file-level' ? 'ok' : 'muted';
  const el = h('span', {class: `badge ${cls}`, dataset: {state: c}, title: p.consistency_reason || ''}, c);
  return el;
}

function pointLink(p, text) {
  return h('a', {href: `#/point?repo=${encodeURIComponent(p.repository)}&id=${encodeURIComponent(p.id)}`}, text);
}

// "2026-12-07" (a date input) -> the API's UTC time, start or end of day.
function dayToUtc(day, end) {
  if (!day) return '';
  return `${day}T${end ? '23:59:59' : '00:00:00'}Z`;
}

function timelines(points) {
  const groups = new Map();
  for (const p of points) {
    const key = `${p.name}\u0000${p.hostname || ''}`;
    if (!groups.has(key)) groups.set(key, {name: p.name, host: p.hostname, kind: p.kind, points: []});
    groups.get(key).points.push(p);
  }
  const times = points.map(p => toDate(p.time)).filter(Boolean).map(d => d.getTime());
  if (!times.length) return null;
  // The right end is now, so a VM whose newest point is old shows a gap.
  const hi = Math.max(Date.now(), ...times);
  const lo = Math.min(Math.min(...times), hi - 3600e3);
  const pos = t => 2 + 96 * (t - lo) / (hi - lo);
  const rows = [];
  for (const g of [...groups.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const line = h('div', {class: 'timeline', role: 'list', 'aria-label': `points of ${g.name}`});
    for (const p of g.points) {
      const d = toDate(p.time);
      if (!d) continue;
      const bad = p.repaired || p.partial;
      const tick = h('a', {
        class: 'tick' + (bad ? ' bad' : ''),
        role: 'listitem',
        href: `#/point?repo=${encodeURIComponent(p.repository)}&id=${encodeURIComponent(p.id)}`,
        title: `${fmtTime(p.time)} · ${p.consistency || ''} · ${fmtBytes(p.logical_bytes)}`,
        'aria-label': `${g.name}, ${fmtTime(p.time)}, ${p.consistency || ''}` + (bad ? ', damaged or partial' : ''),
        dataset: {point: p.id}
      });
      tick.style.left = pos(d.getTime()) + '%';
      line.append(tick);
    }
    const first = h('span', {class: 'label'}, fmtTime(new Date(lo).toISOString()));
    first.style.left = '2%';
    first.classList.add('first');
    const last = h('span', {class: 'label'}, 'now');
    last.style.left = '98%';
    last.classList.add('last');
    line.append(first, last);
    const newest = g.points[0];
    rows.push(h('div', {class: 'timeline-row'},
      h('div', {class: 'timeline-name'},
        h('strong', {}, g.name), ' ', h('span', {class: 'muted small'}, KIND_WORDS[g.kind] || g.kind,
          g.host ? ` on ${g.host}` : '', ` · ${g.points.length} point${g.points.length > 1 ? 's' : ''} · newest `,
          timeAgo(newest.time))),
      line));
  }
  return rows;
}

export async function render(view, ctx) {
  const q = ctx.params;
  const vm = h('input', {id: 'pf-vm', name: 'vm', value: q.vm || '', list: 'pf-vm-names', autocomplete: 'off'});
  const names = h('datalist', {id: 'pf-vm-names'});
  const agent = h('input', {id: 'pf-agent', name: 'agent', value: q.agent || '', autocomplete: 'off'});
  const kind = h('select', {id: 'pf-kind', name: 'kind'},
                 [['', 'any'], ['vm', 'VM'], ['image', 'disk image'], ['files', 'files']]
                     .map(([v, t]) => h('option', {value: v, selected: (q.kind || '') === v}, t)));
  const since = h('input', {id: 'pf-since', name: 'since', type: 'date', value: (q.since || '').slice(0, 10)});
  const until = h('input', {id: 'pf-until', name: 'until', type: 'date', value: (q.until || '').slice(0, 10)});
  const filters = h('form', {class: 'filters card', id: 'point-filters'},
    h('div', {class: 'row'},
      h('div', {class: 'field'}, h('label', {for: 'pf-vm'}, 'VM or backup name'), vm, names),
      h('div', {class: 'field'}, h('label', {for: 'pf-agent'}, 'Host'), agent),
      h('div', {class: 'field'}, h('label', {for: 'pf-kind'}, 'Kind'), kind),
      h('div', {class: 'field'}, h('label', {for: 'pf-since'}, 'From (UTC day)'), since),
      h('div', {class: 'field'}, h('label', {for: 'pf-until'}, 'To (UTC day)'), until),
      h('div', {class: 'field actions'}, h('button', {type: 'submit', class: 'primary', id: 'pf-apply'}, 'Show'),
        h('a', {href: '#/points', class: 'btn', id: 'pf-reset'}, 'Clear'))));
  filters.addEventListener('submit', ev => {
    ev.preventDefault();
    go('#/points', {
      vm: vm.value.trim(), agent: agent.value.trim(), kind: kind.value,
      since: dayToUtc(since.value, false), until: dayToUtc(until.value, true)
    });
  });
  const body = h('div', {}, h('p', {class: 'muted'}, 'Loading…'));
  clear(view, pageTitle('Recovery points'), filters, body);

  let r;
  try {
    r = await api.get('/points', {
      vm: q.vm, agent: q.agent, kind: q.kind, since: q.since, until: q.until,
      before: q.before, limit: PAGE
    });
  } catch (e) {
    clear(body, errorBox(e, 'The points could not be listed'));
    return;
  }
  const points = r.points || [];
  for (const n of [...new Set(points.map(p => p.name))].sort()) names.append(h('option', {value: n}));
  const filtered = q.vm || q.agent || q.kind || q.since || q.until;
  const errs = (r.errors || []).map(e => notice(typeof e === 'string' ? e : (e.error || e.message || JSON.stringify(e)), 'warn'));
  if (!points.length) {
    clear(body, errs, h('div', {class: 'card empty-state'},
      filtered ? h('p', {}, 'No point matches these filters. ', h('a', {href: '#/points'}, 'Show all points'), '.') :
        [h('p', {}, 'No recovery points yet.'),
         h('p', {class: 'muted'}, 'Back up a VM from the ', h('a', {href: '#/dashboard'}, 'dashboard'),
           ', or create a ', h('a', {href: '#/schedules'}, 'schedule'), ' that does it every night.')]));
    return;
  }
  const columns = [
    {
      title: 'Time',
      cell: p =>
          h('span', {}, pointLink(p, fmtTime(p.time)),
            h('div', {class: 'muted small'}, timeAgo(p.time)))
    },
    {
      title: 'Name',
      cell: p =>
          h('span', {}, p.name,
            h('div', {class: 'muted small'}, KIND_WORDS[p.kind] || p.kind))
    },
    {title: 'Host', cell: p => p.hostname || '–'},
    {
      title: 'Consistency',
      cell: p =>
          h('span', {}, consistencyBadge(p),
            p.repaired ? [' ', badge('failed', 'repaired')] : null,
            p.partial ? [' ', badge('partial', 'partial')] : null,
            p.protected ? [' ', badge('ok', 'protected')] : null)
    },
    {
      title: 'Verified',
      cell: p => p.kind === 'vm' ? verifiedBadge(p.verified) : '–'
    },
    {title: 'Size', class: 'num', cell: p => fmtBytes(p.logical_bytes)},
    {title: 'New data', class: 'num', cell: p => fmtBytes(p.new_stored_bytes)},
    {
      title: 'Id',
      cell: p =>
          h('code', {title: `${p.repository}/${p.id}`},
            `${p.repository}/${p.id.slice(0, 8)}`)
    },
  ];
  const paging = h('div', {class: 'actions pager'},
    q.before ? h('a', {href: '#/points?' + new URLSearchParams(Object.entries({...q, before: ''}).filter(([, v]) => v)).toString(), class: 'btn'}, '← Newest') : null,
    r.next_before ? h('button', {type: 'button', id: 'points-older', onclick: () => go('#/points', {...q, before: r.next_before})}, 'Older points →') : null);
  const shown = `${points.length} of ${r.total ?? points.length} point${(r.total ?? points.length) === 1 ? '' : 's'}` +
      (q.before ? ' (older page)' : '');
  clear(body, errs,
    section('Timeline', h('p', {class: 'muted small'}, 'Each dot is a point, from the oldest shown (left) to now (right). Select one to open it.'),
            timelines(points)),
    section(shown, table(columns, points, {
      id: 'point-table', class: 'stack', rowData: p => ({point: p.id, repo: p.repository})
    }), paging));
}
