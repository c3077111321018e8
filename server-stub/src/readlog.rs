//! The read log (`--read-log PATTERN`): each read of a view of a stream
//! the patterns match — a `GET …/views/{name}`, an SSE view feed opened, a
//! WebSocket `Watch` — is appended, before its answer goes out, as an event
//! of the companion stream `~reads/<stream>`: who read (the event's subject
//! is the reader's verified `sub`; the payload names its client id on the
//! WebSocket), which view with which params, at which offset, and how.
//! Intents carry `seen` (the offset their client had), so "what did the
//! user see when they decided" is a join of the two logs.
//!
//! Exactly once: a record is an intent of its own, under a client id this
//! process draws at random for each read-log stream and a seq counted in
//! memory, decided by the store like any intent and committed before the
//! read is answered; a read whose record did not commit is answered with
//! the store's error, not served. After a failure (or a restart, `kill -9`
//! included) records continue under a new client id from seq 1, so a seq
//! never waits on one whose fate is unknown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sync_core::{ClientId, Offset, Seq, StreamName};

use crate::auth::Pattern;
use crate::error::Error;
use crate::store::{AppendRequest, LogStore, Outcome, ProposedIntent, Verdict};

/// The prefix of read-log streams.
pub const PREFIX: &str = "~reads/";

/// One read to record.
#[derive(Debug)]
pub struct Read<'a> {
    /// The stream read.
    pub stream: &'a StreamName,
    /// The reader's verified `sub` (`None` with authentication off).
    pub subject: Option<String>,
    /// The reader's client id (WebSocket readers).
    pub client: Option<ClientId>,
    /// The view's name.
    pub view: &'a str,
    /// Its params, JSON text.
    pub params: &'a str,
    /// The offset the answer reflects.
    pub offset: Offset,
    /// `ws`, `http` or `sse`.
    pub via: &'static str,
}

/// Where the records of one read-log stream go next.
struct Writer {
    client: ClientId,
    next: u64,
}

/// Records reads of the streams its patterns match.
pub struct ReadLog {
    patterns: Vec<Pattern>,
    writers: Mutex<HashMap<StreamName, Arc<tokio::sync::Mutex<Writer>>>>,
}

impl std::fmt::Debug for ReadLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadLog")
            .field("patterns", &self.patterns)
            .finish_non_exhaustive()
    }
}

fn fresh_client() -> Result<ClientId, Error> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| Error::Storage(format!("no random client id for the read log: {e}")))?;
    Ok(ClientId(id))
}

impl ReadLog {
    /// Records reads of the streams `patterns` match (none: records
    /// nothing).
    pub fn new(patterns: &[String]) -> ReadLog {
        ReadLog {
            patterns: patterns.iter().map(|p| Pattern::parse(p)).collect(),
            writers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether reads of `stream` are recorded (never those of a read log).
    pub fn covers(&self, stream: &StreamName) -> bool {
        !stream.as_str().starts_with(PREFIX)
            && self.patterns.iter().any(|p| p.matches(stream.as_str()))
    }

    /// The read log of `stream`.
    pub fn stream_of(stream: &StreamName) -> Result<StreamName, Error> {
        StreamName::new(format!("{PREFIX}{stream}")).map_err(|e| {
            Error::Storage(format!(
                "reads of {stream} cannot be recorded: its read log's name is invalid ({e})"
            ))
        })
    }

    /// Appends `read` to its stream's read log and waits until it is
    /// durable; `Ok` at once when the stream's reads are not recorded.
    pub async fn record(&self, store: &dyn LogStore, read: Read<'_>) -> Result<(), Error> {
        if !self.covers(read.stream) {
            return Ok(());
        }
        let log = Self::stream_of(read.stream)?;
        let params: serde_json::Value =
            serde_json::from_str(read.params).unwrap_or(serde_json::Value::Null);
        let payload = serde_json::json!({
            "type": "read",
            "stream": read.stream.as_str(),
            "view": read.view,
            "params": params,
            "offset": read.offset.0,
            "client": read.client.map(|c| c.to_string()),
            "via": read.via,
        })
        .to_string();
        let writer = {
            let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            match writers.get(&log) {
                Some(w) => w.clone(),
                None => {
                    let w = Arc::new(tokio::sync::Mutex::new(Writer {
                        client: fresh_client()?,
                        next: 1,
                    }));
                    writers.insert(log.clone(), w.clone());
                    w
                }
            }
        };
        // Handed over in seq order (the store decides one client's
        // requests in the order they are submitted), awaited outside the
        // lock, so records of concurrent reads share commits.
        let (client, outcome) = {
            let mut w = writer.lock().await;
            let seq =
                Seq::new(w.next).map_err(|e| Error::Storage(format!("the read log's seq: {e}")))?;
            let request = AppendRequest {
                stream: log.clone(),
                client_id: w.client,
                subject: read.subject,
                intents: vec![ProposedIntent::new(
                    seq,
                    payload.into_bytes(),
                    Verdict::Accept,
                )],
            };
            let submitted = store.submit(request).await;
            w.next += 1;
            (w.client, submitted)
        };
        let outcome = match outcome {
            Ok(submitted) => submitted.await,
            Err(e) => Err(e),
        };
        match outcome.as_deref() {
            Ok([Outcome::Appended { .. }]) => Ok(()),
            other => {
                // The seq's fate may be unknown: later records go under a
                // new client id, from seq 1.
                let mut w = writer.lock().await;
                if w.client == client {
                    w.client = fresh_client()?;
                    w.next = 1;
                }
                match other {
                    Err(_) => outcome.map(|_| ()),
                    Ok(outcomes) => Err(Error::Storage(format!(
                        "the read log {log} did not take the record: {outcomes:?}"
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_patterns_but_never_a_read_log() {
        let log = ReadLog::new(&["todos/*".into(), "audit".into()]);
        let name = |s: &str| StreamName::new(s).expect("name");
        assert!(log.covers(&name("todos/team-42")));
        assert!(log.covers(&name("audit")));
        assert!(!log.covers(&name("seats/a")));
        assert!(!ReadLog::new(&["*".into()]).covers(&name("~reads/todos/team-42")));
        assert!(!ReadLog::new(&[]).covers(&name("todos/team-42")));
        assert_eq!(
            ReadLog::stream_of(&name("todos/team-42"))
                .expect("valid")
                .as_str(),
            "~reads/todos/team-42"
        );
        assert!(ReadLog::stream_of(&name(&"x".repeat(200))).is_err());
    }
}
