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
