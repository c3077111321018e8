//! One connection per browser: the tabs of one store's storage (database,
//! stream and server URL) elect a leader with the Web Locks API. Only the
//! leader holds the WebSocket; every other tab follows it through storage
//! (`sync_core::Outbox::set_follower`): the leader's notices on the tabs'
//! `BroadcastChannel` ("stored", "outbox") make it read what was stored,
//! IndexedDB staying the source of truth, so a notice lost with a dying tab
//! only delays a follower until the next one.
//!
//! - **Take-over.** A leader that closes, reloads or crashes lets the lock
//!   go (the browser releases a dead page's locks); the next waiting tab
//!   gets it, takes a new leadership id (its clock, above every id heard)
//!   and connects, from its own stored offset. Intents the old leader pushed are answered as
//!   duplicates by the server, as after any reconnect.
//! - **A frozen leader is not a leader.** When a follower pings and when it
//!   takes over is sync-core's rule (`sync_core::lead::LeaderWatch`, its
//!   timer here): it pings a leader it has not heard for a second; a
//!   leader answers with its id and whether it is online; one that leaves
//!   a ping unanswered for [`crate::StoreOptions::leader_timeout_ms`] is
//!   taken over: the lock is
//!   stolen (`steal: true`), which fails the old leader's hold; when it runs
//!   again it drops its connection and follows (the fence is the lock
//!   itself, and each leadership's id: followers ignore what an older id
//!   says). A leader whose page is being frozen (`freeze`) hands over
//!   first.
//! - **Where Web Locks or `BroadcastChannel` are missing** each tab
//!   connects on its own, as before (`Role::Alone`).

use std::rc::{Rc, Weak};

use sync_core::lead::{decode_status, encode_status, LeaderWatch, Tick, PING_MS};
use sync_core::{ErrorCode, Seq};
use wasm_bindgen::prelude::*;

use crate::conn::{Listening, TabChannel};
use crate::engine::{Engine, Notes};
use crate::page::{has_locks, lock_lead};
use crate::reducer::StoreReducer;
use crate::socket::Timer;

/// Who holds this store's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Tabs cannot elect (no Web Locks, no `BroadcastChannel`, or
    /// `shareConnection: false`): this tab connects on its own.
    Alone,
    /// Another tab holds the connection (or none does yet): this tab
    /// follows storage and asks for the lock unless paused.
    Follower,
    /// This tab holds the lock and the connection, under this id.
    Leader(u64),
}

/// A lock request and the callbacks the browser holds.
pub(crate) struct LeadLock {
    release: JsValue,
    _granted: Closure<dyn FnMut()>,
    _lost: Closure<dyn FnMut()>,
}

impl LeadLock {
    /// Asks for Web Lock `name` (`steal`: take it from its holder) for
    /// `me`: `granted` runs when this tab holds it, `lost` when another
    /// stole it, each from a fresh task and only while `me` lives.
    /// Dropping the request lets the lock go (or gives the request up).
    pub fn request<T: 'static>(
        name: &str,
        steal: bool,
        me: &Weak<T>,
        granted: fn(&Rc<T>),
        lost: fn(&Rc<T>),
    ) -> LeadLock {
        let later = |f: fn(&Rc<T>)| {
            let me = me.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(me) = me.upgrade() {
                    crate::socket::defer(Box::new(move || f(&me)));
                }
            })
        };
        let (granted, lost) = (later(granted), later(lost));
        LeadLock {
            release: lock_lead(name, steal, &granted, &lost),
            _granted: granted,
            _lost: lost,
        }
    }
}

impl Drop for LeadLock {
    fn drop(&mut self) {
        if let Some(f) = self.release.dyn_ref::<js_sys::Function>() {
            let _ = f.call0(&JsValue::NULL);
        }
    }
}

impl<R: StoreReducer> Engine<R> {
    /// Decides this tab's role at open: it follows, and asks for the lock
    /// when it is to connect; where tabs cannot elect, it connects alone.
    pub fn start_role(self: &Rc<Self>) {
        let shared = self.opts.share_connection && self.tabs.borrow().is_some() && has_locks();
        if !shared {
            self.core.borrow_mut().role = Role::Alone;
            if self.opts.connect {
                self.connect_now();
            }
            return;
        }
        *self.hub.borrow_mut() = Some(crate::hub::Hub::get(
            &self.opts.db_name,
            &self.opts.url,
            self.opts.leader_timeout_ms,
        ));
        {
            let mut c = self.core.borrow_mut();
            c.role = Role::Follower;
            c.watch = LeaderWatch::new(js_sys::Date::now());
            c.outbox.set_follower(true);
            let weak = self.me.clone();
            c.net.lead_timer = Some(Timer::new(PING_MS, true, move || {
                if let Some(e) = weak.upgrade() {
                    e.check_leader();
                }
            }));
        }
        if self.opts.connect {
            self.seek_lead(false);
        }
        self.listen_to_page();
        self.kick_writer();
    }

