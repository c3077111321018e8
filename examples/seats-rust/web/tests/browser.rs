//! The seats example in headless Chromium (real IndexedDB) against a real
//! `logsync-seats-server` started by the server-control harness
//! (scripts/test-wasm.sh): two devices book the same seat while one is
//! offline; the server keeps the first booking, the other device's is
//! rolled back and reported with the app's code, and both devices' seats
//! equal the server's `/state`.
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../../../../sync-wasm/tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use seats_web::{open, SeatsApp};
use sync_core::StreamName;
use sync_wasm::StoreOptions;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
export async function getText(url) {
  const r = await fetch(url);
  return `${r.status} ${await r.text()}`;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = getText)]
    async fn get_text(url: &str) -> JsValue;
}

fn opts(url: &str, stream: &str, db: &str) -> StoreOptions {
    let mut o = StoreOptions::new(url, StreamName::new(stream).unwrap(), db);
    o.backoff_min_ms = 50;
    o.backoff_max_ms = 500;
    o
}

fn seats(app: &SeatsApp) -> String {
    stringify(&app.state().unwrap())
}

async fn server_state(stream: &str) -> String {
    let ws = server_ws_url().await;
    let base = ws
        .replacen("ws://", "http://", 1)
        .trim_end_matches("/v1/ws")
        .to_string();
    let enc = String::from(js_sys::encode_uri_component(stream));
    get_text(&format!("{base}/v1/streams/{enc}/state"))
        .await
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
async fn one_seat_two_devices_the_server_keeps_the_first_booking() {
    let url = server_ws_url().await;
    let stream = format!("seats/{}", unique("show"));
    let ann = SeatsApp::open_with(opts(&url, &stream, &unique("db-ann")))
        .await
        .unwrap();
    let bob = SeatsApp::open_with(opts(&url, &stream, &unique("db-bob")))
        .await
        .unwrap();
    wait_for(10_000.0, "both devices online", || {
        get(&ann.status(), "online") == JsValue::TRUE
            && get(&bob.status(), "online") == JsValue::TRUE
    })
    .await;
    let rejected = Rc::new(RefCell::new(Vec::<String>::new()));
    let r = rejected.clone();
    let record = Closure::<dyn Fn(JsValue)>::new(move |e: JsValue| {
        r.borrow_mut().push(stringify(&e));
    });
    let _unsubscribe = bob.on_rejected(record.as_ref().clone().unchecked_into());

    // Bob is offline (on a train); Ann books 4A and the server has it.
    bob.go_offline();
    ann.book("4A", "ann").unwrap();
    ann.book("4B", "ann").unwrap();
    within(10_000, "ann synced", ann.synced()).await.unwrap();

    // Offline, Bob sees 4A free and books it: applied at once.
    bob.book("4A", "bob").unwrap();
    bob.book("5C", "bob").unwrap();
    assert_eq!(seats(&bob), r#"{"seats":{"4A":"bob","5C":"bob"}}"#);

    // Back online: the server refuses his 4A with the app's code; it is
    // rolled back, his 5C is kept.
    bob.reconnect();
    within(10_000, "bob synced", bob.synced()).await.unwrap();
    let want = r#"{"seats":{"4A":"ann","4B":"ann","5C":"bob"}}"#;
    wait_for(10_000.0, "both devices hold every decided booking", || {
        seats(&ann) == want && seats(&bob) == want
    })
    .await;
    assert_eq!(
        *rejected.borrow(),
        vec![r#"{"seat":"4A","who":"bob","code":"SEAT_TAKEN","message":"seat 4A is taken"}"#]
    );
    assert_eq!(
        server_state(&stream).await,
        format!(r#"200 {{"offset":3,"state":{want}}}"#)
    );

    // Seen taken on this device, a seat is refused at once, before sending.
    let e = bob.book("4B", "bob").unwrap_err();
    assert_eq!(get(&e, "code").as_string().unwrap(), "REDUCER");
    assert!(
        describe(&e).contains("SEAT_TAKEN: seat 4B is taken"),
        "{}",
        describe(&e)
    );
    JsFuture::from(ann.close()).await.unwrap();
    JsFuture::from(bob.close()).await.unwrap();
}

#[wasm_bindgen_test]
async fn the_js_api_opens_books_and_restores_offline() {
    let url = server_ws_url().await;
    let stream = format!("seats/{}", unique("js"));
    let db = unique("db-js");
    let app = open(url.clone(), stream.clone(), db.clone()).await.unwrap();
    let changes = Rc::new(RefCell::new(0u32));
    let c = changes.clone();
    let on_change = Closure::<dyn Fn()>::new(move || *c.borrow_mut() += 1);
    let unsubscribe = app.on_change(on_change.as_ref().clone().unchecked_into());
    app.book("1A", "cy").unwrap();
    assert_eq!(*changes.borrow(), 1, "listeners run before book returns");
    unsubscribe.call0(&JsValue::UNDEFINED).unwrap();
    app.book("1B", "cy").unwrap();
    assert_eq!(*changes.borrow(), 1, "unsubscribed");
    within(10_000, "synced", app.synced()).await.unwrap();
    JsFuture::from(app.close()).await.unwrap();

    // A bad stream name is refused with the store's code.
    let e = match open(url.clone(), "bad name!".into(), db.clone()).await {
        Err(e) => e,
        Ok(_) => panic!("a bad stream name opened"),
    };
    assert_eq!(get(&e, "code").as_string().unwrap(), "INVALID_STREAM");

    // Reopened offline: the seats come from IndexedDB alone.
    let mut o = opts(&url, &stream, &db);
    o.connect = false;
    let again = SeatsApp::open_with(o).await.unwrap();
    assert_eq!(seats(&again), r#"{"seats":{"1A":"cy","1B":"cy"}}"#);
    assert_eq!(get(&again.status(), "offset").as_f64(), Some(2.0));
    JsFuture::from(again.close()).await.unwrap();
}
