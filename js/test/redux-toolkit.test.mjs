// The `logsync()` store enhancer in Redux Toolkit's configureStore and in
// Redux's createStore, and stores created synchronously that hydrate from
// IndexedDB in the background — on the real wasm module in Node
// (IndexedDB is fake-indexeddb; stores open with `connect: false`).
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { configureStore, createListenerMiddleware, createSlice } from '@reduxjs/toolkit';
import { applyMiddleware, legacy_createStore as createStore } from 'redux';
import { createLogsyncStore, createSyncStore, LogsyncError } from 'logsync';
import { logsync } from 'logsync/redux';

const slice = createSlice({
  name: 'todos',
  initialState: { items: [], panelOpen: false },
  reducers: {
    added(state, action) {
      state.items.push(action.payload);
    },
    panelToggled(state) {
      state.panelOpen = !state.panelOpen;
    },
  },
});
const { added, panelToggled } = slice.actions;

const where = () => ({
  url: 'ws://127.0.0.1:9/v1/ws',
  stream: 'test/rtk',
  dbName: `rtk-${randomUUID()}`,
  connect: false,
  devtools: false,
});

// Waits for a condition, failing after a deadline.
async function until(what, check, ms = 5_000) {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const types = (list) => list.map((p) => `${p.action.type}:${p.action.payload ?? ''}`);

test('configureStore + logsync(): thunks and listener middleware dispatch; only plain, synced actions reach the outbox', async () => {
  const options = where();
  const listener = createListenerMiddleware();
  listener.startListening({
    actionCreator: added,
    effect: (action, api) => {
      if (action.payload === 'milk') api.dispatch(added('bread'));
    },
  });
  const store = configureStore({
    reducer: slice.reducer,
    middleware: (getDefault) => getDefault().prepend(listener.middleware),
    enhancers: (getDefault) => getDefault().concat(logsync({ ...options, filter: (a) => a.type !== panelToggled.type })),
    devTools: false,
  });
  // Usable at once: no await.
  assert.deepEqual(store.getState(), { items: [], panelOpen: false });
  assert.equal(store.getStatus().hydrated, false);
  let notified = 0;
  store.subscribe(() => notified++);

  const thunkResult = store.dispatch((dispatch, getState) => {
    dispatch(added('eggs'));
    return getState().items.length;
  });
  assert.equal(thunkResult, 1, 'redux-thunk ran the function and returned its result');
  store.dispatch(added('milk')); // the listener adds bread
  store.dispatch(panelToggled()); // local: not synced
  assert.deepEqual(store.getState(), { items: ['eggs', 'milk', 'bread'], panelOpen: true });
  assert.ok(notified >= 4, `subscribers notified (${notified})`);

  await store.ready;
  assert.equal(store.getStatus().hydrated, true);
  await until('the outbox to hold the three synced actions', () => store.getStatus().pending === 3);
  assert.deepEqual(types(store.pending()), ['todos/added:eggs', 'todos/added:milk', 'todos/added:bread'],
    'each synced action once, in order; no function, no local action');
  assert.deepEqual(store.getState(), { items: ['eggs', 'milk', 'bread'], panelOpen: true }, 'the local action stays in the view');

  // After hydration too: a local action sits on top of synced ones.
  store.dispatch(added('tea'));
  store.dispatch(panelToggled());
  assert.deepEqual(store.getState(), { items: ['eggs', 'milk', 'bread', 'tea'], panelOpen: false });
  store.dispatch(panelToggled());
  await store.close();

  const again = await createSyncStore({ ...options, reducer: slice.reducer });
  try {
    assert.deepEqual(again.getState(), { items: ['eggs', 'milk', 'bread', 'tea'], panelOpen: false },
      'synced actions came back from IndexedDB; local ones were never stored');
    assert.equal(again.status.pending, 4);
  } finally {
    await again.close();
  }
});

test('Redux createStore + applyMiddleware + logsync(): preloadedState is the initial state of the log', async () => {
  const options = where();
  const seen = [];
  const logger = () => (next) => (action) => {
    seen.push(typeof action === 'function' ? 'function' : action.type);
    return next(action);
  };
  const thunk = ({ dispatch, getState }) => (next) => (action) => (typeof action === 'function' ? action(dispatch, getState) : next(action));
  const store = createStore(slice.reducer, { items: ['preloaded'], panelOpen: false }, (create) => applyMiddleware(thunk, logger)(logsync(options)(create)));
  assert.deepEqual(store.getState().items, ['preloaded']);
  store.dispatch((dispatch) => dispatch(added('a')));
  assert.deepEqual(seen, ['todos/added'], 'the thunk never reached the logger or the store');
  assert.deepEqual(store.getState().items, ['preloaded', 'a']);
  await store.ready;
  assert.deepEqual(store.getState().items, ['preloaded', 'a']);
  // replaceReducer recomputes the log with the new reducer (hot reloading).
  store.replaceReducer((state, action) => {
    const next = slice.reducer(state, action);
    return action.type === added.type ? { ...next, items: next.items.map((s) => s.toUpperCase()) } : next;
  });
  assert.deepEqual(store.getState().items, ['PRELOADED', 'A']);
  await store.close();
});

test('logsync() refuses a reducer or an initial state in its options, and a bad filter', () => {
  assert.throws(() => logsync({ ...where(), reducer: slice.reducer }), (err) => err instanceof LogsyncError && /come from createStore\/configureStore/.test(err.message));
  assert.throws(() => logsync(null), (err) => err.code === 'INVALID_REQUEST');
  assert.throws(() => configureStore({
    reducer: slice.reducer,
    enhancers: (getDefault) => getDefault().concat(logsync({ ...where(), filter: 'ui' })),
  }), (err) => err.code === 'INVALID_REQUEST' && /options\.filter must be a function/.test(err.message));
});

// A list reducer: the state is the ids added, in order.
const list = (state = [], action) => (action.type === 'add' ? [...state, action.id] : state);

test('dispatch before hydration: folded onto the restored state once it is in, each action once in the outbox', async () => {
  const options = { ...where(), stream: 'test/hydrate', reducer: list };
  const first = await createSyncStore(options);
  first.dispatch({ type: 'add', id: 'stored-1' });
  first.dispatch({ type: 'add', id: 'stored-2' });
  await first.close();

  const store = createLogsyncStore(options);
  assert.deepEqual(store.getState(), [], 'the initial state until the stored one is in');
  assert.equal(store.status.hydrated, false);
  const states = [];
  store.subscribe(() => states.push(store.getState()));
  const statuses = [];
  store.onStatus((s) => statuses.push(s));
  store.dispatch({ type: 'add', id: 'early-1' });
  store.dispatch({ type: 'add', id: 'early-2' });
  assert.deepEqual(store.getState(), ['early-1', 'early-2'], 'applied at once');
  assert.equal(store.status.pending, 2);
  assert.deepEqual(store.pending().map((p) => [p.seq, p.action.id]), [[null, 'early-1'], [null, 'early-2']]);
  assert.throws(() => store.discard(1), (err) => err.code === 'INVALID_REQUEST' && /await store\.ready/.test(err.message));

  await store.ready;
  assert.equal(store.status.hydrated, true);
  assert.deepEqual(store.getState(), ['stored-1', 'stored-2', 'early-1', 'early-2'], 'rebased onto the restored state');
  assert.deepEqual(states.at(-1), ['stored-1', 'stored-2', 'early-1', 'early-2'], 'subscribers were told of the hydrated state');
  assert.ok(statuses.some((s) => s.hydrated), 'onStatus saw hydrated');
  await until('the outbox', () => store.status.pending === 4);
  const written = () => store.pending().every((p) => p.seq !== null);
  await until('seqs', written);
  const pending = store.pending();
  assert.deepEqual(pending.map((p) => p.action.id), ['stored-1', 'stored-2', 'early-1', 'early-2']);
  assert.equal(new Set(pending.map((p) => p.seq)).size, 4, 'four distinct seqs: none twice');
  await store.close();

  const again = await createSyncStore(options);
  try {
    assert.deepEqual(again.getState(), ['stored-1', 'stored-2', 'early-1', 'early-2'], 'none lost, none applied twice');
    assert.equal(again.status.pending, 4);
  } finally {
    await again.close();
  }
});

test('close() before hydration still records what was dispatched', async () => {
  const options = { ...where(), stream: 'test/early-close', reducer: list };
  const store = createLogsyncStore(options);
  store.dispatch({ type: 'add', id: 'x' });
  await store.close();
  assert.throws(() => store.dispatch({ type: 'add', id: 'y' }), (err) => err.code === 'STORE_CLOSED');
  const again = await createSyncStore(options);
  try {
    assert.deepEqual(again.getState(), ['x']);
  } finally {
    await again.close();
  }
});

test('close() before hydration: no listener hears anything after it, and no connection is opened', async (t) => {
  let sockets = 0;
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = class {
    constructor() {
      sockets++;
      throw new Error('no connection in this test');
    }
  };
  t.after(() => {
    if (saved === undefined) delete globalThis.WebSocket;
    else globalThis.WebSocket = saved;
  });
  const options = { ...where(), stream: 'test/close-early', reducer: list, connect: true };
  const store = createLogsyncStore(options);
  store.dispatch({ type: 'add', id: 'x' });
  const heard = [];
  store.subscribe(() => heard.push('subscribe'));
  store.onStatus(() => heard.push('status'));
  store.onIntent((e) => heard.push(`intent ${e.type}`));
  store.onError((err) => heard.push(`error ${err.code}`));
  heard.length = 0; // a first onIntent listener hears pending for x
  await store.close();
  await store.ready;
  assert.equal(sockets, 0, 'no WebSocket');
  assert.deepEqual(heard, [], 'nothing after close()');
  const again = await createSyncStore({ ...options, connect: false });
  try {
    assert.deepEqual(again.getState(), ['x'], 'what was dispatched is recorded');
  } finally {
    await again.close();
  }
});

test('a store that cannot open: ready rejects with a LogsyncError, onError hears it, the state stays usable in memory', async () => {
  const store = createLogsyncStore({ ...where(), stream: 'has spaces', reducer: list });
  const errors = [];
  store.onError((err) => errors.push(err));
  store.dispatch({ type: 'add', id: 'kept in memory' });
  await assert.rejects(store.ready, (err) => {
    assert.ok(err instanceof LogsyncError, String(err));
    assert.equal(err.code, 'INVALID_STREAM');
    return true;
  });
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'INVALID_STREAM');
  assert.equal(store.status.hydrated, false);
  assert.equal(store.status.lastError.code, 'INVALID_STREAM');
  assert.deepEqual(store.getState(), ['kept in memory']);
  store.dispatch({ type: 'add', id: 'more' });
  assert.deepEqual(store.getState(), ['kept in memory', 'more']);
  assert.equal(store.status.pending, 0, 'nothing waits to be stored or sent');
  await assert.rejects(store.synced(), (err) => err.code === 'INVALID_STREAM');
  await store.close();
});

