// Overview: the system-health cards, the figures an operator looks at first, and (for admins)
// the live feed of the admin event stream.

import { get, subscribe } from '../api.js';
import { bytes, el, errorText, isoTime, notice, statusBadge } from '../ui.js';

const REFRESH_MS = 15000;
const FEED_LENGTH = 50;
const TOPICS = 'chats,audit,retention,health,agents';

const CARD_TITLES = {
  database: 'Database',
  disk: 'Disk',
  agents: 'Agent nodes',
  idempotency: 'Idempotency',
  rate_limits: 'Rate limits',
  retention: 'Retention',
  audit: 'Audit trail',
  sse: 'Event streams',
};

export async function render(main, { can }) {
  const status = el('div');
  const figures = el('ul', { class: 'figures', 'aria-label': 'Key figures' });
  const cards = el('div', { class: 'cards' });
  const refresh = el('button', { type: 'button', class: 'secondary' }, 'Refresh');
  main.append(
    el('h1', {}, 'Overview'),
    el('div', { class: 'actions' }, refresh, status),
    el('section', { 'aria-labelledby': 'figures-title' }, el('h2', { id: 'figures-title' }, 'Key figures'), figures),
    el('section', { 'aria-labelledby': 'cards-title' }, el('h2', { id: 'cards-title' }, 'System health'), cards),
  );

  const load = async () => {
    try {
      const health = await get('/api/admin/system/health');
      showFigures(figures, health);
      cards.replaceChildren(...Object.entries(health.cards).map(([name, card]) => showCard(name, card)));
      status.replaceChildren(el('span', { class: 'muted' }, 'Overall: '), statusBadge(health.status), el('span', { class: 'muted' }, ` · checked ${isoTime(health.checked_at)}`));
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
  };
  refresh.addEventListener('click', load);
  await load();
  const timer = window.setInterval(load, REFRESH_MS);

  let feed = null;
  if (can('admin-events')) {
    const list = el('ol', { class: 'feed', 'aria-label': 'Live events, newest first' });
    main.append(
      el('section', { 'aria-labelledby': 'feed-title' }, el('h2', { id: 'feed-title' }, 'Live events'), list),
    );
    const add = (name) => (data) => {
      list.prepend(el('li', {}, describe(name, data)));
      while (list.children.length > FEED_LENGTH) list.lastElementChild.remove();
    };
    const names = ['message.created', 'audit.appended', 'retention.started', 'retention.finished', 'health.changed', 'agent.circuit'];
    feed = subscribe(`/api/admin/events/stream?topics=${TOPICS}`, Object.fromEntries(names.map((n) => [n, add(n)])));
  }
  return () => {
    window.clearInterval(timer);
    feed?.close();
  };
}

function showFigures(list, health) {
  const c = health.cards;
  const items = [
    ['Database size', bytes(c.database.figures.size_bytes)],
    ['Disk free', c.disk.figures.free_percent === null ? '—' : `${c.disk.figures.free_percent}%`],
    ['Sends (last 5 min)', c.rate_limits.figures.sends],
    ['Degraded replies (last hour)', c.agents.figures.degraded_last_hour],
    ['Audit entries', c.audit.figures.entries ?? '—'],
    ['Stream subscribers', c.sse.figures.subscribers],
  ];
  list.replaceChildren(...items.map(([label, value]) => el('li', {}, el('strong', {}, String(value)), label)));
}

function showCard(name, card) {
  const rows = Object.entries(card.figures)
    .filter(([, value]) => value === null || typeof value !== 'object')
    .flatMap(([figure, value]) => [el('dt', {}, figure.replaceAll('_', ' ')), el('dd', {}, value === null ? '—' : String(value))]);
  return el(
    'article',
    { class: 'card', 'aria-labelledby': `card-${name}` },
    el('h3', { id: `card-${name}` }, CARD_TITLES[name] ?? name, statusBadge(card.status)),
    el('p', {}, card.summary),
    el('dl', {}, rows),
  );
}

function describe(name, data) {
  const when = new Date(data.ts_ms ?? Date.now()).toLocaleTimeString();
  if (name === 'audit.appended') {
    return `${when} audit #${data.seq}: ${data.action} on ${data.target?.kind} ${data.target?.id} by ${data.actor?.kind} ${data.actor?.id} (${data.outcome})`;
  }
  if (name === 'message.created') {
    return `${when} message #${data.seq} (${data.role})${data.reason_code ? `, degraded: ${data.reason_code}` : ''}`;
  }
  return `${when} ${name}`;
}
