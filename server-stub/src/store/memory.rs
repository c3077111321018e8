//! A [`LogStore`] in memory: the same decisions as the durable stores
//! (through [`sync_core::decide_batch`], and the same conformance tests),
//! none of the durability. For the fuzz
//! harness and tests that need many fresh stores quickly; never for data
//! anyone wants back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sync_core::protocol::EVENT_OVERHEAD;
use sync_core::{
    decide_batch, ClientId, Epoch, ErrorCode, Event, IntentDigest, Offset, Position, Step,
    StreamName,
};

use super::{
    appended_resend, fold_request, state_json, undecided, AppendListener, AppendRequest, BoxFuture,
    LogStore, Outcome, Page, ProposedIntent, ReadLimits, Sender, StoredSnapshot, StreamStateJson,
};
use crate::error::Error;
use crate::fold::{Folds, Reducers, Replayed};

#[derive(Default)]
struct StreamLog {
    events: Vec<Event>,
    /// Highest decided seq per client.
    last: HashMap<ClientId, u64>,
    /// Stored rejections per (client, seq).
    rejections: HashMap<(ClientId, u64), (ErrorCode, String)>,
    /// Offset and payload digest of each appended (client, seq).
    offsets: HashMap<(ClientId, u64), (Offset, IntentDigest)>,
    snapshot: Option<StoredSnapshot>,
}

struct State {
    streams: HashMap<StreamName, StreamLog>,
    subjects: HashMap<ClientId, String>,
    folds: Folds,
    closed: bool,
}

