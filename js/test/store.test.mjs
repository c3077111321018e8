// The store API of `logsync` on the real wasm module in Node: IndexedDB
// is fake-indexeddb, and stores open with `connect: false` (no server), so
// what is tested is the JS face and the local engine: the Redux contract,
// detached methods, misuse errors, status, persistence across reopen.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLogsyncStore, createSyncStore, init, LogsyncError } from 'logsync';

const counter = (state = { count: 0 }, action) => {
  switch (action.type) {
    case 'inc':
      return { count: state.count + (action.by ?? 1) };
    case 'noop':
      return state;
    default:
      return state;
  }
};

const offline = (extra = {}) => ({
  url: 'ws://127.0.0.1:9/v1/ws',
  stream: 'test/counter',
  reducer: counter,
  dbName: `test-${randomUUID()}`,
  connect: false,
  ...extra,
});

test('init() is idempotent', async () => {
  const p = init();
  assert.equal(init(), p);
  await p;
});

test('the Redux contract, with every method detached', async (t) => {
  const store = await createSyncStore(offline({ initialState: { count: 10 } }));
  t.after(() => store.close());
  const { getState, dispatch, subscribe } = store;
  assert.deepEqual(getState(), { count: 10 });
  assert.equal(getState(), getState(), 'same object until it changes');

  let calls = 0;
  const unsubscribe = subscribe(() => calls++);
  const action = { type: 'inc', by: 5 };
  assert.equal(dispatch(action), action, 'dispatch returns the action');
  assert.deepEqual(getState(), { count: 15 }, 'applied before dispatch returns');
  assert.equal(calls, 1, 'listener called before dispatch returns');

  const before = getState();
  dispatch({ type: 'noop' });
  assert.equal(getState(), before, 'an action that changes nothing keeps the object');
  assert.equal(calls, 2, 'every dispatch notifies, as in Redux');

  unsubscribe();
  unsubscribe();
  dispatch({ type: 'inc' });
  dispatch({ type: 'inc' });
  assert.equal(calls, 2, 'no calls after unsubscribe');
  assert.deepEqual(getState(), { count: 17 });
});

test('initialState defaults to reducer(undefined, INIT) like Redux', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  assert.deepEqual(store.getState(), { count: 0 });
});

test('status: a stable object, pending counts the outbox while offline', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  const s0 = store.status;
  assert.equal(store.status, s0, 'same object until something changes');
  assert.equal(s0.online, false);
  assert.equal(s0.offset, 0);
  assert.equal(s0.pending, 0);
  assert.equal(s0.lastError, null);
  assert.match(s0.clientId, /^[0-9a-f]{32}$/);
  assert.ok(Object.isFrozen(s0));

  const seen = [];
  const stop = store.onStatus((s) => seen.push(s.pending));
  store.dispatch({ type: 'inc' });
  store.dispatch({ type: 'inc' });
  const deadline = performance.now() + 5_000;
  // (status counts both at once; its listeners hear once the store took
  // them over, a microtask later.)
  while (!seen.includes(2) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(store.status.pending, 2);
  assert.notEqual(store.status, s0);
  assert.ok(seen.includes(2), `onStatus saw ${seen}`);
  stop();
});

