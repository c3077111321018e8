//! Limits per subject (the token's `sub`; the client address when
//! authentication is off) hold across WebSocket, HTTP and SSE: one user
//! cannot take every connection, push past its rate by switching
//! transport, create streams without end, or flood bytes. Each refusal is
//! typed and counted, and other users are not affected.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use server_stub::auth::{now_secs, sign, Secret};
use sync_core::{ErrorCode, ServerMsg};

const SECRET: &[u8] = b"subject-test-secret-0123456789abcdef";

fn token(sub: &str) -> String {
    let claims =
        serde_json::json!({"sub": sub, "exp": now_secs() + 3600, "read": ["*"], "write": ["*"]});
    sign(&claims.to_string(), SECRET)
}

async fn trips(s: &TestServer, limit: &str) -> f64 {
    metric(
        s,
        &format!("logsync_limit_trips_total{{limit=\"{limit}\"}}"),
    )
    .await
}

async fn expect_error(c: &mut Client, code: ErrorCode, close_code: u16) {
    let (error, close) = c.recv_close().await;
    match error {
        Some(ServerMsg::Error { code: got, message }) => assert_eq!(got, code, "{message}"),
        other => panic!("expected Error {code}, got {other:?}"),
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(close_code));
}

fn client_hex(n: u8) -> String {
    format!("{n:02x}").repeat(16)
}

async fn post(s: &TestServer, stream: &str, client: u8, seq: u64, payload: &str) -> (u16, String) {
    let r = http()
        .post(s.url(&format!("/v1/streams/{stream}/intents")))
        .body(format!(
            r#"{{"client_id":"{}","seq":{seq},"payload":{payload}}}"#,
            client_hex(client)
        ))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn code_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    error_code(&v).to_string()
}

#[tokio::test]
async fn one_subject_holds_at_most_its_connections_over_websocket_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        jwt_secret: Some(Secret::new(SECRET).unwrap()),
        max_subject_connections: 3,
        ..config(dir.path())
    })
    .await;
    let alice = token("alice");
    let mut held = Vec::new();
    for i in 0..2 {
        let (c, first) = Client::hello_with_token(&s.ws_url(), client_id(i), Some(&alice)).await;
        assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
        held.push(c);
    }
    let feed = |t: &str| {
        http()
            .get(s.url(&format!("/v1/streams/x/events?token={t}")))
            .header("accept", "text/event-stream")
            .send()
    };
    let sse = feed(&alice).await.unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    // A fourth of any kind is refused.
    let r = feed(&alice).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(code_of(&r.text().await.unwrap()), "TOO_MANY_CONNECTIONS");
    let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(9), Some(&alice)).await;
    match first {
        ServerMsg::Error { code, .. } => assert_eq!(code, ErrorCode::TooManyConnections),
        other => panic!("expected TOO_MANY_CONNECTIONS, got {other:?}"),
    }
    let (_, close) = c.recv_close().await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    // Another user is not affected.
    let (_, first) =
        Client::hello_with_token(&s.ws_url(), client_id(20), Some(&token("bob"))).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    assert_eq!(trips(&s, "subject_connections").await, 2.0);
    // A place comes back when a connection ends.
    drop(sse);
    within("alice's place to come back", async {
        loop {
            let r = feed(&alice).await.unwrap();
            if r.status().as_u16() == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn one_subject_intent_rate_holds_across_websocket_and_http() {
    let dir = tempfile::tempdir().unwrap();
    // Authentication off: the subject is the client address (127.0.0.1).
    let s = TestServer::start(server_stub::Config {
        max_subject_intents_per_sec: 1,
        subject_intents_burst: 10,
        ..config(dir.path())
    })
    .await;
    // The burst over WebSocket.
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    let intents: Vec<(u64, Vec<u8>)> = (1..=10).map(|i| (i, b"1".to_vec())).collect();
    c.push("a", &intents).await;
    for _ in 0..10 {
        assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    }
    // The same address over HTTP, three at once: the first waits for its
    // token (paced, about a second), the others would wait longer and are
    // refused.
    let answers =
        futures_util::future::join_all((0..3u8).map(|i| post(&s, "b", 2 + i, 1, "1"))).await;
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers
        .iter()
        .filter(|(status, body)| *status == 429 && code_of(body) == "RATE_LIMITED")
        .count();
    assert_eq!((ok, refused), (1, 2), "{answers:?}");
    // And back on the WebSocket: a push of three is refused too.
    let more: Vec<(u64, Vec<u8>)> = (11..=13).map(|i| (i, b"1".to_vec())).collect();
    c.push("a", &more).await;
    expect_error(&mut c, ErrorCode::RateLimited, 1008).await;
    assert!(trips(&s, "subject_intent_rate").await >= 2.0);
    s.stop().await;
}

#[tokio::test]
async fn one_subject_creates_at_most_its_streams_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_new_streams_per_hour: 3,
        ..config(dir.path())
    })
    .await;
    for name in ["n1", "n2", "n3"] {
        let (status, body) = post(&s, name, 1, 1, "1").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(&s, "n4", 1, 1, "1").await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (429, "RATE_LIMITED"),
        "{body}"
    );
    // Streams that exist take writes as before.
    let (status, body) = post(&s, "n1", 1, 2, "1").await;
    assert_eq!(status, 200, "{body}");
    // Over WebSocket too.
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(2)).await;
    c.push("n2", &[(1, b"1".to_vec())]).await;
    assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    c.push("n5", &[(1, b"1".to_vec())]).await;
    expect_error(&mut c, ErrorCode::RateLimited, 1008).await;
    assert_eq!(trips(&s, "subject_new_streams").await, 2.0);
    // Nothing was stored for the refused streams.
    let page = http()
        .get(s.url("/v1/streams/n5"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("\"head\":0"), "{page}");
    s.stop().await;
}

#[tokio::test]
async fn one_subject_byte_rate_holds() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_frame_bytes: 32 << 10,
        max_payload_bytes: 16 << 10,
        max_subject_bytes_per_sec: 32 << 10,
        subject_bytes_burst: 32 << 10,
        ..config(dir.path())
    })
    .await;
    let payload = String::from_utf8(json_payload("p", 15 << 10)).unwrap();
    // Eight writers of one address at once: 120 KiB against 32 KiB and
    // 32 KiB/s. Some are paced, those past a second's wait refused.
    let answers =
        futures_util::future::join_all((0..8u8).map(|i| post(&s, "bytes", 10 + i, 1, &payload)))
            .await;
    let refused = answers
        .iter()
        .filter(|(status, body)| *status == 429 && code_of(body) == "RATE_LIMITED")
        .count();
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    assert!(refused >= 1, "{answers:?}");
    assert_eq!(ok + refused, 8, "{answers:?}");
    assert_eq!(trips(&s, "subject_bytes").await, refused as f64);
    // Another push is taken once the bucket has refilled.
    within("the byte budget to refill", async {
        loop {
            let (status, _) = post(&s, "bytes", 30, 1, "1").await;
            if status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    s.stop().await;
}
