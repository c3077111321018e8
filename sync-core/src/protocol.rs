//! The WebSocket wire protocol: versioned messages and their postcard codec.
//!
//! Every WebSocket binary frame carries exactly one message, encoded with
//! postcard. The first frame of each side carries [`PROTOCOL_VERSION`]
//! (`Hello` from the client, `Welcome` from the server); both are variant 0
//! and start with the version, so a peer of any version can read the
//! version of another before anything else and answer a mismatch with an
//! `Error { code: PROTOCOL_VERSION }` frame instead of a decoding failure.
//!
//! Rules that keep the format stable:
//! - variants are only ever appended, never reordered or removed;
//! - a field change is a new protocol version;
//! - `sync-core/fixtures/protocol-v5/` pins the bytes of every message
//!   (see the `golden` test), so a change to the format is always deliberate;
//!   `protocol-v4/` and `protocol-v3/` hold the previous versions', which
//!   servers still take (the crate feature `legacy` translates them).
//!
//! The view messages (`ClientMsg::Watch`, `ServerMsg::View`, …) exist
//! with the crate feature `views` (the server enables it): the browser
//! client never watches views over its socket, so its decoder leaves them
//! out. Their variants come last, so the indices of the others are the
//! same with or without the feature.
//!
//! Decoding never panics: every malformed input is a [`CoreError`] with
//! code `MALFORMED_FRAME`, `FRAME_TOO_LARGE` or `PROTOCOL_VERSION`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{CoreError, ErrorCode};
use crate::types::{
    ClientId, Epoch, Event, Offset, Seq, StreamName, MAX_STREAM_NAME_LEN, MAX_SUBJECT_LEN,
};

/// The protocol version this build speaks. Version 5 added the schema
/// version to intents, events, snapshots and checkpoints.
pub const PROTOCOL_VERSION: u32 = 5;

/// The oldest version a server still serves: a `Hello` of any version from
/// this one to [`PROTOCOL_VERSION`] is taken, and the server's `Welcome`
/// carries the client's version. Version 4 only added messages a client
/// has to ask for (`ClientMsg::Watch`), so a version-3 client is served
/// as a version-4 one and never sent them; a version-3 or 4 client's
/// frames are translated from and to version 5 (the crate feature
/// `legacy`), its intents are of schema version 1.
pub const MIN_PROTOCOL_VERSION: u32 = 3;

/// Default largest frame either side accepts, in bytes (1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Default largest payload a server accepts, in bytes (256 KiB). A client
/// that has not heard a `Welcome` yet assumes this limit.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 << 10;

// Sizes of the encoding. postcard writes integers as varints (7 bits a
// byte), byte strings and strings as a varint length and the bytes, a
// `[u8; 16]` as its 16 bytes and an enum variant as a varint index. The
// overheads below are upper bounds over every stream name, seq, offset and
// time; `tests/wire_size.rs` checks them against encoded frames.

/// Most bytes of a varint holding a `u64`.
const VARINT_U64: usize = 10;
/// Most bytes of a varint holding a length (lengths fit in a `u32`: no
/// frame is larger, see [`ServerMsg::Welcome`]).
const VARINT_LEN: usize = 5;
/// Most bytes of a varint holding a `u32` (a schema version).
const VARINT_U32: usize = 5;
/// A stream name and its length, at most.
const STREAM_FIELD: usize = varint_len(MAX_STREAM_NAME_LEN as u64) + MAX_STREAM_NAME_LEN;

/// Bytes an `Events` frame spends besides its events: variant, stream,
/// event count and head.
pub const EVENTS_FRAME_OVERHEAD: usize = 1 + STREAM_FIELD + VARINT_LEN + VARINT_U64;
/// Bytes an encoded event spends besides its payload and its subject's
/// text: offset, client id, seq, time, payload length, the subject's
/// option tag and length, seen and schema. An event's encoding is at most
/// this plus its payload plus its subject (at most [`MAX_SUBJECT_LEN`]).
pub const EVENT_OVERHEAD: usize = VARINT_U64
    + 16
    + VARINT_U64
    + VARINT_U64
    + VARINT_LEN
    + 1
    + varint_len(MAX_SUBJECT_LEN as u64)
    + VARINT_U64
    + VARINT_U32;
/// Bytes a `Push` frame spends besides its intents: variant, stream and
/// intent count.
pub const PUSH_FRAME_OVERHEAD: usize = 1 + STREAM_FIELD + VARINT_LEN;
/// Bytes an intent inside a `Push` spends besides its payload: seq,
/// payload length, seen and schema.
pub const PUSH_INTENT_OVERHEAD: usize = VARINT_U64 + VARINT_LEN + VARINT_U64 + VARINT_U32;

