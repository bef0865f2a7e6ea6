// The page's entry point: who is signed in, the section navigation, and which page is shown.
// Pages are addressed by the URL fragment (`#/chats/ops`), so the server serves one shell.

import { get, post, whenUnauthorized } from './api.js';
import { PAGE_NEEDS, allows } from './roles.js';
import { announce } from './ui.js';
import * as login from './pages/login.js';
import * as overview from './pages/overview.js';
import * as chats from './pages/chats.js';
import * as audit from './pages/audit.js';
import * as retention from './pages/retention.js';
import * as keys from './pages/keys.js';
import * as rateLimits from './pages/rate-limits.js';

const PAGES = { overview, chats, audit, retention, keys, 'rate-limits': rateLimits };

const main = document.getElementById('main');
const sections = document.getElementById('sections');
const session = document.getElementById('session');

let me = null;
let leavePage = () => {};
// Which call of `show` is current: a page still loading when another is asked for renders into
// a detached element and is closed as soon as it is ready.
let turn = 0;

function can(permission) {
  return me !== null && allows(me.role, permission);
}

function route() {
  const hash = window.location.hash;
  const parts = hash.startsWith('#/') ? hash.slice(2).split('/').map(decodedOrNothing) : [];
  return { page: parts[0] ?? '', rest: parts.slice(1) };
}

/** A hash part as written, or '' when it is not valid percent-encoding (an unknown page). */
function decodedOrNothing(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return '';
  }
}

function firstAllowedPage() {
  return Object.keys(PAGES).find((name) => can(PAGE_NEEDS[name]));
}

async function show({ focus = false } = {}) {
  turn += 1;
  const mine = turn;
  leavePage();
  leavePage = () => {};
  if (me === null) {
    showSignedOut();
    return;
  }
  let { page, rest } = route();
  if (!PAGES[page] || !can(PAGE_NEEDS[page])) {
    page = firstAllowedPage();
    if (!page) {
      main.replaceChildren();
      return;
    }
    window.history.replaceState(null, '', `#/${page}`);
    rest = [];
  }
  for (const link of sections.querySelectorAll('a[data-page]')) {
    if (link.dataset.page === page) {
      link.setAttribute('aria-current', 'page');
      document.title = `${link.textContent} · sofiia-console`;
    } else {
      link.removeAttribute('aria-current');
    }
  }
  const view = document.createElement('div');
  main.replaceChildren(view);
  if (focus) main.focus();
  const leave = (await PAGES[page].render(view, { can, me, rest })) ?? (() => {});
  if (mine === turn) leavePage = leave;
  else leave();
}

function showSignedOut(message) {
  document.title = 'Sign in · sofiia-console';
  sections.hidden = true;
  session.hidden = true;
  main.replaceChildren();
  login.render(main, { onSignedIn: signedIn, message });
}

function showSession() {
  document.getElementById('session-role').textContent = me.role;
  document.getElementById('session-id').textContent = `(${me.kind} ${me.id})`;
  for (const link of sections.querySelectorAll('a[data-page]')) {
    link.parentElement.hidden = !can(PAGE_NEEDS[link.dataset.page]);
  }
  sections.hidden = false;
  session.hidden = false;
}

async function signedIn(who) {
  me = who;
  showSession();
  await show();
  main.focus();
}

function signedOut(message) {
  turn += 1;
  leavePage();
  leavePage = () => {};
  me = null;
  showSignedOut(message);
}

document.getElementById('logout').addEventListener('click', async () => {
  try {
    await post('/api/auth/logout', undefined, { quietUnauthorized: true });
  } catch {
    // Signed out either way: a session the service no longer knows is as good as ended.
  }
  signedOut('You are signed out.');
  announce('Signed out');
});

document.getElementById('skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

whenUnauthorized(() => {
  if (me !== null) signedOut('Your session has ended. Sign in again.');
});

window.addEventListener('hashchange', () => {
  if (window.location.hash.startsWith('#/')) show({ focus: true });
});

async function start() {
  try {
    me = await get('/api/auth/me');
  } catch {
    me = null;
  }
  if (me) showSession();
  await show();
}

start();
