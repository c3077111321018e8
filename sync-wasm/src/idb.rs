//! A thin promise layer over IndexedDB: open with a schema upgrade, start a
//! transaction, await a read, await a transaction's outcome.
//!
//! Writes are issued without awaiting each request: IndexedDB runs the
//! requests of one transaction in order, and the transaction's outcome
//! (`complete`, or `abort` with its `error`, e.g. `QuotaExceededError`) is
//! the one result that matters. Awaiting the outcome rather than each
//! request is what makes a batch of 1,000 writes one round trip.

use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbFactory, IdbKeyRange, IdbObjectStore, IdbOpenDbRequest, IdbRequest,
    IdbTransaction,
};

use crate::error::WasmError;

#[wasm_bindgen(inline_js = r#"
export function idbRequest(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
export function idbTransaction(db, names, mode, durability) {
  return durability ? db.transaction(names, mode, { durability }) : db.transaction(names, mode);
}
export function idbDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || new DOMException('the transaction was aborted', 'AbortError'));
  });
}
// The reducer's meta (reducer.rs), here to keep the module's JS in few files.
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
// Stored events in one call each way (storage.rs): `putEvents` writes
// each event's bytes (its own copy: a view would store the whole buffer)
// under [stream, offset]; `joinBytes` puts the values read end to end and
// says where each ends, stopping at the first that is not bytes.
export function putEvents(store, stream, bytes, ends, offsets) {
  let a = 0;
  for (let i = 0; i < ends.length; i++) {
    store.put(bytes.slice(a, ends[i]), [stream, offsets[i]]);
    a = ends[i];
  }
}
export function joinBytes(values) {
  let n = 0;
  let len = 0;
  for (; n < values.length && values[n] instanceof Uint8Array; n++) len += values[n].length;
  const bytes = new Uint8Array(len);
  const ends = new Uint32Array(n);
  for (let i = 0, a = 0; i < n; i++) {
    bytes.set(values[i], a);
    a += values[i].length;
    ends[i] = a;
  }
  return [bytes, ends];
}
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
"#)]
extern "C" {
    /// Folds a batch of events from `from` on, in one crossing, until
    /// one it cannot fold (`foldMany` above says what it returns).
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = foldMany)]
    pub(crate) fn fold_many(
        reducer: &js_sys::Function,
        state: &JsValue,
        bytes: &js_sys::Uint8Array,
        ends: &js_sys::Uint32Array,
        ascii: bool,
        from: u32,
        nums: &js_sys::Float64Array,
        clients: &Array,
        subjects: &Array,
        schema: u32,
    ) -> Array;
    /// The `meta` object a JS reducer receives (one crossing); a pending
    /// intent's (no offset) notes whether it is read.
    pub(crate) fn meta(
        offset: Option<f64>,
        client_id: &JsValue,
        subject: Option<&str>,
        seq: Option<f64>,
        time: f64,
        seen: f64,
        schema: u32,
    ) -> JsValue;
    /// Writes events (`bytes` end to end, each ending at `ends[i]`) under
    /// `[stream, offsets[i]]`, in one crossing.
    #[wasm_bindgen(js_name = putEvents, catch)]
    pub(crate) fn put_events(
        store: &IdbObjectStore,
        stream: &str,
        bytes: &js_sys::Uint8Array,
        ends: &js_sys::Uint32Array,
        offsets: &js_sys::Float64Array,
    ) -> Result<(), JsValue>;
    /// `[bytes, ends]`: the leading values that are bytes, end to end.
    #[wasm_bindgen(js_name = joinBytes)]
    pub(crate) fn join_bytes(values: &Array) -> Array;
    /// Whether the last pending `meta` was read.
    #[wasm_bindgen(js_name = metaRead)]
    pub(crate) fn meta_read() -> bool;

    #[wasm_bindgen(js_name = idbRequest)]
    fn idb_request(r: &IdbRequest) -> Promise;
    #[wasm_bindgen(js_name = idbDone)]
    fn idb_done(tx: &IdbTransaction) -> Promise;
    // `durability` is not in web-sys's stable API yet.
    #[wasm_bindgen(js_name = idbTransaction, catch)]
    fn idb_transaction(
        db: &IdbDatabase,
        names: &Array,
        mode: &str,
        durability: Option<&str>,
    ) -> Result<IdbTransaction, JsValue>;
}

