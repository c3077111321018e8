//! The scale-out store: one PostgreSQL database shared by several server
//! nodes (`--store postgres://…`).
//!
//! - **Appends** are transactions on the stream's row. Each node has one
//!   writer task with a dedicated connection that batches every waiting
//!   append into one transaction (group commit); the stream rows are
//!   locked in name order, so decisions on one stream are serialised
//!   across all nodes and offsets stay dense. Exactly-once is enforced by
//!   the database: the row lock orders the decisions, and the primary and
//!   unique keys refuse a second event at an offset or for a
//!   (stream, client, seq). See `writer`.
//! - **Fan-out across nodes**: after a commit the node sends
//!   `NOTIFY logsync` (see `notifier`); every node `LISTEN`s on a dedicated
//!   connection, reads the new events once and hands them to its hub. See
//!   `fanout`.
//! - **Reads** use a small pool of connections (`--max-readers`).
//! - **No node state**: the log, the decisions, the epoch and the schema
//!   version live in PostgreSQL; a node keeps only caches. Any node can be
//!   killed; its clients reconnect to another and resume from their
//!   offsets.
//!
//! Tables (`logsync_schema.version` 1; see `schema`):
//!
//! ```text
//! logsync_schema     (version)                            one row
//! logsync_meta       (key, value)                         epoch
//! logsync_streams    (id, name UNIQUE, head)              the row each append locks
//! logsync_events     (stream_id, offset, client_id, seq, time_ms, payload,
//!                     digest, subject, seen, schema)
//!                    PRIMARY KEY (stream_id, offset), UNIQUE (stream_id, client_id, seq)
//! logsync_clients    (stream_id, client_id, last_seq)     highest seq decided
//! logsync_rejections (stream_id, client_id, seq, code, message)
//! logsync_snapshots  (stream_id, offset, state, schema)  the latest per folded stream
//! logsync_compactions (stream_id, through)                events at or below `through` deleted
//! logsync_client_subjects (client_id, sub)                who a client id belongs to (with auth)
//! ```
//!
//! `logsync_compactions` came without a schema version change: it is
//! created when missing (see `schema`).
//!
//! Connections per node: `--max-readers` + 3 (writer, notifier, LISTEN).

mod fanout;
mod notifier;
mod schema;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sync_core::protocol::EVENT_OVERHEAD;
use sync_core::{ClientId, Epoch, Event, Offset, Seq, StreamName};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use fanout::CHANNEL;
pub use schema::SCHEMA_VERSION;

use super::{
    AppendListener, AppendRequest, BoxFuture, LogStore, Outcome, Page, ReadLimits, StoredSnapshot,
    StreamStateJson, Submitted,
};
use crate::error::Error;
use crate::fold::{Folds, Reducers};
use crate::metrics::Metrics;
use crate::store::CommitMode;

/// Options of the PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database` (libpq URL or
    /// key-value form; TLS is not supported).
    pub url: String,
    /// Group commit or one commit per intent.
    pub commit_mode: CommitMode,
    /// Most intents per transaction.
    pub max_batch_intents: usize,
    /// Most payload bytes per transaction.
    pub max_batch_bytes: usize,
    /// Pooled read connections.
    pub max_readers: usize,
    /// How often the heads of followed streams are re-read, in case a
    /// notification was missed.
    pub sweep_interval: Duration,
    /// Bounds of the one read a node makes for another node's commit.
    pub fanout_read: ReadLimits,
    /// Reducers folding streams at the ordering point (none: payloads
    /// stay opaque), and their snapshot and retention policy. Each node
    /// keeps its own states, started from the stream's latest snapshot
    /// and the events after it; a node folds another node's events in
    /// under the stream's row lock before it decides.
    pub reducers: Reducers,
}

impl PostgresOptions {
    /// Options for `url` with the server's defaults.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            commit_mode: CommitMode::Group,
            max_batch_intents: 4096,
            max_batch_bytes: 16 << 20,
            max_readers: 4,
            sweep_interval: Duration::from_secs(2),
            fanout_read: ReadLimits {
                max_events: 1000,
                max_bytes: 4 << 20,
            },
            reducers: Reducers::default(),
        }
    }
}

