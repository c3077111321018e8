//! Stores against a real `logsync-server` (started and stopped through the
//! server-control harness), in headless Chromium with real IndexedDB and
//! real WebSockets. The harness starts the server with
//! `--max-payload-bytes 1024` (see scripts/test-wasm.sh).
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

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Options for tabs that connect on their own (as where Web Locks are
/// missing).
const ALONE: &str = r#","shareConnection":false"#;

/// Two tabs on one new database and stream, with `extra` options.
struct TwoTabs {
    url: String,
    stream: String,
    db: String,
    a: JsValue,
    b: JsValue,
}

/// Two tabs (`extra` options) on a new database and a new stream named
/// after `prefix`, both at offset 1 after tab a's intent "old".
async fn two_tabs_at_offset_one(prefix: &str, extra: &str) -> TwoTabs {
    let url = server_start().await;
    let stream = unique(prefix);
    let db = unique("db");
    let a = open(options(&url, &stream, &db, extra)).await;
    let b = open(options(&url, &stream, &db, extra)).await;
    add(&a, "old");
    synced(&a, 20_000).await;
    wait_for(T, "both tabs at offset 1", || {
        status_num(&a, "offset") == 1.0 && status_num(&b, "offset") == 1.0
    })
    .await;
    TwoTabs {
        url,
        stream,
        db,
        a,
        b,
    }
}

#[wasm_bindgen_test]
async fn dispatch_while_the_server_is_down_reaches_the_log_once() {
    let url = server_ws_url().await;
    server_stop().await;
    let stream = unique("down");
    let store = open(options(&url, &stream, &unique("db"), "")).await;
    let want = ids("d", 3);
    for id in &want {
        add(&store, id);
    }
    assert_eq!(items(&store), want, "applied at once, offline");
    assert_eq!(status_num(&store, "pending"), 3.0);
    assert_eq!(status(&store, "online"), JsValue::FALSE);

    server_start().await;
    synced(&store, 20_000).await;
    assert_eq!(status(&store, "online"), JsValue::TRUE);
    assert_eq!(status_num(&store, "offset"), 3.0, "confirmed");
    assert_eq!(status_num(&store, "head"), 3.0);
    assert_eq!(items(&store), want);
    assert_exactly_once(&log_entries(&stream).await, &want);

    // Another device sees the same log.
    let other = open(options(&url, &stream, &unique("db"), "")).await;
    wait_for(T, "the second device catches up", || {
        status_num(&other, "offset") == 3.0
    })
    .await;
    assert_eq!(items(&other), want);
    close(&other).await;
    close(&store).await;
}

#[wasm_bindgen_test]
async fn two_devices_converge() {
    let url = server_start().await;
    let stream = unique("converge");
    let a = open(options(&url, &stream, &unique("db-a"), "")).await;
    let b = open(options(&url, &stream, &unique("db-b"), "")).await;
    wait_for(T, "both online", || {
        status(&a, "online") == JsValue::TRUE && status(&b, "online") == JsValue::TRUE
    })
    .await;
    let (ia, ib) = (ids("a", 25), ids("b", 25));
    for i in 0..25 {
        add(&a, &ia[i]);
        add(&b, &ib[i]);
        if i % 7 == 0 {
            sleep(5).await; // let frames interleave
        }
    }
    synced(&a, 20_000).await;
    synced(&b, 20_000).await;
    wait_for(T, "both at offset 50", || {
        status_num(&a, "offset") == 50.0 && status_num(&b, "offset") == 50.0
    })
    .await;
    assert_eq!(items(&a), items(&b), "same state");
    let all: Vec<String> = ia.iter().chain(ib.iter()).cloned().collect();
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &all);
    // The state is the log folded in order.
    let logged: Vec<String> = entries.iter().map(|e| e.2.clone()).collect();
    assert_eq!(items(&a), logged);
    // Each device's own intents keep their dispatch order in the log.
    let a_order: Vec<&String> = logged.iter().filter(|id| id.starts_with('a')).collect();
    assert_eq!(a_order, ia.iter().collect::<Vec<_>>());
    close(&a).await;
    close(&b).await;
}

#[wasm_bindgen_test]
async fn closed_with_pending_intents_and_server_down_then_reopened() {
    let url = server_ws_url().await;
    server_stop().await;
    let stream = unique("reopen");
    let db = unique("db");
    let store = open(options(&url, &stream, &db, "")).await;
    let want = ids("r", 5);
    for id in &want {
        add(&store, id);
    }
    close(&store).await;

    let again = open(options(&url, &stream, &db, "")).await;
    assert_eq!(items(&again), want, "state back from IndexedDB");
    assert_eq!(
        status_num(&again, "pending"),
        5.0,
        "outbox back from IndexedDB"
    );
    let (_, outbox) = raw_get_all(&db, "outbox").await;
    assert_eq!(outbox.length(), 5);

    server_start().await;
    synced(&again, 20_000).await;
    assert_eq!(status_num(&again, "offset"), 5.0);
    assert_exactly_once(&log_entries(&stream).await, &want);
    let (_, outbox) = raw_get_all(&db, "outbox").await;
    assert_eq!(outbox.length(), 0, "confirmed intents leave the outbox");
    close(&again).await;
}