test('status: a dispatch counts in pending and writing as soon as it returns', async (t) => {
  // The store takes a burst of dispatches over a microtask later; the
  // status read before then still describes now.
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  const s0 = store.status;
  store.dispatch({ type: 'inc' });
  const s1 = store.status;
  assert.equal(s1.pending, 1, 'pending at once');
  assert.equal(s1.writing, 1, 'its outbox write to come');
  assert.equal(store.getStatus(), s1, 'getStatus() is status');
  assert.equal(store.status, s1, 'the same object until something changes');
  assert.ok(Object.isFrozen(s1));
  assert.notEqual(s1, s0);
  store.dispatch({ type: 'inc' });
  assert.equal(store.status.pending, 2);
  assert.equal(store.status.writing, 2);
  await null;
  assert.equal(store.status.pending, 2, 'the same once taken over');
  const deadline = performance.now() + 5_000;
  while (store.status.writing !== 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(store.status.writing, 0, 'written');
  assert.equal(store.status.pending, 2, 'still waiting for a server');
});

test('a dispatch after the state moved under it folds onto the moved state', async (t) => {
  // A change the wasm store makes itself (here a discard) moves the state
  // the next dispatch folds onto: the package must not fold onto the state
  // of the burst it handed over before (a copy kept in JS once did,
  // BENCHMARKS.md, "A resolved promise for the handover").
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  store.dispatch({ type: 'inc', by: 10 });
  store.dispatch({ type: 'inc', by: 1 });
  await null; // the burst handed over
  assert.deepEqual(store.getState(), { count: 11 });
  const deadline = performance.now() + 5_000;
  while (store.pending().some((p) => p.seq === null) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const ten = store.pending().find((p) => p.action.by === 10);
  store.discard(ten.seq);
  assert.deepEqual(store.getState(), { count: 1 }, 'the discarded action left the state');
  store.dispatch({ type: 'inc', by: 100 });
  assert.deepEqual(store.getState(), { count: 101 }, 'folded onto the state after the discard');
  await null;
  assert.deepEqual(store.getState(), { count: 101 });
});

// Dispatches two `inc`s and waits until both are stored (each has its seq),
// so that a discard refolds the other one in the wasm store.
async function twoStored(store) {
  store.dispatch({ type: 'inc' });
  store.dispatch({ type: 'inc' });
  await null; // the burst handed over
  const deadline = performance.now() + 5_000;
  while (store.pending().some((p) => p.seq === null) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(store.pending().filter((p) => p.seq !== null).length, 2, 'both stored within 5 s');
}

test('a reducer the wasm store runs (a refold after a discard) may not read the state either', async (t) => {
  // The package folds dispatches in JS and refuses a reducer's reads
  // itself; a fold the wasm store runs (here, the pending actions again
  // after a discard) must refuse them as well.
  let peek = false;
  let outcome = null;
  let store = null;
  const reducer = (state = { count: 0 }, action) => {
    if (peek && action.type === 'inc') {
      try {
        store.getState();
        outcome = 'read';
      } catch (err) {
        outcome = err.code;
      }
    }
    return action.type === 'inc' ? { count: state.count + 1 } : state;
  };
  store = await createSyncStore(offline({ reducer }));
  t.after(() => store.close());
  await twoStored(store);
  peek = true;
  store.discard(store.pending()[0].seq);
  peek = false;
  assert.equal(outcome, 'INVALID_REQUEST', 'refused (busy) while the wasm store folds');
  assert.deepEqual(store.getState(), { count: 1 });
});

test('a reducer the wasm store runs may not subscribe, unsubscribe or dispatch either', async (t) => {
  // Like the read above: every call the package refuses a reducer it runs
  // itself, it refuses one the wasm store runs.
  let peek = false;
  const outcomes = {};
  let store = null;
  let stopEarlier = null;
  const attempt = (name, call) => {
    try {
      call();
      outcomes[name] = 'done';
    } catch (err) {
      outcomes[name] = err.code;
    }
  };
  const reducer = (state = { count: 0 }, action) => {
    if (peek && action.type === 'inc') {
      peek = false; // once: the refold folds every pending action
      attempt('subscribe', () => store.subscribe(() => {}));
      attempt('unsubscribe', () => stopEarlier());
      attempt('dispatch', () => store.dispatch({ type: 'other' }));
    }
    return action.type === 'inc' ? { count: state.count + 1 } : state;
  };
  store = await createSyncStore(offline({ reducer }));
  t.after(() => store.close());
  let heard = 0;
  stopEarlier = store.subscribe(() => heard++);
  await twoStored(store);
  peek = true;
  const before = heard;
  store.discard(store.pending()[0].seq);
  assert.deepEqual(outcomes, { subscribe: 'INVALID_REQUEST', unsubscribe: 'INVALID_REQUEST', dispatch: 'INVALID_REQUEST' });
  assert.deepEqual(store.getState(), { count: 1 });
  assert.equal(store.pending().length, 1, 'the refused dispatch recorded nothing');
  assert.ok(heard > before, 'the subscriber the reducer tried to remove still hears changes');
});

test('a reducer the wasm store runs while the store opens may not read the state or subscribe', async (t) => {
  // The opening replays this device's pending actions with the reducer,
  // before the store is hydrated: that run too is refused what a reducer
  // may not do (createLogsyncStore hands out the store before then).
  const dbName = `test-${randomUUID()}`;
  const before = await createSyncStore(offline({ dbName }));
  before.dispatch({ type: 'inc' });
  await before.close(); // the action stored, pending (offline)
  const outcomes = [];
  let store = null;
  const reducer = (state = { count: 0 }, action) => {
    if (store !== null && action.type === 'inc') {
      for (const call of [() => store.getState(), () => store.subscribe(() => {})]) {
        try {
          call();
          outcomes.push('done');
        } catch (err) {
          outcomes.push(err.code);
        }
      }
    }
    return action.type === 'inc' ? { count: state.count + 1 } : state;
  };
  store = createLogsyncStore(offline({ dbName, reducer })); // usable before it opens
  t.after(() => store.close());
  await store.ready;
  assert.ok(outcomes.length >= 2, `the opening ran the reducer on the stored action (${outcomes.length / 2} runs)`);
  assert.ok(outcomes.every((o) => o === 'INVALID_REQUEST'), `every call refused: ${outcomes.join(', ')}`);
  assert.deepEqual(store.getState(), { count: 1 });
});

test('status: a listener added after changes nobody heard is told the next change, with every count', async (t) => {
  // No status listener at first: the store does not build the status
  // object for these changes, but what it says later must include them.
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  for (let i = 0; i < 5; i++) {
    store.dispatch({ type: 'inc' });
    await null;
  }
  const heard = [];
  const stop = store.onStatus((s) => heard.push(s));
  store.dispatch({ type: 'inc' });
  const deadline = performance.now() + 5_000;
  while (!heard.some((s) => s.pending === 6 && s.writing === 0) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  stop();
  assert.ok(heard.length > 0, 'the listener heard the change');
  assert.ok(heard.some((s) => s.pending === 6 && s.writing === 0), `heard ${JSON.stringify(heard.map((s) => [s.pending, s.writing]))}`);
  for (const s of heard) assert.ok(s.pending >= 6, `every status after the dispatch counts all six: ${s.pending}`);
  assert.equal(store.status, heard.at(-1), 'the last status told is the current one');
});

test('state and outbox survive closing and reopening (IndexedDB)', async () => {
  const options = offline();
  const first = await createSyncStore(options);
  first.dispatch({ type: 'inc', by: 3 });
  first.dispatch({ type: 'inc', by: 4 });
  const clientId = first.status.clientId;
  await first.close();

  const second = await createSyncStore(options);
  try {
    assert.deepEqual(second.getState(), { count: 7 });
    assert.equal(second.status.pending, 2);
    assert.equal(second.status.clientId, clientId, 'the same installation');
  } finally {
    await second.close();
  }
});

test('dispatch refuses what is not a plain action, saying how to fix it', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  const refuses = (value, pattern) =>
    assert.throws(() => store.dispatch(value), (err) => {
      assert.ok(err instanceof LogsyncError);
      assert.equal(err.code, 'INVALID_REQUEST');
      assert.match(err.message, pattern);
      return true;
    });
  refuses(() => {}, /Functions \(thunks\) cannot be synced/);
  refuses(undefined, /plain object action such as \{ type: 'todo\/added'/);
  refuses('inc', /got "inc"/);
  refuses(new Map(), /an instance of Map/);
  refuses({ by: 1 }, /string "type"/);
  refuses({ type: Symbol('x') }, /string "type"/);
  assert.deepEqual(store.getState(), { count: 0 }, 'nothing applied');
});

test('createSyncStore says which option is wrong', async () => {
  const rejects = (options, pattern) =>
    assert.rejects(createSyncStore(options), (err) => {
      assert.ok(err instanceof LogsyncError);
      assert.equal(err.code, 'INVALID_REQUEST');
      assert.match(err.message, pattern);
      return true;
    });
  await rejects(undefined, /expects an options object/);
  await rejects(offline({ url: 'http://localhost:8080/v1/ws' }), /use ws:\/\/localhost:8080\/v1\/ws/);
  await rejects(offline({ url: undefined }), /options\.url must be/);
  await rejects(offline({ stream: '' }), /options\.stream must be/);
  await rejects(offline({ reducer: {} }), /options\.reducer must be a function/);
  await rejects(offline({ dbName: 3 }), /options\.dbName/);
  await rejects(offline({ snapshotEvery: 0 }), /snapshotEvery must be a positive integer/);
  await rejects(offline({ schemaVersion: 0 }), /schemaVersion must be a positive integer/);
  await rejects(offline({ schemaVersion: 2, minSchemaVersion: 1.5 }), /minSchemaVersion must be a positive integer/);
  await rejects(offline({ connect: 'yes' }), /connect must be true or false/);
  await rejects(offline({ replicate: 'no' }), /replicate must be true or false/);
  await rejects(offline({ reducer: (s) => s }), /initialState is missing/);
});

test('an invalid stream name is refused with INVALID_STREAM', async () => {
  await assert.rejects(createSyncStore(offline({ stream: 'has spaces' })), (err) => {
    assert.ok(err instanceof LogsyncError, String(err));
    assert.equal(err.code, 'INVALID_STREAM');
    return true;
  });
});

test('after close(): STORE_CLOSED', async () => {
  const store = await createSyncStore(offline());
  await store.close();
  await store.close(); // idempotent
  assert.throws(() => store.dispatch({ type: 'inc' }), (err) => err.code === 'STORE_CLOSED' && /createSyncStore/.test(err.message));
  await assert.rejects(store.synced(), (err) => err.code === 'STORE_CLOSED');
});

test('listener registration checks its argument', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  for (const method of ['subscribe', 'onStatus', 'onError', 'onRejected']) {
    assert.throws(() => store[method]('nope'), (err) => err.code === 'INVALID_REQUEST' && err.message.includes(`store.${method}(listener) expects a function`));
  }
});

test('replaceReducer recomputes the state with the new reducer', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  store.dispatch({ type: 'inc', by: 2 });
  store.replaceReducer((state = { count: 0 }, action) => (action.type === 'inc' ? { count: state.count + 10 * (action.by ?? 1) } : state));
  assert.deepEqual(store.getState(), { count: 20 }, 'pending actions re-applied through the new reducer');
  assert.throws(() => store.replaceReducer(null), /expects a function/);
});

test('Symbol.observable: the store as an observable of states', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  const key = Symbol.observable ?? '@@observable';
  const observable = store[key]();
  assert.equal(observable[key](), observable);
  const states = [];
  const sub = observable.subscribe({ next: (s) => states.push(s.count) });
  store.dispatch({ type: 'inc' });
  sub.unsubscribe();
  store.dispatch({ type: 'inc' });
  assert.deepEqual(states, [0, 1]);
});

// A list reducer: the state is the ids added, in order.
const list = (state = [], action) => (action.type === 'add' ? [...state, action.id] : state);

test('a burst of dispatches: applied and notified one by one, recorded in order', async () => {
  const options = offline({ reducer: list, stream: 'test/list' });
  const store = await createSyncStore(options);
  const seen = [];
  store.subscribe(() => seen.push(store.getState().length));
  for (let i = 0; i < 50; i++) store.dispatch({ type: 'add', id: `a${i}` });
  assert.equal(store.getState().length, 50);
  assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i + 1), 'one notification per dispatch, each seeing its state');
  // A large action takes the wasm store's own dispatch, after the burst.
  const big = 'x'.repeat(200_000);
  store.dispatch({ type: 'add', id: big });
  store.dispatch({ type: 'add', id: 'last' });
  await null; // the burst goes to the wasm store in a microtask
  assert.equal(store.status.pending, 52, 'status counts the burst a microtask later');
  const expected = [...Array.from({ length: 50 }, (_, i) => `a${i}`), big, 'last'];
  assert.deepEqual(store.getState(), expected);
  await store.close();

  const again = await createSyncStore(options);
  try {
    assert.deepEqual(again.getState(), expected, 'the outbox came back in dispatch order');
    assert.equal(again.status.pending, 52);
  } finally {
    await again.close();
  }
});

