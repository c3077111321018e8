//! Fan-out: writers push events into one stream and N subscribers receive
//! them over real WebSocket connections, against `logsync-server` and,
//! as the baseline, `logsync-relay` (a non-durable broadcast relay: the
//! upper bound for any server on this machine).
//!
//! Both targets go through the same code here: a writer sends the same
//! `Push` frame to either; the server answers with `Events` frames (after
//! the commit is durable), the relay forwards the `Push` frame unchanged.
//! The subscriber decodes whichever it gets with the core's codec and
//! reads the same payloads. Each payload carries its writer, its number
//! and the writer's send time (one process, one clock), so a subscriber
//! measures end-to-end latency, checks order, and counts what it got.
//!
//! Workloads: one writer and N subscribers (`one-writer`), and N clients
//! that all write and all subscribe (`many-writers`). Modes: `paced` (a
//! fixed total rate, open loop) and `max` (each writer keeps at most a
//! window of messages not yet delivered to every subscriber: as fast as
//! the target delivers, with bounded buffering).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sync_core::{ClientId, ClientMsg, Offset, PushIntent, Seq, ServerMsg, StreamName};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::hist::Histogram;
use crate::out::{mib, round, Sink};
use crate::server::{Launcher, Proc, Variant};

/// Flags of `logsync-bench fanout`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to measure, comma-separated: `relay` and server variant labels
    /// (`logsync` is the server as it is; see `--variant`).
    #[arg(long, value_delimiter = ',', default_value = "relay,logsync")]
    targets: Vec<String>,
    /// Subscriber counts of the one-writer workload (0: skip it).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    subscribers: Vec<usize>,
    /// Client counts of the many-writers workload, where every client
    /// writes and subscribes (0: skip it).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    many_writers: Vec<usize>,
    /// Modes, comma-separated: `paced` (`--rate` events/s in total) and
    /// `max` (as fast as the target delivers).
    #[arg(long, value_delimiter = ',', default_value = "paced,max")]
    modes: Vec<String>,
    /// Events per second, all writers together, in paced mode.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Measured time per run.
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    warmup: Duration,
    /// Runs of every (workload, size, mode, target); targets alternate
    /// within each repeat so that both see the same machine.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Max mode, one writer: messages that may be on their way to some
    /// subscriber at once.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Max mode, many writers: the same, per writer.
    #[arg(long, default_value_t = 4)]
    writer_window: usize,
    /// Max mode: most events in one `Push` frame. A writer sends, in one
    /// frame, every message its window allows at that moment, as the SDK
    /// pushes every pending intent at once (paced mode: one per frame).
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Payload bytes per event (a JSON string; at least 42).
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// After the writers stop, keep waiting for deliveries while they
    /// still arrive; stop when none arrived for this long (what is missing
    /// then counts as lost), or after two minutes in all.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    drain: Duration,
    /// WebSocket handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Logsync,
    Relay,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    OneWriter,
    ManyWriters,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::OneWriter => "one-writer",
            Workload::ManyWriters => "many-writers",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Paced,
    Max,
}

#[derive(Clone, Copy, Debug)]
struct Cell {
    workload: Workload,
    /// Subscribers (one-writer) or clients (many-writers).
    clients: usize,
    mode: Mode,
}

/// The offset of the writer, number and time fields inside a payload
/// (after the opening quote of the JSON string).
const W_AT: usize = 1;
const K_AT: usize = 9;
const T_AT: usize = 25;
const MIN_PAYLOAD: usize = 42;

