// The agent app: inbox sections, conversations, replies, tickets, the
// helpdesk switch, all kept live over the agent stream (/v1/stream).
import { Client, qs, clientID } from './api.js';
import { Live } from './live.js';

const TOKEN_KEY = 'messenger.token';
const PAGE = 50;
const TITLE_LEN = 80; // as the server cuts a title made from the first message

const $ = (id) => document.getElementById(id);

/** h builds an element; attributes with null/false values are left out, children may be strings. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

// ---- state -----------------------------------------------------------------

const state = {
  me: null,
  seesCustomers: false,
  canWrite: false,
  isAdmin: false,
  canToggle: false,
  section: '',
  status: 'open',
  q: '',
  rows: [],
  listCursor: null,
  listLoaded: false,
  liveRows: null, // rows changed live while the list loads: newer than its answer
  unread: { customers: 0, mine: 0 },
  unreadTouched: 0,
  convId: null,
  conv: null,
  messages: new Map(), // id → message
  order: [], // message ids, oldest first
  msgCursor: null,
  convLoading: false,
  shownConvId: null, // the conversation whose messages the view holds
  liveMsgs: [], // messages received while the conversation loads
  helpdesk: null,
  started: false,
};

let api = null;
let live = null;
let listSeq = 0;
let convSeq = 0;

// ---- sign in, sign out ---------------------------------------------------

function showSignin(message = '') {
  $('shell').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('token').value = '';
  $('token').focus();
  document.title = 'Sign in · Messenger';
}

async function signIn(token, { fromStorage = false } = {}) {
  token = token.trim();
  if (!token) {
    $('signin-error').textContent = 'Paste your access token.';
    return;
  }
  const client = new Client(token, {
    onUnauthorized: () => { if (api === client) signOut('Your token was refused. Sign in again.'); },
  });
  let me;
  try {
    me = await new Client(token).get('/v1/me');
  } catch (err) {
    // A stored token stays stored unless the server refused it: the server may just be down.
    if (err.status === 401) localStorage.removeItem(TOKEN_KEY);
    showSignin(err.status === 401 ? (fromStorage ? 'Your session has ended. Sign in again.' : 'This token is not valid.') : err.message);
    return;
  }
  if (me.kind !== 'user') {
    showSignin('This is a customer token. The agent app needs a staff member’s token.');
    return;
  }
  localStorage.setItem(TOKEN_KEY, token);
  api = client;
  state.me = me;
  state.isAdmin = me.role === 'admin';
  state.seesCustomers = me.role === 'admin' || me.role === 'auditor' || !!me.support;
  state.canWrite = me.role !== 'auditor';
  state.canToggle = me.role === 'admin' || (me.role === 'agent' && !!me.support);
  state.started = false;

  $('signin').hidden = true;
  $('shell').hidden = false;
  $('me-name').textContent = me.name || me.email || 'You';
  $('me-role').textContent = roleText(me);
  $('me-avatar').textContent = initials(me.name || me.email);
  $('nav-customers-item').hidden = !state.seesCustomers;
  $('helpdesk').hidden = !state.canToggle;
  $('helpdesk-edit').hidden = !state.isAdmin;
  $('btn-new').hidden = !state.canWrite;
  $('btn-team').hidden = !state.isAdmin;
  applyRoute();

  live = new Live(`/v1/stream?access_token=${encodeURIComponent(token)}`,
    ['conversation.created', 'conversation.updated', 'message.created', 'message.updated', 'message.deleted',
      'unread.changed', 'helpdesk.status_changed', 'reset'],
    onLiveEvent, onLiveState);
}

function signOut(message = '') {
  live?.close();
  live = null;
  api = null;
  localStorage.removeItem(TOKEN_KEY);
  Object.assign(state, {
    me: null, rows: [], listLoaded: false, convId: null, conv: null, messages: new Map(), order: [],
    unread: { customers: 0, mine: 0 }, helpdesk: null, section: '', started: false, shownConvId: null, q: '',
  });
  clearTimeout(readTimer);
  clearTimeout(listRefetch);
  $('conv-list').replaceChildren();
  $('search').value = '';
  $('conv-view').hidden = true;
  $('conv-empty').hidden = false;
  closePanel({ restoreFocus: false });
  showSignin(message);
}

// ---- routing: #/<section>/<status>/<conversation id> -----------------------

function parseHash() {
  const [section, status, id] = location.hash.replace(/^#\/?/, '').split('/');
  const def = state.seesCustomers ? 'customers' : 'mine';
  return {
    section: section === 'customers' && state.seesCustomers ? 'customers' : section === 'mine' ? 'mine' : def,
    status: status === 'closed' ? 'closed' : 'open',
    id: id ? decodeURIComponent(id) : null,
  };
}

function hashFor(section, status, id) {
  return `#/${section}/${status}${id ? `/${encodeURIComponent(id)}` : ''}`;
}

function go(section, status, id) {
  const target = hashFor(section, status, id);
  if (location.hash !== target) location.hash = target;
  else applyRoute();
}

function applyRoute() {
  if (!state.me) return;
  const r = parseHash();
  const listChanged = r.section !== state.section || r.status !== state.status;
  state.section = r.section;
  state.status = r.status;
  renderNav();
  if (!state.started) {
    state.convId = r.id; // loaded once the stream is open
    return;
  }
  if (listChanged || !state.listLoaded) loadList();
  if (r.id !== state.convId) openConversation(r.id);
  else markCurrentInList();
}

// ---- live stream -----------------------------------------------------------

function onLiveState(s, opened) {
  const text = { connecting: 'Connecting…', live: 'Live', offline: 'Offline, retrying…' }[s];
  $('connection').dataset.state = s;
  $('connection-text').textContent = text;
  if (s === 'offline') api?.get('/v1/me').catch(() => {}); // a refused token signs out; anything else retries
  if (!state.started && (s === 'live' || s === 'offline')) {
    state.started = true;
    refetchAll();
  } else if (s === 'live' && opened?.fresh) {
    refetchAll(); // a new stream with no resume token: what happened meanwhile must be read
  }
}

function refetchAll() {
  loadList();
  loadUnread();
  loadHelpdesk();
  if (state.convId) openConversation(state.convId, { keepView: true });
}

function onLiveEvent(name, data) {
  switch (name) {
    case 'conversation.created':
    case 'conversation.updated':
      upsertRow(data, name === 'conversation.created');
      if (data.id === state.convId && state.conv) {
        Object.assign(state.conv, { status: data.status, links: data.links, subject: data.subject, customer: data.customer });
        renderConvHead();
      }
      break;
    case 'message.created':
    case 'message.updated':
    case 'message.deleted':
      onLiveMessage(data, name);
      break;
    case 'unread.changed':
      state.unreadTouched++;
      state.unread = { customers: data.customers, mine: data.mine };
      renderBadges();
      setRowUnread(data.conversation_id, data.unread);
      break;
    case 'helpdesk.status_changed':
      state.helpdesk = data;
      renderHelpdesk();
      break;
    case 'reset':
      refetchAll();
      break;
  }
}

function onLiveMessage(m, name) {
  if (m.conversation_id !== state.convId) return;
  if (state.convLoading) {
    state.liveMsgs.push(m);
    return;
  }
  const fresh = !state.messages.has(m.id);
  upsertMessage(m, { append: true });
  if (name === 'message.created' && fresh && !isMine(m.author)) {
    announce(`New message from ${m.author.name || 'someone'}: ${m.body}`);
    markReadSoon();
  }
}

// ---- inbox list ------------------------------------------------------------

async function loadList({ more = false } = {}) {
  if (!api) return;
  const seq = ++listSeq;
  const section = state.section;
  state.liveRows = new Map();
  $('list-more').disabled = true;
  if (!more && !state.rows.length) setListEmpty('Loading…');
  try {
    const res = await api.get('/v1/inbox' + qs({
      section, status: state.status, q: state.q, limit: PAGE, cursor: more ? state.listCursor : undefined,
    }));
    if (seq !== listSeq || !api) return;
    let rows = res.conversations;
    for (const row of state.liveRows.values()) {
      const i = rows.findIndex((r) => r.id === row.id);
      if (i >= 0) rows[i] = row;
    }
    if (more) {
      const have = new Set(state.rows.map((r) => r.id));
      rows = [...state.rows, ...rows.filter((r) => !have.has(r.id))];
    }
    state.rows = rows.filter((r) => r.status === state.status);
    state.listCursor = res.next_cursor;
    state.listLoaded = true;
    state.liveRows = null;
    renderList();
  } catch (err) {
    if (seq !== listSeq) return;
    state.liveRows = null;
    setListEmpty(`Cannot load the conversations: ${err.message}`);
  } finally {
    $('list-more').disabled = false;
  }
}

let listRefetch = 0;
function loadListSoon() {
  clearTimeout(listRefetch);
  listRefetch = setTimeout(() => loadList(), 200);
}

/**
 * upsertRow applies a live inbox row. A row of the list is updated in place
 * (or dropped when its status no longer matches the tab); a row not in the
 * list is added when it surely belongs there, otherwise the list is read
 * again (the row does not tell whether it is "mine" or matches the search).
 */
