//! The JS face: `openStore(options, reducer, initialState)` and the
//! `WasmStore` it resolves to, a Redux-compatible store over a JS reducer.
//! Each method converts its arguments, calls [`Store`], and converts the
//! result; errors become `LogsyncError`s through [`WasmError::to_js`].

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "test-hooks")]
use js_sys::JsString;
use js_sys::{Array, Function, Promise, Reflect};
use sync_core::{ErrorCode, Offset, StreamName};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::engine::{Folded, Rejection, Status, Store, StoreOptions};
use crate::error::{describe_js, WasmError};
use crate::reducer::{JsReducer, Schema};

/// TypeScript declarations that go into the generated `.d.ts`.
#[allow(dead_code)] // read through `TS_SECTION` (and the unit test)
const TS_TYPES: &str = r#"
/** Options of `openStore`. */
export interface StoreOptions {
  /** The server's WebSocket URL, e.g. `ws://localhost:8080/v1/ws`. */
  url: string;
  /** The stream to follow: 1-200 bytes of `[A-Za-z0-9._~:/-]`. */
  stream: string;
  /** The IndexedDB database (one per app; streams share it). */
  dbName: string;
  /** Sent in `Hello` when the server requires a token. */
  token?: string;
  /** Confirmed events between two snapshots (default 1000). */
  snapshotEvery?: number;
  /** Connect once opened (default true); false stays offline until `reconnect()`. */
  connect?: boolean;
  /** Ping period in ms (default 15000); a connection silent for two periods is dropped. */
  heartbeatMs?: number;
  /** First reconnect delay in ms (default 500), doubled per failure, with jitter. */
  backoffMinMs?: number;
  /** Longest reconnect delay in ms (default 30000). */
  backoffMaxMs?: number;
  /** Who the user is (the token's `sub`): `meta.subject` of pending intents. */
  subject?: string | null;
  /** Follow the stream (default true); false: write-only (push, never subscribe). */
  replicate?: boolean;
  /** One connection for all tabs of this browser on this database, stream and URL (default true): one tab leads and connects, the others follow it. False: this tab connects on its own. */
  shareConnection?: boolean;
  /** A leader tab not heard from for this long (ms, default 3000) is taken over. */
  leaderTimeoutMs?: number;
  /** The schema version of this app's actions and states (default 1). */
  schemaVersion?: number;
  /** The oldest version `upcast` takes (default 1 with `upcast`, else `schemaVersion`). */
  minSchemaVersion?: number;
  /** An action of an older version as one of `schemaVersion`: pure and deterministic. */
  upcast?: (action: any, fromVersion: number) => any;
  /** A stored state of an older version as one of `schemaVersion`; without it, the state is rebuilt from the events. */
  migrate?: (state: any, fromVersion: number) => any;
}
/** Where an action comes from: the same on every device (see the `logsync` package). */
export interface Meta {
  readonly offset: number | null;
  readonly clientId: string | null;
  readonly subject: string | null;
  readonly seq: number | null;
  readonly time: number;
  readonly seen: number;
  /** The schema version the action was made under (before any upcast). */
  readonly schema: number;
}
/** A Redux reducer: pure and deterministic; `meta` says where the action comes from. */
export type Reducer<S = any, A = any> = (state: S, action: A, meta: Meta) => S;
/** Every error Logsync throws, rejects with or reports. */
export interface LogsyncError extends Error {
  name: 'LogsyncError';
  code: ErrorCode;
}
/** A store's status; the same object until something in it changes. */
export interface Status {
  /** This tab's stream is live: through this tab's connection, or the leader tab's. */
  readonly online: boolean;
  /** This tab holds the connection its browser's tabs share (or connects alone). */
  readonly leader: boolean;
  readonly offset: number;
  readonly head: number;
  readonly pending: number;
  /** Of the pending actions, those whose IndexedDB write is under way (no seq yet). */
  readonly writing: number;
  readonly lastError: null | { readonly code: ErrorCode; readonly message: string };
  readonly clientId: string;
  /** The server refused the token (UNAUTHORIZED) or what it allows (FORBIDDEN): no reconnects until `setToken()` or `reconnect()`. */
  readonly needsToken: boolean;
  /** This app is older than the data: it met something of a newer schema version (SCHEMA_TOO_NEW: it stopped syncing) or the server refused an intent as too old (SCHEMA_TOO_OLD). Ask the user to reload. */
  readonly outdated: boolean;
}
/** An action of this tab that waits for the server. */
export interface PendingAction {
  /** Its seq (pass it to `discard`); null for the moment its IndexedDB write takes. */
  readonly seq: number | null;
  /** The action as it travels (JSON). */
  readonly action: unknown;
  /** Its time-to-live ran out: out of the state, waiting for the server to record its withdrawal (EXPIRED). */
  readonly expired?: true;
}
/** An intent the server refused (already rolled back). */
export interface Rejection {
  readonly action: unknown;
  readonly code: ErrorCode;
  readonly message: string;
}
"#;

