//! A seq reused for another intent is refused with `SEQ_REUSED`, naming
//! the offset of the intent that holds the seq, over WebSocket and HTTP,
//! also after a restart; a true resend still gets its original answer.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sync_core::{ErrorCode, Offset, ServerMsg};

async fn post(s: &TestServer, id: u8, seq: u64, payload: &str) -> (u16, serde_json::Value) {
    let body = format!(
        r#"{{"client_id":"{}","seq":{seq},"payload":{payload}}}"#,
        client_id(id).to_hex()
    );
    let r = http()
        .post(s.url("/v1/streams/reused/intents"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn a_reused_seq_is_refused_over_websocket_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(1)).await;
    c.push(
        "reused",
        &[(1, br#"{"n":1}"#.to_vec()), (2, br#"{"n":2}"#.to_vec())],
    )
    .await;
    for _ in 0..2 {
        assert!(matches!(
            c.recv().await,
            ServerMsg::Ack {
                duplicate: false,
                ..
            }
        ));
    }
    // Seq 2 again with another payload, then the true resend of seq 1.
    c.push(
        "reused",
        &[
            (2, br#"{"n":"other"}"#.to_vec()),
            (1, br#"{"n":1}"#.to_vec()),
        ],
    )
    .await;
    match c.recv().await {
        ServerMsg::Reject {
            seq, code, message, ..
        } => {
            assert_eq!((seq, code), (seq_of(2), ErrorCode::SeqReused));
            assert!(message.contains("offset 2"), "{message}");
        }
        other => panic!("expected SEQ_REUSED, got {other:?}"),
    }
    match c.recv().await {
        ServerMsg::Ack {
            seq,
            offset,
            duplicate,
            ..
        } => assert_eq!((seq, offset, duplicate), (seq_of(1), Offset(1), true)),
        other => panic!("expected the original Ack, got {other:?}"),
    }

    // Over HTTP: 409 with the offset that holds the seq.
    let (status, v) = post(&s, 1, 1, r#"{"n":"again"}"#).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(error_code(&v), "SEQ_REUSED");
    assert_eq!(v["error"]["offset"], 1);
    assert_eq!(v["error"]["seq"], 1);
    let (status, v) = post(&s, 1, 2, r#"{"n":2}"#).await;
    assert_eq!(
        (status, v),
        (200, serde_json::json!({"offset": 2, "duplicate": true}))
    );

    // Nothing of the refused intents is in the log, and the rule holds
    // after a restart (the digests are stored with the log).
    let page: serde_json::Value = serde_json::from_str(
        &http()
            .get(s.url("/v1/streams/reused/events?after=0"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(page["head"], 2);
    drop(c);
    s.stop().await;
    let s = TestServer::start(config(dir.path())).await;
    let (status, v) = post(&s, 1, 2, r#"{"n":"after restart"}"#).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(error_code(&v), "SEQ_REUSED");
    assert_eq!(v["error"]["offset"], 2);
    let (status, _) = post(&s, 1, 3, r#"{"n":3}"#).await;
    assert_eq!(status, 200);
    s.stop().await;
}

fn seq_of(n: u64) -> sync_core::Seq {
    seq(n)
}
