//! The client's protocol driver: a [`Replica`] plus the connection state
//! machine, blind to transport and storage. Messages in, [`Effect`]s out —
//! the browser adapter (or a test, or a native client) carries them out:
//! sends frames, writes storage, notifies listeners.
//!
//! One connection goes through: `connected()` → send `Hello` → receive
//! `Welcome` (epoch check) → send `Subscribe { after: offset }` and push the
//! outbox in seq order → receive `Events`/`Ack`/`Reject`/`Gap` → …
//! → `disconnected()`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::error::{CoreError, ErrorCode};

use crate::protocol::{
    max_push_payload, welcome_frame_limit, ClientMsg, PushIntent, ServerMsg,
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PAYLOAD_BYTES, PROTOCOL_VERSION,
    PUSH_FRAME_OVERHEAD as PUSH_OVERHEAD, PUSH_INTENT_OVERHEAD as PER_INTENT_OVERHEAD,
};
use crate::reducer::Reducer;
use crate::replica::{upgrade_state, Applied, Pending, Replica};
use crate::types::{Epoch, Event, Offset, OutboxEntry, Seq};

/// Where a connection is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// No connection.
    Offline,
    /// `Hello` sent, waiting for `Welcome`.
    Handshake,
    /// `Welcome` said the server's log has another epoch (or is the first
    /// one heard of): waiting for storage to reset (see
    /// [`SyncClient::reset_to`]) or store it ([`SyncClient::epoch_stored`])
    /// before subscribing.
    Resetting,
    /// Subscribed; intents flow.
    Ready,
}

/// Something the adapter must do, in the order given.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Effect {
    /// Send this message.
    Send(ClientMsg),
    /// Persist, in one storage transaction: append `events`, remove the
    /// `confirmed` seqs from the outbox, and move the offset to `offset`.
    PersistEvents {
        /// Events to store.
        events: Vec<Event>,
        /// This client's intents they confirm.
        confirmed: Vec<Seq>,
        /// The new confirmed offset.
        offset: Offset,
    },
    /// Remove `seq` from the outbox (it was rejected).
    DropFromOutbox(Seq),
    /// The replica took the server's snapshot at `offset` as its
    /// confirmed state: store it as the snapshot (the stored events under
    /// it may go), move the offset, and remove the `left` seqs (intents
    /// the snapshot holds) from the outbox.
    AdoptedSnapshot {
        /// The snapshot's offset.
        offset: Offset,
        /// This client's seqs it holds.
        left: Vec<Seq>,
    },
    /// Mark `seq` discarded in the outbox, so that no tab and no later
    /// session pushes it: it is withdrawn instead.
    MarkDiscarded(Seq),
    /// The optimistic state changed; notify subscribers.
    StateChanged,
    /// The server refused an intent; tell the app.
    Rejected {
        /// Its seq.
        seq: Seq,
        /// Its payload.
        payload: Vec<u8>,
        /// Why.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// Events the reducer could not apply (state unchanged by each).
    ReducerErrors(Vec<(Offset, String)>),
    /// The server has another log epoch than the one stored: storage is to
    /// reset to `epoch` (the storage queue's `Work::Reset`), then
    /// [`SyncClient::reset_to`] takes the renumbered outbox and the
    /// connection goes on. The app is told.
    EpochReset {
        /// The previous epoch.
        previous: Epoch,
        /// The server's epoch.
        epoch: Epoch,
    },
    /// Store the server's epoch (first contact), then call
    /// [`SyncClient::epoch_stored`]; nothing is sent before.
    StoreEpoch(Epoch),
    /// The server expects a seq this replica does not hold: reload the outbox
    /// from storage (another tab may have written it) and call
    /// [`SyncClient::adopt`] for each entry, then [`SyncClient::flush`].
    ReloadOutbox {
        /// The seq the server expects.
        expected: Seq,
    },
    /// The server head moved.
    HeadChanged(Offset),
    /// This replica's confirmed fold at `offset` hashes `ours`, the
    /// server's snapshot at the same offset `theirs` (a
    /// [`ServerMsg::Checkpoint`]): the reducer is not deterministic, or
    /// not the server's. Report it (`DIVERGED`); the client has asked for
    /// the server's snapshot and takes it in place of its confirmed state
    /// ([`Effect::AdoptedSnapshot`]), with its pending intents re-applied.
    Diverged {
        /// Where the folds were compared.
        offset: Offset,
        /// This replica's state hash there.
        ours: u64,
        /// The server's.
        theirs: u64,
    },
    /// This replica's confirmed fold at `offset` equals the server's (a
    /// [`ServerMsg::Checkpoint`] matched): a divergence reported before is
    /// over.
    Agreed {
        /// Where the folds were compared.
        offset: Offset,
    },
    /// The server sent a fatal error and will close the connection.
    ServerError {
        /// Why.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// The server sent something made under a newer schema version than
    /// this reducer's (an event or a snapshot of a newer app): nothing of
    /// it was applied, the client is offline and stays so
    /// ([`SyncClient::outdated`]): close the connection, do not connect
    /// again, keep the outbox, and tell the app to reload
    /// (`SCHEMA_TOO_NEW`).
    Outdated {
        /// What was newer, for people.
        message: String,
    },
}

/// Whether a refusal with `code` is also an error of this client, to be
/// reported with the other errors (the JS `onError`) as well as to the
/// rejection listeners: `SEQ_REUSED` means the server holds another intent
/// under the seq, which only a bug in the client's seq keeping (or an
/// outbox replayed against a log it did not come from) produces. The
/// intent is rolled back like any refused one, never dropped quietly.
pub fn rejection_is_client_error(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::SeqReused)
}

/// The reason stored for a seq whose time-to-live ran out.
pub const EXPIRED_MESSAGE: &str =
    "its time-to-live ran out before it could be sent; withdrawn instead of sent late";

/// The reason stored for a seq the app discarded.
pub const DISCARDED_MESSAGE: &str = "discarded by the app before the server took it";

fn discarded_withdraw(stream: crate::types::StreamName, seq: Seq) -> ClientMsg {
    ClientMsg::Withdraw {
        stream,
        seq,
        code: ErrorCode::Rejected,
        message: DISCARDED_MESSAGE.into(),
    }
}

/// A replica and its connection state.
pub struct SyncClient<R: Reducer> {
    replica: Replica<R>,
    epoch: Option<Epoch>,
    phase: Phase,
    /// The highest seq pushed on this connection (0: none).
    sent_through: u64,
    head: Offset,
    max_frame_bytes: usize,
    initial: R::State,
    /// The epoch a [`Phase::Resetting`] connection waits for.
    resetting: Option<Epoch>,
    /// The outbox was read from storage since this connection opened (its
    /// seqs are in storage's current numbering): pushes may go.
    checked: bool,
    /// The parts of a server snapshot received so far on this connection.
    incoming: Option<Incoming>,
    /// The server's latest [`ServerMsg::Checkpoint`] ahead of the
    /// confirmed offset: `(offset, hash)`, compared when the fold gets there.
    checkpoint: Option<(Offset, u64)>,
    /// After a divergence: the snapshot asked for (`Subscribe.resume`),
    /// until one is adopted.
    repair: Option<crate::protocol::SnapshotResume>,
    /// Events of the subscription the repair replaced are still arriving
    /// on this connection: they are not applied (the server answers the
    /// new `Subscribe` with the snapshot first).
    stale_events: bool,
    /// Follows the stream (the default); false: a write-only client
    /// ([`SyncClient::write_only`]).
    replicates: bool,
    /// The server sent something of a newer schema version (see
    /// [`Effect::Outdated`]).
    outdated: bool,
}

/// A server snapshot being received: its offset, hash and length, and the
/// bytes so far.
struct Incoming {
    offset: Offset,
    hash: u64,
    total: u64,
    schema: u32,
    bytes: Vec<u8>,
}

impl<R: Reducer> SyncClient<R> {
    /// Wraps a replica. `epoch` is the stored epoch (None on first start);
    /// `initial` is the state a reset starts from.
    pub fn new(replica: Replica<R>, epoch: Option<Epoch>, initial: R::State) -> Self {
        let head = replica.offset();
        SyncClient {
            replica,
            epoch,
            phase: Phase::Offline,
            sent_through: 0,
            head,
            // Until a `Welcome` says otherwise: what a default server takes.
            max_frame_bytes: welcome_frame_limit(DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PAYLOAD_BYTES)
                as usize,
            initial,
            resetting: None,
            checked: false,
            incoming: None,
            checkpoint: None,
            repair: None,
            stale_events: false,
            replicates: true,
            outdated: false,
        }
    }

    /// Whether the server sent something made under a newer schema version
    /// than this reducer's ([`Effect::Outdated`]): an adapter does not
    /// connect again until the app is reloaded with a newer reducer.
    pub fn outdated(&self) -> bool {
        self.outdated
    }

