//! The JSON API and Server-Sent Events (`/v1/streams/...`), and the
//! operational endpoints (`/healthz`, `/livez`, `/metrics`). Every error is
//! a 4xx/5xx with the JSON body of [`crate::respond`]. The routes are in
//! [`crate::router`].

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sync_core::json::{event_json, events_page_json, parse_intent};
use sync_core::protocol::EVENTS_FRAME_OVERHEAD;
use sync_core::{ErrorCode, Offset, PushIntent, StreamName};
use tokio::sync::OwnedSemaphorePermit;

use crate::access::{self, Denied};
use crate::auth::{now_secs, Principal};
use crate::error::Error;
use crate::hub::Subscription;
use crate::limits::Admit;
use crate::listen::Peer;
use crate::metrics::{Limit, SubscriptionGauge};
use crate::readlog::Read as ViewRead;
use crate::respond::{
    error_response, error_with_status, json_response, refuse, store_failed, subject_refusal,
    too_many_connections, ApiError,
};
use crate::state::AppState;
use crate::store::{Outcome, ReadLimits};
use crate::subjects::{subject_key, SubjectSlot};
use crate::views::{Follower, Update, ViewQuery};

/// What a [`StreamAccess`] lets the request do with its stream.
pub(crate) trait Permission {
    /// Refuses `principal` this use of `stream`; `path` holds the other
    /// parameters of the route (e.g. a view's `name`).
    fn check(
        principal: &Principal,
        stream: &StreamName,
        path: &[(String, String)],
    ) -> Result<(), Denied>;
}

/// Reading the whole stream (`GET`): its events, head, state, snapshot.
pub(crate) struct Read;

/// Reading one view of a stream (`GET …/views/{name}`): a reader of the
/// stream, or a token with a view grant for `name`.
pub(crate) struct ReadView;

/// Writing a stream (`POST` of an intent).
pub(crate) struct Write;

impl Permission for Read {
    fn check(
        principal: &Principal,
        stream: &StreamName,
        _: &[(String, String)],
    ) -> Result<(), Denied> {
        access::check_read(principal, stream)
    }
}

impl Permission for ReadView {
    fn check(
        principal: &Principal,
        stream: &StreamName,
        path: &[(String, String)],
    ) -> Result<(), Denied> {
        match path.iter().find(|(k, _)| k == "name") {
            Some((_, view)) => access::check_read_view(principal, stream, view),
            // A route without a view name: only a reader of the stream.
            None => access::check_read(principal, stream),
        }
    }
}

impl Permission for Write {
    fn check(
        principal: &Principal,
        stream: &StreamName,
        _: &[(String, String)],
    ) -> Result<(), Denied> {
        access::check_write(principal, stream)
    }
}

/// The prelude of every `/v1/streams/{stream}...` handler, as an
/// extractor: the request's principal (`Authorization: Bearer` or
/// `?token=`), the stream named in the path, and the permission `P` to use
/// it, checked in that order. A request that fails a step gets its refusal
/// (401/403, counted) or `400 INVALID_STREAM`, and the handler never runs:
/// a refused write reads no body.
pub(crate) struct StreamAccess<P> {
    /// Who asks.
    pub principal: Principal,
    /// The stream of the path.
    pub stream: StreamName,
    permission: PhantomData<fn() -> P>,
}

impl<P: Permission> FromRequestParts<Arc<AppState>> for StreamAccess<P> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let principal =
            authenticate(st, &parts.headers, parts.uri.query()).map_err(|d| refuse(st, d))?;
        let unreadable = |why: String| {
            ApiError(
                ErrorCode::InvalidStream,
                format!("the stream name in the URL could not be read: {why}"),
            )
            .into_response()
        };
        let path = Path::<Vec<(String, String)>>::from_request_parts(parts, st).await;
        let Path(params) = path.map_err(|r| unreadable(r.to_string()))?;
        let raw = params
            .iter()
            .find_map(|(k, v)| (k == "stream").then(|| v.clone()))
            .ok_or_else(|| unreadable("no stream in the path".into()))?;
        let stream =
            StreamName::new(raw).map_err(|e| ApiError(e.code(), e.to_string()).into_response())?;
        P::check(&principal, &stream, &params).map_err(|d| refuse(st, d))?;
        Ok(StreamAccess {
            principal,
            stream,
            permission: PhantomData,
        })
    }
}

