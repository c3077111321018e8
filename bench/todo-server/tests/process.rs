//! `logsync-todo-server` as a process on 127.0.0.1:0 with a real SQLite
//! file: intents posted over HTTP are folded by the Rust todo reducer, a
//! `null` payload is refused as the JavaScript module's server refuses it,
//! and `logsync-server`'s flags work (`--snapshot-every`).
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn folds_todos_with_the_rust_reducer_and_takes_logsync_servers_flags() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_logsync-todo-server"))
        .args(["--listen", "127.0.0.1:0", "--snapshot-every", "3", "--db"])
        .arg(dir.path().join("log.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("logsync-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let http = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let stream = format!("http://{addr}/v1/streams/todos%2Froom");

    let payloads = [
        r#"{"type":"todo/added","id":"a","text":"  milk "}"#,
        r#"{"type":"todo/added","id":"b","text":"eggs"}"#,
        r#"{"type":"todo/toggled","id":"a"}"#,
        "null",
        r#"{"type":"todo/added","id":"a","text":"dup"}"#,
        r#"{"type":"todos/allToggled","completed":true}"#,
        r#"{"type":"todo/edited","id":"b","text":"  bread"}"#,
        "42",
    ];
    let mut answers = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let body = format!(
            r#"{{"client_id":"0123456789abcdef0123456789abcdef","seq":{},"payload":{p}}}"#,
            i + 1
        );
        let r = http
            .post(format!("{stream}/intents"))
            .body(body)
            .send()
            .await
            .unwrap();
        answers.push((r.status().as_u16(), r.text().await.unwrap()));
    }
    // What logsync-server answers with `--reducer todos/*=…/todos.js`.
    assert_eq!(answers[0].1, r#"{"duplicate":false,"offset":1}"#);
    assert!(
        answers[3].1.contains(
            r#""code":"REJECTED","duplicate":false,"message":"cannot read property 'type' of null""#
        ),
        "{answers:?}"
    );
    assert_eq!(answers[7].1, r#"{"duplicate":false,"offset":7}"#);

    let get = |path: &'static str| {
        let url = format!("{stream}{path}");
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let todos = r#"{"todos":[{"id":"a","text":"milk","completed":true},{"id":"b","text":"bread","completed":true}]}"#;
    assert_eq!(
        get("/state").await,
        format!(r#"{{"offset":7,"state":{todos}}}"#)
    );
    // A snapshot every 3 events; its hash is that of the JavaScript
    // module's snapshot of the same events (the same state text).
    assert_eq!(
        get("/snapshot").await,
        format!(r#"{{"offset":6,"hash":"45c69585b5f62ba8","schema":1,"state":{todos}}}"#)
    );

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
