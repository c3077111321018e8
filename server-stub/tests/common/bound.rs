//! The storage bound of a compacted stream, for any store behind a
//! server folding `count/*` with tests/fixtures/counter.js: `total`
//! events pushed in requests of `batch` intents, with `--snapshot-every
//! every --retain-events retain`. The events table, sampled after every
//! request, never holds more than `retain + every` rows (the retention
//! plus the events since the last snapshot) and ends with at least
//! `retain`. A client that read the first 10 events and went offline
//! subscribes again from offset 10: it gets the stream's snapshot, then
//! the events after it, and the state it folds is the server's `/state`.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::Path;

use sync_core::ServerMsg;

use super::{assert_dense, client_id, http, Client};

/// The sizes of one run.
pub struct Bound {
    /// Events pushed.
    pub total: u64,
    /// `--snapshot-every`.
    pub every: u64,
    /// `--retain-events`.
    pub retain: u64,
    /// Intents per request.
    pub batch: u64,
}

const STREAM: &str = "count/bound";

fn add(n: u64) -> Vec<u8> {
    serde_json::json!({"type": "add", "n": n})
        .to_string()
        .into_bytes()
}

/// What tests/fixtures/counter.js folds `payload` into: `state` with one
/// more `add` (the test's own fold, to check the server's).
fn fold(state: &mut serde_json::Value, payload: &[u8]) {
    let a: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let n = a["n"].as_u64().unwrap();
    state["count"] = (state["count"].as_u64().unwrap() + 1).into();
    state["sum"] = (state["sum"].as_u64().unwrap() + n).into();
    state["last"] = n.into();
}

impl Bound {
    /// The server's flags: the reducer, snapshots and retention, and no
    /// rate limits (one client pushes everything).
    pub fn server_args(&self) -> Vec<String> {
        let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/counter.js");
        vec![
            "--reducer".into(),
            format!("count/*={}", module.display()),
            "--snapshot-every".into(),
            self.every.to_string(),
            "--retain-events".into(),
            self.retain.to_string(),
            "--max-intents-per-sec".into(),
            "0".into(),
            "--max-subject-intents-per-sec".into(),
            "0".into(),
        ]
    }

    /// Runs the check against the server at `ws` (its WebSocket URL) and
    /// `base` (`http://host:port`); `rows` counts the events table.
    pub async fn check<F, Fut>(&self, ws: &str, base: &str, mut rows: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = u64>,
    {
        let Bound {
            total,
            every,
            retain,
            batch,
        } = *self;
        let (mut writer, _) = Client::hello(ws, client_id(1)).await;
        let (mut offline, _) = Client::hello(ws, client_id(2)).await;
        offline.subscribe(STREAM, 0).await;
        let mut most = 0;
        let mut next = 1;
        while next <= total {
            let last = (next + batch - 1).min(total);
            let intents: Vec<(u64, Vec<u8>)> = (next..=last).map(|s| (s, add(s))).collect();
            writer.push(STREAM, &intents).await;
            for s in next..=last {
                match writer.recv().await {
                    ServerMsg::Ack { seq, offset, .. } => {
                        assert_eq!((seq.get(), offset.0), (s, s))
                    }
                    other => panic!("expected the Ack of seq {s}, got {other:?}"),
                }
            }
            if next == 1 {
                // The offline client has the first 10 events, then goes.
                let mut state = serde_json::json!({"count": 0, "sum": 0, "last": 0});
                for e in offline.events_until(10).await.iter().take(10) {
                    fold(&mut state, &e.payload);
                }
                assert_eq!(state["count"], 10);
                offline = Client::hello(ws, client_id(2)).await.0;
            }
            most = most.max(rows().await);
            next = last + 1;
        }
        let kept = rows().await;
        assert!(
            most <= retain + every,
            "the events table held {most} rows (retention {retain}, snapshot every {every})"
        );
        assert!(
            kept >= retain,
            "compaction kept {kept} events, fewer than {retain}"
        );

        // Back online from offset 10, far below the horizon.
        offline.subscribe(STREAM, 10).await;
        let mut text = Vec::new();
        let (at, hash) = loop {
            match offline.recv().await {
                ServerMsg::Snapshot {
                    offset,
                    hash,
                    total,
                    part,
                    ..
                } => {
                    text.extend(part);
                    if text.len() as u64 == total {
                        break (offset.0, hash);
                    }
                }
                other => panic!("expected the snapshot first, got {other:?}"),
            }
        };
        assert_eq!(sync_core::protocol::state_hash(&text), hash);
        assert!(
            at <= total && total - at < every + batch,
            "snapshot at {at}"
        );
        let mut state: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let rest = if at < total {
            offline.events_until(total).await
        } else {
            Vec::new()
        };
        assert_dense(&rest, at + 1);
        for e in &rest {
            fold(&mut state, &e.payload);
        }
        let r = http()
            .get(format!("{base}/v1/streams/count%2Fbound/state"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let server: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(
            (server["offset"].as_u64(), &server["state"]),
            (Some(total), &state)
        );
        assert_eq!(
            state,
            serde_json::json!({"count": total, "sum": total * (total + 1) / 2, "last": total})
        );
    }
}
