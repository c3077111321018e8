// The upgrade walk-through of examples/todo-upgrade/README.md, against a
// real logsync-server (SQLite) and the real store (fake-indexeddb in
// Node): the TodoMVC app's version 1 (a todo's `text`) queues work
// offline, the server is upgraded to version 2 (`title`), the app is
// reloaded as version 2 on the same IndexedDB database; its stored state
// is migrated, its queued version-1 actions are upcast and each appended
// once, and a tab still running version 1 stops at the first version-2
// event instead of misreading it.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createSyncStore } from 'logsync';
import * as v1 from '../../examples/todo-react/src/todos.js';
import * as v2 from '../../examples/todo-upgrade/todos-v2.js';
import { serverForFile, skip, until } from './real-server.mjs';

const V1 = fileURLToPath(new URL('../../examples/todo-react/src/todos.js', import.meta.url));
const V2 = fileURLToPath(new URL('../../examples/todo-upgrade/todos-v2.js', import.meta.url));
const files = serverForFile();

const fast = { devtools: false, backoffMinMs: 50, backoffMaxMs: 200 };
const v2Options = { reducer: v2.todosReducer, initialState: v2.initialState, schemaVersion: v2.schemaVersion, upcast: v2.upcast, migrate: v2.migrate };

async function serverState(port, stream) {
  const r = await fetch(`http://127.0.0.1:${port}/v1/streams/${encodeURIComponent(stream)}/state`);
  assert.equal(r.status, 200);
  return r.json();
}

async function events(port, stream) {
  const r = await fetch(`http://127.0.0.1:${port}/v1/streams/${encodeURIComponent(stream)}/events?after=0`);
  assert.equal(r.status, 200);
  return (await r.json()).events;
}

test('version 1 → 2 (text → title): queued offline work is upcast and appended once, the stored state migrates, an old tab stops at new data', { skip }, async (t) => {
  const server = files.server;
  await server.stop();
  await server.start({ args: ['--reducer', `todos/*=${V1}`] });
  const stream = `todos/${randomUUID()}`;
  const dbName = `upgrade-${randomUUID()}`;
  const url = () => `ws://127.0.0.1:${server.port}/v1/ws`;

  // Version 1, online: one todo, confirmed.
  const old = await createSyncStore({ url: url(), stream, reducer: v1.todosReducer, initialState: v1.initialState, dbName, ...fast });
  old.dispatch({ type: 'todo/added', id: 'a', text: 'milk' });
  await until('the first todo confirmed', () => old.status.pending === 0 && old.status.offset === 1);

  // Offline (the server is down for its upgrade): two more actions queue.
  await server.stop();
  await until('offline', () => old.status.online === false);
  old.dispatch({ type: 'todo/added', id: 'b', text: 'eggs' });
  old.dispatch({ type: 'todo/edited', id: 'a', text: 'oat milk' });
  await until('both written to the outbox', () => old.status.pending === 2 && old.status.writing === 0);
  await old.close();

  // The server comes back with version 2 of the module, same database.
  await server.start({ args: ['--reducer', `todos/*=${V2}`] });
  const before = await serverState(server.port, stream);
  assert.deepEqual(before.state.todos, [{ id: 'a', title: 'milk', completed: false }], 'the server migrated or rebuilt its state');

  // The app, reloaded as version 2 on the same database, opens offline:
  // the stored version-1 state is migrated and the queued actions upcast.
  const app = await createSyncStore({ url: url(), stream, dbName, connect: false, ...v2Options, ...fast });
  t.after(() => app.close());
  assert.deepEqual(app.getState().todos, [
    { id: 'a', title: 'oat milk', completed: false },
    { id: 'b', title: 'eggs', completed: false },
  ]);
  assert.equal(app.status.pending, 2);
  app.reconnect();
  await until('the queued work confirmed', () => app.status.pending === 0 && app.status.offset === 3);

  // Each queued action is in the log once, as it was made (version 1);
  // the server's fold upcast them like the app's.
  const log = await events(server.port, stream);
  assert.deepEqual(log.map((e) => [e.payload.type, e.payload.text, e.schema]), [
    ['todo/added', 'milk', 1],
    ['todo/added', 'eggs', 1],
    ['todo/edited', 'oat milk', 1],
  ]);
  const after = await serverState(server.port, stream);
  assert.deepEqual(after, { offset: 3, state: app.getState() });

  // A version-2 action; then a tab still running version 1 (another
  // device's old build) follows the stream: it applies the version-1
  // events and stops at the version-2 one, told to reload.
  app.dispatch(v2.addTodo('tea', 'c'));
  await until('the version-2 action confirmed', () => app.status.pending === 0 && app.status.offset === 4);
  assert.equal((await events(server.port, stream))[3].schema, 2);
  const stale = await createSyncStore({ url: url(), stream, reducer: v1.todosReducer, initialState: v1.initialState, dbName: `stale-${randomUUID()}`, ...fast });
  t.after(() => stale.close());
  await until('the old tab outdated', () => stale.status.lastError?.code === 'SCHEMA_TOO_NEW');
  assert.equal(stale.status.outdated, true);
  assert.equal(stale.status.offset, 3, 'it applied nothing of version 2');
  assert.deepEqual(stale.getState().todos.map((x) => x.text), ['oat milk', 'eggs']);
  assert.equal(stale.status.online, false);
});

test('a version-2 app whose server still runs version 1 keeps its action, undecided, until a version-2 server takes it', { skip }, async (t) => {
  const server = await files.start();
  await server.stop();
  await server.start({ args: ['--reducer', `todos/*=${V1}`] });
  const stream = `todos/${randomUUID()}`;
  const url = `ws://127.0.0.1:${server.port}/v1/ws`;
  const app = await createSyncStore({ url, stream, dbName: `ahead-${randomUUID()}`, ...v2Options, ...fast });
  t.after(() => app.close());
  app.dispatch(v2.addTodo('tea', 'c'));
  await until('the old server refused it undecided', () => app.status.lastError?.code === 'SCHEMA_TOO_NEW');
  assert.equal(app.status.pending, 1, 'the action is kept');
  assert.equal(app.status.outdated, false, 'this app is not the old one');
  assert.deepEqual(await events(server.port, stream), [], 'nothing was appended');

  // The server is upgraded: the action goes through, once.
  await server.stop();
  await server.start({ args: ['--reducer', `todos/*=${V2}`] });
  await until('the action confirmed by the upgraded server', () => app.status.pending === 0 && app.status.offset === 1);
  const log = await events(server.port, stream);
  assert.deepEqual(log.map((e) => [e.payload.title, e.schema]), [['tea', 2]]);
  assert.deepEqual((await serverState(server.port, stream)).state.todos, [{ id: 'c', title: 'tea', completed: false }]);
});
