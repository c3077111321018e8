//! Cross-node fan-out: each node hears of every commit through
//! `LISTEN logsync`, reads what its subscribers have not seen from the
//! table once, and hands it to its hub like a local commit.
//!
//! A notification carries `<node> <first> <last> <stream>` (the offsets a
//! commit added). Notifications are hints: a node that misses some (its
//! LISTEN connection dropped, PostgreSQL restarted) re-reads the heads of
//! every stream it follows after reconnecting, and every few seconds
//! anyway, so a missed hint delays fan-out but never loses an event.
//! Subscribers never depend on this module for correctness: their cursor
//! reads the log whenever the feed cannot serve it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use sync_core::{Event, Offset, StreamName};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Notification};
use tokio_util::sync::CancellationToken;

use super::{from_pg, read_page};
use crate::error::Error;
use crate::store::{AppendListener, ReadLimits};

/// The notification channel every node listens on.
pub const CHANNEL: &str = "logsync";

/// Notifications handled together (coalesced per stream).
const MAX_COALESCE: usize = 1024;

/// What this node has handed to its hub, per followed stream.
pub(crate) struct Fanout {
    listener: Arc<dyn AppendListener>,
    /// This process's random id in notifications, to skip its own.
    instance: String,
    pool: Pool,
    /// The highest offset handed to the hub per followed stream: batches
    /// are handed over in offset order without repeats, so the hub's
    /// window stays contiguous. A cache: losing it only costs reads.
    published: Mutex<HashMap<StreamName, Offset>>,
    /// Bounds of one read for another node's commit.
    limits: ReadLimits,
}

impl Fanout {
    pub fn new(
        listener: Arc<dyn AppendListener>,
        instance: String,
        pool: Pool,
        limits: ReadLimits,
    ) -> Self {
        Fanout {
            listener,
            instance,
            pool,
            published: Mutex::new(HashMap::new()),
            limits,
        }
    }

    /// The payload announcing that this node's commit added
    /// `first..=last` to `stream`.
    pub fn message(&self, stream: &StreamName, first: Offset, last: Offset) -> String {
        format!("{} {} {} {}", self.instance, first.0, last.0, stream)
    }

    /// A snapshot of `stream` at `offset` (state hash `hash`) this node
    /// stored, before its events are published.
    pub fn checkpoint(&self, stream: &StreamName, offset: Offset, hash: u64, schema: u32) {
        self.listener.checkpoint(stream, offset, hash, schema);
    }

    /// Hands committed `events` (dense, ascending) to the hub, without the
    /// ones it already has.
    pub fn publish(&self, stream: &StreamName, events: &[Event]) {
        let Some(last) = events.last().map(|e| e.offset) else {
            return;
        };
        let Ok(mut published) = self.published.lock() else {
            // Poisoned only by a panic elsewhere; the hub copes with repeats.
            self.listener.appended(stream, events);
            return;
        };
        if !self.listener.follows(stream) {
            published.remove(stream);
            return;
        }
        let known = published.get(stream).copied().unwrap_or(Offset::ZERO);
        let fresh = match events.iter().position(|e| e.offset > known) {
            Some(i) => &events[i..],
            None => return,
        };
        // Under the lock, so the writer and the listener never hand the
        // hub two batches of one stream out of order.
        self.listener.appended(stream, fresh);
        published.insert(stream.clone(), last);
    }

    /// When `stream` is followed here and its hub was handed offsets up
    /// to some `known` below `head` (other nodes committed the rest), the
    /// `known` to read from: a few events, so the writer can read them in
    /// its transaction and hand them over before its own.
    pub fn missing_before(&self, stream: &StreamName, head: Offset) -> Option<Offset> {
        let known = *self.published.lock().ok()?.get(stream)?;
        let behind = head.0.checked_sub(known.0)?;
        (behind > 0 && behind <= self.limits.max_events as u64 && self.listener.follows(stream))
            .then_some(known)
    }

