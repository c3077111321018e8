//! Frames of protocol versions 3 and 4, for a server that still serves
//! clients of those versions (crate feature `legacy`): their frames are
//! translated to and from version 5 at the connection's edge, so
//! everything behind it speaks one version.
//!
//! Version 5 added `schema` to `PushIntent`, `Event`, `Snapshot` and
//! `Checkpoint` and changed nothing else; a version-4 frame is version 3's
//! plus the view messages, which a version-3 client never sends. An
//! intent of an older client is of schema version 1 (the only version
//! before the field existed); its events reach it without their schema.
//!
//! The enums below mirror [`ClientMsg`] and [`ServerMsg`] variant for
//! variant, in the same order (postcard writes a variant's index).

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, ErrorCode};
use crate::protocol::{
    ClientMsg, PushIntent, ServerMsg, SnapshotResume, ViewChange, ViewKnown, MIN_PROTOCOL_VERSION,
};
use crate::types::{ClientId, Epoch, Event, Offset, Seq, StreamName};

/// The newest version these frames are.
pub const LEGACY_VERSION: u32 = 4;

#[derive(Serialize, Deserialize)]
struct PushIntentV4 {
    seq: Seq,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    seen: Offset,
}

#[derive(Serialize, Deserialize)]
struct EventV4 {
    offset: Offset,
    client_id: ClientId,
    seq: Seq,
    time_ms: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    subject: Option<String>,
    seen: Offset,
}

#[derive(Serialize, Deserialize)]
enum ClientMsgV4 {
    Hello {
        version: u32,
        client_id: ClientId,
        token: Option<String>,
    },
    Subscribe {
        stream: StreamName,
        after: Offset,
        resume: Option<SnapshotResume>,
    },
    Unsubscribe {
        stream: StreamName,
    },
    Push {
        stream: StreamName,
        intents: Vec<PushIntentV4>,
    },
    Ping {
        nonce: u64,
    },
    Withdraw {
        stream: StreamName,
        seq: Seq,
        code: ErrorCode,
        message: String,
    },
    Watch {
        id: u32,
        stream: StreamName,
        view: String,
        params: String,
        known: Option<ViewKnown>,
    },
    Unwatch {
        id: u32,
    },
}