/// Runs every cell, `repeats` times, and prints a Markdown table.
pub async fn run(
    launcher: &Launcher,
    variants: &[Variant],
    sink: &Sink,
    args: Args,
) -> Result<(), String> {
    if args.payload_bytes < MIN_PAYLOAD {
        return Err(format!("--payload-bytes must be at least {MIN_PAYLOAD}"));
    }
    let mut modes = Vec::new();
    for m in &args.modes {
        modes.push(match m.as_str() {
            "paced" => Mode::Paced,
            "max" => Mode::Max,
            other => return Err(format!("unknown mode {other:?}; use paced or max")),
        });
    }
    let mut targets: Vec<(String, Option<Variant>)> = Vec::new();
    for t in &args.targets {
        if t == "relay" {
            targets.push((t.clone(), None));
        } else {
            let v = variants
                .iter()
                .find(|v| &v.label == t)
                .ok_or_else(|| format!("unknown target {t:?}: use relay or a --variant label"))?;
            targets.push((t.clone(), Some(v.clone())));
        }
    }
    let mut cells = Vec::new();
    for &n in args.subscribers.iter().filter(|n| **n > 0) {
        for &mode in &modes {
            cells.push(Cell {
                workload: Workload::OneWriter,
                clients: n,
                mode,
            });
        }
    }
    for &n in args.many_writers.iter().filter(|n| **n > 1) {
        for &mode in &modes {
            cells.push(Cell {
                workload: Workload::ManyWriters,
                clients: n,
                mode,
            });
        }
    }
    let biggest = cells.iter().map(|c| c.clients + 1).max().unwrap_or(0);
    check_open_files(biggest as u64 + 64)?;

    println!(
        "fan-out: {} B payloads, paced = {} events/s in total, max = window {} (one writer) / {} per writer (many writers), {:?} measured after {:?}",
        args.payload_bytes, args.rate, args.window, args.writer_window, args.duration, args.warmup
    );
    println!("| workload | clients | mode | target | events/s sent | deliveries/s | p50 ms | p99 ms | max ms | lost | events/frame | server CPU s | server peak RSS MiB | loadgen CPU % |");
    println!("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for repeat in 1..=args.repeats.max(1) {
        for cell in &cells {
            for (label, variant) in &targets {
                let proc = match variant {
                    None => launcher.relay().await?,
                    // The per-connection and per-subject limits (abuse
                    // guards; every client here is one address) would cap
                    // max mode's bulk writer and the subscriber count by
                    // policy; this measures capacity, so they are off.
                    Some(v) => {
                        let off = [
                            "--max-intents-per-sec",
                            "--max-subject-intents-per-sec",
                            "--max-subject-bytes-per-sec",
                            "--max-subject-connections",
                        ];
                        let args: Vec<String> = off
                            .iter()
                            .flat_map(|f| [f.to_string(), "0".to_string()])
                            .collect();
                        launcher.server(v, &args).await?
                    }
                };
                let kind = if variant.is_some() {
                    Kind::Logsync
                } else {
                    Kind::Relay
                };
                let result = measure(&proc, kind, *cell, &args).await;
                let peak = proc.peak_rss_bytes().unwrap_or(0);
                let stopped = proc.stop().await;
                let r = result?;
                stopped?;
                let dur = args.duration.as_secs_f64();
                println!(
                    "| {} | {} | {} | {label} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.2} | {:.1} | {:.0} |",
                    cell.workload.name(),
                    cell.clients,
                    mode_name(cell.mode),
                    r.sent_in_window as f64 / dur,
                    r.deliveries_per_s(),
                    r.hist.quantile(0.5) as f64 / 1000.0,
                    r.hist.quantile(0.99) as f64 / 1000.0,
                    r.hist.max() as f64 / 1000.0,
                    r.lost,
                    r.events_per_frame(),
                    r.server_cpu_s,
                    mib(peak),
                    100.0 * r.loadgen_cpu_s / r.elapsed_s.max(1e-9),
                );
                sink.record(json!({
                    "bench": "fanout",
                    "workload": cell.workload.name(),
                    "clients": cell.clients,
                    "writers": r.writers,
                    "mode": mode_name(cell.mode),
                    "target": label,
                    "baseline": variant.is_none(),
                    "repeat": repeat,
                    "rate_target": if cell.mode == Mode::Paced { json!(args.rate) } else { json!(null) },
                    "window": if cell.mode == Mode::Max { json!(r.window) } else { json!(null) },
                    "max_batch": if cell.mode == Mode::Max { json!(args.max_batch) } else { json!(1) },
                    "payload_bytes": args.payload_bytes,
                    "duration_s": dur,
                    "sent": r.sent,
                    "events_per_s": round(r.sent_in_window as f64 / dur, 1),
                    "deliveries": r.deliveries,
                    "deliveries_per_s": round(r.deliveries_per_s(), 1),
                    "delivery_span_s": round(r.span_s, 3),
                    "p50_ms": round(r.hist.quantile(0.5) as f64 / 1000.0, 3),
                    "p99_ms": round(r.hist.quantile(0.99) as f64 / 1000.0, 3),
                    "max_ms": round(r.hist.max() as f64 / 1000.0, 3),
                    "expected_deliveries": r.expected,
                    "lost": r.lost,
                    "misordered": r.misordered,
                    "duplicates": r.duplicates,
                    "frames": r.frames,
                    "events_per_frame": round(r.events_per_frame(), 2),
                    "writer_lag_max_ms": round(r.writer_lag_max_us as f64 / 1000.0, 2),
                    "elapsed_s": round(r.elapsed_s, 3),
                    "server_cpu_s": round(r.server_cpu_s, 2),
                    "server_peak_rss_mib": mib(peak),
                    "loadgen_cpu_s": round(r.loadgen_cpu_s, 2),
                }))?;
            }
        }
    }
    Ok(())
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Paced => "paced",
        Mode::Max => "max",
    }
}

