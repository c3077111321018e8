//! The WebSocket transport (`GET /v1/ws`): one postcard message per binary
//! frame, as `sync_core::protocol` defines.
//!
//! Each connection runs a few tasks that share nothing with other
//! connections but the store and the hub:
//! - the reader (this module's loop): decodes frames, answers `Hello` and
//!   `Ping`, starts subscriptions, hands pushes to the store, pings the
//!   client and closes idle connections;
//! - the acknowledger: awaits each push's durable outcome, in order, and
//!   queues `Ack`/`Reject`/`Gap`;
//! - one task per subscription: the cursor of [`crate::hub::Subscription`];
//! - the writer: the only owner of the socket's sending half.
//!
//! Everything bound for the client goes through one bounded queue, and
//! event frames also take their size from a per-connection byte budget. A
//! client that stops reading fills its own queue and budget; its
//! subscription tasks then wait, and catch up from the log once it reads
//! again. Nothing it does can hold up another connection or grow memory
//! past those bounds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use sync_core::{
    ClientId, ClientMsg, ErrorCode, Offset, ServerMsg, StreamName, ViewChange, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tracing::Instrument as _;

use crate::access;
use crate::auth::{now_secs, Principal};
use crate::hub::Subscription;
use crate::limits::{Admit, IntentRate};
use crate::metrics::{Metrics, SubscriptionGauge};
use crate::respond::{error_response, too_many_connections};
use crate::state::AppState;
use crate::store::{AppendRequest, Outcome, Submitted};
use crate::views::{Follower, Update};

/// Frames (of any size) that may wait in one connection's queue.
const QUEUE_FRAMES: usize = 256;
/// Pushes one connection may have in flight at once (handed to the store,
/// outcome not sent yet); past it the reader stops reading, which pushes
/// back on the client through TCP. Enough for a client that pipelines
/// one-intent pushes to fill a commit while the previous one is flushed.
const PUSHES_IN_FLIGHT: usize = 256;
/// Frames' worth of pushed payload bytes that may wait for their outcome
/// on one connection (with the count above, this bounds what a client can
/// make the server hold by pushing faster than the log commits).
const PUSH_FRAMES_IN_FLIGHT: usize = 4;
/// Read buffer of each WebSocket (see `upgrade`).
const READ_BUFFER_BYTES: usize = 2 << 10;
/// Bytes of frames the socket gathers before it writes them, within one
/// run of the writer (see `write_loop`; it flushes after each run).
const WRITE_BUFFER_BYTES: usize = 8 << 10;
/// Most frames the writer takes from its queue before it flushes.
const WRITE_BATCH_FRAMES: usize = 64;
/// How long a closing connection waits for the client's Close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// `GET /v1/ws`.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    crate::listen::Peer(peer): crate::listen::Peer,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => {
            return error_response(
                ErrorCode::InvalidRequest,
                &format!("/v1/ws speaks the WebSocket protocol only: {r}"),
                &[],
            )
        }
    };
    if state.shutdown.is_cancelled() {
        return error_response(ErrorCode::ShuttingDown, "the server is shutting down", &[]);
    }
    // Refused before the upgrade, as plain HTTP: a page of a foreign origin
    // gets no socket at all (cross-site WebSocket hijacking), and a server
    // at its connection limit spends nothing on another one.
    if let Err((code, message)) = access::check_origin(&state.config, &headers) {
        state.metrics.refused(code);
        return error_response(code, &message, &[]);
    }
    let Some(permit) = state.connection_permit() else {
        return too_many_connections(&state);
    };
    let max = state.config.max_frame_bytes;
    // Frames up to twice the limit are read whole and refused by the
    // decoder (FRAME_TOO_LARGE, then an orderly close). Larger ones are
    // refused at their header without being buffered; the connection then
    // ends with the rest of the frame unread, which the client may see as
    // a reset.
    let read_limit = max.saturating_mul(2);
    let tracker = state.tracker.clone();
    ws.max_message_size(read_limit)
        .max_frame_size(read_limit)
        // Small buffers: most connections are idle most of the time, and
        // the default 128 KiB read buffer would be most of their cost.
        // Large frames still go through; they are read in more steps. The
        // write buffer only grows as far as the frames queued at once.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        // Bounds what a client that does not read can make the socket buffer.
        .max_write_buffer_size(2 * max + (128 << 10))
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let id = NEXT_CONN.fetch_add(1, Relaxed);
            let (sink, stream) = socket.split();
            tracker.track_future(
                run(sink, stream, state, permit, peer)
                    .instrument(tracing::info_span!("ws", conn = id)),
            )
        })
}

/// What the writer sends. Frames are version-5 bytes; the writer
/// translates them for a client of an older version (see [`write_loop`]).
enum Out {
    /// A message, encoded by the writer in the client's version.
    Msg(Box<ServerMsg>),
    /// A frame encoded before (the hub's event frames, shared by every
    /// subscriber).
    Frame {
        bytes: Bytes,
        /// Held while the frame waits; returns its bytes to the budget.
        /// For event frames: the budget they hold and whether their
        /// subscription was replaced (boxed: keeps every queue slot small).
        event: Option<Box<EventFrame>>,
    },
    Ping,
    Close(u16, String),
}

impl Out {
    fn msg(msg: ServerMsg) -> Out {
        Out::Msg(Box::new(msg))
    }
}

