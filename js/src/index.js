// The Logsync store: a Redux-compatible store whose state is the reduction
// of a server-ordered event log, kept in IndexedDB and synced over a
// WebSocket. This file is the idiomatic JS face over the wasm module's
// low-level `openStore`; everything that syncs lives in the wasm module.

import loadWasm, * as wasm from '../wasm/logsync_wasm.js';
import { ERROR_CODES, LogsyncError, Rejection, describe, isLogsyncError, toLogsyncError } from './errors.js';
import { intentTracker } from './intents.js';
import { devtoolsBridge, findExtension } from './devtools.js';

export { ERROR_CODES, LogsyncError, Rejection, isLogsyncError };

/** The action that computes a missing `initialState`, as Redux does. */
export const INIT_ACTION_TYPE = '@@logsync/INIT';

let loading = null;
let loaded = false;

/**
 * Loads and instantiates the WebAssembly module. Idempotent: every call
 * returns the same promise, and `createSyncStore` calls it for you, so call
 * it yourself only to start loading early or to say where the `.wasm` file
 * is. After a failed load the next call tries again.
 *
 * @param {{ wasm?: string | URL | Request | Response | BufferSource | WebAssembly.Module }} [options]
 * @returns {Promise<void>}
 */
export function init(options = {}) {
  if (loading) return loading;
  if (options === null || typeof options !== 'object') {
    return Promise.reject(new LogsyncError('INVALID_REQUEST',
      `init() takes an options object such as { wasm: new URL('…/logsync_wasm_bg.wasm', import.meta.url) } or nothing, got ${describe(options)}`));
  }
  const source = options.wasm;
  loading = loadWasm(source === undefined ? undefined : { module_or_path: source }).then(
    () => {
      loaded = true;
    },
    (err) => {
      loading = null;
      throw toLogsyncError(err, 'INTERNAL',
        'Logsync could not load its WebAssembly module (logsync_wasm_bg.wasm). ' +
        'Serve the file next to the package\'s JS (bundlers such as Vite do this for you; with Vite 7 or older, ' +
        'add optimizeDeps: { exclude: [\'logsync\'] } for its dev server), or pass its location: init({ wasm: url })');
    },
  );
  return loading;
}

/**
 * Opens (or creates) the local replica of `options.stream` and starts
 * syncing it. Resolves once the store is usable with its stored state:
 * restored from IndexedDB, even with no network. The same as
 * `createLogsyncStore(options)` followed by `await store.ready`.
 *
 * @param {import('./index.js').StoreOptions<any, any>} options
 * @returns {Promise<import('./index.js').SyncStore<any, any>>}
 */
export async function createSyncStore(options) {
  const checked = checkOptions(options);
  const store = hydratingStore(checked, true);
  try {
    await store.ready;
  } catch (err) {
    store.close(); // lets go of the DevTools connection, if any
    throw err;
  }
  return store;
}

/**
 * Creates the store at once: its state is `initialState` until the stored
 * state is in, dispatches are applied and queued meanwhile, and the store
 * hydrates from IndexedDB in the background (`store.ready`,
 * `status.hydrated`). See the README's "Synchronous creation".
 *
 * @param {import('./index.js').StoreOptions<any, any>} options
 * @returns {import('./index.js').SyncStore<any, any>}
 */
export function createLogsyncStore(options) {
  return hydratingStore(checkOptions(options), false);
}

// The IndexedDB database of a user: `dbName` alone without a token (or
// one without a subject), `dbName@subject` otherwise, so that the users of
// one browser never share a client id (the server binds a client id to its
// first subject), a replica or an outbox.
export function dbNameFor(dbName, token) {
  const sub = typeof token === 'string' ? tokenSubject(token) : null;
  return sub === null ? dbName : `${dbName}@${sub}`;
}

// The subject a token names (its `sub`), null for none.
function subjectOf(token) {
  return typeof token === 'string' ? tokenSubject(token) : null;
}

// The meta of an action dispatched now on a device whose confirmed state
// is at `seen`: pending, so no offset or seq yet (see README, "meta").
function pendingMeta(clientId, subject, seen, schema) {
  return { offset: null, clientId, subject, seq: null, time: Date.now(), seen, schema };
}

// The same, noting in `metaRead` whether the reducer reads it: if it does,
// the action's confirmation folds it again with the server's values. One
// object, its values set per call: a new one per dispatch (six getters)
// cost about 1.3 µs, more than the rest of a dispatch. It is valid during
// the reducer's call; `{ ...meta }` or its fields keep what it said.
let metaRead = false;
let mClient = null;
let mSubject = null;
let mTime = 0;
let mSeen = 0;
let mSchema = 1;
const WATCHED = Object.freeze({
  get offset() { metaRead = true; return null; },
  get clientId() { metaRead = true; return mClient; },
  get subject() { metaRead = true; return mSubject; },
  get seq() { metaRead = true; return null; },
  get time() { metaRead = true; return mTime; },
  get seen() { metaRead = true; return mSeen; },
  get schema() { return mSchema; }, // the same once confirmed
});
function watchedMeta(clientId, subject, time, seen, schema) {
  metaRead = false;
  mSchema = schema;
  mClient = clientId;
  mSubject = subject;
  mTime = time;
  mSeen = seen;
  return WATCHED;
}

// The `sub` claim of a JWT, read without checking the signature (the
// server checks it); null for anything else. Read here rather than in the
// wasm module: JSON.parse is free in JS, a JSON parser in Rust is not.
function tokenSubject(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims !== null && typeof claims === 'object' && typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : null;
  } catch {
    return null;
  }
}

function openInner(low, reducer, initialState) {
  const dbName = dbNameFor(low.dbName, low.token ?? null);
  const subject = subjectOf(low.token ?? null);
  return Promise.resolve(wasm.openStore({ ...low, dbName, subject }, reducer, initialState)).catch((err) => {
    throw toLogsyncError(err, 'INTERNAL', `Could not open the Logsync store of stream "${low.stream}"`);
  });
}

