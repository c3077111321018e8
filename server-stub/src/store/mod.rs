//! Durable log storage behind one trait, [`LogStore`], so the embedded
//! SQLite default and a shared scale-out store serve the same server code.
//!
//! A store owns three things, always changed together in one transaction:
//! the events of every stream (dense offsets from 1), the highest seq
//! decided per (stream, client), and the outcome of every decision (the
//! offset of an appended intent, or the code and message of a rejection).
//! That is what makes intents exactly-once across retries and restarts.
//!
//! Fan-out learns of new events through the [`AppendListener`] given to
//! the store when it is opened. A store calls
//! [`AppendListener::appended`] after each commit with the events it
//! wrote; a shared store whose other nodes append calls
//! [`AppendListener::head_moved`] when it hears of theirs, and the
//! subscribers read what they have not seen from the store. Nodes keep no
//! state that is not in the store.

pub mod memory;
pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use sync_core::{
    answer_resend, decide_batch, schema_verdict, ClientId, Epoch, ErrorCode, Event, IntentDigest,
    Meta, Offer, Offset, Position, ResendAnswer, SchemaVerdict, Seq, Step, StreamName,
};

use crate::error::Error;
use crate::fold::{Folded, Folds, Refusal, Replayed, Unfolded};

/// A boxed, sendable future: the trait stays object-safe, so the server can
/// hold any store as `Arc<dyn LogStore>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a store's single writer turns waiting intents into transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// Every intent waiting when a commit starts goes into one transaction
    /// (one fsync for the lot). The default, and the one to run.
    Group,
    /// One transaction (one fsync) per intent. Slower by design; it exists
    /// so benchmarks can measure what group commit buys on the same code.
    PerIntent,
}

/// What the intake decided for an intent before it reaches the log: it is
/// only applied when the intent's seq is the next one (a resend keeps its
/// original outcome).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Accept,
    /// Refuse it; the refusal is stored as the decision for this seq.
    Reject {
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

/// One intent offered to the store.
#[derive(Clone, Debug)]
pub struct ProposedIntent {
    /// The client's seq for the stream.
    pub seq: Seq,
    /// The payload (empty for rejected intents: it is never stored).
    pub payload: Vec<u8>,
    /// Append or refuse, when this seq is decided now.
    pub verdict: Verdict,
    /// The digest of the payload the client sent (taken before a refused
    /// payload is dropped), to tell a resend from another intent under a
    /// seq decided before; `None` when the request does not carry the
    /// intent (a withdrawal, a refused write): its resend is not checked.
    pub digest: Option<IntentDigest>,
    /// The confirmed offset the client had when it dispatched the intent
    /// (stored with its event: the reducer's `meta.seen`).
    pub seen: Offset,
    /// The schema version the intent was made under (stored with its
    /// event: the reducer's `meta.schema`; every replica upcasts it from
    /// there when it folds).
    pub schema: u32,
}

impl ProposedIntent {
    /// An intent with `payload`, its digest taken now.
    pub fn new(seq: Seq, payload: Vec<u8>, verdict: Verdict) -> ProposedIntent {
        ProposedIntent {
            seq,
            digest: Some(IntentDigest::of(&payload)),
            payload,
            verdict,
            seen: Offset::ZERO,
            schema: 1,
        }
    }

    /// The intent, dispatched having seen `seen`.
    pub fn seen(mut self, seen: Offset) -> ProposedIntent {
        self.seen = seen;
        self
    }

    /// The intent, made under schema version `schema`.
    pub fn schema(mut self, schema: u32) -> ProposedIntent {
        self.schema = schema;
        self
    }

    /// What [`sync_core::decide_batch`] is offered for this intent.
    pub fn offer(&self) -> Offer {
        Offer {
            seq: self.seq,
            accept: matches!(self.verdict, Verdict::Accept),
        }
    }

    /// The digest a store keeps for this intent once it is appended.
    pub fn stored_digest(&self) -> IntentDigest {
        self.digest
            .unwrap_or_else(|| IntentDigest::of(&self.payload))
    }

    /// The refusal of an intent that [`sync_core::decide_batch`] decided
    /// as rejected (its verdict is a refusal, by construction).
    pub fn refusal(&self) -> Result<(ErrorCode, String), Error> {
        match &self.verdict {
            Verdict::Reject { code, message } => Ok((*code, message.clone())),
            Verdict::Accept => Err(Error::Storage(format!(
                "seq {} was decided as rejected but its verdict is to accept",
                self.seq
            ))),
        }
    }
}

/// The answer to a resend of `seq` (the resent payload's digest is
/// `offered`, when the request carries it) whose intent is appended at
/// `offset` with stored digest `stored` (`None` for an intent stored
/// before digests were kept: it is not checked).
pub fn appended_resend(
    seq: Seq,
    offered: Option<&IntentDigest>,
    offset: Offset,
    stored: Option<IntentDigest>,
) -> Outcome {
    let answer = match stored {
        Some(stored) => answer_resend(offset, &stored, offered),
        None => ResendAnswer::Same,
    };
    match answer {
        ResendAnswer::Same => Outcome::Appended {
            seq,
            offset,
            duplicate: true,
        },
        ResendAnswer::Reused { offset } => Outcome::SeqReused { seq, offset },
    }
}

/// Who sends a request's intents and when they are appended: what their
/// events' meta holds besides offset, seq and seen.
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    /// The client.
    pub client_id: ClientId,
    /// Its verified subject (a token's `sub`), if any.
    pub subject: Option<&'a str>,
    /// The time the store stamps the events with.
    pub time_ms: u64,
}

impl AppendRequest {
    /// The sender of this request's intents, appended at `time_ms`.
    pub fn sender(&self, time_ms: u64) -> Sender<'_> {
        Sender {
            client_id: self.client_id,
            subject: self.subject.as_deref(),
            time_ms,
        }
    }
}

