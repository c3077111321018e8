// The browser benchmarks, run in headless Chromium by run.mjs against the
// real release build of the `logsync` package and Redux's production
// build, in the same page. Every function returns plain numbers; run.mjs
// repeats, aggregates and reports them.

import { createSyncStore, init } from '/js/src/index.js';
import { legacy_createStore as createReduxStore } from '/redux.mjs';

const now = () => performance.now();

// The benchmark's reducers, given to both stores unchanged.
// `list`: a realistic small state, a count and the last 100 ids (what an
// activity feed keeps); `counter`: the least a reducer can do, so the
// store's own cost per dispatch shows.
const reducers = {
  list: {
    initial: () => ({ count: 0, items: [] }),
    reduce: (state, action) => (action.type === 'add'
      ? { count: state.count + 1, items: [...state.items.slice(-99), action.id] }
      : state),
  },
  counter: {
    initial: () => ({ count: 0 }),
    reduce: (state, action) => (action.type === 'add' ? { count: state.count + 1 } : state),
  },
};

const unique = (p) => `${p}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

function deleteDb(name) {
  return new Promise((resolve) => {
    const r = indexedDB.deleteDatabase(name);
    r.onsuccess = r.onerror = r.onblocked = () => resolve();
  });
}

/** Resolves when `pred(store.status)` holds, or rejects after `ms`. */
function whenStatus(store, pred, ms, what) {
  return new Promise((resolve, reject) => {
    let off = () => {};
    const timer = setTimeout(() => { off(); reject(new Error(`timed out after ${ms} ms waiting for ${what}; status ${JSON.stringify(store.status)}`)); }, ms);
    const check = () => {
      if (pred(store.status)) { clearTimeout(timer); off(); resolve(); return true; }
      return false;
    };
    if (!check()) off = store.onStatus(check);
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Loading and instantiating the wasm module (first call in the page). */
async function initTime() {
  const t0 = now();
  await init();
  return { init_ms: now() - t0 };
}

/**
 * (a) dispatch: the same reducer in a Redux store and a Logsync store
 * (online, one subscriber each), `ops` dispatches per repeat through each,
 * the order alternating. The Logsync store folds in JS and hands its
 * dispatches to wasm once per microtask, so every timed block ends with a
 * microtask checkpoint (`await null`, for all three stores alike) and its
 * time includes that handover. `perTick` puts a checkpoint after every
 * dispatch — one dispatch per event, as in an app driven by clicks and
 * keys — where the handover is paid per dispatch. After each repeat the Logsync store is drained
 * (`synced()`: outbox written, server confirmed) so every repeat starts
 * alike; that drain is timed too (dispatch → confirmed).
 */
async function dispatch({ url, reducer: name, repeats, ops, perTick = false }) {
  const { initial, reduce } = reducers[name];
  const redux = createReduxStore(reduce, initial());
  // Redux again, with each action sent through JSON first: the least any
  // store must do that ships actions as JSON and folds what others fold.
  const reduxJson = createReduxStore(reduce, initial());
  let seen = 0;
  redux.subscribe(() => { if (redux.getState() !== null) seen++; });
  reduxJson.subscribe(() => { if (reduxJson.getState() !== null) seen++; });
  const dbName = unique(`dispatch-${name}`);
  const store = await createSyncStore({ url, stream: unique(`dispatch-${name}`), dbName, reducer: reduce, initialState: initial() });
  store.subscribe(() => { if (store.getState() !== null) seen++; });
  await whenStatus(store, (s) => s.online, 30_000, 'the store to be online');
  // Warm-up: both paths compiled and the connection in use.
  for (let i = 0; i < 500; i++) {
    redux.dispatch({ type: 'add', id: `w${i}` });
    reduxJson.dispatch(JSON.parse(JSON.stringify({ type: 'add', id: `w${i}` })));
    store.dispatch({ type: 'add', id: `w${i}` });
  }
  await withTimeout(store.synced(), 60_000, 'warm-up synced');
  const runs = [];
  let k = 0;
  // Each repeat interleaves the three stores in blocks of `BLOCK`
  // dispatches (rotating which goes first), so a garbage collection or a
  // noisy neighbour hits all three alike.
  const BLOCK = 500;
  for (let r = 0; r < repeats; r++) {
    const timers = perTick ? [
      async (n) => { const t0 = now(); for (let i = 0; i < n; i++) { redux.dispatch({ type: 'add', id: `e${k + i}` }); await null; } return now() - t0; },
      async (n) => { const t0 = now(); for (let i = 0; i < n; i++) { reduxJson.dispatch(JSON.parse(JSON.stringify({ type: 'add', id: `e${k + i}` }))); await null; } return now() - t0; },
      async (n) => { const t0 = now(); for (let i = 0; i < n; i++) { store.dispatch({ type: 'add', id: `e${k + i}` }); await null; } return now() - t0; },
    ] : [
      async (n) => { const t0 = now(); for (let i = 0; i < n; i++) redux.dispatch({ type: 'add', id: `e${k + i}` }); await null; return now() - t0; },
      async (n) => { const t0 = now(); for (let i = 0; i < n; i++) reduxJson.dispatch(JSON.parse(JSON.stringify({ type: 'add', id: `e${k + i}` }))); await null; return now() - t0; },
      async (n) => { const t0 = now(); for (let i = 0; i < n; i++) store.dispatch({ type: 'add', id: `e${k + i}` }); await null; return now() - t0; },
    ];
    const ms = [0, 0, 0];
    let blocks = 0;
    for (let done = 0; done < ops; done += BLOCK) {
      const n = Math.min(BLOCK, ops - done);
      for (let j = 0; j < 3; j++) {
        const which = (j + blocks) % 3;
        ms[which] += await timers[which](n);
      }
      blocks++;
    }
    const [reduxMs, reduxJsonMs, logsyncMs] = ms;
    const t0 = now();
    await withTimeout(store.synced(), 120_000, 'synced after a repeat');
    const drainMs = now() - t0;
    k += ops;
    runs.push({
      redux_us: (reduxMs * 1000) / ops,
      redux_json_us: (reduxJsonMs * 1000) / ops,
      logsync_us: (logsyncMs * 1000) / ops,
      ratio: logsyncMs / reduxMs,
      ratio_vs_json: logsyncMs / reduxJsonMs,
      confirm_all_ms: logsyncMs + drainMs,
    });
  }
  if (redux.getState().count !== store.getState().count || reduxJson.getState().count !== store.getState().count) {
    throw new Error(`the two stores disagree: redux ${redux.getState().count}, logsync ${store.getState().count}`);
  }
  if (seen === 0) throw new Error('no subscriber was notified');
  await store.close();
  await deleteDb(dbName);
  return runs;
}

/**
 * For the profiler: `ops` dispatches into an offline Logsync store, and
 * nothing else (the outbox writes run after, outside the profile).
 */
async function openForProfile({ reducer: name }) {
  const { initial, reduce } = reducers[name];
  const dbName = unique(`profile-${name}`);
  window.profiled = { dbName, store: await createSyncStore({ url: 'ws://127.0.0.1:9/v1/ws', stream: 'profile', dbName, reducer: reduce, initialState: initial(), connect: false }) };
}

async function dispatchLoop({ ops, profile, every = 500 }) {
  const { store } = window.profiled;
  // console.profile brackets the loop and the handover to wasm (every
  // `every` dispatches; 500 as in the benchmark's blocks); the outbox
  // writes that follow run after profileEnd.
  if (profile) console.profile('dispatch');
  const t0 = now();
  for (let i = 0; i < ops; i++) {
    store.dispatch({ type: 'add', id: `p${i}` });
    if (i % every === every - 1) await null;
  }
  await null;
  const t1 = now();
  if (profile) console.profileEnd('dispatch');
  return ((t1 - t0) * 1000) / ops;
}

async function closeProfiled() {
  await window.profiled.store.close();
  await deleteDb(window.profiled.dbName);
}

/**
 * (b) and (d) catch-up: a fresh store (new database) follows a stream of
 * `n` events on a real server. Times: to the first applied batch, to
 * offset = head (every event applied in memory), to everything written to
 * IndexedDB (`synced()`).
 */
async function catchup({ url, stream, n, snapshotEvery, profile = false }) {
  const { initial, reduce } = reducers.list;
  const dbName = unique('catchup');
  let tFirst = null;
  let firstOffset = 0;
  // console.profile brackets the open and the catch-up to offset = head.
  if (profile) console.profile('catchup');
  const t0 = now();
  const store = await createSyncStore({ url, stream, dbName, reducer: reduce, initialState: initial(), snapshotEvery });
  const tOpen = now();
  const off = store.onStatus((s) => {
    if (tFirst === null && s.offset > 0) { tFirst = now(); firstOffset = s.offset; }
  });
  await whenStatus(store, (s) => s.offset >= n, 300_000, `offset ${n}`);
  const tHead = now();
  if (profile) console.profileEnd('catchup');
  off();
  await withTimeout(store.synced(), 300_000, 'catch-up written');
  const tWritten = now();
  const count = store.getState().count;
  await store.close();
  await deleteDb(dbName);
  if (count !== n) throw new Error(`caught up to count ${count}, expected ${n}`);
  return {
    open_ms: tOpen - t0,
    first_batch_ms: tFirst - t0,
    to_head_ms: tHead - t0,
    to_written_ms: tWritten - t0,
    apply_events_per_s: (n - firstOffset) / ((tHead - tFirst) / 1000),
  };
}

/**
 * Baseline for (b): the least any JS client must do per remote event —
 * JSON.parse the payload and run the reducer — over the same `n` actions.
 */
function fold({ n }) {
  const { initial, reduce } = reducers.list;
  const payloads = new Array(n);
  for (let i = 0; i < n; i++) payloads[i] = `{"type":"add","id":"e${i + 1}"}`;
  const t0 = now();
  let s = initial();
  for (let i = 0; i < n; i++) s = reduce(s, JSON.parse(payloads[i]));
  const ms = now() - t0;
  if (s.count !== n) throw new Error('fold miscounted');
  return { fold_ms: ms, fold_events_per_s: n / (ms / 1000) };
}

// ---- (c) start-up: IndexedDB seeded in bulk, in the store's own format ----

/** Postcard varint of a non-negative integer up to 2^53. */
function varint(out, v) {
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

const textEncoder = new TextEncoder();

/**
 * A stored event exactly as the store writes it: postcard `Event`
 * (offset varint, client id 16 bytes, seq varint, time_ms varint, payload
 * length varint + bytes, subject option (0 = none, else 1, length varint
 * and UTF-8), seen varint, schema varint). `checkFormat` proves it against records the
 * store itself wrote.
 */
function encodeEvent({ offset, clientId, seq, timeMs, payload, subject = null, seen = 0, schema = 1 }) {
  const out = [];
  varint(out, offset);
  for (const b of clientId) out.push(b);
  varint(out, seq);
  varint(out, timeMs);
  const bytes = typeof payload === 'string' ? textEncoder.encode(payload) : payload;
  varint(out, bytes.length);
  const tail = [];
  if (subject === null) {
    tail.push(0);
  } else {
    const s = textEncoder.encode(subject);
    tail.push(1);
    varint(tail, s.length);
    for (const b of s) tail.push(b);
  }
  varint(tail, seen);
  varint(tail, schema);
  const head = Uint8Array.from(out);
  const rec = new Uint8Array(head.length + bytes.length + tail.length);
  rec.set(head);
  rec.set(bytes, head.length);
  rec.set(tail, head.length + bytes.length);
  return rec;
}

function readVarint(bytes, at) {
  let v = 0;
  let mul = 1;
  for (;;) {
    const b = bytes[at++];
    v += (b & 0x7f) * mul;
    if (b < 0x80) return [v, at];
    mul *= 0x80;
  }
}

function decodeEvent(bytes) {
  let at = 0;
  let offset; let seq; let timeMs; let len;
  [offset, at] = readVarint(bytes, at);
  const clientId = bytes.slice(at, at + 16); at += 16;
  [seq, at] = readVarint(bytes, at);
  [timeMs, at] = readVarint(bytes, at);
  [len, at] = readVarint(bytes, at);
  const payload = bytes.slice(at, at + len);
  at += len;
  let subject = null;
  if (bytes[at++] === 1) {
    let n;
    [n, at] = readVarint(bytes, at);
    subject = new TextDecoder().decode(bytes.slice(at, at + n));
    at += n;
  }
  let seen; let schema;
  [seen, at] = readVarint(bytes, at);
  [schema, at] = readVarint(bytes, at);
  return { offset, clientId, seq, timeMs, payload, subject, seen, schema, end: at };
}

function idbOpen(name) {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function txDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
  });
}

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/**
 * Catches up a small stream with snapshots off (so the store writes every
 * event record itself) and checks that this page's encoder makes exactly
 * the bytes the store wrote, record by record.
 */
async function checkFormat({ url, stream, n }) {
  const { initial, reduce } = reducers.list;
  const dbName = unique('format');
  const store = await createSyncStore({ url, stream, dbName, reducer: reduce, initialState: initial(), snapshotEvery: 1e9 });
  await whenStatus(store, (s) => s.offset >= n, 60_000, `offset ${n}`);
  await withTimeout(store.synced(), 60_000, 'format stream written');
  await store.close();
  const db = await idbOpen(dbName);
  const tx = db.transaction(['events', 'streams'], 'readonly');
  const records = await req(tx.objectStore('events').getAll(IDBKeyRange.bound([stream, 0], [stream, Infinity])));
  const record = await req(tx.objectStore('streams').get(stream));
  db.close();
  await deleteDb(dbName);
  if (records.length !== n) throw new Error(`format check: ${records.length} records, expected ${n}`);
  for (const bytes of records) {
    const e = decodeEvent(bytes);
    const again = encodeEvent(e);
    if (e.end !== bytes.length || again.length !== bytes.length || again.some((b, i) => b !== bytes[i])) {
      throw new Error(`format check: the encoder does not reproduce the stored record of offset ${e.offset}`);
    }
    if (new TextDecoder().decode(e.payload) !== `{"type":"add","id":"e${e.offset}"}`) {
      throw new Error(`format check: unexpected payload at offset ${e.offset}`);
    }
  }
  return { records: records.length, streams_record_keys: Object.keys(record).sort().join(',') };
}

/** The `list` reducer's state after events 1..=offset (each adds `e<offset>`). */
function listState(offset) {
  const items = [];
  for (let o = Math.max(1, offset - 99); o <= offset; o++) items.push(`e${o}`);
  return { count: offset, items };
}

/**
 * Seeds database `dbName` with a stream of `n` confirmed events: a
 * snapshot at `n - tail` and the `tail` events after it (tail = n: no
 * snapshot, every event stored).
 */
async function seedStore({ dbName, stream, n, tail }) {
  const { initial, reduce } = reducers.list;
  // Let the store make its schema and client id, then write as it would.
  const made = await createSyncStore({ url: 'ws://127.0.0.1:9/v1/ws', stream, dbName, reducer: reduce, initialState: initial(), connect: false });
  await made.close();
  const snapshotOffset = n - tail;
  const db = await idbOpen(dbName);
  const clientId = new Uint8Array(16).fill(0x42);
  const time = Date.now();
  {
    const tx = db.transaction(['streams', 'snapshots'], 'readwrite');
    tx.objectStore('streams').put({ offset: n, nextSeq: 1, snapshotOffset, epoch: null }, stream);
    if (snapshotOffset > 0) {
      tx.objectStore('snapshots').put({ offset: snapshotOffset, state: listState(snapshotOffset), timeMs: time }, stream);
    }
    await txDone(tx);
  }
  const CHUNK = 20_000;
  for (let from = snapshotOffset + 1; from <= n; from += CHUNK) {
    const tx = db.transaction(['events'], 'readwrite');
    const events = tx.objectStore('events');
    for (let o = from; o < Math.min(from + CHUNK, n + 1); o++) {
      events.put(encodeEvent({ offset: o, clientId, seq: o, timeMs: time, payload: `{"type":"add","id":"e${o}"}` }), [stream, o]);
    }
    await txDone(tx);
  }
  db.close();
}

/**
 * (c) start-up: `createSyncStore` (no network) → first `getState()`, on a
 * database seeded with `n` events, `runs` times; and the baseline, the same
 * records read with plain IndexedDB (open, stream record, snapshot, events).
 */
async function startup({ n, tail, runs, snapshotEvery, profile = false }) {
  const { initial, reduce } = reducers.list;
  const dbName = unique(`startup-${n}-${tail}`);
  const stream = 'startup';
  const t0 = now();
  await seedStore({ dbName, stream, n, tail });
  const seedMs = now() - t0;
  const out = { seed_ms: seedMs, store_ms: [], idb_ms: [] };
  // Run 0 is a warm-up (first use of the database files), not reported.
  for (let r = 0; r <= runs; r++) {
    const a = now();
    const store = await createSyncStore({ url: 'ws://127.0.0.1:9/v1/ws', stream, dbName, reducer: reduce, initialState: initial(), connect: false, snapshotEvery });
    const state = store.getState();
    const b = now();
    if (state.count !== n || state.items[state.items.length - 1] !== `e${n}`) {
      throw new Error(`start-up restored count ${state.count}, expected ${n}`);
    }
    await store.close();
    if (r > 0) out.store_ms.push(b - a);

    const c = now();
    const db = await idbOpen(dbName);
    const tx = db.transaction(['streams', 'snapshots', 'events'], 'readonly');
    const rec = await req(tx.objectStore('streams').get(stream));
    if (rec.snapshotOffset > 0) await req(tx.objectStore('snapshots').get(stream));
    const evs = await req(tx.objectStore('events').getAll(IDBKeyRange.bound([stream, rec.snapshotOffset + 1], [stream, Infinity])));
    const d = now();
    db.close();
    if (evs.length !== tail) throw new Error(`raw read found ${evs.length} events, expected ${tail}`);
    if (r > 0) out.idb_ms.push(d - c);
  }
  if (profile) {
    // One more start-up under the profiler.
    console.profile('startup');
    const store = await createSyncStore({ url: 'ws://127.0.0.1:9/v1/ws', stream, dbName, reducer: reduce, initialState: initial(), connect: false, snapshotEvery });
    store.getState();
    console.profileEnd('startup');
    await store.close();
  }
  await deleteDb(dbName);
  return out;
}

// (e) tabs: this page is one tab of several on one database and stream.
// Each action carries the wall-clock time of its dispatch (the pages share
// the machine's clock), so another tab measures dispatch → its own state.
let tab = null;
const wallNow = () => performance.timeOrigin + performance.now();

async function tabOpen({ url, stream, dbName, shareConnection }) {
  const store = await createSyncStore({
    url, stream, dbName, shareConnection, devtools: false,
    reducer: (s, a) => (a.type === 'add' ? { items: [...s.items, a] } : s),
    initialState: { items: [] },
  });
  tab = { store, seen: 0, latencies: [] };
  store.subscribe(() => {
    const { items } = store.getState();
    const at = wallNow();
    for (; tab.seen < items.length; tab.seen++) {
      if (items[tab.seen].from !== tab.name) tab.latencies.push(at - items[tab.seen].t);
    }
  });
}

function tabStatus() {
  const s = tab.store.getStatus();
  return { leader: s.leader, online: s.online, offset: s.offset, pending: s.pending, items: tab.seen };
}

/** Dispatches `n` actions, one every `gapMs`, each stamped with its time. */
async function tabDispatch({ name, n, gapMs }) {
  tab.name = name;
  for (let i = 0; i < n; i++) {
    tab.store.dispatch({ type: 'add', id: `${name}-${i}`, from: name, t: wallNow() });
    await new Promise((r) => setTimeout(r, gapMs));
  }
}

function tabLatencies() { return tab.latencies; }

async function tabClose() { await tab.store.close(); tab = null; }

/** (f) A database seeded for first.html, kept until `dropSeeded`. */
async function seedFirst({ n, tail }) {
  const dbName = unique(`first-${n}-${tail}`);
  const stream = 'first';
  await seedStore({ dbName, stream, n, tail });
  return { dbName, stream };
}

async function dropSeeded({ dbName }) {
  await deleteDb(dbName);
}

window.bench = { seedFirst, dropSeeded, initTime, dispatch, catchup, fold, checkFormat, startup, openForProfile, dispatchLoop, closeProfiled, tabOpen, tabStatus, tabDispatch, tabLatencies, tabClose };
window.benchReady = true;