function upsertRow(row, created) {
  state.liveRows?.set(row.id, row);
  const i = state.rows.findIndex((r) => r.id === row.id);
  const fitsStatus = row.status === state.status;
  if (i >= 0) {
    if (fitsStatus) state.rows[i] = row;
    else state.rows.splice(i, 1);
  } else if (fitsStatus) {
    if (state.section === 'customers' && row.channel === 'livechat' && !state.q) state.rows.push(row);
    else loadListSoon();
  }
  state.rows.sort(byActivity);
  renderList();
  if (created && row.channel === 'livechat' && state.seesCustomers && !isMine(row.last_message?.author)) {
    announce(`New conversation from ${rowTitle(row)}`);
  }
}

function setRowUnread(id, unread) {
  const row = state.rows.find((r) => r.id === id);
  if (row && row.unread !== unread) {
    row.unread = unread;
    renderList();
  }
}

function byActivity(a, b) {
  return a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : a.id < b.id ? 1 : -1;
}

function setListEmpty(text) {
  $('list-empty').hidden = !text;
  $('list-empty').textContent = text;
}

function rowTitle(row) {
  if (row.customer) return row.customer.name || row.customer.email || 'Visitor';
  return row.subject || 'Internal conversation';
}

function renderList() {
  const ul = $('conv-list');
  const have = new Map([...ul.children].map((li) => [li.dataset.id, li]));
  state.rows.forEach((row, i) => {
    const li = h('li', { class: 'conv-item', dataset: { id: row.id, unread: String(row.unread || 0) } }, rowLink(row));
    const old = have.get(row.id);
    have.delete(row.id);
    const focused = old?.contains(document.activeElement);
    if (old) old.replaceWith(li);
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    if (focused) li.querySelector('a').focus();
  });
  for (const li of have.values()) li.remove();
  const empty = state.q ? 'No conversation matches this search.'
    : state.status === 'open' ? 'No open conversations. New ones appear here live.' : 'No closed conversations.';
  setListEmpty(state.rows.length ? '' : empty);
  $('list-more').hidden = !state.listCursor;
}

function rowLink(row) {
  const title = rowTitle(row);
  const lm = row.last_message;
  const deleted = lm && !lm.excerpt; // a message holds text unless it was deleted
  const unread = state.canWrite ? row.unread : 0; // an auditor's never clear (see renderBadges)
  let excerpt = !lm ? '' : deleted ? 'message deleted' : lm.excerpt;
  if (lm && isMine(lm.author)) excerpt = `You: ${excerpt}`;
  else if (lm && lm.author.kind === 'user' && row.channel === 'livechat') excerpt = `${lm.author.name}: ${excerpt}`;
  return h('a', {
    href: hashFor(state.section, state.status, row.id),
    class: 'conv-link' + (unread ? ' is-unread' : ''),
    'aria-current': row.id === state.convId ? 'true' : null,
  },
  h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(title)),
  h('span', { class: 'conv-main' },
    h('span', { class: 'conv-line' },
      h('span', { class: 'conv-name' }, title),
      row.channel === 'internal' ? h('span', { class: 'pill pill-muted' }, 'internal') : null,
      h('time', { class: 'conv-time', datetime: row.updated_at, title: fullTime(row.updated_at) }, shortTime(row.updated_at))),
    row.subject && row.customer ? h('span', { class: 'conv-subject' }, row.subject) : null,
    h('span', { class: 'conv-line' },
      h('span', { class: `conv-excerpt${deleted ? ' tombstone' : ''}` }, excerpt || ' '),
      unread ? h('span', { class: 'badge' }, String(unread), h('span', { class: 'sr-only' }, ' unread')) : null),
    row.links?.length ? h('span', { class: 'conv-links' }, row.links.map((l) => h('span', { class: 'chip chip-small' }, `${l.kind}: ${l.title}`))) : null));
}

function markCurrentInList() {
  for (const a of $('conv-list').querySelectorAll('a')) {
    const id = a.closest('li').dataset.id;
    if (id === state.convId) a.setAttribute('aria-current', 'true');
    else a.removeAttribute('aria-current');
  }
}

// ---- unread counts and helpdesk --------------------------------------------

async function loadUnread() {
  if (!api) return;
  const touched = state.unreadTouched;
  try {
    const u = await api.get('/v1/unread');
    if (touched === state.unreadTouched) {
      state.unread = u;
      renderBadges();
    }
  } catch { /* the badges stay as they were */ }
}

function renderBadges() {
  const set = (id, n) => {
    const b = $(id);
    b.hidden = !n;
    b.replaceChildren(String(n), h('span', { class: 'sr-only' }, n === 1 ? ' unread conversation' : ' unread conversations'));
  };
  // An auditor may not mark anything read: counts that can never clear would only be noise.
  const customers = state.seesCustomers && state.canWrite ? state.unread.customers : 0;
  const mine = state.canWrite ? state.unread.mine : 0;
  set('badge-customers', customers);
  set('badge-mine', mine);
  const total = customers + mine;
  document.title = `${total ? `(${total}) ` : ''}Messenger`;
}

async function loadHelpdesk() {
  if (!api || !state.canToggle) return;
  try {
    state.helpdesk = await api.get('/v1/widget/status');
    renderHelpdesk();
  } catch { /* shown as it was */ }
}

function renderHelpdesk() {
  const hd = state.helpdesk;
  if (!hd) return;
  $('helpdesk-switch').setAttribute('aria-checked', String(hd.online));
  $('helpdesk-state').textContent = hd.online ? 'online' : 'offline';
  $('helpdesk-message').textContent = hd.message ? `Customers see: “${hd.message}”` : '';
}