/// The fold at the ordering point: the intents of a request that
/// [`decide_batch`] will decide as appended now (from `position`) are
/// folded, in order, onto the stream's state `folded` (at `position`'s
/// head); one the reducer refuses becomes a rejection (its refusal's
/// code and message, its payload dropped) and the state stays as it
/// was, so the next intent is folded onto the state without it. The
/// store then decides the request as usual: a refused intent is
/// rejected, stored as its seq's decision, and never appended.
///
/// Offers that stay accepted are decided exactly as before (a refusal
/// changes only whether the head moves), so `folded` ends at the head
/// the store's decisions reach.
///
/// An intent made under a schema version older than the reducer's
/// oldest (`schemas`: `(min, current)`) is refused with
/// `SCHEMA_TOO_OLD` ([`sync_core::schema_verdict`]); the others are
/// folded with their version in `meta.schema` (the reducer upcasts).
pub fn fold_intents(
    folded: &mut Folded,
    position: Position,
    intents: &mut [ProposedIntent],
    by: &Sender<'_>,
    schemas: (u32, u32),
) {
    let (min, current) = schemas;
    let mut probe = position;
    let steps = decide_batch(&mut probe, intents.iter().map(ProposedIntent::offer));
    for (step, intent) in steps.iter().zip(intents.iter_mut()) {
        let Step::Append { seq, offset } = *step else {
            continue;
        };
        if schema_verdict(intent.schema, min, current) == SchemaVerdict::TooOld {
            intent.payload = Vec::new();
            intent.verdict = Verdict::Reject {
                code: ErrorCode::SchemaTooOld,
                message: format!(
                    "the intent was made under schema version {}, older than the oldest this server \
                     takes ({min}; it runs version {current}): reload the app",
                    intent.schema
                ),
            };
            continue;
        }
        let meta = Meta {
            offset: Some(offset),
            client_id: by.client_id,
            subject: by.subject,
            seq: Some(seq),
            time_ms: by.time_ms,
            seen: intent.seen,
            schema: intent.schema,
        };
        if let Err(refusal) = folded.fold(&intent.payload, &meta) {
            intent.payload = Vec::new();
            intent.verdict = Verdict::Reject {
                code: refusal.code,
                message: refusal.message,
            };
        }
    }
}

/// The fold at the ordering point for one request: the stream's state
/// from `folds` (built from `snapshot`, the stream's latest stored
/// snapshot, and `read` when it is not kept), then
/// [`fold_intents`]. When the stream's reducer cannot start a state, every
/// intent decided now is refused with its refusal (`REDUCER`), so a
/// failing reducer costs its own stream's intents and never a whole
/// transaction. A stream without a reducer is left alone (any schema
/// version: its payloads are opaque).
///
/// `Ok(Some(refusal))`: the request is not decided at all (the store
/// answers each intent with [`Outcome::Undecided`] and writes nothing for
/// it), because an intent to decide now is of a schema version newer
/// than this node's reducer, or the reducer cannot fold the stream's log
/// ([`Unfolded::Undecided`]): the seqs stay free for a node that can.
pub fn fold_request(
    folds: &mut Folds,
    stream: &StreamName,
    position: Position,
    intents: &mut [ProposedIntent],
    by: &Sender<'_>,
    snapshot: impl FnOnce() -> Result<Option<StoredSnapshot>, Error>,
    read: impl FnMut(Offset) -> Result<Replayed, Error>,
) -> Result<Option<Refusal>, Error> {
    let Some(schemas) = folds.schema_range(stream) else {
        return Ok(None);
    };
    if let Some(refusal) = too_new(position, intents, schemas.1) {
        return Ok(Some(refusal));
    }
    match folds.at_from(stream, position.head, snapshot, read) {
        Ok(Some(folded)) => fold_intents(folded, position, intents, by, schemas),
        Ok(None) => {}
        Err(Unfolded::Read(e)) => return Err(e),
        Err(Unfolded::Reducer(refusal)) => refuse_intents(position, intents, &refusal),
        Err(Unfolded::Undecided(refusal)) => return Ok(Some(refusal)),
    }
    Ok(None)
}

/// The refusal of a request with an intent to decide now that is of a
/// schema version newer than `current` (this node's reducer's).
fn too_new(position: Position, intents: &[ProposedIntent], current: u32) -> Option<Refusal> {
    let mut probe = position;
    let steps = decide_batch(&mut probe, intents.iter().map(ProposedIntent::offer));
    let newest = steps
        .iter()
        .zip(intents)
        .filter(|(step, _)| matches!(step, Step::Append { .. }))
        .map(|(_, i)| i.schema)
        .max()?;
    (schema_verdict(newest, 1, current) == SchemaVerdict::TooNew).then(|| Refusal {
        code: ErrorCode::SchemaTooNew,
        message: format!(
            "the intent was made under schema version {newest}, newer than this server's reducer \
             (version {current}); it was not decided: push it to a server that runs the new version"
        ),
    })
}

/// The answers to a request that is not decided (see [`fold_request`]).
pub fn undecided(intents: &[ProposedIntent], refusal: &Refusal) -> Vec<Outcome> {
    intents
        .iter()
        .map(|i| Outcome::Undecided {
            seq: i.seq,
            code: refusal.code,
            message: refusal.message.clone(),
        })
        .collect()
}

