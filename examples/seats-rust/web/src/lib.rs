//! The seats example in the browser: sync-wasm's [`Store`] folding with
//! the seats reducer crate, the very code the server folds with at the
//! ordering point, behind a small JS API:
//!
//! ```js
//! import init, { open } from './pkg/seats_web.js';
//! await init();
//! const app = await open('ws://localhost:8080/v1/ws', 'seats/show1', 'seats');
//! app.onChange(() => render(app.state()));          // { seats: { "4A": "ann" } }
//! app.onRejected(({ seat, who, code, message }) => …); // code: 'SEAT_TAKEN'
//! app.book('4A', 'ann');
//! ```
//!
//! A booking applies at once (optimistically); when the server refuses it
//! (another device booked the seat first), it is rolled back, `onChange`
//! listeners run, then `onRejected` listeners with the app's code.

use js_sys::{Function, Object, Reflect};
use seats_reducer::{app_code, Action, Seats, SeatsReducer};
use sync_core::{ReduceError, Reducer, StreamName};
use sync_wasm::{Rejection, Store, StoreOptions, StoreReducer, WasmError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// [`SeatsReducer`] with its state kept in IndexedDB snapshots as JSON
/// text: the store's side of the shared reducer.
pub struct BrowserSeats;

impl Reducer for BrowserSeats {
    type State = Seats;
    type Action = Action;

    fn decode(&self, payload: &[u8]) -> Result<Action, ReduceError> {
        SeatsReducer.decode(payload)
    }

    fn reduce(&self, state: &Seats, action: &Action) -> Result<Seats, ReduceError> {
        SeatsReducer.reduce(state, action)
    }

    fn decode_state(&self, json: &[u8]) -> Result<Seats, ReduceError> {
        SeatsReducer.decode_state(json)
    }
}

impl StoreReducer for BrowserSeats {
    fn state_to_js(&self, state: &Seats) -> Result<JsValue, WasmError> {
        serde_json::to_string(state)
            .map(|t| JsValue::from_str(&t))
            .map_err(|e| WasmError::Internal(e.to_string()))
    }

    fn state_from_js(&self, value: JsValue) -> Result<Seats, WasmError> {
        let corrupt = |reason: String| WasmError::Corrupt {
            key: "snapshot".into(),
            reason,
        };
        let text = value
            .as_string()
            .ok_or_else(|| corrupt("not a string".into()))?;
        serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))
    }
}

/// The seats of one stream, synced: what [`open`] resolves to.
#[wasm_bindgen]
pub struct SeatsApp {
    store: Store<BrowserSeats>,
}

/// Opens the store of `stream` in the IndexedDB database `db_name` (from
/// IndexedDB alone, then connects to `url` in the background).
#[wasm_bindgen]
pub async fn open(url: String, stream: String, db_name: String) -> Result<SeatsApp, JsValue> {
    let stream = StreamName::new(&stream).map_err(|e| WasmError::from(e).to_js())?;
    SeatsApp::open_with(StoreOptions::new(url, stream, db_name))
        .await
        .map_err(|e| e.to_js())
}

impl SeatsApp {
    /// Opens with every store option (tests shorten the reconnect delays).
    pub async fn open_with(opts: StoreOptions) -> Result<SeatsApp, WasmError> {
        let store = Store::open(opts, BrowserSeats, Seats::default()).await?;
        Ok(SeatsApp { store })
    }

    /// The store underneath.
    pub fn store(&self) -> &Store<BrowserSeats> {
        &self.store
    }
}

/// A JS function that calls `f` once (an unsubscribe).
fn js_fn(f: impl Fn() + 'static) -> Function {
    Closure::<dyn Fn()>::new(f).into_js_value().unchecked_into()
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a plain data property on a fresh object cannot fail.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

/// `{ seat, who, code, message }` of a refused booking: `code` is the
/// app's code (`SEAT_TAKEN`) when the message carries one, else the
/// store's (`REJECTED`, `REDUCER`…).
fn rejection_to_js(r: &Rejection) -> JsValue {
    let out = Object::new();
    if let Ok(Action::Book { seat, who }) = SeatsReducer.decode(&r.payload) {
        set(&out, "seat", seat);
        set(&out, "who", who);
    }
    let (code, message) = app_code(&r.message).unwrap_or((r.code.as_str(), &r.message));
    set(&out, "code", code);
    set(&out, "message", message);
    out.into()
}

#[wasm_bindgen]
impl SeatsApp {
    /// Books `seat` for `who`: applied at once, then sent. Throws a
    /// `LogsyncError` (`REDUCER`, with `SEAT_TAKEN: …`) when this device
    /// already sees the seat taken.
    pub fn book(&self, seat: &str, who: &str) -> Result<(), JsValue> {
        self.store
            .dispatch(Action::book(seat, who))
            .map_err(|e| e.to_js())
    }

    /// The seats as this device sees them (its own pending bookings
    /// included): `{ seats: { "4A": "ann", … } }`.
    pub fn state(&self) -> Result<JsValue, JsValue> {
        let text = self
            .store
            .with_state(serde_json::to_string)
            .map_err(|e| e.to_js())?
            .map_err(|e| WasmError::Internal(e.to_string()).to_js())?;
        js_sys::JSON::parse(&text)
    }

    /// Calls `listener()` after every change of the seats; returns an
    /// unsubscribe function.
    #[wasm_bindgen(js_name = onChange)]
    pub fn on_change(&self, listener: Function) -> Function {
        let id = self.store.subscribe(move || {
            let _ = listener.call0(&JsValue::UNDEFINED);
        });
        js_fn(self.store.remover(id))
    }

    /// Calls `listener({ seat, who, code, message })` for every booking
    /// the server refused (already rolled back); returns an unsubscribe
    /// function.
    #[wasm_bindgen(js_name = onRejected)]
    pub fn on_rejected(&self, listener: Function) -> Function {
        let id = self.store.on_rejected(move |r| {
            let _ = listener.call1(&JsValue::UNDEFINED, &rejection_to_js(r));
        });
        js_fn(self.store.remover(id))
    }

    /// `{ online, offset, pending, lastError }` (`lastError`: `null` or
    /// `{ code, message }`).
    pub fn status(&self) -> JsValue {
        let (s, _) = self.store.status();
        let out = Object::new();
        set(&out, "online", s.online);
        set(&out, "offset", s.offset as f64);
        set(&out, "pending", s.pending as f64);
        let last = match s.last_error {
            Some(e) => {
                let o = Object::new();
                set(&o, "code", e.code.as_str());
                set(&o, "message", e.message);
                o.into()
            }
            None => JsValue::NULL,
        };
        set(&out, "lastError", last);
        out.into()
    }

    /// A promise that resolves once every booking of this device is
    /// decided by the server.
    pub fn synced(&self) -> js_sys::Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            store.synced().await.map_err(|e| e.to_js())?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Drops the connection and stays offline until `reconnect()`;
    /// bookings are kept and sent then.
    #[wasm_bindgen(js_name = goOffline)]
    pub fn go_offline(&self) {
        self.store.go_offline();
    }

    /// Connects now.
    pub fn reconnect(&self) {
        self.store.reconnect();
    }

    /// A promise that resolves once the store is closed (disconnected,
    /// its IndexedDB writes finished).
    pub fn close(&self) -> js_sys::Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            store.close().await.map_err(|e| e.to_js())?;
            Ok(JsValue::UNDEFINED)
        })
    }
}
