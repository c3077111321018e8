//! Every abuse limit trips with its typed error and its metric
//! (`logsync_limit_trips_total{limit}`), and never harms the server:
//! frame size, intent rate (paced, then refused), subscriptions per
//! connection, pending bytes of a client that does not read, and the
//! connection count (WebSocket and SSE).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use sync_core::{ClientMsg, ErrorCode, ServerMsg};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

async fn trips(s: &TestServer, limit: &str) -> f64 {
    metric(
        s,
        &format!("logsync_limit_trips_total{{limit=\"{limit}\"}}"),
    )
    .await
}

/// Reads until the close; expects `Error { code }` and the close code.
async fn expect_error(c: &mut Client, code: ErrorCode, close_code: u16) {
    let (error, close) = c.recv_close().await;
    match error {
        Some(ServerMsg::Error { code: got, message }) => assert_eq!(got, code, "{message}"),
        other => panic!("expected Error {code}, got {other:?}"),
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(close_code));
}

#[tokio::test]
async fn frames_and_bodies_over_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_frame_bytes: 4096,
        max_payload_bytes: 1024,
        ..config(dir.path())
    })
    .await;
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    let _ = c.ws.send(Message::Binary(vec![3u8; 5000].into())).await;
    expect_error(&mut c, ErrorCode::FrameTooLarge, 1009).await;
    assert_eq!(trips(&s, "frame_bytes").await, 1.0);
    let r = http()
        .post(s.url("/v1/streams/x/intents"))
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(error_code(&v), "FRAME_TOO_LARGE");
    assert_eq!(trips(&s, "frame_bytes").await, 2.0);
    s.stop().await;
}

#[tokio::test]
async fn a_client_over_its_intent_rate_is_slowed_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_intents_per_sec: 20,
        intents_burst: 20,
        ..config(dir.path())
    })
    .await;
    let intents = |from: u64, to: u64| -> Vec<(u64, Vec<u8>)> {
        (from..=to)
            .map(|i| (i, format!("{i}").into_bytes()))
            .collect()
    };

    // A little over the rate: the second push waits for its tokens (about
    // half a second at 20/s), and nothing is refused.
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    let started = tokio::time::Instant::now();
    c.push("paced", &intents(1, 20)).await;
    c.push("paced", &intents(21, 30)).await;
    for want in 1..=30 {
        match c.recv().await {
            ServerMsg::Ack { seq, .. } => assert_eq!(seq.get(), want),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "10 intents over a burst of 20 at 20/s need ~500 ms, took {:?}",
        started.elapsed()
    );
    assert!(metric(&s, "logsync_intents_paced_total").await >= 1.0);
    assert_eq!(trips(&s, "intent_rate").await, 0.0);

    // Far over it: one push of 100 needs 4 s of tokens. The 20 in hand are
    // taken and answered, then RATE_LIMITED ends the connection.
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(2)).await;
    c.push("flood", &intents(1, 100)).await;
    for want in 1..=20 {
        match c.recv().await {
            ServerMsg::Ack { seq, .. } => assert_eq!(seq.get(), want),
            other => panic!("unexpected {other:?}"),
        }
    }
    expect_error(&mut c, ErrorCode::RateLimited, 1008).await;
    assert_eq!(trips(&s, "intent_rate").await, 1.0);
    let page: serde_json::Value = serde_json::from_str(
        &http()
            .get(s.url("/v1/streams/flood/events?limit=1"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(page["head"], 20, "the intents not taken were not stored");
    // A client that comes back resends the rest from where it stopped.
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(2)).await;
    c.push("flood", &intents(21, 30)).await;
    match c.recv().await {
        ServerMsg::Ack {
            seq,
            offset,
            duplicate,
            ..
        } => assert_eq!((seq.get(), offset.0, duplicate), (21, 21, false)),
        other => panic!("unexpected {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn too_many_subscriptions_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_subscriptions: 2,
        ..config(dir.path())
    })
    .await;
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    for name in ["a", "b", "a"] {
        c.subscribe(name, 0).await;
        assert!(matches!(c.recv().await, ServerMsg::Events { .. }));
    }
    c.subscribe("c", 0).await;
    expect_error(&mut c, ErrorCode::TooManySubscriptions, 1008).await;
    assert_eq!(trips(&s, "subscriptions").await, 1.0);
    s.stop().await;
}

#[tokio::test]
async fn too_many_connections_websocket_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_connections: 2,
        ..config(dir.path())
    })
    .await;
    let (a, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    let sse = http()
        .get(s.url("/v1/streams/x/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    // Both places are taken: a third WebSocket and a second SSE feed are
    // refused before anything is set up for them.
    match try_connect(&s.ws_url(), &[]).await {
        Err((status, body)) => {
            assert_eq!(status, 429);
            assert_eq!(error_code(&body), "TOO_MANY_CONNECTIONS");
        }
        Ok(_) => panic!("a connection over the limit was accepted"),
    }
    let r = http()
        .get(s.url("/v1/streams/x/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Plain HTTP requests do not hold a place.
    let r = http().get(s.url("/v1/streams/x")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(trips(&s, "connections").await, 2.0);

    // A place is free again once a connection ends.
    drop(sse);
    let mut c = within("a place to come free", async {
        loop {
            match try_connect(&s.ws_url(), &[]).await {
                Ok(c) => return c,
                Err((429, _)) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await;
    c.send(&ClientMsg::hello(client_id(3), None)).await;
    assert!(matches!(c.recv().await, ServerMsg::Welcome { .. }));
    drop(a);
    s.stop().await;
}

/// A client that subscribes to a large backlog and reads nothing, while it
/// keeps sending: the server holds at most its pending-bytes budget for it,
/// and once answers have waited `idle_timeout` for room it ends the
/// connection with SLOW_CONSUMER.
#[tokio::test]
async fn a_client_that_reads_nothing_is_refused_as_a_slow_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        ping_interval: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(1),
        send_queue_bytes: 256 << 10,
        ..config(dir.path())
    })
    .await;
    // 8 MiB of events in the stream.
    let (mut w, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    for i in 1..=32 {
        w.push("big", &[(i, json_payload("e", 250 << 10))]).await;
        assert!(matches!(w.recv().await, ServerMsg::Ack { .. }));
    }
    // A socket with a small receive window, so the backlog cannot hide in
    // kernel buffers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let tcp = socket.connect(s.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(s.ws_url(), MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut slow = Client {
        ws,
        id: client_id(2),
    };
    slow.send(&ClientMsg::hello(client_id(2), None)).await;
    slow.subscribe("big", 0).await;
    // Pings, never reading their Pongs: the connection's queue fills.
    within("the slow-consumer trip", async {
        let mut nonce = 0;
        while trips(&s, "pending_bytes").await < 1.0 {
            for _ in 0..50 {
                nonce += 1;
                let _ = slow
                    .ws
                    .send(Message::Binary(ClientMsg::Ping { nonce }.encode().into()))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Reading again, the client finds the typed error at the end.
    expect_error(&mut slow, ErrorCode::SlowConsumer, 1008).await;
    // Nobody else was affected (a new client: `w` read nothing meanwhile,
    // so it did not answer pings either).
    drop(w);
    let (mut w, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    w.push("big", &[(33, b"1".to_vec())]).await;
    assert!(matches!(w.recv().await, ServerMsg::Ack { .. }));
    s.stop().await;
}
