// The module's JS besides its IndexedDB transactions (storage.js): the
// `meta` a JS reducer receives and a batch of events folded in one call
// (reducer.rs), the WebSocket (socket.rs), the HTTP probe of a failed
// connection (net.rs), the page's events and the tabs' channels (conn.rs)
// and their Web Locks election (lead.rs).
//
// The module's JS stays in these two files: headless Chromium under
// chromedriver has been seen never to start a test page when it was split
// over three (scripts/test-wasm.sh).

// The reducer's meta: a confirmed event's, or a pending intent's.
let read = false;
export function meta(offset, clientId, subject, seq, time, seen, schema) {
  if (offset !== undefined) return { offset, clientId, subject: subject ?? null, seq, time, seen, schema };
  // Pending: whether the reducer reads it decides whether its confirmation
  // folds it again (with the server's values). One object, its values set
  // per call (valid during the reducer's call), as in the package.
  read = false;
  pending.clientId = clientId;
  pending.subject = subject ?? null;
  pending.time = time;
  pending.seen = seen;
  pending.schema = schema;
  return watched;
}
const pending = { clientId: null, subject: null, time: 0, seen: 0, schema: 1 };
const watched = Object.freeze({
  get offset() { read = true; return null; },
  get clientId() { read = true; return pending.clientId; },
  get subject() { read = true; return pending.subject; },
  get seq() { read = true; return null; },
  get time() { read = true; return pending.time; },
  get seen() { read = true; return pending.seen; },
  // The same when confirmed: not a read that needs a second fold.
  get schema() { return pending.schema; },
});
export function metaRead() { return read; }
// A batch of events folded in one call (reducer.rs, `fold_events`), from
// event `from` on: the payloads' bytes end to end and where each ends (an
// empty one is not this version's UTF-8: folded alone); `ascii`: every byte
// is below 0x80, so byte offsets are the text's (BOMs are kept, as
// wasm-bindgen's own decoding keeps them); `nums`: per event its offset,
// seq, time, seen, and its client's and subject's index in `clients` and
// `subjects`. Stops at the first event it cannot fold: [state, index,
// kind, thrown], kind 1: not JSON here (folded alone, for its upcast or
// error), 2: the reducer threw `thrown`, 3: it returned undefined; kind 0
// and index = length when all are folded.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
export function foldMany(reducer, state, bytes, ends, ascii, from, nums, clients, subjects, schema) {
  const text = ascii ? utf8.decode(bytes) : '';
  const meta = { offset: 0, clientId: null, subject: null, seq: 0, time: 0, seen: 0, schema };
  let a = from > 0 ? ends[from - 1] : 0;
  for (let i = from; i < ends.length; i++) {
    const b = ends[i];
    if (b === a) return [state, i, 1];
    let action;
    try {
      action = JSON.parse(ascii ? text.slice(a, b) : utf8.decode(bytes.subarray(a, b)));
    } catch (_) {
      return [state, i, 1];
    }
    a = b;
    // One meta object for the batch, its fields set per event: it is
    // valid during the reducer's call (js/README.md, "meta").
    const k = i * 6;
    meta.offset = nums[k];
    meta.clientId = clients[nums[k + 4]];
    meta.subject = subjects[nums[k + 5]];
    meta.seq = nums[k + 1];
    meta.time = nums[k + 2];
    meta.seen = nums[k + 3];
    let next;
    try {
      next = reducer(state, action, meta);
    } catch (e) {
      return [state, i, 2, e];
    }
    if (next === undefined) return [state, i, 3];
    state = next;
  }
  return [state, ends.length, 0];
}

// A binary WebSocket (socket.rs): `on(0)` opened, `on(1, bytes)` a binary
// frame, `on(2, length)` a text frame (its UTF-8 bytes), `on(3, code,
// reason)` closed.
export function openSocket(url, on) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => on(0);
  ws.onmessage = ({ data }) => (typeof data === 'string'
    ? on(2, new TextEncoder().encode(data).length)
    : on(1, new Uint8Array(data)));
  ws.onclose = (e) => on(3, e.code, e.reason);
  return ws;
}
export function sendSocket(ws, bytes) {
  if (ws.readyState === 1) ws.send(bytes);
}
export function closeSocket(ws) {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.close();
}