async function toggleHelpdesk() {
  const sw = $('helpdesk-switch');
  const online = sw.getAttribute('aria-checked') !== 'true';
  sw.disabled = true;
  try {
    const res = await api.put('/v1/helpdesk/status', { online });
    state.helpdesk = { online: res.online, message: res.message };
    renderHelpdesk();
    announce(`Helpdesk is now ${res.online ? 'online' : 'offline'}`);
  } catch (err) {
    announce(`Cannot change the helpdesk status: ${err.message}`);
  } finally {
    sw.disabled = false;
    sw.focus();
  }
}

async function openMessagesDialog() {
  $('messages-error').textContent = '';
  $('messages-save').disabled = true;
  $('messages-dialog').showModal();
  try {
    const hd = await api.get('/v1/helpdesk');
    $('online-message').value = hd.online_message;
    $('offline-message').value = hd.offline_message;
    $('messages-save').disabled = false;
  } catch (err) {
    $('messages-error').textContent = `Cannot read the messages: ${err.message}`;
  }
  $('online-message').focus();
}

async function saveMessages(e) {
  e.preventDefault();
  const body = { online_message: $('online-message').value, offline_message: $('offline-message').value };
  for (const [field, id] of [['online_message', 'online-message'], ['offline_message', 'offline-message']]) {
    if (!body[field].trim()) {
      $('messages-error').textContent = 'Both messages need some text.';
      $(id).focus();
      return;
    }
  }
  $('messages-save').disabled = true;
  try {
    await api.put('/v1/helpdesk/messages', body);
    $('messages-dialog').close();
    await loadHelpdesk();
    announce('Widget messages saved');
  } catch (err) {
    $('messages-error').textContent = err.message;
  } finally {
    $('messages-save').disabled = false;
  }
}

function renderNav() {
  const title = state.section === 'customers' ? 'From customers' : 'My conversations';
  $('list-title').textContent = title;
  for (const s of ['customers', 'mine']) {
    const a = $(`nav-${s}`);
    if (s === state.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const s of ['open', 'closed']) {
    const tab = $(`tab-${s}`);
    const on = s === state.status;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
  }
  $('conv-list-panel').setAttribute('aria-labelledby', `tab-${state.status}`);
}

// ---- the conversation ------------------------------------------------------

async function openConversation(id, { keepView = false } = {}) {
  const seq = ++convSeq;
  const changed = id !== state.convId;
  // A refetch of the conversation on view keeps what is shown and merges the
  // newest page into it; anything else starts afresh.
  const fresh = !keepView || state.shownConvId !== id;
  state.convId = id;
  markCurrentInList();
  if (changed) {
    closeMenus();
    closePanel({ restoreFocus: false });
  }
  if (!id || !api) {
    state.conv = null;
    state.shownConvId = null;
    $('conv-view').hidden = true;
    $('conv-empty').hidden = false;
    return;
  }
  if (fresh) {
    state.conv = null;
    state.shownConvId = null;
    state.messages = new Map();
    state.order = [];
    state.msgCursor = null;
    $('messages').replaceChildren();
    $('conv-title').textContent = 'Loading…';
    $('conv-sub').textContent = '';
    $('links').hidden = true;
    $('load-earlier').hidden = true;
    $('composer-error').textContent = '';
    for (const b of ['btn-item', 'btn-close', 'btn-reopen', 'btn-history']) $(b).hidden = true;
  }
  $('conv-empty').hidden = true;
  $('conv-view').hidden = false;
  state.convLoading = true;
  state.liveMsgs = [];
  try {
    const d = await api.get(`/v1/conversations/${encodeURIComponent(id)}?limit=${PAGE}`);
    if (seq !== convSeq) return;
    state.conv = d;
    if (fresh) state.msgCursor = d.next_cursor;
    const stick = isNearBottom();
    for (const m of d.messages) upsertMessage(m, { append: true, quiet: true });
    for (const m of state.liveMsgs) upsertMessage(m, { append: true, quiet: true });
    state.convLoading = false;
    state.liveMsgs = [];
    state.shownConvId = id;
    renderConvHead();
    $('load-earlier').hidden = !state.msgCursor;
    if (fresh || stick) scrollToBottom();
    const row = state.rows.find((r) => r.id === id);
    if (!row || row.unread) markReadSoon(0);
  } catch (err) {
    if (seq !== convSeq) return;
    state.convLoading = false;
    if (!fresh) return; // what is shown stays; the stream brings the rest
    $('conv-title').textContent = err.status === 404 ? 'Conversation not found' : 'Cannot load this conversation';
    $('conv-sub').textContent = err.status === 404 ? 'It does not exist, or you may not see it.' : err.message;
    $('composer').hidden = true;
  }
}

function renderConvHead() {
  const c = state.conv;
  if (!c) return;
  $('conv-title').textContent = c.customer ? (c.customer.name || c.customer.email || 'Visitor') : (c.subject || 'Internal conversation');
  const bits = [];
  if (c.customer?.email) bits.push(c.customer.email);
  bits.push(c.channel === 'livechat' ? 'Live chat' : `Internal · ${c.participants.map((p) => p.name).join(', ')}`);
  if (c.subject && c.customer) bits.push(c.subject);
  const sub = $('conv-sub');
  sub.replaceChildren(h('span', { class: `pill pill-${c.status}` }, c.status), ` ${bits.join(' · ')}`);
  const w = state.canWrite;
  $('btn-item').hidden = !w;
  $('btn-close').hidden = !w || c.status !== 'open';
  $('btn-reopen').hidden = !w || c.status !== 'closed';
  $('btn-history').hidden = false; // every staff member who sees it, auditors first
  $('composer').hidden = !w;
  $('readonly-note').hidden = w;
  $('reply').placeholder = c.status === 'closed' ? 'Write a reply to reopen this conversation…' : 'Write a reply…  Enter sends, Shift+Enter adds a line';
  const links = c.links || [];
  $('links').hidden = !links.length;
  $('links-list').replaceChildren(...links.map((l) => h('li', {},
    h('button', { type: 'button', class: 'chip', dataset: { item: l.item_id }, onclick: (e) => openItem(l.item_id, e.currentTarget) },
      h('span', { class: `kind kind-${l.kind}` }, l.kind), ` ${l.title} `, h('span', { class: 'muted' }, `(${l.status})`)))));
}

async function loadEarlier() {
  const id = state.convId;
  const cursor = state.msgCursor;
  if (!cursor) return;
  const btn = $('load-earlier');
  btn.disabled = true;
  const scroller = $('messages-scroll');
  const before = scroller.scrollHeight - scroller.scrollTop;
  try {
    const d = await api.get(`/v1/conversations/${encodeURIComponent(id)}?limit=${PAGE}&cursor=${encodeURIComponent(cursor)}`);
    if (id !== state.convId) return;
    for (const m of [...d.messages].reverse()) upsertMessage(m, { prepend: true, quiet: true });
    state.msgCursor = d.next_cursor;
    btn.hidden = !state.msgCursor;
    scroller.scrollTop = scroller.scrollHeight - before;
  } catch (err) {
    announce(`Cannot load earlier messages: ${err.message}`);
  } finally {
    btn.disabled = false;
  }
}

/** upsertMessage adds a message once, by id, or replaces the one shown with its new state. */
function upsertMessage(m, { append = false, prepend = false, quiet = false } = {}) {
  const ol = $('messages');
  const known = state.messages.has(m.id);
  state.messages.set(m.id, m);
  const old = ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  if (old?.classList.contains('is-editing')) return; // the editor stays; the new text shows when it closes
  const stick = !quiet && isNearBottom();
  const li = messageView(m);
  if (old) {
    const focused = old.contains(document.activeElement);
    old.replaceWith(li);
    if (focused) li.querySelector('.menu-button')?.focus();
  } else if (!known && prepend) {
    state.order.unshift(m.id);
    ol.prepend(li);
  } else if (!known && append) {
    state.order.push(m.id);
    ol.append(li);
    if (stick || isMine(m.author)) scrollToBottom();
  }
}

function messageView(m) {
  const mine = isMine(m.author);
  const name = m.author.name || (m.author.kind === 'customer' ? 'Visitor' : 'Agent');
  return h('li', {
    class: `msg ${m.author.kind === 'customer' ? 'msg-customer' : 'msg-staff'}${mine ? ' msg-mine' : ''}${m.deleted ? ' msg-deleted' : ''}`,
    dataset: { id: m.id },
  },
  h('span', { class: 'avatar avatar-small', 'aria-hidden': 'true' }, initials(name)),
  h('div', { class: 'bubble' },
    h('div', { class: 'msg-head' },
      h('span', { class: 'msg-author' }, mine ? `${name} (you)` : name),
      h('span', { class: 'sr-only' }, m.author.kind === 'customer' ? ', customer, ' : ', agent, '),
      h('time', { datetime: m.created_at, title: fullTime(m.created_at) }, shortTime(m.created_at, true)),
      m.edited && !m.deleted ? h('span', { class: 'muted small' }, '(edited)') : null),
    m.deleted
      ? h('p', { class: 'msg-body tombstone' }, 'message deleted')
      : h('p', { class: 'msg-body' }, m.body)),
  messageMenu(m, name, mine));
}

// ---- the message menu ------------------------------------------------------

function messageMenu(m, name, mine) {
  const items = [['Author details', () => openAuthor(m.author, button)]];
  if (state.canWrite && !m.deleted && mine) items.push(['Edit', () => editMessage(m)]);
  if (state.canWrite && !m.deleted && (mine || state.isAdmin)) items.push(['Delete', () => deleteMessage(m)]);
  const menuId = `menu-${m.id}`;
  const menu = h('ul', { class: 'menu', role: 'menu', id: menuId, hidden: true, 'aria-label': `Message from ${name}` },
    items.map(([label, act]) => h('li', { role: 'none' },
      h('button', { type: 'button', role: 'menuitem', tabindex: '-1', class: label === 'Delete' ? 'danger' : '',
        onclick: () => { closeMenus(); act(); } }, label))));
  const button = h('button', {
    type: 'button', class: 'menu-button btn btn-ghost btn-icon', 'aria-haspopup': 'menu', 'aria-expanded': 'false',
    'aria-controls': menuId, 'aria-label': `Actions for the message from ${name}`,
    onclick: () => (menu.hidden ? openMenu(button, menu, 0) : closeMenus()),
    onkeydown: (e) => {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        openMenu(button, menu, e.key === 'ArrowDown' ? 0 : -1);
      }
    },
  }, h('span', { 'aria-hidden': 'true' }, '⋯'));
  menu.addEventListener('keydown', (e) => {
    const list = [...menu.querySelectorAll('[role=menuitem]')];
    const i = list.indexOf(document.activeElement);
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: list.length - 1 }[e.key];
    if (to !== undefined) {
      e.preventDefault();
      list[(to + list.length) % list.length].focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      closeMenus();
      button.focus();
    } else if (e.key === 'Tab') {
      closeMenus();
    }
  });
  return h('div', { class: 'msg-menu' }, button, menu);
}

