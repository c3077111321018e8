//! The HTTP API: intents and pages as JSON, SSE with resume through
//! `Last-Event-ID`, stream metadata, health, metrics, CORS, static files.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures_util::StreamExt;
use sync_core::ServerMsg;

async fn post_intent(
    s: &TestServer,
    stream_path: &str,
    id: u8,
    seq: u64,
    payload: &str,
) -> serde_json::Value {
    let body = format!(
        r#"{{"client_id":"{}","seq":{seq},"payload":{payload}}}"#,
        client_id(id).to_hex()
    );
    let r = http()
        .post(s.url(&format!("/v1/streams/{stream_path}/intents")))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

async fn get_json(s: &TestServer, path: &str) -> serde_json::Value {
    let r = http().get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    assert_eq!(r.headers()["content-type"], "application/json");
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn intents_pages_and_stream_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    // A stream name with a slash is one percent-encoded path segment.
    let path = "todos%2Fteam-42";
    let v = post_intent(&s, path, 1, 1, r#"{"type": "todo/added",  "text": "milk"}"#).await;
    assert_eq!(v, serde_json::json!({"offset": 1, "duplicate": false}));
    // A resend is the same intent (its payload byte for byte); another
    // payload under the seq is SEQ_REUSED (tests/seq_reused.rs).
    let v = post_intent(&s, path, 1, 1, r#"{"type": "todo/added",  "text": "milk"}"#).await;
    assert_eq!(v, serde_json::json!({"offset": 1, "duplicate": true}));
    post_intent(&s, path, 2, 1, "[1,2,3]").await;
    // A payload that is not JSON, pushed over WebSocket.
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(3)).await;
    c.push("todos/team-42", &[(1, vec![0xff, 0x00])]).await;
    assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));

    let page = get_json(&s, &format!("/v1/streams/{path}/events?after=0")).await;
    assert_eq!(page["head"], 3);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["offset"], 1);
    assert_eq!(events[0]["client_id"], client_id(1).to_hex());
    assert_eq!(events[0]["seq"], 1);
    assert!(events[0]["time_ms"].as_u64().unwrap() > 1_600_000_000_000);
    // The payload is the JSON sent, unchanged.
    assert_eq!(events[0]["payload"]["text"], "milk");
    assert_eq!(events[1]["payload"], serde_json::json!([1, 2, 3]));
    assert_eq!(events[2]["payload_base64"], "/wA=");
    let page = get_json(&s, &format!("/v1/streams/{path}/events?after=1&limit=1")).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["offset"], 2);
    let page = get_json(&s, &format!("/v1/streams/{path}/events?after=3")).await;
    assert_eq!(page, serde_json::json!({"events": [], "head": 3}));

    let meta = get_json(&s, &format!("/v1/streams/{path}")).await;
    assert_eq!(meta["stream"], "todos/team-42");
    assert_eq!(meta["head"], 3);
    let ServerMsg::Welcome { epoch, .. } = Client::hello(&s.ws_url(), client_id(4)).await.1 else {
        unreachable!()
    };
    assert_eq!(meta["epoch"], epoch.0);
    let never = get_json(&s, "/v1/streams/never-written").await;
    assert_eq!(never["head"], 0);
    s.stop().await;
}

/// Reads SSE events from `resp` until `n` have arrived: (id, data JSON).
async fn sse_events(resp: reqwest::Response, n: usize) -> Vec<(u64, serde_json::Value)> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = within("SSE data", body.next()).await.unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<u64>().unwrap());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                out.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

async fn sse(s: &TestServer, path: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .get(s.url(path))
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    r
}

