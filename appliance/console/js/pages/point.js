// #/point?repo=R&id=P: one recovery point — what it holds, how consistent it
// is and why, its disks and sizes, the VM's configuration (domain and
// network XML, as text) and the host it was taken on; from here its files
// are browsed or the VM restored.
import * as api from '../api.js';
import {badge, clear, errorBox, fmtBytes, fmtDuration, fmtTime, h, notice, pageTitle, section, table, timeAgo} from '../ui.js';

import {consistencyBadge, verifiedBadge} from './points.js';

const KIND_WORDS = {vm: 'VM', image: 'disk image', files: 'files'};

function props(pairs) {
  return h('dl', {class: 'props'},
           pairs.filter(p => p && p[1] !== undefined && p[1] !== null && p[1] !== '')
               .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// The format of each disk (target dev -> driver type) from the domain XML:
// the point's disk list does not carry it. Parsed as XML (never as HTML).
function diskFormats(xml) {
  const out = {};
  if (!xml) return out;
  try {
    const doc = new DOMParser().parseFromString(xml, 'application/xml');
    for (const d of doc.querySelectorAll('devices > disk')) {
      const dev = d.querySelector('target')?.getAttribute('dev');
      const type = d.querySelector('driver')?.getAttribute('type');
      if (dev && type) out[dev] = type;
    }
  } catch { /* no formats then */
  }
  return out;
}

export async function render(view, ctx) {
  const repo = ctx.params.repo, id = ctx.params.id;
  if (!repo || !id) {
    clear(view, pageTitle('Recovery point'),
          notice('No point is named here. Choose one from the list of recovery points.', 'warn'),
          h('p', {}, h('a', {href: '#/points'}, 'Recovery points')));
    return;
  }
  let p;
  try {
    p = await api.get(`/points/${encodeURIComponent(repo)}/${encodeURIComponent(id)}`);
  } catch (e) {
    clear(view, pageTitle('Recovery point'), errorBox(e, `Point ${id.slice(0, 8)} in ${repo}`),
          h('p', {}, h('a', {href: '#/points'}, '← All recovery points')));
    return;
  }
  const isOperator = api.hasRole(ctx.me, 'operator');
  const filesHref = `#/files?repo=${encodeURIComponent(repo)}&id=${encodeURIComponent(p.id)}`;
  const actions = [h('a', {href: filesHref, class: 'btn', id: 'point-browse'}, 'Browse files')];
  if (p.kind === 'vm' && isOperator)
    actions.push(h('a', {
      href: `#/restore/vm?vm=${encodeURIComponent(p.name)}&point=${encodeURIComponent(p.id)}`,
      class: 'btn primary', id: 'point-restore'
    }, 'Restore this VM'));

  const problems = [];
  if (p.repaired) problems.push(notice('This point was repaired: some of its data was lost and reads as zeros. Prefer another point if there is one.', 'warn'));
  if (p.partial) problems.push(notice('This point is partial: some entries could not be read when it was taken (see the notes).', 'warn'));
  const lost = (p.disks || []).filter(d => d.lost_bytes > 0);
  if (lost.length) problems.push(notice(`Data lost in: ${lost.map(d => `${d.name} (${fmtBytes(d.lost_bytes)})`).join(', ')}.`, 'warn'));

  const summary = section(
      'Summary', props([
        ['Name', p.name],
        ['Kind', KIND_WORDS[p.kind] || p.kind],
        ['Taken', h('span', {}, fmtTime(p.time), ' (', timeAgo(p.time), ')')],
        ['On host', p.hostname],
        [
          'Consistency',
          h('span', {}, consistencyBadge(p),
            p.consistency_reason ?
                h('div', {class: 'muted small', id: 'point-reason'},
                  p.consistency_reason) :
                null)
        ],
        ['Size', fmtBytes(p.logical_bytes)],
        ['Read', p.read_bytes !== undefined ? fmtBytes(p.read_bytes) : null],
        ['New data stored', fmtBytes(p.new_stored_bytes)],
        [
          'Took',
          p.duration_seconds !== undefined ? fmtDuration(p.duration_seconds) :
                                             null
        ],
        [
          'Protected',
          p.protected ? badge('ok', 'yes: retention never forgets it') : null
        ],
        [
          'Verified restore',
          p.kind === 'vm' ?
              h('span', {id: 'point-verified'}, verifiedBadge(p.verified),
                p.verified && !p.verified.error ?
                    h('div', {class: 'muted small'}, fmtTime(p.verified.time),
                      ' · ',
                      p.verified.passed ?
                          `${p.verified.check} after ${
                              fmtDuration(p.verified.boot_seconds)}` :
                          p.verified.reason) :
                    null) :
              null
        ],
        ['Repository', p.repository],
        ['Id', h('code', {id: 'point-id'}, p.id)],
        [
          'Previous point',
          p.parent ? h('a',
                       {
                         href: `#/point?repo=${encodeURIComponent(repo)}&id=${
                             encodeURIComponent(p.parent)}`
                       },
                       h('code', {}, p.parent.slice(0, 8))) :
                     null
        ],
        ['VM UUID', p.vm_uuid ? h('code', {}, p.vm_uuid) : null],
        [
          'Backed-up paths',
          Array.isArray(p.paths) && p.paths.length ?
              h('ul', {class: 'plain-list'},
                p.paths.map(
                    x => h(
                        'li', {},
                        h('a',
                          {href: `${filesHref}&path=${encodeURIComponent(x)}`},
                          h('code', {}, x))))) :
              null
        ],
        ['Entries', p.entries !== undefined ? String(p.entries) : null],
        ['Made by', p.tool],
      ]));

  const parts = [summary];
  const v = p.verified;
  if (v && !v.error)
    parts.push(section(
        'Last verified restore',
        h('div', {id: 'point-verification'},
          h('p', {},
            v.passed ? `Booted as a throw-away VM on ${fmtTime(v.time)}: ${
                           v.check} after ${fmtDuration(v.boot_seconds)}.` :
                       `Did NOT come up when booted on ${fmtTime(v.time)}: ${
                           v.reason}.`),
          v.screenshot ? h('img', {
            src: `/api/v1/points/${encodeURIComponent(repo)}/${
                encodeURIComponent(p.id)}/screenshot`,
            alt: `The screen of ${p.name} at the end of the test`,
            class: 'screenshot'
          }) :
                         null,
          v.console_tail ?
              h('details', {}, h('summary', {}, 'Serial console (last lines)'),
                h('pre', {class: 'mono small'}, v.console_tail)) :
              null)));
  const notes = Array.isArray(p.notes) ? p.notes : (p.notes ? [p.notes] : []);
  if (notes.length)
    parts.push(section('Notes', h('ul', {class: 'notes'}, notes.map(n => h('li', {}, typeof n === 'string' ? n : JSON.stringify(n))))));

  const formats = diskFormats(p.domain_inactive_xml || p.domain_xml);
  if ((p.disks || []).length)
    parts.push(section('Disks', table([
      {title: 'Disk', cell: d => h('span', {}, h('strong', {}, d.name), d.source ? h('div', {class: 'muted small mono'}, d.source) : null)},
      {title: 'Size', class: 'num', cell: d => fmtBytes(d.size)},
      {title: 'Format', cell: d => d.format || formats[d.name] || '–'},
      {title: 'Captured', cell: d => d.capture || '–'},
      {title: 'Lost', class: 'num', cell: d => d.lost_bytes ? h('span', {class: 'badge bad'}, fmtBytes(d.lost_bytes)) : 'none'},
      {title: '', cell: d => h('a', {href: `${filesHref}&disk=${encodeURIComponent(d.name)}`}, 'Browse')},
    ], p.disks, {id: 'point-disks', class: 'stack', rowData: d => ({disk: d.name})})));

  const facts = p.host_facts && typeof p.host_facts === 'object' ? p.host_facts : null;
  if (facts)
    parts.push(section('Host it was taken on', props(Object.entries(facts).map(([k, v]) =>
      [k.replace(/_/g, ' '), typeof v === 'object' ? JSON.stringify(v) : String(v)]))));

  if ((p.config || []).length)
    parts.push(section('Configuration files in the point',
      h('ul', {class: 'plain-list'}, p.config.map(c => h('li', {}, h('code', {}, c.name), ' ', h('span', {class: 'muted'}, fmtBytes(c.size)))))));

  if (p.domain_xml)
    parts.push(section('Domain XML (as it ran)', h('pre', {id: 'point-domain-xml'}, p.domain_xml)));
  if (p.domain_inactive_xml && p.domain_inactive_xml !== p.domain_xml)
    parts.push(h('details', {class: 'card'}, h('summary', {}, 'Domain XML (persistent definition)'),
                 h('pre', {}, p.domain_inactive_xml)));
  const nets = p.network_xml && typeof p.network_xml === 'object' ? Object.entries(p.network_xml) : [];
  for (const [name, xml] of nets)
    parts.push(section(`Network ${name}`, h('pre', {class: 'network-xml', dataset: {network: name}}, xml)));

  clear(view,
        pageTitle(`${p.name} · ${fmtTime(p.time)}`, ...actions),
        h('p', {}, h('a', {href: `#/points?vm=${encodeURIComponent(p.name)}`}, `← All points of ${p.name}`)),
        problems, parts);
}
