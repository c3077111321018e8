//! Authentication and per-stream permissions, end to end: real servers on
//! 127.0.0.1:0 with real SQLite files, real WebSocket and HTTP clients.
//!
//! - a token for stream A can neither read nor write stream B (WebSocket,
//!   HTTP JSON, SSE), and a refusal says nothing about B's existence;
//! - forged, expired, `alg: none` and missing tokens are refused;
//! - a client id belongs to the first subject that uses it (also after a
//!   restart): nobody can push under another subject's client id;
//! - a connection ends when its token expires;
//! - a cross-origin WebSocket is refused when origins are configured;
//! - the binary mints tokens (`logsync-server token`), view grants
//!   (`PATTERN#VIEW`) included, and warns when open.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use server_stub::auth::{now_secs, sign, Secret, LEEWAY_SECS};
use sync_core::{ClientMsg, ErrorCode, ServerMsg};
use tokio::io::{AsyncBufReadExt, BufReader};

const SECRET: &[u8] = b"auth-test-secret-0123456789abcdef";

fn auth_config(dir: &std::path::Path) -> server_stub::Config {
    server_stub::Config {
        jwt_secret: Some(Secret::new(SECRET).unwrap()),
        ..config(dir)
    }
}

/// A token for `sub` valid for an hour.
fn token(sub: &str, read: &[&str], write: &[&str]) -> String {
    token_exp(sub, read, write, now_secs() + 3600)
}

fn token_exp(sub: &str, read: &[&str], write: &[&str], exp: u64) -> String {
    let claims = serde_json::json!({"sub": sub, "exp": exp, "read": read, "write": write});
    sign(&claims.to_string(), SECRET)
}

/// Expects the server's answer to be `Error { code }` and a close 1008.
async fn expect_refusal(c: &mut Client, first: Option<ServerMsg>, code: ErrorCode) {
    let (error, close) = match first {
        Some(e @ ServerMsg::Error { .. }) => {
            let (_, close) = c.recv_close().await;
            (Some(e), close)
        }
        Some(other) => panic!("expected Error {code}, got {other:?}"),
        None => c.recv_close().await,
    };
    match error {
        Some(ServerMsg::Error { code: got, message }) => assert_eq!(got, code, "{message}"),
        other => panic!("expected Error {code}, got {other:?}"),
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
}

async fn http_status(req: reqwest::RequestBuilder) -> (u16, String, Option<String>) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.text().await.unwrap(), www)
}

fn intent_body(id: u8, seq: u64) -> String {
    format!(
        r#"{{"client_id":"{}","seq":{seq},"payload":{{"n":{seq}}}}}"#,
        client_id(id).to_hex()
    )
}

