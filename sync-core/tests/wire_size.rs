//! The wire-format facts in `sync_core::protocol` (frame, event and push
//! overheads, the largest payload of a frame limit, the event ranges inside
//! an `Events` frame) against frames actually encoded.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sync_core::protocol::{
    encode_event, encode_events_frame_with_ranges, max_event_payload, max_push_payload,
    welcome_frame_limit, EVENTS_FRAME_OVERHEAD, EVENT_OVERHEAD, PUSH_FRAME_OVERHEAD,
    PUSH_INTENT_OVERHEAD,
};
use sync_core::reducer::ReduceError;
use sync_core::{
    ClientId, ClientMsg, Epoch, Event, Offset, PushIntent, Reducer, Replica, Seq, ServerMsg,
    StreamName, SyncClient, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_STREAM_NAME_LEN, MAX_SUBJECT_LEN, PROTOCOL_VERSION,
};

fn stream_name() -> impl Strategy<Value = StreamName> {
    "[a-z0-9._~:/-]{1,200}"
        .prop_filter("not a relative path segment", |s| s != "." && s != "..")
        .prop_map(|s| StreamName::new(s).unwrap())
}

/// Integers spread over every varint width.
fn wide_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..200, 0u64..70_000, any::<u64>(), Just(u64::MAX)]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (100usize..70_000).prop_map(|n| vec![b'x'; n]),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        wide_u64(),
        any::<[u8; 16]>(),
        wide_u64(),
        wide_u64(),
        payload(),
        proptest::option::of("[a-z0-9@.]{0,256}"),
        wide_u64(),
    )
        .prop_map(|(offset, id, seq, time_ms, payload, subject, seen)| Event {
            subject,
            seen: Offset(seen),
            offset: Offset(offset),
            client_id: ClientId(id),
            seq: Seq::new(seq.max(1)).unwrap(),
            time_ms,
            payload,
            schema: u32::MAX,
        })
}

fn longest_stream() -> StreamName {
    StreamName::new("s".repeat(MAX_STREAM_NAME_LEN)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn push_frames_are_within_the_computed_size(
        stream in stream_name(),
        intents in proptest::collection::vec((wide_u64(), payload()), 1..5),
    ) {
        let bound = PUSH_FRAME_OVERHEAD
            + intents.iter().map(|(_, p)| PUSH_INTENT_OVERHEAD + p.len()).sum::<usize>();
        let msg = ClientMsg::Push {
            stream,
            intents: intents
                .into_iter()
                .map(|(seq, payload)| PushIntent { seen: Offset(seq), seq: Seq::new(seq.max(1)).unwrap(), payload, schema: u32::MAX })
                .collect(),
        };
        prop_assert!(msg.encode().len() <= bound, "{} > {bound}", msg.encode().len());
    }

    #[test]
    fn snapshot_frames_are_within_the_computed_size(
        stream in stream_name(),
        numbers in (wide_u64(), wide_u64(), wide_u64(), wide_u64()),
        part in payload(),
    ) {
        let (offset, hash, total, at) = numbers;
        let msg = ServerMsg::Snapshot { stream, offset: Offset(offset), hash, total, at, part: part.clone(), schema: u32::MAX };
        let bound = sync_core::protocol::SNAPSHOT_FRAME_OVERHEAD + part.len();
        prop_assert!(msg.encode().len() <= bound, "{} > {bound}", msg.encode().len());
    }

    #[test]
    fn events_frames_are_within_the_computed_size_and_ranges_hold_each_event(
        stream in stream_name(),
        events in proptest::collection::vec(event(), 0..5),
        head in wide_u64(),
    ) {
        let encoded: Vec<Vec<u8>> = events.iter().map(encode_event).collect();
        for (e, bytes) in events.iter().zip(&encoded) {
            prop_assert!(bytes.len() <= EVENT_OVERHEAD + e.payload.len() + e.subject.as_ref().map_or(0, String::len));
        }
        let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let (frame, ranges) = encode_events_frame_with_ranges(&stream, &refs, Offset(head));
        let msg = ServerMsg::Events { stream, events: events.clone(), head: Offset(head) };
        prop_assert_eq!(&frame, &msg.encode());
        let bound = EVENTS_FRAME_OVERHEAD
            + events.iter().map(|e| EVENT_OVERHEAD + e.payload.len() + e.subject.as_ref().map_or(0, String::len)).sum::<usize>();
        prop_assert!(frame.len() <= bound);
        prop_assert_eq!(ranges.len(), events.len());
        for (r, bytes) in ranges.iter().zip(&encoded) {
            prop_assert_eq!(&frame[r.clone()], bytes.as_slice());
        }
        for pair in ranges.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
        }
    }

    #[test]
    fn the_announced_limit_gives_the_server_s_payload_limit(
        frame in 4096usize..(64 << 20),
        payload in 0usize..(64 << 20),
    ) {
        let announced = welcome_frame_limit(frame, payload) as usize;
        prop_assert!(announced <= frame);
        prop_assert_eq!(max_push_payload(announced), payload.min(max_push_payload(frame)));
    }
}

