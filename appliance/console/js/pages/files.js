// #/files?repo=R&id=P&path=/etc[&disk=vda&partition=1&offset=N&find=GLOB]:
// the files of a recovery point. File points show the backed-up tree; VM
// and image points the file system inside one disk (the only one, or the
// one chosen) and partition (the only readable one, or the one chosen).
// Walk folders, find files by name, download one file (a GET link the
// browser streams) or tick several and download them as one zip or tar.
import * as api from '../api.js';
import {clear, errorBox, fmtBytes, fmtTime, go, h, notice, pageTitle, radioChoice, section, table} from '../ui.js';

const PAGE = 500;
let kept = {key: '', selected: new Set()};

function joinPath(dir, name) {
  return (dir === '/' ? '' : dir) + '/' + name;
}

function parentOf(path) {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

function baseName(path) {
  return path.slice(path.lastIndexOf('/') + 1) || '/';
}

const SCHEMES = {
  gpt: 'GPT partition table',
  dos: 'MBR partition table',
  none: 'no partition table'
};

function volumeName(v) {
  return v.number === 0 ? 'Whole disk' : `Partition ${v.number}`;
}

function volumeSummary(disk, v) {
  return `disk ${disk}, ${volumeName(v).toLowerCase()}` +
      (v.fs ? ` (${v.fs}${v.label ? ` "${v.label}"` : ''})` : '');
}

// The disks of an image/VM point and their volumes (GET .../volumes) as one
// group of radio buttons, disk by disk: readable volumes can be chosen, the
// others are shown disabled with havend's reason. `where` is the volume
// listed now (preselected); `open(disk, number)` browses another. With one
// readable volume in all there is nothing to choose: one line says what is
// shown.
function volumeChooser(disks, where, mustChoose, list, open) {
  const all = disks.flatMap(d => (d.volumes || []).map(v => ({d, v})));
  const readable = all.filter(x => x.v.fs);
  const current = all.find(
      x => x.d.name === where.disk &&
          String(x.v.number) === String(where.partition));
  if (!mustChoose && all.length === 1 && readable.length === 1 &&
      !disks.some(d => d.error))
    return h(
        'p', {class: 'muted fs-info', id: 'volume-info'},
        `Disk ${current ? current.d.name : where.disk} · ${
            volumeName(all[0].v).toLowerCase()} · ${all[0].v.fs} · ${
            fmtBytes(all[0].v.size)}`);
  const openBtn =
      h('button', {
        type: 'submit',
        id: 'volume-open',
        class: 'primary',
        disabled: !current || !current.v.fs
      },
        mustChoose ? 'Browse this volume' : 'Browse the chosen volume');
  const groups = disks.map(d => {
    const head = `Disk ${d.name} · ${fmtBytes(d.size)}` +
        (d.scheme ? ` · ${SCHEMES[d.scheme] || d.scheme}` : '');
    const vols = (d.volumes || []).map(v => {
      const bits = [
        v.label ? `label "${v.label}"` : null, fmtBytes(v.size),
        v.number === 0    ? null :
            v.description ? `type ${v.description}` :
                            null,
        v.number === 0 ? null : `starts at ${fmtBytes(v.start)}`
      ].filter(Boolean);
      const detail = v.fs ?
          bits.join(' · ') + (v.default ? ' · opened by default' : '') :
          `${bits.join(' · ')} — cannot be browsed: ${
              v.note || 'no file system Haven can read'}`;
      const title = v.fs ? `${volumeName(v)} · ${v.fs}` : volumeName(v);
      return radioChoice(
          'volume', `${d.name}#${v.number}`,
          current && current.d === d && current.v === v, title, detail, {
            disabled: !v.fs,
            dataset: {disk: d.name, partition: String(v.number)}
          });
    });
    return h(
        'fieldset', {class: 'plain volume-disk'}, h('legend', {}, head),
        d.error ? errorBox(d.error, 'Its partition table could not be read') :
                  null,
        !d.error && !vols.length ?
            h('p', {class: 'muted'}, 'No volumes found on this disk.') :
            null,
        h('div', {class: 'choices'}, vols));
  });
  const form =
      h('form', {id: 'volume-chooser', class: 'volume-chooser'},
        h('div', {role: 'radiogroup', 'aria-label': 'Disk and volume'}, groups),
        readable.length ? h('div', {class: 'form-actions'}, openBtn) : null);
  form.addEventListener('change', () => {
    const r = form.querySelector('input[name=volume]:checked');
    openBtn.disabled = !r ||
        (current && r.dataset.disk === current.d.name &&
         r.dataset.partition === String(current.v.number));
  });
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const r = form.querySelector('input[name=volume]:checked');
    if (r) open(r.dataset.disk, r.dataset.partition);
  });
  if (mustChoose) {
    let why;
    if (!readable.length)
      why = notice(
          'No disk of this point holds a file system Haven can read (ext2/3/4, NTFS, FAT, exFAT, HFS+). ' +
              'Restore the whole VM or disk instead and mount it.',
          'warn');
    else if (!where.disk && disks.length > 1)
      why = notice(`This point has ${
          disks.length} disks: choose the disk and volume to browse.`);
    else {
      const n = readable.filter(x => x.d.name === where.disk).length;
      why = notice(
          !disks.some(d => d.name === where.disk) ?
              `This point has no disk ${
                  where.disk}: choose a disk and volume to browse.` :
              n > 1 ?
              `Disk ${where.disk} holds ${
                  n} file systems: choose the one to browse.` :
              `Disk ${
                  where
                      .disk} holds no file system Haven can read: choose a volume of another disk.`,
          n > 1 ? 'info' : 'warn');
    }
    return h(
        'section', {class: 'card volume-card'},
        h('h2', {}, 'Choose what to browse'), why, form);
  }
  openBtn.disabled = true;  // the current volume is checked: nothing new yet
  const now = current ?
      volumeSummary(current.d.name, current.v) :
      list && list.disk ?
      `disk ${list.disk}, partition ${list.partition} (${list.fs})` :
      `disk ${where.disk}`;
  return h(
      'details', {class: 'card disk-details volume-details'},
      h('summary', {},
        `Browsing ${now} — ${all.length} volume${
            all.length === 1 ? '' : 's'} on ${disks.length} disk${
            disks.length === 1 ? '' : 's'}: choose another`),
      form);
}

