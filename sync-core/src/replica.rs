//! A client's replica of one stream: confirmed state at an offset, the
//! pending intents on top, and the optimistic state folded from both.
//!
//! `state = fold(reducer, confirmed, pending)`. When the server's events
//! arrive, the confirmed state advances, this client's intents that they
//! confirm leave the pending list, and the rest are re-applied on top
//! (rebase). A rejected intent is dropped and the state recomputed.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::error::CoreError;

use crate::reducer::{Meta, Reducer};
use crate::types::{ClientId, Event, Offset, OutboxEntry, Seq, StreamName};

/// Identifies a dispatched intent inside one replica before (and after) it
/// has its seq.
pub type LocalId = u64;

/// An intent that the server has not confirmed yet.
#[derive(Clone, Debug)]
pub struct Pending<A> {
    /// Identity inside this replica.
    pub local_id: LocalId,
    /// The seq, once allocated (`None` while its outbox write is in flight).
    pub seq: Option<Seq>,
    /// The payload as sent.
    pub payload: Vec<u8>,
    /// The decoded payload; `None` when it does not decode (it is still
    /// sent, and every replica skips it alike once it is confirmed).
    pub action: Option<A>,
    /// Dispatched through this replica (or found in storage when it
    /// opened), as opposed to adopted later from another tab's outbox.
    pub own: bool,
    /// Discarded by the app: left out of the optimistic state, and
    /// withdrawn instead of pushed (see [`crate::SyncClient::discard`]).
    pub discarded: bool,
    /// Where the server said it appended the intent, while its event has
    /// not reached this replica (an `Ack` ahead of the events): a
    /// snapshot at or past it holds the intent.
    pub acked: Option<Offset>,
    /// The confirmed offset when it was dispatched (its `meta.seen`).
    pub seen: Offset,
    /// The dispatching device's clock then (its `meta.time_ms` while
    /// pending).
    pub time_ms: u64,
    /// Whether its last optimistic fold read its meta
    /// ([`Reducer::read_meta`]): then its confirmation folds it again.
    pub read_meta: bool,
    /// The schema version it was made under (its `action` is upcast to
    /// the reducer's).
    pub schema: u32,
    /// When it stops being worth sending (ms since the Unix epoch; 0:
    /// never), see [`crate::SyncClient::expire`].
    pub expires_ms: u64,
    /// Its time-to-live ran out before it was pushed: left out of the
    /// optimistic state and withdrawn (`EXPIRED`) instead of pushed.
    pub expired: bool,
}

impl<A> Pending<A> {
    /// Left out of the optimistic state and withdrawn instead of pushed:
    /// discarded by the app, or expired.
    pub fn withdrawn(&self) -> bool {
        self.discarded || self.expired
    }
}

/// What applying a batch of server events did.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Applied {
    /// The confirmed offset after the batch.
    pub offset: Offset,
    /// This client's seqs that the batch confirmed (remove them from the outbox).
    pub confirmed: Vec<Seq>,
    /// Whether the optimistic state changed (false when the batch only
    /// confirmed this client's own pending intents, in order).
    pub state_changed: bool,
    /// Events whose payload did not decode or that the reducer refused;
    /// the state is unchanged by each of them, on every replica.
    pub reducer_errors: Vec<(Offset, String)>,
}

/// See [`Replica::own_pending_count`] and [`Replica::writing_count`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Counts {
    own: usize,
    writing: usize,
}

impl Counts {
    /// What `p` adds to the counts.
    fn of<A>(p: &Pending<A>) -> Counts {
        let own = p.own && !p.withdrawn();
        Counts {
            own: usize::from(own),
            writing: usize::from(own && p.seq.is_none()),
        }
    }

    fn add(&mut self, c: Counts) {
        self.own += c.own;
        self.writing += c.writing;
    }

    fn sub(&mut self, c: Counts) {
        self.own -= c.own;
        self.writing -= c.writing;
    }
}

/// A client's replica of one stream.
pub struct Replica<R: Reducer> {
    stream: StreamName,
    client_id: ClientId,
    reducer: R,
    confirmed: R::State,
    offset: Offset,
    pending: Vec<Pending<R::Action>>,
    state: R::State,
    next_local: LocalId,
    next_seq: Seq,
    subject: Option<String>,
    /// How many pending intents count as this replica's own and are not
    /// discarded (what a status shows as pending), and how many of those
    /// have no seq yet: kept as `pending` changes, so a status costs
    /// nothing per pending intent.
    counts: Counts,
    /// Some intent with a time-to-live has been pending here: until then
    /// [`Replica::next_expiry`] answers without walking the pending list
    /// (an adapter asks after every change).
    expiring: bool,
}