/// Events of `log` after `after`, for rebuilding a state.
fn replay(log: Option<&StreamLog>, after: Offset) -> Result<Replayed, Error> {
    let start = usize::try_from(after.0).unwrap_or(usize::MAX);
    Ok(log
        .map(|l| l.events.iter().skip(start).cloned().collect())
        .unwrap_or_default())
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
        MemoryStore::with_reducers(epoch, listener, Reducers::default())
    }

    /// An empty store whose streams matching a rule of `reducers` are
    /// folded at the ordering point (see [`super::fold_intents`]).
    pub fn with_reducers(
        epoch: Epoch,
        listener: Arc<dyn AppendListener>,
        reducers: Reducers,
    ) -> MemoryStore {
        MemoryStore {
            epoch,
            state: Mutex::new(State {
                streams: HashMap::new(),
                subjects: HashMap::new(),
                folds: Folds::new(reducers),
                closed: false,
            }),
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

fn apply(state: &mut State, mut request: AppendRequest) -> Result<Applied, Error> {
    let client = request.client_id;
    let time_ms = now_ms();
    let State { streams, folds, .. } = state;
    let log = streams.entry(request.stream.clone()).or_default();
    let mut position = Position {
        last_decided: log.last.get(&client).copied().unwrap_or(0),
        head: Offset(log.events.len() as u64),
    };
    let before = position.head;
    let subject = request.subject.take();
    let sender = Sender {
        client_id: client,
        subject: subject.as_deref(),
        time_ms,
    };
    if let Some(refusal) = fold_request(
        folds,
        &request.stream,
        position,
        &mut request.intents,
        &sender,
        || Ok(log.snapshot.clone()),
        |after| replay(Some(log), after),
    )? {
        return Ok((undecided(&request.intents, &refusal), Vec::new(), None));
    }
    let steps = decide_batch(&mut position, request.intents.iter().map(|i| i.offer()));
    let mut outcomes = Vec::with_capacity(steps.len());
    let mut new_events = Vec::new();
    for (step, intent) in steps.into_iter().zip(request.intents) {
        outcomes.push(match step {
            Step::Append { seq, offset } => {
                let digest = intent.stored_digest();
                let event = Event {
                    offset,
                    client_id: client,
                    seq,
                    time_ms,
                    payload: intent.payload,
                    subject: subject.clone(),
                    seen: intent.seen,
                    schema: intent.schema,
                };
                log.events.push(event.clone());
                new_events.push(event);
                log.offsets.insert((client, seq.get()), (offset, digest));
                Outcome::Appended {
                    seq,
                    offset,
                    duplicate: false,
                }
            }
            Step::Reject { seq } => {
                let (code, message) = intent.refusal()?;
                log.rejections
                    .insert((client, seq.get()), (code, message.clone()));
                Outcome::Rejected {
                    seq,
                    code,
                    message,
                    duplicate: false,
                }
            }
            Step::Resend { .. } => lookup(log, client, &intent)?,
            Step::Gap { expected } => Outcome::Gap { expected },
        });
    }
    if position.last_decided > 0 {
        log.last.insert(client, position.last_decided);
    }
    // Snapshots as the durable stores keep them (this store keeps every
    // event: it compacts nothing).
    let mut checkpoint = None;
    if let Some((offset, Ok(json), schema)) = folds.snapshot_due(&request.stream, before) {
        if offset == position.head {
            checkpoint = Some((
                offset,
                sync_core::protocol::state_hash(json.as_bytes()),
                schema,
            ));
            log.snapshot = Some(StoredSnapshot {
                offset,
                state: json.into_bytes(),
                schema,
            });
        }
    }
    Ok((outcomes, new_events, checkpoint))
}

/// What one append decided: the outcomes, the events appended, and the
/// snapshot stored (offset, state hash, schema version).
type Applied = (Vec<Outcome>, Vec<Event>, Option<(Offset, u64, u32)>);

fn lookup(log: &StreamLog, client: ClientId, intent: &ProposedIntent) -> Result<Outcome, Error> {
    let seq = intent.seq;
    if let Some((offset, digest)) = log.offsets.get(&(client, seq.get())) {
        return Ok(appended_resend(
            seq,
            intent.digest.as_ref(),
            *offset,
            Some(*digest),
        ));
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
            let (outcomes, events, checkpoint) = self.with(|s| {
                let applied = apply(s, request);
                // Decided and in the log: the states kept are at their
                // heads, so dropping the least recently used is safe.
                s.folds.trim();
                applied
            })?;
            // Like a durable store: listeners hear of a commit before its
            // pusher does, outside the lock.
            if let Some((offset, hash, schema)) = checkpoint {
                self.listener.checkpoint(&stream, offset, hash, schema);
            }
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
                    let size = e.payload.len()
                        + e.subject.as_ref().map_or(0, String::len)
                        + EVENT_OVERHEAD;
                    if events.len() >= limits.max_events.max(1)
                        || (!events.is_empty() && bytes + size > limits.max_bytes)
                    {
                        break;
                    }
                    bytes += size;
                    events.push(e.clone());
                }
                Ok(Page {
                    events,
                    head,
                    compacted: Offset(0),
                })
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
        schema: u32,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.with(|s| {
                let log = s.streams.entry(stream).or_default();
                if log.snapshot.as_ref().is_none_or(|k| k.offset <= offset) {
                    log.snapshot = Some(StoredSnapshot {
                        offset,
                        state,
                        schema,
                    });
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

    fn state(&self, stream: StreamName) -> BoxFuture<'_, Result<Option<StreamStateJson>, Error>> {
        Box::pin(async move {
            self.with(|s| {
                let log = s.streams.get(&stream);
                let head = Offset(log.map_or(0, |l| l.events.len() as u64));
                let answer = state_json(
                    &mut s.folds,
                    &stream,
                    head,
                    || Ok(log.and_then(|l| l.snapshot.clone())),
                    |after| replay(log, after),
                );
                s.folds.trim();
                answer
            })
        })
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
    use crate::store::conformance;

    struct Nobody;
    impl AppendListener for Nobody {
        fn appended(&self, _: &StreamName, _: &[Event]) {}
        fn head_moved(&self, _: &StreamName, _: Offset) {}
    }

    fn store() -> MemoryStore {
        MemoryStore::new(Epoch::from("e"), Arc::new(Nobody))
    }

    #[tokio::test]
    async fn decides_like_the_durable_stores() {
        let store = store();
        conformance::decides_resends_and_gaps(&store, "decides").await;
        conformance::a_reused_seq_is_refused(&store, "reused").await;
        conformance::submitted_requests_are_decided_in_order(&store, None, "piped").await;
        store.close().await;
        let s = StreamName::new("s").expect("name");
        let closed = store
            .append(AppendRequest {
                subject: None,
                stream: s,
                client_id: ClientId([2; 16]),
                intents: vec![ProposedIntent::new(
                    sync_core::Seq::FIRST,
                    b"x".to_vec(),
                    crate::store::Verdict::Accept,
                )],
            })
            .await;
        assert!(matches!(closed, Err(Error::StoreClosed)), "{closed:?}");
    }

    /// A reducer whose engine cannot start a state.
    struct Unstartable;

    impl crate::fold::StreamReducer for Unstartable {
        fn describe(&self) -> String {
            "a reducer out of memory".into()
        }
        fn start(&self) -> Result<Box<dyn crate::fold::StreamState>, crate::fold::Refusal> {
            Err(crate::fold::Refusal {
                code: ErrorCode::Reducer,
                message: "InternalError: out of memory".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_reducer_that_cannot_start_refuses_only_its_streams_intents() {
        let mut reducers = Reducers::default();
        reducers.add("broken/*", Arc::new(Unstartable));
        let store = MemoryStore::with_reducers(Epoch::from("e"), Arc::new(Nobody), reducers);
        let broken = StreamName::new("broken/a").expect("name");
        let push = |stream: &StreamName, seqs: &[u64]| AppendRequest {
            subject: None,
            stream: stream.clone(),
            client_id: ClientId([3; 16]),
            intents: seqs
                .iter()
                .map(|&n| {
                    ProposedIntent::new(
                        sync_core::Seq::new(n).expect("seq"),
                        b"{}".to_vec(),
                        crate::store::Verdict::Accept,
                    )
                })
                .collect(),
        };
        let refused = |n: u64, duplicate: bool| Outcome::Rejected {
            seq: sync_core::Seq::new(n).expect("seq"),
            code: ErrorCode::Reducer,
            message: "InternalError: out of memory".into(),
            duplicate,
        };
        let o = store.append(push(&broken, &[1, 2])).await.expect("append");
        assert_eq!(o, vec![refused(1, false), refused(2, false)]);
        let o = store.append(push(&broken, &[1])).await.expect("append");
        assert_eq!(o, vec![refused(1, true)]);
        assert_eq!(store.head(broken.clone()).await.expect("head"), Offset(0));
        let state = store.state(broken).await;
        assert!(matches!(state, Err(Error::Reducer(_))), "{state:?}");
        let other = StreamName::new("fine").expect("name");
        let o = store.append(push(&other, &[1])).await.expect("append");
        assert!(matches!(&o[..], [Outcome::Appended { .. }]), "{o:?}");
    }

    #[tokio::test]
    async fn folds_with_one_state_kept_like_the_durable_stores() {
        let store = MemoryStore::with_reducers(
            Epoch::from("e"),
            Arc::new(Nobody),
            conformance::seat_reducers_keeping_one(),
        );
        conformance::folds_with_one_state_kept(&store, "seats/m").await;
    }

    #[tokio::test]
    async fn folds_like_the_durable_stores() {
        let store = MemoryStore::with_reducers(
            Epoch::from("e"),
            Arc::new(Nobody),
            conformance::seat_reducers(),
        );
        conformance::folds_at_the_ordering_point(&store, "seats/a").await;
        // The stores' other rules hold on folded streams too.
        conformance::decides_resends_and_gaps(&store, "plain").await;
    }

    #[tokio::test]
    async fn folds_with_meta_like_the_durable_stores() {
        let store = MemoryStore::with_reducers(
            Epoch::from("e"),
            Arc::new(Nobody),
            conformance::poll_reducers(),
        );
        conformance::folds_with_meta(&store, "polls/a").await;
    }

    #[tokio::test]
    async fn stores_snapshots_like_the_durable_stores() {
        let store = MemoryStore::with_reducers(
            Epoch::from("e"),
            Arc::new(Nobody),
            conformance::seat_reducers_snapshotting(),
        );
        conformance::stores_snapshots(&store, "seats/snap").await;
    }
}