#[wasm_bindgen(typescript_custom_section)]
const TS_SECTION: &str = TS_TYPES;

/// The `ErrorCode` union, generated from `sync_core::ErrorCode` (see
/// `sync-core/tests/generated.rs`).
#[allow(dead_code)] // read through `TS_ERROR_CODES_SECTION` (and the unit test)
const TS_ERROR_CODES: &str = include_str!("error_codes.d.ts");

#[wasm_bindgen(typescript_custom_section)]
const TS_ERROR_CODES_SECTION: &str = TS_ERROR_CODES;

/// Every stable error code, in the order of `sync_core::ErrorCode::ALL`.
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "ErrorCode[]")]
pub fn error_codes() -> Array {
    ErrorCode::ALL
        .iter()
        .map(|c| JsValue::from_str(c.as_str()))
        .collect()
}

/// A JS promise of `fut`. The futures are boxed so that the module holds
/// one copy of the promise machinery for all of them, not one per future
/// type (BENCHMARKS.md, "One promise machinery").
fn promise(fut: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>) -> Promise {
    future_to_promise(fut)
}

/// Opens a store: IndexedDB first (no network needed), then the
/// connection in the background. Its methods work detached from it.
/// ([`open_store`] as a JS promise.)
#[wasm_bindgen(js_name = openStore, unchecked_return_type = "Promise<WasmStore>")]
pub fn open_store_promise(
    #[wasm_bindgen(unchecked_param_type = "StoreOptions")] options: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Reducer")] reducer: JsValue,
    #[wasm_bindgen(js_name = initialState)] initial_state: JsValue,
) -> Promise {
    promise(Box::pin(open_store(options, reducer, initial_state)))
}

/// Opens a store: IndexedDB first (no network needed), then the
/// connection in the background. Its methods work detached from it.
pub async fn open_store(
    options: JsValue,
    reducer: JsValue,
    initial_state: JsValue,
) -> Result<JsValue, JsValue> {
    let opts = parse_options(&options)?;
    let schema = parse_schema(&options);
    let reducer = JsReducer::new(reducer)?.with_schema(schema.clone());
    let store = Store::open(opts, reducer, initial_state).await?;
    let obj: JsValue = WasmStore {
        store,
        schema,
        status: RefCell::new(None),
    }
    .into();
    crate::page::bind_methods(&obj);
    Ok(obj)
}

/// A Redux-compatible store over a JS reducer, synced through a Logsync
/// server and kept in IndexedDB.
#[wasm_bindgen]
pub struct WasmStore {
    store: Store<JsReducer>,
    /// Kept by `replaceReducer`.
    schema: Schema,
    status: RefCell<Option<(u64, JsValue)>>,
}

#[wasm_bindgen]
impl WasmStore {
    /// The state: the same object until it changes.
    #[wasm_bindgen(js_name = getState)]
    pub fn get_state(&self) -> Result<JsValue, JsValue> {
        Ok(self.store.with_state(|s| s.clone())?)
    }

    /// Applies `action` at once and notifies subscribers before it returns;
    /// the intent is stored and sent after. Returns `action`. Exported for
    /// the browser tests only (feature `test-hooks`): the `logsync`
    /// package runs the reducer itself and records its dispatches with
    /// `dispatchFolded`.
    #[cfg(feature = "test-hooks")]
    pub fn dispatch(&self, action: JsValue) -> Result<JsValue, JsValue> {
        // JSON.parse of the text JSON.stringify made is exactly what the
        // reducer's decode gives for the payload; parsing it here, from the
        // JS string, spares a UTF-8 round trip through wasm memory.
        let text = action_json(&action)?;
        let parsed = json_parse(&text).map_err(|e| WasmError::NotJson(describe_js(&e)))?;
        let payload = String::from(&text).into_bytes();
        self.store.dispatch_decoded(payload, parsed)?;
        Ok(action)
    }

