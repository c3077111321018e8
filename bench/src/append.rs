//! Durable append throughput: N closed-loop writers, each its own client
//! on its own WebSocket, each with one intent in flight (push, wait for the
//! Ack that says it is durable, push the next) — what N busy devices do.
//! Every (commit mode, writer count) gets a fresh server and database.
//!
//! Payloads are opaque 100-byte JSON strings by default; with
//! `--payload todo` they are the TodoMVC example's own actions
//! (`examples/todo-react/src/todos.js`), so a server that folds the
//! streams with that reducer does the work an app's writes cost it.

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
    /// Runs of every cell; within each repeat, every target and mode of a
    /// writer count run back to back.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// What each intent carries: `string` (an opaque JSON string of
    /// `--payload-bytes`) or `todo` (the TodoMVC example's actions: each
    /// writer adds its share of `--todos` todos, then toggles and edits
    /// them in turn, so every action changes the state and each stream
    /// holds about `--todos` todos).
    #[arg(long, value_enum, default_value_t = Payload::String)]
    payload: Payload,
    /// Payload size of each intent, in bytes (`--payload string`).
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Todos per stream with `--payload todo`, shared out among the
    /// stream's writers (each has at least one).
    #[arg(long, default_value_t = 100)]
    todos: usize,
    /// Streams the writers are spread over (round robin).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Stream names are this prefix and the stream's number (`bench/0`);
    /// e.g. `todos/` for a server that folds `todos/*` with a reducer.
    #[arg(long, default_value = "bench/")]
    stream_prefix: String,
}

/// What each intent carries.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// An opaque JSON string of `--payload-bytes`.
    String,
    /// The TodoMVC example's actions.
    Todo,
}

impl Payload {
    fn name(self) -> &'static str {
        match self {
            Payload::String => "string",
            Payload::Todo => "todo",
        }
    }
}

/// The `n`-th action (from 0) of writer `writer`, which owns `owned`
/// todos of its stream: first it adds them, then it toggles and edits
/// them in turn (toggle all, edit all, toggle all, …), each edit with a
/// new text, so every action changes the stream's state. Ids look like
/// the SDK's (`crypto.randomUUID()`), unique per writer and todo.
fn todo_action(writer: usize, owned: usize, n: u64) -> Vec<u8> {
    let owned = owned.max(1) as u64;
    let k = n % owned;
    let id = format!("{writer:08x}-0000-4000-8000-{k:012x}");
    let action = if n < owned {
        json!({ "type": "todo/added", "id": id, "text": format!("todo {k} of writer {writer}") })
    } else if (n / owned) % 2 == 1 {
        json!({ "type": "todo/toggled", "id": id })
    } else {
        json!({ "type": "todo/edited", "id": id, "text": format!("todo {k} of writer {writer}, edit {n}") })
    };
    action.to_string().into_bytes()
}

struct Run {
    acked: usize,
    latencies_us: Vec<u64>,
    /// Every intent acked, warm-up and the last ones in flight included
    /// (what the server's CPU seconds were spent on).
    acked_total: u64,
    /// Their payload bytes.
    payload_bytes_total: u64,
}

