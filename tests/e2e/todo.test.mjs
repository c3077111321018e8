// The React TodoMVC example in two headless Chromium contexts (two
// installations: separate IndexedDB, separate client ids) against a real
// logsync-server with its SQLite file. Each context reaches the server
// through its own link, a TCP proxy the test can cut like a network.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { launchBrowser, waitFor } from './lib/browser.mjs';
import { openLink } from './lib/link.mjs';
import { startServer } from './lib/server.mjs';
import { addTodo, openTodoApp, status, titles, waitOfflineReady, waitStatus, waitTitles } from './lib/todo-page.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Two fresh installations in one new room, each through its own link. */
async function twoWindows(t) {
  const room = `e2e-${randomUUID().slice(0, 8)}`;
  const linkA = await openLink(() => server.port);
  const linkB = await openLink(() => server.port);
  const contextA = await browser.newContext();
  const contextB = await browser.newContext();
  t.after(async () => {
    await contextA.close();
    await contextB.close();
    await linkA.close();
    await linkB.close();
  });
  const a = await openTodoApp(contextA, linkA.url, room);
  const b = await openTodoApp(contextB, linkB.url, room);
  await waitStatus(a, 'A online', (s) => s.online);
  await waitStatus(b, 'B online', (s) => s.online);
  return { room, a, b, contextA, contextB, linkA, linkB };
}

test('a todo added in context A appears in context B within 1 second', async (t) => {
  const { a, b } = await twoWindows(t);
  const started = performance.now();
  await addTodo(a, 'buy milk');
  await b.waitForSelector('[data-testid=todo-title]:text-is("buy milk")', { timeout: 1_000 });
  const elapsed = performance.now() - started;
  t.diagnostic(`A -> B in ${elapsed.toFixed(0)} ms`);
  assert.ok(elapsed < 1_000, `took ${elapsed} ms`);
  assert.deepEqual(await titles(a), ['buy milk']);
  assert.deepEqual(await titles(b), ['buy milk']);
  await waitStatus(a, 'A synced', (s) => s.pending === 0 && s.offset === 1);
  await waitStatus(b, 'B at offset 1', (s) => s.offset === 1);
});

test('offline: A adds three todos, reloads while offline, comes back; B gets each exactly once', async (t) => {
  const { a, b, contextA, linkA } = await twoWindows(t);
  await addTodo(b, 'from B before');
  await waitTitles(a, ['from B before']);
  await waitOfflineReady(a);

  // Offline: the network is cut (open connections reset, new ones refused)
  // and the browser is told so (navigator.onLine, fetch).
  linkA.cut();
  await contextA.setOffline(true);
  await waitStatus(a, 'A offline', (s) => !s.online);

  const offlineTodos = ['offline one', 'offline two', 'offline three'];
  for (const text of offlineTodos) await addTodo(a, text);
  await waitTitles(a, ['from B before', ...offlineTodos]);
  assert.equal((await status(a)).pending, 3);

  await a.reload();
  await a.waitForSelector('[data-testid=status]', { timeout: 15_000 });
  await waitTitles(a, ['from B before', ...offlineTodos], 5_000);
  const reloaded = await status(a);
  assert.equal(reloaded.online, false, 'still offline after the reload');
  assert.equal(reloaded.pending, 3, 'the outbox survived the reload');
  assert.deepEqual(await titles(b), ['from B before'], 'B cannot have them yet');

  // The network first, then the browser's `online` event (which makes the
  // store connect at once).
  linkA.restore();
  await contextA.setOffline(false);
  await waitStatus(a, 'A back online and synced', (s) => s.online && s.pending === 0, 30_000);
  const all = ['from B before', ...offlineTodos];
  await waitTitles(b, all);
  await waitTitles(a, all);
  const onB = await titles(b);
  for (const text of offlineTodos) {
    assert.equal(onB.filter((x) => x === text).length, 1, `"${text}" exactly once on B`);
  }
  await waitStatus(b, 'B at offset 4', (s) => s.offset === 4);
  assert.equal((await status(a)).offset, 4);
});

test('the server restarts in the middle: both contexts reconnect and converge', async (t) => {
  const { a, b } = await twoWindows(t);
  await addTodo(a, 'before restart');
  await waitTitles(b, ['before restart']);
  await waitStatus(a, 'A synced', (s) => s.pending === 0);

  // kill -9: no goodbye frames; what was acknowledged must survive.
  const pid = server.pid;
  await server.kill();
  await waitStatus(a, 'A offline', (s) => !s.online);
  await waitStatus(b, 'B offline', (s) => !s.online);
  await addTodo(a, 'A while down');
  await addTodo(b, 'B while down');
  await server.start();
  assert.notEqual(server.pid, pid, 'a new server process');

  const all = ['before restart', 'A while down', 'B while down'];
  const sa = await waitStatus(a, 'A reconnected and synced', (s) => s.online && s.pending === 0, 30_000);
  const sb = await waitStatus(b, 'B reconnected and synced', (s) => s.online && s.pending === 0, 30_000);
  await waitTitles(a, all);
  await waitTitles(b, all);
  await waitFor('equal offsets', async () => {
    const [x, y] = [await status(a), await status(b)];
    return x.offset === 3 && y.offset === 3;
  });
  assert.deepEqual((await titles(a)), (await titles(b)), 'same order on both');
  t.diagnostic(`converged at offset 3 (A ${sa.offset}, B ${sb.offset} when first synced)`);
});