/// Refuses with `refusal` every intent of `intents` that would be
/// appended now.
fn refuse_intents(position: Position, intents: &mut [ProposedIntent], refusal: &Refusal) {
    let mut probe = position;
    let steps = decide_batch(&mut probe, intents.iter().map(ProposedIntent::offer));
    for (step, intent) in steps.iter().zip(intents.iter_mut()) {
        if matches!(step, Step::Append { .. }) {
            intent.payload = Vec::new();
            intent.verdict = Verdict::Reject {
                code: refusal.code,
                message: refusal.message.clone(),
            };
        }
    }
}

/// The state of `stream` at `head` as JSON, through `folds` (`None`: no
/// reducer folds it).
pub fn state_json(
    folds: &mut Folds,
    stream: &StreamName,
    head: Offset,
    snapshot: impl FnOnce() -> Result<Option<StoredSnapshot>, Error>,
    read: impl FnMut(Offset) -> Result<Replayed, Error>,
) -> Result<Option<StreamStateJson>, Error> {
    match folds.at_from(stream, head, snapshot, read) {
        Ok(Some(folded)) => Ok(Some((folded.offset, folded.state.to_json()?))),
        Ok(None) => Ok(None),
        Err(Unfolded::Read(e)) => Err(e),
        Err(Unfolded::Reducer(r)) | Err(Unfolded::Undecided(r)) => Err(r.into()),
    }
}

/// A stream's state as a reducer folds it: the offset of the last event
/// folded in and the state as JSON text.
pub type StreamStateJson = (Offset, String);

/// Intents of one client for one stream, in seq order.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// Where.
    pub stream: StreamName,
    /// Who.
    pub client_id: ClientId,
    /// Who, as authenticated: the verified token's `sub` (`None` with
    /// authentication off). Stored with every event appended.
    pub subject: Option<String>,
    /// What, in seq order.
    pub intents: Vec<ProposedIntent>,
}

impl AppendRequest {
    /// Payload bytes of the request (for batch limits).
    pub fn payload_bytes(&self) -> usize {
        self.intents.iter().map(|i| i.payload.len()).sum()
    }
}

/// The durable answer for one intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In the log at `offset`.
    Appended {
        /// The intent's seq.
        seq: Seq,
        /// Its place in the stream.
        offset: Offset,
        /// True when the seq had been decided before (a resend).
        duplicate: bool,
    },
    /// Refused, for good.
    Rejected {
        /// The intent's seq.
        seq: Seq,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
        /// True when the seq had been decided before (a resend).
        duplicate: bool,
    },
    /// The seq is beyond the next one; this and the rest of the request
    /// were not looked at. Always the last outcome of a request.
    Gap {
        /// The seq expected next.
        expected: Seq,
    },
    /// The seq was decided before for another intent (the payloads
    /// differ): this one is refused with `SEQ_REUSED` and nothing is
    /// stored; the seq keeps the intent at `offset`.
    SeqReused {
        /// The intent's seq.
        seq: Seq,
        /// Where the intent that holds the seq is.
        offset: Offset,
    },
    /// Not decided on this node, nothing stored: the seq stays free
    /// (`SCHEMA_TOO_NEW`: the intent, or the stream's log, is of a schema
    /// version newer than this node's reducer). The client keeps the
    /// intent and pushes it again later.
    Undecided {
        /// The intent's seq.
        seq: Seq,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

/// Counts a request's decisions in `metrics`: appended, rejected, resends
/// (`deduplicated`, a reused seq among them) and gaps.
pub(crate) fn count_decided(metrics: &crate::metrics::Metrics, outcomes: &[Outcome]) {
    use std::sync::atomic::Ordering::Relaxed;
    for o in outcomes {
        match o {
            Outcome::Appended {
                duplicate: false, ..
            } => metrics.intents_appended.fetch_add(1, Relaxed),
            Outcome::Rejected {
                duplicate: false, ..
            } => metrics.intents_rejected.fetch_add(1, Relaxed),
            // A seq reused for another intent is a resend of a decided
            // seq too.
            Outcome::Appended { .. } | Outcome::Rejected { .. } | Outcome::SeqReused { .. } => {
                metrics.intents_duplicate.fetch_add(1, Relaxed)
            }
            Outcome::Gap { .. } => metrics.intents_gap.fetch_add(1, Relaxed),
            Outcome::Undecided { .. } => continue,
        };
    }
}

impl Outcome {
    /// The message of a [`Outcome::SeqReused`] answer.
    pub fn seq_reused_message(seq: Seq, offset: Offset) -> String {
        format!(
            "seq {seq} already holds another intent (at offset {offset}); this intent was not appended: \
             each intent needs its own seq"
        )
    }
}

/// The outcomes of a request handed to the store with
/// [`LogStore::submit`], to be awaited later.
pub type Submitted = BoxFuture<'static, Result<Vec<Outcome>, Error>>;

/// Bounds of one read.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Most events.
    pub max_events: usize,
    /// Most encoded bytes (payloads plus [`sync_core::protocol::EVENT_OVERHEAD`]
    /// each); at least one event is returned when there is one.
    pub max_bytes: usize,
}

/// A range of events and the head at the time of the read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Dense, ascending.
    pub events: Vec<Event>,
    /// The stream's head when the page was read (0 for a stream never written).
    pub head: Offset,
    /// The events at or below this offset are compacted away (0: none):
    /// a read after a lower offset starts at the event after it, and the
    /// reader needs the stream's snapshot for what came before.
    pub compacted: Offset,
}

pub use crate::fold::StoredSnapshot;

