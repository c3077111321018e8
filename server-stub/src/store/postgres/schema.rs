//! The PostgreSQL schema, its migrations, and the epoch.
//!
//! Every node runs [`migrate`] at start. It holds a transaction-scoped
//! advisory lock while it reads `logsync_schema.version` and applies the
//! migrations the database lacks, so nodes that start together apply each
//! migration once, and a node never serves a half-migrated schema (DDL is
//! transactional in PostgreSQL: a failed migration leaves nothing behind).

use sync_core::Epoch;
use tokio_postgres::Client;

use crate::error::Error;

/// Key of the advisory lock that serialises migrations ("logsync" in ASCII).
const MIGRATION_LOCK: i64 = 0x006c_6f67_7379_6e63;

/// Migration `i` brings the schema from version `i` to `i + 1`. Append new
/// ones; never edit one that has shipped.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the log, the decisions, the snapshots and the client bindings.
    r#"
    CREATE TABLE logsync_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE logsync_streams (
        id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        head BIGINT NOT NULL DEFAULT 0 CHECK (head >= 0)
    );
    CREATE TABLE logsync_events (
        stream_id BIGINT NOT NULL,
        "offset"  BIGINT NOT NULL CHECK ("offset" > 0),
        client_id BYTEA NOT NULL CHECK (octet_length(client_id) = 16),
        seq       BIGINT NOT NULL CHECK (seq > 0),
        time_ms   BIGINT NOT NULL,
        payload   BYTEA NOT NULL,
        PRIMARY KEY (stream_id, "offset"),
        UNIQUE (stream_id, client_id, seq)
    );
    CREATE TABLE logsync_clients (
        stream_id BIGINT NOT NULL,
        client_id BYTEA NOT NULL,
        last_seq  BIGINT NOT NULL CHECK (last_seq > 0),
        PRIMARY KEY (stream_id, client_id)
    );
    CREATE TABLE logsync_rejections (
        stream_id BIGINT NOT NULL,
        client_id BYTEA NOT NULL,
        seq       BIGINT NOT NULL,
        code      TEXT NOT NULL,
        message   TEXT NOT NULL,
        PRIMARY KEY (stream_id, client_id, seq)
    );
    CREATE TABLE logsync_snapshots (
        stream_id BIGINT NOT NULL,
        "offset"  BIGINT NOT NULL,
        state     BYTEA NOT NULL,
        PRIMARY KEY (stream_id, "offset")
    );
    CREATE TABLE logsync_client_subjects (
        client_id BYTEA PRIMARY KEY CHECK (octet_length(client_id) = 16),
        sub       TEXT NOT NULL
    );
    "#,
    // 2: the SHA-256 of each appended intent's payload, to tell a resend
    // from another intent under the same seq; filled for the log so far.
    r#"
    ALTER TABLE logsync_events ADD COLUMN digest BYTEA
        CHECK (digest IS NULL OR octet_length(digest) = 32);
    UPDATE logsync_events SET digest = sha256(payload);
    "#,
    // 3: each event's sender subject (the verified token's `sub`) and the
    // offset its client had seen (protocol version 2); events stored
    // before have neither.
    r#"
    ALTER TABLE logsync_events ADD COLUMN subject TEXT;
    ALTER TABLE logsync_events ADD COLUMN seen BIGINT NOT NULL DEFAULT 0 CHECK (seen >= 0);
    "#,
    // 4: the schema version each event's intent was made under and the
    // one each snapshot's reducer had (protocol version 5); everything
    // stored before is version 1.
    r#"
    ALTER TABLE logsync_events ADD COLUMN schema INT NOT NULL DEFAULT 1 CHECK (schema >= 1);
    ALTER TABLE logsync_snapshots ADD COLUMN schema INT NOT NULL DEFAULT 1 CHECK (schema >= 1);
    "#,
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Tables added without a schema version change: created when missing,
/// and a database without them simply has nothing in them yet.
///
/// `logsync_compactions`: how far each stream's events are compacted
/// away (its horizon): the events at or below `through` were deleted
/// under a snapshot that holds them.
const CREATED_WHEN_MISSING: &str = r#"
    CREATE TABLE IF NOT EXISTS logsync_compactions (
        stream_id BIGINT PRIMARY KEY,
        through   BIGINT NOT NULL CHECK (through >= 0)
    );
"#;

/// Brings the schema to [`SCHEMA_VERSION`] and returns the log's epoch
/// (made now when the database is new). Refuses a database whose schema
/// is newer than this build.
pub async fn migrate(client: &mut Client) -> Result<Epoch, Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // A single-row table: `one` can only be true.
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS logsync_schema (
             one     BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
             version INT NOT NULL
         )",
    )
    .await?;
    let version: i32 = tx
        .query_opt("SELECT version FROM logsync_schema", &[])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(Error::Storage(format!(
            "database schema version {version} is not supported by this build (it reads versions up to {SCHEMA_VERSION})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| match Error::from(e) {
                Error::Storage(m) => Error::Storage(format!("schema migration {}: {m}", i + 1)),
                other => other,
            })?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    tx.batch_execute(CREATED_WHEN_MISSING).await?;
    tx.execute(
        "INSERT INTO logsync_schema (version) VALUES ($1)
         ON CONFLICT (one) DO UPDATE SET version = excluded.version",
        &[&SCHEMA_VERSION],
    )
    .await?;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Storage(format!("no randomness for the epoch: {e}")))?;
    // The first node to create the log makes its epoch; every other node
    // reads the same one.
    tx.execute(
        "INSERT INTO logsync_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
        &[&Epoch::from_random(bytes).0],
    )
    .await?;
    let epoch: String = tx
        .query_one("SELECT value FROM logsync_meta WHERE key = 'epoch'", &[])
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(Epoch(epoch))
}
