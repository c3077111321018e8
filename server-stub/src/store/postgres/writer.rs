//! The node's writer: group commit over one dedicated connection.
//!
//! One task per node takes every append waiting in its queue (up to the
//! batch limits) and decides them all in one transaction:
//!
//! 1. `BEGIN`; create-or-lock the row of every stream in the batch, in
//!    name order (`INSERT … ON CONFLICT DO UPDATE … RETURNING head` takes
//!    the row lock and returns the head as of the lock); read the last
//!    decided seq of every (stream, client) in the batch. One round trip,
//!    pipelined.
//! 2. Decide every intent with [`sync_core::decide_batch`] in memory. The row
//!    locks make this safe across nodes: every writer of a stream, on any
//!    node, holds its row lock from before it reads `last_seq` until its
//!    commit, so decisions on one stream never interleave. Resends look up
//!    their stored outcome (one more round trip, only when there are any).
//! 3. Insert the events, rejections and new `last_seq`s with set-based
//!    statements, move the heads, `COMMIT`. One round trip, pipelined; an
//!    intent is acknowledged only after PostgreSQL reported the commit
//!    (durable with `synchronous_commit = on`, the default).
//! 4. Hand the events to this node's hub, answer the pushers, and record
//!    the new heads for the notifier (`super::notifier`), which tells the
//!    other nodes.
//!
//! Lock order by stream name means two nodes never deadlock on each other;
//! a deadlock or serialization failure reported anyway is retried with
//! the whole batch (nothing of it was committed).
//!
//! Streams a reducer folds: the lock also returns each stream's horizon
//! (how far its events are compacted). A state this node keeps that is
//! behind the head (another node appended) is folded on with the events
//! in between, read under the lock; one that is not kept, or whose events
//! after it were compacted away, starts from the stream's latest snapshot
//! and folds the events after it. When the appends carry a head past a
//! multiple of `--snapshot-every`, the state is stored as the snapshot in
//! step 3 (the older ones deleted), and with a retention the events it
//! lets go are deleted there too (at most [`COMPACT_MAX_ROWS`]). A
//! background pass (with `--retain-age`) compacts idle streams in small
//! transactions of its own, each under the stream's row lock, skipping a
//! stream whose lock an append holds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sync_core::{
    decide_batch, ClientId, ErrorCode, Event, IntentDigest, Offset, Position, Seq, Step, StreamName,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::fanout::Fanout;
use super::notifier::Notices;
use super::{connect, from_pg, schema_to_pg, to_pg};
use crate::error::Error;
use crate::fold::{Folds, Replayed, SnapshotPolicy};
use crate::metrics::Metrics;
use crate::store::CommitMode;
use crate::store::{
    appended_resend, fold_request, state_json, undecided, AppendRequest, Outcome, ProposedIntent,
    StoredSnapshot, StreamStateJson,
};

/// Attempts per batch when PostgreSQL reports a deadlock or a
/// serialization failure.
const MAX_ATTEMPTS: u32 = 5;

/// Most events one appending transaction compacts away: a long log that
/// gets a retention is trimmed over several snapshots.
const COMPACT_MAX_ROWS: u64 = 10_000;

/// Most events one transaction of the background pass deletes.
const PASS_MAX_ROWS: u64 = 1000;

/// Streams one background pass looks at, at most.
const PASS_STREAMS: i64 = 256;

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
    /// The state of a stream with a reducer, at its head.
    State {
        stream: StreamName,
        reply: oneshot::Sender<Result<Option<StreamStateJson>, Error>>,
    },
}

impl Job {
    fn intents(&self) -> usize {
        match self {
            Job::Append { request, .. } => request.intents.len(),
            Job::Snapshot { .. } | Job::State { .. } => 1,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Job::Append { request, .. } => request.payload_bytes(),
            Job::Snapshot { state, .. } => state.len(),
            Job::State { .. } => 0,
        }
    }

    /// What the job writes (`None`: a state read, outside transactions).
    fn work(&self) -> Option<Work<'_>> {
        match self {
            Job::Append { request, .. } => Some(Work::Append(request)),
            Job::Snapshot {
                stream,
                offset,
                state,
                schema,
                ..
            } => Some(Work::Snapshot {
                stream,
                offset: *offset,
                state,
                schema: *schema,
            }),
            Job::State { .. } => None,
        }
    }

    fn stream(&self) -> &StreamName {
        match self {
            Job::Append { request, .. } => &request.stream,
            Job::Snapshot { stream, .. } | Job::State { stream, .. } => stream,
        }
    }
}

/// One item of a transaction, borrowed from its job.
#[derive(Clone, Copy)]
enum Work<'a> {
    Append(&'a AppendRequest),
    Snapshot {
        stream: &'a StreamName,
        offset: Offset,
        state: &'a [u8],
        schema: u32,
    },
}

impl Work<'_> {
    fn stream(&self) -> &StreamName {
        match self {
            Work::Append(r) => &r.stream,
            Work::Snapshot { stream, .. } => stream,
        }
    }
}

/// What a committed transaction decided.
struct Committed {
    /// One list per work item (empty for snapshots).
    outcomes: Vec<Vec<Outcome>>,
    /// New events per stream, in offset order.
    appended: Vec<(StreamName, Vec<Event>)>,
    /// Snapshots stored: stream, offset, state hash and schema version.
    checkpoints: Vec<(StreamName, Offset, u64, u32)>,
    /// Other nodes' events that this node's hub had not been handed yet,
    /// from its last one up to the head this transaction locked, per
    /// stream: handed over first, they keep the hub's window contiguous.
    before: HashMap<StreamName, Vec<Event>>,
}

/// The statements of one connection, prepared once.
struct Statements {
    begin: Statement,
    commit: Statement,
    rollback: Statement,
    lock: Statement,
    lasts: Statement,
    outcomes: Statement,
    events: Statement,
    rejections: Statement,
    clients: Statement,
    heads: Statement,
    snapshots: Statement,
    gap: Statement,
    replay: Statement,
    head: Statement,
    latest: Statement,
    prune: Statement,
    compact: Statement,
    candidates: Statement,
    pass_lock: Statement,
    begin_read: Statement,
}

