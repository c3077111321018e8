//! The server's per-connection message handling, driven without a socket:
//! the `server_session` fuzz target (`fuzz/`) and its regression tests
//! (`tests/fuzz_regressions.rs`) feed it arbitrary frame sequences and check
//! what comes out. Not an API for applications.
//!
//! Input layout: byte 0 picks the setting, then frames follow, each as one
//! length byte and that many bytes (a length past the end takes the rest).
//!
//! | bit of byte 0 | meaning |
//! |---|---|
//! | 0 | authentication on (else the server runs open) |
//! | 1-2 | with authentication, the token each `Hello` carries: 0 a valid one (read `a*`, `r*` and the view grant `v*#open`; write `a*`, `w*`), 1 an expired one, 2 a forged one, 3 the frame's own |
//! | 3 | the first `Hello`'s client id already belongs to another subject |
//!
//! Every session runs on a fresh in-memory store with small limits (so
//! catch-up paging, the pending-bytes budget and the intent rate all come
//! into play) and ends with a server shutdown once the frames are read.
//! [`session`] panics when an invariant breaks: a server frame that does
//! not decode, a `Welcome` that is not first or comes without valid
//! credentials, anything after an `Error`, a close code that does not go
//! with the error, an answer about a stream the token may not use, or
//! appended offsets of one stream that are not 1, 2, 3, …

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::StreamExt;
use std::future::Future as _;
use sync_core::{ClientMsg, Epoch, ErrorCode, ServerMsg, StreamName};
use tokio_util::sync::CancellationToken;

use crate::auth::{now_secs, sign, Principal, Secret};
use crate::config::Config;
use crate::hub::Hub;
use crate::intake::SizeLimit;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::memory::MemoryStore;
use crate::store::LogStore;

const SECRET: &[u8] = b"logsync-fuzz-secret-0123456789abcdef";

/// The pause after the last frame (see [`session`]): shorter than any
/// timer of the connection (pings, idle timeout, token expiry).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// What the server sent in one session.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Every binary frame, decoded, in order.
    pub messages: Vec<ServerMsg>,
    /// The close frame's code, if the server sent one.
    pub close: Option<u16>,
}

fn config(auth: bool) -> Config {
    Config {
        server_id: "fuzz".into(),
        max_frame_bytes: 4096,
        max_payload_bytes: 1024,
        catch_up_events: 3,
        send_queue_bytes: 1024,
        feed_buffer_bytes: 4096,
        feed_memory_bytes: 16 << 10,
        max_subscriptions: 3,
        max_intents_per_sec: 40,
        intents_burst: 8,
        jwt_secret: auth.then(|| Secret::new(SECRET)).and_then(Result::ok),
        ..Config::default()
    }
}

