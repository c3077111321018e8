//! One WebSocket per browser and server: the stores of every tab that
//! share a database and a server URL reach the server through one
//! connection, whatever streams they follow.
//!
//! Each stream still has one leading tab (lead.rs), which runs that
//! stream's protocol; it opens a *port* on this page's [`Hub`] instead of
//! a socket of its own. The hubs of the tabs elect the tab that holds the
//! connection with a Web Lock (`logsync-conn:<db>:<url>`): that hub opens
//! the socket and carries every port's frames on it by
//! `sync_core::mux::Mux`'s rules (one handshake, frames routed by
//! stream). The other hubs pass their ports' frames to it over a
//! `BroadcastChannel` of the same name, and it passes back what concerns
//! them:
//!
//! Every message is `[kind, id, tab, port, data]`: `id` a holder's
//! leadership id, `tab` a page's random id, `port` its number there.
//!
//! | kind | from | meaning |
//! |---|---|---|
//! | 0 `ATTACH` | a tab | attach this port |
//! | 1 `TO_SERVER` | a tab | a frame (`data`) for the server |
//! | 2 `DETACH` | a tab | the port is gone |
//! | 3 `PING` | a tab | is the holder there? |
//! | 4 `HOLDER` | the holder | holds the connection under leadership id `id` |
//! | 5 `OPEN` | the holder | the port's connection is open |
//! | 6 `TO_PORT` | the holder | a frame (`data`) from the server |
//! | 7 `CLOSED` | the holder | the port's connection closed (`data`: "code reason") |
//!
//! - **The lock follows the ports.** A hub asks for the lock while its
//!   page has ports, and holds it while any tab's port is attached; a
//!   page being frozen (`freeze`) lets it go first and closes its ports.
//!   A page being hidden (`pagehide`: closed, reloaded, or kept in the
//!   back-forward cache) takes its ports off another tab's socket; as the
//!   holder it keeps the lock until the browser lets it go with the page,
//!   which closes its socket at the same time.
//! - **A silent holder is taken over** by `sync_core::lead::LeaderWatch`'s
//!   rule, as a stream's silent leader is: a hub with ports pings a
//!   holder not heard for a second, and steals the lock from one that
//!   leaves the ping unanswered for the leader timeout. What an older
//!   holder says is ignored (its id is below the newest heard), and a
//!   new holder closes the ports attached to the old one: they connect
//!   again, as after any cut (the server deduplicates what they push
//!   again).
//! - The channel is only a transport: a message lost with a dying tab is
//!   a connection cut for the ports it concerned, which reconnect.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{Array, Uint8Array};
use sync_core::lead::{LeaderWatch, Tick, PING_MS};
use sync_core::mux::{Mux, MuxOut, PortEvent};
use wasm_bindgen::prelude::*;

use crate::conn::{Listening, TabChannel};
use crate::lead::LeadLock;
use crate::socket::{Socket, SocketEvent, Timer};

/// What carries a store's connection: a WebSocket of its own, or a port
/// on the page's hub.
pub(crate) enum Link {
    Ws(Socket),
    Port(Port),
}

impl Link {
    /// Sends one frame (dropped when the connection is not open).
    pub fn send(&self, bytes: Vec<u8>) {
        match self {
            Link::Ws(s) => s.send(&bytes),
            Link::Port(p) => p.hub.local_frame(p.no, bytes),
        }
    }
}

/// A store's connection through the hub; dropping it leaves.
pub(crate) struct Port {
    hub: Rc<Hub>,
    no: u32,
}

impl Drop for Port {
    fn drop(&mut self) {
        self.hub.detach(self.no);
    }
}

type OnEvent = Rc<dyn Fn(SocketEvent)>;

/// A port of this page: who hears it, and the holder it is attached to
/// (none while attaching).
struct Local {
    on_event: OnEvent,
    holder: Option<u64>,
}

/// A port's name in the mux: its tab and its number there.
type Key = (u64, u32);

// The kinds of message on the channel (see the module's table).
const ATTACH: u8 = 0;
const TO_SERVER: u8 = 1;
const DETACH: u8 = 2;
const PING: u8 = 3;
const HOLDER: u8 = 4;
const OPEN: u8 = 5;
const TO_PORT: u8 = 6;
const CLOSED: u8 = 7;