#[wasm_bindgen_test]
async fn rejected_intent_is_rolled_back_and_reported() {
    let url = server_start().await;
    let stream = unique("reject");
    // Offline, the store does not know this server's limit yet (it takes
    // what a default server does), so an action over the server's
    // --max-payload-bytes 1024 is applied; once connected it is withdrawn
    // and the refusal is stored by the server. (Online, dispatch refuses
    // it before applying it: tests/limits.rs.)
    let store = open(options(&url, &stream, &unique("db"), r#","connect":false"#)).await;
    let (rec, rejections) = recorder();
    call(&store, "onRejected", &[rec.into()]).unwrap();
    let (states, state_log) = recorder();
    call(&store, "subscribe", &[states.into()]).unwrap();

    add(&store, "small-1");
    let big = "x".repeat(2000);
    add(&store, &big);
    add(&store, "small-2");
    assert_eq!(
        items(&store).len(),
        3,
        "optimistic until the server answers"
    );
    call(&store, "reconnect", &[]).unwrap();
    synced(&store, 20_000).await;

    assert_eq!(items(&store), vec!["small-1", "small-2"], "rolled back");
    assert_eq!(rejections.borrow().len(), 1);
    let r = rejections.borrow()[0].clone();
    assert_eq!(
        get(&r, "code").as_string().as_deref(),
        Some("PAYLOAD_TOO_LARGE")
    );
    assert_eq!(get(&get(&r, "action"), "id").as_string(), Some(big.clone()));
    assert!(!get(&r, "message").as_string().unwrap().is_empty());
    // A rejection is an answer about one intent, not a problem of the
    // store: it goes to onRejected, and the status shows no problem.
    assert_eq!(last_error_code(&store), None);
    assert!(
        state_log.borrow().len() >= 4,
        "the rollback notified subscribers"
    );
    assert_exactly_once(
        &log_entries(&stream).await,
        &["small-1".into(), "small-2".into()],
    );
    assert_eq!(status_num(&store, "offset"), 2.0);
    close(&store).await;
}

#[wasm_bindgen_test]
async fn server_restart_during_a_session_misses_nothing() {
    let url = server_start().await;
    let stream = unique("restart");
    let a = open(options(&url, &stream, &unique("db-a"), "")).await;
    let b = open(options(&url, &stream, &unique("db-b"), "")).await;
    let onlines = std::rc::Rc::new(std::cell::RefCell::new(Vec::<bool>::new()));
    let (a2, o2) = (a.clone(), onlines.clone());
    let watch = Closure::<dyn Fn()>::new(move || {
        o2.borrow_mut().push(status(&a2, "online") == JsValue::TRUE);
    });
    call(&a, "onStatus", &[watch.as_ref().clone()]).unwrap();
    let mut want = Vec::new();
    for id in ids("before", 5) {
        add(&a, &id);
        want.push(id);
    }
    synced(&a, 20_000).await;

    server_kill().await;
    wait_for(T, "a notices the server is gone", || {
        status(&a, "online") == JsValue::FALSE
    })
    .await;
    for id in ids("during-a", 3) {
        add(&a, &id);
        want.push(id);
    }
    for id in ids("during-b", 3) {
        add(&b, &id);
        want.push(id);
    }
    server_start().await;
    synced(&a, 20_000).await;
    synced(&b, 20_000).await;
    for id in ids("after-b", 4) {
        add(&b, &id);
        want.push(id);
    }
    synced(&b, 20_000).await;
    wait_for(T, "both reach offset 15", || {
        status_num(&a, "offset") == 15.0 && status_num(&b, "offset") == 15.0
    })
    .await;
    assert_eq!(items(&a), items(&b));
    assert_exactly_once(&log_entries(&stream).await, &want);
    let logged: Vec<String> = log_entries(&stream)
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(items(&a), logged, "a folded every event, in log order");
    // Online, then offline (kill), then online again, all reported.
    let seen = onlines.borrow().clone();
    let went_off = seen.iter().position(|o| !o).expect("an offline status");
    assert!(seen[went_off..].iter().any(|o| *o), "back online: {seen:?}");
    close(&a).await;
    close(&b).await;
    drop(watch);
}

#[wasm_bindgen_test]
async fn two_tabs_on_one_database_lose_and_duplicate_nothing() {
    let url = server_start().await;
    let stream = unique("tabs");
    let db = unique("db");
    let t1 = open(options(&url, &stream, &db, "")).await;
    let t2 = open(options(&url, &stream, &db, "")).await;
    assert_eq!(
        status(&t1, "clientId"),
        status(&t2, "clientId"),
        "one client per database"
    );
    let (i1, i2) = (ids("t1-", 30), ids("t2-", 30));
    for i in 0..30 {
        add(&t1, &i1[i]);
        add(&t2, &i2[i]);
        if i % 5 == 0 {
            sleep(3).await;
        }
    }
    // A third tab opened mid-way sees both tabs' pending intents.
    let t3 = open(options(&url, &stream, &db, "")).await;
    synced(&t1, 30_000).await;
    synced(&t2, 30_000).await;
    synced(&t3, 30_000).await;
    wait_for(T, "all tabs at offset 60", || {
        [&t1, &t2, &t3]
            .iter()
            .all(|t| status_num(t, "offset") == 60.0)
    })
    .await;
    let all: Vec<String> = i1.iter().chain(i2.iter()).cloned().collect();
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &all);
    let mut seqs: Vec<u64> = entries.iter().map(|e| e.1).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=60).collect::<Vec<u64>>(),
        "seqs 1..60, each once"
    );
    assert_eq!(items(&t1), items(&t2));
    assert_eq!(items(&t1), items(&t3));
    for t in [&t1, &t2, &t3] {
        close(t).await;
    }
}

