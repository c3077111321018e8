//! Who may do what, as the transports ask it: the token of an HTTP
//! request, the origin check, and the binding of client ids to subjects.
//! Token verification itself lives in [`crate::auth`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use sync_core::{ClientId, ErrorCode, StreamName};

use crate::auth::{authenticate_with, now_secs, Principal};
use crate::config::Config;
use crate::store::LogStore;

/// A refusal: the code and message the peer gets.
pub(crate) type Denied = (ErrorCode, String);

/// Most bindings remembered; past it the cache starts over (the store has
/// them all, a cache miss only costs one read).
const MAX_CACHED_BINDINGS: usize = 100_000;

/// Client ids known to be bound to a subject. Bindings never change, so a
/// remembered one is always right, on this node and every other.
#[derive(Default)]
pub(crate) struct Bindings(Mutex<HashMap<ClientId, Arc<str>>>);

impl Bindings {
    /// Binds `client_id` to the principal's subject on first use, and
    /// refuses a client id that belongs to another subject. The open
    /// principal binds nothing.
    pub(crate) async fn check(
        &self,
        store: &dyn LogStore,
        principal: &Principal,
        client_id: ClientId,
    ) -> Result<(), Denied> {
        if principal.is_open() {
            return Ok(());
        }
        let cached = self.0.lock().ok().and_then(|m| m.get(&client_id).cloned());
        let bound: Arc<str> = match cached {
            Some(b) => b,
            None => {
                let b: Arc<str> = store
                    .bind_client(client_id, principal.sub.clone())
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "binding a client id failed");
                        e.to_peer()
                    })?
                    .into();
                if let Ok(mut m) = self.0.lock() {
                    if m.len() >= MAX_CACHED_BINDINGS {
                        m.clear();
                    }
                    m.insert(client_id, b.clone());
                }
                b
            }
        };
        if *bound == *principal.sub {
            Ok(())
        } else {
            Err((
                ErrorCode::Forbidden,
                format!(
                    "client id {client_id} belongs to another subject; a client id cannot be \
                     shared between users (a new browser profile or storage makes a new one)"
                ),
            ))
        }
    }
}

/// Refuses reading `stream`. The message is the same whether the stream
/// exists or not.
pub(crate) fn check_read(principal: &Principal, stream: &StreamName) -> Result<(), Denied> {
    if principal.can_read(stream) {
        Ok(())
    } else {
        Err((
            ErrorCode::Forbidden,
            format!("the token does not allow reading stream {stream}"),
        ))
    }
}

/// Refuses reading the view `view` of `stream`: allowed to a reader of the
/// whole stream and to a token with a view grant for it
/// ([`Principal::can_read_view`]). The message is the same whether the
/// stream (or the view) exists or not, and whatever else the token may do.
pub(crate) fn check_read_view(
    principal: &Principal,
    stream: &StreamName,
    view: &str,
) -> Result<(), Denied> {
    if principal.can_read_view(stream, view) {
        Ok(())
    } else {
        Err((
            ErrorCode::Forbidden,
            format!(
                "the token does not allow reading view {:?} of stream {stream}",
                short(view)
            ),
        ))
    }
}

/// How a write the token does not allow is answered.
pub(crate) enum WriteRefusal {
    /// The token may read the stream: each intent's seq is decided as
    /// rejected with this `FORBIDDEN` (stored like any rejection, without
    /// its payload) and the connection, with its subscriptions, goes on.
    Reject(Denied),
    /// The token may not even read it: the connection ends with
    /// `FORBIDDEN` and nothing is stored, so nothing about the stream leaks.
    Fatal(Denied),
}

/// [`check_write`], telling a reader (whose refused writes become stored
/// rejections) from a stranger to the stream.
pub(crate) fn check_write_or_reject(
    principal: &Principal,
    stream: &StreamName,
) -> Result<(), WriteRefusal> {
    match check_write(principal, stream) {
        Ok(()) => Ok(()),
        Err(denied) if principal.can_read(stream) => Err(WriteRefusal::Reject(denied)),
        Err(denied) => Err(WriteRefusal::Fatal(denied)),
    }
}

