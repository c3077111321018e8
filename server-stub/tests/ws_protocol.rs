//! The WebSocket protocol end to end: order under concurrent writers,
//! resume without gap or repeat, exactly-once pushes (also across a
//! restart), rejections, heartbeats, graceful shutdown, golden fixtures.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use sync_core::{ClientMsg, ErrorCode, Event, Offset, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

/// Pushes `count` intents in pushes of 1-5, waiting for each push's
/// outcomes; returns seq -> offset.
async fn write(url: String, id: u8, stream: &str, count: u64) -> BTreeMap<u64, u64> {
    let (mut c, _) = Client::hello(&url, client_id(id)).await;
    let mut acked = BTreeMap::new();
    let mut next = 1;
    while next <= count {
        let n = (next % 5 + 1).min(count - next + 1);
        let intents: Vec<(u64, Vec<u8>)> = (next..next + n)
            .map(|s| (s, format!("{{\"w\":{id},\"s\":{s}}}").into_bytes()))
            .collect();
        c.push(stream, &intents).await;
        for _ in 0..n {
            match c.recv().await {
                ServerMsg::Ack {
                    seq,
                    offset,
                    duplicate: false,
                    ..
                } => {
                    acked.insert(seq.get(), offset.0);
                }
                other => panic!("writer {id}: unexpected {other:?}"),
            }
        }
        next += n;
    }
    acked
}