/// Runs every combination and prints a Markdown table.
pub async fn run(
    launcher: &Launcher,
    variants: &[Variant],
    sink: &Sink,
    args: Args,
) -> Result<(), String> {
    let payload = match args.payload {
        Payload::String => format!("{} B payloads", args.payload_bytes),
        Payload::Todo => format!("todo actions ({} todos per stream)", args.todos),
    };
    println!(
        "durable appends: {payload}, {} stream(s) {}N, {:?} measured after {:?} warm-up, one intent in flight per writer",
        args.streams.max(1),
        args.stream_prefix,
        args.duration,
        args.warmup
    );
    println!("| server | commit mode | writers | intents/s | p50 ms | p99 ms | acked in window | server CPU s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    // Every target and mode of one writer count runs back to back, so
    // the ratios between them compare cells measured moments apart.
    for repeat in 1..=args.repeats.max(1) {
        for &writers in &args.writers {
            for target in &args.targets {
                let variant = variants
                    .iter()
                    .find(|v| &v.label == target)
                    .ok_or_else(|| format!("unknown target {target:?}: use a --variant label"))?;
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
                        "server_bin": launcher.bin_name(variant),
                        "mode": mode,
                        "writers": writers,
                        "repeat": repeat,
                        "payload": args.payload.name(),
                        "payload_bytes": match args.payload {
                            Payload::String => json!(args.payload_bytes),
                            Payload::Todo => json!(round(
                                run.payload_bytes_total as f64 / run.acked_total.max(1) as f64,
                                1,
                            )),
                        },
                        "streams": args.streams.max(1),
                        "stream_prefix": args.stream_prefix,
                        "duration_s": args.duration.as_secs_f64(),
                        "intents_per_s": round(rate, 1),
                        "p50_ms": round(pct(0.50), 3),
                        "p99_ms": round(pct(0.99), 3),
                        "acked": run.acked,
                        "acked_total": run.acked_total,
                        "server_cpu_s": round(cpu, 2),
                        "server_cpu_us_per_intent": round(
                            cpu * 1e6 / run.acked_total.max(1) as f64,
                            2,
                        ),
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
    let kind = args.payload;
    let mut tasks = Vec::new();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let payload = payload.clone();
        let stream = StreamName::new(format!("{}{}", args.stream_prefix, i % streams))
            .map_err(|e| e.to_string())?;
        // This stream's writers share its todos out.
        let on_stream = writers / streams + usize::from(i % streams < writers % streams);
        let owned = (args.todos / on_stream.max(1)).max(1);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0u64;
            let mut seq = 1u64;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    return Ok::<_, String>((latencies, seq - 1, bytes));
                }
                let payload = match kind {
                    Payload::String => payload.clone(),
                    Payload::Todo => todo_action(i, owned, seq - 1),
                };
                bytes += payload.len() as u64;
                let push = ClientMsg::Push {
                    stream: stream.clone(),
                    intents: vec![PushIntent {
                        seen: sync_core::Offset::ZERO,
                        seq: Seq::new(seq).map_err(|e| e.to_string())?,
                        payload,
                        schema: 1,
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
    let mut acked_total = 0;
    let mut payload_bytes_total = 0;
    for t in tasks {
        let (latencies, acked, bytes) = t.await.map_err(|e| e.to_string())??;
        latencies_us.extend(latencies);
        acked_total += acked;
        payload_bytes_total += bytes;
    }
    Ok(Run {
        acked: latencies_us.len(),
        latencies_us,
        acked_total,
        payload_bytes_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(writer: usize, owned: usize, n: u64) -> serde_json::Value {
        serde_json::from_slice(&todo_action(writer, owned, n)).unwrap()
    }

    #[test]
    fn todo_writers_add_their_todos_then_toggle_and_edit_them() {
        let kinds: Vec<String> = (0..9)
            .map(|n| action(3, 3, n)["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "todo/added",
                "todo/added",
                "todo/added",
                "todo/toggled",
                "todo/toggled",
                "todo/toggled",
                "todo/edited",
                "todo/edited",
                "todo/edited"
            ]
        );
        // Only its own `owned` ids, each a UUID-shaped string.
        let ids: std::collections::BTreeSet<String> = (0..1000)
            .map(|n| action(3, 3, n)["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| id.len() == 36));
        assert!(ids.iter().all(|id| id.starts_with("00000003-")));
        // Every edit brings a new text, so it changes the state.
        assert_ne!(action(3, 3, 6)["text"], action(3, 3, 12)["text"]);
        assert_eq!(action(0, 0, 0)["type"], "todo/added");
        assert_eq!(action(0, 0, 1)["type"], "todo/toggled");
    }
}
