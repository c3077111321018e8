//! Properties of the wire codec: every message round-trips; decoding random
//! bytes, truncations and bit flips never panics and only ever fails with
//! the codec's own codes.

mod common;

use proptest::prelude::*;
use sync_core::protocol::{ClientMsg, PushIntent, ServerMsg};
use sync_core::{ClientId, Epoch, ErrorCode, Event, Offset, Seq, StreamName};

const LIMIT: usize = 1 << 16;

fn stream() -> impl Strategy<Value = StreamName> {
    "[A-Za-z0-9._~:/-]{1,40}"
        .prop_filter("reserved names", |s| s != "." && s != "..")
        .prop_map(|s| StreamName::new(s).expect("matches the rule"))
}

fn seq() -> impl Strategy<Value = Seq> {
    (1u64..=u64::MAX).prop_map(|n| Seq::new(n).expect(">= 1"))
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..200)
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        seq(),
        any::<u64>(),
        bytes(),
    )
        .prop_map(|(offset, id, seq, time_ms, payload)| Event {
            subject: None,
            seen: sync_core::Offset::ZERO,
            offset: Offset(offset),
            client_id: ClientId(id),
            seq,
            time_ms,
            payload,
            schema: (offset % 7) as u32 + 1,
        })
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (any::<[u8; 16]>(), proptest::option::of(".{0,80}")).prop_map(|(id, token)| {
            ClientMsg::Hello {
                version: sync_core::PROTOCOL_VERSION,
                client_id: ClientId(id),
                token,
            }
        }),
        (
            stream(),
            any::<u64>(),
            proptest::option::of(any::<(u64, u64, u64)>())
        )
            .prop_map(|(stream, after, resume)| ClientMsg::Subscribe {
                stream,
                after: Offset(after),
                resume: resume.map(|(offset, hash, at)| sync_core::SnapshotResume {
                    offset: Offset(offset),
                    hash,
                    at,
                }),
            }),
        stream().prop_map(|stream| ClientMsg::Unsubscribe { stream }),
        (stream(), prop::collection::vec((seq(), bytes()), 0..8)).prop_map(|(stream, intents)| {
            ClientMsg::Push {
                stream,
                intents: intents
                    .into_iter()
                    .map(|(seq, payload)| PushIntent {
                        seen: sync_core::Offset::ZERO,
                        schema: (seq.get() % 5) as u32 + 1,
                        seq,
                        payload,
                    })
                    .collect(),
            }
        }),
        any::<u64>().prop_map(|nonce| ClientMsg::Ping { nonce }),
        (stream(), seq(), code(), ".{0,80}").prop_map(|(stream, seq, code, message)| {
            ClientMsg::Withdraw {
                stream,
                seq,
                code,
                message,
            }
        }),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        (".{0,40}", "[0-9a-f]{32}", any::<u32>()).prop_map(|(server_id, epoch, max)| {
            ServerMsg::Welcome {
                version: sync_core::PROTOCOL_VERSION,
                server_id,
                epoch: Epoch(epoch),
                max_frame_bytes: max,
            }
        }),
        (stream(), prop::collection::vec(event(), 0..6), any::<u64>()).prop_map(
            |(stream, events, head)| ServerMsg::Events {
                stream,
                events,
                head: Offset(head)
            }
        ),
        (stream(), seq(), any::<u64>(), any::<bool>()).prop_map(|(stream, seq, o, duplicate)| {
            ServerMsg::Ack {
                stream,
                seq,
                offset: Offset(o),
                duplicate,
            }
        }),
        (stream(), seq(), code(), ".{0,80}").prop_map(|(stream, seq, code, message)| {
            ServerMsg::Reject {
                stream,
                seq,
                code,
                message,
            }
        }),
        (stream(), seq()).prop_map(|(stream, expected_seq)| ServerMsg::Gap {
            stream,
            expected_seq
        }),
        (code(), ".{0,80}").prop_map(|(code, message)| ServerMsg::Error { code, message }),
        any::<u64>().prop_map(|nonce| ServerMsg::Pong { nonce }),
        (
            stream(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(stream, o, hash, total, at, part)| ServerMsg::Snapshot {
                stream,
                offset: Offset(o),
                hash,
                total,
                at,
                part,
                schema: (o % 3) as u32 + 1,
            }),
        (stream(), any::<u64>(), any::<u64>()).prop_map(|(stream, o, hash)| {
            ServerMsg::Checkpoint {
                stream,
                offset: Offset(o),
                hash,
                schema: (hash % 3) as u32 + 1,
            }
        }),
    ]
}

fn codec_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::MalformedFrame | ErrorCode::FrameTooLarge | ErrorCode::ProtocolVersion
    )
}

/// Decodes as both kinds; whatever happens, no panic and only codec codes.
/// A success must survive re-encoding (an error code this build does not
/// know decodes to `UNKNOWN`, so the bytes themselves may differ).
fn decode_any(bytes: &[u8]) {
    match ClientMsg::decode(bytes, LIMIT) {
        Ok(m) => assert_eq!(ClientMsg::decode(&m.encode(), LIMIT).ok(), Some(m)),
        Err(e) => assert!(codec_code(e.code()), "{e}"),
    }
    match ServerMsg::decode(bytes, LIMIT) {
        Ok(m) => assert_eq!(ServerMsg::decode(&m.encode(), LIMIT).ok(), Some(m)),
        Err(e) => assert!(codec_code(e.code()), "{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(2000), ..ProptestConfig::default() })]

    #[test]
    fn client_messages_round_trip(msg in client_msg()) {
        let bytes = msg.encode();
        prop_assert_eq!(ClientMsg::decode(&bytes, LIMIT).expect("decodes"), msg);
    }

    #[test]
    fn server_messages_round_trip(msg in server_msg()) {
        let bytes = msg.encode();
        prop_assert_eq!(ServerMsg::decode(&bytes, LIMIT).expect("decodes"), msg);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_any(&bytes);
    }

    /// Random bytes behind a valid variant tag reach deeper into each decoder.
    #[test]
    fn random_bodies_never_panic(tag in 0u8..9, body in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        decode_any(&bytes);
    }

    #[test]
    fn truncations_never_panic(msg in client_msg(), smsg in server_msg()) {
        for bytes in [msg.encode(), smsg.encode()] {
            for cut in 0..bytes.len() {
                decode_any(&bytes[..cut]);
            }
        }
    }

    #[test]
    fn bit_flips_never_panic(msg in server_msg(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = msg.encode();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        decode_any(&bytes);
    }

    #[test]
    fn oversized_frames_are_refused_before_decoding(extra in 1usize..64) {
        let bytes = vec![0u8; LIMIT + extra];
        let e = ClientMsg::decode(&bytes, LIMIT).expect_err("too large");
        prop_assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    }
}
