//! The real `logsync-server` binary as a separate process: the address
//! line, `kill -9` in the middle of a write load (no acknowledged intent
//! lost, none doubled), SIGTERM, and a stalled subscriber that neither
//! slows a fast one nor grows the server's memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use sync_core::{ClientMsg, Offset, PushIntent, ServerMsg};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

struct Proc {
    child: Child,
    addr: String,
}

impl Proc {
    async fn spawn(dir: &Path, extra: &[&str]) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_logsync-server"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.join("log.db"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = within("the listening line", lines.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no line on stdout; log: {}", log_of(dir)));
        let addr = line
            .strip_prefix("logsync-server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(!addr.ends_with(":0"), "the real port is printed: {addr}");
        Proc { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    fn ws(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024
    }

    async fn sigterm(mut self) -> std::process::ExitStatus {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        within("exit after SIGTERM", self.child.wait())
            .await
            .unwrap()
    }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// Every event of `stream`, read page by page over HTTP.
async fn read_all(p: &Proc, stream: &str) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    loop {
        let after = out.len();
        let page: serde_json::Value = serde_json::from_str(
            &http()
                .get(p.url(&format!("/v1/streams/{stream}/events?after={after}")))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            assert_eq!(page["head"].as_u64().unwrap() as usize, out.len());
            return out;
        }
        out.extend(events);
    }
}

#[tokio::test]
async fn address_line_help_and_sigterm() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--db",
        "--static",
        "--max-frame-bytes",
        "--max-payload-bytes",
        "--commit-mode",
        "--max-batch-intents",
        "--max-batch-bytes",
        "--send-queue-bytes",
        "--ping-interval",
        "--idle-timeout",
        "LOGSYNC_LISTEN",
        "LOGSYNC_DB",
        "LOGSYNC_STATIC",
    ] {
        assert!(
            help.contains(flag),
            "--help does not explain {flag}:\n{help}"
        );
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .args(["--max-payload-bytes", "8MiB"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max payload bytes"));

    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(dir.path(), &[]).await;
    let h = http().get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status().as_u16(), 200);
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    let status = p.sigterm().await;
    assert!(status.success(), "{status:?}; log: {}", log_of(dir.path()));
    let (error, close) = c.recv_close().await;
    assert!(matches!(error, Some(ServerMsg::Error { .. })));
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
}

/// Pushes 1-4 intents at a time until the connection fails; returns
/// (acknowledged seq -> offset, highest seq sent).
async fn writer_until_killed(
    url: String,
    id: u8,
    acks: Arc<AtomicUsize>,
) -> (BTreeMap<u64, u64>, u64) {
    let mut acked = BTreeMap::new();
    let mut sent = 0u64;
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return (acked, sent);
    };
    let hello = ClientMsg::hello(client_id(id), None).encode();
    if ws.send(Message::Binary(hello.into())).await.is_err() {
        return (acked, sent);
    }
    loop {
        let n = sent % 4 + 1;
        let intents: Vec<PushIntent> = (sent + 1..=sent + n)
            .map(|s| PushIntent {
                seen: sync_core::Offset::ZERO,
                seq: seq(s),
                payload: format!("{{\"w\":{id},\"s\":{s}}}").into_bytes(),
                schema: 1,
            })
            .collect();
        let push = ClientMsg::Push {
            stream: stream("crash"),
            intents,
        };
        if ws
            .send(Message::Binary(push.encode().into()))
            .await
            .is_err()
        {
            return (acked, sent);
        }
        sent += n;
        let mut outstanding = n;
        while outstanding > 0 {
            match tokio::time::timeout(DEADLINE, ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => match ServerMsg::decode(&b, 1 << 20).unwrap() {
                    ServerMsg::Ack { seq, offset, .. } => {
                        acked.insert(seq.get(), offset.0);
                        acks.fetch_add(1, Ordering::Relaxed);
                        outstanding -= 1;
                    }
                    ServerMsg::Welcome { .. } => {}
                    other => panic!("writer {id}: unexpected {other:?}"),
                },
                Ok(Some(Ok(_))) => {}
                _ => return (acked, sent),
            }
        }
    }
}