    /// Records dispatches the caller already folded (the `logsync` package
    /// runs the reducer in JS, tells its subscribers, and hands its
    /// dispatches over once per microtask): `batch` is flat
    /// `[json, action, stateAfter, time, seen, read, expires, json, …]`, where
    /// `json` is `JSON.stringify` of the action, `action` is `JSON.parse`
    /// of `json`, `time` and `seen` are the `meta.time` and `meta.seen` it
    /// was folded with, `read` whether the reducer read its meta, `expires`
    /// when it stops being worth sending (ms since the Unix epoch, 0:
    /// never; see `Replica::set_expiry`), and the
    /// first `stateAfter` was computed from `base`. When
    /// the store's state is no longer `base`, the actions are folded again
    /// onto the current state and subscribers notified; returns whether
    /// that happened. Each JSON text is to be within `maxActionBytes()`
    /// (one over it is recorded, then rejected with `PAYLOAD_TOO_LARGE`).
    #[wasm_bindgen(js_name = dispatchFolded)]
    pub fn dispatch_folded(&self, base: JsValue, batch: Array) -> Result<bool, JsValue> {
        // Called by the package's own JS only: one short message for any
        // malformed group (every byte of text is in the module).
        let malformed = || -> JsValue {
            bad(
                "dispatchFolded takes [json, action, state, time, seen, read, expires] groups"
                    .into(),
            )
            .into()
        };
        let len = batch.length();
        if len % 7 != 0 {
            return Err(malformed());
        }
        let mut items = Vec::with_capacity((len / 7) as usize);
        let mut i = 0;
        while i < len {
            let text = batch.get(i).as_string().ok_or_else(malformed)?;
            let number = |v: JsValue| v.as_f64().filter(|n| *n >= 0.0).map(|n| n as u64);
            let (Some(time_ms), Some(seen), Some(expires_ms)) = (
                number(batch.get(i + 3)),
                number(batch.get(i + 4)),
                number(batch.get(i + 6)),
            ) else {
                return Err(malformed());
            };
            items.push(Folded {
                payload: text.into_bytes(),
                action: batch.get(i + 1),
                state: batch.get(i + 2),
                time_ms,
                seen: Offset(seen),
                read_meta: batch.get(i + 5) != JsValue::FALSE,
                expires_ms,
            });
            i += 7;
        }
        Ok(self.store.dispatch_folded(items, |state| *state == base)?)
    }

