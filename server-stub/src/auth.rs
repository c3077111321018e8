//! Authentication and per-stream permissions.
//!
//! Every request carries a JWT whose claims are:
//!
//! ```json
//! {"sub": "user-42", "exp": 1764115200, "read": ["todos/*"], "write": ["todos/team-42"]}
//! ```
//!
//! `read` and `write` list stream names; a trailing `*` matches any suffix
//! (`"*"` alone matches every stream). An entry of `read` may also be a
//! *view grant*, `PATTERN#VIEW` (`"todos/team-42#open"`, `"todos/*#open"`):
//! it lets the token read the view named `VIEW` of the streams `PATTERN`
//! matches, and nothing else of them — not their events, state, snapshot
//! or other views ([`Principal::can_read_view`]). Stream names cannot
//! contain `#` or `*`, so the first `#` always ends the pattern; a view
//! grant that does not parse (`"todos#"`, `"todos#*"`, `"#open"`, a view
//! name with `#`, `*` or control characters, or any `#` in `write`) refuses
//! the whole token as `UNAUTHORIZED` ([`AuthError::Grant`]). `nbf` is
//! honoured when present.
//!
//! Two kinds of key verify it, either or both:
//!
//! - a shared secret (`LOGSYNC_JWT_SECRET`, or `--jwt-secret-file`) for
//!   tokens signed with HS256;
//! - the public keys of a JWKS file (`--jwt-jwks-file`), so an identity
//!   provider can sign tokens (RS256, PS256, ES256, EdDSA, ...) without
//!   sharing a secret. A token picks its key by `kid`.
//!
//! The key decides the algorithm, never the token: a token whose `alg` is
//! not the one of the key it names is refused (so an RSA public key can
//! never be used as an HMAC secret), as are `alg: none` and every algorithm
//! no configured key has. Signatures, base64url and the claims' JSON are
//! checked by the `jsonwebtoken` crate; this module picks the key, refuses
//! `crit` headers (which that crate ignores), and checks the dates against
//! the clock it is given, so tests and token lifetimes share one clock.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::Deserialize;
use sync_core::{ErrorCode, StreamName};

// The unit tests forge tokens with an HMAC of their own, independent of
// the library that verifies them.
#[cfg(test)]
use hmac::{Hmac, KeyInit, Mac};
#[cfg(test)]
use sha2::Sha256;

/// Largest token accepted, in bytes (a sane header + claims fit in far less).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest `sub` accepted, in bytes (what an event can carry).
pub const MAX_SUBJECT_BYTES: usize = sync_core::MAX_SUBJECT_LEN;

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
    views: Vec<ViewGrant>,
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
            views: Vec::new(),
            write: vec![Pattern::Prefix(String::new())],
        }
    }

    /// May this principal read the whole of `stream`: subscribe to it, read
    /// its events, head, state, snapshot and every view? A view grant
    /// (`PATTERN#VIEW`) never allows this.
    pub fn can_read(&self, stream: &StreamName) -> bool {
        self.read.iter().any(|p| p.matches(stream.as_str()))
    }

    /// May this principal read the view named `view` of `stream`? True for
    /// a reader of the whole stream ([`Principal::can_read`]) and for a
    /// view grant whose pattern matches `stream` and whose view is `view`
    /// (names compared exactly).
    pub fn can_read_view(&self, stream: &StreamName, view: &str) -> bool {
        self.can_read(stream)
            || self
                .views
                .iter()
                .any(|g| g.view == view && g.streams.matches(stream.as_str()))
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

    /// The subject stored with this principal's events (a reducer's
    /// `meta.subject`): the verified `sub`, `None` for the open principal.
    pub fn subject(&self) -> Option<String> {
        (!self.is_open()).then(|| self.sub.clone())
    }

    /// When the token stops being accepted (expiry plus the leeway),
    /// seconds since the Unix epoch; `None` for the open principal.
    pub fn valid_until(&self) -> Option<u64> {
        (!self.is_open()).then(|| self.exp.saturating_add(LEEWAY_SECS))
    }
}

/// A stream pattern: a name, or a prefix ending in `*` (`*` alone is
/// every stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub(crate) fn parse(s: &str) -> Pattern {
        match s.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(s.to_string()),
        }
    }

    pub(crate) fn matches(&self, stream: &str) -> bool {
        match self {
            Pattern::Exact(s) => s == stream,
            Pattern::Prefix(p) => stream.starts_with(p.as_str()),
        }
    }
}

