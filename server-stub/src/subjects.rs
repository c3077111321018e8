//! Limits per subject: what one user (the `sub` of its tokens; with
//! authentication off, one client address) may take of the server, summed
//! over all its WebSocket connections, HTTP requests and SSE feeds on this
//! node.
//!
//! - **Connections**: WebSockets (counted from `Hello`, when the subject
//!   is known) and SSE feeds open at once (`TOO_MANY_CONNECTIONS`).
//! - **Intents per second** and **payload bytes per second**: token
//!   buckets like the per-connection rate ([`crate::limits`]): a little
//!   over is paced, far over is refused (`RATE_LIMITED`).
//! - **New streams per hour**: a push to a stream this node does not know
//!   to exist reads its head; a stream never written takes one token of
//!   the subject's hourly budget (`RATE_LIMITED`).
//!
//! A subject's entry is dropped once it holds no connection and its
//! buckets are full again, so the table holds only active subjects.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_core::{ErrorCode, StreamName};
use tokio::time::Instant;

use crate::access::Denied;
use crate::auth::Principal;
use crate::config::Config;
use crate::limits::{Admit, IntentRate};
use crate::metrics::{Limit, Metrics};
use crate::store::LogStore;

/// Most stream names remembered as existing; past it the set starts over
/// (a miss costs one read of the stream's head).
const MAX_KNOWN_STREAMS: usize = 100_000;
/// Most subjects tracked at once; past it, entries at rest are dropped.
const MAX_SUBJECTS: usize = 1_000_000;

/// Who a limit counts against: the token's subject, else the peer's
/// address (IP only: one host's ports are one client).
pub(crate) fn subject_key(principal: &Principal, peer: Option<SocketAddr>) -> Arc<str> {
    if principal.is_open() {
        match peer {
            Some(a) => format!("addr:{}", a.ip()).into(),
            None => "addr:unknown".into(),
        }
    } else {
        format!("sub:{}", principal.sub).into()
    }
}

struct Entry {
    connections: usize,
    intents: Option<IntentRate>,
    bytes: Option<IntentRate>,
    new_streams: Option<IntentRate>,
    last_used: Instant,
}

/// Every subject's counters on this node.
pub(crate) struct Subjects {
    max_connections: usize,
    intents_per_sec: u32,
    intents_burst: u32,
    bytes_per_sec: u64,
    bytes_burst: u64,
    new_streams_per_hour: u32,
    metrics: Arc<Metrics>,
    entries: Mutex<HashMap<Arc<str>, Entry>>,
    known_streams: Mutex<HashSet<StreamName>>,
}

/// A subject's place under its connection limit, returned on drop.
pub(crate) struct SubjectSlot {
    subjects: Arc<Subjects>,
    key: Arc<str>,
}

impl Drop for SubjectSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.subjects.entries.lock() {
            if let Some(e) = m.get_mut(&self.key) {
                e.connections = e.connections.saturating_sub(1);
            }
        }
    }
}

impl Subjects {
    pub(crate) fn new(config: &Config, metrics: Arc<Metrics>) -> Subjects {
        Subjects {
            max_connections: config.max_subject_connections,
            intents_per_sec: config.max_subject_intents_per_sec,
            intents_burst: config.subject_intents_burst,
            bytes_per_sec: config.max_subject_bytes_per_sec as u64,
            bytes_burst: config.subject_bytes_burst as u64,
            new_streams_per_hour: config.max_new_streams_per_hour,
            metrics,
            entries: Mutex::new(HashMap::new()),
            known_streams: Mutex::new(HashSet::new()),
        }
    }

    /// Runs `f` on the subject's entry (created when missing).
    fn with_entry<T>(&self, key: &Arc<str>, f: impl FnOnce(&mut Entry, Instant) -> T) -> T {
        let now = Instant::now();
        let mut m = match self.entries.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if m.len() >= MAX_SUBJECTS && !m.contains_key(key) {
            // Keep subjects that hold connections or used anything in the
            // last hour; the rest start over full.
            m.retain(|_, e| {
                e.connections > 0 || now.duration_since(e.last_used) < Duration::from_secs(3600)
            });
        }
        let entry = m.entry(key.clone()).or_insert_with(|| Entry {
            connections: 0,
            intents: IntentRate::new(self.intents_per_sec, self.intents_burst, now),
            bytes: IntentRate::per_second(self.bytes_per_sec as f64, self.bytes_burst as f64, now),
            new_streams: IntentRate::per_second(
                f64::from(self.new_streams_per_hour) / 3600.0,
                f64::from(self.new_streams_per_hour),
                now,
            ),
            last_used: now,
        });
        entry.last_used = now;
        f(entry, now)
    }