function openMenu(button, menu, index) {
  closeMenus();
  menu.hidden = false;
  button.setAttribute('aria-expanded', 'true');
  const list = menu.querySelectorAll('[role=menuitem]');
  list[(index + list.length) % list.length]?.focus();
}

function closeMenus() {
  for (const menu of document.querySelectorAll('.menu:not([hidden])')) {
    menu.hidden = true;
    menu.parentElement.querySelector('.menu-button')?.setAttribute('aria-expanded', 'false');
  }
}

function editMessage(m) {
  const li = $('messages').querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  if (!li) return;
  const body = li.querySelector('.msg-body');
  const fieldId = `edit-${m.id}`;
  const area = h('textarea', { id: fieldId, rows: '3', maxlength: '10000' });
  area.value = m.body;
  const err = h('p', { class: 'error', role: 'alert' });
  const done = () => {
    li.classList.remove('is-editing');
    upsertMessage(state.messages.get(m.id));
    $('messages').querySelector(`li[data-id="${CSS.escape(m.id)}"] .menu-button`)?.focus();
  };
  const form = h('form', {
    class: 'edit-form',
    onsubmit: async (e) => {
      e.preventDefault();
      if (!area.value.trim()) {
        err.textContent = 'A message cannot be empty.';
        return;
      }
      try {
        const updated = await api.patch(`/v1/conversations/${encodeURIComponent(m.conversation_id)}/messages/${encodeURIComponent(m.id)}`, { body: area.value });
        state.messages.set(updated.id, updated);
        done();
      } catch (ex) {
        err.textContent = ex.message;
      }
    },
    onkeydown: (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        done();
      }
    },
  },
  h('label', { for: fieldId, class: 'sr-only' }, 'Edit message'), area,
  h('div', { class: 'inline' },
    h('button', { type: 'submit', class: 'btn btn-primary btn-small' }, 'Save'),
    h('button', { type: 'button', class: 'btn btn-small', onclick: done }, 'Cancel')), err);
  li.classList.add('is-editing');
  body.replaceWith(form);
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}

async function deleteMessage(m) {
  const ok = await confirmDialog('Delete this message? Everyone will see “message deleted” in its place.');
  if (!ok) return;
  try {
    const deleted = await api.del(`/v1/conversations/${encodeURIComponent(m.conversation_id)}/messages/${encodeURIComponent(m.id)}`);
    upsertMessage(deleted);
    announce('Message deleted');
  } catch (err) {
    announce(`Cannot delete the message: ${err.message}`);
  }
}

function confirmDialog(text) {
  const dlg = $('confirm-dialog');
  $('confirm-text').textContent = text;
  dlg.returnValue = '';
  dlg.showModal();
  $('confirm-ok').focus();
  return new Promise((resolve) => dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true }));
}

// ---- writing ---------------------------------------------------------------

async function sendReply() {
  const area = $('reply');
  const body = area.value;
  const id = state.convId;
  if (!body.trim() || !id) return;
  const cid = clientID(); // the same on every retry: the server appends the message once
  area.value = '';
  $('composer-error').textContent = '';
  $('send').disabled = true;
  try {
    const m = await api.post(`/v1/conversations/${encodeURIComponent(id)}/messages`, { body, client_id: cid }, { retries: 3 });
    if (state.convId === id) {
      upsertMessage(m, { append: true });
      scrollToBottom();
    }
  } catch (err) {
    if (!area.value) area.value = body;
    $('composer-error').textContent = `Not sent: ${err.message}`;
  } finally {
    $('send').disabled = false;
  }
}

