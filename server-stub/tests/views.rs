//! Views over the WebSocket protocol (version 4): `Watch` a view of a
//! stream's state and get its result, then one `View` per change of it,
//! from the viewer (its own engine and states, beside the writer), against
//! a real server with the seat-booking module and a real SQLite file.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{answer, client_id, config, http, metric, stream, within, Client, TestServer};
use server_stub::auth::{now_secs, sign, Secret};
use server_stub::config::ReducerModule;
use server_stub::fold::js::{JsLimits, JsReducer};
use server_stub::fold::StreamReducer;
use sync_core::protocol::state_hash;
use sync_core::{ClientMsg, ErrorCode, Meta, Offset, ServerMsg, ViewChange, ViewKnown};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn seats_config(dir: &Path) -> server_stub::Config {
    server_stub::Config {
        reducers: vec![ReducerModule {
            pattern: "seats/*".into(),
            path: fixture("seats.js"),
            export: None,
        }],
        ..config(dir)
    }
}

fn book(seat: &str, who: &str) -> Vec<u8> {
    serde_json::json!({"type": "book", "seat": seat, "who": who})
        .to_string()
        .into_bytes()
}

fn watch(id: u32, stream_name: &str, view: &str, params: &str) -> ClientMsg {
    ClientMsg::Watch {
        id,
        stream: stream(stream_name),
        view: view.into(),
        params: params.into(),
        known: None,
    }
}

