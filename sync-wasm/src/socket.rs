//! The transport pieces: a binary WebSocket and timers, with their JS
//! callbacks owned by the Rust values (dropping one detaches and frees
//! its callbacks).
//!
//! Callbacks only schedule work ([`defer`]): the work may drop the very
//! socket or timer whose callback started it, which must not happen while
//! that callback is still running.

use std::rc::Rc;

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::error::{describe_js, WasmError};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
    #[wasm_bindgen(js_name = setInterval)]
    fn set_interval(f: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearInterval)]
    fn clear_interval(id: &JsValue);
}

/// Runs `f` from a fresh task. Every caller shares this one task type:
/// each `spawn_local` of a future type of its own adds its own copy of the
/// task machinery to the module.
pub(crate) fn defer(f: Box<dyn FnOnce()>) {
    wasm_bindgen_futures::spawn_local(async move { f() });
}

/// What a socket reports.
pub(crate) enum SocketEvent {
    /// Connected.
    Open,
    /// One binary frame (or a text frame, as `Err` with its length).
    Frame(Result<Vec<u8>, usize>),
    /// Closed (by either side, or failed to connect), with the close
    /// event's code and reason.
    Closed { code: u16, reason: String },
}

/// One WebSocket connection.
pub(crate) struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    /// Opens a binary WebSocket to `url`; `on_event` receives its events
    /// (each one from a fresh task).
    pub fn open(url: &str, on_event: impl Fn(SocketEvent) + 'static) -> Result<Socket, WasmError> {
        Self::open_dyn(url, Rc::new(on_event))
    }

    /// [`Socket::open`], one copy in the module for every caller.
    fn open_dyn(url: &str, on_event: Rc<dyn Fn(SocketEvent)>) -> Result<Socket, WasmError> {
        let ws = WebSocket::new(url).map_err(|e| {
            WasmError::InvalidRequest(format!(
                "cannot open a WebSocket to \"{url}\": {}",
                describe_js(&e)
            ))
        })?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let f = on_event.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            let f = f.clone();
            defer(Box::new(move || f(SocketEvent::Open)));
        });
        let f = on_event.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
            let data = m.data();
            let frame = match data.dyn_ref::<js_sys::ArrayBuffer>() {
                Some(buf) => Ok(Uint8Array::new(buf).to_vec()),
                None => Err(data.as_string().map_or(0, |s| s.len())),
            };
            let f = f.clone();
            defer(Box::new(move || f(SocketEvent::Frame(frame))));
        });
        let f = on_event;
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            let f = f.clone();
            let (code, reason) = (e.code(), e.reason());
            defer(Box::new(move || f(SocketEvent::Closed { code, reason })));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Sends one binary frame. A socket that is not open drops it: its
    /// close event follows, and what was not confirmed is sent again on
    /// the next connection.
    pub fn send(&self, bytes: &[u8]) {
        if self.ws.ready_state() == WebSocket::OPEN {
            let _ = self.ws.send_with_u8_array(bytes);
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// A pending `setTimeout` (or a `setInterval` when repeating); dropping it
/// cancels it.
pub(crate) struct Timer {
    id: JsValue,
    repeat: bool,
    _cb: Closure<dyn FnMut()>,
}

impl Timer {
    /// Runs `f` (from a fresh task) after `ms`, or every `ms` when `repeat`.
    pub fn new(ms: u32, repeat: bool, f: impl Fn() + 'static) -> Timer {
        Self::new_dyn(ms, repeat, Rc::new(f))
    }

    /// [`Timer::new`], one copy in the module for every caller.
    fn new_dyn(ms: u32, repeat: bool, f: Rc<dyn Fn()>) -> Timer {
        let cb = Closure::<dyn FnMut()>::new(move || {
            let f = f.clone();
            defer(Box::new(move || f()));
        });
        let ms = ms.min(i32::MAX as u32) as i32;
        let id = if repeat {
            set_interval(cb.as_ref().unchecked_ref(), ms)
        } else {
            set_timeout(cb.as_ref().unchecked_ref(), ms)
        };
        Timer {
            id,
            repeat,
            _cb: cb,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.repeat {
            clear_interval(&self.id);
        } else {
            clear_timeout(&self.id);
        }
    }
}