/// What an event frame carries besides its bytes.
struct EventFrame {
    /// Returns its bytes to the connection's budget when dropped.
    _queued: Queued,
    /// Set when the subscription that made the frame was replaced.
    stale: Arc<AtomicBool>,
}

/// Bytes of the connection's budget held by one queued frame.
struct Queued {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    metrics: Arc<Metrics>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.metrics
            .fanout_queue_bytes
            .fetch_sub(self.bytes, Relaxed);
    }
}

/// Why a connection ends.
type Fatal = (ErrorCode, String);

/// Where a connection's tasks report the first fatal error.
#[derive(Clone)]
struct FatalTx(watch::Sender<Option<Fatal>>);

impl FatalTx {
    fn raise(&self, fatal: Fatal) {
        self.0.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(fatal);
                true
            } else {
                false
            }
        });
    }
}

struct Sub {
    task: JoinHandle<()>,
    stale: Arc<AtomicBool>,
}

impl Sub {
    fn stop(self) {
        self.stale.store(true, Relaxed);
        self.task.abort();
    }
}

/// A push handed to the store: its stream and client, the span of its
/// way (see [`crate::trace`]) and its outcomes to come.
struct PendingPush {
    stream: StreamName,
    client_id: ClientId,
    span: tracing::Span,
    outcomes: Submitted,
}

struct Conn {
    state: Arc<AppState>,
    out: mpsc::Sender<Out>,
    budget: Arc<Semaphore>,
    /// Payload bytes of pushes waiting for their outcome.
    inbound: Arc<Semaphore>,
    fatal: FatalTx,
    pushes: Option<mpsc::Sender<PendingPush>>,
    client_id: Option<ClientId>,
    /// Who the `Hello` token speaks for (open until then, but nothing but
    /// `Hello` is handled before it).
    principal: Principal,
    /// When the token stops being valid: the connection then ends with
    /// `UNAUTHORIZED`, and the client reconnects with a fresh token.
    expires: Option<Instant>,
    rate: Option<IntentRate>,
    subs: HashMap<StreamName, Sub>,
    /// The protocol version of the client's `Hello`.
    version: u32,
    /// The same, for the writer: frames to a client of an older version
    /// are translated to it at the one edge where they leave.
    wire: Arc<AtomicU32>,
    /// Live view watches, by the client's id (finished ones are removed
    /// when the next watch starts).
    watches: HashMap<u32, Watch>,
    /// Watches running: a watch counts until its last answer is queued.
    watching: Arc<AtomicUsize>,
    /// The peer's address (the subject of an open server).
    peer: Option<std::net::SocketAddr>,
    /// Whom the per-subject limits count this connection against, and its
    /// place under the subject's connection limit (from `Hello` on).
    subject: Option<(Arc<str>, crate::subjects::SubjectSlot)>,
    /// Set when the subject's rate, not the connection's, cut a push.
    subject_limited: AtomicBool,
}