impl Statements {
    async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            begin: c.prepare("BEGIN").await?,
            commit: c.prepare("COMMIT").await?,
            rollback: c.prepare("ROLLBACK").await?,
            // Sorted input: rows are locked in name order on every node.
            lock: c
                .prepare(
                    "INSERT INTO logsync_streams (name)
                     SELECT n FROM unnest($1::text[]) AS n ORDER BY n
                     ON CONFLICT (name) DO UPDATE SET head = logsync_streams.head
                     RETURNING id, name, head,
                               (SELECT c.through FROM logsync_compactions c
                                WHERE c.stream_id = logsync_streams.id)",
                )
                .await?,
            lasts: c
                .prepare(
                    "SELECT s.name, c.client_id, c.last_seq
                     FROM unnest($1::text[], $2::bytea[]) AS k(name, client_id)
                     JOIN logsync_streams s ON s.name = k.name
                     JOIN logsync_clients c ON c.stream_id = s.id AND c.client_id = k.client_id",
                )
                .await?,
            outcomes: c
                .prepare(
                    r#"SELECT k.i, e."offset", r.code, r.message, e.digest
                       FROM unnest($1::bigint[], $2::bytea[], $3::bigint[])
                            WITH ORDINALITY AS k(stream_id, client_id, seq, i)
                       LEFT JOIN logsync_events e
                         ON e.stream_id = k.stream_id AND e.client_id = k.client_id AND e.seq = k.seq
                       LEFT JOIN logsync_rejections r
                         ON r.stream_id = k.stream_id AND r.client_id = k.client_id AND r.seq = k.seq"#,
                )
                .await?,
            events: c
                .prepare(
                    r#"INSERT INTO logsync_events (stream_id, "offset", client_id, seq, time_ms, payload, digest,
                                                  subject, seen, schema)
                       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[],
                                            $5::bigint[], $6::bytea[], $7::bytea[], $8::text[], $9::bigint[],
                                            $10::int[])"#,
                )
                .await?,
            rejections: c
                .prepare(
                    "INSERT INTO logsync_rejections (stream_id, client_id, seq, code, message)
                     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::text[], $5::text[])",
                )
                .await?,
            clients: c
                .prepare(
                    "INSERT INTO logsync_clients (stream_id, client_id, last_seq)
                     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[])
                     ON CONFLICT (stream_id, client_id) DO UPDATE SET last_seq = excluded.last_seq",
                )
                .await?,
            heads: c
                .prepare(
                    "UPDATE logsync_streams s SET head = v.head
                     FROM unnest($1::bigint[], $2::bigint[]) AS v(id, head) WHERE s.id = v.id",
                )
                .await?,
            snapshots: c
                .prepare(
                    r#"INSERT INTO logsync_snapshots (stream_id, "offset", state, schema)
                       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::int[])
                       ON CONFLICT (stream_id, "offset") DO UPDATE SET state = excluded.state,
                                                                       schema = excluded.schema"#,
                )
                .await?,
            gap: c
                .prepare(
                    r#"SELECT e.stream_id, e."offset", e.client_id, e.seq, e.time_ms, e.payload, e.subject, e.seen,
                              e.schema
                       FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS g(stream_id, after, upto)
                       JOIN logsync_events e ON e.stream_id = g.stream_id
                            AND e."offset" > g.after AND e."offset" <= g.upto
                       ORDER BY e.stream_id, e."offset""#,
                )
                .await?,
            // The events a reducer's state is folded on with: those after
            // each stream's kept state, up to the head its lock returned.
            replay: c
                .prepare(
                    r#"SELECT e.stream_id, e."offset", e.client_id, e.seq, e.time_ms, e.payload, e.subject, e.seen,
                              e.schema
                       FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS g(stream_id, after, upto)
                       JOIN logsync_events e ON e.stream_id = g.stream_id
                            AND e."offset" > g.after AND e."offset" <= g.upto
                       ORDER BY e.stream_id, e."offset""#,
                )
                .await?,
            head: c
                .prepare(
                    "SELECT s.id, s.head, c.through FROM logsync_streams s
                     LEFT JOIN logsync_compactions c ON c.stream_id = s.id WHERE s.name = $1",
                )
                .await?,
            // The latest snapshot at or below each head: where a state
            // that is not kept starts.
            latest: c
                .prepare(
                    r#"SELECT DISTINCT ON (n.stream_id) n.stream_id, n."offset", n.state, n.schema
                       FROM unnest($1::bigint[], $2::bigint[]) AS g(stream_id, upto)
                       JOIN logsync_snapshots n ON n.stream_id = g.stream_id AND n."offset" <= g.upto
                       ORDER BY n.stream_id, n."offset" DESC"#,
                )
                .await?,
            // Only the latest snapshot of a folded stream is kept.
            prune: c
                .prepare(
                    r#"DELETE FROM logsync_snapshots n
                       USING unnest($1::bigint[], $2::bigint[]) AS v(stream_id, "offset")
                       WHERE n.stream_id = v.stream_id AND n."offset" < v."offset""#,
                )
                .await?,
            // Each stream's events after its horizon `after` up to `upto`
            // (what the snapshot and the events rule allow), stopping
            // before the first one stored after `$4` (the age rule's
            // cutoff, NULL without it), are deleted; the new horizon is
            // recorded. Run under the stream's row lock.
            compact: c
                .prepare(
                    r#"WITH v AS (
                           SELECT v.stream_id, v.after,
                                  CASE WHEN $4::bigint IS NULL THEN v.upto
                                  ELSE coalesce((SELECT e."offset" - 1 FROM logsync_events e
                                                 WHERE e.stream_id = v.stream_id AND e."offset" > v.after
                                                   AND e."offset" <= v.upto AND e.time_ms > $4::bigint
                                                 ORDER BY e."offset" LIMIT 1), v.upto)
                                  END AS through
                           FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(stream_id, after, upto)
                       ), gone AS (
                           DELETE FROM logsync_events e USING v
                           WHERE e.stream_id = v.stream_id AND e."offset" > v.after AND e."offset" <= v.through
                       )
                       INSERT INTO logsync_compactions (stream_id, through)
                       SELECT stream_id, through FROM v WHERE through > after
                       ON CONFLICT (stream_id) DO UPDATE
                           SET through = greatest(logsync_compactions.through, excluded.through)"#,
                )
                .await?,
            // Folded streams whose horizon the retention may move now
            // (from stream id `$1` on): a snapshot above the horizon, the
            // events rule (`$2`, NULL without it) past it, and the event
            // after it old enough for the age rule (`$3`, NULL without).
            candidates: c
                .prepare(
                    r#"SELECT s.id, s.name
                       FROM (SELECT stream_id, max("offset") AS snap FROM logsync_snapshots
                             WHERE stream_id >= $1::bigint GROUP BY stream_id) n
                       JOIN logsync_streams s ON s.id = n.stream_id
                       LEFT JOIN logsync_compactions c ON c.stream_id = n.stream_id
                       WHERE n.snap > coalesce(c.through, 0)
                         AND ($2::bigint IS NULL OR s.head - $2::bigint > coalesce(c.through, 0))
                         AND ($3::bigint IS NULL OR EXISTS (
                               SELECT 1 FROM logsync_events e WHERE e.stream_id = n.stream_id
                                 AND e."offset" = coalesce(c.through, 0) + 1 AND e.time_ms <= $3::bigint))
                       ORDER BY n.stream_id LIMIT $4::bigint"#,
                )
                .await?,
            // One stream's row lock for the background pass, unless an
            // append holds it; its head, horizon and latest snapshot.
            pass_lock: c
                .prepare(
                    r#"SELECT s.head, coalesce(c.through, 0),
                              (SELECT max(n."offset") FROM logsync_snapshots n WHERE n.stream_id = s.id)
                       FROM logsync_streams s LEFT JOIN logsync_compactions c ON c.stream_id = s.id
                       WHERE s.id = $1 FOR UPDATE OF s SKIP LOCKED"#,
                )
                .await?,
            begin_read: c
                .prepare("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?,
        })
    }
}

