//! The storage queue: every IndexedDB write of a store, carried out in the
//! order it was queued by one writer task. Neighbouring jobs of one kind
//! are merged into one transaction (a burst of dispatches is one seq
//! allocation, a catch-up of many `Events` frames is one events write), so
//! the number of transactions does not grow with the number of events.
//!
//! A failed transaction (quota, a browser refusing the write) leaves its
//! jobs at the head of the queue; the error is reported and the jobs are
//! retried after a growing delay, so no intent or confirmed event is
//! skipped. Nothing that waits behind it is written out of order.

use std::rc::Rc;

use sync_core::{Epoch, Event, LocalId, Offset, Seq};

use crate::engine::{Core, Engine, Notes, Problem};
use crate::error::WasmError;
use crate::reducer::StoreReducer;
use crate::socket::Timer;
use crate::storage::{Allocated, EventsWrite, OutboxEntry};

/// Longest wait before retrying a failed write.
const MAX_RETRY_MS: u32 = 10_000;

/// One queued storage job.
pub(crate) enum Job<S> {
    /// Allocate a seq for a dispatched intent and write it to the outbox.
    Alloc(LocalId, Vec<u8>),
    /// Confirmed events, outbox deletions, offset, snapshot, epoch.
    Write(WriteJob<S>),
    /// Forget the history for a new epoch; rewrite the outbox.
    Reset(Epoch),
    /// Re-read the outbox (other tabs write to it); `expected` when the
    /// server expects that seq. `resets` is the store's epoch-reset count
    /// when queued: a read queued before a reset sees the old numbering
    /// and is ignored.
    Reload { expected: Option<Seq>, resets: u64 },
    /// Mark an outbox entry discarded by the app.
    Discard(Seq),
}

pub(crate) struct WriteJob<S> {
    events: Vec<Event>,
    drop_seqs: Vec<Seq>,
    offset: Offset,
    snapshot: Option<(Offset, S)>,
    epoch: Option<Epoch>,
}

impl<S> Job<S> {
    pub fn write(
        events: Vec<Event>,
        drop_seqs: Vec<Seq>,
        offset: Offset,
        snapshot: Option<(Offset, S)>,
        epoch: Option<Epoch>,
    ) -> Self {
        Job::Write(WriteJob {
            events,
            drop_seqs,
            offset,
            snapshot,
            epoch,
        })
    }
}

/// Jobs merged into one transaction.
enum Work {
    Alloc {
        locals: Vec<LocalId>,
        payloads: Vec<Vec<u8>>,
        floor: Seq,
    },
    Write(EventsWrite),
    Reset {
        epoch: Epoch,
        outbox: Vec<OutboxEntry>,
    },
    Discard(Vec<Seq>),
    Reload {
        expected: Option<Seq>,
        resets: u64,
    },
}

enum Done {
    Alloc(Allocated),
    Reload(Vec<OutboxEntry>),
    Written,
}