#[derive(Serialize, Deserialize)]
enum ServerMsgV4 {
    Welcome {
        version: u32,
        server_id: String,
        epoch: Epoch,
        max_frame_bytes: u32,
    },
    Events {
        stream: StreamName,
        events: Vec<EventV4>,
        head: Offset,
    },
    Ack {
        stream: StreamName,
        seq: Seq,
        offset: Offset,
        duplicate: bool,
    },
    Reject {
        stream: StreamName,
        seq: Seq,
        code: ErrorCode,
        message: String,
    },
    Gap {
        stream: StreamName,
        expected_seq: Seq,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong {
        nonce: u64,
    },
    Snapshot {
        stream: StreamName,
        offset: Offset,
        hash: u64,
        total: u64,
        at: u64,
        #[serde(with = "serde_bytes")]
        part: Vec<u8>,
    },
    Checkpoint {
        stream: StreamName,
        offset: Offset,
        hash: u64,
    },
    View {
        id: u32,
        offset: Offset,
        hash: u64,
        change: ViewChange,
    },
    ViewError {
        id: u32,
        code: ErrorCode,
        message: String,
    },
}

/// Decodes a frame of a version-3 or 4 client as the version-5 message it
/// means (its intents of schema version 1). Never panics; the errors are
/// [`ClientMsg::decode`]'s.
pub fn decode_client(bytes: &[u8], max_frame_bytes: usize) -> Result<ClientMsg, CoreError> {
    let msg: ClientMsgV4 =
        crate::protocol::decode_frame(bytes, max_frame_bytes, MIN_PROTOCOL_VERSION)?;
    Ok(match msg {
        ClientMsgV4::Hello {
            version,
            client_id,
            token,
        } => {
            if !(MIN_PROTOCOL_VERSION..=LEGACY_VERSION).contains(&version) {
                return Err(CoreError::ProtocolVersion {
                    got: version,
                    supported: crate::protocol::PROTOCOL_VERSION,
                });
            }
            ClientMsg::Hello {
                version,
                client_id,
                token,
            }
        }
        ClientMsgV4::Subscribe {
            stream,
            after,
            resume,
        } => ClientMsg::Subscribe {
            stream,
            after,
            resume,
        },
        ClientMsgV4::Unsubscribe { stream } => ClientMsg::Unsubscribe { stream },
        ClientMsgV4::Push { stream, intents } => ClientMsg::Push {
            stream,
            intents: intents
                .into_iter()
                .map(|i| PushIntent {
                    seq: i.seq,
                    payload: i.payload,
                    seen: i.seen,
                    schema: 1,
                })
                .collect(),
        },
        ClientMsgV4::Ping { nonce } => ClientMsg::Ping { nonce },
        ClientMsgV4::Withdraw {
            stream,
            seq,
            code,
            message,
        } => ClientMsg::Withdraw {
            stream,
            seq,
            code,
            message,
        },
        ClientMsgV4::Watch {
            id,
            stream,
            view,
            params,
            known,
        } => ClientMsg::Watch {
            id,
            stream,
            view,
            params,
            known,
        },
        ClientMsgV4::Unwatch { id } => ClientMsg::Unwatch { id },
    })
}

/// Encodes `msg` as a version-4 frame (also what a version-3 client
/// reads): the schema versions are left out.
pub fn encode_server(msg: ServerMsg) -> Vec<u8> {
    let old = match msg {
        ServerMsg::Welcome {
            version,
            server_id,
            epoch,
            max_frame_bytes,
        } => ServerMsgV4::Welcome {
            version,
            server_id,
            epoch,
            max_frame_bytes,
        },
        ServerMsg::Events {
            stream,
            events,
            head,
        } => ServerMsgV4::Events {
            stream,
            events: events.into_iter().map(event_v4).collect(),
            head,
        },
        ServerMsg::Ack {
            stream,
            seq,
            offset,
            duplicate,
        } => ServerMsgV4::Ack {
            stream,
            seq,
            offset,
            duplicate,
        },
        ServerMsg::Reject {
            stream,
            seq,
            code,
            message,
        } => ServerMsgV4::Reject {
            stream,
            seq,
            code,
            message,
        },
        ServerMsg::Gap {
            stream,
            expected_seq,
        } => ServerMsgV4::Gap {
            stream,
            expected_seq,
        },
        ServerMsg::Error { code, message } => ServerMsgV4::Error { code, message },
        ServerMsg::Pong { nonce } => ServerMsgV4::Pong { nonce },
        ServerMsg::Snapshot {
            stream,
            offset,
            hash,
            total,
            at,
            part,
            ..
        } => ServerMsgV4::Snapshot {
            stream,
            offset,
            hash,
            total,
            at,
            part,
        },
        ServerMsg::Checkpoint {
            stream,
            offset,
            hash,
            ..
        } => ServerMsgV4::Checkpoint {
            stream,
            offset,
            hash,
        },
        ServerMsg::View {
            id,
            offset,
            hash,
            change,
        } => ServerMsgV4::View {
            id,
            offset,
            hash,
            change,
        },
        ServerMsg::ViewError { id, code, message } => ServerMsgV4::ViewError { id, code, message },
    };
    postcard::to_allocvec(&old).unwrap_or_default()
}

/// A version-5 frame (one the server encoded once for every subscriber)
/// as the version-4 frame a client of version 3 or 4 reads.
pub fn transcode_server(frame: &[u8]) -> Result<Vec<u8>, CoreError> {
    let msg: ServerMsg = crate::protocol::decode_frame(frame, usize::MAX, MIN_PROTOCOL_VERSION)?;
    Ok(encode_server(msg))
}

fn event_v4(e: Event) -> EventV4 {
    EventV4 {
        offset: e.offset,
        client_id: e.client_id,
        seq: e.seq,
        time_ms: e.time_ms,
        payload: e.payload,
        subject: e.subject,
        seen: e.seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_4_push_is_of_schema_1_and_events_lose_their_schema() {
        let v4 = include_bytes!("../fixtures/protocol-v4/client-push.bin");
        let ClientMsg::Push { intents, .. } = decode_client(v4, 1 << 20).unwrap() else {
            panic!("not a push");
        };
        assert_eq!(intents.len(), 2);
        assert!(intents.iter().all(|i| i.schema == 1));
        // The v5 decoder does not take the v4 bytes as a push.
        assert!(ClientMsg::decode(v4, 1 << 20).is_err());
        let hello = include_bytes!("../fixtures/protocol-v3/client-hello.bin");
        assert!(matches!(
            decode_client(hello, 1024),
            Ok(ClientMsg::Hello { version: 3, .. })
        ));
        let hello5 = ClientMsg::hello(ClientId([1; 16]), None).encode();
        assert_eq!(
            decode_client(&hello5, 1024).unwrap_err().code(),
            ErrorCode::ProtocolVersion
        );
    }
}
