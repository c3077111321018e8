//! View grants (`read: ["PATTERN#VIEW"]`), end to end: an in-process
//! server on 127.0.0.1:0 with authentication, a real SQLite file and the
//! seat-booking module (views `heldBy`, `count`, `broken`) folding
//! `seats/*`.
//!
//! - a view grantee reads its view over HTTP, once and live over SSE, and
//!   watches it over the WebSocket;
//! - it is refused everything else of the stream — events (JSON and SSE),
//!   head, state (JSON and SSE), snapshot, other views (HTTP, SSE and
//!   WebSocket `Watch`), WebSocket `Subscribe` and pushes — with the very
//!   answer a token without any read permission gets, whether the stream
//!   exists or not;
//! - a token that may write a stream and read only a view of it pushes
//!   (WebSocket and HTTP), and its events are appended, while the stream
//!   stays unreadable to it;
//! - a view grant that does not parse refuses the token (`UNAUTHORIZED`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::sse::SseReader;
use common::*;
use server_stub::auth::{now_secs, sign, Secret};
use server_stub::config::ReducerModule;
use sync_core::{ClientMsg, ErrorCode, ServerMsg};

const SECRET: &[u8] = b"view-grant-secret-0123456789abcdef";

/// Authentication on, and the seat-booking module folding `seats/*`.
fn grants_config(dir: &Path) -> server_stub::Config {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seats.js");
    server_stub::Config {
        jwt_secret: Some(Secret::new(SECRET).unwrap()),
        reducers: vec![ReducerModule::parse(&format!("seats/*={}", module.display())).unwrap()],
        ..config(dir)
    }
}

/// A token for `sub` valid for an hour.
fn token(sub: &str, read: &[&str], write: &[&str]) -> String {
    let claims = serde_json::json!({
        "sub": sub, "exp": now_secs() + 3600, "read": read, "write": write,
    });
    sign(&claims.to_string(), SECRET)
}

fn book(seat: &str, who: &str) -> String {
    serde_json::json!({"type": "book", "seat": seat, "who": who}).to_string()
}

/// An HTTP intent body of client `id`.
fn intent(id: u8, seq: u64, payload: &str) -> String {
    format!(
        r#"{{"client_id":"{}","seq":{seq},"payload":{payload}}}"#,
        client_id(id).to_hex()
    )
}