/// Refuses writing `stream` (nothing is stored for a refused write).
pub(crate) fn check_write(principal: &Principal, stream: &StreamName) -> Result<(), Denied> {
    if principal.can_write(stream) {
        Ok(())
    } else {
        Err((
            ErrorCode::Forbidden,
            format!("the token does not allow writing stream {stream}"),
        ))
    }
}

/// The principal of a WebSocket `Hello` or an HTTP request's token.
pub(crate) fn principal(config: &Config, token: Option<&str>) -> Result<Principal, Denied> {
    authenticate_with(
        config.jwt_secret.as_ref(),
        config.jwt_jwks.as_ref(),
        token,
        now_secs(),
    )
    .map_err(|e| (e.code(), e.to_string()))
}

/// The token of an HTTP request: `Authorization: Bearer <token>`, else the
/// first `token=` query parameter (the EventSource API cannot set headers).
pub(crate) fn http_token(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<String>, Denied> {
    let unauthorized = |m: &str| (ErrorCode::Unauthorized, m.to_string());
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not text"))?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        }
        return Ok(Some(token.trim().to_string()));
    }
    for pair in query.unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("token=") {
            return percent_decode(v).map(Some).ok_or_else(|| {
                unauthorized("the token query parameter is not valid percent-encoded text")
            });
        }
    }
    Ok(None)
}

/// Decodes `%XX` escapes and `+` (as a space, like a form); `None` when an
/// escape is broken or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// With allowed origins configured, refuses a request whose `Origin` is
/// not one of them. A request without `Origin` passes: browsers always send
/// it on WebSocket upgrades and cross-origin requests, so its absence means
/// a non-browser client, which an origin check cannot stop anyway.
pub(crate) fn check_origin(config: &Config, headers: &HeaderMap) -> Result<(), Denied> {
    if config.allowed_origins.is_empty() {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
    if config.allowed_origins.contains(&origin) {
        Ok(())
    } else {
        Err((
            ErrorCode::OriginForbidden,
            format!(
                "origin {:?} is not allowed to use this server",
                short(&origin)
            ),
        ))
    }
}

/// At most 100 bytes of `s`, for messages that echo peer input.
fn short(s: &str) -> &str {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn tokens_from_header_or_query() {
        let h = headers(&[(header::AUTHORIZATION, "Bearer abc.def.ghi")]);
        assert_eq!(
            http_token(&h, Some("token=zzz")),
            Ok(Some("abc.def.ghi".into()))
        );
        let h = headers(&[(header::AUTHORIZATION, "bearer   t ")]);
        assert_eq!(http_token(&h, None), Ok(Some("t".into())));
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "t"] {
            let h = headers(&[(header::AUTHORIZATION, bad)]);
            assert_eq!(
                http_token(&h, None).map_err(|e| e.0),
                Err(ErrorCode::Unauthorized),
                "{bad}"
            );
        }
        let none = HeaderMap::new();
        assert_eq!(
            http_token(&none, Some("after=3&token=a.b%2Ec&token=x")),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(http_token(&none, Some("after=3")), Ok(None));
        assert_eq!(http_token(&none, None), Ok(None));
        assert!(http_token(&none, Some("token=%zz")).is_err());
        assert!(http_token(&none, Some("token=%ff")).is_err());
        assert!(http_token(&none, Some("token=%4")).is_err());
    }

    #[test]
    fn origins() {
        let open = Config::default();
        let evil = headers(&[(header::ORIGIN, "https://evil.example")]);
        assert!(check_origin(&open, &evil).is_ok());
        let strict = Config {
            allowed_origins: vec!["https://app.example.com".into()],
            ..Config::default()
        };
        assert_eq!(
            check_origin(&strict, &evil).map_err(|e| e.0),
            Err(ErrorCode::OriginForbidden)
        );
        let good = headers(&[(header::ORIGIN, "https://APP.example.com")]);
        assert!(check_origin(&strict, &good).is_ok());
        assert!(check_origin(&strict, &HeaderMap::new()).is_ok());
        let null = headers(&[(header::ORIGIN, "null")]);
        assert!(check_origin(&strict, &null).is_err());
    }
}
