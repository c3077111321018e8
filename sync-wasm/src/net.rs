//! The store's connection: one WebSocket at a time, reconnected with
//! exponential backoff and jitter, a heartbeat that drops a silent
//! connection, and the browser's `online`/`offline` events.
//!
//! States: offline (waiting out a backoff delay, or paused by
//! `goOffline`) → connecting (socket opening) → handshake (`Hello` sent)
//! → ready (`Welcome` handled: subscribed, outbox pushed). Any close,
//! malformed frame, protocol error or silence of two heartbeat periods
//! drops the socket and schedules the next attempt — except after the
//! server refused the token (`UNAUTHORIZED`) or what it allows
//! (`FORBIDDEN`): trying again with the same token cannot help, so the
//! store waits for `setToken()` (or `reconnect()`), keeping its outbox.

use std::rc::Rc;

use sync_core::{ClientMsg, CoreError, Phase, Probe, ServerMsg};

use crate::conn::Listening;
use crate::engine::{Core, Engine, Notes, Problem};
use crate::error::WasmError;
use crate::hub::Link;
use crate::lead::Role;
use crate::reducer::StoreReducer;
use crate::socket::{Socket, SocketEvent, Timer};

/// Largest frame accepted from the server (catch-up batches can be big).
const MAX_INBOUND_FRAME: usize = 16 << 20;

// The WebSocket API hides why a connection failed (a page must not learn
// about ports it cannot reach), so after a failed attempt that is to be
// reported, the address is asked once over plain HTTP. First a CORS
// request, which logsync-server answers (it allows any origin by default)
// and same-origin servers answer: its status is readable. Failing that, a
// no-cors HEAD: an opaque answer still says an HTTP server is there (a
// no-cors GET would not: the browser blocks an opaque HTML or JSON body as
// a network error). A network error on both means nothing answered that
// the page may see. Resolves to the HTTP status (0 when opaque) or the
// text of the network error (`probeHttp` in page.js).
use crate::page::probe_http;

/// The `http(s)://` address of a `ws(s)://` URL.
fn http_url(ws_url: &str) -> String {
    if let Some(rest) = ws_url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = ws_url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        ws_url.to_string()
    }
}

/// Asks `ws_url`'s address over HTTP (see `probeHttp`).
async fn probe(ws_url: &str) -> Probe {
    let answer = probe_http(&http_url(ws_url)).await;
    match answer.as_f64() {
        Some(0.0) => Probe::Http(None),
        Some(n) => Probe::Http(Some(n as u16)),
        None => Probe::NoAnswer(answer.as_string().unwrap_or_else(|| "no answer".into())),
    }
}