test('dispatch: reducer errors, oversized and unserialisable actions record nothing', async (t) => {
  const store = await createSyncStore(offline({
    reducer: (state = [], action) => {
      if (action.type === 'boom') throw new RangeError('no');
      if (action.type === 'undef') return undefined;
      if (action.type === 'peek') store.getState();
      if (action.type === 'nested') store.dispatch({ type: 'add', id: 'n' });
      return list(state, action);
    },
    stream: 'test/errors',
  }));
  t.after(() => store.close());
  store.dispatch({ type: 'add', id: 'ok' });
  const code = (action, expected, pattern) => assert.throws(() => store.dispatch(action), (err) => {
    assert.ok(err instanceof LogsyncError, String(err));
    assert.equal(err.code, expected);
    assert.match(err.message, pattern);
    return true;
  });
  code({ type: 'boom' }, 'REDUCER', /the reducer threw RangeError: no/);
  code({ type: 'undef' }, 'REDUCER', /returned undefined/);
  code({ type: 'peek' }, 'REDUCER', /busy running the reducer/);
  code({ type: 'nested' }, 'REDUCER', /busy running the reducer/);
  code({ type: 'add', id: 1n }, 'INVALID_JSON', /not JSON-serialisable/);
  code({ type: 'add', toJSON: () => undefined }, 'INVALID_JSON', /gave no text/);
  code({ type: 'add', id: 'y'.repeat(2_000_000) }, 'PAYLOAD_TOO_LARGE', /limit/);
  // Before it has met its server, a store takes what a default server
  // accepts (256 KiB): one byte more is refused before it is applied.
  const at = (n) => ({ type: 'add', id: 'z'.repeat(n - JSON.stringify({ type: 'add', id: '' }).length) });
  code(at(256 * 1024 + 1), 'PAYLOAD_TOO_LARGE', /is 262145 bytes; the limit is 262144$/);
  assert.deepEqual(store.getState(), ['ok']);
  await null;
  assert.equal(store.status.pending, 1, 'only the good action is pending');
});

