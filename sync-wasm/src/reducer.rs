//! Reducers a browser store can run: a JS function `(state, action) =>
//! state` ([`JsReducer`]), or any Rust [`Reducer`] that says how its state
//! is kept in IndexedDB ([`StoreReducer`]).

use js_sys::{Array, Function};
use sync_core::{Folded, Meta, ReduceError, Reducer};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::{describe_js, WasmError};
use crate::page::{fold_many, meta, meta_read};

/// A [`Reducer`] whose state a browser store can snapshot into IndexedDB.
pub trait StoreReducer: Reducer + 'static {
    /// The state as a value IndexedDB can store (structured-cloneable).
    fn state_to_js(&self, state: &Self::State) -> Result<JsValue, WasmError>;

    /// The state back from a stored value.
    fn state_from_js(&self, value: JsValue) -> Result<Self::State, WasmError>;
}

/// A JS app's schema version and what it does with older ones (the
/// `schemaVersion`, `minSchemaVersion`, `upcast` and `migrate` options).
#[derive(Clone)]
pub struct Schema {
    /// The version of the actions it makes and the states it holds.
    pub version: u32,
    /// The oldest version `upcast` takes.
    pub min: u32,
    /// `(action, fromVersion) => action`.
    pub upcast: Option<Function>,
    /// `(state, fromVersion) => state`.
    pub migrate: Option<Function>,
}

impl Default for Schema {
    fn default() -> Self {
        Schema {
            version: 1,
            min: 1,
            upcast: None,
            migrate: None,
        }
    }
}

/// A JS reducer: the state is any JS value, an action is the `JSON.parse`
/// of the payload's UTF-8 text, and a throw (or `undefined` returned) is a
/// [`ReduceError`] that leaves the state as it was.
pub struct JsReducer {
    func: Function,
    schema: Schema,
    /// The last client id met and its hex text (events come in runs of
    /// one client's).
    client: std::cell::RefCell<Option<(sync_core::ClientId, JsValue)>>,
    /// Whether the last pending fold read its meta.
    read: std::cell::Cell<bool>,
}

impl JsReducer {
    /// Wraps `func`, checking that it is a function.
    pub fn new(func: JsValue) -> Result<JsReducer, WasmError> {
        match func.dyn_into::<Function>() {
            Ok(func) => Ok(JsReducer {
                func,
                schema: Schema::default(),
                client: Default::default(),
                read: Default::default(),
            }),
            Err(_) => Err(WasmError::InvalidRequest(
                "expected the reducer to be a function (state, action) => state".into(),
            )),
        }
    }
}

impl JsReducer {
    /// The reducer of an app at `schema`.
    pub fn with_schema(mut self, schema: Schema) -> JsReducer {
        self.schema = schema;
        self
    }

    /// Calls the app's `upcast` or `migrate` with `(value, from)`: what
    /// it threw, or a short message for none or `undefined` (callers say
    /// what was converted; every byte of text is in the module).
    fn convert(f: Option<&Function>, value: &JsValue, from: u32) -> Result<JsValue, ReduceError> {
        match f.map(|f| f.call2(&JsValue::UNDEFINED, value, &from.into())) {
            Some(Ok(v)) if !v.is_undefined() => Ok(v),
            Some(Err(e)) => Err(ReduceError(describe_js(&e))),
            _ => Err(ReduceError(format!(
                "nothing made of schema version {from}"
            ))),
        }
    }

    fn call(
        &self,
        state: &JsValue,
        action: &JsValue,
        meta: &JsValue,
    ) -> Result<JsValue, ReduceError> {
        let next = self
            .func
            .call3(&JsValue::UNDEFINED, state, action, meta)
            .map_err(|e| thrown(&e))?;
        if next.is_undefined() {
            return Err(returned_undefined());
        }
        Ok(next)
    }

    /// A client id as a JS string of hex digits, from the one-entry
    /// cache: events come in runs of one client's, and a string made in JS
    /// once is not decoded from wasm memory again for every event.
    fn hex(&self, client_id: sync_core::ClientId) -> JsValue {
        let mut cached = self.client.borrow_mut();
        match &*cached {
            Some((id, hex)) if *id == client_id => hex.clone(),
            _ => {
                let hex = JsValue::from_str(&client_id.to_hex());
                *cached = Some((client_id, hex.clone()));
                hex
            }
        }
    }
}

/// The index of the entry among the last four of `table` that `is` says
/// is the one.
fn recent<T>(table: &[T], is: impl Fn(&T) -> bool) -> Option<usize> {
    let from = table.len().saturating_sub(4);
    (from..table.len()).rev().find(|&i| is(&table[i]))
}

/// What a reducer that threw `e` did.
fn thrown(e: &JsValue) -> ReduceError {
    ReduceError(format!("the reducer threw {}", describe_js(e)))
}

fn returned_undefined() -> ReduceError {
    ReduceError(
        "the reducer returned undefined; return the state it was given when an action does not apply".into(),
    )
}

impl Reducer for JsReducer {
    type State = JsValue;
    type Action = JsValue;

    fn decode(&self, payload: &[u8]) -> Result<JsValue, ReduceError> {
        let text = core::str::from_utf8(payload)
            .map_err(|e| ReduceError(format!("the payload is not UTF-8 text: {e}")))?;
        js_sys::JSON::parse(text)
            .map_err(|e| ReduceError(format!("the payload is not JSON: {}", describe_js(&e))))
    }

    fn reduce(&self, state: &JsValue, action: &JsValue) -> Result<JsValue, ReduceError> {
        self.call(state, action, &JsValue::UNDEFINED)
    }

