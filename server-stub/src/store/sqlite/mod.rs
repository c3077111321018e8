//! The embedded default store: one SQLite file in WAL mode.
//!
//! - One writer thread owns the only read-write connection. It takes every
//!   append request waiting in its queue (up to the batch limits), decides
//!   them all in one transaction and commits once (`synchronous=FULL`: the
//!   WAL is fsync'd before the commit returns), then answers each request.
//!   That is group commit: one fsync pays for many intents, and an intent
//!   is acknowledged only after the fsync that made it durable.
//! - Reads run on a small pool of read-only connections on blocking
//!   threads; WAL lets them read a consistent snapshot while the writer
//!   commits.
//!
//! Layout (`schema_version` 2):
//!
//! ```text
//! meta       (key, value)                          epoch, schema_version
//! streams    (id, name UNIQUE, head)
//! events     (stream_id, offset, client_id, seq, time_ms, payload, digest,
//!             subject, seen, schema)
//!            PRIMARY KEY (stream_id, offset); UNIQUE (stream_id, client_id, seq)
//!            digest: SHA-256 of the payload, to tell a resend from a reused seq
//!            schema: the schema version the intent was made under
//! clients    (stream_id, client_id, last_seq)      highest seq decided
//! rejections (stream_id, client_id, seq, code, message)
//! snapshots  (stream_id, offset, state, schema)   folded streams: the latest state
//!                                                 and the reducer's schema version
//! compactions (stream_id, through)                events at or below through deleted
//! client_subjects (client_id, sub)                 who a client id belongs to (with auth)
//! ```
//!
//! `client_subjects` was added without a schema version change: it is
//! created when missing, and a file without it simply has no bindings yet.
//!
//! Migrations run at open, in the writer's first transaction: version 1 →
//! 2 adds `events.digest` and fills it from the stored payloads. A file
//! whose version is newer than this build is refused.

mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sync_core::protocol::EVENT_OVERHEAD;
use sync_core::{ClientId, Epoch, Event, Offset, Seq, StreamName};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{
    AppendListener, AppendRequest, BoxFuture, LogStore, Outcome, Page, ReadLimits, StoredSnapshot,
    StreamStateJson, Submitted,
};
use crate::error::Error;
use crate::fold::{Folds, Reducers};
use crate::metrics::Metrics;
use crate::store::CommitMode;

