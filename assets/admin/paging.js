// Cursor paging for a listing: the service hands out only "next" cursors, so the pager keeps the
// cursors of the pages already seen to step back through them.

import { el } from './ui.js';

export class Pager {
  /** `load(cursor)` fetches and shows one page and resolves to its `next_cursor`. */
  constructor(label, load) {
    this.load = load;
    this.seen = [];
    this.current = null;
    this.next = null;
    this.previousButton = el('button', { type: 'button', class: 'secondary', onclick: () => this.back() }, `Previous ${label}`);
    this.nextButton = el('button', { type: 'button', class: 'secondary', onclick: () => this.forward() }, `Next ${label}`);
    this.controls = el('div', { class: 'actions' }, this.previousButton, this.nextButton);
  }

  async first() {
    this.seen = [];
    await this.show(null);
  }

  async reload() {
    await this.show(this.current);
  }

  async forward() {
    if (!this.next) return;
    this.seen.push(this.current);
    await this.show(this.next);
  }

  async back() {
    if (this.seen.length === 0) return;
    await this.show(this.seen.pop());
  }

  async show(cursor) {
    this.current = cursor;
    this.next = await this.load(cursor);
    this.previousButton.disabled = this.seen.length === 0;
    this.nextButton.disabled = !this.next;
  }
}
