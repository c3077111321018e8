//! The SQLite store against real files in a temporary directory.

use std::sync::{Arc, Mutex};

use sync_core::{ClientId, ErrorCode, Event, Offset, Seq, StreamName};

use super::{SqliteOptions, SqliteStore};
use crate::metrics::Metrics;
use crate::store::CommitMode;
use crate::store::{
    AppendListener, AppendRequest, LogStore, Outcome, ProposedIntent, ReadLimits, Verdict,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Vec<u64>)>>);

impl AppendListener for Recorder {
    fn appended(&self, stream: &StreamName, events: &[Event]) {
        if let Ok(mut v) = self.0.lock() {
            v.push((
                stream.to_string(),
                events.iter().map(|e| e.offset.0).collect(),
            ));
        }
    }
    fn head_moved(&self, _: &StreamName, _: Offset) {}
}

fn open(dir: &tempfile::TempDir, mode: CommitMode) -> (SqliteStore, Arc<Recorder>) {
    open_with(dir, mode, Default::default())
}

fn open_with(
    dir: &tempfile::TempDir,
    mode: CommitMode,
    reducers: crate::fold::Reducers,
) -> (SqliteStore, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let store = SqliteStore::open(
        SqliteOptions {
            path: dir.path().join("log.db"),
            commit_mode: mode,
            max_batch_intents: 1000,
            max_batch_bytes: 1 << 20,
            max_readers: 2,
            reducers,
        },
        rec.clone(),
        Arc::new(Metrics::default()),
    )
    .expect("open");
    (store, rec)
}

fn seq(n: u64) -> Seq {
    Seq::new(n).expect("seq")
}

fn request(stream: &str, client: u8, seqs: &[u64]) -> AppendRequest {
    AppendRequest {
        subject: None,
        stream: StreamName::new(stream).expect("name"),
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

fn all() -> ReadLimits {
    ReadLimits {
        max_events: 10_000,
        max_bytes: usize::MAX,
    }
}

#[tokio::test]
async fn appends_dedups_gaps_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = StreamName::new("todos/a").expect("name");
    let epoch;
    {
        let (store, rec) = open(&dir, CommitMode::Group);
        epoch = store.epoch().clone();
        let o = store
            .append(request("todos/a", 1, &[1, 2]))
            .await
            .expect("append");
        assert_eq!(
            o,
            vec![
                Outcome::Appended {
                    seq: seq(1),
                    offset: Offset(1),
                    duplicate: false
                },
                Outcome::Appended {
                    seq: seq(2),
                    offset: Offset(2),
                    duplicate: false
                },
            ]
        );
        // Seq 2 again, then 3: the duplicate keeps its offset, 3 is new.
        let o = store
            .append(request("todos/a", 1, &[2, 3]))
            .await
            .expect("append");
        assert_eq!(
            o[0],
            Outcome::Appended {
                seq: seq(2),
                offset: Offset(2),
                duplicate: true
            }
        );
        assert_eq!(
            o[1],
            Outcome::Appended {
                seq: seq(3),
                offset: Offset(3),
                duplicate: false
            }
        );
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
        assert_eq!(store.head(s.clone()).await.expect("head"), Offset(3));
        let recorded = rec.0.lock().expect("lock").clone();
        assert_eq!(
            recorded,
            vec![("todos/a".into(), vec![1, 2]), ("todos/a".into(), vec![3])]
        );
        store.close().await;
        assert!(store.append(request("todos/a", 1, &[5])).await.is_err());
    }
    let (store, _) = open(&dir, CommitMode::Group);
    assert_eq!(store.epoch(), &epoch, "the epoch is stored with the log");
    let o = store
        .append(request("todos/a", 1, &[1, 3, 4, 5]))
        .await
        .expect("append");
    assert_eq!(
        o[0],
        Outcome::Appended {
            seq: seq(1),
            offset: Offset(1),
            duplicate: true
        }
    );
    assert_eq!(
        o[1],
        Outcome::Appended {
            seq: seq(3),
            offset: Offset(3),
            duplicate: true
        }
    );
    assert!(
        matches!(&o[2], Outcome::Rejected { duplicate: true, code: ErrorCode::PayloadTooLarge, message, .. } if message == "too big")
    );
    assert_eq!(
        o[3],
        Outcome::Appended {
            seq: seq(5),
            offset: Offset(4),
            duplicate: false
        }
    );
    let page = store.read(s.clone(), Offset(0), all()).await.expect("read");
    assert_eq!(page.head, Offset(4));
    let offsets: Vec<u64> = page.events.iter().map(|e| e.offset.0).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4]);
    assert_eq!(page.events[3].payload, br#"{"c":1,"s":5}"#);
    assert_eq!(page.events[3].seq, seq(5));
    store.close().await;
}

