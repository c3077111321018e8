//! Stores against a real `logsync-server` with authentication on (started
//! through the server-control harness with `LOGSYNC_JWT_SECRET`), in
//! headless Chromium with real IndexedDB and real WebSockets:
//! - a store with a valid token syncs;
//! - a store whose token is for another stream gets `FORBIDDEN` through
//!   `onError` and `status()`, stops reconnecting (`needsToken`), keeps its
//!   intents, and delivers them once `setToken()` gives it a good token;
//! - a forged token gets `UNAUTHORIZED` the same way.
//!
//! The test restores the harness's server to its defaults at the end (and
//! `server_ws_url()` does so for any later test if this one fails first).
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const T: f64 = 20_000.0;
const SECRET: &str = "browser-auth-test-secret-0123456789abcdef";

/// Claims for `sub`, valid for an hour.
fn claims(sub: &str, read: &str, write: &str) -> String {
    let exp = (js_sys::Date::now() / 1000.0) as u64 + 3600;
    format!(r#"{{"sub":{sub:?},"exp":{exp},"read":[{read:?}],"write":[{write:?}]}}"#)
}

fn with_token(token: &str) -> String {
    format!(r#","token":{token:?}"#)
}

fn error_codes(errors: &[JsValue]) -> Vec<String> {
    errors
        .iter()
        .filter_map(|e| get(e, "code").as_string())
        .collect()
}

#[wasm_bindgen_test]
async fn tokens_decide_what_a_store_may_sync() {
    server_ws_url().await;
    server_stop().await;
    let url = server_start_with(&format!(r#"{{"env":{{"LOGSYNC_JWT_SECRET":{SECRET:?}}}}}"#)).await;
    let team = unique("auth/team");
    let good = mint_token(
        SECRET,
        &claims("alice", &format!("{team}*"), &format!("{team}*")),
    )
    .await;
    let elsewhere = mint_token(SECRET, &claims("alice", "elsewhere/*", "elsewhere/*")).await;
    let forged = mint_token(
        "not-the-server-secret-0123456789abcdef",
        &claims("alice", "*", "*"),
    )
    .await;

    // A valid token: the store syncs.
    let a = open(options(&url, &team, &unique("db"), &with_token(&good))).await;
    add(&a, "a1");
    synced(&a, 20_000).await;
    assert_eq!(status(&a, "online"), JsValue::TRUE);
    assert_eq!(status(&a, "needsToken"), JsValue::FALSE);

    // A token for other streams: FORBIDDEN, reported, and the intent kept.
    let b = open(options(&url, &team, &unique("db"), &with_token(&elsewhere))).await;
    let (rec, errors) = recorder();
    call(&b, "onError", &[rec.into()]).unwrap();
    add(&b, "b1");
    wait_for(T, "FORBIDDEN and needsToken", || {
        status(&b, "needsToken") == JsValue::TRUE
    })
    .await;
    assert!(error_codes(&errors.borrow()).contains(&"FORBIDDEN".to_string()));
    assert_eq!(last_error_code(&b).as_deref(), Some("FORBIDDEN"));
    assert_eq!(status(&b, "online"), JsValue::FALSE);
    assert_eq!(status_num(&b, "pending"), 1.0);
    assert_eq!(
        items(&b),
        vec!["b1"],
        "the optimistic state keeps the intent"
    );
    assert!(
        !items(&a).contains(&"b1".to_string()),
        "nothing of b reached the stream"
    );

    // A good token: the store connects at once and delivers what it kept.
    call(&b, "setToken", &[good.as_str().into()]).unwrap();
    synced(&b, 20_000).await;
    assert_eq!(status(&b, "needsToken"), JsValue::FALSE);
    assert_eq!(status(&b, "online"), JsValue::TRUE);
    wait_for(T, "the first store to see b1", || items(&a) == ["a1", "b1"]).await;
    assert_eq!(items(&b), vec!["a1", "b1"]);

    // A forged token: UNAUTHORIZED, the same way.
    let c = open(options(&url, &team, &unique("db"), &with_token(&forged))).await;
    add(&c, "c1");
    wait_for(T, "UNAUTHORIZED and needsToken", || {
        status(&c, "needsToken") == JsValue::TRUE
    })
    .await;
    assert_eq!(last_error_code(&c).as_deref(), Some("UNAUTHORIZED"));
    assert_eq!(status_num(&c, "pending"), 1.0);
    // Bad arguments are refused with a typed error.
    let e = call(&c, "setToken", &[JsValue::from_f64(42.0)]).unwrap_err();
    assert_eq!(
        get(&e, "code").as_string().as_deref(),
        Some("INVALID_REQUEST")
    );

    close(&a).await;
    close(&b).await;
    close(&c).await;
    server_stop().await;
    server_start().await;
}

#[wasm_bindgen_test]
async fn a_readers_refused_write_is_rolled_back_and_it_keeps_reading() {
    server_ws_url().await;
    server_stop().await;
    let url = server_start_with(&format!(r#"{{"env":{{"LOGSYNC_JWT_SECRET":{SECRET:?}}}}}"#)).await;
    let poll = unique("auth/poll");
    let writer = mint_token(
        SECRET,
        &claims("host", &format!("{poll}*"), &format!("{poll}*")),
    )
    .await;
    let viewer = mint_token(SECRET, &claims("viewer", &format!("{poll}*"), "nothing/*")).await;
    let host = open(options(&url, &poll, &unique("db"), &with_token(&writer))).await;
    let view = open(options(&url, &poll, &unique("db"), &with_token(&viewer))).await;
    let (rec, rejections) = recorder();
    call(&view, "onRejected", &[rec.into()]).unwrap();
    wait_for(T, "the viewer online", || {
        status(&view, "online") == JsValue::TRUE
    })
    .await;

    // The viewer votes: it shows at once, then the server refuses it.
    add(&view, "v1");
    assert_eq!(items(&view), vec!["v1"]);
    wait_for(T, "a FORBIDDEN rejection", || {
        !rejections.borrow().is_empty()
    })
    .await;
    let r = rejections.borrow()[0].clone();
    assert_eq!(get(&r, "code").as_string().as_deref(), Some("FORBIDDEN"));
    assert_eq!(
        get(&get(&r, "action"), "id").as_string().as_deref(),
        Some("v1")
    );
    assert!(items(&view).is_empty(), "rolled back");
    assert_eq!(status_num(&view, "pending"), 0.0, "not pending forever");
    assert_eq!(status(&view, "needsToken"), JsValue::FALSE);
    assert_eq!(
        status(&view, "online"),
        JsValue::TRUE,
        "the connection stays"
    );
    synced(&view, 20_000).await;

    // The read side goes on: the host's votes arrive live.
    add(&host, "h1");
    wait_for(T, "the host's vote at the viewer", || {
        items(&view) == ["h1"]
    })
    .await;
    // A second refused vote is answered the same way (no seq hole holds it).
    add(&view, "v2");
    wait_for(T, "a second rejection", || rejections.borrow().len() == 2).await;
    add(&host, "h2");
    wait_for(T, "the host's next vote", || items(&view) == ["h1", "h2"]).await;
    assert_eq!(items(&host), vec!["h1", "h2"]);
    assert_eq!(status(&view, "online"), JsValue::TRUE);

    close(&host).await;
    close(&view).await;
    server_stop().await;
    server_start().await;
}
