// Sign in with an API key: the service answers with an HttpOnly session cookie, so the key is
// never kept by the page.

import { post } from '../api.js';
import { announce, el, errorText, field, notice } from '../ui.js';

export function render(main, { onSignedIn, message }) {
  const key = el('input', { type: 'password', name: 'key', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const status = el('div');
  const submit = el('button', { type: 'submit' }, 'Sign in');
  const form = el(
    'form',
    { class: 'stacked', 'aria-labelledby': 'login-title' },
    field('API key', key),
    el('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const who = await post('/api/auth/login', { key: key.value }, { quietUnauthorized: true });
      key.value = '';
      announce(`Signed in as ${who.role}`);
      await onSignedIn(who);
    } catch (error) {
      notice(status, 'error', error.status === 401 ? 'That key was not accepted.' : errorText(error));
      key.focus();
    } finally {
      submit.disabled = false;
    }
  });
  const said = message ? [el('p', { class: 'notice ok', role: 'status' }, message)] : [];
  main.append(
    el('h1', { id: 'login-title' }, 'Sign in'),
    el('p', { class: 'muted' }, 'Sign in with an API key. The key is exchanged for a session and not stored by this page.'),
    ...said,
    form,
    status,
  );
  key.focus();
}