#[tokio::test]
async fn ten_concurrent_writers_every_subscriber_sees_one_dense_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        catch_up_events: 7,
        ..config(dir.path())
    })
    .await;
    let url = server.ws_url();
    let mut subscribers = Vec::new();
    for i in 0..3 {
        let (mut c, _) = Client::hello(&url, client_id(100 + i)).await;
        c.subscribe("orders", 0).await;
        // The first answer is always an Events frame carrying the head.
        match c.recv().await {
            ServerMsg::Events { events, head, .. } => {
                assert!(events.is_empty());
                assert_eq!(head, Offset(0));
            }
            other => panic!("unexpected {other:?}"),
        }
        subscribers.push(c);
    }
    let writers: Vec<_> = (1..=10u8)
        .map(|id| tokio::spawn(write(url.clone(), id, "orders", 40)))
        .collect();
    // One subscriber joins in the middle of the load, from offset 0.
    within("a quarter of the load", async {
        loop {
            let meta: serde_json::Value = serde_json::from_str(
                &http()
                    .get(server.url("/v1/streams/orders"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            )
            .unwrap();
            if meta["head"].as_u64().unwrap() >= 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (mut late, _) = Client::hello(&url, client_id(200)).await;
    late.subscribe("orders", 0).await;
    subscribers.push(late);

    let mut acks: HashMap<(u8, u64), u64> = HashMap::new();
    for (i, w) in writers.into_iter().enumerate() {
        for (s, o) in within("writer", w).await.unwrap() {
            acks.insert((i as u8 + 1, s), o);
        }
    }
    assert_eq!(acks.len(), 400);
    let mut seen: Vec<Vec<Event>> = Vec::new();
    for c in &mut subscribers {
        let events = c.events_until(400).await;
        assert_eq!(events.len(), 400);
        assert_dense(&events, 1);
        seen.push(events);
    }
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "every subscriber sees the same order");
    }
    // Each intent exactly once, at the offset its Ack named.
    let mut once = HashSet::new();
    for e in &seen[0] {
        let w = e.client_id.0[0];
        assert!(once.insert((w, e.seq.get())), "duplicate event {e:?}");
        assert_eq!(acks[&(w, e.seq.get())], e.offset.0);
        assert_eq!(
            e.payload,
            format!("{{\"w\":{w},\"s\":{}}}", e.seq.get()).into_bytes()
        );
    }
    // Per writer, its intents are in seq order in the log.
    for w in 1..=10u8 {
        let seqs: Vec<u64> = seen[0]
            .iter()
            .filter(|e| e.client_id.0[0] == w)
            .map(|e| e.seq.get())
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    }
    server.stop().await;
}

#[tokio::test]
async fn resume_from_offset_misses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny in-memory feed and small pages force every resume through
    // catch-up from the log and back onto the live feed while writes go on.
    let server = TestServer::start(server_stub::Config {
        catch_up_events: 9,
        feed_buffer_bytes: 2048,
        ..config(dir.path())
    })
    .await;
    let url = server.ws_url();
    const TOTAL: u64 = 600;
    let writer = tokio::spawn(write(url.clone(), 1, "feed", TOTAL));

    let mut got: Vec<Event> = Vec::new();
    let mut sessions = 0;
    while got.last().map(|e| e.offset.0).unwrap_or(0) < TOTAL {
        sessions += 1;
        let after = got.last().map(|e| e.offset.0).unwrap_or(0);
        let (mut c, _) = Client::hello(&url, client_id(50)).await;
        c.subscribe("feed", after).await;
        // Read a while (a few frames), then drop the connection abruptly,
        // unless this is the session that reads to the end.
        let frames = if sessions < 6 { 3 } else { usize::MAX };
        let mut read = 0;
        while read < frames && got.last().map(|e| e.offset.0).unwrap_or(0) < TOTAL {
            if let ServerMsg::Events { events, head, .. } = c.recv().await {
                if let Some(last) = events.last() {
                    assert!(head >= last.offset, "head {head:?} below {last:?}");
                }
                if let Some(first) = events.first() {
                    let expected = got.last().map(|e| e.offset.0).unwrap_or(0) + 1;
                    assert_eq!(first.offset.0, expected, "gap or repeat at a resume");
                }
                got.extend(events);
                read += 1;
            }
        }
        drop(c);
    }
    assert!(sessions >= 6, "resumed {sessions} times");
    assert_eq!(got.len() as u64, TOTAL);
    assert_dense(&got, 1);
    let acked = within("writer", writer).await.unwrap();
    for e in &got {
        assert_eq!(acked[&e.seq.get()], e.offset.0);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_second_subscribe_restarts_from_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        catch_up_events: 5,
        ..config(dir.path())
    })
    .await;
    let url = server.ws_url();
    write(url.clone(), 1, "s", 20).await;
    let (mut c, _) = Client::hello(&url, client_id(9)).await;
    c.subscribe("s", 0).await;
    let ServerMsg::Events { events, head, .. } = c.recv().await else {
        panic!("expected events")
    };
    assert_eq!(head, Offset(20));
    assert_eq!(events.first().map(|e| e.offset), Some(Offset(1)));
    let all = c.events_until(20).await;
    assert_dense(&all, 6);
    // The first subscription is now live and idle; a second Subscribe
    // replaces it and starts over from its own offset.
    c.subscribe("s", 10).await;
    let again = c.events_until(20).await;
    assert_dense(&again, 11);
    assert_eq!(again.len(), 10);
    // Live events follow, once: the first subscription is gone.
    write(url.clone(), 2, "s", 1).await;
    let live = c.events_until(21).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].offset, Offset(21));
    c.send(&ClientMsg::Ping { nonce: 9 }).await;
    assert_eq!(c.recv().await, ServerMsg::Pong { nonce: 9 });
    // Unsubscribe: nothing more arrives, but the connection lives on.
    c.send(&ClientMsg::Unsubscribe {
        stream: stream("s"),
    })
    .await;
    c.send(&ClientMsg::Ping { nonce: 1 }).await;
    assert_eq!(c.recv().await, ServerMsg::Pong { nonce: 1 });
    write(url.clone(), 3, "s", 1).await;
    c.send(&ClientMsg::Ping { nonce: 2 }).await;
    assert_eq!(c.recv().await, ServerMsg::Pong { nonce: 2 });
    server.stop().await;
}

