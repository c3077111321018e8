//! The PostgreSQL store against a real PostgreSQL: each test makes a fresh
//! database, and two store instances on it are two nodes.
//!
//! These tests need `LOGSYNC_TEST_POSTGRES_URL` (a superuser URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`). `scripts/test-postgres.sh`
//! starts a throwaway cluster, sets it and runs them; a plain `cargo test`
//! lists them as ignored, with that reason.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_core::{ClientId, ErrorCode, Event, Offset, Seq, StreamName};
use tokio::sync::watch;

use super::{PostgresOptions, PostgresStore, SCHEMA_VERSION};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::CommitMode;
use crate::store::{
    AppendListener, AppendRequest, LogStore, Outcome, ProposedIntent, ReadLimits, Verdict,
};

const NEEDS_POSTGRES: &str = "LOGSYNC_TEST_POSTGRES_URL";
const DEADLINE: Duration = Duration::from_secs(20);

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
        getrandom::fill(&mut b).expect("random");
        let name = format!(
            "logsync_t_{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        admin_sql(&admin, &format!("CREATE DATABASE {name}")).await;
        let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
        let (root, _) = base.rsplit_once('/').expect("a URL with a database");
        let url = if query.is_empty() {
            format!("{root}/{name}")
        } else {
            format!("{root}/{name}?{query}")
        };
        TestDb { admin, name, url }
    }

    async fn sql(&self, sql: &str) {
        admin_sql(&self.url, sql).await;
    }

    async fn drop(self) {
        admin_sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    client
}

async fn admin_sql(url: &str, sql: &str) {
    admin_client(url)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", Error::from(e)));
}