// A timer (socket.rs, `Timer`): `f` after `ms`, or every `ms` when
// `repeat`. Returns what cancels it.
export function timer(f, ms, repeat) {
  const id = repeat ? setInterval(f, ms) : setTimeout(f, ms);
  return () => (repeat ? clearInterval : clearTimeout)(id);
}
// The page's events (conn.rs, `Listening`): `names` such as `d:freeze
// w:online` (d: the document, w: the global object); `on(i)` hears the
// i-th. Returns what removes them.
export function listen(names, on) {
  const stops = names.split(' ').map((name, i) => {
    const target = name[0] === 'd' ? globalThis.document : globalThis;
    if (!target || typeof target.addEventListener !== 'function') return () => {};
    const type = name.slice(2);
    const f = () => on(i);
    target.addEventListener(type, f);
    return () => target.removeEventListener(type, f);
  });
  return () => stops.forEach((stop) => stop());
}
// A BroadcastChannel (conn.rs, `TabChannel`), undefined where there is
// none. Node's keeps the process alive while open (a store never closed
// would hang a script at exit): let go of it, as of its timers. Browsers
// have no `unref`.
export function openChannel(name, on) {
  let ch;
  try {
    ch = new BroadcastChannel(name);
  } catch (_) {
    return undefined;
  }
  ch.onmessage = (m) => on(m.data);
  if (typeof ch.unref === 'function') ch.unref();
  return ch;
}
export function postChannel(ch, msg) {
  try {
    ch.postMessage(msg);
  } catch (_) {
    // Not cloneable, or closed: dropped.
  }
}
export function closeChannel(ch) {
  ch.onmessage = null;
  ch.close();
}

// A readable text for any thrown value (error.rs, `describe_js`): `Name:
// message` for errors and DOM exceptions, the text of strings, else its
// JSON.
export function describe(v) {
  if (v instanceof Error || (typeof DOMException === 'function' && v instanceof DOMException)) return `${v.name}: ${v.message}`;
  if (typeof v === 'string') return v;
  try {
    const s = JSON.stringify(v);
    if (typeof s === 'string') return `thrown value ${s}`;
  } catch (_) {
    // below
  }
  return 'a thrown value that is neither an Error nor a string';
}
export function logsyncError(message, code) {
  const e = new Error(message);
  e.name = 'LogsyncError';
  e.code = code;
  return e;
}
// Every method of a WasmStore bound to it (wasm_store.rs), so that
// `const { dispatch, getState } = store` works.
export function bindMethods(store) {
  const proto = Object.getPrototypeOf(store);
  for (const name of Object.getOwnPropertyNames(proto)) {
    const f = Object.getOwnPropertyDescriptor(proto, name).value;
    if (typeof f === 'function' && name !== 'constructor') store[name] = f.bind(store);
  }
}
// Calls a store listener (wasm_store.rs); a throw is reported to the page
// as an uncaught error (`reportError`, or `console.error` where there is
// none, as in Node) and the other listeners still run.
export function callListener(f, arg) {
  try {
    f(arg);
  } catch (e) {
    if (typeof reportError === 'function') reportError(e);
    else console.error('a Logsync listener threw:', e);
  }
}
// The store's frozen objects (wasm_store.rs).
export function statusObject(online, leader, offset, head, pending, writing, code, message, clientId, needsToken, outdated) {
  const lastError = code == null ? null : Object.freeze({ code, message });
  return Object.freeze({ online, leader, offset, head, pending, writing, lastError, clientId, needsToken, outdated });
}
export function rejection(action, code, message) {
  return Object.freeze({ action, code, message });
}
export function pendingAction(seq, action, expired) {
  return Object.freeze(expired ? { seq, action, expired } : { seq, action });
}

export async function probeHttp(url) {
  const init = (extra) => {
    const o = { cache: 'no-store', credentials: 'omit', ...extra };
    if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) o.signal = AbortSignal.timeout(5000);
    return o;
  };
  try {
    return (await fetch(url, init({ mode: 'cors' }))).status;
  } catch (_) {
    // Not readable across origins: ask without CORS.
  }
  try {
    const r = await fetch(url, init({ mode: 'no-cors', method: 'HEAD' }));
    return r.type === 'opaque' ? 0 : r.status;
  } catch (e) {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
}
// The tabs' election (lead.rs).
export function lockLead(name, steal, granted, lost) {
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!locks || typeof locks.request !== 'function') return undefined;
  const ctl = new AbortController();
  let release;
  const held = new Promise((r) => { release = r; });
  let got = false;
  locks.request(name, steal ? { steal: true } : { signal: ctl.signal }, () => {
    got = true;
    granted();
    return held;
  }).then(() => {}, () => { if (got) lost(); });
  return () => { release(); if (!got) ctl.abort(); };
}
export function hasLocks() {
  const locks = globalThis.navigator && globalThis.navigator.locks;
  return !!(locks && typeof locks.request === 'function');
}
