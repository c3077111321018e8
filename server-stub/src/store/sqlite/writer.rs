//! The single writer: group commit over one read-write connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use sync_core::{
    decide_batch, ClientId, ErrorCode, Event, IntentDigest, Offset, Position, Step, StreamName,
};
use tokio::sync::{mpsc, oneshot};

use super::{from_sql, to_sql};
use crate::error::Error;
use crate::fold::{Folds, Replayed, SnapshotPolicy};
use crate::metrics::Metrics;
use crate::store::CommitMode;
use crate::store::{
    appended_resend, fold_request, state_json, undecided, AppendListener, AppendRequest, Outcome,
    ProposedIntent, Sender, StoredSnapshot, StreamStateJson,
};

/// What a state read answers.
type StateAnswer = Result<Option<StreamStateJson>, Error>;

/// Work for the writer, with where to send the answer.
pub(crate) enum Job {
    Append {
        request: AppendRequest,
        reply: oneshot::Sender<Result<Vec<Outcome>, Error>>,
    },
    Snapshot {
        stream: StreamName,
        offset: Offset,
        state: Vec<u8>,
        schema: u32,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    BindClient {
        client_id: ClientId,
        sub: String,
        reply: oneshot::Sender<Result<String, Error>>,
    },
    /// A write that changes nothing, committed: can the store write?
    Probe {
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// The state of a stream with a reducer, at its head.
    State {
        stream: StreamName,
        reply: oneshot::Sender<StateAnswer>,
    },
    /// Time for a compaction pass (from the store's ticker): delete, in
    /// small transactions of their own, the events the retention lets go
    /// (age grows while a stream is idle, with no append to compact it).
    Compact,
}

impl Job {
    fn intents(&self) -> usize {
        match self {
            Job::Append { request, .. } => request.intents.len(),
            Job::Snapshot { .. }
            | Job::BindClient { .. }
            | Job::Probe { .. }
            | Job::State { .. } => 1,
            Job::Compact => 0,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Job::Append { request, .. } => request.payload_bytes(),
            Job::Snapshot { state, .. } => state.len(),
            Job::BindClient { sub, .. } => sub.len(),
            Job::Probe { .. } | Job::State { .. } | Job::Compact => 0,
        }
    }
}

pub(crate) struct Writer {
    pub conn: Connection,
    pub rx: mpsc::Receiver<Job>,
    pub listener: Arc<dyn AppendListener>,
    pub metrics: Arc<Metrics>,
    pub mode: CommitMode,
    pub max_batch_intents: usize,
    pub max_batch_bytes: usize,
    /// False while the last commit failed (the store cannot write); the
    /// health check reads it.
    pub writable: Arc<AtomicBool>,
    /// The states of streams with a reducer, at their committed heads
    /// between transactions.
    pub folds: Folds,
    /// True while a [`Job::Compact`] is queued or running (the ticker
    /// queues one at a time).
    pub compacting: Arc<AtomicBool>,
    /// Where the next compaction pass starts: the passes go round the
    /// streams in id order.
    pub pass_from: i64,
}

/// What one transaction made durable: the events appended, grouped by
/// stream in offset order, and the snapshots stored (stream, offset and
/// state hash).
#[derive(Default)]
struct Appended {
    events: Vec<(StreamName, Vec<Event>)>,
    checkpoints: Vec<(StreamName, Offset, u64, u32)>,
}

enum Reply {
    Append(oneshot::Sender<Result<Vec<Outcome>, Error>>, Vec<Outcome>),
    Snapshot(oneshot::Sender<Result<(), Error>>),
    Bound(oneshot::Sender<Result<String, Error>>, String),
    Probe(oneshot::Sender<Result<(), Error>>),
    State(oneshot::Sender<StateAnswer>, Option<StateAnswer>),
}

impl Writer {
    pub fn run(mut self) {
        // Blocks until a job arrives; returns None once every sender is
        // gone and the queue is drained, which is how shutdown finishes
        // the commits already handed over.
        while let Some(first) = self.rx.blocking_recv() {
            match self.mode {
                CommitMode::Group => {
                    let mut intents = first.intents();
                    let mut bytes = first.bytes();
                    let mut jobs = vec![first];
                    // Everything that queued up during the previous fsync
                    // goes into this one transaction.
                    while intents < self.max_batch_intents && bytes < self.max_batch_bytes {
                        match self.rx.try_recv() {
                            Ok(job) => {
                                intents += job.intents();
                                bytes += job.bytes();
                                jobs.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    // A compaction pass runs in transactions of its own,
                    // after the batch it came with.
                    let before = jobs.len();
                    jobs.retain(|j| !matches!(j, Job::Compact));
                    let compact = jobs.len() < before;
                    if !jobs.is_empty() {
                        self.commit(jobs);
                    }
                    if compact {
                        self.compact_pass();
                    }
                }
                CommitMode::PerIntent if matches!(first, Job::Compact) => self.compact_pass(),
                CommitMode::PerIntent => self.commit_each(first),
            }
        }
        tracing::debug!("log writer stopped");
    }

    /// Streams one compaction pass looks at, at most.
    const PASS_STREAMS: i64 = 256;

    /// Deletes the events the retention lets go in the folded streams
    /// whose horizon can move (idle ones too: age grows without appends),
    /// one small transaction ([`PASS_MAX_ROWS`] events at most) at a time.
    /// Between two, waiting jobs go first: the pass stops and the next
    /// one goes on from there.
    fn compact_pass(&mut self) {
        let policy = self.folds.policy();
        let result = (|| {
            let now = now_ms();
            let candidates = {
                let mut stmt = self.conn.prepare_cached(
                    r#"SELECT t.id, t.name, t.head, n.snap, coalesce(c.through, 0)
                       FROM (SELECT stream_id, max("offset") AS snap FROM snapshots GROUP BY stream_id) n
                       JOIN streams t ON t.id = n.stream_id
                       LEFT JOIN compactions c ON c.stream_id = n.stream_id
                       WHERE n.stream_id >= ?1
                         AND n.snap > coalesce(c.through, 0)
                         AND (?2 IS NULL OR t.head - ?2 > coalesce(c.through, 0))
                         AND (?3 IS NULL OR EXISTS (
                               SELECT 1 FROM events e WHERE e.stream_id = n.stream_id
                                 AND e."offset" = coalesce(c.through, 0) + 1 AND e.time_ms <= ?3))
                       ORDER BY n.stream_id LIMIT ?4"#,
                )?;
                let retain = policy.retain_events.map(to_sql).transpose()?;
                let cutoff = policy.old_at_or_before(now).map(to_sql).transpose()?;
                let rows = stmt.query_map(
                    rusqlite::params![self.pass_from, retain, cutoff, Self::PASS_STREAMS],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            // Round the streams: the next pass starts after the last one
            // looked at, or from the first when this one saw them all.
            self.pass_from = match candidates.last() {
                Some((id, ..)) if candidates.len() as i64 == Self::PASS_STREAMS => id + 1,
                _ => 0,
            };
            for (id, name, head, snap) in candidates {
                if !StreamName::new(name.as_str()).is_ok_and(|s| self.folds.folds(&s)) {
                    continue;
                }
                let (head, snap) = (Offset(from_sql(head)?), Offset(from_sql(snap)?));
                loop {
                    let tx = self
                        .conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let moved = compact(&tx, &policy, id, snap, head, PASS_MAX_ROWS, now)?;
                    tx.commit()?;
                    let Some((through, deleted)) = moved else {
                        break;
                    };
                    tracing::debug!(stream = %name, through = through.0, deleted, "events compacted by the background pass");
                    if !self.rx.is_empty() {
                        self.pass_from = id;
                        return Ok(());
                    }
                }
            }
            Ok::<(), Error>(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "compaction pass failed; the next one tries again");
        }
        self.compacting.store(false, Ordering::Relaxed);
    }

    /// Decides every job in one transaction and commits once. When any
    /// statement or the commit fails, the transaction rolls back and every
    /// job of the batch, decided or not, is answered with the failure.
    fn commit(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let intents: usize = jobs.iter().map(Job::intents).sum();
        let mut appended = Appended::default();
        let mut replies = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let time_ms = now_ms();
            // Each job's reply is kept before its work runs, so a failure
            // leaves no waiting request unanswered.
            for job in jobs.by_ref() {
                match job {
                    Job::Append { request, reply } => {
                        replies.push(Reply::Append(reply, Vec::new()));
                        let outcomes =
                            apply(&tx, &mut self.folds, request, time_ms, &mut appended)?;
                        if let Some(Reply::Append(_, o)) = replies.last_mut() {
                            *o = outcomes;
                        }
                    }
                    Job::Snapshot {
                        stream,
                        offset,
                        state,
                        schema,
                        reply,
                    } => {
                        replies.push(Reply::Snapshot(reply));
                        put_snapshot(&tx, &stream, offset, &state, schema)?;
                    }
                    Job::BindClient {
                        client_id,
                        sub,
                        reply,
                    } => {
                        replies.push(Reply::Bound(reply, String::new()));
                        let bound = bind_client(&tx, &client_id, &sub)?;
                        if let Some(Reply::Bound(_, b)) = replies.last_mut() {
                            *b = bound;
                        }
                    }
                    Job::Probe { reply } => {
                        replies.push(Reply::Probe(reply));
                        probe(&tx)?;
                    }
                    Job::State { stream, reply } => {
                        // A read: its failure is its own, never the batch's.
                        let answer = state(&tx, &mut self.folds, &stream);
                        replies.push(Reply::State(reply, Some(answer)));
                    }
                    // Taken out of every batch by `run`.
                    Job::Compact => {}
                }
            }
            tx.commit()?;
            Ok::<(), Error>(())
        })();
        // Jobs the failure stopped before: answered with it too.
        for job in jobs {
            replies.push(match job {
                Job::Append { reply, .. } => Reply::Append(reply, Vec::new()),
                Job::Snapshot { reply, .. } => Reply::Snapshot(reply),
                Job::BindClient { reply, .. } => Reply::Bound(reply, String::new()),
                Job::Probe { reply } => Reply::Probe(reply),
                Job::State { reply, .. } => Reply::State(reply, None),
                Job::Compact => continue,
            });
        }
        self.finish(result, started, intents, appended, replies);
    }

    /// One transaction per intent: the baseline that group commit is
    /// measured against.
    fn commit_each(&mut self, job: Job) {
        let Job::Append { request, reply } = job else {
            return self.commit(vec![job]);
        };
        let AppendRequest {
            stream,
            client_id,
            subject,
            intents,
        } = request;
        let mut outcomes = Vec::with_capacity(intents.len());
        for intent in intents {
            let started = Instant::now();
            let mut appended = Appended::default();
            let one = AppendRequest {
                stream: stream.clone(),
                client_id,
                subject: subject.clone(),
                intents: vec![intent],
            };
            let result = (|| {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                let o = apply(&tx, &mut self.folds, one, now_ms(), &mut appended)?;
                tx.commit()?;
                Ok::<_, Error>(o)
            })();
            match result {
                Ok(o) => {
                    self.folds.trim();
                    self.writable.store(true, Ordering::Relaxed);
                    self.metrics.commit(1, started.elapsed());
                    self.publish(&appended);
                    let gap = o.iter().any(|x| matches!(x, Outcome::Gap { .. }));
                    outcomes.extend(o);
                    if gap {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "commit failed");
                    // States may hold intents of the rolled-back
                    // transaction: rebuilt from the log on next use.
                    self.folds.forget_all();
                    self.writable.store(false, Ordering::Relaxed);
                    let _ = reply.send(Err(e));
                    return;
                }
            }
        }
        crate::store::count_decided(&self.metrics, &outcomes);
        let _ = reply.send(Ok(outcomes));
    }

    fn finish(
        &mut self,
        result: Result<(), Error>,
        started: Instant,
        intents: usize,
        appended: Appended,
        replies: Vec<Reply>,
    ) {
        self.writable.store(result.is_ok(), Ordering::Relaxed);
        match result {
            Ok(()) => {
                // Between transactions: every kept state is at its
                // committed head, so a dropped one is rebuilt the same.
                self.folds.trim();
                self.metrics.commit(intents, started.elapsed());
                // Fan-out first: by the time a pusher sees its Ack, the
                // event is in the live feed too.
                self.publish(&appended);
                for r in replies {
                    match r {
                        Reply::Append(reply, outcomes) => {
                            crate::store::count_decided(&self.metrics, &outcomes);
                            let _ = reply.send(Ok(outcomes));
                        }
                        Reply::Snapshot(reply) => {
                            let _ = reply.send(Ok(()));
                        }
                        Reply::Bound(reply, sub) => {
                            let _ = reply.send(Ok(sub));
                        }
                        Reply::Probe(reply) => {
                            let _ = reply.send(Ok(()));
                        }
                        Reply::State(reply, answer) => {
                            let _ = reply.send(answer.unwrap_or_else(|| {
                                Err(Error::Storage("the state was not read".into()))
                            }));
                        }
                    }
                }
            }
            Err(e) => {
                // States may hold intents of the rolled-back transaction:
                // rebuilt from the log on next use.
                self.folds.forget_all();
                // The transaction rolled back (dropped): nothing of this
                // batch is in the log, so every pusher may safely retry.
                tracing::error!(error = %e, intents, "commit failed; batch rolled back");
                let message = match e {
                    Error::Storage(m) => m,
                    other => other.to_string(),
                };
                for r in replies {
                    match r {
                        Reply::Append(reply, _) => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                        Reply::Snapshot(reply) => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                        Reply::Bound(reply, _) => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                        Reply::Probe(reply) => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                        Reply::State(reply, _) => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                    }
                }
            }
        }
    }

    fn publish(&self, appended: &Appended) {
        for (stream, offset, hash, schema) in &appended.checkpoints {
            self.listener.checkpoint(stream, *offset, *hash, *schema);
        }
        for (stream, events) in &appended.events {
            self.listener.appended(stream, events);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The stream's id and head, creating the stream on first use.
fn ensure_stream(tx: &Transaction<'_>, stream: &StreamName) -> Result<(i64, u64), Error> {
    let row: Option<(i64, i64)> = tx
        .prepare_cached("SELECT id, head FROM streams WHERE name = ?1")?
        .query_row([stream.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((id, head)) => Ok((id, from_sql(head)?)),
        None => {
            tx.prepare_cached("INSERT INTO streams (name, head) VALUES (?1, 0)")?
                .execute([stream.as_str()])?;
            Ok((tx.last_insert_rowid(), 0))
        }
    }
}

/// Decides one request's intents inside `tx`: the steps of
/// [`decide_batch`], executed.
fn apply(
    tx: &Transaction<'_>,
    folds: &mut Folds,
    request: AppendRequest,
    time_ms: u64,
    appended: &mut Appended,
) -> Result<Vec<Outcome>, Error> {
    let AppendRequest {
        stream,
        client_id,
        subject,
        mut intents,
    } = request;
    let sender = Sender {
        client_id,
        subject: subject.as_deref(),
        time_ms,
    };
    let (stream_id, start_head) = ensure_stream(tx, &stream)?;
    let client = &client_id.0[..];
    let start_last: u64 = tx
        .prepare_cached("SELECT last_seq FROM clients WHERE stream_id = ?1 AND client_id = ?2")?
        .query_row(rusqlite::params![stream_id, client], |r| r.get::<_, i64>(0))
        .optional()?
        .map(from_sql)
        .transpose()?
        .unwrap_or(0);
    let start = Position {
        last_decided: start_last,
        head: Offset(start_head),
    };
    if let Some(refusal) = fold_request(
        folds,
        &stream,
        start,
        &mut intents,
        &sender,
        || latest_snapshot(tx, stream_id),
        |after| replay(tx, stream_id, after),
    )? {
        return Ok(undecided(&intents, &refusal));
    }
    let mut position = start;
    let steps = decide_batch(&mut position, intents.iter().map(ProposedIntent::offer));
    let mut outcomes = Vec::with_capacity(steps.len());
    let mut new_events = Vec::new();
    for (step, intent) in steps.into_iter().zip(intents) {
        outcomes.push(match step {
            Step::Append { seq, offset } => {
                let digest = intent.stored_digest();
                tx.prepare_cached(
                    r#"INSERT INTO events (stream_id, "offset", client_id, seq, time_ms, payload, digest, subject, seen, schema)
                       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"#,
                )?
                .execute(rusqlite::params![
                    stream_id,
                    to_sql(offset.0)?,
                    client,
                    to_sql(seq.get())?,
                    to_sql(time_ms)?,
                    intent.payload,
                    &digest.0[..],
                    subject,
                    to_sql(intent.seen.0)?,
                    i64::from(intent.schema)
                ])?;
                new_events.push(Event {
                    offset,
                    client_id,
                    seq,
                    time_ms,
                    payload: intent.payload,
                    subject: subject.clone(),
                    seen: intent.seen,
                    schema: intent.schema,
                });
                Outcome::Appended {
                    seq,
                    offset,
                    duplicate: false,
                }
            }
            Step::Reject { seq } => {
                let (code, message) = intent.refusal()?;
                tx.prepare_cached(
                    "INSERT INTO rejections (stream_id, client_id, seq, code, message)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(rusqlite::params![
                    stream_id,
                    client,
                    to_sql(seq.get())?,
                    code.as_str(),
                    message
                ])?;
                Outcome::Rejected {
                    seq,
                    code,
                    message,
                    duplicate: false,
                }
            }
            Step::Resend { .. } => lookup(tx, &stream, stream_id, &client_id, &intent)?,
            Step::Gap { expected } => Outcome::Gap { expected },
        });
    }
    if position.last_decided != start.last_decided {
        tx.prepare_cached(
            "INSERT INTO clients (stream_id, client_id, last_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream_id, client_id) DO UPDATE SET last_seq = excluded.last_seq",
        )?
        .execute(rusqlite::params![
            stream_id,
            client,
            to_sql(position.last_decided)?
        ])?;
    }
    if position.head != start.head {
        tx.prepare_cached("UPDATE streams SET head = ?1 WHERE id = ?2")?
            .execute(rusqlite::params![to_sql(position.head.0)?, stream_id])?;
        if let Some((offset, hash, schema)) = keep_snapshot(
            tx,
            folds,
            &stream,
            stream_id,
            start.head,
            position.head,
            time_ms,
        )? {
            appended
                .checkpoints
                .push((stream.clone(), offset, hash, schema));
        }
    }
    if !new_events.is_empty() {
        match appended.events.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, evs)) => evs.extend(new_events),
            None => appended.events.push((stream, new_events)),
        }
    }
    Ok(outcomes)
}

/// The stored outcome of an already decided seq, answering a resend of
/// `intent`.
fn lookup(
    tx: &Transaction<'_>,
    stream: &StreamName,
    stream_id: i64,
    client_id: &ClientId,
    intent: &ProposedIntent,
) -> Result<Outcome, Error> {
    let seq = intent.seq;
    let client = &client_id.0[..];
    let params = rusqlite::params![stream_id, client, to_sql(seq.get())?];
    let appended: Option<(i64, Option<Vec<u8>>)> = tx
        .prepare_cached(
            r#"SELECT "offset", digest FROM events WHERE stream_id = ?1 AND client_id = ?2 AND seq = ?3"#,
        )?
        .query_row(params, |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((o, digest)) = appended {
        let digest = match digest {
            Some(d) => Some(IntentDigest::from_slice(&d).ok_or_else(|| {
                Error::Storage(format!(
                    "digest of {} bytes stored for seq {seq} of client {client_id}",
                    d.len()
                ))
            })?),
            None => None,
        };
        return Ok(appended_resend(
            seq,
            intent.digest.as_ref(),
            Offset(from_sql(o)?),
            digest,
        ));
    }
    let rejection: Option<(String, String)> = tx
        .prepare_cached(
            "SELECT code, message FROM rejections WHERE stream_id = ?1 AND client_id = ?2 AND seq = ?3",
        )?
        .query_row(params, |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match rejection {
        Some((code, message)) => Ok(Outcome::Rejected {
            seq,
            code: ErrorCode::parse(&code),
            message,
            duplicate: true,
        }),
        None => match compacted_through(tx, stream_id)? {
            // Appended, and its event compacted away since: answered as
            // in the log at or below the horizon (the client's snapshot
            // holds it); its payload can no longer be compared.
            Offset(0) => Err(Error::Storage(format!(
                "seq {seq} of client {client_id} on stream {stream} is decided but its outcome is missing"
            ))),
            through => Ok(Outcome::Appended {
                seq,
                offset: through,
                duplicate: true,
            }),
        },
    }
}

/// The offset through which the events of `stream_id` are compacted
/// away (0: none).
pub(super) fn compacted_through(tx: &Connection, stream_id: i64) -> Result<Offset, Error> {
    let through: Option<i64> = tx
        .prepare_cached("SELECT through FROM compactions WHERE stream_id = ?1")?
        .query_row([stream_id], |r| r.get(0))
        .optional()?;
    Ok(Offset(through.map(from_sql).transpose()?.unwrap_or(0)))
}

/// The latest snapshot of the stream `stream_id`.
fn latest_snapshot(tx: &Transaction<'_>, stream_id: i64) -> Result<Option<StoredSnapshot>, Error> {
    let row: Option<(i64, Vec<u8>, i64)> = tx
        .prepare_cached(
            r#"SELECT "offset", state, schema FROM snapshots WHERE stream_id = ?1 ORDER BY "offset" DESC LIMIT 1"#,
        )?
        .query_row([stream_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(o, state, schema)| {
        Ok(StoredSnapshot {
            offset: Offset(from_sql(o)?),
            state,
            schema: super::schema_from_sql(schema)?,
        })
    })
    .transpose()
}

/// Most events one transaction compacts away: a long log that gets a
/// retention is trimmed over several snapshots, never in one long
/// transaction that would hold appends up.
const COMPACT_MAX_ROWS: u64 = 10_000;

/// After a transaction moved the head of `stream` from `before` to
/// `head`: stores the folded state as the stream's snapshot when the
/// policy says so (the older snapshots go), and then compacts the events
/// the retention no longer keeps. Part of the same transaction: a
/// snapshot is never ahead of the log, and events are only deleted
/// under a snapshot that holds them. Answers the snapshot stored, as
/// (offset, state hash, schema version).
fn keep_snapshot(
    tx: &Transaction<'_>,
    folds: &Folds,
    stream: &StreamName,
    stream_id: i64,
    before: Offset,
    head: Offset,
    time_ms: u64,
) -> Result<Option<(Offset, u64, u32)>, Error> {
    let Some((offset, json, schema)) = folds.snapshot_due(stream, before) else {
        return Ok(None);
    };
    if offset != head {
        return Ok(None);
    }
    let json = match json {
        Ok(json) => json,
        Err(r) => {
            tracing::warn!(
                stream = %stream, offset = %offset, code = r.code.as_str(), reason = %r.message,
                "the stream's state could not be stored as a snapshot"
            );
            return Ok(None);
        }
    };
    tx.prepare_cached(
        r#"INSERT OR REPLACE INTO snapshots (stream_id, "offset", state, schema) VALUES (?1, ?2, ?3, ?4)"#,
    )?
    .execute(rusqlite::params![
        stream_id,
        to_sql(offset.0)?,
        json.as_bytes(),
        i64::from(schema)
    ])?;
    tx.prepare_cached(r#"DELETE FROM snapshots WHERE stream_id = ?1 AND "offset" < ?2"#)?
        .execute(rusqlite::params![stream_id, to_sql(offset.0)?])?;
    if let Some((through, deleted)) = compact(
        tx,
        &folds.policy(),
        stream_id,
        offset,
        head,
        COMPACT_MAX_ROWS,
        time_ms,
    )? {
        tracing::debug!(stream = %stream, through = through.0, deleted, "events compacted");
    }
    Ok(Some((
        offset,
        sync_core::protocol::state_hash(json.as_bytes()),
        schema,
    )))
}

/// Most events one transaction of the background compaction pass
/// deletes: it never holds appends up for long.
const PASS_MAX_ROWS: u64 = 1000;

/// Deletes the events of the stream `stream_id` that `policy` lets go,
/// `max_rows` at most — at or below its latest snapshot (at `snapshot`)
/// and more than the retained number below `head`, up to the first one
/// stored after the age cutoff at `now_ms` — and records the new horizon.
/// The new horizon and how many events went, when it moved.
fn compact(
    tx: &Connection,
    policy: &SnapshotPolicy,
    stream_id: i64,
    snapshot: Offset,
    head: Offset,
    max_rows: u64,
    now_ms: u64,
) -> Result<Option<(Offset, usize)>, Error> {
    let through = compacted_through(tx, stream_id)?;
    let Some(mut to) = policy.compaction_bound(snapshot, head, through, max_rows) else {
        return Ok(None);
    };
    if let Some(cutoff) = policy.old_at_or_before(now_ms) {
        // Offsets are in time order on one writer, but a clock may step
        // back: the horizon stops before the first event too new to go.
        let young: Option<i64> = tx
            .prepare_cached(
                r#"SELECT "offset" FROM events WHERE stream_id = ?1 AND "offset" > ?2 AND "offset" <= ?3
                   AND time_ms > ?4 ORDER BY "offset" LIMIT 1"#,
            )?
            .query_row(
                rusqlite::params![
                    stream_id,
                    to_sql(through.0)?,
                    to_sql(to.0)?,
                    to_sql(cutoff)?
                ],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(young) = young {
            to = Offset(from_sql(young)?.saturating_sub(1));
        }
        if to <= through {
            return Ok(None);
        }
    }
    let deleted = tx
        .prepare_cached(
            r#"DELETE FROM events WHERE stream_id = ?1 AND "offset" > ?2 AND "offset" <= ?3"#,
        )?
        .execute(rusqlite::params![
            stream_id,
            to_sql(through.0)?,
            to_sql(to.0)?
        ])?;
    tx.prepare_cached(
        "INSERT INTO compactions (stream_id, through) VALUES (?1, ?2)
         ON CONFLICT (stream_id) DO UPDATE SET through = excluded.through",
    )?
    .execute(rusqlite::params![stream_id, to_sql(to.0)?])?;
    Ok(Some((to, deleted)))
}

/// Events after which a state is rebuilt, one page of a stream's log.
const REPLAY_PAGE: i64 = 1000;

/// The events of the stream `stream_id` after `after` (a page).
fn replay(tx: &Transaction<'_>, stream_id: i64, after: Offset) -> Result<Replayed, Error> {
    let mut stmt = tx.prepare_cached(
        r#"SELECT "offset", client_id, seq, time_ms, payload, subject, seen, schema FROM events
           WHERE stream_id = ?1 AND "offset" > ?2 ORDER BY "offset" LIMIT ?3"#,
    )?;
    let mut rows = stmt.query(rusqlite::params![stream_id, to_sql(after.0)?, REPLAY_PAGE])?;
    let mut page = Vec::new();
    while let Some(r) = rows.next()? {
        page.push(super::event_from_row(r)?);
    }
    Ok(page)
}

/// The state of `stream` at its head (read inside the writer's
/// transaction, so it is the state of the decisions made so far).
fn state(tx: &Transaction<'_>, folds: &mut Folds, stream: &StreamName) -> StateAnswer {
    let found: Option<(i64, i64)> = tx
        .prepare_cached("SELECT id, head FROM streams WHERE name = ?1")?
        .query_row([stream.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (stream_id, head) = match found {
        Some((id, head)) => (id, from_sql(head)?),
        None => (-1, 0),
    };
    state_json(
        folds,
        stream,
        Offset(head),
        || latest_snapshot(tx, stream_id),
        |after| replay(tx, stream_id, after),
    )
}

fn put_snapshot(
    tx: &Transaction<'_>,
    stream: &StreamName,
    offset: Offset,
    state: &[u8],
    schema: u32,
) -> Result<(), Error> {
    let (stream_id, _) = ensure_stream(tx, stream)?;
    tx.prepare_cached(
        r#"INSERT INTO snapshots (stream_id, "offset", state, schema) VALUES (?1, ?2, ?3, ?4)
           ON CONFLICT (stream_id, "offset") DO UPDATE SET state = excluded.state, schema = excluded.schema"#,
    )?
    .execute(rusqlite::params![stream_id, to_sql(offset.0)?, state, i64::from(schema)])?;
    Ok(())
}

/// A write that changes nothing: fails when the database cannot be written.
fn probe(tx: &Transaction<'_>) -> Result<(), Error> {
    tx.prepare_cached("UPDATE meta SET value = value WHERE key = 'schema_version'")?
        .execute([])?;
    Ok(())
}

/// Binds `client_id` to `sub` unless it is bound already; the subject it
/// is bound to.
fn bind_client(tx: &Transaction<'_>, client_id: &ClientId, sub: &str) -> Result<String, Error> {
    tx.prepare_cached(
        "INSERT INTO client_subjects (client_id, sub) VALUES (?1, ?2) ON CONFLICT (client_id) DO NOTHING",
    )?
    .execute(rusqlite::params![&client_id.0[..], sub])?;
    Ok(tx
        .prepare_cached("SELECT sub FROM client_subjects WHERE client_id = ?1")?
        .query_row([&client_id.0[..]], |r| r.get(0))?)
}
