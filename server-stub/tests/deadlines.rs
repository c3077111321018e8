//! Peers that hold sockets without moving: a WebSocket that never says
//! `Hello` (its library answering pings), one that says `Hello` and then
//! only answers pings, partial and dripped request heads, idle keep-alive
//! connections, slow request bodies, and more sockets than the server
//! accepts. Each is cut by its deadline or refused by the connection cap,
//! with its metric, and real clients get through.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sync_core::{ClientMsg, ErrorCode, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to cut a peer whose deadline is
/// a fraction of a second: far longer than the deadline, far shorter
/// than "held forever".
const CUT_WITHIN: Duration = Duration::from_secs(5);

async fn trips(s: &TestServer, limit: &str) -> f64 {
    metric(
        s,
        &format!("logsync_limit_trips_total{{limit=\"{limit}\"}}"),
    )
    .await
}

/// Short deadlines for these tests.
fn short(dir: &std::path::Path) -> server_stub::Config {
    server_stub::Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(800),
        hello_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        ..config(dir)
    }
}

/// Reads until the server closes the socket; what it sent, or `None`
/// when it was still open after `CUT_WITHIN`.
async fn read_to_close(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(CUT_WITHIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| got)
}

#[tokio::test]
async fn a_websocket_that_never_says_hello_is_closed_at_the_hello_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_connections: 3,
        ..short(dir.path())
    })
    .await;
    // Three sockets that upgrade and never say Hello, answering every ping
    // (tungstenite does so while it reads): today they would hold all
    // three places.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(Client::connect(&s.ws_url()).await);
    }
    for c in &mut silent {
        let (error, close) = tokio::time::timeout(CUT_WITHIN, c.recv_close())
            .await
            .expect("a socket without Hello is still open after 5 s");
        match error {
            Some(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::IdleTimeout),
            other => panic!("expected IDLE_TIMEOUT, got {other:?}"),
        }
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    }
    // A real client gets a place (as soon as the closed sockets are gone).
    drop(silent);
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
    c.send(&ClientMsg::hello(client_id(1), None)).await;
    assert!(matches!(c.recv().await, ServerMsg::Welcome { .. }));
    c.push("s", &[(1, b"1".to_vec())]).await;
    assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    assert_eq!(trips(&s, "hello_timeout").await, 3.0);
    drop(c);
    s.stop().await;
}

#[tokio::test]
async fn pongs_alone_do_not_keep_a_websocket_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(short(dir.path())).await;
    let (mut quiet, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    // A client that sends protocol Pings stays.
    let (mut alive, _) = Client::hello(&s.ws_url(), client_id(2)).await;
    let (error, close) = tokio::time::timeout(CUT_WITHIN, async {
        let mut nonce = 0;
        let cut = tokio::spawn(async move { quiet.recv_close().await });
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_millis(1600) {
            nonce += 1;
            alive.send(&ClientMsg::Ping { nonce }).await;
            assert!(matches!(alive.recv().await, ServerMsg::Pong { .. }));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cut.await.unwrap()
    })
    .await
    .expect("a client that only answers pings is still open after 5 s");
    match error {
        Some(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::IdleTimeout),
        other => panic!("expected IDLE_TIMEOUT, got {other:?}"),
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    s.stop().await;
}

#[tokio::test]
async fn a_partial_request_head_is_cut_at_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(short(dir.path())).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut tcp).await.is_some(),
        "a partial request head is still held after 5 s"
    );
    // A partial WebSocket upgrade request too.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut tcp).await.is_some(),
        "a partial upgrade request is still held after 5 s"
    );
    assert!(trips(&s, "header_read_timeout").await >= 2.0);
    s.stop().await;
}

#[tokio::test]
async fn a_dripped_request_head_is_cut_at_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(short(dir.path())).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    // One byte every 50 ms of a head that would take 20 s to finish: each
    // byte is progress, but the deadline is for the whole head.
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 400));
    let started = tokio::time::Instant::now();
    let mut cut = false;
    for b in head {
        if tcp.write_all(&[b]).await.is_err() {
            cut = true;
            break;
        }
        let mut one = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut one)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            _ => {}
        }
        if started.elapsed() > CUT_WITHIN {
            break;
        }
    }
    assert!(
        cut,
        "a dripped head is still read after {:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(short(dir.path())).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer, then nothing: the connection stays open for another
    // request only as long as the header deadline.
    let got = read_to_close(&mut tcp)
        .await
        .expect("an idle keep-alive connection is still open after 5 s");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn a_slow_request_body_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(short(dir.path())).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/streams/s/intents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"client_id\":",
    )
    .await
    .unwrap();
    let got = read_to_close(&mut tcp)
        .await
        .expect("a request whose body stopped is still held after 5 s");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"IDLE_TIMEOUT\""), "{text}");
    assert_eq!(trips(&s, "body_read_timeout").await, 1.0);
    s.stop().await;
}

#[tokio::test]
async fn connections_over_the_tcp_cap_get_a_503_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_tcp_connections: 4,
        header_read_timeout: Duration::from_secs(60),
        ..config(dir.path())
    })
    .await;
    // Four sockets that started a WebSocket upgrade and stopped.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            .await
            .unwrap();
        held.push(tcp);
    }
    // Each accepted in turn: wait until the fourth holds its place.
    let refused = within("a connection over the cap refused", async {
        loop {
            let mut tcp = TcpStream::connect(s.addr).await.unwrap();
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let got = read_to_close(&mut tcp).await.expect("an answer");
            let text = String::from_utf8_lossy(&got).to_string();
            if text.starts_with("HTTP/1.1 503") {
                return text;
            }
            assert!(
                text.starts_with("HTTP/1.1 200"),
                "neither refused nor served: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.contains("\"TOO_MANY_CONNECTIONS\""), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 5"));
    // One holder leaves: its place is free again.
    drop(held.pop());
    within("a place to come free", async {
        loop {
            match http().get(s.url("/healthz")).send().await {
                Ok(r) if r.status().as_u16() == 200 => return,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    drop(held.pop());
    assert!(trips(&s, "tcp_connections").await >= 1.0);
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_address_cap_get_a_503_and_other_addresses_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        max_tcp_connections_per_address: 2,
        header_read_timeout: Duration::from_secs(60),
        ..config(dir.path())
    })
    .await;
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let addr = s.addr;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(std::net::SocketAddr::new(ip, 0)).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = from("127.0.0.1").await;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(tcp);
    }
    let ask = |mut tcp: TcpStream| async move {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut tcp).await.expect("an answer");
        String::from_utf8_lossy(&got).to_string()
    };
    let refused = within("the third connection of one address refused", async {
        loop {
            let text = ask(from("127.0.0.1").await).await;
            if text.starts_with("HTTP/1.1 503") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.contains("\"TOO_MANY_CONNECTIONS\""), "{refused}");
    // Another address is served.
    let text = ask(from("127.0.0.2").await).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(held);
    assert!(
        metric(
            &s,
            "logsync_limit_trips_total{limit=\"address_connections\"}"
        )
        .await
            >= 1.0
    );
    s.stop().await;
}
