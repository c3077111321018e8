//! Tabs of one browser on one store's storage share one connection: one
//! leads (Web Locks) and holds the WebSocket, the others follow it
//! through IndexedDB. Stores of one page stand for tabs here: each asks
//! for the same lock and hears the others on the same `BroadcastChannel`,
//! as tabs do. Against a real `logsync-server`, whose `/metrics` counts
//! the open WebSocket connections.
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const T: f64 = 20_000.0;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn leads(t: &JsValue) -> bool {
    status(t, "leader").as_bool() == Some(true)
}

fn online(t: &JsValue) -> bool {
    status(t, "online").as_bool() == Some(true)
}

/// Waits until the server holds `n` WebSocket connections.
async fn connections_become(n: f64, what: &str) {
    let start = js_sys::Date::now();
    loop {
        let now = server_metric("logsync_connections").await;
        if now == n {
            return;
        }
        if js_sys::Date::now() - start > T {
            panic!("timed out waiting for {what}: the server holds {now} connections, not {n}");
        }
        sleep(20).await;
    }
}

/// Three tabs: one leads and holds the only connection; the followers are
/// online through it; every tab's dispatches reach the log once and every
/// tab shows them all. The server's connection count never goes past one
/// while they work.
#[wasm_bindgen_test]
async fn three_tabs_hold_one_connection_and_see_everything() {
    let url = server_start().await;
    connections_become(0.0, "a quiet server").await;
    let stream = unique("share");
    let db = unique("db");
    let tabs = [
        open(options(&url, &stream, &db, "")).await,
        open(options(&url, &stream, &db, "")).await,
        open(options(&url, &stream, &db, "")).await,
    ];
    wait_for(T, "every tab online", || tabs.iter().all(online)).await;
    assert_eq!(
        tabs.iter().filter(|t| leads(t)).count(),
        1,
        "exactly one leader"
    );
    assert!(leads(&tabs[0]), "the first tab asked first");
    connections_become(1.0, "one connection").await;
    let mut max_connections = 0.0f64;
    for i in 0..10 {
        for (t, tab) in tabs.iter().enumerate() {
            add(tab, &format!("t{t}-{i}"));
        }
        if i % 3 == 0 {
            max_connections = max_connections.max(server_metric("logsync_connections").await);
        }
    }
    for t in &tabs {
        synced(t, 30_000).await;
    }
    wait_for(T, "every tab at offset 30", || {
        tabs.iter().all(|t| status_num(t, "offset") == 30.0)
    })
    .await;
    max_connections = max_connections.max(server_metric("logsync_connections").await);
    assert_eq!(max_connections, 1.0, "one connection while three tabs work");
    let all: Vec<String> = (0..3).flat_map(|t| ids(&format!("t{t}-"), 10)).collect();
    assert_exactly_once(&log_entries(&stream).await, &all);
    assert_eq!(items(&tabs[0]).len(), 30);
    assert_eq!(items(&tabs[0]), items(&tabs[1]));
    assert_eq!(items(&tabs[0]), items(&tabs[2]));
    for t in &tabs {
        close(t).await;
    }
    connections_become(0.0, "no connection once every tab closed").await;
}

/// Stores of several streams on one database share one connection too:
/// each stream's leader talks through the page's hub, frames routed by
/// stream. Three streams, two tabs on the first: one WebSocket carries
/// them all, every dispatch is in its stream's log once, and a stream's
/// store that closes leaves the others live on that connection.
#[wasm_bindgen_test]
async fn streams_of_one_database_share_one_connection() {
    let url = server_start().await;
    connections_become(0.0, "a quiet server").await;
    let db = unique("db");
    let streams = [unique("mux-a"), unique("mux-b"), unique("mux-c")];
    let stores = [
        open(options(&url, &streams[0], &db, "")).await,
        open(options(&url, &streams[0], &db, "")).await,
        open(options(&url, &streams[1], &db, "")).await,
        open(options(&url, &streams[2], &db, "")).await,
    ];
    wait_for(T, "every store online", || stores.iter().all(online)).await;
    connections_become(1.0, "one connection for three streams").await;
    for i in 0..5 {
        for (s, store) in stores.iter().enumerate() {
            add(store, &format!("s{s}-{i}"));
        }
    }
    for s in &stores {
        synced(s, 30_000).await;
    }
    assert_eq!(server_metric("logsync_connections").await, 1.0);
    let first: Vec<String> = ids("s0-", 5).into_iter().chain(ids("s1-", 5)).collect();
    assert_exactly_once(&log_entries(&streams[0]).await, &first);
    assert_exactly_once(&log_entries(&streams[1]).await, &ids("s2-", 5));
    assert_exactly_once(&log_entries(&streams[2]).await, &ids("s3-", 5));
    assert_eq!(items(&stores[0]), items(&stores[1]));
    assert_eq!(items(&stores[2]).len(), 5, "only its own stream's events");
    // The second stream's store leaves: the others go on, on the same
    // connection.
    close(&stores[2]).await;
    add(&stores[3], "s3-after");
    add(&stores[1], "s1-after");
    synced(&stores[3], 30_000).await;
    synced(&stores[1], 30_000).await;
    wait_for(T, "the first stream's tabs see s1-after", || {
        items(&stores[0]).iter().any(|i| i == "s1-after")
    })
    .await;
    assert_eq!(server_metric("logsync_connections").await, 1.0);
    assert_eq!(
        log_entries(&streams[1]).await.len(),
        5,
        "nothing more on the closed one"
    );
    for s in [&stores[0], &stores[1], &stores[3]] {
        close(s).await;
    }
    connections_become(0.0, "no connection once every store closed").await;
}