/**
 * The error codes the wasm module knows (equal to ERROR_CODES). Needs the
 * module: call after `await init()`.
 * @returns {string[]}
 */
export function wasmErrorCodes() {
  if (!loaded) {
    throw new LogsyncError('INVALID_REQUEST', 'wasmErrorCodes() needs the wasm module: call `await init()` first (or use ERROR_CODES, which needs nothing)');
  }
  return Array.from(wasm.errorCodes());
}

function checkOptions(options) {
  const bad = (what) => new LogsyncError('INVALID_REQUEST', `createSyncStore: ${what}`);
  if (options === null || typeof options !== 'object') {
    throw bad(`expects an options object { url, stream, reducer, initialState, dbName }, got ${describe(options)}`);
  }
  const { url, stream, reducer, dbName = 'logsync', token, snapshotEvery, connect, replicate, heartbeatMs, backoffMinMs, backoffMaxMs, shareConnection, leaderTimeoutMs, schemaVersion = 1, minSchemaVersion } = options;
  if (typeof url !== 'string' || !/^wss?:\/\//i.test(url)) {
    const hint = typeof url === 'string' && /^https?:\/\//i.test(url)
      ? ` (use ${url.replace(/^http/i, 'ws')})` : '';
    throw bad(`options.url must be the server's WebSocket URL such as "ws://localhost:8080/v1/ws", got ${describe(url)}${hint}`);
  }
  if (typeof stream !== 'string' || stream.length === 0) {
    throw bad(`options.stream must be a stream name such as "todos/team-42", got ${describe(stream)}`);
  }
  if (typeof reducer !== 'function') {
    throw bad(`options.reducer must be a function (state, action) => state, got ${describe(reducer)}`);
  }
  if (typeof dbName !== 'string' || dbName.length === 0) {
    throw bad(`options.dbName must be a non-empty string naming the IndexedDB database, got ${describe(dbName)}`);
  }
  if (token !== undefined && token !== null && typeof token !== 'string') {
    throw bad(`options.token must be a string (a JWT) or left out, got ${describe(token)}`);
  }
  for (const [name, value] of [['snapshotEvery', snapshotEvery], ['heartbeatMs', heartbeatMs], ['backoffMinMs', backoffMinMs], ['backoffMaxMs', backoffMaxMs], ['leaderTimeoutMs', leaderTimeoutMs], ['schemaVersion', schemaVersion], ['minSchemaVersion', minSchemaVersion]]) {
    if (value !== undefined && !(Number.isInteger(value) && value > 0 && value <= 0xffffffff)) {
      throw bad(`options.${name} must be a positive integer, got ${describe(value)}`);
    }
  }
  if (backoffMinMs !== undefined && backoffMaxMs !== undefined && backoffMinMs > backoffMaxMs) {
    throw bad(`options.backoffMinMs (${backoffMinMs}) must not exceed options.backoffMaxMs (${backoffMaxMs})`);
  }
  for (const [name, value] of [['connect', connect], ['replicate', replicate], ['shareConnection', shareConnection]]) {
    if (value !== undefined && typeof value !== 'boolean') throw bad(`options.${name} must be true or false, got ${describe(value)}`);
  }
  const { filter, devtools = true, onlineOnly = [], ttl = {} } = options;
  if (!Array.isArray(onlineOnly) || typeof ttl !== 'object') {
    throw bad('options.onlineOnly must be an array of action types and options.ttl an object { type: ms }');
  }
  if (filter !== undefined && typeof filter !== 'function') {
    throw bad(`options.filter must be a function (action) => boolean (true: synced, false: kept local), got ${describe(filter)}`);
  }
  if (typeof devtools !== 'boolean' && (devtools === null || typeof devtools !== 'object')) {
    throw bad(`options.devtools must be true, false or { name, extension }, got ${describe(devtools)}`);
  }
  let initialState = options.initialState;
  if (initialState === undefined) {
    // Like Redux: a reducer with a default state argument supplies it.
    initialState = reducer(undefined, { type: INIT_ACTION_TYPE });
    if (initialState === undefined) {
      throw bad('options.initialState is missing and reducer(undefined, { type: "@@logsync/INIT" }) returned undefined; pass initialState or give the reducer a default state');
    }
  }
  const { upcast, migrate } = options;
  if (![upcast, migrate].every((f) => f === undefined || typeof f === 'function')) throw bad('options.upcast and options.migrate must be functions');
  const low = { url, stream, dbName, schemaVersion, minSchemaVersion, upcast, migrate };
  if (token != null) low.token = token;
  if (snapshotEvery !== undefined) low.snapshotEvery = snapshotEvery;
  if (connect !== undefined) low.connect = connect;
  if (replicate !== undefined) low.replicate = replicate;
  if (heartbeatMs !== undefined) low.heartbeatMs = heartbeatMs;
  if (backoffMinMs !== undefined) low.backoffMinMs = backoffMinMs;
  if (backoffMaxMs !== undefined) low.backoffMaxMs = backoffMaxMs;
  if (shareConnection !== undefined) low.shareConnection = shareConnection;
  if (leaderTimeoutMs !== undefined) low.leaderTimeoutMs = leaderTimeoutMs;
  return { low, reducer, initialState, filter, devtools, onlineOnly: new Set(onlineOnly), ttl: new Map(Object.entries(ttl)) };
}

// Schedules microtasks: `resolved.then(f)` (queueMicrotask is slower).
const resolved = Promise.resolve();

// Values per dispatch in a burst handed to the wasm store's
// `dispatchFolded`: [json, action, state, time, seen, read, expires].
const GROUP = 7;