/// Status and body of a request.
async fn answer(req: reqwest::RequestBuilder) -> (u16, String) {
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `GET path` with `token` as a bearer: status and JSON body.
async fn get(s: &TestServer, path: &str, token: &str) -> (u16, serde_json::Value) {
    let (status, body) = answer(http().get(s.url(path)).bearer_auth(token)).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    (status, json)
}

/// The admin appends `payloads` to `stream` (URL-encoded) over HTTP as
/// client 9 from seq `first`; returns the last offset.
async fn admin_appends(
    s: &TestServer,
    admin: &str,
    stream: &str,
    first: u64,
    payloads: &[String],
) -> u64 {
    let mut offset = 0;
    for (i, p) in payloads.iter().enumerate() {
        let (status, body) = answer(
            http()
                .post(s.url(&format!("/v1/streams/{stream}/intents")))
                .bearer_auth(admin)
                .body(intent(9, first + i as u64, p)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        offset = v["offset"].as_u64().unwrap();
    }
    offset
}

#[tokio::test]
async fn a_view_grantee_reads_its_view_once_and_live() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(grants_config(dir.path())).await;
    let admin = token("admin", &["*"], &["*"]);
    let viewer = token("viewer", &["seats/*#count", "seats/hall#heldBy"], &[]);
    admin_appends(
        &s,
        &admin,
        "seats%2Fhall",
        1,
        &[book("1A", "ann"), book("2B", "bob")],
    )
    .await;

    // Once: each granted view, by header and by query parameter.
    let (status, body) = get(&s, &view_path("seats%2Fhall", "count", ""), &viewer).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"offset": 2, "result": 2}))
    );
    let (status, body) = get(
        &s,
        &view_path("seats%2Fhall", "heldBy", r#"{"who":"bob"}"#),
        &viewer,
    )
    .await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"offset": 2, "result": ["2B"]}))
    );
    let (status, body) = answer(http().get(s.url(&format!(
        "/v1/streams/seats%2Fhall/views/count?token={viewer}"
    ))))
    .await;
    assert_eq!(status, 200, "{body}");
    // The prefix grant covers a stream nobody wrote yet: its view at 0.
    let (status, body) = get(&s, &view_path("seats%2Fempty", "count", ""), &viewer).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"offset": 0, "result": 0}))
    );

    // Live: over SSE by query parameter and by header, each change of the
    // result.
    let mut by_query = SseReader::open(&s.url(&format!(
        "/v1/streams/seats%2Fhall/views/count?token={viewer}"
    )))
    .await;
    let r = http()
        .get(s.url(&view_path("seats%2Fhall", "heldBy", r#"{"who":"cy"}"#)))
        .header("accept", "text/event-stream")
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    let mut by_header = SseReader::from_response(r);
    let first = by_query.next().await;
    assert_eq!((first.event.as_str(), first.id.as_str()), ("result", "2"));
    assert_eq!(first.data["result"], 2);
    let first = by_header.next().await;
    assert_eq!((first.event.as_str(), first.id.as_str()), ("result", "2"));
    assert_eq!(first.data["result"], serde_json::json!([]));
    admin_appends(&s, &admin, "seats%2Fhall", 3, &[book("3C", "cy")]).await;
    let next = by_query.next().await;
    assert_eq!(
        (next.event.as_str(), next.id.as_str(), &next.data),
        (
            "result",
            "3",
            &serde_json::json!({"offset": 3, "result": 3})
        )
    );
    let mut held = serde_json::json!([]);
    let next = by_header.next().await;
    assert_eq!(next.id, "3", "{next:?}");
    match next.event.as_str() {
        "result" => held = next.data["result"].clone(),
        "patch" => {
            let patch: json_patch::Patch =
                serde_json::from_value(next.data["patch"].clone()).unwrap();
            json_patch::patch(&mut held, &patch).unwrap();
        }
        other => panic!("{other}: {next:?}"),
    }
    assert_eq!(held, serde_json::json!(["3C"]));

    // Watched over the WebSocket: the granted views only.
    let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(42), Some(&viewer)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    let watch = |id: u32, name: &str, view: &str| ClientMsg::Watch {
        id,
        stream: stream(name),
        view: view.into(),
        params: "null".into(),
        known: None,
    };
    c.send(&watch(1, "seats/hall", "count")).await;
    let msg = c.recv().await;
    assert!(
        matches!(&msg, ServerMsg::View { id: 1, offset, change: sync_core::ViewChange::Result(r), .. }
            if offset.0 == 3 && r == "3"),
        "{msg:?}"
    );
    admin_appends(&s, &admin, "seats%2Fhall", 4, &[book("4D", "dee")]).await;
    let msg = c.recv().await;
    assert!(
        matches!(&msg, ServerMsg::View { id: 1, offset, change: sync_core::ViewChange::Result(r), .. }
            if offset.0 == 4 && r == "4"),
        "{msg:?}"
    );
    c.send(&watch(2, "seats/other", "heldBy")).await;
    let msg = c.recv().await;
    assert!(
        matches!(
            &msg,
            ServerMsg::ViewError {
                id: 2,
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "heldBy is granted on seats/hall only: {msg:?}"
    );
    drop((by_query, by_header, c));
    s.stop().await;
}

/// Every read of a stream but the granted view, as `(what, request)`.
fn other_reads(
    s: &TestServer,
    stream: &str,
    token: &str,
) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let h = http();
    let sse = |req: reqwest::RequestBuilder| req.header("accept", "text/event-stream");
    let url = |path: &str| s.url(&format!("/v1/streams/{stream}{path}"));
    vec![
        ("events", h.get(url("/events?after=0")).bearer_auth(token)),
        (
            "events by query token",
            h.get(url(&format!("/events?after=0&token={token}"))),
        ),
        (
            "events SSE",
            sse(h.get(url("/events")))
                .header("last-event-id", "0")
                .bearer_auth(token),
        ),
        (
            "events SSE by query token",
            sse(h.get(url(&format!("/events?token={token}")))),
        ),
        ("head", h.get(url("")).bearer_auth(token)),
        ("state", h.get(url("/state")).bearer_auth(token)),
        ("state SSE", sse(h.get(url("/state")).bearer_auth(token))),
        ("snapshot", h.get(url("/snapshot")).bearer_auth(token)),
        (
            "another view",
            h.get(url("/views/heldBy?params=%7B%22who%22%3A%22ann%22%7D"))
                .bearer_auth(token),
        ),
        (
            "another view SSE",
            sse(h.get(url("/views/heldBy")).bearer_auth(token)),
        ),
        (
            "a view that throws",
            h.get(url("/views/broken")).bearer_auth(token),
        ),
        (
            "a view nobody exports",
            h.get(url("/views/nope")).bearer_auth(token),
        ),
        (
            "the view's name in another case",
            h.get(url("/views/Count")).bearer_auth(token),
        ),
        (
            "the view's name and a #",
            h.get(url("/views/count%23")).bearer_auth(token),
        ),
        (
            "the view's name and a *",
            h.get(url("/views/count%2A")).bearer_auth(token),
        ),
    ]
}

/// The WebSocket answer to `msg` after a `Hello` with `token` as client
/// `id`: the `Error`'s code and message, the close code.
async fn ws_refusal(
    s: &TestServer,
    id: u8,
    token: &str,
    msg: ClientMsg,
) -> (ErrorCode, String, u16) {
    let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(id), Some(token)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.send(&msg).await;
    // The first answer is the refusal: no event, no acknowledgement.
    let (code, message) = match c.recv().await {
        ServerMsg::Error { code, message } => (code, message),
        other => panic!("expected an Error, got {other:?}"),
    };
    let (_, close) = c.recv_close().await;
    (code, message, close.map_or(0, |f| u16::from(f.code)))
}

#[tokio::test]
async fn a_view_grantee_is_refused_everything_else_as_if_it_could_read_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(grants_config(dir.path())).await;
    let admin = token("admin", &["*"], &["*"]);
    // seats/hall exists, with events and a state; seats/absent was never
    // written. The viewer may read the view `count` of both; the other
    // token may read nothing at all.
    let head = admin_appends(
        &s,
        &admin,
        "seats%2Fhall",
        1,
        &[book("1A", "ann"), book("2B", "bob")],
    )
    .await;
    let viewer = token("viewer", &["seats/*#count"], &[]);
    let nothing = token("nobody", &[], &[]);
    let (status, _) = get(&s, &view_path("seats%2Fhall", "count", ""), &viewer).await;
    assert_eq!(status, 200, "the grant works");

    // HTTP and SSE: 403 FORBIDDEN, and the same body for the viewer and
    // for the token that reads nothing, on the stream that exists and on
    // the one that does not (only the stream's name in the message
    // differs).
    let mut answers: Vec<Vec<(&str, String)>> = Vec::new();
    for name in ["seats%2Fhall", "seats%2Fabsent"] {
        let plain = name.replace("%2F", "/");
        for who in [&viewer, &nothing] {
            let mut these = Vec::new();
            for (what, req) in other_reads(&s, name, who) {
                let (status, body) = answer(req).await;
                assert_eq!(status, 403, "{what} of {plain}: {body}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(error_code(&v), "FORBIDDEN", "{what}: {body}");
                these.push((what, body.replace(&plain, "<stream>")));
            }
            answers.push(these);
        }
    }
    for other in &answers[1..] {
        assert_eq!(
            &answers[0], other,
            "a view grant must be refused like no grant, whether the stream exists or not"
        );
    }

    // WebSocket: a Subscribe, and a push (neither token may write), end
    // the connection with FORBIDDEN, the same way for both tokens and both
    // streams.
    let mut refusals = Vec::new();
    for name in ["seats/hall", "seats/absent"] {
        for (id, who) in [(1, &viewer), (2, &nothing)] {
            let subscribe = ClientMsg::Subscribe {
                stream: stream(name),
                after: sync_core::Offset(0),
                resume: None,
            };
            let push = ClientMsg::Push {
                stream: stream(name),
                intents: vec![sync_core::PushIntent {
                    seq: seq(1),
                    payload: book("9Z", "eve").into_bytes(),
                    seen: sync_core::Offset(0),
                    schema: 1,
                }],
            };
            for msg in [subscribe, push] {
                let (code, message, close) = ws_refusal(&s, id, who, msg).await;
                assert_eq!((code, close), (ErrorCode::Forbidden, 1008), "{message}");
                refusals.push(message.replace(name, "<stream>"));
            }
        }
    }
    assert_eq!(refusals.len(), 8);
    for pair in refusals.chunks(2).skip(1) {
        assert_eq!(pair, &refusals[..2]);
    }

    // WebSocket, a Watch of another view than the granted one: that watch
    // ends with FORBIDDEN, the same text for both tokens and both streams,
    // and the connection goes on.
    let mut watch_refusals = Vec::new();
    for (id, who) in [(1, &viewer), (2, &nothing)] {
        let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(id), Some(who)).await;
        assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
        for (watch, name) in [(1, "seats/hall"), (2, "seats/absent")] {
            c.send(&ClientMsg::Watch {
                id: watch,
                stream: stream(name),
                view: "heldBy".into(),
                params: r#"{"who":"ann"}"#.into(),
                known: None,
            })
            .await;
            match c.recv().await {
                ServerMsg::ViewError { id, code, message } => {
                    assert_eq!((id, code), (watch, ErrorCode::Forbidden), "{message}");
                    watch_refusals.push(message.replace(name, "<stream>"));
                }
                other => panic!("expected a ViewError, got {other:?}"),
            }
        }
        c.send(&ClientMsg::Ping { nonce: 7 }).await;
        assert!(matches!(c.recv().await, ServerMsg::Pong { nonce: 7 }));
    }
    assert_eq!(watch_refusals.len(), 4);
    assert!(
        watch_refusals.iter().all(|m| *m == watch_refusals[0]),
        "{watch_refusals:?}"
    );

    // Nothing was stored by the refused pushes: the heads are as before.
    for (name, expected) in [("seats%2Fhall", head), ("seats%2Fabsent", 0)] {
        let (status, body) = get(&s, &format!("/v1/streams/{name}"), &admin).await;
        assert_eq!((status, &body["head"]), (200, &serde_json::json!(expected)));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_write_only_token_with_a_view_grant_pushes_and_reads_only_its_view() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(grants_config(dir.path())).await;
    let admin = token("admin", &["*"], &["*"]);
    let writer = token("writer", &["seats/hall#count"], &["seats/hall"]);
    let nothing = token("nobody", &[], &[]);

    // Over WebSocket: the pushes are acknowledged, in order.
    let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(3), Some(&writer)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.push(
        "seats/hall",
        &[
            (1, book("1A", "writer").into_bytes()),
            (2, book("2B", "writer").into_bytes()),
        ],
    )
    .await;
    for expected in [1, 2] {
        match c.recv().await {
            ServerMsg::Ack {
                seq,
                offset,
                duplicate,
                ..
            } => assert_eq!(
                (seq.get(), offset.0, duplicate),
                (expected, expected, false)
            ),
            other => panic!("expected Ack {expected}, got {other:?}"),
        }
    }
    // A push the reducer refuses is answered with its rejection, like any
    // writer's.
    c.push("seats/hall", &[(3, book("1A", "writer").into_bytes())])
        .await;
    match c.recv().await {
        ServerMsg::Reject { seq, code, .. } => {
            assert_eq!((seq.get(), code), (3, ErrorCode::Rejected))
        }
        other => panic!("expected Reject, got {other:?}"),
    }
    // Over HTTP: appended too.
    let (status, body) = answer(
        http()
            .post(s.url("/v1/streams/seats%2Fhall/intents"))
            .bearer_auth(&writer)
            .body(intent(3, 4, &book("3C", "writer"))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"offset": 3, "duplicate": false})
    );

    // The events are in the log, as the writer's.
    let (status, page) = get(&s, "/v1/streams/seats%2Fhall/events?after=0", &admin).await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{page}");
    for (e, seat) in events.iter().zip(["1A", "2B", "3C"]) {
        assert_eq!(e["payload"]["seat"], seat, "{e}");
        assert_eq!(e["client_id"], client_id(3).to_hex(), "{e}");
    }
    // The writer reads its view, which reflects its pushes...
    let (status, body) = get(&s, &view_path("seats%2Fhall", "count", ""), &writer).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"offset": 3, "result": 3}))
    );
    // ... and nothing else of the stream: the same refusal as a token
    // that reads nothing.
    for (w, n) in other_reads(&s, "seats%2Fhall", &writer)
        .into_iter()
        .zip(other_reads(&s, "seats%2Fhall", &nothing))
    {
        let (mine, theirs) = (answer(w.1).await, answer(n.1).await);
        assert_eq!(mine.0, 403, "{}: {}", w.0, mine.1);
        assert_eq!(mine, theirs, "{}", w.0);
    }
    // Its connection never received an event; a Subscribe ends it.
    c.subscribe("seats/hall", 0).await;
    match c.recv().await {
        ServerMsg::Error { code, message } => assert_eq!(code, ErrorCode::Forbidden, "{message}"),
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }
    let (_, close) = c.recv_close().await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    // And the view grant is for seats/hall only.
    let (status, _) = get(&s, &view_path("seats%2Fother", "count", ""), &writer).await;
    assert_eq!(status, 403);
    s.stop().await;
}