fn token(kind: u8) -> Option<String> {
    let claims = |exp: u64| {
        format!(r#"{{"sub":"fuzz","exp":{exp},"read":["a*","r*","v*#open"],"write":["a*","w*"]}}"#)
    };
    match kind {
        0 => Some(sign(&claims(now_secs() + 3600), SECRET)),
        1 => Some(sign(&claims(now_secs().saturating_sub(3600)), SECRET)),
        2 => Some(sign(
            &claims(now_secs() + 3600),
            b"not-the-server-secret-0123456789ab",
        )),
        _ => None,
    }
}

/// Splits the input into the setting byte and frames.
fn frames(data: &[u8]) -> (u8, Vec<Vec<u8>>) {
    let Some((&setting, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut out = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        out.push(frame.to_vec());
        rest = tail;
    }
    (setting, out)
}

/// Runs one connection over `data` (see the module docs) and checks what
/// the server sent; panics when an invariant breaks. Meant for a runtime
/// with paused time (`tokio::time::pause`): then waits cost nothing and the
/// session is deterministic; on a running clock each session takes at
/// least half a second.
pub async fn session(data: &[u8]) -> Transcript {
    let (setting, mut frames) = frames(data);
    let auth = setting & 1 == 1;
    let kind = (setting >> 1) & 3;
    let taken = setting & 8 == 8;
    let config = config(auth);
    let max_frame = config.max_frame_bytes;

    // With authentication, each Hello carries the token the setting names.
    let mut first_client = None;
    if auth {
        for f in frames.iter_mut() {
            if let Ok(ClientMsg::Hello {
                client_id,
                token: own,
                ..
            }) = ClientMsg::decode(f, max_frame)
            {
                first_client.get_or_insert(client_id);
                let t = if kind == 3 { own } else { token(kind) };
                *f = ClientMsg::hello(client_id, t).encode();
            }
        }
    }

    let metrics = Arc::new(Metrics::default());
    let hub = Arc::new(Hub::new(
        config.feed_buffer_bytes,
        config.feed_memory_bytes,
        config.max_frame_bytes,
        metrics.clone(),
    ));
    let store = Arc::new(MemoryStore::new(Epoch::from("fuzz-epoch"), hub.clone()));
    if let (true, Some(id)) = (taken, first_client) {
        let _ = store.bind_client(id, "someone-else".into()).await;
    }
    let policy = Arc::new(SizeLimit {
        max_payload_bytes: config.max_payload_bytes,
    });
    let shutdown = CancellationToken::new();
    let Ok(viewer) = crate::views::Viewer::start(
        store.clone(),
        crate::fold::Reducers::default(),
        config.max_views_per_stream,
        metrics.clone(),
    ) else {
        return Transcript::default();
    };
    let state = Arc::new(AppState::new(
        config,
        store,
        hub,
        metrics,
        policy,
        viewer,
        shutdown.clone(),
    ));
    let Ok(permit) = state.connections.clone().try_acquire_owned() else {
        return Transcript::default();
    };

    // The client: the frames; once they are all read, a pause (on a
    // runtime with paused time it ends only when every task is idle: the
    // subscriptions and pushes have done what they can), then the server
    // shuts down, so every push taken is answered; then the client is
    // gone, as if it had answered the server's close.
    let end = shutdown.clone();
    let mut pause = Box::pin(tokio::time::sleep(SETTLE));
    let mut cancelled = false;
    let incoming = futures_util::stream::iter(
        frames
            .into_iter()
            .map(|f| Ok::<_, axum::Error>(Message::Binary(f.into()))),
    )
    .chain(futures_util::stream::poll_fn(move |cx| {
        if cancelled {
            return std::task::Poll::Ready(None);
        }
        if pause.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        cancelled = true;
        end.cancel();
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outgoing = futures_util::sink::unfold(tx, |tx, m: Message| async move {
        let _ = tx.send(m);
        Ok::<_, std::convert::Infallible>(tx)
    });
    crate::ws::run(Box::pin(outgoing), Box::pin(incoming), state, permit, None).await;

    let mut t = Transcript::default();
    while let Ok(m) = rx.try_recv() {
        match m {
            Message::Binary(b) => match ServerMsg::decode(&b, 64 << 20) {
                Ok(msg) => t.messages.push(msg),
                Err(e) => panic!("the server sent a frame it cannot decode itself: {e}"),
            },
            Message::Close(c) => t.close = c.map(|c| c.code),
            _ => {}
        }
    }
    check(&t, auth, kind, taken);
    t
}

fn check(t: &Transcript, auth: bool, kind: u8, taken: bool) {
    let welcome = t
        .messages
        .iter()
        .position(|m| matches!(m, ServerMsg::Welcome { .. }));
    if let Some(i) = welcome {
        assert_eq!(i, 0, "Welcome must be the first message");
        assert!(
            !auth || (kind == 0 && !taken),
            "Welcome without valid credentials (token kind {kind}, id taken {taken})"
        );
    }
    if let Some(i) = t
        .messages
        .iter()
        .position(|m| matches!(m, ServerMsg::Error { .. }))
    {
        assert_eq!(i, t.messages.len() - 1, "messages after an Error");
        if let ServerMsg::Error { code, .. } = &t.messages[i] {
            assert_eq!(
                t.close,
                Some(crate::ws::close_code(*code)),
                "close code for {code}"
            );
            assert!(
                *code != ErrorCode::Internal,
                "an internal error: {:?}",
                t.messages[i]
            );
        }
    }
    // The fuzz token's permissions (with auth off everything is allowed).
    let principal = if auth {
        crate::auth::verify(&token(0).unwrap_or_default(), SECRET, now_secs())
            .unwrap_or_else(|_| Principal::open())
    } else {
        Principal::open()
    };
    let mut next_offset: HashMap<StreamName, u64> = HashMap::new();
    for m in &t.messages {
        match m {
            ServerMsg::Events { stream, .. } => {
                assert!(principal.can_read(stream), "events of unreadable {stream}")
            }
            ServerMsg::Ack {
                stream,
                offset,
                duplicate,
                ..
            } => {
                assert!(principal.can_write(stream), "ack on unwritable {stream}");
                if !duplicate {
                    let next = next_offset.entry(stream.clone()).or_insert(1);
                    assert_eq!(
                        offset.0, *next,
                        "appended offsets of {stream} skip or repeat"
                    );
                    *next += 1;
                }
            }
            // A reader's pushes are decided as rejected (FORBIDDEN); a
            // token that may not read the stream (a view grant is not
            // reading it) gets no answer about it.
            ServerMsg::Reject { stream, code, .. } => assert!(
                principal.can_write(stream)
                    || (principal.can_read(stream) && *code == ErrorCode::Forbidden),
                "{code} on unwritable {stream}"
            ),
            ServerMsg::Gap { stream, .. } => assert!(
                principal.can_write(stream) || principal.can_read(stream),
                "gap on unwritable {stream}"
            ),
            _ => {}
        }
    }
}
