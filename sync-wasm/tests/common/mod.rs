//! Helpers shared by the browser tests: the server-control harness, the JS
//! store API called the way JS calls it, and waiting with deadlines.
#![allow(dead_code)]

use js_sys::{Array, Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export async function httpJson(method, url, body) {
  const init = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'content-type': 'application/json' };
  }
  const r = await fetch(url, init);
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
export function makeFn(args, body) { return new Function(args, body); }
export function stringify(v) { return JSON.stringify(v); }
export function rawPut(dbName, store, key, value) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(dbName);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction([store], 'readwrite');
      tx.objectStore(store).put(value, key);
      tx.oncomplete = () => { db.close(); resolve(); };
      tx.onabort = () => { db.close(); reject(tx.error); };
    };
  });
}
export function rawGetAll(dbName, store) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(dbName);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction([store], 'readonly');
      const keys = tx.objectStore(store).getAllKeys();
      const values = tx.objectStore(store).getAll();
      tx.oncomplete = () => { db.close(); resolve({ keys: keys.result, values: values.result }); };
      tx.onabort = () => { db.close(); reject(tx.error); };
    };
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(catch, js_name = httpJson)]
    async fn http_json(method: &str, url: &str, body: JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = sleep)]
    fn sleep_promise(ms: u32) -> js_sys::Promise;
    #[wasm_bindgen(js_name = makeFn)]
    pub fn make_fn(args: &str, body: &str) -> Function;
    /// `JSON.stringify(v)`.
    pub fn stringify(v: &JsValue) -> String;
    #[wasm_bindgen(catch, js_name = rawPut)]
    async fn raw_put_js(
        db: &str,
        store: &str,
        key: JsValue,
        value: JsValue,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = rawGetAll)]
    async fn raw_get_all_js(db: &str, store: &str) -> Result<JsValue, JsValue>;
}

/// Waits `ms` milliseconds.
pub async fn sleep(ms: u32) {
    let _ = JsFuture::from(sleep_promise(ms)).await;
}

/// Writes a raw IndexedDB record (to corrupt one on purpose).
pub async fn raw_put(db: &str, store: &str, key: JsValue, value: JsValue) {
    raw_put_js(db, store, key, value)
        .await
        .expect("raw IndexedDB put");
}

/// Every key and value of one object store.
pub async fn raw_get_all(db: &str, store: &str) -> (Array, Array) {
    let r = raw_get_all_js(db, store)
        .await
        .expect("raw IndexedDB getAll");
    (
        get(&r, "keys").unchecked_into(),
        get(&r, "values").unchecked_into(),
    )
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        js_sys::Date::now() as u64,
        (js_sys::Math::random() * 1e9) as u64
    )
}

pub fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Waits until `cond` holds, polling; panics with `what` after `ms`.
pub async fn wait_for(ms: f64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = js_sys::Date::now();
    loop {
        if cond() {
            return;
        }
        if js_sys::Date::now() - start > ms {
            panic!("timed out after {ms} ms waiting for: {what}");
        }
        sleep(20).await;
    }
}

/// Awaits `promise`, failing the test after `ms`.
pub async fn within(ms: u32, what: &str, promise: js_sys::Promise) -> Result<JsValue, JsValue> {
    let timeout = js_sys::Promise::new(&mut |_, reject| {
        let msg = format!("timed out after {ms} ms: {what}");
        let f = Closure::once_into_js(move || {
            let _ = reject.call1(&JsValue::UNDEFINED, &JsValue::from_str(&msg));
        });
        let _ = Reflect::get(&js_sys::global(), &"setTimeout".into()).map(|st| {
            st.unchecked_into::<Function>()
                .call2(&JsValue::UNDEFINED, &f, &ms.into())
        });
    });
    JsFuture::from(js_sys::Promise::race(&Array::of2(&promise, &timeout))).await
}

// ---- the server-control harness --------------------------------------------

