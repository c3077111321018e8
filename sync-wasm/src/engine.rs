//! The browser store: a [`SyncClient`] driven by IndexedDB and a
//! WebSocket, generic over its reducer. [`Store`] is the Rust API (for a
//! reducer compiled in); the JS `WasmStore` wraps a `Store<JsReducer>`.
//!
//! The order of things, which the Redux contract and the exactly-once
//! promise both rest on:
//! 1. `dispatch` runs the reducer, queues the intent's outbox write and
//!    notifies subscribers, then returns.
//! 2. One writer task carries out the storage queue in order, merging
//!    neighbours into one transaction: seq allocation + outbox write
//!    (strict durability), then the intent may be pushed; confirmed events
//!    + outbox deletions + offset (+ snapshot).
//! 3. Server frames are handled as they come; their effects go to the
//!    socket (in order) and to the storage queue (in order).
//!
//! Calls into JS (reducers, listeners) never happen while this module holds
//! a `RefCell` borrow it would need again: a reducer or listener that calls
//! back into the store gets a clear error instead of a panic.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::Uint8Array;
use sync_core::{
    ClientId, CoreError, Effect, Epoch, ErrorCode, NewIntent, Offset, Outbox, Phase, Replica, Seq,
    StreamName, SyncClient,
};
use wasm_bindgen::prelude::*;

use crate::conn::{Listening, Net, TabChannel};
use crate::error::WasmError;
use crate::lead::{LeadLock, Role};
use crate::listeners::{ListenerId, Listeners, Told};
use crate::reducer::StoreReducer;
use crate::signal::{self, Sender};
use crate::socket::Timer;
use crate::storage::Db;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &Uint8Array) -> Result<JsValue, JsValue>;
}

/// Largest payload a store ever records: what fits alone in a
/// default-sized frame. A dispatch is held to the lower limit of the
/// server it syncs with, [`Store::max_payload_bytes`].
pub const MAX_PAYLOAD_BYTES: usize =
    sync_core::protocol::max_push_payload(sync_core::DEFAULT_MAX_FRAME_BYTES);
/// Default number of confirmed events between two snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u32 = 15_000;
/// Default first reconnect delay (before jitter).
pub const DEFAULT_BACKOFF_MIN_MS: u32 = 500;
/// Default longest reconnect delay.
pub const DEFAULT_BACKOFF_MAX_MS: u32 = 30_000;
/// Default time after which a silent leader tab is taken over.
pub const DEFAULT_LEADER_TIMEOUT_MS: u32 = 3_000;

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The server's WebSocket URL, `ws://host/v1/ws` or `wss://…`.
    pub url: String,
    /// The stream this store follows.
    pub stream: StreamName,
    /// The IndexedDB database (one per app; several streams may share it).
    pub db_name: String,
    /// A token sent in `Hello`, when the server requires one.
    pub token: Option<String>,
    /// Confirmed events between two snapshots of the confirmed state.
    pub snapshot_every: u64,
    /// Whether to connect once opened (false: offline until `reconnect`).
    pub connect: bool,
    /// Ping period; a connection silent for two periods is dropped.
    pub heartbeat_ms: u32,
    /// First reconnect delay (grows x2 per failure, with jitter).
    pub backoff_min_ms: u32,
    /// Longest reconnect delay.
    pub backoff_max_ms: u32,
    /// Who this device's user is (the token's `sub`): the `meta.subject`
    /// its pending intents are folded with until the server's events,
    /// which carry the subject it verified, confirm them.
    pub subject: Option<String>,
    /// Follow the stream (default); false: write-only (push the outbox,
    /// never subscribe; an intent leaves when acknowledged).
    pub replicate: bool,
    /// Share one connection among the tabs of this storage (default):
    /// one tab leads and connects, the others follow it (see `lead.rs`).
    /// False: this tab connects on its own.
    pub share_connection: bool,
    /// A leader not heard for this long is taken over (ms).
    pub leader_timeout_ms: u32,
}

