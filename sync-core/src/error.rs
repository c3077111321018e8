//! The core's one error type and the stable codes shared by every part of
//! Logsync (Rust, the wire protocol, HTTP JSON bodies and TypeScript).

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stable, SCREAMING_SNAKE error code. The same code names the same
/// failure in Rust, on the wire (`Reject`, `Error`), in HTTP JSON bodies
/// and in the JS `Error.code` property.
///
/// On the wire a code travels as its text, so a peer with a newer list
/// still decodes: a code this build does not know becomes
/// [`ErrorCode::Unknown`].
///
/// This enum is the one list of codes: [`ErrorCode::ALL`] and the text of
/// each code are derived from it, and the TypeScript union, the JS list
/// and the Elm module are generated from it (`sync-core/tests/generated.rs`;
/// after adding a variant run `LOGSYNC_BLESS=1 cargo test -p sync-core
/// --test generated`). New codes go at the end.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Debug,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumMessage,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The peer speaks another protocol version.
    ProtocolVersion,
    /// A frame or body could not be decoded.
    MalformedFrame,
    /// A frame or body is over the size limit.
    FrameTooLarge,
    /// The first frame of a connection was not `Hello`.
    HelloRequired,
    /// A second `Hello` on one connection.
    UnexpectedHello,
    /// A stream name breaks the naming rule.
    InvalidStream,
    /// A seq is zero or otherwise unusable.
    InvalidSeq,
    /// A client id is not 16 bytes / 32 hex digits.
    InvalidClientId,
    /// An offset is out of range.
    InvalidOffset,
    /// JSON that does not parse or has the wrong shape.
    InvalidJson,
    /// A request parameter is missing or wrong.
    InvalidRequest,
    /// The intent's seq is beyond the next one the server expects.
    SeqGap,
    /// A payload is over the size limit.
    PayloadTooLarge,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials, but not for this stream or client id.
    Forbidden,
    /// The WebSocket's `Origin` is not allowed.
    OriginForbidden,
    /// Too many intents per second.
    RateLimited,
    /// Too many subscriptions on one connection.
    TooManySubscriptions,
    /// Too many connections.
    TooManyConnections,
    /// Too many bytes queued for a connection that does not read.
    SlowConsumer,
    /// The connection was idle or did not answer pings.
    IdleTimeout,
    /// The server is shutting down.
    ShuttingDown,
    /// The server's storage failed.
    Storage,
    /// The intent was refused by the application's validation.
    Rejected,
    /// A batch of events skips an offset.
    OffsetGap,
    /// A batch of events repeats an offset already applied.
    OffsetRepeat,
    /// An event belongs to another stream.
    WrongStream,
    /// The reducer threw or could not decode a payload.
    Reducer,
    /// The server came back with another log epoch.
    EpochChanged,
    /// No such route or resource.
    NotFound,
    /// A bug: an invariant did not hold.
    Internal,
    /// A code this build does not know (sent by a newer peer).
    Unknown,
    /// Client storage is full (the browser refused a write for quota).
    QuotaExceeded,
    /// The store was closed; the call cannot complete.
    StoreClosed,
    /// A connection attempt failed: nothing answered, or something that
    /// is not a Logsync WebSocket endpoint did.
    ConnectFailed,
    /// A push reused a seq that already holds another intent (its payload
    /// differs from the one the seq was decided with). The message names
    /// the offset of the intent that holds the seq; the pushed intent is
    /// refused and nothing is stored.
    SeqReused,
    /// The events asked for were compacted away: the stream starts from
    /// its snapshot (`GET /v1/streams/{s}/snapshot`), and the message
    /// names the oldest event kept.
    Compacted,
    /// This client's fold of the log differs from the server's at the
    /// same offset (their state hashes differ): the reducer is not
    /// deterministic, or not the server's. The client takes the server's
    /// snapshot in place of its confirmed state and re-applies its
    /// pending intents on it; the message names the offset.
    Diverged,
    /// An intent was made under a schema version older than the oldest
    /// the server's reducer still upcasts (its `minSchemaVersion`): it is
    /// refused, for good. The app is older than the server supports and
    /// must be reloaded.
    SchemaTooOld,
    /// Something was made under a schema version newer than this side's
    /// reducer knows: a server refuses such an intent without deciding it
    /// (a newer node may take it), and a client stops applying such
    /// events, keeping its outbox, until the app is reloaded.
    SchemaTooNew,
    /// A queued intent outlived the time-to-live of its action type: it
    /// was withdrawn instead of being sent late.
    Expired,
    /// An online-only action was dispatched while the store was offline:
    /// nothing was queued.
    Offline,
}

impl ErrorCode {
    /// Every known code, in declaration order (derived from the enum, so
    /// no variant can be left out).
    pub const ALL: &'static [ErrorCode] = <ErrorCode as strum::VariantArray>::VARIANTS;

