//! The connection's state, as data: the socket, its timers, the backoff,
//! the token, and the browser's `online`/`offline` listeners. What happens
//! on each socket event is net.rs's; this module uses nothing of the
//! engine, so the engine can hold it.

use sync_core::{Backoff, ClientMsg, FailureReports};
use wasm_bindgen::prelude::*;

use crate::hub::Link;
use crate::page::{close_channel, listen, open_channel, post_channel};
use crate::socket::Timer;

/// Connection state.
pub(crate) struct Net {
    /// The connection: a WebSocket, or a port on the page's hub.
    pub socket: Option<Link>,
    /// Numbers sockets, so events of an old one are ignored.
    pub gen: u64,
    pub backoff: Backoff,
    pub reconnect_timer: Option<Timer>,
    pub heartbeat: Option<Timer>,
    pub startup_timer: Option<Timer>,
    pub last_rx_ms: f64,
    pub nonce: u64,
    /// `goOffline()` was called: no attempts until `reconnect()`.
    pub paused: bool,
    /// Sent in the next `Hello`.
    pub token: Option<String>,
    /// Sent in this connection's `Hello`.
    pub sent_token: Option<String>,
    /// The server refused the token or what it allows: no attempts until
    /// `setToken()` or `reconnect()`.
    pub needs_token: bool,
    /// The store met data of a newer schema version (`SCHEMA_TOO_NEW`):
    /// no attempts until the app is reloaded.
    pub outdated: bool,
    /// The timer of the next pending intent's time-to-live, and when it
    /// runs out (ms since the Unix epoch).
    pub expiry: Option<(u64, Timer)>,
    /// The current socket has opened.
    pub opened: bool,
    /// Which failed attempts are reported.
    pub failures: FailureReports,
    /// A follower's check of the leader (see `lead.rs`).
    pub lead_timer: Option<Timer>,
}

impl Net {
    /// Offline, with reconnect delays from `backoff_min_ms` up to
    /// `backoff_max_ms`; `paused` until `reconnect()` when the store
    /// does not connect by itself.
    pub fn new(
        backoff_min_ms: u32,
        backoff_max_ms: u32,
        paused: bool,
        token: Option<String>,
    ) -> Net {
        Net {
            socket: None,
            gen: 0,
            backoff: Backoff::new(backoff_min_ms, backoff_max_ms),
            reconnect_timer: None,
            heartbeat: None,
            startup_timer: None,
            last_rx_ms: 0.0,
            nonce: 0,
            paused,
            token,
            sent_token: None,
            needs_token: false,
            outdated: false,
            expiry: None,
            opened: false,
            failures: FailureReports::default(),
            lead_timer: None,
        }
    }

    pub fn send(&self, msg: &ClientMsg) {
        if let Some(s) = &self.socket {
            s.send(msg.encode());
        }
    }

    /// Drops the socket and every timer.
    pub fn shutdown(&mut self) {
        self.shutdown_socket();
        self.startup_timer = None;
        self.expiry = None;
        self.lead_timer = None;
    }

    /// Drops the socket, its heartbeat and a planned reconnect.
    pub fn shutdown_socket(&mut self) {
        self.socket = None;
        self.heartbeat = None;
        self.reconnect_timer = None;
    }
}

/// The notice channel of the tabs that share one store's storage (a
/// `BroadcastChannel` named after the database and the stream): a tab
/// that wrote intents posts on it, the others read the outbox again
/// (`Outbox::written_elsewhere`). Dropping it closes the channel.
pub(crate) struct TabChannel {
    channel: JsValue,
    /// Kept alive while the channel calls it.
    _on_message: Closure<dyn FnMut(JsValue)>,
}

impl TabChannel {
    /// Opens channel `name`, its messages to `on` (`None` where the page
    /// has no `BroadcastChannel`).
    pub fn open(name: &str, on: impl FnMut(JsValue) + 'static) -> Option<TabChannel> {
        let on = Closure::<dyn FnMut(JsValue)>::new(on);
        let channel = open_channel(name, &on);
        (!channel.is_undefined()).then_some(TabChannel {
            channel,
            _on_message: on,
        })
    }

    /// Posts `msg` (one that cannot be cloned is dropped).
    pub fn post(&self, msg: &JsValue) {
        post_channel(&self.channel, msg);
    }
}

impl Drop for TabChannel {
    fn drop(&mut self) {
        close_channel(&self.channel);
    }
}

/// Listeners of the page's events (`listen` in page.js: `names` such as
/// `"d:freeze w:online"`, d the document, w the global object; the
/// callback hears the index of the one that fired). Dropping it removes
/// them.
pub(crate) struct Listening {
    stop: js_sys::Function,
    _on: Closure<dyn FnMut(u32)>,
}

impl Listening {
    pub fn new(names: &str, on: impl FnMut(u32) + 'static) -> Listening {
        let on = Closure::<dyn FnMut(u32)>::new(on);
        Listening {
            stop: listen(names, &on),
            _on: on,
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.stop.call0(&JsValue::UNDEFINED);
    }
}
