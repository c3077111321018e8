//! A bounded denial-of-service soak on loopback: one `logsync-server`
//! process (authentication on, default limits) under slowloris sockets,
//! WebSockets that never say `Hello`, an SSE flood and a stream flood from
//! one subject, while a well-behaved client keeps writing and reading.
//! Prints the well-behaved client's latency (p50, p99, max) and error
//! count, what the attackers got, and the server's limit trips. Stops by
//! itself after `--seconds` (default 20) and stops the server by its PID.
//!
//! ```sh
//! cargo build --release -p server-stub --bin logsync-server --example dos_soak
//! target/release/examples/dos_soak --server-bin target/release/logsync-server --seconds 20
//! ```
//!
//! Flags after `--` go to the server (e.g. `-- --max-tcp-connections 1000`).
//! The attackers connect from 127.0.0.2, the well-behaved client from
//! 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sync_core::{ClientId, ClientMsg, Offset, PushIntent, Seq, ServerMsg, StreamName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Attackers connect from this loopback address, the well-behaved client
/// from 127.0.0.1 (so a per-address cap can tell them apart).
const ATTACKER_IP: [u8; 4] = [127, 0, 0, 2];
const SECRET: &str = "dos-soak-secret-0123456789abcdef-0123456789";
const SLOWLORIS: usize = 300;
const NO_HELLO: usize = 200;
const SSE_FLOODERS: usize = 8;
const STREAM_FLOODERS: usize = 4;

#[derive(Default)]
struct Counts {
    slowloris_cut: AtomicU64,
    no_hello_cut: AtomicU64,
    sse_open: AtomicU64,
    sse_refused: AtomicU64,
    streams_created: AtomicU64,
    streams_refused: AtomicU64,
    shed_503: AtomicU64,
}

async fn attacker_connect(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((ATTACKER_IP, 0)))?;
    socket.connect(addr).await
}

fn token(sub: &str) -> String {
    let exp = server_stub::auth::now_secs() + 3600;
    let claims = serde_json::json!({"sub": sub, "exp": exp, "read": ["*"], "write": ["*"]});
    server_stub::auth::sign(&claims.to_string(), SECRET.as_bytes())
}

