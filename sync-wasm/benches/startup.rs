//! Start-up benchmark: how long a store takes from `openStore` to its
//! first state when IndexedDB holds N confirmed events, with snapshots (the
//! default, every 1000 events) and, for contrast, with snapshots turned off
//! (every event replayed). Also reports how long the catch-up of N events
//! from the server took.
//!
//! Run with `scripts/bench-wasm.sh` (release build, headless Chromium, a
//! real `logsync-server`); results are printed by the harness as
//! `REPORT {…}` lines. Sizes: `LOGSYNC_BENCH_SIZES` at compile time,
//! default `10000,100000,100999` (the last leaves 999 events after the last
//! snapshot: the worst case).
#![cfg(target_arch = "wasm32")]
// Benchmark code: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
export function now() { return performance.now(); }
export function report(url, body) {
  return fetch(url + '/report', { method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' } }).then((r) => r.json());
}
export function boundedList() {
  // A realistic small state: a count and the last 100 ids.
  return (state, action) => action.type === 'add'
    ? { count: state.count + 1, items: [...state.items.slice(-99), action.id] }
    : state;
}
"#)]
extern "C" {
    fn now() -> f64;
    fn report(url: &str, body: JsValue) -> js_sys::Promise;
    #[wasm_bindgen(js_name = boundedList)]
    fn bounded_list() -> js_sys::Function;
}

const RUNS: usize = 7;

fn initial() -> JsValue {
    js_sys::JSON::parse(r#"{"count":0,"items":[]}"#).unwrap()
}

async fn open_bench(opts: JsValue) -> JsValue {
    sync_wasm::open_store(opts, bounded_list().into(), initial())
        .await
        .unwrap_or_else(|e| panic!("openStore: {}", describe(&e)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn send(body: String) {
    let body = js_sys::JSON::parse(&body).unwrap();
    wasm_bindgen_futures::JsFuture::from(report(harness(), body))
        .await
        .unwrap();
}

/// Puts `n` events in the server's log of `stream`, 1000 per round trip.
async fn seed(url: &str, stream: &str, n: usize) -> f64 {
    let writer = open_bench(options(
        url,
        stream,
        &unique("bench-writer"),
        r#","snapshotEvery":100000000"#,
    ))
    .await;
    let t0 = now();
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        for k in i..end {
            add(&writer, &format!("e{k}"));
        }
        synced(&writer, 120_000).await;
        i = end;
    }
    let ms = now() - t0;
    close(&writer).await;
    ms
}

async fn bench(url: &str, n: usize) {
    let stream = unique(&format!("bench{n}"));
    let seed_ms = seed(url, &stream, n).await;
    for (mode, every) in [("snapshots", 1000u64), ("no-snapshots", 100_000_000u64)] {
        let db = unique("bench-reader");
        let extra = format!(r#","snapshotEvery":{every}"#);
        let t0 = now();
        let reader = open_bench(options(url, &stream, &db, &extra)).await;
        wait_for(300_000.0, "the reader catches up", || {
            status_num(&reader, "offset") == n as f64
        })
        .await;
        synced(&reader, 120_000).await; // every event written to IndexedDB
        let catchup_ms = now() - t0;
        close(&reader).await;

        let offline = format!(r#"{extra},"connect":false"#);
        let mut startup = Vec::new();
        for _ in 0..RUNS {
            let t0 = now();
            let store = open_bench(options(url, &stream, &db, &offline)).await;
            let state = call(&store, "getState", &[]).unwrap();
            startup.push(now() - t0);
            assert_eq!(
                get(&state, "count").as_f64(),
                Some(n as f64),
                "restored every event"
            );
            close(&store).await;
        }
        let (_, events) = raw_get_all(&db, "events").await;
        send(format!(
            r#"{{"bench":"startup","events":{n},"mode":"{mode}","stored_events_after_snapshot":{},"catchup_ms":{catchup_ms:.0},"seed_ms":{seed_ms:.0},"startup_ms_median":{:.1},"startup_ms_runs":{:?}}}"#,
            events.length(),
            median(startup.clone()),
            startup.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>()
        ))
        .await;
    }
}

#[wasm_bindgen_test]
async fn startup_time() {
    let url = server_start().await;
    let sizes = option_env!("LOGSYNC_BENCH_SIZES").unwrap_or("10000,100000,100999");
    for n in sizes
        .split(',')
        .map(|s| s.trim().parse::<usize>().expect("LOGSYNC_BENCH_SIZES"))
    {
        bench(&url, n).await;
    }
}