impl StoreOptions {
    /// Options with the defaults for everything but the three names.
    pub fn new(url: impl Into<String>, stream: StreamName, db_name: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            stream,
            db_name: db_name.into(),
            token: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            connect: true,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            backoff_min_ms: DEFAULT_BACKOFF_MIN_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            subject: None,
            replicate: true,
            share_connection: true,
            leader_timeout_ms: DEFAULT_LEADER_TIMEOUT_MS,
        }
    }

    fn check(&self) -> Result<(), WasmError> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(WasmError::InvalidRequest(format!(
                "url must start with ws:// or wss:// (e.g. ws://localhost:8080/v1/ws), got \"{}\"",
                self.url
            )));
        }
        if self.db_name.is_empty() {
            return Err(WasmError::InvalidRequest("dbName must not be empty".into()));
        }
        if self.snapshot_every == 0 || self.heartbeat_ms == 0 || self.leader_timeout_ms == 0 {
            return Err(WasmError::InvalidRequest(
                "snapshotEvery, heartbeatMs and leaderTimeoutMs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// An error as the status shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorInfo {
    /// Stable code.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
}

/// What a store reports about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// This tab's stream is live: connected and subscribed (after
    /// `Welcome`), here or, in a tab that follows, in the leader tab.
    pub online: bool,
    /// This tab holds the connection of its browser's tabs (it leads, or
    /// it connects alone where tabs cannot elect one).
    pub leader: bool,
    /// The confirmed offset.
    pub offset: u64,
    /// The server's head as last heard (at least `offset`).
    pub head: u64,
    /// Intents dispatched in this tab (or found in storage when it
    /// opened) and not yet confirmed, rejected or discarded.
    pub pending: usize,
    /// Of those, the ones whose IndexedDB write is still under way: they
    /// have no seq yet. A change of this count is how the JS layer learns
    /// that an intent got its seq (and, online, was pushed).
    pub writing: usize,
    /// The current problem, if any: why the store cannot sync (a failed
    /// connection, a server error, a refused token) or cannot store (an
    /// IndexedDB failure). Cleared once it is over: by the next `Welcome`
    /// for a connection problem, by the next successful write for a
    /// storage one. Every error, past ones too, goes to the error listeners.
    pub last_error: Option<ErrorInfo>,
    /// This browser profile's client id.
    pub client_id: ClientId,
    /// The server refused the token (`UNAUTHORIZED`) or what it allows
    /// (`FORBIDDEN`); the store does not reconnect until `set_token` (or
    /// `reconnect`). Dispatches are kept meanwhile.
    pub needs_token: bool,
    /// This app is older than the data: the store met something made
    /// under a newer schema version (`SCHEMA_TOO_NEW`: it stopped syncing
    /// and does not reconnect; the outbox is kept), or the server refused
    /// an intent as made under a version it no longer takes
    /// (`SCHEMA_TOO_OLD`). Only a reload with newer code helps.
    pub outdated: bool,
}

/// An intent the server refused; it was rolled back.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Its seq.
    pub seq: Seq,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

/// What kind of current problem an error is (see [`Status::last_error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The store cannot sync; over when a connection is welcomed.
    Connection,
    /// The store cannot store; over when a write succeeds.
    Storage,
    /// This store's fold differed from the server's (`DIVERGED`); over
    /// when a later comparison agrees.
    Diverged,
    /// The app is older than the data ([`Status::outdated`]); never over.
    Outdated,
}

/// An intent of this tab that waits for the server.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingAction {
    /// Its seq, `None` for the moment its outbox write takes.
    pub seq: Option<Seq>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its time-to-live ran out: it is left out of the state and waits
    /// for the server to record its withdrawal (`EXPIRED`).
    pub expired: bool,
}

/// What a step produced for listeners; delivered once no borrow is held.
#[derive(Default)]
pub(crate) struct Notes {
    pub state: bool,
    pub errors: Vec<WasmError>,
    pub rejections: Vec<Rejection>,
}

/// Everything mutable about a store.
pub(crate) struct Core<R: StoreReducer> {
    pub client: SyncClient<R>,
    pub closed: bool,
    /// The storage queue (its rules live in sync-core; writer.rs runs it).
    pub outbox: Outbox<R::State>,
    pub writer_busy: bool,
    pub write_failures: u32,
    pub write_retry: Option<Timer>,
    pub net: Net,
    /// The current problem (see [`Status::last_error`]).
    pub problem: Option<(Problem, ErrorInfo)>,
    pub synced_waiters: Vec<Sender<Result<(), WasmError>>>,
    pub idle_waiters: Vec<Sender<()>>,
    /// See [`Status::outdated`].
    pub outdated: bool,
    /// The offset of a stored snapshot of an older schema version that
    /// was not used (see `Store::open`): the next events write drops it.
    pub dropped_snapshot: Option<u64>,
    /// Who holds the connection (see `lead.rs`).
    pub role: Role,
    /// This follower's watch of the leader (`sync_core::lead`).
    pub watch: sync_core::lead::LeaderWatch,
    /// What this leader last told the followers about being online.
    pub posted_online: Option<bool>,
}