impl<R: Reducer> Replica<R> {
    /// A replica at offset 0 with `initial` state and no pending intents.
    pub fn new(stream: StreamName, client_id: ClientId, reducer: R, initial: R::State) -> Self {
        Self::restore(
            stream,
            client_id,
            reducer,
            initial,
            Offset::ZERO,
            Seq::FIRST,
        )
    }

    /// A replica restored from storage: `confirmed` is the state at
    /// `offset` (a snapshot, with later stored events applied through
    /// [`Replica::apply_events`]); `next_seq` is the next seq to allocate.
    /// Add the stored outbox with [`Replica::adopt`].
    pub fn restore(
        stream: StreamName,
        client_id: ClientId,
        reducer: R,
        confirmed: R::State,
        offset: Offset,
        next_seq: Seq,
    ) -> Self {
        Replica {
            stream,
            client_id,
            reducer,
            state: confirmed.clone(),
            confirmed,
            offset,
            pending: Vec::new(),
            next_local: 1,
            next_seq,
            subject: None,
            counts: Counts::default(),
            expiring: false,
        }
    }

    /// Who this device believes it is (its token's `sub`): the subject its
    /// pending intents are folded with. The server's events carry the
    /// subject it verified. Pending intents are re-applied.
    pub fn set_subject(&mut self, subject: Option<String>) {
        if self.subject != subject {
            self.subject = subject;
            self.recompute();
        }
    }

