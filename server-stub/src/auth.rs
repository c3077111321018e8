//! Authentication and per-stream permissions.
//!
//! With a secret configured (`LOGSYNC_JWT_SECRET`, or `--jwt-secret-file`),
//! every request carries a JWT signed with HS256 whose claims are:
//!
//! ```json
//! {"sub": "user-42", "exp": 1764115200, "read": ["todos/*"], "write": ["todos/team-42"]}
//! ```
//!
//! `read` and `write` list stream names; a trailing `*` matches any suffix
//! (`"*"` alone matches every stream). `nbf` is honoured when present.
//! Only HS256 is accepted: a token naming any other algorithm (including
//! `none`) is refused, so an attacker cannot pick the algorithm.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use sync_core::{ErrorCode, StreamName};

/// Largest token accepted, in bytes (a sane header + claims fit in far less).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest `sub` accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// Tolerated clock difference for `exp`/`nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Shortest secret accepted, in bytes: HS256 keys must be at least as long
/// as the hash (RFC 7518, section 3.2), or they can be guessed offline from
/// any token.
pub const MIN_SECRET_BYTES: usize = 32;

/// The HS256 key. Its `Debug` output never shows the bytes, so a logged
/// configuration cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps key bytes; refuses keys shorter than [`MIN_SECRET_BYTES`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, String> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the JWT secret has {} bytes; use at least {MIN_SECRET_BYTES} random bytes \
                 (e.g. `openssl rand -base64 48`)",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// Seconds since the Unix epoch, by the server's clock.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Who a verified token speaks for, and where they may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The subject.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    read: Vec<Pattern>,
    write: Vec<Pattern>,
}

impl Principal {
    /// Everything allowed, no subject, never expires: the server runs
    /// without a secret.
    pub fn open() -> Self {
        Principal {
            sub: String::new(),
            exp: u64::MAX,
            read: vec![Pattern::Prefix(String::new())],
            write: vec![Pattern::Prefix(String::new())],
        }
    }

    /// May this principal read (subscribe to) `stream`?
    pub fn can_read(&self, stream: &StreamName) -> bool {
        self.read.iter().any(|p| p.matches(stream.as_str()))
    }

    /// May this principal append to `stream`?
    pub fn can_write(&self, stream: &StreamName) -> bool {
        self.write.iter().any(|p| p.matches(stream.as_str()))
    }

    /// True for [`Principal::open`]: no token was verified, and client ids
    /// are not bound to anyone.
    pub fn is_open(&self) -> bool {
        self.sub.is_empty()
    }

    /// When the token stops being accepted (expiry plus the leeway),
    /// seconds since the Unix epoch; `None` for the open principal.
    pub fn valid_until(&self) -> Option<u64> {
        (!self.is_open()).then(|| self.exp.saturating_add(LEEWAY_SECS))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(s: &str) -> Pattern {
        match s.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(s.to_string()),
        }
    }

    fn matches(&self, stream: &str) -> bool {
        match self {
            Pattern::Exact(s) => s == stream,
            Pattern::Prefix(p) => stream.starts_with(p.as_str()),
        }
    }
}

/// Why a token was refused. Every variant maps to `UNAUTHORIZED`; the
/// message says which check failed (never echoing the token).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is required.
    #[error("a token is required: pass it in Hello.token, an `Authorization: Bearer` header or `?token=`")]
    Missing,
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Another algorithm than HS256, or a header this server cannot honour.
    #[error("token algorithm {0:?} is not accepted; use HS256")]
    Algorithm(String),
    /// The header marks extensions as critical (`crit`); none are supported.
    #[error("token header lists critical extensions (crit); none are supported")]
    Critical,
    /// The signature does not match.
    #[error("token signature is invalid")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's expiry.
        exp: u64,
        /// The server's clock.
        now: u64,
    },
    /// `nbf` is in the future.
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's start.
        nbf: u64,
        /// The server's clock.
        now: u64,
    },
}

impl AuthError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unauthorized
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(deserialize_with = "numeric_date")]
    exp: u64,
    #[serde(default, deserialize_with = "optional_numeric_date")]
    nbf: Option<u64>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

/// A JWT NumericDate: seconds since the Unix epoch, which RFC 7519 allows
/// to carry a fraction (dropped here).
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f.min(u64::MAX as f64) as u64),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a date (seconds since 1970, >= 0)"
        ))),
    }
}

fn optional_numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    numeric_date(d).map(Some)
}

/// Decodes one part: canonical base64url only (RFC 7515: no `=` padding,
/// no set bits past the last byte), so one token has one spelling.
fn b64(part: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| AuthError::Malformed(format!("{what} is not base64url: {e}")))
}