#[tokio::test]
async fn reads_are_bounded_and_streams_independent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(&dir, CommitMode::PerIntent);
    let seqs: Vec<u64> = (1..=50).collect();
    store.append(request("a", 1, &seqs)).await.expect("append");
    store.append(request("b", 1, &[1])).await.expect("append");
    let a = StreamName::new("a").expect("name");
    let page = store
        .read(
            a.clone(),
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
    // A byte limit smaller than one event still returns one.
    let page = store
        .read(
            a.clone(),
            Offset(0),
            ReadLimits {
                max_events: 100,
                max_bytes: 1,
            },
        )
        .await
        .expect("read");
    assert_eq!(page.events.len(), 1);
    let b = StreamName::new("b").expect("name");
    assert_eq!(store.head(b).await.expect("head"), Offset(1));
    let none = StreamName::new("never").expect("name");
    let page = store
        .read(none.clone(), Offset(0), all())
        .await
        .expect("read");
    assert_eq!(page, Default::default());
    assert_eq!(store.head(none).await.expect("head"), Offset(0));
    store.close().await;
}

#[tokio::test]
async fn snapshots_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(&dir, CommitMode::Group);
    let s = StreamName::new("s").expect("name");
    assert_eq!(store.latest_snapshot(s.clone()).await.expect("get"), None);
    store
        .put_snapshot(s.clone(), Offset(5), b"five".to_vec(), 1)
        .await
        .expect("put");
    store
        .put_snapshot(s.clone(), Offset(9), b"nine".to_vec(), 2)
        .await
        .expect("put");
    assert_eq!(
        store.latest_snapshot(s).await.expect("get"),
        Some(crate::store::StoredSnapshot {
            offset: Offset(9),
            state: b"nine".to_vec(),
            schema: 2,
        })
    );
    assert!(store.check().await.is_ok());
    store.close().await;
}

#[tokio::test]
async fn concurrent_appends_get_dense_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(&dir, CommitMode::Group);
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for c in 0..8u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for s in 1..=25 {
                let o = store.append(request("s", c, &[s])).await.expect("append");
                match &o[0] {
                    Outcome::Appended {
                        offset,
                        duplicate: false,
                        ..
                    } => offsets.push(offset.0),
                    other => panic!("unexpected {other:?}"),
                }
            }
            offsets
        }));
    }
    let mut all_offsets = Vec::new();
    for t in tasks {
        all_offsets.extend(t.await.expect("task"));
    }
    all_offsets.sort_unstable();
    assert_eq!(all_offsets, (1..=200).collect::<Vec<u64>>());
    store.close().await;
}

#[tokio::test]
async fn client_bindings_are_first_come_and_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(&dir, CommitMode::Group);
    let id = ClientId([7; 16]);
    assert_eq!(
        store.bind_client(id, "alice".into()).await.expect("bind"),
        "alice"
    );
    // Repeats and other subjects get the first subject back.
    assert_eq!(
        store.bind_client(id, "alice".into()).await.expect("bind"),
        "alice"
    );
    assert_eq!(
        store.bind_client(id, "mallory".into()).await.expect("bind"),
        "alice"
    );
    // Two subjects racing for a fresh id: exactly one wins, both hear who.
    let fresh = ClientId([8; 16]);
    let (a, b) = tokio::join!(
        store.bind_client(fresh, "a".into()),
        store.bind_client(fresh, "b".into())
    );
    let (a, b) = (a.expect("bind"), b.expect("bind"));
    assert_eq!(a, b);
    assert!(a == "a" || a == "b");
    store.close().await;
    let (store, _) = open(&dir, CommitMode::Group);
    assert_eq!(
        store.bind_client(id, "mallory".into()).await.expect("bind"),
        "alice"
    );
    assert_eq!(store.bind_client(fresh, "c".into()).await.expect("bind"), a);
    store.close().await;
}