// An online-only action dispatched while the store is not live.
const offline = (type) => new LogsyncError('OFFLINE', `"${type}" is online-only and the store is not connected; nothing was queued`);

const $$observable = (typeof Symbol === 'function' && Symbol.observable) || '@@observable';

// The wasm store's message for a reducer that dispatches or reads the state.
const BUSY = 'the store is busy running the reducer: a reducer may not dispatch, read the state or subscribe';

// What a store hands the wasm store as its reducer: the app's, marking
// `running.on` while the wasm store runs it (remote events, a refold, the
// replay on opening), so that the store refuses that reducer's calls
// (dispatch, getState, subscribe) as it refuses those of a reducer it runs
// itself.
function guarded(running, reducer) {
  return (state, action, meta) => {
    if (running.on) return reducer(state, action, meta);
    running.on = true;
    try {
      return reducer(state, action, meta);
    } finally {
      running.on = false;
    }
  };
}

// Runs the reducer for a dispatch (in either layer), marking
// `running.on`; a throw or an `undefined` state is a REDUCER error.
function runReducer(running, reducer, base, action, meta) {
  let next;
  running.on = true;
  try {
    next = reducer(base, action, meta);
  } catch (err) {
    throw new LogsyncError('REDUCER', `reducer failed: the reducer threw ${errorText(err)}`, { cause: err });
  } finally {
    running.on = false;
  }
  if (next === undefined) {
    throw new LogsyncError('REDUCER', 'reducer failed: the reducer returned undefined; return the state it was given when an action does not apply');
  }
  return next;
}

// Calls a listener; a throw goes to the page as an uncaught error (as the
// wasm store does with its listeners) and the other listeners still run.
function callListener(fn) {
  try {
    fn();
  } catch (err) {
    report(err, 'a Logsync listener threw:');
  }
}

function report(err, what) {
  if (typeof reportError === 'function') reportError(err);
  else console.error(what, err);
}