/// Verifies an HS256 JWT against `secret` at time `now` (seconds since the
/// Unix epoch).
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<Principal, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed(format!(
            "token of {} bytes is over the limit of {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let header: Header = serde_json::from_slice(&b64(h, "header")?)
        .map_err(|e| AuthError::Malformed(format!("header: {e}")))?;
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm(header.alg.chars().take(20).collect()));
    }
    if header.crit.is_some() {
        return Err(AuthError::Critical);
    }
    let sig = b64(s, "signature")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| AuthError::Malformed("unusable secret".into()))?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(c.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&sig).map_err(|_| AuthError::Signature)?;
    let claims: Claims = serde_json::from_slice(&b64(c, "claims")?)
        .map_err(|e| AuthError::Malformed(format!("claims (need sub, exp, read, write): {e}")))?;
    // An empty subject would be the open principal's, which binds nothing.
    if claims.sub.is_empty() || claims.sub.len() > MAX_SUBJECT_BYTES {
        return Err(AuthError::Malformed(format!(
            "sub must be 1-{MAX_SUBJECT_BYTES} bytes, got {}",
            claims.sub.len()
        )));
    }
    if claims.exp.saturating_add(LEEWAY_SECS) < now {
        return Err(AuthError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now.saturating_add(LEEWAY_SECS) {
            return Err(AuthError::NotYetValid { nbf, now });
        }
    }
    Ok(Principal {
        sub: claims.sub,
        exp: claims.exp,
        read: claims.read.iter().map(|p| Pattern::parse(p)).collect(),
        write: claims.write.iter().map(|p| Pattern::parse(p)).collect(),
    })
}

/// The principal a request speaks for: with no secret configured the open
/// principal (any token is ignored), else the verified token's, at `now`
/// (seconds since the Unix epoch).
pub fn authenticate(
    secret: Option<&Secret>,
    token: Option<&str>,
    now: u64,
) -> Result<Principal, AuthError> {
    match (secret, token) {
        (None, _) => Ok(Principal::open()),
        (Some(_), None) => Err(AuthError::Missing),
        (Some(secret), Some(token)) => verify(token, secret.bytes(), now),
    }
}

