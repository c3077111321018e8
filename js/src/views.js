// View stores: read-only Redux-style stores of one view a reducer module
// exports on the server (GET /v1/streams/{s}/views/{name}), followed live
// over Server-Sent Events and cached in IndexedDB for offline starts.
//
// The feed is read with `fetch` and a streaming body, not EventSource, so
// the token can go in an Authorization header (EventSource sends none); the
// SSE parser and the JSON Patch applier below are small hand-written parts:
// the server sends only `add`, `remove` and `replace` with JSON Pointers,
// and a general JSON Patch library would add its size to every page that
// imports it.
//
// Its own entry point, `logsync/views`: a page that follows no view does
// not load it (BENCHMARKS.md, "Views in their own entry point").

import { LogsyncError, describe } from './errors.js';
import { dbNameFor } from './index.js';

/**
 * @param {import('./index.js').ViewStoreOptions} options
 * @returns {import('./index.js').ViewStore<any>}
 */
export function createViewStore(options) {
  const bad = (m) => new LogsyncError('INVALID_REQUEST', `createViewStore: ${m}`);
  if (options === null || typeof options !== 'object') throw bad(`expects an options object, got ${describe(options)}`);
  const { url, stream, view, params = null, dbName = 'logsync', backoffMinMs = 250, backoffMaxMs = 30_000 } = options;
  for (const [name, v] of [['url', url], ['stream', stream], ['view', view], ['dbName', dbName]]) {
    if (typeof v !== 'string' || v === '') throw bad(`options.${name} must be a non-empty string, got ${describe(v)}`);
  }
  for (const [name, v] of [['backoffMinMs', backoffMinMs], ['backoffMaxMs', backoffMaxMs]]) {
    if (!Number.isFinite(v) || v < 0) throw bad(`options.${name} must be a number of ms, got ${describe(v)}`);
  }
  if (backoffMinMs > backoffMaxMs) throw bad(`options.backoffMinMs (${backoffMinMs}) must not exceed options.backoffMaxMs (${backoffMaxMs})`);
  let token = options.token ?? null;
  if (token !== null && typeof token !== 'string') throw bad(`options.token must be a string or null, got ${describe(token)}`);
  const paramsJson = JSON.stringify(params);
  if (paramsJson === undefined) throw bad(`options.params must be a JSON value, got ${describe(params)}`);
  const base = url.replace(/^ws(s?):/, 'http$1:').replace(/\/v1\/ws\/?$/, '').replace(/\/+$/, '');
  const endpoint = `${base}/v1/streams/${encodeURIComponent(stream)}/views/${encodeURIComponent(view)}`
    + (params === null ? '' : `?params=${encodeURIComponent(paramsJson)}`);
  const cacheKey = JSON.stringify([stream, view, params]);

  let result;
  let known = false; // a result is held (from the cache or the server)
  let closed = false;
  let attempt = 0;
  let abort = null; // the open request's AbortController
  let wake = null; // ends the backoff wait early
  const listeners = new Set();
  const statusListeners = new Set();
  let status = Object.freeze({ online: false, offset: 0, hydrated: false, lastError: null, needsToken: false });
  const setStatus = (patch) => {
    status = Object.freeze({ ...status, ...patch });
    for (const l of [...statusListeners]) l(status);
  };

  const cache = openCache(`${dbNameFor(dbName, token)}-views`);
  let writes = Promise.resolve();
  const commit = (offset, next) => {
    result = next;
    known = true;
    setStatus({ offset });
    writes = writes.then(() => cache.then((db) => db && db.put(cacheKey, { offset, result: next }))).catch(() => {});
    for (const l of [...listeners]) l();
  };

  const ready = cache.then((db) => (db ? db.get(cacheKey) : undefined)).catch(() => undefined).then((hit) => {
    if (hit && !known && !closed) {
      result = hit.result;
      known = true;
      setStatus({ offset: hit.offset });
      for (const l of [...listeners]) l();
    }
    setStatus({ hydrated: true });
    run();
  });

  function onEvent(type, data) {
    const body = JSON.parse(data);
    if (type === 'result') commit(body.offset, body.result);
    else if (type === 'patch') {
      // A patch that does not fit the result held means it went astray:
      // forget it and ask again for a whole result.
      try {
        commit(body.offset, applyPatch(result, body.patch));
      } catch (err) {
        known = false;
        throw err;
      }
    } else if (type === 'error') setStatus({ lastError: body.error });
  }

  async function run() {
    while (!closed && !status.needsToken) {
      const ctl = (abort = new AbortController());
      try {
        const sent = token;
        const headers = { Accept: 'text/event-stream' };
        if (sent !== null) headers.Authorization = `Bearer ${sent}`;
        if (known) headers['Last-Event-ID'] = String(status.offset);
        const res = await fetch(endpoint, { headers, signal: ctl.signal, cache: 'no-store' });
        if (!res.ok) {
          const body = await res.json().catch(() => null);
          const error = body?.error ?? { code: res.status === 401 ? 'UNAUTHORIZED' : res.status === 403 ? 'FORBIDDEN' : 'UNKNOWN', message: `HTTP ${res.status}` };
          setStatus({ lastError: error, needsToken: (res.status === 401 || res.status === 403) && token === sent });
        } else {
          attempt = 0;
          setStatus({ online: true, lastError: null });
          await readEvents(res.body, onEvent);
        }
      } catch (err) {
        if (!closed && !ctl.signal.aborted) setStatus({ lastError: { code: 'CONNECT_FAILED', message: `view feed ${endpoint}: ${err?.message ?? err}` } });
      }
      ctl.abort();
      if (status.online) setStatus({ online: false });
      if (closed || status.needsToken) break;
      const cap = Math.min(backoffMaxMs, backoffMinMs * 2 ** attempt++);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, cap / 2 + Math.random() * cap / 2);
        wake = () => { clearTimeout(timer); resolve(); };
      });
      wake = null;
    }
  }

  // The browser says the network is back: try now, not at the end of a
  // backoff that grew while the device was offline.
  const onOnline = () => {
    attempt = 0;
    wake?.();
  };
  const events = typeof globalThis.addEventListener === 'function' ? globalThis : null;
  events?.addEventListener('online', onOnline);

  const on = (set, name) => (listener) => {
    if (typeof listener !== 'function') throw bad(`${name}(listener) expects a function, got ${describe(listener)}`);
    set.add(listener);
    return () => set.delete(listener);
  };
  return {
    getState: () => result,
    subscribe: on(listeners, 'subscribe'),
    get status() { return status; },
    onStatus: on(statusListeners, 'onStatus'),
    ready,
    setToken(next) {
      token = next ?? null;
      if (status.needsToken) {
        setStatus({ needsToken: false });
        if (!closed) run();
      } else if (wake) wake();
    },
    close() {
      if (closed) return;
      closed = true;
      events?.removeEventListener('online', onOnline);
      abort?.abort();
      wake?.();
      listeners.clear();
      statusListeners.clear();
      writes.then(() => cache).then((db) => db?.close());
    },
  };
}