fn ack(msg: ServerMsg) -> (u64, u64, bool) {
    match msg {
        ServerMsg::Ack {
            seq,
            offset,
            duplicate,
            ..
        } => (seq.get(), offset.0, duplicate),
        other => panic!("expected an Ack, got {other:?}"),
    }
}

#[tokio::test]
async fn duplicates_and_replays_get_original_answers_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_stub::Config {
        max_payload_bytes: 100,
        ..config(dir.path())
    };
    let server = TestServer::start(cfg.clone()).await;
    let url = server.ws_url();
    // Someone else writes first, so offsets and seqs differ.
    write(url.clone(), 2, "dup", 3).await;
    let (mut c, welcome) = Client::hello(&url, client_id(1)).await;
    let ServerMsg::Welcome {
        epoch,
        max_frame_bytes,
        ..
    } = welcome
    else {
        unreachable!()
    };
    // The announced frame limit makes the client's largest action exactly
    // the largest payload this server accepts.
    assert_eq!(
        max_frame_bytes,
        sync_core::protocol::welcome_frame_limit(cfg.max_frame_bytes, cfg.max_payload_bytes)
    );
    assert_eq!(
        sync_core::protocol::max_push_payload(max_frame_bytes as usize),
        cfg.max_payload_bytes
    );
    let p = |s: u64| (s, format!("[{s}]").into_bytes());
    c.push("dup", &[p(1), p(2), p(3)]).await;
    let first: Vec<_> = vec![
        ack(c.recv().await),
        ack(c.recv().await),
        ack(c.recv().await),
    ];
    assert_eq!(first, vec![(1, 4, false), (2, 5, false), (3, 6, false)]);
    // A single resend, then the whole batch again.
    c.push("dup", &[p(2)]).await;
    assert_eq!(ack(c.recv().await), (2, 5, true));
    c.push("dup", &[p(1), p(2), p(3), p(4)]).await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(ack(c.recv().await));
    }
    assert_eq!(
        answers,
        vec![(1, 4, true), (2, 5, true), (3, 6, true), (4, 7, false)]
    );
    // A seq beyond the next: Gap with the expected seq; the rest ignored.
    c.push("dup", &[p(6), p(5)]).await;
    assert_eq!(
        c.recv().await,
        ServerMsg::Gap {
            stream: stream("dup"),
            expected_seq: seq(5)
        }
    );
    // Over the payload limit: rejected, and the rejection is the decision.
    c.push("dup", &[(5, json_payload("big", 200))]).await;
    let reject = c.recv().await;
    let ServerMsg::Reject {
        seq: s,
        code,
        message,
        ..
    } = &reject
    else {
        panic!("expected Reject, got {reject:?}")
    };
    assert_eq!((s.get(), *code), (5, ErrorCode::PayloadTooLarge));
    assert!(message.contains("200 bytes"), "{message}");
    c.push("dup", &[(5, b"1".to_vec())]).await;
    assert_eq!(c.recv().await, reject, "a resend gets the same rejection");
    c.push("dup", &[p(6)]).await;
    assert_eq!(ack(c.recv().await), (6, 8, false));
    drop(c);
    server.stop().await;

    // Same file, new process state.
    let server = TestServer::start(cfg).await;
    let url = server.ws_url();
    let (mut c, welcome) = Client::hello(&url, client_id(1)).await;
    let ServerMsg::Welcome { epoch: epoch2, .. } = welcome else {
        unreachable!()
    };
    assert_eq!(epoch2, epoch, "the epoch survives a restart");
    c.push("dup", &[p(1), p(2), p(3), p(4), (5, vec![]), p(6), p(7)])
        .await;
    let mut after_restart = Vec::new();
    for _ in 0..7 {
        after_restart.push(c.recv().await);
    }
    let expect_acks = [(1, 4), (2, 5), (3, 6), (4, 7)];
    for (msg, (s, o)) in after_restart[..4].iter().zip(expect_acks) {
        assert_eq!(ack(msg.clone()), (s, o, true));
    }
    assert_eq!(after_restart[4], reject);
    assert_eq!(ack(after_restart[5].clone()), (6, 8, true));
    assert_eq!(ack(after_restart[6].clone()), (7, 9, false));
    // The log holds each intent once: 3 of the other writer, 6 of ours.
    c.subscribe("dup", 0).await;
    let events = c.events_until(9).await;
    assert_eq!(events.len(), 9);
    assert_dense(&events, 1);
    let ours: Vec<u64> = events
        .iter()
        .filter(|e| e.client_id == client_id(1))
        .map(|e| e.seq.get())
        .collect();
    assert_eq!(ours, vec![1, 2, 3, 4, 6, 7]);
    server.stop().await;
}

