// Sending one message exactly once. A message gets its Idempotency-Key when it is first sent and
// keeps it for every retry — a second click while it is on its way, or a retry after the answer
// was lost — so the service stores it once and replays its answer. Only a changed text is a new
// message with a new key.

import { post, segment } from './api.js';

export class Outbox {
  constructor(chatId) {
    this.path = `/api/chats/${segment(chatId)}/send`;
    this.draft = null;
    this.sending = null;
  }

  /** Resolves to the service's send answer; rejects with an `ApiError`. */
  send(text) {
    if (this.sending && this.draft?.text === text) return this.sending;
    if (this.draft?.text !== text) this.draft = { text, key: newKey() };
    const { key } = this.draft;
    const sending = post(this.path, { text }, { headers: { 'Idempotency-Key': key } })
      .then((answer) => {
        if (this.draft?.key === key) this.draft = null;
        return answer;
      })
      .finally(() => {
        // An earlier, slower send ending must not forget the one on its way now.
        if (this.sending === sending) this.sending = null;
      });
    this.sending = sending;
    return sending;
  }
}

/** 128 random bits. `crypto.randomUUID` exists only in secure contexts, and an appliance on a
 * LAN is often served over plain HTTP; `getRandomValues` works everywhere. */
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