/// `shareConnection: false`: every tab connects on its own, as where
/// Web Locks are missing.
#[wasm_bindgen_test]
async fn without_sharing_each_tab_connects() {
    let url = server_start().await;
    connections_become(0.0, "a quiet server").await;
    let stream = unique("alone");
    let db = unique("db");
    let off = r#","shareConnection":false"#;
    let t1 = open(options(&url, &stream, &db, off)).await;
    let t2 = open(options(&url, &stream, &db, off)).await;
    wait_for(T, "both online", || online(&t1) && online(&t2)).await;
    assert!(leads(&t1) && leads(&t2), "each holds its own connection");
    connections_become(2.0, "two connections").await;
    close(&t1).await;
    close(&t2).await;
}

/// The leader closes: the follower takes the connection at once (the
/// lock is free), connects from its own stored offset, and goes on; what
/// the old leader pushed is in the log once.
#[wasm_bindgen_test]
async fn a_closed_leader_hands_over_at_once() {
    let url = server_start().await;
    connections_become(0.0, "a quiet server").await;
    let stream = unique("handover");
    let db = unique("db");
    let t1 = open(options(&url, &stream, &db, "")).await;
    let t2 = open(options(&url, &stream, &db, "")).await;
    wait_for(T, "both online", || online(&t1) && online(&t2)).await;
    assert!(leads(&t1) && !leads(&t2));
    for id in ids("a", 5) {
        add(&t1, &id);
        add(&t2, &format!("b-{id}"));
    }
    close(&t1).await;
    let closed_at = js_sys::Date::now();
    wait_for(2_000.0, "the follower to lead and be online", || {
        leads(&t2) && online(&t2)
    })
    .await;
    let took = js_sys::Date::now() - closed_at;
    for id in ids("c", 5) {
        add(&t2, &id);
    }
    synced(&t2, 30_000).await;
    let mut want = ids("a", 5);
    want.extend(ids("a", 5).iter().map(|i| format!("b-{i}")));
    want.extend(ids("c", 5));
    assert_exactly_once(&log_entries(&stream).await, &want);
    assert_eq!(items(&t2).len(), 15);
    connections_become(1.0, "the new leader's connection only").await;
    close(&t2).await;
    console_log!("take-over after close: {took} ms");
}

