//! A fast writer that fills a running server's stream with N events, for
//! the browser's catch-up benchmark: one client pushes batches of intents
//! (pipelined, a few pushes in flight) and waits for every `Ack`.
//! Payloads are `{"type":"add","id":"e<k>"}`, the actions the browser
//! benchmark's reducer folds, or the lines of a file (`--payloads`), e.g.
//! an app's own actions for an end-to-end test.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sync_core::{ClientId, ClientMsg, PushIntent, Seq, ServerMsg, StreamName};
use tokio_tungstenite::tungstenite::Message;

use crate::out::{round, Sink};

/// Flags of `logsync-bench seed`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server's WebSocket URL (`ws://127.0.0.1:PORT/v1/ws`).
    #[arg(long)]
    url: String,
    /// The stream to fill.
    #[arg(long)]
    stream: String,
    /// How many events to append (default: one per line of `--payloads`).
    #[arg(long, required_unless_present = "payloads")]
    events: Option<u64>,
    /// A file of payloads, one JSON value per line (blank lines skipped):
    /// event k gets line k. Without it, event k is `{"type":"add","id":"ek"}`.
    #[arg(long)]
    payloads: Option<std::path::PathBuf>,
    /// Intents per `Push` frame.
    #[arg(long, default_value_t = 500)]
    batch: u64,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 4)]
    in_flight: u64,
}

/// Appends the events and prints how long it took.
pub async fn run(sink: &Sink, args: Args) -> Result<(), String> {
    let stream = StreamName::new(args.stream.clone()).map_err(|e| e.to_string())?;
    let lines = match &args.payloads {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            let lines: Vec<Vec<u8>> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect();
            Some(lines)
        }
        None => None,
    };
    let events = match (args.events, &lines) {
        (Some(n), Some(l)) if n > l.len() as u64 => {
            return Err(format!(
                "--events {n} but the payload file has {} lines",
                l.len()
            ));
        }
        (Some(n), _) => n,
        (None, Some(l)) => l.len() as u64,
        (None, None) => return Err("--events or --payloads is required".into()),
    };
    let payload = |s: u64| match &lines {
        Some(l) => l[(s - 1) as usize].clone(),
        None => format!(r#"{{"type":"add","id":"e{s}"}}"#).into_bytes(),
    };
    let secs = fill(
        &args.url,
        &stream,
        events,
        payload,
        args.batch,
        args.in_flight,
    )
    .await?;
    println!(
        "seeded {} events into {} in {:.2} s ({:.0} events/s)",
        events,
        args.stream,
        secs,
        events as f64 / secs
    );
    sink.record(json!({
        "bench": "seed",
        "stream": args.stream,
        "events": events,
        "seconds": round(secs, 3),
    }))
}

/// Appends `events` intents (event k's payload is `payload(k)`) to
/// `stream` of the server at `url`, `batch` per push with `in_flight`
/// pushes outstanding, and waits for every `Ack`; the seconds it took.
pub async fn fill(
    url: &str,
    stream: &StreamName,
    events: u64,
    payload: impl Fn(u64) -> Vec<u8>,
    batch: u64,
    in_flight: u64,
) -> Result<f64, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let mut id = [0x5e; 16];
    id[..8].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
    ws.send(Message::Binary(
        ClientMsg::hello(ClientId::from_bytes(id), None)
            .encode()
            .into(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let batch = batch.max(1);
    let mut next = 1u64; // next seq to push
    let mut acked = 0u64;
    while acked < events {
        // Keep up to `in_flight` pushes outstanding.
        while next <= events && next - 1 - acked < batch * in_flight.max(1) {
            let end = (next + batch - 1).min(events);
            let intents = (next..=end)
                .map(|s| {
                    Ok(PushIntent {
                        seen: sync_core::Offset::ZERO,
                        seq: Seq::new(s).map_err(|e| e.to_string())?,
                        payload: payload(s),
                        schema: 1,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let push = ClientMsg::Push {
                stream: stream.clone(),
                intents,
            };
            ws.send(Message::Binary(push.encode().into()))
                .await
                .map_err(|e| format!("send: {e}"))?;
            next = end + 1;
        }
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .map_err(|_| "no Ack within 60 s".to_string())?
            .ok_or("the server closed the connection")?
            .map_err(|e| format!("read: {e}"))?;
        if let Message::Binary(b) = m {
            match ServerMsg::decode(&b, 64 << 20).map_err(|e| e.to_string())? {
                ServerMsg::Welcome { .. } | ServerMsg::Pong { .. } => {}
                ServerMsg::Ack { .. } => acked += 1,
                other => return Err(format!("expected an Ack, got {other:?}")),
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    Ok(secs)
}
