//! Domain types: streams, offsets, client ids, sequence numbers, events
//! and epochs. Every constructor that takes outside input
//! validates it and answers with a typed [`CoreError`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 200;

/// The name of a stream: 1-200 bytes of `[A-Za-z0-9._~:/-]`.
///
/// A stream is the unit of ordering, subscription and authorisation. The
/// allowed characters are all URL-safe except `/`, which is
/// percent-encoded when the name is one path segment of an HTTP URL.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl StreamName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, CoreError> {
        let name = name.into();
        validate_stream_name(&name)?;
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the stream-name rule without allocating.
pub fn validate_stream_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() {
        return Err(CoreError::InvalidStream {
            reason: "stream name is empty".into(),
        });
    }
    if name.len() > MAX_STREAM_NAME_LEN {
        return Err(CoreError::InvalidStream {
            reason: alloc::format!(
                "stream name is {} bytes; the limit is {MAX_STREAM_NAME_LEN}",
                name.len()
            ),
        });
    }
    if name == "." || name == ".." {
        // As a URL path segment these are normalised away by HTTP clients,
        // so such a stream could never be reached over the HTTP API.
        return Err(CoreError::InvalidStream {
            reason: alloc::format!(
                "stream name \"{name}\" is reserved (it is a relative path segment)"
            ),
        });
    }
    if let Some((i, c)) = name.char_indices().find(|(_, c)| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | ':' | '/' | '-'))
    }) {
        return Err(CoreError::InvalidStream {
            reason: alloc::format!(
                "stream name has '{c}' at byte {i}; allowed are A-Z a-z 0-9 . _ ~ : / -"
            ),
        });
    }
    Ok(())
}

impl TryFrom<String> for StreamName {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&str> for StreamName {
    type Error = CoreError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl FromStr for StreamName {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl From<StreamName> for String {
    fn from(value: StreamName) -> Self {
        value.0
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamName(\"{}\")", self.0)
    }
}

/// An event's position in its stream: 1, 2, 3, … dense, assigned by the
/// server. `Offset(0)` is "before the first event".
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// Before the first event.
    pub const ZERO: Offset = Offset(0);

    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0.saturating_add(1))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A client's sequence number for one stream: 1, 2, 3, … per
/// (client, stream). Zero is not a valid seq.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Seq(u64);

impl Seq {
    /// The first seq of every (client, stream).
    pub const FIRST: Seq = Seq(1);

    /// Validates `n >= 1`.
    pub fn new(n: u64) -> Result<Self, CoreError> {
        if n == 0 {
            Err(CoreError::InvalidSeq {
                reason: "seq starts at 1".into(),
            })
        } else {
            Ok(Seq(n))
        }
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The seq after this one.
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
}

impl TryFrom<u64> for Seq {
    type Error = CoreError;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Seq::new(value)
    }
}

impl From<Seq> for u64 {
    fn from(value: Seq) -> Self {
        value.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One installation of the SDK: 16 random bytes made once and kept.
/// Written as 32 lowercase hex digits in JSON and URLs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub [u8; 16]);

impl ClientId {
    /// Wraps 16 bytes (the caller brings the randomness).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ClientId(bytes)
    }

    /// Parses 32 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::InvalidClientId {
            reason: alloc::format!("expected 32 hex digits, got \"{}\"", truncate(s, 64)),
        };
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(bad)?;
            let lo = hex_val(pair[1]).ok_or_else(bad)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(ClientId(out))
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(32);
        for byte in self.0 {
            s.push(DIGITS[(byte >> 4) as usize] as char);
            s.push(DIGITS[(byte & 0xf) as usize] as char);
        }
        s
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // (`get`, not indexing: the boundary is checked above, and indexing
    // would bring its panic message's code into the browser's module.)
    s.get(..end).unwrap_or("")
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({})", self.to_hex())
    }
}

impl FromStr for ClientId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientId::from_hex(s)
    }
}

/// An accepted intent, at its place in the stream.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Position in the stream, from 1.
    pub offset: Offset,
    /// The client whose intent this was.
    pub client_id: ClientId,
    /// That client's seq for the intent.
    pub seq: Seq,
    /// The server's clock when it accepted the intent, ms since the Unix epoch.
    pub time_ms: u64,
    /// The intent's payload, unchanged.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Who sent it: the `sub` of the token the server verified for the
    /// connection (`None` with authentication off). No client can set it.
    pub subject: Option<String>,
    /// The confirmed offset the sending client had when it dispatched the
    /// intent (what its user had seen), as the intent carried it.
    pub seen: Offset,
    /// The schema version the intent was made under (see
    /// [`crate::Reducer::schema_version`]); 1 for intents of clients older
    /// than protocol version 5.
    pub schema: u32,
}

