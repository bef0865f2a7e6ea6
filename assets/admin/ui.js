// Small DOM helpers shared by the pages: building elements without HTML strings (no markup is
// ever parsed from data), the live region, confirmations and formatting.

/** `el('button', {type: 'button', onclick: f}, 'Label')`: attributes, `on*` listeners, children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      node.className = value;
    } else if (value === true) {
      node.setAttribute(name, '');
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

let fieldCount = 0;

/** A labelled form control: the label is tied to the control by id. */
export function field(labelText, control) {
  fieldCount += 1;
  if (!control.id) control.id = `field-${fieldCount}`;
  return el('div', { class: 'field' }, el('label', { for: control.id }, labelText), control);
}

/** Says `text` through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById('announcer');
  region.textContent = '';
  // A fresh text node after clearing makes screen readers read a repeated message again.
  window.setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/** A notice in place of `slot`'s content: `kind` is `ok` or `error`. */
export function notice(slot, kind, text) {
  slot.replaceChildren(el('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : null }, text));
}

export function errorText(error) {
  const id = error.requestId ? ` (request ${error.requestId})` : '';
  return `${error.message}${id}`;
}

/** A modal confirmation; resolves to whether the operator confirmed. */
export function confirmAction(question, confirmLabel) {
  return new Promise((resolve) => {
    const cancel = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const confirm = el('button', { type: 'button', class: 'danger' }, confirmLabel);
    const dialog = el(
      'dialog',
      { 'aria-labelledby': 'confirm-question' },
      el('p', { id: 'confirm-question' }, question),
      el('div', { class: 'actions' }, cancel, confirm),
    );
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener('click', () => close(false));
    confirm.addEventListener('click', () => close(true));
    dialog.addEventListener('cancel', () => close(false));
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

export function time(ms) {
  if (ms === null || ms === undefined) return '—';
  return new Date(ms).toLocaleString();
}

export function isoTime(text) {
  return text ? new Date(text).toLocaleString() : '—';
}

export function bytes(count) {
  if (count === null || count === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function statusBadge(status) {
  return el('span', { class: `status status-${status}` }, status);
}

/** A table in a scrolling region that keyboard users can reach and scroll on a narrow screen. */
export function table(caption, headings, rows) {
  return el(
    'div',
    { class: 'table-wrap', role: 'region', tabindex: '0', 'aria-label': caption },
    el(
      'table',
      {},
      el('caption', { class: 'visually-hidden' }, caption),
      el('thead', {}, el('tr', {}, headings.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows),
    ),
  );
}