/// The largest payload of a frame limit fits, in the worst case of the
/// encoding, and the bound wastes only the varint widths it assumes.
#[test]
fn largest_payloads_fit_their_frames_with_little_slack() {
    for frame in [4096usize, 9000, 256 << 10, DEFAULT_MAX_FRAME_BYTES, 5 << 20] {
        let payload = max_push_payload(frame);
        let push = ClientMsg::Push {
            stream: longest_stream(),
            intents: vec![PushIntent {
                seen: Offset(u64::MAX),
                seq: Seq::new(u64::MAX).unwrap(),
                payload: vec![0; payload],
                schema: u32::MAX,
            }],
        };
        let len = push.encode().len();
        assert!(len <= frame, "push of {len} bytes over {frame}");
        // Unused: 4 of the 5 bytes assumed for the intent count, and 2 to
        // 4 of the 5 for the payload length (2 bytes below 16 KiB, 3 below
        // 2 MiB).
        assert!(frame - len <= 4 + 4, "push leaves {} bytes", frame - len);

        let payload = max_event_payload(frame);
        let event = Event {
            subject: Some("s".repeat(MAX_SUBJECT_LEN)),
            seen: Offset(u64::MAX),
            offset: Offset(u64::MAX),
            client_id: ClientId([0xff; 16]),
            seq: Seq::new(u64::MAX).unwrap(),
            time_ms: u64::MAX,
            payload: vec![0; payload],
            schema: u32::MAX,
        };
        let events = ServerMsg::Events {
            stream: longest_stream(),
            events: vec![event],
            head: Offset(u64::MAX),
        };
        let len = events.encode().len();
        assert!(len <= frame, "events frame of {len} bytes over {frame}");
        assert!(
            frame - len <= 4 + 4,
            "events frame leaves {} bytes",
            frame - len
        );
    }
}

struct Count;
impl Reducer for Count {
    type State = u64;
    type Action = ();
    fn decode(&self, _: &[u8]) -> Result<(), ReduceError> {
        Ok(())
    }
    fn reduce(&self, s: &u64, _: &()) -> Result<u64, ReduceError> {
        Ok(s + 1)
    }
}

/// A client takes, before any `Welcome`, what a default server accepts,
/// and afterwards what the server of the `Welcome` accepts.
#[test]
fn the_client_limit_comes_from_welcome() {
    let stream = StreamName::new("s").unwrap();
    let replica = Replica::new(stream, ClientId([1; 16]), Count, 0);
    let mut client = SyncClient::new(replica, None, 0);
    assert_eq!(client.max_payload_bytes(), DEFAULT_MAX_PAYLOAD_BYTES);
    for (frame, payload) in [(1usize << 20, 1024usize), (4096, 200), (4096, 1 << 20)] {
        client.connected(None);
        client
            .handle(ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
                server_id: "t".into(),
                epoch: Epoch::from("e"),
                max_frame_bytes: welcome_frame_limit(frame, payload),
            })
            .unwrap();
        assert_eq!(
            client.max_payload_bytes(),
            payload.min(max_push_payload(frame))
        );
        client.disconnected();
    }
}
