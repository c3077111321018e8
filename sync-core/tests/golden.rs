//! Golden byte fixtures pin the wire format: each message below must encode
//! to exactly the bytes in `fixtures/protocol-v5/<name>.bin`, and those
//! bytes must decode back to it. A failure here means the wire format
//! changed: if that is deliberate, bump the protocol version, then
//! regenerate with `LOGSYNC_BLESS=1 cargo test -p sync-core --features legacy --test golden`
//! and review the diff.

use std::path::PathBuf;

use sync_core::legacy;
use sync_core::protocol::{
    encode_event, encode_events_frame, encode_events_frame_of, ClientMsg, PushIntent, ServerMsg,
    ViewChange, ViewKnown, DEFAULT_MAX_FRAME_BYTES,
};
use sync_core::{ClientId, Epoch, ErrorCode, Event, Offset, Seq, StreamName};

fn stream() -> StreamName {
    StreamName::new("todos/team-42").expect("valid")
}

fn seq(n: u64) -> Seq {
    Seq::new(n).expect("valid")
}

const CLIENT: ClientId = ClientId([
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
]);

fn client_fixtures() -> Vec<(&'static str, ClientMsg)> {
    let mut all = vec![
        (
            "client-hello",
            ClientMsg::Hello {
                version: 5,
                client_id: CLIENT,
                token: None,
            },
        ),
        (
            "client-hello-token",
            ClientMsg::Hello {
                version: 5,
                client_id: CLIENT,
                token: Some("eyJhbGciOiJIUzI1NiJ9.e30.sig".into()),
            },
        ),
        (
            "client-subscribe",
            ClientMsg::Subscribe {
                stream: stream(),
                after: Offset(300),
                resume: None,
            },
        ),
        (
            "client-subscribe-resume",
            ClientMsg::Subscribe {
                stream: stream(),
                after: Offset(0),
                resume: Some(sync_core::SnapshotResume {
                    offset: Offset(1000),
                    hash: 0xa3c1_0000_0000_0042,
                    at: 8100,
                }),
            },
        ),
        (
            "client-unsubscribe",
            ClientMsg::Unsubscribe { stream: stream() },
        ),
        (
            "client-push",
            ClientMsg::Push {
                stream: stream(),
                intents: vec![
                    PushIntent {
                        seen: Offset(300),
                        seq: seq(1),
                        payload: br#"{"type":"todo/added","text":"milk"}"#.to_vec(),
                        schema: 1,
                    },
                    PushIntent {
                        seen: Offset(300),
                        seq: seq(2),
                        payload: br#"{"type":"todo/toggled","id":1}"#.to_vec(),
                        schema: 2,
                    },
                ],
            },
        ),
        ("client-ping", ClientMsg::Ping { nonce: 0xdead_beef }),
        (
            "client-withdraw",
            ClientMsg::Withdraw {
                stream: stream(),
                seq: seq(4),
                code: ErrorCode::PayloadTooLarge,
                message: "intent of 2000000 bytes does not fit".into(),
            },
        ),
    ];
    all.extend([
        (
            "client-watch",
            ClientMsg::Watch {
                id: 7,
                stream: stream(),
                view: "assignedTo".into(),
                params: r#"{"user":"bob"}"#.into(),
                known: None,
            },
        ),
        (
            "client-watch-known",
            ClientMsg::Watch {
                id: 8,
                stream: stream(),
                view: "open".into(),
                params: "null".into(),
                known: Some(ViewKnown {
                    offset: Offset(300),
                    hash: 0xa3c1_0000_0000_0042,
                }),
            },
        ),
        ("client-unwatch", ClientMsg::Unwatch { id: 7 }),
    ]);
    all
}