async function setStatus(action) {
  const id = state.convId;
  const btn = $(action === 'close' ? 'btn-close' : 'btn-reopen');
  btn.disabled = true;
  try {
    const c = await api.post(`/v1/conversations/${encodeURIComponent(id)}/${action}`);
    if (state.convId === id && state.conv) {
      Object.assign(state.conv, { status: c.status, links: c.links });
      renderConvHead();
      $(c.status === 'open' ? 'btn-close' : 'btn-reopen').focus();
    }
    announce(c.status === 'open' ? 'Conversation reopened' : 'Conversation closed');
  } catch (err) {
    announce(`Cannot ${action} the conversation: ${err.message}`);
  } finally {
    btn.disabled = false;
  }
}

let readTimer = 0;
function markReadSoon(delay = 300) {
  if (!state.canWrite || !state.convId || document.visibilityState !== 'visible') return;
  const id = state.convId;
  clearTimeout(readTimer);
  readTimer = setTimeout(async () => {
    if (!api || id !== state.convId) return;
    try {
      await api.post(`/v1/conversations/${encodeURIComponent(id)}/read`, {});
      setRowUnread(id, 0);
    } catch { /* unread stays; the next message tries again */ }
  }, delay);
}

// ---- a new conversation with teammates -------------------------------------

/**
 * allUsers returns every page of the team (at most 10,000 users), read again
 * after a minute, or at once with fresh: the item panel, redrawn at each follow
 * or assign, and the new-conversation dialog share one reading. Callers copy
 * before they change the list.
 */
let teamRead = null; // { at, users: Promise<user[]> }
function allUsers({ fresh = false } = {}) {
  if (!fresh && teamRead && Date.now() - teamRead.at < 60_000) return teamRead.users;
  const users = readAllUsers();
  teamRead = { at: Date.now(), users };
  users.catch(() => { if (teamRead?.users === users) teamRead = null; });
  return users;
}

async function readAllUsers() {
  const users = [];
  let cursor = null;
  for (let i = 0; i < 50; i++) {
    const page = await api.get(`/v1/users${qs({ limit: 200, cursor })}`);
    users.push(...page.users);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return users;
}

/** loadTeam returns whom the caller may start a conversation with: the team but auditors and the caller, by name. */
async function loadTeam({ withMe = false } = {}) {
  const users = await allUsers();
  const name = (u) => u.name || u.email;
  return users.filter((u) => u.role !== 'auditor' && (withMe || u.id !== state.me?.id)).sort((a, b) => name(a).localeCompare(name(b)));
}

async function openNewDialog() {
  $('new-error').textContent = '';
  $('new-subject').value = '';
  $('new-body').value = '';
  $('team-filter').value = '';
  $('team-list').replaceChildren(h('li', { class: 'muted' }, 'Loading…'));
  $('new-dialog').showModal();
  $('team-filter').focus();
  try {
    const team = await loadTeam();
    $('team-list').replaceChildren(...(team.length
      ? team.map((u) => h('li', { dataset: { search: `${u.name} ${u.email}`.toLowerCase() } },
        h('label', {}, h('input', { type: 'checkbox', name: 'teammate', value: u.id }), ` ${u.name || u.email} `,
          h('span', { class: 'muted small' }, u.email))))
      : [h('li', { class: 'muted' }, 'No teammates yet: an admin adds them.')]));
  } catch (err) {
    $('team-list').replaceChildren();
    $('new-error').textContent = `Cannot list the team: ${err.message}`;
  }
}

function filterTeam() {
  const q = $('team-filter').value.trim().toLowerCase();
  for (const li of $('team-list').children) {
    if (li.dataset.search !== undefined) li.hidden = !!q && !li.dataset.search.includes(q);
  }
}

async function startConversation(e) {
  e.preventDefault();
  const participants = [...$('team-list').querySelectorAll('input[name=teammate]:checked')].map((i) => i.value);
  const body = $('new-body').value;
  if (!participants.length) {
    $('new-error').textContent = 'Choose at least one teammate.';
    $('team-filter').focus();
    return;
  }
  if (!body.trim()) {
    $('new-error').textContent = 'Write the first message.';
    $('new-body').focus();
    return;
  }
  $('new-start').disabled = true;
  try {
    const c = await api.post('/v1/conversations', { body, subject: $('new-subject').value.trim(), participants });
    $('new-dialog').close();
    announce('Conversation started');
    go('mine', 'open', c.id);
  } catch (err) {
    $('new-error').textContent = err.message;
  } finally {
    $('new-start').disabled = false;
  }
}

// ---- the team (admins) ----------------------------------------------------------

async function openTeam(from) {
  openPanel('Team', h('p', { class: 'muted' }, 'Loading…'), from);
  try {
    showTeam(await allUsers({ fresh: true }), from);
  } catch (err) {
    openPanel('Team', h('p', { class: 'error' }, err.message), from);
  }
}

function showTeam(users, from, created = null) {
  const error = h('p', { class: 'error', role: 'alert' });
  const field = (label, input) => [h('label', { for: input.id }, label), input];
  const name = h('input', { id: 'new-user-name', maxlength: '200', required: true, autocomplete: 'off' });
  const email = h('input', { id: 'new-user-email', type: 'email', maxlength: '254', required: true, autocomplete: 'off' });
  const role = h('select', { id: 'new-user-role' }, h('option', { value: 'agent' }, 'Agent'), h('option', { value: 'admin' }, 'Admin'),
    h('option', { value: 'auditor' }, 'Auditor'));
  const support = h('input', { id: 'new-user-support', type: 'checkbox', checked: true });
  role.addEventListener('change', () => {
    // An auditor cannot be a support agent.
    support.disabled = role.value === 'auditor';
    if (support.disabled) support.checked = false;
  });
  const form = h('form', {
    class: 'dialog-form team-form',
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const u = await api.post('/v1/users', { name: name.value.trim(), email: email.value.trim(), role: role.value, support: support.checked });
        announce(`${u.name} added`);
        teamRead = null; // the next list asks for the new teammate too
        showTeam([...users, u], from, u);
      } catch (err) {
        error.textContent = err.message;
        ({ name, email, support, role })[err.field]?.focus();
      } finally {
        button.disabled = false;
      }
    },
  },
  h('h3', {}, 'Add a teammate'),
  field('Name', name), field('Email', email), field('Role', role),
  h('label', { class: 'check' }, support, ' Support agent: sees From customers and turns the helpdesk on and off'),
  error,
  h('button', { type: 'submit', class: 'btn btn-primary btn-small' }, 'Add'));
  openPanel('Team', h('div', { class: 'details team' },
    created ? h('div', { class: 'token-box', role: 'status' },
      h('p', {}, h('strong', {}, `${created.name}’s access token`), ' — shown only now: the server keeps only its hash. Send it to them safely.'),
      h('code', { class: 'token' }, created.token)) : null,
    h('ul', { class: 'plain team-members', 'aria-label': 'Team members' }, users.map((u) => h('li', {},
      h('span', { class: 'avatar avatar-small', 'aria-hidden': 'true' }, initials(u.name || u.email)),
      h('span', {}, h('strong', {}, u.name || u.email), ' ', h('span', { class: 'muted small' }, u.email)),
      h('span', { class: 'pill' }, roleText(u))))),
    form), from);
}

