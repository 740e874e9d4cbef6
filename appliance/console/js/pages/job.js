// #/job?id=N: one job — its state, what it does, who started it and when,
// a progress bar that moves, the per-VM items and the log, appended while
// it runs. Live from the job's event stream, with a poll of GET /jobs/{id}
// every 2.5 s as the fallback (a proxy that buffers the stream, or a
// stream refused because four are open already). Both stop when the job
// ends or the user leaves the page.
import * as api from '../api.js';
import {clear, errorBox, fmtBytes, fmtDuration, fmtTime, h, notice, pageTitle, setProgress, table, timeAgo} from '../ui.js';

import {bar, FINAL_STATES, jobTarget, kindWords, liveEvents, OUTCOME_STATE, progressFraction, progressText, stateBadge} from './jobs.js';

const POLL_MS = 2500;

export async function render(view, ctx) {
  const id = ctx.params.id;
  if (!id || !/^\d+$/.test(id)) {
    view.append(
        pageTitle('Job'),
        errorBox('No job is named in the address (#/job?id=N).'),
        h('p', {}, h('a', {href: '#/jobs'}, 'All jobs')));
    return;
  }
  let job;
  try {
    job = await api.get(`/jobs/${id}`);
  } catch (e) {
    view.append(
        pageTitle(`Job ${id}`), errorBox(e, `Job ${id}`),
        h('p', {}, h('a', {href: '#/jobs'}, 'All jobs')));
    return;
  }

  let stopped = false;
  let lastProgress = job.progress || null;
  let workFraction = 0;  // the bar's last value while an item ran
  let logAfter = 0;
  let timer = null;
  let stream = null;

  // ---- the parts of the page, filled by update()
  const stateHolder = h('span', {class: 'job-state-holder'});
  const cancelHolder = h('span');
  const headActions = h('span', {class: 'actions'}, cancelHolder);
  const progress =
      bar(progressFraction(job.state, lastProgress), 'job progress');
  progress.id = 'job-progress';
  const progressWords = h(
      'div', {class: 'muted', id: 'job-progress-text', 'aria-live': 'polite'});
  const props = h('dl', {class: 'props'});
  const errorHolder = h('div');
  const itemsHolder = h('div');
  const resultHolder = h('div');
  const log = h('pre', {id: 'job-log', tabindex: '0', 'aria-label': 'job log'});
  const logStatus = h('div', {class: 'muted small'});
  const follow =
      h('input', {type: 'checkbox', id: 'job-log-follow', checked: true});

  view.append(
      pageTitle(`Job ${id}`, headActions),
      h('section', {class: 'card job-summary'},
        h('div', {class: 'job-headline'}, stateHolder,
          h('strong', {}, kindWords(job.kind)),
          jobTarget(job) ? h('span', {class: 'muted'}, jobTarget(job)) : null),
        progress, progressWords, errorHolder, props),
      h('section', {class: 'card'}, h('h2', {}, 'Items'), itemsHolder),
      resultHolder,
      h('section', {class: 'card'},
        h('div', {class: 'log-head'}, h('h2', {}, 'Log'),
          h('label', {class: 'inline', for: 'job-log-follow'}, follow, ' follow the end')),
        log, logStatus));

    function renderProps() {
      const rows = [
        ['Kind', kindWords(job.kind)],
        ['Repository', job.repository || '–'],
        [
          'Requested by',
          job.schedule_id != null ?
              h('span', {},
                h('a', {href: `#/schedule?id=${job.schedule_id}`},
                  `schedule ${job.schedule_id}`),
                ` (${job.requested_by || '?'})`) :
              (job.requested_by || '–')
        ],
        [
          'Queued',
          h('span', {}, fmtTime(job.queued_at), ' (', timeAgo(job.queued_at),
            ')')
        ],
        [
          'Started',
          job.started_at ? fmtTime(job.started_at) :
                           (job.state === 'queued' ? 'not yet' : '–')
        ],
        [
          'Ended',
          job.ended_at ?
              fmtTime(job.ended_at) :
              (FINAL_STATES.includes(job.state) ? '–' : 'still going')
        ],
        [
          'Duration',
          job.duration_seconds > 0 ?
              fmtDuration(job.duration_seconds) :
              job.started_at && !job.ended_at ?
              fmtDuration((Date.now() - new Date(job.started_at)) / 1000) +
                  ' so far' :
              '–'
        ],
      ];
      if (FINAL_STATES.includes(job.state) &&
          (job.kind === 'backup' || job.read_bytes || job.stored_bytes))
        rows.push([
          'Data',
          `read ${fmtBytes(job.read_bytes)} · new ${
              fmtBytes(job.new_bytes)} · stored ${fmtBytes(job.stored_bytes)}`
        ]);
      const params = job.params && Object.keys(job.params).length ?
          h('code', {}, JSON.stringify(job.params)) :
          null;
      if (params) rows.push(['Parameters', params]);
      clear(props, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    }

    function renderItems() {
      const items = job.items || [];
      const cols = [
        {
          title: 'Item',
          class: 'lead',
          cell: i => h('strong', {}, i.name || '–')
        },
        {
          title: 'Outcome',
          cell: i =>
              stateBadge(OUTCOME_STATE[i.outcome] || i.outcome || 'unknown')
        },
        {
          title: 'Consistency',
          cell: i => {
            const d = i.detail || {};
            return d.consistency ?
                h('span', {title: d.consistency_reason || ''}, d.consistency) :
                '–';
          }
        },
        {title: 'Read', class: 'num', cell: i => fmtBytes(i.read_bytes)},
        {title: 'New', class: 'num', cell: i => fmtBytes(i.new_bytes)},
        {title: 'Stored', class: 'num', cell: i => fmtBytes(i.stored_bytes)},
        {
          title: 'Recovery point',
          cell: i => {
            // A VM backup names its point "snapshot", an agent backup "point".
            const snap = i.detail && (i.detail.snapshot || i.detail.point);
            return snap && job.repository ? h('a', {
              href: `#/point?repo=${encodeURIComponent(job.repository)}&id=${
                  encodeURIComponent(snap)}`
            },
                                              snap.slice(0, 8)) :
                                            '–';
          }
        },
        {
          title: 'Errors',
          cell: i => {
            const errs = [];
            if (i.error) errs.push(h('div', {class: 'err-text'}, i.error));
            const sk = i.detail && Array.isArray(i.detail.skipped) ?
                i.detail.skipped :
                [];
            if (sk.length)
              errs.push(h('div', {class: 'muted'}, `${sk.length} skipped`));
            return errs.length ? errs : '';
          }
        },
      ];
      const empty = job.state === 'queued' ?
          'Nothing yet: the job has not started.' :
          job.state === 'running' ? 'No item has finished yet.' :
                                    'This job has no per-item results.';
      clear(itemsHolder, table(cols, items, {
              id: 'job-items',
              class: 'stack',
              empty,
              rowData: i => ({item: i.name || '', outcome: i.outcome || ''})
            }));
    }

    function renderResult() {
      const r = job.result;
      if (!r || typeof r !== 'object' || !Object.keys(r).length) {
        clear(resultHolder);
        return;
      }
      const det =
          h('details', {}, h('summary', {}, 'Full result (JSON from havend)'),
            h('pre', {}, JSON.stringify(r, null, 2)));
      clear(resultHolder, h('section', {class: 'card'}, det));
    }

    function renderState() {
      const b = stateBadge(job.state, {id: 'job-state'});
      b.setAttribute('aria-live', 'polite');
      clear(stateHolder, b);
      const fraction = progressFraction(job.state, lastProgress);
      // A job that ended otherwise keeps the bar where its work stopped (its
      // last progress event may count the cancelled item as done).
      if (job.state === 'succeeded' || !FINAL_STATES.includes(job.state)) {
        setProgress(progress, fraction);
        if (job.state === 'running' && lastProgress &&
            lastProgress.items_running > 0 && fraction !== null)
          workFraction = fraction;
      } else {
        setProgress(progress, workFraction);
      }
      progress.classList.toggle(
          'failed', ['failed', 'interrupted'].includes(job.state));
      progress.classList.toggle('done', job.state === 'succeeded');
      progress.classList.toggle('stopped', job.state === 'cancelled');
      let words;
      if (FINAL_STATES.includes(job.state)) {
        const when =
            (job.started_at ? ` after ${fmtDuration(job.duration_seconds)}` :
                              '') +
            (job.ended_at ? ` (${fmtTime(job.ended_at)})` : '');
        words = {
          succeeded: `Finished successfully${when}.`,
          partial: `Finished${
              when}, but not everything succeeded — see the items below.`,
          failed: `Failed${when} — see the error and the log below.`,
          cancelled: `Cancelled${when}.`,
          interrupted: `Interrupted${
              when}: havend stopped while it ran. Start it again.`,
        }[job.state] ||
            job.state;
      } else {
        words = progressText(job.state, lastProgress, job.queue_reason);
      }
      progressWords.textContent = words || '';
      clear(
          errorHolder,
          !job.error                    ? null :
              job.state === 'cancelled' ? notice(job.error) :
                                          errorBox(job.error, 'Error'));

      clear(cancelHolder);
      if (!FINAL_STATES.includes(job.state) &&
          api.hasRole(ctx.me, 'operator')) {
        const btn =
            h('button', {type: 'button', id: 'job-cancel', class: 'danger'},
              job.state === 'queued' ? 'Cancel job' : 'Stop job');
        btn.addEventListener('click', async () => {
          const what = job.state === 'queued' ?
              `Cancel job ${id}? It will not run.` :
              `Stop job ${id}? It stops at its next check` +
                  (job.kind === 'backup' ?
                       ' and leaves no new recovery point.' :
                       '.');
          if (!window.confirm(what)) return;
          btn.disabled = true;
          try {
            job = await api.post(`/jobs/${id}/cancel`);
            update(job);
          } catch (e) {
            btn.disabled = false;
            if (e.status === 409) {
              refresh();
            } else {
              cancelHolder.append(errorBox(e, 'Could not cancel'));
            }
          }
        });
        cancelHolder.append(btn);
      }
      const links = [];
      if (job.kind === 'backup' && ['succeeded', 'partial'].includes(job.state))
        links.push(h('a', {class: 'btn', href: '#/points'}, 'Recovery points'));
      links.push(h('a', {class: 'btn', href: '#/jobs'}, 'All jobs'));
      for (const l of links) cancelHolder.append(' ', l);
    }

    function update(j) {
      const wasFinal = FINAL_STATES.includes(job.state);
      job = {...job, ...j};
      if (j.progress) lastProgress = j.progress;
      renderState();
      renderProps();
      renderItems();
      renderResult();
      if (!wasFinal && FINAL_STATES.includes(job.state)) finish();
    }

    let logBusy = false;
    async function fetchLog() {
      if (logBusy) return;
      logBusy = true;
      try {
        for (let round = 0; round < 20; round++) {
          const r = await api.get(`/jobs/${id}/log`, {after: logAfter});
          const lines = r.lines || [];
          if (lines.length) {
            const nearEnd =
                log.scrollHeight - log.scrollTop - log.clientHeight < 40;
            log.append(lines.map(l => l.text).join('\n') + '\n');
            if (follow.checked && nearEnd !== false)
              log.scrollTop = log.scrollHeight;
          }
          const next = r.next_after ??
              (lines.length ? lines[lines.length - 1].line : logAfter);
          if (next <= logAfter || lines.length < 5000) {
            logAfter = Math.max(logAfter, next);
            break;
          }
          logAfter = next;
        }
        clear(logStatus, log.textContent ? null : 'No log lines yet.');
      } catch (e) {
        if (!stopped)
          clear(logStatus, errorBox(e, 'The log could not be read'));
      } finally {
        logBusy = false;
      }
    }

    let refreshing = false;
    async function refresh() {
      if (refreshing) return;
      refreshing = true;
      try {
        update(await api.get(`/jobs/${id}`));
      } catch (e) {
        if (e.status !== 401)
          clear(errorHolder, errorBox(e, 'Could not read the job'));
      } finally {
        refreshing = false;
      }
      fetchLog();
    }

    function finish() {
      stopped = true;
      if (stream) stream.close();
      stream = null;
      clearInterval(timer);
      // One last read: the items, result and the log's last lines.
      setTimeout(async () => {
        try {
          const j = await api.get(`/jobs/${id}`);
          job = {...job, ...j};
          renderState();
          renderProps();
          renderItems();
          renderResult();
        } catch { /* shown already */
        }
        fetchLog();
      }, 300);
    }

    update(job);
    await fetchLog();
    if (!FINAL_STATES.includes(job.state)) {
      stream = liveEvents({
        progress: p => {
          if (stopped || String(p.id) !== String(id)) return;
          lastProgress = p;
          if (job.state === 'queued') job.state = 'running';
          renderState();
        },
        state: s => {
          if (stopped || String(s.id) !== String(id)) return;
          if (s.state && s.state !== job.state) {
            job.state = s.state;
            if (s.queue_reason) job.queue_reason = s.queue_reason;
            renderState();
            refresh();
          }
        },
      });
      timer = setInterval(() => {
        if (!stopped) refresh();
      }, POLL_MS);
    }
    ctx.onLeave(() => {
      stopped = true;
      if (stream) stream.close();
      clearInterval(timer);
    });
}