    /// Withdraws, instead of pushing, every pending intent whose
    /// time-to-live ([`Replica::set_expiry`]) has run out at `now_ms`
    /// (ms since the Unix epoch) and that this connection has not pushed
    /// yet: it leaves the optimistic state at once, and the server decides
    /// its seq as refused (`EXPIRED`), which reaches the app as a
    /// rejection. An intent already pushed is the server's to decide. Call
    /// it before pushes can go (a connection's outbox check) and at
    /// [`Replica::next_expiry`].
    pub fn expire(&mut self, now_ms: u64) -> Vec<Effect> {
        let sent = if self.phase == Phase::Ready {
            self.sent_through
        } else {
            0
        };
        let due: Vec<Seq> = self
            .replica
            .pending()
            .iter()
            .filter(|p| p.expires_ms != 0 && p.expires_ms <= now_ms && !p.withdrawn())
            .filter_map(|p| p.seq)
            .filter(|s| s.get() > sent)
            .collect();
        let mut any = false;
        for seq in due {
            any |= self.replica.mark_expired(seq);
        }
        if any {
            alloc::vec![Effect::StateChanged]
        } else {
            Vec::new()
        }
    }

    /// Makes this a write-only client: it never subscribes (no events come,
    /// the confirmed state stays what it is), it pushes its outbox as any
    /// client does, and an intent leaves the pending list and the outbox
    /// when the server acknowledges it (`Ack`: it is in the log) instead
    /// of when its event is applied. For an app that writes to a stream it
    /// reads through views (or may not read at all).
    pub fn write_only(&mut self) {
        self.replicates = false;
    }

    /// The largest payload this client can push: what the server of the
    /// last `Welcome` accepts (before any, what a default server accepts).
    /// A larger action is to be refused at dispatch.
    pub fn max_payload_bytes(&self) -> usize {
        max_push_payload(self.max_frame_bytes)
    }

    /// The replica.
    pub fn replica(&self) -> &Replica<R> {
        &self.replica
    }

    /// The replica, for dispatching. After [`Replica::assign_seq`] call
    /// [`SyncClient::flush`] to send what became sendable.
    pub fn replica_mut(&mut self) -> &mut Replica<R> {
        &mut self.replica
    }

    /// The connection phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The server's head as last reported (at least the confirmed offset).
    pub fn head(&self) -> Offset {
        self.head.max(self.replica.offset())
    }

    /// The stored epoch.
    pub fn epoch(&self) -> Option<&Epoch> {
        self.epoch.as_ref()
    }

    /// A transport connected: the frame to send first.
    pub fn connected(&mut self, token: Option<String>) -> ClientMsg {
        self.phase = Phase::Handshake;
        self.checked = false;
        self.resetting = None;
        self.sent_through = 0;
        ClientMsg::hello(self.replica.client_id(), token)
    }

    /// The transport closed (or failed).
    pub fn disconnected(&mut self) {
        self.phase = Phase::Offline;
        self.resetting = None;
        self.sent_through = 0;
        self.stale_events = false;
        // A snapshot cut short is kept: the next connection asks the
        // server to go on from where it stopped (`Subscribe.resume`).
    }

    /// Adds an outbox entry read from storage (see [`Replica::adopt`]).
    /// Returns [`Effect::StateChanged`] when it changed the state.
    ///
    /// An intent adopted below what this connection already pushed (another
    /// tab sent it) is pushed again on its own: the server has decided it
    /// and answers with its original result, so this replica learns it too.
    pub fn adopt(&mut self, entry: OutboxEntry) -> Vec<Effect> {
        self.adopt_as(entry, false)
    }

    /// [`SyncClient::adopt`], saying whether the intent counts as this
    /// client's own (`own`: found in storage when it opened, see
    /// [`Replica::own_pending`]) and whether the app discarded it
    /// (the entry's `discarded`: it is withdrawn, never pushed).
    pub fn adopt_as(&mut self, entry: OutboxEntry, own: bool) -> Vec<Effect> {
        let (seq, seen, discarded, schema) = (entry.seq, entry.seen, entry.discarded, entry.schema);
        let sent = self.phase == Phase::Ready && seq.get() <= self.sent_through;
        let resend = sent.then(|| entry.payload.clone());
        let added = self.replica.adopt_as(entry, own);
        let newly_discarded = discarded && self.replica.mark_discarded(seq);
        if !added && !newly_discarded {
            return Vec::new();
        }
        let mut out = alloc::vec![Effect::StateChanged];
        let stream = self.replica.stream().clone();
        if newly_discarded && sent {
            out.push(Effect::Send(discarded_withdraw(stream, seq)));
        } else if let (true, Some(payload)) = (added, resend) {
            out.push(Effect::Send(ClientMsg::Push {
                stream,
                intents: alloc::vec![PushIntent {
                    seq,
                    payload,
                    seen,
                    schema
                }],
            }));
        }
        out
    }

    /// The outbox has been read from storage since the connection opened
    /// (the adapter re-reads it on every connect, see
    /// `Outbox::connected` in the `outbox` module): another tab may have reset
    /// storage's numbering, and nothing is pushed before that is known.
    /// Returns the pushes that can go now.
    pub fn outbox_checked(&mut self) -> Vec<Effect> {
        self.checked = true;
        self.flush()
    }

    /// Another tab stored `epoch` as the first one heard of (a follower
    /// learns it from storage): this client's numbering belongs to it.
    /// Nothing changes when an epoch is known already.
    pub fn epoch_known(&mut self, epoch: Epoch) {
        if self.epoch.is_none() {
            self.epoch = Some(epoch);
        }
    }

