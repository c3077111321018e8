//! The `otel` feature: `logsync-server --otlp-endpoint URL` exports each
//! push's span to an OpenTelemetry collector over OTLP/HTTP. The
//! collector here is a real HTTP server on 127.0.0.1:0 that keeps every
//! body posted to it; the server is the real binary, stopped by PID.
//!
//! Runs with `cargo test -p server-stub --features otel --test otel`
//! (scripts/test.sh does).
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{client_id, within, Client};
use sync_core::ServerMsg;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

type Posts = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A collector that answers every OTLP export with 200 and keeps it.
async fn collector() -> (String, Posts) {
    let posts: Posts = Arc::default();
    async fn keep(State(posts): State<Posts>, body: Bytes) -> &'static str {
        posts
            .lock()
            .unwrap()
            .push(("/v1/traces".into(), body.to_vec()));
        ""
    }
    let app = axum::Router::new()
        .route("/v1/traces", post(keep))
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_reaches_the_collector_as_one_span_with_its_client_and_seqs() {
    let (endpoint, posts) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("log.db"))
        .args(["--otlp-endpoint", &endpoint])
        // Nothing on stderr: the collector still gets the spans.
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("the listening line", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("logsync-server listening on http://")
        .unwrap()
        .to_string();

    let (mut c, _) = Client::hello(&format!("ws://{addr}/v1/ws"), client_id(7)).await;
    c.push(
        "otel/s",
        &[(1, br#"{"a":1}"#.to_vec()), (2, br#"{"a":2}"#.to_vec())],
    )
    .await;
    for _ in 0..2 {
        let ServerMsg::Ack { .. } = within("an Ack", c.recv()).await else {
            panic!("expected Acks")
        };
    }
    drop(c);

    // SIGTERM: the server flushes its exporter before it exits.
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = within("exit after SIGTERM", child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");

    let posts = posts.lock().unwrap();
    let client = client_id(7).to_string();
    let span = posts
        .iter()
        .find(|(_, body)| contains(body, b"intent_push"))
        .unwrap_or_else(|| panic!("no intent_push span among {} exports", posts.len()));
    // OTLP protobuf keeps attribute keys and string values as raw bytes.
    for needle in [
        &b"logsync-server"[..],
        b"otel/s",
        client.as_bytes(),
        b"first_seq",
        b"last_seq",
        b"received",
        b"decided",
    ] {
        assert!(
            contains(&span.1, needle),
            "{:?} missing from the exported span",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn without_a_collector_url_the_flag_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "collector:4318",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--otlp-endpoint"), "{stderr}");
}
