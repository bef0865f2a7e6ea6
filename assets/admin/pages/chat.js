// One chat: its history, paged back from the newest message; new messages as they arrive on the
// chat's event stream; and the composer. A degraded outcome is shown as what it is — no agent
// reply, and why — both in the history and in the composer's result.

import { ApiError, get, patch, segment, subscribe } from '../api.js';
import { Outbox } from '../outbox.js';
import { announce, el, errorText, field, notice, time } from '../ui.js';

const PAGE_SIZE = 50;

export async function render(main, { can, chatId }) {
  const base = `/api/chats/${segment(chatId)}`;
  const heading = el('h1', {}, `Chat ${chatId}`);
  const details = el('p', { class: 'muted' });
  const status = el('div');
  const list = el('ol', { class: 'messages', 'aria-label': 'Messages, oldest first' });
  const older = el('button', { type: 'button', class: 'secondary' }, 'Load older messages');
  const shown = new Map();
  let olderCursor = null;

  main.append(
    el('p', {}, el('a', { href: '#/chats' }, '← All chats')),
    heading,
    details,
    status,
  );

  let chat;
  try {
    chat = await get(base);
  } catch (error) {
    notice(status, 'error', error instanceof ApiError && error.status === 404 ? `There is no chat ${chatId}.` : errorText(error));
    return () => {};
  }
  const describe = () => {
    heading.textContent = chat.title ? `${chat.title}` : `Chat ${chat.id}`;
    details.textContent = `id ${chat.id} · created ${time(chat.created_ms)}${chat.archived ? ' · archived' : ''}${chat.node ? ` · node ${chat.node}` : ''}`;
  };
  describe();

  if (can('write-chats')) {
    const archive = el('button', { type: 'button', class: 'secondary' });
    const label = () => {
      archive.textContent = chat.archived ? 'Restore from archive' : 'Archive chat';
    };
    label();
    archive.addEventListener('click', async () => {
      try {
        chat = await patch(base, { archived: !chat.archived });
        describe();
        label();
        announce(chat.archived ? 'Chat archived' : 'Chat restored');
      } catch (error) {
        notice(status, 'error', errorText(error));
      }
    });
    main.append(el('div', { class: 'actions' }, archive));
  }

  // The send answer and the chat's stream both bring new messages, in either order: each is
  // shown once, in `seq` order. The answer does not say the degraded note's `seq`; it is shown
  // after the operator's message until the stream (or a reload) brings its place.
  const add = (message) => {
    const known = shown.get(message.id);
    if (known && (Number(known.dataset.seq) === message.seq || !Number.isInteger(message.seq))) return;
    known?.remove();
    const item = showMessage(message);
    shown.set(message.id, item);
    const later = Array.from(list.children).find((other) => Number(other.dataset.seq) > message.seq);
    list.insertBefore(item, later ?? null);
  };
  const loadOlder = async () => {
    try {
      const page = await get(`${base}/messages`, { order: 'desc', limit: PAGE_SIZE, cursor: olderCursor });
      for (const message of page.items) add(message);
      olderCursor = page.next_cursor;
      older.hidden = !olderCursor;
    } catch (error) {
      notice(status, 'error', errorText(error));
    }
  };
  older.addEventListener('click', loadOlder);

  main.append(
    el('section', { 'aria-labelledby': 'history-title' }, el('h2', { id: 'history-title' }, 'History'), older, list),
  );
  await loadOlder();

  const reload = async () => {
    shown.clear();
    list.replaceChildren();
    olderCursor = null;
    await loadOlder();
  };
  const stream = subscribe(`${base}/events`, {
    'message.created': (message) => add(message),
    reset: reload,
  });

  if (can('write-chats')) main.append(composer(chatId, (answer) => {
    add(answer.message);
    if (answer.reply) add(answer.reply);
    if (answer.degraded) {
      add({ id: answer.degraded.message_id, seq: answer.message.seq + 0.5, ts_ms: answer.message.ts_ms, role: 'system', author: 'system', text: answer.degraded.message, reason_code: answer.degraded.reason_code });
    }
  }));
  return () => stream.close();
}

function showMessage(message) {
  const degraded = message.role === 'system' && message.reason_code;
  return el(
    'li',
    { class: `message ${degraded ? 'degraded' : message.role}`, 'data-message-id': message.id, 'data-seq': message.seq },
    el(
      'header',
      {},
      el('span', {}, degraded ? `No agent reply (${message.reason_code})` : message.role),
      el('span', {}, message.author),
      message.node ? el('span', {}, `node ${message.node}${message.model ? ` · ${message.model}` : ''}`) : null,
      Number.isInteger(message.seq) ? el('span', {}, `#${message.seq}`) : null,
      el('time', { datetime: new Date(message.ts_ms).toISOString() }, time(message.ts_ms)),
    ),
    el('p', {}, message.text),
  );
}

/** The send result stays on the page and is read out once, through the page's live region. */
function showResult(slot, kind, text) {
  slot.replaceChildren(el('p', { class: `notice ${kind}` }, text));
  announce(text);
}

function composer(chatId, onAnswer) {
  const outbox = new Outbox(chatId);
  const text = el('textarea', { name: 'text', rows: '3', maxlength: '16000', required: true });
  const send = el('button', { type: 'submit' }, 'Send');
  const result = el('div', { id: 'send-result' });
  const form = el('form', { class: 'composer', 'aria-labelledby': 'composer-title' }, field('Message', text), el('div', { class: 'actions' }, send));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const message = text.value;
    if (!message.trim()) return;
    try {
      const answer = await outbox.send(message);
      if (text.value === message) text.value = '';
      onAnswer(answer);
      const outcome = answer.degraded
        ? `Sent, but no agent reply: ${answer.degraded.message} (${answer.degraded.reason_code})`
        : 'Sent; the agent replied.';
      showResult(result, answer.degraded ? 'warning' : 'ok', outcome);
    } catch (error) {
      const retry = error.isNetwork || error.status === 409 || error.status === 429 || error.status >= 500
        ? ' Sending again is safe: the message will be stored once.'
        : '';
      const outcome = `Not sent: ${errorText(error)}.${retry}`;
      showResult(result, 'error', outcome);
    }
  });
  return el(
    'section',
    { 'aria-labelledby': 'composer-title' },
    el('h2', { id: 'composer-title' }, 'Send a message'),
    form,
    result,
  );
}