#[tokio::test]
async fn submitted_requests_are_decided_in_order_and_share_commits() {
    let dir = tempfile::tempdir().expect("dir");
    let metrics = Arc::new(Metrics::default());
    let store = SqliteStore::open(
        SqliteOptions {
            path: dir.path().join("log.db"),
            commit_mode: CommitMode::Group,
            max_batch_intents: 1000,
            max_batch_bytes: 1 << 20,
            max_readers: 2,
            reducers: Default::default(),
        },
        Arc::new(Recorder::default()),
        metrics.clone(),
    )
    .expect("open");
    crate::store::conformance::submitted_requests_are_decided_in_order(
        &store,
        Some(&metrics),
        "piped",
    )
    .await;
    store.close().await;
}

#[tokio::test]
async fn decides_like_every_store() {
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = open(&dir, CommitMode::Group);
    crate::store::conformance::decides_resends_and_gaps(&store, "decides").await;
    crate::store::conformance::a_reused_seq_is_refused(&store, "reused").await;
    store.close().await;
    // One commit per intent decides the same.
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = open(&dir, CommitMode::PerIntent);
    crate::store::conformance::decides_resends_and_gaps(&store, "decides").await;
    crate::store::conformance::a_reused_seq_is_refused(&store, "reused").await;
    store.close().await;
}

/// With one state kept, two streams pushed to in turn are each rebuilt
/// from the file and decide as if kept, in both commit modes.
#[tokio::test]
async fn folds_with_one_state_kept() {
    use crate::store::conformance::{folds_with_one_state_kept, seat_reducers_keeping_one};
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let dir = tempfile::tempdir().expect("dir");
        let metrics = Arc::new(Metrics::default());
        let store = SqliteStore::open(
            SqliteOptions {
                path: dir.path().join("log.db"),
                commit_mode: mode,
                max_batch_intents: 1000,
                max_batch_bytes: 1 << 20,
                max_readers: 2,
                reducers: seat_reducers_keeping_one(),
            },
            Arc::new(Recorder::default()),
            metrics.clone(),
        )
        .expect("open");
        folds_with_one_state_kept(&store, "seats/x").await;
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
        assert!(
            metrics
                .reducer_states_built
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 6
        );
        store.close().await;
    }
}

/// The fold with meta, in both commit modes; after a reopen the state
/// rebuilt from the file (with each event's stored subject and seen) is
/// the same.
#[tokio::test]
async fn folds_with_meta_and_rebuilds_it_after_reopen() {
    use crate::store::conformance::{folds_with_meta, poll_reducers};
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open_with(&dir, mode, poll_reducers());
        folds_with_meta(&store, "polls/x").await;
        let s = StreamName::new("polls/x").expect("name");
        let before = store.state(s.clone()).await.expect("state");
        store.close().await;
        let (store, _) = open_with(&dir, mode, poll_reducers());
        assert_eq!(store.state(s).await.expect("state"), before, "{mode:?}");
        store.close().await;
    }
}