/// The request's principal, from `Authorization: Bearer` or `?token=`.
fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Principal, Denied> {
    // An open server ignores credentials, also ones it could not parse
    // (e.g. a proxy's `Authorization: Basic`).
    if st.config.jwt_secret.is_none() && st.config.jwt_jwks.is_none() {
        return Ok(Principal::open());
    }
    access::http_token(headers, query)
        .and_then(|token| access::principal(&st.config, token.as_deref()))
}

/// Waits as a subject's bucket says (at most [`crate::limits::MAX_PACE`]),
/// or the `429 RATE_LIMITED` that refuses the request.
async fn pace(st: &AppState, admitted: Admit, limit: Limit) -> Result<(), Response> {
    match admitted {
        Admit::Now => Ok(()),
        Admit::After(wait) => {
            st.metrics
                .intents_paced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            Ok(())
        }
        Admit::Partial(_) => Err(subject_refusal(st.subjects.rate_limited(limit))),
    }
}

/// `POST /v1/streams/{stream}/intents`.
pub(crate) async fn post_intent(
    State(st): State<Arc<AppState>>,
    Peer(peer): Peer,
    // Before the body is read: a refused write stores nothing and reads
    // nothing, whether the stream exists or not.
    StreamAccess {
        principal, stream, ..
    }: StreamAccess<Write>,
    body: Body,
) -> Response {
    // The subject's intent rate, shared with its WebSockets.
    let subject = subject_key(&principal, peer);
    let admitted = st.subjects.admit_intents(&subject, 1);
    if let Err(r) = pace(&st, admitted, Limit::SubjectIntentRate).await {
        return r;
    }
    let limit = st.config.max_frame_bytes;
    // The whole body within the deadline: a body dripped byte by byte
    // holds a connection no longer than that.
    let deadline = st.config.body_read_timeout;
    let read = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(read) => read,
        Err(_) => {
            st.metrics.trip(Limit::BodyReadTimeout);
            let mut r = error_with_status(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::IdleTimeout,
                &format!(
                    "the request body did not arrive within {} ms",
                    deadline.as_millis()
                ),
                &[],
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                refuse(
                    &st,
                    (
                        ErrorCode::FrameTooLarge,
                        format!("request body over the limit of {limit} bytes"),
                    ),
                )
            } else {
                error_response(
                    ErrorCode::InvalidRequest,
                    &format!("request body could not be read: {e}"),
                    &[],
                )
            };
        }
    };
    let intent = match parse_intent(&bytes) {
        Ok(i) => i,
        Err((code, message)) => return error_response(code, &message, &[]),
    };
    let admitted = st.subjects.admit_bytes(&subject, intent.payload.len());
    if let Err(r) = pace(&st, admitted, Limit::SubjectBytes).await {
        return r;
    }
    if let Err(denied) = st
        .subjects
        .check_new_stream(&subject, &stream, &*st.store)
        .await
    {
        return subject_refusal(denied);
    }
    if let Err(denied) = st
        .bindings
        .check(&*st.store, &principal, intent.client_id)
        .await
    {
        return refuse(&st, denied);
    }
    let (seq, client_id) = (intent.seq, intent.client_id);
    st.metrics
        .intents_received
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::trace::received(&stream, &client_id, [(seq, intent.payload.len())]);
    let traced = stream.clone();
    let outcome = crate::intake::push(
        &st.store,
        &*st.policy,
        stream,
        client_id,
        principal.subject(),
        [PushIntent {
            seq,
            payload: intent.payload,
            seen: intent.seen,
            schema: intent.schema,
        }],
    )
    .await;
    if let Ok(outcomes) = &outcome {
        crate::trace::decided(&traced, &client_id, outcomes);
    }
    match outcome.map(|o| o.into_iter().next()) {
        Ok(Some(Outcome::Appended {
            offset, duplicate, ..
        })) => json_response(
            StatusCode::OK,
            serde_json::json!({ "offset": offset.0, "duplicate": duplicate }).to_string(),
        ),
        Ok(Some(Outcome::Rejected {
            seq,
            code,
            message,
            duplicate,
        })) => error_response(
            code,
            &message,
            &[
                ("seq", seq.to_string()),
                ("duplicate", duplicate.to_string()),
            ],
        ),
        Ok(Some(Outcome::SeqReused { seq, offset })) => error_response(
            ErrorCode::SeqReused,
            &Outcome::seq_reused_message(seq, offset),
            &[("seq", seq.to_string()), ("offset", offset.to_string())],
        ),
        Ok(Some(Outcome::Undecided { seq, code, message })) => {
            error_response(code, &message, &[("seq", seq.to_string())])
        }
        Ok(Some(Outcome::Gap { expected })) => error_response(
            ErrorCode::SeqGap,
            &format!("seq {seq} is beyond the next one; send seq {expected} first"),
            &[("expected_seq", expected.to_string())],
        ),
        Ok(None) => error_response(ErrorCode::Internal, "the store answered nothing", &[]),
        Err(e) => store_failed(&e, "append"),
    }
}