const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    head INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    stream_id INTEGER NOT NULL,
    "offset"  INTEGER NOT NULL,
    client_id BLOB NOT NULL,
    seq       INTEGER NOT NULL,
    time_ms   INTEGER NOT NULL,
    payload   BLOB NOT NULL,
    digest    BLOB,
    subject   TEXT,
    seen      INTEGER NOT NULL DEFAULT 0,
    schema    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (stream_id, "offset")
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_intent ON events (stream_id, client_id, seq);
CREATE TABLE IF NOT EXISTS clients (
    stream_id INTEGER NOT NULL,
    client_id BLOB NOT NULL,
    last_seq  INTEGER NOT NULL,
    PRIMARY KEY (stream_id, client_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    stream_id INTEGER NOT NULL,
    client_id BLOB NOT NULL,
    seq       INTEGER NOT NULL,
    code      TEXT NOT NULL,
    message   TEXT NOT NULL,
    PRIMARY KEY (stream_id, client_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id INTEGER NOT NULL,
    "offset"  INTEGER NOT NULL,
    state     BLOB NOT NULL,
    schema    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (stream_id, "offset")
);
CREATE TABLE IF NOT EXISTS compactions (
    stream_id INTEGER PRIMARY KEY,
    through   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS client_subjects (
    client_id BLOB PRIMARY KEY,
    sub       TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Options of the SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The database file.
    pub path: PathBuf,
    /// Group commit or one commit per intent.
    pub commit_mode: CommitMode,
    /// Most intents per transaction.
    pub max_batch_intents: usize,
    /// Most payload bytes per transaction.
    pub max_batch_bytes: usize,
    /// Read connections.
    pub max_readers: usize,
    /// Streams folded at the ordering point, and by which reducer.
    pub reducers: Reducers,
}

/// The SQLite log store.
pub struct SqliteStore {
    path: PathBuf,
    epoch: Epoch,
    jobs: Mutex<Option<mpsc::Sender<writer::Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<ReaderPool>,
    /// False while the writer's last commit failed.
    writable: Arc<AtomicBool>,
    /// When the health check last tried a write.
    last_probe: Mutex<Option<std::time::Instant>>,
    /// The thread that queues compaction passes (with a retention that
    /// needs them), and what stops it.
    ticker: Mutex<Option<Ticker>>,
}

/// A thread queuing a [`writer::Job::Compact`] every interval while none
/// is queued or running; stops when its `stop` sender is dropped or the
/// writer's queue is gone.
struct Ticker {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Ticker {
    fn start(
        every: std::time::Duration,
        jobs: mpsc::WeakSender<writer::Job>,
        compacting: Arc<AtomicBool>,
    ) -> Result<Ticker, Error> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("logsync-compact".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let Some(jobs) = jobs.upgrade() else {
                        return;
                    };
                    if !compacting.swap(true, Ordering::Relaxed)
                        && jobs.try_send(writer::Job::Compact).is_err()
                    {
                        // The queue is full (the writer is busy): next time.
                        compacting.store(false, Ordering::Relaxed);
                    }
                }
            })?;
        Ok(Ticker { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// How often the health check tries a real write while writes succeed
/// (each costs one commit), and while they fail.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const PROBE_EVERY_FAILING: std::time::Duration = std::time::Duration::from_secs(1);

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl SqliteStore {
    /// Opens (or creates) the database, then starts the writer thread.
    /// Blocking: call from a blocking context or at start-up.
    pub fn open(
        options: SqliteOptions,
        listener: Arc<dyn AppendListener>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let conn = open_writer(&options.path)?;
        let epoch = init_schema(&conn)?;
        // A small queue: when the writer is saturated, pushers wait here,
        // which is the back-pressure that keeps memory bounded.
        let (tx, rx) = mpsc::channel(1024);
        let writable = Arc::new(AtomicBool::new(true));
        let compacting = Arc::new(AtomicBool::new(false));
        let ticker = match options.reducers.snapshot_policy().pass_every() {
            Some(every) => Some(Ticker::start(every, tx.downgrade(), compacting.clone())?),
            None => None,
        };
        let w = writer::Writer {
            compacting,
            pass_from: 0,
            writable: writable.clone(),
            conn,
            rx,
            listener,
            folds: Folds::with_metrics(options.reducers.clone(), metrics.clone()),
            metrics,
            mode: options.commit_mode,
            max_batch_intents: options.max_batch_intents,
            max_batch_bytes: options.max_batch_bytes,
        };
        let handle = std::thread::Builder::new()
            .name("logsync-writer".into())
            .spawn(move || w.run())?;
        Ok(SqliteStore {
            path: options.path.clone(),
            epoch,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(ReaderPool {
                path: options.path,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(options.max_readers.max(1)),
            }),
            writable,
            last_probe: Mutex::new(None),
            ticker: Mutex::new(ticker),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_reader<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| Error::StoreClosed)?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut v| v.pop()) {
                Ok(Some(c)) => c,
                _ => open_reader(&pool.path)?,
            };
            let result = f(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Storage(format!("read task failed: {e}")))?
    }
}

fn open_writer(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)
        .map_err(|e| Error::Storage(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Storage(format!(
            "database {} refused WAL mode (got {mode})",
            path.display()
        )));
    }
    // FULL: in WAL mode the WAL is fsync'd at every commit, so an
    // acknowledged intent survives power loss, not only a process crash.
    // journal_size_limit: after a checkpoint, truncate a WAL that a burst
    // made large instead of keeping it at its peak size.
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864;",
    )?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Storage(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Creates the tables when missing and returns the epoch (made now for a
/// new database).
fn init_schema(conn: &Connection) -> Result<Epoch, Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        conn.execute_batch(SCHEMA)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) if v == "1" || v == "2" || v == "3" => {
                if v == "1" {
                    migrate_1_to_2(conn)?;
                }
                if v == "1" || v == "2" {
                    migrate_2_to_3(conn)?;
                }
                migrate_3_to_4(conn)?;
                conn.execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                    [SCHEMA_VERSION.to_string()],
                )?;
                tracing::info!(version = SCHEMA_VERSION, "applied schema migration");
            }
            Some(v) => {
                return Err(Error::Storage(format!(
                    "database schema version {v} is not supported by this build (it reads version {SCHEMA_VERSION})"
                )))
            }
        }
        let epoch: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let epoch = match epoch {
            Some(e) => Epoch(e),
            None => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes)
                    .map_err(|e| Error::Storage(format!("no randomness for the epoch: {e}")))?;
                let e = Epoch::from_random(bytes);
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('epoch', ?1)",
                    [e.0.as_str()],
                )?;
                e
            }
        };
        Ok(epoch)
    })();
    match result {
        Ok(e) => {
            conn.execute_batch("COMMIT")?;
            Ok(e)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Version 3 → 4: the schema version each event's intent was made under
/// and the one each snapshot's reducer had; everything stored before is
/// version 1.
fn migrate_3_to_4(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(
        "ALTER TABLE events ADD COLUMN schema INTEGER NOT NULL DEFAULT 1;
         ALTER TABLE snapshots ADD COLUMN schema INTEGER NOT NULL DEFAULT 1;",
    )?;
    Ok(())
}

/// Version 2 → 3: each event's sender subject and the offset it had
/// seen (protocol version 2). Events stored before have neither: no
/// subject, seen 0.
fn migrate_2_to_3(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(
        "ALTER TABLE events ADD COLUMN subject TEXT;
         ALTER TABLE events ADD COLUMN seen INTEGER NOT NULL DEFAULT 0;",
    )?;
    Ok(())
}

/// Version 1 → 2: the payload digest of every appended intent. `CREATE
/// TABLE IF NOT EXISTS` left a version-1 `events` table as it was.
fn migrate_1_to_2(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch("ALTER TABLE events ADD COLUMN digest BLOB")?;
    // Digests first (32 bytes a row), writes after: the read does not
    // walk a table it is changing.
    let mut digests: Vec<(i64, sync_core::IntentDigest)> = Vec::new();
    {
        let mut read = conn.prepare("SELECT rowid, payload FROM events")?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let payload: Vec<u8> = row.get(1)?;
            digests.push((row.get(0)?, sync_core::IntentDigest::of(&payload)));
        }
    }
    let mut write = conn.prepare("UPDATE events SET digest = ?1 WHERE rowid = ?2")?;
    for (rowid, digest) in digests {
        write.execute(rusqlite::params![&digest.0[..], rowid])?;
    }
    Ok(())
}

/// Offsets and seqs are `u64` in Logsync and `INTEGER` (i64) in SQLite.
pub(crate) fn to_sql(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| Error::Storage(format!("{n} is beyond what the store can hold")))
}

