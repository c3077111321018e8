//! A [`LogStore`] in memory: the same decisions as the durable stores
//! (through [`sync_core::decide()`]), none of the durability. For the fuzz
//! harness and tests that need many fresh stores quickly; never for data
//! anyone wants back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sync_core::{decide, ClientId, Decision, Epoch, ErrorCode, Event, Offset, Seq, StreamName};

use super::{
    AppendListener, AppendRequest, BoxFuture, LogStore, Outcome, Page, ReadLimits, StoredSnapshot,
    Verdict,
};
use crate::config::EVENT_OVERHEAD;
use crate::error::Error;

#[derive(Default)]
struct StreamLog {
    events: Vec<Event>,
    /// Highest decided seq per client.
    last: HashMap<ClientId, u64>,
    /// Stored rejections per (client, seq).
    rejections: HashMap<(ClientId, u64), (ErrorCode, String)>,
    /// Offset of each appended (client, seq).
    offsets: HashMap<(ClientId, u64), Offset>,
    snapshot: Option<StoredSnapshot>,
}

#[derive(Default)]
struct State {
    streams: HashMap<StreamName, StreamLog>,
    subjects: HashMap<ClientId, String>,
    closed: bool,
}

/// The in-memory store.
pub struct MemoryStore {
    epoch: Epoch,
    state: Mutex<State>,
    listener: Arc<dyn AppendListener>,
}

impl MemoryStore {
    /// An empty store with `epoch`, reporting appends to `listener`.
    pub fn new(epoch: Epoch, listener: Arc<dyn AppendListener>) -> MemoryStore {
        MemoryStore {
            epoch,
            state: Mutex::new(State::default()),
            listener,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T, Error>) -> Result<T, Error> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::Storage("memory store lock poisoned".into()))?;
        if state.closed {
            return Err(Error::StoreClosed);
        }
        f(&mut state)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn apply(log: &mut StreamLog, request: AppendRequest) -> Result<(Vec<Outcome>, Vec<Event>), Error> {
    let client = request.client_id;
    let time_ms = now_ms();
    let mut outcomes = Vec::with_capacity(request.intents.len());
    let mut new_events = Vec::new();
    for intent in request.intents {
        let last = log.last.get(&client).copied().unwrap_or(0);
        let seq = intent.seq;
        match decide(last, seq) {
            Decision::Append => {
                match intent.verdict {
                    Verdict::Accept => {
                        let offset = Offset(log.events.len() as u64 + 1);
                        let event = Event {
                            offset,
                            client_id: client,
                            seq,
                            time_ms,
                            payload: intent.payload,
                        };
                        log.events.push(event.clone());
                        new_events.push(event);
                        log.offsets.insert((client, seq.get()), offset);
                        outcomes.push(Outcome::Appended {
                            seq,
                            offset,
                            duplicate: false,
                        });
                    }
                    Verdict::Reject { code, message } => {
                        log.rejections
                            .insert((client, seq.get()), (code, message.clone()));
                        outcomes.push(Outcome::Rejected {
                            seq,
                            code,
                            message,
                            duplicate: false,
                        });
                    }
                }
                log.last.insert(client, seq.get());
            }
            Decision::Duplicate => outcomes.push(lookup(log, client, seq)?),
            Decision::Gap { expected } => {
                outcomes.push(Outcome::Gap { expected });
                break;
            }
        }
    }
    Ok((outcomes, new_events))
}

fn lookup(log: &StreamLog, client: ClientId, seq: Seq) -> Result<Outcome, Error> {
    if let Some(offset) = log.offsets.get(&(client, seq.get())) {
        return Ok(Outcome::Appended {
            seq,
            offset: *offset,
            duplicate: true,
        });
    }
    match log.rejections.get(&(client, seq.get())) {
        Some((code, message)) => Ok(Outcome::Rejected {
            seq,
            code: *code,
            message: message.clone(),
            duplicate: true,
        }),
        None => Err(Error::Storage(format!(
            "seq {seq} of client {client} is decided but its outcome is missing"
        ))),
    }
}

impl LogStore for MemoryStore {
    fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<Vec<Outcome>, Error>> {
        Box::pin(async move {
            let stream = request.stream.clone();
            let (outcomes, events) =
                self.with(|s| apply(s.streams.entry(stream.clone()).or_default(), request))?;
            // Like a durable store: listeners hear of a commit before its
            // pusher does, outside the lock.
            if !events.is_empty() {
                self.listener.appended(&stream, &events);
            }
            Ok(outcomes)
        })
    }