#[wasm_bindgen_test]
async fn snapshots_bound_what_a_restart_reads() {
    let url = server_start().await;
    let stream = unique("snap");
    let db = unique("db");
    let store = open(options(&url, &stream, &db, r#","snapshotEvery":10"#)).await;
    let want = ids("s", 35);
    for id in &want {
        add(&store, id);
        sleep(1).await; // several Events frames, several transactions
    }
    synced(&store, 20_000).await;
    wait_for(T, "offset 35", || status_num(&store, "offset") == 35.0).await;
    close(&store).await;

    let (keys, snaps) = raw_get_all(&db, "snapshots").await;
    assert_eq!(keys.length(), 1);
    let snap_offset = get(&snaps.get(0), "offset").as_f64().unwrap();
    assert!(
        snap_offset >= 30.0,
        "a snapshot every 10 events: at {snap_offset}"
    );
    let (event_keys, _) = raw_get_all(&db, "events").await;
    assert_eq!(
        event_keys.length() as f64,
        35.0 - snap_offset,
        "only the events after the snapshot are kept"
    );

    // Offline reopen: snapshot + later events give the same state.
    let again = open(options(&url, &stream, &db, r#","connect":false"#)).await;
    assert_eq!(items(&again), want);
    assert_eq!(status_num(&again, "offset"), 35.0);
    assert_eq!(status_num(&again, "pending"), 0.0);
    close(&again).await;
}

/// A confirmed state IndexedDB cannot clone (a function in it): no
/// snapshot is stored, that is reported, and the events it would have
/// covered are kept, so a restart rebuilds the same state from them.
#[wasm_bindgen_test]
async fn a_state_that_cannot_be_stored_keeps_its_events() {
    let url = server_start().await;
    let stream = unique("unclonable");
    let db = unique("db");
    let reducer = make_fn(
        "state, action",
        "if (action.type !== 'add') return state;
         const items = [...state.items, action.id];
         return items.length >= 3 ? { items, f() {} } : { items };",
    );
    let opts = options(&url, &stream, &db, r#","snapshotEvery":4"#);
    let store = open_with(opts, reducer.clone()).await;
    let (rec, errors) = recorder();
    call(&store, "onError", &[rec.into()]).unwrap();
    let want = ids("u", 10);
    for id in &want {
        add(&store, id);
    }
    synced(&store, 20_000).await;
    wait_for(T, "offset 10", || status_num(&store, "offset") == 10.0).await;
    wait_for(T, "the refused snapshot reported", || {
        errors
            .borrow()
            .iter()
            .any(|e| describe(e).contains("cannot store a snapshot of the state"))
    })
    .await;
    close(&store).await;

    let (snapshots, _) = raw_get_all(&db, "snapshots").await;
    assert_eq!(snapshots.length(), 0, "no snapshot could be stored");
    let (events, _) = raw_get_all(&db, "events").await;
    assert_eq!(events.length(), 10, "every confirmed event is kept");

    let opts = options(&url, &stream, &db, r#","connect":false"#);
    let again = open_with(opts, reducer).await;
    assert_eq!(items(&again), want);
    assert_eq!(status_num(&again, "offset"), 10.0);
    close(&again).await;
}

#[wasm_bindgen_test]
async fn corrupt_records_are_reported_and_healed_from_the_server() {
    let url = server_start().await;
    let stream = unique("corrupt");
    let db = unique("db");
    let store = open(options(&url, &stream, &db, "")).await;
    let want = ids("c", 12);
    for id in &want {
        add(&store, id);
    }
    synced(&store, 20_000).await;
    wait_for(T, "offset 12", || status_num(&store, "offset") == 12.0).await;
    close(&store).await;

    // Event 5 becomes unreadable; an unreadable outbox record appears too.
    let key = |n: f64| -> JsValue { js_sys::Array::of2(&stream.as_str().into(), &n.into()).into() };
    raw_put(&db, "events", key(5.0), JsValue::from_str("not an event")).await;
    raw_put(&db, "outbox", key(99.0), JsValue::from_str("not an intent")).await;

    // Offline first: the store opens with what it can trust (events 1-4)
    // and says what it could not read.
    let offline = open(options(&url, &stream, &db, r#","connect":false"#)).await;
    assert_eq!(last_error_code(&offline).as_deref(), Some("STORAGE"));
    let message = get(&status(&offline, "lastError"), "message")
        .as_string()
        .unwrap();
    assert!(message.contains("unreadable"), "{message}");
    assert_eq!(status_num(&offline, "offset"), 4.0);
    assert_eq!(items(&offline), want[..4].to_vec());
    close(&offline).await;

    // Online: error listeners added right after open hear about it, and
    // the server sends the rest again.
    let healed = open(options(&url, &stream, &db, "")).await;
    let (rec, errors) = recorder();
    call(&healed, "onError", &[rec.into()]).unwrap();
    wait_for(T, "healed to offset 12", || {
        status_num(&healed, "offset") == 12.0
    })
    .await;
    wait_for(T, "errors reported", || errors.borrow().len() >= 2).await;
    for e in errors.borrow().iter() {
        assert_eq!(get(e, "name").as_string().as_deref(), Some("LogsyncError"));
        assert_eq!(get(e, "code").as_string().as_deref(), Some("STORAGE"));
    }
    assert_eq!(items(&healed), want);
    close(&healed).await;
}

#[wasm_bindgen_test]
async fn a_quota_refusal_is_reported_and_loses_no_intent() {
    let url = server_start().await;
    let stream = unique("quota");
    let db = unique("db");
    let store = open(options(&url, &stream, &db, "")).await;
    wait_for(T, "online", || status(&store, "online") == JsValue::TRUE).await;
    let (rec, errors) = recorder();
    call(&store, "onError", &[rec.into()]).unwrap();

    // The browser refuses the next three write transactions (aborted, as
    // it does when the quota is used up): the outbox write of these
    // intents must be retried, and they must not be sent before it lands.
    sync_wasm::testing::fail_next_writes(&db, "QuotaExceededError", 3);
    let want = ids("q", 2);
    for id in &want {
        add(&store, id);
    }
    assert_eq!(items(&store), want, "state kept");
    wait_for(T, "quota errors reported", || !errors.borrow().is_empty()).await;
    // The third refusal comes at least 600 ms after the first (retries at
    // 200, 400, 800 ms): until the outbox write lands nothing may be sent.
    let early_log = log_entries(&stream).await;
    if errors.borrow().len() < 3 {
        assert!(
            early_log.is_empty(),
            "sent before its outbox write landed: {early_log:?}"
        );
    }
    let e = errors.borrow()[0].clone();
    assert_eq!(
        get(&e, "code").as_string().as_deref(),
        Some("QUOTA_EXCEEDED"),
        "{}",
        describe(&e)
    );
    assert!(get(&e, "message").as_string().unwrap().contains("quota"));
    synced(&store, 20_000).await;
    assert!(errors.borrow().len() >= 3, "each refusal reported");
    assert_exactly_once(&log_entries(&stream).await, &want);
    assert_eq!(items(&store), want);
    sync_wasm::testing::clear_faults();
    close(&store).await;
}

#[wasm_bindgen_test]
async fn a_malformed_server_frame_is_reported_and_the_state_kept() {
    let stream = unique("malformed");
    let db = unique("db");
    let store = open(options(&malformed_ws_url(), &stream, &db, "")).await;
    let (rec, errors) = recorder();
    call(&store, "onError", &[rec.into()]).unwrap();
    add(&store, "kept");
    wait_for(T, "a MALFORMED_FRAME error", || {
        errors
            .borrow()
            .iter()
            .any(|e| get(e, "code").as_string().as_deref() == Some("MALFORMED_FRAME"))
    })
    .await;
    assert_eq!(last_error_code(&store).as_deref(), Some("MALFORMED_FRAME"));
    assert_eq!(status(&store, "online"), JsValue::FALSE);
    assert_eq!(items(&store), vec!["kept"]);
    assert_eq!(status_num(&store, "pending"), 1.0);
    close(&store).await;

    // The intent is still in the outbox: a store on a good server sends it.
    let url = server_start().await;
    let good = open(options(&url, &stream, &db, "")).await;
    synced(&good, 20_000).await;
    assert_exactly_once(&log_entries(&stream).await, &["kept".into()]);
    close(&good).await;
}

#[wasm_bindgen_test]
async fn go_offline_and_reconnect() {
    let url = server_start().await;
    let stream = unique("manual");
    let db = unique("db");
    // Every WebSocket frame this page sends, counted (the store's socket
    // calls `send` on the instance, so the prototype's is the one it gets).
    js_sys::eval(
        "(() => { const send = WebSocket.prototype.send; globalThis.__logsyncSend = send; \
         globalThis.__logsyncSent = 0; \
         WebSocket.prototype.send = function (d) { globalThis.__logsyncSent++; return send.call(this, d); }; })()",
    )
    .unwrap();
    let sent = || {
        js_sys::eval("globalThis.__logsyncSent")
            .unwrap()
            .as_f64()
            .unwrap()
    };
    let store = open(options(&url, &stream, &db, "")).await;
    wait_for(T, "online", || status(&store, "online") == JsValue::TRUE).await;
    call(&store, "goOffline", &[]).unwrap();
    assert_eq!(status(&store, "online"), JsValue::FALSE);
    let sent_before = sent();
    add(&store, "held");
    // The dispatch is done once its outbox record is durable: an online
    // store sends the push right when that write completes, before this
    // read (queued behind the write) can see the record.
    let start = js_sys::Date::now();
    while raw_get_all(&db, "outbox").await.1.length() == 0 {
        assert!(
            js_sys::Date::now() - start < T,
            "the dispatch was not stored"
        );
        sleep(20).await;
    }
    assert_eq!(sent(), sent_before, "nothing is sent while offline");
    assert_eq!(status_num(&store, "pending"), 1.0);
    assert!(log_entries(&stream).await.is_empty());
    js_sys::eval("WebSocket.prototype.send = globalThis.__logsyncSend").unwrap();
    call(&store, "reconnect", &[]).unwrap();
    synced(&store, 20_000).await;
    assert_exactly_once(&log_entries(&stream).await, &["held".into()]);
    let p: js_sys::Promise = call(&store, "synced", &[]).unwrap().unchecked_into();
    within(1000, "synced when nothing is pending", p)
        .await
        .unwrap();
    close(&store).await;
}

#[wasm_bindgen_test]
async fn the_heartbeat_drops_a_silent_connection_and_keeps_a_live_one() {
    // A peer that accepts the connection and never answers: without a
    // heartbeat the store would wait on it forever.
    let before = broken_peer_connections("silent").await;
    let silent = open(options(
        &silent_ws_url(),
        &unique("silent"),
        &unique("db"),
        r#","heartbeatMs":100"#,
    ))
    .await;
    let start = js_sys::Date::now();
    while broken_peer_connections("silent").await < before + 3 {
        assert!(
            js_sys::Date::now() - start < T,
            "the store did not give up on a silent connection"
        );
        sleep(50).await;
    }
    assert_eq!(status(&silent, "online"), JsValue::FALSE);
    close(&silent).await;

    // A live server answers the pings: an idle connection stays up although
    // two silent periods (200 ms) are much shorter than the observation.
    // Every WebSocket frame this page receives is counted (the store's
    // socket sets `onmessage` on the instance, through the prototype).
    js_sys::eval(
        "(() => { const d = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage'); \
         globalThis.__logsyncOnMessage = d; globalThis.__logsyncReceived = 0; \
         Object.defineProperty(WebSocket.prototype, 'onmessage', { configurable: true, get: d.get, \
         set(f) { d.set.call(this, f && function (e) { globalThis.__logsyncReceived++; return f.call(this, e); }); } }); })()",
    )
    .unwrap();
    let url = server_start().await;
    let live = open(options(
        &url,
        &unique("live"),
        &unique("db"),
        r#","heartbeatMs":100"#,
    ))
    .await;
    wait_for(T, "online", || status(&live, "online") == JsValue::TRUE).await;
    let drops = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let (l, d) = (live.clone(), drops.clone());
    let watch = Closure::<dyn Fn()>::new(move || {
        if status(&l, "online") == JsValue::FALSE {
            d.set(d.get() + 1);
        }
    });
    call(&live, "onStatus", &[watch.as_ref().clone()]).unwrap();
    // The observation window is counted in heartbeat round trips, not
    // waited out: on this idle connection (an empty stream, no writers)
    // the frames that arrive are the server's Pongs to the store's
    // heartbeat Pings, besides at most one answer to the subscription.
    // Ten more frames span at least four silent periods of 200 ms, each of
    // which would have dropped the connection had the pongs not kept it.
    let received = || {
        js_sys::eval("globalThis.__logsyncReceived")
            .unwrap()
            .as_f64()
            .unwrap()
    };
    let before = received();
    wait_for(T, "ten heartbeat round trips", || {
        received() >= before + 10.0
    })
    .await;
    js_sys::eval(
        "Object.defineProperty(WebSocket.prototype, 'onmessage', globalThis.__logsyncOnMessage)",
    )
    .unwrap();
    assert_eq!(drops.get(), 0, "a live connection was dropped");
    assert_eq!(status(&live, "online"), JsValue::TRUE);
    close(&live).await;
    drop(watch);
}

#[wasm_bindgen_test]
async fn the_browser_online_and_offline_events_are_followed() {
    let url = server_start().await;
    let stream = unique("events");
    // Backoff of 30-60 s: only the `online` event can bring it back quickly.
    let store = open(options(
        &url,
        &stream,
        &unique("db"),
        r#","backoffMinMs":60000,"backoffMaxMs":60000"#,
    ))
    .await;
    wait_for(T, "online", || status(&store, "online") == JsValue::TRUE).await;
    js_sys::eval("dispatchEvent(new Event('offline'))").unwrap();
    wait_for(T, "offline after the offline event", || {
        status(&store, "online") == JsValue::FALSE
    })
    .await;
    add(&store, "while-offline");
    js_sys::eval("dispatchEvent(new Event('online'))").unwrap();
    synced(&store, 5_000).await;
    assert_eq!(status(&store, "online"), JsValue::TRUE);
    assert_exactly_once(&log_entries(&stream).await, &["while-offline".into()]);
    close(&store).await;
}

#[wasm_bindgen_test]
async fn a_server_with_a_new_epoch_resets_the_history_and_keeps_pending_intents() {
    let url = server_start().await;
    let stream = unique("epoch");
    let db = unique("db");
    let store = open(options(&url, &stream, &db, "")).await;
    let (rec, errors) = recorder();
    call(&store, "onError", &[rec.into()]).unwrap();
    for id in ids("old", 3) {
        add(&store, &id);
    }
    synced(&store, 20_000).await;
    wait_for(T, "offset 3", || status_num(&store, "offset") == 3.0).await;

    // The server comes back with an empty database: another log.
    server_reset().await;
    wait_for(T, "offline", || status(&store, "online") == JsValue::FALSE).await;
    add(&store, "p1");
    add(&store, "p2");
    server_start().await;
    wait_for(T, "an EPOCH_CHANGED error", || {
        errors
            .borrow()
            .iter()
            .any(|e| get(e, "code").as_string().as_deref() == Some("EPOCH_CHANGED"))
    })
    .await;
    synced(&store, 20_000).await;
    assert_eq!(
        items(&store),
        vec!["p1", "p2"],
        "the old history is gone, pending intents kept"
    );
    assert_eq!(status_num(&store, "offset"), 2.0);
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &["p1".into(), "p2".into()]);
    assert_eq!(
        entries.iter().map(|e| e.1).collect::<Vec<_>>(),
        vec![1, 2],
        "renumbered from seq 1"
    );
    close(&store).await;

    // Storage was rewritten for the new log.
    let again = open(options(&url, &stream, &db, r#","connect":false"#)).await;
    assert_eq!(items(&again), vec!["p1", "p2"]);
    assert_eq!(status_num(&again, "offset"), 2.0);
    close(&again).await;
}

#[wasm_bindgen_test]
async fn an_epoch_reset_with_two_tabs_keeps_every_tabs_intent() {
    let TwoTabs { stream, a, b, .. } = two_tabs_at_offset_one("epoch-tabs", "").await;

    // The server comes back with an empty database while each tab holds
    // an intent of its own, written to the shared outbox.
    server_reset().await;
    wait_for(T, "both offline", || {
        status(&a, "online") == JsValue::FALSE && status(&b, "online") == JsValue::FALSE
    })
    .await;
    add(&a, "from-a");
    add(&b, "from-b");
    wait_for(T, "both outbox writes done", || {
        let seq = |s: &JsValue| {
            let p = call(s, "pending", &[]).unwrap();
            js_sys::Array::from(&p)
                .iter()
                .all(|x| get(&x, "seq").as_f64().is_some())
        };
        seq(&a) && seq(&b)
    })
    .await;
    server_start().await;
    synced(&a, 20_000).await;
    synced(&b, 20_000).await;
    wait_for(T, "both tabs at offset 2", || {
        status_num(&a, "offset") == 2.0 && status_num(&b, "offset") == 2.0
    })
    .await;
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &["from-a".into(), "from-b".into()]);
    let mut seqs: Vec<u64> = entries.iter().map(|e| e.1).collect();
    seqs.sort();
    assert_eq!(seqs, vec![1, 2], "one numbering for both tabs, from seq 1");
    let mut got = items(&a);
    got.sort();
    assert_eq!(got, vec!["from-a", "from-b"]);
    assert_eq!(items(&a), items(&b));
    close(&a).await;
    close(&b).await;
}

#[wasm_bindgen_test]
async fn an_epoch_reset_after_another_tab_wrote_keeps_every_intent() {
    // Tab b writes its intent first, then tab a (which finds b's entry
    // below its seq). a meets the new epoch first; b, which never read
    // a's entry, meets it after a has pushed both.
    let TwoTabs { stream, a, b, .. } = two_tabs_at_offset_one("epoch-order", "").await;
    call(&a, "goOffline", &[]).unwrap();
    call(&b, "goOffline", &[]).unwrap();
    server_reset().await;
    server_start().await;
    let has_seq = |s: &JsValue| {
        let p = call(s, "pending", &[]).unwrap();
        let p = js_sys::Array::from(&p);
        p.length() > 0 && p.iter().all(|x| get(&x, "seq").as_f64().is_some())
    };
    add(&b, "from-b");
    wait_for(T, "b's outbox write done", || has_seq(&b)).await;
    add(&a, "from-a");
    wait_for(T, "a's outbox write done", || has_seq(&a)).await;

    call(&a, "reconnect", &[]).unwrap();
    synced(&a, 20_000).await;
    call(&b, "reconnect", &[]).unwrap();
    synced(&b, 20_000).await;
    wait_for(T, "both tabs at offset 2", || {
        status_num(&a, "offset") == 2.0 && status_num(&b, "offset") == 2.0
    })
    .await;
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &["from-a".into(), "from-b".into()]);
    assert_eq!(entries.len(), 2, "nothing else in the new log: {entries:?}");
    let mut got = items(&a);
    got.sort();
    assert_eq!(got, vec!["from-a", "from-b"]);
    assert_eq!(items(&a), items(&b));
    close(&a).await;
    close(&b).await;
}

#[wasm_bindgen_test]
async fn a_tab_still_in_the_old_epoch_writes_after_another_tab_reset() {
    // Tab a meets the new epoch and resets the shared storage; tab b,
    // offline and still numbering in the old epoch, then writes an
    // intent, and a writes one after it. Each is in the new log once.
    // (Tabs that connect on their own, as where Web Locks are missing: a
    // tab following a's connection would have its intent pushed by a.)
    let TwoTabs { stream, a, b, .. } = two_tabs_at_offset_one("epoch-late", ALONE).await;
    call(&a, "goOffline", &[]).unwrap();
    call(&b, "goOffline", &[]).unwrap();
    server_reset().await;
    server_start().await;
    call(&a, "reconnect", &[]).unwrap();
    wait_for(T, "a online in the new epoch", || {
        status(&a, "online") == JsValue::TRUE && status_num(&a, "offset") == 0.0
    })
    .await;
    let has_seq = |s: &JsValue| {
        let p = call(s, "pending", &[]).unwrap();
        let p = js_sys::Array::from(&p);
        p.length() > 0 && p.iter().all(|x| get(&x, "seq").as_f64().is_some())
    };
    add(&b, "from-b");
    wait_for(T, "b's outbox write done", || has_seq(&b)).await;
    add(&a, "from-a");
    synced(&a, 20_000).await;
    call(&b, "reconnect", &[]).unwrap();
    synced(&b, 20_000).await;
    wait_for(T, "both tabs at offset 2", || {
        status_num(&a, "offset") == 2.0 && status_num(&b, "offset") == 2.0
    })
    .await;
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &["from-a".into(), "from-b".into()]);
    assert_eq!(entries.len(), 2, "nothing else in the new log: {entries:?}");
    assert_eq!(items(&a), items(&b));
    close(&a).await;
    close(&b).await;
}

/// Two tabs on one database, with no server: a dispatch in one shows in
/// the other's state at once (its notice makes the other tab read the
/// outbox), adopted there and not counted as that tab's own; once online,
/// each intent is in the log once.
#[wasm_bindgen_test]
async fn another_tabs_dispatch_shows_at_once_offline() {
    let url = server_start().await;
    let stream = unique("tabs-now");
    let db = unique("db");
    let offline = r#","connect":false"#;
    let t1 = open(options(&url, &stream, &db, offline)).await;
    let t2 = open(options(&url, &stream, &db, offline)).await;
    add(&t1, "from-t1");
    wait_for(T, "t2 to show t1's intent", || items(&t2) == ["from-t1"]).await;
    assert_eq!(status_num(&t2, "pending"), 0.0, "adopted, not t2's own");
    add(&t2, "from-t2");
    wait_for(T, "t1 to show t2's intent", || {
        items(&t1) == ["from-t1", "from-t2"]
    })
    .await;
    assert_eq!(items(&t2), ["from-t1", "from-t2"]);
    for t in [&t1, &t2] {
        call(t, "reconnect", &[]).unwrap();
    }
    synced(&t1, 30_000).await;
    synced(&t2, 30_000).await;
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &["from-t1".to_string(), "from-t2".to_string()]);
    for t in [&t1, &t2] {
        close(t).await;
    }
}

/// A stream the server folds and compacts (`--snapshot-every 10
/// --retain-events 5`): a new store cannot get its first events any more;
/// it starts from the server's snapshot, stores it as its own, and
/// reopens from it.
#[wasm_bindgen_test]
async fn a_new_store_boots_from_the_snapshot_of_a_compacted_stream() {
    server_ws_url().await;
    server_stop().await;
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/list.js");
    let url = server_start_with(&format!(
        r#"{{"args":["--reducer","snapboot*={module}","--snapshot-every","10","--retain-events","5"]}}"#
    ))
    .await;
    let stream = unique("snapboot");
    let writer = open(options(&url, &stream, &unique("db"), "")).await;
    let want = ids("s", 40);
    for id in &want {
        add(&writer, id);
    }
    synced(&writer, 20_000).await;
    close(&writer).await;

    let db = unique("db");
    let fresh = open(options(&url, &stream, &db, "")).await;
    wait_for(T, "the new store at offset 40", || {
        status_num(&fresh, "offset") >= 40.0
    })
    .await;
    assert_eq!(
        items(&fresh),
        want,
        "the snapshot and the events after it; status {}",
        stringify(&call(&fresh, "status", &[]).unwrap())
    );
    assert_eq!(status_num(&fresh, "offset"), 40.0);
    close(&fresh).await;
    let (_, snaps) = raw_get_all(&db, "snapshots").await;
    assert_eq!(snaps.length(), 1, "the server's snapshot is stored");
    let at = get(&snaps.get(0), "offset").as_f64().unwrap();
    assert!((30.0..=40.0).contains(&at), "snapshot at {at}");
    let (keys, _) = raw_get_all(&db, "events").await;
    for k in keys.iter() {
        let offset = js_sys::Array::from(&k).get(1).as_f64().unwrap();
        assert!(
            offset > at,
            "event {offset} under the snapshot at {at} stored"
        );
    }

    // Offline, it opens from its own snapshot.
    server_stop().await;
    let again = open(options(&url, &stream, &db, "")).await;
    assert_eq!(items(&again), want, "opened from storage");
    close(&again).await;
    server_start().await;
}

/// A store whose reducer is not deterministic (it folds a random number
/// into the state for one action) against a server that folds the stream
/// with the deterministic module and stores a snapshot every 5 events:
/// at the first snapshot after that action the store's fold hashes
/// otherwise, it reports DIVERGED (onError and status.lastError), takes
/// the server's snapshot in place of its confirmed state, keeps it in
/// IndexedDB, and the problem is over at the next snapshot that agrees.
#[wasm_bindgen_test]
async fn a_store_whose_fold_diverges_reports_it_and_takes_the_servers_snapshot() {
    server_ws_url().await;
    server_stop().await;
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/list.js");
    let url = server_start_with(&format!(
        r#"{{"args":["--reducer","drift*={module}","--snapshot-every","5"]}}"#
    ))
    .await;
    let stream = unique("drift");
    let db = unique("db");
    let reader = open_with(options(&url, &stream, &db, ""), drifting_list_reducer()).await;
    let (rec, errors) = recorder();
    call(&reader, "onError", &[rec.into()]).unwrap();
    let writer = open(options(&url, &stream, &unique("db"), "")).await;
    // Up to the first snapshot, at 5.
    let mut want = vec!["odd".to_string()];
    want.extend(ids("d", 4));
    for id in &want {
        add(&writer, id);
        synced(&writer, 20_000).await;
    }
    wait_for(T, "a DIVERGED report", || {
        errors
            .borrow()
            .iter()
            .any(|e| get(e, "code").as_string().as_deref() == Some("DIVERGED"))
    })
    .await;
    assert_eq!(last_error_code(&reader).as_deref(), Some("DIVERGED"));
    let report = errors
        .borrow()
        .iter()
        .find(|e| get(e, "code").as_string().as_deref() == Some("DIVERGED"))
        .cloned()
        .unwrap();
    let text = get(&report, "message").as_string().unwrap();
    assert!(text.contains("offset 5"), "names the offset: {text}");
    // Until the next snapshot, at 10.
    for id in ids("m", 7) {
        add(&writer, &id);
        want.push(id);
        synced(&writer, 20_000).await;
    }
    wait_for(T, "the reader at offset 12", || {
        status_num(&reader, "offset") >= 12.0
    })
    .await;
    let server = server_state(&stream).await;
    assert_eq!(get(&server, "offset").as_f64(), Some(12.0));
    assert_eq!(
        stringify(&call(&reader, "getState", &[]).unwrap()),
        stringify(&get(&server, "state")),
        "the server's state, not the reader's own fold"
    );
    // Later snapshots agree: the problem is over (the report stays in
    // the history).
    for id in ids("e", 5) {
        add(&writer, &id);
        want.push(id);
    }
    synced(&writer, 20_000).await;
    wait_for(T, "the reader at offset 17 and agreeing", || {
        status_num(&reader, "offset") >= 17.0 && last_error_code(&reader).is_none()
    })
    .await;
    assert_eq!(items(&reader), want);
    close(&reader).await;
    close(&writer).await;

    // Offline, it reopens from what it stored: the server's snapshot and
    // the events after it, no noise.
    server_stop().await;
    let again = open_with(options(&url, &stream, &db, ""), drifting_list_reducer()).await;
    assert_eq!(items(&again), want, "opened from storage");
    assert!(
        get(&call(&again, "getState", &[]).unwrap(), "noise").is_undefined(),
        "the stored state is the server's: {}",
        stringify(&call(&again, "getState", &[]).unwrap())
    );
    close(&again).await;
    server_start().await;
}

#[wasm_bindgen_test]
async fn an_events_write_held_across_another_tabs_reset_is_not_stored() {
    // Tab b's write of a confirmed event of the old log waits (held by the
    // test, as a slow transaction) while tab a meets the server's new log
    // and resets the shared storage. When b's write runs, it belongs to a
    // numbering that is gone: it must store nothing (sync-core's
    // `stale_write`), or the old log's event would sit in the new one.
    let TwoTabs {
        url,
        stream,
        db,
        a,
        b,
    } = two_tabs_at_offset_one("epoch-held", ALONE).await;
    call(&a, "goOffline", &[]).unwrap();

    // Another device's event reaches b, whose write of it waits.
    sync_wasm::testing::hold_next_events_write(&db);
    let other = open(options(&url, &stream, &unique("db"), "")).await;
    add(&other, "from-old-log");
    synced(&other, 20_000).await;
    close(&other).await;
    wait_for(T, "b's events write held", || {
        sync_wasm::testing::events_write_held(&db)
    })
    .await;
    assert_eq!(status_num(&b, "offset"), 2.0, "b applied the event");

    // The server comes back with another log; a meets it and resets the
    // shared storage while b's write still waits.
    call(&b, "goOffline", &[]).unwrap();
    server_reset().await;
    server_start().await;
    call(&a, "reconnect", &[]).unwrap();
    wait_for(T, "a online in the new log, its reset stored", || {
        status(&a, "online") == JsValue::TRUE
            && status_num(&a, "offset") == 0.0
            && status_num(&a, "writing") == 0.0
    })
    .await;
    sync_wasm::testing::release_events_write(&db);

    add(&a, "new");
    synced(&a, 20_000).await;
    call(&b, "reconnect", &[]).unwrap();
    synced(&b, 20_000).await;
    wait_for(T, "both tabs at offset 1 of the new log", || {
        status_num(&a, "offset") == 1.0 && status_num(&b, "offset") == 1.0
    })
    .await;
    assert_eq!(items(&a), vec!["new"]);
    assert_eq!(items(&b), vec!["new"]);
    let entries = log_entries(&stream).await;
    assert_exactly_once(&entries, &["new".into()]);
    assert_eq!(entries.len(), 1, "nothing else in the new log: {entries:?}");
    close(&a).await;
    close(&b).await;

    // What is stored is the new log alone.
    let again = open(options(&url, &stream, &db, r#","connect":false"#)).await;
    assert_eq!(items(&again), vec!["new"], "stored: the new log only");
    assert_eq!(status_num(&again, "offset"), 1.0);
    close(&again).await;
}