/// A view grant of a token's `read` list, `PATTERN#VIEW`: the view named
/// `view` of the streams `streams` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ViewGrant {
    streams: Pattern,
    view: String,
}

/// What a token's `read` list grants.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReadGrants {
    /// Whole streams.
    streams: Vec<Pattern>,
    /// Single views.
    views: Vec<ViewGrant>,
}

/// Parses a token's `read` list: stream patterns as they always were, and
/// view grants `PATTERN#VIEW`, which are checked strictly (see
/// [`check_grants`]).
fn parse_read(entries: &[String]) -> Result<ReadGrants, AuthError> {
    let mut grants = ReadGrants::default();
    for entry in entries {
        match entry.split_once('#') {
            None => grants.streams.push(Pattern::parse(entry)),
            Some((pattern, view)) => {
                let refused =
                    |why: &str| AuthError::Grant(format!("read entry {:?} {why}", short(entry)));
                check_grant_pattern(pattern).map_err(|why| refused(&why))?;
                check_view_name(view).map_err(|why| refused(&why))?;
                grants.views.push(ViewGrant {
                    streams: Pattern::parse(pattern),
                    view: view.to_string(),
                });
            }
        }
    }
    Ok(grants)
}

/// Parses a token's `write` list. Views are read-only: an entry with `#`
/// is refused rather than silently granting nothing.
fn parse_write(entries: &[String]) -> Result<Vec<Pattern>, AuthError> {
    entries
        .iter()
        .map(|entry| {
            if entry.contains('#') {
                Err(AuthError::Grant(format!(
                    "write entry {:?} names a view; views can only be read, so `write` lists \
                     stream patterns",
                    short(entry)
                )))
            } else {
                Ok(Pattern::parse(entry))
            }
        })
        .collect()
}

/// Checks a token's `read` and `write` lists as verification does: view
/// grants (`PATTERN#VIEW`, `read` only) must parse. For tools that mint
/// tokens, so that a grant the server would refuse is never signed.
pub fn check_grants(read: &[String], write: &[String]) -> Result<(), AuthError> {
    parse_read(read)?;
    parse_write(write)?;
    Ok(())
}

/// The pattern part of a view grant: a stream name, or a prefix of one
/// followed by `*` (`*` alone: every stream).
fn check_grant_pattern(pattern: &str) -> Result<(), String> {
    match pattern.strip_suffix('*') {
        None if pattern.is_empty() => {
            Err("has no stream pattern before `#` (use `*#VIEW` for every stream)".into())
        }
        None => sync_core::types::validate_stream_name(pattern)
            .map_err(|e| format!("has a bad stream pattern: {e}")),
        // A prefix need not be a whole name (`todos/` is fine), but it
        // must be the start of one.
        Some(prefix) => match prefix.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | ':' | '/' | '-'))
        }) {
            Some(c) => Err(format!(
                "has {c:?} in its stream pattern; a pattern is a stream name \
                 (A-Z a-z 0-9 . _ ~ : / -), or the start of one followed by `*`"
            )),
            None if prefix.len() > sync_core::MAX_STREAM_NAME_LEN => Err(format!(
                "has a stream prefix of {} bytes; stream names have at most {}",
                prefix.len(),
                sync_core::MAX_STREAM_NAME_LEN
            )),
            None => Ok(()),
        },
    }
}

/// The view part of a view grant: one view's name, exactly as the module
/// exports it.
fn check_view_name(view: &str) -> Result<(), String> {
    if view.is_empty() {
        return Err("names no view after `#`".into());
    }
    if view == "*" {
        return Err(
            "grants every view (`#*`), which is not supported: list each view the token may \
             read (`PATTERN#VIEW`), or grant the whole stream (`PATTERN`)"
                .into(),
        );
    }
    if let Some(c) = view
        .chars()
        .find(|c| matches!(c, '#' | '*') || c.is_control())
    {
        return Err(format!(
            "has {c:?} in its view name; a view grant is PATTERN#VIEW with one view name, \
             without `#`, `*` or control characters"
        ));
    }
    Ok(())
}