#[tokio::test]
async fn pings_are_answered_and_live_clients_stay_connected() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(1000),
        ..config(dir.path())
    })
    .await;
    let (mut c, _) = Client::hello(&server.ws_url(), client_id(1)).await;
    c.send(&ClientMsg::Ping { nonce: 1 }).await;
    assert_eq!(c.recv().await, ServerMsg::Pong { nonce: 1 });
    // Three idle timeouts long, the client only sends its protocol Ping
    // now and then (as the SDK's heartbeat does) and reads: the server
    // keeps pinging, and the connection stays. (WebSocket pongs alone do
    // not keep it: tests/deadlines.rs.)
    let until = tokio::time::Instant::now() + Duration::from_millis(3000);
    let mut pings = 0;
    let mut nonce = 10;
    let mut next_heartbeat = tokio::time::Instant::now();
    while tokio::time::Instant::now() < until {
        if tokio::time::Instant::now() >= next_heartbeat {
            nonce += 1;
            c.send(&ClientMsg::Ping { nonce }).await;
            next_heartbeat += Duration::from_millis(300);
        }
        match tokio::time::timeout(
            Duration::from_millis(50),
            futures_util::StreamExt::next(&mut c.ws),
        )
        .await
        {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) => {
                let pong = ServerMsg::decode(&b, 1 << 20).unwrap();
                assert!(matches!(pong, ServerMsg::Pong { .. }), "{pong:?}");
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    assert!(pings >= 10, "the server pinged {pings} times");
    c.send(&ClientMsg::Ping { nonce: 2 }).await;
    assert_eq!(c.recv().await, ServerMsg::Pong { nonce: 2 });
    server.stop().await;
}

#[tokio::test]
async fn shutdown_sends_outcomes_then_closes_with_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut server = TestServer::start(cfg.clone()).await;
    let (mut sub, _) = Client::hello(&server.ws_url(), client_id(2)).await;
    sub.subscribe("s", 0).await;
    sub.recv().await;
    let (mut c, _) = Client::hello(&server.ws_url(), client_id(1)).await;
    let intents: Vec<(u64, Vec<u8>)> = (1..=200).map(|s| (s, b"{}".to_vec())).collect();
    c.push("s", &intents).await;
    c.send(&ClientMsg::Ping { nonce: 7 }).await;
    // The Pong proves the push was taken before the shutdown began.
    let mut acks = 0;
    loop {
        match c.recv().await {
            ServerMsg::Pong { nonce: 7 } => break,
            ServerMsg::Ack { .. } => acks += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    server.begin_stop();
    let mut error = None;
    let mut close = None;
    // The Acks (some may have come before the Pong) and then the close.
    loop {
        match within("close", futures_util::StreamExt::next(&mut c.ws)).await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => {
                match ServerMsg::decode(&b, 1 << 20).unwrap() {
                    ServerMsg::Ack { .. } => acks += 1,
                    e @ ServerMsg::Error { .. } => error = Some(e),
                    other => panic!("unexpected {other:?}"),
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                close = f;
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    // Every intent of the push taken before the shutdown was committed
    // and acknowledged before the close.
    assert_eq!(acks, 200);
    assert!(
        matches!(
            error,
            Some(ServerMsg::Error {
                code: ErrorCode::ShuttingDown,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    let (e, f) = sub.recv_close().await;
    assert!(matches!(
        e,
        Some(ServerMsg::Error {
            code: ErrorCode::ShuttingDown,
            ..
        })
    ));
    assert_eq!(f.map(|f| u16::from(f.code)), Some(1001));
    server.stop().await;
    // The whole push was committed before the server stopped.
    let server = TestServer::start(cfg).await;
    let (mut c, _) = Client::hello(&server.ws_url(), client_id(3)).await;
    c.subscribe("s", 0).await;
    let ServerMsg::Events { head, .. } = c.recv().await else {
        panic!("expected events")
    };
    assert_eq!(head, Offset(200));
    server.stop().await;
}

#[tokio::test]
async fn golden_client_fixtures_are_understood() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sync-core/fixtures/protocol-v5");
    let read = |name: &str| std::fs::read(fixtures.join(format!("{name}.bin"))).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("client-"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for n in &names {
        let bytes = std::fs::read(fixtures.join(n)).unwrap();
        ClientMsg::decode(&bytes, 1 << 20).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let raw = |b: Vec<u8>| tokio_tungstenite::tungstenite::Message::Binary(b.into());
    c.send_raw(raw(read("client-hello"))).await;
    assert!(matches!(c.recv().await, ServerMsg::Welcome { .. }));
    c.send_raw(raw(read("client-ping"))).await;
    let ClientMsg::Ping { nonce } = ClientMsg::decode(&read("client-ping"), 1 << 20).unwrap()
    else {
        panic!("not a ping")
    };
    assert_eq!(c.recv().await, ServerMsg::Pong { nonce });
    c.send_raw(raw(read("client-subscribe"))).await;
    assert!(matches!(c.recv().await, ServerMsg::Events { .. }));
    c.send_raw(raw(read("client-push"))).await;
    let answer = c.recv().await;
    assert!(
        matches!(
            answer,
            ServerMsg::Ack { .. } | ServerMsg::Gap { .. } | ServerMsg::Reject { .. }
        ),
        "{answer:?}"
    );
    c.send_raw(raw(read("client-unsubscribe"))).await;
    c.send(&ClientMsg::Ping { nonce: 5 }).await;
    loop {
        // Events of the subscription may still be in flight.
        match c.recv().await {
            ServerMsg::Pong { nonce: 5 } => break,
            ServerMsg::Events { .. } | ServerMsg::Ack { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn live_events_are_encoded_once_and_shared_by_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let url = server.ws_url();
    let mut subs = Vec::new();
    for i in 0..3 {
        let (mut c, _) = Client::hello(&url, client_id(10 + i)).await;
        c.subscribe("shared", 0).await;
        c.recv().await;
        subs.push(c);
    }
    let shared = || async {
        let text = http()
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("logsync_fanout_shared_frames_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = shared().await;
    // Five commits of one event each, while every subscriber is live and
    // caught up (each has the previous event before the next commit: a
    // subscriber that is behind would take several commits in one frame).
    let (mut w, _) = Client::hello(&url, client_id(1)).await;
    let mut frames = vec![Vec::new(); subs.len()];
    for s in 1..=5 {
        w.push("shared", &[(s, b"{}".to_vec())]).await;
        assert!(matches!(w.recv().await, ServerMsg::Ack { .. }));
        for (c, mine) in subs.iter_mut().zip(&mut frames) {
            match c.recv().await {
                m @ ServerMsg::Events { .. } => mine.push(m.encode()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(frames[0], frames[1]);
    assert_eq!(frames[0], frames[2]);
    // Each frame each subscriber got was the one encoded at commit time.
    assert_eq!(shared().await - before, 15);
    server.stop().await;
}

#[tokio::test]
async fn a_withdrawn_seq_is_decided_as_rejected_and_leaves_no_hole() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut c, _) = Client::hello(&server.ws_url(), client_id(9)).await;
    let withdraw = |s: u64| ClientMsg::Withdraw {
        stream: stream("wd"),
        seq: seq(s),
        code: ErrorCode::PayloadTooLarge,
        message: "does not fit".into(),
    };
    c.push("wd", &[(1, b"1".to_vec())]).await;
    assert_eq!(ack(c.recv().await), (1, 1, false));
    c.send(&withdraw(2)).await;
    let reject = c.recv().await;
    assert!(
        matches!(&reject, ServerMsg::Reject { seq: s, code: ErrorCode::PayloadTooLarge, message, .. }
            if s.get() == 2 && message == "does not fit"),
        "{reject:?}"
    );
    // The next seq is appended right after: no hole.
    c.push("wd", &[(3, b"3".to_vec())]).await;
    assert_eq!(ack(c.recv().await), (3, 2, false));
    // Resending seq 2, as a push or a withdraw, gets the original rejection.
    c.push("wd", &[(2, b"2".to_vec())]).await;
    assert_eq!(c.recv().await, reject);
    c.send(&withdraw(2)).await;
    assert_eq!(c.recv().await, reject);
    // Withdrawing beyond the next seq is a gap, like a push.
    c.send(&withdraw(9)).await;
    assert_eq!(
        c.recv().await,
        ServerMsg::Gap {
            stream: stream("wd"),
            expected_seq: seq(4)
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_behind_the_feed_catches_up_in_few_large_frames() {
    let dir = tempfile::tempdir().unwrap();
    let max_frame = 16 << 10;
    let server = TestServer::start(server_stub::Config {
        max_frame_bytes: max_frame,
        max_payload_bytes: 1024,
        // The new subscriber's first page ends early, so the rest comes
        // from the feed's window.
        catch_up_events: 10,
        ..config(dir.path())
    })
    .await;
    let url = server.ws_url();
    // A follower keeps the stream's feed (and its window) alive.
    let (mut follower, _) = Client::hello(&url, client_id(20)).await;
    follower.subscribe("behind", 0).await;
    follower.recv().await;
    let (mut w, _) = Client::hello(&url, client_id(1)).await;
    for s in 1..=200u64 {
        w.push("behind", &[(s, vec![b'7'; 100])]).await;
        assert!(matches!(w.recv().await, ServerMsg::Ack { .. }));
    }
    follower.events_until(200).await;
    let coalesced_before = metric(&server, "logsync_fanout_coalesced_frames_total").await;

    // 200 commits behind: a page from the log, then the window's commits
    // joined into frames of up to 16 KiB.
    let (mut late, _) = Client::hello(&url, client_id(21)).await;
    late.subscribe("behind", 0).await;
    let mut offsets = Vec::new();
    let mut frames = 0;
    while offsets.last() != Some(&200) {
        let raw = within("an Events frame", late.ws.next())
            .await
            .expect("open")
            .expect("read");
        let Message::Binary(bytes) = raw else {
            continue;
        };
        assert!(bytes.len() <= max_frame, "frame of {} bytes", bytes.len());
        let ServerMsg::Events { events, head, .. } = ServerMsg::decode(&bytes, max_frame).unwrap()
        else {
            panic!("not Events")
        };
        assert!(head.0 >= events.last().map_or(0, |e| e.offset.0));
        frames += 1;
        offsets.extend(events.iter().map(|e| e.offset.0));
    }
    assert_eq!(
        offsets,
        (1..=200).collect::<Vec<u64>>(),
        "dense, in order, no repeat"
    );
    // 1 page + 190 events of ~150 encoded bytes in 16 KiB frames.
    assert!(frames <= 4, "{frames} frames for 200 commits");
    assert!(
        metric(&server, "logsync_fanout_coalesced_frames_total").await > coalesced_before,
        "the window's commits were joined"
    );
    server.stop().await;
}

#[tokio::test]
async fn pipelined_pushes_share_commits_and_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(server_stub::Config {
        max_payload_bytes: 1000,
        ..config(dir.path())
    })
    .await;
    let (mut c, _) = Client::hello(&server.ws_url(), client_id(30)).await;
    let commits_before = metric(&server, "logsync_commit_batch_intents_count").await;
    // 101 pushes sent without waiting for any answer: seqs 1..=60, then
    // 62 (a gap), then 61..=100 with 70 too large to accept.
    let mut order: Vec<u64> = (1..=60).collect();
    order.push(62);
    order.extend(61..=100);
    for &s in &order {
        let payload = if s == 70 {
            vec![b'x'; 2000]
        } else {
            s.to_string().into_bytes()
        };
        c.push("piped", &[(s, payload)]).await;
    }
    let mut offset = 0;
    for (i, &s) in order.iter().enumerate() {
        let answer = c.recv().await;
        match s {
            62 if i == 60 => assert_eq!(
                answer,
                ServerMsg::Gap {
                    stream: stream("piped"),
                    expected_seq: seq(61)
                }
            ),
            70 => assert!(
                matches!(&answer, ServerMsg::Reject { seq: r, code: ErrorCode::PayloadTooLarge, .. } if r.get() == 70),
                "{answer:?}"
            ),
            _ => {
                offset += 1;
                assert_eq!(ack(answer), (s, offset, false), "answer to seq {s}");
            }
        }
    }
    let commits = metric(&server, "logsync_commit_batch_intents_count").await - commits_before;
    let intents = metric(&server, "logsync_commit_batch_intents_sum").await;
    // One push at a time would be 101 transactions of one push each.
    assert!(
        commits < order.len() as f64,
        "{commits} commits for {} pushes in flight together",
        order.len()
    );
    assert!(intents >= 100.0, "{intents}");
    // The log holds each accepted intent once, in seq order.
    let mut r = Client::hello(&server.ws_url(), client_id(31)).await.0;
    r.subscribe("piped", 0).await;
    let events = r.events_until(99).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq.get()).collect();
    let want: Vec<u64> = (1..=100).filter(|s| *s != 70).collect();
    assert_eq!(seqs, want);
    server.stop().await;
}

/// A server started with no flags announces, in `Welcome`, a frame limit
/// from which a client derives exactly the largest payload the server
/// accepts: an action of that size is acked (its push fits the announced
/// frame even with the longest stream name and seq), one byte more is
/// rejected with `PAYLOAD_TOO_LARGE`.
#[tokio::test]
async fn the_client_limit_is_exactly_what_a_default_server_accepts() {
    use clap::Parser as _;
    use sync_core::protocol::max_push_payload;
    use sync_core::{PushIntent, Seq, StreamName};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let cfg = server_stub::Cli::try_parse_from(["logsync-server", "--db", db.to_str().unwrap()])
        .unwrap()
        .to_config()
        .unwrap();
    assert_eq!(cfg.max_payload_bytes, sync_core::DEFAULT_MAX_PAYLOAD_BYTES);
    let server = TestServer::start(cfg.clone()).await;
    let (mut c, welcome) = Client::hello(&server.ws_url(), client_id(7)).await;
    let ServerMsg::Welcome {
        max_frame_bytes, ..
    } = welcome
    else {
        unreachable!()
    };
    let limit = max_push_payload(max_frame_bytes as usize);
    assert_eq!(limit, cfg.max_payload_bytes);

    // The worst case of the encoding: the longest stream name, the largest
    // seq. Its frame still fits the announced limit.
    let longest = StreamName::new("s".repeat(sync_core::MAX_STREAM_NAME_LEN)).unwrap();
    let worst = ClientMsg::Push {
        stream: longest,
        intents: vec![PushIntent {
            seen: sync_core::Offset::ZERO,
            seq: Seq::new(u64::MAX).unwrap(),
            payload: vec![b'1'; limit],
            schema: u32::MAX,
        }],
    };
    assert!(worst.encode().len() <= max_frame_bytes as usize);

    let at = format!("\"{}\"", "x".repeat(limit - 2)).into_bytes();
    assert_eq!(at.len(), limit);
    let over = format!("\"{}\"", "x".repeat(limit - 1)).into_bytes();
    c.push("limits", &[(1, at), (2, over)]).await;
    assert_eq!(ack(c.recv().await).0, 1);
    match c.recv().await {
        ServerMsg::Reject { seq, code, .. } => {
            assert_eq!((seq.get(), code), (2, ErrorCode::PayloadTooLarge));
        }
        other => panic!("expected a Reject, got {other:?}"),
    }
}

/// The next binary frame's bytes, undecoded.
async fn raw_frame(c: &mut Client) -> Vec<u8> {
    within("a frame", async {
        loop {
            match c.ws.next().await {
                Some(Ok(Message::Binary(b))) => return b.to_vec(),
                Some(Ok(_)) => continue,
                other => panic!("no frame: {other:?}"),
            }
        }
    })
    .await
}

/// A version-4 client (the protocol-v4 fixtures' bytes) is served in its
/// version: its push is decided (intents of schema version 1, stored so),
/// and its events come without schema versions, exactly as the version-5
/// frame of the same events translates.
#[tokio::test]
async fn a_version_4_client_pushes_and_reads_its_events_in_its_version() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sync-core/fixtures/protocol-v4");
    let read = |name: &str| std::fs::read(fixtures.join(format!("{name}.bin"))).unwrap();
    let raw = |b: Vec<u8>| Message::Binary(b.into());
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;

    let mut old = Client::connect(&server.ws_url()).await;
    old.send_raw(raw(read("client-hello"))).await;
    let welcome = raw_frame(&mut old).await;
    assert_eq!(&welcome[..2], &[0, 4], "a version-4 Welcome");
    // Two intents of the stream todos/team-42 (seqs 1 and 2).
    old.send_raw(raw(read("client-push"))).await;
    for s in 1..=2u64 {
        // An Ack is the same in versions 4 and 5.
        let frame = raw_frame(&mut old).await;
        let ServerMsg::Ack { seq, offset, .. } = ServerMsg::decode(&frame, 1 << 20).unwrap() else {
            panic!("expected an Ack: {frame:?}")
        };
        assert_eq!((seq.get(), offset), (s, Offset(s)));
    }
    // Subscribe is the same in versions 4 and 5.
    old.subscribe("todos/team-42", 0).await;
    let old_events = raw_frame(&mut old).await;

    let (mut new, _) = Client::hello(&server.ws_url(), client_id(9)).await;
    new.subscribe("todos/team-42", 0).await;
    let new_events = raw_frame(&mut new).await;
    let ServerMsg::Events { events, .. } = ServerMsg::decode(&new_events, 1 << 20).unwrap() else {
        panic!("expected events")
    };
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.schema == 1), "{events:?}");
    assert_ne!(old_events, new_events);
    assert_eq!(
        sync_core::legacy::transcode_server(&new_events).unwrap(),
        old_events,
        "the version-4 client gets the version-4 bytes of the same events"
    );

    // Stored with schema version 1.
    let body = http()
        .get(server.url("/v1/streams/todos%2Fteam-42/events?after=0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let schemas: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["schema"].as_u64())
        .collect();
    assert_eq!(schemas, vec![Some(1), Some(1)], "{page}");

    // The hand-made version-3/4 push helper is what the decoder reads.
    let ClientMsg::Push { intents, .. } =
        sync_core::legacy::decode_client(&legacy_push("s", &[(7, b"{}".to_vec())]), 1 << 20)
            .unwrap()
    else {
        panic!("not a push")
    };
    assert_eq!((intents[0].seq.get(), intents[0].schema), (7, 1));
    server.stop().await;
}