    /// A page about to be frozen (`freeze`) hands the connection over
    /// first; back (`resume`), it reads what was stored meanwhile and asks
    /// for the lock again unless paused.
    /// (A page kept in the back-forward cache with the lock would be
    /// silent, and taken over like a frozen one.)
    fn listen_to_page(self: &Rc<Self>) {
        let weak = self.me.clone();
        let listening = Listening::new("d:freeze d:resume", move |i| {
            let Some(e) = weak.upgrade() else { return };
            if i == 0 {
                e.give_up_lead();
                e.emit(Notes::default());
            } else {
                // Notices may have gone by while frozen: read storage.
                e.core.borrow_mut().outbox.stored_elsewhere();
                e.kick_writer();
                e.resume_lead();
            }
        });
        *self.page_events.borrow_mut() = Some(listening);
    }

    fn lock_name(&self) -> String {
        format!(
            "logsync-lead:{}:{}:{}",
            self.opts.db_name,
            self.opts.stream.as_str(),
            self.opts.url
        )
    }

    /// Asks for the lock (`steal`: take it from a silent leader).
    pub fn seek_lead(self: &Rc<Self>, steal: bool) {
        let lock = LeadLock::request(
            &self.lock_name(),
            steal,
            &self.me,
            Self::granted,
            Self::lost,
        );
        // A request replaced here was granted and lost already, or is
        // given up (its release aborts it).
        let old = self.lead.borrow_mut().replace(lock);
        drop(old);
    }

    /// The lock is this tab's: take a new leadership id and connect. The
    /// id is the time the lock was granted (ms), and above every id this
    /// tab has heard: a leader that takes over a silent one does so at
    /// least the leader timeout later on the same clock, and one that
    /// follows a closed one heard it.
    fn granted(self: &Rc<Self>) {
        {
            let mut c = self.core.borrow_mut();
            if c.closed || c.net.paused || self.lead.borrow().is_none() {
                return;
            }
            let id = c.watch.lead(js_sys::Date::now());
            c.role = Role::Leader(id);
            c.outbox.set_follower(false);
            c.posted_online = None;
        }
        self.connect_now();
        self.post_status();
        self.kick_writer();
    }