fn check_open_files(need: u64) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let limit = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    match limit {
        Some(l) if l < need => Err(format!(
            "the open-files limit is {l}; this run needs about {need}: `ulimit -n {}` first (bench/run.sh does)",
            need.max(4096)
        )),
        _ => Ok(()),
    }
}

/// What one run measured.
struct RunResult {
    writers: usize,
    window: usize,
    sent: u64,
    sent_in_window: u64,
    deliveries: u64,
    expected: u64,
    lost: u64,
    misordered: u64,
    duplicates: u64,
    frames: u64,
    events_in_frames: u64,
    hist: Histogram,
    /// From the start of the window to the last measured delivery (at
    /// least the window): the time the deliveries really took.
    span_s: f64,
    writer_lag_max_us: u64,
    elapsed_s: f64,
    server_cpu_s: f64,
    loadgen_cpu_s: f64,
}

impl RunResult {
    fn events_per_frame(&self) -> f64 {
        self.events_in_frames as f64 / self.frames.max(1) as f64
    }

    /// Deliveries of the measured messages per second of the time they
    /// took: a target that falls behind the writers is charged for the
    /// time it needs to catch up.
    fn deliveries_per_s(&self) -> f64 {
        self.deliveries as f64 / self.span_s.max(1e-9)
    }
}