#[tokio::test]
async fn a_token_for_one_stream_cannot_read_or_write_another_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(auth_config(dir.path())).await;
    let alice = token("alice", &["a/*"], &["a/*"]);
    let admin = token("admin", &["*"], &["*"]);

    // Stream b exists and has an event, written by someone allowed to.
    let (mut w, first) = Client::hello_with_token(&s.ws_url(), client_id(9), Some(&admin)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    w.push("b", &[(1, b"\"secret of b\"".to_vec())]).await;
    assert!(matches!(w.recv().await, ServerMsg::Ack { .. }));

    // Alice works on her streams.
    let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&alice)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.subscribe("a/1", 0).await;
    assert!(matches!(c.recv().await, ServerMsg::Events { .. }));
    c.push("a/1", &[(1, b"1".to_vec())]).await;
    let mut acked = false;
    while !acked {
        match c.recv().await {
            ServerMsg::Ack { seq, .. } => acked = seq.get() == 1,
            ServerMsg::Events { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Subscribing to b ends the connection with FORBIDDEN, and no event of b
    // came before it.
    c.subscribe("b", 0).await;
    let (error, close) = c.recv_close().await;
    assert!(
        matches!(
            error,
            Some(ServerMsg::Error {
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));

    // Pushing to b: FORBIDDEN, and nothing is stored or decided for b.
    let (mut c, _) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&alice)).await;
    c.push("b", &[(1, b"\"overwrite\"".to_vec())]).await;
    expect_refusal(&mut c, None, ErrorCode::Forbidden).await;
    let (mut c, _) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&alice)).await;
    c.send(&ClientMsg::Withdraw {
        stream: stream("b"),
        seq: seq(1),
        code: ErrorCode::PayloadTooLarge,
        message: "x".into(),
    })
    .await;
    expect_refusal(&mut c, None, ErrorCode::Forbidden).await;
    // A reader of b may not write it: each pushed seq is decided as
    // rejected (FORBIDDEN), and the connection and its subscription go on.
    let reader = token("alice", &["b"], &[]);
    let (mut c, _) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&reader)).await;
    c.subscribe("b", 0).await;
    let events = c.events_until(1).await;
    assert_eq!(events[0].payload, b"\"secret of b\"");
    c.push("b", &[(1, b"2".to_vec())]).await;
    match c.recv().await {
        ServerMsg::Reject { seq, code, .. } => {
            assert_eq!((seq.get(), code), (1, ErrorCode::Forbidden))
        }
        other => panic!("expected Reject FORBIDDEN, got {other:?}"),
    }
    w.push("b", &[(2, b"\"live\"".to_vec())]).await;
    assert!(matches!(w.recv().await, ServerMsg::Ack { .. }));
    let events = c.events_until(2).await;
    assert_eq!(
        events.last().map(|e| e.payload.clone()),
        Some(b"\"live\"".to_vec())
    );

    // b holds only the admin's events; alice's seq 1 there is decided as
    // rejected: a resend with write access gets the same answer, and her
    // next seq is appended.
    w.subscribe("b", 0).await;
    let events = w.events_until(2).await;
    assert_eq!(events.len(), 2);
    let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&admin)).await;
    // The admin token names another subject: client 1 belongs to alice.
    expect_refusal(&mut c, Some(first), ErrorCode::Forbidden).await;
    let alice_b = token("alice", &["b"], &["b"]);
    let (mut c, _) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&alice_b)).await;
    c.push("b", &[(1, b"3".to_vec())]).await;
    match c.recv().await {
        ServerMsg::Reject { seq, code, .. } => {
            assert_eq!((seq.get(), code), (1, ErrorCode::Forbidden))
        }
        other => panic!("unexpected {other:?}"),
    }
    c.push("b", &[(2, b"3".to_vec())]).await;
    match c.recv().await {
        ServerMsg::Ack {
            seq,
            offset,
            duplicate,
            ..
        } => assert_eq!((seq.get(), offset.0, duplicate), (2, 3, false)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(metric(&s, "logsync_intents_rejected_total").await, 1.0);
    assert!(metric(&s, "logsync_denied_total{code=\"FORBIDDEN\"}").await >= 4.0);
    s.stop().await;
}

#[tokio::test]
async fn a_token_for_one_stream_cannot_read_or_write_another_over_http_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(auth_config(dir.path())).await;
    let alice = token("alice", &["a/*"], &["a/*"]);
    let admin = token("admin", &["*"], &["*"]);
    let h = http();

    // b/exists has an event; b/absent was never written.
    let (st, body, _) = http_status(
        h.post(s.url("/v1/streams/b%2Fexists/intents"))
            .bearer_auth(&admin)
            .body(intent_body(9, 1)),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    // Alice, by header and by query parameter, on her own stream.
    let (st, body, _) = http_status(
        h.post(s.url("/v1/streams/a%2F1/intents"))
            .bearer_auth(&alice)
            .body(intent_body(1, 1)),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body, _) =
        http_status(h.get(s.url(&format!("/v1/streams/a%2F1/events?after=0&token={alice}")))).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"head\":1"), "{body}");

    // Alice on b: every path answers 403 FORBIDDEN, the same for a stream
    // that exists and one that does not (only the name in the message
    // differs).
    let mut answers = Vec::new();
    for name in ["b%2Fexists", "b%2Fabsent"] {
        let plain = name.replace("%2F", "/");
        let reqs = [
            h.post(s.url(&format!("/v1/streams/{name}/intents")))
                .bearer_auth(&alice)
                .body(intent_body(1, 1)),
            h.post(s.url(&format!("/v1/streams/{name}/intents?token={alice}")))
                .body(intent_body(1, 2)),
            h.get(s.url(&format!("/v1/streams/{name}/events?after=0")))
                .bearer_auth(&alice),
            h.get(s.url(&format!("/v1/streams/{name}")))
                .bearer_auth(&alice),
            h.get(s.url(&format!("/v1/streams/{name}/events?token={alice}")))
                .header("accept", "text/event-stream"),
            h.get(s.url(&format!("/v1/streams/{name}/events")))
                .header("accept", "text/event-stream")
                .header("last-event-id", "0")
                .bearer_auth(&alice),
            h.get(s.url(&format!("/v1/streams/{name}/state")))
                .bearer_auth(&alice),
            h.get(s.url(&format!("/v1/streams/{name}/state?token={alice}")))
                .header("accept", "text/event-stream"),
            h.get(s.url(&format!("/v1/streams/{name}/snapshot")))
                .bearer_auth(&alice),
            h.get(s.url(&format!("/v1/streams/{name}/views/open")))
                .bearer_auth(&alice),
            h.get(s.url(&format!("/v1/streams/{name}/views/open?token={alice}")))
                .header("accept", "text/event-stream"),
        ];
        let mut these = Vec::new();
        for req in reqs {
            let (st, body, _) = http_status(req).await;
            assert_eq!(st, 403, "{name}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error_code(&v), "FORBIDDEN", "{body}");
            these.push(body.replace(&plain, "<stream>"));
        }
        answers.push(these);
    }
    assert_eq!(
        answers[0], answers[1],
        "a refusal must not tell whether the stream exists"
    );

    // Nothing was written to b/exists by the refused posts.
    let (st, body, _) = http_status(
        h.get(s.url("/v1/streams/b%2Fexists/events?after=0"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(st, 200);
    assert!(body.contains("\"head\":1"), "{body}");

    // SSE with a token for a/*: events of a/1 flow.
    let r = h
        .get(s.url(&format!("/v1/streams/a%2F1/events?after=0&token={alice}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let mut text = String::new();
    within("the first SSE event", async {
        while !text
            .lines()
            .any(|l| l.strip_prefix("id:").map(str::trim) == Some("1"))
        {
            use futures_util::StreamExt;
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn forged_expired_and_missing_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(auth_config(dir.path())).await;
    let claims =
        serde_json::json!({"sub": "eve", "exp": now_secs() + 3600, "read": ["*"], "write": ["*"]})
            .to_string();
    let forged = sign(&claims, b"another-secret-another-secret-xx");
    let expired = token_exp("eve", &["*"], &["*"], now_secs() - LEEWAY_SECS - 60);
    let enc = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let none = format!(
        "{}.{}.",
        enc(br#"{"alg":"none","typ":"JWT"}"#),
        enc(claims.as_bytes())
    );
    // The right signature over other claims (a payload swapped in).
    let valid = token("eve", &["x"], &[]);
    let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
    parts[1] = enc(claims.as_bytes());
    let swapped = parts.join(".");

    for (what, t) in [
        ("missing", None),
        ("forged", Some(forged.as_str())),
        ("expired", Some(expired.as_str())),
        ("alg none", Some(none.as_str())),
        ("swapped claims", Some(swapped.as_str())),
        ("garbage", Some("not-a-token")),
    ] {
        let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(5), t).await;
        match &first {
            ServerMsg::Error { code, .. } => assert_eq!(*code, ErrorCode::Unauthorized, "{what}"),
            other => panic!("{what}: expected UNAUTHORIZED, got {other:?}"),
        }
        expect_refusal(&mut c, Some(first), ErrorCode::Unauthorized).await;

        let h = http();
        let with = |req: reqwest::RequestBuilder| match t {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        for req in [
            with(
                h.post(s.url("/v1/streams/x/intents"))
                    .body(intent_body(5, 1)),
            ),
            with(h.get(s.url("/v1/streams/x/events"))),
            with(h.get(s.url("/v1/streams/x"))),
            with(
                h.get(s.url("/v1/streams/x/events"))
                    .header("accept", "text/event-stream"),
            ),
        ] {
            let (st, body, www) = http_status(req).await;
            assert_eq!(st, 401, "{what}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error_code(&v), "UNAUTHORIZED", "{what}: {body}");
            assert!(www.is_some_and(|w| w.starts_with("Bearer")), "{what}");
        }
        if let Some(t) = t {
            // The same through ?token= (what an EventSource uses).
            let (st, _, _) = http_status(
                h.get(s.url(&format!("/v1/streams/x/events?token={t}")))
                    .header("accept", "text/event-stream"),
            )
            .await;
            assert_eq!(st, 401, "{what}");
        }
    }
    // A malformed Authorization header is refused, not ignored.
    let (st, _, _) = http_status(
        http()
            .get(s.url("/v1/streams/x"))
            .header("authorization", format!("Basic {valid}")),
    )
    .await;
    assert_eq!(st, 401);
    assert!(metric(&s, "logsync_denied_total{code=\"UNAUTHORIZED\"}").await >= 30.0);
    s.stop().await;
}

#[tokio::test]
async fn a_client_id_belongs_to_its_first_subject_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(auth_config(dir.path())).await;
    let alice = token("alice", &["t/*"], &["t/*"]);
    let bob = token("bob", &["t/*"], &["t/*"]);

    let (mut a, first) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&alice)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    a.push("t/1", &[(1, b"\"alice's\"".to_vec())]).await;
    assert!(matches!(a.recv().await, ServerMsg::Ack { .. }));

    // Bob cannot say Hello as alice's client, nor post under its id: he
    // could otherwise answer for her intents (resend her seqs, withdraw
    // them, or take the next one).
    let (mut b, first) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&bob)).await;
    expect_refusal(&mut b, Some(first), ErrorCode::Forbidden).await;
    let (st, body, _) = http_status(
        http()
            .post(s.url("/v1/streams/t%2F1/intents"))
            .bearer_auth(&bob)
            .body(intent_body(1, 2)),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    // His own client id works.
    let (mut b, first) = Client::hello_with_token(&s.ws_url(), client_id(2), Some(&bob)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    b.push("t/1", &[(1, b"\"bob's\"".to_vec())]).await;
    assert!(matches!(b.recv().await, ServerMsg::Ack { .. }));
    drop((a, b));
    s.stop().await;

    // The binding is in the database, not in memory.
    let s = TestServer::start(auth_config(dir.path())).await;
    let (mut b, first) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&bob)).await;
    expect_refusal(&mut b, Some(first), ErrorCode::Forbidden).await;
    let (st, _, _) = http_status(
        http()
            .post(s.url("/v1/streams/t%2F1/intents"))
            .bearer_auth(&bob)
            .body(intent_body(1, 2)),
    )
    .await;
    assert_eq!(st, 403);
    let (st, body, _) = http_status(
        http()
            .post(s.url("/v1/streams/t%2F1/intents"))
            .bearer_auth(&alice)
            .body(intent_body(1, 2)),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn connections_end_when_their_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(auth_config(dir.path())).await;
    // Accepted for one to two more seconds (`exp` counts whole seconds and
    // the leeway is on the server): long enough to subscribe first.
    let short = token_exp("alice", &["a"], &["a"], now_secs() + 2 - LEEWAY_SECS);
    let started = tokio::time::Instant::now();
    let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(1), Some(&short)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.subscribe("a", 0).await;
    assert!(matches!(c.recv().await, ServerMsg::Events { .. }));
    let (error, close) = c.recv_close().await;
    match error {
        Some(ServerMsg::Error { code, message }) => {
            assert_eq!(code, ErrorCode::Unauthorized);
            assert!(message.contains("expired"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    assert!(started.elapsed() < Duration::from_secs(5));

    // An SSE feed ends too.
    let short = token_exp("alice", &["a"], &["a"], now_secs() + 2 - LEEWAY_SECS);
    let r = http()
        .get(s.url(&format!("/v1/streams/a/events?token={short}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    within("the SSE feed to end at expiry", r.bytes())
        .await
        .unwrap();
    s.stop().await;
}

#[tokio::test]
async fn cross_origin_websockets_and_requests_are_refused_when_origins_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        allowed_origins: vec!["https://app.example.com".into()],
        ..config(dir.path())
    })
    .await;
    // A page on another site: no socket at all.
    match try_connect(&s.ws_url(), &[("origin", "https://evil.example")]).await {
        Err((status, body)) => {
            assert_eq!(status, 403);
            assert_eq!(error_code(&body), "ORIGIN_FORBIDDEN");
        }
        Ok(_) => panic!("a cross-origin WebSocket was accepted"),
    }
    // The app's own origin, and a client that sends no Origin (not a browser).
    for headers in [&[("origin", "https://app.example.com")][..], &[]] {
        let mut c = try_connect(&s.ws_url(), headers).await.unwrap();
        c.send(&ClientMsg::hello(client_id(1), None)).await;
        assert!(matches!(c.recv().await, ServerMsg::Welcome { .. }));
    }
    // The HTTP API follows the same rule, and CORS names only the app.
    let (st, body, _) = http_status(
        http()
            .post(s.url("/v1/streams/x/intents"))
            .header("origin", "https://evil.example")
            .body(intent_body(1, 1)),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("ORIGIN_FORBIDDEN"));
    let r = http()
        .get(s.url("/v1/streams/x"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = http()
        .request(reqwest::Method::OPTIONS, s.url("/v1/streams/x/intents"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        metric(&s, "logsync_denied_total{code=\"ORIGIN_FORBIDDEN\"}").await,
        2.0
    );
    s.stop().await;
}

/// Without a secret, credentials are ignored, whatever their form.
#[tokio::test]
async fn an_open_server_ignores_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    for (seq, auth) in [
        (1, "Basic dXNlcjpwYXNz"),
        (2, "Bearer not.a.token"),
        (3, "nonsense"),
    ] {
        let (st, body, _) = http_status(
            http()
                .post(s.url("/v1/streams/x/intents?token=junk"))
                .header("authorization", auth)
                .body(intent_body(1, seq)),
        )
        .await;
        assert_eq!(st, 200, "{auth}: {body}");
    }
    let (mut c, first) =
        Client::hello_with_token(&s.ws_url(), client_id(1), Some("not.a.token")).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.push("x", &[(4, b"4".to_vec())]).await;
    assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    s.stop().await;
}

/// The binary: `token` mints what the server accepts, and an open server
/// says so loudly.
#[tokio::test]
async fn the_binary_mints_tokens_and_warns_when_open() {
    let bin = env!("CARGO_BIN_EXE_logsync-server");
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, [SECRET, b"\n"].concat()).unwrap();
    let out = std::process::Command::new(bin)
        .args(["--jwt-secret-file"])
        .arg(&secret_file)
        .args([
            "token", "--sub", "dev", "--read", "todos/*", "--write", "todos/*", "--ttl", "10m",
        ])
        .env_remove("LOGSYNC_JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.ends_with('\n') && printed.matches('\n').count() == 1,
        "one newline-terminated line: {printed:?}"
    );
    let minted = printed.trim().to_string();
    // --expired: a token that is already past its expiry (and the leeway).
    let out = std::process::Command::new(bin)
        .args(["--jwt-secret-file"])
        .arg(&secret_file)
        .args(["token", "--sub", "dev", "--read", "todos/*", "--expired"])
        .env_remove("LOGSYNC_JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stale = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let e = server_stub::auth::verify(&stale, SECRET, now_secs()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    let p = server_stub::auth::verify(&minted, SECRET, now_secs()).unwrap();
    assert_eq!(p.sub, "dev");
    assert!(p.can_write(&stream("todos/x")) && !p.can_read(&stream("other")));
    assert!(p.exp > now_secs() + 500 && p.exp <= now_secs() + 600);
    // Without a secret there is nothing to sign with.
    let out = std::process::Command::new(bin)
        .args(["token", "--sub", "dev"])
        .env_remove("LOGSYNC_JWT_SECRET")
        .env_remove("LOGSYNC_JWT_SECRET_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The server with the secret in the environment accepts the token.
    let (mut child, addr) = spawn(
        dir.path(),
        &[("LOGSYNC_JWT_SECRET", std::str::from_utf8(SECRET).unwrap())],
    )
    .await;
    let (mut c, first) =
        Client::hello_with_token(&format!("ws://{addr}/v1/ws"), client_id(1), Some(&minted)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.push("todos/x", &[(1, b"1".to_vec())]).await;
    assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    let log = log_with(dir.path(), "authentication on").await;
    child.kill().await.unwrap();
    assert!(!log.contains("AUTHENTICATION IS OFF"), "{log}");
    assert!(
        !log.contains(std::str::from_utf8(SECRET).unwrap()),
        "the log shows the secret"
    );

    let (mut child, _) = spawn(dir.path(), &[]).await;
    let log = log_with(dir.path(), "AUTHENTICATION IS OFF").await;
    child.kill().await.unwrap();
    assert!(log.contains("WARN"), "{log}");
}

/// The binary's `token` mints view grants (`--read PATTERN#VIEW`) and
/// refuses to sign one the server would refuse.
#[test]
fn the_binary_mints_view_grants_and_refuses_malformed_ones() {
    let mint = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
            .args(["token", "--sub", "viewer"])
            .args(args)
            .env("LOGSYNC_JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
            .env_remove("LOGSYNC_JWT_SECRET_FILE")
            .output()
            .unwrap()
    };
    let out = mint(&[
        "--read",
        "todos/*#open",
        "--read",
        "todos/team-42#counts",
        "--write",
        "todos/team-42",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8(out.stdout).unwrap();
    let p = server_stub::auth::verify(minted.trim(), SECRET, now_secs()).unwrap();
    assert!(p.can_read_view(&stream("todos/x"), "open"));
    assert!(!p.can_read_view(&stream("todos/x"), "counts"));
    assert!(p.can_read_view(&stream("todos/team-42"), "counts"));
    assert!(!p.can_read(&stream("todos/team-42")));
    assert!(p.can_write(&stream("todos/team-42")));
    for (args, reason) in [
        (&["--read", "todos/*#*"][..], "`#*`"),
        (&["--read", "todos#"], "names no view"),
        (&["--write", "todos#open"], "views can only be read"),
    ] {
        let out = mint(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing is signed");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}

/// The server's log once it holds `text` (it is written after the address
/// line).
async fn log_with(dir: &std::path::Path, text: &str) -> String {
    within(&format!("{text:?} in the server log"), async {
        loop {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            if log.contains(text) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn spawn(dir: &std::path::Path, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("log.db"))
        .env_remove("LOGSYNC_JWT_SECRET")
        .env_remove("LOGSYNC_JWT_SECRET_FILE")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("the listening line", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("logsync-server listening on http://")
        .unwrap()
        .to_string();
    (child, addr)
}