    /// Another tab stole the lock (this one was silent too long): drop the
    /// connection and follow; ask for the lock again, to lead later.
    fn lost(self: &Rc<Self>) {
        let notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            if c.closed || !matches!(c.role, Role::Leader(_)) {
                return;
            }
            self.follow(&mut c);
        }
        self.lead.borrow_mut().take();
        self.seek_lead(false);
        self.kick_writer();
        self.emit(notes);
    }

    /// Leaves the lead (or never had it): no connection, follow storage.
    fn follow(self: &Rc<Self>, c: &mut crate::engine::Core<R>) {
        c.net.shutdown_socket();
        c.client.disconnected();
        c.role = Role::Follower;
        c.watch.lost(js_sys::Date::now());
        c.outbox.set_follower(true);
        c.outbox.disconnected();
    }

    /// The tab stops leading and asking (paused, closing, frozen): the
    /// lock goes to the next tab; the followers hear that this leader is
    /// offline.
    pub fn give_up_lead(self: &Rc<Self>) {
        let was = {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            let was = c.role;
            if was == Role::Alone {
                return;
            }
            self.follow(&mut c);
            was
        };
        if let Role::Leader(id) = was {
            self.post(&JsValue::from_f64(encode_status(id, false)));
        }
        self.lead.borrow_mut().take();
        self.kick_writer();
    }

    /// The server refused this leader's token (or what it allows): the
    /// connection goes to another tab, whose token may be good (the
    /// first tab waits for `setToken()` or `reconnect()`, as any store
    /// with a refused token does).
    pub fn hand_over_if_refused(self: &Rc<Self>) {
        let refused = self
            .core
            .try_borrow()
            .is_ok_and(|c| c.net.needs_token && matches!(c.role, Role::Leader(_)));
        if refused {
            self.give_up_lead();
        }
    }

    /// `reconnect()` on a tab that can elect: ask for the lock.
    pub fn resume_lead(self: &Rc<Self>) {
        let ask = {
            let c = self.core.borrow();
            !c.closed
                && !c.net.paused
                && !c.net.needs_token
                && c.role == Role::Follower
                && self.lead.borrow().is_none()
        };
        if ask {
            self.seek_lead(false);
        }
    }

    /// A follower's timer: ping a leader not heard for a while; take the
    /// lock from one silent for the leader timeout.
    fn check_leader(self: &Rc<Self>) {
        let tick = {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            if c.closed || c.role != Role::Follower || self.lead.borrow().is_none() {
                return;
            }
            c.watch
                .tick(js_sys::Date::now(), self.opts.leader_timeout_ms)
        };
        match tick {
            Tick::TakeOver => {
                self.lead.borrow_mut().take();
                self.seek_lead(true);
                self.emit(Notes::default());
            }
            Tick::Ping => self.post(&JsValue::from_str("ping")),
            Tick::Wait => {}
        }
    }

    /// A leader tells the followers its id and whether it is online (on a
    /// change, and in answer to a ping).
    pub fn post_status(&self) {
        let msg = {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            let Role::Leader(id) = c.role else { return };
            let online = c.client.phase() == sync_core::Phase::Ready;
            c.posted_online = Some(online);
            JsValue::from_f64(encode_status(id, online))
        };
        self.post(&msg);
    }

    /// Whether a test froze this leader (feature `test-hooks`).
    fn silenced(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        {
            crate::testing::leader_silenced(&self.opts.db_name)
        }
        #[cfg(not(feature = "test-hooks"))]
        {
            false
        }
    }

    /// Posts on the tabs' channel.
    pub fn post(&self, msg: &JsValue) {
        if let Some(t) = self.tabs.borrow().as_ref() {
            t.post(msg);
        }
    }

    /// A message of another tab on the channel.
    pub fn heard(self: &Rc<Self>, msg: JsValue) {
        let mut notes = Notes::default();
        let mut answer = false;
        {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            if c.closed {
                return;
            }
            if let Some(s) = msg.as_string() {
                match s.as_str() {
                    "stored" => c.outbox.stored_elsewhere(),
                    "ping" => answer = matches!(c.role, Role::Leader(_)) && !self.silenced(),
                    // "outbox", and what older builds post.
                    _ => c.outbox.written_elsewhere(),
                }
            } else if let Some(n) = msg.as_f64() {
                // A leader's status (`sync_core::lead::encode_status`).
                if c.role == Role::Follower {
                    let (id, online) = decode_status(n);
                    c.watch.heard(id, online, js_sys::Date::now());
                }
            } else if let Some(a) = msg.dyn_ref::<js_sys::Array>() {
                if a.length() == 4 && c.role == Role::Follower {
                    // The leader heard the server refuse an intent.
                    let seq = a.get(1).as_f64().and_then(|n| Seq::new(n as u64).ok());
                    let code = ErrorCode::parse(&a.get(2).as_string().unwrap_or_default());
                    let message = a.get(3).as_string().unwrap_or_default();
                    if let Some(seq) = seq {
                        for e in c.client.rejected_elsewhere(seq, code, message) {
                            c.carry_out(e, &mut notes);
                        }
                    }
                }
            }
        }
        if answer {
            self.post_status();
        }
        self.kick_writer();
        self.emit(notes);
    }

    /// A leader tells the followers what the server refused (a hint: their
    /// reads of storage drop the intent either way, without the reason).
    pub fn post_rejections(&self, notes: &Notes) {
        let leads = self
            .core
            .try_borrow()
            .is_ok_and(|c| matches!(c.role, Role::Leader(_)));
        if !leads {
            return;
        }
        for r in &notes.rejections {
            let msg = js_sys::Array::of4(
                &"r".into(),
                &JsValue::from_f64(r.seq.get() as f64),
                &r.code.as_str().into(),
                &r.message.as_str().into(),
            );
            self.post(&msg.into());
        }
    }

    /// A leader whose status changed tells the followers.
    pub fn post_status_if_changed(&self) {
        let changed = self.core.try_borrow().is_ok_and(|c| match c.role {
            Role::Leader(_) => c.posted_online != Some(c.client.phase() == sync_core::Phase::Ready),
            _ => false,
        });
        if changed {
            self.post_status();
        }
    }

    /// Hears the other tabs on this store's storage (`TabChannel`):
    /// their notices queue a read of the outbox, so their intents show
    /// here at once, online or offline. Without `BroadcastChannel` a tab
    /// sees them at its next read (a write of its own, a connection).
    pub fn listen_to_tabs(self: &Rc<Self>) {
        let name = format!(
            "logsync-outbox:{}:{}",
            self.opts.db_name,
            self.opts.stream.as_str()
        );
        let weak = self.me.clone();
        *self.tabs.borrow_mut() = TabChannel::open(&name, move |data| {
            let weak = weak.clone();
            crate::socket::defer(Box::new(move || {
                if let Some(e) = weak.upgrade() {
                    e.heard(data);
                }
            }));
        });
    }

    /// Tells the other tabs that this tab wrote its outbox.
    pub fn tell_tabs(&self) {
        if let Some(t) = self.tabs.borrow().as_ref() {
            t.post(&JsValue::from_str("outbox"));
        }
    }

    /// A leader tells the followers it stored events.
    pub fn tell_followers(&self) {
        let leads = self
            .core
            .try_borrow()
            .is_ok_and(|c| matches!(c.role, Role::Leader(_)));
        if leads {
            self.post(&JsValue::from_str("stored"));
        }
    }
}
