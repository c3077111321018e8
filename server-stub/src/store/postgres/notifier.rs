//! Announces this node's commits to the other nodes (`NOTIFY logsync`).
//!
//! The writer only records what it committed (never waits); this task
//! sends the notifications on a connection of its own, coalesced per
//! stream, in a transaction of their own. Two reasons to keep them out of
//! the data transaction: PostgreSQL serialises every committing
//! transaction that notifies, WAL flush included, which would stop the
//! nodes' commits from sharing fsyncs; and the writer's next batch need
//! not wait for a round trip that only announces. The notifying
//! transaction skips the flush (`synchronous_commit = off`): a
//! notification is a hint, never the record (other nodes also re-read the
//! heads of the streams they follow every few seconds).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_core::{Offset, StreamName};
use tokio::sync::Notify;
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

use super::connect;
use super::fanout::Fanout;
use crate::error::Error;

/// Commits not announced yet: per stream, the offsets they added.
#[derive(Default)]
pub(crate) struct Notices {
    pending: Mutex<HashMap<StreamName, (Offset, Offset)>>,
    wake: Notify,
}

impl Notices {
    /// This node committed `first..=last` of `stream`.
    pub fn add(&self, stream: &StreamName, first: Offset, last: Offset) {
        if let Ok(mut pending) = self.pending.lock() {
            pending
                .entry(stream.clone())
                .and_modify(|(f, l)| {
                    *f = (*f).min(first);
                    *l = (*l).max(last);
                })
                .or_insert((first, last));
        }
        self.wake.notify_one();
    }

    fn take(&self) -> HashMap<StreamName, (Offset, Offset)> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

struct Conn {
    client: Client,
    begin: Statement,
    no_flush: Statement,
    notify: Statement,
    commit: Statement,
}

async fn open(config: &tokio_postgres::Config) -> Result<Conn, Error> {
    let client = connect(config, "logsync-notify").await?;
    Ok(Conn {
        begin: client.prepare("BEGIN").await?,
        no_flush: client
            .prepare("SET LOCAL synchronous_commit TO off")
            .await?,
        notify: client
            .prepare("SELECT pg_notify('logsync', p) FROM unnest($1::text[]) AS p")
            .await?,
        commit: client.prepare("COMMIT").await?,
        client,
    })
}

/// Sends the pending notices until `stop`, then sends the last ones.
pub(crate) async fn run(
    notices: Arc<Notices>,
    fanout: Arc<Fanout>,
    config: tokio_postgres::Config,
    stop: CancellationToken,
) {
    let mut conn: Option<Conn> = None;
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = notices.wake.notified() => false,
        };
        let batch = notices.take();
        if !batch.is_empty() {
            let payloads: Vec<String> = batch
                .iter()
                .map(|(stream, (first, last))| fanout.message(stream, *first, *last))
                .collect();
            if let Err(e) = send(&mut conn, &config, &payloads).await {
                // Other nodes find these commits by re-reading heads.
                tracing::warn!(error = %e, "NOTIFY failed; other nodes learn of these commits by their sweep");
                conn = None;
                if !stopping {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if stopping {
            return;
        }
    }
}

async fn send(
    conn: &mut Option<Conn>,
    config: &tokio_postgres::Config,
    payloads: &[String],
) -> Result<(), Error> {
    if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
        *conn = Some(open(config).await?);
    }
    let Some(c) = conn.as_ref() else {
        return Err(Error::StoreClosed);
    };
    // One round trip: the four statements are sent together.
    let results = futures_util::future::join_all([
        c.client.execute(&c.begin, &[]),
        c.client.execute(&c.no_flush, &[]),
        c.client.execute(&c.notify, &[&payloads]),
        c.client.execute(&c.commit, &[]),
    ])
    .await;
    for r in results {
        r?;
    }
    Ok(())
}
