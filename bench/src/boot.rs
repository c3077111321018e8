//! A new client's time to first state: a stream with a long history
//! (N events, folded by `bench/boot-reducer.js` on the server), and a new
//! client that connects, subscribes from offset 0 and is done when it
//! holds the state at the head — by folding every event (the server keeps
//! the whole log) or from the server's snapshot and the events after it
//! (`--retain-events`: the log is compacted). The client decodes what a
//! replica decodes: each event's payload as JSON (counted into the state),
//! or the snapshot's JSON text. Also the server's storage after seeding.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sync_core::{ClientId, ClientMsg, Offset, ServerMsg, StreamName};
use tokio_tungstenite::tungstenite::Message;

use crate::out::{round, Sink};
use crate::server::{Launcher, Variant};

/// Flags of `logsync-bench boot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// History lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    events: Vec<u64>,
    /// New clients measured per history (each a fresh connection).
    #[arg(long, default_value_t = 3)]
    clients: u32,
    /// The reducer module the server folds the stream with.
    #[arg(long)]
    reducer: std::path::PathBuf,
}

/// What one new client measured.
struct Boot {
    seconds: f64,
    bytes: u64,
    events: u64,
    snapshot: bool,
}

pub async fn run(launcher: &Launcher, sink: &Sink, args: Args) -> Result<(), String> {
    let rule = format!("boot/*={}", args.reducer.display());
    let modes: [(&str, Vec<String>); 2] = [
        ("full catch-up", vec!["--reducer".into(), rule.clone()]),
        (
            "snapshot boot",
            vec![
                "--reducer".into(),
                rule.clone(),
                "--snapshot-every".into(),
                "1000".into(),
                "--retain-events".into(),
                "1000".into(),
            ],
        ),
    ];
    println!(
        "a new client's time to first state (loopback; {} clients per cell, median)",
        args.clients
    );
    println!("| history | mode | time to state p50 ms | max ms | bytes received | events received | server storage MiB |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for &n in &args.events {
        for (mode, flags) in &modes {
            let variant = Variant {
                args: flags.clone(),
                ..Variant::plain("logsync")
            };
            let server = launcher.server(&variant, &[]).await?;
            let stream = StreamName::new("boot/s").map_err(|e| e.to_string())?;
            let seeded = crate::seed::fill(
                &server.url,
                &stream,
                n,
                |k| format!(r#"{{"type":"add","id":"e{k}"}}"#).into_bytes(),
                500,
                4,
            )
            .await;
            let result = match seeded {
                Ok(_) => {
                    let storage = server.storage_bytes();
                    let mut boots = Vec::new();
                    for c in 0..args.clients {
                        boots.push(boot(&server.url, &stream, n, c).await);
                    }
                    Ok((storage, boots))
                }
                Err(e) => Err(e),
            };
            server.stop().await?;
            let (storage, boots) = result?;
            let mut boots = boots.into_iter().collect::<Result<Vec<_>, String>>()?;
            boots.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            let mid = &boots[boots.len() / 2];
            let max = boots.last().map_or(0.0, |b| b.seconds);
            println!(
                "| {n} | {mode} | {:.1} | {:.1} | {} | {} | {:.1} |",
                mid.seconds * 1e3,
                max * 1e3,
                mid.bytes,
                mid.events,
                storage as f64 / (1 << 20) as f64
            );
            sink.record(json!({
                "bench": "boot",
                "history": n,
                "mode": mode,
                "snapshot": mid.snapshot,
                "p50_ms": round(mid.seconds * 1e3, 2),
                "max_ms": round(max * 1e3, 2),
                "bytes": mid.bytes,
                "events": mid.events,
                "storage_bytes": storage,
            }))?;
        }
    }
    Ok(())
}

/// One new client: connect, subscribe from 0, hold the state at `head`.
async fn boot(url: &str, stream: &StreamName, head: u64, n: u32) -> Result<Boot, String> {
    let t0 = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let mut id = [0xb0; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    for msg in [
        ClientMsg::hello(ClientId::from_bytes(id), None),
        ClientMsg::Subscribe {
            stream: stream.clone(),
            after: Offset(0),
            resume: None,
        },
    ] {
        ws.send(Message::Binary(msg.encode().into()))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let mut count = 0u64;
    let mut offset = 0u64;
    let mut bytes = 0u64;
    let mut events = 0u64;
    let mut snapshot = false;
    let mut text = Vec::new();
    while offset < head {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .map_err(|_| "nothing for 60 s".to_string())?
            .ok_or("the server closed the connection")?
            .map_err(|e| format!("read: {e}"))?;
        let Message::Binary(b) = m else { continue };
        bytes += b.len() as u64;
        match ServerMsg::decode(&b, 64 << 20).map_err(|e| e.to_string())? {
            ServerMsg::Snapshot {
                offset: at,
                total,
                part,
                ..
            } => {
                text.extend_from_slice(&part);
                if text.len() as u64 == total {
                    let state: serde_json::Value =
                        serde_json::from_slice(&text).map_err(|e| e.to_string())?;
                    count = state["count"]
                        .as_u64()
                        .ok_or("a snapshot without a count")?;
                    offset = at.0;
                    snapshot = true;
                    text.clear();
                }
            }
            ServerMsg::Events { events: list, .. } => {
                for e in list {
                    let action: serde_json::Value =
                        serde_json::from_slice(&e.payload).map_err(|e| e.to_string())?;
                    if action["type"] == "add" {
                        count += 1;
                    }
                    offset = e.offset.0;
                    events += 1;
                }
            }
            _ => {}
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    if count != head {
        return Err(format!(
            "the state counts {count} events, the head is {head}"
        ));
    }
    Ok(Boot {
        seconds,
        bytes,
        events,
        snapshot,
    })
}