impl<R: StoreReducer> Core<R> {
    /// Reports an error to the error listeners (history only: it is not a
    /// current problem).
    pub fn error(&mut self, e: WasmError, notes: &mut Notes) {
        notes.errors.push(e);
    }

    /// Reports an error that is a current problem of `kind` until it is
    /// over (see [`Status::last_error`]).
    pub fn problem(&mut self, kind: Problem, e: WasmError, notes: &mut Notes) {
        self.problem = Some((
            kind,
            ErrorInfo {
                code: e.code(),
                message: e.to_string(),
            },
        ));
        notes.errors.push(e);
    }

    /// The app is older than the data (`SCHEMA_TOO_NEW`): reported, and
    /// the store stops syncing.
    pub fn outdated_by(&mut self, e: WasmError, notes: &mut Notes) {
        self.outdated = true;
        self.net.outdated = true;
        self.problem(Problem::Outdated, e, notes);
    }

    /// A problem of `kind` is over.
    pub fn clear_problem(&mut self, kind: Problem) {
        if self.problem.as_ref().is_some_and(|(k, _)| *k == kind) {
            self.problem = None;
        }
    }

    fn compute_status(&self) -> Status {
        let r = self.client.replica();
        Status {
            online: match self.role {
                Role::Follower => self.watch.online() && !self.net.paused,
                _ => self.client.phase() == Phase::Ready,
            },
            leader: self.role != Role::Follower,
            offset: r.offset().0,
            head: self.client.head().0,
            pending: r.own_pending_count(),
            writing: r.writing_count(),
            last_error: self.problem.as_ref().map(|(_, e)| e.clone()),
            client_id: r.client_id(),
            needs_token: self.net.needs_token,
            outdated: self.outdated,
        }
    }

    /// Another tab holds the connection: this one connects to nothing.
    pub fn follows(&self) -> bool {
        self.role == Role::Follower
    }

    fn idle(&self) -> bool {
        self.outbox.is_empty() && !self.writer_busy
    }

    /// Carries out one effect of the protocol driver: storage effects
    /// become jobs of the storage queue, the others are done here.
    pub fn apply(&mut self, effect: Effect, notes: &mut Notes) {
        if let Some(effect) = self.outbox.effect(effect, &self.client) {
            self.carry_out(effect, notes);
        }
    }

    /// Carries out an effect that is not a storage job (as
    /// [`Outbox::effect`] and [`Outbox::finish`] hand them out).
    pub fn carry_out(&mut self, effect: Effect, notes: &mut Notes) {
        match effect {
            Effect::Send(msg) => self.net.send(&msg),
            Effect::StateChanged => notes.state = true,
            Effect::Rejected {
                seq,
                payload,
                code,
                message,
            } => {
                // An answer about one intent, not a problem of the store:
                // the rejection listeners hear of it; one that only a
                // client bug causes is reported as an error too.
                if code == ErrorCode::SchemaTooOld {
                    self.outdated = true;
                    self.problem = Some((
                        Problem::Outdated,
                        ErrorInfo {
                            code,
                            message: message.clone(),
                        },
                    ));
                }
                if sync_core::client::rejection_is_client_error(code) {
                    self.error(
                        WasmError::Server {
                            code,
                            message: message.clone(),
                        },
                        notes,
                    );
                }
                notes.rejections.push(Rejection {
                    seq,
                    payload,
                    code,
                    message,
                });
            }
            Effect::ReducerErrors(list) => {
                for (offset, message) in list {
                    let e = sync_core::CoreError::Reducer {
                        message: format!(
                            "event at offset {offset} left the state unchanged: {message}"
                        ),
                    };
                    self.error(e.into(), notes);
                }
            }
            Effect::EpochReset { previous, epoch } => {
                // (The storage queue has queued the reset.)
                let message = format!(
                    "the server's log has epoch {epoch}, this store followed {previous}: the confirmed history was dropped and pending intents are sent again"
                );
                self.error(
                    WasmError::Server {
                        code: ErrorCode::EpochChanged,
                        message,
                    },
                    notes,
                );
            }
            // Storage effects are jobs of the storage queue already.
            Effect::PersistEvents { .. }
            | Effect::AdoptedSnapshot { .. }
            | Effect::DropFromOutbox(_)
            | Effect::MarkDiscarded(_)
            | Effect::StoreEpoch(_)
            | Effect::ReloadOutbox { .. }
            | Effect::HeadChanged(_) => {}
            Effect::Diverged { offset, .. } => {
                // Short: every byte of text is in the module.
                let message = format!(
                    "the state at offset {offset} differs from the server's, which replaces it"
                );
                self.problem(
                    Problem::Diverged,
                    WasmError::Server {
                        code: ErrorCode::Diverged,
                        message,
                    },
                    notes,
                );
            }
            Effect::Agreed { .. } => self.clear_problem(Problem::Diverged),
            Effect::Outdated { message } => {
                // The client has let the connection go; so does the
                // socket, for good: no reconnects until a reload.
                self.net.shutdown_socket();
                self.net.outdated = true;
                self.outdated_by(
                    WasmError::Server {
                        code: ErrorCode::SchemaTooNew,
                        message,
                    },
                    notes,
                );
            }
            Effect::ServerError { code, message } => {
                // A token replaced since this connection's Hello (refreshed
                // before it expired) is worth a normal reconnect.
                if matches!(code, ErrorCode::Unauthorized | ErrorCode::Forbidden)
                    && self.net.token == self.net.sent_token
                {
                    self.net.needs_token = true;
                }
                self.problem(
                    Problem::Connection,
                    WasmError::Server { code, message },
                    notes,
                )
            }
        }
    }
}

