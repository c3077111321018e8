//! A database that cannot write: every waiting request is answered
//! `STORAGE` (not `SHUTTING_DOWN`), later requests are still answered, the
//! readiness check fails until writes work again, and no answer carries
//! internal text (the database path, SQL).
//!
//! The failure is real SQLite: triggers added to the server's own file
//! make its writes abort, as a full or read-only disk would (a read-only
//! file cannot be had here: tests may run as root, who writes anyway).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sync_core::{ErrorCode, ServerMsg};

const CLIENT: &str = "0123456789abcdef0123456789abcdef";

/// Makes every write to `db` fail; the error names the database path,
/// which must never reach a client.
fn break_writes(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let why = format!("disk I/O error writing {}", db.display());
    for (name, when) in [
        ("no_events", "BEFORE INSERT ON events"),
        ("no_rejections", "BEFORE INSERT ON rejections"),
        ("no_streams", "BEFORE INSERT ON streams"),
        ("no_stream_heads", "BEFORE UPDATE ON streams"),
        ("no_meta", "BEFORE UPDATE ON meta"),
    ] {
        conn.execute_batch(&format!(
            "CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{why}'); END;"
        ))
        .unwrap();
    }
}

fn repair_writes(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    for name in [
        "no_events",
        "no_rejections",
        "no_streams",
        "no_stream_heads",
        "no_meta",
    ] {
        conn.execute_batch(&format!("DROP TRIGGER {name};"))
            .unwrap();
    }
}

async fn post(s: &TestServer, stream: &str, seq: u64) -> (u16, serde_json::Value) {
    let r = http()
        .post(s.url(&format!("/v1/streams/{stream}/intents")))
        .body(format!(
            r#"{{"client_id":"{CLIENT}","seq":{seq},"payload":{{"n":{seq}}}}}"#
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

async fn health(s: &TestServer) -> (u16, String) {
    let r = http().get(s.url("/healthz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_store_that_cannot_write_answers_storage_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    let secret_dir = dir.path().display().to_string();
    assert_eq!(post(&s, "a", 1).await.0, 200);
    assert_eq!(health(&s).await.0, 200);
    break_writes(&s.db);

    // Several requests waiting at once (likely one batch): each answered
    // STORAGE, none SHUTTING_DOWN, none with the path.
    let answers = futures_util::future::join_all((0..8).map(|_| post(&s, "b", 1))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(error_code(body), "STORAGE", "{body}");
        let text = body.to_string();
        assert!(!text.contains(&secret_dir), "internal text leaked: {text}");
        assert!(!text.contains("I/O error"), "internal text leaked: {text}");
    }
    // Later requests are still answered, the same way.
    let (status, body) = post(&s, "c", 1).await;
    assert_eq!((status, error_code(&body)), (503, "STORAGE"), "{body}");
    // Over WebSocket: the push is answered STORAGE (close 1011).
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(7)).await;
    c.push("d", &[(1, b"1".to_vec())]).await;
    let (error, close) = c.recv_close().await;
    match error {
        Some(ServerMsg::Error { code, message }) => {
            assert_eq!(code, ErrorCode::Storage);
            assert!(!message.contains(&secret_dir), "{message}");
        }
        other => panic!("expected STORAGE, got {other:?}"),
    }
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1011));

    // Readiness fails while writes fail; liveness does not.
    let (status, text) = health(&s).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("\"STORAGE\""), "{text}");
    assert!(!text.contains(&secret_dir), "{text}");
    let live = http().get(s.url("/livez")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    // Every 5xx is counted (and logged).
    assert!(metric(&s, "logsync_http_5xx_total").await >= 10.0);

    // The disk comes back: writes and readiness recover.
    repair_writes(&s.db);
    let (status, body) = post(&s, "c", 1).await;
    assert_eq!(status, 200, "{body}");
    within("readiness to recover", async {
        while health(&s).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Nothing of the failed batches was stored.
    let page: serde_json::Value = serde_json::from_str(
        &http()
            .get(s.url("/v1/streams/b/events"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(page["head"], 0);
    s.stop().await;
}

#[tokio::test]
async fn readiness_fails_when_the_store_cannot_write_before_any_push() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    // The store is open (and its tables made) once the server answers.
    within("the server to answer", async {
        while http().get(s.url("/livez")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    break_writes(&s.db);
    // The health check tries a real write: no push is needed to notice.
    within("readiness to fail", async {
        loop {
            let (status, text) = health(&s).await;
            if status == 503 {
                assert!(text.contains("\"STORAGE\""), "{text}");
                assert!(!text.contains(&dir.path().display().to_string()), "{text}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    s.stop().await;
}