/// One connection, over any sink and stream of WebSocket messages (the
/// socket's halves in the server; channels in the fuzz harness). Holds
/// `_permit`, its place under the connection limit, until it ends.
pub(crate) async fn run<Si, St>(
    sink: Si,
    mut stream: St,
    state: Arc<AppState>,
    _permit: OwnedSemaphorePermit,
    peer: Option<std::net::SocketAddr>,
) where
    Si: Sink<Message> + Unpin + Send + 'static,
    St: Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
{
    let metrics = state.metrics.clone();
    metrics.connections.fetch_add(1, Relaxed);
    metrics.connections_total.fetch_add(1, Relaxed);
    tracing::debug!("connected");

    let (out, out_rx) = mpsc::channel(QUEUE_FRAMES);
    let (fatal, mut fatal_rx) = watch::channel(None);
    let fatal = FatalTx(fatal);
    let (pushes, pushes_rx) = mpsc::channel(PUSHES_IN_FLIGHT);
    // The protocol version the writer encodes in: the client's, from its
    // `Hello` on (set before the `Welcome` is queued).
    let wire = Arc::new(AtomicU32::new(PROTOCOL_VERSION));
    let writer = tokio::spawn(write_loop(sink, out_rx, wire.clone()).in_current_span());
    let acker = tokio::spawn(ack_loop(pushes_rx, out.clone(), fatal.clone()).in_current_span());
    let mut conn = Conn {
        budget: Arc::new(Semaphore::new(state.config.send_queue_bytes)),
        inbound: Arc::new(Semaphore::new(inbound_budget(&state))),
        state: state.clone(),
        out,
        fatal,
        pushes: Some(pushes),
        client_id: None,
        principal: Principal::open(),
        expires: None,
        rate: IntentRate::new(
            state.config.max_intents_per_sec,
            state.config.intents_burst,
            Instant::now(),
        ),
        subs: HashMap::new(),
        version: PROTOCOL_VERSION,
        wire,
        watches: HashMap::new(),
        watching: Arc::new(AtomicUsize::new(0)),
        peer,
        subject: None,
        subject_limited: AtomicBool::new(false),
    };

    let ping_every = state.config.ping_interval;
    let idle_timeout = state.config.idle_timeout;
    let mut ticker = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Only protocol frames count as activity: WebSocket pongs are answered
    // by client libraries on their own, so a socket that never speaks the
    // protocol would otherwise hold its place forever.
    let mut last_heard = Instant::now();
    let hello_by = Instant::now() + state.config.hello_timeout;
    let shutdown = state.shutdown.clone();

    // `Some(reason)`: the server ends the connection and tells the client
    // why; `None`: the client is gone.
    let reason: Option<Fatal> = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                break Some((ErrorCode::ShuttingDown, "the server is shutting down; reconnect later".into()));
            }
            Ok(()) = fatal_rx.changed() => {
                if let Some(f) = fatal_rx.borrow_and_update().clone() {
                    break Some(f);
                }
            }
            _ = sleep_until_some(conn.client_id.is_none().then_some(hello_by)) => {
                metrics.trip(crate::metrics::Limit::HelloTimeout);
                break Some((ErrorCode::IdleTimeout, format!(
                    "no Hello within {} ms of connecting", state.config.hello_timeout.as_millis()
                )));
            }
            _ = sleep_until_some(conn.expires) => {
                break Some((ErrorCode::Unauthorized,
                    "the token expired; reconnect with a new one".into()));
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    break Some((ErrorCode::IdleTimeout, format!(
                        "no protocol frame received for {} ms (send Ping to keep a quiet connection)",
                        idle_timeout.as_millis()
                    )));
                }
                // A full queue means the client is not reading; the ping
                // would not get through either, and the idle timeout
                // will tell.
                let _ = conn.out.try_send(Out::Ping);
            }
            frame = stream.next() => {
                match frame {
                    None => break None,
                    Some(Err(e)) => {
                        if is_too_large(e) {
                            break Some((ErrorCode::FrameTooLarge, format!(
                                "frame over the limit of {} bytes", state.config.max_frame_bytes
                            )));
                        }
                        break None;
                    }
                    Some(Ok(msg)) => {
                        let handled = match msg {
                            Message::Binary(bytes) => {
                                last_heard = Instant::now();
                                conn.on_frame(&bytes).await
                            }
                            Message::Text(_) => Err((ErrorCode::MalformedFrame,
                                "text frames are not part of the protocol: send binary postcard frames".into())),
                            Message::Ping(_) | Message::Pong(_) => Ok(()),
                            Message::Close(_) => break None,
                        };
                        if let Err(f) = handled {
                            break Some(f);
                        }
                    }
                }
            }
        }
    };

    for (_, sub) in conn.subs.drain() {
        sub.stop();
    }
    for (_, watch) in conn.watches.drain() {
        watch.stop();
    }
    // No more pushes; the acknowledger finishes those already taken
    // (their commits complete either way), so the client gets their
    // outcomes before the close.
    conn.pushes.take();
    match &reason {
        Some(_) => {
            if timeout(state.config.shutdown_timeout, acker).await.is_err() {
                tracing::warn!("outcomes of pushes not sent before the close");
            }
        }
        None => acker.abort(),
    }
    if let Some((code, message)) = &reason {
        metrics.error(*code);
        // A subject's limit counted its own trip already.
        if !conn.subject_limited.load(Relaxed) {
            metrics.refused(*code);
        }
        if *code == ErrorCode::ShuttingDown {
            tracing::debug!(%code, %message, "closing");
        } else {
            tracing::info!(%code, %message, "closing connection");
        }
        let error = ServerMsg::Error {
            code: *code,
            message: message.clone(),
        };
        let close = Out::Close(close_code(*code), close_reason(message));
        let sent = timeout(CLOSE_GRACE, async {
            conn.out.send(Out::msg(error)).await.is_ok() && conn.out.send(close).await.is_ok()
        })
        .await;
        if matches!(sent, Ok(true)) {
            // Let the client answer the Close, as the protocol asks.
            let _ = timeout(CLOSE_GRACE, async {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    drop(conn);
    let mut writer = writer;
    if timeout(CLOSE_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
    metrics.connections.fetch_sub(1, Relaxed);
    tracing::debug!("disconnected");
}

impl Conn {
    async fn on_frame(&mut self, bytes: &[u8]) -> Result<(), Fatal> {
        // A client of an older version speaks it after its `Hello` (which
        // every version encodes alike): its frames are read as the
        // version-5 messages they mean.
        let msg = if self.version < PROTOCOL_VERSION {
            sync_core::legacy::decode_client(bytes, self.state.config.max_frame_bytes)
        } else {
            ClientMsg::decode(bytes, self.state.config.max_frame_bytes)
        }
        .map_err(|e| (e.code(), e.to_string()))?;
        let (client_id, msg) = match (&self.client_id, msg) {
            (
                None,
                ClientMsg::Hello {
                    client_id,
                    token,
                    version,
                },
            ) => {
                // The decoder already refused other versions.
                let principal = access::principal(&self.state.config, token.as_deref())?;
                self.state
                    .bindings
                    .check(&*self.state.store, &principal, client_id)
                    .await?;
                let key = crate::subjects::subject_key(&principal, self.peer);
                let slot = self.state.subjects.connect(&key).inspect_err(|_| {
                    self.subject_limited.store(true, Relaxed);
                })?;
                self.subject = Some((key, slot));
                if principal.is_open() && token.is_some() {
                    tracing::debug!("Hello carries a token; authentication is not configured");
                }
                if let Some(until) = principal.valid_until() {
                    let left = Duration::from_secs(until.saturating_sub(now_secs()));
                    // A date too far ahead for the clock type never comes.
                    self.expires = Instant::now().checked_add(left);
                }
                tracing::debug!(client = %client_id, sub = %crate::logfmt::escape(&principal.sub), "hello");
                self.principal = principal;
                self.client_id = Some(client_id);
                // A client of an older version the decoder takes is
                // answered in its own version (and never sent what it
                // cannot read: those messages answer its requests).
                self.version = version;
                self.wire.store(version, Relaxed);
                let welcome = ServerMsg::Welcome {
                    version,
                    server_id: self.state.config.server_id.clone(),
                    epoch: self.state.store.epoch().clone(),
                    max_frame_bytes: sync_core::protocol::welcome_frame_limit(
                        self.state.config.max_frame_bytes,
                        self.state.config.max_payload_bytes,
                    ),
                };
                return self.send(welcome).await;
            }
            (Some(_), ClientMsg::Hello { .. }) => {
                return Err((
                    ErrorCode::UnexpectedHello,
                    "Hello was already received on this connection".into(),
                ))
            }
            (None, _) => {
                return Err((
                    ErrorCode::HelloRequired,
                    "the first frame of a connection must be Hello".into(),
                ))
            }
            (Some(id), msg) => (*id, msg),
        };
        match msg {
            ClientMsg::Subscribe {
                stream,
                after,
                resume,
            } => {
                access::check_read(&self.principal, &stream)?;
                self.subscribe(stream, after, resume)
            }
            ClientMsg::Watch {
                id,
                stream,
                view,
                params,
                known,
            } => {
                let asked = WatchAsked {
                    stream,
                    view,
                    params,
                    known,
                };
                self.watch(id, asked).await
            }
            ClientMsg::Unwatch { id } => {
                if let Some(watch) = self.watches.remove(&id) {
                    watch.stop();
                }
                Ok(())
            }
            ClientMsg::Unsubscribe { stream } => {
                if let Some(sub) = self.subs.remove(&stream) {
                    sub.stop();
                }
                Ok(())
            }
            ClientMsg::Push {
                stream,
                mut intents,
            } => {
                // A push to a stream the token may neither write nor read is
                // refused before anything is stored or looked up: it leaves no
                // trace, and its answer says nothing about the stream. One the
                // token may read is decided seq by seq as rejected (FORBIDDEN),
                // so the reader keeps its subscription and its later intents
                // are not held behind an undecided seq.
                let refused = match access::check_write_or_reject(&self.principal, &stream) {
                    Ok(()) => None,
                    Err(access::WriteRefusal::Reject(denied)) => Some(denied),
                    Err(access::WriteRefusal::Fatal(denied)) => return Err(denied),
                };
                if intents.is_empty() {
                    return Ok(());
                }
                let wanted = intents.len();
                intents.truncate(self.admit(wanted).await?);
                if intents.is_empty() {
                    return Err(self.rate_limited());
                }
                let taken = intents.len();
                let bytes: usize = intents.iter().map(|i| i.payload.len() + 16).sum();
                let held = self.hold_inbound(bytes).await?;
                self.state
                    .metrics
                    .intents_received
                    .fetch_add(taken as u64, Relaxed);
                let span = match (intents.first(), intents.last()) {
                    (Some(first), Some(last)) => {
                        crate::trace::push_span(&stream, &client_id, first.seq, last.seq)
                    }
                    _ => tracing::Span::none(),
                };
                span.in_scope(|| {
                    crate::trace::received(
                        &stream,
                        &client_id,
                        intents.iter().map(|i| (i.seq, i.payload.len())),
                    )
                });
                let request = match refused {
                    None => crate::intake::push_request(
                        &*self.state.policy,
                        stream.clone(),
                        client_id,
                        self.principal.subject(),
                        intents,
                    ),
                    Some((code, message)) => crate::intake::refused_request(
                        stream.clone(),
                        client_id,
                        intents.into_iter().map(|i| i.seq),
                        code,
                        &message,
                    ),
                };
                self.submit(stream, request, Some(held), span).await?;
                if taken < wanted {
                    return Err(self.rate_limited());
                }
                Ok(())
            }
            ClientMsg::Withdraw {
                stream,
                seq,
                code,
                message,
            } => {
                // A reader may withdraw (its refused writes are decided the
                // same way); a stranger to the stream may not.
                if let Err(access::WriteRefusal::Fatal(denied)) =
                    access::check_write_or_reject(&self.principal, &stream)
                {
                    return Err(denied);
                }
                if self.admit(1).await? == 0 {
                    return Err(self.rate_limited());
                }
                let request =
                    crate::intake::withdraw_request(stream.clone(), client_id, seq, code, message);
                self.submit(stream, request, None, tracing::Span::none())
                    .await
            }
            ClientMsg::Ping { nonce } => self.send(ServerMsg::Pong { nonce }).await,
            // Handled above.
            ClientMsg::Hello { .. } => Err(internal()),
        }
    }

    /// How many of `k` intents may go now: all of them, perhaps after a
    /// short pause (the reader stops meanwhile, which slows the client
    /// through TCP), or fewer when the client is far over its rate.
    async fn admit(&mut self, k: usize) -> Result<usize, Fatal> {
        let own = match &mut self.rate {
            Some(rate) => rate.admit(k, Instant::now()),
            None => Admit::Now,
        };
        // The subject's rate over all its connections and requests.
        let subject = match &self.subject {
            Some((key, _)) => self.state.subjects.admit_intents(key, k),
            None => Admit::Now,
        };
        let decision = match (own, subject) {
            (Admit::Partial(a), Admit::Partial(b)) => Admit::Partial(a.min(b)),
            (Admit::Partial(n), _) => Admit::Partial(n),
            (_, Admit::Partial(n)) => {
                if n < k {
                    self.subject_limited.store(true, Relaxed);
                }
                Admit::Partial(n)
            }
            (Admit::After(a), Admit::After(b)) => Admit::After(a.max(b)),
            (Admit::After(d), Admit::Now) | (Admit::Now, Admit::After(d)) => Admit::After(d),
            (Admit::Now, Admit::Now) => Admit::Now,
        };
        match decision {
            Admit::Now => Ok(k),
            Admit::After(wait) => {
                self.state.metrics.intents_paced.fetch_add(1, Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => Ok(k),
                    _ = self.state.shutdown.cancelled() => Err((
                        ErrorCode::ShuttingDown,
                        "the server is shutting down; reconnect later".into(),
                    )),
                }
            }
            Admit::Partial(n) => Ok(n),
        }
    }

    fn rate_limited(&self) -> Fatal {
        if self.subject_limited.load(Relaxed) {
            return self
                .state
                .subjects
                .rate_limited(crate::metrics::Limit::SubjectIntentRate);
        }
        (
            ErrorCode::RateLimited,
            format!(
                "more than {} intents per second (burst {}): the intents after the last answer \
                 were not taken; reconnect later and send them again",
                self.state.config.max_intents_per_sec, self.state.config.intents_burst
            ),
        )
    }

    async fn send(&self, msg: ServerMsg) -> Result<(), Fatal> {
        self.enqueue(&self.out, Out::msg(msg)).await
    }

    /// Waits for room in one of this connection's queues. They stay full
    /// only while the client reads nothing: past the idle timeout that is
    /// a slow consumer, and shutdown does not wait for it either.
    async fn enqueue<T>(&self, queue: &mpsc::Sender<T>, item: T) -> Result<(), Fatal> {
        self.patiently(async { queue.send(item).await.map_err(|_| internal()) })
            .await?
    }

    /// Hands `request` to the store at once and queues its outcome for the
    /// acknowledger. The store decides one connection's requests in the
    /// order they are submitted here, so pushes read one after another are
    /// all in flight together (and share commits) while their answers
    /// still go out in order. `held` (the request's share of the budget
    /// for pushes in flight) is returned once the request is decided.
    async fn submit(
        &self,
        stream: StreamName,
        request: AppendRequest,
        held: Option<OwnedSemaphorePermit>,
        span: tracing::Span,
    ) -> Result<(), Fatal> {
        let Some(pushes) = &self.pushes else {
            return Err(internal());
        };
        let request_client = request.client_id;
        if let Some((key, _)) = &self.subject {
            self.state
                .subjects
                .check_new_stream(key, &stream, &*self.state.store)
                .await
                .inspect_err(|e| {
                    if e.0 == ErrorCode::RateLimited {
                        self.subject_limited.store(true, Relaxed);
                    }
                })?;
        }
        // A place in the acknowledger's queue first, so a request the
        // store took always has its answer sent.
        let slot = self
            .patiently(async { pushes.reserve().await.map_err(|_| internal()) })
            .await??;
        // Waits only while the store's own queue is full (its back-pressure
        // on every connection), so no idle timeout here.
        let submitted = tokio::select! {
            s = self.state.store.submit(request) => s,
            _ = self.state.shutdown.cancelled() => return Err((
                ErrorCode::ShuttingDown,
                "the server is shutting down; reconnect later".into(),
            )),
        };
        let answer = match submitted {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(error = %e, %stream, "push failed");
                return Err(e.to_peer());
            }
        };
        let client_id = request_client;
        slot.send(PendingPush {
            stream,
            client_id,
            span,
            outcomes: Box::pin(async move {
                // The bytes count against the budget until decided.
                let _held = held;
                answer.await
            }),
        });
        Ok(())
    }

    /// Takes `bytes` (at most the whole budget) of the connection's budget
    /// for pushes in flight, waiting like [`Conn::enqueue`] while it is used
    /// up: the reader then stops reading, which slows the client through TCP.
    async fn hold_inbound(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Fatal> {
        if let Some((key, _)) = &self.subject {
            match self.state.subjects.admit_bytes(key, bytes) {
                Admit::Now => {}
                Admit::After(wait) => {
                    self.state.metrics.intents_paced.fetch_add(1, Relaxed);
                    self.patiently(tokio::time::sleep(wait)).await?;
                }
                Admit::Partial(_) => {
                    self.subject_limited.store(true, Relaxed);
                    return Err(self
                        .state
                        .subjects
                        .rate_limited(crate::metrics::Limit::SubjectBytes));
                }
            }
        }
        let n = bytes.clamp(1, inbound_budget(&self.state)) as u32;
        let inbound = self.inbound.clone();
        self.patiently(async { inbound.acquire_many_owned(n).await.map_err(|_| internal()) })
            .await?
    }

    /// `fut`, unless the server shuts down first or it takes longer than
    /// the idle timeout (`SLOW_CONSUMER`).
    async fn patiently<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, Fatal> {
        let patience = self.state.config.idle_timeout;
        tokio::select! {
            done = fut => Ok(done),
            _ = self.state.shutdown.cancelled() => Err((
                ErrorCode::ShuttingDown,
                "the server is shutting down; reconnect later".into(),
            )),
            _ = tokio::time::sleep(patience) => Err((
                ErrorCode::SlowConsumer,
                format!("waited {} ms for room: the client reads its answers too slowly", patience.as_millis()),
            )),
        }
    }

    /// Starts watch `id` of a view (replacing a watch of the same id).
    /// A refusal that concerns only this watch is a `ViewError`; the
    /// connection goes on.
    async fn watch(&mut self, id: u32, asked: WatchAsked) -> Result<(), Fatal> {
        if self.version < 4 {
            return Err((
                ErrorCode::ProtocolVersion,
                format!(
                    "Watch is part of protocol version 4; this connection's Hello said version {}",
                    self.version
                ),
            ));
        }
        if let Some(old) = self.watches.remove(&id) {
            old.stop();
        }
        let refused = match self.start_watch(id, asked) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        let (code, message) = refused;
        self.send(ServerMsg::ViewError { id, code, message }).await
    }

    fn start_watch(
        &mut self,
        id: u32,
        WatchAsked {
            stream,
            view,
            params,
            known,
        }: WatchAsked,
    ) -> Result<(), Fatal> {
        // The same answer whether the stream exists or not.
        if !self.principal.can_read_view(&stream, &view) {
            return Err((
                ErrorCode::Forbidden,
                format!("this token may not read view {view:?} of stream {stream}"),
            ));
        }
        if view.is_empty() || view.len() > MAX_VIEW_NAME {
            return Err((
                ErrorCode::InvalidRequest,
                format!("a view name is 1 to {MAX_VIEW_NAME} bytes"),
            ));
        }
        let params = match serde_json::from_str::<serde_json::Value>(&params) {
            Ok(v) => v.to_string(),
            Err(e) => return Err((ErrorCode::InvalidJson, format!("params must be JSON: {e}"))),
        };
        self.watches.retain(|_, w| !w.task.is_finished());
        if self.watching.load(Relaxed) >= self.state.config.max_watches {
            return Err((
                ErrorCode::TooManySubscriptions,
                format!(
                    "a connection may watch at most {} views (--max-watches)",
                    self.state.config.max_watches
                ),
            ));
        }
        let feed = self.state.hub.feed(&stream);
        let query = crate::views::ViewQuery { name: view, params };
        let follow = self.state.viewer.follow(&stream, &query)?;
        let places = Places::new((follow, Watching::new(self.watching.clone())));
        let reader = Reader {
            state: self.state.clone(),
            stream: stream.clone(),
            query: query.clone(),
            subject: self.principal.subject(),
            client: self.client_id,
        };
        let follower = Follower::new(&self.state.viewer, stream, query, feed);
        let task = tokio::spawn(
            watch_loop(
                id,
                (follower, reader),
                places.clone(),
                known.map(|k| k.hash),
                self.out.clone(),
            )
            .in_current_span(),
        );
        self.watches.insert(id, Watch { task, places });
        Ok(())
    }

    fn subscribe(
        &mut self,
        stream: StreamName,
        after: Offset,
        resume: Option<sync_core::SnapshotResume>,
    ) -> Result<(), Fatal> {
        match self.subs.remove(&stream) {
            // A second Subscribe replaces the first; frames of the old one
            // still queued are dropped.
            Some(old) => old.stop(),
            None if self.subs.len() >= self.state.config.max_subscriptions => {
                return Err((
                    ErrorCode::TooManySubscriptions,
                    format!(
                        "a connection may follow at most {} streams",
                        self.state.config.max_subscriptions
                    ),
                ));
            }
            None => {}
        }
        let state = &self.state;
        let sub = Subscription::new(
            &state.hub,
            state.store.clone(),
            &stream,
            after,
            state.config.catch_up_events,
        )
        .with_snapshots()
        .resuming(resume);
        let stale = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(
            subscription_loop(
                sub,
                self.out.clone(),
                self.budget.clone(),
                state.config.send_queue_bytes,
                stale.clone(),
                self.fatal.clone(),
                state.metrics.clone(),
            )
            .in_current_span(),
        );
        self.subs.insert(stream, Sub { task, stale });
        Ok(())
    }
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The budget for pushes in flight on one connection, in bytes (a whole
/// frame always fits, and a permit count fits in `u32`).
fn inbound_budget(state: &AppState) -> usize {
    state
        .config
        .max_frame_bytes
        .saturating_mul(PUSH_FRAMES_IN_FLIGHT)
        .min(u32::MAX as usize)
}

fn internal() -> Fatal {
    (
        ErrorCode::Internal,
        "the connection's tasks stopped unexpectedly".into(),
    )
}

async fn subscription_loop(
    mut sub: Subscription,
    out: mpsc::Sender<Out>,
    budget: Arc<Semaphore>,
    budget_total: usize,
    stale: Arc<AtomicBool>,
    fatal: FatalTx,
    metrics: Arc<Metrics>,
) {
    let _gauge = SubscriptionGauge::new(metrics.clone());
    loop {
        let chunk = match sub.next().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, stream = %sub.stream(), "subscription failed");
                fatal.raise(e.to_peer());
                return;
            }
        };
        let checkpoint = sub.checkpoint(&chunk);
        let frame = sub.frame(&chunk);
        drop(chunk);
        for frame in checkpoint.into_iter().chain(std::iter::once(frame)) {
            // Wait for room in this connection's budget: a client that does
            // not read stops here, holding nothing but this one frame.
            let n = frame.len().clamp(1, budget_total.max(1));
            let Ok(permit) = budget.clone().acquire_many_owned(n as u32).await else {
                return;
            };
            metrics.fanout_queue_bytes.fetch_add(n as i64, Relaxed);
            let event = EventFrame {
                _queued: Queued {
                    _permit: permit,
                    bytes: n as i64,
                    metrics: metrics.clone(),
                },
                stale: stale.clone(),
            };
            let item = Out::Frame {
                bytes: frame,
                event: Some(Box::new(event)),
            };
            if out.send(item).await.is_err() {
                return;
            }
        }
    }
}

/// Longest view name a `Watch` may carry, in bytes.
const MAX_VIEW_NAME: usize = 128;

/// What a `Watch` asks for.
struct WatchAsked {
    stream: StreamName,
    view: String,
    params: String,
    known: Option<sync_core::ViewKnown>,
}

/// Who watches what, for the read log.
struct Reader {
    state: Arc<AppState>,
    stream: StreamName,
    query: crate::views::ViewQuery,
    subject: Option<String>,
    client: Option<ClientId>,
}

impl Reader {
    async fn record(&self, offset: Offset) -> Result<(), crate::error::Error> {
        let read = crate::readlog::Read {
            stream: &self.stream,
            subject: self.subject.clone(),
            client: self.client,
            view: &self.query.name,
            params: &self.query.params,
            offset,
            via: "ws",
        };
        self.state.read_log.record(&*self.state.store, read).await
    }
}

/// A watch: its task, and its places under the limits.
struct Watch {
    task: JoinHandle<()>,
    places: Places,
}

impl Watch {
    /// Ends the watch; its places are free when this returns.
    fn stop(self) {
        self.task.abort();
        self.places.free();
    }
}

/// A watch's places under `--max-views-per-stream` and `--max-watches`,
/// freed by whichever comes first: the connection ending the watch, or
/// the watch's task before it sends its last answer.
#[derive(Clone)]
struct Places(Arc<std::sync::Mutex<Option<(crate::views::ViewFollow, Watching)>>>);

impl Places {
    fn new(held: (crate::views::ViewFollow, Watching)) -> Places {
        Places(Arc::new(std::sync::Mutex::new(Some(held))))
    }

    fn free(&self) {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(held);
    }
}

/// A running watch's place under `--max-watches`.
struct Watching(Arc<AtomicUsize>);

impl Watching {
    fn new(count: Arc<AtomicUsize>) -> Watching {
        count.fetch_add(1, Relaxed);
        Watching(count)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Sends watch `id`'s first answer, then each change of the view, until a
/// failure (sent as its `ViewError`) or the connection's end.
async fn watch_loop(
    id: u32,
    (mut follower, reader): (Follower, Reader),
    places: Places,
    known: Option<u64>,
    out: mpsc::Sender<Out>,
) {
    let mut next = follower.first(known).await.and_then(|first| {
        first.ok_or_else(|| {
            crate::error::Error::NotFound(
                "no reducer folds this stream on this server, so it has no views".into(),
            )
        })
    });
    // The read is recorded (with `--read-log`) before it is answered.
    if let Ok(first) = &next {
        if let Err(e) = reader.record(first.now().offset).await {
            tracing::error!(error = %e, "a read could not be recorded");
            next = Err(e);
        }
    }
    drop(reader);
    loop {
        let msg = match next {
            Ok(update) => view_msg(id, update),
            Err(e) => {
                // The peer gets a stable text; the cause stays in the log.
                tracing::warn!(error = %e, watch = id, "a view watch ended");
                let (code, message) = e.to_peer();
                ServerMsg::ViewError { id, code, message }
            }
        };
        if matches!(msg, ServerMsg::ViewError { .. }) {
            // The watch's places (this connection's, the stream's) are
            // free before the client hears that it ended.
            places.free();
            let _ = out.send(Out::msg(msg)).await;
            return;
        }
        if out.send(Out::msg(msg)).await.is_err() {
            return;
        }
        next = match follower.next().await {
            Ok(Some(update)) => Ok(update),
            Ok(None) => return,
            Err(e) => Err(e),
        };
    }
}

/// The `View` frame of watch `id`'s update; a `ViewError` for a result
/// larger than a client takes in one frame.
fn view_msg(id: u32, update: Update) -> ServerMsg {
    let (now, change) = match update {
        Update::Result(now) => {
            let text = now.text.to_string();
            (now, ViewChange::Result(text))
        }
        Update::Patch { now, patch } => (now, ViewChange::Patch(patch)),
        Update::Same(now) => (now, ViewChange::Same),
    };
    let size = match &change {
        ViewChange::Result(t) | ViewChange::Patch(t) => t.len(),
        ViewChange::Same => 0,
    };
    if size > sync_core::DEFAULT_MAX_FRAME_BYTES - 64 {
        return ServerMsg::ViewError {
            id,
            code: ErrorCode::FrameTooLarge,
            message: format!(
                "the view's result at offset {} is {size} bytes, more than a frame holds; read it over HTTP",
                now.offset
            ),
        };
    }
    ServerMsg::View {
        id,
        offset: now.offset,
        hash: now.hash,
        change,
    }
}

async fn ack_loop(mut pushes: mpsc::Receiver<PendingPush>, out: mpsc::Sender<Out>, fatal: FatalTx) {
    // In order: the reader handed each push to the store as it came (the
    // store decides them in that order, several per commit); their
    // outcomes go out in the same order.
    while let Some(PendingPush {
        stream,
        client_id,
        span,
        outcomes,
    }) = pushes.recv().await
    {
        match outcomes.await {
            Ok(outcomes) => {
                span.in_scope(|| crate::trace::decided(&stream, &client_id, &outcomes));
                drop(span);
                for o in outcomes {
                    let msg = match o {
                        Outcome::Appended {
                            seq,
                            offset,
                            duplicate,
                        } => ServerMsg::Ack {
                            stream: stream.clone(),
                            seq,
                            offset,
                            duplicate,
                        },
                        Outcome::Rejected {
                            seq, code, message, ..
                        } => ServerMsg::Reject {
                            stream: stream.clone(),
                            seq,
                            code,
                            message,
                        },
                        Outcome::Gap { expected } => ServerMsg::Gap {
                            stream: stream.clone(),
                            expected_seq: expected,
                        },
                        Outcome::SeqReused { seq, offset } => ServerMsg::Reject {
                            stream: stream.clone(),
                            seq,
                            code: ErrorCode::SeqReused,
                            message: Outcome::seq_reused_message(seq, offset),
                        },
                        // Not decided here (a schema version newer than
                        // this node's reducer): the connection ends with
                        // the reason, the client keeps its intents and
                        // pushes them again after it reconnects.
                        Outcome::Undecided { code, message, .. } => {
                            fatal.raise((code, message));
                            return;
                        }
                    };
                    if out.send(Out::msg(msg)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, %stream, "push failed");
                fatal.raise(e.to_peer());
                return;
            }
        }
    }
}

/// Writes the queued frames to `sink`, in the protocol version `wire`
/// holds: every frame is made in version 5, and this is the one place
/// where a client of an older version gets it translated
/// ([`sync_core::legacy`]).
async fn write_loop<Si>(mut sink: Si, mut queue: mpsc::Receiver<Out>, wire: Arc<AtomicU32>)
where
    Si: Sink<Message> + Unpin,
{
    while let Some(first) = queue.recv().await {
        // Everything already queued goes out with one flush: the socket
        // buffer (`WRITE_BUFFER_BYTES`) gathers small frames — a run of
        // answers to pipelined pushes, events of several streams — into
        // few writes. Nothing waits for more to come.
        let mut item = Some(first);
        let mut fed = 0;
        while let Some(next) = item.take() {
            let legacy = wire.load(Relaxed) < PROTOCOL_VERSION;
            let fed_ok = match next {
                Out::Msg(msg) => {
                    let bytes = if legacy {
                        sync_core::legacy::encode_server(*msg)
                    } else {
                        msg.encode()
                    };
                    sink.feed(Message::Binary(Bytes::from(bytes))).await.is_ok()
                }
                Out::Frame { bytes, event } => {
                    if event.as_ref().is_some_and(|e| e.stale.load(Relaxed)) {
                        true
                    } else {
                        let bytes = if legacy {
                            match sync_core::legacy::transcode_server(&bytes) {
                                Ok(old) => Bytes::from(old),
                                Err(e) => {
                                    // The server's own frame: never expected.
                                    tracing::error!(error = %e, "a frame could not be translated for an older client");
                                    return;
                                }
                            }
                        } else {
                            bytes
                        };
                        // The frame's bytes are in the socket buffer after
                        // this: its budget is returned.
                        sink.feed(Message::Binary(bytes)).await.is_ok()
                    }
                }
                Out::Ping => sink.feed(Message::Ping(Bytes::new())).await.is_ok(),
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return;
                }
            };
            if !fed_ok {
                return;
            }
            fed += 1;
            if fed < WRITE_BATCH_FRAMES {
                item = queue.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

fn is_too_large(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// The WebSocket close code that goes with an error code.
pub fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::FrameTooLarge => 1009,
        ErrorCode::ShuttingDown => 1001,
        ErrorCode::IdleTimeout
        | ErrorCode::TooManySubscriptions
        | ErrorCode::TooManyConnections
        | ErrorCode::SlowConsumer
        | ErrorCode::Unauthorized
        | ErrorCode::Forbidden
        | ErrorCode::OriginForbidden
        | ErrorCode::RateLimited
        | ErrorCode::SchemaTooNew
        | ErrorCode::SchemaTooOld => 1008,
        ErrorCode::Storage | ErrorCode::Internal => 1011,
        _ => 1002,
    }
}

/// A close reason fits in 123 bytes.
fn close_reason(message: &str) -> String {
    let mut end = message.len().min(123);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}
