//! Load generator for several `logsync-server` nodes on one store: durable
//! appends per second and fan-out latency, with the writers and the
//! subscribers spread over the nodes. `bench/postgres.sh` runs it; the
//! numbers are in server-stub/README.md ("Scale-out on PostgreSQL").
//!
//! ```sh
//! cargo build --release -p server-stub --example scaleout
//! target/release/examples/scaleout --server-bin target/release/logsync-server \
//!     --postgres postgres://postgres@127.0.0.1:5432/postgres --nodes 2 --writers 1,10,100
//! ```
//!
//! Every run gets fresh storage (a new PostgreSQL database made through
//! `--postgres`, or a new SQLite file without it) and fresh nodes. Writers
//! are closed loops (push one intent, wait for its durable Ack, push the
//! next); writer `i` uses node `i % nodes` and stream `i % streams`.
//! Subscribers follow stream 0, subscriber `j` on node `j % nodes`. Each payload carries the
//! moment it was pushed, so a subscriber measures push-to-delivery time,
//! split into deliveries by the writer's own node and by another node.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sync_core::{ClientId, ClientMsg, Offset, PushIntent, Seq, ServerMsg, StreamName};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Stream `i` of a run; subscribers follow stream 0.
fn stream_name(i: usize) -> Result<StreamName, String> {
    StreamName::new(format!("bench-{i}")).map_err(|e| e.to_string())
}

struct Args {
    server_bin: PathBuf,
    postgres: Option<String>,
    nodes: usize,
    writers: Vec<usize>,
    subscribers: usize,
    streams: usize,
    duration: Duration,
    warmup: Duration,
    payload_bytes: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        server_bin: PathBuf::from("target/release/logsync-server"),
        postgres: None,
        nodes: 1,
        writers: vec![1, 10, 100],
        subscribers: 4,
        streams: 1,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        payload_bytes: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        let secs = |v: String| -> Result<Duration, String> {
            match v.strip_suffix("ms") {
                Some(ms) => Ok(Duration::from_millis(num(ms.into())? as u64)),
                None => Ok(Duration::from_secs(
                    num(v.trim_end_matches('s').into())? as u64
                )),
            }
        };
        match flag.as_str() {
            "--server-bin" => args.server_bin = value()?.into(),
            "--postgres" => args.postgres = Some(value()?),
            "--nodes" => args.nodes = num(value()?)?.max(1),
            "--writers" => {
                args.writers = value()?
                    .split(',')
                    .map(|w| num(w.into()))
                    .collect::<Result<_, _>>()?
            }
            "--subscribers" => args.subscribers = num(value()?)?,
            "--streams" => args.streams = num(value()?)?.max(1),
            "--duration" => args.duration = secs(value()?)?,
            "--warmup" => args.warmup = secs(value()?)?,
            "--payload-bytes" => args.payload_bytes = num(value()?)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.postgres.is_none() && args.nodes > 1 {
        return Err("several nodes need a shared store: pass --postgres".into());
    }
    Ok(args)
}

/// A server process, stopped by its PID.
struct Node {
    child: Child,
    ws: String,
}

impl Node {
    async fn start(bin: &Path, store: &[String], name: &str) -> Result<Node, String> {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--server-id", name])
            .args(store)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .map_err(|_| "no address line within 30 s")?
        .map_err(|e| e.to_string())?
        .ok_or("the server exited before printing its address")?;
        let addr = line
            .strip_prefix("logsync-server listening on http://")
            .ok_or(format!("unexpected first line {line:?}"))?;
        Ok(Node {
            ws: format!("ws://{addr}/v1/ws"),
            child,
        })
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn hello(url: &str, client: ClientId) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    send(&mut ws, &ClientMsg::hello(client, None)).await?;
    match recv(&mut ws).await? {
        ServerMsg::Welcome { .. } => Ok(ws),
        other => Err(format!("expected Welcome, got {other:?}")),
    }
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<(), String> {
    ws.send(Message::Binary(msg.encode().into()))
        .await
        .map_err(|e| e.to_string())
}

async fn recv(ws: &mut Ws) -> Result<ServerMsg, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                return ServerMsg::decode(&b, 64 << 20).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Close(_))) | None => return Err("connection closed".into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}

/// `{"n":node,"t":micros since start,"p":"xx…"}`, `size` bytes.
fn payload(node: usize, micros: u64, size: usize) -> Vec<u8> {
    let mut s = format!("{{\"n\":{node},\"t\":{micros},\"p\":\"");
    while s.len() + 2 < size {
        s.push('x');
    }
    s.push_str("\"}");
    s.into_bytes()
}

fn parse_payload(p: &[u8]) -> Option<(usize, u64)> {
    let v: serde_json::Value = serde_json::from_slice(p).ok()?;
    Some((v["n"].as_u64()? as usize, v["t"].as_u64()?))
}

#[derive(Default)]
struct Samples {
    ack_us: Vec<u64>,
    same_node_us: Vec<u64>,
    other_node_us: Vec<u64>,
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

/// The run's time origin, its measured window, and where samples go.
#[derive(Clone)]
struct Run {
    start: Instant,
    window: (Instant, Instant),
    samples: Arc<Mutex<Samples>>,
}

async fn writer(
    url: String,
    index: usize,
    node: usize,
    size: usize,
    streams: usize,
    run: Run,
) -> Result<usize, String> {
    let Run {
        start,
        window,
        samples,
    } = run;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(index as u64 + 1).to_be_bytes());
    let mut ws = hello(&url, ClientId(id)).await?;
    let stream = stream_name(index % streams)?;
    let (mut acked, mut lat) = (0usize, Vec::new());
    let mut seq = 0u64;
    while Instant::now() < window.1 {
        seq += 1;
        let sent = Instant::now();
        let micros = sent.duration_since(start).as_micros() as u64;
        let push = ClientMsg::Push {
            stream: stream.clone(),
            intents: vec![PushIntent {
                seen: sync_core::Offset::ZERO,
                seq: Seq::new(seq).map_err(|e| e.to_string())?,
                payload: payload(node, micros, size),
                schema: 1,
            }],
        };
        send(&mut ws, &push).await?;
        loop {
            match recv(&mut ws).await? {
                ServerMsg::Ack { .. } => break,
                ServerMsg::Events { .. } => continue,
                other => return Err(format!("writer {index}: unexpected {other:?}")),
            }
        }
        let done = Instant::now();
        if sent >= window.0 && done <= window.1 {
            acked += 1;
            lat.push(done.duration_since(sent).as_micros() as u64);
        }
    }
    samples.lock().await.ack_us.extend(lat);
    Ok(acked)
}

async fn subscriber(
    url: String,
    index: usize,
    node: usize,
    run: Run,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<(), String> {
    let Run {
        start,
        window,
        samples,
    } = run;
    let mut id = [0xffu8; 16];
    id[..8].copy_from_slice(&(index as u64).to_be_bytes());
    let mut ws = hello(&url, ClientId(id)).await?;
    let stream = stream_name(0)?;
    send(
        &mut ws,
        &ClientMsg::Subscribe {
            stream,
            after: Offset(0),
            resume: None,
        },
    )
    .await?;
    let _ = ready.send(()).await;
    let (mut same, mut other) = (Vec::new(), Vec::new());
    let until = window.1 + Duration::from_secs(2);
    while let Ok(Ok(msg)) = tokio::time::timeout_at(until, recv(&mut ws)).await {
        let ServerMsg::Events { events, .. } = msg else {
            continue;
        };
        let now = Instant::now();
        let now_us = now.duration_since(start).as_micros() as u64;
        let (from, to) = (
            window.0.duration_since(start).as_micros() as u64,
            window.1.duration_since(start).as_micros() as u64,
        );
        for e in events {
            let Some((writer_node, t)) = parse_payload(&e.payload) else {
                continue;
            };
            if t < from || t > to {
                continue;
            }
            let lat = now_us.saturating_sub(t);
            if writer_node == node {
                same.push(lat);
            } else {
                other.push(lat);
            }
        }
    }
    let mut s = samples.lock().await;
    s.same_node_us.extend(same);
    s.other_node_us.extend(other);
    Ok(())
}

/// A fresh database on the PostgreSQL of `admin`, and its URL.
async fn fresh_database(admin: &str, name: &str) -> Result<String, String> {
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect {admin}: {e}"))?;
    tokio::spawn(conn);
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("{sql}: {}", server_stub::Error::from(e)))?;
    }
    let (base, _) = admin.split_once('?').unwrap_or((admin, ""));
    let (root, _) = base.rsplit_once('/').ok_or("the URL names no database")?;
    Ok(format!("{root}/{name}"))
}