    /// A commit up to `last` happened on `stream`; this node's hub has at
    /// least `have` (unless it has published more). Reads the rest once
    /// for every subscriber of this node.
    async fn caught_up(&self, stream: &StreamName, have: Offset, last: Offset) {
        let known = {
            let Ok(mut published) = self.published.lock() else {
                self.listener.head_moved(stream, last);
                return;
            };
            if !self.listener.follows(stream) {
                published.remove(stream);
                return;
            }
            published.get(stream).copied().unwrap_or(have)
        };
        if known >= last {
            return;
        }
        // A long way behind (a node that was cut off): the window only
        // keeps recent events anyway, so read the newest; subscribers
        // further back read the log at their own pace.
        let from = Offset(
            known
                .0
                .max(last.0.saturating_sub(self.limits.max_events as u64)),
        );
        match self.pool.get().await {
            Ok(client) => match read_page(&client, stream, from, self.limits).await {
                Ok(page) => self.publish(stream, &page.events),
                Err(e) => tracing::warn!(%stream, error = %e, "cannot read another node's commit"),
            },
            Err(e) => {
                tracing::warn!(%stream, error = %Error::from(e), "cannot read another node's commit")
            }
        }
        // Whatever the read got, the cursors learn the head and read the
        // rest from the log themselves.
        self.listener.head_moved(stream, last);
    }

    /// Handles a burst of notifications, coalesced per stream.
    async fn notified(&self, notes: Vec<Notification>) {
        let mut commits: HashMap<StreamName, (Offset, Offset)> = HashMap::new();
        for note in &notes {
            let Some((instance, first, last, stream)) = parse(note.payload()) else {
                tracing::debug!(
                    payload = note.payload(),
                    "ignoring a malformed notification"
                );
                continue;
            };
            if instance == self.instance {
                // This node's writer already handed its commit to the hub.
                continue;
            }
            let e = commits.entry(stream).or_insert((first, last));
            e.0 = e.0.min(first);
            e.1 = e.1.max(last);
        }
        let work = commits.iter().map(|(stream, (first, last))| {
            self.caught_up(stream, Offset(first.0.saturating_sub(1)), *last)
        });
        futures_util::future::join_all(work).await;
    }

    /// Re-reads the heads of the streams this node follows (all of them,
    /// or those in `only`) and catches up the ones that moved.
    async fn sweep(&self, only: Option<&[StreamName]>) -> Result<(), Error> {
        let followed = self.listener.followed();
        if only.is_none() {
            let names: HashSet<&StreamName> = followed.iter().map(|(s, _)| s).collect();
            if let Ok(mut published) = self.published.lock() {
                published.retain(|s, _| names.contains(s));
            }
        }
        let heads: HashMap<&str, Offset> = followed
            .iter()
            .filter(|(s, _)| only.is_none_or(|o| o.contains(s)))
            .map(|(s, h)| (s.as_str(), *h))
            .collect();
        if heads.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = heads.keys().copied().collect();
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT name, head FROM logsync_streams WHERE name = ANY($1::text[])")
            .await?;
        let rows = client.query(&stmt, &[&names]).await?;
        drop(client);
        let mut moved = Vec::new();
        for row in rows {
            let name: &str = row.try_get(0)?;
            let head = Offset(from_pg(row.try_get(1)?)?);
            let have = heads.get(name).copied().unwrap_or_default();
            if head > have {
                if let Ok(stream) = StreamName::new(name) {
                    moved.push((stream, have, head));
                }
            }
        }
        let work = moved
            .iter()
            .map(|(stream, have, head)| self.caught_up(stream, *have, *head));
        futures_util::future::join_all(work).await;
        Ok(())
    }