/// At most 100 bytes of `s`, for messages that quote a claim.
fn short(s: &str) -> &str {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
    /// An algorithm no configured key has (`none` included), or another
    /// one than the key the token names.
    #[error("token algorithm {0:?} is not accepted; use HS256 with the shared secret, or the algorithm of a key in the JWKS file")]
    Algorithm(String),
    /// The header marks extensions as critical (`crit`); none are supported.
    #[error("token header lists critical extensions (crit); none are supported")]
    Critical,
    /// The signature does not match.
    #[error("token signature is invalid")]
    Signature,
    /// The token names a key (`kid`) the JWKS file does not have, or names
    /// none where several keys could be meant.
    #[error("token key: {0}")]
    UnknownKey(String),
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
    /// A `read` or `write` entry that does not parse: a malformed view
    /// grant (`PATTERN#VIEW`), or a view named in `write`.
    #[error("token grant: {0}")]
    Grant(String),
}

impl AuthError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unauthorized
    }
}

/// The public keys of an identity provider, read from a JWKS file
/// (`{"keys": [...]}`, RFC 7517). Keys marked for encryption
/// (`"use": "enc"`, or an encryption `alg`) are skipped; every other key
/// must be a usable signature key, or the file is refused.
#[derive(Clone)]
pub struct Jwks {
    keys: Arc<[JwksKey]>,
}

struct JwksKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Smallest RSA modulus accepted from a JWKS file, in bits (NIST SP
/// 800-131A: shorter keys are no longer safe for signatures).
pub const MIN_RSA_BITS: usize = 2048;

impl Jwks {
    /// Reads and checks a JWKS file; the error names the file and says
    /// what is wrong with it.
    pub fn from_file(path: &Path) -> Result<Jwks, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
        Jwks::from_json(&bytes)
            .map_err(|e| format!("the JWKS file {} is not usable: {e}", path.display()))
    }

    /// Parses and checks a JWKS document.
    pub fn from_json(bytes: &[u8]) -> Result<Jwks, String> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a JWKS document ({{\"keys\": [...]}}): {e}"))?;
        let mut keys: Vec<JwksKey> = Vec::new();
        for (i, value) in set.keys.into_iter().enumerate() {
            let kid = value
                .get("kid")
                .and_then(|k| k.as_str())
                .map(str::to_string);
            let name = match &kid {
                Some(kid) => format!("key {i} (kid {kid:?})"),
                None => format!("key {i}"),
            };
            let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("{name}: {e}"))?;
            let Some(key) = JwksKey::from_jwk(&jwk).map_err(|e| format!("{name}: {e}"))? else {
                continue;
            };
            if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                return Err(format!("{name}: another key has the same kid"));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("it has no signature keys".into());
        }
        Ok(Jwks { keys: keys.into() })
    }

    /// The number of signature keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a JWKS without keys is refused when read.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token of algorithm `alg` naming `kid`.
    fn select(&self, alg: &str, kid: Option<&str>) -> Result<&JwksKey, AuthError> {
        let refused = || AuthError::Algorithm(alg.chars().take(20).collect());
        let algorithm = alg.parse::<Algorithm>().map_err(|_| refused())?;
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or_else(|| {
                        AuthError::UnknownKey(format!(
                            "no key in the JWKS file has kid {:?}",
                            kid.chars().take(64).collect::<String>()
                        ))
                    })?;
                // The key decides the algorithm (no algorithm confusion).
                if key.alg != algorithm {
                    return Err(refused());
                }
                Ok(key)
            }
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.alg == algorithm);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Ok(key),
                    (None, _) => Err(refused()),
                    (Some(_), Some(_)) => Err(AuthError::UnknownKey(format!(
                        "the token names no kid and the JWKS file has several {algorithm:?} keys"
                    ))),
                }
            }
        }
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{:?} {}", k.alg, k.kid.as_deref().unwrap_or("(no kid)")))
            .collect();
        write!(f, "Jwks[{}]", keys.join(", "))
    }
}