#[derive(Default)]
struct State {
    /// This page's ports (few: kept in a vector, less code than a map).
    local: Vec<(u32, Local)>,
    next: u32,
    /// This page holds the lock, under this leadership id.
    held: Option<u64>,
    socket: Option<Socket>,
    /// Numbers sockets, so events of an old one are ignored.
    gen: u64,
    mux: Mux<Key>,
    /// The holder as heard (ids, silence).
    watch: LeaderWatch,
    /// Frozen or hidden for good: no lock until back.
    away: bool,
}

impl State {
    fn find(&mut self, no: u32) -> Option<&mut Local> {
        self.local
            .iter_mut()
            .find(|(n, _)| *n == no)
            .map(|(_, l)| l)
    }
}

/// The connection shared by the tabs of one database and server URL;
/// one per page, kept by its stores.
pub(crate) struct Hub {
    me: Weak<Hub>,
    key: String,
    url: String,
    /// This page's id on the channel.
    tab: u64,
    timeout_ms: u32,
    st: RefCell<State>,
    lock: RefCell<Option<LeadLock>>,
    channel: RefCell<Option<TabChannel>>,
    timer: RefCell<Option<Timer>>,
    page: RefCell<Option<Listening>>,
}

thread_local! {
    static HUBS: RefCell<Vec<(String, Weak<Hub>)>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Hub {
    fn drop(&mut self) {
        HUBS.with(|h| h.borrow_mut().retain(|(_, w)| w.strong_count() > 0));
    }
}

impl Hub {
    /// This page's hub for `db_name` and `url` (made on first use).
    pub fn get(db_name: &str, url: &str, timeout_ms: u32) -> Rc<Hub> {
        let key = format!("logsync-conn:{db_name}:{url}");
        let found = HUBS.with(|h| {
            let h = h.borrow();
            h.iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, w)| w.upgrade())
        });
        if let Some(hub) = found {
            return hub;
        }
        // Below 2^53, so a JS number carries it exactly.
        let tab = (js_sys::Math::random() * 9.0e15) as u64;
        let hub = Rc::new_cyclic(|me| Hub {
            me: me.clone(),
            key: key.clone(),
            url: url.into(),
            tab,
            timeout_ms,
            st: RefCell::new(State {
                watch: LeaderWatch::new(js_sys::Date::now()),
                ..State::default()
            }),
            lock: RefCell::new(None),
            channel: RefCell::new(None),
            timer: RefCell::new(None),
            page: RefCell::new(None),
        });
        hub.listen();
        HUBS.with(|h| h.borrow_mut().push((key, Rc::downgrade(&hub))));
        hub
    }

    /// Opens a port; `on_event` hears it as a socket's events (each from a
    /// fresh task).
    pub fn attach(self: &Rc<Self>, on_event: impl Fn(SocketEvent) + 'static) -> Port {
        let no = {
            let mut st = self.st.borrow_mut();
            st.next += 1;
            let no = st.next;
            let held = st.held;
            st.local.push((
                no,
                Local {
                    on_event: Rc::new(on_event),
                    holder: held,
                },
            ));
            no
        };
        self.attach_key(no);
        self.settle();
        Port {
            hub: self.clone(),
            no,
        }
    }

    /// Attaches local port `no` where the connection is: this page's mux,
    /// or the holder's over the channel.
    fn attach_key(&self, no: u32) {
        let held = self.st.borrow().held.is_some();
        if held {
            let out = self.st.borrow_mut().mux.attach((self.tab, no));
            self.run(out);
        } else if !self.st.borrow().away {
            self.post(ATTACH, 0, self.tab, no, JsValue::UNDEFINED);
        }
    }

    fn detach(&self, no: u32) {
        let out = {
            let mut st = self.st.borrow_mut();
            let Some(i) = st.local.iter().position(|(n, _)| *n == no) else {
                return;
            };
            let (_, l) = st.local.remove(i);
            match (st.held, l.holder) {
                (Some(id), Some(at)) if id == at => st.mux.detach((self.tab, no)),
                (None, _) => {
                    drop(st);
                    self.post(DETACH, 0, self.tab, no, JsValue::UNDEFINED);
                    Vec::new()
                }
                _ => Vec::new(),
            }
        };
        self.run(out);
        self.settle();
    }

    fn local_frame(&self, no: u32, bytes: Vec<u8>) {
        let (held, holder) = {
            let mut st = self.st.borrow_mut();
            (st.held, st.find(no).and_then(|l| l.holder))
        };
        match (held, holder) {
            (Some(id), Some(at)) if id == at => {
                let out = self.st.borrow_mut().mux.port_frame(&(self.tab, no), bytes);
                self.run(out);
            }
            (None, Some(_)) => {
                let bytes = Uint8Array::from(&bytes[..]);
                self.post(TO_SERVER, 0, self.tab, no, bytes.into());
            }
            _ => {}
        }
    }

    /// Posts `[kind, id, tab, port, data]` on the channel.
    fn post(&self, kind: u8, id: u64, tab: u64, port: u32, data: JsValue) {
        if let Some(c) = self.channel.borrow().as_ref() {
            let n = |x: u64| JsValue::from_f64(x as f64);
            let a = Array::of5(&kind.into(), &n(id), &n(tab), &port.into(), &data);
            c.post(&a);
        }
    }

    /// Hands one port event to a local port (from a fresh task: the store
    /// may be the caller).
    fn tell_local(&self, no: u32, ev: PortEvent) {
        let on_event = {
            let mut st = self.st.borrow_mut();
            let f = st.find(no).map(|l| l.on_event.clone());
            if matches!(ev, PortEvent::Closed { .. }) {
                st.local.retain(|(n, _)| *n != no);
            }
            f
        };
        let Some(f) = on_event else { return };
        let ev = match ev {
            PortEvent::Open => SocketEvent::Open,
            PortEvent::Frame(b) => SocketEvent::Frame(Ok(b)),
            PortEvent::Closed { code, reason } => SocketEvent::Closed { code, reason },
        };
        crate::socket::defer(Box::new(move || f(ev)));
    }

    /// Carries out what the mux asks.
    fn run(&self, out: Vec<MuxOut<Key>>) {
        for o in out {
            match o {
                MuxOut::Connect => self.open_socket(),
                MuxOut::Close => {
                    self.st.borrow_mut().socket = None;
                }
                MuxOut::Send(bytes) => {
                    if let Some(s) = self.st.borrow().socket.as_ref() {
                        s.send(&bytes);
                    }
                }
                MuxOut::Port((tab, no), ev) if tab == self.tab => self.tell_local(no, ev),
                MuxOut::Port((tab, no), ev) => {
                    let id = self.st.borrow().held.unwrap_or(0);
                    let (kind, data) = match ev {
                        PortEvent::Open => (OPEN, JsValue::UNDEFINED),
                        PortEvent::Frame(b) => (TO_PORT, Uint8Array::from(&b[..]).into()),
                        PortEvent::Closed { code, reason } => {
                            (CLOSED, format!("{code} {reason}").into())
                        }
                    };
                    self.post(kind, id, tab, no, data);
                }
            }
        }
    }

    fn open_socket(&self) {
        let gen = {
            let mut st = self.st.borrow_mut();
            st.gen += 1;
            st.gen
        };
        let weak = self.me.clone();
        let opened = Socket::open(&self.url, move |ev| {
            if let Some(h) = weak.upgrade() {
                h.on_socket(gen, ev);
            }
        });
        match opened {
            Ok(s) => self.st.borrow_mut().socket = Some(s),
            Err(e) => {
                let out = self.st.borrow_mut().mux.closed(1006, &e.to_string());
                self.run(out);
            }
        }
    }

    fn on_socket(&self, gen: u64, ev: SocketEvent) {
        let out = {
            let mut st = self.st.borrow_mut();
            if st.gen != gen || st.socket.is_none() {
                return;
            }
            match ev {
                SocketEvent::Open => st.mux.opened(),
                SocketEvent::Frame(Ok(bytes)) => st.mux.server_frame(bytes),
                SocketEvent::Frame(Err(len)) => {
                    st.socket = None;
                    st.mux.closed(
                        1003,
                        &format!("a text frame of {len} bytes; the protocol uses binary frames"),
                    )
                }
                SocketEvent::Closed { code, reason } => {
                    st.socket = None;
                    st.mux.closed(code, &reason)
                }
            }
        };
        self.run(out);
        self.settle();
    }

    /// Asks for the lock while this page has ports (and is not away),
    /// keeps it while any port is attached, lets it go otherwise; a hub
    /// with ports and no lock watches the holder.
    fn settle(&self) {
        let (want, held, watch) = {
            let st = self.st.borrow();
            let mine = !st.local.is_empty() && !st.away;
            let serving = st.held.is_some() && st.mux.ports() > 0;
            (
                mine || serving,
                st.held.is_some(),
                mine && st.held.is_none(),
            )
        };
        let asked = self.lock.borrow().is_some();
        if want && !asked {
            self.seek(false);
        } else if !want && asked {
            self.lock.borrow_mut().take();
            let mut st = self.st.borrow_mut();
            if held {
                st.held = None;
                st.watch.lost(js_sys::Date::now());
            }
        }
        let timing = self.timer.borrow().is_some();
        if watch && !timing {
            let weak = self.me.clone();
            *self.timer.borrow_mut() = Some(Timer::new(PING_MS, true, move || {
                if let Some(h) = weak.upgrade() {
                    h.check_holder();
                }
            }));
        } else if !watch && timing {
            self.timer.borrow_mut().take();
        }
    }

    fn seek(&self, steal: bool) {
        let lock = LeadLock::request(&self.key, steal, &self.me, |h| h.granted(), |h| h.lost());
        let old = self.lock.borrow_mut().replace(lock);
        drop(old);
    }

    /// The lock is this page's: announce it, and attach this page's ports
    /// here (those attached to an older holder close and reconnect).
    fn granted(&self) {
        let (id, ports) = {
            let mut st = self.st.borrow_mut();
            if self.lock.borrow().is_none() || st.held.is_some() {
                return;
            }
            let id = st.watch.lead(js_sys::Date::now());
            st.held = Some(id);
            let ports: Vec<(u32, bool)> = st
                .local
                .iter_mut()
                .map(|(no, l)| (*no, l.holder.replace(id).is_some()))
                .collect();
            (id, ports)
        };
        self.post(HOLDER, id, 0, 0, JsValue::UNDEFINED);
        for (no, was_attached) in ports {
            if was_attached {
                self.tell_local(no, moved());
            } else {
                self.attach_key(no);
            }
        }
        self.settle();
    }

    /// Another tab stole the lock (this one was silent too long): close
    /// the socket and every port; ports reconnect through the new holder.
    fn lost(&self) {
        self.lock.borrow_mut().take();
        self.give_up();
        self.settle();
    }

    /// Stops holding: the socket and every port attached here close.
    fn give_up(&self) {
        let out = {
            let mut st = self.st.borrow_mut();
            if st.held.is_none() {
                return;
            }
            st.socket = None;
            st.mux
                .closed(MOVED, "the tab holding the connection let it go")
        };
        // Told under this holder's id (the ports of other tabs go by it).
        self.run(out);
        let mut st = self.st.borrow_mut();
        st.held = None;
        st.watch.lost(js_sys::Date::now());
    }

    /// The page is being frozen (`freeze`, `frozen`) or hidden, maybe for
    /// good (`pagehide`): until it is back, it asks for nothing, and its
    /// ports leave the holder in another tab (which would otherwise keep
    /// their subscriptions). A frozen holder lets the connection go to
    /// another tab first. A holder whose page is hidden keeps it: the
    /// browser lets its lock and socket go together when the page is
    /// gone, so the next holder never opens its socket beside this one
    /// (one kept in the back-forward cache is taken over like a silent
    /// one).
    fn leave(&self, frozen: bool) {
        self.st.borrow_mut().away = true;
        if frozen {
            self.give_up();
        }
        let held = self.st.borrow().held.is_some();
        if !held {
            let ports: Vec<u32> = self.st.borrow().local.iter().map(|(n, _)| *n).collect();
            for no in ports {
                self.post(DETACH, 0, self.tab, no, JsValue::UNDEFINED);
                if frozen {
                    self.tell_local(no, moved());
                }
            }
        }
        self.settle();
    }

    /// Back from `leave` (`resume`, `pageshow`): ports that left their
    /// holder reconnect.
    fn back(&self) {
        let ports: Vec<u32> = {
            let mut st = self.st.borrow_mut();
            if !std::mem::take(&mut st.away) || st.held.is_some() {
                return;
            }
            st.local.iter().map(|(n, _)| *n).collect()
        };
        for no in ports {
            self.tell_local(no, moved());
        }
        self.settle();
    }

    /// The watch of a holder in another tab: ping one not heard for a
    /// while; take the lock from one silent for the leader timeout.
    fn check_holder(&self) {
        let tick = {
            let mut st = self.st.borrow_mut();
            if st.held.is_some() {
                return;
            }
            st.watch.tick(js_sys::Date::now(), self.timeout_ms)
        };
        match tick {
            Tick::TakeOver => {
                self.lock.borrow_mut().take();
                self.seek(true);
            }
            Tick::Ping => self.post(PING, 0, 0, 0, JsValue::UNDEFINED),
            Tick::Wait => {}
        }
    }

    /// A message of another tab's hub.
    fn heard(&self, msg: JsValue) {
        let Some(a) = msg.dyn_ref::<Array>() else {
            return;
        };
        let num = |i: u32| a.get(i).as_f64().unwrap_or(-1.0) as u64;
        let (kind, id, tab, no, data) = (num(0) as u8, num(1), num(2), num(3) as u32, a.get(4));
        let held = self.st.borrow().held;
        let out = match (kind, held) {
            (PING, Some(id)) => {
                self.post(HOLDER, id, 0, 0, JsValue::UNDEFINED);
                Vec::new()
            }
            // To the holder, from a tab's port.
            (ATTACH, Some(_)) => self.st.borrow_mut().mux.attach((tab, no)),
            (DETACH, Some(_)) => self.st.borrow_mut().mux.detach((tab, no)),
            (TO_SERVER, Some(_)) => match data.dyn_into::<Uint8Array>() {
                Ok(b) => self.st.borrow_mut().mux.port_frame(&(tab, no), b.to_vec()),
                Err(_) => Vec::new(),
            },
            (HOLDER, None) => {
                self.new_holder(id);
                Vec::new()
            }
            (OPEN | TO_PORT | CLOSED, None) if tab == self.tab => {
                self.holder_said(kind, id, no, data);
                Vec::new()
            }
            _ => Vec::new(),
        };
        self.run(out);
        self.settle();
    }

    /// A holder announced itself: ports attached to an older one close
    /// (they reconnect through this one); attaching ports ask it.
    fn new_holder(&self, id: u64) {
        let (closing, asking) = {
            let mut st = self.st.borrow_mut();
            // A holder answering a ping is not news: only a new one
            // makes waiting ports ask again.
            let new = id > st.watch.id();
            if !st.watch.heard(id, true, js_sys::Date::now()) || !new {
                return;
            }
            let mut closing = Vec::new();
            let mut asking = Vec::new();
            for (no, l) in &st.local {
                match l.holder {
                    Some(at) if at < id => closing.push(*no),
                    None => asking.push(*no),
                    _ => {}
                }
            }
            (closing, asking)
        };
        for no in closing {
            self.tell_local(no, moved());
        }
        for no in asking {
            self.attach_key(no);
        }
    }

    /// What the holder says to one port of this page.
    fn holder_said(&self, kind: u8, id: u64, no: u32, data: JsValue) {
        let ev = {
            let mut st = self.st.borrow_mut();
            if !st.watch.heard(id, true, js_sys::Date::now()) {
                return;
            }
            let Some(l) = st.find(no) else {
                return;
            };
            match (kind, l.holder) {
                (OPEN, None) => {
                    l.holder = Some(id);
                    PortEvent::Open
                }
                (TO_PORT, Some(at)) if at == id => match data.dyn_into::<Uint8Array>() {
                    Ok(b) => PortEvent::Frame(b.to_vec()),
                    Err(_) => return,
                },
                (CLOSED, at) if at.is_none_or(|at| at == id) => {
                    let text = data.as_string().unwrap_or_default();
                    // At the first space (a byte search: no `char` searcher).
                    let (code, reason) = text
                        .bytes()
                        .position(|b| b == b' ')
                        .map_or(("1006", ""), |i| (&text[..i], &text[i + 1..]));
                    PortEvent::Closed {
                        code: code.parse().unwrap_or(1006),
                        reason: reason.into(),
                    }
                }
                _ => return,
            }
        };
        self.tell_local(no, ev);
    }

    /// Hears the other tabs' hubs, and the page's lifecycle.
    fn listen(&self) {
        let weak = self.me.clone();
        *self.channel.borrow_mut() = TabChannel::open(&self.key, move |data| {
            let weak = weak.clone();
            crate::socket::defer(Box::new(move || {
                if let Some(h) = weak.upgrade() {
                    h.heard(data);
                }
            }));
        });
        let weak = self.me.clone();
        // 0: frozen, 1: back, 2: hidden, 3: back.
        let listening = Listening::new("d:freeze d:resume w:pagehide w:pageshow", move |i| {
            if let Some(h) = weak.upgrade() {
                if i % 2 == 1 {
                    h.back();
                } else {
                    h.leave(i == 0);
                }
            }
        });
        *self.page.borrow_mut() = Some(listening);
    }
}

/// The close code a port hears when the connection moves to another tab
/// (the store reconnects at once, without a backoff wait: nothing failed).
pub(crate) const MOVED: u16 = 4901;

/// What a port hears when the connection moves to another tab.
fn moved() -> PortEvent {
    PortEvent::Closed {
        code: MOVED,
        reason: "the connection moved to another tab".into(),
    }
}
