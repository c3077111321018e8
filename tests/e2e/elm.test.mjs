// The Elm TodoMVC example, compiled with `elm make --optimize` and built
// with Vite, in headless Chromium against a real logsync-server (SQLite)
// that folds todos/* with the example's module: add, toggle, edit, delete;
// an Elm window and a React window in one room; offline, reloaded offline
// and back online with each action once in the server's log; a rejection
// and a refused token shown by the Elm app. Along the way, the server's
// `counts` view as the Elm app shows it (a view store, connectElmViewPorts,
// Logsync.View): live, kept offline and across an offline reload.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { launchBrowser, waitFor } from './lib/browser.mjs';
import { openLink } from './lib/link.mjs';
import { ELM_APP_DIST, ROOT, startServer } from './lib/server.mjs';
import {
  addTodo, deleteTodo, editTodo, openTodoApp, serverEvents, status, titles, toggleTodo,
  waitOfflineReady, waitStatus, waitTitles, waitTodos,
} from './lib/todo-page.mjs';

let server;
let browser;

// The module whose `views` (open, counts) the server serves.
const REDUCER = ['--reducer', `todos/*=${join(ROOT, 'examples', 'todo-react', 'src', 'todos.js')}`];

before(async () => {
  server = await startServer({ staticDir: ELM_APP_DIST, args: REDUCER });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const newRoom = () => `elm-${randomUUID().slice(0, 8)}`;

async function newContext(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  return context;
}

/** The Elm app at `baseUrl` in a fresh context, online. */
async function openElm(t, baseUrl, room) {
  const page = await openTodoApp(await newContext(t), baseUrl, room);
  await page.waitForSelector('section.todoapp', { timeout: 15_000 });
  await waitStatus(page, `Elm window in ${room} online`, (s) => s.online);
  return page;
}

const types = (events) => events.map((e) => e.payload.type);

/** The server's `counts` view as the Elm app shows it, or null before it has one. */
async function serverCounts(page) {
  const el = page.locator('[data-testid=server-counts]');
  if (await el.count() === 0) return null;
  return el.evaluate((e) => ({
    all: Number(e.dataset.all),
    completed: Number(e.dataset.completed),
    offset: Number(e.dataset.offset),
    online: e.dataset.online === 'true',
    text: e.textContent,
  }));
}

function waitServerCounts(page, what, predicate, timeout = 15_000) {
  return waitFor(what, async () => {
    const c = await serverCounts(page);
    return c && predicate(c) ? c : false;
  }, { timeout });
}

test('Elm: add, toggle, edit, delete; a second Elm window follows; the log has each action once', async (t) => {
  const room = newRoom();
  const a = await openElm(t, server.url, room);
  const b = await openElm(t, server.url, room);
  assert.equal(await a.title(), 'Logsync • TodoMVC in Elm');

  await addTodo(a, 'milk');
  await addTodo(a, 'eggs');
  await waitTodos(b, [{ text: 'milk', completed: false }, { text: 'eggs', completed: false }]);

  await toggleTodo(a, 'milk');
  await waitTodos(b, [{ text: 'milk', completed: true }, { text: 'eggs', completed: false }]);
  assert.equal(await a.locator('[data-testid=todo-count]').textContent(), '1 item left');
  // The server's counts view, in both windows, once the server has the toggle.
  // (A wrong value times out the wait: it is the assertion.)
  for (const page of [a, b]) {
    const c = await waitServerCounts(page, 'the server\'s counts at offset 3: 2 todos, 1 completed', (c) => c.offset === 3 && c.all === 2 && c.completed === 1);
    assert.equal(c.online, true);
    assert.equal(c.text, 'on the server: 2 todos, 1 completed');
  }

  await editTodo(a, 'eggs', 'free-range eggs');
  await waitTodos(b, [{ text: 'milk', completed: true }, { text: 'free-range eggs', completed: false }]);

  await deleteTodo(a, 'milk');
  await waitTodos(b, [{ text: 'free-range eggs', completed: false }]);

  // And the other way round.
  await addTodo(b, 'bread');
  await waitTodos(a, [{ text: 'free-range eggs', completed: false }, { text: 'bread', completed: false }]);

  await waitStatus(a, 'A synced at offset 6', (s) => s.pending === 0 && s.offset === 6);
  await waitStatus(b, 'B synced at offset 6', (s) => s.pending === 0 && s.offset === 6);
  for (const page of [a, b]) {
    await waitServerCounts(page, 'the server\'s counts at offset 6: 2 todos, none completed', (c) => c.offset === 6 && c.all === 2 && c.completed === 0);
  }
  const events = await serverEvents(server.url, `todos/${room}`);
  assert.deepEqual(types(events), ['todo/added', 'todo/added', 'todo/toggled', 'todo/edited', 'todo/deleted', 'todo/added']);
  const [milk, eggs, toggled, edited, deleted] = events.map((e) => e.payload);
  assert.equal(milk.text, 'milk');
  assert.equal(toggled.id, milk.id);
  assert.deepEqual(edited, { type: 'todo/edited', id: eggs.id, text: 'free-range eggs' });
  assert.equal(deleted.id, milk.id);
  assert.notEqual(milk.id, eggs.id, 'each new todo gets its own id');
});

test('an Elm window and a React window in the same room converge', async (t) => {
  // The React build, served by Vite's preview server, which forwards /v1
  // (HTTP and WebSocket) to the same logsync-server.
  const vite = await import(pathToFileURL(join(ROOT, 'examples', 'todo-react', 'node_modules', 'vite', 'dist', 'node', 'index.js')).href);
  const preview = await vite.preview({
    root: join(ROOT, 'examples', 'todo-react'),
    configFile: false,
    logLevel: 'warn',
    preview: { host: '127.0.0.1', port: 0, strictPort: true, proxy: { '/v1': { target: server.url, ws: true } } },
  });
  t.after(() => preview.close());
  const reactUrl = preview.resolvedUrls.local[0].replace(/\/$/, '');

  const room = newRoom();
  const elm = await openElm(t, server.url, room);
  const react = await openTodoApp(await newContext(t), reactUrl, room);
  await react.waitForSelector('[data-testid=new-todo]', { timeout: 15_000 });
  await waitStatus(react, 'React online', (s) => s.online);
  assert.notEqual(await react.title(), await elm.title(), 'two different apps');

  await addTodo(elm, 'from Elm');
  await waitTitles(react, ['from Elm']);
  await addTodo(react, 'from React');
  await waitTitles(elm, ['from Elm', 'from React']);
  await toggleTodo(react, 'from Elm');
  await editTodo(elm, 'from React', 'from React, edited in Elm');

  const final = [{ text: 'from Elm', completed: true }, { text: 'from React, edited in Elm', completed: false }];
  await waitTodos(elm, final);
  await waitTodos(react, final);
  await waitStatus(elm, 'Elm synced at offset 4', (s) => s.pending === 0 && s.offset === 4);
  await waitStatus(react, 'React synced at offset 4', (s) => s.pending === 0 && s.offset === 4);
  // The edit (offset 4) leaves the counts as they were: the server sends
  // the result only when it changes, so it reflects offset 3 or 4.
  const c = await waitServerCounts(elm, 'the server\'s counts: 2 todos, 1 completed', (c) => c.all === 2 && c.completed === 1);
  assert.ok(c.offset === 3 || c.offset === 4, `offset ${c.offset}`);
});

test('Elm offline: actions, a reload while offline, back online: each action once in the log', async (t) => {
  const room = newRoom();
  const stream = `todos/${room}`;
  const link = await openLink(() => server.port);
  t.after(() => link.close());
  const context = await newContext(t);
  const a = await openTodoApp(context, link.url, room);
  await waitStatus(a, 'A online', (s) => s.online);
  const b = await openElm(t, server.url, room);

  await addTodo(b, 'from B before');
  await waitTitles(a, ['from B before']);
  await waitOfflineReady(a);
  // The view store has the server's counts (and has cached them).
  await waitServerCounts(a, 'A: the server\'s counts at offset 1', (c) => c.online && c.offset === 1 && c.all === 1 && c.completed === 0);

  link.cut();
  await context.setOffline(true);
  await waitStatus(a, 'A offline', (s) => !s.online);
  await waitServerCounts(a, 'A: the counts view offline', (c) => !c.online);

  for (const text of ['offline one', 'offline two']) await addTodo(a, text);
  await toggleTodo(a, 'from B before');
  await waitTodos(a, [
    { text: 'from B before', completed: true }, { text: 'offline one', completed: false }, { text: 'offline two', completed: false },
  ]);
  assert.equal((await status(a)).pending, 3);
  // The footer counts this window's state; the server's counts are what the server confirmed.
  assert.equal(await a.locator('[data-testid=todo-count]').textContent(), '2 items left');
  const offlineCounts = await serverCounts(a);
  assert.deepEqual(offlineCounts, { all: 1, completed: 0, offset: 1, online: false, text: 'last seen on the server: 1 todo, 0 completed' });

  // The app itself comes from the service worker's cache, the list and the
  // outbox from IndexedDB.
  await a.reload();
  await a.waitForSelector('section.todoapp', { timeout: 15_000 });
  await waitTitles(a, ['from B before', 'offline one', 'offline two'], 5_000);
  const reloaded = await status(a);
  assert.equal(reloaded.online, false, 'still offline after the reload');
  assert.equal(reloaded.pending, 3, 'the outbox survived the reload');
  // The view store opened from its IndexedDB cache.
  const cached = await waitServerCounts(a, 'A: the cached counts after the reload', () => true);
  assert.deepEqual(cached, offlineCounts);
  // The reloaded app still works offline.
  await addTodo(a, 'offline three');
  await editTodo(a, 'offline one', 'offline one, edited');
  await waitStatus(a, 'five pending', (s) => s.pending === 5);
  assert.deepEqual(await titles(b), ['from B before'], 'B cannot have them yet');
  assert.equal((await serverEvents(server.url, stream)).length, 1);

  link.restore();
  await context.setOffline(false);
  await waitStatus(a, 'A back online and synced', (s) => s.online && s.pending === 0, 30_000);
  const final = [
    { text: 'from B before', completed: true },
    { text: 'offline one, edited', completed: false },
    { text: 'offline two', completed: false },
    { text: 'offline three', completed: false },
  ];
  await waitTodos(b, final);
  await waitTodos(a, final);
  await waitStatus(b, 'B at offset 6', (s) => s.offset === 6);
  // The counts view reconnects with backoff (it grew while offline: up to 30 s).
  // (The last edit leaves the counts as they were: offset 5 or 6.)
  const back = await waitServerCounts(a, 'A: the server\'s counts, 4 todos, 1 completed', (c) => c.online && c.all === 4 && c.completed === 1, 45_000);
  assert.ok(back.offset === 5 || back.offset === 6, `offset ${back.offset}`);

  const events = await serverEvents(server.url, stream);
  assert.deepEqual(types(events), ['todo/added', 'todo/added', 'todo/added', 'todo/toggled', 'todo/added', 'todo/edited']);
  const fromA = events.slice(1);
  assert.equal(new Set(fromA.map((e) => e.client_id)).size, 1, 'all from one client');
  assert.deepEqual(fromA.map((e) => e.seq), [1, 2, 3, 4, 5], 'each seq once, in order');
  const added = fromA.filter((e) => e.payload.type === 'todo/added').map((e) => e.payload.text);
  assert.deepEqual(added, ['offline one', 'offline two', 'offline three'], 'each offline todo exactly once');
});

test('a todo too long for the server is refused before it shows, and the Elm app says why (PAYLOAD_TOO_LARGE)', async (t) => {
  const small = await startServer({ staticDir: ELM_APP_DIST, args: ['--max-payload-bytes', '200'] });
  t.after(() => small.close());
  const room = newRoom();
  const page = await openElm(t, small.url, room);

  await addTodo(page, 'short enough');
  // Confirmed: the store has met the server and knows its limit.
  await waitStatus(page, 'the first todo confirmed', (s) => s.online && s.offset === 1 && s.pending === 0);
  const long = `too long ${'x'.repeat(300)}`;
  await addTodo(page, long);

  const problem = page.locator('[data-testid=problem]');
  await problem.waitFor({ timeout: 15_000 });
  assert.match(await problem.textContent(), /the limit is 200 \(PAYLOAD_TOO_LARGE\)/);
  await waitTitles(page, ['short enough']);
  assert.equal(await page.locator('[data-testid=rejection]').count(), 0, 'nothing was applied, so nothing is rolled back');
  await waitStatus(page, 'nothing pending', (s) => s.pending === 0);

  const events = await serverEvents(small.url, `todos/${room}`);
  assert.deepEqual(events.map((e) => e.payload.text), ['short enough']);

  await problem.locator('button').click();
  await problem.waitFor({ state: 'detached' });
});

test('a server that wants a token: the Elm app shows needsToken and the typed code, and keeps working offline', async (t) => {
  const secured = await startServer({ staticDir: ELM_APP_DIST, env: { LOGSYNC_JWT_SECRET: 'e2e-secret-'.padEnd(48, 'x') } });
  t.after(() => secured.close());
  const page = await openTodoApp(await newContext(t), secured.url, newRoom());
  await page.locator('[data-testid=needs-token]').waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('[data-testid=last-error]').textContent(), 'UNAUTHORIZED');
  assert.equal((await status(page)).online, false);
  await addTodo(page, 'kept until a token comes');
  await waitTitles(page, ['kept until a token comes']);
  await waitStatus(page, 'one pending', (s) => s.pending === 1);
});