impl<R: StoreReducer> Core<R> {
    /// Merges the jobs at the head of the queue into one unit of work;
    /// returns how many jobs it covers.
    fn take_work(&mut self, problems: &mut Vec<WasmError>) -> Option<(usize, Work)> {
        let n = match self.jobs.front()? {
            Job::Alloc(..) => self
                .jobs
                .iter()
                .take_while(|j| matches!(j, Job::Alloc(..)))
                .count(),
            Job::Write(_) => self
                .jobs
                .iter()
                .take_while(|j| matches!(j, Job::Write(_)))
                .count(),
            Job::Reload { .. } => self
                .jobs
                .iter()
                .take_while(|j| matches!(j, Job::Reload { .. }))
                .count(),
            Job::Discard(_) => self
                .jobs
                .iter()
                .take_while(|j| matches!(j, Job::Discard(_)))
                .count(),
            Job::Reset(_) => 1,
        };
        let head = self.jobs.range(..n);
        let work = match self.jobs.front()? {
            Job::Alloc(..) => {
                let (mut locals, mut payloads) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for j in head {
                    if let Job::Alloc(l, p) = j {
                        locals.push(*l);
                        payloads.push(p.clone());
                    }
                }
                Work::Alloc {
                    locals,
                    payloads,
                    floor: self.client.replica().next_seq(),
                }
            }
            Job::Write(_) => {
                let mut w = EventsWrite {
                    events: Vec::new(),
                    drop_seqs: Vec::new(),
                    offset: Offset::ZERO,
                    snapshot: None,
                    epoch: None,
                };
                let mut snapshot = None;
                for j in head {
                    if let Job::Write(j) = j {
                        w.events.extend(j.events.iter().cloned());
                        w.drop_seqs.extend(j.drop_seqs.iter().copied());
                        w.offset = w.offset.max(j.offset);
                        snapshot = j.snapshot.as_ref().or(snapshot);
                        w.epoch = j.epoch.clone().or(w.epoch);
                    }
                }
                if let Some((offset, state)) = snapshot {
                    match self.client.replica().reducer().state_to_js(state) {
                        Ok(v) => w.snapshot = Some((*offset, v)),
                        Err(e) => problems.push(e),
                    }
                }
                Work::Write(w)
            }
            Job::Reset(epoch) => Work::Reset {
                epoch: epoch.clone(),
                // Taken now, when every earlier allocation has its seq.
                outbox: self
                    .client
                    .replica()
                    .pending()
                    .iter()
                    .filter_map(|p| {
                        p.seq.map(|seq| OutboxEntry {
                            seq,
                            payload: p.payload.clone(),
                            discarded: p.discarded,
                        })
                    })
                    .collect(),
            },
            Job::Discard(_) => Work::Discard(
                head.filter_map(|j| match j {
                    Job::Discard(seq) => Some(*seq),
                    _ => None,
                })
                .collect(),
            ),
            Job::Reload { .. } => {
                let (mut expected, mut resets) = (None, 0);
                for j in head {
                    if let Job::Reload {
                        expected: e,
                        resets: r,
                    } = j
                    {
                        expected = e.or(expected);
                        resets = *r;
                    }
                }
                Work::Reload { expected, resets }
            }
        };
        Some((n, work))
    }
}

/// Folds an outbox entry another tab wrote into this tab's replica.
fn adopt<R: StoreReducer>(c: &mut Core<R>, e: OutboxEntry) -> Vec<sync_core::Effect> {
    c.client.adopt_as(e.seq, e.payload, false, e.discarded)
}

impl<R: StoreReducer> Engine<R> {
    /// Starts the writer if there is work and it is not running.
    pub fn kick_writer(self: &Rc<Self>) {
        let start = {
            let mut c = self.core.borrow_mut();
            let start = !c.writer_busy && !c.jobs.is_empty();
            if start {
                c.writer_busy = true;
            }
            start
        };
        if start {
            self.restart_writer();
        }
    }

    /// Runs the writer (the caller has set `writer_busy`).
    pub fn restart_writer(self: &Rc<Self>) {
        wasm_bindgen_futures::spawn_local(self.clone().run_writer());
    }

    async fn run_writer(self: Rc<Self>) {
        loop {
            let mut problems = Vec::new();
            let next = self.core.borrow_mut().take_work(&mut problems);
            let Some((n, work)) = next else { break };
            match self.execute(&work).await {
                Ok((done, more)) => {
                    problems.extend(more);
                    self.finish(n, work, done, problems);
                }
                Err(e) => {
                    self.failed(e, problems);
                    return;
                }
            }
        }
        self.core.borrow_mut().writer_busy = false;
        self.emit(Notes::default());
    }

    async fn execute(&self, work: &Work) -> Result<(Done, Vec<WasmError>), WasmError> {
        let stream = self.opts.stream.as_str();
        Ok(match work {
            Work::Alloc {
                payloads, floor, ..
            } => {
                let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
                let (a, p) = self.db.allocate(stream, &refs, *floor).await?;
                (Done::Alloc(a), p)
            }
            Work::Write(w) => (Done::Written, self.db.write_events(stream, w).await?),
            Work::Reset { epoch, outbox } => {
                self.db.reset(stream, epoch, outbox).await?;
                (Done::Written, Vec::new())
            }
            Work::Reload { .. } => {
                let (entries, p) = self.db.read_outbox(stream).await?;
                (Done::Reload(entries), p)
            }
            Work::Discard(seqs) => {
                self.db.mark_discarded(stream, seqs).await?;
                (Done::Written, Vec::new())
            }
        })
    }