#[tokio::main]
async fn main() {
    let mut server_bin = PathBuf::from("target/release/logsync-server");
    let mut seconds = 20u64;
    let mut server_args: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--" => server_args.extend(it.by_ref()),
            "--server-bin" => server_bin = it.next().expect("--server-bin PATH").into(),
            "--seconds" => seconds = it.next().expect("--seconds N").parse().expect("a number"),
            other => panic!("unknown flag {other}; use --server-bin PATH --seconds N"),
        }
    }
    let seconds = seconds.clamp(5, 600);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&server_bin)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("soak.db"))
        .args(&server_args)
        .env("LOGSYNC_JWT_SECRET", SECRET)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_bin.display()));
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    let addr: std::net::SocketAddr = line
        .strip_prefix("logsync-server listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    println!("server {addr}; attacking for {seconds} s");
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();

    for i in 0..SLOWLORIS {
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let Ok(mut tcp) = attacker_connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let _ = tcp
                    .write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-{i}: ").as_bytes())
                    .await;
                // One byte a second, never finishing the head.
                loop {
                    if stop.load(Relaxed) {
                        return;
                    }
                    let mut b = [0u8; 256];
                    match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut b)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            counts.slowloris_cut.fetch_add(1, Relaxed);
                            break;
                        }
                        Ok(Ok(n)) => {
                            if b[..n].starts_with(b"HTTP/1.1 503") {
                                counts.shed_503.fetch_add(1, Relaxed);
                            }
                        }
                        Err(_) => {
                            if tcp.write_all(b"a").await.is_err() {
                                counts.slowloris_cut.fetch_add(1, Relaxed);
                                break;
                            }
                        }
                    }
                }
            }
        }));
    }
    for _ in 0..NO_HELLO {
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let url = format!("ws://{addr}/v1/ws");
                let Ok(tcp) = attacker_connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio_tungstenite::client_async(url, tcp),
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                // Reads (answering pings) and never says Hello, until the
                // server closes the socket.
                loop {
                    if stop.load(Relaxed) {
                        return;
                    }
                    match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                        Ok(Some(Ok(_))) | Err(_) => continue,
                        Ok(_) => break,
                    }
                }
                counts.no_hello_cut.fetch_add(1, Relaxed);
            }
        }));
    }
    let mallory = token("mallory");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .local_address(std::net::IpAddr::from(ATTACKER_IP))
        .build()
        .unwrap();
    for _ in 0..SSE_FLOODERS {
        let (stop, counts, http, t) = (stop.clone(), counts.clone(), http.clone(), mallory.clone());
        tasks.push(tokio::spawn(async move {
            let mut feeds = Vec::new();
            while !stop.load(Relaxed) && feeds.len() < 500 {
                let r = http
                    .get(format!("http://{addr}/v1/streams/flood/events?token={t}"))
                    .header("accept", "text/event-stream")
                    .timeout(Duration::from_secs(3600))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 200 => {
                        counts.sse_open.fetch_add(1, Relaxed);
                        feeds.push(r);
                    }
                    _ => {
                        counts.sse_refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            while !stop.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(feeds);
        }));
    }
    for f in 0..STREAM_FLOODERS {
        let (stop, counts, http, t) = (stop.clone(), counts.clone(), http.clone(), mallory.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let client = format!("{:02x}", 0xa0 + f).repeat(16);
            while !stop.load(Relaxed) {
                n += 1;
                let r = http
                    .post(format!("http://{addr}/v1/streams/flood-{f}-{n}/intents"))
                    .bearer_auth(&t)
                    .body(format!(
                        r#"{{"client_id":"{client}","seq":1,"payload":{{"n":{n}}}}}"#
                    ))
                    .send()
                    .await;
                match r.map(|r| r.status().as_u16()) {
                    Ok(200) => counts.streams_created.fetch_add(1, Relaxed),
                    _ => counts.streams_refused.fetch_add(1, Relaxed),
                };
            }
        }));
    }

    // The well-behaved client: push one intent, wait for its Ack and for
    // the event on its own subscription; reconnect on any error.
    let alice = token("alice");
    let good = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut latencies: Vec<Duration> = Vec::new();
            let mut errors = 0u64;
            let stream = StreamName::new("alice/notes").unwrap();
            let id = ClientId([0x11; 16]);
            let mut seq = 0u64;
            // Let the attack build up first.
            tokio::time::sleep(Duration::from_secs(2)).await;
            'outer: while !stop.load(Relaxed) {
                let url = format!("ws://{addr}/v1/ws");
                let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio_tungstenite::connect_async(url),
                )
                .await
                else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let hello = ClientMsg::hello(id, Some(alice.clone()));
                let sub = ClientMsg::Subscribe {
                    stream: stream.clone(),
                    after: Offset(seq),
                    resume: None,
                };
                if ws
                    .send(Message::Binary(hello.encode().into()))
                    .await
                    .is_err()
                    || ws.send(Message::Binary(sub.encode().into())).await.is_err()
                {
                    errors += 1;
                    continue;
                }
                while !stop.load(Relaxed) {
                    let next = seq + 1;
                    let push = ClientMsg::Push {
                        stream: stream.clone(),
                        intents: vec![PushIntent {
                            seen: sync_core::Offset::ZERO,
                            seq: Seq::new(next).unwrap(),
                            payload: br#"{"note":"hello"}"#.to_vec(),
                            schema: 1,
                        }],
                    };
                    let started = Instant::now();
                    if ws
                        .send(Message::Binary(push.encode().into()))
                        .await
                        .is_err()
                    {
                        errors += 1;
                        continue 'outer;
                    }
                    let (mut acked, mut seen) = (false, false);
                    while !(acked && seen) {
                        let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                        let Ok(Some(Ok(m))) = m else {
                            errors += 1;
                            continue 'outer;
                        };
                        let Message::Binary(b) = m else { continue };
                        match ServerMsg::decode(&b, 64 << 20) {
                            Ok(ServerMsg::Ack { seq: s, .. }) if s.get() == next => acked = true,
                            Ok(ServerMsg::Events { events, .. }) => {
                                seen |= events.iter().any(|e| e.seq.get() == next)
                            }
                            Ok(ServerMsg::Error { .. }) | Err(_) => {
                                errors += 1;
                                continue 'outer;
                            }
                            Ok(_) => {}
                        }
                    }
                    latencies.push(started.elapsed());
                    seq = next;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (latencies, errors)
        })
    };

    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let metrics = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok();
    let metrics = match metrics {
        Some(r) => r.text().await.unwrap_or_default(),
        None => String::new(),
    };
    stop.store(true, Relaxed);
    let (mut latencies, errors) = good.await.unwrap();
    for t in tasks {
        t.abort();
    }
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;

    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "well-behaved client: {} round trips (push -> durable Ack and own event), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, errors {errors}",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    let c = &counts;
    println!(
        "attackers: slowloris sockets cut {}, no-Hello sockets cut {}, SSE feeds open {} / refused {}, streams created {} / refused {}, 503 at the TCP cap {}",
        c.slowloris_cut.load(Relaxed),
        c.no_hello_cut.load(Relaxed),
        c.sse_open.load(Relaxed),
        c.sse_refused.load(Relaxed),
        c.streams_created.load(Relaxed),
        c.streams_refused.load(Relaxed),
        c.shed_503.load(Relaxed),
    );
    for line in metrics.lines().filter(|l| {
        (l.starts_with("logsync_limit_trips_total") && !l.ends_with(" 0"))
            || l.starts_with("logsync_tcp_connections ")
            || l.starts_with("logsync_subscriptions ")
    }) {
        println!("  {line}");
    }
}