    fn read(
        &self,
        stream: StreamName,
        after: Offset,
        limits: ReadLimits,
    ) -> BoxFuture<'_, Result<Page, Error>> {
        Box::pin(async move {
            self.with(|s| {
                let Some(log) = s.streams.get(&stream) else {
                    return Ok(Page::default());
                };
                let head = Offset(log.events.len() as u64);
                let mut events = Vec::new();
                let mut bytes = 0usize;
                let start = usize::try_from(after.0).unwrap_or(usize::MAX);
                for e in log.events.iter().skip(start) {
                    let size = e.payload.len() + EVENT_OVERHEAD;
                    if events.len() >= limits.max_events.max(1)
                        || (!events.is_empty() && bytes + size > limits.max_bytes)
                    {
                        break;
                    }
                    bytes += size;
                    events.push(e.clone());
                }
                Ok(Page { events, head })
            })
        })
    }

    fn head(&self, stream: StreamName) -> BoxFuture<'_, Result<Offset, Error>> {
        Box::pin(async move {
            self.with(|s| {
                Ok(Offset(
                    s.streams.get(&stream).map_or(0, |l| l.events.len() as u64),
                ))
            })
        })
    }

    fn put_snapshot(
        &self,
        stream: StreamName,
        offset: Offset,
        state: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.with(|s| {
                let log = s.streams.entry(stream).or_default();
                if log.snapshot.as_ref().is_none_or(|(o, _)| *o <= offset) {
                    log.snapshot = Some((offset, state));
                }
                Ok(())
            })
        })
    }

    fn latest_snapshot(
        &self,
        stream: StreamName,
    ) -> BoxFuture<'_, Result<Option<StoredSnapshot>, Error>> {
        Box::pin(async move {
            self.with(|s| Ok(s.streams.get(&stream).and_then(|l| l.snapshot.clone())))
        })
    }

    fn bind_client(
        &self,
        client_id: ClientId,
        sub: String,
    ) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(
            async move { self.with(|s| Ok(s.subjects.entry(client_id).or_insert(sub).clone())) },
        )
    }

    fn check(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.with(|_| Ok(())) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(mut s) = self.state.lock() {
                s.closed = true;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ProposedIntent;

    struct Nobody;
    impl AppendListener for Nobody {
        fn appended(&self, _: &StreamName, _: &[Event]) {}
        fn head_moved(&self, _: &StreamName, _: Offset) {}
    }

    fn req(client: u8, seqs: &[u64], reject: bool) -> AppendRequest {
        AppendRequest {
            stream: StreamName::new("s").expect("name"),
            client_id: ClientId([client; 16]),
            intents: seqs
                .iter()
                .map(|s| ProposedIntent {
                    seq: Seq::new(*s).expect("seq"),
                    payload: vec![*s as u8],
                    verdict: if reject {
                        Verdict::Reject {
                            code: ErrorCode::Rejected,
                            message: "no".into(),
                        }
                    } else {
                        Verdict::Accept
                    },
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn decides_like_the_durable_stores() {
        let store = MemoryStore::new(Epoch::from("e"), Arc::new(Nobody));
        let o = store.append(req(1, &[1, 2], false)).await.expect("append");
        assert!(matches!(
            o[1],
            Outcome::Appended {
                offset: Offset(2),
                duplicate: false,
                ..
            }
        ));
        let o = store.append(req(1, &[3], true)).await.expect("append");
        assert!(matches!(
            o[0],
            Outcome::Rejected {
                duplicate: false,
                ..
            }
        ));
        // Resends get the original answers; a gap stops the request.
        let o = store
            .append(req(1, &[2, 3, 5, 4], false))
            .await
            .expect("append");
        assert!(matches!(
            o[0],
            Outcome::Appended {
                offset: Offset(2),
                duplicate: true,
                ..
            }
        ));
        assert!(matches!(
            o[1],
            Outcome::Rejected {
                duplicate: true,
                ..
            }
        ));
        assert!(matches!(o[2], Outcome::Gap { expected } if expected.get() == 4));
        assert_eq!(o.len(), 3);
        let limits = ReadLimits {
            max_events: 1,
            max_bytes: 1 << 20,
        };
        let page = store
            .read(StreamName::new("s").expect("name"), Offset(1), limits)
            .await
            .expect("read");
        assert_eq!((page.events.len(), page.head), (1, Offset(2)));
        assert_eq!(page.events[0].offset, Offset(2));
        assert_eq!(
            store
                .bind_client(ClientId([1; 16]), "a".into())
                .await
                .expect("bind"),
            "a"
        );
        assert_eq!(
            store
                .bind_client(ClientId([1; 16]), "b".into())
                .await
                .expect("bind"),
            "a"
        );
        store.close().await;
        assert!(store.append(req(2, &[1], false)).await.is_err());
    }
}