impl JwksKey {
    /// The key, `None` for an encryption key, or why it cannot verify.
    fn from_jwk(jwk: &Jwk) -> Result<Option<JwksKey>, String> {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return Ok(None);
        }
        let b64 = |s: &str, what: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|e| format!("{what} is not base64url: {e}"))
        };
        // The algorithms a key of this type and curve can verify; the
        // first is the one implied when the key names none.
        let fits: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = b64(&rsa.n, "n")?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA key of about {bits} bits; use at least {MIN_RSA_BITS}"
                    ));
                }
                b64(&rsa.e, "e")?;
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ]
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                if okp.curve != EllipticCurve::Ed25519 {
                    return Err(format!(
                        "OKP curve {:?} is not supported; use Ed25519",
                        okp.curve
                    ));
                }
                // The verifier reads exactly 32 bytes.
                let x = b64(&okp.x, "x")?;
                if x.len() != 32 {
                    return Err(format!("Ed25519 x has {} bytes, not 32", x.len()));
                }
                &[Algorithm::EdDSA]
            }
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => &[Algorithm::ES256],
                EllipticCurve::P384 => &[Algorithm::ES384],
                ref other => return Err(format!("EC curve {other:?} is not supported")),
            },
            AlgorithmParameters::OctetKey(_) => {
                return Err(
                    "a shared secret (kty \"oct\") does not belong in a JWKS file; \
                     put an HS256 secret in --jwt-secret-file"
                        .into(),
                )
            }
        };
        let alg = match jwk.common.key_algorithm {
            None => fits[0],
            Some(KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256) => {
                return Ok(None)
            }
            Some(a) => a
                .to_string()
                .parse::<Algorithm>()
                .map_err(|_| format!("alg {a} is not a signature algorithm"))?,
        };
        if !fits.contains(&alg) {
            return Err(format!("alg {alg:?} does not fit a key of this type"));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        // Builds the verifier once, so a key it cannot use is refused now
        // rather than at each token.
        (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&alg, &key)
            .map_err(|e| format!("unusable {alg:?} key: {e}"))?;
        Ok(Some(JwksKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        }))
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
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

/// Verifies an HS256 JWT against `secret` at time `now` (seconds since the
/// Unix epoch).
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<Principal, AuthError> {
    verify_with(token, Some(secret), None, now)
}

/// Verifies a JWT at time `now` (seconds since the Unix epoch): HS256
/// with `secret`, or any algorithm of a key in `jwks`.
pub fn verify_with(
    token: &str,
    secret: Option<&[u8]>,
    jwks: Option<&Jwks>,
    now: u64,
) -> Result<Principal, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed(format!(
            "token of {} bytes is over the limit of {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    // The header is read here first: its `alg` and `kid` pick the key,
    // and `crit` (which the library ignores) is refused.
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|e| AuthError::Malformed(format!("header is not base64url: {e}")))?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|e| AuthError::Malformed(format!("header: {e}")))?;
    let hmac_key;
    let (key, alg) = match (header.alg.as_str(), secret, jwks) {
        ("HS256", Some(secret), _) => {
            hmac_key = DecodingKey::from_secret(secret);
            (&hmac_key, Algorithm::HS256)
        }
        (alg, _, Some(jwks)) if alg != "HS256" => {
            let key = jwks.select(alg, header.kid.as_deref())?;
            (&key.key, key.alg)
        }
        (alg, _, _) => return Err(AuthError::Algorithm(alg.chars().take(20).collect())),
    };
    if header.crit.is_some() {
        return Err(AuthError::Critical);
    }
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation(alg))
        .map_err(|e| refusal(e, &header.alg))?
        .claims;
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
    let read = parse_read(&claims.read)?;
    let write = parse_write(&claims.write)?;
    Ok(Principal {
        sub: claims.sub,
        exp: claims.exp,
        read: read.streams,
        views: read.views,
        write,
    })
}

/// What the library checks for `alg`: the signature with exactly that
/// algorithm, nothing about dates or audiences (checked above against the
/// given clock; `aud` is not used).
fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v
}

/// The refusal for an error of the library.
fn refusal(e: jsonwebtoken::errors::Error, alg: &str) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm(alg.chars().take(20).collect()),
        ErrorKind::Base64(e) => AuthError::Malformed(format!("not base64url: {e}")),
        // The header was read above, and the signature is checked before
        // the claims: a JSON error here is the claims'.
        ErrorKind::Json(e) => {
            AuthError::Malformed(format!("claims (need sub, exp, read, write): {e}"))
        }
        _ => AuthError::Malformed(e.to_string()),
    }
}