/// A leader that stops answering (a frozen page, simulated: it keeps its
/// lock and its connection) is taken over after the leader timeout; the
/// old one, running again, finds its lock stolen, drops its connection and
/// follows. Nothing dispatched in either tab is lost or doubled.
#[wasm_bindgen_test]
async fn a_silent_leader_is_taken_over_and_fenced() {
    let url = server_start().await;
    connections_become(0.0, "a quiet server").await;
    let stream = unique("frozen");
    let db = unique("db");
    let fast = r#","leaderTimeoutMs":500"#;
    let t1 = open(options(&url, &stream, &db, fast)).await;
    let t2 = open(options(&url, &stream, &db, fast)).await;
    wait_for(T, "both online", || online(&t1) && online(&t2)).await;
    assert!(leads(&t1));
    sync_wasm::testing::silence_leader(&db, true);
    let silent_at = js_sys::Date::now();
    add(&t2, "during-silence");
    wait_for(5_000.0, "the follower to take over", || {
        leads(&t2) && !leads(&t1)
    })
    .await;
    let took = js_sys::Date::now() - silent_at;
    sync_wasm::testing::silence_leader(&db, false);
    wait_for(T, "the new leader online", || online(&t2)).await;
    connections_become(1.0, "the fenced leader's connection gone").await;
    add(&t1, "from-the-old-leader");
    add(&t2, "from-the-new-leader");
    synced(&t1, 30_000).await;
    synced(&t2, 30_000).await;
    let want: Vec<String> = [
        "during-silence",
        "from-the-old-leader",
        "from-the-new-leader",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_exactly_once(&log_entries(&stream).await, &want);
    wait_for(T, "both at offset 3", || {
        status_num(&t1, "offset") == 3.0 && status_num(&t2, "offset") == 3.0
    })
    .await;
    assert_eq!(items(&t1), items(&t2));
    close(&t1).await;
    close(&t2).await;
    console_log!("take-over of a silent leader: {took} ms");
}

/// Offline (no server at all): a dispatch in one tab shows in the other
/// at once; once a server is there, the leader pushes both tabs' actions,
/// each once.
#[wasm_bindgen_test]
async fn offline_tabs_see_each_other_then_sync_through_the_leader() {
    let url = server_ws_url().await;
    server_stop().await;
    let stream = unique("offline");
    let db = unique("db");
    let t1 = open(options(&url, &stream, &db, "")).await;
    let t2 = open(options(&url, &stream, &db, "")).await;
    wait_for(T, "a leader", || leads(&t1) || leads(&t2)).await;
    add(&t1, "one");
    wait_for(T, "t2 shows t1's action", || items(&t2) == ["one"]).await;
    add(&t2, "two");
    wait_for(T, "t1 shows t2's action", || items(&t1) == ["one", "two"]).await;
    assert!(!online(&t1) && !online(&t2));
    let url2 = server_start().await;
    assert_eq!(url, url2, "the server comes back on its address");
    synced(&t1, 30_000).await;
    synced(&t2, 30_000).await;
    assert_exactly_once(
        &log_entries(&stream).await,
        &["one".to_string(), "two".to_string()],
    );
    close(&t1).await;
    close(&t2).await;
}

const SECRET: &str = "browser-tabs-test-secret-0123456789abcdef";

/// Claims for `sub` reading and writing `pattern`, valid for an hour.
fn claims(sub: &str, pattern: &str) -> String {
    let exp = (js_sys::Date::now() / 1000.0) as u64 + 3600;
    format!(r#"{{"sub":{sub:?},"exp":{exp},"read":[{pattern:?}],"write":[{pattern:?}]}}"#)
}

/// The server refuses the leader's token: the connection goes to the tab
/// waiting for it, whose token is good, and the first tab syncs through
/// it (it asks for the connection again only after `setToken()`).
#[wasm_bindgen_test]
async fn a_leader_whose_token_is_refused_hands_the_connection_over() {
    let url = server_start_with_jwt_secret(SECRET).await;
    let stream = unique("tokens");
    let db = unique("db");
    let good = mint_token(SECRET, &claims("alice", &format!("{stream}*"))).await;
    let forged = mint_token(
        "not-the-server-secret-0123456789abcdef",
        &claims("alice", "*"),
    )
    .await;
    let t1 = open(options(
        &url,
        &stream,
        &db,
        &format!(r#","token":{forged:?}"#),
    ))
    .await;
    let t2 = open(options(
        &url,
        &stream,
        &db,
        &format!(r#","token":{good:?}"#),
    ))
    .await;
    wait_for(
        T,
        "the refused tab to hand over and the other to lead, online",
        || status(&t1, "needsToken") == JsValue::TRUE && leads(&t2) && online(&t2),
    )
    .await;
    assert!(!leads(&t1), "the refused tab follows");
    add(&t1, "from-the-refused-tab");
    add(&t2, "from-the-leader");
    synced(&t1, 30_000).await;
    synced(&t2, 30_000).await;
    // (The log needs a token to read over HTTP: both tabs at offset 2,
    // with both actions confirmed, is each in the log once.)
    wait_for(T, "both tabs at offset 2", || {
        status_num(&t1, "offset") == 2.0 && status_num(&t2, "offset") == 2.0
    })
    .await;
    let mut all = items(&t1);
    all.sort();
    assert_eq!(all, ["from-the-leader", "from-the-refused-tab"]);
    assert_eq!(items(&t1), items(&t2));
    close(&t1).await;
    close(&t2).await;
    // The next tests get the harness's default server.
    server_stop().await;
    server_start().await;
}