    /// One JS call folds the batch (`foldMany` in page.js): the
    /// payloads of this reducer's schema version that are UTF-8 go over
    /// end to end, each event's meta as numbers and indexes into its few
    /// client ids and subjects, and JS parses each payload and calls the
    /// reducer, instead of two crossings (the meta, the reducer) and a
    /// decode per event. An event it cannot fold (an older version's, one
    /// that is not JSON, one the reducer refuses) stops it; that one is
    /// folded or reported here, as alone, and the call goes on after it.
    fn fold_events(&self, state: &JsValue, events: &[sync_core::Event]) -> Folded<JsValue> {
        let now = self.schema.version;
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(events.len());
        let mut nums = Vec::with_capacity(events.len() * 6);
        let clients = Array::new();
        let mut client_ids: Vec<sync_core::ClientId> = Vec::new();
        let subjects = Array::of1(&JsValue::NULL);
        let mut subject_names: Vec<&str> = Vec::new();
        for e in events {
            if e.schema == now && core::str::from_utf8(&e.payload).is_ok() {
                bytes.extend_from_slice(&e.payload);
            }
            ends.push(bytes.len() as u32);
            // Events come in runs of a few clients and subjects: the last
            // few entries of each table are searched, and one not among
            // them is added again (a table may hold one twice), so a batch
            // of many clients costs linear time, not quadratic.
            let client = recent(&client_ids, |c| *c == e.client_id).unwrap_or_else(|| {
                client_ids.push(e.client_id);
                clients.push(&self.hex(e.client_id));
                client_ids.len() - 1
            });
            let subject = match e.subject.as_deref() {
                None => 0,
                Some(s) => match recent(&subject_names, |n| *n == s) {
                    Some(i) => i + 1,
                    None => {
                        subject_names.push(s);
                        subjects.push(&JsValue::from_str(s));
                        subject_names.len()
                    }
                },
            };
            nums.extend_from_slice(&[
                e.offset.0 as f64,
                e.seq.get() as f64,
                e.time_ms as f64,
                e.seen.0 as f64,
                client as f64,
                subject as f64,
            ]);
        }
        let ascii = bytes.is_ascii();
        let bytes = js_sys::Uint8Array::from(&bytes[..]);
        let ends = js_sys::Uint32Array::from(&ends[..]);
        let nums = js_sys::Float64Array::from(&nums[..]);
        let mut folded = Folded {
            state: None,
            errors: Vec::new(),
        };
        let mut from = 0;
        while from < events.len() {
            let base = folded.state.as_ref().unwrap_or(state);
            let out = fold_many(
                &self.func,
                base,
                &bytes,
                &ends,
                ascii,
                from as u32,
                &nums,
                &clients,
                &subjects,
                now,
            );
            // Never behind `from`: each event is folded once whatever JS says.
            let at = (out.get(1).as_f64().unwrap_or(0.0) as usize).max(from);
            if at > from {
                folded.state = Some(out.get(0));
            }
            let Some(e) = events.get(at) else { break };
            let base = folded.state.as_ref().unwrap_or(state);
            let one = match out.get(2).as_f64().map(|k| k as u32) {
                Some(2) => Err(thrown(&out.get(3))),
                Some(3) => Err(returned_undefined()),
                _ => self
                    .decode_at(&e.payload, e.schema)
                    .and_then(|a| self.reduce_meta(base, &a, &Meta::of_event(e))),
            };
            match one {
                Ok(next) => folded.state = Some(next),
                Err(err) => folded.errors.push((at, err)),
            }
            from = at + 1;
        }
        self.read.set(false);
        folded
    }

    fn reduce_meta(
        &self,
        state: &JsValue,
        action: &JsValue,
        m: &Meta<'_>,
    ) -> Result<JsValue, ReduceError> {
        let pending = m.offset.is_none();
        let client = self.hex(m.client_id);
        let m = meta(
            m.offset.map(|o| o.0 as f64),
            &client,
            m.subject,
            m.seq.map(|s| s.get() as f64),
            m.time_ms as f64,
            m.seen.0 as f64,
            m.schema,
        );
        let next = self.call(state, action, &m);
        self.read.set(pending && meta_read());
        next
    }

    fn read_meta(&self) -> bool {
        self.read.get()
    }

    fn schema_version(&self) -> u32 {
        self.schema.version
    }

    fn min_schema_version(&self) -> u32 {
        self.schema.min
    }

    fn upcast(&self, action: JsValue, from: u32) -> Result<JsValue, ReduceError> {
        Self::convert(self.schema.upcast.as_ref(), &action, from)
    }

    fn migrate(&self, state: JsValue, from: u32) -> Option<Result<JsValue, ReduceError>> {
        let f = self.schema.migrate.as_ref()?;
        Some(Self::convert(Some(f), &state, from))
    }

    fn decode_state(&self, json: &[u8]) -> Result<JsValue, ReduceError> {
        // Its own messages rather than `decode`'s with a word replaced: a
        // string search costs the module more than the two messages.
        let text = core::str::from_utf8(json)
            .map_err(|e| ReduceError(format!("the snapshot is not UTF-8 text: {e}")))?;
        js_sys::JSON::parse(text)
            .map_err(|e| ReduceError(format!("the snapshot is not JSON: {}", describe_js(&e))))
    }

    fn encode_state(&self, state: &JsValue) -> Option<Vec<u8>> {
        // What the server's engine stores: `JSON.stringify` of the state.
        let text = js_sys::JSON::stringify(state).ok()?.as_string()?;
        Some(text.into_bytes())
    }
}

impl StoreReducer for JsReducer {
    fn state_to_js(&self, state: &JsValue) -> Result<JsValue, WasmError> {
        Ok(state.clone())
    }

    fn state_from_js(&self, value: JsValue) -> Result<JsValue, WasmError> {
        Ok(value)
    }
}
