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
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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
}

impl ErrorCode {
    /// Every known code, for tests and for generating the TypeScript union.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::ProtocolVersion,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::HelloRequired,
        ErrorCode::UnexpectedHello,
        ErrorCode::InvalidStream,
        ErrorCode::InvalidSeq,
        ErrorCode::InvalidClientId,
        ErrorCode::InvalidOffset,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::SeqGap,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::OriginForbidden,
        ErrorCode::RateLimited,
        ErrorCode::TooManySubscriptions,
        ErrorCode::TooManyConnections,
        ErrorCode::SlowConsumer,
        ErrorCode::IdleTimeout,
        ErrorCode::ShuttingDown,
        ErrorCode::Storage,
        ErrorCode::Rejected,
        ErrorCode::OffsetGap,
        ErrorCode::OffsetRepeat,
        ErrorCode::WrongStream,
        ErrorCode::Reducer,
        ErrorCode::EpochChanged,
        ErrorCode::NotFound,
        ErrorCode::Internal,
        ErrorCode::Unknown,
        ErrorCode::QuotaExceeded,
        ErrorCode::StoreClosed,
        ErrorCode::ConnectFailed,
        ErrorCode::SeqReused,
    ];

    /// The stable text of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProtocolVersion => "PROTOCOL_VERSION",
            ErrorCode::MalformedFrame => "MALFORMED_FRAME",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::HelloRequired => "HELLO_REQUIRED",
            ErrorCode::UnexpectedHello => "UNEXPECTED_HELLO",
            ErrorCode::InvalidStream => "INVALID_STREAM",
            ErrorCode::InvalidSeq => "INVALID_SEQ",
            ErrorCode::InvalidClientId => "INVALID_CLIENT_ID",
            ErrorCode::InvalidOffset => "INVALID_OFFSET",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::SeqGap => "SEQ_GAP",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::OriginForbidden => "ORIGIN_FORBIDDEN",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::IdleTimeout => "IDLE_TIMEOUT",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::Storage => "STORAGE",
            ErrorCode::Rejected => "REJECTED",
            ErrorCode::OffsetGap => "OFFSET_GAP",
            ErrorCode::OffsetRepeat => "OFFSET_REPEAT",
            ErrorCode::WrongStream => "WRONG_STREAM",
            ErrorCode::Reducer => "REDUCER",
            ErrorCode::EpochChanged => "EPOCH_CHANGED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::StoreClosed => "STORE_CLOSED",
            ErrorCode::ConnectFailed => "CONNECT_FAILED",
            ErrorCode::SeqReused => "SEQ_REUSED",
        }
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
        stream: StreamName,
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
        stream: StreamName,
        /// The replica's confirmed offset.
        have: u64,
        /// The offset received.
        got: u64,
    },
    /// An event or message for another stream reached this replica.
    #[error("message for stream {got} reached the replica of stream {expected}")]
    WrongStream {
        /// The replica's stream.
        expected: StreamName,
        /// The message's stream.
        got: StreamName,
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
}

use crate::types::StreamName;

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
