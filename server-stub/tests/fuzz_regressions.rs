//! The `server_session` fuzz target's harness (`server_stub::fuzzing`) on
//! inputs kept as regression tests: every file under
//! `fixtures/fuzz-regressions/server_session/` (inputs the fuzzer once
//! crashed on), and every golden client frame after a `Hello` in every
//! setting. Each runs one connection's message handling on a fresh store
//! and checks the harness's invariants (it panics when one breaks).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use server_stub::fuzzing::session;
use sync_core::{ClientId, ClientMsg, ErrorCode, Offset, PushIntent, ServerMsg, StreamName};

fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".md"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `setting`, then each frame behind its length byte.
fn input(setting: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![setting];
    for f in frames {
        assert!(f.len() < 256, "frame of {} bytes", f.len());
        out.push(f.len() as u8);
        out.extend_from_slice(f);
    }
    out
}

/// Panics anywhere in the process, also in spawned tasks (whose panics
/// tokio would otherwise only report through their join handles).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn assert_no_panics() {
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a task panicked (see above)"
    );
}

fn hello() -> Vec<u8> {
    ClientMsg::hello(ClientId([7; 16]), None).encode()
}

#[tokio::test(start_paused = true)]
async fn kept_crashers() {
    count_panics();
    for (name, data) in files("fixtures/fuzz-regressions/server_session") {
        eprintln!("replaying {name}");
        session(&data).await;
    }
    assert_no_panics();
}

#[tokio::test(start_paused = true)]
async fn golden_frames_in_every_setting() {
    count_panics();
    let golden = files("../sync-core/fixtures/protocol-v5");
    let client: Vec<_> = golden
        .iter()
        .filter(|(n, _)| n.starts_with("client-"))
        .collect();
    assert!(client.len() >= 6, "golden client fixtures missing");
    for setting in 0..16u8 {
        for (name, frame) in &client {
            let t = session(&input(setting, &[hello(), frame.clone()])).await;
            assert!(
                !t.messages.is_empty(),
                "{name} in setting {setting}: no answer"
            );
        }
    }
    assert_no_panics();
}

/// The harness is not blind: with a valid token the session works on the
/// token's streams and is refused elsewhere; with a forged one, nothing.
#[tokio::test(start_paused = true)]
async fn the_harness_sees_permissions_and_answers() {
    let stream = |s: &str| StreamName::new(s).unwrap();
    let sub = |s: &str| {
        ClientMsg::Subscribe {
            stream: stream(s),
            after: Offset(0),
            resume: None,
        }
        .encode()
    };
    let push = |s: &str, n: u64| {
        ClientMsg::Push {
            stream: stream(s),
            intents: (1..=n)
                .map(|i| PushIntent {
                    seen: sync_core::Offset::ZERO,
                    seq: sync_core::Seq::new(i).unwrap(),
                    payload: b"1".to_vec(),
                    schema: 1,
                })
                .collect(),
        }
        .encode()
    };
    // Auth on, valid token: subscribe and push to a1; its events come back.
    let t = session(&input(1, &[hello(), sub("a1"), push("a1", 3)])).await;
    assert!(matches!(t.messages[0], ServerMsg::Welcome { .. }), "{t:?}");
    let acks = t
        .messages
        .iter()
        .filter(|m| matches!(m, ServerMsg::Ack { .. }))
        .count();
    assert_eq!(acks, 3, "{t:?}");
    let events: usize = t
        .messages
        .iter()
        .map(|m| match m {
            ServerMsg::Events { events, .. } => events.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(events, 3, "{t:?}");
    // Then a push to b, which the token may not write.
    let t = session(&input(
        1,
        &[hello(), sub("a1"), push("a1", 3), push("b", 1)],
    ))
    .await;
    assert!(
        matches!(
            t.messages.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{t:?}"
    );
    assert_eq!(t.close, Some(1008));
    // Forged token (setting 0b101): refused at Hello.
    let t = session(&input(5, &[hello(), sub("a1")])).await;
    assert!(
        matches!(
            t.messages[..],
            [ServerMsg::Error {
                code: ErrorCode::Unauthorized,
                ..
            }]
        ),
        "{t:?}"
    );
    // The client id belongs to someone else (setting 0b1001).
    let t = session(&input(9, &[hello(), sub("a1")])).await;
    assert!(
        matches!(
            t.messages[..],
            [ServerMsg::Error {
                code: ErrorCode::Forbidden,
                ..
            }]
        ),
        "{t:?}"
    );
    // Open server, a push far over the intent rate (burst 8, 40/s): the
    // burst is answered, then RATE_LIMITED.
    let t = session(&input(0, &[hello(), push("x", 50)])).await;
    let acks = t
        .messages
        .iter()
        .filter(|m| matches!(m, ServerMsg::Ack { .. }))
        .count();
    assert_eq!(acks, 8, "{t:?}");
    assert!(
        matches!(
            t.messages.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::RateLimited,
                ..
            })
        ),
        "{t:?}"
    );
    // Without a problem, the session ends with the server's shutdown.
    let t = session(&input(0, &[hello(), push("x", 5)])).await;
    assert!(
        matches!(
            t.messages.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::ShuttingDown,
                ..
            })
        ),
        "{t:?}"
    );
    assert_eq!(t.close, Some(1001));
}

/// The token's streams it may only read (`r*`) or only see one view of
/// (`v*#open`): a push to the first is decided as rejected (FORBIDDEN)
/// and the session goes on; a subscription to the second is refused
/// before any event, like one to a stream the token does not name.
#[tokio::test(start_paused = true)]
async fn the_harness_knows_readers_and_view_grantees() {
    let stream = |s: &str| StreamName::new(s).unwrap();
    let sub = |s: &str| {
        ClientMsg::Subscribe {
            stream: stream(s),
            after: Offset(0),
            resume: None,
        }
        .encode()
    };
    let push = |s: &str| {
        ClientMsg::Push {
            stream: stream(s),
            intents: vec![PushIntent {
                seen: Offset(0),
                seq: sync_core::Seq::new(1).unwrap(),
                payload: b"1".to_vec(),
                schema: 1,
            }],
        }
        .encode()
    };
    let t = session(&input(1, &[hello(), sub("r1"), push("r1")])).await;
    assert!(
        t.messages.iter().any(|m| matches!(
            m,
            ServerMsg::Reject {
                code: ErrorCode::Forbidden,
                ..
            }
        )),
        "{t:?}"
    );
    assert!(
        matches!(
            t.messages.last(),
            Some(ServerMsg::Error {
                code: ErrorCode::ShuttingDown,
                ..
            })
        ),
        "{t:?}"
    );
    // A's events are written, then v1 (a view grant only) and x (not
    // named) are refused the same way, with no event of them.
    for name in ["v1", "x"] {
        let t = session(&input(1, &[hello(), push("a1"), sub(name)])).await;
        assert!(
            !t.messages
                .iter()
                .any(|m| matches!(m, ServerMsg::Events { stream, .. } if stream.as_str() == name)),
            "{t:?}"
        );
        assert!(
            matches!(
                t.messages.last(),
                Some(ServerMsg::Error {
                    code: ErrorCode::Forbidden,
                    ..
                })
            ),
            "{name}: {t:?}"
        );
    }
}
