//! The routes: the JSON API and SSE ([`crate::http`]), the WebSocket
//! endpoint ([`crate::ws`]), the operational endpoints, static files, and
//! the layers around them all (CORS, the origin guard, 5xx logging).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sync_core::ErrorCode;
use tower::ServiceExt as _;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

use crate::access;
use crate::http;
use crate::respond::{error_response, error_with_status, refuse};
use crate::state::AppState;
use crate::ws;

/// The operational endpoints alone (`/healthz`, `/livez`, `/metrics`),
/// for a separate listen address.
pub(crate) fn ops_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(http::healthz))
        .route("/livez", get(http::livez))
        .route("/metrics", get(http::metrics))
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
        .route("/v1/streams/{stream}/intents", post(http::post_intent))
        .route("/v1/streams/{stream}/events", get(http::get_events))
        .route("/v1/streams/{stream}/state", get(http::get_state))
        .route("/v1/streams/{stream}/snapshot", get(http::get_snapshot))
        .route("/v1/streams/{stream}/views/{name}", get(http::get_view))
        .route("/v1/streams/{stream}", get(http::get_stream))
        .route("/v1/ws", get(ws::upgrade));
    if with_ops {
        app = app
            .route("/healthz", get(http::healthz))
            .route("/livez", get(http::livez))
            .route("/metrics", get(http::metrics));
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
