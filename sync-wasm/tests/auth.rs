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

#[wasm_bindgen(inline_js = r#"
export async function getWithToken(url, token) {
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return `${r.status} ${await r.text()}`;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = getWithToken)]
    async fn get_with_token(url: &str, token: &str) -> JsValue;
}

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
    let url = server_start_with_jwt_secret(SECRET).await;
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
    let url = server_start_with_jwt_secret(SECRET).await;
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

/// The reducer's meta in the browser, against a server folding the same
/// reducer with authentication on: a pending action is folded with this
/// device's values (subject from the store's option, no offset or seq);
/// once confirmed, with the server's (its verified subject, offset, seq and
/// time), so the store's state equals the server's `/state`, also after a
/// reopen from IndexedDB.
#[wasm_bindgen_test]
async fn meta_of_pending_and_confirmed_actions_matches_the_server() {
    server_ws_url().await;
    server_stop().await;
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/meta_list.js");
    let url = server_start_with(&format!(
        r#"{{"args":["--reducer","metalist/*={module}"],"env":{{"LOGSYNC_JWT_SECRET":{SECRET:?}}}}}"#
    ))
    .await;
    let stream = unique("metalist/s");
    let token = mint_token(SECRET, &claims("alice", "metalist/*", "metalist/*")).await;
    let db = unique("db");
    let extra = format!(r#"{},"subject":"alice""#, with_token(&token));
    let store = open_with(options(&url, &stream, &db, &extra), meta_list_reducer()).await;
    let before = js_sys::Date::now();
    add(&store, "a1");
    let state = call(&store, "getState", &[]).unwrap();
    let pending = js_sys::Array::from(&get(&state, "items")).get(0);
    assert_eq!(
        get(&pending, "offset"),
        JsValue::NULL,
        "no offset while pending"
    );
    assert_eq!(get(&pending, "seq"), JsValue::NULL);
    assert_eq!(
        get(&pending, "subject").as_string().as_deref(),
        Some("alice")
    );
    assert_eq!(get(&pending, "seen").as_f64(), Some(0.0));
    let time = get(&pending, "time").as_f64().unwrap();
    assert!(
        time >= before.floor() && time <= js_sys::Date::now(),
        "{time}"
    );
    assert_eq!(
        get(&pending, "clientId").as_string(),
        status(&store, "clientId").as_string()
    );
    synced(&store, 20_000).await;
    add(&store, "a2");
    synced(&store, 20_000).await;

    let base = url.replacen("ws://", "http://", 1).replace("/v1/ws", "");
    let enc = String::from(js_sys::encode_uri_component(&stream));
    let server = || async {
        let text = get_with_token(&format!("{base}/v1/streams/{enc}/state"), &token)
            .await
            .as_string()
            .unwrap();
        let body = text
            .strip_prefix("200 ")
            .unwrap_or_else(|| panic!("{text}"));
        stringify(&get(&js_sys::JSON::parse(body).unwrap(), "state"))
    };
    let want = server().await;
    wait_for(T, "the store's state is the server's", || {
        stringify(&call(&store, "getState", &[]).unwrap()) == want
    })
    .await;
    let confirmed = js_sys::Array::from(&get(&call(&store, "getState", &[]).unwrap(), "items"));
    assert_eq!(get(&confirmed.get(0), "offset").as_f64(), Some(1.0));
    assert_eq!(get(&confirmed.get(1), "seq").as_f64(), Some(2.0));
    assert_eq!(
        get(&confirmed.get(1), "seen").as_f64(),
        Some(1.0),
        "a2 was dispatched having seen a1"
    );
    close(&store).await;

    // Reopened (offline) from IndexedDB: the stored events keep their meta.
    let again = open_with(
        options(&url, &stream, &db, &format!(r#"{extra},"connect":false"#)),
        meta_list_reducer(),
    )
    .await;
    assert_eq!(stringify(&call(&again, "getState", &[]).unwrap()), want);
    close(&again).await;
    server_stop().await;
    server_start().await;
}