// ---- tickets and tasks -----------------------------------------------------

async function openItemDialog() {
  const id = state.convId;
  const dlg = $('item-dialog');
  $('item-error').textContent = '';
  $('link-error').textContent = '';
  $('link-id').value = '';
  findItems();
  const first = await firstMessage(id);
  if (id !== state.convId) return;
  const subject = state.conv?.subject || '';
  const text = first?.deleted ? '' : (first?.body ?? '');
  $('item-title').value = subject || [...text.split(/\s+/).filter(Boolean).join(' ')].slice(0, TITLE_LEN).join('');
  $('item-description').value = text;
  dlg.querySelector('input[name=kind][value=ticket]').checked = true;
  dlg.showModal();
  $('item-title').focus();
}

/** firstMessage returns the conversation's first message, reading earlier pages if they are not loaded. */
async function firstMessage(id) {
  let cursor = state.msgCursor;
  if (!cursor) return state.messages.get(state.order[0]);
  let first = null;
  for (let i = 0; cursor && i < 50; i++) {
    const d = await api.get(`/v1/conversations/${encodeURIComponent(id)}?limit=200&cursor=${encodeURIComponent(cursor)}`);
    first = d.messages[0] ?? first;
    cursor = d.next_cursor;
  }
  return first;
}

async function createItem(e) {
  e.preventDefault();
  const form = $('item-form');
  const id = state.convId;
  const kind = form.elements.kind.value;
  const title = $('item-title').value.trim();
  if (!title) {
    $('item-error').textContent = 'A title is required.';
    $('item-title').focus();
    return;
  }
  $('item-create').disabled = true;
  try {
    const it = await api.post(`/v1/conversations/${encodeURIComponent(id)}/items`, { kind, title, description: $('item-description').value });
    $('item-dialog').close();
    if (state.convId === id && state.conv && !state.conv.links.some((l) => l.item_id === it.id)) {
      state.conv.links = [...state.conv.links, { item_id: it.id, kind: it.kind, title: it.title, status: it.status }];
      renderConvHead();
    }
    announce(`${cap(it.kind)} created and linked`);
    showItem(it, $('btn-item'));
  } catch (err) {
    $('item-error').textContent = err.message;
  } finally {
    $('item-create').disabled = false;
  }
}

let findSeq = 0;
let findTimer = 0;
let found = []; // the items the search shows

/** findItems shows the tickets and tasks whose title holds what the link field says (the newest when it is empty). */
async function findItems() {
  const seq = ++findSeq;
  const q = $('link-id').value.trim();
  try {
    const { items } = await api.get(`/v1/items${qs({ q, limit: 8 })}`);
    if (seq !== findSeq) return;
    found = items;
    const linked = new Set((state.conv?.links || []).map((l) => l.item_id));
    $('link-results').replaceChildren(...(items.length
      ? items.map((it) => h('li', {},
        h('button', { type: 'button', class: 'chip', disabled: linked.has(it.id), onclick: () => linkItem(null, it.id) },
          h('span', { class: `kind kind-${it.kind}` }, it.kind), ` ${it.title} `,
          h('span', { class: 'muted' }, linked.has(it.id) ? '(linked already)' : `(${it.status})`))))
      : [h('li', { class: 'muted small' }, q ? 'No ticket or task matches.' : 'No tickets or tasks yet.')]));
  } catch (err) {
    if (seq === findSeq) $('link-error').textContent = err.message;
  }
}

function findItemsSoon() {
  $('link-error').textContent = '';
  clearTimeout(findTimer);
  findTimer = setTimeout(findItems, 200);
}

async function linkItem(e, chosen) {
  e?.preventDefault();
  const id = state.convId;
  const typed = $('link-id').value.trim();
  // The item chosen, else the only one found, else what was typed, an id.
  const itemId = chosen || (found.length === 1 && typed ? found[0].id : typed);
  if (!itemId) {
    $('link-error').textContent = 'Choose a ticket or task, or enter its id.';
    return;
  }
  try {
    const c = await api.post(`/v1/conversations/${encodeURIComponent(id)}/links`, { item_id: itemId });
    $('item-dialog').close();
    if (state.convId === id && state.conv) {
      state.conv.links = c.links;
      renderConvHead();
    }
    announce('Item linked');
    openItem(itemId, $('btn-item'));
  } catch (err) {
    $('link-error').textContent = err.status === 404 ? `No ticket or task has the id ${itemId}.` : err.message;
  }
}

async function openItem(itemId, from) {
  openPanel('Loading…', h('p', { class: 'muted' }, 'Loading…'), from);
  try {
    showItem(await api.get(`/v1/items/${encodeURIComponent(itemId)}`), from);
  } catch (err) {
    openPanel('Item', h('p', { class: 'error' }, err.status === 404 ? 'This item does not exist.' : err.message), from);
  }
}

function showItem(it, from) {
  const people = (ps) => (ps?.length ? ps.map((p) => p.name).join(', ') : '—');
  const convId = state.convId;
  const body = h('div', { class: 'details', dataset: { item: it.id } },
    h('p', {}, h('span', { class: `kind kind-${it.kind}` }, it.kind), ' ', h('span', { class: `pill pill-${it.status}` }, it.status)),
    h('h3', { class: 'item-title' }, it.title),
    it.description ? h('p', { class: 'item-description' }, it.description) : h('p', { class: 'muted' }, 'No description.'),
    h('dl', {},
      dt('Id', h('code', {}, it.id)),
      dt('Requester', it.requester ? `${it.requester.name || 'Visitor'}${it.requester.email ? ` <${it.requester.email}>` : ''}` : '—'),
      dt('Created by', it.created_by?.name || '—'),
      dt('Created', fullTime(it.created_at)),
      dt('Assignees', people(it.assignees)),
      dt('Followers', people(it.followers)),
      dt('Conversations', it.conversations?.length
        ? h('ul', { class: 'plain' }, it.conversations.map((c) => h('li', {},
          h('a', { href: hashFor(state.section, 'open', c) }, c === convId ? 'this conversation' : c))))
        : '—')),
    state.canWrite ? itemActions(it, from) : null,
    state.canWrite && state.conv?.links?.some((l) => l.item_id === it.id)
      ? h('button', { type: 'button', class: 'btn btn-small', onclick: () => unlink(it.id) }, 'Unlink from this conversation')
      : null);
  openPanel(`${cap(it.kind)} details`, body, from);
}