    /// Storage holds `epoch` now (after [`Effect::StoreEpoch`]): a
    /// connection waiting for it subscribes and pushes.
    pub fn epoch_stored(&mut self, epoch: Epoch) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.epoch.is_none() {
            self.epoch = Some(epoch.clone());
        }
        if self.phase == Phase::Resetting && self.resetting.as_ref() == Some(&epoch) {
            self.resetting = None;
            self.checked = true;
            self.ready(&mut out);
        } else {
            self.still_resetting(&mut out);
        }
        out
    }

    /// After storage settled on an epoch other than the one a waiting
    /// connection needs (a connection of the new epoch came while the
    /// store or reset of an older one was queued): reset to the new one.
    fn still_resetting(&mut self, out: &mut Vec<Effect>) {
        if let (Phase::Resetting, Some(want), Some(have)) =
            (self.phase, self.resetting.as_ref(), self.epoch.as_ref())
        {
            if want != have {
                out.push(Effect::EpochReset {
                    previous: have.clone(),
                    epoch: want.clone(),
                });
            }
        }
    }

    /// Subscribes from the confirmed offset and pushes the outbox.
    fn ready(&mut self, out: &mut Vec<Effect>) {
        self.phase = Phase::Ready;
        self.sent_through = 0;
        let resume = self
            .incoming
            .as_ref()
            .filter(|i| i.offset > self.replica.offset() && !i.bytes.is_empty())
            .map(|i| crate::protocol::SnapshotResume {
                offset: i.offset,
                hash: i.hash,
                at: i.bytes.len() as u64,
            })
            .or(self.repair);
        self.stale_events = false;
        if self.replicates {
            out.push(Effect::Send(ClientMsg::Subscribe {
                stream: self.replica.stream().clone(),
                after: self.replica.offset(),
                resume,
            }));
        }
        out.extend(self.flush());
    }

    /// Storage has reset to `epoch` and holds `outbox`, renumbered (see
    /// the `outbox` module): the confirmed history is forgotten and the
    /// pending intents are taken from `outbox` ([`Replica::reset_to`]).
    /// A connection waiting for this reset subscribes and pushes; a ready
    /// one (storage was reset by another tab) is left alone: the adapter
    /// connects again (see `Finished::reconnect` in the `outbox` module).
    /// Returns the effects and the seqs whose discard mark must be stored
    /// again.
    pub fn reset_to(&mut self, epoch: Epoch, outbox: Vec<OutboxEntry>) -> (Vec<Effect>, Vec<Seq>) {
        let rediscard = self.replica.reset_to(self.initial.clone(), outbox);
        // A snapshot of the old log is no use in the new one.
        self.incoming = None;
        self.checkpoint = None;
        self.repair = None;
        self.checked = true;
        self.head = Offset::ZERO;
        self.epoch = Some(epoch.clone());
        let mut out = alloc::vec![Effect::StateChanged];
        let waited = self.resetting.as_ref() == Some(&epoch);
        if waited {
            self.resetting = None;
        }
        if self.phase == Phase::Resetting && waited {
            self.ready(&mut out);
        } else {
            self.still_resetting(&mut out);
        }
        (out, rediscard)
    }

    /// The pushes that can go now: pending intents with a seq, after the
    /// last one sent on this connection, contiguous, split to fit frames.
    /// An intent too large for any frame is rejected locally.
    pub fn flush(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.phase != Phase::Ready || !self.checked {
            return out;
        }
        let stream = self.replica.stream().clone();
        let budget = self.max_frame_bytes.saturating_sub(PUSH_OVERHEAD);
        let mut batch: Vec<PushIntent> = Vec::new();
        let mut batch_bytes = 0usize;
        // Every pending intent with a seq above what this connection has
        // pushed, in seq order. A hole (a seq held by another tab, or not
        // yet allocated here) is not waited for: the server answers `Gap`
        // when it expects an older seq, and decided seqs are simply skipped.
        let ready: Vec<&Pending<R::Action>> = {
            let mut ready: Vec<_> = self
                .replica
                .pending()
                .iter()
                .filter(|p| p.seq.is_some_and(|s| s.get() > self.sent_through))
                .collect();
            crate::types::sort_by_seq(&mut ready, |p| p.seq.unwrap_or(Seq::FIRST));
            ready
        };
        for p in ready {
            let (Some(seq), payload, seen, schema) =
                (p.seq, p.payload.as_slice(), p.seen, p.schema)
            else {
                continue;
            };
            let size = payload.len() + PER_INTENT_OVERHEAD;
            if p.withdrawn() {
                // Withdrawn in its place, like an oversized intent.
                if !batch.is_empty() {
                    out.push(Effect::Send(ClientMsg::Push {
                        stream: stream.clone(),
                        intents: core::mem::take(&mut batch),
                    }));
                    batch_bytes = 0;
                }
                let msg = if p.discarded {
                    discarded_withdraw(stream.clone(), seq)
                } else {
                    ClientMsg::Withdraw {
                        stream: stream.clone(),
                        seq,
                        code: ErrorCode::Expired,
                        message: EXPIRED_MESSAGE.into(),
                    }
                };
                out.push(Effect::Send(msg));
                self.sent_through = seq.get();
                continue;
            }
            if size > budget {
                // It can never be pushed. Withdraw it in its place in the
                // sequence, so the server decides the seq (rejected) and
                // later intents are not held behind a hole; the server's
                // `Reject` then rolls it back here like any rejection.
                if !batch.is_empty() {
                    out.push(Effect::Send(ClientMsg::Push {
                        stream: stream.clone(),
                        intents: core::mem::take(&mut batch),
                    }));
                    batch_bytes = 0;
                }
                out.push(Effect::Send(ClientMsg::Withdraw {
                    stream: stream.clone(),
                    seq,
                    code: ErrorCode::PayloadTooLarge,
                    message: alloc::format!(
                        "intent of {} bytes does not fit in the server's frame limit of {} bytes",
                        payload.len(),
                        self.max_frame_bytes
                    ),
                }));
                self.sent_through = seq.get();
                continue;
            }
            if batch_bytes + size > budget && !batch.is_empty() {
                out.push(Effect::Send(ClientMsg::Push {
                    stream: stream.clone(),
                    intents: core::mem::take(&mut batch),
                }));
                batch_bytes = 0;
            }
            batch.push(PushIntent {
                seq,
                payload: payload.to_vec(),
                seen,
                schema,
            });
            batch_bytes += size;
            self.sent_through = seq.get();
        }
        if !batch.is_empty() {
            out.push(Effect::Send(ClientMsg::Push {
                stream,
                intents: batch,
            }));
        }
        out
    }

    /// Discards the pending intent with `seq`: it leaves the optimistic
    /// state at once and is withdrawn in its place in the sequence instead
    /// of pushed, so the server decides its seq as rejected and no resend
    /// can ever apply it. An intent the server has already taken cannot be
    /// recalled: its event arrives like any other (a withdrawal sent after
    /// it is answered with the original result).
    pub fn discard(&mut self, seq: Seq) -> Result<Vec<Effect>, CoreError> {
        if !self.replica.mark_discarded(seq) {
            return Err(CoreError::NotPending { seq: seq.get() });
        }
        let mut out = alloc::vec![Effect::MarkDiscarded(seq), Effect::StateChanged];
        if self.phase == Phase::Ready && seq.get() <= self.sent_through {
            // Pushed on this connection already: withdraw it now, after
            // the push. The server answers with whichever came first.
            out.push(Effect::Send(discarded_withdraw(
                self.replica.stream().clone(),
                seq,
            )));
        }
        Ok(out)
    }

    fn reject_local(&mut self, seq: Seq, code: ErrorCode, message: String, out: &mut Vec<Effect>) {
        if let Some(p) = self.replica.remove_pending(seq) {
            out.push(Effect::DropFromOutbox(seq));
            out.push(Effect::StateChanged);
            if p.discarded {
                // The app asked for it; nothing to tell.
                return;
            }
            out.push(Effect::Rejected {
                seq,
                payload: p.payload,
                code,
                message,
            });
        }
    }

    /// A tab without a connection (a follower: another tab of the same
    /// storage holds it) takes what that tab stored: `snapshot` (storage's
    /// snapshot, when it is ahead of this replica), `events` (the stored
    /// confirmed events after this replica's offset, or after the
    /// snapshot, up to `head`, storage's offset) and `outbox` (the stored
    /// outbox, in seq order, read in the same transaction). The events
    /// confirm this replica's intents as they would from the server; an
    /// intent with a seq that `outbox` no longer holds was settled by the
    /// connection's tab (confirmed in a snapshot, or refused: that tab's
    /// notice, [`SyncClient::rejected_elsewhere`], tells why) and leaves.
    /// A client with a connection of its own takes only the outbox: its
    /// confirmed events come from its subscription, which would repeat
    /// any applied here.
    pub fn follow_stored(
        &mut self,
        snapshot: Option<(Offset, R::State)>,
        mut events: Vec<Event>,
        head: Offset,
        outbox: Vec<OutboxEntry>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        // Told once, at the end (no `contains` on effects: comparing them
        // would bring their whole `PartialEq` into the browser's module).
        let mut changed = false;
        // Without a connection the stored outbox is the truth about which
        // intents are settled (a write-only tab's too: its leader's
        // acknowledgements take them out); the events are applied only by
        // a tab that follows the stream.
        let offline = self.phase == Phase::Offline;
        let follows = offline && self.replicates && !self.outdated;
        if follows {
            if let Some((offset, state)) = snapshot {
                if offset > self.replica.offset() {
                    self.replica.adopt_snapshot(offset, state);
                    self.incoming = None;
                    self.checkpoint = None;
                    changed = true;
                }
            }
            events.retain(|e| e.offset > self.replica.offset());
            let newer = self.cut_newer(&mut events);
            // Storage holds the events dense from its snapshot on; a batch
            // that does not continue this replica (a snapshot this reducer
            // could not use) is left for the connection to bring.
            if let Ok(applied) = self.replica.apply_events(&events) {
                changed |= applied.state_changed;
                if !applied.reducer_errors.is_empty() {
                    out.push(Effect::ReducerErrors(applied.reducer_errors));
                }
            }
            let new_head = head.max(self.replica.offset());
            if new_head > self.head {
                self.head = new_head;
                out.push(Effect::HeadChanged(new_head));
            }
            if let Some(message) = newer {
                self.outdated = true;
                out.push(Effect::Outdated { message });
            }
        }
        let mut stored = Vec::with_capacity(outbox.len());
        for e in outbox {
            stored.push(e.seq);
            for fx in self.adopt_as(e, false) {
                if matches!(fx, Effect::StateChanged) {
                    changed = true;
                } else {
                    out.push(fx);
                }
            }
        }
        if offline {
            crate::types::sort_by_seq(&mut stored, |s| *s);
            changed |= !self.replica.keep_stored(&stored).is_empty();
        }
        if changed {
            out.push(Effect::StateChanged);
        }
        out
    }

    /// Cuts `events` before the first one made under a newer schema version
    /// than this reducer's; returns why (`SCHEMA_TOO_NEW`'s message), when
    /// it cut.
    fn cut_newer(&self, events: &mut Vec<Event>) -> Option<String> {
        let supported = self.replica.reducer().schema_version();
        let i = events.iter().position(|e| e.schema > supported)?;
        let e = &events[i];
        let message = CoreError::SchemaTooNew {
            what: alloc::format!(
                "the event at offset {} of stream {}",
                e.offset.0,
                self.replica.stream()
            ),
            got: e.schema,
            supported,
        }
        .to_string();
        events.truncate(i);
        Some(message)
    }

    /// The tab holding the connection heard the server refuse `seq` (its
    /// notice on the tabs' channel): a follower rolls the intent back and
    /// tells its app, as if it had heard the refusal itself. The storage
    /// write is that tab's. Nothing happens when the intent is not pending
    /// here (a notice that came late, or twice).
    pub fn rejected_elsewhere(
        &mut self,
        seq: Seq,
        code: ErrorCode,
        message: String,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        self.reject_local(seq, code, message, &mut out);
        out.retain(|e| !matches!(e, Effect::DropFromOutbox(_)));
        out
    }

    /// Handles one message from the server. Something of a newer schema
    /// version is not an error but [`Effect::Outdated`].
    pub fn handle(&mut self, msg: ServerMsg) -> Result<Vec<Effect>, CoreError> {
        match self.take(msg) {
            Err(e @ CoreError::SchemaTooNew { .. }) => {
                self.outdated = true;
                self.disconnected();
                Ok(alloc::vec![Effect::Outdated {
                    message: e.to_string()
                }])
            }
            other => other,
        }
    }

    fn take(&mut self, msg: ServerMsg) -> Result<Vec<Effect>, CoreError> {
        let mut out = Vec::new();
        match msg {
            ServerMsg::Welcome {
                version,
                epoch,
                max_frame_bytes,
                ..
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(CoreError::ProtocolVersion {
                        got: version,
                        supported: PROTOCOL_VERSION,
                    });
                }
                self.max_frame_bytes = max_frame_bytes as usize;
                match &self.epoch {
                    None => {
                        // First contact: nothing is sent until storage has
                        // the epoch (another tab may have stored another).
                        // (The storage queue runs one store per epoch.)
                        self.phase = Phase::Resetting;
                        self.resetting = Some(epoch.clone());
                        out.push(Effect::StoreEpoch(epoch));
                        return Ok(out);
                    }
                    Some(prev) if *prev != epoch => {
                        // Nothing is sent until storage has renumbered
                        // every tab's intents for the new epoch.
                        // (The storage queue runs one reset per epoch.)
                        self.phase = Phase::Resetting;
                        self.resetting = Some(epoch.clone());
                        out.push(Effect::EpochReset {
                            previous: prev.clone(),
                            epoch,
                        });
                        return Ok(out);
                    }
                    Some(_) => {}
                }
                self.epoch = Some(epoch);
                self.ready(&mut out);
            }
            ServerMsg::Events {
                stream,
                mut events,
                head,
            } => {
                self.check_stream(&stream)?;
                if self.stale_events {
                    return Ok(out);
                }
                // An event of a newer app: the events before it are
                // applied, it and the rest are not (this reducer would
                // misread them); the client is outdated from there.
                let newer = self.cut_newer(&mut events);
                // A checkpoint inside the batch: fold up to it, compare,
                // and go on only when the folds agree.
                let at = self
                    .checkpoint
                    .and_then(|(o, _)| events.iter().position(|e| e.offset == o));
                let rest = match at {
                    Some(i) if i + 1 < events.len() => events.split_off(i + 1),
                    _ => Vec::new(),
                };
                let mut applied = self.replica.apply_events(&events)?;
                if at.is_some() {
                    self.verify(&mut out);
                }
                if !rest.is_empty() && !self.stale_events {
                    let more = self.replica.apply_events(&rest)?;
                    applied.offset = more.offset;
                    applied.confirmed.extend(more.confirmed);
                    applied.state_changed |= more.state_changed;
                    applied.reducer_errors.extend(more.reducer_errors);
                    events.extend(rest);
                }
                let Applied {
                    offset,
                    confirmed,
                    state_changed,
                    reducer_errors,
                } = applied;
                if !events.is_empty() {
                    out.push(Effect::PersistEvents {
                        events,
                        confirmed,
                        offset,
                    });
                }
                if state_changed {
                    out.push(Effect::StateChanged);
                }
                if !reducer_errors.is_empty() {
                    out.push(Effect::ReducerErrors(reducer_errors));
                }
                let new_head = head.max(offset);
                if new_head != self.head {
                    self.head = new_head;
                    out.push(Effect::HeadChanged(new_head));
                }
                if let Some(message) = newer {
                    self.outdated = true;
                    self.disconnected();
                    out.push(Effect::Outdated { message });
                }
            }
            ServerMsg::Ack {
                stream,
                seq,
                offset,
                ..
            } => {
                self.check_stream(&stream)?;
                if !self.replicates {
                    // No event will come to confirm it: the Ack does.
                    if self.replica.remove_pending(seq).is_some() {
                        out.push(Effect::DropFromOutbox(seq));
                        out.push(Effect::StateChanged);
                    }
                } else if offset <= self.replica.offset()
                    && self.replica.remove_pending(seq).is_some()
                {
                    // Confirmed by an event applied before this replica held
                    // the intent (adopted late from another tab's outbox),
                    // or held by a snapshot it adopted: it is in the
                    // confirmed state already.
                    out.push(Effect::DropFromOutbox(seq));
                    out.push(Effect::StateChanged);
                } else if offset > self.replica.offset() {
                    // Its event comes later — or a snapshot holding it.
                    self.replica.mark_acked(seq, offset);
                }
                if offset > self.head {
                    self.head = offset;
                    out.push(Effect::HeadChanged(offset));
                }
            }
            ServerMsg::Reject {
                stream,
                seq,
                code,
                message,
            } => {
                self.check_stream(&stream)?;
                self.reject_local(seq, code, message, &mut out);
            }
            ServerMsg::Gap {
                stream,
                expected_seq,
            } => {
                self.check_stream(&stream)?;
                // Push on from the seq the server expects — and from any
                // lower one still pending here: the server decided it, but
                // its answer was lost with an earlier connection; pushed
                // again, it is answered with the original result.
                let lowest = self
                    .replica
                    .pending()
                    .iter()
                    .filter_map(|p| p.seq)
                    .min()
                    .map_or(u64::MAX, |s| s.get());
                self.sent_through = (expected_seq.get() - 1).min(lowest - 1);
                let held = self
                    .replica
                    .pending()
                    .iter()
                    .any(|p| p.seq == Some(expected_seq));
                if held {
                    out.extend(self.flush());
                } else {
                    self.replica.bump_next_seq(expected_seq);
                    out.push(Effect::ReloadOutbox {
                        expected: expected_seq,
                    });
                }
            }
            ServerMsg::Error { code, message } => {
                // The server closes the connection after an Error frame:
                // nothing more is sent on it, and the client is offline
                // from here, not from the socket's close event.
                self.disconnected();
                out.push(Effect::ServerError { code, message });
            }
            ServerMsg::Pong { .. } => {}
            // Answers to `Watch`, which this client never sends.
            #[cfg(feature = "views")]
            ServerMsg::View { .. } | ServerMsg::ViewError { .. } => {}
            ServerMsg::Checkpoint {
                stream,
                offset,
                hash,
                schema,
            } => {
                self.check_stream(&stream)?;
                // A fold of another schema version hashes otherwise
                // without anything being wrong: not compared.
                let same = schema == self.replica.reducer().schema_version();
                if same && offset >= self.replica.offset() {
                    self.checkpoint = Some((offset, hash));
                }
                if same && offset == self.replica.offset() {
                    self.verify(&mut out);
                }
            }
            ServerMsg::Snapshot {
                stream,
                offset,
                hash,
                total,
                at,
                part,
                schema,
            } => {
                self.check_stream(&stream)?;
                self.snapshot_part(offset, hash, (total, at, schema), part, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Compares the confirmed fold with the server's checkpoint when the
    /// replica is at its offset. On a difference: reported, and the
    /// server's snapshot is asked for by subscribing again (the server
    /// answers with it before any event; the old subscription's events
    /// still on their way are not applied).
    fn verify(&mut self, out: &mut Vec<Effect>) {
        let Some((offset, theirs)) = self.checkpoint else {
            return;
        };
        if offset != self.replica.offset() {
            return;
        }
        self.checkpoint = None;
        let Some(text) = self
            .replica
            .reducer()
            .encode_state(self.replica.confirmed_state())
        else {
            return;
        };
        let ours = crate::protocol::state_hash(&text);
        if ours == theirs {
            out.push(Effect::Agreed { offset });
            return;
        }
        out.push(Effect::Diverged {
            offset,
            ours,
            theirs,
        });
        self.repair = Some(crate::protocol::SnapshotResume {
            offset,
            hash: theirs,
            at: 0,
        });
        if self.phase == Phase::Ready {
            self.stale_events = true;
            out.push(Effect::Send(ClientMsg::Subscribe {
                stream: self.replica.stream().clone(),
                after: offset,
                resume: self.repair,
            }));
        }
    }

    /// Takes one part of a server snapshot; the last one makes the
    /// snapshot this replica's confirmed state (see
    /// [`Replica::adopt_snapshot`]).
    fn snapshot_part(
        &mut self,
        offset: Offset,
        hash: u64,
        (total, at, schema): (u64, u64, u32),
        part: Vec<u8>,
        out: &mut Vec<Effect>,
    ) -> Result<(), CoreError> {
        let malformed = |reason: String| CoreError::MalformedFrame { reason };
        let mut incoming = match self.incoming.take() {
            _ if at == 0 => Incoming {
                offset,
                hash,
                total,
                schema,
                bytes: Vec::new(),
            },
            Some(i)
                if i.offset == offset
                    && i.hash == hash
                    && i.total == total
                    && i.schema == schema =>
            {
                i
            }
            _ => {
                return Err(malformed(alloc::format!(
                    "a snapshot part at byte {at} of the snapshot at offset {offset} came without its start"
                )))
            }
        };
        if at != incoming.bytes.len() as u64 || at + part.len() as u64 > total {
            return Err(malformed(alloc::format!(
                "a snapshot part at byte {at} ({} bytes) does not continue the {} bytes received of {total}",
                part.len(),
                incoming.bytes.len()
            )));
        }
        incoming.bytes.extend_from_slice(&part);
        if (incoming.bytes.len() as u64) < total {
            self.incoming = Some(incoming);
            return Ok(());
        }
        if crate::protocol::state_hash(&incoming.bytes) != hash {
            return Err(malformed(alloc::format!(
                "the snapshot at offset {offset} does not match its hash"
            )));
        }
        let reducer = self.replica.reducer();
        let what = alloc::format!("the server's snapshot at offset {offset}");
        let supported = reducer.schema_version();
        if schema > supported {
            return Err(CoreError::SchemaTooNew {
                what,
                got: schema,
                supported,
            });
        }
        let state = reducer
            .decode_state(&incoming.bytes)
            .map_err(|e| CoreError::Reducer {
                message: alloc::format!("{what}: {e}"),
            })?;
        let Some(state) = upgrade_state(reducer, state, schema, &what)? else {
            return Err(CoreError::SchemaTooOld {
                what,
                got: schema,
                supported,
                how: "the reducer has no migrate, and the events under the snapshot were compacted away; the server migrates its snapshots once it runs this version".into(),
            });
        };
        let repairing = self.repair.take().is_some();
        self.stale_events = false;
        let left = if repairing && offset == self.replica.offset() {
            // The server's state in place of this replica's own fold at
            // the same offset (it diverged).
            self.replica.load_snapshot(state, offset);
            Vec::new()
        } else {
            self.replica.adopt_snapshot(offset, state)
        };
        if self.checkpoint.is_some_and(|(o, _)| o <= offset) {
            self.checkpoint = None;
        }
        if self.replica.offset() == offset {
            out.push(Effect::AdoptedSnapshot { offset, left });
            out.push(Effect::StateChanged);
            if offset > self.head {
                self.head = offset;
                out.push(Effect::HeadChanged(offset));
            }
        }
        Ok(())
    }

    fn check_stream(&self, stream: &crate::types::StreamName) -> Result<(), CoreError> {
        if stream != self.replica.stream() {
            return Err(CoreError::WrongStream {
                expected: self.replica.stream().to_string(),
                got: stream.to_string(),
            });
        }
        Ok(())
    }

    /// A summary for status displays.
    pub fn describe(&self) -> String {
        alloc::format!(
            "{:?} offset={} head={} pending={}",
            self.phase,
            self.replica.offset(),
            self.head(),
            self.replica.pending().len()
        )
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reducer::ReduceError;
    use crate::types::{ClientId, StreamName};
    use alloc::vec;

    struct Count;
    impl Reducer for Count {
        type State = u64;
        type Action = ();
        fn decode(&self, _: &[u8]) -> Result<(), ReduceError> {
            Ok(())
        }
        fn reduce(&self, s: &u64, _: &()) -> Result<u64, ReduceError> {
            Ok(s + 1)
        }
        fn decode_state(&self, json: &[u8]) -> Result<u64, ReduceError> {
            core::str::from_utf8(json)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| ReduceError("not a count".into()))
        }
        fn encode_state(&self, state: &u64) -> Option<Vec<u8>> {
            Some(state.to_string().into_bytes())
        }
    }

    /// Events `from..=to` of another client.
    fn others(from: u64, to: u64) -> ServerMsg {
        ServerMsg::Events {
            stream: stream(),
            events: (from..=to)
                .map(|o| Event {
                    schema: 1,
                    subject: None,
                    seen: Offset::ZERO,
                    offset: Offset(o),
                    client_id: ClientId([9; 16]),
                    seq: Seq::new(o).unwrap(),
                    time_ms: 0,
                    payload: b"x".to_vec(),
                })
                .collect(),
            head: Offset(to),
        }
    }

    fn checkpoint(offset: u64, state: &[u8]) -> ServerMsg {
        ServerMsg::Checkpoint {
            schema: 1,
            stream: stream(),
            offset: Offset(offset),
            hash: crate::protocol::state_hash(state),
        }
    }

    fn persisted(effects: &[Effect]) -> Vec<u64> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::PersistEvents { events, .. } => Some(events.iter().map(|e| e.offset.0)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_checkpoint_is_compared_where_it_falls_inside_a_batch() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        assert!(c.handle(checkpoint(3, b"3")).unwrap().is_empty());
        let fx = c.handle(others(1, 5)).unwrap();
        assert!(fx.contains(&Effect::Agreed { offset: Offset(3) }), "{fx:?}");
        assert_eq!(
            persisted(&fx),
            vec![1, 2, 3, 4, 5],
            "one write for the batch"
        );
        assert_eq!(c.replica().offset(), Offset(5));
        // A checkpoint at the offset the replica is at is compared at once;
        // one behind it cannot be.
        assert_eq!(
            c.handle(checkpoint(5, b"5")).unwrap(),
            vec![Effect::Agreed { offset: Offset(5) }]
        );
        assert!(c.handle(checkpoint(4, b"99")).unwrap().is_empty());
    }

    #[test]
    fn a_fold_that_differs_from_the_servers_takes_the_servers_snapshot_and_keeps_pending_intents() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        c.replica_mut().dispatch(b"p".to_vec(), 0).unwrap();
        // The server's fold at 3 is 30; this replica's will be 3.
        c.handle(checkpoint(3, b"30")).unwrap();
        let fx = c.handle(others(1, 5)).unwrap();
        let theirs = crate::protocol::state_hash(b"30");
        assert!(
            fx.contains(&Effect::Diverged {
                offset: Offset(3),
                ours: crate::protocol::state_hash(b"3"),
                theirs,
            }),
            "{fx:?}"
        );
        let resume = Some(crate::protocol::SnapshotResume {
            offset: Offset(3),
            hash: theirs,
            at: 0,
        });
        assert_eq!(
            sends(&fx),
            vec![&ClientMsg::Subscribe {
                stream: stream(),
                after: Offset(3),
                resume
            }]
        );
        // The fold stops at the checkpoint, and the old subscription's
        // events still arriving are not applied.
        assert_eq!(persisted(&fx), vec![1, 2, 3]);
        assert_eq!(c.replica().offset(), Offset(3));
        assert!(c.handle(others(4, 6)).unwrap().is_empty());
        assert_eq!(c.replica().offset(), Offset(3));
        // The server's snapshot at 3 replaces the replica's own state there,
        // with the pending intent on top; the events after it follow.
        let fx = c.handle(part(3, b"30", 0, 2)).unwrap();
        assert_eq!(
            fx,
            vec![
                Effect::AdoptedSnapshot {
                    offset: Offset(3),
                    left: vec![]
                },
                Effect::StateChanged
            ]
        );
        assert_eq!(*c.replica().confirmed_state(), 30);
        assert_eq!(*c.replica().state(), 31);
        c.handle(others(4, 5)).unwrap();
        assert_eq!(*c.replica().state(), 33);
        // Checked again later: the folds agree now.
        assert_eq!(
            c.handle(checkpoint(5, b"32")).unwrap(),
            vec![Effect::Agreed { offset: Offset(5) }]
        );
    }

    #[test]
    fn a_repair_cut_by_a_reconnect_asks_for_the_snapshot_again() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        c.handle(checkpoint(2, b"20")).unwrap();
        c.handle(others(1, 4)).unwrap();
        c.disconnected();
        c.connected(None);
        let fx = c.handle(welcome("e1", 1 << 20)).unwrap();
        assert_eq!(
            sends(&fx),
            vec![&ClientMsg::Subscribe {
                stream: stream(),
                after: Offset(2),
                resume: Some(crate::protocol::SnapshotResume {
                    offset: Offset(2),
                    hash: crate::protocol::state_hash(b"20"),
                    at: 0,
                }),
            }]
        );
        // On a new connection everything is this subscription's: a server
        // that has no snapshot to send goes on with events.
        c.handle(others(3, 3)).unwrap();
        assert_eq!(c.replica().offset(), Offset(3));
    }

    fn part(offset: u64, whole: &[u8], at: usize, len: usize) -> ServerMsg {
        ServerMsg::Snapshot {
            schema: 1,
            stream: stream(),
            offset: Offset(offset),
            hash: crate::protocol::state_hash(whole),
            total: whole.len() as u64,
            at: at as u64,
            part: whole[at..at + len].to_vec(),
        }
    }

    #[test]
    fn a_snapshot_in_parts_becomes_the_confirmed_state_and_takes_the_acked_intents_with_it() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        for (i, p) in [b"a", b"b"].iter().enumerate() {
            let seq = c.replica_mut().dispatch(p.to_vec(), 0).unwrap();
            assert_eq!(seq.get(), i as u64 + 1);
        }
        // Seq 1 is in the log at 40, which this replica has not seen.
        c.handle(ServerMsg::Ack {
            stream: stream(),
            seq: Seq::new(1).unwrap(),
            offset: Offset(40),
            duplicate: true,
        })
        .unwrap();
        assert_eq!(c.replica().pending().len(), 2);
        assert!(
            c.handle(part(50, b"42", 0, 1)).unwrap().is_empty(),
            "waits for the rest"
        );
        let fx = c.handle(part(50, b"42", 1, 1)).unwrap();
        assert_eq!(
            fx,
            vec![
                Effect::AdoptedSnapshot {
                    offset: Offset(50),
                    left: vec![Seq::new(1).unwrap()],
                },
                Effect::StateChanged,
                Effect::HeadChanged(Offset(50)),
            ]
        );
        assert_eq!(c.replica().offset(), Offset(50));
        assert_eq!(*c.replica().confirmed_state(), 42);
        // Seq 2 is still pending, on top of the snapshot.
        assert_eq!(*c.replica().state(), 43);
        // The events after the snapshot follow on.
        let other = Event {
            schema: 1,
            subject: None,
            seen: crate::types::Offset::ZERO,
            offset: Offset(51),
            client_id: ClientId([2; 16]),
            seq: Seq::new(1).unwrap(),
            time_ms: 0,
            payload: b"x".to_vec(),
        };
        c.handle(ServerMsg::Events {
            stream: stream(),
            events: vec![other],
            head: Offset(51),
        })
        .unwrap();
        assert_eq!(*c.replica().state(), 44);
    }

    #[test]
    fn a_snapshot_cut_by_a_reconnect_is_asked_for_from_where_it_stopped() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        let whole = b"12345";
        assert!(c.handle(part(50, whole, 0, 2)).unwrap().is_empty());
        c.disconnected();
        c.connected(None);
        let fx = c.handle(welcome("e1", 1 << 20)).unwrap();
        let resume = fx.iter().find_map(|e| match e {
            Effect::Send(ClientMsg::Subscribe { resume, after, .. }) => Some((*after, *resume)),
            _ => None,
        });
        assert_eq!(
            resume,
            Some((
                Offset::ZERO,
                Some(crate::protocol::SnapshotResume {
                    offset: Offset(50),
                    hash: crate::protocol::state_hash(whole),
                    at: 2,
                })
            ))
        );
        // The server goes on from byte 2.
        let fx = c.handle(part(50, whole, 2, 3)).unwrap();
        assert!(fx.contains(&Effect::StateChanged), "{fx:?}");
        assert_eq!(*c.replica().confirmed_state(), 12345);
        // Nothing to resume once it is whole.
        c.disconnected();
        c.connected(None);
        let fx = c.handle(welcome("e1", 1 << 20)).unwrap();
        assert!(fx.iter().any(|e| matches!(
            e,
            Effect::Send(ClientMsg::Subscribe {
                resume: None,
                after: Offset(50),
                ..
            })
        )));
        // A server whose snapshot changed starts another one from byte 0.
        c.disconnected();
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        assert!(c.handle(part(90, b"777", 0, 1)).unwrap().is_empty());
        c.disconnected();
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        c.handle(part(95, b"888", 0, 3)).unwrap();
        assert_eq!(*c.replica().confirmed_state(), 888);
    }

    #[test]
    fn a_broken_snapshot_is_refused_and_changes_nothing() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        let e = c.handle(part(50, b"42", 1, 1)).unwrap_err();
        assert_eq!(
            e.code(),
            ErrorCode::MalformedFrame,
            "a part without its start"
        );
        let mut wrong = part(50, b"42", 0, 2);
        if let ServerMsg::Snapshot { hash, .. } = &mut wrong {
            *hash ^= 1;
        }
        let e = c.handle(wrong).unwrap_err();
        assert_eq!(
            e.code(),
            ErrorCode::MalformedFrame,
            "a hash that does not match"
        );
        let e = c.handle(part(50, b"4x", 0, 2)).unwrap_err();
        assert_eq!(
            e.code(),
            ErrorCode::Reducer,
            "a state the reducer cannot read"
        );
        assert_eq!(c.replica().offset(), Offset(0));
        assert_eq!(*c.replica().state(), 0);
    }

    fn stream() -> StreamName {
        StreamName::new("s").unwrap()
    }

    fn client(epoch: Option<&str>) -> SyncClient<Count> {
        let r = Replica::new(stream(), ClientId([1; 16]), Count, 0);
        SyncClient::new(r, epoch.map(Epoch::from), 0)
    }

    fn welcome(epoch: &str, max_frame_bytes: u32) -> ServerMsg {
        ServerMsg::Welcome {
            version: PROTOCOL_VERSION,
            server_id: "t".into(),
            epoch: Epoch::from(epoch),
            max_frame_bytes,
        }
    }

    fn sends(effects: &[Effect]) -> Vec<&ClientMsg> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn welcome_subscribes_from_offset_then_pushes() {
        let mut c = client(None);
        c.replica_mut().dispatch(b"a".to_vec(), 0).unwrap();
        assert!(c.flush().is_empty(), "nothing goes out before Welcome");
        assert!(matches!(c.connected(None), ClientMsg::Hello { .. }));
        let fx = c.handle(welcome("e1", 1 << 20)).unwrap();
        // First contact: nothing goes out until storage has the epoch.
        assert_eq!(fx, vec![Effect::StoreEpoch(Epoch::from("e1"))]);
        let fx = c.epoch_stored(Epoch::from("e1"));
        let s = sends(&fx);
        assert!(matches!(
            s[0],
            ClientMsg::Subscribe {
                after: Offset(0),
                ..
            }
        ));
        assert!(matches!(s[1], ClientMsg::Push { intents, .. } if intents.len() == 1));
    }

    /// A queued intent whose time-to-live ran out leaves the optimistic
    /// state at once and is withdrawn (`EXPIRED`) in its place instead of
    /// pushed; the server's refusal reaches the app once. One already
    /// pushed on the connection is the server's to decide.
    #[test]
    fn an_intent_past_its_time_to_live_is_withdrawn_not_pushed() {
        let mut c = client(Some("e1"));
        let seq = |n| Seq::new(n).unwrap();
        c.replica_mut().adopt(OutboxEntry {
            expires_ms: 100,
            ..OutboxEntry::new(seq(1), b"late".to_vec())
        });
        c.replica_mut()
            .adopt(OutboxEntry::new(seq(2), b"any time".to_vec()));
        assert_eq!(c.replica().next_expiry(), Some(100));
        assert!(c.expire(99).is_empty(), "not due yet");
        assert_eq!(c.expire(100), vec![Effect::StateChanged]);
        assert_eq!(*c.replica().state(), 1, "out of the optimistic state");
        assert_eq!(c.replica().own_pending_count(), 0);
        assert_eq!(c.replica().next_expiry(), None);
        c.connected(None);
        let fx = c.handle(welcome("e1", 1 << 20)).unwrap();
        let fx = [fx, c.outbox_checked()].concat();
        let s = sends(&fx);
        assert!(
            matches!(s[1], ClientMsg::Withdraw { seq: q, code: ErrorCode::Expired, .. } if *q == seq(1)),
            "{s:?}"
        );
        assert!(matches!(s[2], ClientMsg::Push { intents, .. } if intents[0].seq == seq(2)));
        let fx = c
            .handle(ServerMsg::Reject {
                stream: stream(),
                seq: seq(1),
                code: ErrorCode::Expired,
                message: EXPIRED_MESSAGE.into(),
            })
            .unwrap();
        let told: Vec<_> = fx
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::Rejected {
                        code: ErrorCode::Expired,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(told.len(), 1, "{fx:?}");
        assert!(fx.contains(&Effect::DropFromOutbox(seq(1))));
        // Pushed already on this connection: not withdrawn after the fact.
        c.replica_mut().adopt(OutboxEntry {
            expires_ms: 200,
            ..OutboxEntry::new(seq(3), b"pushed".to_vec())
        });
        assert!(!sends(&c.flush()).is_empty());
        assert!(c.expire(300).is_empty());
    }

    /// An event of a newer schema version than the reducer's is not
    /// applied, nor anything after it: the client is outdated (the adapter
    /// closes, does not reconnect, keeps the outbox); the events before it
    /// in the batch are applied and stored.
    #[test]
    fn an_event_of_a_newer_schema_makes_the_client_outdated() {
        let mut c = client(Some("e1"));
        c.replica_mut()
            .adopt(OutboxEntry::new(Seq::new(1).unwrap(), b"mine".to_vec()));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        c.handle(others(1, 2)).unwrap();
        let ServerMsg::Events {
            stream,
            mut events,
            head,
        } = others(3, 4)
        else {
            unreachable!()
        };
        events[1].schema = 2;
        let fx = c.handle(ServerMsg::Events {
            stream,
            events,
            head,
        });
        let fx = fx.unwrap();
        assert_eq!(persisted(&fx), vec![3], "the event before the newer one");
        assert!(
            matches!(fx.last(), Some(Effect::Outdated { message }) if message.contains("schema version 2")),
            "{fx:?}"
        );
        assert!(c.outdated());
        assert_eq!(c.phase(), Phase::Offline);
        assert_eq!(
            c.replica().offset(),
            Offset(3),
            "nothing from the newer one on"
        );
        assert_eq!(c.replica().pending().len(), 1, "the outbox stays");
    }

    /// A checkpoint of another schema version is not compared (the folds
    /// differ without anything being wrong); one of the same is.
    #[test]
    fn a_checkpoint_of_another_schema_is_not_compared() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        let ServerMsg::Checkpoint {
            stream,
            offset,
            hash,
            ..
        } = checkpoint(2, b"999")
        else {
            unreachable!()
        };
        c.handle(ServerMsg::Checkpoint {
            stream,
            offset,
            hash,
            schema: 2,
        })
        .unwrap();
        let fx = c.handle(others(1, 2)).unwrap();
        assert!(
            !fx.iter().any(|e| matches!(e, Effect::Diverged { .. })),
            "{fx:?}"
        );
        c.handle(checkpoint(3, b"999")).unwrap();
        let fx = c.handle(others(3, 3)).unwrap();
        assert!(
            fx.iter().any(|e| matches!(e, Effect::Diverged { .. })),
            "{fx:?}"
        );
    }

    /// A write-only client pushes without subscribing; each `Ack` takes
    /// its intent out of the pending list and the outbox (no event comes
    /// to do it), and the confirmed state stays as it was.
    #[test]
    fn a_write_only_client_pushes_without_subscribing_and_acks_confirm() {
        let mut c = client(Some("e1"));
        c.write_only();
        c.replica_mut()
            .adopt(OutboxEntry::new(Seq::new(1).unwrap(), b"a".to_vec()));
        c.replica_mut()
            .adopt(OutboxEntry::new(Seq::new(2).unwrap(), b"b".to_vec()));
        assert_eq!(*c.replica().state(), 2);
        c.connected(None);
        c.outbox_checked();
        let fx = c.handle(welcome("e1", 1 << 20)).unwrap();
        let s = sends(&fx);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(matches!(s[0], ClientMsg::Push { intents, .. } if intents.len() == 2));
        assert_eq!(c.phase(), Phase::Ready);
        let ack = |seq: u64, offset: u64| ServerMsg::Ack {
            stream: stream(),
            seq: Seq::new(seq).unwrap(),
            offset: Offset(offset),
            duplicate: false,
        };
        let fx = c.handle(ack(1, 7)).unwrap();
        assert_eq!(
            fx,
            vec![
                Effect::DropFromOutbox(Seq::new(1).unwrap()),
                Effect::StateChanged,
                Effect::HeadChanged(Offset(7)),
            ]
        );
        assert_eq!(c.replica().pending().len(), 1);
        assert_eq!(*c.replica().state(), 1);
        c.handle(ack(2, 9)).unwrap();
        assert!(c.replica().pending().is_empty());
        assert_eq!((*c.replica().state(), c.replica().offset()), (0, Offset(0)));
        assert_eq!(c.head(), Offset(9));
        // A resend's Ack of a seq no longer pending changes nothing.
        assert_eq!(c.handle(ack(2, 9)).unwrap(), vec![]);
    }

    /// A server `Error` frame ends the connection (the server closes it
    /// after the frame): the client is offline from that frame on, not
    /// from the socket's close event, which the adapter hears later.
    #[test]
    fn an_error_frame_ends_the_connection_at_once() {
        let mut c = client(Some("e1"));
        c.connected(None);
        c.handle(welcome("e1", 1 << 20)).unwrap();
        assert_eq!(c.phase(), Phase::Ready);
        let fx = c
            .handle(ServerMsg::Error {
                code: ErrorCode::Forbidden,
                message: "not yours".into(),
            })
            .unwrap();
        assert_eq!(
            fx,
            vec![Effect::ServerError {
                code: ErrorCode::Forbidden,
                message: "not yours".into(),
            }]
        );
        assert_eq!(c.phase(), Phase::Offline, "offline from the Error frame on");
        // Nothing more goes out on the dying connection.
        c.replica_mut().dispatch(b"x".to_vec(), 0).unwrap();
        assert!(sends(&c.flush()).is_empty());
    }

    #[test]
    fn another_epoch_resets_and_renumbers() {
        let mut c = client(Some("old"));
        c.replica_mut()
            .apply_events(&[Event {
                schema: 1,
                subject: None,
                seen: crate::types::Offset::ZERO,
                offset: Offset(1),
                client_id: ClientId([2; 16]),
                seq: Seq::FIRST,
                time_ms: 0,
                payload: vec![],
            }])
            .unwrap();
        c.replica_mut()
            .adopt(OutboxEntry::new(Seq::new(8).unwrap(), b"x".to_vec()));
        c.connected(None);
        c.outbox_checked();
        let fx = c.handle(welcome("new", 1 << 20)).unwrap();
        // Nothing is sent until storage has reset.
        assert_eq!(
            fx,
            vec![Effect::EpochReset {
                previous: Epoch::from("old"),
                epoch: Epoch::from("new"),
            }]
        );
        assert_eq!(c.phase(), Phase::Resetting);
        // A second connection before the reset is done asks again (the
        // storage queue keeps one reset per epoch, see outbox.rs).
        c.disconnected();
        c.connected(None);
        c.outbox_checked();
        assert_eq!(c.handle(welcome("new", 1 << 20)).unwrap(), fx);
        let (fx, rediscard) = c.reset_to(
            Epoch::from("new"),
            vec![OutboxEntry {
                schema: 1,
                expires_ms: 0,
                seen: crate::types::Offset::ZERO,
                time_ms: 0,
                seq: Seq::FIRST,
                payload: b"x".to_vec(),
                discarded: false,
            }],
        );
        assert!(rediscard.is_empty());
        assert_eq!(c.phase(), Phase::Ready);
        assert_eq!(c.epoch(), Some(&Epoch::from("new")));
        assert_eq!(*c.replica().state(), 1, "only the pending intent remains");
        let s = sends(&fx);
        assert!(matches!(
            s[0],
            ClientMsg::Subscribe {
                after: Offset(0),
                ..
            }
        ));
        assert!(matches!(s[1], ClientMsg::Push { intents, .. } if intents[0].seq == Seq::FIRST));
    }

    #[test]
    fn gap_resends_or_asks_for_the_outbox() {
        let mut c = client(Some("e"));
        c.replica_mut()
            .adopt(OutboxEntry::new(Seq::new(3).unwrap(), b"c".to_vec()));
        c.connected(None);
        c.outbox_checked();
        c.handle(welcome("e", 1 << 20)).unwrap();
        let fx = c
            .handle(ServerMsg::Gap {
                stream: stream(),
                expected_seq: Seq::new(2).unwrap(),
            })
            .unwrap();
        assert_eq!(
            fx,
            vec![Effect::ReloadOutbox {
                expected: Seq::new(2).unwrap()
            }]
        );
        let fx = c.adopt(OutboxEntry::new(Seq::new(2).unwrap(), b"b".to_vec()));
        assert_eq!(fx, vec![Effect::StateChanged]);
        let fx = c.flush();
        let s = sends(&fx);
        assert!(matches!(s[0], ClientMsg::Push { intents, .. }
            if intents.iter().map(|i| i.seq.get()).collect::<Vec<_>>() == vec![2, 3]));
    }

    #[test]
    fn pushes_split_to_fit_frames_and_oversized_intents_are_withdrawn() {
        let mut c = client(Some("e"));
        for _ in 0..3 {
            c.replica_mut().dispatch(vec![b'x'; 400], 0).unwrap();
        }
        c.replica_mut().dispatch(vec![b'y'; 5000], 0).unwrap();
        c.replica_mut().dispatch(vec![b'z'; 10], 0).unwrap();
        c.connected(None);
        c.outbox_checked();
        let fx = c.handle(welcome("e", 1024)).unwrap();
        let shape: Vec<String> = sends(&fx)
            .iter()
            .filter_map(|m| match m {
                ClientMsg::Push { intents, .. } => Some(alloc::format!(
                    "push {:?}",
                    intents.iter().map(|i| i.seq.get()).collect::<Vec<_>>()
                )),
                ClientMsg::Withdraw { seq, code, .. } => {
                    Some(alloc::format!("withdraw {seq} {code}"))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                "push [1]",
                "push [2]",
                "push [3]",
                "withdraw 4 PAYLOAD_TOO_LARGE",
                "push [5]"
            ],
            "400-byte intents in 1 KiB frames; the 5000-byte one withdrawn in its place"
        );
        for m in sends(&fx) {
            assert!(m.encode().len() <= 1024);
        }
        // It stays pending (and in the outbox) until the server decides it.
        assert_eq!(c.replica().pending().len(), 5);
        let fx = c
            .handle(ServerMsg::Reject {
                stream: stream(),
                seq: Seq::new(4).unwrap(),
                code: ErrorCode::PayloadTooLarge,
                message: "withdrawn".into(),
            })
            .unwrap();
        assert!(fx.contains(&Effect::DropFromOutbox(Seq::new(4).unwrap())));
        assert_eq!(c.replica().pending().len(), 4);
    }

    #[test]
    fn reject_rolls_back_and_reports() {
        let mut c = client(Some("e"));
        c.replica_mut().dispatch(b"a".to_vec(), 0).unwrap();
        assert_eq!(*c.replica().state(), 1);
        let fx = c
            .handle(ServerMsg::Reject {
                stream: stream(),
                seq: Seq::FIRST,
                code: ErrorCode::Forbidden,
                message: "no".into(),
            })
            .unwrap();
        assert_eq!(*c.replica().state(), 0);
        assert!(fx.contains(&Effect::DropFromOutbox(Seq::FIRST)));
        assert!(fx.iter().any(|e| matches!(
            e,
            Effect::Rejected {
                code: ErrorCode::Forbidden,
                ..
            }
        )));
    }

    #[test]
    fn a_reused_seq_rolls_the_intent_back_and_reports_it() {
        let mut c = client(Some("e"));
        c.connected(None);
        c.outbox_checked();
        c.handle(welcome("e", 1 << 20)).unwrap();
        c.replica_mut().dispatch(b"a".to_vec(), 0).unwrap();
        assert_eq!(*c.replica().state(), 1);
        let fx = c.flush();
        assert_eq!(sends(&fx).len(), 1);
        let message = "seq 1 already holds another intent (at offset 3)";
        let fx = c
            .handle(ServerMsg::Reject {
                stream: stream(),
                seq: Seq::FIRST,
                code: ErrorCode::SeqReused,
                message: message.into(),
            })
            .unwrap();
        assert_eq!(*c.replica().state(), 0, "rolled back");
        assert!(c.replica().pending().is_empty());
        assert!(fx.contains(&Effect::DropFromOutbox(Seq::FIRST)));
        assert!(fx.contains(&Effect::Rejected {
            seq: Seq::FIRST,
            payload: b"a".to_vec(),
            code: ErrorCode::SeqReused,
            message: message.into(),
        }));
        assert_eq!(c.phase(), Phase::Ready);
        assert!(rejection_is_client_error(ErrorCode::SeqReused));
        assert!(!rejection_is_client_error(ErrorCode::Rejected));
        assert!(!rejection_is_client_error(ErrorCode::Forbidden));
    }

    #[test]
    fn a_refused_write_is_a_rejection_and_the_connection_stays_ready() {
        // A read-only token: the server decides each pushed seq as
        // rejected with FORBIDDEN (stored like any rejection) instead of
        // ending the connection.
        let mut c = client(Some("e"));
        c.connected(None);
        c.outbox_checked();
        c.handle(welcome("e", 1 << 20)).unwrap();
        c.replica_mut().dispatch(b"vote".to_vec(), 0).unwrap();
        let fx = c.flush();
        assert_eq!(sends(&fx).len(), 1);
        let fx = c
            .handle(ServerMsg::Reject {
                stream: stream(),
                seq: Seq::FIRST,
                code: ErrorCode::Forbidden,
                message: "the token does not allow writing stream s".into(),
            })
            .unwrap();
        assert_eq!(c.phase(), Phase::Ready, "the subscription stays live");
        assert_eq!(*c.replica().state(), 0, "rolled back");
        assert!(fx.contains(&Effect::DropFromOutbox(Seq::FIRST)));
        assert!(fx.iter().any(|e| matches!(
            e,
            Effect::Rejected {
                code: ErrorCode::Forbidden,
                ..
            }
        )));
        assert!(!fx.iter().any(|e| matches!(e, Effect::ServerError { .. })));
        // Events keep coming in.
        let fx = c
            .handle(ServerMsg::Events {
                stream: stream(),
                events: vec![crate::types::Event {
                    schema: 1,
                    subject: None,
                    seen: crate::types::Offset::ZERO,
                    offset: Offset(1),
                    client_id: ClientId([2; 16]),
                    seq: Seq::FIRST,
                    time_ms: 0,
                    payload: b"x".to_vec(),
                }],
                head: Offset(1),
            })
            .unwrap();
        assert!(fx.contains(&Effect::StateChanged));
        // The next intent takes the next seq: the refused one is decided,
        // no hole holds it back.
        assert_eq!(
            c.replica_mut()
                .dispatch(b"again".to_vec(), 0)
                .unwrap()
                .get(),
            2
        );
        let fx = c.flush();
        assert!(
            matches!(sends(&fx)[..], [ClientMsg::Push { intents, .. }] if intents[0].seq.get() == 2)
        );
        // A resend of seq 1 gets the same answer, which changes nothing.
        let fx = c
            .handle(ServerMsg::Reject {
                stream: stream(),
                seq: Seq::FIRST,
                code: ErrorCode::Forbidden,
                message: "again".into(),
            })
            .unwrap();
        assert!(fx.is_empty());
    }

    #[test]
    fn discarded_intents_are_withdrawn_in_their_place() {
        let mut c = client(Some("e"));
        for p in [b"a", b"b", b"c"] {
            c.replica_mut().dispatch(p.to_vec(), 0).unwrap();
        }
        assert_eq!(*c.replica().state(), 3);
        let fx = c.discard(Seq::new(2).unwrap()).unwrap();
        assert_eq!(
            fx,
            vec![
                Effect::MarkDiscarded(Seq::new(2).unwrap()),
                Effect::StateChanged
            ],
            "offline: nothing sent yet"
        );
        assert_eq!(*c.replica().state(), 2, "left out of the state at once");
        assert_eq!(c.replica().own_pending().count(), 2);
        assert_eq!(
            c.discard(Seq::new(2).unwrap()).unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
        c.connected(None);
        c.outbox_checked();
        let fx = c.handle(welcome("e", 1 << 20)).unwrap();
        let shape: Vec<String> = sends(&fx)
            .iter()
            .filter_map(|m| match m {
                ClientMsg::Push { intents, .. } => Some(alloc::format!(
                    "push {:?}",
                    intents.iter().map(|i| i.seq.get()).collect::<Vec<_>>()
                )),
                ClientMsg::Withdraw { seq, code, .. } => {
                    Some(alloc::format!("withdraw {seq} {code}"))
                }
                _ => None,
            })
            .collect();
        assert_eq!(shape, vec!["push [1]", "withdraw 2 REJECTED", "push [3]"]);
        // The server's Reject for it drops it without telling the app.
        let fx = c
            .handle(ServerMsg::Reject {
                stream: stream(),
                seq: Seq::new(2).unwrap(),
                code: ErrorCode::Rejected,
                message: DISCARDED_MESSAGE.into(),
            })
            .unwrap();
        assert!(fx.contains(&Effect::DropFromOutbox(Seq::new(2).unwrap())));
        assert!(!fx.iter().any(|e| matches!(e, Effect::Rejected { .. })));
        // One already pushed on this connection is withdrawn at once.
        let fx = c.discard(Seq::new(3).unwrap()).unwrap();
        assert!(matches!(sends(&fx)[..], [ClientMsg::Withdraw { seq, .. }] if seq.get() == 3));
        // If the server had taken it, its event confirms it: it comes back.
        let fx = c
            .handle(ServerMsg::Events {
                stream: stream(),
                events: vec![crate::types::Event {
                    schema: 1,
                    subject: None,
                    seen: crate::types::Offset::ZERO,
                    offset: Offset(1),
                    client_id: ClientId([1; 16]),
                    seq: Seq::new(3).unwrap(),
                    time_ms: 0,
                    payload: b"c".to_vec(),
                }],
                head: Offset(1),
            })
            .unwrap();
        assert!(fx.contains(&Effect::StateChanged));
        assert_eq!(
            *c.replica().state(),
            2,
            "seq 1 pending on top of the confirmed seq 3"
        );
    }

    #[test]
    fn only_own_intents_count_as_pending_here() {
        let mut c = client(Some("e"));
        c.adopt_as(
            OutboxEntry::new(Seq::new(1).unwrap(), b"found at open".to_vec()),
            true,
        );
        c.replica_mut().dispatch(b"mine".to_vec(), 0).unwrap();
        // Another tab's intent, adopted from the shared outbox.
        c.adopt(OutboxEntry::new(Seq::new(3).unwrap(), b"theirs".to_vec()));
        assert_eq!(c.replica().pending().len(), 3);
        assert_eq!(c.replica().own_pending().count(), 2);
        // Our own dispatch meeting its adopted copy stays ours.
        let l = c
            .replica_mut()
            .dispatch_unassigned(b"raced".to_vec(), 0)
            .unwrap();
        c.adopt(OutboxEntry::new(Seq::new(4).unwrap(), b"raced".to_vec()));
        c.replica_mut().assign_seq(l, Seq::new(4).unwrap());
        assert_eq!(c.replica().own_pending().count(), 3);
    }

    #[test]
    fn messages_for_other_streams_are_refused() {
        let mut c = client(Some("e"));
        let e = c
            .handle(ServerMsg::Events {
                stream: StreamName::new("other").unwrap(),
                events: vec![],
                head: Offset(0),
            })
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::WrongStream);
    }
}
