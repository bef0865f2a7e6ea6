// Chats: the index (most recent activity first, paged, active or archived), creating a chat,
// and the way into one chat (`#/chats/<id>`, shown by `chat.js`).

import { get, post } from '../api.js';
import { Pager } from '../paging.js';
import { announce, el, errorText, field, notice, table, time } from '../ui.js';
import * as chat from './chat.js';

const PAGE_SIZE = 25;

export async function render(main, context) {
  if (context.rest.length > 0) return chat.render(main, { ...context, chatId: context.rest[0] });

  const status = el('div');
  const archived = el('select', { name: 'archived' }, el('option', { value: 'false' }, 'Active chats'), el('option', { value: 'true' }, 'Archived chats'));
  const listing = el('div');
  const pager = new Pager('page of chats', async (cursor) => {
    try {
      const page = await get('/api/chats', { limit: PAGE_SIZE, cursor, archived: archived.value });
      listing.replaceChildren(
        page.items.length === 0
          ? el('p', { class: 'muted' }, page.next_cursor ? 'No chats on this page; the next page may have some.' : 'No chats here.')
          : table('Chats, most recent activity first', ['Chat', 'Title', 'Last activity', 'Messages'], page.items.map(row)),
      );
      status.replaceChildren();
      return page.next_cursor;
    } catch (error) {
      notice(status, 'error', errorText(error));
      return null;
    }
  });
  archived.addEventListener('change', () => pager.first());

  main.append(el('h1', {}, 'Chats'));
  if (context.can('write-chats')) main.append(createForm());
  main.append(
    el('section', { 'aria-labelledby': 'chat-index-title' },
      el('h2', { id: 'chat-index-title' }, 'Chat index'),
      el('form', { class: 'inline', onsubmit: (e) => e.preventDefault() }, field('Show', archived)),
      status,
      listing,
      pager.controls,
    ),
  );
  await pager.first();
}

function row(item) {
  return el(
    'tr',
    {},
    el('td', { class: 'wrap' }, el('a', { href: `#/chats/${encodeURIComponent(item.id)}` }, item.id)),
    el('td', { class: 'wrap' }, item.title ?? '—'),
    el('td', {}, time(item.activity_ms)),
    el('td', {}, String(item.last_seq)),
  );
}

function createForm() {
  const title = el('input', { type: 'text', name: 'title', maxlength: '200' });
  const id = el('input', { type: 'text', name: 'id', pattern: '[A-Za-z0-9_\\-]{1,64}', 'aria-describedby': 'chat-id-hint' });
  const status = el('div');
  const form = el(
    'form',
    { class: 'inline' },
    field('Title', title),
    field('Chat id (optional)', id),
    el('button', { type: 'submit' }, 'Create chat'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const body = {};
      if (title.value.trim()) body.title = title.value.trim();
      if (id.value.trim()) body.id = id.value.trim();
      const created = await post('/api/chats', body);
      announce(`Chat ${created.id} created`);
      window.location.hash = `#/chats/${encodeURIComponent(created.id)}`;
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
  });
  return el(
    'section',
    { 'aria-labelledby': 'new-chat-title' },
    el('h2', { id: 'new-chat-title' }, 'New chat'),
    form,
    el('p', { id: 'chat-id-hint', class: 'muted' }, 'Letters, digits, "-" and "_"; generated when left empty.'),
    status,
  );
}
