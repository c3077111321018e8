//! The answers both transports give before or instead of their own
//! protocol: the HTTP status of each error code, and JSON error bodies
//! (`{"error":{"code","message",...}}` of `sync_core::json::error_json`) for
//! refusals, limits and store failures.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sync_core::json::error_json;
use sync_core::ErrorCode;

use crate::access::Denied;
use crate::error::Error;
use crate::state::AppState;

/// The HTTP status for an error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::FrameTooLarge | ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SeqGap
        | ErrorCode::SeqReused
        | ErrorCode::SchemaTooNew
        | ErrorCode::SchemaTooOld => StatusCode::CONFLICT,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::OriginForbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Compacted => StatusCode::GONE,
        ErrorCode::RateLimited | ErrorCode::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Rejected | ErrorCode::Reducer => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Storage | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A JSON error response with the status of its code.
pub(crate) fn error_response(code: ErrorCode, message: &str, extra: &[(&str, String)]) -> Response {
    error_with_status(status_for(code), code, message, extra)
}

pub(crate) fn error_with_status(
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    extra: &[(&str, String)],
) -> Response {
    json_response(status, error_json(code, message, extra))
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
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

/// A refusal by a limit, authentication or authorisation: counted in the
/// metrics, answered with its status (401 also says how to authenticate).
pub(crate) fn refuse(st: &AppState, (code, message): Denied) -> Response {
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

/// A refusal by a subject's limit (its trip is counted already), with
/// `Retry-After`.
pub(crate) fn subject_refusal((code, message): Denied) -> Response {
    let mut r = error_response(code, &message, &[]);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A request that cannot be served: its code and message.
pub(crate) struct ApiError(pub(crate) ErrorCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.0, &self.1, &[])
    }
}

/// A store error as a response: the detail goes to the log, the peer gets
/// the code and a stable message (no paths, no SQL).
pub(crate) fn store_failed(e: &Error, what: &str) -> Response {
    tracing::error!(error = %e, what, "storage request failed");
    let (code, message) = e.to_peer();
    error_response(code, &message, &[])
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
}