    /// See [`Replica::set_subject`].
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The meta a pending intent is folded with: its local values.
    fn pending_meta<'a>(
        client_id: ClientId,
        subject: Option<&'a str>,
        p: &Pending<R::Action>,
    ) -> Meta<'a> {
        Meta {
            offset: None,
            client_id,
            subject,
            seq: None,
            time_ms: p.time_ms,
            seen: p.seen,
            schema: p.schema,
        }
    }

    /// The meta an intent dispatched now is folded with.
    fn dispatch_meta(&self, time_ms: u64, seen: Offset) -> Meta<'_> {
        Meta {
            offset: None,
            client_id: self.client_id,
            subject: self.subject.as_deref(),
            seq: None,
            time_ms,
            seen,
            schema: self.reducer.schema_version(),
        }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    /// This client's id.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// The optimistic state: confirmed state with pending intents on top.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// The state at the confirmed offset.
    pub fn confirmed_state(&self) -> &R::State {
        &self.confirmed
    }

    /// The last offset applied.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// Pending intents in the order they are folded.
    pub fn pending(&self) -> &[Pending<R::Action>] {
        &self.pending
    }

    /// The seq [`Replica::dispatch`] will allocate next.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// Moves the seq counter forward (never back), e.g. after another tab
    /// of the same client allocated seqs.
    pub fn bump_next_seq(&mut self, at_least: Seq) {
        if at_least > self.next_seq {
            self.next_seq = at_least;
        }
    }

    /// The reducer.
    pub fn reducer(&self) -> &R {
        &self.reducer
    }

    /// Applies `payload` optimistically and allocates its seq from this
    /// replica's counter. Returns the new pending intent's seq. A payload
    /// that does not decode, or that the reducer refuses, is not added and
    /// the state is unchanged. `time_ms` is this device's clock now.
    pub fn dispatch(&mut self, payload: Vec<u8>, time_ms: u64) -> Result<Seq, CoreError> {
        let local = self.dispatch_unassigned(payload, time_ms)?;
        let seq = self.next_seq;
        self.assign_seq(local, seq);
        Ok(seq)
    }

    /// Applies `payload` optimistically without allocating a seq yet (the
    /// caller allocates it in durable storage, then calls
    /// [`Replica::assign_seq`]).
    pub fn dispatch_unassigned(
        &mut self,
        payload: Vec<u8>,
        time_ms: u64,
    ) -> Result<LocalId, CoreError> {
        let action = self
            .reducer
            .decode(&payload)
            .map_err(|e| CoreError::Reducer { message: e.0 })?;
        self.dispatch_decoded(payload, action, time_ms)
    }

    /// [`Replica::dispatch_unassigned`] for a caller that already holds the
    /// decoded action (e.g. it just parsed the payload text it made), so the
    /// payload is not decoded a second time. `action` must be what
    /// [`Reducer::decode`] gives for `payload`: rebases and other replicas
    /// use the decoded payload.
    pub fn dispatch_decoded(
        &mut self,
        payload: Vec<u8>,
        action: R::Action,
        time_ms: u64,
    ) -> Result<LocalId, CoreError> {
        let seen = self.offset;
        let next = self
            .reducer
            .reduce_meta(&self.state, &action, &self.dispatch_meta(time_ms, seen))
            .map_err(|e| CoreError::Reducer { message: e.0 })?;
        let read = self.reducer.read_meta();
        self.state = next;
        Ok(self.push_pending(payload, action, seen, time_ms, read))
    }

    /// Records a pending intent whose optimistic fold the caller already
    /// ran: `next` must be `reduce(state(), action)`, computed against the
    /// state this replica holds now (a JS adapter folds a burst of
    /// dispatches itself and hands them over in one call). With `next` =
    /// `None` the replica folds it here; a reducer that refuses it then
    /// leaves the state as it is, as in a rebase — the intent is kept
    /// either way, because the caller has already told its user it was
    /// dispatched. `action` must be what [`Reducer::decode`] gives for
    /// `payload`; `seen` and `time_ms` the meta the caller folded it with
    /// (see [`Meta`]: pending, `seen` the confirmed offset it knew), and
    /// with `next`, whether that fold read the meta.
    pub fn dispatch_folded(
        &mut self,
        payload: Vec<u8>,
        action: R::Action,
        next: Option<(R::State, bool)>,
        seen: Offset,
        time_ms: u64,
    ) -> LocalId {
        let (next, read) = match next {
            Some((next, read)) => (Some(next), read),
            None => {
                let next = self
                    .reducer
                    .reduce_meta(&self.state, &action, &self.dispatch_meta(time_ms, seen))
                    .ok();
                (next, self.reducer.read_meta())
            }
        };
        if let Some(next) = next {
            self.state = next;
        }
        self.push_pending(payload, action, seen, time_ms, read)
    }

    /// Appends a pending intent without a seq yet (the state is the
    /// caller's business).
    fn push_pending(
        &mut self,
        payload: Vec<u8>,
        action: R::Action,
        seen: Offset,
        time_ms: u64,
        read_meta: bool,
    ) -> LocalId {
        let local_id = self.next_local;
        self.next_local += 1;
        self.pending.push(Pending {
            local_id,
            seq: None,
            payload,
            action: Some(action),
            own: true,
            discarded: false,
            acked: None,
            seen,
            time_ms,
            read_meta,
            schema: self.reducer.schema_version(),
            expires_ms: 0,
            expired: false,
        });
        self.counts.add(Counts { own: 1, writing: 1 });
        local_id
    }

    /// Gives a pending intent dispatched here a time-to-live: unless it
    /// is pushed by `expires_ms` (ms since the Unix epoch), it is
    /// withdrawn instead ([`crate::SyncClient::expire`]). Call it right
    /// after dispatching, before the intent's outbox entry is written
    /// (the entry keeps it, see [`crate::outbox::NewIntent`]).
    pub fn set_expiry(&mut self, local_id: LocalId, expires_ms: u64) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.local_id == local_id) {
            p.expires_ms = expires_ms;
            self.expiring |= expires_ms != 0;
        }
    }

    /// The earliest time-to-live of a pending intent that has not run out
    /// yet (ms since the Unix epoch): when to call
    /// [`crate::SyncClient::expire`] next.
    pub fn next_expiry(&self) -> Option<u64> {
        if !self.expiring {
            return None;
        }
        self.pending
            .iter()
            .filter(|p| p.expires_ms != 0 && !p.withdrawn())
            .map(|p| p.expires_ms)
            .min()
    }

    /// Marks the pending intent `seq` expired (left out of the optimistic
    /// state). Returns false when it is not pending or withdrawn already.
    pub(crate) fn mark_expired(&mut self, seq: Seq) -> bool {
        let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.seq == Some(seq) && !p.withdrawn())
        else {
            return false;
        };
        let before = Counts::of(p);
        p.expired = true;
        let after = Counts::of(p);
        self.counts.sub(before);
        self.counts.add(after);
        self.recompute();
        true
    }

    /// Gives a pending intent its seq. Returns false when no such pending
    /// intent exists (it was dropped meanwhile).
    ///
    /// If the intent was meanwhile adopted from storage under that seq (an
    /// outbox reload raced with the write), the two are one intent: the
    /// adopted copy stays and this one is dropped.
    pub fn assign_seq(&mut self, local_id: LocalId, seq: Seq) -> bool {
        self.bump_next_seq(seq.next());
        let Some(i) = self.pending.iter().position(|p| p.local_id == local_id) else {
            return false;
        };
        if let Some(j) = self.pending.iter().position(|p| p.seq == Some(seq)) {
            // The copy that stays counts as dispatched here.
            self.counts.sub(Counts::of(&self.pending[j]));
            self.pending[j].own = true;
            self.counts.add(Counts::of(&self.pending[j]));
            let gone = self.pending.remove(i);
            self.counts.sub(Counts::of(&gone));
            self.recompute();
        } else {
            self.counts.sub(Counts::of(&self.pending[i]));
            self.pending[i].seq = Some(seq);
            self.counts.add(Counts::of(&self.pending[i]));
        }
        true
    }

    /// Adds a stored outbox intent (after a restart, or written by another
    /// tab of this client) unless it is already pending. It goes before
    /// every pending intent with a higher or no seq, and the state is
    /// recomputed. Returns whether it was added.
    pub fn adopt(&mut self, entry: OutboxEntry) -> bool {
        self.adopt_as(entry, false)
    }

    /// [`Replica::adopt`], saying whether the intent counts as this
    /// replica's own (`own`: found in storage when the replica opened).
    /// The entry's `discarded` is not read here (see
    /// [`Replica::mark_discarded`]).
    pub fn adopt_as(&mut self, entry: OutboxEntry, own: bool) -> bool {
        let OutboxEntry {
            seq,
            payload,
            seen,
            time_ms,
            schema,
            expires_ms,
            ..
        } = entry;
        if self.pending.iter().any(|p| p.seq == Some(seq)) {
            return false;
        }
        self.bump_next_seq(seq.next());
        self.expiring |= expires_ms != 0;
        // An intent that does not decode is kept: it must still reach the
        // server (and every replica then skips it alike). One made under an
        // older schema version is folded upcast.
        let action = self.reducer.decode_at(&payload, schema).ok();
        let at = self
            .pending
            .iter()
            .position(|p| p.seq.is_none_or(|s| s > seq))
            .unwrap_or(self.pending.len());
        let local_id = self.next_local;
        self.next_local += 1;
        self.pending.insert(
            at,
            Pending {
                local_id,
                seq: Some(seq),
                payload,
                action,
                own,
                discarded: false,
                acked: None,
                seen,
                time_ms,
                // Set by the recompute below.
                read_meta: true,
                schema,
                expires_ms,
                expired: false,
            },
        );
        self.counts.add(Counts::of(&self.pending[at]));
        self.recompute();
        true
    }

    /// Applies a batch of the server's events: they must continue exactly
    /// at `offset() + 1` and be dense; otherwise the whole batch is refused
    /// with `OFFSET_GAP` / `OFFSET_REPEAT` and nothing changes.
    pub fn apply_events(&mut self, events: &[Event]) -> Result<Applied, CoreError> {
        let mut expect = self.offset.next();
        for e in events {
            if e.offset < expect {
                return Err(CoreError::OffsetRepeat {
                    stream: self.stream.to_string(),
                    have: self.offset.0,
                    got: e.offset.0,
                });
            }
            if e.offset > expect {
                return Err(CoreError::OffsetGap {
                    stream: self.stream.to_string(),
                    have: self.offset.0,
                    expected: expect.0,
                    got: e.offset.0,
                });
            }
            expect = expect.next();
        }
        // An event of a newer app than this one: nothing of the batch is
        // applied (this reducer would misread it), see
        // `CoreError::SchemaTooNew`.
        let supported = self.reducer.schema_version();
        if let Some(e) = events.iter().find(|e| e.schema > supported) {
            return Err(CoreError::SchemaTooNew {
                what: alloc::format!(
                    "the event at offset {} of stream {}",
                    e.offset.0,
                    self.stream
                ),
                got: e.schema,
                supported,
            });
        }
        let mut applied = Applied {
            offset: self.offset,
            ..Applied::default()
        };
        if events.is_empty() {
            return Ok(applied);
        }
        // Fast path: the batch is exactly our own oldest pending intents, in
        // order, none of them discarded. Then the optimistic state already
        // holds them and stays the same value (and the same object, for
        // callers that compare identity). A discarded one the server took
        // anyway is not in the optimistic state, and one whose fold read
        // its (local) meta is folded with the server's: both are recomputed.
        let own_prefix = events.len() <= self.pending.len()
            && events.iter().zip(&self.pending).all(|(e, p)| {
                e.client_id == self.client_id
                    && p.seq == Some(e.seq)
                    && p.payload == e.payload
                    && !p.withdrawn()
                    && !p.read_meta
            });
        let folded = self.reducer.fold_events(&self.confirmed, events);
        if let Some(next) = folded.state {
            self.confirmed = next;
        }
        for (i, err) in folded.errors {
            applied.reducer_errors.push((events[i].offset, err.0));
        }
        for e in events {
            self.offset = e.offset;
            if e.client_id == self.client_id {
                if let Some(i) = self.pending.iter().position(|p| p.seq == Some(e.seq)) {
                    let p = self.pending.remove(i);
                    self.counts.sub(Counts::of(&p));
                }
                applied.confirmed.push(e.seq);
            }
        }
        applied.offset = self.offset;
        if own_prefix && applied.reducer_errors.is_empty() {
            applied.state_changed = false;
        } else {
            self.recompute();
            applied.state_changed = true;
        }
        Ok(applied)
    }

    /// Drops the pending intent with `seq` (rejected by the server, or found
    /// confirmed another way) and recomputes the state. Returns it, or
    /// `None` when no such intent is pending.
    pub fn remove_pending(&mut self, seq: Seq) -> Option<Pending<R::Action>> {
        let i = self.pending.iter().position(|p| p.seq == Some(seq))?;
        let p = self.pending.remove(i);
        self.counts.sub(Counts::of(&p));
        self.recompute();
        Some(p)
    }

    /// Keeps only the pending intents with a seq that `stored` (the seqs
    /// storage's outbox holds, ascending, read after the confirmed events up to
    /// storage's offset were applied) still holds, and those still waiting
    /// for their seq. One storage no longer holds was settled by the tab
    /// that holds the connection: confirmed (in a snapshot it stored) or
    /// refused. Returns the seqs dropped.
    pub fn keep_stored(&mut self, stored: &[Seq]) -> Vec<Seq> {
        let mut gone = Vec::new();
        let counts = &mut self.counts;
        self.pending.retain(|p| match p.seq {
            Some(s) if stored.binary_search(&s).is_err() => {
                gone.push(s);
                counts.sub(Counts::of(p));
                false
            }
            _ => true,
        });
        if !gone.is_empty() {
            self.recompute();
        }
        gone
    }

    /// Records that the server appended the pending intent `seq` at
    /// `offset` (its event not applied here yet).
    pub fn mark_acked(&mut self, seq: Seq, offset: Offset) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.seq == Some(seq)) {
            p.acked = Some(offset);
        }
    }

    /// Takes the server's snapshot: `state` is the confirmed state at
    /// `offset` (ahead of this replica's). The pending intents the server
    /// acknowledged at or below `offset` are in it and leave; the others
    /// are folded on top. Returns the seqs that left (remove them from the
    /// outbox). A snapshot not ahead of this replica changes nothing.
    pub fn adopt_snapshot(&mut self, offset: Offset, state: R::State) -> Vec<Seq> {
        if offset <= self.offset {
            return Vec::new();
        }
        self.confirmed = state;
        self.offset = offset;
        let mut left = Vec::new();
        let counts = &mut self.counts;
        self.pending.retain(|p| {
            let held = p.acked.is_some_and(|a| a <= offset);
            if held {
                left.extend(p.seq);
                counts.sub(Counts::of(p));
            }
            !held
        });
        self.recompute();
        left
    }

    /// Marks the pending intent with `seq` as discarded and recomputes the
    /// state without it. Returns false when no such intent is pending, or
    /// it was discarded already.
    pub fn mark_discarded(&mut self, seq: Seq) -> bool {
        let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.seq == Some(seq) && !p.discarded)
        else {
            return false;
        };
        let before = Counts::of(p);
        p.discarded = true;
        let after = Counts::of(p);
        self.counts.sub(before);
        self.counts.add(after);
        self.recompute();
        true
    }

    /// How many pending intents count as this replica's own and are not
    /// discarded: `own_pending().count()`, without walking them.
    pub fn own_pending_count(&self) -> usize {
        self.counts.own
    }

    /// Of [`Replica::own_pending_count`], how many have no seq yet (their
    /// outbox write is under way).
    pub fn writing_count(&self) -> usize {
        self.counts.writing
    }

    /// Whether the kept counts equal the ones walking the pending intents
    /// gives (for tests: every change of `pending` must keep them).
    #[doc(hidden)]
    pub fn counts_hold(&self) -> bool {
        let mut c = Counts::default();
        for p in &self.pending {
            c.add(Counts::of(p));
        }
        c == self.counts
    }

    /// The pending intents that count as this replica's own and are not
    /// discarded (what a status shows as pending).
    pub fn own_pending(&self) -> impl Iterator<Item = &Pending<R::Action>> {
        self.pending.iter().filter(|p| p.own && !p.withdrawn())
    }

    /// Forgets the confirmed history for a new epoch: the state restarts
    /// from `initial` at offset 0 and the pending intents with a seq are
    /// replaced by `outbox`, the stored outbox in the new epoch's
    /// numbering (see `renumber` in the `outbox` module), which holds every
    /// tab's intents. This replica's own intents are found in it by
    /// payload, in order, and stay its own; one the app discarded here but
    /// not marked there stays discarded, and its new seq is returned so
    /// the mark can be stored. Own intents not in `outbox` were settled by
    /// another tab. Intents still waiting for their seq stay, after the
    /// others.
    pub fn reset_to(&mut self, initial: R::State, outbox: Vec<OutboxEntry>) -> Vec<Seq> {
        self.confirmed = initial;
        self.offset = Offset::ZERO;
        let old = core::mem::take(&mut self.pending);
        let (with_seq, waiting): (Vec<_>, Vec<_>) = old.into_iter().partition(|p| p.seq.is_some());
        let mut own = with_seq.into_iter().filter(|p| p.own).peekable();
        let mut rediscard = Vec::new();
        self.next_seq = Seq::FIRST;
        for e in outbox {
            let mine = own.peek().is_some_and(|p| p.payload == e.payload);
            let mut discarded = e.discarded;
            if mine {
                if let Some(p) = own.next() {
                    if p.discarded && !e.discarded {
                        discarded = true;
                        rediscard.push(e.seq);
                    }
                }
            }
            self.next_seq = self.next_seq.max(e.seq.next());
            let action = self.reducer.decode_at(&e.payload, e.schema).ok();
            self.expiring |= e.expires_ms != 0;
            let local_id = self.next_local;
            self.next_local += 1;
            self.pending.push(Pending {
                local_id,
                seq: Some(e.seq),
                payload: e.payload,
                action,
                own: mine,
                discarded,
                acked: None,
                seen: e.seen,
                time_ms: e.time_ms,
                read_meta: true,
                schema: e.schema,
                expires_ms: e.expires_ms,
                expired: false,
            });
        }
        self.pending.extend(waiting);
        self.counts = Counts::default();
        for p in &self.pending {
            self.counts.add(Counts::of(p));
        }
        self.recompute();
        rediscard
    }

    /// Swaps the reducer. The confirmed state is kept as it is (as Redux
    /// does); the pending intents are re-applied with the new reducer.
    pub fn replace_reducer(&mut self, reducer: R) {
        self.reducer = reducer;
        self.recompute();
    }

    /// Replaces the confirmed state and offset wholesale (loading a snapshot).
    pub fn load_snapshot(&mut self, state: R::State, offset: Offset) {
        self.confirmed = state;
        self.offset = offset;
        self.recompute();
    }

    fn recompute(&mut self) {
        let mut state = self.confirmed.clone();
        let subject = self.subject.as_deref();
        for p in self.pending.iter_mut().filter(|p| !p.withdrawn()) {
            // A pending intent the reducer now refuses contributes nothing;
            // the server's order decides its fate.
            let meta = Self::pending_meta(self.client_id, subject, p);
            if let Some(result) = p
                .action
                .as_ref()
                .map(|a| self.reducer.reduce_meta(&state, a, &meta))
            {
                p.read_meta = self.reducer.read_meta();
                if let Ok(next) = result {
                    state = next;
                }
            }
        }
        self.state = state;
    }
}