/// A node's hub as the store sees it: records what it is handed.
#[derive(Default)]
struct Recorder {
    state: Mutex<Seen>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Seen {
    /// Offsets handed over per stream, in order.
    events: HashMap<String, Vec<u64>>,
    /// Highest head heard of per stream (events or head_moved).
    heads: HashMap<String, u64>,
}

impl Recorder {
    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    async fn wait(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let mut rx = self.changed.subscribe();
        let waited = tokio::time::timeout(DEADLINE, async {
            loop {
                if cond(&self.state.lock().expect("lock")) {
                    return;
                }
                let _ = rx.changed().await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting for {what}");
    }

    fn events(&self, stream: &str) -> Vec<u64> {
        let seen = self.state.lock().expect("lock");
        seen.events.get(stream).cloned().unwrap_or_default()
    }
}

impl AppendListener for Recorder {
    fn appended(&self, stream: &StreamName, events: &[Event]) {
        {
            let mut seen = self.state.lock().expect("lock");
            let list = seen.events.entry(stream.to_string()).or_default();
            list.extend(events.iter().map(|e| e.offset.0));
            let last = events.last().map(|e| e.offset.0).unwrap_or(0);
            let head = seen.heads.entry(stream.to_string()).or_default();
            *head = (*head).max(last);
        }
        self.bump();
    }

    fn head_moved(&self, stream: &StreamName, head: Offset) {
        {
            let mut seen = self.state.lock().expect("lock");
            let h = seen.heads.entry(stream.to_string()).or_default();
            *h = (*h).max(head.0);
        }
        self.bump();
    }

    fn followed(&self) -> Vec<(StreamName, Offset)> {
        let seen = self.state.lock().expect("lock");
        seen.heads
            .iter()
            .filter_map(|(s, h)| Some((StreamName::new(s.as_str()).ok()?, Offset(*h))))
            .collect()
    }
}

async fn open_with(url: &str, mode: CommitMode) -> (PostgresStore, Arc<Recorder>) {
    open_folding(url, mode, crate::fold::Reducers::default()).await
}

async fn open_folding(
    url: &str,
    mode: CommitMode,
    reducers: crate::fold::Reducers,
) -> (PostgresStore, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let options = PostgresOptions {
        reducers,
        commit_mode: mode,
        max_readers: 2,
        sweep_interval: Duration::from_millis(200),
        ..PostgresOptions::new(url)
    };
    let store = PostgresStore::open(options, rec.clone(), Arc::new(Metrics::default()))
        .await
        .expect("open");
    (store, rec)
}

async fn open(url: &str) -> (PostgresStore, Arc<Recorder>) {
    open_with(url, CommitMode::Group).await
}

fn seq(n: u64) -> Seq {
    Seq::new(n).expect("seq")
}

fn name(s: &str) -> StreamName {
    StreamName::new(s).expect("name")
}

fn request(stream: &str, client: u8, seqs: &[u64]) -> AppendRequest {
    AppendRequest {
        subject: None,
        stream: name(stream),
        client_id: ClientId([client; 16]),
        intents: seqs
            .iter()
            .map(|s| {
                ProposedIntent::new(
                    seq(*s),
                    format!("{{\"c\":{client},\"s\":{s}}}").into_bytes(),
                    Verdict::Accept,
                )
            })
            .collect(),
    }
}

fn appended(s: u64, offset: u64, duplicate: bool) -> Outcome {
    Outcome::Appended {
        seq: seq(s),
        offset: Offset(offset),
        duplicate,
    }
}

fn all() -> ReadLimits {
    ReadLimits {
        max_events: 100_000,
        max_bytes: usize::MAX,
    }
}

/// Every event of `stream`: dense from 1, and each (client, seq) once.
async fn read_all(store: &PostgresStore, stream: &str) -> Vec<Event> {
    let page = store
        .read(name(stream), Offset(0), all())
        .await
        .expect("read");
    for (i, e) in page.events.iter().enumerate() {
        assert_eq!(e.offset.0, i as u64 + 1, "offsets are dense from 1");
    }
    assert_eq!(
        page.head.0,
        page.events.len() as u64,
        "the head is the last offset"
    );
    let intents: HashSet<(ClientId, Seq)> =
        page.events.iter().map(|e| (e.client_id, e.seq)).collect();
    assert_eq!(
        intents.len(),
        page.events.len(),
        "no intent is in the log twice"
    );
    page.events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn appends_dedups_gaps_rejections_and_reopen() {
    let db = TestDb::new().await;
    let s = name("todos/a");
    let (store, rec) = open(&db.url).await;
    let epoch = store.epoch().clone();
    let o = store
        .append(request("todos/a", 1, &[1, 2]))
        .await
        .expect("append");
    assert_eq!(o, vec![appended(1, 1, false), appended(2, 2, false)]);
    // Seq 2 again, then 3: the duplicate keeps its offset, 3 is new.
    let o = store
        .append(request("todos/a", 1, &[2, 3]))
        .await
        .expect("append");
    assert_eq!(o, vec![appended(2, 2, true), appended(3, 3, false)]);
    // A gap stops the request there.
    let o = store
        .append(request("todos/a", 1, &[5, 4]))
        .await
        .expect("append");
    assert_eq!(o, vec![Outcome::Gap { expected: seq(4) }]);
    // A rejection is a decision too.
    let mut r = request("todos/a", 1, &[4]);
    r.intents[0].verdict = Verdict::Reject {
        code: ErrorCode::PayloadTooLarge,
        message: "too big".into(),
    };
    let o = store.append(r).await.expect("append");
    assert!(matches!(
        &o[0],
        Outcome::Rejected {
            duplicate: false,
            code: ErrorCode::PayloadTooLarge,
            ..
        }
    ));
    // One request may resend what it decides itself.
    let o = store
        .append(request("todos/a", 2, &[1, 1]))
        .await
        .expect("append");
    assert_eq!(o, vec![appended(1, 4, false), appended(1, 4, true)]);
    assert_eq!(store.head(s.clone()).await.expect("head"), Offset(4));
    assert_eq!(rec.events("todos/a"), vec![1, 2, 3, 4]);
    store.close().await;
    assert!(matches!(
        store.append(request("todos/a", 1, &[5])).await,
        Err(Error::StoreClosed)
    ));

    let (store, _) = open(&db.url).await;
    assert_eq!(store.epoch(), &epoch, "the epoch is stored with the log");
    let o = store
        .append(request("todos/a", 1, &[1, 3, 4, 5]))
        .await
        .expect("append");
    assert_eq!(o[0], appended(1, 1, true));
    assert_eq!(o[1], appended(3, 3, true));
    assert!(
        matches!(&o[2], Outcome::Rejected { duplicate: true, code: ErrorCode::PayloadTooLarge, message, .. } if message == "too big")
    );
    assert_eq!(o[3], appended(5, 5, false));
    let events = read_all(&store, "todos/a").await;
    assert_eq!(events.len(), 5);
    assert_eq!(events[4].payload, br#"{"c":1,"s":5}"#);
    assert_eq!(events[4].seq, seq(5));
    assert_eq!(events[4].client_id, ClientId([1; 16]));
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn submitted_requests_are_decided_in_order_and_share_commits() {
    let db = TestDb::new().await;
    let metrics = Arc::new(Metrics::default());
    let options = PostgresOptions {
        max_readers: 2,
        ..PostgresOptions::new(&db.url)
    };
    let store = PostgresStore::open(options, Arc::new(Recorder::default()), metrics.clone())
        .await
        .expect("open");
    crate::store::conformance::submitted_requests_are_decided_in_order(
        &store,
        Some(&metrics),
        "piped",
    )
    .await;
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn reads_are_bounded_streams_independent_and_snapshots_kept() {
    let db = TestDb::new().await;
    let (store, _) = open_with(&db.url, CommitMode::PerIntent).await;
    let seqs: Vec<u64> = (1..=50).collect();
    let o = store.append(request("a", 1, &seqs)).await.expect("append");
    assert_eq!(o.len(), 50);
    assert_eq!(o[49], appended(50, 50, false));
    store.append(request("b", 1, &[1])).await.expect("append");
    let page = store
        .read(
            name("a"),
            Offset(10),
            ReadLimits {
                max_events: 7,
                max_bytes: usize::MAX,
            },
        )
        .await
        .expect("read");
    assert_eq!(page.events.len(), 7);
    assert_eq!(page.events[0].offset, Offset(11));
    assert_eq!(page.head, Offset(50));
    // A byte limit smaller than one event still returns one...
    let page = store
        .read(
            name("a"),
            Offset(0),
            ReadLimits {
                max_events: 100,
                max_bytes: 1,
            },
        )
        .await
        .expect("read");
    assert_eq!(page.events.len(), 1);
    // ...and a byte limit cuts a page between events (each is 14 bytes of
    // payload plus the encoding overhead).
    let each = 14 + sync_core::protocol::EVENT_OVERHEAD;
    let page = store
        .read(
            name("a"),
            Offset(0),
            ReadLimits {
                max_events: 100,
                max_bytes: 3 * each + each / 2,
            },
        )
        .await
        .expect("read");
    assert_eq!(page.events.len(), 3);
    assert_eq!(store.head(name("b")).await.expect("head"), Offset(1));
    let page = store
        .read(name("never"), Offset(0), all())
        .await
        .expect("read");
    assert_eq!(page, Default::default());
    assert_eq!(store.head(name("never")).await.expect("head"), Offset(0));
    let page = store
        .read(name("a"), Offset(50), all())
        .await
        .expect("read");
    assert!(page.events.is_empty());
    assert_eq!(page.head, Offset(50));

    assert_eq!(store.latest_snapshot(name("s")).await.expect("get"), None);
    store
        .put_snapshot(name("s"), Offset(5), b"five".to_vec(), 1)
        .await
        .expect("put");
    store
        .put_snapshot(name("s"), Offset(9), b"nine".to_vec(), 2)
        .await
        .expect("put");
    assert_eq!(
        store.latest_snapshot(name("s")).await.expect("get"),
        Some(crate::store::StoredSnapshot {
            offset: Offset(9),
            state: b"nine".to_vec(),
            schema: 2,
        })
    );
    assert!(store.check().await.is_ok());
    store.close().await;
    assert!(store.check().await.is_err());
    db.drop().await;
}

/// Two nodes append to one stream at the same time: offsets stay dense,
/// every intent is in the log once, and every acknowledgement names the
/// offset the log holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn two_nodes_keep_offsets_dense_under_concurrent_appends() {
    let db = TestDb::new().await;
    let (a, _) = open(&db.url).await;
    let (b, _) = open(&db.url).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for c in 0..12u8 {
        let store = if c % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let (mut shared, mut other) = (0, 0);
            for i in 1..=30 {
                // Batches hold both streams on both nodes: the lock order
                // keeps them from deadlocking.
                let (stream, s) = if i % 3 == 0 {
                    other += 1;
                    ("other", other)
                } else {
                    shared += 1;
                    ("shared", shared)
                };
                let o = store
                    .append(request(stream, c, &[s]))
                    .await
                    .expect("append");
                match &o[0] {
                    Outcome::Appended {
                        offset,
                        duplicate: false,
                        ..
                    } => acks.push((stream, c, s, offset.0)),
                    other => panic!("unexpected {other:?}"),
                }
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.expect("task"));
    }
    let shared = read_all(&a, "shared").await;
    let other = read_all(&b, "other").await;
    assert_eq!(shared.len(), 12 * 20);
    assert_eq!(other.len(), 12 * 10);
    for (stream, c, s, offset) in acks {
        let log = if stream == "shared" { &shared } else { &other };
        let e = &log[offset as usize - 1];
        assert_eq!(
            (e.client_id, e.seq),
            (ClientId([c; 16]), seq(s)),
            "the Ack's offset holds that intent"
        );
    }
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// A resend through the other node gets the original answer; the same
/// intent sent through both nodes at once is appended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn exactly_once_across_nodes() {
    let db = TestDb::new().await;
    let (a, _) = open(&db.url).await;
    let (b, _) = open(&db.url).await;
    let o = a.append(request("s", 1, &[1, 2, 3])).await.expect("append");
    assert_eq!(o[2], appended(3, 3, false));
    let o = b.append(request("s", 1, &[2])).await.expect("append");
    assert_eq!(o, vec![appended(2, 2, true)]);
    let o = b.append(request("s", 1, &[5])).await.expect("append");
    assert_eq!(o, vec![Outcome::Gap { expected: seq(4) }]);

    // A rejection decided on one node is replayed by the other.
    let mut r = request("s", 1, &[4]);
    r.intents[0].verdict = Verdict::Reject {
        code: ErrorCode::Forbidden,
        message: "not yours".into(),
    };
    a.append(r).await.expect("append");
    let o = b.append(request("s", 1, &[4])).await.expect("append");
    assert!(
        matches!(&o[0], Outcome::Rejected { duplicate: true, code: ErrorCode::Forbidden, message, .. } if message == "not yours"),
        "{o:?}"
    );

    // Races: the same intents pushed through both nodes at once, many times.
    for client in 10..40u8 {
        let (ra, rb) = tokio::join!(
            a.append(request("race", client, &[1, 2])),
            b.append(request("race", client, &[1, 2]))
        );
        let (ra, rb) = (ra.expect("append"), rb.expect("append"));
        for i in 0..2 {
            let (
                Outcome::Appended {
                    offset: oa,
                    duplicate: da,
                    ..
                },
                Outcome::Appended {
                    offset: ob,
                    duplicate: db,
                    ..
                },
            ) = (&ra[i], &rb[i])
            else {
                panic!("unexpected {ra:?} {rb:?}");
            };
            assert_eq!(oa, ob, "both nodes answer the same offset");
            assert!(da ^ db, "exactly one of the two decided it: {ra:?} {rb:?}");
        }
    }
    assert_eq!(read_all(&a, "race").await.len(), 60);
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// Every node reports the epoch made once in the database; nodes starting
/// together migrate the schema once; a newer schema is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn epoch_is_shared_and_migrations_are_idempotent() {
    let db = TestDb::new().await;
    let (x, y, z) = tokio::join!(open(&db.url), open(&db.url), open(&db.url));
    let (x, y, z) = (x.0, y.0, z.0);
    assert_eq!(x.epoch(), y.epoch());
    assert_eq!(x.epoch(), z.epoch());
    assert_eq!(x.epoch().0.len(), 32, "16 random bytes in hex");
    let client = admin_client(&db.url).await;
    let rows = client
        .query("SELECT version FROM logsync_schema", &[])
        .await
        .expect("query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), SCHEMA_VERSION);
    for s in [&x, &y, &z] {
        s.close().await;
    }
    // Reopening applies nothing and keeps the epoch.
    let (again, _) = open(&db.url).await;
    assert_eq!(again.epoch(), x.epoch());
    again.close().await;

    db.sql("UPDATE logsync_schema SET version = 99").await;
    let err = PostgresStore::open(
        PostgresOptions::new(db.url.clone()),
        Arc::new(Recorder::default()),
        Arc::new(Metrics::default()),
    )
    .await
    .err()
    .expect("a newer schema is refused");
    assert!(
        err.to_string().contains("schema version 99"),
        "the error says why: {err}"
    );
    db.drop().await;
}

/// A node hears of the other node's commits and is handed their events
/// once, in order, with no gap, whichever node commits next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn commits_on_one_node_reach_the_other() {
    let db = TestDb::new().await;
    let (a, rec_a) = open(&db.url).await;
    let (b, rec_b) = open(&db.url).await;
    b.append(request("feed", 2, &[1])).await.expect("append");
    for rec in [&rec_a, &rec_b] {
        rec.wait("both nodes to be handed offset 1", |seen| {
            seen.events.get("feed").map(Vec::len) == Some(1)
        })
        .await;
    }
    // From here on each node's hub has a place in the stream: every commit
    // on either node reaches both hubs without a gap, even when a node
    // commits before it heard of the other's latest commit.
    let (mut next_a, mut next_b) = (1, 2);
    for s in 2..=40u64 {
        if s % 3 == 0 {
            b.append(request("feed", 2, &[next_b]))
                .await
                .expect("append");
            next_b += 1;
        } else {
            a.append(request("feed", 1, &[next_a]))
                .await
                .expect("append");
            next_a += 1;
        }
    }
    for rec in [&rec_a, &rec_b] {
        rec.wait("every node to be handed offsets 1..=40", |seen| {
            seen.events.get("feed").map(Vec::len) >= Some(40)
        })
        .await;
        assert_eq!(rec.events("feed"), (1..=40).collect::<Vec<u64>>());
    }
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// A node whose LISTEN connection is cut reconnects, and a commit whose
/// notification never came (written behind the stores' backs here) is
/// still found by re-reading the followed streams' heads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn lost_listen_connections_and_notifications_are_recovered() {
    let db = TestDb::new().await;
    let (a, rec_a) = open(&db.url).await;
    let (b, _) = open(&db.url).await;
    b.append(request("s", 1, &[1])).await.expect("append");
    rec_a
        .wait("node a to hear of offset 1", |seen| {
            seen.heads.get("s") == Some(&1)
        })
        .await;

    let admin = admin_client(&db.url).await;
    let before = listeners(&admin).await;
    assert_eq!(before.len(), 2, "one LISTEN connection per node");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'logsync-listen' AND datname = current_database()",
            &[],
        )
        .await
        .expect("terminate");
    // Appends go on while nobody listens.
    b.append(request("s", 1, &[2, 3])).await.expect("append");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = listeners(&admin).await;
        if now.len() == 2 && now.is_disjoint(&before) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both nodes LISTEN again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rec_a
        .wait("node a to catch up to offset 3", |seen| {
            seen.heads.get("s") == Some(&3)
        })
        .await;

    // A commit that sent no notification: only the sweep can find it.
    db.sql(
        r#"INSERT INTO logsync_events (stream_id, "offset", client_id, seq, time_ms, payload)
           SELECT id, 4, '\x07070707070707070707070707070707'::bytea, 1, 0, '\x7b7d'::bytea
           FROM logsync_streams WHERE name = 's';
           UPDATE logsync_streams SET head = 4 WHERE name = 's';"#,
    )
    .await;
    rec_a
        .wait("node a to find offset 4 by its sweep", |seen| {
            seen.heads.get("s") == Some(&4)
        })
        .await;
    assert_eq!(rec_a.events("s"), vec![1, 2, 3, 4]);

    // Every connection of both nodes cut at once (what a PostgreSQL restart
    // or failover does): the stores reconnect by themselves. An append
    // caught in the cut may fail (its pusher retries, exactly-once makes
    // that safe); the next ones go through and still reach node a.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name LIKE 'logsync-%' AND datname = current_database()",
            &[],
        )
        .await
        .expect("terminate");
    let mut outcome = None;
    for _ in 0..3 {
        match b.append(request("s", 2, &[1])).await {
            Ok(o) => {
                outcome = Some(o);
                break;
            }
            Err(Error::Storage(_)) => continue,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let outcome = outcome.expect("appends work again after the cut");
    assert!(
        matches!(
            outcome[0],
            Outcome::Appended {
                offset: Offset(5),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(a.head(name("s")).await.expect("head"), Offset(5));
    rec_a
        .wait("node a to hear of offset 5", |seen| {
            seen.heads.get("s") == Some(&5)
        })
        .await;
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// Backend pids of the LISTEN connections on this test's database.
async fn listeners(client: &tokio_postgres::Client) -> HashSet<i32> {
    client
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'logsync-listen' AND datname = current_database()",
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.get::<_, i32>(0))
        .collect()
}

/// A client id is bound to the first subject, whichever node asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn client_bindings_hold_across_nodes() {
    let db = TestDb::new().await;
    let (a, _) = open(&db.url).await;
    let (b, _) = open(&db.url).await;
    let id = ClientId([5; 16]);
    assert_eq!(
        a.bind_client(id, "alice".into()).await.expect("bind"),
        "alice"
    );
    assert_eq!(
        b.bind_client(id, "mallory".into()).await.expect("bind"),
        "alice"
    );
    assert_eq!(
        b.bind_client(id, "alice".into()).await.expect("bind"),
        "alice"
    );
    // Racing first uses: both nodes answer the same winner.
    for n in 0..20u8 {
        let id = ClientId([n + 100; 16]);
        let (x, y) = tokio::join!(a.bind_client(id, "x".into()), b.bind_client(id, "y".into()));
        let (x, y) = (x.expect("bind"), y.expect("bind"));
        assert_eq!(x, y, "one subject wins");
    }
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// Runs without PostgreSQL: URLs are parsed at start, and what the
/// server logs about them never holds the password. (The server's own
/// check of `--store` is `config::tests::store_urls_are_checked_and_logged_without_passwords`.)
#[test]
fn store_urls_are_checked_and_logged_without_passwords() {
    let c = super::parse_url("postgres://app:s3cret@db.internal:6432/logs").expect("parses");
    assert_eq!(super::describe(&c), "postgres://app@db.internal:6432/logs");
    assert!(super::parse_url("postgres://app@db.internal:notaport/logs").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn decides_like_every_store() {
    let db = TestDb::new().await;
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let (store, _) = open_with(&db.url, mode).await;
        let suffix = format!("{mode:?}").to_lowercase();
        crate::store::conformance::decides_resends_and_gaps(&store, &format!("decides-{suffix}"))
            .await;
        crate::store::conformance::a_reused_seq_is_refused(&store, &format!("reused-{suffix}"))
            .await;
        store.close().await;
    }
    db.drop().await;
}

/// A database at schema version 1 (no payload digests) is migrated: the
/// digests are filled from the stored payloads, so a reused seq of an
/// intent appended before is caught too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_version_1_database_is_migrated() {
    let db = TestDb::new().await;
    db.sql(super::schema::MIGRATIONS[0]).await;
    db.sql(
        r#"CREATE TABLE logsync_schema (
               one     BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
               version INT NOT NULL);
           INSERT INTO logsync_schema (version) VALUES (1);
           INSERT INTO logsync_meta (key, value) VALUES ('epoch', 'old-epoch');
           INSERT INTO logsync_streams (name, head) VALUES ('todos/a', 2);
           INSERT INTO logsync_events (stream_id, "offset", client_id, seq, time_ms, payload)
             SELECT id, o, '\x00000000000000000000000000000000'::bytea, o, 5,
                    convert_to('{"s":' || o || '}', 'UTF8')
             FROM logsync_streams, generate_series(1, 2) AS o;
           INSERT INTO logsync_clients (stream_id, client_id, last_seq)
             SELECT id, '\x00000000000000000000000000000000'::bytea, 2 FROM logsync_streams;"#,
    )
    .await;
    let (store, _) = open(&db.url).await;
    assert_eq!(store.epoch().0, "old-epoch");
    let intent = |s: u64, payload: &str| {
        ProposedIntent::new(seq(s), payload.as_bytes().to_vec(), Verdict::Accept)
    };
    let o = store
        .append(AppendRequest {
            subject: None,
            stream: name("todos/a"),
            client_id: ClientId([0; 16]),
            intents: vec![
                intent(1, r#"{"s":1}"#),
                intent(2, r#"{"s":"two"}"#),
                intent(3, r#"{"s":3}"#),
            ],
        })
        .await
        .expect("append");
    assert_eq!(
        o,
        vec![
            appended(1, 1, true),
            Outcome::SeqReused {
                seq: seq(2),
                offset: Offset(2)
            },
            appended(3, 3, false),
        ]
    );
    store.close().await;
    let client = admin_client(&db.url).await;
    let row = client
        .query_one(
            "SELECT (SELECT version FROM logsync_schema),
                    (SELECT count(*) FROM logsync_events WHERE digest IS NULL)",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, i32>(0), SCHEMA_VERSION);
    assert_eq!(row.get::<_, i64>(1), 0);
    db.drop().await;
}

/// The fold with meta (subject and seen stored and folded), as every
/// store does it; a second node's state, folded from the tables, is the
/// same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn folds_with_meta() {
    use crate::store::conformance::{folds_with_meta, poll_reducers};
    let db = TestDb::new().await;
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let (store, _) = open_folding(&db.url, mode, poll_reducers()).await;
        let suffix = format!("{mode:?}").to_lowercase();
        let name = format!("polls/{suffix}");
        folds_with_meta(&store, &name).await;
        let s = StreamName::new(name).expect("name");
        let here = store.state(s.clone()).await.expect("state");
        let (other, _) = open_folding(&db.url, mode, poll_reducers()).await;
        assert_eq!(other.state(s).await.expect("state"), here, "{mode:?}");
        other.close().await;
        store.close().await;
    }
    db.drop().await;
}

/// The fold at the ordering point, as every store does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn folds_at_the_ordering_point() {
    use crate::store::conformance::{folds_at_the_ordering_point, seat_reducers};
    let db = TestDb::new().await;
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let (store, _) = open_folding(&db.url, mode, seat_reducers()).await;
        let suffix = format!("{mode:?}").to_lowercase();
        folds_at_the_ordering_point(&store, &format!("seats/{suffix}")).await;
        store.close().await;
    }
    db.drop().await;
}

/// The writer stores folded states as snapshots in its transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn stores_snapshots_of_folded_streams() {
    use crate::store::conformance::{seat_reducers_snapshotting, stores_snapshots};
    let db = TestDb::new().await;
    let (store, _) = open_folding(&db.url, CommitMode::Group, seat_reducers_snapshotting()).await;
    stores_snapshots(&store, "seats/snap").await;
    store.close().await;
    db.drop().await;
}

/// With one state kept, two streams pushed to in turn are each rebuilt
/// from the tables and decide as if kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn folds_with_one_state_kept() {
    use crate::store::conformance::{folds_with_one_state_kept, seat_reducers_keeping_one};
    let db = TestDb::new().await;
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let metrics = Arc::new(Metrics::default());
        let options = PostgresOptions {
            reducers: seat_reducers_keeping_one(),
            commit_mode: mode,
            max_readers: 2,
            sweep_interval: Duration::from_millis(200),
            ..PostgresOptions::new(&db.url)
        };
        let store = PostgresStore::open(options, Arc::new(Recorder::default()), metrics.clone())
            .await
            .expect("open");
        let suffix = format!("{mode:?}").to_lowercase();
        folds_with_one_state_kept(&store, &format!("seats/{suffix}")).await;
        // The states were dropped and rebuilt, not kept.
        assert_eq!(
            metrics
                .reducer_states
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(
            metrics
                .reducer_states_dropped
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 5
        );
        store.close().await;
    }
    db.drop().await;
}

fn book(client: u8, s: u64, seat: &str) -> AppendRequest {
    AppendRequest {
        subject: None,
        stream: name("seats/race"),
        client_id: ClientId([client; 16]),
        intents: vec![ProposedIntent::new(
            seq(s),
            serde_json::json!({"type": "book", "seat": seat, "who": client})
                .to_string()
                .into_bytes(),
            Verdict::Accept,
        )],
    }
}

/// Two nodes with the seat reducer, each deciding on a state it has to
/// catch up first (the other node appended): the same seat booked
/// through both at once is appended once and refused once with the
/// app's code, many times over; both nodes' states equal the fold of the
/// log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn two_nodes_fold_under_the_row_lock() {
    use crate::store::conformance::seat_reducers;
    let db = TestDb::new().await;
    let (a, _) = open_folding(&db.url, CommitMode::Group, seat_reducers()).await;
    let (b, _) = open_folding(&db.url, CommitMode::Group, seat_reducers()).await;
    let mut seats = serde_json::Map::new();
    for round in 0..40u64 {
        let seat = format!("{round}A");
        // Clients 1 and 2 book the seat through a and b; each round's
        // seat is new to both nodes' kept states.
        let (ra, rb) = tokio::join!(
            a.append(book(1, round + 1, &seat)),
            b.append(book(2, round + 1, &seat))
        );
        let (ra, rb) = (ra.expect("append"), rb.expect("append"));
        let won = |o: &[Outcome]| {
            matches!(
                o,
                [Outcome::Appended {
                    duplicate: false,
                    ..
                }]
            )
        };
        let lost = |o: &[Outcome]| {
            matches!(o, [Outcome::Rejected { code: ErrorCode::Rejected, message, duplicate: false, .. }]
                if message == &format!("SEAT_TAKEN: seat {seat} is taken"))
        };
        let winner = match (won(&ra), won(&rb)) {
            (true, false) if lost(&rb) => 1,
            (false, true) if lost(&ra) => 2,
            _ => panic!("round {round}: {ra:?} {rb:?}"),
        };
        seats.insert(seat, serde_json::json!(winner));
    }
    let events = read_all(&a, "seats/race").await;
    assert_eq!(events.len(), 40, "one event per seat");
    let want = serde_json::json!({ "seats": seats });
    for (node, store) in [("a", &a), ("b", &b)] {
        let (offset, state) = store
            .state(name("seats/race"))
            .await
            .expect("state")
            .expect("a reducer");
        assert_eq!(offset, Offset(40), "node {node}");
        let state: serde_json::Value = serde_json::from_str(&state).expect("json");
        assert_eq!(state, want, "node {node}");
    }
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// Compaction in the appending transactions, as every durable store does
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn compacts_like_every_durable_store() {
    use crate::store::conformance::{compacts_under_snapshots, seat_reducers_compacting};
    let db = TestDb::new().await;
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let (store, _) = open_folding(&db.url, mode, seat_reducers_compacting()).await;
        let suffix = format!("{mode:?}").to_lowercase();
        compacts_under_snapshots(&store, &format!("seats/compact-{suffix}")).await;
        store.close().await;
    }
    let client = admin_client(&db.url).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM logsync_events),
                    (SELECT count(*) FROM logsync_snapshots)",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (2 * 26, 2),
        "the events above each horizon, one snapshot per stream"
    );
    db.drop().await;
}

/// Client `client` books `seat` on `stream` under its seq `s`.
fn book_on(stream: &str, client: u8, s: u64, seat: &str) -> AppendRequest {
    AppendRequest {
        subject: None,
        stream: name(stream),
        ..book(client, s, seat)
    }
}

/// The state of `stream` on `store` at its head, as JSON.
async fn state_of(store: &PostgresStore, stream: &str) -> (Offset, serde_json::Value) {
    let (offset, state) = store
        .state(name(stream))
        .await
        .expect("state")
        .expect("a reducer");
    (offset, serde_json::from_str(&state).expect("JSON"))
}

/// A node starts a state it does not keep from the stream's latest
/// snapshot and folds only the events after it, not the whole log: the
/// snapshot is replaced behind the nodes' backs by a state no fold of the
/// log gives, and a new node's state is that state with the later events
/// on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_node_starts_states_from_the_snapshot_and_the_events_after_it() {
    use crate::store::conformance::seat_reducers_snapshotting;
    let db = TestDb::new().await;
    let (a, _) = open_folding(&db.url, CommitMode::Group, seat_reducers_snapshotting()).await;
    for s in 1..=25u64 {
        let out = a
            .append(book_on("seats/snapboot", 1, s, &format!("s{s}")))
            .await
            .expect("append");
        assert_eq!(out, vec![appended(s, s, false)]);
    }
    assert_eq!(
        a.latest_snapshot(name("seats/snapboot"))
            .await
            .expect("read")
            .map(|s| s.offset),
        Some(Offset(20))
    );
    db.sql(
        r#"UPDATE logsync_snapshots SET state = convert_to('{"seats":{"marker":"x"}}', 'UTF8')
           WHERE "offset" = 20"#,
    )
    .await;
    let (b, _) = open_folding(&db.url, CommitMode::Group, seat_reducers_snapshotting()).await;
    let (offset, state) = state_of(&b, "seats/snapboot").await;
    assert_eq!(offset, Offset(25));
    let mut want = serde_json::Map::new();
    want.insert("marker".into(), "x".into());
    for s in 21..=25u64 {
        // `book` writes who as the client's number.
        want.insert(format!("s{s}"), 1.into());
    }
    assert_eq!(state, serde_json::json!({ "seats": want }));
    // Deciding starts from it too: a seat of the snapshot is taken, one
    // only the replaced log held is free.
    let out = b
        .append(book_on("seats/snapboot", 2, 1, "marker"))
        .await
        .expect("append");
    assert!(
        matches!(
            &out[..],
            [Outcome::Rejected {
                code: ErrorCode::Rejected,
                ..
            }]
        ),
        "{out:?}"
    );
    // (a keeps its own state, folded from the real log.)
    let (_, state_a) = state_of(&a, "seats/snapboot").await;
    assert_eq!(state_a["seats"].as_object().map(|s| s.len()), Some(25));
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// Two nodes compacting one stream: node b keeps a state at offset 3
/// while node a appends and compacts past it, so the events b needs to
/// catch up are gone. b's next decision restores the state from the
/// snapshot (a seat booked under the horizon is still taken), both nodes'
/// states and a new node's are the fold of every booking, and every
/// node's reads say where the log starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn a_node_behind_the_compacted_events_restores_from_the_snapshot() {
    use crate::fold::SnapshotPolicy;
    use crate::store::conformance::seat_reducers;
    let reducers = || {
        let mut r = seat_reducers();
        r.snapshots(SnapshotPolicy {
            every: 10,
            retain_events: Some(5),
            ..SnapshotPolicy::default()
        });
        r
    };
    let db = TestDb::new().await;
    let (a, _) = open_folding(&db.url, CommitMode::Group, reducers()).await;
    let (b, _) = open_folding(&db.url, CommitMode::Group, reducers()).await;
    let stream = "seats/behind";
    let mut seats = serde_json::Map::new();
    for s in 1..=3u64 {
        let out = b
            .append(book_on(stream, 2, s, &format!("s{s}")))
            .await
            .expect("append");
        assert_eq!(out, vec![appended(s, s, false)]);
        seats.insert(format!("s{s}"), 2.into());
    }
    for s in 4..=42u64 {
        let out = a
            .append(book_on(stream, 1, s - 3, &format!("s{s}")))
            .await
            .expect("append");
        assert_eq!(out, vec![appended(s - 3, s, false)]);
        seats.insert(format!("s{s}"), 1.into());
    }
    // Compacted at the snapshot at 40: through min(40, 40 - 5).
    for node in [&a, &b] {
        let page = node
            .read(name(stream), Offset(0), all())
            .await
            .expect("read");
        assert_eq!(page.compacted, Offset(35));
        assert_eq!(page.events.first().map(|e| e.offset), Some(Offset(36)));
        assert_eq!(page.head, Offset(42));
    }
    // b's state is at 3 and the events 4..=35 are gone: it starts from
    // the snapshot at 40 and folds 41 and 42.
    let out = b.append(book_on(stream, 2, 4, "s1")).await.expect("append");
    assert!(
        matches!(&out[..], [Outcome::Rejected { code: ErrorCode::Rejected, message, .. }] if message == "SEAT_TAKEN: seat s1 is taken"),
        "{out:?}"
    );
    let out = b
        .append(book_on(stream, 2, 5, "s20"))
        .await
        .expect("append");
    assert!(
        matches!(
            &out[..],
            [Outcome::Rejected {
                code: ErrorCode::Rejected,
                ..
            }]
        ),
        "{out:?}"
    );
    let out = b
        .append(book_on(stream, 2, 6, "new"))
        .await
        .expect("append");
    assert_eq!(out, vec![appended(6, 43, false)]);
    seats.insert("new".into(), 2.into());
    // A resend through b of an intent a appended, compacted since.
    let out = b.append(book_on(stream, 1, 1, "s4")).await.expect("resend");
    assert_eq!(out, vec![appended(1, 35, true)]);

    let (c, _) = open_folding(&db.url, CommitMode::Group, reducers()).await;
    let want = serde_json::json!({ "seats": seats });
    for (node, store) in [("a", &a), ("b", &b), ("c", &c)] {
        let (offset, state) = state_of(store, stream).await;
        assert_eq!((offset, &state), (Offset(43), &want), "node {node}");
    }
    a.close().await;
    b.close().await;
    c.close().await;
    db.drop().await;
}

/// Seat reducers with a snapshot every 10 events, the last 5 events and
/// an hour of events kept (`--retain-events 5 --retain-age 1h`), and
/// the background pass every 20 ms.
fn seats_retained() -> crate::fold::Reducers {
    let mut r = crate::store::conformance::seat_reducers();
    r.snapshots(crate::fold::SnapshotPolicy {
        every: 10,
        retain_events: Some(5),
        retain_age: Some(Duration::from_secs(3600)),
        compact_every: Some(Duration::from_millis(20)),
    });
    r
}

/// Waits until `store`'s reads of `stream` report the events compacted
/// through `through`, failing after a deadline; the events then kept.
async fn compacted_to(store: &PostgresStore, stream: &str, through: u64) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let page = store
            .read(name(stream), Offset(0), all())
            .await
            .expect("read");
        if page.compacted == Offset(through) {
            return page.events.iter().map(|e| e.offset.0).collect();
        }
        assert!(
            page.compacted < Offset(through),
            "compacted past {through}: {page:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "not compacted through {through} in time: {:?}",
            page.compacted
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `--retain-events 5 --retain-age 1h` on two nodes, both running the
/// background pass: young events are all kept although the count rule
/// would let most go; the idle stream's old events go under the snapshot
/// (only those, then all but the last 5 once all are old); both nodes
/// and a new one keep deciding on the whole state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test-postgres.sh runs it"]
async fn old_events_of_idle_streams_are_compacted_while_either_rule_keeps_them() {
    let db = TestDb::new().await;
    let (a, _) = open_folding(&db.url, CommitMode::Group, seats_retained()).await;
    let (b, _) = open_folding(&db.url, CommitMode::Group, seats_retained()).await;
    let stream = "seats/aged";
    for s in 1..=30u64 {
        let node = if s % 2 == 0 { &a } else { &b };
        let out = node
            .append(book_on(
                stream,
                (s % 2) as u8 + 1,
                s.div_ceil(2),
                &format!("s{s}"),
            ))
            .await
            .expect("append");
        assert!(
            matches!(out[..], [Outcome::Appended { offset, .. }] if offset == Offset(s)),
            "{out:?}"
        );
    }
    let page = a.read(name(stream), Offset(0), all()).await.expect("read");
    assert_eq!(
        (page.compacted, page.events.len()),
        (Offset(0), 30),
        "young events are kept by the age rule"
    );
    let age = |through: u64| {
        format!(
            r#"UPDATE logsync_events SET time_ms = time_ms - 7200000
               WHERE "offset" <= {through}
                 AND stream_id = (SELECT id FROM logsync_streams WHERE name = '{stream}')"#
        )
    };
    db.sql(&age(12)).await;
    assert_eq!(
        compacted_to(&b, stream, 12).await,
        (13..=30).collect::<Vec<u64>>()
    );
    db.sql(&age(30)).await;
    assert_eq!(
        compacted_to(&a, stream, 25).await,
        (26..=30).collect::<Vec<u64>>(),
        "the count rule keeps the last 5"
    );
    // A seat booked under the horizon is still taken, through either node.
    for (node, client) in [(&a, 3u8), (&b, 4u8)] {
        let out = node
            .append(book_on(stream, client, 1, "s1"))
            .await
            .expect("append");
        assert!(
            matches!(
                &out[..],
                [Outcome::Rejected {
                    code: ErrorCode::Rejected,
                    ..
                }]
            ),
            "{out:?}"
        );
    }
    let (c, _) = open_folding(&db.url, CommitMode::Group, seats_retained()).await;
    for store in [&a, &b, &c] {
        let (offset, state) = state_of(store, stream).await;
        assert_eq!(offset, Offset(30));
        assert_eq!(state["seats"].as_object().map(|s| s.len()), Some(30));
    }
    a.close().await;
    b.close().await;
    c.close().await;
    db.drop().await;
}