test('a store that cannot open keeps its state across replaceReducer: every action dispatched before and after the failure is folded again', async () => {
  const store = createLogsyncStore({ ...where(), stream: 'has spaces', reducer: list });
  store.onError(() => {});
  store.dispatch({ type: 'add', id: 'a' });
  await assert.rejects(store.ready);
  store.dispatch({ type: 'add', id: 'b' });
  const seen = [];
  store.replaceReducer((state, action) => {
    seen.push(action.id);
    return list(state, action);
  });
  assert.deepEqual(store.getState(), ['a', 'b']);
  assert.deepEqual(seen, ['a', 'b'], 'folded with the new reducer');
  await store.close();
});

test('before hydration, dispatch checks actions as the opened store does', () => {
  const store = createLogsyncStore({ ...where(), stream: 'test/early-checks', reducer: list });
  assert.throws(() => store.dispatch(() => {}), (err) => err.code === 'INVALID_REQUEST' && /thunks/.test(err.message));
  assert.throws(() => store.dispatch({ type: 'add', id: 1n }), (err) => err.code === 'INVALID_JSON');
  assert.throws(() => store.dispatch({ type: 'add', id: 'z'.repeat(300_000) }), (err) => err.code === 'PAYLOAD_TOO_LARGE' && /the limit is 262144$/.test(err.message));
  assert.deepEqual(store.getState(), []);
  return store.close();
});

