// Tabs of one browser: the React TodoMVC example in several pages of one
// headless Chromium context (one installation: one IndexedDB, one client
// id, one set of Web Locks), against a real logsync-server reached through
// a link the test can cut like a network. The tabs elect one leader, which
// alone holds the WebSocket; the others follow it through IndexedDB.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { waitFor } from './lib/browser.mjs';
import { todoSuite } from './lib/todo-suite.mjs';
import { openLink } from './lib/link.mjs';
import { addTodo, openTodoApp, titles, waitStatus, waitTitles } from './lib/todo-page.mjs';

const env = todoSuite();

/** A metric without labels from the server's /metrics. */
async function metric(name) {
  const text = await (await fetch(`${env.server.url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

const connections = (n) => waitFor(`${n} WebSocket connection(s) on the server`, async () => (await metric('logsync_connections')) === n);

/** Whether the page's status bar says this tab holds the connection. */
const leads = async (page) => (await page.locator('[data-testid=status]').getAttribute('data-leader')) === 'true';

/** `n` tabs of one new context in one new room, through one link; `withoutLocks` takes Web Locks away (the feature off). */
async function tabs(t, n, { withoutLocks = false } = {}) {
  await connections(0);
  const room = `tabs-${randomUUID().slice(0, 8)}`;
  const link = await openLink(() => env.server.port);
  const context = await env.browser.newContext();
  if (withoutLocks) {
    await context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined }));
  }
  t.after(async () => {
    await context.close();
    await link.close();
  });
  const pages = [];
  for (let i = 0; i < n; i++) pages.push(await openTodoApp(context, link.url, room));
  for (const [i, p] of pages.entries()) await waitStatus(p, `tab ${i} online`, (s) => s.online);
  return { room, link, context, pages };
}

test('two tabs, offline: a todo added in one shows in the other at once, before reconnecting; one connection for both', async (t) => {
  const { room, link, pages: [a, b] } = await tabs(t, 2);
  await connections(1);
  assert.equal(await leads(a), true, 'the first tab leads');
  assert.equal(await leads(b), false, 'the second follows');
  link.cut();
  await waitStatus(a, 'A offline', (s) => !s.online);
  await waitStatus(b, 'B offline (its leader is)', (s) => !s.online);
  const started = performance.now();
  await addTodo(b, 'milk, added offline in the follower');
  await a.waitForSelector('[data-testid=todo-title]:text-is("milk, added offline in the follower")', { timeout: 1_000 });
  t.diagnostic(`B -> A offline in ${(performance.now() - started).toFixed(0)} ms`);
  await addTodo(a, 'bread, added offline in the leader');
  await waitTitles(b, ['milk, added offline in the follower', 'bread, added offline in the leader'], 1_000);
  link.restore();
  for (const [name, p] of [['A', a], ['B', b]]) {
    await waitStatus(p, `${name} synced`, (s) => s.online && s.pending === 0 && s.offset === 2);
  }
  assert.equal(await metric('logsync_connections'), 1, 'still one connection');
  const log = await (await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(`todos/${room}`)}/events`)).json();
  assert.equal(log.events.length, 2, 'each todo once in the log');
  assert.deepEqual((await titles(a)).sort(), (await titles(b)).sort());
});

test('the feature switched off (no Web Locks): every tab holds its own connection', async (t) => {
  const { pages: [a, b] } = await tabs(t, 2, { withoutLocks: true });
  await connections(2);
  assert.equal(await leads(a), true);
  assert.equal(await leads(b), true);
});

test('the leader tab closes: another takes the connection at once and nothing is lost', async (t) => {
  const { room, pages: [a, b, c] } = await tabs(t, 3);
  await connections(1);
  assert.equal(await leads(a), true);
  await addTodo(b, 'before the leader closed');
  await waitStatus(b, 'B synced', (s) => s.pending === 0 && s.offset === 1);
  const closed = performance.now();
  await a.close({ runBeforeUnload: false });
  await waitFor('a new leader, online', async () => {
    const l = [await leads(b), await leads(c)];
    return l.filter(Boolean).length === 1 && (await b.locator('[data-testid=status]').getAttribute('data-online')) === 'true';
  });
  t.diagnostic(`take-over after the leader closed: ${(performance.now() - closed).toFixed(0)} ms`);
  await addTodo(c, 'after the leader closed');
  for (const [name, p] of [['B', b], ['C', c]]) {
    await waitStatus(p, `${name} at offset 2`, (s) => s.online && s.pending === 0 && s.offset === 2);
  }
  await connections(1);
  const log = await (await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(`todos/${room}`)}/events`)).json();
  assert.deepEqual(log.events.map((e) => e.offset), [1, 2]);
});

test('the leader page says it is being frozen (as a phone does to a background tab): another takes over; resumed, it follows and catches up', async (t) => {
  // The browser fires `freeze` before it freezes a page and `resume` after;
  // the test fires them (a visible headless page cannot be frozen). A page
  // frozen without warning is taken over by the ping timeout instead
  // (sync-wasm/tests/tabs.rs, a silent leader).
  const { room, pages: [a, b] } = await tabs(t, 2);
  await connections(1);
  assert.equal(await leads(a), true);
  const frozen = performance.now();
  await a.evaluate(() => document.dispatchEvent(new Event('freeze')));
  await waitFor('the other tab to lead, online', async () => (await leads(b))
    && (await b.locator('[data-testid=status]').getAttribute('data-online')) === 'true');
  t.diagnostic(`take-over after the leader page's freeze event: ${(performance.now() - frozen).toFixed(0)} ms`);
  assert.equal(await leads(a), false, 'the frozen page handed over');
  await addTodo(b, 'added while the first tab was frozen');
  await waitStatus(b, 'B synced', (s) => s.online && s.pending === 0 && s.offset === 1);
  await a.evaluate(() => document.dispatchEvent(new Event('resume')));
  await waitTitles(a, ['added while the first tab was frozen']);
  await waitStatus(a, 'A caught up through the new leader', (s) => s.online && s.offset === 1);
  assert.equal(await leads(a), false, 'the resumed tab follows');
  await connections(1);
  const log = await (await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(`todos/${room}`)}/events`)).json();
  assert.equal(log.events.length, 1);
});

/** A new context behind its own link, and the names of two new lists (rooms) for it. */
async function twoLists(t) {
  await connections(0);
  const link = await openLink(() => env.server.port);
  const context = await env.browser.newContext();
  t.after(async () => {
    await context.close();
    await link.close();
  });
  return { link, context, one: `mux-${randomUUID().slice(0, 8)}`, two: `mux-${randomUUID().slice(0, 8)}` };
}

/** The events of list `room` on the server. */
const events = async (room) => (await (await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(`todos/${room}`)}/events`)).json()).events;

