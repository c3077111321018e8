//! The storage queue's executor: one writer task carries out, in order,
//! the units of work that sync-core's [`sync_core::Outbox`] hands out —
//! each one IndexedDB transaction — and hands back what storage answered.
//! Which jobs exist, which merge, and what an answer means (seqs from
//! storage, renumbering on an epoch reset, stale numberings, missing seqs,
//! snapshot cadence) is decided there, not here.
//!
//! A failed transaction (quota, a browser refusing the write) leaves its
//! jobs at the head of the queue; the error is reported and the jobs are
//! retried after a growing delay, so no intent or confirmed event is
//! skipped. Nothing that waits behind it is written out of order.

use std::rc::Rc;

use sync_core::{Done, Epoch, Offset, Stored, Work};

use crate::engine::{Core, Engine, Notes, Problem};
use crate::error::WasmError;
use crate::reducer::StoreReducer;
use crate::socket::Timer;
use crate::storage::{EventsWrite, Loaded};

/// Longest wait before retrying a failed write.
const MAX_RETRY_MS: u32 = 10_000;

impl<R: StoreReducer> Engine<R> {
    /// Starts the writer if there is work and it is not running.
    pub fn kick_writer(self: &Rc<Self>) {
        let start = {
            let mut c = self.core.borrow_mut();
            let start = !c.writer_busy && !c.outbox.is_empty();
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
        crate::socket::spawn(Box::pin(self.clone().run_writer()));
    }

    async fn run_writer(self: Rc<Self>) {
        loop {
            let next = {
                let mut c = self.core.borrow_mut();
                let Core { outbox, client, .. } = &mut *c;
                outbox.next(client)
            };
            let Some((n, work)) = next else { break };
            if let Work::Follow { after, under } = work {
                let stream = self.opts.stream.as_str();
                match self.db.read_stream(stream, after.0).await {
                    Ok(mut read) if read.record.generation == under => {
                        let problems = std::mem::take(&mut read.problems);
                        self.followed(n, read, problems);
                    }
                    Ok(read) => self.finish(n, work, read.record.stale(), read.problems),
                    Err(e) => {
                        self.failed(e);
                        return;
                    }
                }
                continue;
            }
            match self.execute(&work).await {
                Ok((done, problems)) => self.finish(n, work, done, problems),
                Err(e) => {
                    self.failed(e);
                    return;
                }
            }
        }
        self.core.borrow_mut().writer_busy = false;
        self.emit(Notes::default());
    }

    /// Carries out one unit of work in one transaction.
    async fn execute(&self, work: &Work<R::State>) -> Result<(Done, Vec<WasmError>), WasmError> {
        let stream = self.opts.stream.as_str();
        match work {
            Work::Alloc {
                intents,
                floor,
                under,
            } => self.db.allocate(stream, intents, *floor, *under).await,
            Work::Write { write, under } => {
                let mut problems = Vec::new();
                let (schema, drop_snapshot) = {
                    let mut c = self.core.borrow_mut();
                    let schema = c.client.replica().reducer().schema_version();
                    (schema, c.dropped_snapshot.take())
                };
                let snapshot = match &write.snapshot {
                    Some((offset, state)) => {
                        let c = self.core.borrow();
                        match c.client.replica().reducer().state_to_js(state) {
                            Ok(v) => Some((*offset, v)),
                            Err(e) => {
                                // The events are kept instead.
                                problems.push(e);
                                None
                            }
                        }
                    }
                    None => None,
                };
                let w = EventsWrite {
                    events: &write.events,
                    drop_seqs: &write.drop_seqs,
                    offset: write.offset,
                    snapshot,
                    schema,
                    drop_snapshot,
                    epoch: write.epoch.as_ref(),
                };
                let (done, more) = self.db.write_events(stream, &w, *under).await?;
                problems.extend(more);
                Ok((done, problems))
            }
            Work::Reset { epoch, from } => self.db.reset(stream, epoch, from.as_ref()).await,
            Work::Reload { under } => self.db.read_outbox(stream, *under).await,
            Work::Discard { seqs, under } => self.db.mark_discarded(stream, seqs, *under).await,
            // Read by `Db::follow` in `run_writer`.
            Work::Follow { .. } => Err(WasmError::Internal("a follow is no write".into())),
        }
    }

    /// A follower read what the leader stored: the stored snapshot (as
    /// this reducer's state, upgraded as at open) and events go to the
    /// client, and the outbox with them.
    fn followed(self: &Rc<Self>, n: usize, read: Loaded, problems: Vec<WasmError>) {
        let mut notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            c.write_failures = 0;
            c.clear_problem(Problem::Storage);
            for p in problems {
                c.error(p, &mut notes);
            }
            let snapshot_offset = Offset(read.record.snapshot_offset);
            let snapshot = read.snapshot.and_then(|(raw, schema)| {
                let reducer = c.client.replica().reducer();
                let what = format!("the stored snapshot at offset {snapshot_offset}");
                let state = reducer.state_from_js(raw).and_then(|s| {
                    sync_core::replica::upgrade_state(reducer, s, schema, &what)
                        .map_err(WasmError::from)
                });
                match state {
                    Ok(state) => state.map(|s| (snapshot_offset, s)),
                    Err(e) => {
                        notes.errors.push(e);
                        None
                    }
                }
            });
            let stored = Stored {
                offset: Offset(read.record.offset),
                epoch: read.record.epoch.clone().map(Epoch),
                snapshot_offset,
                snapshot,
                events: read.events,
                outbox: read.outbox,
            };
            let finished = {
                let Core { outbox, client, .. } = &mut *c;
                outbox.followed(n, stored, client)
            };
            for e in finished.effects {
                c.carry_out(e, &mut notes);
            }
        }
        self.emit(notes);
    }

    fn finish(
        self: &Rc<Self>,
        n: usize,
        work: Work<R::State>,
        done: Done,
        problems: Vec<WasmError>,
    ) {
        let mut notes = Notes::default();
        let tell_tabs;
        let tell_followers;
        {
            let mut c = self.core.borrow_mut();
            c.write_failures = 0;
            // Storage works again: a storage problem is history now.
            c.clear_problem(Problem::Storage);
            for p in problems {
                c.error(p, &mut notes);
            }
            let finished = {
                let Core { outbox, client, .. } = &mut *c;
                outbox.finish(n, work, done, client)
            };
            tell_tabs = finished.tell_tabs;
            tell_followers = finished.tell_followers;
            for e in finished.effects {
                c.carry_out(e, &mut notes);
            }
            if c.closed {
                // Nothing more to say to a server.
            } else if let Some(seq) = finished.missing {
                // Pushing on would only earn the same Gap again.
                c.problem(
                    Problem::Connection,
                    WasmError::Internal(format!(
                        "the server expects seq {seq}, which the outbox does not hold (an unreadable record?); later intents wait"
                    )),
                    &mut notes,
                );
                self.drop_connection(&mut c);
            } else if finished.reconnect {
                // Another tab reset storage to a new epoch under this
                // connection: subscribe again from the start, at once.
                c.net.backoff.reset();
                self.drop_connection(&mut c);
            }
        }
        if tell_tabs {
            self.tell_tabs();
        }
        if tell_followers {
            self.tell_followers();
        }
        self.emit(notes);
    }

    fn failed(self: &Rc<Self>, e: WasmError) {
        let mut notes = Notes::default();
        {
            let mut c = self.core.borrow_mut();
            c.problem(Problem::Storage, e, &mut notes);
            c.write_failures = c.write_failures.saturating_add(1);
            if c.closed {
                // No more retries after close: say what is lost.
                let lost = c.outbox.clear();
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