/// The fold at the ordering point, in both commit modes; after a reopen
/// the state is rebuilt from the file and keeps refusing what it refused.
#[tokio::test]
async fn folds_at_the_ordering_point_and_rebuilds_after_reopen() {
    use crate::store::conformance::{folds_at_the_ordering_point, seat_reducers};
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let dir = tempfile::tempdir().expect("dir");
        let (store, rec) = open_with(&dir, mode, seat_reducers());
        folds_at_the_ordering_point(&store, "seats/x").await;
        // Refused intents never reached the listeners.
        let heard: Vec<u64> = rec
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(s, _)| s == "seats/x")
            .flat_map(|(_, e)| e.iter().copied())
            .collect();
        assert_eq!(heard, vec![1, 2], "{mode:?}");
        store.close().await;
        let (store, _) = open_with(&dir, mode, seat_reducers());
        let s = StreamName::new("seats/x").expect("name");
        let (offset, state) = store
            .state(s.clone())
            .await
            .expect("state")
            .expect("reducer");
        assert_eq!(offset, Offset(2));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&state).expect("json"),
            serde_json::json!({"seats": {"1A": "ann", "1B": "bob"}})
        );
        let o = store
            .append(AppendRequest {
                subject: None,
                stream: s.clone(),
                client_id: ClientId([9; 16]),
                intents: vec![
                    ProposedIntent::new(
                        seq(1),
                        br#"{"type":"book","seat":"1B","who":"eve"}"#.to_vec(),
                        Verdict::Accept,
                    ),
                    ProposedIntent::new(
                        seq(2),
                        br#"{"type":"book","seat":"2C","who":"eve"}"#.to_vec(),
                        Verdict::Accept,
                    ),
                ],
            })
            .await
            .expect("append");
        assert_eq!(
            o,
            vec![
                Outcome::Rejected {
                    seq: seq(1),
                    code: ErrorCode::Rejected,
                    message: "SEAT_TAKEN: seat 1B is taken".into(),
                    duplicate: false
                },
                Outcome::Appended {
                    seq: seq(2),
                    offset: Offset(3),
                    duplicate: false
                }
            ],
            "{mode:?}"
        );
        store.close().await;
    }
}

