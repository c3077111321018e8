//! Shared helpers for the server's integration tests: an in-process server
//! on 127.0.0.1:0 with a real SQLite file, real WebSocket clients, and
//! waiting with deadlines.
#![allow(dead_code, clippy::unwrap_used)]

pub mod bound;
pub mod process;
pub mod seats;
pub mod sse;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use server_stub::Config;
use sync_core::{ClientId, ClientMsg, Event, Offset, PushIntent, Seq, ServerMsg, StreamName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Default deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `fut` or fails the test after `DEADLINE`, saying what was awaited.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// An HTTP client whose requests fail after `DEADLINE` instead of hanging.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

pub fn config(dir: &Path) -> Config {
    Config {
        db_path: dir.join("log.db"),
        server_id: "test-server".into(),
        ..Config::default()
    }
}

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server_stub::Error>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let db = config.db_path.clone();
        let task = tokio::spawn(server_stub::run(listener, config, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            db,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts graceful shutdown.
    pub fn begin_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shuts down and waits until `run` returned.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(t) = self.task.take() {
            within("server shutdown", t).await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_stop();
    }
}

pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

pub fn seq(n: u64) -> Seq {
    Seq::new(n).unwrap()
}

pub fn client_id(n: u8) -> ClientId {
    ClientId([n; 16])
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking the protocol.
pub struct Client {
    pub ws: Ws,
    pub id: ClientId,
}

impl Client {
    /// Connects without saying Hello.
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = within("WebSocket connect", tokio_tungstenite::connect_async(url))
            .await
            .unwrap();
        Client {
            ws,
            id: client_id(0),
        }
    }

    /// Connects and completes the handshake; returns the Welcome too.
    pub async fn hello(url: &str, id: ClientId) -> (Client, ServerMsg) {
        let mut c = Client::connect(url).await;
        c.id = id;
        c.send(&ClientMsg::hello(id, None)).await;
        let welcome = c.recv().await;
        assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");
        (c, welcome)
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        self.send_raw(Message::Binary(msg.encode().into())).await;
    }

    pub async fn send_raw(&mut self, msg: Message) {
        within("send", self.ws.send(msg)).await.unwrap();
    }

    /// The next protocol message; fails on close or after the deadline.
    pub async fn recv(&mut self) -> ServerMsg {
        // One deadline for the message, however many pings come first.
        within("a server message", async {
            loop {
                let m = self
                    .ws
                    .next()
                    .await
                    .expect("connection ended")
                    .expect("read failed");
                match m {
                    Message::Binary(b) => return ServerMsg::decode(&b, 64 << 20).unwrap(),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await
    }

    /// Reads until the server closes: the Error frame (if any) and the
    /// close frame.
    pub async fn recv_close(&mut self) -> (Option<ServerMsg>, Option<CloseFrame>) {
        within("the server's close", self.recv_close_inner()).await
    }

    async fn recv_close_inner(&mut self) -> (Option<ServerMsg>, Option<CloseFrame>) {
        let mut error = None;
        loop {
            let m = self.ws.next().await;
            match m {
                Some(Ok(Message::Binary(b))) => {
                    let msg = ServerMsg::decode(&b, 64 << 20).unwrap();
                    if matches!(msg, ServerMsg::Error { .. }) {
                        error = Some(msg);
                    }
                }
                Some(Ok(Message::Close(frame))) => return (error, frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (error, None),
            }
        }
    }

    /// Pushes `(seq, payload)` pairs to `stream` (having seen nothing).
    pub async fn push(&mut self, stream_name: &str, intents: &[(u64, Vec<u8>)]) {
        let intents: Vec<(u64, Vec<u8>, u64)> =
            intents.iter().map(|(s, p)| (*s, p.clone(), 0)).collect();
        self.push_seen(stream_name, &intents).await;
    }

    /// Pushes `(seq, payload, seen)` triples to `stream`.
    pub async fn push_seen(&mut self, stream_name: &str, intents: &[(u64, Vec<u8>, u64)]) {
        let msg = ClientMsg::Push {
            stream: stream(stream_name),
            intents: intents
                .iter()
                .map(|(s, p, seen)| PushIntent {
                    seen: Offset(*seen),
                    seq: seq(*s),
                    payload: p.clone(),
                    schema: 1,
                })
                .collect(),
        };
        self.send(&msg).await;
    }

    /// Pushes `(seq, payload)` pairs to `stream`, made under schema
    /// version `schema`.
    pub async fn push_schema(
        &mut self,
        stream_name: &str,
        schema: u32,
        intents: &[(u64, Vec<u8>)],
    ) {
        let msg = ClientMsg::Push {
            stream: stream(stream_name),
            intents: intents
                .iter()
                .map(|(s, p)| PushIntent {
                    seen: Offset::ZERO,
                    seq: seq(*s),
                    payload: p.clone(),
                    schema,
                })
                .collect(),
        };
        self.send(&msg).await;
    }

    /// Pushes `(seq, payload)` pairs to `stream` as a version-3 or 4
    /// client encodes them ([`legacy_push`]).
    pub async fn push_legacy(&mut self, stream_name: &str, intents: &[(u64, Vec<u8>)]) {
        self.send_raw(Message::Binary(legacy_push(stream_name, intents).into()))
            .await;
    }

    pub async fn subscribe(&mut self, stream_name: &str, after: u64) {
        self.send(&ClientMsg::Subscribe {
            stream: stream(stream_name),
            after: Offset(after),
            resume: None,
        })
        .await;
    }

    /// Subscribes from `after` asking for the stream's snapshot: the one
    /// at `offset` with `hash`, of which the first `at` bytes are held.
    pub async fn subscribe_resuming(
        &mut self,
        stream_name: &str,
        after: u64,
        offset: Offset,
        hash: u64,
        at: u64,
    ) {
        self.send(&ClientMsg::Subscribe {
            stream: stream(stream_name),
            after: Offset(after),
            resume: Some(sync_core::SnapshotResume { offset, hash, at }),
        })
        .await;
    }

    /// Reads Events frames (ignoring other messages) until the events
    /// received reach offset `upto`; returns them in order.
    pub async fn events_until(&mut self, upto: u64) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        while out.last().map(|e| e.offset.0).unwrap_or(0) < upto {
            if let ServerMsg::Events { events, .. } = self.recv().await {
                out.extend(events);
            }
        }
        out
    }
}

impl Client {
    /// Connects and sends `Hello` with `token`; returns the server's first
    /// answer (`Welcome`, or the `Error` that refuses the connection).
    pub async fn hello_with_token(
        url: &str,
        id: ClientId,
        token: Option<&str>,
    ) -> (Client, ServerMsg) {
        let mut c = Client::connect(url).await;
        c.id = id;
        c.send(&ClientMsg::hello(id, token.map(str::to_string)))
            .await;
        let first = c.recv().await;
        (c, first)
    }
}

/// Tries a WebSocket upgrade with extra request headers: the client, or
/// the HTTP status and JSON body that refused it.
pub async fn try_connect(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Client, (u16, serde_json::Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut()
            .insert(http_header_name(k), v.parse().unwrap());
    }
    match within("WebSocket connect", tokio_tungstenite::connect_async(req)).await {
        Ok((ws, _)) => Ok(Client {
            ws,
            id: client_id(0),
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("refusal body is not JSON ({e}): {body:?}"));
            Err((status, json))
        }
        Err(e) => panic!("WebSocket connect failed unexpectedly: {e}"),
    }
}

fn http_header_name(k: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap()
}

/// The value of one metric line of `GET /metrics` (`name` with its labels,
/// e.g. `logsync_limit_trips_total{limit="intent_rate"}`), 0 when absent.
pub async fn metric(server: &TestServer, name: &str) -> f64 {
    metric_at(&server.url("/metrics"), name).await
}

/// [`metric`] of the `GET /metrics` at `url`.
pub async fn metric_at(url: &str, name: &str) -> f64 {
    let text = http().get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// The code of an HTTP error body `{"error":{"code":…}}`.
pub fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

/// Asserts events are dense from `first` on.
pub fn assert_dense(events: &[Event], first: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.offset.0,
            first + i as u64,
            "events must be dense and in order; got {:?}",
            events.iter().map(|e| e.offset.0).collect::<Vec<_>>()
        );
    }
}

/// A payload of `n` bytes that is valid JSON (a string).
pub fn json_payload(tag: &str, n: usize) -> Vec<u8> {
    let mut s = format!("\"{tag}:");
    while s.len() + 1 < n {
        s.push('x');
    }
    s.push('"');
    s.into_bytes()
}

/// The path of view `name` of `stream` (URL-encoded already) with JSON
/// `params`, percent-encoded.
pub fn view_path(stream: &str, name: &str, params: &str) -> String {
    let params: String = params
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/v1/streams/{stream}/views/{name}?params={params}")
}

/// The frame a client of protocol version 3 or 4 sends to push
/// `(seq, payload)` pairs (seen 0) to `stream`: postcard's bytes of
/// `Push` (variant 3) without the schema versions of version 5.
pub fn legacy_push(stream: &str, intents: &[(u64, Vec<u8>)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut out = vec![3];
    varint(&mut out, stream.len() as u64);
    out.extend_from_slice(stream.as_bytes());
    varint(&mut out, intents.len() as u64);
    for (seq, payload) in intents {
        varint(&mut out, *seq);
        varint(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
        // seen
        varint(&mut out, 0);
    }
    out
}

/// The answer to a push of one intent (`Ack` or `Reject`), skipping the
/// events that come before it.
pub async fn answer(c: &mut Client) -> ServerMsg {
    loop {
        match c.recv().await {
            m @ (ServerMsg::Ack { .. } | ServerMsg::Reject { .. }) => return m,
            ServerMsg::Events { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}