/// How hard a write transaction must be flushed before it reports success.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Durability {
    /// Flushed to disk before `complete` (used before an intent may be sent).
    Strict,
    /// The browser may report `complete` before flushing (data that the
    /// server can send again).
    Relaxed,
}

/// The IndexedDB factory of this global (window or worker).
fn factory() -> Result<IdbFactory, WasmError> {
    js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
        .ok()
        .and_then(|f| f.dyn_into::<IdbFactory>().ok())
        .ok_or_else(|| WasmError::Storage("IndexedDB is not available in this context".into()))
}

/// Opens database `name` at `version`, creating the missing `stores` (with
/// out-of-line keys) when the database is new or older.
pub(crate) async fn open(
    name: &str,
    version: u32,
    stores: &[&str],
) -> Result<IdbDatabase, WasmError> {
    let req: IdbOpenDbRequest = factory()?
        .open_with_u32(name, version)
        .map_err(|e| WasmError::from_storage("cannot open the database", &e))?;
    let names: Vec<String> = stores.iter().map(|s| s.to_string()).collect();
    let upgrade_req = req.clone();
    // Lives until the open completes (the handler is detached below).
    let on_upgrade = Closure::<dyn FnMut()>::new(move || {
        let Ok(result) = upgrade_req.result() else {
            return;
        };
        let db: IdbDatabase = result.unchecked_into();
        let have = db.object_store_names();
        for n in &names {
            if !have.contains(n) {
                // A failure here aborts the version change, which rejects
                // the open request below with the cause.
                let _ = db.create_object_store(n);
            }
        }
    });
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let result = JsFuture::from(idb_request(&req)).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    let db: IdbDatabase = result
        .map_err(|e| WasmError::from_storage("cannot open the database", &e))?
        .unchecked_into();
    Ok(db)
}

/// Starts a transaction over `stores`.
pub(crate) fn transaction(
    db: &IdbDatabase,
    stores: &[&str],
    write: Option<Durability>,
) -> Result<IdbTransaction, WasmError> {
    let names = Array::new();
    for s in stores {
        names.push(&JsValue::from_str(s));
    }
    let (mode, durability) = match write {
        None => ("readonly", None),
        Some(Durability::Strict) => ("readwrite", Some("strict")),
        Some(Durability::Relaxed) => ("readwrite", Some("relaxed")),
    };
    let tx = idb_transaction(db, &names, mode, durability);
    tx.map_err(|e| WasmError::from_storage("cannot start a transaction", &e))
}

/// The object store `name` of `tx`.
pub(crate) fn store(tx: &IdbTransaction, name: &str) -> Result<IdbObjectStore, WasmError> {
    tx.object_store(name)
        .map_err(|e| WasmError::from_storage(&format!("no object store {name}"), &e))
}

/// Awaits a request's result.
pub(crate) async fn read(
    req: Result<IdbRequest, JsValue>,
    what: &str,
) -> Result<JsValue, WasmError> {
    let req = req.map_err(|e| WasmError::from_storage(what, &e))?;
    JsFuture::from(idb_request(&req))
        .await
        .map_err(|e| WasmError::from_storage(what, &e))
}

/// Starts awaiting a transaction's outcome now, before any request is
/// issued, so that its handlers are in place whatever happens next.
pub(crate) fn outcome(tx: &IdbTransaction) -> JsFuture {
    JsFuture::from(idb_done(tx))
}

/// The key `[stream, n]`.
pub(crate) fn key2(stream: &JsValue, n: u64) -> JsValue {
    Array::of2(stream, &JsValue::from_f64(n as f64)).into()
}

/// All keys `[stream, n]` with `from <= n` (to infinity).
pub(crate) fn range_from(stream: &JsValue, from: u64) -> Result<JsValue, WasmError> {
    let upper: JsValue = Array::of2(stream, &JsValue::from_f64(f64::INFINITY)).into();
    IdbKeyRange::bound(&key2(stream, from), &upper)
        .map(JsValue::from)
        .map_err(|e| WasmError::from_storage("bad key range", &e))
}

/// All keys `[stream, n]` with `from <= n <= to`.
pub(crate) fn range(stream: &JsValue, from: u64, to: u64) -> Result<JsValue, WasmError> {
    IdbKeyRange::bound(&key2(stream, from), &key2(stream, to))
        .map(JsValue::from)
        .map_err(|e| WasmError::from_storage("bad key range", &e))
}