test('a listener may dispatch; a throwing listener does not stop the others', async (t) => {
  const store = await createSyncStore(offline({ reducer: list, stream: 'test/nested' }));
  t.after(() => store.close());
  const reported = [];
  const saved = globalThis.reportError;
  globalThis.reportError = (err) => reported.push(err);
  t.after(() => { globalThis.reportError = saved; });
  store.subscribe(() => { throw new Error('listener bug'); });
  let calls = 0;
  store.subscribe(() => {
    calls++;
    if (store.getState().at(-1) === 'a') store.dispatch({ type: 'add', id: 'echo' });
  });
  store.dispatch({ type: 'add', id: 'a' });
  assert.deepEqual(store.getState(), ['a', 'echo']);
  assert.equal(calls, 2);
  assert.equal(reported.length, 2);
  await null;
  assert.equal(store.status.pending, 2);
});

test('wasm dispatchFolded: states taken as given on the same base, folded again on a moved one', async (t) => {
  await init();
  const wasmModule = await import('../wasm/logsync_wasm.js');
  const inner = await wasmModule.openStore(
    { url: 'ws://127.0.0.1:9/v1/ws', stream: 'test/folded', dbName: `test-${randomUUID()}`, connect: false },
    list,
    [],
  );
  t.after(() => inner.close());
  let notified = 0;
  inner.subscribe(() => notified++);
  const base = inner.getState();
  const s1 = ['a'];
  const s2 = ['a', 'b'];
  const refolded = inner.dispatchFolded(base, ['{"type":"add","id":"a"}', { type: 'add', id: 'a' }, s1, 1000, 0, false, 0, '{"type":"add","id":"b"}', { type: 'add', id: 'b' }, s2, 1001, 0, false, 0]);
  assert.equal(refolded, false);
  assert.equal(inner.getState(), s2, 'the given state object is the state');
  assert.equal(notified, 0, 'the caller has notified already');

  // A base that is not the state any more (here: a stale one): folded again.
  const stale = inner.dispatchFolded(base, ['{"type":"add","id":"c"}', { type: 'add', id: 'c' }, ['c'], 1002, 0, false, 0]);
  assert.equal(stale, true);
  assert.deepEqual(inner.getState(), ['a', 'b', 'c']);
  assert.equal(notified, 1);
  assert.throws(() => inner.dispatchFolded(base, ['x']), (err) => err.code === 'INVALID_REQUEST');
  assert.throws(() => inner.dispatchFolded(base, ['{"type":"add","id":"d"}', { type: 'add', id: 'd' }, ['d'], 'soon', 0, false, 0]), (err) => err.code === 'INVALID_REQUEST');
  assert.throws(() => inner.dispatchFolded(inner.getState(), ['z'.repeat(2_000_000), {}, [], 0, 0, false, 0]), (err) => err.code === 'PAYLOAD_TOO_LARGE');
  assert.equal(inner.status().pending, 3);
});

