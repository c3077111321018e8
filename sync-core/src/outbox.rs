//! The client's storage queue as a pure state machine: which storage jobs a
//! client needs, in which order, which of them one transaction may merge,
//! and what their results mean. An adapter (the browser's IndexedDB, a
//! test's map, a native client's files) only carries out each [`Work`] in
//! one transaction and hands back what storage answered as a [`Done`].
//!
//! The rules it holds, which exactly-once rests on:
//! - **Seqs come from storage.** A dispatched intent waits for a
//!   [`Work::Alloc`], one transaction that takes the next seqs from the
//!   stored counter (shared by every tab of a client) and writes the outbox
//!   entries. Other tabs' entries found below the new seqs are adopted
//!   first, so they fold in seq order.
//! - **Numbering belongs to an epoch.** When the server's log has another
//!   epoch, the pending intents are renumbered from seq 1. Storage does it,
//!   once for all tabs: [`Work::Reset`] renumbers the stored outbox (every
//!   tab's entries, in seq order — see [`renumber`]) unless another tab has
//!   already reset to that epoch; every tab then takes the stored outbox as
//!   its pending list ([`SyncClient::reset_to`]). A job queued under one
//!   epoch's numbering is never carried out under another's: storage
//!   answers [`Done::Stale`] (storage counts its resets: the numbering's
//!   generation) and the tab first takes over storage's numbering; a job
//!   queued before this tab's own reset is dropped. A connection pushes
//!   nothing until the outbox has been read under the current numbering
//!   ([`SyncClient::outbox_checked`]).
//! - **A seq the server expects but the outbox does not hold** (an
//!   unreadable record) is reported as [`Finished::missing`]: pushing on
//!   would only earn the same `Gap` again.
//! - **Snapshots** of the confirmed state are written with the events every
//!   `snapshot_every` offsets.
//! - **One tab connects, the others follow storage.** Tabs of one storage
//!   may elect one of them to hold the connection (the leader); the others
//!   are followers ([`Outbox::set_follower`]): they connect to nothing and
//!   take the confirmed events, the snapshot and the outbox the leader
//!   stored, in one read ([`Work::Follow`]), whenever a tab says it wrote
//!   ([`Outbox::stored_elsewhere`], [`Outbox::written_elsewhere`]). Storage
//!   stays the source of truth; a notice is only a hint to read it, so a
//!   lost notice delays a follower until the next one, and a leader that
//!   loses its role (or never knew it had) writes nothing a follower could
//!   misread: every write is the log's own events, by offset.
//! - **A tab that opens tells the others**, as after a write of its own
//!   ([`Finished::tell_tabs`]): the tab before it may have died between a
//!   write and its notice (a crash, a page closed at that moment) — an
//!   intent the leader would push only at its next connection, events or
//!   an epoch the followers would read only at the leader's next write.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::client::{Effect, Phase, SyncClient};
use crate::reducer::Reducer;
use crate::replica::LocalId;
pub use crate::types::OutboxEntry;
use crate::types::{Epoch, Event, Offset, Seq};

/// The outbox after an epoch reset: the same entries in seq order,
/// numbered from seq 1, each with `seen` 0 (the offsets its user had seen
/// belong to the old log; in the new one, nothing was seen yet).
pub fn renumber(mut entries: Vec<OutboxEntry>) -> Vec<OutboxEntry> {
    crate::types::sort_by_seq(&mut entries, |e| e.seq);
    let mut next = Seq::FIRST;
    for e in &mut entries {
        e.seen = Offset::ZERO;
        e.seq = next;
        next = next.next();
    }
    entries
}

/// [`EventsWrite::is_stale`] of a write that brings `epoch`: for storage
/// that decides inside its transaction, with what it read there.
pub fn stale_write(
    epoch: Option<&Epoch>,
    under: u64,
    generation: u64,
    stored: Option<&Epoch>,
) -> bool {
    under != generation || matches!((stored, epoch), (Some(s), Some(e)) if s != e)
}

/// A storage job as queued.
#[derive(Clone, Debug)]
enum Job<S> {
    Alloc(LocalId, NewIntent),
    Write {
        write: EventsWrite<S>,
        under: u64,
    },
    /// Reset to `epoch`, renumbering only from `from` (see [`Work::Reset`]).
    Reset {
        epoch: Epoch,
        from: Option<Epoch>,
    },
    Reload {
        expected: Option<Seq>,
        under: u64,
    },
    Discard {
        seq: Seq,
        under: u64,
    },
    Follow {
        under: u64,
    },
}