    /// After a commit whose outcome is unknown: if it did commit, this
    /// node's subscribers must still hear of it.
    pub fn recheck(self: &Arc<Self>, streams: Vec<StreamName>) {
        let fanout = self.clone();
        tokio::spawn(async move {
            if let Err(e) = fanout.sweep(Some(&streams)).await {
                tracing::warn!(error = %e, "cannot re-read heads after a failed commit");
            }
        });
    }
}

/// `<node> <first> <last> <stream>`.
fn parse(payload: &str) -> Option<(&str, Offset, Offset, StreamName)> {
    let mut parts = payload.splitn(4, ' ');
    let instance = parts.next()?;
    let first = Offset(parts.next()?.parse().ok()?);
    let last = Offset(parts.next()?.parse().ok()?);
    let stream = StreamName::new(parts.next()?).ok()?;
    (first.0 >= 1 && first <= last).then_some((instance, first, last, stream))
}

/// The LISTEN loop of a node: holds one dedicated connection, reconnects
/// when it drops, and sweeps the followed streams after every (re)connect
/// and every `sweep_every`. Reports the first LISTEN (or its failure) on
/// `ready`, so a node serves only once it hears the others.
pub(crate) async fn listen(
    fanout: Arc<Fanout>,
    config: tokio_postgres::Config,
    sweep_every: Duration,
    stop: CancellationToken,
    ready: oneshot::Sender<Result<(), Error>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(&config).await {
            Ok((client, notes, forwarder)) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                } else {
                    tracing::info!("LISTEN connection restored");
                }
                backoff = Duration::from_millis(100);
                // Commits made while nothing listened are found by their heads.
                if let Err(e) = fanout.sweep(None).await {
                    tracing::warn!(error = %e, "cannot re-read the followed streams' heads");
                }
                follow(&fanout, notes, sweep_every, &stop).await;
                forwarder.abort();
                drop(client);
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!("LISTEN connection lost; reconnecting");
            }
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot LISTEN");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        // Disconnected: fan-out still goes on, late, through the sweeps.
        if let Err(e) = fanout.sweep(None).await {
            tracing::debug!(error = %e, "sweep failed while reconnecting");
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

type Subscribed = (
    tokio_postgres::Client,
    mpsc::Receiver<Notification>,
    tokio::task::JoinHandle<()>,
);

/// Connects, starts forwarding notifications, and runs `LISTEN`.
async fn subscribe(config: &tokio_postgres::Config) -> Result<Subscribed, Error> {
    let mut config = config.clone();
    config.application_name("logsync-listen");
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (tx, rx) = mpsc::channel(4096);
    let forwarder = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %Error::from(e), "LISTEN connection failed");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok((client, rx, forwarder))
}

/// Handles notifications until the connection ends or the store stops.
async fn follow(
    fanout: &Fanout,
    mut notes: mpsc::Receiver<Notification>,
    sweep_every: Duration,
    stop: &CancellationToken,
) {
    let mut tick = tokio::time::interval(sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            note = notes.recv() => {
                let Some(note) = note else { return };
                let mut burst = vec![note];
                while burst.len() < MAX_COALESCE {
                    match notes.try_recv() {
                        Ok(n) => burst.push(n),
                        Err(_) => break,
                    }
                }
                fanout.notified(burst).await;
            }
            _ = tick.tick() => {
                if let Err(e) = fanout.sweep(None).await {
                    tracing::warn!(error = %e, "cannot re-read the followed streams' heads");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payloads() {
        let (node, first, last, stream) = parse("ab12 3 7 todos/team-42").expect("parses");
        assert_eq!(
            (node, first, last, stream.as_str()),
            ("ab12", Offset(3), Offset(7), "todos/team-42")
        );
        assert!(parse("ab12 0 7 s").is_none(), "offsets start at 1");
        assert!(parse("ab12 8 7 s").is_none(), "first after last");
        assert!(parse("ab12 1 2 bad name").is_none(), "invalid stream name");
        assert!(parse("ab12 x 2 s").is_none());
        assert!(parse("ab12 1 2").is_none());
        assert!(parse("").is_none());
    }
}