/// A stored schema version (1 and up).
pub(crate) fn schema_from_sql(n: i64) -> Result<u32, Error> {
    u32::try_from(n)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| Error::Storage(format!("schema version {n} in the database")))
}

pub(crate) fn from_sql(n: i64) -> Result<u64, Error> {
    u64::try_from(n).map_err(|_| Error::Storage(format!("negative number {n} in the database")))
}

fn read_page(
    conn: &Connection,
    stream: &StreamName,
    after: Offset,
    limits: ReadLimits,
) -> Result<Page, Error> {
    // One read transaction, so the head and the events are one snapshot.
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let row: Option<(i64, i64)> = conn
            .prepare_cached("SELECT id, head FROM streams WHERE name = ?1")?
            .query_row([stream.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((id, head)) = row else {
            return Ok(Page::default());
        };
        let head = Offset(from_sql(head)?);
        let compacted = writer::compacted_through(conn, id)?;
        let mut events = Vec::new();
        if after >= head {
            return Ok(Page {
                events,
                head,
                compacted,
            });
        }
        // No bound `LIMIT ?`: SQLite marks a statement whose LIMIT is a
        // parameter to be prepared again at every new binding (once per
        // page); the loop stops at `max_events` instead.
        let mut stmt = conn.prepare_cached(
            r#"SELECT "offset", client_id, seq, time_ms, payload, subject, seen, schema FROM events
               WHERE stream_id = ?1 AND "offset" > ?2 ORDER BY "offset""#,
        )?;
        let limit = limits.max_events.max(1);
        let from = after.max(compacted);
        let mut rows = stmt.query(rusqlite::params![id, to_sql(from.0)?])?;
        let mut bytes = 0usize;
        while events.len() < limit {
            let Some(r) = rows.next()? else { break };
            let event = event_from_row(r)?;
            let size = event.payload.len()
                + event.subject.as_ref().map_or(0, String::len)
                + EVENT_OVERHEAD;
            if !events.is_empty() && bytes + size > limits.max_bytes {
                break;
            }
            bytes += size;
            events.push(event);
        }
        Ok(Page {
            events,
            head,
            compacted,
        })
    })();
    let _ = conn.execute_batch("COMMIT");
    result
}