/// The largest payload that surely fits, alone, in a `Push` frame of at
/// most `max_frame_bytes` (whatever the stream and seq): the largest
/// action a client can send to a server announcing that frame limit.
pub const fn max_push_payload(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_sub(PUSH_FRAME_OVERHEAD + PUSH_INTENT_OVERHEAD)
}

/// The largest payload that surely fits, alone, in an `Events` frame of at
/// most `max_frame_bytes`.
pub const fn max_event_payload(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_sub(EVENTS_FRAME_OVERHEAD + EVENT_OVERHEAD + MAX_SUBJECT_LEN)
}

/// The frame limit a server announces in `Welcome`: its own frame limit,
/// lowered so that [`max_push_payload`] of it is exactly the largest
/// payload it accepts. A client derives its largest action from this one
/// number, so it refuses at dispatch what the server would refuse after
/// the action had been applied optimistically.
pub const fn welcome_frame_limit(max_frame_bytes: usize, max_payload_bytes: usize) -> u32 {
    let for_payload = max_payload_bytes.saturating_add(PUSH_FRAME_OVERHEAD + PUSH_INTENT_OVERHEAD);
    let limit = if for_payload < max_frame_bytes {
        for_payload
    } else {
        max_frame_bytes
    };
    if limit > u32::MAX as usize {
        u32::MAX
    } else {
        limit as u32
    }
}

/// One intent inside a `Push`: the client id comes from `Hello`, the
/// stream from the `Push`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PushIntent {
    /// The client's seq for this stream.
    pub seq: Seq,
    /// Opaque bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The confirmed offset the client had when it dispatched the intent
    /// (the reducer's `meta.seen`).
    pub seen: Offset,
    /// The schema version the intent was made under (the reducer's
    /// `meta.schema`, see [`crate::Reducer::schema_version`]).
    pub schema: u32,
}

/// How much of a server snapshot a client holds (see
/// [`ClientMsg::Subscribe`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SnapshotResume {
    /// The snapshot's offset.
    pub offset: Offset,
    /// Its hash ([`state_hash`]).
    pub hash: u64,
    /// The bytes received, from the start.
    pub at: u64,
}

/// Messages a client sends.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First frame of every connection.
    Hello {
        /// Must be [`PROTOCOL_VERSION`].
        version: u32,
        /// Who this client is.
        client_id: ClientId,
        /// A signed token, when the server requires one.
        token: Option<String>,
    },
    /// Follow a stream: the server sends every event after `after` (in
    /// batches), then live events. The server always answers with at least
    /// one `Events` frame (possibly empty) that carries the head.
    Subscribe {
        /// Which stream.
        stream: StreamName,
        /// The last offset the client has.
        after: Offset,
        /// Asks for the stream's snapshot: the server answers with its
        /// latest one when that is at or after `after` (not only when the
        /// events after `after` were compacted away), then the events
        /// after it. Sent with the part of a snapshot received before
        /// the last connection was cut (when the server's snapshot is
        /// still that one, same offset and hash, its parts continue from
        /// `at` instead of from the start), and, with `at` 0, by a client
        /// whose fold differed from a [`ServerMsg::Checkpoint`].
        resume: Option<SnapshotResume>,
    },
    /// Stop following a stream.
    Unsubscribe {
        /// Which stream.
        stream: StreamName,
    },
    /// Append intents, in seq order.
    Push {
        /// Where.
        stream: StreamName,
        /// What, in seq order.
        intents: Vec<PushIntent>,
    },
    /// Heartbeat; answered with `Pong` carrying the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Gives up an intent that cannot be pushed (it does not fit in one
    /// frame): the server decides `seq` as rejected with this code and
    /// message, exactly as if it had refused the intent itself, so the seq
    /// leaves no hole and a resend gets the same `Reject`. Same ordering
    /// rules as `Push` (a seq beyond the next is answered with `Gap`).
    Withdraw {
        /// Where.
        stream: StreamName,
        /// The intent's seq.
        seq: Seq,
        /// Why, as a stable code (e.g. `PAYLOAD_TOO_LARGE`).
        code: ErrorCode,
        /// Why, for people (at most a few hundred bytes are kept).
        message: String,
    },
    /// Follow a view of a stream's state (version 4): the server answers
    /// with a [`ServerMsg::View`] for the state at its head, then one for
    /// each commit that changes the result, or a [`ServerMsg::ViewError`]
    /// that ends the watch. `id` is the client's name for the watch (a
    /// second `Watch` with the same id replaces the first).
    #[cfg(feature = "views")]
    Watch {
        /// The client's name for this watch, echoed in every answer.
        id: u32,
        /// Which stream.
        stream: StreamName,
        /// The view's name, as the stream's reducer exports it.
        view: String,
        /// Its parameters, JSON text (`null` for none).
        params: String,
        /// The result the client holds already (from an earlier watch):
        /// the server answers with a patch against it, or
        /// [`ViewChange::Same`], when it still knows that result.
        known: Option<ViewKnown>,
    },
    /// Stop following a view (version 4).
    #[cfg(feature = "views")]
    Unwatch {
        /// The watch's id.
        id: u32,
    },
}