#[tokio::test]
async fn kill_9_mid_load_loses_no_acknowledged_intent() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(dir.path(), &[]).await;
    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (1..=8u8)
        .map(|id| tokio::spawn(writer_until_killed(p.ws(), id, acks.clone())))
        .collect();
    within("400 acknowledged intents", async {
        while acks.load(Ordering::Relaxed) < 400 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let mut p = p;
    p.child.start_kill().unwrap(); // SIGKILL
    let status = within("the kill", p.child.wait()).await.unwrap();
    assert!(!status.success());
    let mut acked: HashMap<u8, BTreeMap<u64, u64>> = HashMap::new();
    let mut sent: HashMap<u8, u64> = HashMap::new();
    for (i, w) in writers.into_iter().enumerate() {
        let (a, s) = within("writer to notice the kill", w).await.unwrap();
        acked.insert(i as u8 + 1, a);
        sent.insert(i as u8 + 1, s);
    }
    let total_acked: usize = acked.values().map(BTreeMap::len).sum();
    assert!(total_acked >= 400);

    // Restart on the same file.
    let p = Proc::spawn(dir.path(), &[]).await;
    let events = read_all(&p, "crash").await;
    let mut by_intent: HashMap<(u8, u64), u64> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["offset"].as_u64().unwrap(), i as u64 + 1, "dense offsets");
        let w = e["payload"]["w"].as_u64().unwrap() as u8;
        let s = e["seq"].as_u64().unwrap();
        assert_eq!(e["payload"]["s"].as_u64().unwrap(), s);
        assert!(
            by_intent.insert((w, s), i as u64 + 1).is_none(),
            "intent ({w}, {s}) is in the log twice"
        );
    }
    for (w, a) in &acked {
        for (s, o) in a {
            assert_eq!(
                by_intent.get(&(*w, *s)),
                Some(o),
                "acknowledged intent ({w}, {s}) at offset {o} is missing after kill -9"
            );
        }
        // A client's intents are decided in seq order: the log holds a prefix.
        let mut seqs: Vec<u64> = by_intent
            .keys()
            .filter(|(x, _)| x == w)
            .map(|(_, s)| *s)
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert!(seqs.len() as u64 <= sent[w]);
    }

    // Every writer resends everything it sent: acknowledged intents get
    // their original offsets, the rest are appended, nothing twice.
    for w in 1..=8u8 {
        let (mut c, _) = Client::hello(&p.ws(), client_id(w)).await;
        let intents: Vec<(u64, Vec<u8>)> = (1..=sent[&w])
            .map(|s| (s, format!("{{\"w\":{w},\"s\":{s}}}").into_bytes()))
            .collect();
        c.push("crash", &intents).await;
        for s in 1..=sent[&w] {
            match c.recv().await {
                ServerMsg::Ack {
                    seq: got,
                    offset,
                    duplicate,
                    ..
                } => {
                    assert_eq!(got.get(), s);
                    if let Some(o) = acked[&w].get(&s) {
                        assert!(duplicate);
                        assert_eq!(offset.0, *o);
                    }
                    if let Some(o) = by_intent.get(&(w, s)) {
                        assert!(duplicate, "({w}, {s}) was in the log already");
                        assert_eq!(offset.0, *o);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let events = read_all(&p, "crash").await;
    let total_sent: u64 = sent.values().sum();
    assert_eq!(events.len() as u64, total_sent);
    let unique: HashSet<(u64, u64)> = events
        .iter()
        .map(|e| {
            (
                e["payload"]["w"].as_u64().unwrap(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(unique.len() as u64, total_sent);
    let status = p.sigterm().await;
    assert!(status.success());
}

/// Pushes seqs `from..=upto` of 64 KiB payloads, 4 per push, awaiting Acks.
async fn push(w: &mut Client, from: u64, upto: u64) {
    let mut s = from;
    while s <= upto {
        let batch: Vec<(u64, Vec<u8>)> = (s..=(s + 3).min(upto))
            .map(|x| (x, json_payload(&x.to_string(), 64 << 10)))
            .collect();
        let n = batch.len();
        w.push("big", &batch).await;
        for _ in 0..n {
            assert!(matches!(w.recv().await, ServerMsg::Ack { .. }));
        }
        s += n as u64;
    }
}

#[tokio::test]
async fn stalled_subscriber_neither_slows_others_nor_grows_memory() {
    const PAYLOAD: usize = 64 << 10;
    const WARMUP: u64 = 64;
    const TOTAL: u64 = 64 + 640; // 44 MiB of payloads
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(
        dir.path(),
        &[
            "--send-queue-bytes",
            "256KiB",
            "--feed-buffer-bytes",
            "1MiB",
            "--ping-interval",
            "60s",
            "--idle-timeout",
            "120s",
        ],
    )
    .await;
    // The stalled client: a small receive buffer, then it reads nothing.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(p.addr.parse().unwrap()).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(p.ws(), tcp).await.unwrap();
    for msg in [
        ClientMsg::hello(client_id(66), None),
        ClientMsg::Subscribe {
            stream: stream("big"),
            after: Offset(0),
            resume: None,
        },
    ] {
        stalled
            .send(Message::Binary(msg.encode().into()))
            .await
            .unwrap();
    }
    let (mut fast, _) = Client::hello(&p.ws(), client_id(2)).await;
    fast.subscribe("big", 0).await;
    let (mut w, _) = Client::hello(&p.ws(), client_id(1)).await;
    push(&mut w, 1, WARMUP).await;
    let warm = fast.events_until(WARMUP).await;
    assert_dense(&warm, 1);
    let baseline = p.rss_bytes();
    let reader = tokio::spawn(async move {
        let rest = fast.events_until(TOTAL).await;
        assert_dense(&rest, WARMUP + 1);
        fast
    });
    let mut peak = baseline;
    let writing = push(&mut w, WARMUP + 1, TOTAL);
    tokio::pin!(writing);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = &mut writing => break,
            _ = tick.tick() => peak = peak.max(p.rss_bytes()),
        }
    }
    let _fast = within("the fast subscriber to get every event", reader)
        .await
        .unwrap();
    peak = peak.max(p.rss_bytes());
    let growth = peak.saturating_sub(baseline);
    let pushed = (TOTAL - WARMUP) * PAYLOAD as u64;
    eprintln!(
        "server RSS: baseline {} KiB, peak {} KiB, growth {} KiB while {} KiB were pushed past the stalled client",
        baseline / 1024,
        peak / 1024,
        growth / 1024,
        pushed / 1024
    );
    assert!(
        growth < pushed / 3,
        "server memory grew by {growth} bytes while {pushed} bytes went past a stalled subscriber"
    );
    let metrics = http()
        .get(p.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let queued: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("logsync_fanout_queue_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(queued <= 256 << 10, "queued {queued} bytes");

    // The stalled client reads at last: everything, in order, from the log.
    let mut got: Vec<sync_core::Event> = Vec::new();
    while got.last().map(|e| e.offset.0).unwrap_or(0) < TOTAL {
        let m = within("the stalled client to catch up", stalled.next())
            .await
            .unwrap()
            .unwrap();
        if let Message::Binary(b) = m {
            if let ServerMsg::Events { events, .. } = ServerMsg::decode(&b, 2 << 20).unwrap() {
                got.extend(events);
            }
        }
    }
    assert_dense(&got, 1);
    let metrics = http()
        .get(p.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let catch_up: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("logsync_catch_up_reads_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        catch_up > 0,
        "the stalled subscriber caught up from the log"
    );
    assert!(p.sigterm().await.success());
}

/// A server built without the `otel` feature refuses `--otlp-endpoint`
/// at start, saying how to build one that exports.
#[cfg(not(feature = "otel"))]
#[test]
fn the_otlp_endpoint_needs_the_otel_feature() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--features otel"), "{stderr}");
}