function errorText(err) {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function wrapStore(first, low, firstReducer, initialState, dispatched, switched, onlineOnly, ttl, running) {
  const { stream, schemaVersion } = low;
  let inner = first;
  let dbName = dbNameFor(low.dbName, low.token ?? null);
  let subject = subjectOf(low.token ?? null);
  let closed = false;
  let reducer = firstReducer;
  // What this replica's pending meta holds: its client id and the
  // confirmed offset, as of its last status.
  let clientId = null;
  let seen = 0;
  // While another user's replica opens (setToken with another subject),
  // dispatching would mix the two users' actions: refused until it is open.
  let switching = null;

  // Dispatch runs the reducer here, in JS, and tells subscribers at once;
  // the dispatches of one burst (everything until the next microtask) go
  // to the wasm store in one call, which records them as pending intents
  // with the states computed here and queues them for IndexedDB and the
  // server. That saves each dispatch the crossings into wasm and back.
  // `burst.base` is the state the first of them was folded onto; if the
  // wasm store's state moved meanwhile (it tells us through `onInner`),
  // the burst is handed over at once and folded again there.
  let burst = null;
  let latest; // the state after the burst's last dispatch
  // The most UTF-8 bytes of JSON an action may have: the server's limit
  // (learnt when connecting), so it is read again on every status change.
  let maxBytes = 0;

  // Subscribers, copied on write so a dispatch notifies the ones it saw
  // when it began (as Redux does) without copying on every dispatch.
  let listeners = [];
  const notify = () => {
    const now = listeners;
    for (let i = 0; i < now.length; i++) callListener(now[i].fn);
  };

  let retryMs = 0; // after a failed handover: the next wait, doubled up to 1 s
  const flush = () => {
    if (burst === null) return false;
    const { base, items } = burst;
    burst = null;
    try {
      const refolded = inner.dispatchFolded(base, items);
      retryMs = 0;
      return refolded;
    } catch (err) {
      // Nothing of the burst was recorded: keep it and try again, backing
      // off so a lasting failure is not reported in a tight loop.
      burst = { base, items };
      retryMs = Math.min(Math.max(retryMs * 2, 10), 1000);
      if (!closed) setTimeout(flush, retryMs);
      report(toLogsyncError(err, 'INTERNAL', 'handing dispatches to the store failed'), 'Logsync:');
      return false;
    }
  };

  // Every state change of the wasm store: remote events, rebases,
  // rollbacks, a refolded burst, replaceReducer.
  const onInner = () => {
    if (burst !== null && flush()) return; // the refold notified already
    notify();
  };

  // Status, error and rejection listeners live here, so that they follow
  // the store when it switches to another user's replica.
  const statusListeners = new Set();
  // The layer above's hooks: told of every status change without the
  // status object, which they build only if someone listens to them.
  const changeHooks = new Set();
  const errorListeners = new Set();
  const rejectedListeners = new Set();
  const statusMoved = () => {
    for (const entry of changeHooks) entry.fn(); // internal: no copy needed
    if (statusListeners.size > 0) fanOut(statusListeners, inner.status());
  };
  const fanOut = (set, value) => {
    for (const entry of [...set]) {
      try {
        entry.fn(value);
      } catch (err) {
        report(err, 'a Logsync listener threw:');
      }
    }
  };
  let unwire = () => {};
  const wire = (store) => {
    maxBytes = store.maxActionBytes();
    const first = store.status();
    clientId = first.clientId;
    seen = first.offset;
    const stops = [
      store.subscribe(onInner),
      // The status object is built only for someone who listens: a
      // dispatch needs only the offset (its `meta.seen`), and every
      // dispatch changes the status (`pending`, `writing`).
      store.onStatus((offset) => {
        maxBytes = store.maxActionBytes();
        seen = offset;
        statusMoved();
      }),
      store.onError((err) => fanOut(errorListeners, toLogsyncError(err, 'INTERNAL', 'sync error'))),
      store.onRejected((rejection) => fanOut(rejectedListeners, rejection)),
    ];
    unwire = () => stops.forEach((stop) => stop());
  };
  wire(inner);

  // The status: the wasm store's, with a burst not handed over yet counted
  // in (its actions are pending, their outbox writes to come), so that a
  // read right after a dispatch describes now. Not flushed for it: status
  // may be read while a view renders, and a flush tells status listeners.
  // The same object until the wasm store's or the burst's count moves.
  let overlay = null;
  const status = () => {
    const base = inner.status();
    if (burst === null) return base;
    const n = burst.items.length / GROUP;
    if (overlay === null || overlay.base !== base || overlay.n !== n) {
      overlay = { base, n, status: Object.freeze({ ...base, pending: base.pending + n, writing: base.writing + n }) };
    }
    return overlay.status;
  };

  const ensureOpen = (method) => {
    if (closed) {
      throw new LogsyncError('STORE_CLOSED', `store.${method}() was called after store.close(); create a new store with createSyncStore()`);
    }
  };
  const getState = () => {
    if (running.on) throw new LogsyncError('INVALID_REQUEST', BUSY);
    return burst !== null ? latest : inner.getState();
  };

  const dispatch = (action) => {
    ensureOpen('dispatch');
    checkAction(action);
    if (onlineOnly.has(action.type) && !inner.status().online) throw offline(action.type);
    if (switching !== null) {
      throw new LogsyncError('INVALID_REQUEST', 'store.dispatch() was called while the store switches to another user\'s replica; await store.setToken(token) first');
    }
    if (running.on) throw new LogsyncError('INVALID_REQUEST', BUSY);
    const text = actionText(action, maxBytes);
    // What the reducer sees is what every other device will see: the
    // action as it travels, JSON.
    const parsed = JSON.parse(text);
    const base = burst !== null ? latest : inner.getState();
    const time = Date.now();
    const at = seen;
    const meta = watchedMeta(clientId, subject, time, at, schemaVersion);
    const next = runReducer(running, reducer, base, parsed, meta);
    if (burst === null) {
      burst = { base, items: [] };
      // A microtask. queueMicrotask cost about 1 µs more per dispatch in
      // Chromium (BENCHMARKS.md, "A resolved promise for the handover").
      resolved.then(flush);
    }
    const ms = ttl.get(action.type);
    burst.items.push(text, parsed, next, time, at, metaRead, ms ? time + ms : 0); // GROUP values
    latest = next;
    dispatched(text, parsed);
    notify();
    return action;
  };

  const subscribe = (listener) => {
    ensureFunction('subscribe', listener);
    if (running.on) throw new LogsyncError('INVALID_REQUEST', BUSY);
    const entry = { fn: listener };
    listeners = [...listeners, entry];
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      if (running.on) throw new LogsyncError('INVALID_REQUEST', BUSY);
      subscribed = false;
      listeners = listeners.filter((e) => e !== entry);
    };
  };

  // The wasm store keeps one frozen status object per change, so
  // `store.status` is referentially stable between changes (what
  // useSyncExternalStore needs).
  const onStatus = (listener) => listen(statusListeners, 'onStatus', listener);
  const onError = (listener) => listen(errorListeners, 'onError', listener);
  const onRejected = (listener) => listen(rejectedListeners, 'onRejected', listener);

  // This tab's actions that wait for the server, and discarding one.
  const pending = () => {
    ensureOpen('pending');
    flush();
    return Array.from(inner.pending());
  };
  const discard = (seq) => {
    ensureOpen('discard');
    flush();
    try {
      inner.discard(seq);
    } catch (err) {
      throw toLogsyncError(err, 'INTERNAL', 'discard failed');
    }
  };

  const replaceReducer = (nextReducer) => {
    ensureOpen('replaceReducer');
    if (typeof nextReducer !== 'function') {
      throw new LogsyncError('INVALID_REQUEST', `store.replaceReducer(reducer) expects a function (state, action) => state, got ${describe(nextReducer)}`);
    }
    flush();
    inner.replaceReducer(guarded(running, nextReducer));
    reducer = nextReducer;
  };

  const synced = () => {
    if (closed) return Promise.reject(new LogsyncError('STORE_CLOSED', 'store.synced() was called after store.close(); create a new store with createSyncStore()'));
    flush();
    return Promise.resolve(inner.synced());
  };

  const reconnect = () => {
    ensureOpen('reconnect');
    inner.reconnect();
  };

  const goOffline = () => {
    ensureOpen('goOffline');
    inner.goOffline();
  };

  // A refreshed token is used from the next connection on; a store that
  // stopped because the server refused its token connects at once. A
  // token of another user (another `sub`) switches to that user's own
  // replica: the previous user's replica is closed with its pending
  // actions kept in its database, to be sent when that user signs in
  // again on this browser.
  const setToken = (token) => {
    ensureOpen('setToken');
    if (token !== null && typeof token !== 'string') {
      throw new LogsyncError('INVALID_REQUEST', `store.setToken(token) expects a string (a JWT) or null, got ${describe(token)}`);
    }
    const next = dbNameFor(low.dbName, token);
    if (switching === null && next === dbName) {
      inner.setToken(token);
      return Promise.resolve();
    }
    flush(); // the previous user's last dispatches go to their replica
    const previous = switching ?? Promise.resolve();
    const step = previous.then(async () => {
      if (closed) return;
      if (next === dbName) {
        inner.setToken(token);
        return;
      }
      flush();
      const opened = await openInner({ ...low, token: token ?? undefined }, guarded(running, reducer), initialState);
      if (closed) {
        await opened.close();
        return;
      }
      const old = inner;
      unwire();
      inner = opened;
      dbName = next;
      subject = subjectOf(token);
      wire(inner);
      switched();
      notify();
      statusMoved();
      await old.close();
    });
    switching = step;
    const done = () => {
      if (switching === step) switching = null;
    };
    step.then(done, done);
    return step;
  };

  // Every call returns the same promise, so `await store.close()` from two
  // places both wait for the database to be closed.
  let closing = null;
  const close = () => {
    if (closing === null) {
      flush();
      closed = true;
      const waitSwitch = switching ?? Promise.resolve();
      closing = waitSwitch.catch(() => {}).then(() => inner.close());
    }
    return closing;
  };

  const observable = () => observableOf(getState, subscribe);

  return {
    stream,
    getState,
    dispatch,
    subscribe,
    replaceReducer,
    pendingMeta: () => pendingMeta(clientId, subject, seen, schemaVersion), // what a dispatch now is folded with
    get status() { return status(); },
    onStatus,
    onStatusChange: (hook) => listen(changeHooks, 'onStatusChange', hook),
    onError,
    onRejected,
    synced,
    reconnect,
    goOffline,
    setToken,
    pending,
    discard,
    close,
    [$$observable]: observable,
  };
}

