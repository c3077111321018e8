//! What a store tells its app, in headless Chromium with real IndexedDB and
//! real WebSockets against a real `logsync-server` (through the harness):
//! - a store that cannot connect reports `CONNECT_FAILED` with the URL and
//!   the likely fix, once per outage rather than once per attempt;
//! - `status.lastError` is the current problem: it clears once the
//!   connection is healthy again;
//! - every error's message follows one rule (no code prefix; the code is
//!   `err.code`), the same text in `onError` and in `status.lastError`;
//! - `status.pending` counts this tab's actions, not another tab's;
//! - pending actions can be listed and discarded, and a discarded one never
//!   reaches the log, also after a reload.
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const T: f64 = 20_000.0;

fn codes(errors: &[JsValue]) -> Vec<String> {
    errors
        .iter()
        .filter_map(|e| get(e, "code").as_string())
        .collect()
}

fn message(e: &JsValue) -> String {
    get(e, "message").as_string().unwrap_or_default()
}

#[wasm_bindgen_test]
async fn a_store_that_cannot_connect_says_so_once_per_outage() {
    // Nothing listens on port 9 of the loopback address.
    let url = "ws://127.0.0.1:9/v1/ws";
    let store = open(options(url, &unique("nowhere"), &unique("db"), "")).await;
    let (rec, errors) = recorder();
    call(&store, "onError", &[rec.into()]).unwrap();
    wait_for(T, "a CONNECT_FAILED report", || !errors.borrow().is_empty()).await;
    let e = errors.borrow()[0].clone();
    assert_eq!(codes(&errors.borrow()), vec!["CONNECT_FAILED"]);
    let text = message(&e);
    assert!(text.contains(url), "names the URL: {text}");
    assert!(
        text.contains("nothing answered"),
        "says what is there: {text}"
    );
    assert_eq!(last_error_code(&store).as_deref(), Some("CONNECT_FAILED"));
    // Attempts go on every 50-500 ms; reports do not: two more seconds of
    // failed attempts add no report.
    sleep(2_000).await;
    assert_eq!(
        errors.borrow().len(),
        1,
        "throttled: {:?}",
        codes(&errors.borrow())
    );
    close(&store).await;

    // The server's address without /v1/ws: an HTTP server answers there,
    // and the message says which path to use.
    let ws = server_ws_url().await;
    let base = ws.trim_end_matches("/v1/ws").to_string();
    let store = open(options(&base, &unique("nopath"), &unique("db"), "")).await;
    let (rec, errors) = recorder();
    call(&store, "onError", &[rec.into()]).unwrap();
    wait_for(T, "a CONNECT_FAILED report", || !errors.borrow().is_empty()).await;
    let e = errors.borrow()[0].clone();
    assert_eq!(
        get(&e, "code").as_string().as_deref(),
        Some("CONNECT_FAILED")
    );
    let text = message(&e);
    assert!(
        text.contains("/v1/ws") && text.contains(&format!("{base}/v1/ws")),
        "names the right URL: {text}"
    );
    close(&store).await;
}

#[wasm_bindgen_test]
async fn last_error_describes_now() {
    let url = server_ws_url().await;
    let store = open(options(&url, &unique("now"), &unique("db"), "")).await;
    let (rec, errors) = recorder();
    call(&store, "onError", &[rec.into()]).unwrap();
    wait_for(T, "online", || status(&store, "online") == JsValue::TRUE).await;
    assert_eq!(last_error_code(&store), None);
    server_stop().await;
    wait_for(T, "a problem while the server is down", || {
        last_error_code(&store).is_some()
    })
    .await;
    server_start().await;
    wait_for(T, "online again", || {
        status(&store, "online") == JsValue::TRUE
    })
    .await;
    assert_eq!(
        last_error_code(&store),
        None,
        "healthy again: the problem is history (onError had {:?})",
        codes(&errors.borrow())
    );
    assert!(!errors.borrow().is_empty(), "the history keeps it");
    close(&store).await;
}

#[wasm_bindgen_test]
async fn every_error_message_follows_one_rule() {
    let url = server_ws_url().await;
    let store = open(options(
        &url,
        &unique("text"),
        &unique("db"),
        r#","connect":false"#,
    ))
    .await;
    // A misuse made in wasm.
    let e = call(&store, "dispatch", &[JsValue::from_str("add")]).unwrap_err();
    let code = get(&e, "code").as_string().unwrap();
    assert_eq!(code, "INVALID_REQUEST");
    assert_eq!(get(&e, "name").as_string().as_deref(), Some("LogsyncError"));
    assert!(
        !message(&e).starts_with(&code) && !message(&e).is_empty(),
        "the message does not repeat the code: {}",
        message(&e)
    );
    close(&store).await;
    // A reported error: the listener's message is the status's message.
    let bad = open(options(
        &malformed_ws_url(),
        &unique("text"),
        &unique("db"),
        "",
    ))
    .await;
    let (rec, errors) = recorder();
    call(&bad, "onError", &[rec.into()]).unwrap();
    add(&bad, "x");
    wait_for(T, "a MALFORMED_FRAME report", || {
        codes(&errors.borrow()).contains(&"MALFORMED_FRAME".to_string())
    })
    .await;
    let reported = errors
        .borrow()
        .iter()
        .find(|e| get(e, "code").as_string().as_deref() == Some("MALFORMED_FRAME"))
        .cloned()
        .unwrap();
    assert!(
        !message(&reported).starts_with("MALFORMED_FRAME"),
        "{}",
        message(&reported)
    );
    assert_eq!(last_error_code(&bad).as_deref(), Some("MALFORMED_FRAME"));
    assert_eq!(
        get(&status(&bad, "lastError"), "message").as_string(),
        Some(message(&reported)),
        "one text in onError and in status.lastError"
    );
    close(&bad).await;
}

