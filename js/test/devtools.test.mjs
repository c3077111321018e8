// The Redux DevTools bridge against an object with the extension's
// documented API (connect → { init, send, subscribe, unsubscribe }): what
// the monitor is sent, and that time travel changes only the local view.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { configureStore } from '@reduxjs/toolkit';
import { createLogsyncStore, createSyncStore } from 'logsync';
import { logsync } from 'logsync/redux';

function fakeExtension() {
  const ext = {
    connections: [],
    connect(options) {
      const conn = {
        options,
        inits: [],
        sent: [],
        listeners: new Set(),
        init(state) { conn.inits.push(state); },
        send(action, state) { conn.sent.push({ type: action.type, action, state }); },
        subscribe(fn) { conn.listeners.add(fn); return () => conn.listeners.delete(fn); },
        unsubscribe() { conn.listeners.clear(); },
        // test driver: a message from the monitor
        message(msg) { for (const fn of [...conn.listeners]) fn(msg); },
      };
      ext.connections.push(conn);
      return conn;
    },
  };
  return ext;
}

const list = (state = [], action) => (action.type === 'add' ? [...state, action.id] : state);
const options = (extra) => ({
  url: 'ws://127.0.0.1:9/v1/ws',
  stream: 'test/devtools',
  reducer: list,
  dbName: `devtools-${randomUUID()}`,
  connect: false,
  ...extra,
});