/// The store's shared parts.
pub(crate) struct Engine<R: StoreReducer> {
    pub opts: StoreOptions,
    pub db: Db,
    pub core: RefCell<Core<R>>,
    pub listeners: RefCell<Listeners>,
    pub me: Weak<Engine<R>>,
    pub browser_events: RefCell<Option<Listening>>,
    /// The other tabs on the same storage (`BroadcastChannel`).
    pub tabs: RefCell<Option<TabChannel>>,
    /// This tab's request for (or hold of) the connection's lock.
    pub lead: RefCell<Option<LeadLock>>,
    /// The page lifecycle listeners of a tab that can lead.
    pub page_events: RefCell<Option<Listening>>,
    /// The page's connection to the server shared with every tab, for a
    /// store that can elect (hub.rs).
    pub hub: RefCell<Option<Rc<crate::hub::Hub>>>,
    /// The status as last told to listeners, and its version.
    pub published: RefCell<(Status, u64)>,
}

fn busy() -> WasmError {
    WasmError::InvalidRequest(
        "the store is busy running the reducer: a reducer may not dispatch, read the state or subscribe".into(),
    )
}

impl<R: StoreReducer> Engine<R> {
    /// Tells the listeners of `what`'s kind.
    fn tell(&self, what: &Told) {
        let ls = self.listeners.borrow().snapshot(what);
        for f in ls {
            f(what);
        }
    }

    /// Tells listeners what happened, then refreshes the status and
    /// completes `synced()` / `close()` waiters whose condition holds.
    pub fn emit(&self, notes: Notes) {
        self.post_rejections(&notes);
        if notes.state {
            self.tell(&Told::State);
        }
        for r in &notes.rejections {
            self.tell(&Told::Rejected(r));
        }
        for e in &notes.errors {
            self.tell(&Told::Error(e));
        }
        let (changed, synced, idle) = {
            let Ok(mut c) = self.core.try_borrow_mut() else {
                return;
            };
            self.arm_expiry(&mut c);
            let s = c.compute_status();
            let changed = {
                let mut p = self.published.borrow_mut();
                let changed = s != p.0;
                if changed {
                    *p = (s, p.1 + 1);
                }
                changed
            };
            let idle = c.idle();
            let synced = if idle && c.client.replica().pending().is_empty() {
                std::mem::take(&mut c.synced_waiters)
            } else {
                Vec::new()
            };
            let idle = if idle {
                std::mem::take(&mut c.idle_waiters)
            } else {
                Vec::new()
            };
            (changed, synced, idle)
        };
        if changed {
            self.post_status_if_changed();
            let offset = self.published.borrow().0.offset;
            self.tell(&Told::Status(offset));
        }
        for w in synced {
            w.send(Ok(()));
        }
        for w in idle {
            w.send(());
        }
    }
}

impl<R: StoreReducer> Engine<R> {
    /// Marks the store closed and stops the network; returns what to wait
    /// for (the storage queue) before the database may close.
    fn begin_close(self: &Rc<Self>) -> Result<Option<signal::Receiver<()>>, WasmError> {
        let (wait, retry) = {
            let mut c = self.core.try_borrow_mut().map_err(|_| busy())?;
            if !c.closed {
                c.closed = true;
                c.client.disconnected();
                c.net.shutdown();
            }
            // A write waiting to be retried gets one last attempt now.
            let retry = c.write_retry.take();
            let wait = (!c.idle()).then(|| {
                let (tx, rx) = signal::channel();
                c.idle_waiters.push(tx);
                rx
            });
            (wait, retry)
        };
        if retry.is_some() {
            drop(retry);
            self.restart_writer();
        }
        self.give_up_lead();
        self.stop_listening_to_browser();
        Ok(wait)
    }

