//! A fast writer that fills a running server's stream with N events, for
//! the browser's catch-up benchmark: one client pushes batches of intents
//! (pipelined, a few pushes in flight) and waits for every `Ack`.
//! Payloads are `{"type":"add","id":"e<k>"}`, the actions the browser
//! benchmark's reducer folds.

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
    /// How many events to append.
    #[arg(long)]
    events: u64,
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
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&args.url, None, true)
        .await
        .map_err(|e| format!("connect {}: {e}", args.url))?;
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
    let batch = args.batch.max(1);
    let mut next = 1u64; // next seq to push
    let mut acked = 0u64;
    while acked < args.events {
        // Keep up to `in_flight` pushes outstanding.
        while next <= args.events && next - 1 - acked < batch * args.in_flight.max(1) {
            let end = (next + batch - 1).min(args.events);
            let intents = (next..=end)
                .map(|s| {
                    Ok(PushIntent {
                        seq: Seq::new(s).map_err(|e| e.to_string())?,
                        payload: format!(r#"{{"type":"add","id":"e{s}"}}"#).into_bytes(),
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
    println!(
        "seeded {} events into {} in {:.2} s ({:.0} events/s)",
        args.events,
        args.stream,
        secs,
        args.events as f64 / secs
    );
    sink.record(json!({
        "bench": "seed",
        "stream": args.stream,
        "events": args.events,
        "seconds": round(secs, 3),
    }))
}
