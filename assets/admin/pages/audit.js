// Audit: the trail newest first, filtered by actor, action, target, outcome and time range; a
// chain verification on demand; and the export (NDJSON) for the same time range.

import { get, withQuery } from '../api.js';
import { Pager } from '../paging.js';
import { announce, el, errorText, field, notice, table, time } from '../ui.js';

const PAGE_SIZE = 50;
const ACTIONS = [
  'chat.create', 'chat.update', 'chat.send', 'chat.reply', 'auth.login', 'auth.login_failed',
  'auth.logout', 'auth.lockout', 'auth.denied', 'audit.read', 'audit.verify', 'audit.export',
  'key.create', 'key.revoke', 'service.start', 'service.stop', 'retention.run',
  'retention.dry_run', 'backup.create', 'backup.restore',
];

export async function render(main) {
  const actor = el('input', { type: 'text', name: 'actor', placeholder: 'key:ab12cd34ef56' });
  const action = el('select', { name: 'action' }, el('option', { value: '' }, 'Any action'), ACTIONS.map((a) => el('option', { value: a }, a)));
  const target = el('input', { type: 'text', name: 'target', placeholder: 'chat:ops' });
  const outcome = el('select', { name: 'outcome' }, ['', 'ok', 'denied', 'error'].map((o) => el('option', { value: o }, o || 'Any outcome')));
  const since = el('input', { type: 'datetime-local', name: 'since' });
  const until = el('input', { type: 'datetime-local', name: 'until' });
  const status = el('div');
  const listing = el('div');
  const verifyResult = el('div');
  const exportLink = el('a', { href: '/api/audit/export', download: 'audit-export.ndjson' }, 'Download export (NDJSON)');

  const instant = (input) => (input.value ? String(new Date(input.value).getTime()) : undefined);
  const filters = () => ({
    actor: actor.value.trim(),
    action: action.value,
    target: target.value.trim(),
    outcome: outcome.value,
    since: instant(since),
    until: instant(until),
  });
  const pager = new Pager('page of audit events', async (cursor) => {
    try {
      const page = await get('/api/audit', { ...filters(), limit: PAGE_SIZE, cursor });
      listing.replaceChildren(
        page.items.length === 0
          ? el('p', { class: 'muted' }, 'No audit event matches.')
          : table('Audit events, newest first', ['Seq', 'Time', 'Actor', 'Action', 'Target', 'Outcome', 'Details'], page.items.map(row)),
      );
      status.replaceChildren();
      return page.next_cursor;
    } catch (error) {
      notice(status, 'error', errorText(error));
      return null;
    }
  });

  const form = el(
    'form',
    { class: 'inline', 'aria-label': 'Audit filters' },
    field('Actor', actor),
    field('Action', action),
    field('Target', target),
    field('Outcome', outcome),
    field('Since', since),
    field('Until', until),
    el('button', { type: 'submit' }, 'Apply filters'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    exportLink.href = withQuery('/api/audit/export', { since: instant(since), until: instant(until) });
    pager.first();
  });

  const verify = el('button', { type: 'button' }, 'Verify chain');
  verify.addEventListener('click', async () => {
    verify.disabled = true;
    try {
      const result = await get('/api/audit/verify');
      const text = result.valid
        ? `Chain valid: ${result.total_entries} entries checked from #${result.checked_from_seq} to head #${result.head_seq}.`
        : `Chain INVALID at #${result.first_invalid_seq}: ${result.reason ?? 'no reason given'}.`;
      verifyResult.replaceChildren(el('p', { class: `notice ${result.valid ? 'ok' : 'error'}` }, text, el('br'), el('span', { class: 'muted' }, `head hash ${result.head_hash}`)));
      announce(text);
    } catch (error) {
      notice(verifyResult, 'error', errorText(error));
    } finally {
      verify.disabled = false;
      verify.focus();
    }
  });

  main.append(
    el('h1', {}, 'Audit'),
    el('section', { 'aria-labelledby': 'chain-title' },
      el('h2', { id: 'chain-title' }, 'Chain'),
      el('div', { class: 'actions' }, verify, exportLink),
      verifyResult,
    ),
    el('section', { 'aria-labelledby': 'trail-title' },
      el('h2', { id: 'trail-title' }, 'Trail'),
      form,
      status,
      listing,
      pager.controls,
    ),
  );
  await pager.first();
}

function row(event) {
  const details = Object.entries(event.details ?? {}).map(([k, v]) => `${k}=${v}`).join(' ');
  const actorRole = event.actor.role ? ` (${event.actor.role})` : '';
  return el(
    'tr',
    {},
    el('td', {}, String(event.seq)),
    el('td', {}, time(event.ts_ms)),
    el('td', { class: 'wrap' }, `${event.actor.kind}:${event.actor.id}${actorRole}`),
    el('td', {}, event.action),
    el('td', { class: 'wrap' }, `${event.target.kind}:${event.target.id}`),
    el('td', {}, event.outcome),
    el('td', { class: 'wrap' }, details),
  );
}