// An action's JSON text, as it travels. Refused before it is applied (the
// server would refuse it after the optimistic apply) when it is over
// `limit` UTF-8 bytes; a text of at most limit / 3 UTF-16 units is surely
// within it.
function actionText(action, limit) {
  let text;
  try {
    text = JSON.stringify(action);
  } catch (err) {
    throw new LogsyncError('INVALID_JSON', `the action is not JSON-serialisable: ${errorText(err)}`, { cause: err });
  }
  if (typeof text !== 'string') {
    throw new LogsyncError('INVALID_JSON', 'the action is not JSON-serialisable: JSON.stringify gave no text');
  }
  if (text.length > limit / 3) {
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > limit) throw new LogsyncError('PAYLOAD_TOO_LARGE', `the action's JSON is ${bytes} bytes; the limit is ${limit}`);
  }
  return text;
}

function checkAction(action) {
  if (!isPlainObject(action)) {
    const hint = typeof action === 'function'
      ? ' Functions (thunks) cannot be synced: dispatch the plain action they would produce.'
      : '';
    throw new LogsyncError('INVALID_REQUEST',
      `dispatch expects a plain object action such as { type: 'todo/added', text: 'milk' }, got ${describe(action)}.${hint}`);
  }
  if (typeof action.type !== 'string') {
    throw new LogsyncError('INVALID_REQUEST',
      `dispatch expects an action with a string "type" (it travels as JSON), got type ${describe(action.type)}`);
  }
}

// Plain as Redux counts it: made by an object literal (or
// Object.create(null)), in this realm or another (an iframe, a vm context),
// so its prototype is the last one of its chain.
function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  if (proto === null || proto === Object.prototype) return true;
  let top = proto;
  while (Object.getPrototypeOf(top) !== null) top = Object.getPrototypeOf(top);
  return proto === top;
}

// The largest action a store takes before it has met its server: what a
// server with default settings accepts (the wasm store's own default). Once
// connected, the server's limit applies.
const DEFAULT_MAX_ACTION_BYTES = 256 * 1024;

// How often the storage estimate is refreshed, at most, on status changes.
const STORAGE_REFRESH_MS = 10_000;

function fanOutSet(set, value) {
  for (const entry of [...set]) {
    try {
      entry.fn(value);
    } catch (err) {
      report(err, 'a Logsync listener threw:');
    }
  }
}