/// State shared by the writers and subscribers of one run.
struct Shared {
    kind: Kind,
    epoch: Instant,
    /// Measured window, µs since `epoch` (set after the barrier).
    from_us: AtomicU64,
    until_us: AtomicU64,
    /// Max mode: per writer and slot, deliveries the message in that slot
    /// still waits for; the writer reuses a slot when it reaches 0.
    windowed: bool,
    window: usize,
    remaining: Vec<Vec<AtomicU32>>,
    freed: Vec<Notify>,
    /// Per subscriber: messages received (for the barrier and the drain).
    received: Vec<AtomicU64>,
    /// Set when a peer answered with an error (Reject, Gap, Error).
    failed: AtomicBool,
    failure: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn fail(&self, why: String) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            if let Ok(mut f) = self.failure.lock() {
                *f = Some(why);
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn client_config() -> WebSocketConfig {
    // Small read buffers: a thousand connections in one process.
    WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

fn stream_name() -> StreamName {
    StreamName::new("bench/fanout").unwrap_or_else(|_| unreachable!("a valid literal name"))
}

/// Opens one connection; for the server, says Hello and (for a
/// subscriber) subscribes and waits for the first `Events` frame.
async fn connect(url: &str, kind: Kind, i: usize, subscribe: bool) -> Result<Ws, String> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true)
            .await
            .map_err(|e| format!("connect {i}: {e}"))?;
    if kind == Kind::Relay {
        return Ok(ws);
    }
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    id[8] = 0xfa;
    let mut msgs = vec![ClientMsg::hello(ClientId::from_bytes(id), None)];
    if subscribe {
        msgs.push(ClientMsg::Subscribe {
            stream: stream_name(),
            after: Offset::ZERO,
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
            Ok(Some(Ok(Message::Binary(b)))) => match ServerMsg::decode(&b, 64 << 20) {
                Ok(ServerMsg::Welcome { .. } | ServerMsg::Events { .. }) => answers += 1,
                other => return Err(format!("connection {i}: unexpected {other:?}")),
            },
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("connection {i}: no answer ({other:?})")),
        }
    }
    Ok(ws)
}

async fn connect_all(
    url: &str,
    kind: Kind,
    n: usize,
    subscribe: bool,
    concurrency: usize,
) -> Result<Vec<Ws>, String> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        let url = url.to_string();
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            connect(&url, kind, i, subscribe).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for p in pending {
        out.push(p.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

fn hex_field(bytes: &[u8], at: usize, len: usize) -> Option<u64> {
    let field = bytes.get(at..at + len)?;
    let mut v = 0u64;
    for &c in field {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

/// `"` writer (8 hex) number (16 hex) time µs (16 hex) padding `"`.
fn payload(w: usize, k: u64, t_us: u64, len: usize) -> Vec<u8> {
    let mut p = format!("\"{w:08x}{k:016x}{t_us:016x}").into_bytes();
    p.resize(len - 1, b'x');
    p.push(b'"');
    p
}

/// A `Push` of messages `k..k + n` of writer `w`, all sent at `t_us`.
fn push_frame(w: usize, k: u64, n: u64, t_us: u64, len: usize) -> Result<Message, String> {
    let intents = (k..k + n)
        .map(|k| {
            Ok(PushIntent {
                seen: sync_core::Offset::ZERO,
                seq: Seq::new(k + 1).map_err(|e| e.to_string())?,
                payload: payload(w, k, t_us, len),
                schema: 1,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let msg = ClientMsg::Push {
        stream: stream_name(),
        intents,
    };
    Ok(Message::Binary(msg.encode().into()))
}

/// What one subscriber saw.
#[derive(Default)]
struct SubResult {
    hist: Histogram,
    /// When the last measured delivery arrived, µs since the epoch.
    last_us: u64,
    misordered: u64,
    duplicates: u64,
    frames: u64,
    events_in_frames: u64,
}

/// Reads a connection until `stop`: every payload of every `Events`
/// (server) or `Push` (relay) frame is checked and counted.
async fn subscriber(
    mut rx: SplitStream<Ws>,
    me: usize,
    writers: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut r = SubResult::default();
    let mut next_k = vec![0u64; writers];
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            f = rx.next() => f,
        };
        let bytes = match frame {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                shared.fail(format!("subscriber {me}: read: {e}"));
                break;
            }
        };
        let now = shared.now_us();
        let mut on_payload = |p: &[u8]| {
            let (Some(w), Some(k), Some(t)) = (
                hex_field(p, W_AT, 8),
                hex_field(p, K_AT, 16),
                hex_field(p, T_AT, 16),
            ) else {
                shared.fail(format!(
                    "subscriber {me}: a payload not made by this benchmark"
                ));
                return;
            };
            let w = w as usize;
            let Some(next) = next_k.get_mut(w) else {
                shared.fail(format!("subscriber {me}: writer {w} does not exist"));
                return;
            };
            r.events_in_frames += 1;
            if k < *next {
                r.duplicates += 1;
                return;
            }
            if k > *next {
                r.misordered += 1;
            }
            *next = k + 1;
            shared.received[me].fetch_add(1, Ordering::AcqRel);
            if t >= shared.from_us.load(Ordering::Relaxed)
                && t < shared.until_us.load(Ordering::Relaxed)
            {
                r.hist.record(now.saturating_sub(t));
                r.last_us = now;
            }
            if shared.windowed && k > 0 {
                let slot = &shared.remaining[w][(k as usize) % shared.window];
                if slot.fetch_sub(1, Ordering::AcqRel) == 1 {
                    shared.freed[w].notify_one();
                }
            }
        };
        let decoded = match shared.kind {
            Kind::Logsync => match ServerMsg::decode(&bytes, 64 << 20) {
                Ok(ServerMsg::Events { events, .. }) => {
                    if !events.is_empty() {
                        r.frames += 1;
                    }
                    for e in &events {
                        on_payload(&e.payload);
                    }
                    Ok(())
                }
                Ok(ServerMsg::Ack { .. } | ServerMsg::Pong { .. }) => Ok(()),
                Ok(other) => Err(format!("unexpected {other:?}")),
                Err(e) => Err(e.to_string()),
            },
            Kind::Relay => match ClientMsg::decode(&bytes, 64 << 20) {
                Ok(ClientMsg::Push { intents, .. }) => {
                    r.frames += 1;
                    for i in &intents {
                        on_payload(&i.payload);
                    }
                    Ok(())
                }
                Ok(other) => Err(format!("unexpected {other:?}")),
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(e) = decoded {
            shared.fail(format!("subscriber {me}: {e}"));
            break;
        }
    }
    r
}

/// Sends the barrier message, waits for the start, then sends until the
/// end of the window. Returns the sending half (kept open until the
/// drain is over), the messages sent including the barrier, those sent
/// within the window, and the largest lag behind the pace in µs.
#[allow(clippy::too_many_arguments)]
async fn writer(
    mut tx: SplitSink<Ws, Message>,
    w: usize,
    writers: usize,
    mode: Mode,
    rate: u32,
    payload_bytes: usize,
    max_batch: usize,
    recipients: u32,
    shared: Arc<Shared>,
    mut go: watch::Receiver<bool>,
) -> Result<WriterDone, String> {
    send(
        &mut tx,
        w,
        push_frame(w, 0, 1, shared.now_us(), payload_bytes)?,
    )
    .await?;
    if go.wait_for(|g| *g).await.is_err() {
        return Ok((tx, 1, 0, 0));
    }
    let from = shared.from_us.load(Ordering::Relaxed);
    let until = shared.until_us.load(Ordering::Relaxed);
    let mut k = 1u64;
    let mut in_window = 0u64;
    let mut lag_max = 0u64;
    // Paced: writer w of n sends every n/rate seconds, offset by w/rate so
    // that the total is even.
    let interval_us = (writers as f64 * 1e6 / rate.max(1) as f64) as u64;
    let start_us = shared.now_us() + (w as u64 * 1_000_000) / rate.max(1) as u64;
    loop {
        let mut n = 1u64;
        match mode {
            Mode::Paced => {
                let due = start_us + (k - 1) * interval_us;
                if due >= until {
                    break;
                }
                let now = shared.now_us();
                if due > now {
                    tokio::time::sleep(Duration::from_micros(due - now)).await;
                } else {
                    lag_max = lag_max.max(now - due);
                }
            }
            Mode::Max => {
                let slot = &shared.remaining[w][(k as usize) % shared.window];
                loop {
                    if slot.load(Ordering::Acquire) == 0 || shared.failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let left = until.saturating_sub(shared.now_us());
                    if left == 0 {
                        break;
                    }
                    let _ = tokio::time::timeout(
                        Duration::from_micros(left),
                        shared.freed[w].notified(),
                    )
                    .await;
                }
                if shared.now_us() >= until || slot.load(Ordering::Acquire) != 0 {
                    break;
                }
                slot.store(recipients, Ordering::Release);
                // Every further message the window allows now goes in the
                // same frame.
                while (n as usize) < max_batch {
                    let next = &shared.remaining[w][((k + n) as usize) % shared.window];
                    if next.load(Ordering::Acquire) != 0 {
                        break;
                    }
                    next.store(recipients, Ordering::Release);
                    n += 1;
                }
            }
        }
        if shared.failed.load(Ordering::Relaxed) {
            break;
        }
        let t = shared.now_us();
        if t >= until {
            break;
        }
        send(&mut tx, w, push_frame(w, k, n, t, payload_bytes)?).await?;
        if t >= from {
            in_window += n;
        }
        k += n;
    }
    Ok((tx, k, in_window, lag_max))
}

async fn send(tx: &mut SplitSink<Ws, Message>, w: usize, m: Message) -> Result<(), String> {
    tx.send(m)
        .await
        .map_err(|e| format!("writer {w}: send: {e}"))
}

type WriterDone = (SplitSink<Ws, Message>, u64, u64, u64);

async fn measure(proc: &Proc, kind: Kind, cell: Cell, args: &Args) -> Result<RunResult, String> {
    let n = cell.clients;
    let (writers, window) = match cell.workload {
        Workload::OneWriter => (1, args.window.max(1)),
        Workload::ManyWriters => (n, args.writer_window.max(1)),
    };
    // Who receives a message: every subscriber; with many writers the
    // relay does not echo a frame to its sender, the server's
    // subscription does deliver a writer's own events to it.
    let recipients = match (cell.workload, kind) {
        (Workload::OneWriter, _) => n,
        (Workload::ManyWriters, Kind::Logsync) => n,
        (Workload::ManyWriters, Kind::Relay) => n - 1,
    };
    let shared = Arc::new(Shared {
        kind,
        epoch: Instant::now(),
        from_us: AtomicU64::new(u64::MAX),
        until_us: AtomicU64::new(u64::MAX),
        windowed: cell.mode == Mode::Max,
        window,
        remaining: (0..writers)
            .map(|_| (0..window).map(|_| AtomicU32::new(0)).collect())
            .collect(),
        freed: (0..writers).map(|_| Notify::new()).collect(),
        received: (0..n).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicBool::new(false),
        failure: std::sync::Mutex::new(None),
    });

    // Connections: subscribers first (they must be following the stream
    // before the first event), then the writer of the one-writer workload.
    let subs = connect_all(&proc.url, kind, n, true, args.connect_concurrency).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (go_tx, go_rx) = watch::channel(false);
    let mut sub_tasks = Vec::with_capacity(n);
    let mut writer_tasks = Vec::with_capacity(writers);
    let mut sinks = Vec::new();
    for (i, ws) in subs.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        sub_tasks.push(tokio::spawn(subscriber(
            stream,
            i,
            writers,
            shared.clone(),
            stop_rx.clone(),
        )));
        sinks.push(sink);
    }
    let mut writer_conn = None;
    match cell.workload {
        Workload::OneWriter => {
            let ws = connect(&proc.url, kind, n + 1, false).await?;
            let (sink, mut stream) = ws.split();
            // The writer's own connection only gets Acks (server) or
            // nothing (relay); drain it so the server never waits on it.
            let shared2 = shared.clone();
            writer_conn = Some(tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    if let Message::Binary(b) = m {
                        if kind == Kind::Logsync {
                            match ServerMsg::decode(&b, 64 << 20) {
                                Ok(ServerMsg::Ack { .. } | ServerMsg::Pong { .. }) => {}
                                other => shared2.fail(format!("writer got {other:?}")),
                            }
                        }
                    }
                }
            }));
            writer_tasks.push(tokio::spawn(writer(
                sink,
                0,
                1,
                cell.mode,
                args.rate,
                args.payload_bytes,
                args.max_batch.max(1),
                recipients as u32,
                shared.clone(),
                go_rx.clone(),
            )));
        }
        Workload::ManyWriters => {
            for (w, sink) in sinks.drain(..).enumerate() {
                writer_tasks.push(tokio::spawn(writer(
                    sink,
                    w,
                    writers,
                    cell.mode,
                    args.rate,
                    args.payload_bytes,
                    args.max_batch.max(1),
                    recipients as u32,
                    shared.clone(),
                    go_rx.clone(),
                )));
            }
        }
    }

    // Barrier: every subscriber has every writer's message 0, so every
    // connection is in place before the clock starts.
    let barrier_each = match (cell.workload, kind) {
        (Workload::OneWriter, _) => 1,
        (Workload::ManyWriters, Kind::Logsync) => writers as u64,
        (Workload::ManyWriters, Kind::Relay) => writers as u64 - 1,
    };
    wait_until(&shared, Duration::from_secs(60), |s| {
        s.received
            .iter()
            .all(|r| r.load(Ordering::Acquire) >= barrier_each)
    })
    .await
    .map_err(|_| "not every subscriber got the first message within 60 s".to_string())?;

    let cpu0 = proc.cpu_seconds()?;
    let self0 = crate::procstat::cpu_seconds("self")?;
    let t0 = Instant::now();
    let start = shared.now_us();
    let from = start + args.warmup.as_micros() as u64;
    shared.from_us.store(from, Ordering::Relaxed);
    shared
        .until_us
        .store(from + args.duration.as_micros() as u64, Ordering::Relaxed);
    let _ = go_tx.send(true);

    let mut sent = Vec::with_capacity(writers);
    let mut sent_in_window = 0;
    let mut lag = 0;
    for t in writer_tasks {
        let (sink, s, inw, l) = t.await.map_err(|e| e.to_string())??;
        // Kept until the end: the drain still reads these connections.
        sinks.push(sink);
        sent.push(s);
        sent_in_window += inw;
        lag = lag.max(l);
    }
    // Expected per subscriber: every message of every writer it hears.
    let total: u64 = sent.iter().sum();
    let expected_of = |i: usize| -> u64 {
        match (cell.workload, kind) {
            (Workload::ManyWriters, Kind::Relay) => total - sent[i],
            _ => total,
        }
    };
    // A target that fell behind is slow, not lossy: wait while deliveries
    // still arrive.
    let hard_deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0u64;
    let mut progress = Instant::now();
    loop {
        if shared.failed.load(Ordering::Relaxed)
            || shared
                .received
                .iter()
                .enumerate()
                .all(|(i, r)| r.load(Ordering::Acquire) >= expected_of(i))
        {
            break;
        }
        let now: u64 = shared
            .received
            .iter()
            .map(|r| r.load(Ordering::Acquire))
            .sum();
        if now != seen {
            seen = now;
            progress = Instant::now();
        } else if progress.elapsed() >= args.drain {
            break;
        }
        if Instant::now() >= hard_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed_s = t0.elapsed().as_secs_f64();
    let server_cpu_s = proc.cpu_seconds()? - cpu0;
    let loadgen_cpu_s = crate::procstat::cpu_seconds("self")? - self0;

    let _ = stop_tx.send(true);
    let mut hist = Histogram::default();
    let mut r = RunResult {
        writers,
        window,
        sent: total,
        sent_in_window,
        deliveries: 0,
        expected: 0,
        lost: 0,
        misordered: 0,
        duplicates: 0,
        frames: 0,
        events_in_frames: 0,
        hist: Histogram::default(),
        span_s: args.duration.as_secs_f64(),
        writer_lag_max_us: lag,
        elapsed_s,
        server_cpu_s,
        loadgen_cpu_s,
    };
    let mut last_us = 0;
    for (i, t) in sub_tasks.into_iter().enumerate() {
        let s = t.await.map_err(|e| e.to_string())?;
        hist.merge(&s.hist);
        last_us = last_us.max(s.last_us);
        r.misordered += s.misordered;
        r.duplicates += s.duplicates;
        r.frames += s.frames;
        r.events_in_frames += s.events_in_frames;
        let exp = expected_of(i);
        r.expected += exp;
        r.lost += exp.saturating_sub(shared.received[i].load(Ordering::Acquire));
    }
    // Every measured delivery recorded one latency.
    r.deliveries = hist.len();
    r.hist = hist;
    r.span_s = r.span_s.max(last_us.saturating_sub(from) as f64 / 1e6);
    if let Some(w) = writer_conn {
        w.abort();
    }
    drop(sinks);
    if let Ok(Some(f)) = shared.failure.lock().map(|f| f.clone()) {
        return Err(f);
    }
    Ok(r)
}

/// Polls `cond` every 5 ms until it holds or `limit` passes.
async fn wait_until(
    shared: &Arc<Shared>,
    limit: Duration,
    cond: impl Fn(&Shared) -> bool,
) -> Result<(), ()> {
    let deadline = Instant::now() + limit;
    loop {
        if cond(shared) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_fields_round_trip() {
        let p = payload(7, 123_456, 987_654_321, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(hex_field(&p, W_AT, 8), Some(7));
        assert_eq!(hex_field(&p, K_AT, 16), Some(123_456));
        assert_eq!(hex_field(&p, T_AT, 16), Some(987_654_321));
        // The payload is one JSON string, so the server's JSON views show it.
        assert!(sync_core::json::payload_as_json(&p).is_some());
        assert_eq!(hex_field(b"\"zz", W_AT, 2), None);
        assert_eq!(hex_field(b"\"1", W_AT, 8), None);
    }
}
