//! The HTTP side: routes, the JSON API, Server-Sent Events, health,
//! metrics, static files, CORS. Every error is a 4xx/5xx with the JSON body
//! `{"error":{"code","message",...}}` of `sync_core::json::error_json`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use sync_core::json::{error_json, event_json, events_page_json, parse_intent};
use sync_core::{ErrorCode, Offset, StreamName};
use tokio::sync::OwnedSemaphorePermit;
use tower::ServiceExt as _;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

use crate::access::{self, Denied};
use crate::auth::{now_secs, Principal};
use crate::config::FRAME_OVERHEAD;
use crate::hub::Subscription;
use crate::limits::Admit;
use crate::listen::Peer;
use crate::metrics::Limit;
use crate::store::{Outcome, ReadLimits};
use crate::subjects::{subject_key, SubjectSlot};
use crate::ws::SubscriptionGauge;
use crate::AppState;

/// The operational endpoints alone (`/healthz`, `/livez`, `/metrics`),
/// for a separate listen address.
pub(crate) fn ops_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics))
        .fallback(|req: Request| async move {
            error_response(
                ErrorCode::NotFound,
                &format!("no route for {} {}", req.method(), req.uri().path()),
                &[],
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), log_5xx))
        .with_state(state)
}

fn is_ops_path(path: &str) -> bool {
    path == "/healthz" || path == "/livez" || path == "/metrics"
}

/// Operational endpoints answer without CORS headers: no page of another
/// origin may read them (the CORS layer answers every path, preflights
/// included; this takes its headers off again for these).
async fn no_cors_on_ops(req: Request, next: Next) -> Response {
    let ops = is_ops_path(req.uri().path());
    let mut response = next.run(req).await;
    if ops {
        let names: Vec<HeaderName> = response
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in names {
            response.headers_mut().remove(name);
        }
    }
    response
}

/// The whole application; without the operational endpoints when they
/// have their own listen address (`with_ops` false).
pub(crate) fn router(state: Arc<AppState>, with_ops: bool) -> Router {
    // Browser apps on another origin use the API directly; there are no
    // cookies (tokens travel in headers or the query), so by default any
    // origin may call it. With allowed origins configured, only those.
    let allow_origin = if state.config.allowed_origins.is_empty() {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            state
                .config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(3600));
    let mut app = Router::new()
        .route("/v1/streams/{stream}/intents", post(post_intent))
        .route("/v1/streams/{stream}/events", get(get_events))
        .route("/v1/streams/{stream}", get(get_stream))
        .route("/v1/ws", get(crate::ws::upgrade));
    if with_ops {
        app = app
            .route("/healthz", get(healthz))
            .route("/livez", get(livez))
            .route("/metrics", get(metrics));
    }
    app.fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin_guard,
        ))
        // Outermost, so preflight requests are answered before routing
        // (a route has no OPTIONS method of its own).
        .layer(cors)
        .layer(axum::middleware::from_fn(no_cors_on_ops))
        .layer(axum::middleware::from_fn_with_state(state.clone(), log_5xx))
        .with_state(state)
}

/// The HTTP status for an error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::FrameTooLarge | ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SeqGap | ErrorCode::SeqReused => StatusCode::CONFLICT,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::OriginForbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::RateLimited | ErrorCode::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Storage | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A JSON error response with the status of its code.
pub(crate) fn error_response(code: ErrorCode, message: &str, extra: &[(&str, String)]) -> Response {
    error_with_status(status_for(code), code, message, extra)
}

fn error_with_status(
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    extra: &[(&str, String)],
) -> Response {
    json_response(status, error_json(code, message, extra))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Refuses API requests from pages of origins not allowed (the WebSocket
/// upgrade checks its own, before upgrading).
async fn origin_guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/v1/streams/") {
        if let Err(denied) = access::check_origin(&st.config, req.headers()) {
            return refuse(&st, denied);
        }
    }
    next.run(req).await
}

