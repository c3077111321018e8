//! Memory per idle connection: the server's resident memory before and
//! after N WebSocket clients connect, say Hello, subscribe (optionally) and
//! then sit idle (answering pings, as a browser tab does).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sync_core::{ClientId, ClientMsg, Offset, ServerMsg, StreamName};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::out::{mib, round, Sink};
use crate::server::{Launcher, Variant};

/// Flags of `logsync-bench idle`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Idle connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    connections: Vec<usize>,
    /// Subscribe each connection to a stream (caught up, then idle).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    subscribe: bool,
    /// Streams the subscriptions are spread over.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Server variants to measure, comma-separated `--variant` labels.
    #[arg(long, value_delimiter = ',', default_value = "logsync")]
    targets: Vec<String>,
    /// Runs of every count.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// How long to let memory settle before each reading.
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    settle: Duration,
}

fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Opens the connections and prints the memory they cost.
pub async fn run(
    launcher: &Launcher,
    variants: &[Variant],
    sink: &Sink,
    args: Args,
) -> Result<(), String> {
    let most = args.connections.iter().copied().max().unwrap_or(0);
    let need = most as u64 + 256;
    if let Some(limit) = open_files_limit() {
        if limit < need {
            return Err(format!(
                "the open-files limit is {limit}; {most} connections need {need}: run `ulimit -n {}` first (bench/run.sh does)",
                need.max(4096)
            ));
        }
    }
    println!(
        "idle connections ({}subscribed to {} stream(s))",
        if args.subscribe { "" } else { "not " },
        args.streams.max(1)
    );
    println!(
        "| server | connections | server RSS before | server RSS after | per idle connection |"
    );
    println!("|---|---:|---:|---:|---:|");
    for repeat in 1..=args.repeats.max(1) {
        for target in &args.targets {
            let variant = variants
                .iter()
                .find(|v| &v.label == target)
                .ok_or_else(|| format!("unknown target {target:?}: use a --variant label"))?;
            for &n in &args.connections {
                let server = launcher
                    // All connections come from one address, which the
                    // per-subject connection limit would count as one user.
                    .server(variant, &["--max-subject-connections".into(), "0".into()])
                    .await?;
                let measured = measure(&server.url, n, &args, || server.rss_bytes()).await;
                server.stop().await?;
                let (baseline, after) = measured?;
                let per = after.saturating_sub(baseline) as f64 / n.max(1) as f64;
                println!(
                    "| {target} | {n} | {:.1} MiB | {:.1} MiB | {:.0} bytes ({:.1} KiB) |",
                    mib(baseline),
                    mib(after),
                    per,
                    per / 1024.0
                );
                sink.record(json!({
                    "bench": "idle",
                    "target": target,
                    "connections": n,
                    "subscribe": args.subscribe,
                    "repeat": repeat,
                    "rss_before_mib": mib(baseline),
                    "rss_after_mib": mib(after),
                    "bytes_per_connection": round(per, 0),
                }))?;
            }
        }
    }
    Ok(())
}

/// Opens 16 warm-up connections, reads the RSS, opens `n` more, lets the
/// memory settle and reads it again. Returns (before, after).
async fn measure(
    url: &str,
    n: usize,
    args: &Args,
    rss: impl Fn() -> Result<u64, String>,
) -> Result<(u64, u64), String> {
    let mut held = Vec::new();
    // Warm-up: the runtime's threads, the database's readers and the
    // feeds exist before the baseline is taken.
    for i in 0..16 {
        held.push(open(url, i, args).await?);
    }
    tokio::time::sleep(args.settle).await;
    let baseline = rss()?;

    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        let url = url.to_string();
        let streams = args.streams;
        let subscribe = args.subscribe;
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            open_with(&url, 1000 + i, subscribe, streams).await
        }));
    }
    let mut failed = None;
    for p in pending {
        match p.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(h) => held.push(h),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let result = match failed {
        Some(e) => Err(e),
        None => {
            tokio::time::sleep(args.settle).await;
            rss().map(|after| (baseline, after))
        }
    };
    for h in held {
        h.abort();
    }
    result
}

async fn open(url: &str, i: usize, args: &Args) -> Result<tokio::task::JoinHandle<()>, String> {
    open_with(url, i, args.subscribe, args.streams).await
}

/// Connects, says Hello, subscribes, reads the first answer, then keeps
/// reading in a task (which answers the server's pings) until aborted.
async fn open_with(
    url: &str,
    i: usize,
    subscribe: bool,
    streams: usize,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect {i}: {e}"))?;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    id[8] = 0x1d;
    let mut msgs = vec![ClientMsg::hello(ClientId::from_bytes(id), None)];
    if subscribe {
        msgs.push(ClientMsg::Subscribe {
            stream: StreamName::new(format!("idle/{}", i % streams.max(1)))
                .map_err(|e| e.to_string())?,
            after: Offset(0),
            resume: None,
        });
    }
    let expect = msgs.len();
    for m in msgs {
        ws.send(Message::Binary(m.encode().into()))
            .await
            .map_err(|e| format!("send {i}: {e}"))?;
    }
    let mut answers = 0;
    while answers < expect {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => match ServerMsg::decode(&b, 1 << 20) {
                Ok(ServerMsg::Welcome { .. } | ServerMsg::Events { .. }) => answers += 1,
                other => return Err(format!("connection {i}: unexpected {other:?}")),
            },
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("connection {i}: no answer ({other:?})")),
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(Ok(_)) = ws.next().await {}
    }))
}