#[tokio::test]
async fn a_view_grant_that_does_not_parse_refuses_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(grants_config(dir.path())).await;
    for (read, write, reason) in [
        (&["seats/hall#*"][..], &[][..], "`#*`"),
        (&["seats/hall#"], &[], "names no view"),
        (&["#count"], &[], "no stream pattern"),
        (
            &["seats/hall", "seats/hall#count#x"],
            &[],
            "in its view name",
        ),
        (
            &["seats/hall#count"],
            &["seats/hall#count"],
            "views can only be read",
        ),
    ] {
        let bad = token("someone", read, write);
        // HTTP: 401 with the reason, also on the view the grant meant.
        for path in [
            view_path("seats%2Fhall", "count", ""),
            "/v1/streams/seats%2Fhall/events".to_string(),
        ] {
            let r = http()
                .get(s.url(&path))
                .bearer_auth(&bad)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 401, "{read:?} {write:?} {path}");
            assert!(r.headers().contains_key("www-authenticate"));
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(error_code(&body), "UNAUTHORIZED", "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(reason), "{message}");
        }
        // WebSocket: refused at Hello.
        let (mut c, first) = Client::hello_with_token(&s.ws_url(), client_id(4), Some(&bad)).await;
        match first {
            ServerMsg::Error { code, message } => {
                assert_eq!(code, ErrorCode::Unauthorized, "{message}");
                assert!(message.contains(reason), "{message}");
            }
            other => panic!("expected UNAUTHORIZED, got {other:?}"),
        }
        let (_, close) = c.recv_close().await;
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    }
    s.stop().await;
}
