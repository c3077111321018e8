//! The module's JS besides its IndexedDB transactions: `page.js`, one
//! import block for all of it (two blocks naming one file make the glue
//! import it twice, under one name). The module's JS stays in two files
//! (this and `storage.js`): headless Chromium under chromedriver has been
//! seen never to start a test page when it was split over three
//! (scripts/test-wasm.sh).

use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/page.js")]
extern "C" {
    /// Folds a batch of events from `from` on, in one crossing, until
    /// one it cannot fold (`foldMany` in page.js says what it returns).
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = foldMany)]
    pub(crate) fn fold_many(
        reducer: &Function,
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
    /// Whether the last pending `meta` was read.
    #[wasm_bindgen(js_name = metaRead)]
    pub(crate) fn meta_read() -> bool;
    /// Asks a failed connection's address over HTTP (net.rs says why).
    #[wasm_bindgen(js_name = probeHttp)]
    pub(crate) async fn probe_http(url: &str) -> JsValue;
    /// Asks for Web Lock `name` (`steal`: take it from its holder);
    /// `granted` runs when this tab holds it, `lost` when it was stolen.
    /// Returns the function that lets it go (or gives the request up), or
    /// `undefined` where Web Locks are missing.
    #[wasm_bindgen(js_name = lockLead)]
    pub(crate) fn lock_lead(
        name: &str,
        steal: bool,
        granted: &Closure<dyn FnMut()>,
        lost: &Closure<dyn FnMut()>,
    ) -> JsValue;
    /// Opens a binary WebSocket to `url` (throws what the constructor
    /// throws); `on(kind, data, reason)` hears it: kind 0 open, 1 a binary
    /// frame (`data`: its bytes), 2 a text frame (`data`: its length in
    /// UTF-8 bytes), 3 closed (`data`: the code, `reason`).
    #[wasm_bindgen(catch, js_name = openSocket)]
    pub(crate) fn open_socket(
        url: &str,
        on: &Closure<dyn FnMut(u32, JsValue, JsValue)>,
    ) -> Result<JsValue, JsValue>;
    /// Sends a binary frame when the socket is open (else drops it).
    #[wasm_bindgen(js_name = sendSocket)]
    pub(crate) fn send_socket(ws: &JsValue, bytes: &[u8]);
    /// Detaches the socket's callbacks and closes it.
    #[wasm_bindgen(js_name = closeSocket)]
    pub(crate) fn close_socket(ws: &JsValue);
    /// Runs `f` after `ms`, or every `ms` when `repeat` (socket.rs,
    /// `Timer`); returns what cancels it.
    pub(crate) fn timer(f: &Closure<dyn FnMut()>, ms: u32, repeat: bool) -> Function;
    /// Listens to the page's events `names` (conn.rs, `Listening`);
    /// returns what removes the listeners.
    pub(crate) fn listen(names: &str, on: &Closure<dyn FnMut(u32)>) -> Function;
    /// Opens a `BroadcastChannel` whose messages go to `on` (`undefined`
    /// where there is none).
    #[wasm_bindgen(js_name = openChannel)]
    pub(crate) fn open_channel(name: &str, on: &Closure<dyn FnMut(JsValue)>) -> JsValue;
    /// Posts on a channel (a message that cannot be cloned is dropped).
    #[wasm_bindgen(js_name = postChannel)]
    pub(crate) fn post_channel(channel: &JsValue, msg: &JsValue);
    /// Closes a channel.
    #[wasm_bindgen(js_name = closeChannel)]
    pub(crate) fn close_channel(channel: &JsValue);
    /// A readable text for any thrown value (`describe_js`).
    pub(crate) fn describe(value: &JsValue) -> String;
    /// A JS `Error` named `LogsyncError` with `code`.
    #[wasm_bindgen(js_name = logsyncError)]
    pub(crate) fn logsync_error(message: &str, code: &str) -> JsValue;
    /// The frozen status object (`WasmStore::status`); `error_code` null
    /// when there is no last error.
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = statusObject)]
    pub(crate) fn status_object(
        online: bool,
        leader: bool,
        offset: f64,
        head: f64,
        pending: f64,
        writing: f64,
        error_code: Option<&str>,
        error_message: &str,
        client_id: &str,
        needs_token: bool,
        outdated: bool,
    ) -> JsValue;
    /// A rejection: the frozen `{action, code, message}`.
    pub(crate) fn rejection(action: &JsValue, code: &str, message: &str) -> JsValue;
    /// A pending action: the frozen `{seq, action}`, with `expired: true`
    /// when it expired.
    #[wasm_bindgen(js_name = pendingAction)]
    pub(crate) fn pending_action(seq: &JsValue, action: &JsValue, expired: bool) -> JsValue;
    /// Binds every method of a `WasmStore` to it (`const { dispatch } =
    /// store` works).
    #[wasm_bindgen(js_name = bindMethods)]
    pub(crate) fn bind_methods(store: &JsValue);
    /// Calls a listener with `arg`; a throw is reported (`callListener`).
    #[wasm_bindgen(js_name = callListener)]
    pub(crate) fn call_listener(f: &Function, arg: &JsValue);
    /// Whether the Web Locks API is there.
    #[wasm_bindgen(js_name = hasLocks)]
    pub(crate) fn has_locks() -> bool;
}
