// The Logsync store: a Redux-compatible store whose state is the reduction
// of a server-ordered event log, kept in IndexedDB and synced over a
// WebSocket. This file is the idiomatic JS face over the wasm module's
// low-level `openStore`; everything that syncs lives in the wasm module.

import loadWasm, * as wasm from '../wasm/logsync_wasm.js';
import { ERROR_CODES, LogsyncError, describe, isLogsyncError, toLogsyncError } from './errors.js';

export { ERROR_CODES, LogsyncError, isLogsyncError };

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
 * syncing it. Resolves once the store is usable: state restored from
 * IndexedDB, even with no network.
 *
 * @param {import('./index.js').StoreOptions<any, any>} options
 * @returns {Promise<import('./index.js').SyncStore<any, any>>}
 */
export async function createSyncStore(options) {
  const { low, reducer, initialState } = checkOptions(options);
  await init();
  const inner = await openInner(low, reducer, initialState);
  return wrapStore(inner, low, reducer, initialState);
}

// The IndexedDB database of a user: `dbName` alone without a token (or
// one without a subject), `dbName@subject` otherwise, so that the users of
// one browser never share a client id (the server binds a client id to its
// first subject), a replica or an outbox.
export function dbNameFor(dbName, token) {
  const sub = typeof token === 'string' ? tokenSubject(token) : null;
  return sub === null ? dbName : `${dbName}@${sub}`;
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
  return Promise.resolve(wasm.openStore({ ...low, dbName }, reducer, initialState)).catch((err) => {
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
  const { url, stream, reducer, dbName = 'logsync', token, snapshotEvery, connect, heartbeatMs, backoffMinMs, backoffMaxMs } = options;
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
  for (const [name, value] of [['snapshotEvery', snapshotEvery], ['heartbeatMs', heartbeatMs], ['backoffMinMs', backoffMinMs], ['backoffMaxMs', backoffMaxMs]]) {
    if (value !== undefined && !(Number.isInteger(value) && value > 0 && value <= 0xffffffff)) {
      throw bad(`options.${name} must be a positive integer, got ${describe(value)}`);
    }
  }
  if (backoffMinMs !== undefined && backoffMaxMs !== undefined && backoffMinMs > backoffMaxMs) {
    throw bad(`options.backoffMinMs (${backoffMinMs}) must not exceed options.backoffMaxMs (${backoffMaxMs})`);
  }
  if (connect !== undefined && typeof connect !== 'boolean') {
    throw bad(`options.connect must be true or false, got ${describe(connect)}`);
  }
  let initialState = options.initialState;
  if (initialState === undefined) {
    // Like Redux: a reducer with a default state argument supplies it.
    initialState = reducer(undefined, { type: INIT_ACTION_TYPE });
    if (initialState === undefined) {
      throw bad('options.initialState is missing and reducer(undefined, { type: "@@logsync/INIT" }) returned undefined; pass initialState or give the reducer a default state');
    }
  }
  const low = { url, stream, dbName };
  if (token != null) low.token = token;
  if (snapshotEvery !== undefined) low.snapshotEvery = snapshotEvery;
  if (connect !== undefined) low.connect = connect;
  if (heartbeatMs !== undefined) low.heartbeatMs = heartbeatMs;
  if (backoffMinMs !== undefined) low.backoffMinMs = backoffMinMs;
  if (backoffMaxMs !== undefined) low.backoffMaxMs = backoffMaxMs;
  return { low, reducer, initialState };
}

const $$observable = (typeof Symbol === 'function' && Symbol.observable) || '@@observable';

// The wasm store's message for a reducer that dispatches or reads the state.
const BUSY = 'the store is busy running the reducer: a reducer may not dispatch, read the state or subscribe';

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

function wrapStore(first, low, firstReducer, initialState) {
  const { stream } = low;
  let inner = first;
  let dbName = dbNameFor(low.dbName, low.token ?? null);
  let closed = false;
  let reducer = firstReducer;
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
  let reducing = false;
  // Actions whose JSON text has at most this many UTF-16 units are surely
  // within the store's byte limit (3 UTF-8 bytes per unit at most); longer
  // ones take the wasm store's own dispatch, which measures and refuses
  // them before they are applied. The limit is the server's (learnt when
  // connecting), so it is read again on every status change.
  let inlineLimit = 0;

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
  // rollbacks, a refolded burst, replaceReducer, a large action.
  const onInner = () => {
    if (burst !== null && flush()) return; // the refold notified already
    notify();
  };

  // Status, error and rejection listeners live here, so that they follow
  // the store when it switches to another user's replica.
  const statusListeners = new Set();
  const errorListeners = new Set();
  const rejectedListeners = new Set();
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
    inlineLimit = Math.floor(store.maxActionBytes() / 3);
    const stops = [
      store.subscribe(onInner),
      store.onStatus(() => {
        inlineLimit = Math.floor(store.maxActionBytes() / 3);
        fanOut(statusListeners, store.status());
      }),
      store.onError((err) => fanOut(errorListeners, toLogsyncError(err, 'INTERNAL', 'sync error'))),
      store.onRejected((rejection) => fanOut(rejectedListeners, rejection)),
    ];
    unwire = () => stops.forEach((stop) => stop());
  };
  wire(inner);

  const ensureOpen = (method) => {
    if (closed) {
      throw new LogsyncError('STORE_CLOSED', `store.${method}() was called after store.close(); create a new store with createSyncStore()`);
    }
  };
  const ensureFunction = (method, fn) => {
    if (typeof fn !== 'function') {
      throw new LogsyncError('INVALID_REQUEST', `store.${method}(listener) expects a function, got ${describe(fn)}`);
    }
  };
  const once = (stop) => {
    let done = false;
    return () => {
      if (!done) { done = true; stop(); }
    };
  };

  const getState = () => {
    if (reducing) throw new LogsyncError('INVALID_REQUEST', BUSY);
    return burst !== null ? latest : inner.getState();
  };

  const dispatch = (action) => {
    ensureOpen('dispatch');
    checkAction(action);
    if (switching !== null) {
      throw new LogsyncError('INVALID_REQUEST', 'store.dispatch() was called while the store switches to another user\'s replica; await store.setToken(token) first');
    }
    if (reducing) throw new LogsyncError('INVALID_REQUEST', BUSY);
    let text;
    try {
      text = JSON.stringify(action);
    } catch (err) {
      throw new LogsyncError('INVALID_JSON', `the action is not JSON-serialisable: ${errorText(err)}`, { cause: err });
    }
    if (typeof text !== 'string') {
      throw new LogsyncError('INVALID_JSON', 'the action is not JSON-serialisable: JSON.stringify gave no text');
    }
    if (text.length > inlineLimit) {
      // Rare and large: the wasm store measures it in bytes and refuses it
      // with PAYLOAD_TOO_LARGE when it is over. Earlier dispatches first.
      flush();
      try {
        inner.dispatch(action);
      } catch (err) {
        throw toLogsyncError(err, 'INTERNAL', 'dispatch failed');
      }
      return action;
    }
    // What the reducer sees is what every other device will see: the
    // action as it travels, JSON.
    const parsed = JSON.parse(text);
    const base = burst !== null ? latest : inner.getState();
    let next;
    reducing = true;
    try {
      next = reducer(base, parsed);
    } catch (err) {
      throw new LogsyncError('REDUCER', `reducer failed: the reducer threw ${errorText(err)}`, { cause: err });
    } finally {
      reducing = false;
    }
    if (next === undefined) {
      throw new LogsyncError('REDUCER', 'reducer failed: the reducer returned undefined; return the state it was given when an action does not apply');
    }
    if (burst === null) {
      burst = { base, items: [] };
      queueMicrotask(flush);
    }
    burst.items.push(text, parsed, next);
    latest = next;
    notify();
    return action;
  };

  const subscribe = (listener) => {
    ensureFunction('subscribe', listener);
    const entry = { fn: listener };
    listeners = [...listeners, entry];
    return once(() => {
      listeners = listeners.filter((e) => e !== entry);
    });
  };

  // The wasm store keeps one frozen status object per change, so
  // `store.status` is referentially stable between changes (what
  // useSyncExternalStore needs).
  const listen = (set, method, listener) => {
    ensureFunction(method, listener);
    const entry = { fn: listener };
    set.add(entry);
    return once(() => set.delete(entry));
  };
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
    inner.replaceReducer(nextReducer);
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
      const opened = await openInner({ ...low, token: token ?? undefined }, reducer, initialState);
      if (closed) {
        await opened.close();
        return;
      }
      const old = inner;
      unwire();
      inner = opened;
      dbName = next;
      wire(inner);
      notify();
      fanOut(statusListeners, inner.status());
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

  const observable = () => ({
    subscribe(observer) {
      if (observer === null || typeof observer !== 'object') {
        throw new TypeError('Expected the observer to be an object with a next() method.');
      }
      const next = () => { if (observer.next) observer.next(getState()); };
      next();
      return { unsubscribe: subscribe(next) };
    },
    [$$observable]() { return this; },
  });

  return {
    stream,
    getState,
    dispatch,
    subscribe,
    replaceReducer,
    // Not flushed here: status may be read while a view renders, and a
    // flush tells status listeners. A burst shows in `pending` a
    // microtask after its first dispatch.
    get status() { return inner.status(); },
    onStatus,
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

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
