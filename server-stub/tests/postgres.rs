//! Scale-out: real `logsync-server` processes sharing one real PostgreSQL,
//! driven by real WebSocket and HTTP clients.
//!
//! - Two nodes, writers on both appending to one stream at once: every
//!   subscriber on either node sees the same dense order; an intent resent
//!   through the other node (or sent through both at once) is in the log
//!   once and answered with its original offset; SSE on one node follows
//!   appends made on the other.
//! - A node killed with `kill -9` in the middle of a write load: its
//!   clients reconnect to the other node, resend what was not
//!   acknowledged and resume their subscriptions from their offsets;
//!   nothing is lost or doubled, everyone converges, and a node started
//!   afterwards serves the same log and epoch.
//!
//! These need `LOGSYNC_TEST_POSTGRES_URL` (see `scripts/test-postgres.sh`,
//! which starts a throwaway PostgreSQL and runs them); a plain
//! `cargo test` lists them as ignored, with that reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http, within, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use sync_core::{
    ClientId, ClientMsg, Epoch, ErrorCode, Event, Offset, PushIntent, Seq, ServerMsg, StreamName,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const NEEDS_POSTGRES: &str = "LOGSYNC_TEST_POSTGRES_URL";

/// A database of its own for one test, dropped at its end.
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn new() -> TestDb {
        let admin = std::env::var(NEEDS_POSTGRES).unwrap_or_else(|_| {
            panic!("{NEEDS_POSTGRES} is not set: scripts/test-postgres.sh starts a PostgreSQL and sets it")
        });
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let name = format!(
            "logsync_p_{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        sql(&admin, &format!("CREATE DATABASE {name}")).await;
        let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
        let (root, _) = base.rsplit_once('/').unwrap();
        let url = if query.is_empty() {
            format!("{root}/{name}")
        } else {
            format!("{root}/{name}?{query}")
        };
        TestDb { admin, name, url }
    }

    async fn drop(self) {
        sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

async fn sql(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
}

/// A `logsync-server` process on the shared database.
struct Node {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Node {
    async fn spawn(db: &TestDb, dir: &Path, name: &str) -> Node {
        Node::spawn_with(db, dir, name, &[]).await
    }

    async fn spawn_with(db: &TestDb, dir: &Path, name: &str, extra: &[String]) -> Node {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_logsync-server"))
            .args(["--listen", "127.0.0.1:0", "--server-id", name, "--store"])
            .arg(&db.url)
            // Never the SQLite default: a stray ./logsync.db would mean the
            // node did not use the shared store.
            .arg("--db")
            .arg(dir.join(format!("{name}-unused.db")))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = within("the listening line", lines.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "{name} printed no address; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let addr = line
            .strip_prefix("logsync-server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Node { child, addr, log }
    }

    fn ws(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    async fn kill9(mut self) {
        self.signal("-KILL");
        within("exit after SIGKILL", self.child.wait())
            .await
            .unwrap();
    }

    async fn stop(mut self) {
        self.signal("-TERM");
        let status = within("exit after SIGTERM", self.child.wait())
            .await
            .unwrap();
        assert!(
            status.success(),
            "{status}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn id(n: u8) -> ClientId {
    ClientId([n; 16])
}

fn seq(n: u64) -> Seq {
    Seq::new(n).unwrap()
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn payload(client: u8, s: u64) -> Vec<u8> {
    format!("{{\"client\":{client},\"seq\":{s}}}").into_bytes()
}

/// Connects and says Hello; `None` when the node is unreachable or the
/// connection ends first.
async fn open(url: &str, client: ClientId) -> Option<(Ws, Epoch)> {
    let (mut ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .ok()?
        .ok()?;
    ws.send(Message::Binary(
        ClientMsg::hello(client, None).encode().into(),
    ))
    .await
    .ok()?;
    match next(&mut ws).await? {
        ServerMsg::Welcome { epoch, .. } => Some((ws, epoch)),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// The next protocol message; `None` when the connection ends. Fails the
/// test after the deadline.
async fn next(ws: &mut Ws) -> Option<ServerMsg> {
    within("a server message", async {
        loop {
            match ws.next().await? {
                Ok(Message::Binary(b)) => return Some(ServerMsg::decode(&b, 64 << 20).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    })
    .await
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> bool {
    ws.send(Message::Binary(msg.encode().into())).await.is_ok()
}

async fn push(ws: &mut Ws, name: &str, intents: Vec<(u64, Vec<u8>)>) -> bool {
    push_schema(ws, name, 1, intents).await
}

/// [`push`] of intents made under schema version `schema`.
async fn push_schema(ws: &mut Ws, name: &str, schema: u32, intents: Vec<(u64, Vec<u8>)>) -> bool {
    let msg = ClientMsg::Push {
        stream: stream(name),
        intents: intents
            .into_iter()
            .map(|(s, payload)| PushIntent {
                seen: sync_core::Offset::ZERO,
                seq: seq(s),
                payload,
                schema,
            })
            .collect(),
    };
    send(ws, &msg).await
}

/// A device writing `total` intents to `name`, a few in flight at a time.
/// When its node goes away it connects to the next one in `urls` and
/// resends everything not acknowledged. Returns seq -> offset, checking
/// that acknowledgements come in seq order and that a seq acknowledged
/// twice (a resend) keeps its offset.
async fn writer(
    urls: Vec<String>,
    client: u8,
    name: &'static str,
    total: u64,
    acked: Arc<AtomicUsize>,
    reconnects: Arc<AtomicUsize>,
) -> BTreeMap<u64, u64> {
    const WINDOW: u64 = 4;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut offsets: BTreeMap<u64, u64> = BTreeMap::new();
    let mut which = 0;
    'connection: loop {
        assert!(Instant::now() < deadline, "writer {client} did not finish");
        let url = &urls[which % urls.len()];
        let Some((mut ws, _)) = open(url, id(client)).await else {
            which += 1;
            reconnects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        // Resend from the first seq without an answer.
        let mut sent = offsets.len() as u64;
        loop {
            while sent < total && sent - (offsets.len() as u64) < WINDOW {
                sent += 1;
                if !push(&mut ws, name, vec![(sent, payload(client, sent))]).await {
                    break;
                }
            }
            if offsets.len() as u64 == total {
                return offsets;
            }
            match next(&mut ws).await {
                Some(ServerMsg::Ack { seq, offset, .. }) => {
                    let expected = offsets.len() as u64 + 1;
                    assert_eq!(seq.get(), expected, "writer {client}: Acks in seq order");
                    offsets.insert(seq.get(), offset.0);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Some(ServerMsg::Events { .. }) => {}
                Some(ServerMsg::Error { .. }) | None => {
                    which += 1;
                    reconnects.fetch_add(1, Ordering::Relaxed);
                    continue 'connection;
                }
                Some(other) => panic!("writer {client}: unexpected {other:?}"),
            }
        }
    }
}

/// A device following `name` until offset `until`. When its node goes away
/// it resubscribes on the next one in `urls` from the last offset it has.
/// Checks that events arrive dense, in order, never repeated.
async fn follower(urls: Vec<String>, client: u8, name: &'static str, until: u64) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut events: Vec<Event> = Vec::new();
    let mut which = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "follower {client} did not converge"
        );
        let url = &urls[which % urls.len()];
        let Some((mut ws, _)) = open(url, id(client)).await else {
            which += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let after = Offset(events.len() as u64);
        if !send(
            &mut ws,
            &ClientMsg::Subscribe {
                stream: stream(name),
                after,
                resume: None,
            },
        )
        .await
        {
            which += 1;
            continue;
        }
        loop {
            match next(&mut ws).await {
                Some(ServerMsg::Events { events: batch, .. }) => {
                    for e in batch {
                        assert_eq!(
                            e.offset.0,
                            events.len() as u64 + 1,
                            "follower {client}: dense, in order, no repeat"
                        );
                        events.push(e);
                    }
                    if events.len() as u64 >= until {
                        return events;
                    }
                }
                Some(ServerMsg::Error { .. }) | None => {
                    which += 1;
                    break;
                }
                Some(_) => {}
            }
        }
    }
}

/// Every event of `name`, read page by page over HTTP from `node`.
async fn read_log(node: &Node, name: &str) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    loop {
        let page: serde_json::Value = http()
            .get(node.url(&format!("/v1/streams/{name}/events?after={}", out.len())))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            assert_eq!(page["head"].as_u64().unwrap() as usize, out.len());
            return out;
        }
        out.extend(events.iter().cloned());
    }
}

/// The log is dense and holds each (client, seq) once; returns
/// (client, seq) per offset.
fn check_log(log: &[serde_json::Value]) -> Vec<(String, u64)> {
    let mut seen = HashSet::new();
    log.iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e["offset"].as_u64().unwrap(), i as u64 + 1, "dense log");
            let key = (
                e["client_id"].as_str().unwrap().to_string(),
                e["seq"].as_u64().unwrap(),
            );
            assert!(seen.insert(key.clone()), "{key:?} is in the log twice");
            key
        })
        .collect()
}

fn hex_id(client: u8) -> String {
    format!("{client:02x}").repeat(16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn two_nodes_one_order_and_resends_answered_once() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::spawn(&db, dir.path(), "node-1").await;
    let n2 = Node::spawn(&db, dir.path(), "node-2").await;
    let (_, e1) = open(&n1.ws(), id(200)).await.unwrap();
    let (_, e2) = open(&n2.ws(), id(201)).await.unwrap();
    assert_eq!(e1, e2, "every node reports the epoch stored in PostgreSQL");

    // Subscribers on both nodes, then writers on both, all on one stream.
    const WRITERS: u8 = 6;
    const EACH: u64 = 40;
    let total = u64::from(WRITERS) * EACH;
    let followers: Vec<_> = [(&n1, 101u8), (&n2, 102), (&n1, 103), (&n2, 104)]
        .into_iter()
        .map(|(n, c)| tokio::spawn(follower(vec![n.ws()], c, "shared", total)))
        .collect();
    let acked = Arc::new(AtomicUsize::new(0));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (1..=WRITERS)
        .map(|c| {
            let url = if c % 2 == 1 { n1.ws() } else { n2.ws() };
            tokio::spawn(writer(
                vec![url],
                c,
                "shared",
                EACH,
                acked.clone(),
                reconnects.clone(),
            ))
        })
        .collect();
    let mut acks: BTreeMap<u8, BTreeMap<u64, u64>> = BTreeMap::new();
    for (c, w) in (1..=WRITERS).zip(writers) {
        acks.insert(c, w.await.unwrap());
    }
    assert_eq!(reconnects.load(Ordering::Relaxed), 0);
    let mut seen: Vec<Vec<Event>> = Vec::new();
    for f in followers {
        seen.push(f.await.unwrap());
    }
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "every subscriber sees the same events");
    }
    let order = &seen[0];
    assert_eq!(order.len() as u64, total);
    for (c, offsets) in &acks {
        for (s, o) in offsets {
            let e = &order[*o as usize - 1];
            assert_eq!(
                (e.client_id, e.seq.get()),
                (id(*c), *s),
                "an Ack names its event's offset"
            );
            assert_eq!(e.payload, payload(*c, *s));
        }
    }

    // Writer 1 (on node 1) resends seqs 5..=8 through node 2, then seq 41.
    let (mut ws, _) = open(&n2.ws(), id(1)).await.unwrap();
    push(
        &mut ws,
        "shared",
        (5..=9).map(|s| (s, payload(1, s))).collect(),
    )
    .await;
    let mut follower_n1 = tokio::spawn(follower(vec![n1.ws()], 105, "shared", total + 1));
    assert!(push(&mut ws, "shared", vec![(EACH + 1, payload(1, EACH + 1))]).await);
    for s in 5..=EACH + 1 {
        if s > 9 && s <= EACH {
            continue;
        }
        match next(&mut ws).await.unwrap() {
            ServerMsg::Ack {
                seq,
                offset,
                duplicate,
                ..
            } => {
                assert_eq!(seq.get(), s);
                if s <= 9 {
                    assert!(duplicate, "seq {s} was decided through node 1");
                    assert_eq!(offset.0, acks[&1][&s], "the original offset");
                } else {
                    assert!(!duplicate);
                    assert_eq!(offset.0, total + 1, "a new seq goes to the head");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let on_n1 = within("node 1's subscriber", &mut follower_n1)
        .await
        .unwrap();
    assert_eq!(
        on_n1.len() as u64,
        total + 1,
        "node 1 fans out node 2's append"
    );

    // The same intent through both nodes at once: one offset, decided once.
    let (mut a, _) = open(&n1.ws(), id(50)).await.unwrap();
    let (mut b, _) = open(&n2.ws(), id(50)).await.unwrap();
    let (ok_a, ok_b) = tokio::join!(
        push(&mut a, "shared", vec![(1, payload(50, 1))]),
        push(&mut b, "shared", vec![(1, payload(50, 1))])
    );
    assert!(ok_a && ok_b);
    let (ra, rb) = (next(&mut a).await.unwrap(), next(&mut b).await.unwrap());
    let (
        ServerMsg::Ack {
            offset: oa,
            duplicate: dup_a,
            ..
        },
        ServerMsg::Ack {
            offset: ob,
            duplicate: dup_b,
            ..
        },
    ) = (&ra, &rb)
    else {
        panic!("unexpected {ra:?} {rb:?}");
    };
    assert_eq!(oa, ob, "both nodes answer the same offset");
    assert!(dup_a ^ dup_b, "exactly one node decided it: {ra:?} {rb:?}");

    // SSE on node 2 follows an append made over HTTP on node 1.
    let head = total + 2;
    let mut sse = http()
        .get(n2.url(&format!("/v1/streams/shared/events?after={head}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let body = serde_json::json!({"client_id": hex_id(60), "seq": 1, "payload": {"via": "http"}});
    let posted: serde_json::Value = serde_json::from_str(
        &http()
            .post(n1.url("/v1/streams/shared/intents"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(posted["offset"].as_u64(), Some(head + 1), "{posted}");
    let mut text = String::new();
    within("the SSE event on node 2", async {
        while !text.contains(&format!("id: {}", head + 1)) {
            let chunk = sse.chunk().await.unwrap().expect("the feed stays open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(text.contains(r#""via":"http""#), "{text}");

    // Both nodes serve the same log, each intent once.
    let log1 = read_log(&n1, "shared").await;
    let log2 = read_log(&n2, "shared").await;
    assert_eq!(log1, log2);
    assert_eq!(check_log(&log1).len() as u64, head + 1);
    n1.stop().await;
    n2.stop().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_killed_node_loses_nothing_and_its_clients_resume_elsewhere() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::spawn(&db, dir.path(), "node-1").await;
    let n2 = Node::spawn(&db, dir.path(), "node-2").await;
    let (_, epoch) = open(&n2.ws(), id(200)).await.unwrap();
    // Every client knows both nodes and starts on its own.
    let both = |first: &Node, second: &Node| vec![first.ws(), second.ws()];
    const WRITERS: u8 = 6;
    const EACH: u64 = 150;
    let total = u64::from(WRITERS) * EACH;
    let acked = Arc::new(AtomicUsize::new(0));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let followers: Vec<_> = (0..4u8)
        .map(|i| {
            let urls = if i % 2 == 0 {
                both(&n1, &n2)
            } else {
                both(&n2, &n1)
            };
            tokio::spawn(follower(urls, 100 + i, "load", total))
        })
        .collect();
    let writers: Vec<_> = (1..=WRITERS)
        .map(|c| {
            let urls = if c % 2 == 1 {
                both(&n1, &n2)
            } else {
                both(&n2, &n1)
            };
            tokio::spawn(writer(
                urls,
                c,
                "load",
                EACH,
                acked.clone(),
                reconnects.clone(),
            ))
        })
        .collect();

    // Kill node 1 once a third of the load is acknowledged.
    within("a third of the load", async {
        while (acked.load(Ordering::Relaxed) as u64) < total / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    n1.kill9().await;
    let at_kill = acked.load(Ordering::Relaxed) as u64;
    assert!(
        at_kill < total,
        "node 1 died mid-load ({at_kill} of {total} acknowledged)"
    );

    let mut acks: BTreeMap<u8, BTreeMap<u64, u64>> = BTreeMap::new();
    for (c, w) in (1..=WRITERS).zip(writers) {
        acks.insert(c, w.await.unwrap());
    }
    assert!(
        reconnects.load(Ordering::Relaxed) >= usize::from(WRITERS / 2),
        "node 1's writers moved to node 2"
    );
    let mut seen: Vec<Vec<Event>> = Vec::new();
    for f in followers {
        seen.push(f.await.unwrap());
    }

    // The log: every intent once, dense, and where its Ack said.
    let log = read_log(&n2, "load").await;
    let keys = check_log(&log);
    assert_eq!(keys.len() as u64, total, "nothing lost, nothing doubled");
    for (c, offsets) in &acks {
        assert_eq!(offsets.len() as u64, EACH);
        for (s, o) in offsets {
            assert_eq!(keys[*o as usize - 1], (hex_id(*c), *s), "Ack offsets hold");
        }
    }
    for events in &seen {
        assert_eq!(
            events, &seen[0],
            "every follower converged on the same events"
        );
    }
    for (e, j) in seen[0].iter().zip(&log) {
        assert_eq!(e.offset.0, j["offset"].as_u64().unwrap());
        assert_eq!(e.client_id.to_hex(), j["client_id"].as_str().unwrap());
    }

    // A node started now holds no state of its own: it serves the same
    // log and epoch at once.
    let n3 = Node::spawn(&db, dir.path(), "node-3").await;
    let (_, again) = open(&n3.ws(), id(201)).await.unwrap();
    assert_eq!(again, epoch);
    let fresh = follower(vec![n3.ws()], 120, "load", total).await;
    assert_eq!(fresh, seen[0]);
    n2.stop().await;
    n3.stop().await;
    db.drop().await;
}

/// A seq reused for another intent is refused with `SEQ_REUSED` on either
/// node, over WebSocket and HTTP, naming the offset that holds the seq;
/// the true resend keeps its original answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_reused_seq_is_refused_on_every_node() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::spawn(&db, dir.path(), "node-1").await;
    let n2 = Node::spawn(&db, dir.path(), "node-2").await;
    let (mut w1, _) = open(&n1.ws(), id(7)).await.unwrap();
    assert!(
        push(
            &mut w1,
            "reused",
            vec![(1, payload(7, 1)), (2, payload(7, 2))]
        )
        .await
    );
    for s in 1..=2 {
        match next(&mut w1).await {
            Some(ServerMsg::Ack {
                seq: got,
                offset,
                duplicate: false,
                ..
            }) => assert_eq!((got, offset), (seq(s), Offset(s))),
            other => panic!("expected an Ack, got {other:?}"),
        }
    }
    // Through the other node: seq 1 with another payload, then the same.
    let (mut w2, _) = open(&n2.ws(), id(7)).await.unwrap();
    assert!(
        push(
            &mut w2,
            "reused",
            vec![(1, payload(7, 99)), (1, payload(7, 1))]
        )
        .await
    );
    match next(&mut w2).await {
        Some(ServerMsg::Reject {
            seq: got,
            code,
            message,
            ..
        }) => {
            assert_eq!((got, code), (seq(1), sync_core::ErrorCode::SeqReused));
            assert!(message.contains("offset 1"), "{message}");
        }
        other => panic!("expected SEQ_REUSED, got {other:?}"),
    }
    match next(&mut w2).await {
        Some(ServerMsg::Ack {
            offset, duplicate, ..
        }) => assert_eq!((offset, duplicate), (Offset(1), true)),
        other => panic!("expected the original Ack, got {other:?}"),
    }
    for (node, body, status) in [
        (&n1, String::from_utf8(payload(7, 2)).unwrap(), 200),
        (&n2, String::from_utf8(payload(7, 98)).unwrap(), 409),
    ] {
        let r = http()
            .post(node.url("/v1/streams/reused/intents"))
            .body(format!(
                r#"{{"client_id":"{}","seq":2,"payload":{body}}}"#,
                hex_id(7)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        if status == 409 {
            assert_eq!(v["error"]["code"], "SEQ_REUSED");
            assert_eq!(v["error"]["offset"], 2);
        } else {
            assert_eq!(v, serde_json::json!({"offset": 2, "duplicate": true}));
        }
    }
    assert_eq!(read_log(&n2, "reused").await.len(), 2);
    drop((w1, w2));
    n1.stop().await;
    n2.stop().await;
    db.drop().await;
}

/// A fresh database and two nodes on it, both folding `seats/*` with the
/// seat-booking module (tests/fixtures/seats.js); the directory holds
/// their logs.
async fn seat_nodes() -> (TestDb, tempfile::TempDir, Node, Node) {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seats.js");
    let rule = vec![
        "--reducer".to_string(),
        format!("seats/*={}", module.display()),
    ];
    let a = Node::spawn_with(&db, dir.path(), "a", &rule).await;
    let b = Node::spawn_with(&db, dir.path(), "b", &rule).await;
    (db, dir, a, b)
}

/// The answer to a push of one intent (events in between are skipped).
async fn decision(ws: &mut Ws) -> ServerMsg {
    loop {
        match next(ws).await {
            Some(m @ (ServerMsg::Ack { .. } | ServerMsg::Reject { .. })) => return m,
            Some(ServerMsg::Events { .. }) => continue,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

/// The state `/state` serves on `node` for `url_name`.
async fn state_of(node: &Node, url_name: &str) -> serde_json::Value {
    let r = http()
        .get(node.url(&format!("/v1/streams/{url_name}/state")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// Reducers on several nodes: each node folds at the ordering point
/// under the stream's row lock, on a state it first catches up with the
/// other node's events. Two clients, one on each node, book the same seat
/// at once, round after round: exactly one booking is in the log, the
/// other is refused with the app's code; `/state` on both nodes is the
/// fold of `/events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn two_nodes_with_a_reducer_append_a_seat_once() {
    let (db, _dir, a, b) = seat_nodes().await;
    let (mut ann, _) = open(&a.ws(), id(1)).await.unwrap();
    let (mut bob, _) = open(&b.ws(), id(2)).await.unwrap();
    let name = "seats/show";
    const ROUNDS: u64 = 20;
    let mut winners = serde_json::Map::new();
    for round in 1..=ROUNDS {
        let seat = format!("{round}A");
        let booking = |who: &str| {
            serde_json::json!({"type": "book", "seat": seat, "who": who})
                .to_string()
                .into_bytes()
        };
        // Both push before either reads an answer.
        assert!(push(&mut ann, name, vec![(round, booking("ann"))]).await);
        assert!(push(&mut bob, name, vec![(round, booking("bob"))]).await);
        let answers = [decision(&mut ann).await, decision(&mut bob).await];
        let winner = match &answers {
            [ServerMsg::Ack { .. }, ServerMsg::Reject { code, message, .. }] => {
                assert_eq!(
                    (*code, message.as_str()),
                    (
                        ErrorCode::Rejected,
                        &*format!("SEAT_TAKEN: seat {seat} is taken")
                    )
                );
                "ann"
            }
            [ServerMsg::Reject { code, message, .. }, ServerMsg::Ack { .. }] => {
                assert_eq!(
                    (*code, message.as_str()),
                    (
                        ErrorCode::Rejected,
                        &*format!("SEAT_TAKEN: seat {seat} is taken")
                    )
                );
                "bob"
            }
            other => panic!("round {round}: exactly one booking wins: {other:?}"),
        };
        winners.insert(seat, serde_json::json!(winner));
    }
    let log = read_log(&a, "seats%2Fshow").await;
    check_log(&log);
    assert_eq!(log.len() as u64, ROUNDS, "one event per seat: {log:?}");
    let mut folded = serde_json::Map::new();
    for e in &log {
        let seat = e["payload"]["seat"].as_str().unwrap().to_string();
        assert!(
            folded.insert(seat, e["payload"]["who"].clone()).is_none(),
            "a seat appended twice"
        );
    }
    assert_eq!(
        folded, winners,
        "the log holds the bookings that were acknowledged"
    );
    let want = serde_json::json!({ "seats": folded });
    for node in [&a, &b] {
        let state = state_of(node, "seats%2Fshow").await;
        assert_eq!(state["offset"], ROUNDS, "{state}");
        assert_eq!(state["state"], want, "{state}");
    }
    drop((ann, bob));
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// The seat-booking constraint under concurrency on two nodes: twenty
/// devices, half on each node, reconnect at once with offline bookings of
/// overlapping seats; each node folds under the stream's row lock
/// (tests/common/seats.rs says what is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn twenty_devices_on_two_nodes_book_the_same_seats_offline() {
    let (db, _dir, a, b) = seat_nodes().await;
    common::seats::twenty_devices_book_offline(&[a.url(""), b.url("")], "seats/hall").await;
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// `/state` followed over SSE on one node sees the commits of the other:
/// node b's follower gets a state event for each booking made through
/// node a, and ends equal to both nodes' `/state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn the_state_followed_on_one_node_sees_the_other_nodes_commits() {
    let (db, _dir, a, b) = seat_nodes().await;
    let mut feed = common::sse::SseReader::open(&b.url("/v1/streams/seats%2Fsse/state")).await;
    let first = feed.next().await;
    assert_eq!(
        first.data,
        serde_json::json!({"offset": 0, "state": {"seats": {}}})
    );
    let (mut ann, _) = open(&a.ws(), id(1)).await.unwrap();
    let mut want = serde_json::Map::new();
    for n in 1..=3u64 {
        let seat = format!("{n}A");
        let booking = serde_json::json!({"type": "book", "seat": seat, "who": "ann"});
        assert!(
            push(
                &mut ann,
                "seats/sse",
                vec![(n, booking.to_string().into_bytes())]
            )
            .await
        );
        assert!(matches!(decision(&mut ann).await, ServerMsg::Ack { .. }));
        want.insert(seat, serde_json::json!("ann"));
        // Node b's follower hears of it (a whole state or a patch).
        let e = feed.next().await;
        assert_eq!(e.id, n.to_string(), "{e:?}");
        assert!(e.event == "state" || e.event == "patch", "{e:?}");
    }
    let want = serde_json::json!({ "seats": want });
    for node in [&a, &b] {
        let state = state_of(node, "seats%2Fsse").await;
        assert_eq!(state["offset"], 3);
        assert_eq!(state["state"], want);
    }
    drop(ann);
    drop(feed);
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// Compaction on PostgreSQL, seen by clients of another node: node a
/// takes 32 bookings and compacts under its snapshots (`--snapshot-every
/// 10 --retain-events 5`); on node b an HTTP read from the start is
/// answered `410 COMPACTED` (naming the oldest event kept) and
/// `/snapshot` serves the state at 30, and a new WebSocket client from
/// offset 0 gets that snapshot, then the events after it: its state is
/// node b's `/state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_new_client_of_a_compacted_stream_starts_from_its_snapshot_on_any_node() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seats.js");
    let args: Vec<String> = [
        "--reducer".to_string(),
        format!("seats/*={}", module.display()),
    ]
    .into_iter()
    .chain(["--snapshot-every", "10", "--retain-events", "5"].map(String::from))
    .collect();
    let a = Node::spawn_with(&db, dir.path(), "a", &args).await;
    let b = Node::spawn_with(&db, dir.path(), "b", &args).await;
    let name = "seats/boot";
    let (mut ann, _) = open(&a.ws(), id(1)).await.unwrap();
    // One at a time: each commit moves the head by one, so the
    // snapshots are at 10, 20 and 30.
    for s in 1..=32u64 {
        let booking = serde_json::json!({"type": "book", "seat": format!("s{s}"), "who": "ann"});
        assert!(push(&mut ann, name, vec![(s, booking.to_string().into_bytes())]).await);
        match decision(&mut ann).await {
            ServerMsg::Ack { seq: q, offset, .. } => assert_eq!((q.get(), offset.0), (s, s)),
            other => panic!("expected an Ack for seq {s}, got {other:?}"),
        }
    }

    let r = http()
        .get(b.url("/v1/streams/seats%2Fboot/events?after=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(common::error_code(&body), "COMPACTED", "{body}");
    assert_eq!(body["error"]["oldest"], 26, "{body}");
    let r = http()
        .get(b.url("/v1/streams/seats%2Fboot/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let snapshot: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(snapshot["offset"], 30, "{snapshot}");

    let (mut fresh, _) = open(&b.ws(), id(2)).await.unwrap();
    assert!(
        send(
            &mut fresh,
            &ClientMsg::Subscribe {
                stream: stream(name),
                after: Offset(0),
                resume: None,
            },
        )
        .await
    );
    let mut text = Vec::new();
    let (offset, hash) = loop {
        match next(&mut fresh).await {
            Some(ServerMsg::Snapshot {
                offset,
                hash,
                total,
                part,
                ..
            }) => {
                text.extend(part);
                if text.len() as u64 == total {
                    break (offset, hash);
                }
            }
            other => panic!("expected the snapshot first, got {other:?}"),
        }
    };
    assert_eq!(offset, Offset(30));
    assert_eq!(sync_core::protocol::state_hash(&text), hash);
    let mut state: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(state, snapshot["state"]);
    let mut rest: Vec<Event> = Vec::new();
    while rest.last().map_or(30, |e| e.offset.0) < 32 {
        match next(&mut fresh).await {
            Some(ServerMsg::Events { events, .. }) => rest.extend(events),
            other => panic!("expected events, got {other:?}"),
        }
    }
    let offsets: Vec<u64> = rest.iter().map(|e| e.offset.0).collect();
    assert_eq!(offsets, vec![31, 32]);
    for e in &rest {
        let booking: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        state["seats"][booking["seat"].as_str().unwrap()] = booking["who"].clone();
    }
    let at_b = state_of(&b, "seats%2Fboot").await;
    assert_eq!(
        (&at_b["offset"], &at_b["state"]),
        (&serde_json::json!(32), &state)
    );
    assert_eq!(state["seats"].as_object().unwrap().len(), 32);
    drop((ann, fresh));
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// The storage bound on PostgreSQL (see `common::bound`): 200,000 events
/// through node a, a snapshot every 1,000, the last 5,000 kept; the
/// `logsync_events` table never holds more than 6,000 rows, and a client
/// offline since offset 10 catches up from the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn two_hundred_thousand_events_stay_within_the_retention() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let bound = common::bound::Bound {
        total: 200_000,
        every: 1000,
        retain: 5000,
        batch: 800,
    };
    let a = Node::spawn_with(&db, dir.path(), "a", &bound.server_args()).await;
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let client = &client;
    let rows = move || async move {
        client
            .query_one("SELECT count(*) FROM logsync_events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0) as u64
    };
    bound.check(&a.ws(), &a.url(""), rows).await;
    a.stop().await;
    db.drop().await;
}

/// Applies a `View` to the result held; its offset.
fn apply_view(held: &mut serde_json::Value, msg: Option<ServerMsg>) -> u64 {
    match msg {
        Some(ServerMsg::View { offset, change, .. }) => {
            match change {
                sync_core::ViewChange::Result(text) => *held = serde_json::from_str(&text).unwrap(),
                sync_core::ViewChange::Patch(patch) => {
                    let patch: json_patch::Patch = serde_json::from_str(&patch).unwrap();
                    json_patch::patch(held, &patch).unwrap();
                }
                sync_core::ViewChange::Same => {}
            }
            offset.0
        }
        other => panic!("expected a View, got {other:?}"),
    }
}

/// A view watched on one node follows the other node's commits: the
/// views' thread of node b folds what node a committed (as node b's
/// subscribers read it), one `View` per change of the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_view_watched_on_one_node_follows_the_other_nodes_commits() {
    let (db, _dir, a, b) = seat_nodes().await;
    let (mut watcher, _) = open(&b.ws(), id(2)).await.unwrap();
    assert!(
        send(
            &mut watcher,
            &ClientMsg::Watch {
                id: 1,
                stream: stream("seats/view"),
                view: "heldBy".into(),
                params: r#"{"who":"ann"}"#.into(),
                known: None,
            }
        )
        .await
    );
    let mut held = serde_json::Value::Null;
    assert_eq!(apply_view(&mut held, next(&mut watcher).await), 0);
    assert_eq!(held, serde_json::json!([]));
    let (mut ann, _) = open(&a.ws(), id(1)).await.unwrap();
    for (n, who) in [(1u64, "ann"), (2, "bob"), (3, "ann")] {
        let booking = serde_json::json!({"type": "book", "seat": format!("{n}A"), "who": who});
        assert!(
            push(
                &mut ann,
                "seats/view",
                vec![(n, booking.to_string().into_bytes())]
            )
            .await
        );
        assert!(matches!(decision(&mut ann).await, ServerMsg::Ack { .. }));
        if who == "ann" {
            let msg = next(&mut watcher).await;
            assert_eq!(apply_view(&mut held, msg), n, "ann's booking at {n}");
        }
    }
    assert_eq!(held, serde_json::json!(["1A", "3A"]));
    // Bob's booking at 2 changed nothing for ann: nothing was sent for it.
    let r = http()
        .get(b.url("/v1/streams/seats%2Fview/views/heldBy?params=%7B%22who%22%3A%22ann%22%7D"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"offset": 3, "result": ["1A", "3A"]})
    );
    drop((ann, watcher));
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// Version 1 of a notes module (notes with a `text`).
const NOTES_V1: &str = r#"
export const initialState = { notes: [] };
export default function reducer(state, action) {
  return { notes: [...state.notes, { text: action.text }] };
}
"#;

/// Version 2 (notes with a `title`; version-1 actions upcast, version-1
/// states migrated).
const NOTES_V2: &str = r#"
export const schemaVersion = 2;
export const initialState = { notes: [] };
export function upcast(action, from) { return { type: action.type, title: action.text }; }
export function migrate(state, from) { return { notes: state.notes.map((n) => ({ title: n.text })) }; }
export default function reducer(state, action) {
  if (typeof action.title !== 'string') throw new Error('not a version-2 note');
  return { notes: [...state.notes, { title: action.title }] };
}
"#;

/// The error a node ends a connection with (after the pushes it answers).
async fn closing_error(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        match next(ws).await {
            Some(m @ ServerMsg::Error { .. }) => return Some(m),
            Some(ServerMsg::Events { .. }) => continue,
            other => return other,
        }
    }
}

/// A rolling deploy on one database: node a still runs version 1 of the
/// module, node b version 2. A version-2 intent is not decided on a (its
/// seq stays free) and is appended on b; a version-1 intent on b is
/// upcast; a then refuses pushes to the stream (SCHEMA_TOO_NEW) rather
/// than fold an event it cannot read, until it runs version 2 and folds
/// everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_rolling_deploy_decides_each_schema_version_on_a_node_that_reads_it() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("notes-v1.js");
    let v2 = dir.path().join("notes-v2.js");
    std::fs::write(&v1, NOTES_V1).unwrap();
    std::fs::write(&v2, NOTES_V2).unwrap();
    let rule = |m: &PathBuf| vec!["--reducer".to_string(), format!("notes/*={}", m.display())];
    let a = Node::spawn_with(&db, dir.path(), "a", &rule(&v1)).await;
    let b = Node::spawn_with(&db, dir.path(), "b", &rule(&v2)).await;
    let name = "notes/n";
    let note = |key: &str, text: &str| {
        serde_json::json!({"type": "add", key: text})
            .to_string()
            .into_bytes()
    };

    // A version-2 intent on a: not decided, the connection ends.
    let (mut c1, _) = open(&a.ws(), id(1)).await.unwrap();
    assert!(push_schema(&mut c1, name, 2, vec![(1, note("title", "a"))]).await);
    let error = closing_error(&mut c1).await;
    assert!(
        matches!(
            &error,
            Some(ServerMsg::Error {
                code: ErrorCode::SchemaTooNew,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(read_log(&a, "notes%2Fn").await.is_empty());
    // The same seq on b: appended.
    let (mut c1, _) = open(&b.ws(), id(1)).await.unwrap();
    assert!(push_schema(&mut c1, name, 2, vec![(1, note("title", "a"))]).await);
    let answer = decision(&mut c1).await;
    assert!(
        matches!(
            answer,
            ServerMsg::Ack {
                offset: Offset(1),
                duplicate: false,
                ..
            }
        ),
        "{answer:?}"
    );
    // A queued version-1 intent on b: upcast.
    let (mut c2, _) = open(&b.ws(), id(2)).await.unwrap();
    assert!(push_schema(&mut c2, name, 1, vec![(1, note("text", "x"))]).await);
    assert!(matches!(
        decision(&mut c2).await,
        ServerMsg::Ack {
            offset: Offset(2),
            ..
        }
    ));
    let want = serde_json::json!({"notes": [{"title": "a"}, {"title": "x"}]});
    assert_eq!(state_of(&b, "notes%2Fn").await["state"], want);

    // a cannot read offset 1: pushes to the stream are refused undecided.
    let (mut c3, _) = open(&a.ws(), id(3)).await.unwrap();
    assert!(push_schema(&mut c3, name, 1, vec![(1, note("text", "y"))]).await);
    let error = closing_error(&mut c3).await;
    assert!(
        matches!(
            &error,
            Some(ServerMsg::Error {
                code: ErrorCode::SchemaTooNew,
                ..
            })
        ),
        "{error:?}"
    );
    let r = http()
        .get(a.url("/v1/streams/notes%2Fn/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(read_log(&b, "notes%2Fn").await.len(), 2);

    // a upgraded: it folds everything, and takes the seq it left free.
    a.stop().await;
    let a = Node::spawn_with(&db, dir.path(), "a", &rule(&v2)).await;
    let (mut c3, _) = open(&a.ws(), id(3)).await.unwrap();
    assert!(push_schema(&mut c3, name, 1, vec![(1, note("text", "y"))]).await);
    assert!(matches!(
        decision(&mut c3).await,
        ServerMsg::Ack {
            offset: Offset(3),
            ..
        }
    ));
    let want = serde_json::json!({"notes": [{"title": "a"}, {"title": "x"}, {"title": "y"}]});
    assert_eq!(state_of(&a, "notes%2Fn").await["state"], want);
    let log = read_log(&a, "notes%2Fn").await;
    let schemas: Vec<_> = log.iter().map(|e| e["schema"].as_u64().unwrap()).collect();
    assert_eq!(schemas, vec![2, 1, 1]);
    drop((c1, c2, c3));
    a.stop().await;
    b.stop().await;
    db.drop().await;
}
