//! The largest action a store takes is what its server accepts: learnt
//! from `Welcome`, enforced at dispatch, before the optimistic apply. The
//! harness starts the server with `--max-payload-bytes 1024` (see
//! scripts/test-wasm.sh).
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// `{"type":"add","id":…}` whose JSON text is exactly `bytes` long.
fn add_of_size(bytes: usize) -> (String, JsValue) {
    let id = "x".repeat(bytes - r#"{"type":"add","id":""}"#.len());
    let action = js_sys::JSON::parse(&format!(r#"{{"type":"add","id":{id:?}}}"#)).unwrap();
    assert_eq!(
        js_sys::JSON::stringify(&action).unwrap().length() as usize,
        bytes
    );
    (id, action)
}

fn max_action_bytes(store: &JsValue) -> usize {
    call(store, "maxActionBytes", &[])
        .unwrap()
        .as_f64()
        .unwrap() as usize
}

#[wasm_bindgen_test]
async fn one_byte_over_the_server_limit_is_refused_before_apply_and_at_it_is_taken() {
    let url = server_start().await;
    let stream = unique("limit");
    let db = unique("db");

    // Offline, before any Welcome: what a default server accepts.
    let offline = open(options(&url, &stream, &db, r#","connect":false"#)).await;
    assert_eq!(max_action_bytes(&offline), 256 * 1024);
    close(&offline).await;

    let store = open(options(&url, &stream, &db, "")).await;
    wait_for(20_000.0, "online", || {
        status(&store, "online") == JsValue::TRUE
    })
    .await;
    let limit = max_action_bytes(&store);
    assert_eq!(
        limit, 1024,
        "the server's --max-payload-bytes, from Welcome"
    );
    let (states, state_log) = recorder();
    call(&store, "subscribe", &[states.into()]).unwrap();

    let (_, over) = add_of_size(limit + 1);
    let err = call(&store, "dispatch", &[over]).unwrap_err();
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("PAYLOAD_TOO_LARGE"),
        "{}",
        describe(&err)
    );
    assert!(items(&store).is_empty(), "not applied");
    assert!(state_log.borrow().is_empty(), "subscribers not told");
    assert_eq!(status_num(&store, "pending"), 0.0);

    let (id, at) = add_of_size(limit);
    call(&store, "dispatch", &[at]).unwrap();
    assert_eq!(items(&store), vec![id.clone()]);
    synced(&store, 20_000).await;
    assert_eq!(
        items(&store),
        vec![id.clone()],
        "confirmed, not rolled back"
    );
    assert_exactly_once(&log_entries(&stream).await, &[id]);
    close(&store).await;
}