    /// The stable text of the code: the variant's name in SCREAMING_SNAKE.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// What the code means: the variant's doc comment, on one line (for
    /// generated docs in other languages).
    pub fn description(self) -> String {
        let doc = strum::EnumMessage::get_documentation(&self).unwrap_or_default();
        doc.split_whitespace()
            .collect::<alloc::vec::Vec<_>>()
            .join(" ")
    }

    /// Parses a code; text this build does not know gives [`ErrorCode::Unknown`].
    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .unwrap_or(ErrorCode::Unknown)
    }
}

impl FromStr for ErrorCode {
    type Err = core::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ErrorCode::parse(s))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ErrorCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error code")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ErrorCode, E> {
                Ok(ErrorCode::parse(v))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// Everything that can go wrong in the core. Each variant has a stable
/// [`ErrorCode`] (see [`CoreError::code`]) and a message that says what went
/// wrong and, where it helps, how to fix it.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A stream name breaks the naming rule.
    #[error("invalid stream name: {reason}")]
    InvalidStream {
        /// What is wrong with it.
        reason: String,
    },
    /// A seq is zero.
    #[error("invalid seq: {reason}")]
    InvalidSeq {
        /// What is wrong with it.
        reason: String,
    },
    /// A client id is malformed.
    #[error("invalid client id: {reason}")]
    InvalidClientId {
        /// What is wrong with it.
        reason: String,
    },
    /// A frame is over the size limit.
    #[error("frame of {len} bytes is over the limit of {limit} bytes")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A frame could not be decoded.
    #[error("malformed frame: {reason}")]
    MalformedFrame {
        /// What the decoder said.
        reason: String,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {got} is not supported; this side speaks version {supported}")]
    ProtocolVersion {
        /// The version the peer sent.
        got: u32,
        /// The version this build speaks.
        supported: u32,
    },
    /// An event batch skips offsets.
    #[error("events of stream {stream} skip from offset {have} to {got}; expected {expected}")]
    OffsetGap {
        /// Which stream.
        stream: String,
        /// The replica's confirmed offset.
        have: u64,
        /// The offset expected next.
        expected: u64,
        /// The offset received.
        got: u64,
    },
    /// An event batch repeats an offset already applied.
    #[error("events of stream {stream} repeat offset {got}; the replica is already at {have}")]
    OffsetRepeat {
        /// Which stream.
        stream: String,
        /// The replica's confirmed offset.
        have: u64,
        /// The offset received.
        got: u64,
    },
    /// An event or message for another stream reached this replica.
    #[error("message for stream {got} reached the replica of stream {expected}")]
    WrongStream {
        /// The replica's stream.
        expected: String,
        /// The message's stream.
        got: String,
    },
    /// No pending intent has this seq.
    #[error("no pending action has seq {seq}: it was confirmed, rejected or discarded already")]
    NotPending {
        /// The seq asked for.
        seq: u64,
    },
    /// A reducer failed.
    #[error("reducer failed: {message}")]
    Reducer {
        /// What the reducer said.
        message: String,
    },
    /// An event, intent or snapshot was made under a schema version this
    /// reducer does not know yet (a newer app wrote it).
    #[error("{what} was made under schema version {got}, newer than this app's version {supported}: reload the app")]
    SchemaTooNew {
        /// What: an event at an offset, a snapshot, an intent.
        what: String,
        /// Its schema version.
        got: u32,
        /// This reducer's.
        supported: u32,
    },
    /// Something was made under a schema version this reducer can no
    /// longer upcast or migrate.
    #[error("{what} was made under schema version {got}, older than this reducer takes ({supported}): {how}")]
    SchemaTooOld {
        /// What.
        what: String,
        /// Its schema version.
        got: u32,
        /// The oldest version this reducer takes.
        supported: u32,
        /// What to do.
        how: String,
    },
}

impl CoreError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::InvalidStream { .. } => ErrorCode::InvalidStream,
            CoreError::InvalidSeq { .. } => ErrorCode::InvalidSeq,
            CoreError::InvalidClientId { .. } => ErrorCode::InvalidClientId,
            CoreError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            CoreError::MalformedFrame { .. } => ErrorCode::MalformedFrame,
            CoreError::ProtocolVersion { .. } => ErrorCode::ProtocolVersion,
            CoreError::OffsetGap { .. } => ErrorCode::OffsetGap,
            CoreError::OffsetRepeat { .. } => ErrorCode::OffsetRepeat,
            CoreError::WrongStream { .. } => ErrorCode::WrongStream,
            CoreError::Reducer { .. } => ErrorCode::Reducer,
            CoreError::NotPending { .. } => ErrorCode::InvalidRequest,
            CoreError::SchemaTooNew { .. } => ErrorCode::SchemaTooNew,
            CoreError::SchemaTooOld { .. } => ErrorCode::SchemaTooOld,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = alloc::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), *code);
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_'));
        }
        assert_eq!(ErrorCode::parse("FROM_THE_FUTURE"), ErrorCode::Unknown);
    }
}
