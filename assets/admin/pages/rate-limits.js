// Rate limits: the configured send limits (per chat and per operator) and the sends refused by
// them in the recent window, from the rate-limit card of the system health.

import { get } from '../api.js';
import { el, errorText, isoTime, notice, statusBadge, table } from '../ui.js';

export async function render(main) {
  const status = el('div');
  const body = el('div');
  const refresh = el('button', { type: 'button', class: 'secondary' }, 'Refresh');
  const load = async () => {
    try {
      const health = await get('/api/admin/system/health');
      const card = health.cards.rate_limits;
      const f = card.figures;
      body.replaceChildren(
        el('p', {}, statusBadge(card.status), ' ', card.summary, el('span', { class: 'muted' }, ` · checked ${isoTime(health.checked_at)}`)),
        el('h2', { id: 'limits-title' }, 'Configured limits'),
        table('Configured send limits', ['Scope', 'Per minute', 'Burst'], [
          el('tr', {}, el('td', {}, 'Per chat'), el('td', {}, String(f.chat_per_minute)), el('td', {}, String(f.chat_burst))),
          el('tr', {}, el('td', {}, 'Per operator'), el('td', {}, String(f.operator_per_minute)), el('td', {}, String(f.operator_burst))),
        ]),
        el('h2', { id: 'rejections-title' }, `Recent rejections (last ${f.window_minutes} minutes)`),
        table('Sends and rejections in the recent window', ['Sends', 'Refused by the chat limit', 'Refused by the operator limit'], [
          el('tr', {}, el('td', {}, String(f.sends)), el('td', {}, String(f.rejected_chat)), el('td', {}, String(f.rejected_operator))),
        ]),
      );
      status.replaceChildren();
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
  };
  refresh.addEventListener('click', load);
  main.append(el('h1', {}, 'Rate limits'), el('div', { class: 'actions' }, refresh), status, body);
  await load();
}