    /// Calls `listener()` after every state change; returns `unsubscribe`.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "() => void")] listener: JsValue,
    ) -> Result<Function, JsValue> {
        let f = function(listener, "subscribe")?;
        let id = self.store.subscribe(move || call(&f, &JsValue::UNDEFINED));
        Ok(unsubscriber(self.store.remover(id)))
    }

    /// Swaps the reducer; pending intents are re-applied with it.
    #[wasm_bindgen(js_name = replaceReducer)]
    pub fn replace_reducer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Reducer")] reducer: JsValue,
    ) -> Result<(), JsValue> {
        let reducer = JsReducer::new(reducer)?.with_schema(self.schema.clone());
        Ok(self.store.replace_reducer(reducer)?)
    }

    /// The largest action `dispatch` takes now: its `JSON.stringify` text,
    /// in UTF-8 bytes (larger ones are refused with `PAYLOAD_TOO_LARGE`
    /// before they are applied). It is what the server accepts, learnt
    /// when connecting (until then, what a default server accepts); it
    /// changes only with a status change.
    #[wasm_bindgen(js_name = maxActionBytes)]
    pub fn max_action_bytes(&self) -> Result<u32, JsValue> {
        Ok(self.store.max_payload_bytes()? as u32)
    }

    /// The status: the same (frozen) object until it changes.
    #[wasm_bindgen(unchecked_return_type = "Status")]
    pub fn status(&self) -> JsValue {
        let (status, version) = self.store.status();
        let mut cache = self.status.borrow_mut();
        match &*cache {
            Some((v, obj)) if *v == version => obj.clone(),
            _ => {
                let obj = status_js(&status);
                *cache = Some((version, obj.clone()));
                obj
            }
        }
    }

    /// This tab's actions that wait for the server, in the order they
    /// apply: `[{seq, action}]` (`seq` is null for the moment the action's
    /// IndexedDB write takes).
    #[wasm_bindgen(unchecked_return_type = "PendingAction[]")]
    pub fn pending(&self) -> Result<Array, JsValue> {
        let list = self.store.pending()?;
        Ok(list
            .iter()
            .map(|p| {
                let seq = p
                    .seq
                    .map_or(JsValue::NULL, |s| JsValue::from_f64(s.get() as f64));
                crate::page::pending_action(&seq, &payload_js(&p.payload), p.expired)
            })
            .collect())
    }

    /// Discards the pending action `seq`: it leaves the state at once and
    /// is withdrawn instead of sent (unless the server took it already).
    pub fn discard(&self, seq: JsValue) -> Result<(), JsValue> {
        let n = seq
            .as_f64()
            .filter(|n| *n >= 1.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0)
            .ok_or_else(|| {
                bad(format!(
                    "discard(seq) expects the seq of a pending action (a whole number >= 1, from pending()), got {}",
                    describe_js(&seq)
                ))
            })?;
        Ok(self.store.discard(n as u64)?)
    }

    /// Calls `listener(offset)` after every status change, with the
    /// confirmed offset (`status().offset`): a caller that needs only
    /// that (the `logsync` package, for `meta.seen`) need not build the
    /// status object on every change. Returns `unsubscribe`.
    #[wasm_bindgen(js_name = onStatus, unchecked_return_type = "() => void")]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(offset: number) => void")] listener: JsValue,
    ) -> Result<Function, JsValue> {
        let f = function(listener, "onStatus")?;
        let id = self
            .store
            .on_status(move |offset| call(&f, &JsValue::from_f64(offset as f64)));
        Ok(unsubscriber(self.store.remover(id)))
    }

    /// Calls `listener(error)` with every `LogsyncError` the store meets.
    #[wasm_bindgen(js_name = onError, unchecked_return_type = "() => void")]
    pub fn on_error(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(error: LogsyncError) => void")] listener: JsValue,
    ) -> Result<Function, JsValue> {
        let f = function(listener, "onError")?;
        let id = self.store.on_error(move |e| call(&f, &e.to_js()));
        Ok(unsubscriber(self.store.remover(id)))
    }

    /// Calls `listener({action, code, message})` for every intent the
    /// server refused (already rolled back).
    #[wasm_bindgen(js_name = onRejected, unchecked_return_type = "() => void")]
    pub fn on_rejected(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(rejection: Rejection) => void")] listener: JsValue,
    ) -> Result<Function, JsValue> {
        let f = function(listener, "onRejected")?;
        let id = self.store.on_rejected(move |r| call(&f, &rejection_js(r)));
        Ok(unsubscriber(self.store.remover(id)))
    }

    /// Resolves when nothing is pending and the outbox is drained; rejects
    /// with `STORE_CLOSED` if the store closes first.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn synced(&self) -> Promise {
        let store = self.store.clone();
        promise(Box::pin(async move {
            store.synced().await?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Connects now (after `goOffline()`, or to skip a backoff wait).
    pub fn reconnect(&self) {
        self.store.reconnect();
    }

    /// Drops the connection and stays offline until `reconnect()`.
    #[wasm_bindgen(js_name = goOffline)]
    pub fn go_offline(&self) {
        self.store.go_offline();
    }

    /// Uses `token` (a string, or null for none) from the next connection
    /// on; a store that stopped because the server refused its token
    /// connects now.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | null")] token: JsValue,
    ) -> Result<(), JsValue> {
        let token = if token.is_null() || token.is_undefined() {
            None
        } else {
            Some(token.as_string().ok_or_else(|| {
                WasmError::InvalidRequest(format!(
                    "setToken expects a string (a JWT) or null, got {}",
                    describe_js(&token)
                ))
            })?)
        };
        self.store.set_token(token);
        Ok(())
    }

    /// Disconnects, finishes pending IndexedDB writes, closes the
    /// database. Idempotent.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let store = self.store.clone();
        promise(Box::pin(async move {
            store.close().await?;
            Ok(JsValue::UNDEFINED)
        }))
    }
}

