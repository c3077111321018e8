//! Reducers at the ordering point, through the real `logsync-server`
//! binary: a seat-booking module folded by the SQLite store's writer,
//! over WebSocket and HTTP, against a real SQLite file.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::process::Proc;
use common::sse::{SseEvent, SseReader};
use common::{answer, client_id, config, http, within, Client};
use sync_core::{ErrorCode, ServerMsg};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn book(seat: &str, who: &str) -> Vec<u8> {
    serde_json::json!({"type": "book", "seat": seat, "who": who})
        .to_string()
        .into_bytes()
}

/// Every event of `stream` (URL-encoded name) over HTTP.
async fn events(p: &Proc, stream: &str) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    loop {
        let (status, page) = p
            .get(&format!("/v1/streams/{stream}/events?after={}", out.len()))
            .await;
        assert_eq!(status, 200, "{page}");
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// The seat map an independent fold of `events` reaches (the first
/// booking of a seat wins; the server must have appended no other).
fn fold_seats(events: &[serde_json::Value]) -> serde_json::Value {
    let mut seats = serde_json::Map::new();
    for e in events {
        let a = &e["payload"];
        assert_eq!(a["type"], "book", "{e}");
        let seat = a["seat"].as_str().unwrap();
        assert!(
            !seats.contains_key(seat),
            "seat {seat} appended twice: {events:?}"
        );
        seats.insert(seat.to_string(), a["who"].clone());
    }
    serde_json::json!({ "seats": seats })
}

#[tokio::test]
async fn two_clients_book_the_same_seat_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats.js").display());
    let p = Proc::spawn(dir.path(), &["--reducer".into(), rule], &[]).await;
    let stream = "seats/show1";
    let url_stream = "seats%2Fshow1";

    let (mut ann, _) = Client::hello(&p.ws(), client_id(1)).await;
    let (mut bob, _) = Client::hello(&p.ws(), client_id(2)).await;
    // Both push before either reads an answer: the writer orders them.
    ann.push(stream, &[(1, book("12A", "ann"))]).await;
    bob.push(stream, &[(1, book("12A", "bob"))]).await;
    let answers = [answer(&mut ann).await, answer(&mut bob).await];
    let acks = answers
        .iter()
        .filter(|m| matches!(m, ServerMsg::Ack { .. }))
        .count();
    assert_eq!(acks, 1, "exactly one booking wins: {answers:?}");
    let (loser, loser_name) = match &answers[0] {
        ServerMsg::Reject { .. } => (&mut ann, "ann"),
        _ => (&mut bob, "bob"),
    };
    let rejected = answers
        .iter()
        .find(|m| matches!(m, ServerMsg::Reject { .. }))
        .unwrap()
        .clone();
    match &rejected {
        ServerMsg::Reject { code, message, .. } => {
            assert_eq!(*code, ErrorCode::Rejected);
            assert_eq!(message, "SEAT_TAKEN: seat 12A is taken");
        }
        other => panic!("{other:?}"),
    }
    // A resend of the refused seq gets the same decision.
    loser.push(stream, &[(1, book("12A", loser_name))]).await;
    assert_eq!(answer(loser).await, rejected);

    // Over HTTP: a free seat is appended, a taken one refused (422, the
    // app's code in the message).
    let post = |seq: u64, seat: &str| {
        let body = serde_json::json!({
            "client_id": client_id(3).to_hex(),
            "seq": seq,
            "payload": {"type": "book", "seat": seat, "who": "cy"},
        });
        http()
            .post(p.url(&format!("/v1/streams/{url_stream}/intents")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = post(1, "12B").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = post(2, "12A").await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "REJECTED", "{body}");
    assert_eq!(
        body["error"]["message"], "SEAT_TAKEN: seat 12A is taken",
        "{body}"
    );

    // A reducer that does not stop is stopped; the server goes on.
    ann.push(stream, &[(2, br#"{"type":"spin"}"#.to_vec())])
        .await;
    match answer(&mut ann).await {
        ServerMsg::Reject { code, message, .. } => {
            assert_eq!(code, ErrorCode::Reducer);
            assert!(message.contains("stopped"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let log = events(&p, url_stream).await;
    assert_eq!(log.len(), 2, "{log:?}");
    let (status, state) = p.get(&format!("/v1/streams/{url_stream}/state")).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["offset"], 2, "{state}");
    assert_eq!(state["state"], fold_seats(&log), "{state}");

    // A stream no rule matches: opaque payloads, no state.
    let (status, body) = p.get("/v1/streams/plain/state").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    p.stop().await;
}

#[tokio::test]
async fn reducers_from_the_environment_and_state_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let seats = fixture("seats.js").display().to_string();
    // The todo example's own module, as its app imports it.
    let todos = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/todo-react/src/todos.js")
        .display()
        .to_string();
    let env = [(
        "LOGSYNC_REDUCERS",
        format!("hall={seats};seats/*={seats};todos/*={todos}"),
    )];
    let p = Proc::spawn(dir.path(), &[], &env).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(4)).await;
    c.push("hall", &[(1, book("1", "di")), (2, book("1", "di"))])
        .await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    assert!(matches!(answer(&mut c).await, ServerMsg::Reject { .. }));
    let added = serde_json::json!({"type": "todo/added", "id": "t1", "text": " milk "});
    c.push("todos/home", &[(1, added.to_string().into_bytes())])
        .await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    let (status, state) = p.get("/v1/streams/todos%2Fhome/state").await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state,
        serde_json::json!({"offset": 1, "state": {"todos": [{"id": "t1", "text": "milk", "completed": false}]}})
    );
    drop(c);
    p.stop().await;
    // The state is rebuilt from the file by the next process.
    let p = Proc::spawn(dir.path(), &[], &env).await;
    let (status, state) = p.get("/v1/streams/hall/state").await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state,
        serde_json::json!({"offset": 1, "state": {"seats": {"1": "di"}}})
    );
    let (status, _) = p.get("/v1/streams/seats%2Fx/state").await;
    assert_eq!(status, 200, "the second rule of the variable applies");
    p.stop().await;
}

#[tokio::test]
async fn a_module_that_fails_to_load_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("log.db"))
            .args(args)
            .output()
            .unwrap()
    };
    let broken = fixture("broken.js");
    let out = run(vec![
        "--reducer".into(),
        format!("todos/*={}", broken.display()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(stderr.contains(&broken.display().to_string()), "{stderr}");
    assert!(stderr.contains("SyntaxError"), "{stderr}");

    let missing = dir.path().join("missing.js");
    let out = run(vec!["--reducer".into(), format!("t={}", missing.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("missing.js") && stderr.contains("could not be read"),
        "{stderr}"
    );

    let out = run(vec!["--reducer".into(), "no-equals-sign".into()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATTERN=FILE"));

    // With a PostgreSQL store too, modules are loaded before the server
    // connects anywhere: the missing module is what it reports.
    let out = run(vec![
        "--store".into(),
        "postgres://nobody@127.0.0.1:1/none".into(),
        "--reducer".into(),
        format!("t={}", missing.display()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("missing.js") && stderr.contains("could not be read"),
        "{stderr}"
    );
}

/// Seats as a Rust reducer: the action is the seat's name.
struct RustSeats;

impl sync_core::Reducer for RustSeats {
    type State = std::collections::BTreeMap<String, String>;
    type Action = String;

    fn decode(&self, payload: &[u8]) -> Result<String, sync_core::ReduceError> {
        serde_json::from_slice(payload).map_err(|e| sync_core::ReduceError(e.to_string()))
    }

    fn reduce(
        &self,
        state: &Self::State,
        seat: &String,
    ) -> Result<Self::State, sync_core::ReduceError> {
        if state.contains_key(seat) {
            return Err(sync_core::ReduceError(format!(
                "SEAT_TAKEN: seat {seat} is taken"
            )));
        }
        let mut next = state.clone();
        next.insert(seat.clone(), "taken".into());
        Ok(next)
    }

    /// `taken`: the seats booked, in order; `row` with `"7"`: the seats
    /// of that row (params that are not a string fail).
    fn view(
        &self,
        state: &Self::State,
        name: &str,
        params: &[u8],
    ) -> Option<Result<Vec<u8>, sync_core::ReduceError>> {
        let seats = |row: &str| -> Vec<u8> {
            let seats: Vec<&String> = state.keys().filter(|s| s.starts_with(row)).collect();
            serde_json::to_vec(&seats).unwrap()
        };
        match name {
            "taken" => Some(Ok(seats(""))),
            "row" => Some(
                serde_json::from_slice::<String>(params)
                    .map(|row| seats(&row))
                    .map_err(|e| sync_core::ReduceError(format!("row takes a string: {e}"))),
            ),
            _ => None,
        }
    }

    fn view_names(&self) -> &[&str] {
        &["taken", "row"]
    }
}

#[tokio::test]
async fn a_rust_reducer_registered_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let mut reducers = server_stub::fold::Reducers::default();
    reducers.add(
        "seats/*",
        std::sync::Arc::new(server_stub::fold::rust::RustReducer::new(
            RustSeats,
            Default::default(),
        )),
    );
    let server = server_stub::Server::open_with_reducers(config(dir.path()), reducers)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let ws = format!("ws://{addr}/v1/ws");
    let (mut a, _) = Client::hello(&ws, client_id(5)).await;
    let (mut b, _) = Client::hello(&ws, client_id(6)).await;
    a.push("seats/r", &[(1, br#""7C""#.to_vec())]).await;
    b.push(
        "seats/r",
        &[(1, br#""7C""#.to_vec()), (2, br#""7D""#.to_vec())],
    )
    .await;
    let mut answers = vec![answer(&mut a).await, answer(&mut b).await];
    answers.push(answer(&mut b).await);
    let rejected: Vec<_> = answers
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Reject { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        vec![(
            ErrorCode::Rejected,
            "SEAT_TAKEN: seat 7C is taken".to_string()
        )],
        "{answers:?}"
    );
    let r = http()
        .get(format!("http://{addr}/v1/streams/seats%2Fr/state"))
        .send()
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(
        state,
        serde_json::json!({"offset": 2, "state": {"7C": "taken", "7D": "taken"}})
    );
    // Its views, over HTTP and watched over the WebSocket.
    let view = |path: &str| {
        let url = format!("http://{addr}/v1/streams/seats%2Fr/views/{path}");
        async move {
            let r = http().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, body)
        }
    };
    assert_eq!(
        view("row?params=%227%22").await,
        (
            200,
            serde_json::json!({"offset": 2, "result": ["7C", "7D"]})
        )
    );
    let (status, body) = view("nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("taken, row"),
        "{body}"
    );
    let (status, body) = view("row?params=7").await;
    assert_eq!(body["error"]["code"], "REDUCER", "{status} {body}");
    a.send(&sync_core::ClientMsg::Watch {
        id: 1,
        stream: common::stream("seats/r"),
        view: "taken".into(),
        params: "null".into(),
        known: None,
    })
    .await;
    let first = loop {
        match a.recv().await {
            m @ ServerMsg::View { .. } => break m,
            ServerMsg::Events { .. } | ServerMsg::Ack { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        matches!(&first, ServerMsg::View { offset, change: sync_core::ViewChange::Result(r), .. }
            if offset.0 == 2 && r == r#"["7C","7D"]"#),
        "{first:?}"
    );
    let _ = stop.send(());
    within("server shutdown", task).await.unwrap().unwrap();
}

/// `/state` with `Accept: text/event-stream`: the whole state first, then
/// one event per commit that changed it — an RFC 6902 patch when shorter
/// than the state — and nothing for commits that left it as it was. A
/// follower applying the events holds what `GET /state` answers.
#[tokio::test]
async fn the_state_is_followed_over_sse_with_json_patches() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats.js").display());
    let p = Proc::spawn(dir.path(), &["--reducer".into(), rule], &[]).await;
    let url = p.url("/v1/streams/seats%2Flive/state");
    let mut feed = SseReader::open(&url).await;
    let first = feed.next().await;
    assert_eq!((first.event.as_str(), first.id.as_str()), ("state", "0"));
    assert_eq!(
        first.data,
        serde_json::json!({"offset": 0, "state": {"seats": {}}})
    );
    let mut followed = first.data["state"].clone();

    let (mut c, _) = Client::hello(&p.ws(), client_id(9)).await;
    // A state with 40 seats, then one seat more: the second change is a
    // patch far shorter than the state.
    let many: Vec<(u64, Vec<u8>)> = (1..=40)
        .map(|i| (i, book(&format!("seat-{i}"), "crowd")))
        .collect();
    c.push("seats/live", &many).await;
    for _ in 0..40 {
        assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    }
    // The feed may join those commits: follow it up to offset 40.
    loop {
        let e = feed.next().await;
        apply(&mut followed, &e);
        if e.data["offset"] == 40 {
            break;
        }
    }
    // An action the reducer ignores (offset 41) changes nothing, so no
    // event; the next booking (offset 42) is one patch.
    c.push(
        "seats/live",
        &[
            (41, br#"{"type":"look"}"#.to_vec()),
            (42, book("late", "di")),
        ],
    )
    .await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    let e = feed.next().await;
    assert_eq!((e.event.as_str(), e.id.as_str()), ("patch", "42"), "{e:?}");
    assert_eq!(
        e.data["patch"],
        serde_json::json!([{"op": "add", "path": "/seats/late", "value": "di"}])
    );
    apply(&mut followed, &e);
    let (status, state) = p.get("/v1/streams/seats%2Flive/state").await;
    assert_eq!(status, 200);
    assert_eq!(state["offset"], 42);
    assert_eq!(followed, state["state"], "the follower holds the state");
    assert_eq!(followed["seats"].as_object().unwrap().len(), 41);
    drop(c);
    p.stop().await;
}

/// Applies one event of the state feed to `state`.
fn apply(state: &mut serde_json::Value, e: &SseEvent) {
    match e.event.as_str() {
        "state" => *state = e.data["state"].clone(),
        "patch" => {
            let patch: json_patch::Patch = serde_json::from_value(e.data["patch"].clone()).unwrap();
            json_patch::patch(state, &patch).unwrap();
        }
        other => panic!("unexpected event {other}: {e:?}"),
    }
    assert_eq!(e.id, e.data["offset"].to_string(), "id is the offset");
}

/// The seat-booking constraint under concurrency on one SQLite node:
/// twenty devices reconnect at once with offline bookings of overlapping
/// seats (tests/common/seats.rs says what is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_book_the_same_seats_offline() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats.js").display());
    let p = Proc::spawn(dir.path(), &["--reducer".into(), rule], &[]).await;
    common::seats::twenty_devices_book_offline(&[p.url("")], "seats/hall").await;
    p.stop().await;
}

#[tokio::test]
async fn a_module_importing_rejection_from_logsync() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats_rejection.js").display());
    let p = Proc::spawn(dir.path(), &["--reducer".into(), rule], &[]).await;
    let stream = "seats/show2";
    let (mut c, _) = Client::hello(&p.ws(), client_id(7)).await;
    c.push(stream, &[(1, book("4A", "ann")), (2, book("4A", "bob"))])
        .await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    match answer(&mut c).await {
        ServerMsg::Reject { code, message, .. } => {
            assert_eq!(code, ErrorCode::Rejected);
            assert_eq!(message, "SEAT_TAKEN: seat 4A is taken");
        }
        other => panic!("{other:?}"),
    }
    // A Rejection whose code is not [A-Z0-9_]: the reducer's fault.
    c.push(stream, &[(3, br#"{"type":"badcode"}"#.to_vec())])
        .await;
    match answer(&mut c).await {
        ServerMsg::Reject { code, message, .. } => {
            assert_eq!(code, ErrorCode::Reducer);
            assert!(
                message.contains("\"seat-taken\"") && message.contains("lowercase code"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let log = events(&p, "seats%2Fshow2").await;
    assert_eq!(log.len(), 1, "{log:?}");
    let (status, state) = p.get("/v1/streams/seats%2Fshow2/state").await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state,
        serde_json::json!({"offset": 1, "state": {"seats": {"4A": "ann"}}})
    );
    drop(c);
    p.stop().await;

    // Any other import stops the server at start, naming the file and why.
    let other = fixture("imports_other.js");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("log.db"))
        .args(["--reducer".to_string(), format!("t={}", other.display())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(
        stderr.contains(&other.display().to_string())
            && stderr.contains("immer")
            && stderr.contains("may import only 'logsync'"),
        "{stderr}"
    );
}

#[tokio::test]
async fn with_one_state_kept_two_streams_in_turn_are_rebuilt_and_right() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats.js").display());
    let p = Proc::spawn(
        dir.path(),
        &["--reducer".into(), rule],
        &[("LOGSYNC_REDUCER_MAX_STREAMS", "1".to_string())],
    )
    .await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(8)).await;
    for (round, seat) in ["1A", "1B", "1C"].into_iter().enumerate() {
        for stream in ["seats/a", "seats/b"] {
            // Seqs count per stream.
            let mut seq = 2 * round as u64;
            // The seat, then the same seat again: the second is refused by
            // the stream's state, rebuilt since the other stream's turn.
            seq += 1;
            c.push(stream, &[(seq, book(seat, stream))]).await;
            assert!(
                matches!(answer(&mut c).await, ServerMsg::Ack { .. }),
                "{stream} {seat}"
            );
            let url = stream.replace('/', "%2F");
            let (status, state) = p.get(&format!("/v1/streams/{url}/state")).await;
            assert_eq!(status, 200, "{state}");
            seq += 1;
            c.push(stream, &[(seq, book(seat, "late"))]).await;
            match answer(&mut c).await {
                ServerMsg::Reject { code, message, .. } => {
                    assert_eq!(code, ErrorCode::Rejected);
                    assert_eq!(message, format!("SEAT_TAKEN: seat {seat} is taken"));
                }
                other => panic!("{stream} {seat}: {other:?}"),
            }
        }
    }
    for (stream, url) in [("seats/a", "seats%2Fa"), ("seats/b", "seats%2Fb")] {
        let log = events(&p, url).await;
        assert_eq!(log.len(), 3, "{log:?}");
        let (status, state) = p.get(&format!("/v1/streams/{url}/state")).await;
        assert_eq!(status, 200, "{state}");
        assert_eq!(state["offset"], 3, "{state}");
        assert_eq!(state["state"], fold_seats(&log), "{state}");
        assert_eq!(
            state["state"],
            serde_json::json!({"seats": {"1A": stream, "1B": stream, "1C": stream}})
        );
    }
    // The writer kept one state and rebuilt the others.
    let metrics = http()
        .get(p.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert_eq!(value("logsync_reducer_states"), 1, "{metrics}");
    assert!(
        value("logsync_reducer_states_dropped_total") >= 6,
        "{metrics}"
    );
    assert!(
        value("logsync_reducer_states_built_total") >= 7,
        "{metrics}"
    );
    drop(c);
    p.stop().await;

    // The flag is checked at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("log.db"))
        .args(["--reducer-max-streams", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--reducer-max-streams"), "{stderr}");
}

/// Views exported next to the reducer: `GET …/views/{name}?params=` answers
/// `{offset, result}`; unknown views, bad params and a throwing view get
/// typed errors; with `Accept: text/event-stream` a view is followed, only
/// changes of its result are sent, and `Last-Event-ID` at the current
/// offset skips the answer the client holds.
#[tokio::test]
async fn views_are_read_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats.js").display());
    let p = Proc::spawn(dir.path(), &["--reducer".into(), rule], &[]).await;
    let view = |name: &str, params: &str| common::view_path("seats%2Fv", name, params);
    let (status, body) = p.get(&view("heldBy", r#"{"who":"bob"}"#)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"offset": 0, "result": []}));

    // Bob follows his seats; Ann's booking changes nothing for him.
    let mut bobs = SseReader::open(&p.url(&view("heldBy", r#"{"who":"bob"}"#))).await;
    let first = bobs.next().await;
    assert_eq!((first.event.as_str(), first.id.as_str()), ("result", "0"));
    assert_eq!(first.data["result"], serde_json::json!([]));
    let (mut c, _) = Client::hello(&p.ws(), client_id(5)).await;
    c.push("seats/v", &[(1, book("1A", "ann")), (2, book("2B", "bob"))])
        .await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    let e = bobs.next().await;
    assert_eq!(e.id, "2", "offset 1 (Ann's) changed nothing for Bob: {e:?}");
    let mut result = first.data["result"].clone();
    match e.event.as_str() {
        "result" => result = e.data["result"].clone(),
        "patch" => {
            let patch: json_patch::Patch = serde_json::from_value(e.data["patch"].clone()).unwrap();
            json_patch::patch(&mut result, &patch).unwrap();
        }
        other => panic!("{other}: {e:?}"),
    }
    assert_eq!(result, serde_json::json!(["2B"]));
    let (status, body) = p.get(&view("count", "")).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"offset": 2, "result": 2}))
    );

    // A follower that holds the answer at offset 2 gets only what changes.
    let r = reqwest::Client::new()
        .get(p.url(&view("count", "null")))
        .header("accept", "text/event-stream")
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let mut counts = SseReader::from_response(r);
    c.push("seats/v", &[(3, book("3C", "cy"))]).await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    let e = counts.next().await;
    assert_eq!(
        (e.event.as_str(), e.id.as_str(), &e.data),
        (
            "result",
            "3",
            &serde_json::json!({"offset": 3, "result": 3})
        )
    );

    // Errors: an unknown view, params that are not JSON, a view that throws.
    let (status, body) = p.get(&view("nope", "")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("heldBy") && message.contains("count"),
        "{message}"
    );
    let (status, body) = p
        .get("/v1/streams/seats%2Fv/views/count?params=%7Bnope")
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &serde_json::json!("INVALID_JSON"))
    );
    let (status, body) = p.get(&view("broken", "")).await;
    assert_eq!(body["error"]["code"], "REDUCER", "{status} {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this view always fails"));
    // The stream's state is untouched by views.
    let (_, state) = p.get("/v1/streams/seats%2Fv/state").await;
    assert_eq!(state["offset"], 3);
    drop((c, bobs, counts));
    p.stop().await;
}

/// Compaction on: the log keeps only the last events, and a client from
/// offset 0 gets the stream's snapshot (in several frames: the state is
/// larger than one) and then the events after it; HTTP readers from below
/// the horizon are told to start from `/snapshot`.
#[tokio::test]
async fn a_new_client_of_a_compacted_stream_starts_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats.js").display());
    let args: Vec<String> = [
        "--reducer",
        &rule,
        "--snapshot-every",
        "100",
        "--retain-events",
        "150",
        "--max-frame-bytes",
        "8KiB",
        "--max-payload-bytes",
        "4KiB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let p = Proc::spawn(dir.path(), &args, &[]).await;
    let stream = "seats/big";
    let url_stream = "seats%2Fbig";

    let (mut writer, _) = Client::hello(&p.ws(), client_id(1)).await;
    for batch in 0..20u64 {
        let intents: Vec<(u64, Vec<u8>)> = (1..=50)
            .map(|i| {
                let s = batch * 50 + i;
                (s, book(&format!("seat-{s:04}"), "ann"))
            })
            .collect();
        writer.push(stream, &intents).await;
        for _ in 0..50 {
            assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
        }
    }

    let (status, snap) = p.get(&format!("/v1/streams/{url_stream}/snapshot")).await;
    assert_eq!(status, 200, "{snap}");
    let offset = snap["offset"].as_u64().unwrap();
    assert!((901..=1000).contains(&offset), "snapshot at {offset}");
    let (status, body) = p
        .get(&format!("/v1/streams/{url_stream}/events?after=0"))
        .await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(common::error_code(&body), "COMPACTED");
    let oldest = body["error"]["oldest"].as_u64().unwrap();
    assert!(oldest > 1 && oldest <= offset + 1, "oldest kept {oldest}");
    let sse = http()
        .get(p.url(&format!("/v1/streams/{url_stream}/events?after=0")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 410);

    // A new device subscribes from nothing; its connection is cut after
    // the first part of the snapshot, and the next one asks to go on
    // from there: the server continues at that byte.
    let (mut cut, _) = Client::hello(&p.ws(), client_id(2)).await;
    cut.subscribe(stream, 0).await;
    let (first_offset, first_hash, first) = match cut.recv().await {
        ServerMsg::Snapshot {
            offset,
            hash,
            at: 0,
            part,
            ..
        } => (offset, hash, part),
        other => panic!("expected the snapshot's first part, got {other:?}"),
    };
    drop(cut);
    let (mut fresh, _) = Client::hello(&p.ws(), client_id(2)).await;
    fresh
        .subscribe_resuming(stream, 0, first_offset, first_hash, first.len() as u64)
        .await;
    let mut text = first;
    let mut parts = 1;
    let (at_offset, hash) = loop {
        match fresh.recv().await {
            ServerMsg::Snapshot {
                offset,
                hash,
                total,
                at,
                part,
                ..
            } => {
                assert_eq!(at, text.len() as u64);
                text.extend(part);
                parts += 1;
                if text.len() as u64 == total {
                    break (offset.0, hash);
                }
            }
            other => panic!("expected the snapshot first, got {other:?}"),
        }
    };
    assert!(parts >= 2, "a state over a frame comes in parts ({parts})");
    assert_eq!(at_offset, offset);
    assert_eq!(sync_core::protocol::state_hash(&text), hash);
    assert_eq!(format!("{hash:016x}"), snap["hash"].as_str().unwrap());
    let mut state: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(state, snap["state"]);
    // Then the events after it, the first frame carrying the head (an
    // empty one when the snapshot is at the head).
    let mut rest = Vec::new();
    let mut head = 0;
    while head < 1000
        || rest
            .last()
            .map_or(offset, |e: &sync_core::Event| e.offset.0)
            < 1000
    {
        match fresh.recv().await {
            ServerMsg::Events {
                events, head: h, ..
            } => {
                head = head.max(h.0);
                rest.extend(events);
            }
            other => panic!("expected events, got {other:?}"),
        }
    }
    common::assert_dense(&rest, offset + 1);
    for e in &rest {
        let a: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        state["seats"][a["seat"].as_str().unwrap()] = a["who"].clone();
    }
    let (status, head) = p.get(&format!("/v1/streams/{url_stream}/state")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (head["offset"].as_u64(), &head["state"]),
        (Some(1000), &state)
    );
    assert_eq!(state["seats"].as_object().unwrap().len(), 1000);

    // The log holds the retention and the events since the last snapshot.
    let conn = rusqlite::Connection::open(dir.path().join("log.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(rows <= 250, "{rows} events kept");
    assert_eq!(
        common::metric_at(&p.url("/metrics"), "logsync_snapshots_resumed_total").await,
        1.0,
        "the boot cut after its first part went on from there"
    );
    p.stop().await;
}

/// The storage bound at full size (under 10 s in a debug build):
/// 200,000 events pushed in requests of 800, a snapshot every 1,000,
/// the last 5,000 kept; see `common::bound`.
#[tokio::test]
async fn two_hundred_thousand_events_stay_within_the_retention() {
    let bound = common::bound::Bound {
        total: 200_000,
        every: 1000,
        retain: 5000,
        batch: 800,
    };
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(dir.path(), &bound.server_args(), &[]).await;
    let db = rusqlite::Connection::open(dir.path().join("log.db")).unwrap();
    let rows = || {
        let n = db
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap();
        std::future::ready(n as u64)
    };
    bound.check(&p.ws(), &p.url(""), rows).await;
    p.stop().await;
}

/// The reducer's `meta` at the ordering point: the voter is the token's
/// verified subject, so a token for mallory cannot vote as alice however
/// the action is filled in; a vote that did not see the last reset
/// (`meta.seen`) is refused as stale; events carry subject and seen over
/// HTTP, and the server's state is the fold of its log with that meta.
#[tokio::test]
async fn the_reducer_sees_who_sent_an_intent_and_what_it_had_seen() {
    const SECRET: &str = "meta-test-secret-0123456789abcdef";
    let token = |sub: &str| {
        let claims = serde_json::json!({
            "sub": sub, "exp": server_stub::auth::now_secs() + 3600,
            "read": ["polls/*"], "write": ["polls/*"],
        });
        server_stub::auth::sign(&claims.to_string(), SECRET.as_bytes())
    };
    let dir = tempfile::tempdir().unwrap();
    // The module the npm package's test imports too (js/test/meta.test.mjs).
    let poll = Path::new(env!("CARGO_MANIFEST_DIR")).join("../js/test/fixtures/poll.js");
    let rule = format!("polls/*={}", poll.display());
    let p = Proc::spawn(
        dir.path(),
        &["--reducer".into(), rule],
        &[("LOGSYNC_JWT_SECRET", SECRET.to_string())],
    )
    .await;
    let stream = "polls/lunch";
    let url_stream = "polls%2Flunch";
    let vote = |choice: &str, voter: &str| {
        serde_json::json!({"type": "vote", "choice": choice, "voter": voter})
            .to_string()
            .into_bytes()
    };
    let (mut alice, _) =
        Client::hello_with_token(&p.ws(), client_id(1), Some(&token("alice"))).await;
    let (mut mallory, _) =
        Client::hello_with_token(&p.ws(), client_id(2), Some(&token("mallory"))).await;

    alice.push(stream, &[(1, vote("pizza", "alice"))]).await;
    assert!(matches!(answer(&mut alice).await, ServerMsg::Ack { .. }));
    // Mallory fills in alice as the voter: the vote counts as mallory's.
    mallory.push(stream, &[(1, vote("sushi", "alice"))]).await;
    assert!(matches!(answer(&mut mallory).await, ServerMsg::Ack { .. }));
    mallory.push(stream, &[(2, vote("sushi", "alice"))]).await;
    match answer(&mut mallory).await {
        ServerMsg::Reject { code, message, .. } => {
            assert_eq!(code, ErrorCode::Rejected);
            assert_eq!(message, "ALREADY_VOTED: mallory has voted");
        }
        other => panic!("{other:?}"),
    }
    // A reset at offset 3; a vote that had seen only offset 2 is stale,
    // one that had seen the reset counts.
    alice
        .push(stream, &[(2, br#"{"type":"reset"}"#.to_vec())])
        .await;
    assert!(matches!(answer(&mut alice).await, ServerMsg::Ack { .. }));
    alice.push_seen(stream, &[(3, vote("tacos", ""), 2)]).await;
    match answer(&mut alice).await {
        ServerMsg::Reject { message, .. } => assert!(message.starts_with("STALE: "), "{message}"),
        other => panic!("{other:?}"),
    }
    alice.push_seen(stream, &[(4, vote("tacos", ""), 3)]).await;
    assert!(matches!(answer(&mut alice).await, ServerMsg::Ack { .. }));

    let reader = token("dashboard");
    let (status, page) = p
        .get(&format!(
            "/v1/streams/{url_stream}/events?after=0&token={reader}"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let log = page["events"].as_array().unwrap().clone();
    assert_eq!(log.len(), 4, "{log:?}");
    let subjects: Vec<&str> = log.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["alice", "mallory", "alice", "alice"]);
    let seen: Vec<u64> = log.iter().map(|e| e["seen"].as_u64().unwrap()).collect();
    assert_eq!(seen, [0, 0, 0, 3]);
    // The state is the fold of the log with each event's meta.
    let last = &log[3];
    let (status, state) = p
        .get(&format!("/v1/streams/{url_stream}/state?token={reader}"))
        .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        state["state"],
        serde_json::json!({
            "votes": {"alice": {
                "choice": "tacos", "at": last["time_ms"], "by": client_id(1).to_hex(),
            }},
            "resetAt": 3,
        }),
        "{state}"
    );
    p.stop().await;
}

/// A subscriber of a folded stream hears of each snapshot the server
/// stores: a `Checkpoint` with the hash of the state text, just before
/// the `Events` frame that holds its offset. A client that asks for the
/// snapshot (`Subscribe.resume`, as one whose fold diverged does) gets
/// the latest one first even though nothing was compacted, and the
/// events after it; one above the latest snapshot gets events only.
#[tokio::test]
async fn subscribers_hear_each_snapshots_hash_and_can_ask_for_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("seats/*={}", fixture("seats.js").display());
    let args: Vec<String> = ["--reducer", &rule, "--snapshot-every", "5"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = Proc::spawn(dir.path(), &args, &[]).await;
    let stream = "seats/check";
    let (mut reader, _) = Client::hello(&p.ws(), client_id(2)).await;
    reader.subscribe(stream, 0).await;
    assert!(matches!(reader.recv().await, ServerMsg::Events { .. }));
    let (mut writer, _) = Client::hello(&p.ws(), client_id(1)).await;
    // One at a time: each commit moves the head by one, so the snapshots
    // are at 5 and 10.
    for s in 1..=12u64 {
        writer
            .push(stream, &[(s, book(&format!("s{s}"), "ann"))])
            .await;
        assert!(matches!(answer(&mut writer).await, ServerMsg::Ack { .. }));
    }
    let mut checkpoints = Vec::new();
    let mut last = 0;
    while last < 12 {
        match within("the reader's frames", reader.recv()).await {
            ServerMsg::Checkpoint { offset, hash, .. } => {
                // A checkpoint comes before the event it is at.
                assert!(
                    offset.0 > last,
                    "checkpoint at {offset} came after event {last}"
                );
                checkpoints.push((offset.0, hash));
            }
            ServerMsg::Events { events, .. } => {
                last = events.last().map_or(last, |e| e.offset.0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (status, snap) = p.get("/v1/streams/seats%2Fcheck/snapshot").await;
    assert_eq!(status, 200, "{snap}");
    assert_eq!(snap["offset"], 10, "{snap}");
    assert_eq!(checkpoints.iter().map(|c| c.0).collect::<Vec<_>>(), [5, 10]);
    let hash = checkpoints[1].1;
    assert_eq!(
        format!("{hash:016x}"),
        snap["hash"].as_str().unwrap(),
        "the hash of the stored snapshot"
    );

    // Asked for at 5 (a client that diverged there): the snapshot at 10,
    // then the events after it.
    let (mut repair, _) = Client::hello(&p.ws(), client_id(3)).await;
    repair
        .subscribe_resuming(stream, 5, sync_core::Offset(5), checkpoints[0].1, 0)
        .await;
    match repair.recv().await {
        ServerMsg::Snapshot {
            offset,
            hash: h,
            at: 0,
            total,
            part,
            ..
        } => {
            assert_eq!((offset.0, h, total), (10, hash, part.len() as u64));
            assert_eq!(sync_core::protocol::state_hash(&part), hash);
            let state: serde_json::Value = serde_json::from_slice(&part).unwrap();
            assert_eq!(state, snap["state"]);
        }
        other => panic!("expected the snapshot, got {other:?}"),
    }
    let rest = repair.events_until(12).await;
    assert_eq!(rest.first().map(|e| e.offset.0), Some(11));
    // Asked for above the latest snapshot: nothing to send but events.
    let (mut above, _) = Client::hello(&p.ws(), client_id(4)).await;
    above
        .subscribe_resuming(stream, 11, sync_core::Offset(10), hash, 0)
        .await;
    match above.recv().await {
        ServerMsg::Events { events, head, .. } => {
            assert_eq!(head.0, 12);
            assert_eq!(events.iter().map(|e| e.offset.0).collect::<Vec<_>>(), [12]);
        }
        other => panic!("expected events, got {other:?}"),
    }
    p.stop().await;
}

/// The read log across `kill -9`: every read that was answered is in it,
/// once; reads after the restart continue under a new client id.
#[tokio::test]
async fn the_read_log_holds_each_answered_read_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = vec![
        "--reducer".into(),
        format!("seats/*={}", fixture("seats.js").display()),
        "--read-log".into(),
        "seats/*".into(),
    ];
    let mut p = Proc::spawn(dir.path(), &args, &[]).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(5)).await;
    c.push("seats/k", &[(1, book("1A", "ann"))]).await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    for _ in 0..3 {
        let (status, body) = p.get("/v1/streams/seats%2Fk/views/count").await;
        assert_eq!((status, &body["result"]), (200, &serde_json::json!(1)));
    }
    c.send(&sync_core::ClientMsg::Watch {
        id: 1,
        stream: common::stream("seats/k"),
        view: "count".into(),
        params: "null".into(),
        known: None,
    })
    .await;
    loop {
        match c.recv().await {
            ServerMsg::View { .. } => break,
            ServerMsg::Events { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // No shutdown: SIGKILL, then the same database again.
    p.child.start_kill().unwrap();
    within("the killed server", p.child.wait()).await.unwrap();
    let p = Proc::spawn(dir.path(), &args, &[]).await;
    for _ in 0..2 {
        let (status, _) = p.get("/v1/streams/seats%2Fk/views/count").await;
        assert_eq!(status, 200);
    }
    let reads = events(&p, "~reads%2Fseats%2Fk").await;
    let vias: Vec<&str> = reads
        .iter()
        .map(|e| e["payload"]["via"].as_str().unwrap())
        .collect();
    assert_eq!(vias, ["http", "http", "http", "ws", "http", "http"]);
    assert!(reads.iter().all(|e| e["payload"]["offset"] == 1));
    let writers: Vec<(&str, u64)> = reads
        .iter()
        .map(|e| (e["client_id"].as_str().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    let (before, after) = (writers[0].0, writers[4].0);
    assert_ne!(
        before, after,
        "a restarted server records under a new client id"
    );
    assert_eq!(
        writers,
        [
            (before, 1),
            (before, 2),
            (before, 3),
            (before, 4),
            (after, 1),
            (after, 2)
        ]
    );
    p.stop().await;
}