async function until(what, check, ms = 5_000) {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('actions appear with their sync fate; hydration and restored actions too', async () => {
  const opts = options({ devtools: false });
  const first = await createSyncStore(opts);
  first.dispatch({ type: 'add', id: 'stored' });
  await first.close();

  const ext = fakeExtension();
  const store = createLogsyncStore({ ...opts, devtools: { extension: ext, name: 'my app' }, filter: (a) => a.id !== 'ui' });
  assert.equal(ext.connections.length, 1);
  const conn = ext.connections[0];
  assert.equal(conn.options.name, 'my app');
  assert.equal(conn.options.features.dispatch, false, 'dispatching from the monitor would sync: off');
  assert.equal(conn.options.features.jump, true);
  assert.deepEqual(conn.inits, [[]]);
  store.dispatch({ type: 'add', id: 'early' });
  store.dispatch({ type: 'add', id: 'ui' });
  await store.ready;
  await until('the seqs', () => store.pending().every((p) => p.seq !== null));
  const seq = store.pending().find((p) => p.action.id === 'early').seq;
  store.discard(seq);
  await until('the discard', () => conn.sent.some((s) => s.type === 'add (discarded)'));
  assert.deepEqual(conn.sent.map((s) => s.type), [
    'add (pending)',
    'add (local)',
    'add (pending, restored)',
    'add (rebased onto 0)',
    '@@logsync/hydrated (offset 0)',
    'add (discarded)',
  ]);
  assert.deepEqual(conn.sent[0].state, ['early']);
  assert.deepEqual(conn.sent[1].state, ['early', 'ui']);
  assert.deepEqual(conn.sent[4].state, ['stored', 'early', 'ui'], 'the hydrated state');
  assert.equal(conn.sent[5].action.seq, seq);
  assert.deepEqual(store.getState(), ['stored', 'ui']);
  await store.close();
  assert.equal(conn.listeners.size, 0, 'close() stops listening to the monitor');
});

test('time travel shows another state to the app, sends nothing, and ends on the next dispatch', async () => {
  const ext = fakeExtension();
  const store = configureStore({
    reducer: list,
    enhancers: (getDefault) => getDefault().concat(logsync({ ...options({ reducer: undefined }), devtools: { extension: ext } })),
    devTools: false,
  });
  await store.ready;
  const conn = ext.connections[0];
  store.dispatch({ type: 'add', id: 'a' });
  store.dispatch({ type: 'add', id: 'b' });
  await until('the outbox', () => store.getStatus().pending === 2);
  const states = [];
  store.subscribe(() => states.push(store.getState()));

  conn.message({ type: 'DISPATCH', payload: { type: 'JUMP_TO_ACTION', actionId: 1 }, state: JSON.stringify(['a']) });
  assert.deepEqual(store.getState(), ['a'], 'the app sees the state jumped to');
  assert.deepEqual(states, [['a']], 'subscribers were told');
  conn.message({ type: 'DISPATCH', payload: { type: 'JUMP_TO_STATE', index: 0 }, state: '[]' });
  assert.deepEqual(store.getState(), []);
  await null;
  assert.equal(store.getStatus().pending, 2, 'nothing was dispatched');
  assert.deepEqual(store.pending().map((p) => p.action.id), ['a', 'b']);
  conn.message({ type: 'ACTION', payload: '{"type":"add","id":"from-monitor"}' });
  assert.equal(store.pending().length, 2, 'actions from the monitor are not dispatched (they would sync)');

  conn.message({ type: 'DISPATCH', payload: { type: 'COMMIT' } });
  assert.deepEqual(store.getState(), ['a', 'b'], 'COMMIT returns to the live state');
  assert.deepEqual(conn.inits.at(-1), ['a', 'b']);

  conn.message({ type: 'DISPATCH', payload: { type: 'JUMP_TO_STATE' }, state: '["a"]' });
  store.dispatch({ type: 'add', id: 'c' });
  assert.deepEqual(store.getState(), ['a', 'b', 'c'], 'a dispatch of the app returns to the live state');
  assert.deepEqual(conn.sent.at(-1).state, ['a', 'b', 'c']);
  const reported = [];
  const saved = globalThis.reportError;
  globalThis.reportError = (err) => reported.push(err);
  try {
    conn.message({ type: 'DISPATCH', payload: { type: 'JUMP_TO_STATE' }, state: 'not json' });
  } finally {
    globalThis.reportError = saved;
  }
  assert.deepEqual(store.getState(), ['a', 'b', 'c'], 'a bad state from the monitor is ignored');
  assert.ok(reported[0] instanceof SyntaxError, 'and reported');
  await store.close();
});

test('with the DevTools connected, a first onIntent listener still hears pending for the actions pending then', async () => {
  const store = await createSyncStore(options({ devtools: { extension: fakeExtension() } }));
  store.dispatch({ type: 'add', id: 'a' });
  const first = [];
  const stop = store.onIntent((e) => first.push([e.type, e.action.id]));
  assert.deepEqual(first, [['pending', 'a']]);
  const second = [];
  store.onIntent((e) => second.push([e.type, e.action.id]));
  assert.deepEqual(second, [], 'only a first listener hears the replay');
  store.dispatch({ type: 'add', id: 'b' });
  assert.deepEqual(first, [['pending', 'a'], ['pending', 'b']]);
  assert.deepEqual(second, [['pending', 'b']]);
  stop();
  await store.close();
});

test('no extension: nothing is connected and nothing is needed', async () => {
  assert.equal(typeof window, 'undefined');
  const store = createLogsyncStore(options({}));
  store.dispatch({ type: 'add', id: 'a' });
  await store.ready;
  assert.deepEqual(store.getState(), ['a']);
  await store.close();
  const ext = fakeExtension();
  const off = createLogsyncStore(options({ devtools: false }));
  assert.equal(ext.connections.length, 0);
  await off.close();
});

test('window.__REDUX_DEVTOOLS_EXTENSION__ is found when present', async (t) => {
  const ext = fakeExtension();
  globalThis.window = { __REDUX_DEVTOOLS_EXTENSION__: ext };
  t.after(() => { delete globalThis.window; });
  const store = createLogsyncStore(options({}));
  assert.equal(ext.connections.length, 1);
  assert.equal(ext.connections[0].options.name, 'logsync test/devtools');
  await store.close();
});