    /// A place for one more WebSocket or SSE feed of `key`.
    pub(crate) fn connect(self: &Arc<Self>, key: &Arc<str>) -> Result<SubjectSlot, Denied> {
        let max = self.max_connections;
        let ok = self.with_entry(key, |e, _| {
            if max > 0 && e.connections >= max {
                false
            } else {
                e.connections += 1;
                true
            }
        });
        if !ok {
            self.metrics.trip(Limit::SubjectConnections);
            return Err((
                ErrorCode::TooManyConnections,
                format!(
                    "this user holds its limit of {max} connections and feeds; close one or \
                     retry later"
                ),
            ));
        }
        Ok(SubjectSlot {
            subjects: self.clone(),
            key: key.clone(),
        })
    }

    /// How many of `k` intents of `key` may go, as [`IntentRate::admit`].
    pub(crate) fn admit_intents(&self, key: &Arc<str>, k: usize) -> Admit {
        self.with_entry(key, |e, now| match &mut e.intents {
            Some(r) => r.admit(k, now),
            None => Admit::Now,
        })
    }

    /// Whether `bytes` of payload of `key` may go now, after a wait, or
    /// not at all.
    pub(crate) fn admit_bytes(&self, key: &Arc<str>, bytes: usize) -> Admit {
        self.with_entry(key, |e, now| match &mut e.bytes {
            Some(r) => r.admit(bytes, now),
            None => Admit::Now,
        })
    }

    /// Refuses a write to `stream` by `key` when the stream does not exist
    /// yet and the subject created its hourly share of streams already.
    pub(crate) async fn check_new_stream(
        &self,
        key: &Arc<str>,
        stream: &StreamName,
        store: &dyn LogStore,
    ) -> Result<(), Denied> {
        if self.new_streams_per_hour == 0 || self.is_known(stream) {
            return Ok(());
        }
        let head = store.head(stream.clone()).await.map_err(|e| {
            tracing::error!(error = %e, "reading a stream's head failed");
            e.to_peer()
        })?;
        if head.0 == 0 {
            let admitted = self.with_entry(key, |e, now| match &mut e.new_streams {
                Some(r) => r.try_take(1.0, now),
                None => true,
            });
            if !admitted {
                self.metrics.trip(Limit::SubjectNewStreams);
                return Err((
                    ErrorCode::RateLimited,
                    format!(
                        "this user created its limit of {} new streams in the last hour; write \
                         to existing streams or retry later",
                        self.new_streams_per_hour
                    ),
                ));
            }
        }
        self.remember(stream);
        Ok(())
    }

    fn is_known(&self, stream: &StreamName) -> bool {
        self.known_streams.lock().is_ok_and(|s| s.contains(stream))
    }

    fn remember(&self, stream: &StreamName) {
        if let Ok(mut s) = self.known_streams.lock() {
            if s.len() >= MAX_KNOWN_STREAMS {
                s.clear();
            }
            s.insert(stream.clone());
        }
    }

    /// The message of a refusal by a subject's rate.
    pub(crate) fn rate_limited(&self, what: Limit) -> Denied {
        self.metrics.trip(what);
        let message = match what {
            Limit::SubjectBytes => format!(
                "this user sends more than {} payload bytes per second over all its connections; \
                 retry later",
                self.bytes_per_sec
            ),
            _ => format!(
                "this user pushes more than {} intents per second over all its connections; \
                 retry later",
                self.intents_per_sec
            ),
        };
        (ErrorCode::RateLimited, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(f: impl FnOnce(&mut Config)) -> Arc<Subjects> {
        let mut c = Config::default();
        f(&mut c);
        Arc::new(Subjects::new(&c, Arc::new(Metrics::default())))
    }

    #[test]
    fn connections_are_counted_per_subject_and_returned() {
        let s = subjects(|c| c.max_subject_connections = 2);
        let a: Arc<str> = "sub:a".into();
        let b: Arc<str> = "sub:b".into();
        let a1 = s.connect(&a).expect("first");
        let _a2 = s.connect(&a).expect("second");
        assert_eq!(
            s.connect(&a).err().map(|e| e.0),
            Some(ErrorCode::TooManyConnections)
        );
        let _b1 = s.connect(&b).expect("another subject is not affected");
        drop(a1);
        assert!(s.connect(&a).is_ok());
    }

    #[test]
    fn the_open_server_counts_per_address() {
        let open = Principal::open();
        let p1: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
        let p2: SocketAddr = "10.0.0.1:6000".parse().expect("addr");
        assert_eq!(subject_key(&open, Some(p1)), subject_key(&open, Some(p2)));
    }
}