/// The next `View` or `ViewError` (events, acks and pongs skipped).
async fn view_msg(c: &mut Client) -> ServerMsg {
    loop {
        match c.recv().await {
            m @ (ServerMsg::View { .. } | ServerMsg::ViewError { .. }) => return m,
            ServerMsg::Events { .. } | ServerMsg::Ack { .. } | ServerMsg::Reject { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// What a watcher holds: the result (as JSON), its offset and hash.
#[derive(Clone, Debug)]
struct Held {
    offset: Offset,
    hash: u64,
    result: serde_json::Value,
}

/// Applies a `View` frame to what the watcher held.
fn apply(held: Option<&Held>, msg: ServerMsg) -> Held {
    let ServerMsg::View {
        offset,
        hash,
        change,
        ..
    } = msg
    else {
        panic!("expected a View, got {msg:?}");
    };
    let result = match change {
        ViewChange::Result(text) => {
            assert_eq!(state_hash(text.as_bytes()), hash, "the hash is the text's");
            serde_json::from_str(&text).unwrap()
        }
        ViewChange::Patch(patch) => {
            let mut value = held.expect("a patch needs a held result").result.clone();
            let patch: json_patch::Patch = serde_json::from_str(&patch).unwrap();
            json_patch::patch(&mut value, &patch).unwrap();
            value
        }
        ViewChange::Same => held.expect("same as the held result").result.clone(),
    };
    Held {
        offset,
        hash,
        result,
    }
}

/// A small deterministic generator (xorshift), so a failing case can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The property: a watcher gets exactly one `View` for each committed
/// offset at which the view's result changes (and none for the others),
/// each equal to the view of a fold of the log made here, with the same
/// module in an engine of this test's own, event by event.
#[tokio::test]
async fn a_watcher_sees_each_change_of_the_view_at_its_offset() {
    for seed in [0x9e37_79b9_7f4a_7c15_u64, 42, 7_777_777] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(seats_config(dir.path())).await;
        let name = format!("seats/prop-{seed}");
        let local = JsReducer::load(&fixture("seats.js"), None, JsLimits::default()).unwrap();
        let mut state = local.start().unwrap();
        let bob = r#"{"who":"bob"}"#;
        let local_view = |state: &dyn server_stub::fold::StreamState| -> serde_json::Value {
            serde_json::from_str(&state.view("heldBy", bob).unwrap()).unwrap()
        };

        // Two watchers of one view (one evaluation serves both) and a
        // reader of the log.
        let (mut w1, _) = Client::hello(&server.ws_url(), client_id(1)).await;
        let (mut w2, _) = Client::hello(&server.ws_url(), client_id(2)).await;
        let (mut writer, _) = Client::hello(&server.ws_url(), client_id(3)).await;
        let (mut reader, _) = Client::hello(&server.ws_url(), client_id(4)).await;
        reader.subscribe(&name, 0).await;
        w1.send(&watch(1, &name, "heldBy", bob)).await;
        w2.send(&watch(9, &name, "heldBy", bob)).await;
        let mut held1 = apply(None, view_msg(&mut w1).await);
        let mut held2 = apply(None, view_msg(&mut w2).await);
        assert_eq!(
            (held1.offset, &held1.result),
            (Offset(0), &serde_json::json!([]))
        );
        assert_eq!(held2.result, held1.result);

        let mut rng = Rng(seed);
        let mut head = 0u64;
        let mut changes = 0;
        for s in 1..=40u64 {
            let seat = format!("{}{}", 1 + rng.below(10), ["A", "B"][rng.below(2) as usize]);
            let who = ["ann", "bob"][rng.below(2) as usize];
            writer.push(&name, &[(s, book(&seat, who))]).await;
            let ServerMsg::Ack { offset, .. } = answer(&mut writer).await else {
                continue; // a taken seat: refused, no event, no offset
            };
            head += 1;
            assert_eq!(offset, Offset(head));
            let events = reader.events_until(head).await;
            let event = events.last().unwrap();
            assert_eq!(event.offset, offset);
            state.fold(&event.payload, &Meta::of_event(event)).unwrap();
            let expected = local_view(&*state);
            if expected != held1.result {
                // The view changed here: both watchers hear it, at this
                // offset (before anything more is pushed).
                held1 = apply(Some(&held1), view_msg(&mut w1).await);
                held2 = apply(Some(&held2), view_msg(&mut w2).await);
                assert_eq!(
                    (held1.offset, &held1.result),
                    (offset, &expected),
                    "seed {seed}"
                );
                assert_eq!(
                    (held2.offset, &held2.result),
                    (offset, &expected),
                    "seed {seed}"
                );
                changes += 1;
            }
        }
        assert!(changes >= 3, "seed {seed}: only {changes} changes");
        // Nothing was sent for the offsets that changed nothing: the next
        // frame is the next change.
        writer.push(&name, &[(41, book("9Z", "bob"))]).await;
        assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
        head += 1;
        for w in [&mut w1, &mut w2] {
            let next = view_msg(w).await;
            assert!(
                matches!(next, ServerMsg::View { offset, .. } if offset == Offset(head)),
                "seed {seed}: {next:?}"
            );
        }
        assert!(metric(&server, "logsync_views_shared_total").await >= 1.0);
        assert!(
            metric(&server, "logsync_views_evaluated_total").await <= (head + 2) as f64,
            "one evaluation per commit serves both watchers"
        );
        server.stop().await;
    }
}

/// A client that comes back with the result it holds (`known`) gets a
/// patch against it, or `Same`; one whose result the server no longer
/// keeps gets the whole result.
#[tokio::test]
async fn a_returning_watcher_gets_a_patch_against_the_result_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(seats_config(dir.path())).await;
    let (mut writer, _) = Client::hello(&server.ws_url(), client_id(3)).await;
    let bookings: Vec<(u64, Vec<u8>)> = (1..=20u64)
        .map(|i| (i, book(&format!("{i}C"), "bob")))
        .collect();
    writer.push("seats/r", &bookings).await;
    for _ in 0..20 {
        assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
    }
    let bob = r#"{"who":"bob"}"#;
    let (mut w, _) = Client::hello(&server.ws_url(), client_id(1)).await;
    w.send(&watch(1, "seats/r", "heldBy", bob)).await;
    let held = apply(None, view_msg(&mut w).await);
    assert_eq!(held.offset, Offset(20));
    drop(w);

    writer.push("seats/r", &[(21, book("99Z", "bob"))]).await;
    assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
    let (mut w, _) = Client::hello(&server.ws_url(), client_id(1)).await;
    let known = |h: &Held| ClientMsg::Watch {
        id: 2,
        stream: stream("seats/r"),
        view: "heldBy".into(),
        params: bob.into(),
        known: Some(ViewKnown {
            offset: h.offset,
            hash: h.hash,
        }),
    };
    w.send(&known(&held)).await;
    let msg = view_msg(&mut w).await;
    assert!(
        matches!(
            &msg,
            ServerMsg::View {
                change: ViewChange::Patch(_),
                ..
            }
        ),
        "a small change to a long result is a patch: {msg:?}"
    );
    let now = apply(Some(&held), msg);
    let (status, body) = get(
        &server,
        "/v1/streams/seats%2Fr/views/heldBy?params=%7B%22who%22%3A%22bob%22%7D",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!((now.offset.0, &now.result), (21, &body["result"]));

    // The result it holds is the current one: nothing to send but `Same`.
    w.send(&known(&now)).await;
    let msg = view_msg(&mut w).await;
    assert!(
        matches!(msg, ServerMsg::View { change: ViewChange::Same, offset, .. } if offset == Offset(21)),
        "{msg:?}"
    );
    // A hash the server does not know: the whole result.
    let stranger = Held {
        hash: 12345,
        ..now.clone()
    };
    w.send(&known(&stranger)).await;
    let msg = view_msg(&mut w).await;
    assert!(
        matches!(
            &msg,
            ServerMsg::View {
                change: ViewChange::Result(_),
                ..
            }
        ),
        "{msg:?}"
    );
    server.stop().await;
}

async fn get(server: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let r = http().get(server.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

fn view_error(msg: &ServerMsg) -> (u32, ErrorCode, &str) {
    match msg {
        ServerMsg::ViewError { id, code, message } => (*id, *code, message.as_str()),
        other => panic!("expected a ViewError, got {other:?}"),
    }
}

/// Each refusal ends only its watch, with a typed code: a view the module
/// does not export, a stream no reducer folds, params that are not JSON,
/// a view that throws, the limits per connection and per stream; the
/// connection and its other watches go on.
#[tokio::test]
async fn refused_watches_get_typed_errors_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        max_watches: 2,
        max_views_per_stream: 2,
        ..seats_config(dir.path())
    })
    .await;
    let (mut c, _) = Client::hello(&server.ws_url(), client_id(1)).await;
    c.send(&watch(1, "seats/e", "nope", "null")).await;
    let msg = view_msg(&mut c).await;
    let (id, code, message) = view_error(&msg);
    assert_eq!((id, code), (1, ErrorCode::NotFound));
    assert!(
        message.contains("heldBy") && message.contains("count"),
        "{message}"
    );
    c.send(&watch(2, "plain/e", "count", "null")).await;
    let msg = view_msg(&mut c).await;
    assert_eq!(view_error(&msg).1, ErrorCode::NotFound);
    c.send(&watch(3, "seats/e", "count", "{nope")).await;
    let msg = view_msg(&mut c).await;
    let (id, code, _) = view_error(&msg);
    assert_eq!((id, code), (3, ErrorCode::InvalidJson));
    c.send(&watch(4, "seats/e", "broken", "null")).await;
    let msg = view_msg(&mut c).await;
    let (_, code, message) = view_error(&msg);
    assert_eq!(code, ErrorCode::Reducer);
    assert!(message.contains("this view always fails"), "{message}");

    // Two watches per connection; a third is refused until one ends.
    c.send(&watch(5, "seats/e", "count", "null")).await;
    assert!(matches!(
        view_msg(&mut c).await,
        ServerMsg::View { id: 5, .. }
    ));
    c.send(&watch(6, "seats/e", "heldBy", r#"{"who":"ann"}"#))
        .await;
    assert!(matches!(
        view_msg(&mut c).await,
        ServerMsg::View { id: 6, .. }
    ));
    c.send(&watch(7, "seats/e", "heldBy", r#"{"who":"bob"}"#))
        .await;
    let msg = view_msg(&mut c).await;
    let (id, code, _) = view_error(&msg);
    assert_eq!((id, code), (7, ErrorCode::TooManySubscriptions));
    // Two different views of one stream on the server: another
    // connection may follow one of them, not a third.
    let (mut d, _) = Client::hello(&server.ws_url(), client_id(2)).await;
    d.send(&watch(1, "seats/e", "count", "null")).await;
    assert!(matches!(
        view_msg(&mut d).await,
        ServerMsg::View { id: 1, .. }
    ));
    d.send(&watch(2, "seats/e", "heldBy", r#"{"who":"bob"}"#))
        .await;
    let msg = view_msg(&mut d).await;
    let (_, code, message) = view_error(&msg);
    assert_eq!(code, ErrorCode::TooManySubscriptions);
    assert!(message.contains("--max-views-per-stream"), "{message}");
    // Unwatch frees both places.
    c.send(&ClientMsg::Unwatch { id: 6 }).await;
    d.send(&watch(2, "seats/e", "heldBy", r#"{"who":"bob"}"#))
        .await;
    assert!(matches!(
        view_msg(&mut d).await,
        ServerMsg::View { id: 2, .. }
    ));

    // The watches that stand still follow: a booking changes `count`.
    let (mut writer, _) = Client::hello(&server.ws_url(), client_id(3)).await;
    writer.push("seats/e", &[(1, book("1A", "bob"))]).await;
    assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
    let msg = view_msg(&mut c).await;
    assert!(
        matches!(msg, ServerMsg::View { id: 5, offset, .. } if offset == Offset(1)),
        "{msg:?}"
    );
    server.stop().await;
}

/// A view that never returns is stopped by `--view-timeout` and reported
/// to its watcher as `REDUCER`; meanwhile the writer decides and the
/// fan-out delivers as if it were not there (the view runs in its own
/// engine, on its own thread).
#[tokio::test]
async fn a_slow_view_never_holds_up_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        view_timeout: Duration::from_secs(2),
        ..seats_config(dir.path())
    })
    .await;
    let (mut w, _) = Client::hello(&server.ws_url(), client_id(1)).await;
    let (mut writer, _) = Client::hello(&server.ws_url(), client_id(2)).await;
    writer.subscribe("seats/slow", 0).await;
    w.send(&watch(1, "seats/slow", "spinning", "null")).await;
    // The view spins for two seconds of CPU; the writer is not waiting:
    // five pushes, each after the last one's event came back, are decided
    // and delivered before the view's error.
    let pushes = async {
        let (mut acked, mut delivered) = (0, 0);
        for s in 1..=5u64 {
            writer
                .push("seats/slow", &[(s, book(&format!("{s}A"), "ann"))])
                .await;
            while acked < s || delivered < s {
                match writer.recv().await {
                    ServerMsg::Ack { .. } => acked += 1,
                    ServerMsg::Events { events, .. } => delivered += events.len() as u64,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    };
    tokio::select! {
        biased;
        msg = view_msg(&mut w) => panic!("the view answered before the writer was done: {msg:?}"),
        () = within("five pushes decided and delivered", pushes) => {}
    }
    let error = view_msg(&mut w).await;
    let (_, code, message) = view_error(&error);
    assert_eq!(code, ErrorCode::Reducer, "{message}");
    // Other views are answered after it.
    w.send(&watch(2, "seats/slow", "count", "null")).await;
    let held = apply(None, view_msg(&mut w).await);
    assert_eq!(held.result, serde_json::json!(5));
    server.stop().await;
}

const SECRET: &[u8] = b"views-test-secret-0123456789abcdef";

/// With authentication on, a watch of a stream the token may not read is
/// refused with `FORBIDDEN` and the same text whether the stream exists or
/// not; the connection goes on.
#[tokio::test]
async fn a_watch_the_token_may_not_read_is_forbidden_alike_for_every_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        jwt_secret: Some(Secret::new(SECRET).unwrap()),
        ..seats_config(dir.path())
    })
    .await;
    let writer_token = sign(
        &serde_json::json!({"sub": "w", "exp": now_secs() + 3600, "read": ["*"], "write": ["*"]})
            .to_string(),
        SECRET,
    );
    let (mut writer, _) =
        Client::hello_with_token(&server.ws_url(), client_id(3), Some(&writer_token)).await;
    writer.push("seats/real", &[(1, book("1A", "ann"))]).await;
    assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
    let token = sign(
        &serde_json::json!({"sub": "r", "exp": now_secs() + 3600, "read": ["seats/mine"], "write": []})
            .to_string(),
        SECRET,
    );
    let (mut c, first) =
        Client::hello_with_token(&server.ws_url(), client_id(1), Some(&token)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    let mut refusals = Vec::new();
    for (id, name) in [(1, "seats/real"), (2, "seats/never")] {
        c.send(&watch(id, name, "count", "null")).await;
        let msg = view_msg(&mut c).await;
        let (_, code, message) = view_error(&msg);
        refusals.push((code, message.replace(name, "<stream>")));
    }
    assert_eq!(refusals[0], refusals[1]);
    assert_eq!(refusals[0].0, ErrorCode::Forbidden);
    c.send(&watch(3, "seats/mine", "count", "null")).await;
    assert!(matches!(
        view_msg(&mut c).await,
        ServerMsg::View { id: 3, .. }
    ));
    server.stop().await;
}

/// A version-3 client is served as before (its Welcome says version 3);
/// a `Watch` on its connection is a protocol error.
#[tokio::test]
async fn a_version_3_client_is_served_and_cannot_watch() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(seats_config(dir.path())).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.send(&ClientMsg::Hello {
        version: 3,
        client_id: client_id(1),
        token: None,
    })
    .await;
    // This build's decoder takes only its own version's Welcome: read the
    // frame's bytes (variant 0, then the version).
    let welcome = within("the Welcome", async {
        loop {
            match futures_util::StreamExt::next(&mut c.ws).await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => return b,
                Some(Ok(_)) => continue,
                other => panic!("no Welcome: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(&welcome[..2], &[0, 3], "a version-3 Welcome");
    // Its frames are version 3's (no schema versions).
    c.push_legacy("seats/v3", &[(1, book("1A", "ann"))]).await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    c.send(&watch(1, "seats/v3", "count", "null")).await;
    let (error, _) = within("the close", c.recv_close()).await;
    assert!(
        matches!(&error, Some(ServerMsg::Error { code: ErrorCode::ProtocolVersion, message }) if message.contains("version 4")),
        "{error:?}"
    );
    server.stop().await;
}

/// Every event of `stream` over HTTP (its name URL-encoded here).
async fn events_of(server: &TestServer, stream: &str) -> Vec<serde_json::Value> {
    let name = stream.replace('/', "%2F");
    let (status, page) = get(server, &format!("/v1/streams/{name}/events?after=0")).await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

/// With `--read-log`, each read of a view — over HTTP, an SSE feed
/// opened, a WebSocket watch — is an event of `~reads/<stream>` before it
/// is answered, naming the view, its params, the offset served and how;
/// reads of other streams are not recorded, nor are the read log's own.
#[tokio::test]
async fn the_read_log_records_each_read_before_it_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        read_log: vec!["seats/logged".into()],
        ..seats_config(dir.path())
    })
    .await;
    let (mut writer, _) = Client::hello(&server.ws_url(), client_id(3)).await;
    writer.push("seats/logged", &[(1, book("1A", "bob"))]).await;
    assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
    writer.push("seats/quiet", &[(1, book("1A", "bob"))]).await;
    assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));

    let (status, body) = get(&server, "/v1/streams/seats%2Flogged/views/count").await;
    assert_eq!((status, &body["offset"]), (200, &serde_json::json!(1)));
    let (status, _) = get(&server, "/v1/streams/seats%2Fquiet/views/count").await;
    assert_eq!(status, 200);
    let mut sse = common::sse::SseReader::open(
        &server.url("/v1/streams/seats%2Flogged/views/heldBy?params=%7B%22who%22%3A%22bob%22%7D"),
    )
    .await;
    assert_eq!(sse.next().await.data["result"], serde_json::json!(["1A"]));
    let (mut w, _) = Client::hello(&server.ws_url(), client_id(7)).await;
    w.send(&watch(1, "seats/logged", "count", "null")).await;
    assert!(matches!(view_msg(&mut w).await, ServerMsg::View { .. }));

    let reads = events_of(&server, "~reads/seats/logged").await;
    let got: Vec<serde_json::Value> = reads.iter().map(|e| e["payload"].clone()).collect();
    let read = |view: &str, params: serde_json::Value, client: serde_json::Value, via: &str| {
        serde_json::json!({"type": "read", "stream": "seats/logged", "view": view,
            "params": params, "offset": 1, "client": client, "via": via})
    };
    assert_eq!(
        got,
        vec![
            read(
                "count",
                serde_json::Value::Null,
                serde_json::Value::Null,
                "http"
            ),
            read(
                "heldBy",
                serde_json::json!({"who": "bob"}),
                serde_json::Value::Null,
                "sse"
            ),
            read(
                "count",
                serde_json::Value::Null,
                serde_json::json!(client_id(7).to_string()),
                "ws"
            ),
        ]
    );
    assert!(events_of(&server, "~reads/seats/quiet").await.is_empty());
    // Reading the read log records nothing more.
    assert_eq!(events_of(&server, "~reads/seats/logged").await.len(), 3);
    drop((sse, w));
    server.stop().await;
}