test('persist() and status.storage use navigator.storage when the platform has it', async (t) => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  let persisted = false;
  const calls = [];
  Object.defineProperty(globalThis, 'navigator', {
    configurable: true,
    value: {
      storage: {
        estimate: async () => { calls.push('estimate'); return { usage: 1234, quota: 1_000_000 }; },
        persisted: async () => persisted,
        persist: async () => { calls.push('persist'); persisted = true; return true; },
      },
    },
  });
  t.after(() => {
    if (saved) Object.defineProperty(globalThis, 'navigator', saved);
    else delete globalThis.navigator;
  });
  const store = createLogsyncStore({ ...where(), stream: 'test/storage', reducer: list });
  t.after(() => store.close());
  assert.equal(store.status.storage, null, 'unknown until measured');
  await store.ready;
  await until('a storage estimate', () => store.status.storage !== null);
  assert.deepEqual(store.status.storage, { usage: 1234, quota: 1_000_000, persisted: false });
  assert.equal(await store.persist(), true);
  assert.ok(calls.includes('persist'));
  assert.equal(store.status.storage.persisted, true);
});

test('persist() without navigator.storage resolves false and status.storage stays null', async (t) => {
  const store = createLogsyncStore({ ...where(), stream: 'test/no-storage', reducer: list });
  t.after(() => store.close());
  await store.ready;
  if (typeof navigator !== 'undefined' && navigator.storage) return t.skip('this Node has navigator.storage');
  assert.equal(await store.persist(), false);
  assert.equal(store.status.storage, null);
});
