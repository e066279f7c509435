// Browser test of the agent app (/app/) and the customer widget (/widget/):
// the real messengerd, built from this tree, and Debian's chromium driven by
// playwright-core, an agent and a customer in two browser contexts.
//
//   cd readapi/web/e2e && npm ci && node --test browser.test.mjs
//
// Environment:
//   CI=true                  a missing chromium fails the test (locally it is skipped)
//   MESSENGER_CHROMIUM       the browser (default /usr/bin/chromium)
//   MESSENGER_BIN            a messengerd binary to run instead of building ./cmd/messengerd
//   MESSENGER_TEST_OUTPUT    where screenshots and logs go (default ./test-output)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, createWriteStream, writeFileSync, readdirSync } from 'node:fs';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../..');
const CHROMIUM = process.env.MESSENGER_CHROMIUM || '/usr/bin/chromium';
const CI = process.env.CI === 'true';
const OUT = resolve(process.env.MESSENGER_TEST_OUTPUT || join(here, 'test-output'));
const ADMIN_TOKEN = `e2e-admin-${randomBytes(12).toString('hex')}`;
const WAIT = 10_000;

const ONLINE = 'We are online: a real person answers within minutes.';
const OFFLINE = 'We are away right now. Leave a message and we will email you back.';
const FIRST = 'Hello! My order #1042 has not arrived yet, and the tracking page has said "in transit" for a whole week. Can you check where it is?';
const REPLY = 'Hi Alice, I am looking into order #1042 right now.';
const SECOND = 'Thanks! One more thing: can you deliver to my office instead?';
const DURING_RESTART = 'The courier confirms: delivery tomorrow before noon.';
const AFTER_RESTART = 'Perfect, thank you so much!';

const missing = existsSync(CHROMIUM) ? '' : `no browser at ${CHROMIUM}: apt-get install -y chromium`;

if (missing && CI) {
  test('chromium is installed', () => assert.fail(`${missing} (CI=true: the browser test must run)`));
} else {
  test('agent and customer walk the seed scenario in a real browser', { skip: missing || false, timeout: 120_000 }, scenario);
}

// ---- the server ------------------------------------------------------------

const cleanups = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {});
});