    /// Closes the database and fails what can no longer complete.
    fn finish_close(&self) {
        let waiters = std::mem::take(&mut self.core.borrow_mut().synced_waiters);
        self.db.close();
        for w in waiters {
            w.send(Err(WasmError::Closed));
        }
        self.emit(Notes::default());
        // Listeners may hold JS functions that hold the store: let go.
        self.listeners.borrow_mut().clear();
    }
}

/// This device's clock, ms since the Unix epoch (a pending intent's
/// `meta.time`).
fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// A dispatch its caller already folded (see [`Store::dispatch_folded`]):
/// the meta it folded it with was pending, with `seen` and `time_ms`.
pub struct Folded<R: StoreReducer> {
    /// The payload.
    pub payload: Vec<u8>,
    /// The decoded payload.
    pub action: R::Action,
    /// The state after it.
    pub state: R::State,
    /// The confirmed offset the caller folded it with (`meta.seen`).
    pub seen: Offset,
    /// Whether the caller's fold read the meta.
    pub read_meta: bool,
    /// The time the caller folded it with (`meta.time`).
    pub time_ms: u64,
    /// When it stops being worth sending (0: never), see
    /// [`Replica::set_expiry`].
    pub expires_ms: u64,
}

/// A browser store over reducer `R`. Cloning gives another handle to the
/// same store.
pub struct Store<R: StoreReducer> {
    engine: Rc<Engine<R>>,
}

impl<R: StoreReducer> Clone for Store<R> {
    fn clone(&self) -> Self {
        Store {
            engine: self.engine.clone(),
        }
    }
}

/// 16 bytes from the browser's cryptographic random source.
fn random16() -> Result<[u8; 16], WasmError> {
    let buf = js_sys::Uint8Array::new_with_length(16);
    get_random_values(&buf).map_err(|e| {
        WasmError::Internal(format!(
            "crypto.getRandomValues failed: {}",
            crate::error::describe_js(&e)
        ))
    })?;
    let mut out = [0u8; 16];
    buf.copy_to(&mut out);
    Ok(out)
}

