//! A reducer written in Rust and compiled in: `Store<Counter>` synced
//! through a real server, in headless Chromium with real IndexedDB.
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::*;
use serde::{Deserialize, Serialize};
use sync_core::{ReduceError, Reducer, StreamName};
use sync_wasm::{Store, StoreOptions, StoreReducer, WasmError};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The state: a running total of the numbers added, and how many.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: i64,
    count: u64,
}

/// An action: `{"add": n}`.
#[derive(Deserialize)]
struct Add {
    add: i64,
}

/// Adds numbers; refuses a total that would overflow.
struct Counter;

impl Reducer for Counter {
    type State = Tally;
    type Action = Add;

    fn decode(&self, payload: &[u8]) -> Result<Add, ReduceError> {
        serde_json::from_slice(payload).map_err(|e| ReduceError(e.to_string()))
    }

    fn reduce(&self, s: &Tally, a: &Add) -> Result<Tally, ReduceError> {
        let total = s
            .total
            .checked_add(a.add)
            .ok_or_else(|| ReduceError::from("the total would overflow"))?;
        Ok(Tally {
            total,
            count: s.count + 1,
        })
    }
}

impl StoreReducer for Counter {
    fn state_to_js(&self, s: &Tally) -> Result<JsValue, WasmError> {
        serde_json::to_string(s)
            .map(|t| JsValue::from_str(&t))
            .map_err(|e| WasmError::Internal(e.to_string()))
    }

    fn state_from_js(&self, v: JsValue) -> Result<Tally, WasmError> {
        let text = v.as_string().ok_or_else(|| WasmError::Corrupt {
            key: "snapshot".into(),
            reason: "not a string".into(),
        })?;
        serde_json::from_str(&text).map_err(|e| WasmError::Corrupt {
            key: "snapshot".into(),
            reason: e.to_string(),
        })
    }
}

fn opts(url: &str, stream: &str, db: &str) -> StoreOptions {
    let mut o = StoreOptions::new(url, StreamName::new(stream).unwrap(), db);
    o.snapshot_every = 5;
    o.backoff_min_ms = 50;
    o.backoff_max_ms = 500;
    o
}

async fn open(o: StoreOptions) -> Store<Counter> {
    Store::open(o, Counter, Tally::default())
        .await
        .expect("open")
}

fn tally(s: &Store<Counter>) -> Tally {
    s.with_state(|t| t.clone()).unwrap()
}

#[wasm_bindgen_test]
async fn a_rust_reducer_syncs_snapshots_and_restores() {
    let url = server_start().await;
    let stream = unique("rust");
    let (db_a, db_b) = (unique("db-a"), unique("db-b"));
    let a = open(opts(&url, &stream, &db_a)).await;
    let b = open(opts(&url, &stream, &db_b)).await;
    let notified = Rc::new(Cell::new(0u32));
    let n = notified.clone();
    b.subscribe(move || n.set(n.get() + 1));

    for i in 1..=6 {
        a.dispatch(format!(r#"{{"add":{i}}}"#).into_bytes())
            .unwrap();
        b.dispatch(format!(r#"{{"add":{}}}"#, i * 100).into_bytes())
            .unwrap();
    }
    assert_eq!(tally(&a).total, 21, "applied at once");
    // A payload the reducer cannot decode is refused at dispatch.
    let e = a.dispatch(b"not json".to_vec()).unwrap_err();
    assert_eq!(e.code(), sync_core::ErrorCode::Reducer);

    a.synced().await.unwrap();
    b.synced().await.unwrap();
    let want = Tally {
        total: 21 + 2100,
        count: 12,
    };
    wait_for(20_000.0, "both devices have all 12 events", || {
        tally(&a) == want && tally(&b) == want
    })
    .await;
    assert!(
        notified.get() > 6,
        "subscribers saw the 6 dispatches and the remote events"
    );
    let (status, _) = a.status();
    assert_eq!(status.offset, 12);
    a.close().await.unwrap();

    // Restored offline from the snapshot (every 5 events) + later events.
    let mut o = opts(&url, &stream, &db_a);
    o.connect = false;
    let again = open(o).await;
    assert_eq!(tally(&again), want);
    assert_eq!(again.status().0.offset, 12);
    let (_, snaps) = raw_get_all(&db_a, "snapshots").await;
    assert_eq!(snaps.length(), 1);
    let at = get(&snaps.get(0), "offset").as_f64().unwrap() as u64;
    let stored: Tally =
        serde_json::from_str(&get(&snaps.get(0), "state").as_string().unwrap()).unwrap();
    assert!(at >= 5, "a snapshot every 5 events");
    assert_eq!(stored.count, at, "the snapshot is the state at its offset");
    again.close().await.unwrap();
    b.close().await.unwrap();
}