impl<R: StoreReducer> Engine<R> {
    /// Connects unless connected, paused or closed.
    pub fn connect_now(self: &Rc<Self>) {
        let mut notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            self.connect(&mut c, &mut notes);
        }
        self.emit(notes);
    }

    fn connect(self: &Rc<Self>, c: &mut Core<R>, notes: &mut Notes) {
        if c.closed
            || c.net.paused
            || c.net.needs_token
            || c.net.outdated
            || c.net.socket.is_some()
            || c.follows()
        {
            return;
        }
        c.net.reconnect_timer = None;
        c.net.gen += 1;
        let gen = c.net.gen;
        let weak = self.me.clone();
        let on_event = move |ev| {
            if let Some(e) = weak.upgrade() {
                e.on_socket(gen, ev);
            }
        };
        // A leading tab reaches the server through the page's hub, which
        // carries every stream of this database on one WebSocket.
        let hub = match c.role {
            Role::Leader(_) => self.hub.borrow().clone(),
            _ => None,
        };
        let opened = match hub {
            Some(hub) => Ok(Link::Port(hub.attach(on_event))),
            None => Socket::open(&self.opts.url, on_event).map(Link::Ws),
        };
        match opened {
            Ok(socket) => {
                c.net.socket = Some(socket);
                c.net.opened = false;
                c.net.last_rx_ms = js_sys::Date::now();
                let weak = self.me.clone();
                c.net.heartbeat = Some(Timer::new(self.opts.heartbeat_ms, true, move || {
                    if let Some(e) = weak.upgrade() {
                        e.heartbeat(gen);
                    }
                }));
            }
            Err(e) => {
                c.problem(Problem::Connection, e, notes);
                self.schedule_reconnect(c);
            }
        }
    }

    fn on_socket(self: &Rc<Self>, gen: u64, ev: SocketEvent) {
        let mut notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            if c.closed || c.net.gen != gen || c.net.socket.is_none() {
                return;
            }
            match ev {
                SocketEvent::Open => {
                    c.net.opened = true;
                    let token = c.net.token.clone();
                    c.net.sent_token = token.clone();
                    let hello = c.client.connected(token);
                    c.net.send(&hello);
                    c.net.last_rx_ms = js_sys::Date::now();
                    // Other tabs of this profile may have written intents.
                    let Core { outbox, client, .. } = &mut *c;
                    outbox.connected(client);
                }
                SocketEvent::Frame(frame) => {
                    c.net.last_rx_ms = js_sys::Date::now();
                    let msg = match frame {
                        Ok(bytes) => {
                            ServerMsg::decode(&bytes, MAX_INBOUND_FRAME).map_err(WasmError::from)
                        }
                        Err(len) => Err(CoreError::MalformedFrame {
                            reason: format!(
                                "a text frame of {len} bytes; the protocol uses binary frames"
                            ),
                        }
                        .into()),
                    };
                    match msg {
                        Ok(msg) => self.handle_msg(&mut c, msg, &mut notes),
                        Err(e) => {
                            c.problem(Problem::Connection, e, &mut notes);
                            self.drop_connection(&mut c);
                        }
                    }
                }
                SocketEvent::Closed { code, reason } => {
                    if code == crate::hub::MOVED {
                        // Another tab holds the connection now: go on
                        // through it at once.
                        self.drop_connection(&mut c);
                        self.connect(&mut c, &mut notes);
                    } else {
                        if !c.net.opened {
                            self.connect_failed(&mut c, code, reason);
                        }
                        self.drop_connection(&mut c);
                    }
                }
            }
        }
        self.hand_over_if_refused();
        self.kick_writer();
        self.emit(notes);
    }

    /// Hands one server message to the protocol driver and carries out
    /// its effects.
    pub fn handle_msg(self: &Rc<Self>, c: &mut Core<R>, msg: ServerMsg, notes: &mut Notes) {
        let welcome = matches!(msg, ServerMsg::Welcome { .. });
        if welcome {
            // Intents that outlived their time-to-live are withdrawn
            // before this connection pushes anything.
            for e in c.client.expire(js_sys::Date::now() as u64) {
                c.apply(e, notes);
            }
        }
        match c.client.handle(msg) {
            Ok(effects) => {
                if welcome {
                    // Healthy again: a connection problem is history now.
                    c.net.backoff.reset();
                    c.net.failures.connected();
                    c.clear_problem(Problem::Connection);
                }
                for e in effects {
                    c.apply(e, notes);
                }
            }
            Err(e) => {
                c.problem(Problem::Connection, e.into(), notes);
                self.drop_connection(c);
            }
        }
    }

    /// Withdraws the pending intents whose time-to-live ran out (see
    /// `SyncClient::expire`); on a live connection their withdrawals go
    /// at once. The timer is armed again by `emit`.
    fn expire_now(self: &Rc<Self>) {
        let mut notes = Notes::default();
        {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            c.net.expiry = None;
            if c.closed {
                return;
            }
            let mut effects = c.client.expire(js_sys::Date::now() as u64);
            effects.extend(c.client.flush());
            for e in effects {
                c.apply(e, &mut notes);
            }
        }
        self.kick_writer();
        self.emit(notes);
    }

    /// Sets the timer for the earliest time-to-live of a pending intent
    /// (`Replica::next_expiry`), unless it is set for that time already.
    pub fn arm_expiry(&self, c: &mut Core<R>) {
        let next = if c.closed {
            None
        } else {
            c.client.replica().next_expiry()
        };
        if next == c.net.expiry.as_ref().map(|(at, _)| *at) {
            return;
        }
        c.net.expiry = next.map(|at| {
            // One due already waits for its seq (its outbox write): look
            // again shortly rather than at once. (A timer waits at most
            // 2^31 - 1 ms: a later one fires early and is armed again.)
            let wait = (at as f64 - js_sys::Date::now()).max(50.0) as u32;
            let weak = self.me.clone();
            let timer = Timer::new(wait, false, move || {
                if let Some(e) = weak.upgrade() {
                    e.expire_now();
                }
            });
            (at, timer)
        });
    }

    /// A socket closed before it opened. The first failure of an outage is
    /// reported, then at most one per `sync_core::connect::REPORT_EVERY_MS`;
    /// a report first asks the address over HTTP (see `probe`), so it can
    /// say what is there.
    fn connect_failed(self: &Rc<Self>, c: &mut Core<R>, code: u16, reason: String) {
        let Some(suppressed) = c.net.failures.failed(js_sys::Date::now()) else {
            return;
        };
        let url = self.opts.url.clone();
        let transport = if reason.is_empty() {
            format!("the WebSocket closed before it opened (close code {code})")
        } else {
            format!("the WebSocket closed before it opened (close code {code}: {reason})")
        };
        let weak = self.me.clone();
        crate::socket::spawn(Box::pin(async move {
            let probe = probe(&url).await;
            let Some(e) = weak.upgrade() else { return };
            let mut notes = Notes::default();
            {
                let Ok(mut c) = e.core.try_borrow_mut() else {
                    return;
                };
                // Closed meanwhile, or connected since: nothing to report.
                if c.closed || c.client.phase() == Phase::Ready {
                    return;
                }
                let message = sync_core::connect_failure(&url, &transport, &probe, suppressed);
                c.problem(
                    Problem::Connection,
                    WasmError::ConnectFailed(message),
                    &mut notes,
                );
            }
            e.emit(notes);
        }));
    }

    /// Closes the socket (if any) and schedules the next attempt.
    pub fn drop_connection(self: &Rc<Self>, c: &mut Core<R>) {
        c.net.socket = None;
        c.net.heartbeat = None;
        c.client.disconnected();
        c.outbox.disconnected();
        self.schedule_reconnect(c);
    }

    fn schedule_reconnect(self: &Rc<Self>, c: &mut Core<R>) {
        if c.closed || c.net.paused || c.net.needs_token || c.net.outdated {
            return;
        }
        let delay = c.net.backoff.next_delay_ms(js_sys::Math::random());
        let weak = self.me.clone();
        c.net.reconnect_timer = Some(Timer::new(delay, false, move || {
            if let Some(e) = weak.upgrade() {
                e.connect_now();
            }
        }));
    }

    fn heartbeat(self: &Rc<Self>, gen: u64) {
        let mut c = self.core.borrow_mut();
        if c.closed || c.net.gen != gen || c.net.socket.is_none() {
            return;
        }
        let silent = js_sys::Date::now() - c.net.last_rx_ms;
        if silent >= 2.0 * f64::from(self.opts.heartbeat_ms) {
            // Half-open or stuck: the server would have answered a ping.
            self.drop_connection(&mut c);
            drop(c);
            self.emit(Notes::default());
        } else if c.client.phase() == Phase::Ready {
            c.net.nonce += 1;
            let ping = ClientMsg::Ping { nonce: c.net.nonce };
            c.net.send(&ping);
        }
    }

    /// Leaves the paused state and connects now, without a backoff wait.
    pub fn reconnect_now(self: &Rc<Self>) {
        let mut notes = Notes::default();
        {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            c.net.paused = false;
            c.net.needs_token = false;
            c.net.backoff.reset();
            self.connect(&mut c, &mut notes);
        }
        self.resume_lead();
        self.emit(notes);
    }

    /// Uses `token` from the next connection on. A live connection stays
    /// (its token is still good); a store waiting for a token connects now.
    pub fn set_token(self: &Rc<Self>, token: Option<String>) {
        let mut notes = Notes::default();
        {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            c.net.token = token;
            if c.net.needs_token {
                c.net.needs_token = false;
                c.net.backoff.reset();
                self.connect(&mut c, &mut notes);
            }
        }
        // A tab that handed the connection over for its refused token
        // asks for it again (a no-op where it holds it or waits for it).
        self.resume_lead();
        self.emit(notes);
    }

    /// Drops the connection and stays offline until `reconnect_now`.
    pub fn go_offline(self: &Rc<Self>) {
        {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            c.net.paused = true;
            c.net.socket = None;
            c.net.heartbeat = None;
            c.net.reconnect_timer = None;
            c.client.disconnected();
        }
        self.give_up_lead();
        self.emit(Notes::default());
    }

    fn browser_says(self: &Rc<Self>, online: bool) {
        let mut notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            if c.closed || c.net.paused {
                return;
            }
            if online {
                // Worth trying at once, whatever the backoff says.
                c.net.backoff.reset();
                if c.net.socket.is_none() {
                    self.connect(&mut c, &mut notes);
                }
            } else {
                // The socket is likely dead; attempts go on at backoff
                // pace in case the browser is wrong.
                self.drop_connection(&mut c);
            }
        }
        self.emit(notes);
    }

    /// Follows the browser's `online`/`offline` events.
    pub fn listen_to_browser(self: &Rc<Self>) {
        let weak = self.me.clone();
        let listening = Listening::new("w:online w:offline", move |i| {
            let weak = weak.clone();
            crate::socket::defer(Box::new(move || {
                if let Some(e) = weak.upgrade() {
                    e.browser_says(i == 0);
                }
            }));
        });
        *self.browser_events.borrow_mut() = Some(listening);
    }

    /// Stops following the browser's events and the other tabs.
    pub fn stop_listening_to_browser(&self) {
        self.browser_events.borrow_mut().take();
        self.tabs.borrow_mut().take();
        self.hub.borrow_mut().take();
        self.page_events.borrow_mut().take();
    }
}
