//! `logsync-seats-server` as a process on 127.0.0.1:0 with a real SQLite
//! file: two WebSocket clients book the same seat, one is acknowledged and
//! the other refused with the app's code; `/state` is the reducer's fold of
//! the log; the rest of logsync-server's command line works the same.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use seats_reducer::{Action, Seats, SeatsReducer};
use sync_core::{
    ClientId, ClientMsg, ErrorCode, Offset, PushIntent, Reducer, Seq, ServerMsg, StreamName,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

struct Proc {
    child: Child,
    addr: String,
}

impl Proc {
    async fn spawn(dir: &Path, args: &[&str]) -> Proc {
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_logsync-seats-server"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.join("log.db"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = within(
            "the listening line",
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "no line on stdout; log: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            )
        });
        // The line scripts and the browser-test harness read.
        let addr = line
            .strip_prefix("logsync-server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Proc { child, addr }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::Client::builder()
            .timeout(DEADLINE)
            .build()
            .unwrap()
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// SIGTERM by PID; the server exits cleanly.
    async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = within("exit after SIGTERM", self.child.wait())
            .await
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}

struct Client(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Client {
    async fn hello(addr: &str, id: u8) -> Client {
        let (ws, _) = within(
            "WebSocket connect",
            tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws")),
        )
        .await
        .unwrap();
        let mut c = Client(ws);
        c.send(ClientMsg::hello(ClientId([id; 16]), None)).await;
        let welcome = c.recv().await;
        assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");
        c
    }

    async fn send(&mut self, msg: ClientMsg) {
        within("send", self.0.send(Message::Binary(msg.encode().into())))
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> ServerMsg {
        within("a server message", async {
            loop {
                match self.0.next().await.expect("connection ended").unwrap() {
                    Message::Binary(b) => return ServerMsg::decode(&b, 64 << 20).unwrap(),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await
    }

    async fn book(&mut self, stream: &str, seq: u64, seat: &str, who: &str) {
        self.send(ClientMsg::Push {
            stream: StreamName::new(stream).unwrap(),
            intents: vec![PushIntent {
                seen: sync_core::Offset::ZERO,
                seq: Seq::new(seq).unwrap(),
                payload: Action::book(seat, who),
                schema: 1,
            }],
        })
        .await;
    }

    /// The answer to one pushed intent.
    async fn answer(&mut self) -> ServerMsg {
        loop {
            match self.recv().await {
                m @ (ServerMsg::Ack { .. } | ServerMsg::Reject { .. }) => return m,
                ServerMsg::Events { .. } => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn two_clients_book_one_seat_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::spawn(dir.path(), &[]).await;
    let mut ann = Client::hello(&p.addr, 1).await;
    let mut bob = Client::hello(&p.addr, 2).await;
    // Both push before either reads an answer: the writer orders them.
    ann.book("seats/x", 1, "4A", "ann").await;
    bob.book("seats/x", 1, "4A", "bob").await;
    let answers = [ann.answer().await, bob.answer().await];
    let winner = match &answers {
        [ServerMsg::Ack { offset, .. }, ServerMsg::Reject { code, message, .. }]
        | [ServerMsg::Reject { code, message, .. }, ServerMsg::Ack { offset, .. }] => {
            assert_eq!(*offset, Offset(1));
            assert_eq!(*code, ErrorCode::Rejected);
            assert_eq!(message, "SEAT_TAKEN: seat 4A is taken");
            if matches!(answers[0], ServerMsg::Ack { .. }) {
                "ann"
            } else {
                "bob"
            }
        }
        other => panic!("want one Ack and one Reject: {other:?}"),
    };
    // The other seat of the loser is free.
    let loser = if winner == "ann" { &mut bob } else { &mut ann };
    loser.book("seats/x", 2, "4B", "cy").await;
    assert!(
        matches!(
            loser.answer().await,
            ServerMsg::Ack {
                offset: Offset(2),
                ..
            }
        ),
        "a free seat is booked"
    );

    let (status, body) = p.get("/v1/streams/seats%2Fx/state").await;
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        state,
        serde_json::json!({"offset": 2, "state": {"seats": {"4A": winner, "4B": "cy"}}})
    );
    // The same fold as the reducer crate gives, as the browser runs it.
    let r = SeatsReducer;
    let mut want = Seats::default();
    for p in [Action::book("4A", winner), Action::book("4B", "cy")] {
        want = r.reduce(&want, &r.decode(&p).unwrap()).unwrap();
    }
    assert_eq!(state["state"], serde_json::to_value(&want).unwrap());

    // Streams outside seats/* keep opaque payloads: no state.
    let (status, body) = p.get("/v1/streams/other/state").await;
    assert_eq!(status, 404, "{body}");
    p.stop().await;
}

#[tokio::test]
async fn the_command_line_is_logsync_servers() {
    let dir = tempfile::tempdir().unwrap();
    // --static serves the web page from a directory.
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(
        www.join("index.html"),
        "<!doctype html><title>seats</title>",
    )
    .unwrap();
    let p = Proc::spawn(dir.path(), &["--static", www.to_str().unwrap()]).await;
    let (status, body) = p.get("/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<title>seats</title>"), "{body}");
    p.stop().await;

    // The `token` command, reading the secret as the server does.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-seats-server"))
        .args(["token", "--sub", "ann", "--read", "seats/*"])
        .env(
            "LOGSYNC_JWT_SECRET",
            "a-secret-of-at-least-32-bytes-0123456789",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).split('.').count(), 3);

    // A bad flag is refused like logsync-server refuses it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logsync-seats-server"))
        .args(["--no-such-flag"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}