/// Told of every committed append, in commit order per stream.
pub trait AppendListener: Send + Sync + 'static {
    /// `events` (dense, ascending) of `stream` are durable.
    fn appended(&self, stream: &StreamName, events: &[Event]);
    /// A snapshot of `stream` at `offset` whose state text has
    /// [`sync_core::protocol::state_hash`] `hash`, made under schema
    /// version `schema`, is durable; told before
    /// the [`AppendListener::appended`] of the same commit, so that
    /// subscribers can send it ahead of the events it follows.
    fn checkpoint(&self, _stream: &StreamName, _offset: Offset, _hash: u64, _schema: u32) {}
    /// `stream` is durable up to `head`, through another node; read the
    /// events from the store.
    fn head_moved(&self, stream: &StreamName, head: Offset);
    /// Whether anyone on this node follows `stream`: a shared store reads
    /// another node's events only for streams that are followed.
    fn follows(&self, _stream: &StreamName) -> bool {
        true
    }
    /// The streams followed on this node and the head each one knows, so a
    /// shared store that may have missed other nodes' commits can check.
    fn followed(&self) -> Vec<(StreamName, Offset)> {
        Vec::new()
    }
}

/// Durable log storage with exactly-once appends.
pub trait LogStore: Send + Sync + 'static {
    /// The log's epoch, made when the storage was created.
    fn epoch(&self) -> &Epoch;

    /// Decides the intents with [`sync_core::decide_batch`] from the
    /// stored last seq of (stream, client) and the stream's head, answers
    /// each resend with its stored outcome (checked with
    /// [`appended_resend`]), and makes the decisions durable
    /// (appended events, rejections, last seq) before answering. One
    /// outcome per intent, up to and including a [`Outcome::Gap`].
    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<Vec<Outcome>, Error>>;

    /// Hands `request` to the store and answers, once it is queued, with a
    /// future of its outcomes (what [`LogStore::append`] would answer).
    ///
    /// Requests submitted one after another (each `submit` awaited before
    /// the next call) are decided in that order. One connection can so
    /// keep many pushes in flight, decided in the order it sent them, and
    /// consecutive ones can share a commit. The wait for the first future
    /// is the store's back-pressure (its queue is full); the outcome comes
    /// whether or not the second future is polled.
    ///
    /// The default decides the request before answering (an in-memory
    /// store has nothing to wait for); stores with a writer queue only
    /// queue it.
    fn submit(&self, request: AppendRequest) -> BoxFuture<'_, Result<Submitted, Error>> {
        Box::pin(async move {
            let outcome = self.append(request).await;
            Ok(Box::pin(std::future::ready(outcome)) as Submitted)
        })
    }

    /// Events of `stream` after `after`, within `limits`, and the head.
    fn read(
        &self,
        stream: StreamName,
        after: Offset,
        limits: ReadLimits,
    ) -> BoxFuture<'_, Result<Page, Error>>;

    /// The stream's head (0 for a stream never written).
    fn head(&self, stream: StreamName) -> BoxFuture<'_, Result<Offset, Error>>;

    /// Stores the state of `stream` at `offset` (opaque bytes), made under
    /// schema version `schema`.
    fn put_snapshot(
        &self,
        stream: StreamName,
        offset: Offset,
        state: Vec<u8>,
        schema: u32,
    ) -> BoxFuture<'_, Result<(), Error>>;

    /// The latest snapshot of `stream`, if any.
    fn latest_snapshot(
        &self,
        stream: StreamName,
    ) -> BoxFuture<'_, Result<Option<StoredSnapshot>, Error>>;

    /// Binds `client_id` to the authenticated subject `sub` on its first
    /// use, durably, and answers the subject the id is bound to: `sub`
    /// itself for a new binding or a repeat, the earlier subject when
    /// another one holds the id. A binding never changes afterwards, so
    /// callers may cache answers.
    ///
    /// With authentication on, the server calls this before it takes a
    /// push or a `Hello` under `client_id`, and refuses the request with
    /// `FORBIDDEN` when the answer is not `sub`: nobody can answer for
    /// another subject's intents. Storage: one table
    /// `client_subjects (client_id PRIMARY KEY, sub)`; one upsert that
    /// keeps an existing row (`INSERT … ON CONFLICT (client_id) DO NOTHING`,
    /// then read the row back), committed before answering.
    fn bind_client(&self, client_id: ClientId, sub: String)
        -> BoxFuture<'_, Result<String, Error>>;

    /// The state of `stream` at its head as its reducer folds it, or
    /// `None` when no reducer folds `stream` (the default: a store
    /// without reducers).
    fn state(&self, _stream: StreamName) -> BoxFuture<'_, Result<Option<StreamStateJson>, Error>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// A cheap round trip to the storage, for health checks.
    fn check(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// Finishes the commits already handed over and stops; later appends
    /// fail with [`Error::StoreClosed`].
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Checks every store must pass, run by each store's tests (the in-memory
/// store's included: it decides like the durable ones).
#[cfg(test)]
pub(crate) mod conformance {
    use sync_core::{ClientId, ErrorCode, IntentDigest, Offset, Seq, StreamName};

    use super::{
        AppendRequest, LogStore, Outcome, ProposedIntent, ReadLimits, StoredSnapshot, Verdict,
    };
    use crate::metrics::Metrics;

    fn seq(n: u64) -> Seq {
        Seq::new(n).expect("seq")
    }

    fn intent(s: u64, payload: &str) -> ProposedIntent {
        ProposedIntent::new(seq(s), payload.as_bytes().to_vec(), Verdict::Accept)
    }

    fn refused(s: u64) -> ProposedIntent {
        ProposedIntent::new(
            seq(s),
            Vec::new(),
            Verdict::Reject {
                code: ErrorCode::Rejected,
                message: "no".into(),
            },
        )
    }

    fn request(stream: &StreamName, client: u8, intents: Vec<ProposedIntent>) -> AppendRequest {
        AppendRequest {
            subject: None,
            stream: stream.clone(),
            client_id: ClientId([client; 16]),
            intents,
        }
    }

    fn appended(s: u64, offset: u64, duplicate: bool) -> Outcome {
        Outcome::Appended {
            seq: seq(s),
            offset: Offset(offset),
            duplicate,
        }
    }

    /// Appends, a rejection, resends of both (within a request and
    /// across requests), a gap that stops a request, reads and bindings.
    pub(crate) async fn decides_resends_and_gaps(store: &dyn LogStore, stream: &str) {
        let s = StreamName::new(stream).expect("name");
        let o = store
            .append(request(&s, 1, vec![intent(1, "a"), intent(2, "b")]))
            .await
            .expect("append");
        assert_eq!(o, vec![appended(1, 1, false), appended(2, 2, false)]);
        let o = store
            .append(request(&s, 1, vec![refused(3), intent(2, "b")]))
            .await
            .expect("append");
        assert_eq!(
            o,
            vec![
                Outcome::Rejected {
                    seq: seq(3),
                    code: ErrorCode::Rejected,
                    message: "no".into(),
                    duplicate: false
                },
                appended(2, 2, true)
            ]
        );
        // Another client on the same stream has seqs of its own.
        let o = store
            .append(request(&s, 2, vec![intent(1, "c"), intent(1, "c")]))
            .await
            .expect("append");
        assert_eq!(o, vec![appended(1, 3, false), appended(1, 3, true)]);
        // Resends get the original answers; a gap stops the request.
        let o = store
            .append(request(
                &s,
                1,
                vec![
                    intent(2, "b"),
                    intent(3, "d"),
                    intent(5, "e"),
                    intent(4, "f"),
                ],
            ))
            .await
            .expect("append");
        assert_eq!(o.len(), 3, "{o:?}");
        assert_eq!(o[0], appended(2, 2, true));
        assert!(
            matches!(&o[1], Outcome::Rejected { duplicate: true, code: ErrorCode::Rejected, message, .. } if message == "no"),
            "{o:?}"
        );
        assert_eq!(o[2], Outcome::Gap { expected: seq(4) });
        assert_eq!(store.head(s.clone()).await.expect("head"), Offset(3));
        let limits = ReadLimits {
            max_events: 1,
            max_bytes: 1 << 20,
        };
        let page = store
            .read(s.clone(), Offset(1), limits)
            .await
            .expect("read");
        assert_eq!((page.events.len(), page.head), (1, Offset(3)));
        assert_eq!(page.events[0].offset, Offset(2));
        assert_eq!(page.events[0].payload, b"b");
        let id = ClientId([0xb1; 16]);
        assert_eq!(store.bind_client(id, "a".into()).await.expect("bind"), "a");
        assert_eq!(store.bind_client(id, "b".into()).await.expect("bind"), "a");
    }

    /// A resend under a decided seq with another payload is refused with
    /// `SeqReused` naming the offset that holds the seq, within a request
    /// and across requests; nothing of it is stored, and the true resend
    /// still gets its offset.
    pub(crate) async fn a_reused_seq_is_refused(store: &dyn LogStore, stream: &str) {
        let s = StreamName::new(stream).expect("name");
        let o = store
            .append(request(&s, 7, vec![intent(1, "first"), intent(1, "other")]))
            .await
            .expect("append");
        assert_eq!(
            o,
            vec![
                appended(1, 1, false),
                Outcome::SeqReused {
                    seq: seq(1),
                    offset: Offset(1)
                }
            ]
        );
        let o = store
            .append(request(
                &s,
                7,
                vec![intent(1, "again"), intent(1, "first"), intent(2, "second")],
            ))
            .await
            .expect("append");
        assert_eq!(
            o,
            vec![
                Outcome::SeqReused {
                    seq: seq(1),
                    offset: Offset(1)
                },
                appended(1, 1, true),
                appended(2, 2, false)
            ]
        );
        // The policy refusing the resent payload changes nothing: it is
        // still another intent under a taken seq.
        let mut r = refused(2);
        r.digest = Some(IntentDigest::of(b"too big now"));
        let o = store.append(request(&s, 7, vec![r])).await.expect("append");
        assert_eq!(
            o,
            vec![Outcome::SeqReused {
                seq: seq(2),
                offset: Offset(2)
            }]
        );
        // A request that does not carry the intent (a withdrawal, a
        // refused write) is not checked: the original outcome stands.
        let mut r = refused(2);
        r.digest = None;
        let o = store.append(request(&s, 7, vec![r])).await.expect("append");
        assert_eq!(o, vec![appended(2, 2, true)]);
        let page = store
            .read(
                s.clone(),
                Offset(0),
                ReadLimits {
                    max_events: 100,
                    max_bytes: 1 << 20,
                },
            )
            .await
            .expect("read");
        let payloads: Vec<&[u8]> = page.events.iter().map(|e| &e.payload[..]).collect();
        assert_eq!(payloads, vec![&b"first"[..], &b"second"[..]]);
        assert_eq!(page.head, Offset(2));
    }

    /// Reducers for [`folds_at_the_ordering_point`]: the seat-booking
    /// module of the server's test fixtures on `seats/*`.
    pub(crate) fn seat_reducers() -> crate::fold::Reducers {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seats.js");
        let js = crate::fold::js::JsReducer::load(&path, None, Default::default()).expect("load");
        let mut reducers = crate::fold::Reducers::default();
        reducers.add("seats/*", std::sync::Arc::new(js));
        reducers
    }

    fn book(s: u64, seat: &str, who: &str) -> ProposedIntent {
        intent(
            s,
            &serde_json::json!({"type": "book", "seat": seat, "who": who}).to_string(),
        )
    }

    fn taken(s: u64, seat: &str, duplicate: bool) -> Outcome {
        Outcome::Rejected {
            seq: seq(s),
            code: ErrorCode::Rejected,
            message: format!("SEAT_TAKEN: seat {seat} is taken"),
            duplicate,
        }
    }

    /// Reducers for [`folds_with_meta`]: the poll module of the npm
    /// package's tests (one vote per subject, stale votes refused) on
    /// `polls/*`.
    pub(crate) fn poll_reducers() -> crate::fold::Reducers {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../js/test/fixtures/poll.js");
        let js = crate::fold::js::JsReducer::load(&path, None, Default::default()).expect("load");
        let mut reducers = crate::fold::Reducers::default();
        reducers.add("polls/*", std::sync::Arc::new(js));
        reducers
    }

    /// A store opened with [`poll_reducers`] folds each intent with its
    /// meta — the request's subject, the intent's seen, the offset, client
    /// and time of its event — stores subject and seen with the event, and
    /// reads them back; a state rebuilt from the log folds the same.
    /// `stream` starts with `polls/`.
    pub(crate) async fn folds_with_meta(store: &dyn LogStore, stream: &str) {
        let s = StreamName::new(stream).expect("name");
        let vote = |n: u64, seen: u64| {
            intent(n, r#"{"type":"vote","choice":"x","voter":"ann"}"#).seen(Offset(seen))
        };
        let by = |subject: &str, client: u8, intents| AppendRequest {
            subject: Some(subject.into()),
            ..request(&s, client, intents)
        };
        let o = store
            .append(by("ann", 1, vec![vote(1, 0)]))
            .await
            .expect("append");
        assert_eq!(o, vec![appended(1, 1, false)]);
        // Another client of ann's: one vote per subject, not per client.
        let o = store
            .append(by("ann", 2, vec![vote(1, 1)]))
            .await
            .expect("append");
        assert!(
            matches!(&o[..], [Outcome::Rejected { message, .. }] if message == "ALREADY_VOTED: ann has voted"),
            "{o:?}"
        );
        let o = store
            .append(by(
                "bob",
                3,
                vec![
                    vote(1, 1),
                    intent(2, r#"{"type":"reset"}"#).seen(Offset(2)),
                    vote(3, 2),
                    vote(4, 3),
                ],
            ))
            .await
            .expect("append");
        assert_eq!(o[..2], [appended(1, 2, false), appended(2, 3, false)]);
        assert!(
            matches!(&o[2], Outcome::Rejected { message, .. } if message.starts_with("STALE: ")),
            "a vote that saw offset 2 after the reset at 3: {o:?}"
        );
        assert_eq!(o[3], appended(4, 4, false));
        // Unauthenticated: no subject.
        let o = store
            .append(request(&s, 4, vec![vote(1, 4)]))
            .await
            .expect("append");
        assert!(
            matches!(&o[..], [Outcome::Rejected { message, .. }] if message.starts_with("ANONYMOUS: ")),
            "{o:?}"
        );
        let page = store
            .read(
                s.clone(),
                Offset::ZERO,
                ReadLimits {
                    max_events: 100,
                    max_bytes: 1 << 20,
                },
            )
            .await
            .expect("read");
        let meta: Vec<(Option<&str>, u64)> = page
            .events
            .iter()
            .map(|e| (e.subject.as_deref(), e.seen.0))
            .collect();
        assert_eq!(
            meta,
            [
                (Some("ann"), 0),
                (Some("bob"), 1),
                (Some("bob"), 2),
                (Some("bob"), 3)
            ]
        );
        let (offset, state) = store
            .state(s.clone())
            .await
            .expect("state")
            .expect("a reducer");
        assert_eq!(offset, Offset(4));
        let last = &page.events[3];
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&state).expect("json"),
            serde_json::json!({
                "votes": {"bob": {"choice": "x", "at": last.time_ms, "by": last.client_id.to_hex()}},
                "resetAt": 3,
            })
        );
    }

    /// A store opened with [`seat_reducers`] folds each intent onto the
    /// stream's state before appending: a refused intent is rejected with
    /// the app's code, stored as its seq's decision, never appended (the
    /// offsets stay dense), and the next intent — in the same request too
    /// — sees the state without it. `stream` starts with `seats/`.
    pub(crate) async fn folds_at_the_ordering_point(store: &dyn LogStore, stream: &str) {
        let s = StreamName::new(stream).expect("name");
        let o = store
            .append(request(&s, 1, vec![book(1, "1A", "ann")]))
            .await
            .expect("append");
        assert_eq!(o, vec![appended(1, 1, false)]);
        // Client 2 books the same seat and another one, then the other
        // one again: the first and last are refused, the second appended
        // at the next offset.
        let o = store
            .append(request(
                &s,
                2,
                vec![
                    book(1, "1A", "bob"),
                    book(2, "1B", "bob"),
                    book(3, "1B", "bob"),
                ],
            ))
            .await
            .expect("append");
        assert_eq!(
            o,
            vec![
                taken(1, "1A", false),
                appended(2, 2, false),
                taken(3, "1B", false)
            ]
        );
        // A resend gets the same decision.
        let o = store
            .append(request(
                &s,
                2,
                vec![book(1, "1A", "bob"), book(2, "1B", "bob")],
            ))
            .await
            .expect("append");
        assert_eq!(o, vec![taken(1, "1A", true), appended(2, 2, true)]);
        // A payload that is not JSON is refused as a reducer failure; a
        // reducer that does not stop is stopped.
        let o = store
            .append(request(&s, 3, vec![intent(1, "not json")]))
            .await
            .expect("append");
        assert!(
            matches!(
                &o[..],
                [Outcome::Rejected {
                    code: ErrorCode::Reducer,
                    ..
                }]
            ),
            "{o:?}"
        );
        let o = store
            .append(request(&s, 3, vec![intent(2, r#"{"type":"spin"}"#)]))
            .await
            .expect("append");
        assert!(
            matches!(&o[..], [Outcome::Rejected { code: ErrorCode::Reducer, message, .. }] if message.contains("stopped")),
            "{o:?}"
        );
        assert_eq!(store.head(s.clone()).await.expect("head"), Offset(2));
        let (offset, state) = store
            .state(s.clone())
            .await
            .expect("state")
            .expect("a reducer");
        assert_eq!(offset, Offset(2));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&state).expect("json"),
            serde_json::json!({"seats": {"1A": "ann", "1B": "bob"}})
        );
        // A stream no rule matches keeps opaque payloads and has no state.
        let other = StreamName::new(format!("other-{stream}")).expect("name");
        let o = store
            .append(request(&other, 1, vec![intent(1, "not json")]))
            .await
            .expect("append");
        assert_eq!(o, vec![appended(1, 1, false)]);
        assert_eq!(store.state(other).await.expect("state"), None);
    }

    /// [`seat_reducers`] keeping one stream's state: every other stream's
    /// is dropped after each transaction and rebuilt when next needed.
    /// Seat reducers storing a snapshot every 10 events.
    pub(crate) fn seat_reducers_snapshotting() -> crate::fold::Reducers {
        let mut r = seat_reducers();
        r.snapshots(crate::fold::SnapshotPolicy {
            every: 10,
            ..Default::default()
        });
        r
    }

    /// The writer stores the folded state each time the head passes a
    /// multiple of 10 (stores opened with
    /// [`seat_reducers_snapshotting`]): after 25 bookings, the snapshot is
    /// the state at its offset, between 20 and 25.
    pub(crate) async fn stores_snapshots(store: &dyn LogStore, stream: &str) {
        let name = StreamName::new(stream).expect("name");
        assert_eq!(
            store.latest_snapshot(name.clone()).await.expect("read"),
            None
        );
        for s in 1..=25u64 {
            let out = store
                .append(request(&name, 1, vec![book(s, &format!("s{s}"), "ann")]))
                .await
                .expect("append");
            assert!(matches!(out[..], [Outcome::Appended { .. }]), "{out:?}");
        }
        let StoredSnapshot {
            offset,
            state,
            schema: _,
        } = store
            .latest_snapshot(name.clone())
            .await
            .expect("read")
            .expect("a snapshot is stored");
        assert!((20..=25).contains(&offset.0), "snapshot at {offset}");
        let state: serde_json::Value = serde_json::from_slice(&state).expect("JSON");
        let seats = state["seats"].as_object().expect("seats");
        assert_eq!(
            seats.len() as u64,
            offset.0,
            "the state at {offset}: {state}"
        );
        assert!(seats.contains_key(&format!("s{}", offset.0)));
    }

    /// Seat reducers storing a snapshot every 10 events and keeping the
    /// last 20 events below the head (`--retain-events 20`).
    pub(crate) fn seat_reducers_compacting() -> crate::fold::Reducers {
        let mut r = seat_reducers();
        r.snapshots(crate::fold::SnapshotPolicy {
            every: 10,
            retain_events: Some(20),
            ..Default::default()
        });
        r
    }

    /// A store opened with [`seat_reducers_compacting`] compacts in the
    /// appending transactions: after 95 bookings (the last snapshot at
    /// 90) the events through 70 are gone and a read says so
    /// ([`super::Page::compacted`]) and starts after them; the snapshot
    /// holds them (its state is the fold of the log up to it), a resend
    /// of a compacted intent is a duplicate at the horizon, a seat booked
    /// under the horizon is still taken, and the state is the fold of
    /// every booking.
    pub(crate) async fn compacts_under_snapshots(store: &dyn LogStore, stream: &str) {
        let name = StreamName::new(stream).expect("name");
        let all = ReadLimits {
            max_events: 1000,
            max_bytes: 1 << 20,
        };
        for s in 1..=95u64 {
            let out = store
                .append(request(&name, 1, vec![book(s, &format!("s{s}"), "ann")]))
                .await
                .expect("append");
            assert_eq!(out, vec![appended(s, s, false)]);
            if s == 15 {
                // Snapshot at 10, but nothing yet 20 below the head.
                let page = store
                    .read(name.clone(), Offset(0), all)
                    .await
                    .expect("read");
                assert_eq!((page.compacted, page.events.len()), (Offset(0), 15));
            }
        }
        let page = store
            .read(name.clone(), Offset(0), all)
            .await
            .expect("read");
        assert_eq!(
            page.compacted,
            Offset(70),
            "compacted at the snapshot at 90"
        );
        assert_eq!(page.head, Offset(95));
        let offsets: Vec<u64> = page.events.iter().map(|e| e.offset.0).collect();
        assert_eq!(offsets, (71..=95).collect::<Vec<u64>>());
        // A read above the horizon is not affected; the horizon is said.
        let page = store
            .read(name.clone(), Offset(80), all)
            .await
            .expect("read");
        assert_eq!(page.events.first().map(|e| e.offset), Some(Offset(81)));
        assert_eq!(page.compacted, Offset(70));
        // A byte limit below one event still gets the first kept one.
        let tiny = ReadLimits {
            max_events: 10,
            max_bytes: 1,
        };
        let page = store
            .read(name.clone(), Offset(3), tiny)
            .await
            .expect("read");
        assert_eq!(
            page.events.iter().map(|e| e.offset.0).collect::<Vec<_>>(),
            vec![71]
        );

        let StoredSnapshot {
            offset,
            state: snapshot,
            schema: _,
        } = store
            .latest_snapshot(name.clone())
            .await
            .expect("read")
            .expect("a snapshot");
        assert_eq!(offset, Offset(90));
        let snapshot: serde_json::Value = serde_json::from_slice(&snapshot).expect("JSON");
        assert_eq!(snapshot["seats"].as_object().map(|s| s.len()), Some(90));
        assert_eq!(snapshot["seats"]["s1"], "ann");

        // Resends: under the horizon a duplicate at the horizon, above it
        // at its own offset.
        let out = store
            .append(request(&name, 1, vec![book(3, "s3", "ann")]))
            .await
            .expect("resend");
        assert_eq!(out, vec![appended(3, 70, true)]);
        let out = store
            .append(request(&name, 1, vec![book(80, "s80", "ann")]))
            .await
            .expect("resend");
        assert_eq!(out, vec![appended(80, 80, true)]);
        // The state remembers what the log no longer holds.
        let out = store
            .append(request(
                &name,
                2,
                vec![book(1, "s1", "bob"), book(2, "new", "bob")],
            ))
            .await
            .expect("append");
        assert_eq!(out, vec![taken(1, "s1", false), appended(2, 96, false)]);
        let (at, state) = store
            .state(name.clone())
            .await
            .expect("state")
            .expect("a reducer");
        assert_eq!(at, Offset(96));
        let state: serde_json::Value = serde_json::from_str(&state).expect("JSON");
        assert_eq!(state["seats"].as_object().map(|s| s.len()), Some(96));
        assert_eq!(state["seats"]["new"], "bob");
    }

    pub(crate) fn seat_reducers_keeping_one() -> crate::fold::Reducers {
        let mut reducers = seat_reducers();
        reducers.keep_states(1);
        reducers
    }

    /// A store opened with [`seat_reducers_keeping_one`], pushed to on two
    /// streams in turn: each stream's state is rebuilt from its log when
    /// its turn comes, so it still refuses a seat taken there and takes
    /// one taken only on the other stream. `prefix` starts with `seats/`.
    pub(crate) async fn folds_with_one_state_kept(store: &dyn LogStore, prefix: &str) {
        let a = StreamName::new(format!("{prefix}-a")).expect("name");
        let b = StreamName::new(format!("{prefix}-b")).expect("name");
        for (round, seat) in ["1A", "1B", "1C"].into_iter().enumerate() {
            let n = round as u64 + 1;
            for (s, client) in [(&a, 1), (&b, 2)] {
                let o = store
                    .append(request(s, client, vec![book(2 * n - 1, seat, "x")]))
                    .await
                    .expect("append");
                assert_eq!(o, vec![appended(2 * n - 1, n, false)], "{s} {seat}");
                // The seat just taken on this stream, again: refused by a
                // state that was rebuilt (the other stream's came between).
                let o = store
                    .append(request(s, client, vec![book(2 * n, seat, "y")]))
                    .await
                    .expect("append");
                assert_eq!(o, vec![taken(2 * n, seat, false)], "{s} {seat}");
            }
        }
        for s in [&a, &b] {
            let (offset, state) = store
                .state(s.clone())
                .await
                .expect("state")
                .expect("a reducer");
            assert_eq!(offset, Offset(3), "{s}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&state).expect("json"),
                serde_json::json!({"seats": {"1A": "x", "1B": "x", "1C": "x"}}),
                "{s}"
            );
        }
    }

    /// One client's requests submitted one after another without waiting
    /// for their outcomes (as a connection pipelines its pushes) are
    /// decided in submission order — a gap, a rejection and a resend among
    /// them — and, when the store commits (`metrics` is the store's),
    /// share commits.
    pub(crate) async fn submitted_requests_are_decided_in_order(
        store: &dyn LogStore,
        metrics: Option<&Metrics>,
        stream: &str,
    ) {
        let stream = StreamName::new(stream).expect("name");
        let client = ClientId([9; 16]);
        // Seqs 1..=30, 32 (a gap), 31..=60 with 40 rejected, then 5 again.
        let mut order: Vec<u64> = (1..=30).collect();
        order.push(32);
        order.extend(31..=60);
        order.push(5);
        let commits_before = metrics.map(|m| m.commit_batch_intents.count());
        let mut answers = Vec::new();
        for &s in &order {
            let verdict = if s == 40 {
                Verdict::Reject {
                    code: sync_core::ErrorCode::PayloadTooLarge,
                    message: "no".into(),
                }
            } else {
                Verdict::Accept
            };
            let request = AppendRequest {
                subject: None,
                stream: stream.clone(),
                client_id: client,
                intents: vec![ProposedIntent::new(
                    Seq::new(s).expect("seq"),
                    s.to_string().into_bytes(),
                    verdict,
                )],
            };
            answers.push(store.submit(request).await.expect("submit"));
        }
        let mut offset = 0;
        for (i, (&s, answer)) in order.iter().zip(answers).enumerate() {
            let outcomes = answer.await.expect("outcome");
            let seq = Seq::new(s).expect("seq");
            let want = if i == 30 {
                Outcome::Gap {
                    expected: Seq::new(31).expect("seq"),
                }
            } else if i == order.len() - 1 {
                Outcome::Appended {
                    seq,
                    offset: Offset(5),
                    duplicate: true,
                }
            } else if s == 40 {
                Outcome::Rejected {
                    seq,
                    code: sync_core::ErrorCode::PayloadTooLarge,
                    message: "no".into(),
                    duplicate: false,
                }
            } else {
                offset += 1;
                Outcome::Appended {
                    seq,
                    offset: Offset(offset),
                    duplicate: false,
                }
            };
            assert_eq!(outcomes, vec![want], "request {i} (seq {s})");
        }
        if let (Some(metrics), Some(before)) = (metrics, commits_before) {
            let commits = metrics.commit_batch_intents.count() - before;
            assert!(
                commits < order.len() as u64,
                "{commits} commits for {} requests submitted together",
                order.len()
            );
        }
    }
}