function freePort(host = '127.0.0.1') {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function buildServer(dir) {
  if (process.env.MESSENGER_BIN) return resolve(process.env.MESSENGER_BIN);
  const bin = join(dir, 'messengerd');
  execFileSync('go', ['build', '-o', bin, './cmd/messengerd'], { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
  return bin;
}

/** startServer runs messengerd and resolves once /readyz answers 200. */
async function startServer(bin, { addr, dataDir, log, origins }) {
  const proc = spawn(bin, [], {
    env: { ...process.env, MESSENGER_ADDR: addr, MESSENGER_DATA_DIR: dataDir, MESSENGER_ADMIN_TOKEN: ADMIN_TOKEN, MESSENGER_ALLOWED_ORIGINS: origins },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.pipe(log, { end: false });
  proc.stderr.pipe(log, { end: false });
  let exited = null;
  proc.once('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`messengerd ${exited} before it was ready; see ${join(OUT, 'server.log')}`);
    try {
      const res = await fetch(`http://${addr}/readyz`);
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error('messengerd was not ready within 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    async stop() {
      if (exited) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 8000);
      await once(proc, 'exit');
      clearTimeout(timer);
    },
  };
}

async function api(base, token, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

// ---- the scenario ----------------------------------------------------------

async function scenario(t) {
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    assert.fail('playwright-core is not installed: run npm ci in readapi/web/e2e');
  }
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), 'messenger-e2e-'));
  cleanups.push(async () => rmSync(tmp, { recursive: true, force: true }));
  const log = createWriteStream(join(OUT, 'server.log'));
  cleanups.push(async () => log.end());

  const t0 = Date.now();
  const bin = buildServer(tmp);
  const port = await freePort();
  const addr = `127.0.0.1:${port}`;
  const base = `http://${addr}`;
  const dataDir = join(tmp, 'data');
  // Another website, on another origin (127.0.0.2 is loopback too), that embeds the widget.
  const shopPort = await freePort('127.0.0.2');
  const shopOrigin = `http://127.0.0.2:${shopPort}`;
  const shop = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="en"><title>Another shop</title><h1>Another shop, on another origin</h1>
<script src="${base}/widget.js" async data-title="Help from afar"></script>`);
  });
  await new Promise((r) => shop.listen(shopPort, '127.0.0.2', r));
  cleanups.push(async () => shop.close());
  const serverOpts = { addr, dataDir, log, origins: shopOrigin };
  let server = await startServer(bin, serverOpts);
  cleanups.push(() => server.stop());
  t.diagnostic(`server ready in ${Date.now() - t0} ms at ${base}`);
  const app = await fetch(`${base}/app/`);
  assert.equal(app.status, 200, 'messengerd serves /app/: web.Register must be mounted in cmd/messengerd routes()');

  const agentUser = await api(base, ADMIN_TOKEN, 'POST', '/v1/users', { name: 'Sam Support', email: 'sam@northwind.example', role: 'agent', support: true });
  await api(base, ADMIN_TOKEN, 'PUT', '/v1/helpdesk/messages', { online_message: ONLINE, offline_message: OFFLINE });
  await api(base, ADMIN_TOKEN, 'PUT', '/v1/helpdesk/status', { online: true });

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  cleanups.push(() => browser.close());

  const problems = [];
  const consoleLog = [];
  const watch = (page, who) => {
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => problems.push(`${who}: ${err.message}`));
    page.on('console', (msg) => consoleLog.push(`${who} ${msg.type()}: ${msg.text()}`));
    // Nothing may be fetched from anywhere but the server.
    page.on('request', (req) => {
      if (!req.url().startsWith(base) && !req.url().startsWith('data:')) problems.push(`${who} fetched ${req.url()}`);
    });
  };
  cleanups.push(async () => writeFileSync(join(OUT, 'console.log'), consoleLog.join('\n') + '\n'));

  const agentCtx = await browser.newContext({ viewport: { width: 1360, height: 820 } });
  const customerCtx = await browser.newContext({ viewport: { width: 375, height: 740 }, deviceScaleFactor: 2, hasTouch: true });
  const agent = await agentCtx.newPage();
  const customer = await customerCtx.newPage();
  watch(agent, 'agent');
  watch(customer, 'customer');
  const widget = customer.locator('[data-messenger-widget]');
  let shots = 0;
  const shot = (page, name) => page.screenshot({ path: join(OUT, `${String(++shots).padStart(2, '0')}-${name}.png`) });

  let failed = false;
  const step = (name, fn) => t.test(name, { skip: failed && 'an earlier step failed' }, async () => {
    try {
      await fn();
    } catch (err) {
      failed = true;
      await shot(agent, `FAILED-agent`).catch(() => {});
      await shot(customer, `FAILED-customer`).catch(() => {});
      throw err;
    }
  });

  const agentRow = () => agent.locator('#conv-list li', { hasText: 'Alice Martin' });
  const agentMsg = (text) => agent.locator('#messages > li', { hasText: text });
  const widgetMsg = (text) => widget.locator('#messages > li', { hasText: text });

  await step('the agent signs in with a token', async () => {
    await agent.goto(`${base}/app/`);
    await agent.getByLabel('Access token').waitFor();
    await shot(agent, 'agent-sign-in');
    await agent.getByLabel('Access token').fill(agentUser.token);
    await agent.getByRole('button', { name: 'Sign in' }).click();
    await agent.locator('#me-name', { hasText: 'Sam Support' }).waitFor();
    await agent.locator('#connection[data-state="live"]').waitFor();
    await agent.getByRole('link', { name: /From customers/ }).and(agent.locator('[aria-current="page"]')).waitFor();
    // The switch shows the status once the app has read it, which it starts
    // when the stream is live: wait for it rather than read it at once.
    await agent.getByRole('switch', { name: /Helpdesk/ }).and(agent.locator('[aria-checked="true"]')).waitFor();
    await shot(agent, 'agent-signed-in');
  });

  await step('the customer starts a chat in the widget at 375 px', async () => {
    await customer.goto(`${base}/widget/`);
    await widget.getByRole('button', { name: /Open chat/ }).waitFor();
    await shot(customer, 'demo-page');
    await widget.getByRole('button', { name: /Open chat/ }).click();
    await widget.locator('#status-text', { hasText: ONLINE }).waitFor();
    await shot(customer, 'widget-open');
    await widget.getByRole('textbox', { name: /Name/ }).fill('Alice Martin');
    await widget.getByRole('textbox', { name: /Email/ }).fill('alice@example.com');
    await widget.getByRole('textbox', { name: 'Message' }).fill(FIRST);
    await widget.getByRole('button', { name: 'Start chat' }).click();
    await widgetMsg(FIRST).waitFor();
    const box = await widget.locator('#panel').boundingBox();
    assert.ok(box.width <= 375 && box.x >= 0, `the panel fits 375 px: ${JSON.stringify(box)}`);
    await shot(customer, 'widget-chat-started');
  });

  await step('it appears, unread, in the agent’s From customers without a reload', async () => {
    await agent.locator('#conv-list li[data-unread="1"]', { hasText: 'Alice Martin' }).waitFor();
    await agent.locator('#badge-customers:not([hidden])', { hasText: '1' }).waitFor();
    await shot(agent, 'agent-new-unread');
  });

  await step('the agent opens it and replies; the customer sees the reply live', async () => {
    await agentRow().getByRole('link').click();
    await agentMsg(FIRST).waitFor();
    await agent.locator('#conv-list li[data-unread="0"]', { hasText: 'Alice Martin' }).waitFor();
    await agent.locator('#badge-customers[hidden]').waitFor({ state: 'attached' });
    const reply = agent.getByRole('textbox', { name: 'Reply' });
    await reply.fill(REPLY);
    await reply.press('Enter');
    await agentMsg(REPLY).waitFor();
    await widgetMsg(REPLY).waitFor();
    await shot(agent, 'agent-replied');
    await shot(customer, 'widget-sees-reply');
  });

  await step('the agent closes it; the widget shows it closed', async () => {
    await agent.getByRole('button', { name: 'Close', exact: true }).click();
    await agent.getByRole('button', { name: 'Reopen' }).waitFor();
    await agentRow().waitFor({ state: 'detached' });
    await agent.getByRole('tab', { name: 'Closed' }).click();
    await agentRow().waitFor();
    await agent.getByRole('tab', { name: 'Open' }).click();
    await agentRow().waitFor({ state: 'detached' });
    await widget.getByText('This conversation is closed').waitFor();
    await shot(agent, 'agent-closed');
    await shot(customer, 'widget-closed');
  });

  await step('the customer writes again and it reopens in the agent’s Open list', async () => {
    const box = widget.getByRole('textbox', { name: 'Message' });
    await box.fill(SECOND);
    await box.press('Enter');
    await widgetMsg(SECOND).waitFor();
    await agentRow().waitFor();
    await agentMsg(SECOND).waitFor();
    await agent.getByRole('button', { name: 'Close', exact: true }).waitFor();
    await widget.getByText('This conversation is closed').waitFor({ state: 'hidden' });
    await shot(agent, 'agent-reopened');
  });

  await step('the message menu shows the author and edits and deletes the agent’s own message', async () => {
    await agentMsg(FIRST).getByRole('button', { name: /Actions for the message from Alice Martin/ }).click();
    const menu = agent.getByRole('menu');
    assert.deepEqual(await menu.getByRole('menuitem').allTextContents(), ['Author details']);
    await menu.getByRole('menuitem', { name: 'Author details' }).click();
    const panel = agent.getByRole('complementary', { name: 'Author details' });
    await panel.getByText('alice@example.com').waitFor();
    await shot(agent, 'agent-author-details');
    await agent.keyboard.press('Escape');
    await panel.waitFor({ state: 'hidden' });

    const reply = agent.getByRole('textbox', { name: 'Reply' });
    await reply.fill('Delivry to the office is possible');
    await reply.press('Enter');
    await widgetMsg('Delivry to the office').waitFor();
    // Keyboard only: open the menu with the arrow key, choose Edit.
    await agentMsg('Delivry').getByRole('button', { name: /Actions/ }).focus();
    await agent.keyboard.press('ArrowDown');
    assert.deepEqual(await agent.getByRole('menu').getByRole('menuitem').allTextContents(), ['Author details', 'Edit', 'Delete']);
    await agent.keyboard.press('ArrowDown');
    await agent.keyboard.press('Enter');
    const edit = agent.getByRole('textbox', { name: 'Edit message' });
    await edit.fill('Delivery to the office is possible: which address?');
    await agent.getByRole('button', { name: 'Save' }).click();
    await agentMsg('Delivery to the office is possible: which address?').waitFor();
    await widgetMsg('Delivery to the office is possible: which address?').waitFor();

    await agentMsg('which address?').getByRole('button', { name: /Actions/ }).click();
    await agent.getByRole('menuitem', { name: 'Delete' }).click();
    await agent.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await agent.locator('#messages > li.msg-deleted', { hasText: 'message deleted' }).waitFor();
    await widget.locator('#messages > li.deleted', { hasText: 'message deleted' }).waitFor();
    assert.equal(await widgetMsg('which address?').count(), 0);
  });

  await step('the search box filters the list', async () => {
    const search = agent.getByRole('searchbox', { name: 'Search conversations' });
    await search.fill('no such words anywhere');
    await agent.getByText('No conversation matches this search.').waitFor();
    await agentRow().waitFor({ state: 'detached' });
    await search.fill('1042');
    await agentRow().waitFor();
    await search.fill('');
    await agentRow().waitFor();
    await agent.getByText('No conversation matches this search.').waitFor({ state: 'hidden' });
  });

  let ticketTitle = '';
  await step('the agent creates a ticket from it, pre-filled, and sees its details', async () => {
    await agent.getByRole('button', { name: 'Create ticket/task' }).click();
    const dialog = agent.getByRole('dialog', { name: 'Create a ticket or task' });
    await dialog.waitFor();
    const title = dialog.getByRole('textbox', { name: 'Title' });
    assert.equal(await title.inputValue(), [...FIRST].slice(0, 80).join(''));
    assert.equal(await dialog.getByRole('textbox', { name: 'Description' }).inputValue(), FIRST);
    ticketTitle = 'Order #1042 stuck in transit';
    await title.fill(ticketTitle);
    await shot(agent, 'agent-ticket-form');
    await dialog.getByRole('button', { name: 'Create and link' }).click();
    const panel = agent.getByRole('complementary', { name: 'Ticket details' });
    await panel.getByRole('heading', { name: ticketTitle }).waitFor();
    await panel.getByText('Alice Martin <alice@example.com>').waitFor();
    const chip = agent.locator('#links-list').getByRole('button', { name: new RegExp(ticketTitle) });
    await chip.waitFor();
    await agent.getByRole('button', { name: 'Close details' }).click();
    await panel.waitFor({ state: 'hidden' });
    await chip.click(); // read back with GET /v1/items/{id}
    await panel.getByRole('heading', { name: ticketTitle }).waitFor();
    await panel.getByText(FIRST).waitFor();
    await agentRow().getByText(`ticket: ${ticketTitle}`).waitFor();
    await shot(agent, 'agent-ticket-details');
  });

  await step('the history lists every event in order and shows the conversation at an instant', async () => {
    await agent.getByRole('button', { name: 'History' }).click();
    const panel = agent.getByRole('complementary', { name: 'History' });
    const events = panel.getByRole('list', { name: 'Events' }).locator(':scope > li');
    await events.first().waitFor();
    const types = await events.evaluateAll((els) => els.map((e) => e.dataset.type));
    const positions = await events.evaluateAll((els) => els.map((e) => Number(e.dataset.position)));
    assert.deepEqual(positions, [...positions].sort((a, b) => a - b), 'events in log order');
    assert.equal(types[0], 'conversation.started');
    const at = (type) => types.indexOf(type);
    for (const [before, later] of [['conversation.closed', 'conversation.reopened'],
      ['conversation.message_edited', 'conversation.message_deleted'], ['conversation.message_deleted', 'conversation.item_linked']]) {
      assert.ok(at(before) >= 0 && at(before) < at(later), `${before} before ${later}: ${types}`);
    }
    await panel.locator('li[data-type="conversation.closed"]', { hasText: 'Sam Support (you) closed the conversation' }).waitFor();
    await panel.locator('li[data-type="conversation.item_linked"]', { hasText: ticketTitle }).waitFor();
    // A deletion keeps, for the auditors, what the message said.
    await panel.locator('li[data-type="conversation.message_deleted"] blockquote', { hasText: 'which address?' }).waitFor();
    // Right after the close: closed, the customer's second message not written yet.
    await panel.locator('li[data-type="conversation.closed"]').getByRole('button', { name: /State after this/ }).click();
    const then = panel.getByRole('region', { name: 'State at the chosen instant' });
    await then.locator('.pill', { hasText: 'closed' }).waitFor();
    await then.getByText(REPLY).waitFor();
    assert.equal(await then.getByText(SECOND).count(), 0);
    await shot(agent, 'agent-history');
    // The picker starts at the last event's second: the conversation as it is now.
    await panel.getByRole('button', { name: 'Show' }).click();
    await then.getByText(`linked: ${ticketTitle}`, { exact: false }).waitFor();
    await then.getByText(SECOND).waitFor();
    await then.locator('.pill', { hasText: 'open' }).waitFor();
    await agent.getByRole('button', { name: 'Close details' }).click();
    await panel.waitFor({ state: 'hidden' });
  });

  await step('the helpdesk goes offline and the widget shows the offline message', async () => {
    const sw = agent.getByRole('switch', { name: /Helpdesk/ });
    await sw.click();
    await agent.locator('#helpdesk-switch[aria-checked="false"]').waitFor();
    await widget.locator('#status-text', { hasText: OFFLINE }).waitFor();
    await shot(agent, 'agent-helpdesk-offline');
    await shot(customer, 'widget-offline');
  });

  await step('after a reload the widget keeps its session and shows the history', async () => {
    await customer.reload();
    await widgetMsg(FIRST).waitFor(); // the panel stays open across the reload
    await widgetMsg(SECOND).waitFor();
    await widget.locator('#status-text', { hasText: OFFLINE }).waitFor();
    await widget.locator('#panel[data-connected="true"]').waitFor();
    await shot(customer, 'widget-after-reload');
  });

  await step('both resume after the server restarts, missing nothing and doubling nothing', async () => {
    await server.stop();
    await agent.locator('#connection:not([data-state="live"])').waitFor();
    server = await startServer(bin, serverOpts);
    // Posted while the browsers are still reconnecting: they get it by resuming.
    const convs = await api(base, agentUser.token, 'GET', '/v1/inbox?section=customers&status=open');
    const conv = convs.conversations.find((c) => c.customer?.name === 'Alice Martin');
    await api(base, agentUser.token, 'POST', `/v1/conversations/${conv.id}/messages`, { body: DURING_RESTART, client_id: 'e2e-restart-1' });
    // A retried post with the same client_id is the same message.
    await api(base, agentUser.token, 'POST', `/v1/conversations/${conv.id}/messages`, { body: DURING_RESTART, client_id: 'e2e-restart-1' });
    await widgetMsg(DURING_RESTART).waitFor({ timeout: 20_000 });
    await agentMsg(DURING_RESTART).waitFor({ timeout: 20_000 });
    await agent.locator('#connection[data-state="live"]').waitFor({ timeout: 20_000 });
    const box = widget.getByRole('textbox', { name: 'Message' });
    await box.fill(AFTER_RESTART);
    await box.press('Enter');
    await agentMsg(AFTER_RESTART).waitFor();
    for (const text of [FIRST, REPLY, SECOND, DURING_RESTART, AFTER_RESTART]) {
      assert.equal(await agentMsg(text).count(), 1, `the agent shows "${text}" once`);
      assert.equal(await widgetMsg(text).count(), 1, `the widget shows "${text}" once`);
    }
    await shot(agent, 'agent-after-restart');
    await shot(customer, 'widget-after-restart');
  });

  await step('My conversations pages back through a long conversation', async () => {
    const started = await api(base, agentUser.token, 'POST', '/v1/conversations', { subject: 'Spring catalogue photos', body: 'Note 1' });
    for (let i = 2; i <= 60; i++) {
      await api(base, agentUser.token, 'POST', `/v1/conversations/${started.id}/messages`, { body: `Note ${i}`, client_id: `note-${i}` });
    }
    await agent.getByRole('link', { name: /My conversations/ }).click();
    const row = agent.locator('#conv-list li', { hasText: 'Spring catalogue photos' });
    await row.getByRole('link').click();
    await agentMsg('Note 60').waitFor();
    assert.equal(await agent.locator('#messages > li').count(), 50);
    await agent.getByRole('button', { name: 'Load earlier messages' }).click();
    // "Note 1" is also a substring of "Note 11", the first message before loading: wait for the 60th item instead.
    await agent.locator('#messages > li').nth(59).waitFor();
    assert.equal(await agent.locator('#messages > li').count(), 60);
    assert.match(await agent.locator('#messages > li').first().innerText(), /\bNote 1\b(?!\d)/);
    await agent.getByRole('button', { name: 'Load earlier messages' }).waitFor({ state: 'hidden' });
    await shot(agent, 'agent-my-conversations');
  });

  await step('an auditor reads a conversation and replays it, without writing', async () => {
    const auditor = await api(base, ADMIN_TOKEN, 'POST', '/v1/users', { name: 'Ada Auditor', email: 'ada@northwind.example', role: 'auditor' });
    const ctx = await browser.newContext({ viewport: { width: 1360, height: 820 } });
    cleanups.push(() => ctx.close());
    const page = await ctx.newPage();
    watch(page, 'auditor');
    await page.goto(`${base}/app/`);
    await page.getByLabel('Access token').fill(auditor.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#me-name', { hasText: 'Ada Auditor' }).waitFor();
    await page.getByRole('link', { name: /From customers/ }).click();
    await page.locator('#conv-list li', { hasText: 'Alice Martin' }).getByRole('link').click();
    await page.locator('#messages > li', { hasText: AFTER_RESTART }).waitFor();
    await page.getByText('Auditors read conversations; they do not write in them.').waitFor();
    // Unread counts an auditor could never clear are not shown.
    assert.equal(await page.locator('.badge:visible').count(), 0, 'an auditor sees no unread badge');
    for (const name of ['Close', 'Create ticket/task', 'Send']) {
      assert.equal(await page.getByRole('button', { name, exact: true }).isVisible(), false, `an auditor has no ${name}`);
    }
    await page.getByRole('button', { name: 'History' }).click();
    const panel = page.getByRole('complementary', { name: 'History' });
    await panel.locator('li[data-type="conversation.message_posted"]', { hasText: DURING_RESTART }).waitFor();
    // The agent's events carry his name, though the auditor never met him.
    await panel.locator('li[data-type="conversation.closed"]', { hasText: 'Sam Support closed the conversation' }).waitFor();
    await shot(page, 'auditor-history');
  });

  await step('the demo page at desktop width', async () => {
    const page = await agentCtx.newPage();
    watch(page, 'demo');
    await page.goto(`${base}/widget/`);
    const w = page.locator('[data-messenger-widget]');
    await w.getByRole('button', { name: /Open chat/ }).click();
    await w.locator('#status-text', { hasText: OFFLINE }).waitFor();
    await w.getByRole('textbox', { name: /Name/ }).focus();
    await shot(page, 'demo-page-desktop');
    await page.keyboard.press('Escape');
    await w.getByRole('dialog').waitFor({ state: 'hidden' });
    assert.equal(await w.getByRole('button', { name: /Open chat/ }).evaluate((el) => el.getRootNode().activeElement === el), true,
      'Escape closes the panel and gives the focus back to the chat button');
  });

  await step('the widget works on another website, across origins', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1024, height: 720 } });
    cleanups.push(() => ctx.close());
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (err) => problems.push(`other site: ${err.message}`));
    page.on('request', (req) => {
      if (!req.url().startsWith(base) && !req.url().startsWith(shopOrigin)) problems.push(`other site fetched ${req.url()}`);
    });
    await page.goto(`${shopOrigin}/`);
    const w = page.locator('[data-messenger-widget]');
    await w.getByRole('button', { name: /Open chat/ }).click();
    await w.locator('#status-text', { hasText: OFFLINE }).waitFor();
    await w.getByRole('textbox', { name: 'Message' }).fill('Hello from another website');
    await w.getByRole('button', { name: 'Start chat' }).click();
    await w.locator('#messages > li', { hasText: 'Hello from another website' }).waitFor();
    await w.locator('#panel[data-connected="true"]').waitFor();
    const found = await api(base, agentUser.token, 'GET', '/v1/inbox?section=customers&q=another+website');
    assert.equal(found.conversations.length, 1);
    await api(base, agentUser.token, 'POST', `/v1/conversations/${found.conversations[0].id}/messages`, { body: 'Welcome, visitor from afar!' });
    await w.locator('#messages > li', { hasText: 'Welcome, visitor from afar!' }).waitFor();
    await shot(page, 'widget-cross-origin');
  });

  let admin = null;
  await step('an admin edits the widget messages; the widget shows the new one live', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1360, height: 820 } });
    cleanups.push(() => ctx.close());
    const page = await ctx.newPage();
    admin = page;
    watch(page, 'admin');
    await page.goto(`${base}/app/`);
    await page.getByLabel('Access token').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#connection[data-state="live"]').waitFor();
    await page.getByRole('button', { name: 'Edit widget messages' }).click();
    const dialog = page.getByRole('dialog', { name: 'Widget messages' });
    const online = dialog.getByRole('textbox', { name: 'When online' });
    const offline = dialog.getByRole('textbox', { name: 'When offline' });
    await dialog.getByRole('button', { name: 'Save' }).and(page.locator(':enabled')).waitFor();
    assert.equal(await online.inputValue(), ONLINE);
    assert.equal(await offline.inputValue(), OFFLINE);
    await offline.fill('   ');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.getByText('Both messages need some text.').waitFor();
    const holidays = 'Closed for the holidays: back on Monday at 9.';
    await offline.fill(holidays);
    await shot(page, 'admin-widget-messages');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#helpdesk-message', { hasText: holidays }).waitFor();
    // The helpdesk is offline: the customer's open widget says so at once.
    await widget.locator('#status-text', { hasText: holidays }).waitFor();
    // The agent, not an admin, has no such button.
    assert.equal(await agent.getByRole('button', { name: 'Edit widget messages' }).isVisible(), false);
  });

  await step('an agent starts a conversation with a teammate, who sees it live', async () => {
    await agent.getByRole('button', { name: 'New conversation' }).click();
    const dialog = agent.getByRole('dialog', { name: 'New conversation with teammates' });
    await dialog.getByRole('checkbox', { name: /Admin/ }).waitFor();
    // Neither auditors, who do not write, nor the agent himself are offered.
    assert.equal(await dialog.getByRole('checkbox', { name: /Ada Auditor/ }).count(), 0);
    assert.equal(await dialog.getByRole('checkbox', { name: /Sam Support/ }).count(), 0);
    await dialog.getByRole('textbox', { name: 'Message' }).fill('Who covers the chat on Monday?');
    await dialog.getByRole('button', { name: 'Start' }).click();
    await dialog.getByText('Choose at least one teammate.').waitFor();
    await dialog.getByRole('searchbox', { name: 'Filter teammates' }).fill('ADM');
    await dialog.getByRole('checkbox', { name: /Admin/ }).check();
    await dialog.getByRole('textbox', { name: 'Subject (optional)' }).fill('Holiday rota');
    await shot(agent, 'agent-new-conversation');
    await dialog.getByRole('button', { name: 'Start' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await agentMsg('Who covers the chat on Monday?').waitFor();
    await agent.getByRole('link', { name: /My conversations/ }).and(agent.locator('[aria-current="page"]')).waitFor();
    await agent.locator('#conv-list li', { hasText: 'Holiday rota' }).waitFor();
    // The teammate, in another browser, has it in My conversations, unread, without a reload.
    await admin.getByRole('link', { name: /My conversations/ }).click();
    await admin.locator('#conv-list li', { hasText: 'Holiday rota' }).locator('.badge').waitFor();
    await shot(admin, 'admin-new-conversation-arrives');
  });

  await step('the agent follows the ticket and assigns it; the assignee’s My conversations gains the chat', async () => {
    // The team read for the new conversation a moment ago serves the panel, however often it is redrawn.
    let teamReads = 0;
    const countTeamReads = (req) => { if (new URL(req.url()).pathname === '/v1/users') teamReads++; };
    agent.on('request', countTeamReads);
    await agent.getByRole('link', { name: /From customers/ }).click();
    await agentRow().getByRole('link').click();
    await agent.locator('#links-list').getByRole('button', { name: new RegExp(ticketTitle) }).click();
    const panel = agent.getByRole('complementary', { name: 'Ticket details' });
    await panel.getByRole('heading', { name: ticketTitle }).waitFor();
    await panel.getByRole('button', { name: 'Follow' }).click();
    await panel.getByText('You follow it.').waitFor();
    const followers = panel.locator('dt', { hasText: 'Followers' }).locator('xpath=following-sibling::dd[1]');
    assert.equal(await followers.innerText(), 'Sam Support');
    const assign = panel.getByRole('combobox', { name: 'Assign to' });
    await assign.and(agent.locator(':enabled')).waitFor();
    await assign.selectOption({ label: 'Admin' });
    await panel.getByRole('button', { name: 'Assign' }).click();
    const assignees = panel.locator('dt', { hasText: 'Assignees' }).locator('xpath=following-sibling::dd[1]');
    await assignees.getByText('Admin').waitFor();
    await shot(agent, 'agent-ticket-assigned');
    // The admin took no part in the chat: the ticket assigned to them brings it into their My conversations.
    await admin.locator('#conv-list li', { hasText: 'Alice Martin' }).waitFor();
    agent.off('request', countTeamReads);
    assert.equal(teamReads, 0, 'the panel read the team again');
    await agent.getByRole('button', { name: 'Close details' }).click();
  });

  await step('an admin adds a teammate and hands over the token shown once', async () => {
    await admin.getByRole('button', { name: 'Team' }).click();
    const panel = admin.getByRole('complementary', { name: 'Team' });
    const members = panel.getByRole('list', { name: 'Team members' });
    await members.getByText('Sam Support').waitFor();
    await members.getByText('Ada Auditor').waitFor();
    await panel.getByRole('textbox', { name: 'Name' }).fill('Nora Night');
    await panel.getByRole('textbox', { name: 'Email' }).fill('SAM@northwind.example'); // Sam's, in other letters
    await panel.getByRole('button', { name: 'Add' }).click();
    await panel.locator('p.error', { hasText: /./ }).waitFor();
    await panel.getByRole('textbox', { name: 'Email' }).fill('nora@northwind.example');
    await panel.getByRole('button', { name: 'Add' }).click();
    await members.getByText('Nora Night').waitFor();
    const token = (await panel.locator('.token-box code').innerText()).trim();
    await shot(admin, 'admin-team');
    const me = await api(base, token, 'GET', '/v1/me');
    assert.equal(me.name, 'Nora Night');
    assert.equal(me.support, true);
    await admin.getByRole('button', { name: 'Close details' }).click();
  });

  await step('the agent finds the ticket by a word of its title and links it to another conversation', async () => {
    await agent.getByRole('link', { name: /My conversations/ }).click();
    await agent.locator('#conv-list li', { hasText: 'Holiday rota' }).getByRole('link').click();
    await agentMsg('Who covers the chat on Monday?').waitFor();
    await agent.getByRole('button', { name: 'Create ticket/task' }).click();
    const dialog = agent.getByRole('dialog', { name: 'Create a ticket or task' });
    const results = dialog.getByRole('list', { name: 'Matching items' });
    await results.getByRole('button', { name: new RegExp(ticketTitle) }).waitFor(); // the newest, before typing
    await dialog.getByRole('searchbox', { name: 'Find by title or id' }).fill('STUCK in');
    await results.getByRole('button', { name: new RegExp(ticketTitle) }).waitFor();
    await dialog.getByRole('searchbox', { name: 'Find by title or id' }).fill('no such words');
    await results.getByText('No ticket or task matches.').waitFor();
    await dialog.getByRole('searchbox', { name: 'Find by title or id' }).fill('transit');
    await shot(agent, 'agent-find-item');
    await results.getByRole('button', { name: new RegExp(ticketTitle) }).click();
    await dialog.waitFor({ state: 'hidden' });
    await agent.locator('#links-list').getByRole('button', { name: new RegExp(ticketTitle) }).waitFor();
    const panel = agent.getByRole('complementary', { name: 'Ticket details' });
    await panel.getByRole('link', { name: 'this conversation' }).waitFor();
    assert.equal(await panel.locator('dt', { hasText: 'Conversations' }).locator('xpath=following-sibling::dd[1]').getByRole('link').count(), 2);
    await agent.getByRole('button', { name: 'Close details' }).click();
  });

  await step('no page error, nothing fetched from elsewhere', async () => {
    assert.deepEqual(problems, []);
  });

  t.diagnostic(`screenshots in ${OUT}: ${readdirSync(OUT).filter((f) => f.endsWith('.png')).length}; total ${Date.now() - t0} ms`);
}