struct EventsQuery {
    after: Offset,
    limit: Option<usize>,
}

fn parse_query(q: Option<&str>) -> Result<EventsQuery, ApiError> {
    let mut out = EventsQuery {
        after: Offset::ZERO,
        limit: None,
    };
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => {
                out.after = Offset(v.parse().map_err(|_| {
                    ApiError(
                        ErrorCode::InvalidOffset,
                        format!("after must be an offset (an integer >= 0), got {v:?}"),
                    )
                })?)
            }
            "limit" => {
                out.limit = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError(
                        ErrorCode::InvalidRequest,
                        format!("limit must be an integer >= 1, got {v:?}"),
                    )
                })?)
            }
            // Other parameters (e.g. a token) are not ours to refuse.
            _ => {}
        }
    }
    Ok(out)
}

/// `GET /v1/streams/{stream}/events?after=N[&limit=M]`: one JSON page, or
/// with `Accept: text/event-stream` a live SSE feed.
pub(crate) async fn get_events(
    State(st): State<Arc<AppState>>,
    Peer(peer): Peer,
    StreamAccess {
        principal, stream, ..
    }: StreamAccess<Read>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = match parse_query(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    if wants_event_stream(&headers) {
        // A reconnecting EventSource repeats the URL and adds the header:
        // the header is the newer position.
        let mut after = q.after;
        let last_id = headers
            .get("last-event-id")
            .map(|v| v.to_str().map(str::trim).unwrap_or("?"))
            .filter(|v| !v.is_empty());
        if let Some(v) = last_id {
            match v.parse().ok() {
                Some(n) => after = Offset(n),
                None => {
                    return error_response(
                        ErrorCode::InvalidOffset,
                        "Last-Event-ID must be an offset (an integer >= 0)",
                        &[],
                    )
                }
            }
        }
        // A feed from below the compacted events is refused up front
        // (410), not ended after its headers went out.
        let one = ReadLimits {
            max_events: 1,
            max_bytes: usize::MAX,
        };
        match st.store.read(stream.clone(), after, one).await {
            Ok(page) if page.compacted > after => return compacted(&stream, after, page.compacted),
            Ok(_) => {}
            Err(e) => return store_failed(&e, "read"),
        }
        let Some(permit) = st.connection_permit() else {
            return too_many_connections(&st);
        };
        let slot = match st.subjects.connect(&subject_key(&principal, peer)) {
            Ok(slot) => slot,
            Err(denied) => return subject_refusal(denied),
        };
        return sse(st, stream, after, &principal, (permit, slot));
    }
    let limits = ReadLimits {
        max_events: q
            .limit
            .unwrap_or(st.config.catch_up_events)
            .min(st.config.catch_up_events),
        max_bytes: st
            .config
            .max_frame_bytes
            .saturating_sub(EVENTS_FRAME_OVERHEAD),
    };
    match st.store.read(stream.clone(), q.after, limits).await {
        Ok(page) if page.compacted > q.after => compacted(&stream, q.after, page.compacted),
        Ok(page) => json_response(StatusCode::OK, events_page_json(&page.events, page.head)),
        Err(e) => store_failed(&e, "read"),
    }
}

/// 410 `COMPACTED`: the events after `after` are gone up to `through`.
fn compacted(stream: &StreamName, after: Offset, through: Offset) -> Response {
    error_response(
        ErrorCode::Compacted,
        &format!(
            "the events of {stream} after offset {after} were compacted away up to offset {through}: \
             start from GET /v1/streams/{stream}/snapshot, then read the events after its offset"
        ),
        &[("oldest", (through.0 + 1).to_string())],
    )
}

fn sse(
    st: Arc<AppState>,
    stream: StreamName,
    after: Offset,
    principal: &Principal,
    permit: (OwnedSemaphorePermit, SubjectSlot),
) -> Response {
    let sub = Subscription::new(
        &st.hub,
        st.store.clone(),
        &stream,
        after,
        st.config.catch_up_events,
    );
    // The feed holds its place under the connection limit while it lasts.
    let gauge = (SubscriptionGauge::new(st.metrics.clone()), permit);
    let end = feed_end(&st, principal);
    // hyper pulls the next chunk only when the socket takes more, so a slow
    // reader holds one page at most, like a WebSocket subscriber.
    let events = futures_util::stream::unfold((sub, gauge), |(mut sub, gauge)| async move {
        match sub.next().await {
            Ok(chunk) => {
                let items: Vec<Result<SseEvent, Infallible>> = chunk
                    .events()
                    .map(|e| {
                        // A raw line break in JSON text can only be
                        // whitespace; SSE would read it as a field end.
                        let data = event_json(e).replace(['\r', '\n'], " ");
                        Ok(SseEvent::default().id(e.offset.0.to_string()).data(data))
                    })
                    .collect();
                Some((futures_util::stream::iter(items), (sub, gauge)))
            }
            Err(e) => {
                tracing::warn!(error = %e, stream = %sub.stream(), "SSE feed ended");
                None
            }
        }
    })
    .flatten()
    .take_until(end);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// When an SSE feed ends: at shutdown, or when `principal`'s token
/// expires (the EventSource then reconnects with the same URL, gets 401,
/// and the app opens a new one with a new token).
fn feed_end(st: &AppState, principal: &Principal) -> impl std::future::Future<Output = ()> {
    let expires = principal.valid_until().and_then(|until| {
        tokio::time::Instant::now()
            .checked_add(Duration::from_secs(until.saturating_sub(now_secs())))
    });
    let shutdown = st.shutdown.clone();
    async move {
        tokio::select! {
            _ = shutdown.cancelled_owned() => {}
            _ = async {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// `GET /v1/streams/{stream}`.
pub(crate) async fn get_stream(
    State(st): State<Arc<AppState>>,
    StreamAccess { stream, .. }: StreamAccess<Read>,
) -> Response {
    match st.store.head(stream.clone()).await {
        Ok(head) => json_response(
            StatusCode::OK,
            serde_json::json!({
                "stream": stream.as_str(),
                "head": head.0,
                "epoch": st.store.epoch().0,
            })
            .to_string(),
        ),
        Err(e) => store_failed(&e, "head"),
    }
}

/// Whether the request asks for Server-Sent Events.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// `GET /v1/streams/{stream}/state`: `{"offset": N, "state": …}`, the
/// stream's state at its head as the server's reducer folds it (anyone
/// who may read the stream); `404 NOT_FOUND` when no reducer folds it.
/// With `Accept: text/event-stream`, the state and then each change of it
/// ([`state_sse`]).
pub(crate) async fn get_state(
    State(st): State<Arc<AppState>>,
    Peer(peer): Peer,
    StreamAccess {
        principal, stream, ..
    }: StreamAccess<Read>,
    headers: HeaderMap,
) -> Response {
    folded(st, peer, principal, stream, headers).await
}

/// `GET /v1/streams/{stream}/snapshot`: the stream's latest stored
/// snapshot, `{"offset": N, "hash": "<16 hex digits>", "schema": V,
/// "state": …}` (the state its reducer folded from the events through
/// `offset`; `hash` is the protocol's `state_hash` of the state's JSON
/// text; `schema` the schema version of the reducer that made it); `404 NOT_FOUND`
/// while the stream has none. A reader whose events were compacted away
/// (`410 COMPACTED`) starts here, then reads the events after `offset`.
pub(crate) async fn get_snapshot(
    State(st): State<Arc<AppState>>,
    StreamAccess { stream, .. }: StreamAccess<Read>,
) -> Response {
    match st.store.latest_snapshot(stream.clone()).await {
        Ok(Some(snapshot)) => match std::str::from_utf8(&snapshot.state) {
            Ok(json) => json_response(
                StatusCode::OK,
                format!(
                    r#"{{"offset":{},"hash":"{:016x}","schema":{},"state":{json}}}"#,
                    snapshot.offset.0,
                    sync_core::protocol::state_hash(&snapshot.state),
                    snapshot.schema
                ),
            ),
            Err(e) => store_failed(
                &crate::error::Error::Storage(format!("the snapshot of {stream} is not text: {e}")),
                "read a snapshot",
            ),
        },
        Ok(None) => error_response(
            ErrorCode::NotFound,
            &format!(
                "{stream} has no snapshot (a reducer stores one every --snapshot-every events)"
            ),
            &[],
        ),
        Err(e) => store_failed(&e, "read a snapshot"),
    }
}

/// `GET /v1/streams/{stream}/views/{name}?params=<JSON>`: `{"offset": N,
/// "result": …}`, the view `name` the stream's reducer module exports,
/// evaluated on the state at its head with `params` (`null` without);
/// `404 NOT_FOUND` for a stream no reducer folds or a view the module does
/// not export. With `Accept: text/event-stream`, the result and then each
/// change of it ([`state_sse`]). A token with a view grant for `name`
/// (`read: ["PATTERN#name"]`) may read it without reading the stream.
pub(crate) async fn get_view(
    State(st): State<Arc<AppState>>,
    Peer(peer): Peer,
    StreamAccess {
        principal, stream, ..
    }: StreamAccess<ReadView>,
    Path((_, name)): Path<(String, String)>,
    query: Result<Query<ViewParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = match query {
        // `?params=` with nothing is no parameters, like no `params`.
        Ok(Query(q)) => q.params.filter(|p| !p.trim().is_empty()),
        Err(e) => return error_response(ErrorCode::InvalidRequest, &e.body_text(), &[]),
    };
    let params = match params {
        None => "null".to_string(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => v.to_string(),
            Err(e) => {
                return error_response(
                    ErrorCode::InvalidJson,
                    &format!("params must be JSON (URL-encoded): {e}"),
                    &[],
                )
            }
        },
    };
    let query = ViewQuery { name, params };
    viewed(st, peer, principal, stream, query, headers).await
}

/// No reducer folds `stream`: `404 NOT_FOUND`.
fn not_folded(stream: &StreamName) -> Response {
    ApiError(
        ErrorCode::NotFound,
        format!(
            "no reducer folds stream {stream} on this server (start it with --reducer PATTERN=FILE)"
        ),
    )
    .into_response()
}

/// A view failed: its code (`NOT_FOUND`, `REDUCER`, `RATE_LIMITED`) and
/// message, or a store failure.
fn view_failed(e: &Error) -> Response {
    match e {
        Error::NotFound(_) | Error::Reducer(_) | Error::Overloaded(_) => {
            let (code, message) = e.to_peer();
            error_response(code, &message, &[])
        }
        e => store_failed(e, "view"),
    }
}

/// A view once, evaluated by the viewer at the head, or as a feed
/// ([`view_sse`]).
async fn viewed(
    st: Arc<AppState>,
    peer: Option<std::net::SocketAddr>,
    principal: Principal,
    stream: StreamName,
    query: ViewQuery,
    headers: HeaderMap,
) -> Response {
    let read = |offset, via| ViewRead {
        stream: &stream,
        subject: principal.subject(),
        client: None,
        view: &query.name,
        params: &query.params,
        offset,
        via,
    };
    if !wants_event_stream(&headers) {
        let answer = match st.viewer.evaluate(&stream, &query, None).await {
            Ok(Some(answer)) => answer,
            Ok(None) => return not_folded(&stream),
            Err(e) => return view_failed(&e),
        };
        if let Err(e) = st
            .read_log
            .record(&*st.store, read(answer.now.offset, "http"))
            .await
        {
            return store_failed(&e, "record a read");
        }
        return json_response(
            StatusCode::OK,
            format!(
                "{{\"offset\":{},\"result\":{}}}",
                answer.now.offset.0, answer.now.text
            ),
        );
    }
    let (held, (permit, slot)) = match feed_admission(&st, &principal, peer, &headers) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let follow = match st.viewer.follow(&stream, &query) {
        Ok(f) => f,
        Err((code, message)) => return error_response(code, &message, &[]),
    };
    let mut follower = Follower::new(
        &st.viewer,
        stream.clone(),
        query.clone(),
        st.hub.feed(&stream),
    );
    let first = match follower.first(None).await {
        Ok(Some(first)) => first,
        Ok(None) => return not_folded(&stream),
        Err(e) => return view_failed(&e),
    };
    if let Err(e) = st
        .read_log
        .record(&*st.store, read(first.now().offset, "sse"))
        .await
    {
        return store_failed(&e, "record a read");
    }
    let first = (!held.is_some_and(|h| follower.holds_offset(Offset(h))))
        .then(|| view_event(&first))
        .flatten();
    let end = feed_end(&st, &principal);
    let gauge = (
        SubscriptionGauge::new(st.metrics.clone()),
        permit,
        slot,
        follow,
    );
    let rest = futures_util::stream::unfold(Some((follower, gauge)), |following| async move {
        let (mut follower, gauge) = following?;
        loop {
            match follower.next().await {
                Ok(Some(update)) => {
                    if let Some(event) = view_event(&update) {
                        return Some((Ok::<_, Infallible>(event), Some((follower, gauge))));
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    // The error is the feed's last event.
                    tracing::info!(error = %e, "view feed ended");
                    let (code, message) = e.to_peer();
                    let data = serde_json::json!({
                        "error": { "code": code.as_str(), "message": message }
                    });
                    let event = SseEvent::default().event("error").data(data.to_string());
                    return Some((Ok(event), None));
                }
            }
        }
    });
    let events = futures_util::stream::iter(first.map(Ok::<_, Infallible>))
        .chain(rest)
        .take_until(end);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The SSE event of a view feed's update: `event: result` with
/// `{"offset": N, "result": …}` or `event: patch` with `{"offset": N,
/// "patch": […]}`; `id:` is the offset. Nothing for an unchanged result.
fn view_event(update: &Update) -> Option<SseEvent> {
    let (name, offset, data) = match update {
        Update::Result(now) => ("result", now.offset, &*now.text),
        Update::Patch { now, patch } => ("patch", now.offset, patch.as_str()),
        Update::Same(_) => return None,
    };
    Some(
        SseEvent::default()
            .event(name)
            .id(offset.0.to_string())
            .data(format!("{{\"offset\":{},\"{name}\":{data}}}", offset.0)),
    )
}

/// The query of a view request.
#[derive(serde::Deserialize)]
pub(crate) struct ViewParams {
    /// The view's parameters, JSON text.
    params: Option<String>,
}

/// The state once, or as a feed.
async fn folded(
    st: Arc<AppState>,
    peer: Option<std::net::SocketAddr>,
    principal: Principal,
    stream: StreamName,
    headers: HeaderMap,
) -> Response {
    let first = match st.store.state(stream.clone()).await {
        Ok(Some(first)) => first,
        Ok(None) => return not_folded(&stream),
        Err(e @ (Error::NotFound(_) | Error::Reducer(_))) => {
            let (code, message) = e.to_peer();
            return error_response(code, &message, &[]);
        }
        Err(e) => return store_failed(&e, "state"),
    };
    let field = "state";
    if !wants_event_stream(&headers) {
        let (offset, json) = first;
        return json_response(
            StatusCode::OK,
            format!("{{\"offset\":{},\"{field}\":{json}}}", offset.0),
        );
    }
    let (held, (permit, slot)) = match feed_admission(&st, &principal, peer, &headers) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let feed = Following {
        stream,
        held: held == Some(first.0 .0),
    };
    state_sse(st, feed, first, &principal, (permit, slot))
}

/// A feed's places under the connection limit and the subject's.
type FeedPlaces = (OwnedSemaphorePermit, SubjectSlot);

/// Admits a state or view feed: the offset a reconnecting EventSource
/// holds the answer at (its `Last-Event-ID`: that answer is not sent
/// again), its place under the connection limit and the subject's; or the
/// refusal.
fn feed_admission(
    st: &Arc<AppState>,
    principal: &Principal,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
) -> Result<(Option<u64>, FeedPlaces), Box<Response>> {
    let held = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(permit) = st.connection_permit() else {
        return Err(Box::new(too_many_connections(st)));
    };
    let slot = st
        .subjects
        .connect(&subject_key(principal, peer))
        .map_err(|denied| Box::new(subject_refusal(denied)))?;
    Ok((held, (permit, slot)))
}

/// What a state feed follows.
struct Following {
    stream: StreamName,
    /// The client holds the first answer already (its `Last-Event-ID`).
    held: bool,
}

/// What a state follower last sent: the offset and the state it reflects.
struct Followed {
    offset: Offset,
    state: serde_json::Value,
}

/// The SSE feed of a stream's state: `event: state` with `{"offset": N,
/// "state": …}` first, then after each commit that changed the state
/// either `event: patch` with `{"offset": N, "patch": [RFC 6902 ops]}`
/// against the state sent before, when that is shorter, or the whole
/// state again; `id:` is the offset. Commits that leave the state as it
/// was send nothing. Under load a follower reads the state once per
/// change of the head it has seen (several commits at once), never once
/// per commit. A reconnecting EventSource starts again with the whole
/// state (`Last-Event-ID` is not needed).
fn state_sse(
    st: Arc<AppState>,
    Following { stream, held }: Following,
    (offset, state): (Offset, String),
    principal: &Principal,
    permit: FeedPlaces,
) -> Response {
    let feed = st.hub.feed(&stream);
    let head = feed.watch_head();
    let gauge = (SubscriptionGauge::new(st.metrics.clone()), permit, feed);
    let field = "state";
    let end = feed_end(&st, principal);
    let first = (!held).then(|| state_event(field, offset, &state, None));
    let followed = serde_json::from_str(&state)
        .ok()
        .map(|state| Followed { offset, state });
    let rest = futures_util::stream::unfold(
        Some((st, stream, head, followed, gauge)),
        move |follower| async move {
            let (st, stream, mut head, mut followed, gauge) = follower?;
            loop {
                let seen = followed.as_ref().map_or(Offset(0), |f| f.offset);
                head.wait_for(|h| *h > seen).await.ok()?;
                let (offset, text) = match st.store.state(stream.clone()).await {
                    Ok(Some(now)) => now,
                    Ok(None) => return None,
                    Err(e) => {
                        // The error is the feed's last event.
                        tracing::warn!(error = %e, %stream, "state feed ended");
                        let data = serde_json::json!({
                            "error": { "code": e.code().as_str(), "message": e.to_string() }
                        });
                        let event = SseEvent::default().event("error").data(data.to_string());
                        return Some((Ok::<_, Infallible>(event), None));
                    }
                };
                if offset <= seen {
                    // The feed heard of a commit the store does not show
                    // yet: look again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
                    return None;
                };
                let event = match &followed {
                    Some(f) if f.state == state => None,
                    previous => Some(state_event(
                        field,
                        offset,
                        &text,
                        previous.as_ref().map(|f| (&f.state, &state)),
                    )),
                };
                followed = Some(Followed { offset, state });
                if let Some(event) = event {
                    return Some((Ok(event), Some((st, stream, head, followed, gauge))));
                }
            }
        },
    );
    let events = futures_util::stream::iter(first.map(Ok::<_, Infallible>))
        .chain(rest)
        .take_until(end);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The SSE event for the state `text` at `offset`: a JSON Patch from the
/// state sent before (`change`: that one and the new one) when it is
/// shorter than the whole state, else the whole state.
fn state_event(
    field: &str,
    offset: Offset,
    text: &str,
    change: Option<(&serde_json::Value, &serde_json::Value)>,
) -> SseEvent {
    let id = offset.0.to_string();
    if let Some((before, after)) = change {
        let patch = json_patch::diff(before, after);
        if let Ok(patch) = serde_json::to_string(&patch) {
            if patch.len() < text.len() {
                return SseEvent::default()
                    .event("patch")
                    .id(id)
                    .data(format!("{{\"offset\":{},\"patch\":{patch}}}", offset.0));
            }
        }
    }
    // serde_json writes no raw line breaks (they are escaped in strings).
    SseEvent::default()
        .event(field)
        .id(id)
        .data(format!("{{\"offset\":{},\"{field}\":{text}}}", offset.0))
}

/// `GET /livez`: 200 while the process serves requests (liveness: restart
/// the process when this fails). `/healthz` is readiness.
pub(crate) async fn livez() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_string())
}

/// `GET /healthz` (readiness): 200 while the store can read and write and
/// the server is not shutting down; `503 STORAGE` while writes fail.
pub(crate) async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    if st.shutdown.is_cancelled() {
        return error_response(ErrorCode::ShuttingDown, "the server is shutting down", &[]);
    }
    match st.store.check().await {
        Ok(()) => json_response(
            StatusCode::OK,
            serde_json::json!({ "status": "ok", "server_id": st.config.server_id }).to_string(),
        ),
        Err(e) => store_failed(&e, "health check"),
    }
}

/// `GET /metrics`: Prometheus text, or OpenMetrics when `Accept` asks.
pub(crate) async fn metrics(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = st.metrics.exposition(accept);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = parse_query(Some("after=5&limit=10&token=x")).unwrap_or_else(|e| panic!("{}", e.1));
        assert_eq!(q.after, Offset(5));
        assert_eq!(q.limit, Some(10));
        assert!(parse_query(Some("after=-1")).is_err());
        assert!(parse_query(Some("after=abc")).is_err());
        assert!(parse_query(Some("limit=0")).is_err());
        assert!(parse_query(None).is_ok_and(|q| q.after == Offset(0)));
    }
}
