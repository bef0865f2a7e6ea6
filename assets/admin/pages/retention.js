// Retention: the job log, a dry run that shows what a run would delete (and deletes nothing),
// and a real run, which asks for confirmation first and is then followed until it finishes.

import { get, post } from '../api.js';
import { Pager } from '../paging.js';
import { announce, bytes, confirmAction, el, errorText, isoTime, notice, table } from '../ui.js';

const PAGE_SIZE = 20;
const FOLLOW_MS = 500;
const FOLLOW_TRIES = 120;

export async function render(main) {
  const status = el('div');
  const preview = el('div');
  const listing = el('div');
  const pager = new Pager('page of runs', async (cursor) => {
    try {
      const page = await get('/api/admin/retention/runs', { limit: PAGE_SIZE, cursor });
      listing.replaceChildren(
        page.items.length === 0
          ? el('p', { class: 'muted' }, 'Retention has not run yet.')
          : table('Retention runs, newest first', ['Run', 'Trigger', 'Kind', 'Status', 'Started', 'Finished', 'Deleted', 'Database'], page.items.map(row)),
      );
      return page.next_cursor;
    } catch (error) {
      notice(status, 'error', errorText(error));
      return null;
    }
  });

  const dryRun = el('button', { type: 'button', class: 'secondary' }, 'Preview (dry run)');
  dryRun.addEventListener('click', async () => {
    try {
      const run = await post('/api/admin/retention/run', { dry_run: true });
      preview.replaceChildren(
        el('h2', { id: 'preview-title' }, `Dry run #${run.id}: what a run would delete now`),
        classes(run, 'Rows a run would delete, per class'),
      );
      announce(`Dry run finished: ${total(run)} rows would be deleted`);
      await pager.first();
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
  });

  const runNow = el('button', { type: 'button', class: 'danger' }, 'Run now');
  runNow.addEventListener('click', async () => {
    if (!(await confirmAction('Run retention now? Expired rows are deleted for good.', 'Run retention'))) {
      runNow.focus();
      return;
    }
    try {
      let run = await post('/api/admin/retention/run', { dry_run: false });
      announce(`Retention run #${run.id} started`);
      await pager.first();
      for (let i = 0; i < FOLLOW_TRIES && run.status === 'running'; i += 1) {
        await new Promise((resolve) => window.setTimeout(resolve, FOLLOW_MS));
        run = await get(`/api/admin/retention/runs/${run.id}`);
      }
      notice(status, run.status === 'ok' ? 'ok' : 'error', `Run #${run.id}: ${run.status}, ${total(run)} rows deleted${run.error ? ` (${run.error})` : ''}.`);
      announce(`Retention run #${run.id} ${run.status}`);
      await pager.first();
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
    runNow.focus();
  });

  main.append(
    el('h1', {}, 'Retention'),
    el('div', { class: 'actions' }, dryRun, runNow),
    status,
    preview,
    el('section', { 'aria-labelledby': 'runs-title' }, el('h2', { id: 'runs-title' }, 'Job log'), listing, pager.controls),
  );
  await pager.first();
}

function total(run) {
  return Object.values(run.per_class ?? {}).reduce((sum, tally) => sum + tally.deleted, 0);
}

function classes(run, caption) {
  return table(
    caption,
    ['Class', 'Deleted', 'Remaining', 'Oldest affected', 'Newest affected'],
    Object.entries(run.per_class).map(([name, tally]) =>
      el('tr', {}, el('td', {}, name), el('td', {}, String(tally.deleted)), el('td', {}, String(tally.remaining)), el('td', {}, isoTime(tally.oldest_at)), el('td', {}, isoTime(tally.newest_at))),
    ),
  );
}

function row(run) {
  const size = run.db_bytes_after === null ? bytes(run.db_bytes_before) : `${bytes(run.db_bytes_before)} → ${bytes(run.db_bytes_after)}`;
  return el(
    'tr',
    {},
    el('td', {}, `#${run.id}`),
    el('td', {}, run.trigger),
    el('td', {}, run.dry_run ? 'dry run' : run.compacted ? 'run, compacted' : 'run'),
    el('td', {}, run.status, run.error ? ` (${run.error})` : ''),
    el('td', {}, isoTime(run.started_at)),
    el('td', {}, isoTime(run.finished_at)),
    el('td', {}, String(total(run))),
    el('td', {}, size),
  );
}