test('tabs on two lists of one database share one connection; the tab holding it closes, another takes it, nothing lost', async (t) => {
  const { link, context, one, two } = await twoLists(t);
  // A leads list one and holds the connection; B leads list two through
  // A's connection; C follows B.
  const a = await openTodoApp(context, link.url, one);
  await waitStatus(a, 'A online', (s) => s.online);
  const b = await openTodoApp(context, link.url, two);
  const c = await openTodoApp(context, link.url, two);
  for (const [name, p] of [['B', b], ['C', c]]) await waitStatus(p, `${name} online`, (s) => s.online);
  await connections(1);
  assert.equal(link.webSockets(), 1, 'one WebSocket through the link');
  assert.equal(await leads(b), true, 'B leads list two');
  await addTodo(a, 'on list one');
  await addTodo(b, 'on list two, from B');
  await addTodo(c, 'on list two, from C');
  await waitStatus(a, 'A synced', (s) => s.pending === 0 && s.offset === 1);
  for (const [name, p] of [['B', b], ['C', c]]) {
    await waitStatus(p, `${name} synced`, (s) => s.online && s.pending === 0 && s.offset === 2);
  }
  assert.equal(await metric('logsync_connections'), 1, 'still one connection for both lists');
  const closed = performance.now();
  await a.close({ runBeforeUnload: false });
  await waitStatus(b, 'B online again, through its own tab now', (s) => s.online);
  t.diagnostic(`connection moved after its tab closed: ${(performance.now() - closed).toFixed(0)} ms`);
  await addTodo(c, 'on list two, after A closed');
  for (const [name, p] of [['B', b], ['C', c]]) {
    await waitStatus(p, `${name} at offset 3`, (s) => s.online && s.pending === 0 && s.offset === 3);
  }
  await connections(1);
  assert.equal((await events(one)).length, 1);
  assert.deepEqual((await events(two)).map((e) => e.offset), [1, 2, 3]);
  assert.deepEqual((await titles(b)).sort(), (await titles(c)).sort());
});

test('a silent holder (its page stopped in the debugger, as a frozen tab without warning) is taken over; running again, it lets the connection go', async (t) => {
  const { link, context, one, two } = await twoLists(t);
  const a = await openTodoApp(context, link.url, one);
  await waitStatus(a, 'A online', (s) => s.online);
  const b = await openTodoApp(context, link.url, two);
  await waitStatus(b, 'B online, through A', (s) => s.online);
  await connections(1);
  // Stops A's JavaScript where it is: no timer, no channel message, no
  // socket event runs, while its socket stays open.
  const cdp = await context.newCDPSession(a);
  await cdp.send('Debugger.enable');
  const paused = new Promise((resolve) => cdp.once('Debugger.paused', resolve));
  await cdp.send('Debugger.pause');
  await paused;
  const stopped = performance.now();
  // B's connection through A goes silent; B's hub takes the lock from A
  // after the leader timeout (3 s) and opens its own socket.
  await addTodo(b, 'added while A was stopped');
  await waitStatus(b, 'B synced through its own socket', (s) => s.online && s.pending === 0 && s.offset === 1, 20_000);
  const took = performance.now() - stopped;
  t.diagnostic(`silent holder taken over, B synced: ${took.toFixed(0)} ms after A stopped`);
  // The bound: leaderTimeoutMs (3 s) + up to 2 s for B's ping and its
  // check, then B's new socket, push and answer (3 s allowed here).
  assert.ok(took < 3_000 + 2_000 + 3_000, `taken over within the bound (${took.toFixed(0)} ms)`);
  await cdp.send('Debugger.resume');
  // Running again, A finds its lock stolen: it closes its socket, and its
  // own list reconnects through B.
  await connections(1);
  await addTodo(a, 'added in A after it ran again');
  await waitStatus(a, 'A synced through B', (s) => s.online && s.pending === 0 && s.offset === 1);
  await connections(1);
  assert.equal((await events(one)).length, 1);
  assert.equal((await events(two)).length, 1);
});
