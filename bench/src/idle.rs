//! Memory per idle connection: the server's resident memory before and
//! after N WebSocket clients connect, say Hello, subscribe (optionally) and
//! then sit idle (answering pings, as a browser tab does).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sync_core::{ClientId, ClientMsg, Offset, ServerMsg, StreamName};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::server::Server;

/// Flags of `logsync-bench idle`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Subscribe each connection to a stream (caught up, then idle).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    subscribe: bool,
    /// Streams the subscriptions are spread over.
    #[arg(long, default_value_t = 1)]
    streams: usize,
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
pub async fn run(bin: &Path, dir: &Path, args: Args) -> Result<(), String> {
    let need = args.connections as u64 + 256;
    if let Some(limit) = open_files_limit() {
        if limit < need {
            return Err(format!(
                "the open-files limit is {limit}; {} connections need {need}: run `ulimit -n {}` first (bench/idle.sh does)",
                args.connections,
                need.max(65536)
            ));
        }
    }
    let db = dir.join("idle.db");
    let server = Server::start(bin, &db, &[]).await?;
    let url = server.ws_url();
    let mut held = Vec::new();
    // Warm-up: the runtime's threads, the database's readers and the
    // feeds exist before the baseline is taken.
    for i in 0..16 {
        held.push(open(&url, i, &args).await?);
    }
    tokio::time::sleep(args.settle).await;
    let baseline = server.rss_bytes()?;

    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut pending = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let gate = gate.clone();
        let url = url.clone();
        let streams = args.streams;
        let subscribe = args.subscribe;
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            open_with(&url, 1000 + i, subscribe, streams).await
        }));
    }
    for p in pending {
        held.push(p.await.map_err(|e| e.to_string())??);
    }
    tokio::time::sleep(args.settle).await;
    let after = server.rss_bytes()?;
    let per = after.saturating_sub(baseline) as f64 / args.connections as f64;
    println!(
        "idle connections: {} ({}subscribed to {} stream(s))",
        args.connections,
        if args.subscribe { "" } else { "not " },
        args.streams.max(1)
    );
    println!("| server RSS before | server RSS after | per idle connection |");
    println!("|---:|---:|---:|");
    println!(
        "| {:.1} MiB | {:.1} MiB | {:.0} bytes ({:.1} KiB) |",
        baseline as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        per,
        per / 1024.0
    );
    for h in held {
        h.abort();
    }
    server.stop().await
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