/** itemActions lets the caller follow the item and assign it to a teammate (or to themselves). */
function itemActions(it, from) {
  const error = h('p', { class: 'error', role: 'alert' });
  const act = async (list, userId, done) => {
    error.textContent = '';
    try {
      showItem(await api.post(`/v1/items/${encodeURIComponent(it.id)}/${list}`, { user_id: userId }), from);
      announce(done);
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const follows = it.followers?.some((p) => p.id === state.me?.id);
  const select = h('select', { id: 'assign-to', disabled: true }, h('option', { value: '' }, 'Loading the team…'));
  loadTeam({ withMe: true }).then((team) => {
    const free = team.filter((u) => !it.assignees?.some((a) => a.id === u.id));
    select.replaceChildren(h('option', { value: '' }, free.length ? 'Choose a teammate…' : 'Everyone is assigned'),
      ...free.map((u) => h('option', { value: u.id }, u.id === state.me?.id ? `${u.name || u.email} (you)` : (u.name || u.email))));
    select.disabled = !free.length;
  }, (err) => { select.replaceChildren(h('option', { value: '' }, 'Cannot list the team')); error.textContent = err.message; });
  return h('div', { class: 'item-actions' },
    follows
      ? h('p', { class: 'muted small' }, 'You follow it.')
      : h('button', { type: 'button', class: 'btn btn-small', onclick: () => act('followers', state.me.id, 'You follow it now') }, 'Follow'),
    h('form', {
      class: 'inline',
      onsubmit: (e) => {
        e.preventDefault();
        if (select.value) act('assignees', select.value, `Assigned to ${select.selectedOptions[0].textContent}`);
      },
    }, h('label', { for: 'assign-to' }, 'Assign to'), select, h('button', { type: 'submit', class: 'btn btn-small' }, 'Assign')),
    error);
}

async function unlink(itemId) {
  const id = state.convId;
  try {
    const c = await api.del(`/v1/conversations/${encodeURIComponent(id)}/links/${encodeURIComponent(itemId)}`);
    if (state.convId === id && state.conv) {
      state.conv.links = c.links;
      renderConvHead();
    }
    closePanel();
    announce('Item unlinked');
  } catch (err) {
    announce(`Cannot unlink: ${err.message}`);
  }
}

// ---- history: every event of the conversation, and its state at an instant --

/** eventText says what an event of the conversation did, after its actor's name. */
function eventText(e) {
  const d = e.data || {};
  const item = (id) => {
    const l = state.conv?.links?.find((x) => x.item_id === id);
    return l ? `${l.kind} “${l.title}”` : `item ${id}`;
  };
  switch (e.type) {
    case 'conversation.started': return d.subject ? `started the conversation “${d.subject}”` : 'started the conversation';
    case 'conversation.message_posted': return 'posted a message';
    case 'conversation.message_edited': return 'edited a message';
    case 'conversation.message_deleted': return 'deleted a message';
    case 'conversation.closed': return 'closed the conversation';
    case 'conversation.reopened':
      return d.cause === 'customer_replied' || d.cause === 'teammate_replied' ? 'reopened it by replying' : 'reopened the conversation';
    case 'conversation.read': return `read up to message ${d.up_to_seq}`;
    case 'conversation.item_linked': return `linked ${item(d.item_id)}`;
    case 'conversation.item_unlinked': return `unlinked ${item(d.item_id)}`;
    default: return e.type;
  }
}

/** actorNames maps "kind:id" to the names of the events' actors, asking the server for those the view does not know. */
async function actorNames(events) {
  const names = new Map();
  const c = state.conv;
  if (c?.customer) names.set(`customer:${c.customer.id}`, c.customer.name || c.customer.email || 'Visitor');
  for (const p of c?.participants || []) names.set(`user:${p.id}`, p.name);
  if (state.me) names.set(`user:${state.me.id}`, `${state.me.name || 'You'} (you)`);
  const unknown = [...new Set(events.map((e) => `${e.actor.kind}:${e.actor.id}`))].filter((k) => !names.has(k));
  await Promise.all(unknown.map(async (key) => {
    const kind = key.slice(0, key.indexOf(':'));
    const id = key.slice(kind.length + 1);
    if (kind === 'system') {
      names.set(key, 'The system');
      return;
    }
    try {
      const p = await api.get(kind === 'customer' ? `/v1/customers/${encodeURIComponent(id)}` : `/v1/users/${encodeURIComponent(id)}`);
      names.set(key, p.name || p.email || (kind === 'customer' ? 'Visitor' : 'A team member'));
    } catch {
      names.set(key, kind === 'customer' ? 'A customer' : `User ${id}`);
    }
  }));
  return names;
}

async function openHistory(from) {
  const id = state.convId;
  openPanel('History', h('p', { class: 'muted' }, 'Loading…'), from);
  try {
    const { events } = await api.get(`/v1/conversations/${encodeURIComponent(id)}/history`);
    const names = await actorNames(events);
    if (id !== state.convId) return;
    showHistory(id, events, names, from);
  } catch (err) {
    if (id !== state.convId) return;
    openPanel('History', h('p', { class: 'error' }, err.status === 404 ? 'This conversation does not exist, or you may not see it.' : err.message), from);
  }
}

function showHistory(id, events, names, from) {
  const said = new Map(); // message id → its text as last posted or edited: what a deletion took away
  const box = h('section', { class: 'state-at', 'aria-label': 'State at the chosen instant', 'aria-live': 'polite', tabindex: '-1' });
  const items = events.map((e) => {
    const d = e.data || {};
    let quote = null;
    if (typeof d.body === 'string') {
      quote = d.body;
      said.set(d.message_id, d.body);
    } else if (e.type === 'conversation.message_deleted' && said.has(d.message_id)) {
      quote = said.get(d.message_id);
    }
    return h('li', { class: 'event', dataset: { type: e.type, position: e.position } },
      h('p', { class: 'event-head' },
        h('time', { datetime: e.at, title: e.at }, secondsTime(e.at)), ' ',
        h('strong', {}, names.get(`${e.actor.kind}:${e.actor.id}`) || e.actor.kind), ` ${eventText(e)}`),
      quote === null ? null : h('blockquote', { class: `event-quote${e.type === 'conversation.message_deleted' ? ' event-quote-deleted' : ''}` }, quote),
      h('button', { type: 'button', class: 'btn btn-ghost btn-small', onclick: () => showStateAt(id, e.at, box) },
        'State after this', h('span', { class: 'sr-only' }, ` (event ${e.version})`)));
  });
  const picker = h('input', { type: 'datetime-local', step: '1', id: 'history-at', required: true });
  const last = events.at(-1);
  if (last) picker.value = localInput(last.at);
  const form = h('form', {
    class: 'history-at',
    onsubmit: (ev) => {
      ev.preventDefault();
      const t = new Date(picker.value);
      // The end of the second chosen: what had happened by the time the clock showed it.
      if (!Number.isNaN(t.getTime())) showStateAt(id, new Date(t.getTime() + 999).toISOString(), box);
    },
  }, h('label', { for: 'history-at' }, 'State at'), picker, h('button', { type: 'submit', class: 'btn btn-small' }, 'Show'));
  openPanel('History', h('div', { class: 'details history' },
    h('p', { class: 'muted small' }, `${events.length} event${events.length === 1 ? '' : 's'}, oldest first, as the log holds them: edits and deletions keep what was said before.`),
    h('ol', { class: 'timeline', 'aria-label': 'Events' }, items),
    form, box), from);
}

async function showStateAt(id, at, box) {
  box.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const { state: st } = await api.get(`/v1/conversations/${encodeURIComponent(id)}/history?at=${encodeURIComponent(at)}`);
    const head = h('h3', {}, `As it stood at ${secondsTime(at)}`);
    if (!st) {
      box.replaceChildren(head, h('p', { class: 'muted' }, 'The conversation did not exist yet.'));
    } else {
      const n = st.messages.length;
      box.replaceChildren(head,
        h('p', {}, h('span', { class: `pill pill-${st.status}` }, st.status), st.subject ? ` ${st.subject} ·` : '',
          ` ${n} message${n === 1 ? '' : 's'}`, st.links?.length ? ` · linked: ${st.links.map((l) => l.title || l.item_id).join(', ')}` : ''),
        h('ol', { class: 'state-messages', 'aria-label': 'Messages then' }, st.messages.map((m) => h('li', { class: m.deleted ? 'state-deleted' : null },
          h('p', { class: 'event-head' }, h('strong', {}, m.author.name || (m.author.kind === 'customer' ? 'Visitor' : 'Agent')), ' ',
            h('time', { datetime: m.created_at, title: m.created_at }, secondsTime(m.created_at)), m.edited && !m.deleted ? ' (edited)' : ''),
          m.deleted ? h('p', { class: 'tombstone' }, 'message deleted') : h('p', { class: 'state-body' }, m.body)))));
    }
    box.focus();
  } catch (err) {
    box.replaceChildren(h('p', { class: 'error' }, err.message));
  }
}

// ---- people ----------------------------------------------------------------

async function openAuthor(author, from) {
  openPanel('Author details', h('p', { class: 'muted' }, 'Loading…'), from);
  const path = author.kind === 'customer' ? `/v1/customers/${encodeURIComponent(author.id)}` : `/v1/users/${encodeURIComponent(author.id)}`;
  try {
    const p = await api.get(path);
    openPanel('Author details', h('div', { class: 'details' },
      h('div', { class: 'person' }, h('span', { class: 'avatar avatar-large', 'aria-hidden': 'true' }, initials(p.name || p.email)),
        h('div', {}, h('h3', {}, p.name || 'Visitor'), h('p', { class: 'muted' }, author.kind === 'customer' ? 'Customer' : 'Team member'))),
      h('dl', {},
        dt('Email', p.email ? h('a', { href: `mailto:${p.email}` }, p.email) : '—'),
        author.kind === 'customer' ? dt('First contact', fullTime(p.created_at)) : dt('Role', p.support ? `${p.role}, support` : p.role),
        dt('Id', h('code', {}, p.id)))), from);
  } catch (err) {
    const msg = err.status === 403 ? 'You may not see this person’s details.' : err.status === 404 ? 'This person does not exist.' : err.message;
    openPanel('Author details', h('p', { class: 'error' }, msg), from);
  }
}

function dt(term, value) {
  return [h('dt', {}, term), h('dd', {}, value)];
}

// ---- side panel ------------------------------------------------------------

let panelReturn = null;
function openPanel(title, body, from) {
  const panel = $('panel');
  if (from) panelReturn = from;
  $('panel-title').textContent = title;
  $('panel-body').replaceChildren(body);
  const wasHidden = panel.hidden;
  panel.hidden = false;
  document.body.classList.add('has-panel');
  if (wasHidden) $('panel-title').focus();
}

function closePanel({ restoreFocus = true } = {}) {
  const panel = $('panel');
  if (panel.hidden) return;
  panel.hidden = true;
  document.body.classList.remove('has-panel');
  if (restoreFocus && panelReturn?.isConnected) panelReturn.focus();
  panelReturn = null;
}

// ---- helpers ---------------------------------------------------------------

function isMine(author) {
  return !!author && author.kind === 'user' && author.id === state.me?.id;
}

function initials(name) {
  const parts = String(name || '?').trim().split(/[\s@._-]+/).filter(Boolean);
  return ((parts[0]?.[0] || '?') + (parts[1]?.[0] || '')).toUpperCase();
}

const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/** roleText is a user's role as a pill shows it: a support agent is "support". */
const roleText = (u) => (u.role === 'agent' && u.support ? 'support' : u.role);

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function shortTime(iso, withDay = false) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date().toDateString() === d.toDateString();
  if (today) return timeFmt.format(d);
  return withDay ? `${dayFmt.format(d)}, ${timeFmt.format(d)}` : dayFmt.format(d);
}

const secondsFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
function secondsTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : secondsFmt.format(d);
}

/** localInput gives an instant as a datetime-local input's value, to the second. */
function localInput(iso) {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}

function fullTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : fullFmt.format(d);
}

function isNearBottom() {
  const s = $('messages-scroll');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  const s = $('messages-scroll');
  s.scrollTop = s.scrollHeight;
}

let announceTimer = 0;
function announce(text) {
  const a = $('announcer');
  a.textContent = '';
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { a.textContent = text.length > 200 ? `${text.slice(0, 200)}…` : text; }, 50);
}

// ---- static wiring ---------------------------------------------------------

function wireStatic() {
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('token').value);
  });
  $('signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', applyRoute);
  $('nav-customers').addEventListener('click', (e) => { e.preventDefault(); go('customers', 'open', null); });
  $('nav-mine').addEventListener('click', (e) => { e.preventDefault(); go('mine', 'open', null); });
  for (const s of ['open', 'closed']) {
    const tab = $(`tab-${s}`);
    tab.addEventListener('click', () => go(state.section, s, state.convId));
    tab.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
        e.preventDefault();
        const other = s === 'open' ? 'closed' : 'open';
        go(state.section, other, state.convId);
        $(`tab-${other}`).focus();
      }
    });
  }
  let searchTimer = 0;
  $('search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.q = $('search').value.trim();
      loadList();
    }, 250);
  });
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(searchTimer);
    state.q = $('search').value.trim();
    loadList();
  });
  $('list-more').addEventListener('click', () => loadList({ more: true }));
  $('load-earlier').addEventListener('click', loadEarlier);
  $('composer').addEventListener('submit', (e) => { e.preventDefault(); sendReply(); });
  $('reply').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendReply();
    }
  });
  $('btn-close').addEventListener('click', () => setStatus('close'));
  $('btn-reopen').addEventListener('click', () => setStatus('reopen'));
  $('btn-item').addEventListener('click', openItemDialog);
  $('btn-history').addEventListener('click', (e) => openHistory(e.currentTarget));
  $('item-form').addEventListener('submit', createItem);
  $('item-cancel').addEventListener('click', () => $('item-dialog').close());
  $('link-form').addEventListener('submit', (e) => linkItem(e));
  $('link-id').addEventListener('input', findItemsSoon);
  $('panel-close').addEventListener('click', () => closePanel());
  $('panel').addEventListener('keydown', (e) => { if (e.key === 'Escape') closePanel(); });
  $('helpdesk-switch').addEventListener('click', toggleHelpdesk);
  $('helpdesk-edit').addEventListener('click', openMessagesDialog);
  $('btn-new').addEventListener('click', openNewDialog);
  $('btn-team').addEventListener('click', (e) => openTeam(e.currentTarget));
  $('new-form').addEventListener('submit', startConversation);
  $('new-form').addEventListener('input', (e) => { if (e.target.id === 'team-filter') filterTeam(); else $('new-error').textContent = ''; });
  $('new-cancel').addEventListener('click', () => $('new-dialog').close());
  $('messages-form').addEventListener('submit', saveMessages);
  $('messages-form').addEventListener('input', () => { $('messages-error').textContent = ''; });
  $('messages-cancel').addEventListener('click', () => $('messages-dialog').close());
  document.addEventListener('click', (e) => { if (!e.target.closest('.msg-menu')) closeMenus(); });
  document.addEventListener('visibilitychange', () => {
    const row = state.rows.find((r) => r.id === state.convId);
    if (document.visibilityState === 'visible' && row?.unread) markReadSoon(0);
  });
}

// ---- start -----------------------------------------------------------------
// Last, once every binding above is initialised.

wireStatic();
const saved = localStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved, { fromStorage: true });
else showSignin();