    fn finish(self: &Rc<Self>, n: usize, work: Work, done: Done, problems: Vec<WasmError>) {
        let mut notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            c.jobs.drain(..n);
            c.write_failures = 0;
            // Storage works again: a storage problem is history now.
            c.clear_problem(Problem::Storage);
            for p in problems {
                c.error(p, &mut notes);
            }
            let mut effects = Vec::new();
            match (work, done) {
                (Work::Alloc { locals, .. }, Done::Alloc(a)) => {
                    // Other tabs' intents hold the lower seqs: fold them in
                    // first, then give ours their seqs, then push.
                    for e in a.others {
                        effects.extend(adopt(&mut c, e));
                    }
                    let mut seq = a.first;
                    let before = c.client.replica().pending().len();
                    for local in locals {
                        c.client.replica_mut().assign_seq(local, seq);
                        seq = seq.next();
                    }
                    // An intent already adopted under its seq is merged
                    // into that copy, which recomputes the state.
                    if c.client.replica().pending().len() != before {
                        notes.state = true;
                    }
                    effects.extend(c.client.flush());
                }
                (Work::Reload { resets, .. }, Done::Reload(_)) if resets != c.resets => {
                    // Read under the numbering before an epoch reset: the
                    // reset has rewritten the outbox since.
                }
                (Work::Reload { expected, .. }, Done::Reload(entries)) => {
                    for e in entries {
                        effects.extend(adopt(&mut c, e));
                    }
                    let missing = expected.filter(|e| {
                        !c.client
                            .replica()
                            .pending()
                            .iter()
                            .any(|p| p.seq == Some(*e))
                    });
                    if let Some(seq) = missing {
                        // Pushing on would only earn the same Gap again.
                        c.problem(
                            Problem::Connection,
                            WasmError::Internal(format!(
                                "the server expects seq {seq}, which the outbox does not hold (an unreadable record?); later intents wait"
                            )),
                            &mut notes,
                        );
                        self.drop_connection(&mut c);
                    } else {
                        effects.extend(c.client.flush());
                    }
                }
                _ => {}
            }
            for e in effects {
                c.apply(e, &mut notes, self.opts.snapshot_every);
            }
            if !c.jobs.iter().any(|j| matches!(j, Job::Alloc(..))) {
                if let Some(w) = c.deferred_welcome.take() {
                    self.handle_msg(&mut c, w, &mut notes);
                }
            }
        }
        self.emit(notes);
    }

    fn failed(self: &Rc<Self>, e: WasmError, problems: Vec<WasmError>) {
        let mut notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            for p in problems {
                c.error(p, &mut notes);
            }
            c.problem(Problem::Storage, e, &mut notes);
            c.write_failures = c.write_failures.saturating_add(1);
            if c.closed {
                // No more retries after close: say what is lost.
                let lost = c.jobs.len();
                c.jobs.clear();
                c.writer_busy = false;
                c.problem(
                    Problem::Storage,
                    WasmError::Storage(format!(
                        "the store closed while IndexedDB refused writes; {lost} queued writes were not stored"
                    )),
                    &mut notes,
                );
            } else {
                let delay = 100u32
                    .saturating_mul(1 << c.write_failures.min(10))
                    .min(MAX_RETRY_MS);
                let weak = self.me.clone();
                c.write_retry = Some(Timer::new(delay, false, move || {
                    if let Some(e) = weak.upgrade() {
                        if e.core.borrow_mut().write_retry.take().is_some() {
                            e.restart_writer();
                        }
                    }
                }));
            }
        }
        self.emit(notes);
    }
}