fn server_fixtures() -> Vec<(&'static str, ServerMsg)> {
    let mut all = vec![
        (
            "server-welcome",
            ServerMsg::Welcome {
                version: 5,
                server_id: "node-1".into(),
                epoch: Epoch("0123456789abcdef0123456789abcdef".into()),
                max_frame_bytes: 1 << 20,
            },
        ),
        (
            "server-events",
            ServerMsg::Events {
                stream: stream(),
                events: vec![
                    Event {
                        subject: Some("alice".into()),
                        seen: Offset(300),
                        offset: Offset(301),
                        client_id: CLIENT,
                        seq: seq(1),
                        time_ms: 1_764_115_200_000,
                        payload: br#"{"type":"todo/added","text":"milk"}"#.to_vec(),
                        schema: 1,
                    },
                    Event {
                        subject: None,
                        seen: Offset::ZERO,
                        offset: Offset(302),
                        client_id: ClientId([7; 16]),
                        seq: seq(40),
                        time_ms: 1_764_115_200_123,
                        payload: vec![0, 255, 1],
                        schema: 300,
                    },
                ],
                head: Offset(302),
            },
        ),
        (
            // A catch-up page of 130 events: the event count takes two
            // bytes, which the page encoder writes itself.
            "server-events-page",
            ServerMsg::Events {
                stream: stream(),
                events: (1..=130u64)
                    .map(|n| Event {
                        subject: (n % 2 == 0).then(|| "bob".into()),
                        seen: Offset(n - 1),
                        offset: Offset(n),
                        client_id: CLIENT,
                        seq: seq(n),
                        time_ms: 1_764_115_200_000 + n,
                        payload: format!(r#"{{"type":"n","n":{n}}}"#).into_bytes(),
                        schema: 1,
                    })
                    .collect(),
                head: Offset(130),
            },
        ),
        (
            "server-events-empty",
            ServerMsg::Events {
                stream: stream(),
                events: vec![],
                head: Offset(0),
            },
        ),
        (
            "server-ack",
            ServerMsg::Ack {
                stream: stream(),
                seq: seq(2),
                offset: Offset(302),
                duplicate: true,
            },
        ),
        (
            "server-reject",
            ServerMsg::Reject {
                stream: stream(),
                seq: seq(3),
                code: ErrorCode::PayloadTooLarge,
                message: "payload of 2000000 bytes is over the limit of 262144".into(),
            },
        ),
        (
            "server-gap",
            ServerMsg::Gap {
                stream: stream(),
                expected_seq: seq(5),
            },
        ),
        (
            "server-error",
            ServerMsg::Error {
                code: ErrorCode::ProtocolVersion,
                message: "protocol version 2 is not supported; this side speaks version 1".into(),
            },
        ),
        ("server-pong", ServerMsg::Pong { nonce: 0xdead_beef }),
        (
            "server-checkpoint",
            ServerMsg::Checkpoint {
                stream: stream(),
                offset: Offset(3000),
                hash: sync_core::protocol::state_hash(br#"{"todos":[]}"#),
                schema: 2,
            },
        ),
        (
            "server-snapshot",
            ServerMsg::Snapshot {
                stream: stream(),
                offset: Offset(3000),
                hash: sync_core::protocol::state_hash(br#"{"todos":[]}"#),
                total: 12,
                at: 0,
                part: br#"{"todos":[]}"#.to_vec(),
                schema: 2,
            },
        ),
    ];
    all.extend([
        (
            "server-view-result",
            ServerMsg::View {
                id: 7,
                offset: Offset(301),
                hash: sync_core::protocol::state_hash(br#"[{"id":"a","text":"milk"}]"#),
                change: ViewChange::Result(r#"[{"id":"a","text":"milk"}]"#.into()),
            },
        ),
        (
            "server-view-patch",
            ServerMsg::View {
                id: 7,
                offset: Offset(302),
                hash: sync_core::protocol::state_hash(br#"[]"#),
                change: ViewChange::Patch(r#"[{"op":"remove","path":"/0"}]"#.into()),
            },
        ),
        (
            "server-view-same",
            ServerMsg::View {
                id: 8,
                offset: Offset(302),
                hash: 0xa3c1_0000_0000_0042,
                change: ViewChange::Same,
            },
        ),
        (
            "server-view-error",
            ServerMsg::ViewError {
                id: 9,
                code: ErrorCode::NotFound,
                message: "the reducer of todos/team-42 exports no view named mine".into(),
            },
        ),
    ]);
    all
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/protocol-v5")
}

fn check(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = dir().join(format!("{name}.bin"));
    if std::env::var_os("LOGSYNC_BLESS").is_some() {
        std::fs::create_dir_all(dir()).expect("create fixtures dir");
        std::fs::write(&path, bytes).expect("write fixture");
    }
    let golden = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (regenerate with LOGSYNC_BLESS=1)", path.display()));
    assert_eq!(
        bytes,
        &golden[..],
        "{name}: encoding differs from {} — the wire format changed",
        path.display()
    );
    golden
}

#[test]
fn client_messages_match_golden_bytes() {
    for (name, msg) in client_fixtures() {
        let golden = check(name, &msg.encode());
        assert_eq!(
            ClientMsg::decode(&golden, DEFAULT_MAX_FRAME_BYTES).expect("decodes"),
            msg,
            "{name}"
        );
    }
}

#[test]
fn server_messages_match_golden_bytes() {
    for (name, msg) in server_fixtures() {
        let golden = check(name, &msg.encode());
        assert_eq!(
            ServerMsg::decode(&golden, DEFAULT_MAX_FRAME_BYTES).expect("decodes"),
            msg,
            "{name}"
        );
    }
}

/// The server's own ways of making an `Events` frame (from events encoded
/// once for every subscriber, and a catch-up page encoded straight into
/// one buffer) must make the golden bytes too.
#[test]
fn the_servers_events_frames_match_golden_bytes() {
    let mut frames = 0;
    for (name, msg) in server_fixtures() {
        let ServerMsg::Events {
            stream,
            events,
            head,
        } = msg
        else {
            continue;
        };
        let golden = check(
            name,
            &ServerMsg::Events {
                stream: stream.clone(),
                events: events.clone(),
                head,
            }
            .encode(),
        );
        let each: Vec<Vec<u8>> = events.iter().map(encode_event).collect();
        let refs: Vec<&[u8]> = each.iter().map(Vec::as_slice).collect();
        assert_eq!(
            encode_events_frame(&stream, &refs, head),
            golden,
            "{name}: from encoded events"
        );
        assert_eq!(
            encode_events_frame_of(&stream, &events, head),
            golden,
            "{name}: a page"
        );
        frames += 1;
    }
    assert!(frames >= 3, "the fixtures hold {frames} Events frames");
}

#[test]
fn every_fixture_file_is_covered() {
    let mut known: Vec<String> = client_fixtures()
        .iter()
        .map(|(n, _)| format!("{n}.bin"))
        .chain(server_fixtures().iter().map(|(n, _)| format!("{n}.bin")))
        .collect();
    known.sort();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    files.sort();
    assert_eq!(files, known, "fixture files and fixture list differ");
}

/// The hello fixture, byte by byte: the version must stay readable at a
/// fixed place (variant 0, then the version varint) for every future version.
#[test]
fn hello_layout_is_version_first() {
    let bytes = std::fs::read(dir().join("client-hello.bin")).expect("fixture");
    assert_eq!(&bytes[..2], &[0, 5], "variant 0, version 5");
    assert_eq!(&bytes[2..18], &CLIENT.0, "then the client id");
    assert_eq!(bytes[18], 0, "then no token");
    assert_eq!(bytes.len(), 19);
}

/// `msg` as a client or server of protocol version 3 or 4 means it: of
/// schema version 1 (clients), or without schema versions (servers, so
/// made 1 here to compare).
fn schema_1_client(msg: ClientMsg) -> ClientMsg {
    match msg {
        ClientMsg::Push { stream, intents } => ClientMsg::Push {
            stream,
            intents: intents
                .into_iter()
                .map(|i| PushIntent { schema: 1, ..i })
                .collect(),
        },
        other => other,
    }
}

fn version(msg: ClientMsg, v: u32) -> ClientMsg {
    match msg {
        ClientMsg::Hello {
            client_id, token, ..
        } => ClientMsg::Hello {
            version: v,
            client_id,
            token,
        },
        other => other,
    }
}

/// Frames of clients of versions 3 and 4 decode (through the `legacy`
/// translation) to the version-5 message they mean, with intents of
/// schema version 1; every server message but the `Welcome` (which a
/// server makes in the client's version) translates to exactly the
/// version-4 bytes; and version 4 only added messages to version 3: every
/// version-3 fixture is its version-4 namesake.
#[test]
fn versions_3_and_4_are_translated_exactly() {
    let fixtures =
        |v: &str| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/protocol-{v}"));
    let clients: Vec<(&str, ClientMsg)> = client_fixtures();
    let servers: Vec<(&str, ServerMsg)> = server_fixtures();
    let mut compared = 0;
    for (v, n) in [("v3", 3), ("v4", 4)] {
        for entry in std::fs::read_dir(fixtures(v)).expect("fixtures") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = std::fs::read(entry.path()).expect("read");
            let stem = name.trim_end_matches(".bin");
            if name.starts_with("client-") {
                let got = legacy::decode_client(&old, DEFAULT_MAX_FRAME_BYTES)
                    .unwrap_or_else(|e| panic!("{v}/{name}: does not decode: {e}"));
                let (_, want) = clients
                    .iter()
                    .find(|(n, _)| *n == stem)
                    .unwrap_or_else(|| panic!("{name}: no v5 namesake"));
                assert_eq!(got, version(schema_1_client(want.clone()), n), "{v}/{name}");
                compared += 1;
            } else if name == "server-welcome.bin" {
                assert_eq!(&old[..2], &[0, n as u8]);
            } else {
                let (_, msg) = servers
                    .iter()
                    .find(|(n, _)| *n == stem)
                    .unwrap_or_else(|| panic!("{name}: no v5 namesake"));
                assert_eq!(legacy::encode_server(msg.clone()), old, "{v}/{name}");
                assert_eq!(
                    legacy::transcode_server(&msg.encode()).expect("transcodes"),
                    old,
                    "{v}/{name}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 40, "compared {compared} fixtures");
}