/// A view result a client holds (see [`ClientMsg::Watch`]).
#[cfg(feature = "views")]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ViewKnown {
    /// The offset the result was evaluated at.
    pub offset: Offset,
    /// The `hash` the server sent with it.
    pub hash: u64,
}

/// What a [`ServerMsg::View`] says about the result.
#[cfg(feature = "views")]
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ViewChange {
    /// The whole result, JSON text.
    Result(String),
    /// An RFC 6902 JSON Patch (JSON text) that turns the result the client
    /// holds (the one sent before on this watch, or its `known` one) into
    /// the new one.
    Patch(String),
    /// The result is the one the client holds (its `known` one).
    Same,
}

/// Messages a server sends.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ServerMsg {
    /// First frame of every connection, after a good `Hello`.
    Welcome {
        /// Must be [`PROTOCOL_VERSION`].
        version: u32,
        /// Which server node answered (for logs and metrics).
        server_id: String,
        /// The log's epoch; a change means another history.
        epoch: Epoch,
        /// The largest `Push` frame the server takes: its frame limit, or
        /// less, so that the largest payload that fits alone
        /// ([`max_push_payload`]) is the largest it accepts (see
        /// [`welcome_frame_limit`]). A client splits its pushes to stay
        /// under it and refuses larger actions at dispatch.
        max_frame_bytes: u32,
    },
    /// Events of a subscribed stream, dense and in order: catch-up batches
    /// and live events alike.
    Events {
        /// Which stream.
        stream: StreamName,
        /// Dense, ascending offsets; may be empty (then it only reports the head).
        events: Vec<Event>,
        /// The stream's head when the frame was made.
        head: Offset,
    },
    /// An intent is in the log (durably).
    Ack {
        /// Which stream.
        stream: StreamName,
        /// The intent's seq.
        seq: Seq,
        /// Where it is.
        offset: Offset,
        /// True when the seq had been decided before (a resend).
        duplicate: bool,
    },
    /// An intent was refused; it will never be in the log. A resend of the
    /// same seq gets the same answer.
    Reject {
        /// Which stream.
        stream: StreamName,
        /// The intent's seq.
        seq: Seq,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// A pushed seq is beyond the next one; resend from `expected_seq`.
    /// Intents after the gap in the same `Push` were not looked at.
    Gap {
        /// Which stream.
        stream: StreamName,
        /// The seq the server expects next from this client.
        expected_seq: Seq,
    },
    /// A fatal error; the server closes the connection after it.
    Error {
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// Answer to `Ping`.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// One part of a stream's snapshot, sent in answer to a `Subscribe`
    /// whose `after` is below the events the server still keeps (they
    /// were compacted away): the parts, in order (`at` = bytes before this
    /// part), make up the stream's state at `offset` as JSON text, whose
    /// [`state_hash`] is `hash`. The `Events` after `offset` follow. A
    /// client adopts the whole snapshot as its confirmed state at
    /// `offset`; a connection cut in between sends it again from the
    /// start.
    Snapshot {
        /// Which stream.
        stream: StreamName,
        /// The offset of the last event the state holds.
        offset: Offset,
        /// [`state_hash`] of the whole state text.
        hash: u64,
        /// Length of the whole state text, in bytes.
        total: u64,
        /// Bytes of the state text before this part.
        at: u64,
        /// This part.
        #[serde(with = "serde_bytes")]
        part: Vec<u8>,
        /// The schema version of the reducer that made the state.
        schema: u32,
    },
    /// The server stored a snapshot of the stream at `offset` whose state
    /// text has [`state_hash`] `hash`. Sent to a subscriber before the
    /// `Events` frame that holds `offset`: a client whose own confirmed
    /// fold at `offset` hashes otherwise has diverged from the server
    /// (`DIVERGED`) and asks for the snapshot (`Subscribe.resume`).
    Checkpoint {
        /// Which stream.
        stream: StreamName,
        /// The offset of the last event the snapshot holds.
        offset: Offset,
        /// [`state_hash`] of the snapshot's state text.
        hash: u64,
        /// The schema version of the reducer that made it: a client of
        /// another version does not compare its fold with it.
        schema: u32,
    },
    /// A watched view's result at `offset` (version 4, see
    /// [`ClientMsg::Watch`]).
    #[cfg(feature = "views")]
    View {
        /// The watch's id.
        id: u32,
        /// The offset of the last event the result reflects.
        offset: Offset,
        /// [`state_hash`] of the result's JSON text as the server wrote
        /// it: a client keeps it to name the result in a later `Watch`.
        hash: u64,
        /// The result, a patch to it, or nothing new.
        change: ViewChange,
    },
    /// A watch ended: the view does not exist (`NOT_FOUND`), may not be
    /// read (`FORBIDDEN`), failed or ran past its limit (`REDUCER`), or a
    /// limit was reached (`TOO_MANY_SUBSCRIPTIONS`). The connection and
    /// its other watches go on.
    #[cfg(feature = "views")]
    ViewError {
        /// The watch's id.
        id: u32,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

/// Bytes a `Snapshot` frame spends besides its part: variant, stream,
/// offset, hash, total, at, the part's length and the schema.
pub const SNAPSHOT_FRAME_OVERHEAD: usize =
    1 + STREAM_FIELD + 4 * VARINT_U64 + VARINT_LEN + VARINT_U32;

/// The hash of a state's JSON text that a snapshot carries (64-bit
/// FNV-1a): it checks that a snapshot arrived whole, and lets a client
/// compare its own fold with the server's. Not a defence against a
/// forger (the connection is).
pub fn state_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn check_len(bytes: &[u8], max_frame_bytes: usize) -> Result<(), CoreError> {
    if bytes.len() > max_frame_bytes {
        return Err(CoreError::FrameTooLarge {
            len: bytes.len(),
            limit: max_frame_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(CoreError::MalformedFrame {
            reason: "empty frame".into(),
        });
    }
    Ok(())
}

/// Reads the version of a variant-0 message (`Hello`/`Welcome`) without
/// decoding the rest, so a mismatch is reported as such even when the
/// remainder has another layout. `oldest`: the oldest version taken.
fn check_version_prefix(bytes: &[u8], oldest: u32) -> Result<(), CoreError> {
    if bytes.first() != Some(&0) {
        return Ok(());
    }
    match postcard::take_from_bytes::<u32>(&bytes[1..]) {
        Ok((v, _)) => check_version(v, oldest),
        Err(e) => Err(malformed(e)),
    }
}

fn check_version(v: u32, oldest: u32) -> Result<(), CoreError> {
    if (oldest..=PROTOCOL_VERSION).contains(&v) {
        Ok(())
    } else {
        Err(CoreError::ProtocolVersion {
            got: v,
            supported: PROTOCOL_VERSION,
        })
    }
}

fn malformed(e: postcard::Error) -> CoreError {
    CoreError::MalformedFrame {
        reason: e.to_string(),
    }
}

pub(crate) fn decode_frame<T: DeserializeOwned>(
    bytes: &[u8],
    max_frame_bytes: usize,
    oldest: u32,
) -> Result<T, CoreError> {
    check_len(bytes, max_frame_bytes)?;
    check_version_prefix(bytes, oldest)?;
    let (msg, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| match e {
        // Validation failures of domain types (stream names, seqs) come
        // through serde's custom error; keep their text.
        postcard::Error::SerdeDeCustom => CoreError::MalformedFrame {
            reason: "a field failed validation (stream name, seq or code)".into(),
        },
        other => malformed(other),
    })?;
    if !rest.is_empty() {
        return Err(CoreError::MalformedFrame {
            reason: alloc::format!("{} trailing bytes after the message", rest.len()),
        });
    }
    Ok(msg)
}

impl ClientMsg {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one frame; never panics. A `Hello` may carry any version
    /// from [`MIN_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`].
    pub fn decode(bytes: &[u8], max_frame_bytes: usize) -> Result<Self, CoreError> {
        let msg: Self = decode_frame(bytes, max_frame_bytes, MIN_PROTOCOL_VERSION)?;
        // The prefix check reads canonical encodings; a non-canonical tag
        // (e.g. a padded varint) must not smuggle another version past it.
        if let ClientMsg::Hello { version, .. } = &msg {
            check_version(*version, MIN_PROTOCOL_VERSION)?;
        }
        Ok(msg)
    }

    /// A `Hello` of this build's version.
    pub fn hello(client_id: ClientId, token: Option<String>) -> Self {
        ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            client_id,
            token,
        }
    }
}

impl ServerMsg {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one frame; never panics.
    pub fn decode(bytes: &[u8], max_frame_bytes: usize) -> Result<Self, CoreError> {
        let msg: Self = decode_frame(bytes, max_frame_bytes, PROTOCOL_VERSION)?;
        if let ServerMsg::Welcome { version, .. } = &msg {
            check_version(*version, PROTOCOL_VERSION)?;
        }
        Ok(msg)
    }

    /// An `Error` frame for a core error.
    pub fn error(e: &CoreError) -> Self {
        ServerMsg::Error {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising into a Vec cannot fail for these types: every field is a
    // plain integer, byte string, string, option or sequence of known length.
    postcard::to_allocvec(msg).unwrap_or_default()
}

/// Encodes an `Events` frame from events already encoded, so the server
/// can encode each event once and reuse its bytes for every subscriber.
/// The output is byte-for-byte what [`ServerMsg::encode`] makes.
pub fn encode_events_frame(stream: &StreamName, encoded_events: &[&[u8]], head: Offset) -> Vec<u8> {
    encode_events_frame_with_ranges(stream, encoded_events, head).0
}

/// [`encode_events_frame`], and where each event's encoding lies inside
/// the frame (one range per event, in order, back to back), so a frame for
/// a subscriber that needs only some of the events can copy them out.
pub fn encode_events_frame_with_ranges(
    stream: &StreamName,
    encoded_events: &[&[u8]],
    head: Offset,
) -> (Vec<u8>, Vec<Range<usize>>) {
    let total: usize = encoded_events.iter().map(|e| e.len()).sum();
    let mut out = Vec::with_capacity(total + EVENTS_FRAME_OVERHEAD);
    out.push(1); // variant index of ServerMsg::Events
    push_varint(&mut out, stream.as_str().len() as u64);
    out.extend_from_slice(stream.as_str().as_bytes());
    push_varint(&mut out, encoded_events.len() as u64);
    let mut ranges = Vec::with_capacity(encoded_events.len());
    for e in encoded_events {
        let start = out.len();
        out.extend_from_slice(e);
        ranges.push(start..out.len());
    }
    push_varint(&mut out, head.0);
    (out, ranges)
}

/// An `Events` frame of `events`, each encoded straight into the frame
/// (no buffer per event, the frame's size reserved up front): what a
/// catch-up page costs to send. Byte-for-byte what [`ServerMsg::encode`]
/// makes.
pub fn encode_events_frame_of(stream: &StreamName, events: &[Event], head: Offset) -> Vec<u8> {
    let bound: usize = events
        .iter()
        .map(|e| e.payload.len() + e.subject.as_ref().map_or(0, String::len) + EVENT_OVERHEAD)
        .sum();
    let mut out = Vec::with_capacity(bound + EVENTS_FRAME_OVERHEAD);
    out.push(1); // variant index of ServerMsg::Events
    push_varint(&mut out, stream.as_str().len() as u64);
    out.extend_from_slice(stream.as_str().as_bytes());
    push_varint(&mut out, events.len() as u64);
    for e in events {
        // Serialising into a Vec cannot fail for an event (see `encode`).
        out = postcard::to_extend(e, out).unwrap_or_default();
    }
    push_varint(&mut out, head.0);
    out
}

/// Encodes one event as it appears inside an `Events` frame.
pub fn encode_event(event: &Event) -> Vec<u8> {
    encode(event)
}

/// Bytes of `v` as a varint.
const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamName {
        StreamName::new("todos/team-42").unwrap()
    }

    #[test]
    fn round_trip_and_limits() {
        let msg = ClientMsg::Push {
            stream: stream(),
            intents: alloc::vec![PushIntent {
                seen: crate::types::Offset::ZERO,
                seq: Seq::FIRST,
                payload: b"{}".to_vec(),
                schema: 1,
            }],
        };
        let bytes = msg.encode();
        assert_eq!(ClientMsg::decode(&bytes, 1024).unwrap(), msg);
        let e = ClientMsg::decode(&bytes, 3).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
        let e = ClientMsg::decode(&[], 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedFrame);
        let mut extra = bytes.clone();
        extra.push(0);
        let e = ClientMsg::decode(&extra, 1024).unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
    }

    #[test]
    fn version_mismatch_is_reported_as_such() {
        // A future Hello: version 6 and a layout this build does not know.
        let bytes = [0u8, 6, 0xff, 0xff, 0xff];
        let e = ClientMsg::decode(&bytes, 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProtocolVersion);
        assert!(e.to_string().contains("version 6"), "{e}");
        let e = ServerMsg::decode(&bytes, 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProtocolVersion);
        // A version-1 peer (intents without `seen`, events without
        // subject and seen) is refused the same way, not misread.
        let v1 = include_bytes!("../fixtures/protocol-v1/client-hello.bin");
        let e = ClientMsg::decode(v1, 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProtocolVersion);
        assert!(e.to_string().contains("version 1"), "{e}");
        // So is a version-2 peer (no `Checkpoint`).
        let v2 = include_bytes!("../fixtures/protocol-v2/client-hello.bin");
        let e = ClientMsg::decode(v2, 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProtocolVersion);
        assert!(e.to_string().contains("version 2"), "{e}");
        // A version-3 client is served (its Hello decodes); a client of
        // this version takes only a Welcome of its own version.
        let v3 = include_bytes!("../fixtures/protocol-v3/client-hello.bin");
        assert!(matches!(
            ClientMsg::decode(v3, 1024),
            Ok(ClientMsg::Hello { version: 3, .. })
        ));
        let v3 = include_bytes!("../fixtures/protocol-v3/server-welcome.bin");
        let e = ServerMsg::decode(v3, 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ProtocolVersion);
        assert!(e.to_string().contains("version 3"), "{e}");
    }

    #[test]
    fn invalid_fields_are_refused() {
        // Subscribe with an invalid stream name ("a b").
        let bytes = [1u8, 3, b'a', b' ', b'b', 0];
        let e = ClientMsg::decode(&bytes, 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedFrame);
        // Push with seq 0.
        let bytes = [3u8, 1, b'a', 1, 0, 0];
        let e = ClientMsg::decode(&bytes, 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedFrame);
        // Unknown variant.
        let e = ClientMsg::decode(&[9], 1024).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedFrame);
    }

    #[test]
    fn events_frame_from_preencoded_events_matches() {
        let events: Vec<Event> = (1..=3)
            .map(|i| Event {
                subject: None,
                seen: crate::types::Offset::ZERO,
                offset: Offset(i),
                client_id: ClientId([i as u8; 16]),
                seq: Seq::new(i).unwrap(),
                time_ms: 1_700_000_000_000 + i,
                payload: alloc::format!("{{\"n\":{i}}}").into_bytes(),
                schema: 1,
            })
            .collect();
        let msg = ServerMsg::Events {
            stream: stream(),
            events: events.clone(),
            head: Offset(300),
        };
        let pre: Vec<Vec<u8>> = events.iter().map(encode_event).collect();
        let refs: Vec<&[u8]> = pre.iter().map(|v| v.as_slice()).collect();
        assert_eq!(
            encode_events_frame(&stream(), &refs, Offset(300)),
            msg.encode()
        );
        assert_eq!(
            encode_events_frame_of(&stream(), &events, Offset(300)),
            msg.encode()
        );
    }

    #[test]
    fn events_frame_of_events_matches_with_subjects_large_numbers_and_none() {
        let events: Vec<Event> = [0u64, 1, 127, 128, 300, u64::from(u32::MAX) + 7]
            .iter()
            .enumerate()
            .map(|(i, &n)| Event {
                subject: (i % 2 == 1).then(|| alloc::format!("user-{n}-é")),
                seen: Offset(n),
                offset: Offset(n + 1),
                client_id: ClientId([i as u8; 16]),
                seq: Seq::new(n + 1).unwrap(),
                time_ms: n.wrapping_mul(1_000_003),
                payload: alloc::vec![b'x'; (n % 300) as usize],
                schema: (n % 7) as u32 + 1,
            })
            .collect();
        for k in [0, 1, events.len()] {
            let msg = ServerMsg::Events {
                stream: stream(),
                events: events[..k].to_vec(),
                head: Offset(u64::MAX - k as u64),
            };
            assert_eq!(
                encode_events_frame_of(&stream(), &events[..k], Offset(u64::MAX - k as u64)),
                msg.encode(),
                "{k} events"
            );
        }
    }
}