async fn run_one(args: &Args, writers: usize, round: u32) -> Result<String, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store: Vec<String> = match &args.postgres {
        Some(admin) => {
            let url = fresh_database(admin, &format!("logsync_bench_{round}")).await?;
            vec!["--store".into(), url]
        }
        None => vec![
            "--db".into(),
            tmp.path().join("log.db").to_string_lossy().into_owned(),
        ],
    };
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        nodes.push(Node::start(&args.server_bin, &store, &format!("node-{i}")).await?);
    }
    let samples = Arc::new(Mutex::new(Samples::default()));
    let start = Instant::now();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.subscribers.max(1));
    // The window opens once every subscriber is in place.
    let settle = Duration::from_millis(300);
    let window_start = start + settle + args.warmup;
    let window = (window_start, window_start + args.duration);
    let run = Run {
        start,
        window,
        samples: samples.clone(),
    };
    let mut subs = Vec::new();
    for j in 0..args.subscribers {
        let node = j % args.nodes;
        subs.push(tokio::spawn(subscriber(
            nodes[node].ws.clone(),
            j,
            node,
            run.clone(),
            ready_tx.clone(),
        )));
    }
    for _ in 0..args.subscribers {
        ready_rx.recv().await;
    }
    let mut tasks = Vec::new();
    for i in 0..writers {
        let node = i % args.nodes;
        tasks.push(tokio::spawn(writer(
            nodes[node].ws.clone(),
            i,
            node,
            args.payload_bytes,
            args.streams,
            run.clone(),
        )));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.map_err(|e| e.to_string())??;
    }
    for s in subs {
        s.await.map_err(|e| e.to_string())??;
    }
    for n in nodes {
        n.stop().await;
    }
    let mut s = samples.lock().await;
    let cross = if args.nodes > 1 {
        format!(
            "{:.2} / {:.2}",
            pct(&mut s.other_node_us, 0.5),
            pct(&mut s.other_node_us, 0.99)
        )
    } else {
        "—".into()
    };
    Ok(format!(
        "| {} | {} | {} | {writers} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {cross} |",
        if args.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        args.nodes,
        args.streams,
        acked as f64 / args.duration.as_secs_f64(),
        pct(&mut s.ack_us, 0.5),
        pct(&mut s.ack_us, 0.99),
        pct(&mut s.same_node_us, 0.5),
        pct(&mut s.same_node_us, 0.99),
    ))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scaleout: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "| store | nodes | streams | writers | intents/s | push→Ack ms p50 / p99 | fan-out ms, writer's node p50 / p99 | fan-out ms, other node p50 / p99 |"
    );
    println!("|---|---:|---:|---:|---:|---|---|---|");
    for (round, &writers) in args.writers.iter().enumerate() {
        match run_one(&args, writers, round as u32).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("scaleout: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