/// A stored state made under schema version `schema`, for a reducer of
/// its own version: the state itself at the same version, migrated
/// ([`Reducer::migrate`]) from an older one, or `None` when the reducer
/// does not migrate (then the state is rebuilt from the events).
/// `what` names the state in errors. A state of a newer version is
/// `SCHEMA_TOO_NEW` (a newer app stored it); a migration that fails is
/// `REDUCER`.
pub fn upgrade_state<R: Reducer>(
    reducer: &R,
    state: R::State,
    schema: u32,
    what: &str,
) -> Result<Option<R::State>, CoreError> {
    let supported = reducer.schema_version();
    if schema == supported {
        return Ok(Some(state));
    }
    if schema > supported {
        return Err(CoreError::SchemaTooNew {
            what: what.to_string(),
            got: schema,
            supported,
        });
    }
    match reducer.migrate(state, schema) {
        None => Ok(None),
        Some(Ok(state)) => Ok(Some(state)),
        Some(Err(e)) => Err(CoreError::Reducer {
            message: alloc::format!("migrating {what} from schema version {schema}: {e}"),
        }),
    }
}

impl<R: Reducer> core::fmt::Debug for Replica<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replica")
            .field("stream", &self.stream.to_string())
            .field("offset", &self.offset)
            .field("pending", &self.pending.len())
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reducer::ReduceError;
    use alloc::vec;

    /// State: the list of payloads folded, in order. Payload "bad" is refused.
    struct ListReducer;
    impl Reducer for ListReducer {
        type State = Vec<String>;
        type Action = String;
        fn decode(&self, payload: &[u8]) -> Result<String, ReduceError> {
            core::str::from_utf8(payload)
                .map(|s| s.to_string())
                .map_err(|_| "not utf-8".into())
        }
        fn reduce(&self, state: &Vec<String>, a: &String) -> Result<Vec<String>, ReduceError> {
            if a == "bad" {
                return Err("bad action".into());
            }
            let mut s = state.clone();
            s.push(a.clone());
            Ok(s)
        }
    }

    const ME: ClientId = ClientId([1; 16]);
    const OTHER: ClientId = ClientId([2; 16]);

    fn replica() -> Replica<ListReducer> {
        Replica::new(StreamName::new("s").unwrap(), ME, ListReducer, vec![])
    }

    fn ev(offset: u64, client: ClientId, seq: u64, p: &str) -> Event {
        Event {
            schema: 1,
            subject: None,
            seen: crate::types::Offset::ZERO,
            offset: Offset(offset),
            client_id: client,
            seq: Seq::new(seq).unwrap(),
            time_ms: 0,
            payload: p.as_bytes().to_vec(),
        }
    }

    #[test]
    fn optimistic_then_confirmed_keeps_state() {
        let mut r = replica();
        assert_eq!(r.dispatch(b"a".to_vec(), 0).unwrap().get(), 1);
        assert_eq!(r.dispatch(b"b".to_vec(), 0).unwrap().get(), 2);
        assert_eq!(r.state(), &vec!["a", "b"]);
        let applied = r.apply_events(&[ev(1, ME, 1, "a")]).unwrap();
        assert!(!applied.state_changed);
        assert_eq!(applied.confirmed, vec![Seq::FIRST]);
        assert_eq!(r.confirmed_state(), &vec!["a"]);
        assert_eq!(r.state(), &vec!["a", "b"]);
        assert_eq!(r.pending().len(), 1);
    }

    #[test]
    fn folded_dispatch_takes_the_callers_state_and_keeps_refused_intents() {
        let mut r = replica();
        let a = r.dispatch_folded(
            b"a".to_vec(),
            "a".into(),
            Some((vec!["a".into()], false)),
            crate::types::Offset::ZERO,
            0,
        );
        assert_eq!(r.state(), &vec!["a"]);
        // Folded here: a refused action leaves the state, the intent stays.
        let bad = r.dispatch_folded(
            b"bad".to_vec(),
            "bad".into(),
            None,
            crate::types::Offset::ZERO,
            0,
        );
        let c = r.dispatch_folded(
            b"c".to_vec(),
            "c".into(),
            None,
            crate::types::Offset::ZERO,
            0,
        );
        assert_eq!(r.state(), &vec!["a", "c"]);
        assert_eq!(r.pending().len(), 3);
        assert!(a < bad && bad < c, "local ids in dispatch order");
        assert!(r.assign_seq(a, Seq::new(1).unwrap()));
        assert!(r.assign_seq(bad, Seq::new(2).unwrap()));
        assert!(r.assign_seq(c, Seq::new(3).unwrap()));
        // A remote event rebases them like any pending intent.
        r.apply_events(&[ev(1, OTHER, 1, "x")]).unwrap();
        assert_eq!(r.state(), &vec!["x", "a", "c"]);
    }

    #[test]
    fn rebase_puts_remote_events_under_pending() {
        let mut r = replica();
        r.dispatch(b"mine".to_vec(), 0).unwrap();
        let applied = r.apply_events(&[ev(1, OTHER, 1, "theirs")]).unwrap();
        assert!(applied.state_changed);
        assert_eq!(r.state(), &vec!["theirs", "mine"]);
        r.apply_events(&[ev(2, ME, 1, "mine")]).unwrap();
        assert_eq!(r.state(), &vec!["theirs", "mine"]);
        assert!(r.pending().is_empty());
    }

    #[test]
    fn gaps_and_repeats_are_refused_whole() {
        let mut r = replica();
        r.apply_events(&[ev(1, OTHER, 1, "x")]).unwrap();
        let e = r
            .apply_events(&[ev(2, OTHER, 2, "y"), ev(4, OTHER, 3, "z")])
            .unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::OffsetGap);
        let e = r.apply_events(&[ev(1, OTHER, 1, "x")]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::OffsetRepeat);
        assert_eq!(r.offset(), Offset(1));
        assert_eq!(r.state(), &vec!["x"]);
    }

    #[test]
    fn reject_drops_and_recomputes() {
        let mut r = replica();
        r.dispatch(b"a".to_vec(), 0).unwrap();
        r.dispatch(b"b".to_vec(), 0).unwrap();
        let p = r.remove_pending(Seq::FIRST).unwrap();
        assert_eq!(p.payload, b"a");
        assert_eq!(r.state(), &vec!["b"]);
        assert!(r.remove_pending(Seq::FIRST).is_none());
    }

    #[test]
    fn refused_dispatch_changes_nothing() {
        let mut r = replica();
        let e = r.dispatch(b"bad".to_vec(), 0).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Reducer);
        assert!(r.pending().is_empty());
        assert_eq!(r.next_seq(), Seq::FIRST);
    }

    #[test]
    fn refused_event_is_skipped_deterministically() {
        let mut r = replica();
        let applied = r
            .apply_events(&[ev(1, OTHER, 1, "bad"), ev(2, OTHER, 2, "ok")])
            .unwrap();
        assert_eq!(applied.reducer_errors.len(), 1);
        assert_eq!(r.offset(), Offset(2));
        assert_eq!(r.state(), &vec!["ok"]);
    }

    #[test]
    fn adopt_orders_by_seq_and_skips_known() {
        let mut r = replica();
        let l = r.dispatch_unassigned(b"late".to_vec(), 0).unwrap();
        assert!(r.adopt(OutboxEntry::new(Seq::new(2).unwrap(), b"two".to_vec())));
        assert!(r.adopt(OutboxEntry::new(Seq::new(1).unwrap(), b"one".to_vec())));
        assert!(!r.adopt(OutboxEntry::new(Seq::new(1).unwrap(), b"one".to_vec())));
        assert_eq!(r.next_seq().get(), 3);
        assert!(r.assign_seq(l, Seq::new(3).unwrap()));
        assert_eq!(r.state(), &vec!["one", "two", "late"]);
    }

    #[test]
    fn reset_to_takes_the_stored_outbox_and_finds_its_own_by_payload() {
        let mut r = replica();
        r.apply_events(&[ev(1, OTHER, 1, "x")]).unwrap();
        // Own intents at 7 and 9 (9 discarded here), another tab's at 8.
        r.adopt_as(OutboxEntry::new(Seq::new(7).unwrap(), b"a".to_vec()), true);
        r.adopt_as(OutboxEntry::new(Seq::new(8).unwrap(), b"o".to_vec()), false);
        r.adopt_as(OutboxEntry::new(Seq::new(9).unwrap(), b"b".to_vec()), true);
        assert!(r.mark_discarded(Seq::new(9).unwrap()));
        let waiting = r.dispatch_unassigned(b"w".to_vec(), 0).unwrap();
        let e = |seq: u64, p: &str| OutboxEntry {
            schema: 1,
            expires_ms: 0,
            seen: crate::types::Offset::ZERO,
            time_ms: 0,
            seq: Seq::new(seq).unwrap(),
            payload: p.as_bytes().to_vec(),
            discarded: false,
        };
        // Storage renumbered them, and holds one more tab's intent.
        let rediscard = r.reset_to(vec![], vec![e(1, "a"), e(2, "o"), e(3, "b"), e(4, "z")]);
        assert_eq!(rediscard, vec![Seq::new(3).unwrap()]);
        assert_eq!(r.offset(), Offset::ZERO);
        assert_eq!(r.state(), &vec!["a", "o", "z", "w"]);
        let own: Vec<_> = r.own_pending().map(|p| p.payload.clone()).collect();
        assert_eq!(own, vec![b"a".to_vec(), b"w".to_vec()]);
        assert_eq!(r.next_seq().get(), 5);
        assert!(r.assign_seq(waiting, Seq::new(5).unwrap()));
    }

    /// State: what each fold's meta said, as text.
    struct MetaReducer;
    impl Reducer for MetaReducer {
        type State = Vec<String>;
        type Action = ();
        fn decode(&self, _: &[u8]) -> Result<(), ReduceError> {
            Ok(())
        }
        fn reduce(&self, _: &Vec<String>, _: &()) -> Result<Vec<String>, ReduceError> {
            Err("reduce_meta is the one called".into())
        }
        fn reduce_meta(
            &self,
            s: &Vec<String>,
            _: &(),
            m: &Meta<'_>,
        ) -> Result<Vec<String>, ReduceError> {
            let mut next = s.clone();
            next.push(alloc::format!(
                "{:?} {} {:?} {:?} {} {}",
                m.offset.map(|o| o.0),
                m.client_id.0[0],
                m.subject,
                m.seq.map(Seq::get),
                m.time_ms,
                m.seen.0
            ));
            Ok(next)
        }
        fn read_meta(&self) -> bool {
            true
        }
    }

    #[test]
    fn pending_intents_fold_with_local_meta_and_events_with_theirs() {
        let me = ClientId([1; 16]);
        let mut r = Replica::new(StreamName::new("s").unwrap(), me, MetaReducer, Vec::new());
        r.set_subject(Some("ann".into()));
        r.dispatch(b"x".to_vec(), 1000).unwrap();
        assert_eq!(
            r.state(),
            &vec!["None 1 Some(\"ann\") None 1000 0".to_string()]
        );
        let mut other = ev(1, ClientId([2; 16]), 5, "y");
        other.subject = Some("bob".into());
        other.time_ms = 7;
        r.apply_events(&[other]).unwrap();
        // The pending one is re-applied on top with the seen it had.
        assert_eq!(
            r.state(),
            &vec![
                "Some(1) 2 Some(\"bob\") Some(5) 7 0".to_string(),
                "None 1 Some(\"ann\") None 1000 0".to_string(),
            ]
        );
        r.dispatch(b"z".to_vec(), 2000).unwrap();
        let mut mine = ev(2, me, 1, "x");
        mine.subject = Some("ann".into());
        mine.time_ms = 9;
        let applied = r.apply_events(&[mine]).unwrap();
        assert!(
            applied.state_changed,
            "its own intent, folded with local meta, is folded again with the server's"
        );
        assert_eq!(r.state()[1], r.confirmed_state()[1]);
        assert_eq!(
            r.confirmed_state()[1],
            "Some(2) 1 Some(\"ann\") Some(1) 9 0",
            "a confirmed event folds with the server's values"
        );
        assert_eq!(
            r.state()[2],
            "None 1 Some(\"ann\") None 2000 1",
            "seen 1 when dispatched"
        );
        // Another subject re-applies the pending intents with it.
        r.set_subject(None);
        assert_eq!(r.state()[2], "None 1 None None 2000 1");
    }
}