/// Signs claims with HS256 (for tests, tools and the `logsync-server token`
/// helper; production tokens come from the app's own auth service).
pub fn sign(claims_json: &str, secret: &[u8]) -> String {
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let head = enc(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = enc(claims_json.as_bytes());
    // new_from_slice accepts keys of any length for HMAC.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let sig = enc(&mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-test-secret-test-sec";

    fn s(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    fn token(claims: &str) -> String {
        sign(claims, SECRET)
    }

    #[test]
    fn valid_token_and_patterns() {
        let t =
            token(r#"{"sub":"u1","exp":2000,"read":["todos/*","a"],"write":["todos/team-42"]}"#);
        let p = verify(&t, SECRET, 1000).unwrap();
        assert_eq!(p.sub, "u1");
        assert!(p.can_read(&s("todos/x")));
        assert!(p.can_read(&s("a")));
        assert!(!p.can_read(&s("ab")));
        assert!(!p.can_read(&s("other")));
        assert!(p.can_write(&s("todos/team-42")));
        assert!(!p.can_write(&s("todos/team-43")));
        let all = verify(
            &token(r#"{"sub":"u","exp":2000,"read":["*"]}"#),
            SECRET,
            1000,
        )
        .unwrap();
        assert!(all.can_read(&s("anything")));
        assert!(!all.can_write(&s("anything")));
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let t = token(r#"{"sub":"u1","exp":2000}"#);
        assert_eq!(
            verify(&t, b"another-secret", 1000),
            Err(AuthError::Signature)
        );
        assert!(matches!(
            verify(&t, SECRET, 3000),
            Err(AuthError::Expired { .. })
        ));
        // Tampered claims keep the old signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"admin","exp":2000,"write":["*"]}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), SECRET, 1000),
            Err(AuthError::Signature)
        );
        // alg "none" with an empty signature.
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert!(matches!(
            verify(&none, SECRET, 1000),
            Err(AuthError::Algorithm(_))
        ));
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!!.e30.x",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(
                matches!(verify(junk, SECRET, 1000), Err(AuthError::Malformed(_))),
                "{junk:.20}"
            );
        }
        let nbf = token(r#"{"sub":"u1","exp":5000,"nbf":4000}"#);
        assert!(matches!(
            verify(&nbf, SECRET, 1000),
            Err(AuthError::NotYetValid { .. })
        ));
    }

    #[test]
    fn only_the_canonical_encoding_of_a_token_is_accepted() {
        let t = token(r#"{"sub":"u1","exp":2000}"#);
        assert!(verify(&t, SECRET, 1000).is_ok());
        // A 32-byte signature is 43 characters: padding would add one `=`.
        for padded in [format!("{t}="), format!("{t}==")] {
            assert!(
                matches!(verify(&padded, SECRET, 1000), Err(AuthError::Malformed(_))),
                "{padded}"
            );
        }
        // The last character carries 2 spare bits: set them and the bytes
        // stay the same, the spelling does not.
        let (head, last) = t.split_at(t.len() - 1);
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let i = alphabet.find(last).expect("base64url");
        let other = &alphabet[(i | 1)..(i | 1) + 1];
        if other != last {
            let respelled = format!("{head}{other}");
            assert!(
                matches!(
                    verify(&respelled, SECRET, 1000),
                    Err(AuthError::Malformed(_))
                ),
                "{respelled}"
            );
        }
        // A padded header or claims part, too.
        let parts: Vec<&str> = t.split('.').collect();
        let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
        assert!(verify(&padded, SECRET, 1000).is_err());
    }

    #[test]
    fn open_principal_allows_everything() {
        let p = Principal::open();
        assert!(p.can_read(&s("x")) && p.can_write(&s("y/z")));
        assert!(p.is_open());
        assert_eq!(p.valid_until(), None);
        let token = token(r#"{"sub":"u1","exp":2000}"#);
        assert_eq!(
            authenticate(None, Some(&token), 1000),
            Ok(Principal::open())
        );
        assert_eq!(authenticate(None, None, 1000), Ok(Principal::open()));
    }

    #[test]
    fn authenticate_with_a_secret_needs_a_valid_token() {
        let secret = Secret::new(SECRET).unwrap();
        assert_eq!(
            authenticate(Some(&secret), None, 1000),
            Err(AuthError::Missing)
        );
        let t = token(r#"{"sub":"u1","exp":2000,"read":["a"]}"#);
        let p = authenticate(Some(&secret), Some(&t), 1000).unwrap();
        assert!(!p.is_open());
        assert_eq!(p.valid_until(), Some(2000 + LEEWAY_SECS));
        assert!(authenticate(Some(&secret), Some("x.y.z"), 1000).is_err());
    }

    #[test]
    fn secrets_are_long_and_never_printed() {
        assert!(Secret::new(&b"short"[..]).is_err());
        let secret = Secret::new(SECRET).unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.contains("test-secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn claims_edge_cases() {
        // Fractional dates (allowed by RFC 7519) and leeway at the edges.
        let t = token(r#"{"sub":"u","exp":2000.9}"#);
        assert_eq!(verify(&t, SECRET, 2000 + LEEWAY_SECS).unwrap().exp, 2000);
        assert!(matches!(
            verify(&t, SECRET, 2001 + LEEWAY_SECS),
            Err(AuthError::Expired { .. })
        ));
        for bad in [
            r#"{"sub":"","exp":2000}"#,
            r#"{"exp":2000}"#,
            r#"{"sub":"u"}"#,
            r#"{"sub":"u","exp":-1}"#,
            r#"{"sub":"u","exp":"2000"}"#,
            r#"{"sub":"u","exp":2000,"read":"a"}"#,
        ] {
            assert!(
                matches!(
                    verify(&token(bad), SECRET, 1000),
                    Err(AuthError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let long = format!(
            r#"{{"sub":"{}","exp":2000}}"#,
            "x".repeat(MAX_SUBJECT_BYTES + 1)
        );
        assert!(matches!(
            verify(&token(&long), SECRET, 1000),
            Err(AuthError::Malformed(_))
        ));
        // A header with critical extensions is refused even when signed.
        let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let head = enc(br#"{"alg":"HS256","crit":["exp"]}"#);
        let body = enc(br#"{"sub":"u","exp":2000}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        let sig = enc(&mac.finalize().into_bytes());
        assert_eq!(
            verify(&format!("{head}.{body}.{sig}"), SECRET, 1000),
            Err(AuthError::Critical)
        );
        // Patterns: a star only counts at the end; "*" alone is everything.
        let p = verify(
            &token(r#"{"sub":"u","exp":2000,"read":["a*b","x/*"],"write":["*"]}"#),
            SECRET,
            1000,
        )
        .unwrap();
        assert!(!p.can_read(&s("aab")) && !p.can_read(&s("x")));
        assert!(p.can_read(&s("x/")) || p.can_read(&s("x/y")));
        assert!(p.can_write(&s("anything/at/all")));
    }
}
