/*
 * Messenger chat widget: one script tag on any page adds a chat button and
 * panel, isolated from the page in a shadow root.
 *
 *   <script src="https://chat.example.com/widget.js" async
 *           data-title="Chat with Acme" data-color="#0f766e"></script>
 *
 * data-server    the Messenger server's origin (default: where this script comes from);
 *                the page's origin must be in its MESSENGER_ALLOWED_ORIGINS unless it is the same
 * data-title     the panel's title (default "Chat with us")
 * data-intro     the line above the start form
 * data-color     the accent colour, any CSS colour
 * data-position  "right" (default) or "left"
 * data-open      "true" to open the panel at once
 *
 * The visitor's session (a customer token) is kept in localStorage, so the
 * conversation and its history come back after a reload. Messages arrive over
 * Server-Sent Events; the stream resumes after a dropped connection without
 * losing or repeating a message (they are shown once per id).
 */
(() => {
  'use strict';
  const script = document.currentScript;
  if (window.MessengerWidget) return; // already on the page
  if (!script) {
    console.warn('Messenger widget: load widget.js with a classic <script src> tag (not type="module")');
    return;
  }

  const ds = script.dataset;
  const cfg = {
    server: (ds.server || new URL(script.src, location.href).origin).replace(/\/+$/, ''),
    title: ds.title || 'Chat with us',
    intro: ds.intro || 'Ask us anything. Leave your name and email if you would like an answer by email too.',
    color: ds.color && window.CSS && CSS.supports('color', ds.color) ? ds.color : '#4338ca',
    left: ds.position === 'left',
    open: ds.open === 'true',
  };
  const KEY = `messenger-widget:${cfg.server}`;
  const OPEN_KEY = `${KEY}:open`;
  const PAGE = 50;

  // ---- storage that survives being blocked --------------------------------
  const memory = {};
  const store = {
    get(k, s = localStorage) { try { return JSON.parse(s.getItem(k)); } catch { return memory[k] ?? null; } },
    set(k, v, s = localStorage) { memory[k] = v; try { s.setItem(k, JSON.stringify(v)); } catch { /* kept in memory */ } },
    del(k, s = localStorage) { delete memory[k]; try { s.removeItem(k); } catch { /* nothing */ } },
  };

  // ---- state ---------------------------------------------------------------
  const st = {
    session: store.get(KEY), // {token, customerId}
    status: null, // {online, message}
    conv: null, // the conversation shown (an inbox row or a conversation)
    convCount: 0,
    messages: new Map(),
    cursor: null,
    unread: 0,
    open: false,
    live: null,
    loading: false,
    pending: [], // live messages that arrived while the conversation loaded
  };

  // ---- API -----------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function call(method, path, body, { auth = true, retries = method === 'GET' ? 2 : 0 } = {}) {
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(cfg.server + path, {
          method,
          headers: {
            Accept: 'application/json',
            ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
            ...(auth && st.session ? { Authorization: `Bearer ${st.session.token}` } : {}),
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
        });
      } catch {
        if (attempt < retries) { await sleep(400 * 2 ** attempt); continue; }
        throw new ApiError(0, 'network', 'We cannot reach the chat right now. Please try again.');
      }
      if (res.status >= 500 && attempt < retries) { await sleep(400 * 2 ** attempt); continue; }
      const data = await res.json().catch(() => null);
      if (!res.ok) {
        const e = (data && data.error) || {};
        if (res.status === 401 && auth && st.session) endSession();
        throw new ApiError(res.status, e.code, e.message || `Request failed (${res.status})`);
      }
      return data;
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const newClientID = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`);

  // ---- the stream ----------------------------------------------------------
  const EVENTS = ['conversation.created', 'conversation.updated', 'message.created', 'message.updated',
    'message.deleted', 'unread.changed', 'helpdesk.status_changed', 'reset'];

  function startLive() {
    stopLive();
    if (!st.session) return;
    const live = { es: null, lastId: '', failures: 0, timer: 0, stopped: false };
    st.live = live;
    const connect = () => {
      if (live.stopped) return;
      let url = `${cfg.server}/v1/widget/stream?access_token=${encodeURIComponent(st.session.token)}`;
      const resume = live.lastId;
      if (resume) url += `&last_event_id=${encodeURIComponent(resume)}`;
      const es = new EventSource(url);
      live.es = es;
      let first = true;
      es.onopen = () => {
        live.failures = 0;
        setConnection(true);
        // A new stream without a resume token starts now: read afresh what came before.
        if (first && !resume) refresh();
        first = false;
      };
      es.onerror = () => {
        setConnection(false);
        if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself, with Last-Event-ID
        es.close();
        const delay = Math.min(30000, 1000 * 2 ** live.failures++) * (0.75 + Math.random() / 2);
        live.timer = setTimeout(async () => {
          try { await call('GET', '/v1/me'); } catch (err) { if (err.status === 401) return; }
          connect();
        }, delay);
      };
      for (const name of EVENTS) {
        es.addEventListener(name, (ev) => {
          if (ev.lastEventId) live.lastId = ev.lastEventId;
          let data;
          try { data = JSON.parse(ev.data); } catch { return; }
          onEvent(name, data);
        });
      }
    };
    connect();
  }

  function stopLive() {
    if (!st.live) return;
    st.live.stopped = true;
    clearTimeout(st.live.timer);
    if (st.live.es) st.live.es.close();
    st.live = null;
  }

  function onEvent(name, data) {
    switch (name) {
      case 'helpdesk.status_changed':
        setStatus(data);
        break;
      case 'conversation.created':
      case 'conversation.updated':
        if (!st.conv || st.conv.id === data.id || (name === 'conversation.created' && !st.loading)) {
          const switched = !st.conv || st.conv.id !== data.id;
          st.conv = { ...(st.conv || {}), ...data };
          if (switched) loadConversation(data.id);
          else renderConversationState();
        }
        break;
      case 'message.created':
      case 'message.updated':
      case 'message.deleted':
        if (!st.conv || data.conversation_id !== st.conv.id) break;
        if (st.loading) { st.pending.push(data); break; }
        {
          const fresh = !st.messages.has(data.id);
          upsert(data, 'append');
          if (name === 'message.created' && fresh && data.author.kind !== 'customer') {
            announce(`${data.author.name || 'Support'}: ${data.body}`);
            markReadSoon();
          }
        }
        break;
      case 'unread.changed':
        if (st.conv && data.conversation_id === st.conv.id) setUnread(data.unread);
        break;
      case 'reset':
        refresh();
        break;
    }
  }

  // ---- loading -------------------------------------------------------------
  async function fetchStatus() {
    try { setStatus(await call('GET', '/v1/widget/status', undefined, { auth: false })); } catch { /* shown as before */ }
  }

  /** refresh reads the status and the visitor's latest conversation afresh. */
  async function refresh() {
    fetchStatus();
    if (!st.session) return;
    try {
      const list = await call('GET', '/v1/widget/conversations?limit=20');
      st.convCount = list.conversations.length;
      const latest = list.conversations[0];
      if (!latest) { showView(); return; }
      const keep = st.conv && st.conv.id === latest.id;
      st.conv = { ...(st.conv || {}), ...latest };
      setUnread(latest.unread);
      await loadConversation(latest.id, { keep });
    } catch (err) {
      if (err.status !== 401) showView();
    }
  }

  let loadSeq = 0;
  /** loadConversation shows conversation id: its newest messages, merged into those shown when keep. */
  async function loadConversation(id, { keep = false } = {}) {
    const seq = ++loadSeq;
    st.loading = true;
    st.pending = [];
    try {
      const d = await call('GET', `/v1/conversations/${encodeURIComponent(id)}?limit=${PAGE}`);
      if (seq !== loadSeq) return;
      if (!keep) {
        st.messages = new Map();
        ui.messages.replaceChildren();
        st.cursor = d.next_cursor;
      }
      st.conv = { ...(st.conv || {}), ...d };
      delete st.conv.messages;
      for (const m of d.messages) upsert(m, 'append', true);
      for (const m of st.pending) upsert(m, 'append', true);
      showView();
      renderConversationState();
      scrollDown();
      if (st.unread) markReadSoon();
    } catch (err) {
      if (seq === loadSeq && err.status === 404) { st.conv = null; showView(); }
    } finally {
      if (seq === loadSeq) {
        st.loading = false;
        st.pending = [];
      }
    }
  }

  async function loadEarlier() {
    if (!st.conv || !st.cursor) return;
    ui.earlier.disabled = true;
    const box = ui.scroll;
    const fromBottom = box.scrollHeight - box.scrollTop;
    try {
      const d = await call('GET', `/v1/conversations/${encodeURIComponent(st.conv.id)}?limit=${PAGE}&cursor=${encodeURIComponent(st.cursor)}`);
      for (const m of [...d.messages].reverse()) upsert(m, 'prepend', true);
      st.cursor = d.next_cursor;
      box.scrollTop = box.scrollHeight - fromBottom;
    } catch (err) {
      announce(err.message);
    } finally {
      ui.earlier.disabled = false;
      ui.earlier.hidden = !st.cursor;
    }
  }

  // ---- writing -------------------------------------------------------------
  async function startConversation(e) {
    e.preventDefault();
    const body = ui.first.value;
    if (!body.trim()) {
      ui.startError.textContent = 'Please write a message.';
      ui.first.focus();
      return;
    }
    ui.startError.textContent = '';
    ui.startBtn.disabled = true;
    ui.startBtn.textContent = 'Starting…';
    try {
      if (!st.session) {
        const s = await call('POST', '/v1/widget/sessions', { name: ui.name.value.trim(), email: ui.email.value.trim() }, { auth: false });
        st.session = { token: s.token, customerId: s.customer_id };
        store.set(KEY, st.session);
        startLive();
      }
      let conv;
      try {
        conv = await call('POST', '/v1/conversations', { body });
      } catch (err) {
        if (err.status !== 0) throw err;
        // The answer was lost: the conversation may exist. Adopt it rather than start a second one.
        const list = await call('GET', '/v1/widget/conversations?limit=20');
        if (list.conversations.length > st.convCount) conv = list.conversations[0];
        else conv = await call('POST', '/v1/conversations', { body });
      }
      st.convCount++;
      ui.first.value = '';
      st.conv = conv;
      await loadConversation(conv.id);
      ui.input.focus();
    } catch (err) {
      ui.startError.textContent = err.message;
    } finally {
      ui.startBtn.disabled = false;
      ui.startBtn.textContent = 'Start chat';
    }
  }

  async function send(e) {
    if (e) e.preventDefault();
    const body = ui.input.value;
    if (!body.trim() || !st.conv) return;
    const convId = st.conv.id;
    const clientId = newClientID(); // the same on every retry: the server keeps one message
    ui.input.value = '';
    autosize();
    ui.sendError.textContent = '';
    try {
      const m = await call('POST', `/v1/conversations/${encodeURIComponent(convId)}/messages`, { body, client_id: clientId }, { retries: 3 });
      if (st.conv && st.conv.id === convId) upsert(m, 'append');
      scrollDown();
    } catch (err) {
      if (!ui.input.value) ui.input.value = body;
      ui.sendError.textContent = `Not sent. ${err.message}`;
    }
  }

  let readTimer = 0;
  function markReadSoon() {
    clearTimeout(readTimer);
    readTimer = setTimeout(async () => {
      if (!st.open || !st.conv || document.visibilityState !== 'visible') return;
      try {
        await call('POST', `/v1/conversations/${encodeURIComponent(st.conv.id)}/read`, {});
        setUnread(0);
      } catch { /* tried again at the next message */ }
    }, 250);
  }

  function endSession() {
    stopLive();
    store.del(KEY);
    st.session = null;
    st.conv = null;
    st.messages = new Map();
    ui.messages.replaceChildren();
    setUnread(0);
    showView();
  }

  // ---- rendering -----------------------------------------------------------
  const CSS_TEXT = `
:host { all: initial; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.root { --accent: ${cfg.color}; position: fixed; z-index: 2147483000; bottom: 20px; ${cfg.left ? 'left' : 'right'}: 20px;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue", Arial, sans-serif; color: #1b2330; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
button, input, textarea { font: inherit; color: inherit; }
:focus-visible { outline: 3px solid #2563eb; outline-offset: 2px; }
.launcher { position: relative; width: 60px; height: 60px; border-radius: 50%; border: 0; cursor: pointer; display: grid; place-items: center;
  background: var(--accent); color: #fff; box-shadow: 0 8px 24px rgb(16 24 40 / 28%); transition: transform .15s; margin-left: auto; }
.launcher:hover { transform: scale(1.05); }
.launcher svg { width: 28px; height: 28px; }
.launcher .count { position: absolute; top: -2px; right: -2px; min-width: 22px; height: 22px; padding: 0 6px; border-radius: 11px;
  background: #d92d20; color: #fff; font-size: 12px; font-weight: 700; display: grid; place-items: center; border: 2px solid #fff; }
.panel { position: absolute; bottom: 76px; ${cfg.left ? 'left' : 'right'}: 0; width: 370px; height: min(600px, calc(100vh - 120px));
  display: flex; flex-direction: column; background: #fff; border-radius: 16px; overflow: hidden;
  box-shadow: 0 16px 48px rgb(16 24 40 / 28%); border: 1px solid rgb(16 24 40 / 8%); }
header { background: var(--accent); color: #fff; padding: 16px 16px 14px; display: flex; align-items: flex-start; gap: 12px; }
header .titles { flex: 1; min-width: 0; }
h2 { margin: 0; font-size: 17px; font-weight: 700; }
.status { margin: 4px 0 0; font-size: 13px; display: flex; gap: 7px; align-items: baseline; opacity: .95; }
.dot { flex: none; width: 8px; height: 8px; border-radius: 50%; background: #9ca3af; box-shadow: 0 0 0 2px rgb(255 255 255 / 35%); transform: translateY(-1px); }
.online .dot { background: #4ade80; }
.close { background: rgb(255 255 255 / 16%); border: 0; color: #fff; width: 32px; height: 32px; border-radius: 8px; cursor: pointer; font-size: 18px; line-height: 1; }
.close:hover { background: rgb(255 255 255 / 28%); }
.close:focus-visible { outline-color: #fff; }
.body { flex: 1; min-height: 0; display: flex; flex-direction: column; background: #f7f8fa; }
.start { padding: 18px 16px; display: grid; gap: 10px; overflow-y: auto; }
#who { display: grid; gap: 10px; }
.start p { margin: 0; color: #4b5563; font-size: 14px; }
label { font-size: 13px; font-weight: 600; display: grid; gap: 4px; }
.opt { font-weight: 400; color: #5a6576; }
input, textarea { width: 100%; padding: 9px 11px; border: 1px solid #cfd4dc; border-radius: 9px; background: #fff; font-size: 15px; }
input:focus-visible, textarea:focus-visible { outline: 2px solid var(--accent); outline-offset: 0; border-color: var(--accent); }
textarea { resize: none; }
.primary { background: var(--accent); color: #fff; border: 0; border-radius: 9px; padding: 11px 14px; font-weight: 650; cursor: pointer; }
.primary:disabled { opacity: .65; cursor: progress; }
.error { color: #b42318; font-size: 13px; margin: 0; }
.error:empty { display: none; }
.scroll { flex: 1; overflow-y: auto; padding: 14px 14px 6px; display: flex; flex-direction: column; }
.earlier { align-self: center; background: #fff; border: 1px solid #d0d5dd; border-radius: 999px; padding: 4px 12px; font-size: 13px; cursor: pointer; margin-bottom: 8px; }
ol { list-style: none; margin: auto 0 0; padding: 0; display: grid; gap: 8px; }
li { display: grid; gap: 2px; max-width: 85%; justify-items: start; }
li.me { justify-self: end; justify-items: end; }
.meta { font-size: 12px; color: #5a6576; padding: 0 4px; }
.bubble { padding: 8px 12px; border-radius: 14px 14px 14px 4px; background: #fff; border: 1px solid #e4e7ec; white-space: pre-wrap; overflow-wrap: anywhere; }
li.me .bubble { background: var(--accent); border-color: transparent; color: #fff; border-radius: 14px 14px 4px 14px; }
li.deleted .bubble { background: transparent; color: #5a6576; font-style: italic; border: 1px dashed #cfd4dc; }
.note { margin: 6px 14px; padding: 8px 10px; font-size: 13px; color: #475467; background: #eef0f3; border-radius: 8px; text-align: center; }
form.composer { display: flex; gap: 8px; align-items: flex-end; padding: 10px 12px 12px; background: #fff; border-top: 1px solid #e4e7ec; }
form.composer textarea { max-height: 120px; min-height: 42px; }
.send { flex: none; width: 42px; height: 42px; border-radius: 10px; border: 0; background: var(--accent); color: #fff; cursor: pointer; display: grid; place-items: center; }
.send svg { width: 20px; height: 20px; }
.send-error { padding: 0 12px 8px; background: #fff; }
.brand { text-align: center; font-size: 11px; color: #5a6576; padding: 4px 0 8px; background: #fff; }
@media (max-width: 480px) {
  .root { bottom: 16px; ${cfg.left ? 'left' : 'right'}: 16px; }
  .root.is-open { inset: 0; }
  .root.is-open .launcher { display: none; }
  .panel { position: fixed; inset: 0; width: 100%; height: 100%; border-radius: 0; border: 0; }
}
@media (prefers-reduced-motion: reduce) { .launcher { transition: none; } }
`;

  const CHAT_ICON = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M21 12a8 8 0 0 1-11.6 7.1L4 20.5l1.4-4.8A8 8 0 1 1 21 12z"/></svg>';
  const CLOSE_ICON = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>';
  const SEND_ICON = '<svg viewBox="0 0 24 24" fill="currentColor" aria-hidden="true"><path d="M3.4 20.4 21 12 3.4 3.6 3.4 10l12.6 2-12.6 2z"/></svg>';

  const host = document.createElement('div');
  host.setAttribute('data-messenger-widget', '');
  const root = host.attachShadow({ mode: 'open' });
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS_TEXT);
    root.adoptedStyleSheets = [sheet];
  } catch {
    const style = document.createElement('style');
    style.textContent = CSS_TEXT;
    root.append(style);
  }
  const wrap = document.createElement('div');
  wrap.className = 'root';
  // Static markup only: what visitors and agents write is always set as text.
  wrap.innerHTML = `
<section class="panel" id="panel" role="dialog" aria-modal="false" aria-labelledby="title" hidden>
  <header>
    <div class="titles">
      <h2 id="title"></h2>
      <p class="status" id="status"><span class="dot" aria-hidden="true"></span><span id="status-text">Connecting…</span></p>
    </div>
    <button class="close" id="close" type="button" aria-label="Close chat">✕</button>
  </header>
  <div class="body">
    <form class="start" id="start" novalidate>
      <p id="intro"></p>
      <div id="who">
        <label><span>Name <span class="opt">(optional)</span></span><input id="name" name="name" autocomplete="name" maxlength="200"></label>
        <label><span>Email <span class="opt">(optional)</span></span><input id="email" name="email" type="email" autocomplete="email" maxlength="320"></label>
      </div>
      <label>Message<textarea id="first" rows="4" maxlength="10000" required></textarea></label>
      <p class="error" id="start-error" role="alert"></p>
      <button class="primary" id="start-btn" type="submit">Start chat</button>
    </form>
    <div class="scroll" id="scroll" hidden>
      <button class="earlier" id="earlier" type="button" hidden>Show earlier messages</button>
      <ol id="messages" aria-label="Messages"></ol>
    </div>
    <p class="note" id="note" hidden>This conversation is closed. Write a message to reopen it.</p>
  </div>
  <form class="composer" id="composer" hidden>
    <label class="sr" for="input">Message</label>
    <textarea id="input" rows="1" maxlength="10000" placeholder="Write a message…"></textarea>
    <button class="send" type="submit" aria-label="Send">${SEND_ICON}</button>
  </form>
  <p class="error send-error" id="send-error" role="alert"></p>
  <div class="sr" id="announcer" aria-live="polite"></div>
</section>
<button class="launcher" id="launcher" type="button" aria-expanded="false" aria-controls="panel">${CHAT_ICON}<span class="count" id="count" hidden></span></button>`;
  root.append(wrap);

  const $ = (id) => root.getElementById(id);
  const ui = {
    panel: $('panel'), launcher: $('launcher'), count: $('count'), close: $('close'), title: $('title'),
    status: $('status'), statusText: $('status-text'), start: $('start'), intro: $('intro'), who: $('who'),
    name: $('name'), email: $('email'), first: $('first'), startError: $('start-error'), startBtn: $('start-btn'),
    scroll: $('scroll'), earlier: $('earlier'), messages: $('messages'), note: $('note'), composer: $('composer'),
    input: $('input'), sendError: $('send-error'), announcer: $('announcer'),
  };
  ui.title.textContent = cfg.title;
  ui.intro.textContent = cfg.intro;
  setLauncherLabel();

  function showView() {
    const chatting = !!st.conv;
    ui.start.hidden = chatting;
    ui.who.hidden = !!st.session;
    ui.scroll.hidden = !chatting;
    ui.composer.hidden = !chatting;
    if (!chatting) ui.note.hidden = true;
  }

  function renderConversationState() {
    ui.note.hidden = !st.conv || st.conv.status !== 'closed';
    ui.earlier.hidden = !st.cursor;
  }

  /** upsert shows a message once, by id, or puts its new state in place. */
  function upsert(m, where, quiet) {
    const known = st.messages.has(m.id);
    st.messages.set(m.id, m);
    const li = messageView(m);
    const old = ui.messages.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
    if (old) { old.replaceWith(li); return; }
    if (known) return;
    const stick = !quiet && nearBottom();
    if (where === 'prepend') ui.messages.prepend(li);
    else ui.messages.append(li);
    if (stick || m.author.kind === 'customer') scrollDown();
  }

  function messageView(m) {
    const me = m.author.kind === 'customer';
    const li = document.createElement('li');
    li.dataset.id = m.id;
    li.className = (me ? 'me' : 'agent') + (m.deleted ? ' deleted' : '');
    const meta = document.createElement('span');
    meta.className = 'meta';
    const t = new Date(m.created_at);
    const time = Number.isNaN(t.getTime()) ? '' : t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    meta.textContent = me ? time : `${m.author.name || 'Support'} · ${time}`;
    const who = document.createElement('span');
    who.className = 'sr';
    who.textContent = me ? 'You said: ' : `${m.author.name || 'Support'} said: `;
    const bubble = document.createElement('div');
    bubble.className = 'bubble';
    bubble.append(who, m.deleted ? 'message deleted' : m.body);
    if (m.edited && !m.deleted) meta.textContent += ' · edited';
    li.append(bubble, meta);
    return li;
  }

  function setStatus(s) {
    st.status = s;
    ui.status.classList.toggle('online', !!s.online);
    ui.statusText.textContent = s.message || (s.online ? 'We are online.' : 'We are offline. Leave a message and we will get back to you.');
    ui.panel.dataset.online = String(!!s.online);
  }

  function setConnection(ok) {
    ui.panel.dataset.connected = String(ok);
  }

  function setUnread(n) {
    st.unread = n;
    const show = n > 0 && !st.open;
    ui.count.hidden = !show;
    ui.count.textContent = show ? String(n) : '';
    setLauncherLabel();
  }

  function setLauncherLabel() {
    const unread = st.unread && !st.open ? `, ${st.unread} unread` : '';
    ui.launcher.setAttribute('aria-label', `${st.open ? 'Close' : 'Open'} chat: ${cfg.title}${unread}`);
  }

  function setOpen(open, { focus = true } = {}) {
    st.open = open;
    ui.panel.hidden = !open;
    wrap.classList.toggle('is-open', open);
    ui.launcher.setAttribute('aria-expanded', String(open));
    ui.launcher.innerHTML = `${open ? CLOSE_ICON : CHAT_ICON}`;
    ui.launcher.append(ui.count);
    store.set(OPEN_KEY, open, sessionStorage);
    setUnread(st.unread);
    if (open) {
      if (!st.live) fetchStatus();
      if (st.unread) markReadSoon();
      scrollDown();
      if (focus) (st.conv ? ui.input : st.session ? ui.first : ui.name).focus();
    } else if (focus) {
      ui.launcher.focus();
    }
  }

  function nearBottom() {
    return ui.scroll.scrollHeight - ui.scroll.scrollTop - ui.scroll.clientHeight < 60;
  }
  function scrollDown() { ui.scroll.scrollTop = ui.scroll.scrollHeight; }
  function autosize() {
    ui.input.style.height = 'auto';
    ui.input.style.height = `${Math.min(ui.input.scrollHeight + 2, 120)}px`;
  }

  let announceTimer = 0;
  function announce(text) {
    ui.announcer.textContent = '';
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => { ui.announcer.textContent = text.slice(0, 200); }, 50);
  }

  // ---- events --------------------------------------------------------------
  ui.launcher.addEventListener('click', () => setOpen(!st.open));
  ui.close.addEventListener('click', () => setOpen(false));
  ui.panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); setOpen(false); } });
  ui.start.addEventListener('submit', startConversation);
  ui.composer.addEventListener('submit', send);
  ui.earlier.addEventListener('click', loadEarlier);
  ui.input.addEventListener('input', autosize);
  ui.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    if (st.unread && st.open) markReadSoon();
    if (!st.live) fetchStatus();
  });
  // Without a session there is no stream: the status is read now and then.
  setInterval(() => { if (!st.live && document.visibilityState === 'visible') fetchStatus(); }, 30000);

  function mount() {
    document.body.append(host);
    showView();
    fetchStatus();
    if (st.session) startLive(); // its first opening reads the conversation
    if (cfg.open || store.get(OPEN_KEY, sessionStorage)) setOpen(true, { focus: false });
  }

  window.MessengerWidget = {
    open: () => setOpen(true),
    close: () => setOpen(false),
    /** reset forgets the visitor's session on this device. */
    reset: endSession,
  };
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
})();