impl<R: StoreReducer> Store<R> {
    /// Opens the store from IndexedDB alone (snapshot, the events after it,
    /// the outbox), then connects in the background unless
    /// `opts.connect` is false.
    ///
    /// Records that cannot be read are reported (in `status().last_error`
    /// and, right after this returns, to the error listeners); the store
    /// opens with what can be trusted and the server sends the rest again.
    pub async fn open(
        opts: StoreOptions,
        reducer: R,
        initial: R::State,
    ) -> Result<Self, WasmError> {
        opts.check()?;
        let (db, client_id, mut problems, mut loaded) =
            Db::open_stream(&opts.db_name, random16()?, opts.stream.as_str()).await?;
        problems.append(&mut loaded.problems);
        let mut record = loaded.record;
        // A snapshot made under an older schema version is migrated; one
        // the reducer does not migrate is dropped, and so is one made
        // under a newer version (a newer app wrote it: this one stops).
        let mut outdated = None;
        let mut dropped = None;
        let (confirmed, offset, events) = match loaded.snapshot.map(|(raw, schema)| {
            let what = format!("the stored snapshot at offset {}", record.snapshot_offset);
            reducer.state_from_js(raw).and_then(|s| {
                sync_core::replica::upgrade_state(&reducer, s, schema, &what)
                    .map_err(WasmError::from)
            })
        }) {
            Some(Ok(Some(state))) => (state, Offset(record.snapshot_offset), loaded.events),
            Some(Ok(None)) => {
                // Storage holds no events under a snapshot (they are
                // deleted when it is stored): the state is rebuilt from
                // offset 0 with the server's events. The first write of
                // them drops the snapshot and the events after it
                // (`EventsWrite::drop_snapshot`); the outbox, the epoch
                // and the seqs stay.
                dropped = Some(record.snapshot_offset);
                record.snapshot_offset = 0;
                (initial.clone(), Offset::ZERO, Vec::new())
            }
            Some(Err(e)) => {
                // The events stored start after the snapshot: useless
                // without it. Start over; the server sends the history.
                if e.code() == ErrorCode::SchemaTooNew {
                    outdated = Some(e);
                } else {
                    problems.push(e);
                }
                (initial.clone(), Offset::ZERO, Vec::new())
            }
            None => (initial.clone(), Offset::ZERO, loaded.events),
        };
        let next_seq = Seq::new(record.next_seq).map_err(WasmError::from)?;
        let mut replica = Replica::restore(
            opts.stream.clone(),
            client_id,
            reducer,
            confirmed,
            offset,
            next_seq,
        );
        replica.set_subject(opts.subject.clone());
        match replica.apply_events(&events) {
            Ok(applied) => {
                for (off, msg) in applied.reducer_errors {
                    problems.push(
                        sync_core::CoreError::Reducer {
                            message: format!(
                                "stored event at offset {off} left the state unchanged: {msg}"
                            ),
                        }
                        .into(),
                    );
                }
            }
            Err(e @ CoreError::SchemaTooNew { .. }) => outdated = Some(e.into()),
            Err(e) => problems.push(e.into()),
        }
        let mut client = SyncClient::new(replica, record.epoch.map(Epoch), initial);
        if !opts.replicate {
            client.write_only();
        }
        for e in loaded.outbox {
            // Offline: adopting only folds the intent into the state. What
            // the tab finds at open counts as its own.
            let _ = client.adopt_as(e, true);
        }
        let mut notes = Notes::default();
        let net = Net::new(
            opts.backoff_min_ms,
            opts.backoff_max_ms,
            !opts.connect,
            opts.token.clone(),
        );
        let mut core = Core {
            client,
            closed: false,
            outbox: Outbox::new(offset, opts.snapshot_every, record.generation),
            writer_busy: false,
            write_failures: 0,
            write_retry: None,
            net,
            problem: None,
            synced_waiters: Vec::new(),
            idle_waiters: Vec::new(),
            outdated: false,
            dropped_snapshot: dropped,
            role: Role::Alone,
            watch: sync_core::lead::LeaderWatch::default(),
            posted_online: None,
        };
        for p in problems {
            // Unreadable records: a storage problem until a write succeeds.
            core.problem(Problem::Storage, p, &mut notes);
        }
        if let Some(e) = outdated {
            core.outdated_by(e, &mut notes);
        }
        let published = RefCell::new((core.compute_status(), 0));
        let engine = Rc::new_cyclic(|me| Engine {
            opts,
            db,
            core: RefCell::new(core),
            listeners: RefCell::new(Listeners::default()),
            me: me.clone(),
            browser_events: RefCell::new(None),
            tabs: RefCell::new(None),
            lead: RefCell::new(None),
            page_events: RefCell::new(None),
            hub: RefCell::new(None),
            published,
        });
        engine.listen_to_browser();
        engine.listen_to_tabs();
        // The tab before this one may have died between a write and its
        // notice: the others read storage (sync_core::outbox's rules).
        engine.tell_tabs();
        engine.start_role();
        if !notes.errors.is_empty() {
            // Give the caller the chance to add error listeners first.
            let weak = Rc::downgrade(&engine);
            let pending = RefCell::new(Some(notes));
            let timer = Timer::new(0, false, move || {
                if let (Some(e), Some(n)) = (weak.upgrade(), pending.borrow_mut().take()) {
                    e.emit(n);
                }
            });
            engine.core.borrow_mut().net.startup_timer = Some(timer);
        }
        Ok(Store { engine })
    }

    /// The largest payload a dispatch takes now: what the server of the
    /// last `Welcome` accepts (before any, what a default server accepts).
    pub fn max_payload_bytes(&self) -> Result<usize, WasmError> {
        let c = self.engine.core.try_borrow().map_err(|_| busy())?;
        Ok(c.client.max_payload_bytes())
    }

    /// The optimistic state (confirmed state with pending intents on top).
    pub fn with_state<T>(&self, f: impl FnOnce(&R::State) -> T) -> Result<T, WasmError> {
        let c = self.engine.core.try_borrow().map_err(|_| busy())?;
        Ok(f(c.client.replica().state()))
    }

    /// Applies `payload` at once (reducer, then subscribers), and queues it
    /// to be written to the outbox and pushed. On a reducer failure the
    /// state is unchanged and nothing is queued.
    pub fn dispatch(&self, payload: Vec<u8>) -> Result<(), WasmError> {
        self.dispatch_with(payload, None)
    }

    /// [`Store::dispatch`] with the payload already decoded by the caller
    /// (it must be what the reducer's `decode` gives for `payload`).
    pub fn dispatch_decoded(&self, payload: Vec<u8>, action: R::Action) -> Result<(), WasmError> {
        self.dispatch_with(payload, Some(action))
    }