/// Waits until the outbox of `db` holds `n` entries.
async fn wait_for_outbox(db: &str, n: u32) {
    let start = js_sys::Date::now();
    loop {
        let (_, values) = raw_get_all(db, "outbox").await;
        if values.length() == n {
            return;
        }
        if js_sys::Date::now() - start > T {
            panic!(
                "timed out waiting for {n} outbox entries (have {})",
                values.length()
            );
        }
        sleep(20).await;
    }
}

#[wasm_bindgen_test]
async fn pending_counts_this_tabs_actions() {
    let url = server_ws_url().await;
    let stream = unique("tabs");
    let db = unique("db");
    // Two tabs of one browser profile: one database, one client id.
    let offline = r#","connect":false"#;
    let a = open(options(&url, &stream, &db, offline)).await;
    let b = open(options(&url, &stream, &db, offline)).await;
    for i in 0..3 {
        add(&a, &format!("a{i}"));
    }
    wait_for_outbox(&db, 3).await;
    for i in 0..2 {
        add(&b, &format!("b{i}"));
    }
    // b's seq allocation reads a's outbox entries (and adopts them).
    wait_for_outbox(&db, 5).await;
    // Its allocation is done once a's actions show in b's state.
    wait_for(T, "b holds a's actions too", || items(&b).len() == 5).await;
    assert_eq!(status_num(&a, "pending"), 3.0);
    assert_eq!(status_num(&b, "pending"), 2.0, "b counts b's actions");
    // Online, both send, and both reach zero.
    call(&a, "reconnect", &[]).unwrap();
    call(&b, "reconnect", &[]).unwrap();
    synced(&a, 20_000).await;
    synced(&b, 20_000).await;
    assert_eq!(status_num(&a, "pending"), 0.0);
    assert_eq!(status_num(&b, "pending"), 0.0);
    assert_eq!(log_entries(&stream).await.len(), 5);
    close(&a).await;
    close(&b).await;
}

#[wasm_bindgen_test]
async fn pending_actions_are_listed_and_discarded() {
    let url = server_ws_url().await;
    let stream = unique("discard");
    let db = unique("db");
    let store = open(options(&url, &stream, &db, r#","connect":false"#)).await;
    for id in ["keep-1", "drop", "keep-2"] {
        add(&store, id);
    }
    assert_eq!(
        status_num(&store, "writing"),
        3.0,
        "no seq before the IndexedDB write"
    );
    wait_for(T, "three pending actions with seqs", || {
        let p: js_sys::Array = call(&store, "pending", &[]).unwrap().unchecked_into();
        p.length() == 3 && p.iter().all(|x| get(&x, "seq").as_f64().is_some())
    })
    .await;
    assert_eq!(status_num(&store, "writing"), 0.0, "all written");
    let list: js_sys::Array = call(&store, "pending", &[]).unwrap().unchecked_into();
    let ids: Vec<String> = list
        .iter()
        .map(|p| get(&get(&p, "action"), "id").as_string().unwrap())
        .collect();
    assert_eq!(ids, vec!["keep-1", "drop", "keep-2"]);
    let seq = get(&list.get(1), "seq");
    call(&store, "discard", std::slice::from_ref(&seq)).unwrap();
    assert_eq!(items(&store), vec!["keep-1", "keep-2"], "left out at once");
    assert_eq!(status_num(&store, "pending"), 2.0);
    // Twice, or a seq that is not pending: a typed error.
    let e = call(&store, "discard", std::slice::from_ref(&seq)).unwrap_err();
    assert_eq!(
        get(&e, "code").as_string().as_deref(),
        Some("INVALID_REQUEST")
    );
    let e = call(&store, "discard", &[JsValue::from_str("x")]).unwrap_err();
    assert_eq!(
        get(&e, "code").as_string().as_deref(),
        Some("INVALID_REQUEST")
    );
    close(&store).await;

    // A reload keeps it discarded; online, it never reaches the log and
    // the outbox empties.
    let again = open(options(&url, &stream, &db, "")).await;
    assert_eq!(items(&again), vec!["keep-1", "keep-2"]);
    assert_eq!(status_num(&again, "pending"), 2.0);
    synced(&again, 20_000).await;
    assert_exactly_once(
        &log_entries(&stream).await,
        &["keep-1".into(), "keep-2".into()],
    );
    wait_for(T, "the outbox empties", || {
        status_num(&again, "offset") == 2.0
    })
    .await;
    let (_, outbox) = raw_get_all(&db, "outbox").await;
    assert_eq!(outbox.length(), 0);
    close(&again).await;
}