// Posts `fields` to `action` as a hidden HTML form (values set as
// properties, never as HTML), for a download the browser saves itself.
function submitForm(action, fields) {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = action;
  form.enctype = 'application/x-www-form-urlencoded';
  form.hidden = true;
  for (const [name, value] of Object.entries(fields)) {
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value;
    form.append(input);
  }
  document.body.append(form);
  form.submit();
  // The submission is already planned; the form is not needed for it.
  setTimeout(() => form.remove(), 1000);
}

export async function render(view, ctx) {
  const q = ctx.params;
  const repo = q.repo, id = q.id;
  if (!repo || !id) {
    clear(view, pageTitle('Files'),
          notice('No point is named here: open a recovery point and choose "Browse files".', 'warn'),
          h('p', {}, h('a', {href: '#/points'}, 'Recovery points')));
    return;
  }
  const path = q.path && q.path.startsWith('/') ? q.path : '/';
  const offset = Math.max(0, parseInt(q.offset || '0', 10) || 0);
  const base = `/points/${encodeURIComponent(repo)}/${encodeURIComponent(id)}`;
  // Where in the point: the disk and partition given in the route, or, once
  // havend has chosen the defaults, the ones it chose (so links stay on them).
  const where = {disk: q.disk || undefined, partition: q.partition || undefined};
  const routeOf = (extra) => ({repo, id, disk: where.disk, partition: where.partition, ...extra});
  const filesRoute = (p, extra = {}) => '#/files?' + new URLSearchParams(
      Object.entries(routeOf({path: p, ...extra})).filter(([, v]) => v !== undefined && v !== null && v !== '')).toString();

  clear(view, pageTitle('Files'), h('p', {class: 'muted'}, 'Loading…'));
  // The listing goes ahead with the disk and partition of the route (else
  // havend's defaults); the point's disks and volumes come beside it (read
  // in a child process by havend, so they may take a moment) and become the
  // chooser. Only when the listing fails does the page wait for them: a
  // point with several disks or file systems asks which one to browse.
  const volsP = api.get(`${base}/volumes`);
  volsP.catch(() => {});  // handled where it is used
  const [pointR, listR] = await Promise.allSettled([
    api.get(base),
    q.find ? Promise.resolve(null) : api.get(`${base}/files`, {
      path,
      disk: where.disk,
      partition: where.partition,
      offset,
      limit: PAGE
    }),
  ]);
  const point = pointR.status === 'fulfilled' ? pointR.value : null;
  const title = point ? `Files of ${point.name} · ${fmtTime(point.time)}` : `Files of point ${id.slice(0, 8)}`;
  const pointHref = `#/point?repo=${encodeURIComponent(repo)}&id=${encodeURIComponent(id)}`;
  const back = h('p', {}, h('a', {href: pointHref}, '← The point'), ' · ', h('a', {href: '#/points'}, 'All points'));
  if (!point && pointR.reason) {
    clear(view, pageTitle(title), back, errorBox(pointR.reason, 'This point could not be opened'));
    return;
  }
  const list = listR.status === 'fulfilled' ? listR.value : null;
  if (list && list.disk) {
    where.disk = list.disk;
    where.partition = String(list.partition);
  }
  const openVolume = (disk, partition) =>
      go('#/files', {repo, id, disk, partition: String(partition), path: '/'});
  let chooser = null, mustChoose = false, fillChooser = null;
  if (point.kind !== 'files') {
    if (list || q.find) {
      chooser = h('div', {id: 'volume-slot'});
      fillChooser = () => volsP.then(
          v => chooser.isConnected &&
              chooser.replaceWith(
                  volumeChooser(v.disks || [], where, false, list, openVolume)),
          e => chooser.isConnected &&
              chooser.replaceWith(
                  errorBox(e, 'The disks of this point could not be read')));
    } else {
      const volsR = await volsP.then(value => ({value}), reason => ({reason}));
      if (volsR.value) {
        const disks = volsR.value.disks || [];
        if (!where.disk && volsR.value.default_disk)
          where.disk = volsR.value.default_disk;
        const d = disks.find(x => x.name === where.disk);
        if (where.partition === undefined && d &&
            d.default_partition !== null && d.default_partition !== undefined)
          where.partition = String(d.default_partition);
        mustChoose = !d || where.partition === undefined;
        chooser = volumeChooser(disks, where, mustChoose, null, openVolume);
      } else {
        chooser =
            errorBox(volsR.reason, 'The disks of this point could not be read');
      }
    }
  }

  // ---------------------------------------------------------- selection
  // The selection stays while walking the folders of one point and disk.
  const key = [repo, id, where.disk || '', where.partition || ''].join('\u0000');
  if (kept.key !== key) kept = {key, selected: new Set()};
  const selected = kept.selected;
  const selCount = h('span', {id: 'file-selected', class: 'muted'}, 'Nothing selected');
  const selStatus = h('div', {'aria-live': 'polite'});
  const zipBtn = h('button', {type: 'button', id: 'download-zip', disabled: true}, 'Download as zip');
  const tarBtn = h('button', {type: 'button', id: 'download-tar', disabled: true}, 'Download as tar');
  const clearSel = h('button', {type: 'button', class: 'link', id: 'file-clear-selection', hidden: true}, 'Clear selection');
  function syncSelection() {
    const n = selected.size;
    selCount.textContent = n ? `${n} selected` + (n <= 3 ? `: ${[...selected].join(', ')}` : '') : 'Nothing selected';
    zipBtn.disabled = tarBtn.disabled = n === 0;
    clearSel.hidden = n === 0;
  }
  clearSel.addEventListener('click', () => {
    selected.clear();
    for (const b of view.querySelectorAll('input.pick')) b.checked = false;
    syncSelection();
  });
  // The archive is saved by the browser's own download manager, streamed to
  // disk as havend makes it: a plain form POST (a fetch() would have to hold
  // a multi-GB archive in memory). The form carries the session's CSRF token
  // in its body, which havend takes from a form for this route only; havend
  // answers with Content-Disposition: attachment, so the page stays.
  async function archive(format, btn) {
    if (!selected.size) return;
    const paths = [...selected];
    const body = {paths, format};
    if (where.disk) body.disk = where.disk;
    if (where.partition !== undefined && where.partition !== '') body.partition = Number(where.partition);
    btn.disabled = true;
    try {
      // A fresh look at the session first: an ended one leads to the login
      // here instead of havend's refusal replacing the page.
      const me = await api.get('/me');
      if (!me.csrf_token)
        throw new api.ApiError(
            403, 'This session has no CSRF token; log in again.');
      submitForm(
          `/api/v1${base}/archive`,
          {request: JSON.stringify(body), csrf_token: me.csrf_token});
      const what = `${paths.length} item${paths.length > 1 ? 's' : ''}`;
      clear(
          selStatus,
          notice(
              `The ${format} of ${
                  what} is downloading: havend makes it as it sends it, ` +
                  'so the browser shows no total size. See the browser\'s downloads.',
              'ok'));
    } catch (e) {
      clear(selStatus, errorBox(e, 'The archive could not be made'));
    } finally {
      btn.disabled = selected.size === 0;
    }
  }
  zipBtn.addEventListener('click', () => archive('zip', zipBtn));
  tarBtn.addEventListener('click', () => archive('tar', tarBtn));

  const downloadHref = (p) => `/api/v1${base}/download?` + new URLSearchParams(
      Object.entries({path: p, disk: where.disk, partition: where.partition}).filter(([, v]) => v !== undefined && v !== '')).toString();

  function pickBox(fullPath, name) {
    const box = h('input', {type: 'checkbox', class: 'pick', value: fullPath, checked: selected.has(fullPath),
                            'aria-label': `Select ${name}`});
    box.addEventListener('change', () => {
      if (box.checked) selected.add(fullPath); else selected.delete(fullPath);
      syncSelection();
    });
    return box;
  }

  function nameCell(e, fullPath, label) {
    if (e.type === 'dir')
      return h('a', {href: filesRoute(fullPath), class: 'dir'}, h('span', {class: 'ficon dir', 'aria-hidden': 'true'}), label);
    const bits = [h('span', {class: `ficon ${e.type === 'symlink' ? 'link' : 'file'}`, 'aria-hidden': 'true'}), label];
    if (e.type === 'symlink')
      bits.push(h('span', {class: 'muted'}, ' → ', e.link_target || '?'));
    else if (e.type !== 'file')
      bits.push(h('span', {class: 'muted'}, ` (${e.type})`));
    return h('span', {}, bits);
  }

  const columns = (pathOf, labelOf) => [
    {title: 'Select', class: 'pick-col', cell: e => pickBox(pathOf(e), e.name)},
    {title: 'Name', class: 'name-col', cell: e => nameCell(e, pathOf(e), labelOf(e))},
    {title: 'Size', class: 'num', cell: e => e.type === 'dir' ? '–' : fmtBytes(e.size)},
    {title: 'Mode', class: 'wide-only', cell: e => h('code', {}, e.mode || '')},
    {title: 'Owner', class: 'wide-only', cell: e => e.user || e.uid !== undefined ? `${e.user ?? e.uid}:${e.group ?? e.gid}` : '–'},
    {title: 'Modified', class: 'wide-only', cell: e => h('time', {datetime: e.mtime}, fmtTime(e.mtime))},
    {title: 'Download', class: 'dl-col', cell: e => e.type === 'file' ?
      h('a', {class: 'download', href: downloadHref(pathOf(e)), download: e.name, 'aria-label': `Download ${e.name}`}, 'Download') : ''},
  ];

  // --------------------------------------------------------- breadcrumb
  const crumbs = h('nav', {id: 'file-path', class: 'crumbs', 'aria-label': 'Folder'});
  const segs = path.split('/').filter(Boolean);
  crumbs.append(segs.length ? h('a', {href: filesRoute('/')}, '/') : h('span', {'aria-current': 'page'}, '/'));
  segs.forEach((s, i) => {
    const p = '/' + segs.slice(0, i + 1).join('/');
    if (i) crumbs.append(h('span', {class: 'sep', 'aria-hidden': 'true'}, '/'));
    crumbs.append(i === segs.length - 1 ? h('span', {'aria-current': 'page'}, s) : h('a', {href: filesRoute(p)}, s));
  });
  crumbs.dataset.path = path;

  // ------------------------------------------------------------- search
  const searchIn = h('input', {id: 'file-search', type: 'search', value: q.find || '', placeholder: '*.conf', autocomplete: 'off'});
  const searchGo = h('button', {type: 'submit', id: 'file-search-go'}, 'Find');
  const searchForm = h('form', {class: 'search-form', role: 'search'},
    h('label', {for: 'file-search'}, path === '/' ? 'Find by name in this point' : `Find by name in ${path} and below`),
    h('div', {class: 'row'}, searchIn, searchGo),
    h('div', {class: 'hint'}, 'A name or part of one; * and ? are wildcards ("*.conf", "host?").'));
  searchForm.addEventListener('submit', ev => {
    ev.preventDefault();
    const v = searchIn.value.trim();
    location.hash = filesRoute(path, v ? {find: v} : {});
  });

  const up = path !== '/' ? h('a', {href: filesRoute(parentOf(path)), class: 'btn', id: 'file-up'}, '↑ Up') : null;
  const pickAll = h('button', {type: 'button', class: 'link', id: 'file-select-all'}, 'Select all shown');
  pickAll.addEventListener('click', () => {
    for (const b of view.querySelectorAll('input.pick')) {
      b.checked = true;
      selected.add(b.value);
    }
    syncSelection();
  });
  const selBar = h('div', {class: 'selection-bar'}, selCount, pickAll, clearSel, h('div', {class: 'actions'}, zipBtn, tarBtn));
  // A file backup keeps its paths from the root ('/var/www'): offer them.
  const shortcuts = point.kind === 'files' && path === '/' && !q.find && Array.isArray(point.paths) && point.paths.length ?
      h('p', {class: 'shortcuts'}, 'Backed up here: ',
        point.paths.map((p, i) => [i ? ', ' : '', h('a', {href: filesRoute(p)}, p)])) : null;

  const content = h('div', {});
  if (q.find) {
    const glob = /[*?[]/.test(q.find) ? q.find : `*${q.find}*`;
    clear(content, h('p', {class: 'muted'}, 'Searching…'));
    try {
      const r = await api.get(`${base}/files/search`, {name: glob, path, disk: where.disk, partition: where.partition, limit: 500});
      const res = r.results || [];
      clear(content,
        h('p', {}, h('a', {href: filesRoute(path), id: 'file-search-clear'}, `← Back to the folder ${path}`)),
        r.truncated ? notice(`The search stopped early (${r.truncated}); narrow it down to see everything.`, 'warn') : null,
        section(`${res.length} match${res.length === 1 ? '' : 'es'} for "${glob}"`,
          table(columns(e => e.path, e => e.path), res, {
            id: 'search-table', class: 'file-list',
            empty: `Nothing named "${glob}" under ${path} (${r.visited ?? 0} entries looked at).`,
            rowData: e => ({name: e.name, path: e.path})
          })));
      // a file's path opens the folder it is in
      for (const row of content.querySelectorAll('#search-table tr[data-path]')) {
        const e = res.find(x => x.path === row.dataset.path);
        if (e && e.type !== 'dir') {
          const cell = row.querySelector('td.name-col');
          clear(cell, nameCell(e, e.path, e.path),
                h('div', {class: 'small'}, h('a', {href: filesRoute(parentOf(e.path))}, 'Open its folder')));
        }
      }
    } catch (e) {
      clear(content, errorBox(e, 'The search failed'));
    }
  } else if (!list) {
    clear(content, errorBox(listR.reason, `The folder ${path} could not be listed`),
          path !== '/' ? h('p', {}, h('a', {href: filesRoute('/')}, 'Go to the top folder')) : null);
  } else if (list.type !== 'dir') {
    clear(content, section(baseName(path),
      table(columns(() => path, x => x.name), list.entries, {id: 'file-table', class: 'file-list', rowData: x => ({name: x.name})})));
  } else {
    const entries = list.entries || [];
    const total = list.total ?? entries.length;
    const pager = total > PAGE ? h('div', {class: 'actions pager'},
      offset > 0 ? h('a', {class: 'btn', href: filesRoute(path, {offset: String(Math.max(0, offset - PAGE)) || undefined})}, '← Previous') : null,
      h('span', {class: 'muted'}, `${offset + 1}–${offset + entries.length} of ${total}`),
      list.next_offset !== null && list.next_offset !== undefined ? h('a', {class: 'btn', id: 'file-next', href: filesRoute(path, {offset: String(list.next_offset)})}, 'Next →') : null) : null;
    clear(content,
      total > PAGE ? notice(`This folder holds ${total} entries; they are shown ${PAGE} at a time. Use "Find" to go straight to a name.`) : null,
      table(columns(e => joinPath(path, e.name), e => e.name), entries, {
        id: 'file-table', class: 'file-list',
        empty: 'This folder is empty.',
        rowData: e => ({name: e.name, type: e.type})
      }),
      pager);
  }

  if (mustChoose) {
    clear(view, pageTitle(title), back, chooser);
    return;
  }
  clear(view,
        pageTitle(title),
        back,
        chooser,
        h('div', {class: 'card file-browser'},
          h('div', {class: 'file-head'}, h('div', {class: 'crumb-row'}, up, crumbs), searchForm),
          shortcuts, selBar, selStatus, content));
  syncSelection();
  if (fillChooser) fillChooser();
}