impl<S> Job<S> {
    fn kind(&self) -> u8 {
        match self {
            Job::Alloc(..) => 0,
            Job::Write { .. } => 1,
            Job::Reset { .. } => 2,
            Job::Reload { .. } => 3,
            Job::Discard { .. } => 4,
            Job::Follow { .. } => 5,
        }
    }

    fn under(&self) -> Option<u64> {
        match self {
            Job::Write { under, .. }
            | Job::Reload { under, .. }
            | Job::Discard { under, .. }
            | Job::Follow { under } => Some(*under),
            Job::Alloc(..) | Job::Reset { .. } => None,
        }
    }
}

/// Confirmed events, outbox deletions, offset, snapshot and epoch, written
/// in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct EventsWrite<S> {
    /// Events to store (by offset; storing one twice is harmless).
    pub events: Vec<Event>,
    /// Outbox entries to delete.
    pub drop_seqs: Vec<Seq>,
    /// The stored offset moves up to this (never down).
    pub offset: Offset,
    /// A snapshot of the confirmed state at an offset; events up to it may go.
    pub snapshot: Option<(Offset, S)>,
    /// The epoch to store (first contact).
    pub epoch: Option<Epoch>,
}

impl<S> EventsWrite<S> {
    /// Whether storage must refuse this write queued under numbering
    /// `under`: storage has another numbering (`generation`), or it stores
    /// an epoch other than the one this write brings (a tab that had never
    /// heard of an epoch must not store one over another tab's reset).
    pub fn is_stale(&self, under: u64, generation: u64, stored: Option<&Epoch>) -> bool {
        stale_write(self.epoch.as_ref(), under, generation, stored)
    }

    fn empty() -> Self {
        EventsWrite {
            events: Vec::new(),
            drop_seqs: Vec::new(),
            offset: Offset::ZERO,
            snapshot: None,
            epoch: None,
        }
    }
}

/// An intent to store in a [`Work::Alloc`]: what its outbox entry holds
/// besides its seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewIntent {
    /// The payload.
    pub payload: Vec<u8>,
    /// The confirmed offset when it was dispatched.
    pub seen: Offset,
    /// The device's clock then, ms since the Unix epoch.
    pub time_ms: u64,
    /// The schema version it was made under.
    pub schema: u32,
    /// When it stops being worth sending (0: never), see
    /// [`crate::Replica::set_expiry`].
    pub expires_ms: u64,
}

impl NewIntent {
    /// Its outbox entry under `seq`.
    pub fn entry(&self, seq: Seq) -> OutboxEntry {
        OutboxEntry {
            seq,
            payload: self.payload.clone(),
            discarded: false,
            seen: self.seen,
            time_ms: self.time_ms,
            schema: self.schema,
            expires_ms: self.expires_ms,
        }
    }
}

/// One storage transaction to carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Work<S> {
    /// Take `intents.len()` seqs from the stored counter (at least
    /// `floor`), write the entries, and read the entries other tabs wrote
    /// from `floor` up to the first new seq. Answer [`Done::Alloc`].
    Alloc {
        /// The intents, in dispatch order.
        intents: Vec<NewIntent>,
        /// The lowest seq this tab may take.
        floor: Seq,
        /// The numbering this tab uses (see [`Outbox::generation`]): when
        /// storage has another, take nothing and answer [`Done::Stale`].
        under: u64,
    },
    /// Write, unless [`EventsWrite::is_stale`]; then write nothing and
    /// answer [`Done::Stale`]. Otherwise [`Done::Written`].
    Write {
        /// What to write.
        write: EventsWrite<S>,
        /// The numbering its seqs and offsets use.
        under: u64,
    },
    /// The server's log has epoch `epoch`. If the stored epoch is
    /// already `epoch`, change nothing. If it is `from`: drop stored
    /// events and snapshots, [`renumber`] the stored outbox, store
    /// `epoch`, offset 0, the seq counter after the last entry, and count
    /// one more numbering. Either way answer [`Done::Reset`] with the
    /// outbox and the numbering as stored. Any other stored epoch (another
    /// tab moved storage on meanwhile): change nothing and answer
    /// [`Done::Stale`] — renumbering from 1 in an epoch whose seqs another
    /// tab has pushed already would reuse them.
    Reset {
        /// The new epoch.
        epoch: Epoch,
        /// The epoch this tab's numbering belongs to; `None` only follows
        /// storage (it never renumbers).
        from: Option<Epoch>,
    },
    /// Read the whole outbox: [`Done::Reload`] (or [`Done::Stale`] when
    /// storage has another numbering than `under`).
    Reload {
        /// The numbering this tab uses.
        under: u64,
    },
    /// Mark these entries discarded (or [`Done::Stale`], as for `Write`).
    Discard {
        /// Their seqs.
        seqs: Vec<Seq>,
        /// The numbering the seqs use.
        under: u64,
    },
    /// (A follower's.) Read what the leader stored, in one transaction:
    /// the stored offset and epoch, the snapshot when its offset is above
    /// `after` (as the state this tab's reducer folds, upgraded as at
    /// start-up), the stored events after `after` (after the snapshot,
    /// when it is returned) up to the stored offset, and the whole outbox:
    /// a [`Stored`] for [`Outbox::followed`] (or [`Done::Stale`] for
    /// [`Outbox::finish`] when storage has another numbering than
    /// `under`).
    Follow {
        /// This tab's confirmed offset.
        after: Offset,
        /// The numbering this tab uses.
        under: u64,
    },
}