/// The principal a request speaks for: with no secret configured the open
/// principal (any token is ignored), else the verified token's, at `now`
/// (seconds since the Unix epoch).
pub fn authenticate(
    secret: Option<&Secret>,
    token: Option<&str>,
    now: u64,
) -> Result<Principal, AuthError> {
    authenticate_with(secret, None, token, now)
}

/// The principal a request speaks for: with neither a secret nor a JWKS
/// configured the open principal (any token is ignored), else the verified
/// token's, at `now` (seconds since the Unix epoch).
pub fn authenticate_with(
    secret: Option<&Secret>,
    jwks: Option<&Jwks>,
    token: Option<&str>,
    now: u64,
) -> Result<Principal, AuthError> {
    match (secret, jwks, token) {
        (None, None, _) => Ok(Principal::open()),
        (_, _, None) => Err(AuthError::Missing),
        (secret, jwks, Some(token)) => verify_with(token, secret.map(Secret::bytes), jwks, now),
    }
}

/// Signs claims with HS256 (for tests, tools and the `logsync-server token`
/// helper; production tokens come from the app's own auth service).
pub fn sign(claims_json: &str, secret: &[u8]) -> String {
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let head = enc(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = enc(claims_json.as_bytes());
    let message = format!("{head}.{body}");
    // HMAC accepts keys of any length; the claims are signed as given
    // (also ones that are not JSON, for tests of malformed tokens).
    match jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    ) {
        Ok(sig) => format!("{message}.{sig}"),
        Err(_) => String::new(),
    }
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

    #[test]
    fn a_view_grant_reads_its_view_and_never_the_stream() {
        let p = verify(
            &token(
                r#"{"sub":"u","exp":2000,"read":["todos/team-42#open","seats/*#count","*#pub.lic","full"],"write":["todos/team-42"]}"#,
            ),
            SECRET,
            1000,
        )
        .unwrap();
        // The exact grant: that view of that stream only.
        assert!(p.can_read_view(&s("todos/team-42"), "open"));
        assert!(!p.can_read_view(&s("todos/team-42"), "counts"));
        assert!(!p.can_read_view(&s("todos/team-42"), "Open"));
        assert!(!p.can_read_view(&s("todos/team-4"), "open"));
        assert!(!p.can_read_view(&s("todos/team-420"), "open"));
        assert!(!p.can_read(&s("todos/team-42")));
        // Writing is its own claim: the write grant does not widen reads.
        assert!(p.can_write(&s("todos/team-42")));
        // A prefix grant: the view of every matching stream.
        assert!(p.can_read_view(&s("seats/a"), "count"));
        assert!(p.can_read_view(&s("seats/"), "count"));
        assert!(!p.can_read_view(&s("seats"), "count"));
        assert!(!p.can_read_view(&s("seats/a"), "heldBy"));
        assert!(!p.can_read(&s("seats/a")));
        // `*#VIEW`: that view of every stream, and no stream.
        assert!(p.can_read_view(&s("anything/at/all"), "pub.lic"));
        assert!(!p.can_read(&s("anything/at/all")));
        // A reader of the whole stream reads every view of it.
        assert!(p.can_read(&s("full")));
        assert!(p.can_read_view(&s("full"), "open"));
        assert!(p.can_read_view(&s("full"), "whatever"));
        assert!(!p.can_read_view(&s("fullish"), "open"));
        // The open principal reads everything, views included.
        assert!(Principal::open().can_read_view(&s("x"), "open"));
        // Without any read claim, nothing.
        let none = verify(&token(r#"{"sub":"u","exp":2000}"#), SECRET, 1000).unwrap();
        assert!(!none.can_read_view(&s("todos/team-42"), "open"));
    }

    #[test]
    fn view_grants_that_do_not_parse_refuse_the_token() {
        let cases: &[(&str, &str)] = &[
            (r##""read":["todos#"]"##, "names no view"),
            (r##""read":["todos#*"]"##, "not supported"),
            (r##""read":["todos/*#*"]"##, "not supported"),
            (r##""read":["#open"]"##, "no stream pattern"),
            (r##""read":["todos#open#x"]"##, "'#' in its view name"),
            (r##""read":["todos#op*en"]"##, "'*' in its view name"),
            (r##""read":["todos#op\nen"]"##, "in its view name"),
            (r##""read":["to dos#open"]"##, "bad stream pattern"),
            (r##""read":["to*dos#open"]"##, "bad stream pattern"),
            (r##""read":["a*b*#open"]"##, "'*' in its stream pattern"),
            (r##""read":["to dos*#open"]"##, "' ' in its stream pattern"),
            (r##""read":["..#open"]"##, "bad stream pattern"),
            (r##""read":["a", "todos#"]"##, "todos#"),
            (r##""write":["todos#open"]"##, "views can only be read"),
            (r##""write":["todos*#open"]"##, "write entry"),
        ];
        for (claims, reason) in cases {
            let t = token(&format!(r#"{{"sub":"u","exp":2000,{claims}}}"#));
            let e = verify(&t, SECRET, 1000).unwrap_err();
            assert!(matches!(e, AuthError::Grant(_)), "{claims}: {e:?}");
            assert_eq!(e.code(), ErrorCode::Unauthorized);
            let message = e.to_string();
            assert!(message.contains(reason), "{claims}: {message}");
        }
        // The same check for tools that mint tokens.
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_grants(&list(&["a", "b*", "c#v", "d/*#v", "*#v"]), &list(&["a*"])).is_ok());
        assert!(check_grants(&list(&["c#*"]), &[]).is_err());
        assert!(check_grants(&[], &list(&["c#v"])).is_err());
        // The longest name a stream can have, as a prefix or exactly.
        let longest = "x".repeat(sync_core::MAX_STREAM_NAME_LEN);
        assert!(check_grants(&[format!("{longest}*#v"), format!("{longest}#v")], &[]).is_ok());
        assert!(check_grants(&[format!("{longest}x*#v")], &[]).is_err());
        // A long entry is quoted short.
        let long = format!("{}#*", "x".repeat(500));
        let e = check_grants(&[long], &[]).unwrap_err().to_string();
        assert!(e.len() < 400, "{e}");
        // Plain stream patterns are read as they always were: a `*` only
        // counts at the end, and an entry that names no stream grants
        // nothing but refuses nothing.
        let p = verify(
            &token(r#"{"sub":"u","exp":2000,"read":["a*b",""],"write":["*x"]}"#),
            SECRET,
            1000,
        )
        .unwrap();
        assert!(!p.can_read(&s("aab")) && !p.can_write(&s("x")));
    }
}

#[cfg(test)]
mod jwks_tests {
    use super::*;
    use jsonwebtoken::{encode, Header as JwtHeader};

    const JWKS: &str = include_str!("../tests/fixtures/jwks/jwks.json");
    const RSA_1: &[u8] = include_bytes!("../tests/fixtures/jwks/rsa-1.der");
    const RSA_2: &[u8] = include_bytes!("../tests/fixtures/jwks/rsa-2.der");
    const ED_1: &[u8] = include_bytes!("../tests/fixtures/jwks/ed-1.der");
    const STRANGER: &[u8] = include_bytes!("../tests/fixtures/jwks/rsa-stranger.der");
    const SECRET: &[u8] = b"test-secret-test-secret-test-sec";
    const CLAIMS: &str = r#"{"sub":"idp-user","exp":2000,"read":["a/*"],"write":["a/1"]}"#;

    fn jwks() -> Jwks {
        Jwks::from_json(JWKS.as_bytes()).unwrap()
    }

    fn signed(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = JwtHeader::new(alg);
        header.kid = kid.map(str::to_string);
        let claims: serde_json::Value = serde_json::from_str(CLAIMS).unwrap();
        encode(&header, &claims, key).unwrap()
    }

    fn rs256(kid: Option<&str>, der: &[u8]) -> String {
        signed(Algorithm::RS256, kid, &EncodingKey::from_rsa_der(der))
    }

    fn eddsa(kid: Option<&str>) -> String {
        signed(Algorithm::EdDSA, kid, &EncodingKey::from_ed_der(ED_1))
    }

    #[test]
    fn the_fixture_has_three_signature_keys_and_skips_the_encryption_key() {
        let set = jwks();
        assert_eq!(set.len(), 3);
        let shown = format!("{set:?}");
        assert!(shown.contains("RS256 rsa-2"), "{shown}");
        assert!(shown.contains("EdDSA ed-1"), "{shown}");
        assert!(!shown.contains("rsa-enc"), "{shown}");
    }

    #[test]
    fn rs256_and_eddsa_tokens_verify_with_the_key_their_kid_names() {
        let set = jwks();
        for token in [
            rs256(Some("rsa-1"), RSA_1),
            rs256(Some("rsa-2"), RSA_2),
            eddsa(Some("ed-1")),
            // Without a kid: the only key of the token's algorithm.
            eddsa(None),
        ] {
            let p = verify_with(&token, None, Some(&set), 1000).unwrap();
            assert_eq!(p.sub, "idp-user");
            assert!(p.can_read(&StreamName::new("a/x").unwrap()));
            assert!(p.can_write(&StreamName::new("a/1").unwrap()));
            assert!(!p.can_write(&StreamName::new("a/2").unwrap()));
        }
        // The dates are checked against the given clock, as for HS256.
        assert!(matches!(
            verify_with(&eddsa(Some("ed-1")), None, Some(&set), 3000),
            Err(AuthError::Expired { exp: 2000, .. })
        ));
    }

    #[test]
    fn a_kid_picks_one_key_and_an_unknown_kid_is_refused() {
        let set = jwks();
        // Signed by rsa-2 but naming rsa-1: rsa-1 checks it, and refuses.
        assert_eq!(
            verify_with(&rs256(Some("rsa-1"), RSA_2), None, Some(&set), 1000),
            Err(AuthError::Signature)
        );
        // A key outside the set, claiming a kid of the set.
        assert_eq!(
            verify_with(&rs256(Some("rsa-1"), STRANGER), None, Some(&set), 1000),
            Err(AuthError::Signature)
        );
        let unknown = verify_with(&rs256(Some("rsa-9"), RSA_1), None, Some(&set), 1000);
        assert!(
            matches!(unknown, Err(AuthError::UnknownKey(ref m)) if m.contains("rsa-9")),
            "{unknown:?}"
        );
        assert_eq!(unknown.unwrap_err().code(), ErrorCode::Unauthorized);
        // No kid, and two RS256 keys: which one is not guessed.
        assert!(matches!(
            verify_with(&rs256(None, RSA_1), None, Some(&set), 1000),
            Err(AuthError::UnknownKey(_))
        ));
        // The encryption key is not a verification key.
        assert!(matches!(
            verify_with(&rs256(Some("rsa-enc"), RSA_1), None, Some(&set), 1000),
            Err(AuthError::UnknownKey(_))
        ));
    }

    #[test]
    fn the_key_decides_the_algorithm() {
        let set = jwks();
        let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        // HS256 "signed" with the RSA public key's modulus as the secret
        // (the classic confusion): HS256 only ever uses the shared secret.
        let n = JWKS
            .split("\"n\": \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let confused = {
            let mut header = JwtHeader::new(Algorithm::HS256);
            header.kid = Some("rsa-1".into());
            let claims: serde_json::Value = serde_json::from_str(CLAIMS).unwrap();
            encode(&header, &claims, &EncodingKey::from_secret(n.as_bytes())).unwrap()
        };
        assert!(matches!(
            verify_with(&confused, None, Some(&set), 1000),
            Err(AuthError::Algorithm(_))
        ));
        // With a secret configured too, the token meets the secret, not the key.
        assert_eq!(
            verify_with(&confused, Some(SECRET), Some(&set), 1000),
            Err(AuthError::Signature)
        );
        // An EdDSA token naming an RSA key, and RS384 naming an RS256 key.
        let ed_as_rsa = eddsa(Some("rsa-1"));
        assert!(matches!(
            verify_with(&ed_as_rsa, None, Some(&set), 1000),
            Err(AuthError::Algorithm(_))
        ));
        let rs384 = signed(
            Algorithm::RS384,
            Some("rsa-1"),
            &EncodingKey::from_rsa_der(RSA_1),
        );
        assert!(matches!(
            verify_with(&rs384, None, Some(&set), 1000),
            Err(AuthError::Algorithm(_))
        ));
        // alg none, and algorithms nobody has heard of.
        let claims = rs256(Some("rsa-1"), RSA_1);
        let claims = claims.split('.').nth(1).unwrap();
        for alg in ["none", "None", "RS1", "HS256"] {
            let head = enc(format!(r#"{{"alg":"{alg}","kid":"rsa-1"}}"#).as_bytes());
            let token = format!("{head}.{claims}.");
            assert!(
                matches!(
                    verify_with(&token, None, Some(&set), 1000),
                    Err(AuthError::Algorithm(_))
                ),
                "{alg}"
            );
        }
        // HS256 tokens still verify with the secret next to a JWKS.
        let hs = sign(CLAIMS, SECRET);
        assert!(verify_with(&hs, Some(SECRET), Some(&set), 1000).is_ok());
        let secret = Secret::new(SECRET).unwrap();
        assert!(authenticate_with(Some(&secret), Some(&set), Some(&hs), 1000).is_ok());
        assert!(authenticate_with(None, Some(&set), Some(&hs), 1000).is_err());
        assert_eq!(
            authenticate_with(None, Some(&set), None, 1000),
            Err(AuthError::Missing)
        );
        let rs = rs256(Some("rsa-1"), RSA_1);
        assert!(authenticate_with(None, Some(&set), Some(&rs), 1000).is_ok());
        assert!(authenticate(Some(&secret), Some(&rs), 1000).is_err());
    }

    #[test]
    fn a_crit_header_is_refused_for_jwks_keys_too() {
        let mut header = JwtHeader::new(Algorithm::EdDSA);
        header.kid = Some("ed-1".into());
        let claims: serde_json::Value = serde_json::from_str(CLAIMS).unwrap();
        // The library's Header has no crit: write the header by hand and
        // sign it with the library.
        let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let head = enc(br#"{"alg":"EdDSA","kid":"ed-1","crit":["exp"]}"#);
        let body = enc(claims.to_string().as_bytes());
        let message = format!("{head}.{body}");
        let sig = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_ed_der(ED_1),
            Algorithm::EdDSA,
        )
        .unwrap();
        assert_eq!(
            verify_with(&format!("{message}.{sig}"), None, Some(&jwks()), 1000),
            Err(AuthError::Critical)
        );
    }

    #[test]
    fn a_jwks_that_cannot_be_used_is_refused_with_the_reason() {
        let rsa_1 = JWKS
            .split("\"n\": \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let cases: &[(&str, &str)] = &[
            ("", "not a JWKS document"),
            ("[]", "not a JWKS document"),
            (r#"{"keys": "x"}"#, "not a JWKS document"),
            (r#"{"keys": []}"#, "no signature keys"),
            (
                r#"{"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}"#,
                "no signature keys",
            ),
            (r#"{"keys": [{"kty": "XYZ"}]}"#, "key 0"),
            (
                r#"{"keys": [{"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"}]}"#,
                "key 0 (kid \"small\"): RSA key of about 24 bits",
            ),
            (
                r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
                "--jwt-secret-file",
            ),
            (
                r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AQID"}]}"#,
                "Ed25519 x has 3 bytes",
            ),
            (
                r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}"#,
                "x is not base64url",
            ),
        ];
        for (json, reason) in cases {
            let e = Jwks::from_json(json.as_bytes()).unwrap_err();
            assert!(e.contains(reason), "{json}: {e}");
        }
        // An RSA key that claims EdDSA, an unknown alg, a duplicate kid.
        let key = |extra: &str| format!(r#"{{"kty": "RSA", "n": "{rsa_1}", "e": "AQAB"{extra}}}"#);
        for (keys, reason) in [
            (key(r#", "alg": "EdDSA""#), "does not fit"),
            (key(r#", "alg": "XS999""#), "key 0"),
            (
                format!(r#"{},{}"#, key(r#", "kid": "k""#), key(r#", "kid": "k""#)),
                "key 1 (kid \"k\"): another key has the same kid",
            ),
        ] {
            let json = format!(r#"{{"keys": [{keys}]}}"#);
            let e = Jwks::from_json(json.as_bytes()).unwrap_err();
            assert!(e.contains(reason), "{json}: {e}");
        }
        let e = Jwks::from_file(Path::new("/nonexistent/jwks.json")).unwrap_err();
        assert!(e.contains("/nonexistent/jwks.json"), "{e}");
    }
}