test('a pending action is folded with its local meta, the same after a reopen', async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  // The store reads `sub` without checking the signature (the server does).
  const token = `${b64({ alg: 'HS256' })}.${b64({ sub: 'ann', exp: 2e9 })}.sig`;
  const seenBy = (state = [], action, meta) => (action.type === 'add' ? [...state, { id: action.id, ...meta }] : state);
  const options = offline({ reducer: seenBy, stream: 'test/meta', token });
  const first = await createSyncStore(options);
  await first.ready;
  const before = Date.now();
  first.dispatch({ type: 'add', id: 'a' });
  const [a] = first.getState();
  assert.equal(a.offset, null, 'no offset while pending');
  assert.equal(a.seq, null, 'no seq while pending');
  assert.equal(a.subject, 'ann');
  assert.equal(a.clientId, first.status.clientId);
  assert.match(a.clientId, /^[0-9a-f]{32}$/);
  assert.equal(a.seen, 0);
  assert.ok(a.time >= before && a.time <= Date.now(), `time ${a.time}`);
  const kept = first.getState();
  await first.close();

  const second = await createSyncStore(options);
  try {
    await second.ready;
    assert.deepEqual(second.getState(), kept, 'folded again from IndexedDB with the same meta');
  } finally {
    await second.close();
  }
});