fn get(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn bad(msg: String) -> WasmError {
    WasmError::InvalidRequest(msg)
}

/// `options.name` as a whole number (the package checked it:
/// `checkOptions` in index.js), else `default`.
fn optional_u32(options: &JsValue, name: &str, default: u32) -> u32 {
    get(options, name).as_f64().map_or(default, |n| n as u32)
}

/// The store's options as the package checked them (`checkOptions` in
/// index.js: this face is the package's own, not exported). What the
/// store itself relies on is checked again by `Store::open`: the stream
/// name, the URL's scheme, a database name, the periods.
fn parse_options(options: &JsValue) -> Result<StoreOptions, WasmError> {
    let text = |name: &str| get(options, name).as_string();
    let flag = |name: &str| get(options, name).as_bool() != Some(false);
    let stream = StreamName::new(text("stream").unwrap_or_default())?;
    let mut opts = StoreOptions::new(
        text("url").unwrap_or_default(),
        stream,
        text("dbName").unwrap_or_default(),
    );
    opts.token = text("token");
    opts.subject = text("subject");
    // Only `false` turns these off.
    opts.connect = flag("connect");
    opts.replicate = flag("replicate");
    opts.share_connection = flag("shareConnection");
    opts.snapshot_every = u64::from(optional_u32(
        options,
        "snapshotEvery",
        opts.snapshot_every as u32,
    ));
    opts.heartbeat_ms = optional_u32(options, "heartbeatMs", opts.heartbeat_ms);
    opts.backoff_min_ms = optional_u32(options, "backoffMinMs", opts.backoff_min_ms);
    opts.backoff_max_ms = optional_u32(options, "backoffMaxMs", opts.backoff_max_ms);
    opts.leader_timeout_ms = optional_u32(options, "leaderTimeoutMs", opts.leader_timeout_ms);
    Ok(opts)
}

/// The app's schema version: `schemaVersion` (default 1),
/// `minSchemaVersion` (default 1 with an `upcast`, else `schemaVersion`),
/// `upcast(action, fromVersion)`, `migrate(state, fromVersion)`. The
/// package checks that the last two are functions (anything else is
/// none here).
fn parse_schema(options: &JsValue) -> Schema {
    let version = optional_u32(options, "schemaVersion", 1);
    let func = |name: &str| get(options, name).dyn_into::<Function>().ok();
    let upcast = func("upcast");
    let min = if upcast.is_some() { 1 } else { version };
    Schema {
        version,
        min: optional_u32(options, "minSchemaVersion", min).min(version),
        upcast,
        migrate: func("migrate"),
    }
}

#[cfg(feature = "test-hooks")]
#[wasm_bindgen]
extern "C" {
    /// `JSON.parse` over a JS string (no copy through wasm memory).
    #[wasm_bindgen(js_namespace = JSON, js_name = parse, catch)]
    fn json_parse(text: &JsString) -> Result<JsValue, JsValue>;
}

/// The payload of an action: its JSON text, after checking the Redux
/// shape (a plain object with a string `type`).
#[cfg(feature = "test-hooks")]
fn action_json(action: &JsValue) -> Result<JsString, WasmError> {
    if !action.is_object() || Array::is_array(action) {
        return Err(bad(
            "actions must be plain objects with a string `type`, e.g. {type: 'todo/added'}".into(),
        ));
    }
    if !get(action, "type").is_string() {
        return Err(bad(
            "the action's `type` must be a string, e.g. {type: 'todo/added'}".into(),
        ));
    }
    let text = js_sys::JSON::stringify(action).map_err(|e| WasmError::NotJson(describe_js(&e)))?;
    // JSON.stringify gives `undefined` for values it cannot represent.
    if !text.is_string() {
        return Err(WasmError::NotJson("JSON.stringify gave no text".into()));
    }
    Ok(text)
}

fn function(v: JsValue, method: &str) -> Result<Function, WasmError> {
    v.dyn_into::<Function>()
        .map_err(|_| bad(format!("{method} expects a function")))
}

/// Calls a listener; a throw is reported to the page as an uncaught error
/// (`reportError`, or `console.error` where there is none, as in Node) and
/// the other listeners still run.
fn call(f: &Function, arg: &JsValue) {
    crate::page::call_listener(f, arg);
}

fn unsubscriber(remove: impl Fn() + 'static) -> Function {
    Closure::<dyn Fn()>::new(remove)
        .into_js_value()
        .unchecked_into()
}

fn status_js(s: &Status) -> JsValue {
    let n = |x: u64| x as f64;
    let (code, message) = match &s.last_error {
        Some(e) => (Some(e.code.as_str()), e.message.as_str()),
        None => (None, ""),
    };
    crate::page::status_object(
        s.online,
        s.leader,
        n(s.offset),
        n(s.head),
        n(s.pending as u64),
        n(s.writing as u64),
        code,
        message,
        &s.client_id.to_hex(),
        s.needs_token,
        s.outdated,
    )
}

/// An intent's payload as the action it is (`undefined` if it is not JSON).
fn payload_js(payload: &[u8]) -> JsValue {
    core::str::from_utf8(payload)
        .ok()
        .and_then(|t| js_sys::JSON::parse(t).ok())
        .unwrap_or(JsValue::UNDEFINED)
}

fn rejection_js(r: &Rejection) -> JsValue {
    crate::page::rejection(&payload_js(&r.payload), r.code.as_str(), &r.message)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn typescript_union_lists_every_code() {
        for code in ErrorCode::ALL {
            assert!(
                TS_ERROR_CODES.contains(&format!("| '{}'", code.as_str())),
                "ErrorCode {code} is missing from the TypeScript union: run \
                 `LOGSYNC_BLESS=1 cargo test -p sync-core --test generated`"
            );
        }
        assert_eq!(TS_ERROR_CODES.matches("| '").count(), ErrorCode::ALL.len());
    }
}