/// The PostgreSQL log store.
pub struct PostgresStore {
    epoch: Epoch,
    target: String,
    pool: Pool,
    jobs: Mutex<Option<mpsc::Sender<writer::Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    listener: Mutex<Option<JoinHandle<()>>>,
    notifier: Mutex<Option<JoinHandle<()>>>,
    /// Stops the notifier once the writer has finished.
    notifier_stop: CancellationToken,
    /// Stops the LISTEN task.
    stop: CancellationToken,
}

impl PostgresStore {
    /// Connects, creates or migrates the schema, starts the writer and
    /// the LISTEN connection. Fails when the database is unreachable or
    /// its schema is newer than this build.
    pub async fn open(
        options: PostgresOptions,
        listener: Arc<dyn AppendListener>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let config = parse_url(&options.url)?;
        let target = describe(&config);
        let mut client = connect(&config, "logsync-migrate").await?;
        let epoch = schema::migrate(&mut client).await?;
        drop(client);

        let manager = Manager::from_config(
            with_app_name(&config, "logsync-read"),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_readers.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::Storage(format!("PostgreSQL connection pool: {e}")))?;

        let mut instance = [0u8; 8];
        getrandom::fill(&mut instance)
            .map_err(|e| Error::Storage(format!("no randomness for the node id: {e}")))?;
        let instance: String = instance.iter().map(|b| format!("{b:02x}")).collect();
        let fanout = Arc::new(fanout::Fanout::new(
            listener,
            instance,
            pool.clone(),
            options.fanout_read,
        ));

        let (tx, rx) = mpsc::channel(1024);
        let notices = Arc::new(notifier::Notices::default());
        let mut w = writer::Writer {
            pass_from: 0,
            config: config.clone(),
            conn: None,
            rx,
            fanout: fanout.clone(),
            notices: notices.clone(),
            folds: Folds::with_metrics(options.reducers, metrics.clone()),
            metrics,
            mode: options.commit_mode,
            max_batch_intents: options.max_batch_intents,
            max_batch_bytes: options.max_batch_bytes,
        };
        w.ready().await?;

        let stop = CancellationToken::new();
        let (ready, listening) = oneshot::channel();
        let listener = tokio::spawn(fanout::listen(
            fanout.clone(),
            config.clone(),
            options.sweep_interval,
            stop.clone(),
            ready,
        ));
        match listening.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::Storage("the LISTEN task ended at start".into())),
        }
        let writer = tokio::spawn(w.run());
        let notifier_stop = CancellationToken::new();
        let notifier = tokio::spawn(notifier::run(
            notices,
            fanout,
            config,
            notifier_stop.clone(),
        ));
        tracing::info!(store = %target, %epoch, schema_version = SCHEMA_VERSION, "PostgreSQL store open");
        Ok(PostgresStore {
            epoch,
            target,
            pool,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            listener: Mutex::new(Some(listener)),
            notifier: Mutex::new(Some(notifier)),
            notifier_stop,
            stop,
        })
    }

    /// Where the log lives, without the password: `postgres://user@host:port/db`.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn sender(&self) -> Result<mpsc::Sender<writer::Job>, Error> {
        self.jobs
            .lock()
            .map_err(|_| Error::StoreClosed)?
            .clone()
            .ok_or(Error::StoreClosed)
    }
}

/// Parses a `--store` URL, with the timeouts and keepalives a long-lived
/// server connection needs.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, Error> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        // The parse error never echoes the URL, which may hold a password.
        Error::Config(format!("invalid PostgreSQL URL in --store: {e}"))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // A peer that vanished without a FIN (a cut network, a dead host) is
    // noticed within about half a minute instead of hours.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    Ok(config)
}

/// `postgres://user@host:port/db`, for logs (never the password).
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        host,
        port,
        config.get_dbname().unwrap_or("")
    )
}

fn with_app_name(config: &tokio_postgres::Config, name: &str) -> tokio_postgres::Config {
    let mut c = config.clone();
    c.application_name(name);
    c
}