pub(crate) struct Conn {
    client: Client,
    st: Statements,
}

pub(crate) struct Writer {
    /// Where the next compaction pass starts: the passes go round the
    /// folded streams in id order.
    pub pass_from: i64,
    pub config: tokio_postgres::Config,
    pub conn: Option<Conn>,
    pub rx: mpsc::Receiver<Job>,
    pub fanout: Arc<Fanout>,
    pub notices: Arc<Notices>,
    pub metrics: Arc<Metrics>,
    pub mode: CommitMode,
    pub max_batch_intents: usize,
    pub max_batch_bytes: usize,
    /// The states of streams with a reducer, at the heads this node last
    /// saw; another node's appends are folded in under the stream's row
    /// lock before this node decides on the stream.
    pub folds: Folds,
}

impl Writer {
    /// Connects and prepares the statements (at start, so a wrong URL or
    /// missing rights fail the start, not the first append).
    pub async fn ready(&mut self) -> Result<(), Error> {
        self.connection().await.map(|_| ())
    }

    async fn connection(&mut self) -> Result<&Conn, Error> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = connect(&self.config, "logsync-writer").await?;
            let st = Statements::prepare(&client).await?;
            self.conn = Some(Conn { client, st });
        }
        self.conn.as_ref().ok_or(Error::StoreClosed)
    }

    pub async fn run(mut self) {
        // The background compaction pass, with a retention that needs one.
        let mut pass = self.folds.policy().pass_every().map(|every| {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        loop {
            // None once every sender is gone and the queue is drained,
            // which is how shutdown finishes the commits already handed
            // over.
            let first = match pass.as_mut() {
                Some(tick) => tokio::select! {
                    job = self.rx.recv() => job,
                    _ = tick.tick() => {
                        self.compact_pass().await;
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            let Some(first) = first else {
                break;
            };
            match self.mode {
                CommitMode::Group => {
                    let mut intents = first.intents();
                    let mut bytes = first.bytes();
                    let mut jobs = vec![first];
                    // Everything that queued up during the previous commit
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
                    // State reads are answered after the batch's commit,
                    // so they see its decisions.
                    let (reads, writes): (Vec<Job>, Vec<Job>) = jobs
                        .into_iter()
                        .partition(|j| matches!(j, Job::State { .. }));
                    if !writes.is_empty() {
                        self.commit(writes).await;
                    }
                    for read in reads {
                        self.answer_state(read).await;
                    }
                }
                CommitMode::PerIntent if matches!(first, Job::State { .. }) => {
                    self.answer_state(first).await
                }
                CommitMode::PerIntent => self.commit_each(first).await,
            }
        }
        tracing::debug!("PostgreSQL writer stopped");
    }

    /// Decides every job in one transaction and answers each.
    async fn commit(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let intents: usize = jobs.iter().map(Job::intents).sum();
        let work: Vec<Work<'_>> = jobs.iter().filter_map(Job::work).collect();
        let result = self.execute(&work).await;
        drop(work);
        match result {
            Ok(committed) => {
                self.metrics.commit(intents, started.elapsed());
                // Fan-out first: by the time a pusher sees its Ack, the
                // event is in this node's live feed too.
                self.publish(&committed);
                for (job, outcomes) in jobs.into_iter().zip(committed.outcomes) {
                    match job {
                        Job::Append { reply, .. } => {
                            crate::store::count_decided(&self.metrics, &outcomes);
                            let _ = reply.send(Ok(outcomes));
                        }
                        Job::Snapshot { reply, .. } => {
                            let _ = reply.send(Ok(()));
                        }
                        Job::State { reply, .. } => {
                            let _ = reply.send(Err(Error::Storage(
                                "a state read reached a write transaction".into(),
                            )));
                        }
                    }
                }
                self.announce(&committed.appended);
            }
            Err(e) => {
                tracing::error!(error = %e, intents, "commit failed; batch rolled back");
                let streams: BTreeSet<StreamName> =
                    jobs.iter().map(|j| j.stream().clone()).collect();
                let message = e.to_string();
                for job in jobs {
                    match job {
                        Job::Append { reply, .. } => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                        Job::Snapshot { reply, .. } => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                        Job::State { reply, .. } => {
                            let _ = reply.send(Err(Error::Storage(message.clone())));
                        }
                    }
                }
                // A connection lost during COMMIT leaves its outcome
                // unknown: if it did commit, this node's subscribers must
                // still hear of it.
                self.fanout.recheck(streams.into_iter().collect());
            }
        }
    }

    /// One transaction per intent: the baseline that group commit is
    /// measured against.
    async fn commit_each(&mut self, job: Job) {
        let Job::Append { request, reply } = job else {
            return self.commit(vec![job]).await;
        };
        let mut outcomes = Vec::with_capacity(request.intents.len());
        for intent in &request.intents {
            let started = Instant::now();
            let one = AppendRequest {
                stream: request.stream.clone(),
                client_id: request.client_id,
                subject: request.subject.clone(),
                intents: vec![intent.clone()],
            };
            match self.execute(&[Work::Append(&one)]).await {
                Ok(committed) => {
                    self.metrics.commit(1, started.elapsed());
                    self.publish(&committed);
                    self.announce(&committed.appended);
                    let o = committed.outcomes.into_iter().flatten();
                    let before = outcomes.len();
                    outcomes.extend(o);
                    if outcomes[before..]
                        .iter()
                        .any(|x| matches!(x, Outcome::Gap { .. }))
                    {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "commit failed");
                    let _ = reply.send(Err(e));
                    self.fanout.recheck(vec![request.stream.clone()]);
                    return;
                }
            }
        }
        crate::store::count_decided(&self.metrics, &outcomes);
        let _ = reply.send(Ok(outcomes));
    }

    /// Answers a state read: the stream's head as committed now, and the
    /// kept state folded on to it (events are never changed once
    /// committed, so no lock is needed to read them).
    async fn answer_state(&mut self, job: Job) {
        let Job::State { stream, reply } = job else {
            return;
        };
        let answer = self.state(&stream).await;
        let _ = reply.send(answer);
    }

    async fn state(&mut self, stream: &StreamName) -> Result<Option<StreamStateJson>, Error> {
        self.connection().await?;
        let conn = self.conn.as_ref().ok_or(Error::StoreClosed)?;
        let (c, st) = (&conn.client, &conn.st);
        // One snapshot of the database: the head, the horizon and the
        // events between them stay consistent while another node appends
        // or compacts.
        c.execute(&st.begin_read, &[]).await?;
        let folds = &mut self.folds;
        let read = async {
            let row = c.query_opt(&st.head, &[&stream.as_str()]).await?;
            let (id, head, through) = match row {
                Some(row) => (
                    row.try_get::<_, i64>(0)?,
                    from_pg(row.try_get(1)?)?,
                    from_pg(row.try_get::<_, Option<i64>>(2)?.unwrap_or(0))?,
                ),
                None => (-1, 0, 0),
            };
            let events = catch_up(c, st, folds, &[(id, stream, head, through)]).await?;
            Ok::<_, TxError>((id, head, events))
        }
        .await;
        let _ = c.execute(&st.commit, &[]).await;
        let (id, head, events) = read.map_err(TxError::into_error)?;
        let answer = state_json(
            &mut self.folds,
            stream,
            Offset(head),
            || Ok(None),
            |after| Ok(events.after(id, after)),
        );
        self.folds.trim();
        answer
    }

    /// The background compaction pass: in the folded streams whose
    /// horizon can move (idle ones too: age grows without appends),
    /// deletes the events the retention lets go, one small transaction
    /// ([`PASS_MAX_ROWS`] events at most) under one stream's row lock at a
    /// time; a stream whose lock an append holds is skipped (that append
    /// compacts it when it stores a snapshot). Between two transactions,
    /// waiting jobs go first: the pass stops and the next one goes on from
    /// there.
    async fn compact_pass(&mut self) {
        if let Err(e) = self.try_compact_pass().await {
            tracing::warn!(error = %e, "compaction pass failed; the next one tries again");
            if let Some(conn) = self.conn.as_ref() {
                if conn.client.is_closed() {
                    self.conn = None;
                } else {
                    let _ = conn.client.execute(&conn.st.rollback, &[]).await;
                }
            }
        }
    }

    async fn try_compact_pass(&mut self) -> Result<(), Error> {
        let policy = self.folds.policy();
        self.connection().await?;
        let conn = self.conn.as_ref().ok_or(Error::StoreClosed)?;
        let (c, st) = (&conn.client, &conn.st);
        let now = now_ms();
        let retain = policy.retain_events.map(to_pg).transpose()?;
        let cutoff = policy.old_at_or_before(now).map(to_pg).transpose()?;
        let rows = c
            .query(
                &st.candidates,
                &[&self.pass_from, &retain, &cutoff, &PASS_STREAMS],
            )
            .await?;
        // Round the streams: the next pass starts after the last one
        // looked at, or from the first when this one saw them all.
        self.pass_from = match rows.last() {
            Some(row) if rows.len() as i64 == PASS_STREAMS => row.try_get::<_, i64>(0)? + 1,
            _ => 0,
        };
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let name: &str = row.try_get(1)?;
            if !StreamName::new(name).is_ok_and(|s| self.folds.folds(&s)) {
                continue;
            }
            loop {
                c.execute(&st.begin, &[]).await?;
                let Some(locked) = c.query_opt(&st.pass_lock, &[&id]).await? else {
                    // An append holds the stream.
                    c.execute(&st.rollback, &[]).await?;
                    break;
                };
                let head = Offset(from_pg(locked.try_get(0)?)?);
                let through = Offset(from_pg(locked.try_get(1)?)?);
                let snapshot = locked
                    .try_get::<_, Option<i64>>(2)?
                    .map(from_pg)
                    .transpose()?;
                let bound = snapshot.and_then(|snap| {
                    policy.compaction_bound(Offset(snap), head, through, PASS_MAX_ROWS)
                });
                let Some(bound) = bound else {
                    c.execute(&st.rollback, &[]).await?;
                    break;
                };
                let moved = c
                    .execute(
                        &st.compact,
                        &[
                            &vec![id],
                            &vec![to_pg(through.0)?],
                            &vec![to_pg(bound.0)?],
                            &cutoff,
                        ],
                    )
                    .await?;
                c.execute(&st.commit, &[]).await?;
                if moved == 0 {
                    break;
                }
                tracing::debug!(stream = name, "events compacted by the background pass");
                if !self.rx.is_empty() {
                    self.pass_from = id;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn publish(&self, committed: &Committed) {
        for (stream, offset, hash, schema) in &committed.checkpoints {
            self.fanout.checkpoint(stream, *offset, *hash, *schema);
        }
        for (stream, events) in &committed.appended {
            match committed.before.get(stream) {
                Some(before) => {
                    let all: Vec<Event> = before.iter().chain(events).cloned().collect();
                    self.fanout.publish(stream, &all);
                }
                None => self.fanout.publish(stream, events),
            }
        }
    }

    /// Records the new heads for the notifier.
    fn announce(&self, appended: &[(StreamName, Vec<Event>)]) {
        for (stream, events) in appended {
            if let (Some(first), Some(last)) = (events.first(), events.last()) {
                self.notices.add(stream, first.offset, last.offset);
            }
        }
    }

    /// Runs one transaction over `work`, retrying deadlocks and
    /// serialization failures.
    async fn execute(&mut self, work: &[Work<'_>]) -> Result<Committed, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fanout = self.fanout.clone();
            self.connection().await?;
            let conn = self.conn.as_ref().ok_or(Error::StoreClosed)?;
            let e = match transact(conn, &fanout, &mut self.folds, work, now_ms()).await {
                Ok(committed) => {
                    // Between transactions: every kept state is at a
                    // committed head, so a dropped one is rebuilt the same.
                    self.folds.trim();
                    return Ok(committed);
                }
                Err(e) => e,
            };
            // The kept states may hold intents of the rolled-back
            // transaction: each is rebuilt from the log on its next use.
            self.folds.forget_all();
            if conn.client.is_closed() {
                self.conn = None;
            } else {
                // Leaves the connection clean for the next batch (a no-op
                // when the failure already ended the transaction).
                let _ = conn.client.execute(&conn.st.rollback, &[]).await;
            }
            match e {
                TxError::Pg(pg) if retryable(&pg) && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(error = %Error::from(pg), attempt, "retrying the batch");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                TxError::Pg(pg) => return Err(pg.into()),
                TxError::Other(e) => return Err(e),
            }
        }
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
    )
}

/// A few milliseconds, growing, with jitter so two nodes do not collide again.
fn backoff(attempt: u32) -> Duration {
    let mut b = [0u8; 1];
    let jitter = getrandom::fill(&mut b).map(|_| b[0] as u64).unwrap_or(0);
    Duration::from_micros(1000 * u64::from(attempt) + jitter * 8)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum TxError {
    Pg(tokio_postgres::Error),
    Other(Error),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Other(e)
    }
}

impl TxError {
    fn into_error(self) -> Error {
        match self {
            TxError::Pg(e) => e.into(),
            TxError::Other(e) => e,
        }
    }
}

/// Brings the kept states of the folded streams among `streams` — `(id,
/// name, head, horizon)` each, read under the stream's lock or in one
/// snapshot of the database — to where the events up to each head fold
/// them on, and reads those events. A kept state behind the head folds
/// on from where it is, unless the events after it were compacted away;
/// a state not kept (or behind the horizon, or beyond the head: rolled
/// back) starts from the stream's latest snapshot at or below the head
/// ([`Folds::start_from`]: from the start of the log when there is none
/// or the reducer does not restore it). Two round trips at most, and
/// none when every state is at its head.
async fn catch_up(
    c: &Client,
    st: &Statements,
    folds: &mut Folds,
    streams: &[(i64, &StreamName, u64, u64)],
) -> Result<Replay, TxError> {
    let mut behind: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
    let mut start: Vec<(i64, &StreamName, u64)> = Vec::new();
    for &(id, stream, head, through) in streams {
        if !folds.folds(stream) || behind.0.contains(&id) || start.iter().any(|s| s.0 == id) {
            continue;
        }
        match folds.kept_at(stream) {
            Some(at) if at.0 == head => {}
            Some(at) if at.0 < head && through <= at.0 => {
                behind.0.push(id);
                behind.1.push(to_pg(at.0)?);
                behind.2.push(to_pg(head)?);
            }
            kept => {
                if kept.is_some() {
                    folds.forget(stream);
                }
                start.push((id, stream, head));
            }
        }
    }
    if !start.is_empty() {
        let ids: Vec<i64> = start.iter().map(|s| s.0).collect();
        let heads: Vec<i64> = start.iter().map(|s| to_pg(s.2)).collect::<Result<_, _>>()?;
        let mut snapshots: HashMap<i64, StoredSnapshot> = HashMap::new();
        for row in c.query(&st.latest, &[&ids, &heads]).await? {
            snapshots.insert(
                row.try_get(0)?,
                StoredSnapshot {
                    offset: Offset(from_pg(row.try_get(1)?)?),
                    state: row.try_get(2)?,
                    schema: super::schema_from_pg(row.try_get(3)?)?,
                },
            );
        }
        for (id, stream, head) in start {
            match folds.start_from(stream, Offset(head), snapshots.remove(&id)) {
                Ok(Some(at)) if at.0 < head => {
                    behind.0.push(id);
                    behind.1.push(to_pg(at.0)?);
                    behind.2.push(to_pg(head)?);
                }
                Ok(_) => {}
                // The reducer cannot start a state: the stream's intents
                // are refused with this when they are folded.
                Err(r) => tracing::warn!(
                    stream = %stream, code = r.code.as_str(), reason = %r.message,
                    "the reducer cannot start the stream's state"
                ),
            }
        }
    }
    if behind.0.is_empty() {
        return Ok(Replay::default());
    }
    let params: [&(dyn ToSql + Sync); 3] = [&behind.0, &behind.1, &behind.2];
    Ok(Replay::from_rows(c.query(&st.replay, &params).await?)?)
}

/// The first error of pipelined statements (later ones only say the
/// transaction was aborted).
fn first_error<T>(
    results: Vec<Result<T, tokio_postgres::Error>>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    results.into_iter().collect()
}

/// One transaction over `work` (see the module docs for its steps).
async fn transact(
    conn: &Conn,
    fanout: &Fanout,
    folds: &mut Folds,
    work: &[Work<'_>],
    time_ms: u64,
) -> Result<Committed, TxError> {
    let (c, st) = (&conn.client, &conn.st);
    let names: Vec<&str> = work
        .iter()
        .map(|w| w.stream().as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let pairs: Vec<(&str, ClientId)> = work
        .iter()
        .filter_map(|w| match w {
            Work::Append(r) => Some((r.stream.as_str(), r.client_id)),
            Work::Snapshot { .. } => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let pair_names: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let pair_clients: Vec<&[u8]> = pairs.iter().map(|p| &p.1 .0[..]).collect();

    // Round trip 1: begin, lock the streams, read the last seqs.
    let lock_params: [&(dyn ToSql + Sync); 1] = [&names];
    let lasts_params: [&(dyn ToSql + Sync); 2] = [&pair_names, &pair_clients];
    let (begin, lock, lasts) = {
        let begin = c.execute(&st.begin, &[]);
        let lock = c.query(&st.lock, &lock_params);
        let lasts = c.query(&st.lasts, &lasts_params);
        // Polled in order, so the three are sent together and run in order.
        futures_util::future::join3(begin, lock, lasts).await
    };
    begin?;
    let mut streams: HashMap<String, (i64, u64)> = HashMap::with_capacity(names.len());
    // How far each stream's events are compacted (stable under the lock).
    let mut horizons: HashMap<i64, u64> = HashMap::new();
    for row in lock? {
        let id: i64 = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let head: i64 = row.try_get(2)?;
        streams.insert(name, (id, from_pg(head)?));
        if let Some(through) = row.try_get::<_, Option<i64>>(3)? {
            horizons.insert(id, from_pg(through)?);
        }
    }
    let mut last_seqs: HashMap<(String, ClientId), u64> = HashMap::new();
    for row in lasts? {
        let name: String = row.try_get(0)?;
        let client: &[u8] = row.try_get(1)?;
        let last: i64 = row.try_get(2)?;
        last_seqs.insert((name, client_id(client)?), from_pg(last)?);
    }

    // Other nodes' commits this node's hub has not been handed yet: read
    // them with the writes (the row lock keeps them stable).
    let mut gaps: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
    let mut gap_streams: HashMap<i64, &StreamName> = HashMap::new();
    for w in work {
        let stream = w.stream();
        let Some(&(id, head)) = streams.get(stream.as_str()) else {
            continue;
        };
        if gap_streams.contains_key(&id) {
            continue;
        }
        if let Some(known) = fanout.missing_before(stream, Offset(head)) {
            gaps.0.push(id);
            gaps.1.push(to_pg(known.0)?);
            gaps.2.push(to_pg(head)?);
            gap_streams.insert(id, stream);
        }
    }

    // Streams with a reducer whose kept state is not at the head the lock
    // returned (another node appended, this node has not folded the
    // stream yet, or the events after the kept state were compacted):
    // started from the snapshot where needed, and the events up to that
    // head read under the lock.
    let mut folded: Vec<(i64, &StreamName, u64, u64)> = Vec::new();
    for w in work {
        let Work::Append(request) = w else {
            continue;
        };
        if let Some(&(id, head)) = streams.get(request.stream.as_str()) {
            let through = horizons.get(&id).copied().unwrap_or(0);
            folded.push((id, &request.stream, head, through));
        }
    }
    let replay = catch_up(c, st, folds, &folded).await?;

    // Decide in memory, each request's intents folded first onto its
    // stream's state at the head decided so far.
    let mut plan = Plan::new(streams, last_seqs, time_ms);
    plan.horizons = horizons;
    plan.policy = folds.policy();
    for w in work {
        plan.add(w, folds, &replay)?;
    }

    // Round trip 2 (only with resends of seqs decided before this batch):
    // their stored outcomes.
    if !plan.lookups.is_empty() {
        let ids: Vec<i64> = plan.lookups.iter().map(|l| l.0).collect();
        let clients: Vec<&[u8]> = plan.lookups.iter().map(|l| &l.1 .0[..]).collect();
        let seqs: Vec<i64> = plan
            .lookups
            .iter()
            .map(|l| to_pg(l.2.get()))
            .collect::<Result<_, _>>()?;
        let rows = c.query(&st.outcomes, &[&ids, &clients, &seqs]).await?;
        let mut found: Vec<Option<Outcome>> = vec![None; plan.lookups.len()];
        for row in rows {
            let i: i64 = row.try_get(0)?;
            let offset: Option<i64> = row.try_get(1)?;
            let code: Option<String> = row.try_get(2)?;
            let message: Option<String> = row.try_get(3)?;
            let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| found.get_mut(i)) else {
                continue;
            };
            let (_, _, seq, offered) = plan.lookups[usize::try_from(i - 1).unwrap_or(0)];
            let digest: Option<&[u8]> = row.try_get(4)?;
            let digest = match digest {
                Some(d) => Some(IntentDigest::from_slice(d).ok_or_else(|| {
                    Error::Storage(format!("digest of {} bytes stored for seq {seq}", d.len()))
                })?),
                None => None,
            };
            *slot = match (offset, code, message) {
                (Some(o), _, _) => Some(appended_resend(
                    seq,
                    offered.as_ref(),
                    Offset(from_pg(o)?),
                    digest,
                )),
                (None, Some(code), Some(message)) => Some(Outcome::Rejected {
                    seq,
                    code: ErrorCode::parse(&code),
                    message,
                    duplicate: true,
                }),
                // Appended, and its event compacted away since: answered
                // as in the log at the horizon (the snapshot holds it); its
                // payload can no longer be compared.
                _ => match plan
                    .horizons
                    .get(&plan.lookups[usize::try_from(i - 1).unwrap_or(0)].0)
                {
                    Some(&through) if through > 0 => Some(Outcome::Appended {
                        seq,
                        offset: Offset(through),
                        duplicate: true,
                    }),
                    _ => None,
                },
            };
        }
        plan.found = found;
    }

    // Round trip 3: every write, then COMMIT.
    {
        let rows = plan.rows(work)?;
        type Params<'p> = Vec<&'p (dyn ToSql + Sync)>;
        let mut statements: Vec<(&Statement, Params<'_>)> = Vec::new();
        if !rows.ev_stream.is_empty() {
            statements.push((
                &st.events,
                vec![
                    &rows.ev_stream,
                    &rows.ev_offset,
                    &rows.ev_client,
                    &rows.ev_seq,
                    &rows.ev_time,
                    &rows.ev_payload,
                    &rows.ev_digest,
                    &rows.ev_subject,
                    &rows.ev_seen,
                    &rows.ev_schema,
                ],
            ));
        }
        if !rows.rj_stream.is_empty() {
            statements.push((
                &st.rejections,
                vec![
                    &rows.rj_stream,
                    &rows.rj_client,
                    &rows.rj_seq,
                    &rows.rj_code,
                    &rows.rj_message,
                ],
            ));
        }
        if !rows.cl_stream.is_empty() {
            statements.push((
                &st.clients,
                vec![&rows.cl_stream, &rows.cl_client, &rows.cl_last],
            ));
        }
        if !rows.hd_stream.is_empty() {
            statements.push((&st.heads, vec![&rows.hd_stream, &rows.hd_head]));
        }
        if !rows.sn_stream.is_empty() {
            statements.push((
                &st.snapshots,
                vec![
                    &rows.sn_stream,
                    &rows.sn_offset,
                    &rows.sn_state,
                    &rows.sn_schema,
                ],
            ));
        }
        if !rows.pr_stream.is_empty() {
            statements.push((&st.prune, vec![&rows.pr_stream, &rows.pr_offset]));
        }
        if !rows.cp_stream.is_empty() {
            statements.push((
                &st.compact,
                vec![
                    &rows.cp_stream,
                    &rows.cp_after,
                    &rows.cp_upto,
                    &rows.cp_cutoff,
                ],
            ));
        }
        statements.push((&st.commit, Vec::new()));
        let gap_params: [&(dyn ToSql + Sync); 3] = [&gaps.0, &gaps.1, &gaps.2];
        let gap_rows = (!gaps.0.is_empty()).then(|| c.query(&st.gap, &gap_params));
        let writes = statements
            .iter()
            .map(|(statement, params)| c.execute(*statement, params.as_slice()));
        // Sent before the writes, in the same round trip.
        let (gap_rows, writes) = futures_util::future::join(
            async {
                match gap_rows {
                    Some(q) => q.await.map(Some),
                    None => Ok(None),
                }
            },
            futures_util::future::join_all(writes),
        )
        .await;
        // Every result must be Ok: after a failed statement PostgreSQL turns
        // the COMMIT into a rollback without an error of its own.
        let gap_rows = gap_rows?;
        first_error(writes)?;
        let mut before: HashMap<StreamName, Vec<Event>> = HashMap::new();
        for row in gap_rows.unwrap_or_default() {
            let id: i64 = row.try_get(0)?;
            let Some(stream) = gap_streams.get(&id) else {
                continue;
            };
            before
                .entry((*stream).clone())
                .or_default()
                .push(event_of_row(&row)?);
        }
        let mut committed = plan.finish(work)?;
        committed.before = before;
        Ok(committed)
    }
}

/// The event of a row `stream_id, offset, client_id, seq, time_ms,
/// payload, subject, seen, schema`.
fn event_of_row(row: &tokio_postgres::Row) -> Result<Event, Error> {
    let client: &[u8] = row.try_get(2)?;
    Ok(Event {
        offset: Offset(from_pg(row.try_get(1)?)?),
        client_id: client_id(client)?,
        seq: Seq::new(from_pg(row.try_get(3)?)?).map_err(|e| Error::Storage(e.to_string()))?,
        time_ms: from_pg(row.try_get(4)?)?,
        payload: row.try_get(5)?,
        subject: row.try_get(6)?,
        seen: Offset(from_pg(row.try_get(7)?)?),
        schema: super::schema_from_pg(row.try_get(8)?)?,
    })
}

fn client_id(bytes: &[u8]) -> Result<ClientId, Error> {
    let b: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Error::Storage(format!("client id of {} bytes in the log", bytes.len())))?;
    Ok(ClientId::from_bytes(b))
}

/// Where an intent's outcome comes from.
enum Slot {
    Known(Outcome),
    /// Index into `Plan::lookups`.
    Stored(usize),
}

/// An appended intent: (work index, intent index, stream id, offset,
/// payload digest).
type Placed = (usize, usize, i64, Offset, IntentDigest);

/// The decisions of one transaction, made in memory under the row locks.
struct Plan {
    time_ms: u64,
    /// Stream name -> (id, head as decided so far).
    streams: HashMap<String, (i64, u64)>,
    /// Head of each stream when locked.
    start_heads: HashMap<i64, u64>,
    /// (stream, client) -> last seq decided so far.
    lasts: HashMap<(String, ClientId), u64>,
    /// (stream, client) -> last seq stored before this transaction.
    start_lasts: HashMap<(String, ClientId), u64>,
    /// Decisions made in this transaction (with the digest of an
    /// appended intent), for a resend in the same batch.
    decided: HashMap<(String, ClientId, Seq), (Outcome, Option<IntentDigest>)>,
    slots: Vec<Vec<Slot>>,
    placed: Vec<Placed>,
    rejected: Vec<(i64, ClientId, Seq, ErrorCode, String)>,
    /// (stream id, offset) -> work index, the latest wins.
    snapshots: HashMap<(i64, Offset), usize>,
    /// States of folded streams due for a snapshot: (stream id, offset,
    /// state as JSON text, the reducer's schema version).
    folded: Vec<(i64, Offset, Vec<u8>, u32)>,
    /// How far each locked stream's events are compacted (absent: not at
    /// all).
    horizons: HashMap<i64, u64>,
    /// What the folded streams' snapshots let the retention delete.
    policy: SnapshotPolicy,
    /// Resends of seqs decided before this transaction: (stream id,
    /// client, seq, digest of the resent payload).
    lookups: Vec<(i64, ClientId, Seq, Option<IntentDigest>)>,
    found: Vec<Option<Outcome>>,
}

/// Column arrays for the set-based writes.
#[derive(Default)]
struct Rows<'a> {
    ev_stream: Vec<i64>,
    ev_offset: Vec<i64>,
    ev_client: Vec<&'a [u8]>,
    ev_seq: Vec<i64>,
    ev_time: Vec<i64>,
    ev_payload: Vec<&'a [u8]>,
    ev_digest: Vec<&'a [u8]>,
    ev_subject: Vec<Option<&'a str>>,
    ev_seen: Vec<i64>,
    ev_schema: Vec<i32>,
    rj_stream: Vec<i64>,
    rj_client: Vec<&'a [u8]>,
    rj_seq: Vec<i64>,
    rj_code: Vec<&'a str>,
    rj_message: Vec<&'a str>,
    cl_stream: Vec<i64>,
    cl_client: Vec<&'a [u8]>,
    cl_last: Vec<i64>,
    hd_stream: Vec<i64>,
    hd_head: Vec<i64>,
    sn_stream: Vec<i64>,
    sn_offset: Vec<i64>,
    sn_state: Vec<&'a [u8]>,
    sn_schema: Vec<i32>,
    pr_stream: Vec<i64>,
    pr_offset: Vec<i64>,
    cp_stream: Vec<i64>,
    cp_after: Vec<i64>,
    cp_upto: Vec<i64>,
    cp_cutoff: Option<i64>,
}

impl Plan {
    fn new(
        streams: HashMap<String, (i64, u64)>,
        lasts: HashMap<(String, ClientId), u64>,
        time_ms: u64,
    ) -> Self {
        Plan {
            time_ms,
            start_heads: streams.values().copied().collect(),
            streams,
            start_lasts: lasts.clone(),
            lasts,
            decided: HashMap::new(),
            slots: Vec::new(),
            placed: Vec::new(),
            rejected: Vec::new(),
            snapshots: HashMap::new(),
            folded: Vec::new(),
            horizons: HashMap::new(),
            policy: SnapshotPolicy::default(),
            lookups: Vec::new(),
            found: Vec::new(),
        }
    }

    fn stream(&self, name: &StreamName) -> Result<(i64, u64), Error> {
        self.streams.get(name.as_str()).copied().ok_or_else(|| {
            Error::Storage(format!("stream {name} was not locked by its transaction"))
        })
    }

    /// Decides one work item, in batch order. An append on a stream with
    /// a reducer is folded first ([`fold_request`]): an intent the
    /// reducer refuses is decided as rejected; `replay` holds the events
    /// its state is folded on with.
    fn add(&mut self, work: &Work<'_>, folds: &mut Folds, replay: &Replay) -> Result<(), Error> {
        let index = self.slots.len();
        let request = match work {
            Work::Append(r) => *r,
            Work::Snapshot { stream, offset, .. } => {
                let (id, _) = self.stream(stream)?;
                self.snapshots.insert((id, *offset), index);
                self.slots.push(Vec::new());
                return Ok(());
            }
        };
        let (id, head) = self.stream(&request.stream)?;
        let name = request.stream.as_str().to_string();
        let client = request.client_id;
        let key = (name.clone(), client);
        let mut position = Position {
            last_decided: self.lasts.get(&key).copied().unwrap_or(0),
            head: Offset(head),
        };
        let folded: Vec<ProposedIntent>;
        let intents: &[ProposedIntent] = if folds.folds(&request.stream) {
            // Appended intents keep their payloads; refused ones turn into
            // rejections. The rows are written from `work`, so only the
            // verdicts of this copy matter.
            let mut copy = request.intents.clone();
            if let Some(refusal) = fold_request(
                folds,
                &request.stream,
                position,
                &mut copy,
                &request.sender(self.time_ms),
                || Ok(None),
                |after| Ok(replay.after(id, after)),
            )? {
                // Not decided: nothing of this request is written.
                self.slots.push(
                    undecided(&request.intents, &refusal)
                        .into_iter()
                        .map(Slot::Known)
                        .collect(),
                );
                return Ok(());
            }
            folded = copy;
            &folded
        } else {
            &request.intents
        };
        let steps = decide_batch(&mut position, intents.iter().map(ProposedIntent::offer));
        let mut slots = Vec::with_capacity(steps.len());
        for (i, (step, intent)) in steps.into_iter().zip(intents).enumerate() {
            let slot = match step {
                Step::Append { seq, offset } => {
                    let digest = intent.stored_digest();
                    self.placed.push((index, i, id, offset, digest));
                    let outcome = Outcome::Appended {
                        seq,
                        offset,
                        duplicate: false,
                    };
                    self.decided
                        .insert((name.clone(), client, seq), (outcome.clone(), Some(digest)));
                    Slot::Known(outcome)
                }
                Step::Reject { seq } => {
                    let (code, message) = intent.refusal()?;
                    self.rejected.push((id, client, seq, code, message.clone()));
                    let outcome = Outcome::Rejected {
                        seq,
                        code,
                        message,
                        duplicate: false,
                    };
                    self.decided
                        .insert((name.clone(), client, seq), (outcome.clone(), None));
                    Slot::Known(outcome)
                }
                Step::Resend { seq } => match self.decided.get(&(name.clone(), client, seq)) {
                    // Decided earlier in this same transaction.
                    Some((Outcome::Appended { offset, .. }, digest)) => Slot::Known(
                        appended_resend(seq, intent.digest.as_ref(), *offset, *digest),
                    ),
                    Some((o, _)) => Slot::Known(as_duplicate(o.clone())),
                    None => {
                        self.lookups.push((id, client, seq, intent.digest));
                        Slot::Stored(self.lookups.len() - 1)
                    }
                },
                Step::Gap { expected } => Slot::Known(Outcome::Gap { expected }),
            };
            slots.push(slot);
        }
        self.lasts.insert(key, position.last_decided);
        if let Some(s) = self.streams.get_mut(request.stream.as_str()) {
            s.1 = position.head.0;
        }
        // The folded state, stored as a snapshot in this transaction when
        // its head passed a multiple of the policy's interval.
        if position.head.0 != head {
            match folds.snapshot_due(&request.stream, Offset(head)) {
                Some((offset, Ok(json), schema)) if offset == position.head => {
                    self.folded.retain(|(i, _, _, _)| *i != id);
                    self.folded.push((id, offset, json.into_bytes(), schema));
                }
                Some((offset, Err(r), _)) => tracing::warn!(
                    stream = %request.stream, offset = %offset, code = r.code.as_str(),
                    reason = %r.message, "the stream's state could not be stored as a snapshot"
                ),
                _ => {}
            }
        }
        self.slots.push(slots);
        Ok(())
    }

    /// The column arrays of every write, borrowing payloads from `work`.
    fn rows<'a>(&'a self, work: &'a [Work<'a>]) -> Result<Rows<'a>, Error> {
        let mut rows = Rows::default();
        for (w, i, stream_id, offset, digest) in &self.placed {
            let (w, i, stream_id, offset) = (*w, *i, *stream_id, *offset);
            let Some(Work::Append(request)) = work.get(w) else {
                return Err(Error::Storage("an appended intent lost its request".into()));
            };
            let Some(intent) = request.intents.get(i) else {
                return Err(Error::Storage("an appended intent lost its payload".into()));
            };
            rows.ev_stream.push(stream_id);
            rows.ev_offset.push(to_pg(offset.0)?);
            rows.ev_client.push(&request.client_id.0[..]);
            rows.ev_seq.push(to_pg(intent.seq.get())?);
            rows.ev_time.push(to_pg(self.time_ms)?);
            rows.ev_payload.push(&intent.payload);
            rows.ev_digest.push(&digest.0[..]);
            rows.ev_subject.push(request.subject.as_deref());
            rows.ev_seen.push(to_pg(intent.seen.0)?);
            rows.ev_schema.push(schema_to_pg(intent.schema)?);
        }
        for (stream_id, client, seq, code, message) in &self.rejected {
            rows.rj_stream.push(*stream_id);
            rows.rj_client.push(&client.0[..]);
            rows.rj_seq.push(to_pg(seq.get())?);
            rows.rj_code.push(code.as_str());
            rows.rj_message.push(message);
        }
        for ((name, client), last) in &self.lasts {
            if self.start_lasts.get(&(name.clone(), *client)) == Some(last) || *last == 0 {
                continue;
            }
            let (id, _) = self.streams.get(name.as_str()).copied().ok_or_else(|| {
                Error::Storage(format!("stream {name} was not locked by its transaction"))
            })?;
            rows.cl_stream.push(id);
            rows.cl_client.push(&client.0[..]);
            rows.cl_last.push(to_pg(*last)?);
        }
        for (id, head) in self.streams.values() {
            if self.start_heads.get(id) != Some(head) {
                rows.hd_stream.push(*id);
                rows.hd_head.push(to_pg(*head)?);
            }
        }
        for (&(id, offset), &w) in &self.snapshots {
            if let Some(Work::Snapshot { state, schema, .. }) = work.get(w) {
                rows.sn_stream.push(id);
                rows.sn_offset.push(to_pg(offset.0)?);
                rows.sn_state.push(state);
                rows.sn_schema.push(schema_to_pg(*schema)?);
            }
        }
        for (id, offset, state, schema) in &self.folded {
            if !self.snapshots.contains_key(&(*id, *offset)) {
                rows.sn_stream.push(*id);
                rows.sn_offset.push(to_pg(offset.0)?);
                rows.sn_state.push(state);
                rows.sn_schema.push(schema_to_pg(*schema)?);
            }
            rows.pr_stream.push(*id);
            rows.pr_offset.push(to_pg(offset.0)?);
            // Compaction under the new snapshot, up to the head this
            // transaction leaves.
            let head = self
                .streams
                .values()
                .find(|(i, _)| i == id)
                .map_or(offset.0, |(_, head)| *head);
            let through = self.horizons.get(id).copied().unwrap_or(0);
            if let Some(upto) = self.policy.compaction_bound(
                *offset,
                Offset(head),
                Offset(through),
                COMPACT_MAX_ROWS,
            ) {
                rows.cp_stream.push(*id);
                rows.cp_after.push(to_pg(through)?);
                rows.cp_upto.push(to_pg(upto.0)?);
            }
        }
        rows.cp_cutoff = self
            .policy
            .old_at_or_before(self.time_ms)
            .map(to_pg)
            .transpose()?;
        Ok(rows)
    }

    /// Resolves every outcome and lists the new events per stream.
    fn finish(self, work: &[Work<'_>]) -> Result<Committed, Error> {
        let mut outcomes = Vec::with_capacity(self.slots.len());
        for slots in self.slots {
            let mut list = Vec::with_capacity(slots.len());
            for slot in slots {
                list.push(match slot {
                    Slot::Known(o) => o,
                    Slot::Stored(i) => {
                        let (_, client, seq, _) = self.lookups[i];
                        self.found.get(i).cloned().flatten().ok_or_else(|| {
                            Error::Storage(format!(
                                "seq {seq} of client {client} is decided but its outcome is missing"
                            ))
                        })?
                    }
                });
            }
            outcomes.push(list);
        }
        let mut appended: Vec<(StreamName, Vec<Event>)> = Vec::new();
        for &(w, i, _, offset, _) in &self.placed {
            let Some(Work::Append(request)) = work.get(w) else {
                continue;
            };
            let Some(intent) = request.intents.get(i) else {
                continue;
            };
            let event = Event {
                offset,
                client_id: request.client_id,
                seq: intent.seq,
                time_ms: self.time_ms,
                payload: intent.payload.clone(),
                subject: request.subject.clone(),
                seen: intent.seen,
                schema: intent.schema,
            };
            match appended.iter_mut().find(|(s, _)| *s == request.stream) {
                Some((_, events)) => events.push(event),
                None => appended.push((request.stream.clone(), vec![event])),
            }
        }
        let mut checkpoints = Vec::new();
        for (id, offset, state, schema) in &self.folded {
            let name = self.streams.iter().find(|(_, (i, _))| i == id);
            if let Some(stream) = name.and_then(|(n, _)| StreamName::new(n.as_str()).ok()) {
                checkpoints.push((
                    stream,
                    *offset,
                    sync_core::protocol::state_hash(state),
                    *schema,
                ));
            }
        }
        Ok(Committed {
            outcomes,
            appended,
            checkpoints,
            before: HashMap::new(),
        })
    }
}

/// Events read for folding, per stream id, ascending.
#[derive(Default)]
struct Replay(HashMap<i64, Replayed>);

impl Replay {
    fn from_rows(rows: Vec<tokio_postgres::Row>) -> Result<Replay, Error> {
        let mut r = Replay::default();
        for row in rows {
            let id: i64 = row.try_get(0)?;
            r.0.entry(id).or_default().push(event_of_row(&row)?);
        }
        Ok(r)
    }

    /// The events of stream `id` after `after` (all of them: one page).
    fn after(&self, id: i64, after: Offset) -> Replayed {
        self.0
            .get(&id)
            .map(|events| {
                events
                    .iter()
                    .filter(|e| e.offset > after)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn as_duplicate(o: Outcome) -> Outcome {
    match o {
        Outcome::Appended { seq, offset, .. } => Outcome::Appended {
            seq,
            offset,
            duplicate: true,
        },
        Outcome::Rejected {
            seq, code, message, ..
        } => Outcome::Rejected {
            seq,
            code,
            message,
            duplicate: true,
        },
        gap => gap,
    }
}