/// A refusal by a limit, authentication or authorisation: counted in the
/// metrics, answered with its status (401 also says how to authenticate).
fn refuse(st: &AppState, (code, message): Denied) -> Response {
    st.metrics.refused(code);
    let mut r = error_response(code, &message, &[]);
    if code == ErrorCode::Unauthorized {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"logsync\""),
        );
    }
    r
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

/// A place under the connection limit, when one is free.
pub(crate) fn connection_permit(st: &AppState) -> Option<OwnedSemaphorePermit> {
    st.connections.clone().try_acquire_owned().ok()
}

/// 429 `TOO_MANY_CONNECTIONS`, counted.
pub(crate) fn too_many_connections(st: &AppState) -> Response {
    let mut r = refuse(
        st,
        (
            ErrorCode::TooManyConnections,
            format!(
                "the server holds its limit of {} connections; retry later",
                st.config.max_connections
            ),
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
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

/// A refusal by a subject's limit (its trip is counted already), with
/// `Retry-After`.
fn subject_refusal((code, message): Denied) -> Response {
    let mut r = error_response(code, &message, &[]);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A request that cannot be served: its code and message.
struct ApiError(ErrorCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.0, &self.1, &[])
    }
}

fn stream_name(path: Result<Path<String>, PathRejection>) -> Result<StreamName, ApiError> {
    let Path(raw) = path.map_err(|r| {
        ApiError(
            ErrorCode::InvalidStream,
            format!("the stream name in the URL could not be read: {r}"),
        )
    })?;
    StreamName::new(raw).map_err(|e| ApiError(e.code(), e.to_string()))
}

/// `POST /v1/streams/{stream}/intents`.
async fn post_intent(
    State(st): State<Arc<AppState>>,
    Peer(peer): Peer,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let principal = match authenticate(&st, &headers, query.as_deref()) {
        Ok(p) => p,
        Err(denied) => return refuse(&st, denied),
    };
    let stream = match stream_name(path) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // Before the body is read: a refused write stores nothing and reads
    // nothing, whether the stream exists or not.
    if let Err(denied) = access::check_write(&principal, &stream) {
        return refuse(&st, denied);
    }
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
            st.metrics.trip(crate::metrics::Limit::BodyReadTimeout);
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
    let seq = intent.seq;
    let outcome = crate::intake::push(
        &st.store,
        &*st.policy,
        stream,
        intent.client_id,
        [(intent.seq, intent.payload)],
    )
    .await;
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
async fn get_events(
    State(st): State<Arc<AppState>>,
    Peer(peer): Peer,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let principal = match authenticate(&st, &headers, query.as_deref()) {
        Ok(p) => p,
        Err(denied) => return refuse(&st, denied),
    };
    let stream = match stream_name(path) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Err(denied) = access::check_read(&principal, &stream) {
        return refuse(&st, denied);
    }
    let q = match parse_query(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let wants_sse = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    if wants_sse {
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
        let Some(permit) = connection_permit(&st) else {
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
        max_bytes: st.config.max_frame_bytes.saturating_sub(FRAME_OVERHEAD),
    };
    match st.store.read(stream, q.after, limits).await {
        Ok(page) => json_response(StatusCode::OK, events_page_json(&page.events, page.head)),
        Err(e) => store_failed(&e, "read"),
    }
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
    // It ends when the token expires: the EventSource then reconnects with
    // the same URL, gets 401, and the app opens a new one with a new token.
    let expires = principal.valid_until().and_then(|until| {
        tokio::time::Instant::now()
            .checked_add(Duration::from_secs(until.saturating_sub(now_secs())))
    });
    let shutdown = st.shutdown.clone();
    let end = async move {
        tokio::select! {
            _ = shutdown.cancelled_owned() => {}
            _ = async {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    };
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

/// `GET /v1/streams/{stream}`.
async fn get_stream(
    State(st): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let principal = match authenticate(&st, &headers, query.as_deref()) {
        Ok(p) => p,
        Err(denied) => return refuse(&st, denied),
    };
    let stream = match stream_name(path) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Err(denied) = access::check_read(&principal, &stream) {
        return refuse(&st, denied);
    }
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

/// A store error as a response: the detail goes to the log, the peer gets
/// the code and a stable message (no paths, no SQL).
fn store_failed(e: &crate::Error, what: &str) -> Response {
    tracing::error!(error = %e, what, "storage request failed");
    let (code, message) = e.to_peer();
    error_response(code, &message, &[])
}

/// Logs and counts every 5xx answer (the detail of storage failures is
/// logged where they happen; this line ties it to the request).
async fn log_5xx(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // The path only: a query may hold a token.
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    if response.status().is_server_error() {
        st.metrics
            .http_5xx
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            status = response.status().as_u16(),
            %method,
            path = %crate::logfmt::escape(&path),
            "answered with a server error"
        );
    }
    response
}

/// `GET /livez`: 200 while the process serves requests (liveness: restart
/// the process when this fails). `/healthz` is readiness.
async fn livez() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_string())
}

/// `GET /healthz` (readiness): 200 while the store can read and write and
/// the server is not shutting down; `503 STORAGE` while writes fail.
async fn healthz(State(st): State<Arc<AppState>>) -> Response {
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
async fn metrics(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = st.metrics.exposition(accept);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn is_api_path(path: &str) -> bool {
    path == "/v1"
        || path.starts_with("/v1/")
        || path == "/healthz"
        || path == "/livez"
        || path == "/metrics"
}

/// Unknown paths: the static app (with `index.html` for client-side
/// routes) when one is configured, else a JSON 404.
async fn fallback(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if let Some(refused) = misplaced_upgrade(&req) {
        return refused;
    }
    if !is_api_path(&path) && (method == Method::GET || method == Method::HEAD) {
        if let Some(dir) = &st.config.static_dir {
            if !st.config.static_unsafe && !static_path_allowed(dir, &path).await {
                return error_response(
                    ErrorCode::NotFound,
                    &format!("no route for {method} {}", crate::logfmt::escape(&path)),
                    &[],
                );
            }
            let serve = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
            return match serve.oneshot(req).await {
                Ok(r) => r.map(Body::new),
                Err(e) => match e {},
            };
        }
    }
    error_response(
        ErrorCode::NotFound,
        &format!("no route for {method} {path}"),
        &[],
    )
}

/// Whether `--static` may serve `path`: no segment starts with a dot
/// (dotfiles, `.git/`, and `..`), and a file that exists there resolves
/// (through any symlinks) to a place inside `dir`.
async fn static_path_allowed(dir: &std::path::Path, path: &str) -> bool {
    let Some(decoded) = percent_decode_path(path) else {
        return false;
    };
    let relative = decoded.trim_start_matches('/');
    if relative
        .split(['/', '\\'])
        .any(|segment| segment.starts_with('.'))
    {
        return false;
    }
    let candidate = dir.join(relative);
    if tokio::fs::symlink_metadata(&candidate).await.is_err() {
        // Nothing there: the app's index.html answers.
        return true;
    }
    match (
        tokio::fs::canonicalize(dir).await,
        tokio::fs::canonicalize(&candidate).await,
    ) {
        (Ok(root), Ok(target)) => target.starts_with(root),
        // A dangling link, or a folder that vanished.
        _ => false,
    }
}

/// `%XX` escapes of a URL path decoded; `None` when broken or not UTF-8.
fn percent_decode_path(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A WebSocket upgrade to any path but `/v1/ws` (e.g. a client URL
/// without the path) is answered 404 with a JSON body naming the right
/// path, never with the static app: a browser would only report
/// "Unexpected response code: 200".
fn misplaced_upgrade(req: &Request) -> Option<Response> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade.then(|| {
        error_response(
            ErrorCode::NotFound,
            &format!(
                "no WebSocket endpoint at {}: logsync-server's WebSocket endpoint is /v1/ws \
                 (connect to ws://HOST:PORT/v1/ws)",
                req.uri().path()
            ),
            &[],
        )
    })
}

async fn method_not_allowed(req: Request) -> Response {
    error_with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        &format!("{} is not allowed on {}", req.method(), req.uri().path()),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(status_for(ErrorCode::SeqGap), StatusCode::CONFLICT);
        assert_eq!(status_for(ErrorCode::InvalidJson), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_for(ErrorCode::PayloadTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

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