/// The event of a row `offset, client_id, seq, time_ms, payload,
/// subject, seen, schema`.
pub(super) fn event_from_row(r: &rusqlite::Row<'_>) -> Result<Event, Error> {
    let client_id: Vec<u8> = r.get(1)?;
    let client: [u8; 16] = client_id.as_slice().try_into().map_err(|_| {
        Error::Storage(format!("client id of {} bytes in the log", client_id.len()))
    })?;
    Ok(Event {
        offset: Offset(from_sql(r.get(0)?)?),
        client_id: ClientId::from_bytes(client),
        seq: Seq::new(from_sql(r.get(2)?)?).map_err(|e| Error::Storage(e.to_string()))?,
        time_ms: from_sql(r.get(3)?)?,
        payload: r.get(4)?,
        subject: r.get(5)?,
        seen: Offset(from_sql(r.get(6)?)?),
        schema: schema_from_sql(r.get(7)?)?,
    })
}

impl LogStore for SqliteStore {
    fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<Vec<Outcome>, Error>> {
        Box::pin(async move { self.submit(request).await?.await })
    }

    fn submit(&self, request: AppendRequest) -> BoxFuture<'_, Result<Submitted, Error>> {
        Box::pin(async move {
            if request.intents.is_empty() {
                return Ok(Box::pin(std::future::ready(Ok(Vec::new()))) as Submitted);
            }
            let sender = self
                .jobs
                .lock()
                .map_err(|_| Error::StoreClosed)?
                .clone()
                .ok_or(Error::StoreClosed)?;
            let (reply, answer) = oneshot::channel();
            // The writer takes its queue in order: this is the order of
            // the decisions.
            sender
                .send(writer::Job::Append { request, reply })
                .await
                .map_err(|_| Error::StoreClosed)?;
            Ok(Box::pin(async move { answer.await.map_err(|_| Error::StoreClosed)? }) as Submitted)
        })
    }

    fn read(
        &self,
        stream: StreamName,
        after: Offset,
        limits: ReadLimits,
    ) -> BoxFuture<'_, Result<Page, Error>> {
        Box::pin(self.with_reader(move |c| read_page(c, &stream, after, limits)))
    }

    fn head(&self, stream: StreamName) -> BoxFuture<'_, Result<Offset, Error>> {
        Box::pin(self.with_reader(move |c| {
            let head: Option<i64> = c
                .prepare_cached("SELECT head FROM streams WHERE name = ?1")?
                .query_row([stream.as_str()], |r| r.get(0))
                .optional()?;
            Ok(Offset(from_sql(head.unwrap_or(0))?))
        }))
    }

    fn put_snapshot(
        &self,
        stream: StreamName,
        offset: Offset,
        state: Vec<u8>,
        schema: u32,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let sender = self
                .jobs
                .lock()
                .map_err(|_| Error::StoreClosed)?
                .clone()
                .ok_or(Error::StoreClosed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(writer::Job::Snapshot {
                    stream,
                    offset,
                    state,
                    schema,
                    reply,
                })
                .await
                .map_err(|_| Error::StoreClosed)?;
            answer.await.map_err(|_| Error::StoreClosed)?
        })
    }

    fn latest_snapshot(
        &self,
        stream: StreamName,
    ) -> BoxFuture<'_, Result<Option<StoredSnapshot>, Error>> {
        Box::pin(self.with_reader(move |c| {
            let row: Option<(i64, Vec<u8>, i64)> = c
                .prepare_cached(
                    r#"SELECT s."offset", s.state, s.schema FROM snapshots s JOIN streams t ON t.id = s.stream_id
                       WHERE t.name = ?1 ORDER BY s."offset" DESC LIMIT 1"#,
                )?
                .query_row([stream.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            row.map(|(o, state, schema)| {
                Ok(StoredSnapshot {
                    offset: Offset(from_sql(o)?),
                    state,
                    schema: schema_from_sql(schema)?,
                })
            })
            .transpose()
        }))
    }

    fn bind_client(
        &self,
        client_id: ClientId,
        sub: String,
    ) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(async move {
            // Bindings never change: a read answers every use but the first
            // without a write (and without an fsync).
            let bound = self
                .with_reader(move |c| {
                    Ok(
                        c.prepare_cached("SELECT sub FROM client_subjects WHERE client_id = ?1")?
                            .query_row([&client_id.0[..]], |r| r.get::<_, String>(0))
                            .optional()?,
                    )
                })
                .await?;
            if let Some(bound) = bound {
                return Ok(bound);
            }
            let sender = self
                .jobs
                .lock()
                .map_err(|_| Error::StoreClosed)?
                .clone()
                .ok_or(Error::StoreClosed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(writer::Job::BindClient {
                    client_id,
                    sub,
                    reply,
                })
                .await
                .map_err(|_| Error::StoreClosed)?;
            answer.await.map_err(|_| Error::StoreClosed)?
        })
    }

    fn state(&self, stream: StreamName) -> BoxFuture<'_, Result<Option<StreamStateJson>, Error>> {
        Box::pin(async move {
            let sender = self
                .jobs
                .lock()
                .map_err(|_| Error::StoreClosed)?
                .clone()
                .ok_or(Error::StoreClosed)?;
            let (reply, answer) = oneshot::channel();
            sender
                .send(writer::Job::State { stream, reply })
                .await
                .map_err(|_| Error::StoreClosed)?;
            answer.await.map_err(|_| Error::StoreClosed)?
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let sender = self
                .jobs
                .lock()
                .map_err(|_| Error::StoreClosed)?
                .clone()
                .ok_or(Error::StoreClosed)?;
            // A real write now and then (and every second while writes
            // fail, to see them come back): a store that can read but not
            // write is not healthy.
            let every = if self.writable.load(Ordering::Relaxed) {
                PROBE_EVERY
            } else {
                PROBE_EVERY_FAILING
            };
            let due = self.last_probe.lock().is_ok_and(|mut last| {
                let now = std::time::Instant::now();
                let due = last.is_none_or(|t| now.duration_since(t) >= every);
                if due {
                    *last = Some(now);
                }
                due
            });
            if due {
                let (reply, answer) = oneshot::channel();
                sender
                    .send(writer::Job::Probe { reply })
                    .await
                    .map_err(|_| Error::StoreClosed)?;
                answer.await.map_err(|_| Error::StoreClosed)??;
            }
            if !self.writable.load(Ordering::Relaxed) {
                return Err(Error::Storage(
                    "the last commit failed: the store cannot write".into(),
                ));
            }
            self.with_reader(|c| {
                c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
                Ok(())
            })
            .await
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let ticker = self.ticker.lock().ok().and_then(|mut t| t.take());
            if let Some(ticker) = ticker {
                let _ = tokio::task::spawn_blocking(move || ticker.stop()).await;
            }
            // Dropping the last sender lets the writer drain its queue
            // (every job already handed over is committed and answered),
            // then stop.
            if let Ok(mut jobs) = self.jobs.lock() {
                jobs.take();
            }
            let handle = self.writer.lock().ok().and_then(|mut h| h.take());
            if let Some(handle) = handle {
                let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            }
            self.readers.permits.close();
        })
    }
}

#[cfg(test)]
mod tests;