/// What a [`Work::Follow`] read.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored<S> {
    /// The stored offset.
    pub offset: Offset,
    /// The stored epoch.
    pub epoch: Option<Epoch>,
    /// The stored snapshot's offset (whether or not it was returned).
    pub snapshot_offset: Offset,
    /// The snapshot, when it is ahead of `after`.
    pub snapshot: Option<(Offset, S)>,
    /// The events after `after` (or the snapshot), in offset order.
    pub events: Vec<Event>,
    /// The outbox, in seq order.
    pub outbox: Vec<OutboxEntry>,
}

/// What storage answered for one [`Work`].
#[derive(Clone, Debug, PartialEq)]
pub enum Done {
    /// Seqs taken: `first` and up; `others` are entries other tabs wrote
    /// from the floor up to `first`.
    Alloc {
        /// The first seq taken.
        first: Seq,
        /// Other tabs' entries below `first`.
        others: Vec<OutboxEntry>,
    },
    /// Written.
    Written,
    /// The outbox as read.
    Reload(Vec<OutboxEntry>),
    /// The outbox after the reset, and the stored numbering.
    Reset {
        /// The outbox, renumbered.
        entries: Vec<OutboxEntry>,
        /// The stored numbering.
        generation: u64,
    },
    /// Nothing done: storage has another numbering than the job's
    /// (another tab reset it to epoch `stored`).
    Stale {
        /// The stored epoch.
        stored: Option<Epoch>,
    },
}

/// What finishing a unit of work asks of the adapter.
#[derive(Debug, Default)]
pub struct Finished {
    /// Effects to carry out, in order (as [`Outbox::effect`] returns them:
    /// storage effects are queued already).
    pub effects: Vec<Effect>,
    /// The server expects this seq and no tab's outbox holds it: report it
    /// and drop the connection (pushing on would earn the same `Gap`).
    pub missing: Option<Seq>,
    /// Storage was reset under a ready connection (by another tab): drop
    /// the connection and connect again, so that the subscription starts
    /// over in the new epoch.
    pub reconnect: bool,
    /// This tab wrote what other tabs on the same storage show (its new
    /// intents with their seqs, a renumbered outbox, discard marks): tell
    /// them ([`Outbox::written_elsewhere`] is how they hear it).
    pub tell_tabs: bool,
    /// This tab stored confirmed events, a snapshot, an offset or outbox
    /// deletions: tell the followers ([`Outbox::stored_elsewhere`]).
    pub tell_followers: bool,
}

/// The storage queue of one tab (see the module docs).
#[derive(Debug)]
pub struct Outbox<S> {
    jobs: VecDeque<Job<S>>,
    snapshot_every: u64,
    snapshot_offset: Offset,
    generation: u64,
    follower: bool,
}

impl<S: Clone> Outbox<S> {
    /// An empty queue; `snapshot_offset` is the offset of the stored
    /// snapshot, one is written every `snapshot_every` offsets;
    /// `generation` is the stored numbering (how many epoch resets storage
    /// has seen), as read with the outbox.
    pub fn new(snapshot_offset: Offset, snapshot_every: u64, generation: u64) -> Self {
        Outbox {
            jobs: VecDeque::new(),
            snapshot_every: snapshot_every.max(1),
            snapshot_offset,
            generation,
            follower: false,
        }
    }

