//! The transport pieces: a binary WebSocket and timers, with their JS
//! callbacks owned by the Rust values (dropping one detaches and frees
//! its callbacks).
//!
//! Callbacks only schedule work ([`defer`]): the work may drop the very
//! socket or timer whose callback started it, which must not happen while
//! that callback is still running.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::error::{describe_js, WasmError};
use crate::page::{close_socket, open_socket, send_socket, timer};

/// Runs `fut` as a task of its own. Every task of the module is spawned
/// here, boxed: each `spawn_local` of a future type of its own adds its
/// own copy of the task machinery to the module.
pub(crate) fn spawn(fut: Pin<Box<dyn Future<Output = ()>>>) {
    wasm_bindgen_futures::spawn_local(fut);
}

/// Runs `f` from a fresh task.
pub(crate) fn defer(f: Box<dyn FnOnce()>) {
    spawn(Box::pin(async move { f() }));
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

/// One WebSocket connection (`openSocket` in page.js).
pub(crate) struct Socket {
    ws: JsValue,
    _on_event: Closure<dyn FnMut(u32, JsValue, JsValue)>,
}

impl Socket {
    /// Opens a binary WebSocket to `url`; `on_event` receives its events
    /// (each one from a fresh task).
    pub fn open(url: &str, on_event: impl Fn(SocketEvent) + 'static) -> Result<Socket, WasmError> {
        Self::open_dyn(url, Rc::new(on_event))
    }

    /// [`Socket::open`], one copy in the module for every caller.
    fn open_dyn(url: &str, on_event: Rc<dyn Fn(SocketEvent)>) -> Result<Socket, WasmError> {
        let on = Closure::<dyn FnMut(u32, JsValue, JsValue)>::new(
            move |kind: u32, data: JsValue, reason: JsValue| {
                let ev = match kind {
                    0 => SocketEvent::Open,
                    1 => SocketEvent::Frame(Ok(data.unchecked_into::<Uint8Array>().to_vec())),
                    2 => SocketEvent::Frame(Err(data.as_f64().unwrap_or(0.0) as usize)),
                    _ => SocketEvent::Closed {
                        code: data.as_f64().unwrap_or(0.0) as u16,
                        reason: reason.as_string().unwrap_or_default(),
                    },
                };
                let f = on_event.clone();
                defer(Box::new(move || f(ev)));
            },
        );
        let ws = open_socket(url, &on).map_err(|e| {
            WasmError::InvalidRequest(format!(
                "cannot open a WebSocket to \"{url}\": {}",
                describe_js(&e)
            ))
        })?;
        Ok(Socket { ws, _on_event: on })
    }

    /// Sends one binary frame. A socket that is not open drops it: its
    /// close event follows, and what was not confirmed is sent again on
    /// the next connection.
    pub fn send(&self, bytes: &[u8]) {
        send_socket(&self.ws, bytes);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        close_socket(&self.ws);
    }
}

/// A pending `setTimeout` (or a `setInterval` when repeating); dropping it
/// cancels it.
pub(crate) struct Timer {
    cancel: Function,
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
        Timer {
            cancel: timer(&cb, ms.min(i32::MAX as u32), repeat),
            _cb: cb,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let _ = self.cancel.call0(&JsValue::UNDEFINED);
    }
}