/// The longest subject (a token's `sub`) the server accepts, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;

/// The epoch of a log: a random id made when its storage was created. A
/// client that sees another epoch than the one it stored must not mix the
/// two histories.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub String);

impl Epoch {
    /// Makes an epoch from 16 random bytes (the caller brings the randomness).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Epoch(ClientId(bytes).to_hex())
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Epoch {
    fn from(value: &str) -> Self {
        Epoch(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert!(StreamName::new("todos/team-42").is_ok());
        assert!(StreamName::new("a.b_c~d:e/f-G9").is_ok());
        assert!(StreamName::new("x".repeat(200)).is_ok());
        assert!(StreamName::new("...").is_ok());
        assert!(StreamName::new("a/../b").is_ok());
        for bad in ["", "has space", "ü", "a?b", "a#b", "a%2F", ".", ".."] {
            let e = StreamName::new(bad).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidStream, "{bad:?}");
        }
        let e = StreamName::new("x".repeat(201)).unwrap_err();
        assert!(e.to_string().contains("201 bytes"), "{e}");
    }

    #[test]
    fn seq_starts_at_one() {
        assert!(Seq::new(0).is_err());
        assert_eq!(Seq::new(1).unwrap(), Seq::FIRST);
        assert_eq!(Seq::FIRST.next().get(), 2);
    }

    #[test]
    fn client_id_hex_round_trip() {
        let id = ClientId([0xab; 16]);
        assert_eq!(id.to_hex(), "ab".repeat(16));
        assert_eq!(ClientId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(ClientId::from_hex(&"AB".repeat(16)).unwrap(), id);
        assert!(ClientId::from_hex("abc").is_err());
        assert!(ClientId::from_hex(&"zz".repeat(16)).is_err());
        // Multi-byte characters must not panic the parser.
        assert!(ClientId::from_hex(&"é".repeat(16)).is_err());
    }
    #[test]
    fn sort_by_seq_sorts_stably() {
        let s = |n: u64| Seq::new(n).unwrap();
        let mut v = vec![
            (s(3), 'a'),
            (s(1), 'b'),
            (s(3), 'c'),
            (s(2), 'd'),
            (s(1), 'e'),
        ];
        sort_by_seq(&mut v, |(q, _)| *q);
        assert_eq!(
            v,
            vec![
                (s(1), 'b'),
                (s(1), 'e'),
                (s(2), 'd'),
                (s(3), 'a'),
                (s(3), 'c')
            ]
        );
        let mut rev: Vec<Seq> = (1..=200).rev().map(s).collect();
        sort_by_seq(&mut rev, |q| *q);
        assert!(rev.windows(2).all(|w| w[0] < w[1]));
        sort_by_seq(&mut Vec::<Seq>::new(), |q| *q);
    }
}

/// Sorts `items` by seq, stably. An insertion sort: the lists sorted here
/// (outbox entries, pending intents) come almost always in seq order
/// already, where it is linear; and it costs the browser module a few
/// dozen bytes where the standard library's sorts cost kilobytes.
pub fn sort_by_seq<T>(items: &mut [T], seq: impl Fn(&T) -> Seq) {
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && seq(&items[j - 1]) > seq(&items[j]) {
            items.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// One stored outbox entry: an intent with its seq, written by any tab of
/// a client (see the `outbox` module).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OutboxEntry {
    /// Its seq (in the numbering of the stored epoch).
    pub seq: Seq,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Discarded by the app: withdrawn, never pushed.
    pub discarded: bool,
    /// The confirmed offset of the replica that dispatched it, then.
    pub seen: Offset,
    /// The dispatching device's clock then, ms since the Unix epoch.
    pub time_ms: u64,
    /// The schema version it was made under.
    pub schema: u32,
    /// When it stops being worth sending, ms since the Unix epoch (the
    /// time-to-live of its action type after `time_ms`); 0: never. An
    /// intent not pushed by then is withdrawn (`EXPIRED`).
    pub expires_ms: u64,
}

impl OutboxEntry {
    /// An entry not discarded, with `seen` 0 and `time_ms` 0 (an intent
    /// dispatched before anything was confirmed, at the epoch's start),
    /// of schema version 1, never expiring.
    pub fn new(seq: Seq, payload: Vec<u8>) -> OutboxEntry {
        OutboxEntry {
            seq,
            payload,
            discarded: false,
            seen: Offset::ZERO,
            time_ms: 0,
            schema: 1,
            expires_ms: 0,
        }
    }
}