/// One dedicated connection, driven by its own task. `name` shows in
/// `pg_stat_activity.application_name`.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    name: &str,
) -> Result<tokio_postgres::Client, Error> {
    let (client, connection) = with_app_name(config, name)
        .connect(tokio_postgres::NoTls)
        .await?;
    let name = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(connection = %name, error = %Error::from(e), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Offsets and seqs are `u64` in Logsync and `BIGINT` (i64) in PostgreSQL.
pub(crate) fn to_pg(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| Error::Storage(format!("{n} is beyond what the store can hold")))
}

/// A stored schema version (1 and up).
pub(crate) fn schema_from_pg(n: i32) -> Result<u32, Error> {
    u32::try_from(n)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| Error::Storage(format!("schema version {n} in the database")))
}

/// A schema version as PostgreSQL's `INT`.
pub(crate) fn schema_to_pg(v: u32) -> Result<i32, Error> {
    i32::try_from(v).map_err(|_| {
        Error::Storage(format!(
            "schema version {v} is beyond what the store can hold"
        ))
    })
}

pub(crate) fn from_pg(n: i64) -> Result<u64, Error> {
    u64::try_from(n).map_err(|_| Error::Storage(format!("negative number {n} in the database")))
}

/// Events of `stream` after `after` within `limits`, the head and the
/// horizon of its compacted events, from one statement (so one snapshot
/// of the database). A read from below the horizon starts after it.
pub(crate) async fn read_page(
    client: &deadpool_postgres::Client,
    stream: &StreamName,
    after: Offset,
    limits: ReadLimits,
) -> Result<Page, Error> {
    // The running byte total keeps a page within max_bytes without
    // fetching the payloads it leaves out; the first event always comes.
    let stmt = client
        .prepare_cached(
            r#"SELECT s.head, coalesce(c.through, 0), e."offset", e.client_id, e.seq, e.time_ms, e.payload,
                      e.subject, e.seen, e.schema
               FROM logsync_streams s
               LEFT JOIN logsync_compactions c ON c.stream_id = s.id
               LEFT JOIN LATERAL (
                   SELECT x.*, sum(octet_length(x.payload)::bigint
                                   + coalesce(octet_length(x.subject), 0)::bigint + $4::bigint)
                               OVER (ORDER BY x."offset") AS upto
                   FROM (SELECT "offset", client_id, seq, time_ms, payload, subject, seen, schema FROM logsync_events
                         WHERE stream_id = s.id AND "offset" > $2::bigint
                         ORDER BY "offset" LIMIT $3::bigint) x
               ) e ON e.upto <= $5::bigint OR e."offset" = greatest($2::bigint, c.through) + 1
               WHERE s.name = $1::text
               ORDER BY e."offset""#,
        )
        .await?;
    let max_bytes = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
    let rows = client
        .query(
            &stmt,
            &[
                &stream.as_str(),
                &to_pg(after.0)?,
                &to_pg(limits.max_events.max(1) as u64)?,
                &(EVENT_OVERHEAD as i64),
                &max_bytes,
            ],
        )
        .await?;
    let mut page = Page::default();
    for row in rows {
        page.head = Offset(from_pg(row.try_get(0)?)?);
        page.compacted = Offset(from_pg(row.try_get(1)?)?);
        let Some(offset) = row.try_get::<_, Option<i64>>(2)? else {
            continue;
        };
        let client_id: &[u8] = row.try_get(3)?;
        let client: [u8; 16] = client_id.try_into().map_err(|_| {
            Error::Storage(format!("client id of {} bytes in the log", client_id.len()))
        })?;
        page.events.push(Event {
            offset: Offset(from_pg(offset)?),
            client_id: ClientId::from_bytes(client),
            seq: Seq::new(from_pg(row.try_get(4)?)?).map_err(|e| Error::Storage(e.to_string()))?,
            time_ms: from_pg(row.try_get(5)?)?,
            payload: row.try_get(6)?,
            subject: row.try_get(7)?,
            seen: Offset(from_pg(row.try_get(8)?)?),
            schema: schema_from_pg(row.try_get(9)?)?,
        });
    }
    Ok(page)
}