/// A file written with schema version 1 (no payload digests) opens: the
/// migration fills the digests from the stored payloads, so a reused seq
/// of an intent appended before is caught too; and (version 3) events
/// gain a subject and a seen offset, none and 0 for the old ones.
#[tokio::test]
async fn a_version_1_file_is_migrated() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let conn = rusqlite::Connection::open(dir.path().join("log.db")).expect("open");
        conn.execute_batch(include_str!("../../../fixtures/sqlite/schema-v1.sql"))
            .expect("v1 schema");
        conn.execute_batch(
            r#"INSERT INTO meta (key, value) VALUES ('schema_version', '1'), ('epoch', 'old-epoch');
               INSERT INTO streams (id, name, head) VALUES (1, 'todos/a', 2);
               INSERT INTO events (stream_id, "offset", client_id, seq, time_ms, payload)
                 VALUES (1, 1, zeroblob(16), 1, 5, CAST('{"s":1}' AS BLOB)),
                        (1, 2, zeroblob(16), 2, 6, CAST('{"s":2}' AS BLOB));
               INSERT INTO clients (stream_id, client_id, last_seq) VALUES (1, zeroblob(16), 2);"#,
        )
        .expect("v1 rows");
    }
    let (store, _) = open(&dir, CommitMode::Group);
    assert_eq!(store.epoch().0, "old-epoch");
    let intent = |s: u64, payload: &str| {
        ProposedIntent::new(seq(s), payload.as_bytes().to_vec(), Verdict::Accept)
    };
    let o = store
        .append(AppendRequest {
            subject: Some("ann".into()),
            stream: StreamName::new("todos/a").expect("name"),
            client_id: ClientId([0; 16]),
            intents: vec![
                intent(1, r#"{"s":1}"#),
                intent(2, r#"{"s":"two"}"#),
                intent(3, r#"{"s":3}"#).seen(Offset(2)),
            ],
        })
        .await
        .expect("append");
    assert_eq!(
        o,
        vec![
            Outcome::Appended {
                seq: seq(1),
                offset: Offset(1),
                duplicate: true
            },
            Outcome::SeqReused {
                seq: seq(2),
                offset: Offset(2)
            },
            Outcome::Appended {
                seq: seq(3),
                offset: Offset(3),
                duplicate: false
            },
        ]
    );
    store.close().await;
    let conn = rusqlite::Connection::open(dir.path().join("log.db")).expect("open");
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, "4");
    let meta: Vec<(Option<String>, i64, i64)> = conn
        .prepare(r#"SELECT subject, seen, schema FROM events ORDER BY "offset""#)
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // Events stored before schema versions were kept are version 1.
    assert_eq!(
        meta,
        vec![(None, 0, 1), (None, 0, 1), (Some("ann".into()), 2, 1)]
    );
    let snapshot_schema: i64 = conn
        .query_row("SELECT count(schema) FROM snapshots", [], |r| r.get(0))
        .expect("the snapshots have a schema column");
    assert_eq!(snapshot_schema, 0);
    let missing: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE digest IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(missing, 0);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let (store, _) = open(&dir, CommitMode::Group);
        store.close().await;
    }
    let conn = rusqlite::Connection::open(dir.path().join("log.db")).expect("open");
    conn.execute(
        "UPDATE meta SET value = '5' WHERE key = 'schema_version'",
        [],
    )
    .expect("bump");
    drop(conn);
    let err = SqliteStore::open(
        SqliteOptions {
            path: dir.path().join("log.db"),
            commit_mode: CommitMode::Group,
            max_batch_intents: 1000,
            max_batch_bytes: 1 << 20,
            max_readers: 2,
            reducers: Default::default(),
        },
        Arc::new(Recorder::default()),
        Arc::new(Metrics::default()),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("schema version 5"), "{err}");
}

/// Rows of the events table of the store in `dir`, read beside it.
fn stored_events(dir: &tempfile::TempDir) -> i64 {
    let conn = rusqlite::Connection::open(dir.path().join("log.db")).expect("open");
    conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count")
}

/// Client `client` books seat `seat` under its seq `s`.
fn book(client: u8, s: u64, seat: u64) -> AppendRequest {
    AppendRequest {
        subject: None,
        stream: StreamName::new("seats/c").expect("name"),
        client_id: ClientId([client; 16]),
        intents: vec![ProposedIntent::new(
            seq(s),
            format!(r#"{{"type":"book","seat":"{seat}","who":"c{client}"}}"#).into_bytes(),
            Verdict::Accept,
        )],
    }
}

#[tokio::test]
async fn snapshots_bound_the_log_and_a_reopened_store_starts_from_them() {
    use crate::fold::SnapshotPolicy;
    use crate::store::conformance::seat_reducers;

    let dir = tempfile::tempdir().expect("dir");
    let policy = SnapshotPolicy {
        every: 100,
        retain_events: Some(500),
        ..SnapshotPolicy::default()
    };
    let reducers = || {
        let mut r = seat_reducers();
        r.snapshots(policy);
        r
    };
    let stream = StreamName::new("seats/c").expect("name");
    let (store, _) = open_with(&dir, CommitMode::Group, reducers());
    let mut most = 0;
    for s in 1..=3000u64 {
        let client = (s % 3) as u8 + 1;
        let out = store
            .append(book(client, (s - 1) / 3 + 1, s))
            .await
            .expect("append");
        assert!(
            matches!(
                out[..],
                [Outcome::Appended {
                    duplicate: false,
                    ..
                }]
            ),
            "{out:?}"
        );
        if s % 50 == 0 {
            most = most.max(stored_events(&dir));
        }
    }
    // Retention plus the events since the last snapshot, never more.
    assert!(most <= 600, "the events table held {most} rows");
    assert!(
        most >= 500,
        "compaction kept fewer events than the retention: {most}"
    );
    let crate::store::StoredSnapshot { offset, state, .. } = store
        .latest_snapshot(stream.clone())
        .await
        .expect("snapshot")
        .expect("a snapshot is stored");
    assert_eq!(offset, Offset(3000));
    let (at, json) = store
        .state(stream.clone())
        .await
        .expect("state")
        .expect("folded");
    assert_eq!((at, json.as_bytes()), (offset, &state[..]));

    // A reader from below the horizon is told where the log starts.
    let page = store
        .read(stream.clone(), Offset(10), all())
        .await
        .expect("read");
    assert_eq!(page.compacted, Offset(2500));
    assert_eq!(page.events.first().map(|e| e.offset), Some(Offset(2501)));

    // A resend of an intent whose event is gone is still a duplicate:
    // answered as in the log at or below the horizon, never appended again.
    let out = store.append(book(2, 1, 1)).await.expect("resend");
    assert_eq!(
        out,
        vec![Outcome::Appended {
            seq: seq(1),
            offset: Offset(2500),
            duplicate: true
        }]
    );
    store.close().await;
    drop(store);

    // Reopened: the state starts from the snapshot (the events under it
    // are gone, so folding the whole log could not give it) and goes on.
    let (store, _) = open_with(&dir, CommitMode::Group, reducers());
    let (at, again) = store
        .state(stream.clone())
        .await
        .expect("state")
        .expect("folded");
    assert_eq!((at, again), (Offset(3000), json));
    let out = store.append(book(1, 1001, 3001)).await.expect("append");
    assert!(
        matches!(
            out[..],
            [Outcome::Appended {
                offset: Offset(3001),
                duplicate: false,
                ..
            }]
        ),
        "{out:?}"
    );
    // The seat taken before the snapshot is still taken after it.
    let taken = store
        .append(AppendRequest {
            subject: None,
            stream: stream.clone(),
            client_id: ClientId([9; 16]),
            intents: vec![ProposedIntent::new(
                seq(1),
                br#"{"type":"book","seat":"7","who":"c9"}"#.to_vec(),
                Verdict::Accept,
            )],
        })
        .await
        .expect("append");
    assert!(
        matches!(&taken[..], [Outcome::Rejected { code: ErrorCode::Rejected, message, .. }] if message.starts_with("SEAT_TAKEN")),
        "{taken:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn stores_snapshots_of_folded_streams() {
    use crate::store::conformance::{seat_reducers_snapshotting, stores_snapshots};
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = open_with(&dir, CommitMode::PerIntent, seat_reducers_snapshotting());
    stores_snapshots(&store, "seats/snap").await;
    store.close().await;
}

#[tokio::test]
async fn compacts_like_every_durable_store() {
    use crate::store::conformance::{compacts_under_snapshots, seat_reducers_compacting};
    for mode in [CommitMode::Group, CommitMode::PerIntent] {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open_with(&dir, mode, seat_reducers_compacting());
        compacts_under_snapshots(&store, "seats/compact").await;
        store.close().await;
        assert_eq!(stored_events(&dir), 26, "{mode:?}");
    }
}

/// Seat reducers with a snapshot every 10 events, `retain_events`, events
/// kept for an hour (`--retain-age 1h`) and the background pass every
/// 20 ms.
fn seats_retained(retain_events: Option<u64>) -> crate::fold::Reducers {
    let mut r = crate::store::conformance::seat_reducers();
    r.snapshots(crate::fold::SnapshotPolicy {
        every: 10,
        retain_events,
        retain_age: Some(std::time::Duration::from_secs(3600)),
        compact_every: Some(std::time::Duration::from_millis(20)),
    });
    r
}

/// Client 1 books seats `from..=to` of `stream`, one request each (seq =
/// offset = seat number).
async fn book_seats(store: &SqliteStore, stream: &str, from: u64, to: u64) {
    for s in from..=to {
        let out = store
            .append(AppendRequest {
                subject: None,
                stream: StreamName::new(stream).expect("name"),
                ..book(1, s, s)
            })
            .await
            .expect("append");
        assert!(
            matches!(out[..], [Outcome::Appended { offset, duplicate: false, .. }] if offset == Offset(s)),
            "{out:?}"
        );
    }
}

/// Moves the stored time of the events of `stream` at or below `through`
/// two hours back: they are older than the retention age now.
fn age_events(dir: &tempfile::TempDir, stream: &str, through: u64) {
    let conn = rusqlite::Connection::open(dir.path().join("log.db")).expect("open");
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    conn.execute(
        r#"UPDATE events SET time_ms = time_ms - 7200000
           WHERE "offset" <= ?1 AND stream_id = (SELECT id FROM streams WHERE name = ?2)"#,
        rusqlite::params![through as i64, stream],
    )
    .expect("age the events");
}

/// Waits until reads of `stream` report the events compacted through
/// `through`, failing after a deadline; the events then kept.
async fn compacted_to(store: &SqliteStore, stream: &str, through: u64) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = store
            .read(StreamName::new(stream).expect("name"), Offset(0), all())
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
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `--retain-age` alone: an idle stream's events older than the age are
/// deleted by the background pass, but never above the latest snapshot;
/// an appending transaction that stores a snapshot deletes the old
/// events under it at once, and the young ones stay.
#[tokio::test]
async fn old_events_of_idle_streams_are_compacted_under_the_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = open_with(&dir, CommitMode::Group, seats_retained(None));
    book_seats(&store, "seats/aged", 1, 25).await;
    // Young: every event kept (the snapshot at 20 allows, the age not).
    let page = store
        .read(
            StreamName::new("seats/aged").expect("name"),
            Offset(0),
            all(),
        )
        .await
        .expect("read");
    assert_eq!((page.compacted, page.events.len()), (Offset(0), 25));
    age_events(&dir, "seats/aged", 25);
    // Idle, and compacted: up to the snapshot at 20, not beyond.
    assert_eq!(
        compacted_to(&store, "seats/aged", 20).await,
        (21..=25).collect::<Vec<u64>>()
    );
    // The next snapshot (at 30) compacts the old events under it in its
    // own transaction; 26..=30 are young and stay.
    book_seats(&store, "seats/aged", 26, 30).await;
    let page = store
        .read(
            StreamName::new("seats/aged").expect("name"),
            Offset(0),
            all(),
        )
        .await
        .expect("read");
    assert_eq!(page.compacted, Offset(25));
    assert_eq!(stored_events(&dir), 5);
    let (at, state) = store
        .state(StreamName::new("seats/aged").expect("name"))
        .await
        .expect("state")
        .expect("a reducer");
    assert_eq!(at, Offset(30));
    let state: serde_json::Value = serde_json::from_str(&state).expect("JSON");
    assert_eq!(state["seats"].as_object().map(|s| s.len()), Some(30));
    store.close().await;
}

/// `--retain-events 5 --retain-age 1h`: an event is kept while either
/// rule keeps it. Young events are all kept although the count rule would
/// let 25 of them go; once some are old, only those go (and only under
/// the snapshot); once all are old, the count rule keeps the last 5.
#[tokio::test]
async fn an_event_is_kept_while_either_retention_keeps_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = open_with(&dir, CommitMode::Group, seats_retained(Some(5)));
    book_seats(&store, "seats/both", 1, 30).await;
    let page = store
        .read(
            StreamName::new("seats/both").expect("name"),
            Offset(0),
            all(),
        )
        .await
        .expect("read");
    assert_eq!(
        (page.compacted, page.events.len()),
        (Offset(0), 30),
        "young events are kept by the age rule"
    );
    age_events(&dir, "seats/both", 12);
    assert_eq!(
        compacted_to(&store, "seats/both", 12).await,
        (13..=30).collect::<Vec<u64>>()
    );
    age_events(&dir, "seats/both", 30);
    assert_eq!(
        compacted_to(&store, "seats/both", 25).await,
        (26..=30).collect::<Vec<u64>>(),
        "the count rule keeps the last 5"
    );
    store.close().await;
    // Reopened, the state starts from the snapshot.
    let (store, _) = open_with(&dir, CommitMode::Group, seats_retained(Some(5)));
    let (at, state) = store
        .state(StreamName::new("seats/both").expect("name"))
        .await
        .expect("state")
        .expect("a reducer");
    assert_eq!(at, Offset(30));
    let state: serde_json::Value = serde_json::from_str(&state).expect("JSON");
    assert_eq!(state["seats"].as_object().map(|s| s.len()), Some(30));
    store.close().await;
}

/// A backlog longer than one pass transaction deletes (1,000 events) is
/// compacted over several, down to the snapshot.
#[tokio::test]
async fn the_background_pass_compacts_a_backlog_in_small_transactions() {
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = open_with(&dir, CommitMode::Group, seats_retained(None));
    for batch in 0..25u64 {
        let out = store
            .append(AppendRequest {
                subject: None,
                stream: StreamName::new("seats/backlog").expect("name"),
                client_id: ClientId([1; 16]),
                intents: (1..=100)
                    .map(|i| {
                        let s = batch * 100 + i;
                        ProposedIntent::new(
                            seq(s),
                            format!(r#"{{"type":"book","seat":"{s}","who":"c1"}}"#).into_bytes(),
                            Verdict::Accept,
                        )
                    })
                    .collect(),
            })
            .await
            .expect("append");
        assert_eq!(out.len(), 100);
    }
    assert_eq!(stored_events(&dir), 2500);
    age_events(&dir, "seats/backlog", 2500);
    assert!(compacted_to(&store, "seats/backlog", 2500).await.is_empty());
    assert_eq!(stored_events(&dir), 0);
    store.close().await;
}