// Server-Sent Events from a fetch body: `event:`, `id:` and `data:` lines
// (data lines joined by "\n"), an event ends at a blank line, lines
// starting with ":" are comments. `onEvent(type, data)` per event.
// (Exported for its test; not part of the package's API.)
export async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let type = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    // A final "\r" waits for the next chunk: it may be the half of a "\r\n".
    const end = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
    buffer = lines.pop() + buffer.slice(end);
    for (const line of lines) {
      if (line === '') {
        if (data.length) onEvent(type || 'message', data.join('\n'));
        type = '';
        data = [];
        continue;
      }
      if (line[0] === ':') continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
  }
}

/**
 * Applies JSON Patch `add`, `remove` and `replace` operations (RFC 6902;
 * the only ones the server sends) to `doc` without changing it: the
 * objects and arrays along each changed path are new, the rest is shared,
 * so a change shows as a new reference where it happened (what React's
 * useSyncExternalStore and selectors compare). Throws on a path that does
 * not fit `doc`.
 *
 * @param {unknown} doc
 * @param {{ op: 'add' | 'remove' | 'replace', path: string, value?: unknown }[]} ops
 * @returns {unknown}
 */
export function applyPatch(doc, ops) {
  const fresh = new WeakSet(); // copies made by this patch: changed in place
  const copy = (node) => {
    if (fresh.has(node)) return node;
    const c = Array.isArray(node) ? node.slice() : { ...node };
    fresh.add(c);
    return c;
  };
  // defineProperty, not `=`: a member named "__proto__" stays a member.
  const put = (c, k, value) => Object.defineProperty(c, k, { value, writable: true, enumerable: true, configurable: true });
  const fail = (op, m) => { throw new LogsyncError('INVALID_REQUEST', `JSON Patch ${op.op} ${op.path}: ${m}`); };
  for (const op of ops) {
    if (op.path === '') {
      if (op.op === 'remove') fail(op, 'cannot remove the whole document');
      doc = op.value;
      continue;
    }
    if (op.path[0] !== '/') fail(op, 'not a JSON Pointer');
    const keys = op.path.slice(1).split('/').map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    const set = (node, i) => {
      if (node === null || typeof node !== 'object') fail(op, 'no such location');
      const isArray = Array.isArray(node);
      let k = keys[i];
      const last = i === keys.length - 1;
      if (isArray) {
        if (last && op.op === 'add' && k === '-') k = node.length;
        else if (!/^(0|[1-9]\d*)$/.test(k) || +k > node.length || (+k === node.length && !(last && op.op === 'add'))) fail(op, `no index ${k}`);
        else k = +k;
      } else if (!Object.hasOwn(node, k) && !(last && op.op === 'add')) fail(op, `no member ${JSON.stringify(k)}`);
      const c = copy(node);
      if (!last) put(c, k, set(node[k], i + 1));
      else if (op.op === 'remove') {
        if (isArray) c.splice(k, 1);
        else delete c[k];
      } else if (op.op === 'add' && isArray) c.splice(k, 0, op.value);
      else if (op.op === 'add' || op.op === 'replace') put(c, k, op.value);
      else fail(op, 'unsupported operation');
      return c;
    };
    doc = set(doc, 0);
  }
  return doc;
}

// The cache: one IndexedDB database per dbName (`<dbName>-views`, apart
// from the sync store's), an object store keyed by [stream, view, params]
// as JSON holding { offset, result }. Resolves to null where there is no
// IndexedDB or it cannot be opened: the store then works without a cache.
function openCache(name) {
  if (typeof indexedDB === 'undefined') return Promise.resolve(null);
  const wrap = (req) => new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const req = indexedDB.open(name, 1);
  req.onupgradeneeded = () => req.result.createObjectStore('views');
  return wrap(req).then((db) => {
    const os = (mode) => db.transaction('views', mode).objectStore('views');
    return {
      get: (key) => wrap(os('readonly').get(key)),
      put: (key, value) => wrap(os('readwrite').put(value, key)),
      close: () => db.close(),
    };
  }, () => null);
}