    fn dispatch_with(&self, payload: Vec<u8>, action: Option<R::Action>) -> Result<(), WasmError> {
        {
            let mut c = self.engine.core.try_borrow_mut().map_err(|_| busy())?;
            if c.closed {
                return Err(WasmError::Closed);
            }
            let limit = c.client.max_payload_bytes();
            if payload.len() > limit {
                // Refused before it is applied or takes a seq: the server
                // would refuse it after the optimistic apply.
                return Err(WasmError::PayloadTooLarge {
                    len: payload.len(),
                    limit,
                });
            }
            let replica = c.client.replica_mut();
            let (seen, time_ms) = (replica.offset(), now_ms());
            let local = match action {
                Some(action) => replica.dispatch_decoded(payload.clone(), action, time_ms)?,
                None => replica.dispatch_unassigned(payload.clone(), time_ms)?,
            };
            let schema = replica.reducer().schema_version();
            c.outbox.dispatched(
                local,
                NewIntent {
                    payload,
                    seen,
                    time_ms,
                    schema,
                    expires_ms: 0,
                },
            );
        }
        self.engine.kick_writer();
        self.engine.emit(Notes {
            state: true,
            ..Notes::default()
        });
        Ok(())
    }

    /// Records a burst of intents the caller has already folded and told
    /// its subscribers about (the JS store runs the reducer itself and
    /// hands its dispatches over once per microtask). `based_on` says
    /// whether the replica's state is still the one the caller folded the
    /// first of them onto: then each intent's state is taken as it is and
    /// subscribers are not told again; otherwise (the state moved under
    /// the burst) they are folded here onto the current state and
    /// subscribers are notified. Returns whether that refold happened.
    ///
    /// Every intent is kept, also one the reducer now refuses: its
    /// dispatch has already returned. Payloads are to be within
    /// [`Store::max_payload_bytes`] (the caller checks); one over it but
    /// within [`MAX_PAYLOAD_BYTES`] is recorded and then withdrawn, so the
    /// server rejects it (`PAYLOAD_TOO_LARGE`); one over
    /// [`MAX_PAYLOAD_BYTES`] refuses the whole burst before anything is
    /// recorded.
    pub fn dispatch_folded(
        &self,
        items: Vec<Folded<R>>,
        based_on: impl FnOnce(&R::State) -> bool,
    ) -> Result<bool, WasmError> {
        if let Some(len) = items
            .iter()
            .map(|f| f.payload.len())
            .find(|&len| len > MAX_PAYLOAD_BYTES)
        {
            return Err(WasmError::PayloadTooLarge {
                len,
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        let refold = {
            let mut c = self.engine.core.try_borrow_mut().map_err(|_| busy())?;
            if c.closed {
                return Err(WasmError::Closed);
            }
            let Core { client, outbox, .. } = &mut *c;
            let replica = client.replica_mut();
            let refold = !based_on(replica.state());
            let schema = replica.reducer().schema_version();
            for f in items {
                let next = (!refold).then_some((f.state, f.read_meta));
                let local =
                    replica.dispatch_folded(f.payload.clone(), f.action, next, f.seen, f.time_ms);
                if f.expires_ms != 0 {
                    replica.set_expiry(local, f.expires_ms);
                }
                outbox.dispatched(
                    local,
                    NewIntent {
                        payload: f.payload,
                        seen: f.seen,
                        time_ms: f.time_ms,
                        schema,
                        expires_ms: f.expires_ms,
                    },
                );
            }
            refold
        };
        self.engine.kick_writer();
        self.engine.emit(Notes {
            state: refold,
            ..Notes::default()
        });
        Ok(refold)
    }

    /// This tab's intents that wait for the server (dispatched here, or
    /// found in storage when the store opened), in the order they are
    /// folded; discarded ones are left out, expired ones are listed until
    /// the server's refusal comes (so an app's view of their fates does
    /// not take them for confirmed).
    pub fn pending(&self) -> Result<Vec<PendingAction>, WasmError> {
        let c = self.engine.core.try_borrow().map_err(|_| busy())?;
        Ok(c.client
            .replica()
            .pending()
            .iter()
            .filter(|p| p.own && !p.discarded)
            .map(|p| PendingAction {
                seq: p.seq,
                payload: p.payload.clone(),
                expired: p.expired,
            })
            .collect())
    }

    /// Discards the pending intent `seq`: it leaves the state at once and
    /// is withdrawn instead of sent, so the server decides it as rejected
    /// and it can never be applied — unless the server took it already,
    /// in which case its event arrives like any other (see
    /// [`sync_core::SyncClient::discard`]).
    pub fn discard(&self, seq: u64) -> Result<(), WasmError> {
        let seq = Seq::new(seq).map_err(WasmError::from)?;
        let mut notes = Notes::default();
        {
            let mut c = self.engine.core.try_borrow_mut().map_err(|_| busy())?;
            if c.closed {
                return Err(WasmError::Closed);
            }
            let effects = c.client.discard(seq)?;
            for e in effects {
                c.apply(e, &mut notes);
            }
        }
        self.engine.kick_writer();
        self.engine.emit(notes);
        Ok(())
    }

    /// Swaps the reducer: the confirmed state stays, pending intents are
    /// re-applied with the new one, and subscribers are notified.
    pub fn replace_reducer(&self, reducer: R) -> Result<(), WasmError> {
        {
            let mut c = self.engine.core.try_borrow_mut().map_err(|_| busy())?;
            c.client.replica_mut().replace_reducer(reducer);
        }
        self.engine.emit(Notes {
            state: true,
            ..Notes::default()
        });
        Ok(())
    }

    /// Calls `f` after every state change (dispatch, remote events,
    /// rebases, rollbacks).
    pub fn subscribe(&self, f: impl Fn() + 'static) -> ListenerId {
        self.add(0, Rc::new(move |_: &Told| f()))
    }

    fn add(&self, kind: u8, f: Rc<dyn Fn(&Told)>) -> ListenerId {
        self.engine.listeners.borrow_mut().add(kind, f)
    }

    /// Calls `f` after every status change, with the confirmed offset
    /// (what a dispatch's `meta.seen` says, without building the status).
    pub fn on_status(&self, f: impl Fn(u64) + 'static) -> ListenerId {
        self.add(
            1,
            Rc::new(move |t: &Told| {
                if let Told::Status(offset) = t {
                    f(*offset);
                }
            }),
        )
    }

    /// Calls `f` with every error (storage, server, malformed frames,
    /// reducer failures on events, epoch changes).
    pub fn on_error(&self, f: impl Fn(&WasmError) + 'static) -> ListenerId {
        self.add(
            2,
            Rc::new(move |t: &Told| {
                if let Told::Error(e) = t {
                    f(e);
                }
            }),
        )
    }

    /// Calls `f` with every intent the server refused (already rolled back).
    pub fn on_rejected(&self, f: impl Fn(&Rejection) + 'static) -> ListenerId {
        self.add(
            3,
            Rc::new(move |t: &Told| {
                if let Told::Rejected(r) = t {
                    f(r);
                }
            }),
        )
    }

    /// Removes a listener of any kind; removing twice is harmless.
    pub fn remove_listener(&self, id: ListenerId) {
        self.engine.listeners.borrow_mut().remove(id);
    }

    /// A function that removes listener `id` and does not keep the store
    /// alive (for JS `unsubscribe` functions).
    pub fn remover(&self, id: ListenerId) -> impl Fn() + 'static {
        let weak = Rc::downgrade(&self.engine);
        move || {
            if let Some(e) = weak.upgrade() {
                e.listeners.borrow_mut().remove(id);
            }
        }
    }

    /// The status, and a number that changes whenever it does.
    pub fn status(&self) -> (Status, u64) {
        self.engine.published.borrow().clone()
    }

    /// Resolves when no intent is pending and the storage queue is empty;
    /// fails with `STORE_CLOSED` if the store closes first.
    pub async fn synced(&self) -> Result<(), WasmError> {
        let rx = {
            let mut c = self.engine.core.try_borrow_mut().map_err(|_| busy())?;
            if c.closed {
                return Err(WasmError::Closed);
            }
            if c.idle() && c.client.replica().pending().is_empty() {
                return Ok(());
            }
            let (tx, rx) = signal::channel();
            c.synced_waiters.push(tx);
            rx
        };
        rx.await
    }

    /// Connects now (after `go_offline`, or to skip a backoff wait).
    pub fn reconnect(&self) {
        self.engine.reconnect_now();
    }

    /// Drops the connection and stays offline until `reconnect`.
    pub fn go_offline(&self) {
        self.engine.go_offline();
    }

    /// Uses `token` from the next connection on; after the server refused
    /// the previous one, connects now.
    pub fn set_token(&self, token: Option<String>) {
        self.engine.set_token(token);
    }

    /// Closes the store: disconnects, finishes the storage queue, closes
    /// the database, fails pending `synced()` calls with `STORE_CLOSED`.
    /// Calling it again waits for the same end.
    pub async fn close(&self) -> Result<(), WasmError> {
        if let Some(rx) = self.engine.begin_close()? {
            rx.await;
        }
        self.engine.finish_close();
        Ok(())
    }
}
