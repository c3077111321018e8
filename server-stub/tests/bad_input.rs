//! Every kind of bad input gets a typed error, never a panic, and never
//! harms other clients: on WebSocket an `Error` frame and a close with the
//! matching close code, on HTTP a 4xx JSON body.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sync_core::{ClientMsg, ErrorCode, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Sends `frames` (after a Hello when `hello`), then expects the server to
/// answer with `Error { code }` and close with `close_code`. Then checks
/// a healthy client on the same server is unaffected.
async fn expect_error(
    server: &TestServer,
    hello: bool,
    frames: Vec<Message>,
    code: ErrorCode,
    close_code: u16,
) {
    let (mut healthy, _) = Client::hello(&server.ws_url(), client_id(77)).await;
    healthy.subscribe("healthy", 0).await;
    healthy.recv().await;

    let mut c = if hello {
        Client::hello(&server.ws_url(), client_id(1)).await.0
    } else {
        Client::connect(&server.ws_url()).await
    };
    for f in frames {
        // The server may close before the last frame is written.
        let _ = futures_util::SinkExt::send(&mut c.ws, f).await;
    }
    let (error, close) = c.recv_close().await;
    match error {
        Some(ServerMsg::Error { code: got, message }) => {
            assert_eq!(got, code, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected an Error frame with {code}, got {other:?}"),
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(close_code));

    // The other client still pushes, gets its Ack and its live event.
    let seq_next = next_seq(server, 77).await;
    healthy
        .push("healthy", &[(seq_next, b"\"still fine\"".to_vec())])
        .await;
    let mut acked = false;
    let mut seen = false;
    while !(acked && seen) {
        match healthy.recv().await {
            ServerMsg::Ack { .. } => acked = true,
            ServerMsg::Events { events, .. } if !events.is_empty() => seen = true,
            ServerMsg::Events { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next seq of client `id` on stream "healthy" (from the log).
async fn next_seq(server: &TestServer, id: u8) -> u64 {
    let body = http()
        .get(server.url("/v1/streams/healthy/events?after=0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hex = client_id(id).to_hex();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["client_id"] == hex.as_str())
        .count() as u64
        + 1
}

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        max_frame_bytes: 64 << 10,
        max_payload_bytes: 1024,
        max_subscriptions: 2,
        ..config(dir.path())
    })
    .await;
    (dir, server)
}

fn bin(b: &[u8]) -> Message {
    Message::Binary(b.to_vec().into())
}

#[tokio::test]
async fn malformed_frame() {
    let (_d, s) = server().await;
    expect_error(
        &s,
        true,
        vec![bin(&[0xff, 0x01, 0x02])],
        ErrorCode::MalformedFrame,
        1002,
    )
    .await;
    expect_error(
        &s,
        false,
        vec![bin(&[0x05, 0xff])],
        ErrorCode::MalformedFrame,
        1002,
    )
    .await;
    // An empty binary frame.
    expect_error(&s, true, vec![bin(&[])], ErrorCode::MalformedFrame, 1002).await;
    // Trailing bytes after a valid message.
    let mut ping = ClientMsg::Ping { nonce: 1 }.encode();
    ping.push(0);
    expect_error(&s, true, vec![bin(&ping)], ErrorCode::MalformedFrame, 1002).await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_frame() {
    let (_d, s) = server().await;
    // Over the 64 KiB limit: refused by the frame reader before it is buffered.
    expect_error(
        &s,
        true,
        vec![bin(&vec![3u8; 100 << 10])],
        ErrorCode::FrameTooLarge,
        1009,
    )
    .await;
    // Far over it: the server stops reading at the frame header and hangs
    // up. The client is still writing the rest, so the hang-up may reach it
    // as a reset that discards the Error and Close frames; what must hold
    // is that nothing else arrives, the connection ends, and the server
    // never buffers the frame nor suffers from it.
    let mut c = Client::hello(&s.ws_url(), client_id(2)).await.0;
    let _ = futures_util::SinkExt::send(&mut c.ws, bin(&vec![3u8; 8 << 20])).await;
    let (error, close) = c.recv_close().await;
    if let Some(e) = error {
        assert!(
            matches!(
                e,
                ServerMsg::Error {
                    code: ErrorCode::FrameTooLarge,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    if let Some(f) = close {
        assert_eq!(u16::from(f.code), 1009);
    }
    // Still serving: a fresh client gets the typed error for a smaller one.
    expect_error(
        &s,
        true,
        vec![bin(&vec![3u8; 65 << 10])],
        ErrorCode::FrameTooLarge,
        1009,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn wrong_protocol_version() {
    let (_d, s) = server().await;
    // A Hello of version 6, with a layout this build does not know.
    expect_error(
        &s,
        false,
        vec![bin(&[0, 6, 0xff, 0xff])],
        ErrorCode::ProtocolVersion,
        1002,
    )
    .await;
    // A version-1 client (intents without `seen`) is refused the same way.
    let v1 = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sync-core/fixtures/protocol-v1/client-hello.bin"),
    )
    .unwrap();
    expect_error(&s, false, vec![bin(&v1)], ErrorCode::ProtocolVersion, 1002).await;
    // So is a version-2 client (it cannot read `Checkpoint`).
    let v2 = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sync-core/fixtures/protocol-v2/client-hello.bin"),
    )
    .unwrap();
    expect_error(&s, false, vec![bin(&v2)], ErrorCode::ProtocolVersion, 1002).await;
    s.stop().await;
}

#[tokio::test]
async fn first_frame_not_hello_and_second_hello() {
    let (_d, s) = server().await;
    let ping = ClientMsg::Ping { nonce: 1 }.encode();
    expect_error(&s, false, vec![bin(&ping)], ErrorCode::HelloRequired, 1002).await;
    let hello = ClientMsg::hello(client_id(1), None).encode();
    expect_error(
        &s,
        true,
        vec![bin(&hello)],
        ErrorCode::UnexpectedHello,
        1002,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn text_frames_are_refused() {
    let (_d, s) = server().await;
    expect_error(
        &s,
        true,
        vec![Message::Text("{\"hello\":1}".into())],
        ErrorCode::MalformedFrame,
        1002,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn unknown_message_kind() {
    let (_d, s) = server().await;
    expect_error(&s, true, vec![bin(&[9])], ErrorCode::MalformedFrame, 1002).await;
    expect_error(
        &s,
        true,
        vec![bin(&[200, 1])],
        ErrorCode::MalformedFrame,
        1002,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn invalid_stream_names_and_seqs_in_frames() {
    let (_d, s) = server().await;
    // Subscribe { stream: "a b", after: 0 }.
    expect_error(
        &s,
        true,
        vec![bin(&[1, 3, b'a', b' ', b'b', 0])],
        ErrorCode::MalformedFrame,
        1002,
    )
    .await;
    // Subscribe with a 201-byte name.
    let mut long = vec![1u8, 201, 1];
    long.extend(std::iter::repeat_n(b'a', 201));
    long.push(0);
    expect_error(&s, true, vec![bin(&long)], ErrorCode::MalformedFrame, 1002).await;
    // Push { stream: "a", intents: [(seq 0, "")] }.
    expect_error(
        &s,
        true,
        vec![bin(&[3, 1, b'a', 1, 0, 0])],
        ErrorCode::MalformedFrame,
        1002,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn too_many_subscriptions() {
    let (_d, s) = server().await;
    let sub = |name: &str| {
        bin(&ClientMsg::Subscribe {
            stream: stream(name),
            after: sync_core::Offset(0),
            resume: None,
        }
        .encode())
    };
    // Re-subscribing to the same stream does not count twice.
    expect_error(
        &s,
        true,
        vec![sub("a"), sub("a"), sub("b"), sub("c")],
        ErrorCode::TooManySubscriptions,
        1008,
    )
    .await;
    s.stop().await;
}

/// A client that connects, says Hello and then never answers anything
/// (a half-open connection): raw TCP, so nothing answers pings for it.
#[tokio::test]
async fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(500),
        ..config(dir.path())
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let hello = ClientMsg::hello(client_id(1), None).encode();
    // One masked binary frame (zero mask: the payload is unchanged).
    let mut frame = vec![0x82, 0x80 | hello.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&hello);
    tcp.write_all(&frame).await.unwrap();
    let started = tokio::time::Instant::now();
    // Read, never answer, until the server hangs up.
    let mut bytes = Vec::new();
    within(
        "the server to drop the idle connection",
        tcp.read_to_end(&mut bytes),
    )
    .await
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    let body = &bytes[bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let frames = parse_server_frames(body);
    let binaries: Vec<ServerMsg> = frames
        .iter()
        .filter(|(op, _)| *op == 2)
        .map(|(_, p)| ServerMsg::decode(p, 1 << 20).unwrap())
        .collect();
    assert!(matches!(binaries.first(), Some(ServerMsg::Welcome { .. })));
    assert!(
        matches!(
            binaries.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::IdleTimeout,
                ..
            })
        ),
        "{binaries:?}"
    );
    assert!(frames.iter().any(|(op, _)| *op == 9), "the server pinged");
    let close = frames
        .iter()
        .find(|(op, _)| *op == 8)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1008);
    server.stop().await;
}

/// (opcode, payload) of each unmasked server frame.
fn parse_server_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 2 {
        let op = b[0] & 0x0f;
        let (len, head) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        if b.len() < head + len {
            break;
        }
        out.push((op, b[head..head + len].to_vec()));
        b = &b[head + len..];
    }
    out
}

// ---- HTTP ----

async fn post(
    server: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let r = http()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "application/json");
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

async fn get(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut req = http().get(server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

#[tokio::test]
async fn http_bad_bodies() {
    let (_d, s) = server().await;
    let id = client_id(1).to_hex();
    let path = "/v1/streams/h/intents";
    for (body, status, expected) in [
        ("not json".to_string(), 400, "INVALID_JSON"),
        ("".to_string(), 400, "INVALID_JSON"),
        (
            format!(r#"{{"client_id":"{id}","seq":1}}"#),
            400,
            "INVALID_JSON",
        ),
        (
            format!(r#"{{"client_id":"{id}","seq":1,"payload":1,"x":2}}"#),
            400,
            "INVALID_JSON",
        ),
        (
            r#"{"client_id":"xyz","seq":1,"payload":1}"#.to_string(),
            400,
            "INVALID_CLIENT_ID",
        ),
        (
            format!(r#"{{"client_id":"{id}","seq":0,"payload":1}}"#),
            400,
            "INVALID_SEQ",
        ),
        (
            format!(r#"{{"client_id":"{id}","seq":-1,"payload":1}}"#),
            400,
            "INVALID_JSON",
        ),
        (
            format!(r#"{{"client_id":"{id}","seq":3,"payload":1}}"#),
            409,
            "SEQ_GAP",
        ),
    ] {
        let (st, v) = post(&s, path, body.clone()).await;
        assert_eq!((st, code(&v)), (status, expected), "{body}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if expected == "SEQ_GAP" {
            assert_eq!(v["error"]["expected_seq"], 1);
        }
    }
    // Body over the frame limit (64 KiB here).
    let big = format!(
        r#"{{"client_id":"{id}","seq":1,"payload":"{}"}}"#,
        "x".repeat(100 << 10)
    );
    let (st, v) = post(&s, path, big).await;
    assert_eq!((st, code(&v)), (413, "FRAME_TOO_LARGE"));
    // Payload over the payload limit (1 KiB): a stored rejection.
    let body = format!(
        r#"{{"client_id":"{id}","seq":1,"payload":"{}"}}"#,
        "x".repeat(2000)
    );
    let (st, v) = post(&s, path, body).await;
    assert_eq!((st, code(&v)), (413, "PAYLOAD_TOO_LARGE"));
    assert_eq!(v["error"]["seq"], 1);
    assert_eq!(v["error"]["duplicate"], false);
    let (st, v) = post(
        &s,
        path,
        format!(r#"{{"client_id":"{id}","seq":1,"payload":1}}"#),
    )
    .await;
    assert_eq!((st, code(&v)), (413, "PAYLOAD_TOO_LARGE"));
    assert_eq!(v["error"]["duplicate"], true);
    let (st, v) = post(
        &s,
        path,
        format!(r#"{{"client_id":"{id}","seq":2,"payload":1}}"#),
    )
    .await;
    assert_eq!(
        (st, &v),
        (200, &serde_json::json!({"offset": 1, "duplicate": false}))
    );
    s.stop().await;
}

#[tokio::test]
async fn http_bad_urls_and_parameters() {
    let (_d, s) = server().await;
    let (st, v) = post(&s, "/v1/streams/a%20b/intents", "{}").await;
    assert_eq!((st, code(&v)), (400, "INVALID_STREAM"));
    let long = "a".repeat(201);
    let (st, v) = get(&s, &format!("/v1/streams/{long}"), &[]).await;
    assert_eq!((st, code(&v)), (400, "INVALID_STREAM"));
    let (st, v) = get(&s, "/v1/streams/a%FF", &[]).await;
    assert_eq!((st, code(&v)), (400, "INVALID_STREAM"));
    let (st, v) = get(&s, "/v1/streams/a/events?after=abc", &[]).await;
    assert_eq!((st, code(&v)), (400, "INVALID_OFFSET"));
    let (st, v) = get(&s, "/v1/streams/a/events?after=-3", &[]).await;
    assert_eq!((st, code(&v)), (400, "INVALID_OFFSET"));
    let (st, v) = get(&s, "/v1/streams/a/events?limit=0", &[]).await;
    assert_eq!((st, code(&v)), (400, "INVALID_REQUEST"));
    let sse = [("accept", "text/event-stream"), ("last-event-id", "soon")];
    let (st, v) = get(&s, "/v1/streams/a/events", &sse).await;
    assert_eq!((st, code(&v)), (400, "INVALID_OFFSET"));
    let (st, v) = get(&s, "/v1/nothing/here", &[]).await;
    assert_eq!((st, code(&v)), (404, "NOT_FOUND"));
    let (st, v) = get(&s, "/v1/ws", &[]).await;
    assert_eq!((st, code(&v)), (400, "INVALID_REQUEST"));
    let r = http().delete(s.url("/v1/streams/a")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(code(&v), "INVALID_REQUEST");
    // The server is fine.
    let (st, _) = get(&s, "/healthz", &[]).await;
    assert_eq!(st, 200);
    s.stop().await;
}