#[tokio::test]
async fn server_sent_events_catch_up_go_live_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        catch_up_events: 2,
        ..config(dir.path())
    })
    .await;
    for seq in 1..=5 {
        post_intent(&s, "feed", 1, seq, &format!("{{\"n\":{seq}}}")).await;
    }
    let r = sse(&s, "/v1/streams/feed/events?after=2", None).await;
    let reader = tokio::spawn(sse_events(r, 5));
    // Two live events after the catch-up (3, 4, 5).
    post_intent(&s, "feed", 1, 6, "{\n  \"n\": 6\n}").await;
    post_intent(&s, "feed", 1, 7, "{\"n\":7}").await;
    let got = within("SSE reader", reader).await.unwrap();
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![3, 4, 5, 6, 7]);
    for (id, ev) in &got {
        assert_eq!(ev["offset"], *id);
        assert_eq!(ev["payload"]["n"], *id);
    }
    // A reconnecting EventSource repeats the URL and adds Last-Event-ID,
    // which wins over `after`.
    let r = sse(&s, "/v1/streams/feed/events?after=2", Some("5")).await;
    let got = within("SSE resume", sse_events(r, 2)).await;
    assert_eq!(
        got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![6, 7]
    );
    // An empty Last-Event-ID is no position: `after` counts.
    let r = sse(&s, "/v1/streams/feed/events?after=6", Some("")).await;
    let got = within("SSE with an empty Last-Event-ID", sse_events(r, 1)).await;
    assert_eq!(got[0].0, 7);
    // Shutdown ends open SSE feeds (the server would wait for them).
    let _open = sse(&s, "/v1/streams/feed/events", None).await;
    s.stop().await;
}

#[tokio::test]
async fn health_metrics_and_cors() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    let h = get_json(&s, "/healthz").await;
    assert_eq!(h["status"], "ok");
    post_intent(&s, "m", 1, 1, "1").await;
    post_intent(&s, "m", 1, 1, "1").await;
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(2)).await;
    c.subscribe("m", 0).await;
    c.recv().await;
    let r = http().get(s.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("logsync_connections"), 1.0);
    assert_eq!(value("logsync_subscriptions"), 1.0);
    assert_eq!(value("logsync_intents_appended_total"), 1.0);
    assert_eq!(value("logsync_intents_deduplicated_total"), 1.0);
    assert!(value("logsync_commit_seconds_count") >= 1.0);
    assert!(value("logsync_commit_batch_intents_count") >= 1.0);
    assert!(text.contains("logsync_fanout_queue_bytes "));

    // CORS: a preflight from another origin, then the real request.
    let r = http()
        .request(reqwest::Method::OPTIONS, s.url("/v1/streams/m/intents"))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    let r = http()
        .get(s.url("/v1/streams/m"))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    s.stop().await;
}

#[tokio::test]
async fn static_app_with_index_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("dist");
    std::fs::create_dir_all(app.join("assets")).unwrap();
    std::fs::write(app.join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::write(app.join("assets/app.js"), "console.log(1)").unwrap();
    let s = TestServer::start(server_stub::Config {
        static_dir: Some(app),
        ..config(dir.path())
    })
    .await;
    let text = |path: &'static str| {
        let url = s.url(path);
        async move {
            let r = http().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        text("/").await,
        (200, "<!doctype html><title>app</title>".into())
    );
    assert_eq!(text("/assets/app.js").await, (200, "console.log(1)".into()));
    // A client-side route gets the app.
    assert_eq!(
        text("/todos/active").await,
        (200, "<!doctype html><title>app</title>".into())
    );
    // API paths never fall back to the app.
    let (status, body) = text("/v1/unknown").await;
    assert_eq!(status, 404);
    assert!(body.contains("NOT_FOUND"), "{body}");
    assert_eq!(get_json(&s, "/healthz").await["status"], "ok");
    let r = http().post(s.url("/todos")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // A WebSocket upgrade anywhere but /v1/ws (a client URL without the
    // path) is refused with a JSON error naming the right path, not the app.
    let base = s.ws_url().replace("/v1/ws", "");
    for path in ["/", "/todos/active", "/v1/wss"] {
        let url = format!("{base}{path}");
        match try_connect(&url, &[]).await {
            Err((status, body)) => {
                assert_eq!(status, 404, "{path}: {body}");
                assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("/v1/ws"), "{path}: {message}");
            }
            Ok(_) => panic!("an upgrade to {path} was accepted"),
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn metrics_are_openmetrics_when_the_scraper_asks() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    post_intent(&s, "om", 1, 1, "1").await;
    let r = http()
        .get(s.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("\nlogsync_intents_appended_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\n# TYPE logsync_intents_appended counter\n"),
        "{text}"
    );
    // Without the Accept header: the Prometheus text format, as before.
    let r = http().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains(
            "\n# TYPE logsync_intents_appended_total counter\nlogsync_intents_appended_total 1\n"
        ),
        "{text}"
    );
    s.stop().await;
}