impl LogStore for PostgresStore {
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
            let sender = self.sender()?;
            let (reply, answer) = oneshot::channel();
            // The writer takes its queue in order (and a batch's requests
            // in order within its transaction): this is the order of the
            // decisions.
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
        Box::pin(async move {
            let client = self.pool.get().await?;
            read_page(&client, &stream, after, limits).await
        })
    }

    fn head(&self, stream: StreamName) -> BoxFuture<'_, Result<Offset, Error>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached("SELECT head FROM logsync_streams WHERE name = $1::text")
                .await?;
            let head: Option<i64> = client
                .query_opt(&stmt, &[&stream.as_str()])
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            Ok(Offset(from_pg(head.unwrap_or(0))?))
        })
    }

    fn put_snapshot(
        &self,
        stream: StreamName,
        offset: Offset,
        state: Vec<u8>,
        schema: u32,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            // Through the writer: it creates the stream row in lock order.
            let sender = self.sender()?;
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
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    r#"SELECT n."offset", n.state, n.schema FROM logsync_snapshots n
                       JOIN logsync_streams s ON s.id = n.stream_id
                       WHERE s.name = $1::text ORDER BY n."offset" DESC LIMIT 1"#,
                )
                .await?;
            let row = client.query_opt(&stmt, &[&stream.as_str()]).await?;
            row.map(|r| {
                Ok(StoredSnapshot {
                    offset: Offset(from_pg(r.try_get(0)?)?),
                    state: r.try_get(1)?,
                    schema: schema_from_pg(r.try_get(2)?)?,
                })
            })
            .transpose()
        })
    }

    fn bind_client(
        &self,
        client_id: ClientId,
        sub: String,
    ) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let id = &client_id.0[..];
            let select = client
                .prepare_cached("SELECT sub FROM logsync_client_subjects WHERE client_id = $1")
                .await?;
            // Bindings never change: a read answers every use but the first
            // without a write (and without a WAL flush).
            if let Some(row) = client.query_opt(&select, &[&id]).await? {
                return Ok(row.try_get(0)?);
            }
            let insert = client
                .prepare_cached(
                    "INSERT INTO logsync_client_subjects (client_id, sub) VALUES ($1, $2)
                     ON CONFLICT (client_id) DO NOTHING RETURNING sub",
                )
                .await?;
            if let Some(row) = client.query_opt(&insert, &[&id, &sub]).await? {
                return Ok(row.try_get(0)?);
            }
            // Another node bound it first (the insert waited for that
            // commit); a new statement sees its row.
            let row = client.query_one(&select, &[&id]).await?;
            Ok(row.try_get(0)?)
        })
    }

    fn state(&self, stream: StreamName) -> BoxFuture<'_, Result<Option<StreamStateJson>, Error>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.sender()?
                .send(writer::Job::State { stream, reply })
                .await
                .map_err(|_| Error::StoreClosed)?;
            answer.await.map_err(|_| Error::StoreClosed)?
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if self.jobs.lock().map(|j| j.is_none()).unwrap_or(true) {
                return Err(Error::StoreClosed);
            }
            let client = self.pool.get().await?;
            client.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Dropping the last sender lets the writer drain its queue
            // (every job already handed over is committed and answered),
            // then stop.
            if let Ok(mut jobs) = self.jobs.lock() {
                jobs.take();
            }
            let writer = self.writer.lock().ok().and_then(|mut w| w.take());
            if let Some(writer) = writer {
                let _ = writer.await;
            }
            // The last commits are announced, then nothing listens.
            self.notifier_stop.cancel();
            let notifier = self.notifier.lock().ok().and_then(|mut n| n.take());
            if let Some(notifier) = notifier {
                let _ = notifier.await;
            }
            self.stop.cancel();
            let listener = self.listener.lock().ok().and_then(|mut l| l.take());
            if let Some(listener) = listener {
                let _ = listener.await;
            }
            self.pool.close();
        })
    }
}

#[cfg(test)]
mod tests;