    /// Whether this tab follows another tab's connection through storage
    /// (see the module docs); a new queue leads (connects itself), as every
    /// tab does where tabs cannot elect one. A tab that starts to follow
    /// has dropped its connection first, or drops it now (a connection's
    /// events are applied as they come, a follower's as stored: never
    /// both, see [`SyncClient::follow_stored`]).
    pub fn set_follower(&mut self, follower: bool) {
        self.follower = follower;
        if follower {
            self.follow();
        }
    }

    /// This tab's connection dropped: a follower (a leader that lost its
    /// role while connected) reads what the leader stored meanwhile.
    pub fn disconnected(&mut self) {
        if self.follower {
            self.follow();
        }
    }

    /// Whether this tab follows (see [`Outbox::set_follower`]).
    pub fn is_follower(&self) -> bool {
        self.follower
    }

    /// Another tab stored confirmed events (its notice,
    /// [`Finished::tell_followers`]): a follower reads them; a tab with a
    /// connection of its own has them from it.
    pub fn stored_elsewhere(&mut self) {
        if self.follower {
            self.follow();
        }
    }

    /// Queues a [`Work::Follow`] unless one waits behind the work in
    /// flight already.
    fn follow(&mut self) {
        self.queue_once(Job::Follow {
            under: self.generation,
        });
    }

    /// How many jobs at the head one unit of work covers (the one in
    /// flight, when the queue is being carried out): a reset or a follow
    /// alone, else the neighbours of one kind.
    fn head_len(&self) -> usize {
        match self.jobs.front().map(Job::kind) {
            None => 0,
            Some(2 | 5) => 1,
            Some(k) => self.jobs.iter().take_while(|j| j.kind() == k).count(),
        }
    }

    /// Queues `job` unless one of its kind waits behind the work in flight
    /// already (that one covers any number of notices).
    fn queue_once(&mut self, job: Job<S>) {
        let kind = job.kind();
        let queued = self
            .jobs
            .iter()
            .skip(self.head_len())
            .any(|j| j.kind() == kind);
        if !queued {
            self.jobs.push_back(job);
        }
    }

