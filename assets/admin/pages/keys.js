// Keys: create one (its secret is shown once, here, with a copy button — the service keeps only
// a hash), list them, revoke one after a confirmation.

import { get, post, remove, segment } from '../api.js';
import { announce, confirmAction, el, errorText, field, notice, table, time } from '../ui.js';

const ROLES = ['operator', 'viewer', 'auditor', 'admin'];

export async function render(main) {
  const status = el('div');
  const created = el('div');
  const listing = el('div');

  const load = async () => {
    try {
      const page = await get('/api/admin/keys');
      listing.replaceChildren(table('API keys', ['Id', 'Name', 'Role', 'Created', 'Expires', 'Last used', 'State', 'Action'], page.items.map((key) => row(key, revoke))));
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
  };
  const revoke = async (key, button) => {
    if (!(await confirmAction(`Revoke key "${key.name}" (${key.id})? Whoever uses it is refused from now on.`, 'Revoke key'))) {
      button.focus();
      return;
    }
    try {
      await remove(`/api/admin/keys/${segment(key.id)}`);
      notice(status, 'ok', `Key ${key.name} (${key.id}) revoked.`);
      announce(`Key ${key.name} revoked`);
      await load();
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
  };

  const name = el('input', { type: 'text', name: 'name', required: true, maxlength: '100' });
  const role = el('select', { name: 'role' }, ROLES.map((r) => el('option', { value: r }, r)));
  const expires = el('input', { type: 'number', name: 'expires', min: '1', max: '3650', inputmode: 'numeric' });
  const submit = el('button', { type: 'submit' }, 'Create key');
  const form = el('form', { class: 'inline', 'aria-labelledby': 'new-key-title' }, field('Name', name), field('Role', role), field('Expires in days (optional)', expires), submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    // A second click while the first is on its way would create a second key.
    submit.disabled = true;
    try {
      const body = { name: name.value.trim(), role: role.value };
      if (expires.value) body.expires_in_days = Number(expires.value);
      const key = await post('/api/admin/keys', body);
      name.value = '';
      expires.value = '';
      showSecret(created, key);
      announce(`Key ${key.name} created. Copy its secret now: it is shown only once.`);
      await load();
    } catch (error) {
      notice(status, 'error', errorText(error));
    } finally {
      submit.disabled = false;
    }
  });

  main.append(
    el('h1', {}, 'API keys'),
    el('section', { 'aria-labelledby': 'new-key-title' }, el('h2', { id: 'new-key-title' }, 'New key'), form, created),
    status,
    el('section', { 'aria-labelledby': 'keys-title' }, el('h2', { id: 'keys-title' }, 'Keys'), listing),
  );
  await load();
}

function showSecret(slot, key) {
  const secret = el('input', { type: 'text', readonly: true, value: key.key, spellcheck: 'false', id: 'new-key-secret' });
  const copy = el('button', { type: 'button' }, 'Copy secret');
  const copied = el('span', { class: 'muted' });
  copy.addEventListener('click', async () => {
    secret.select();
    try {
      // The clipboard API exists only in secure contexts; plain HTTP on a LAN falls back.
      if (navigator.clipboard) await navigator.clipboard.writeText(key.key);
      else document.execCommand('copy');
      copied.textContent = 'Copied.';
    } catch {
      copied.textContent = 'Copy failed: select the secret and copy it by hand.';
    }
    announce(copied.textContent);
  });
  slot.replaceChildren(
    el('div', { class: 'notice ok' },
      el('p', {}, `Key ${key.name} (${key.id}, ${key.role}) created. This is the only time its secret is shown.`),
      el('div', { class: 'secret' }, el('label', { for: 'new-key-secret' }, 'Secret'), secret, copy, copied),
    ),
  );
  secret.focus();
}

function row(key, revoke) {
  const state = key.revoked_ms ? `revoked ${time(key.revoked_ms)}` : key.expires_ms && key.expires_ms < Date.now() ? 'expired' : 'active';
  const action = key.revoked_ms
    ? el('span', { class: 'muted' }, '—')
    : el('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${key.name} (${key.id})` }, 'Revoke');
  if (!key.revoked_ms) action.addEventListener('click', () => revoke(key, action));
  return el(
    'tr',
    { 'data-key-id': key.id },
    el('td', {}, key.id),
    el('td', { class: 'wrap' }, key.name),
    el('td', {}, key.role),
    el('td', {}, time(key.created_ms)),
    el('td', {}, time(key.expires_ms)),
    el('td', {}, time(key.last_used_ms)),
    el('td', {}, state),
    el('td', {}, action),
  );
}
