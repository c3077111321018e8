//! Durable append throughput: N closed-loop writers, each its own client
//! on its own WebSocket, each with one intent in flight (push, wait for the
//! Ack that says it is durable, push the next) — what N busy devices do.
//! Every (commit mode, writer count) gets a fresh server and database.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sync_core::{ClientId, ClientMsg, PushIntent, Seq, ServerMsg, StreamName};
use tokio_tungstenite::tungstenite::Message;

use crate::out::{round, Sink};
use crate::server::{Launcher, Variant};

/// Flags of `logsync-bench append`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Writer counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    writers: Vec<usize>,
    /// Commit modes to compare, comma-separated (`group`, `per-intent`).
    #[arg(long, value_delimiter = ',', default_value = "group,per-intent")]
    modes: Vec<String>,
    /// Server variants to measure, comma-separated `--variant` labels.
    #[arg(long, value_delimiter = ',', default_value = "logsync")]
    targets: Vec<String>,
    /// Measured time per run.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Unmeasured time before it (connections warm, caches filled).
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    warmup: Duration,
    /// Runs of every cell; the modes alternate within each repeat.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// Payload size of each intent, in bytes (a JSON string).
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Streams the writers are spread over (round robin).
    #[arg(long, default_value_t = 1)]
    streams: usize,
}

struct Run {
    acked: usize,
    latencies_us: Vec<u64>,
}

/// Runs every combination and prints a Markdown table.
pub async fn run(
    launcher: &Launcher,
    variants: &[Variant],
    sink: &Sink,
    args: Args,
) -> Result<(), String> {
    println!(
        "durable appends: {} B payloads, {} stream(s), {:?} measured after {:?} warm-up, one intent in flight per writer",
        args.payload_bytes,
        args.streams.max(1),
        args.duration,
        args.warmup
    );
    println!("| server | commit mode | writers | intents/s | p50 ms | p99 ms | acked in window | server CPU s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for repeat in 1..=args.repeats.max(1) {
        for target in &args.targets {
            let variant = variants
                .iter()
                .find(|v| &v.label == target)
                .ok_or_else(|| format!("unknown target {target:?}: use a --variant label"))?;
            for &writers in &args.writers {
                for mode in &args.modes {
                    let server = launcher
                        .server(variant, &["--commit-mode".into(), mode.clone()])
                        .await?;
                    let cpu0 = server.cpu_seconds()?;
                    let run = measure(&server.url, writers, &args).await;
                    let cpu = server.cpu_seconds().map(|c| c - cpu0);
                    server.stop().await?;
                    let mut run = run?;
                    let cpu = cpu?;
                    run.latencies_us.sort_unstable();
                    let pct = |p: f64| {
                        let v = &run.latencies_us;
                        if v.is_empty() {
                            return 0.0;
                        }
                        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
                        v[i.min(v.len() - 1)] as f64 / 1000.0
                    };
                    let rate = run.acked as f64 / args.duration.as_secs_f64();
                    println!(
                        "| {target} | {mode} | {writers} | {rate:.0} | {:.2} | {:.2} | {} | {cpu:.2} |",
                        pct(0.50),
                        pct(0.99),
                        run.acked
                    );
                    sink.record(json!({
                        "bench": "append",
                        "target": target,
                        "mode": mode,
                        "writers": writers,
                        "repeat": repeat,
                        "payload_bytes": args.payload_bytes,
                        "duration_s": args.duration.as_secs_f64(),
                        "intents_per_s": round(rate, 1),
                        "p50_ms": round(pct(0.50), 3),
                        "p99_ms": round(pct(0.99), 3),
                        "acked": run.acked,
                        "server_cpu_s": round(cpu, 2),
                    }))?;
                }
            }
        }
    }
    Ok(())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, id: u32) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&id.to_be_bytes());
    bytes[4] = 0xbe;
    let hello = ClientMsg::hello(ClientId::from_bytes(bytes), None);
    ws.send(Message::Binary(hello.encode().into()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match next_msg(&mut ws).await? {
        ServerMsg::Welcome { .. } => Ok(ws),
        other => Err(format!("expected Welcome, got {other:?}")),
    }
}

async fn next_msg(ws: &mut Ws) -> Result<ServerMsg, String> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "no answer within 30 s".to_string())?
            .ok_or("connection closed")?
            .map_err(|e| format!("read: {e}"))?;
        if let Message::Binary(b) = m {
            return ServerMsg::decode(&b, 64 << 20).map_err(|e| e.to_string());
        }
    }
}

async fn measure(url: &str, writers: usize, args: &Args) -> Result<Run, String> {
    let mut conns = Vec::with_capacity(writers);
    for i in 0..writers {
        conns.push(connect(url, i as u32).await?);
    }
    let payload = {
        let mut s = String::from("\"");
        s.push_str(&"x".repeat(args.payload_bytes.saturating_sub(2)));
        s.push('"');
        s.into_bytes()
    };
    let from = Instant::now() + args.warmup;
    let until = from + args.duration;
    let streams = args.streams.max(1);
    let mut tasks = Vec::new();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let payload = payload.clone();
        let stream =
            StreamName::new(format!("bench/{}", i % streams)).map_err(|e| e.to_string())?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 1u64;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    return Ok::<_, String>(latencies);
                }
                let push = ClientMsg::Push {
                    stream: stream.clone(),
                    intents: vec![PushIntent {
                        seq: Seq::new(seq).map_err(|e| e.to_string())?,
                        payload: payload.clone(),
                    }],
                };
                ws.send(Message::Binary(push.encode().into()))
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                match next_msg(&mut ws).await? {
                    ServerMsg::Ack {
                        duplicate: false, ..
                    } => {}
                    other => return Err(format!("expected an Ack, got {other:?}")),
                }
                let done = Instant::now();
                if sent >= from && done <= until {
                    latencies.push(done.duration_since(sent).as_micros() as u64);
                }
                seq += 1;
            }
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(Run {
        acked: latencies_us.len(),
        latencies_us,
    })
}