    /// The numbering this tab's seqs use: how many epoch resets storage
    /// had seen when this tab last read it. Seqs of two numberings never
    /// mix: a job carries the one it was queued under.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Jobs waiting (merged jobs count one each).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Forgets every queued job (the store closed and storage refuses
    /// writes); returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.jobs.len();
        self.jobs.clear();
        n
    }

    /// Another tab on the same storage wrote its outbox (the adapter heard
    /// its notice, [`Finished::tell_tabs`]): read the outbox again, so this
    /// tab's state shows that tab's intents at once, online or offline
    /// (adopted, not its own). A read already queued behind the work in
    /// flight covers any number of notices.
    pub fn written_elsewhere(&mut self) {
        if self.follower {
            // The read of what the leader stored reads the outbox too.
            self.follow();
            return;
        }
        self.queue_once(Job::Reload {
            expected: None,
            under: self.generation,
        });
    }

    /// An intent was dispatched ([`crate::Replica::dispatch_unassigned`]):
    /// queue its seq allocation. `intent` holds the pending intent's
    /// payload and meta (see [`crate::Pending`]).
    pub fn dispatched(&mut self, local: LocalId, intent: NewIntent) {
        self.jobs.push_back(Job::Alloc(local, intent));
    }

    /// A connection opened: other tabs may have written intents, so the
    /// outbox is read again.
    pub fn connected<R: Reducer<State = S>>(&mut self, client: &SyncClient<R>) {
        let _ = client;
        self.jobs.push_back(Job::Reload {
            expected: None,
            under: self.generation,
        });
    }

    /// Takes one effect of `client`: storage effects become jobs (`None`
    /// is returned); every other effect is returned for the adapter, and
    /// so is [`Effect::EpochReset`], which the app is told of.
    pub fn effect<R: Reducer<State = S>>(
        &mut self,
        effect: Effect,
        client: &SyncClient<R>,
    ) -> Option<Effect> {
        let under = self.generation;
        match effect {
            Effect::PersistEvents {
                events,
                confirmed,
                offset,
            } => {
                let due = offset.0 >= self.snapshot_offset.0.saturating_add(self.snapshot_every);
                let snapshot = due.then(|| {
                    self.snapshot_offset = offset;
                    (offset, client.replica().confirmed_state().clone())
                });
                self.jobs.push_back(Job::Write {
                    write: EventsWrite {
                        events,
                        drop_seqs: confirmed,
                        offset,
                        snapshot,
                        epoch: None,
                    },
                    under,
                });
                None
            }
            Effect::DropFromOutbox(seq) => {
                let mut write = EventsWrite::empty();
                write.drop_seqs.push(seq);
                self.jobs.push_back(Job::Write { write, under });
                None
            }
            Effect::AdoptedSnapshot { offset, left } => {
                self.snapshot_offset = offset;
                let mut write = EventsWrite::empty();
                write.drop_seqs = left;
                write.offset = offset;
                write.snapshot = Some((offset, client.replica().confirmed_state().clone()));
                self.jobs.push_back(Job::Write { write, under });
                None
            }
            Effect::MarkDiscarded(seq) => {
                self.jobs.push_back(Job::Discard { seq, under });
                None
            }
            Effect::StoreEpoch(epoch) => {
                let queued = self.jobs.iter().any(
                    |j| matches!(j, Job::Write { write, .. } if write.epoch.as_ref() == Some(&epoch)),
                );
                if queued {
                    return None;
                }
                let mut write = EventsWrite::empty();
                write.epoch = Some(epoch);
                self.jobs.push_back(Job::Write { write, under });
                None
            }
            Effect::ReloadOutbox { expected } => {
                self.jobs.push_back(Job::Reload {
                    expected: Some(expected),
                    under,
                });
                None
            }
            Effect::EpochReset {
                ref epoch,
                ref previous,
            } => {
                // One reset to an epoch at a time (each connection of the
                // new epoch asks; the app is told once).
                if self
                    .jobs
                    .iter()
                    .any(|j| matches!(j, Job::Reset { epoch: e, .. } if e == epoch))
                {
                    return None;
                }
                self.snapshot_offset = Offset::ZERO;
                self.jobs.push_back(Job::Reset {
                    epoch: epoch.clone(),
                    from: Some(previous.clone()),
                });
                Some(effect)
            }
            other => Some(other),
        }
    }

    /// Drops jobs at the head queued under another numbering than this
    /// tab's now (its reset came after them).
    fn drop_stale(&mut self) {
        while let Some(under) = self.jobs.front().and_then(|j| j.under()) {
            if under == self.generation {
                break;
            }
            self.jobs.pop_front();
        }
    }

    /// The next unit of work: the jobs at the head of the queue that one
    /// transaction carries out together (neighbours of one kind), and how
    /// many jobs it covers (pass both to [`Outbox::finish`]).
    pub fn next<R: Reducer<State = S>>(
        &mut self,
        client: &SyncClient<R>,
    ) -> Option<(usize, Work<S>)> {
        self.drop_stale();
        let n = self.head_len();
        let first = self.jobs.front()?;
        let kind = first.kind();
        let head = self.jobs.range(..n);
        let under = self.generation;
        let work = match kind {
            0 => Work::Alloc {
                intents: head
                    .filter_map(|j| match j {
                        Job::Alloc(_, p) => Some(p.clone()),
                        _ => None,
                    })
                    .collect(),
                floor: client.replica().next_seq(),
                under,
            },
            1 => {
                let mut w = EventsWrite::empty();
                for j in head {
                    if let Job::Write { write, .. } = j {
                        w.events.extend(write.events.iter().cloned());
                        w.drop_seqs.extend(write.drop_seqs.iter().copied());
                        w.offset = w.offset.max(write.offset);
                        if write.snapshot.is_some() {
                            w.snapshot.clone_from(&write.snapshot);
                        }
                        if write.epoch.is_some() {
                            w.epoch.clone_from(&write.epoch);
                        }
                    }
                }
                Work::Write { write: w, under }
            }
            2 => match first {
                Job::Reset { epoch, from } => Work::Reset {
                    epoch: epoch.clone(),
                    from: from.clone(),
                },
                _ => return None,
            },
            3 => Work::Reload { under },
            // A follow queued before this tab took the connection reads
            // only the outbox now.
            5 if self.follower => Work::Follow {
                after: client.replica().offset(),
                under,
            },
            5 => Work::Reload { under },
            _ => Work::Discard {
                seqs: head
                    .filter_map(|j| match j {
                        Job::Discard { seq, .. } => Some(*seq),
                        _ => None,
                    })
                    .collect(),
                under,
            },
        };
        Some((n, work))
    }

    /// Storage carried out the `n` jobs of `work` and answered `done`:
    /// updates `client` and says what the adapter must do next.
    pub fn finish<R: Reducer<State = S>>(
        &mut self,
        n: usize,
        work: Work<S>,
        done: Done,
        client: &mut SyncClient<R>,
    ) -> Finished {
        let mut out = Finished {
            tell_tabs: matches!(
                (&work, &done),
                (
                    Work::Alloc { .. } | Work::Reset { .. } | Work::Discard { .. },
                    Done::Alloc { .. } | Done::Reset { .. } | Done::Written
                )
            ),
            tell_followers: matches!((&work, &done), (Work::Write { .. }, Done::Written)),
            ..Finished::default()
        };
        let n = n.min(self.jobs.len());
        // Popped rather than drained: the same, without a second copy of
        // the deque's drain machinery in the module.
        let taken: Vec<Job<S>> = (0..n).filter_map(|_| self.jobs.pop_front()).collect();
        let mut effects = Vec::new();
        match (work, done) {
            (_, Done::Stale { stored }) => {
                // Another tab reset storage to another epoch: nothing was
                // written. Take storage's numbering first. Allocations
                // still have to happen; what else was queued described
                // this tab's view from before, which the take-over
                // replaces (stored outbox, discards carried over).
                for j in taken.into_iter().rev() {
                    if matches!(j, Job::Alloc(..)) {
                        self.jobs.push_front(j);
                    }
                }
                self.take_over(stored);
            }
            (Work::Write { write, .. }, Done::Written) => {
                if let Some(epoch) = write.epoch {
                    effects.extend(client.epoch_stored(epoch));
                }
            }
            (Work::Alloc { .. }, Done::Alloc { first, others }) => {
                // Other tabs' intents hold the lower seqs: fold them in
                // first, then give ours their seqs, then push.
                for e in others {
                    effects.extend(client.adopt_as(e, false));
                }
                let mut seq = first;
                let before = client.replica().pending().len();
                for j in &taken {
                    if let Job::Alloc(local, _) = j {
                        client.replica_mut().assign_seq(*local, seq);
                        seq = seq.next();
                    }
                }
                // An intent adopted meanwhile under its seq is merged into
                // that copy, which recomputes the state; otherwise a seq
                // changes nothing a subscriber sees.
                if client.replica().pending().len() != before {
                    effects.push(Effect::StateChanged);
                }
                effects.extend(client.flush());
            }
            (
                Work::Reset { epoch, .. },
                Done::Reset {
                    entries,
                    generation,
                },
            ) => {
                self.snapshot_offset = Offset::ZERO;
                self.generation = generation;
                out.reconnect = client.phase() == Phase::Ready;
                let (fx, rediscard) = client.reset_to(epoch, entries);
                effects.extend(fx);
                for seq in rediscard {
                    effects.push(Effect::MarkDiscarded(seq));
                }
                if self.follower {
                    // What the leader stored in the new epoch so far.
                    self.follow();
                }
            }
            (Work::Reload { .. }, Done::Reload(entries)) => {
                let expected = taken.iter().find_map(|j| match j {
                    Job::Reload { expected, .. } => *expected,
                    _ => None,
                });
                for e in entries {
                    effects.extend(client.adopt_as(e, false));
                }
                let held = |s: Seq| client.replica().pending().iter().any(|p| p.seq == Some(s));
                match expected.filter(|s| !held(*s)) {
                    Some(seq) => out.missing = Some(seq),
                    None => effects.extend(client.outbox_checked()),
                }
            }
            _ => {}
        }
        for e in effects {
            if let Some(e) = self.effect(e, client) {
                out.effects.push(e);
            }
        }
        out
    }

    /// Storage carried out the [`Work::Follow`] `next` gave (its `n` jobs)
    /// and read `stored`: updates `client` with what the leader stored
    /// (see [`SyncClient::follow_stored`]) and says what the adapter must
    /// do next. A read under another numbering goes to
    /// [`Outbox::finish`] as [`Done::Stale`].
    pub fn followed<R: Reducer<State = S>>(
        &mut self,
        n: usize,
        stored: Stored<S>,
        client: &mut SyncClient<R>,
    ) -> Finished {
        let n = n.min(self.jobs.len());
        for _ in 0..n {
            self.jobs.pop_front();
        }
        if stored.snapshot_offset > self.snapshot_offset {
            self.snapshot_offset = stored.snapshot_offset;
        }
        if let (None, Some(epoch)) = (client.epoch(), stored.epoch.clone()) {
            client.epoch_known(epoch);
        }
        let mut out = Finished::default();
        for e in client.follow_stored(stored.snapshot, stored.events, stored.offset, stored.outbox)
        {
            if let Some(e) = self.effect(e, client) {
                out.effects.push(e);
            }
        }
        out
    }

    /// Storage has another epoch than this tab's numbering: reset to it
    /// before anything else (no write happens when it is already stored).
    fn take_over(&mut self, stored: Option<Epoch>) {
        if let Some(epoch) = stored {
            // One reset to it is enough: a later one would start over again.
            self.jobs
                .retain(|j| !matches!(j, Job::Reset { epoch: e, .. } if *e == epoch));
            self.snapshot_offset = Offset::ZERO;
            self.jobs.push_front(Job::Reset { epoch, from: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ServerMsg, PROTOCOL_VERSION};
    use crate::reducer::ReduceError;
    use crate::replica::Replica;
    use crate::types::{ClientId, StreamName};
    use crate::ClientMsg;

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
    }

    fn client(epoch: Option<&str>) -> SyncClient<Count> {
        let r = Replica::new(StreamName::new("s").unwrap(), ClientId([1; 16]), Count, 0);
        SyncClient::new(r, epoch.map(Epoch::from), 0)
    }

    fn welcome(epoch: &str) -> ServerMsg {
        ServerMsg::Welcome {
            version: PROTOCOL_VERSION,
            server_id: "t".into(),
            epoch: Epoch::from(epoch),
            max_frame_bytes: 1 << 20,
        }
    }

    /// Connects `c`, reads the (empty) outbox, and hands it `welcome`.
    fn connect(q: &mut Outbox<u64>, c: &mut SyncClient<Count>, epoch: &str) -> Vec<Effect> {
        c.connected(None);
        q.connected(c);
        let (n, work) = q.next(c).unwrap();
        assert!(matches!(work, Work::Reload { .. }));
        let f = q.finish(n, work, Done::Reload(Vec::new()), c);
        assert!(f.effects.is_empty());
        let mut out = Vec::new();
        for e in c.handle(welcome(epoch)).unwrap() {
            out.extend(q.effect(e, c));
        }
        out
    }

    fn sends(effects: &[Effect]) -> usize {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Send(_)))
            .count()
    }

    /// Another tab's notice queues one read of the outbox behind the work
    /// in flight; more notices before it starts add nothing; the read
    /// adopts that tab's intent into this tab's state. Writes of this
    /// tab's own intents tell the other tabs; reads do not.
    #[test]
    fn another_tabs_notice_reads_the_outbox_once_and_shows_its_intents() {
        let (mut q, mut c) = (Outbox::new(Offset::ZERO, 10, 0), client(Some("e1")));
        let local = c
            .replica_mut()
            .dispatch_unassigned(b"mine".to_vec(), 0)
            .unwrap();
        q.dispatched(
            local,
            NewIntent {
                payload: b"mine".to_vec(),
                seen: crate::types::Offset::ZERO,
                time_ms: 0,
                schema: 1,
                expires_ms: 0,
            },
        );
        let (n, work) = q.next(&c).unwrap();
        assert!(matches!(work, Work::Alloc { .. }));
        // Notices while the allocation is in flight: one read, queued after it.
        q.written_elsewhere();
        q.written_elsewhere();
        assert_eq!(q.len(), 2, "the allocation and one read");
        let seq = |n| Seq::new(n).unwrap();
        let f = q.finish(
            n,
            work,
            Done::Alloc {
                first: seq(1),
                others: Vec::new(),
            },
            &mut c,
        );
        assert!(f.tell_tabs, "own intents written: the other tabs are told");
        let (n, work) = q.next(&c).unwrap();
        assert!(matches!(work, Work::Reload { .. }));
        // A notice while the read is in flight needs a read of its own.
        q.written_elsewhere();
        assert_eq!(q.len(), 2);
        let theirs = OutboxEntry {
            seen: crate::types::Offset::ZERO,
            time_ms: 0,
            schema: 1,
            expires_ms: 0,
            seq: seq(2),
            payload: b"theirs".to_vec(),
            discarded: false,
        };
        let f = q.finish(n, work, Done::Reload(alloc::vec![theirs]), &mut c);
        assert!(!f.tell_tabs, "a read tells nobody");
        assert_eq!(
            *c.replica().state(),
            2,
            "the other tab's intent is in the state"
        );
        assert_eq!(c.replica().own_pending().count(), 1, "adopted, not own");
    }

    #[test]
    fn a_store_of_the_first_epoch_finished_after_close_stays_offline() {
        let (mut q, mut c) = (Outbox::new(Offset::ZERO, 10, 0), client(None));
        assert!(connect(&mut q, &mut c, "e").is_empty());
        // Closed (or dropped) before storage has the epoch.
        c.disconnected();
        let (n, work) = q.next(&c).unwrap();
        assert!(
            matches!(&work, Work::Write { write, .. } if write.epoch == Some(Epoch::from("e")))
        );
        let f = q.finish(n, work, Done::Written, &mut c);
        assert_eq!(sends(&f.effects), 0, "{:?}", f.effects);
        assert_eq!(c.phase(), Phase::Offline);
        assert!(!f.reconnect);
    }

    #[test]
    fn a_reset_finished_after_close_stays_offline() {
        let (mut q, mut c) = (Outbox::new(Offset::ZERO, 10, 0), client(Some("old")));
        let told = connect(&mut q, &mut c, "new");
        assert!(matches!(&told[..], [Effect::EpochReset { .. }]), "{told:?}");
        c.disconnected();
        let (n, work) = q.next(&c).unwrap();
        assert_eq!(
            work,
            Work::Reset {
                epoch: Epoch::from("new"),
                from: Some(Epoch::from("old")),
            }
        );
        let done = Done::Reset {
            entries: Vec::new(),
            generation: 1,
        };
        let f = q.finish(n, work, done, &mut c);
        assert_eq!(sends(&f.effects), 0, "{:?}", f.effects);
        assert_eq!(c.phase(), Phase::Offline);
        assert!(!f.reconnect);
        assert_eq!(q.generation(), 1);
    }

    #[test]
    fn two_connections_of_one_new_epoch_queue_one_reset() {
        let (mut q, mut c) = (Outbox::new(Offset::ZERO, 10, 0), client(Some("old")));
        let first = connect(&mut q, &mut c, "new");
        c.disconnected();
        // The second connection is welcomed before the reset ran.
        c.connected(None);
        q.connected(&c);
        let mut second = Vec::new();
        for e in c.handle(welcome("new")).unwrap() {
            second.extend(q.effect(e, &c));
        }
        assert_eq!(first.len(), 1, "the app is told once");
        assert!(second.is_empty(), "{second:?}");
        let (n, work) = q.next(&c).unwrap();
        assert!(matches!(work, Work::Reset { .. }));
        let done = Done::Reset {
            entries: Vec::new(),
            generation: 1,
        };
        let f = q.finish(n, work, done, &mut c);
        // The second connection was waiting for it: it subscribes.
        assert_eq!(c.phase(), Phase::Ready);
        assert!(f
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Send(ClientMsg::Subscribe { .. }))));
        // The read queued by the second connection was of the old
        // numbering: the reset has read the outbox since.
        assert!(q.next(&c).is_none(), "nothing else queued");
    }

    #[test]
    fn a_reset_storage_refuses_follows_storage_without_renumbering() {
        let (mut q, mut c) = (Outbox::new(Offset::ZERO, 10, 0), client(Some("e1")));
        connect(&mut q, &mut c, "e2");
        let (n, work) = q.next(&c).unwrap();
        // Another tab has moved storage to e3 meanwhile.
        let f = q.finish(
            n,
            work,
            Done::Stale {
                stored: Some(Epoch::from("e3")),
            },
            &mut c,
        );
        assert!(f.effects.is_empty());
        let (_, work) = q.next(&c).unwrap();
        assert_eq!(
            work,
            Work::Reset {
                epoch: Epoch::from("e3"),
                from: None,
            },
            "follow storage; never renumber from an epoch this tab did not number in"
        );
    }

    fn entry(seq: u64, p: &str) -> OutboxEntry {
        OutboxEntry {
            seen: crate::types::Offset::ZERO,
            time_ms: 0,
            schema: 1,
            expires_ms: 0,
            seq: Seq::new(seq).unwrap(),
            payload: p.as_bytes().to_vec(),
            discarded: false,
        }
    }

    #[test]
    fn renumber_keeps_seq_order_from_one() {
        let r = renumber(alloc::vec![entry(9, "b"), entry(4, "a"), entry(12, "c")]);
        let got: Vec<(u64, &[u8])> = r.iter().map(|e| (e.seq.get(), &e.payload[..])).collect();
        assert_eq!(got, alloc::vec![(1, &b"a"[..]), (2, b"b"), (3, b"c")]);
    }
}