// The public store: usable at once, hydrating in the background. Until the
// wasm store is open, the state is `initialState` with this session's
// dispatches folded in (here, in JS) and queued; once it is open, the
// queued actions are dispatched into it in order, so each is folded onto
// the restored state (the rebase the replica does for server events) and
// recorded once in the outbox. From then on every call goes to the
// wasm-backed store (`wrapStore`), with three layers on top: actions kept
// local by `filter`, the intent lifecycle, the DevTools bridge.
function hydratingStore({ low, reducer: firstReducer, initialState, filter, devtools, onlineOnly, ttl }, quiet) {
  const { stream } = low;
  let reducer = firstReducer;
  let wrapped = null; // the wasm-backed store, once hydrated
  let failed = null; // the LogsyncError that stopped hydration
  let closed = false;
  let queue = []; // before hydration: { text, parsed }, in dispatch order
  let early = initialState; // before hydration: initialState with `applied` folded in
  // Before hydration: every synced action folded into `early`, in order —
  // the queued ones, and after a failed open the ones kept in memory only.
  let applied = [];
  const local = []; // actions kept local by `filter`, in dispatch order
  let view = null; // { base, state }: `local` folded onto the synced state `base`
  let travel = null; // { state }: the state the DevTools jumped to
  // A reducer runs: one this store runs, here or in the hydrated layer, or
  // one the wasm store runs (`guarded`). Its calls into the store are
  // refused.
  const running = { on: false };
  let replaying = false;
  let connection = null; // 'reconnect' | 'offline', asked for before hydration
  // setToken with another user's token before hydration: until that
  // switch is done, synced dispatches are refused (as the hydrated store
  // does while it switches), so none goes to the previous user's replica.
  let switching = null;
  let tokenNow = low.token ?? null; // the token given last (its `sub` is meta.subject)
  let storage = null;
  let storageAt = 0;

  let listeners = [];
  let notified = 0; // notifications so far
  const notify = () => {
    notified++;
    const now = listeners;
    for (let i = 0; i < now.length; i++) callListener(now[i].fn);
  };
  const statusListeners = new Set();
  const errorListeners = new Set();
  const rejectedListeners = new Set();
  const intentListeners = new Set();

  const ensureOpen = (method) => {
    if (closed) {
      throw new LogsyncError('STORE_CLOSED', `store.${method}() was called after store.close(); create a new store with createSyncStore()`);
    }
  };
  const busy = () => new LogsyncError('INVALID_REQUEST', BUSY);

  // The meta of an action dispatched now: the hydrated store's, or before
  // hydration one with no client id yet, seen 0 (the action is applied
  // again with the store's own values when it opens).
  const metaNow = () => (wrapped !== null
    ? wrapped.pendingMeta()
    : pendingMeta(null, subjectOf(tokenNow), 0, low.schemaVersion));
  const reduce = (base, action, meta) => runReducer(running, reducer, base, action, meta);

  // The synced state: confirmed events with pending actions on top.
  const synced = () => (wrapped !== null ? wrapped.getState() : early);
  // The live view: the synced state with the local actions on top.
  const live = () => {
    const base = synced();
    if (local.length === 0) return base;
    if (view === null || view.base !== base) {
      let state = base;
      for (const { action, meta } of local) {
        try {
          state = reduce(state, action, meta);
        } catch (err) {
          report(err, 'Logsync: a local action could not be applied again:');
        }
      }
      view = { base, state };
    }
    return view.state;
  };
  const getState = () => {
    if (running.on) throw busy();
    return travel !== null ? travel.state : live();
  };

  // Status: the wasm store's, or a stand-in before hydration, plus what
  // only this layer knows.
  let failedInfo = null;
  let preStatus = null;
  const baseStatus = () => {
    if (wrapped !== null) return wrapped.status;
    if (preStatus === null || preStatus.pending !== queue.length || preStatus.lastError !== failedInfo) {
      preStatus = Object.freeze({ online: false, leader: false, offset: 0, head: 0, pending: queue.length, writing: queue.length, lastError: failedInfo, clientId: '', needsToken: false, outdated: false });
    }
    return preStatus;
  };
  let statusCache = null;
  const getStatus = () => {
    const base = baseStatus();
    const hydrated = wrapped !== null;
    if (statusCache === null || statusCache.base !== base || statusCache.storage !== storage || statusCache.hydrated !== hydrated) {
      const status = Object.freeze({ ...base, hydrated, behind: Math.max(0, base.head - base.offset), storage });
      statusCache = { base, storage, hydrated, status };
    }
    return statusCache.status;
  };
  let toldStatus = getStatus();
  const statusChanged = () => {
    // Built only for listeners (every dispatch changes the status).
    if (statusListeners.size === 0) return;
    const status = getStatus();
    if (status === toldStatus) return;
    toldStatus = status;
    fanOutSet(statusListeners, status);
  };

  // navigator.storage, where the platform has it.
  const storageApi = () => (typeof navigator !== 'undefined' && navigator && navigator.storage ? navigator.storage : null);
  const refreshStorage = async () => {
    const api = storageApi();
    if (api === null || typeof api.estimate !== 'function') return;
    storageAt = Date.now();
    try {
      const [estimate, persisted] = await Promise.all([
        api.estimate(),
        typeof api.persisted === 'function' ? api.persisted() : null,
      ]);
      const next = Object.freeze({
        usage: typeof estimate?.usage === 'number' ? estimate.usage : null,
        quota: typeof estimate?.quota === 'number' ? estimate.quota : null,
        persisted: typeof persisted === 'boolean' ? persisted : null,
      });
      if (storage === null || storage.usage !== next.usage || storage.quota !== next.quota || storage.persisted !== next.persisted) {
        storage = next;
        statusChanged();
      }
    } catch {
      // An estimate is a hint: a browser that refuses one leaves the last.
    }
  };

  // The intent lifecycle, followed while someone listens (onIntent or
  // the DevTools).
  let tracker = null;
  let bridge = null;
  const emitIntent = (event) => {
    fanOutSet(intentListeners, event);
    if (bridge !== null) bridge.intent(event);
  };
  const startTracking = () => {
    if (tracker !== null) return;
    tracker = intentTracker(emitIntent);
    if (wrapped !== null) tracker.adopt(wrapped.pending(), false);
    else if (failed === null) for (const { text, parsed } of queue) tracker.dispatched(text, parsed);
  };
  // Compares the wasm store's pending list with the open intents. Run on
  // every status change as it happens (each step of the wasm store — a
  // write done, events applied — is one status change, so a rebase is not
  // missed between two steps), and a microtask after other changes.
  let reconciling = false;
  const reconcile = () => {
    if (tracker === null || wrapped === null || closed || reconciling) return;
    reconciling = true;
    try {
      const list = wrapped.pending();
      const status = wrapped.status;
      tracker.reconcile(status, list, (others) => {
        if (bridge !== null) bridge.remote(others, status.offset);
      });
    } catch {
      // The store closed meanwhile: nothing more to report.
    } finally {
      reconciling = false;
    }
  };
  let reconcileQueued = false;
  const scheduleReconcile = () => {
    if (tracker === null || reconcileQueued || wrapped === null) return;
    reconcileQueued = true;
    resolved.then(() => {
      reconcileQueued = false;
      reconcile();
    });
  };

  // Every dispatch the wasm-backed store records (not the replayed ones,
  // which were reported when they were dispatched).
  const onDispatched = (text, parsed) => {
    if (replaying) return;
    if (tracker !== null) tracker.dispatched(text, parsed);
    if (bridge !== null) bridge.dispatched(parsed, false);
  };

  // setToken switched to another user's replica: the previous user's
  // local actions and intents are theirs, not the new user's. The tracker
  // forgets those intents (no fates: they wait in the previous user's
  // database) and adopts the new user's pending ones as restored.
  const onSwitched = () => {
    local.length = 0;
    view = null;
    travel = null;
    if (tracker !== null) {
      tracker = intentTracker(emitIntent);
      tracker.hydrated(wrapped.status, false);
      tracker.adopt(wrapped.pending(), true);
    }
  };

  const dispatch = (action) => {
    ensureOpen('dispatch');
    checkAction(action);
    if (running.on) throw busy();
    const isLocal = filter !== undefined && !filter(action);
    if (travel !== null) {
      travel = null; // the app acts: back to the live state
    }
    if (isLocal) {
      const meta = metaNow();
      const next = reduce(live(), action, meta);
      local.push({ action, meta });
      view = { base: synced(), state: next };
      if (bridge !== null) bridge.dispatched(action, true);
      notify();
      return action;
    }
    if (switching !== null) {
      throw new LogsyncError('INVALID_REQUEST', 'store.dispatch() was called while the store switches to another user\'s replica; await store.setToken(token) first');
    }
    if (wrapped !== null) {
      wrapped.dispatch(action);
      return action;
    }
    if (onlineOnly.has(action.type)) throw offline(action.type);
    // Before hydration: applied here and queued.
    const text = actionText(action, DEFAULT_MAX_ACTION_BYTES);
    const parsed = JSON.parse(text);
    const meta = metaNow();
    early = reduce(early, parsed, meta);
    applied.push({ parsed, meta });
    if (failed === null) {
      queue.push({ text, parsed });
      if (tracker !== null) tracker.dispatched(text, parsed);
    }
    if (bridge !== null) bridge.dispatched(parsed, false);
    notify();
    statusChanged();
    return action;
  };

  // As in Redux, a reducer may not subscribe or unsubscribe.
  const subscribe = (listener) => {
    ensureFunction('subscribe', listener);
    if (running.on) throw busy();
    const entry = { fn: listener };
    listeners = [...listeners, entry];
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      if (running.on) throw busy();
      subscribed = false;
      listeners = listeners.filter((e) => e !== entry);
    };
  };
  const onStatus = (listener) => listen(statusListeners, 'onStatus', listener);
  const onError = (listener) => listen(errorListeners, 'onError', listener);
  const onRejected = (listener) => listen(rejectedListeners, 'onRejected', listener);
  const onIntent = (listener) => {
    const first = intentListeners.size === 0;
    const stop = listen(intentListeners, 'onIntent', listener);
    if (tracker === null) {
      startTracking();
    } else if (first) {
      // Tracking began earlier (for the DevTools): a first listener still
      // hears `pending` for the actions pending now.
      try {
        tracker.replay(listener);
      } catch (err) {
        report(err, 'a Logsync listener threw:');
      }
    }
    return once(() => {
      stop();
      if (intentListeners.size === 0 && bridge === null) tracker = null;
    });
  };

  const hydrate = async () => {
    await init();
    const opening = reducer;
    // Closed meanwhile: opened only to record the queued actions, offline.
    const inner = await openInner(closed ? { ...low, connect: false } : low, guarded(running, opening), initialState);
    const store = wrapStore(inner, low, opening, initialState, onDispatched, onSwitched, onlineOnly, ttl, running);
    if (closed) {
      // close() came first: record the queued actions (it waits for that)
      // and tell no one anything more.
      wrapped = store;
      inner.goOffline();
      replaying = true;
      try {
        for (const { parsed } of queue) {
          try {
            store.dispatch(parsed);
          } catch (err) {
            report(toLogsyncError(err, 'INTERNAL', 'an action dispatched before the store opened could not be recorded'), 'Logsync:');
          }
        }
      } finally {
        replaying = false;
      }
      queue = [];
      return;
    }
    if (reducer !== opening) store.replaceReducer(reducer);
    const before = early;
    const restored = store.pending();
    const moved = store.status.offset > 0 || restored.length > 0;
    if (tracker !== null) tracker.adopt(restored, true);
    wrapped = store;
    replaying = true;
    // Told once the replay is over and the store is wired: a listener
    // that dispatches then comes after the replayed actions, and is tracked.
    const failures = [];
    try {
      for (const { text, parsed } of queue) {
        try {
          store.dispatch(parsed);
        } catch (err) {
          failures.push({ text, error: toLogsyncError(err, 'INTERNAL', 'an action dispatched before the store opened could not be recorded') });
        }
      }
    } finally {
      replaying = false;
    }
    queue = [];
    applied = [];
    early = undefined;
    store.subscribe(() => {
      notify();
      scheduleReconcile();
    });
    store.onStatusChange(() => {
      reconcile();
      statusChanged();
      if (Date.now() - storageAt > STORAGE_REFRESH_MS) refreshStorage();
    });
    store.onError((err) => {
      if (err.code === 'EPOCH_CHANGED' && tracker !== null) tracker.epochChanged();
      fanOutSet(errorListeners, err);
    });
    store.onRejected((rejection) => {
      if (tracker !== null) tracker.rejected(rejection);
      fanOutSet(rejectedListeners, rejection);
      scheduleReconcile();
    });
    if (tracker !== null) tracker.hydrated(store.status, moved, failures);
    for (const { error } of failures) {
      fanOutSet(errorListeners, error);
      if (errorListeners.size === 0) report(error, 'Logsync:');
    }
    if (bridge !== null) bridge.hydrated(store.status.offset);
    if (connection === 'offline') store.goOffline();
    else if (connection === 'reconnect') store.reconnect();
    if (store.getState() !== before) notify();
    statusChanged();
    scheduleReconcile();
    refreshStorage();
  };

  const ready = hydrate().then(() => undefined, (err) => {
    const e = toLogsyncError(err, 'INTERNAL', `Could not open the Logsync store of stream "${stream}"`);
    failed = e;
    failedInfo = Object.freeze({ code: e.code, message: e.message });
    if (closed) throw e; // close() came first: no one is told any more
    if (tracker !== null) for (const { text } of queue) tracker.failed(text, e);
    queue = [];
    fanOutSet(errorListeners, e);
    if (!quiet && errorListeners.size === 0) report(e, 'Logsync:');
    statusChanged();
    throw e;
  });
  ready.catch(() => {}); // told through onError (or the console); awaiting it is optional

  const notHydrated = (method) => new LogsyncError('INVALID_REQUEST', failed !== null
    ? `store.${method}() needs the stored replica, which could not be opened: ${failed.message}`
    : `store.${method}() needs the stored replica: await store.ready first`);

  const pending = () => {
    ensureOpen('pending');
    if (wrapped === null) return queue.map(({ parsed }) => Object.freeze({ seq: null, action: parsed }));
    const list = wrapped.pending();
    scheduleReconcile();
    return list;
  };
  const discard = (seq) => {
    ensureOpen('discard');
    if (wrapped === null) throw notHydrated('discard');
    // Told first: the wasm store reports the change before it returns.
    if (tracker !== null) tracker.discarded(seq);
    try {
      wrapped.discard(seq);
    } catch (err) {
      if (tracker !== null) tracker.discarded(seq, false);
      throw err;
    }
    scheduleReconcile();
    // One already sent may be taken by the server all the same: once the
    // store has nothing left to decide, one whose event did not come was
    // withdrawn.
    if (tracker !== null) {
      wrapped.synced().then(() => {
        reconcile();
        if (tracker !== null && !closed) tracker.settled();
      }, () => {});
    }
  };

  const replaceReducer = (nextReducer) => {
    ensureOpen('replaceReducer');
    if (typeof nextReducer !== 'function') {
      throw new LogsyncError('INVALID_REQUEST', `store.replaceReducer(reducer) expects a function (state, action) => state, got ${describe(nextReducer)}`);
    }
    const previous = reducer;
    reducer = nextReducer;
    view = null;
    if (wrapped !== null) {
      // The wasm store tells its subscribers (and so ours) once; local
      // actions are re-applied when the view is next read.
      const told = notified;
      wrapped.replaceReducer(nextReducer);
      if (notified === told) notify();
      return;
    }
    try {
      let state = initialState;
      for (const { parsed, meta } of applied) state = reduce(state, parsed, meta);
      early = state;
    } catch (err) {
      reducer = previous;
      throw err;
    }
    notify();
  };

  const syncedPromise = () => {
    if (closed) return Promise.reject(new LogsyncError('STORE_CLOSED', 'store.synced() was called after store.close(); create a new store with createSyncStore()'));
    return ready.then(() => wrapped.synced());
  };
  const reconnect = () => {
    ensureOpen('reconnect');
    if (wrapped !== null) wrapped.reconnect();
    else connection = 'reconnect';
  };
  const goOffline = () => {
    ensureOpen('goOffline');
    if (wrapped !== null) wrapped.goOffline();
    else connection = 'offline';
  };
  const setToken = (token) => {
    ensureOpen('setToken');
    if (token !== null && typeof token !== 'string') {
      throw new LogsyncError('INVALID_REQUEST', `store.setToken(token) expects a string (a JWT) or null, got ${describe(token)}`);
    }
    tokenNow = token;
    if (wrapped !== null) return wrapped.setToken(token);
    const step = ready.then(() => wrapped.setToken(token));
    if (dbNameFor(low.dbName, token) !== dbNameFor(low.dbName, low.token ?? null)) {
      switching = step;
      const done = () => {
        if (switching === step) switching = null;
      };
      step.then(done, done);
    }
    return step;
  };

  const persist = async () => {
    const api = storageApi();
    if (api === null || typeof api.persist !== 'function') return false;
    let granted;
    try {
      granted = await api.persist();
    } catch (err) {
      throw toLogsyncError(err, 'INTERNAL', 'navigator.storage.persist() failed');
    }
    await refreshStorage();
    return granted === true;
  };

  let closing = null;
  const close = () => {
    if (closing === null) {
      closed = true;
      if (bridge !== null) {
        bridge.close();
        bridge = null;
      }
      closing = ready.then(() => wrapped.close(), () => {});
    }
    return closing;
  };

  const observable = () => observableOf(getState, subscribe);

  const ext = findExtension(devtools);
  if (ext !== null) {
    try {
      bridge = devtoolsBridge(ext, typeof devtools === 'object' ? devtools : {}, {
        stream,
        getState: live,
        travel(state) {
          travel = state === null ? null : { state };
          notify();
        },
        report: (err) => report(err, 'Logsync DevTools:'),
      });
      startTracking();
    } catch (err) {
      report(err, 'Logsync: could not connect to the Redux DevTools:');
    }
  }

  return {
    stream,
    ready,
    getState,
    dispatch,
    subscribe,
    replaceReducer,
    get status() { return getStatus(); },
    getStatus,
    onStatus,
    onError,
    onRejected,
    onIntent,
    synced: syncedPromise,
    reconnect,
    goOffline,
    setToken,
    pending,
    discard,
    persist,
    close,
    [$$observable]: observable,
  };
}

function ensureFunction(method, fn) {
  if (typeof fn !== 'function') {
    throw new LogsyncError('INVALID_REQUEST', `store.${method}(listener) expects a function, got ${describe(fn)}`);
  }
}

/** The interop observable of a store (`store[Symbol.observable]()`), as Redux's. */
function observableOf(getState, subscribe) {
  return {
    subscribe(observer) {
      if (observer === null || typeof observer !== 'object') {
        throw new TypeError('Expected the observer to be an object with a next() method.');
      }
      const next = () => { if (observer.next) observer.next(getState()); };
      next();
      return { unsubscribe: subscribe(next) };
    },
    [$$observable]() { return this; },
  };
}

/** Adds `listener` to `set` (checked to be a function, for `store.${method}`); returns its removal, which works once. */
function listen(set, method, listener) {
  ensureFunction(method, listener);
  const entry = { fn: listener };
  set.add(entry);
  return once(() => set.delete(entry));
}

function once(stop) {
  let done = false;
  return () => {
    if (!done) { done = true; stop(); }
  };
}