/// The harness URL, compiled in by scripts/test-wasm.sh.
pub fn harness() -> &'static str {
    match option_env!("LOGSYNC_HARNESS_URL") {
        Some(url) => url,
        None => panic!(
            "LOGSYNC_HARNESS_URL was not set at compile time: run these tests with scripts/test-wasm.sh"
        ),
    }
}

async fn harness_call(method: &str, path: &str) -> JsValue {
    http_json(method, &format!("{}{path}", harness()), JsValue::UNDEFINED)
        .await
        .unwrap_or_else(|e| panic!("harness {method} {path} failed: {e:?}"))
}

/// Starts the server with this start's own `{"args": [...], "env": {...}}`
/// (`body` is that JSON); its WebSocket URL. Stop it first if it runs.
pub async fn server_start_with(body: &str) -> String {
    let body = js_sys::JSON::parse(body).expect("start body json");
    let info = http_json("POST", &format!("{}/start", harness()), body)
        .await
        .unwrap_or_else(|e| panic!("harness POST /start failed: {e:?}"));
    get(&info, "wsUrl").as_string().expect("wsUrl")
}

/// Starts the server anew with `LOGSYNC_JWT_SECRET` set to `secret` (the
/// harness's port known first, the running server stopped); its WebSocket
/// URL. A test ends with `server_stop` + `server_start` for the next ones.
pub async fn server_start_with_jwt_secret(secret: &str) -> String {
    server_ws_url().await;
    server_stop().await;
    server_start_with(&format!(r#"{{"env":{{"LOGSYNC_JWT_SECRET":{secret:?}}}}}"#)).await
}

/// An HS256 token of `claims` (JSON text) signed with `secret`.
pub async fn mint_token(secret: &str, claims: &str) -> String {
    let body = js_sys::Object::new();
    let _ = Reflect::set(&body, &"secret".into(), &secret.into());
    let claims = js_sys::JSON::parse(claims).expect("claims json");
    let _ = Reflect::set(&body, &"claims".into(), &claims);
    let r = http_json("POST", &format!("{}/token", harness()), body.into())
        .await
        .unwrap_or_else(|e| panic!("harness POST /token failed: {e:?}"));
    get(&r, "token").as_string().expect("token")
}

/// Starts the server (no-op when running); its WebSocket URL.
pub async fn server_start() -> String {
    let info = harness_call("POST", "/start").await;
    get(&info, "wsUrl").as_string().expect("wsUrl")
}

/// Stops the server (SIGTERM) and waits until it exited.
pub async fn server_stop() {
    harness_call("POST", "/stop").await;
}

/// Kills the server (SIGKILL) and waits until it exited.
pub async fn server_kill() {
    harness_call("POST", "/kill").await;
}

/// Stops the server and deletes its database: the next start has a new
/// log epoch.
pub async fn server_reset() {
    harness_call("POST", "/reset").await;
}

/// The server's WebSocket URL; starts it once if it never ran, so the
/// port is known. A server started with settings of its own (an earlier
/// test that did not get to restore it) is restarted with the defaults.
pub async fn server_ws_url() -> String {
    let mut info = harness_call("GET", "/info").await;
    if get(&info, "custom") == JsValue::TRUE {
        server_stop().await;
        server_start().await;
        info = harness_call("GET", "/info").await;
    }
    match get(&info, "wsUrl").as_string() {
        Some(url) => url,
        None => {
            let url = server_start().await;
            url
        }
    }
}

/// The harness's peer that answers with a frame no decoder accepts.
pub fn malformed_ws_url() -> String {
    format!("{}/malformed-ws", harness().replacen("http://", "ws://", 1))
}

/// The harness's peer that accepts connections and never sends anything.
pub fn silent_ws_url() -> String {
    format!("{}/silent-ws", harness().replacen("http://", "ws://", 1))
}

/// How many connections the harness's broken peer `kind` accepted.
pub async fn broken_peer_connections(kind: &str) -> u32 {
    let info = harness_call("GET", "/info").await;
    get(&get(&info, "brokenPeerConnections"), kind)
        .as_f64()
        .expect("count") as u32
}

/// A metric without labels from the server's `/metrics`.
pub async fn server_metric(name: &str) -> f64 {
    let text = get(&harness_call("GET", "/metrics").await, "text")
        .as_string()
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics"))
}

/// Every event of `stream` in the server's log (GET /v1/streams/…/events).
pub async fn server_events(stream: &str) -> Array {
    let info = harness_call("GET", "/info").await;
    let base = get(&info, "url").as_string().expect("server url");
    let enc = String::from(js_sys::encode_uri_component(stream));
    let mut all = Array::new();
    let mut after = 0u64;
    loop {
        let page = http_json(
            "GET",
            &format!("{base}/v1/streams/{enc}/events?after={after}"),
            JsValue::UNDEFINED,
        )
        .await
        .unwrap_or_else(|e| panic!("GET events of {stream}: {e:?}"));
        let events: Array = get(&page, "events").unchecked_into();
        if events.length() == 0 {
            return all;
        }
        after = get(&events.get(events.length() - 1), "offset")
            .as_f64()
            .expect("offset") as u64;
        all = all.concat(&events);
    }
}

// ---- the JS store API, called the way JS calls it --------------------------

/// The test reducer: `{items: [...]}`; `add` appends `action.id`, `boom`
/// throws, anything else leaves the state as it is (same object).
pub fn list_reducer() -> Function {
    make_fn(
        "state, action",
        "switch (action.type) {
           case 'add': return { items: [...state.items, action.id] };
           case 'boom': throw new Error('boom in reducer');
           default: return state;
         }",
    )
}

/// The reducer of `tests/fixtures/meta_list.js`: each added id with the
/// meta it was folded with.
pub fn meta_list_reducer() -> Function {
    make_fn(
        "state, action, meta",
        "if (action.type !== 'add') return state;
         return { items: [...state.items, { id: action.id, ...meta }] };",
    )
}

/// The list reducer gone wrong: the action `{type: 'add', id: 'odd'}`
/// also puts a random `noise` into the state, which later adds keep. The
/// server's fold (tests/fixtures/list.js) has no noise: a store with this
/// reducer diverges from it at the first snapshot after an 'odd'.
pub fn drifting_list_reducer() -> Function {
    make_fn(
        "state, action",
        "if (action.type !== 'add') return state;
         const next = { ...state, items: [...state.items, action.id] };
         if (action.id === 'odd') next.noise = Math.random();
         return next;",
    )
}

/// `openStore(options, reducer, {items: []})`.
pub async fn open_with(options: JsValue, reducer: Function) -> JsValue {
    sync_wasm::open_store(options, reducer.into(), empty_list())
        .await
        .unwrap_or_else(|e| panic!("openStore failed: {}", describe(&e)))
}

/// `{items: []}`.
pub fn empty_list() -> JsValue {
    js_sys::JSON::parse(r#"{"items":[]}"#).expect("json")
}

/// Options for `openStore`.
pub fn options(url: &str, stream: &str, db: &str, extra: &str) -> JsValue {
    let text = format!(
        r#"{{"url":{url:?},"stream":{stream:?},"dbName":{db:?},"backoffMinMs":50,"backoffMaxMs":500{extra}}}"#
    );
    js_sys::JSON::parse(&text).expect("options json")
}

/// `openStore(options, reducer, initialState)`.
pub async fn open(options: JsValue) -> JsValue {
    sync_wasm::open_store(options, list_reducer().into(), empty_list())
        .await
        .unwrap_or_else(|e| panic!("openStore failed: {}", describe(&e)))
}

/// Calls a store method detached from the store (`const { m } = store; m(...)`).
pub fn call(store: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: Function = get(store, method)
        .dyn_into()
        .unwrap_or_else(|_| panic!("store.{method} is not a function"));
    let args: Array = args.iter().collect();
    f.apply(&JsValue::UNDEFINED, &args)
}

/// `store.dispatch({type: 'add', id})`.
pub fn add(store: &JsValue, id: &str) {
    let action = js_sys::JSON::parse(&format!(r#"{{"type":"add","id":{id:?}}}"#)).expect("json");
    call(store, "dispatch", &[action])
        .unwrap_or_else(|e| panic!("dispatch failed: {}", describe(&e)));
}

/// `getState().items` as strings.
pub fn items(store: &JsValue) -> Vec<String> {
    let state = call(store, "getState", &[]).expect("getState");
    let items: Array = get(&state, "items").unchecked_into();
    items
        .iter()
        .map(|v| v.as_string().expect("string item"))
        .collect()
}

/// A field of `status()`.
pub fn status(store: &JsValue, field: &str) -> JsValue {
    get(&call(store, "status", &[]).expect("status"), field)
}

pub fn status_num(store: &JsValue, field: &str) -> f64 {
    status(store, field).as_f64().unwrap_or(-1.0)
}

/// `status().lastError?.code`.
pub fn last_error_code(store: &JsValue) -> Option<String> {
    let e = status(store, "lastError");
    if e.is_null() {
        None
    } else {
        get(&e, "code").as_string()
    }
}

/// Awaits `store.synced()` with a deadline.
pub async fn synced(store: &JsValue, ms: u32) {
    let p: js_sys::Promise = call(store, "synced", &[]).expect("synced").unchecked_into();
    within(ms, "store.synced()", p)
        .await
        .unwrap_or_else(|e| panic!("synced failed: {}", describe(&e)));
}

/// `await store.close()`.
pub async fn close(store: &JsValue) {
    let p: js_sys::Promise = call(store, "close", &[]).expect("close").unchecked_into();
    within(10_000, "store.close()", p)
        .await
        .unwrap_or_else(|e| panic!("close failed: {}", describe(&e)));
}

/// `name: code: message` of a thrown value.
pub fn describe(e: &JsValue) -> String {
    format!(
        "{} [{}]",
        sync_wasm::describe_js(e),
        get(e, "code").as_string().unwrap_or_default()
    )
}

/// Records the calls of a listener: a JS function and its call log.
pub fn recorder() -> (Function, std::rc::Rc<std::cell::RefCell<Vec<JsValue>>>) {
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let l = log.clone();
    let f = Closure::<dyn Fn(JsValue)>::new(move |v: JsValue| l.borrow_mut().push(v));
    (f.into_js_value().unchecked_into(), log)
}

/// `GET /v1/streams/{stream}/state` of the harness's server:
/// `{offset, state}`.
pub async fn server_state(stream: &str) -> JsValue {
    let info = harness_call("GET", "/info").await;
    let base = get(&info, "url").as_string().expect("server url");
    let enc = String::from(js_sys::encode_uri_component(stream));
    http_json(
        "GET",
        &format!("{base}/v1/streams/{enc}/state"),
        JsValue::UNDEFINED,
    )
    .await
    .unwrap_or_else(|e| panic!("GET state: {}", describe(&e)))
}

/// The server's events for `stream` as `(client_id, seq, payload id)`.
pub async fn log_entries(stream: &str) -> Vec<(String, u64, String)> {
    server_events(stream)
        .await
        .iter()
        .map(|e| {
            (
                get(&e, "client_id").as_string().expect("client_id"),
                get(&e, "seq").as_f64().expect("seq") as u64,
                get(&get(&e, "payload"), "id")
                    .as_string()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// Panics unless each of `ids` is in the log exactly once and nothing else is.
pub fn assert_exactly_once(entries: &[(String, u64, String)], ids: &[String]) {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for (_, _, id) in entries {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    for id in ids {
        assert_eq!(
            seen.get(id.as_str()).copied(),
            Some(1),
            "intent {id} must be in the log once; log: {entries:?}"
        );
    }
    assert_eq!(
        entries.len(),
        ids.len(),
        "the log holds other entries: {entries:?}"
    );
    let mut keys = std::collections::BTreeSet::new();
    for (c, s, _) in entries {
        assert!(
            keys.insert((c.clone(), *s)),
            "(client, seq) ({c}, {s}) twice in the log"
        );
    }
}
