//! One connection, several clients: the rule by which the tab that holds a
//! browser's connection to one server carries the protocol of every
//! stream its tabs lead (each a [`crate::SyncClient`] of its own) on one
//! WebSocket.
//!
//! Each client talks through a *port* as if it had a connection of its
//! own: it sends `Hello`, subscribes, pushes and pings, and receives what
//! the server answers for its streams. The mux forwards, with these rules:
//! - **One handshake.** The first `Hello` after the socket opens goes to
//!   the server; the server's `Welcome` goes to every port that said
//!   `Hello`, and later ports get that `Welcome` at once (all ports of a
//!   browser's database share one client id; the connection is
//!   authenticated with the first port's token).
//! - **By stream.** Frames about a stream (`Events`, `Ack`, `Reject`,
//!   `Gap`, `Snapshot`, `Checkpoint`) go to the port that last subscribed,
//!   pushed or withdrew on that stream; `Pong` and `Error` go to every port
//!   (an `Error` ends the connection, for every port).
//! - **A stream changes hands behind a fence.** When the port that owns a
//!   stream leaves or unsubscribes, or another port claims the stream (a
//!   new leader of it, in another tab), the old subscription is
//!   unsubscribed and a `Ping` of the mux's own follows it: frames of that
//!   stream already on their way belong to the old owner, and are
//!   dropped until that ping's `Pong` (the server answers in order). The
//!   new owner's `Subscribe` goes after the ping, so what it hears is
//!   its own. The last port to leave closes the socket. A socket that closes closes every port, each then
//!   reconnects as after any cut (the server deduplicates what is pushed
//!   again).
//!
//! Routing reads only a frame's variant and its stream name
//! ([`route_client`], [`route_server`]): each client decodes its own
//! frames.

use alloc::string::String;
use alloc::vec::Vec;

/// What a frame from a client is, for routing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ClientRoute {
    /// `Hello`.
    Hello,
    /// `Subscribe` to this stream.
    Subscribe(String),
    /// `Unsubscribe` from this stream.
    Unsubscribe(String),
    /// `Push` or `Withdraw` on this stream.
    Write(String),
    /// Anything else (`Ping`, or a frame the mux cannot read: the server
    /// answers it).
    Other,
}

/// What a frame from the server is, for routing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ServerRoute {
    /// `Welcome`.
    Welcome,
    /// About this stream.
    Stream(String),
    /// A `Pong`, with its nonce.
    Pong(u64),
    /// An `Error` (the server closes the connection after it).
    Error,
    /// For every port (`Error`, or a frame the mux cannot read: each port
    /// reports it).
    All,
}

/// Reads a frame's variant index and, when `stream_first` says the
/// variant starts with a stream name, that name.
fn peek(bytes: &[u8], stream_first: impl Fn(u32) -> bool) -> Option<(u32, Option<String>)> {
    let (variant, rest) = postcard::take_from_bytes::<u32>(bytes).ok()?;
    if !stream_first(variant) {
        return Some((variant, None));
    }
    let (stream, _) = postcard::take_from_bytes::<&str>(rest).ok()?;
    Some((variant, Some(stream.into())))
}

/// The nonces of the mux's own pings (the clients count theirs from 1).
const FENCE_NONCES: u64 = 1 << 63;

/// The close code a port hears when another port took its stream.
pub const TAKEN: u16 = 4902;

/// The close code a port hears when the server refused another port's
/// request with an `Error`, which ends the connection for every port.
pub const ENDED_BY_ANOTHER: u16 = 4903;

/// Routes a [`crate::ClientMsg`] frame (variants: `Hello` 0, `Subscribe`
/// 1, `Unsubscribe` 2, `Push` 3, `Ping` 4, `Withdraw` 5).
pub fn route_client(bytes: &[u8]) -> ClientRoute {
    match peek(bytes, |v| matches!(v, 1 | 2 | 3 | 5)) {
        Some((0, _)) => ClientRoute::Hello,
        Some((1, Some(s))) => ClientRoute::Subscribe(s),
        Some((2, Some(s))) => ClientRoute::Unsubscribe(s),
        Some((3 | 5, Some(s))) => ClientRoute::Write(s),
        _ => ClientRoute::Other,
    }
}

/// Routes a [`crate::ServerMsg`] frame (variants: `Welcome` 0, `Events`
/// 1, `Ack` 2, `Reject` 3, `Gap` 4, `Error` 5, `Pong` 6, `Snapshot` 7,
/// `Checkpoint` 8).
pub fn route_server(bytes: &[u8]) -> ServerRoute {
    match peek(bytes, |v| matches!(v, 1..=4 | 7 | 8)) {
        Some((0, _)) => ServerRoute::Welcome,
        Some((_, Some(s))) => ServerRoute::Stream(s),
        Some((5, None)) => ServerRoute::Error,
        Some((6, None)) => match postcard::from_bytes::<crate::ServerMsg>(bytes) {
            Ok(crate::ServerMsg::Pong { nonce }) => ServerRoute::Pong(nonce),
            _ => ServerRoute::All,
        },
        _ => ServerRoute::All,
    }
}

/// What a port hears, as a socket would say it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PortEvent {
    /// The connection is open: send `Hello`.
    Open,
    /// A frame from the server.
    Frame(Vec<u8>),
    /// The connection closed (the port is gone from the mux).
    Closed {
        /// The WebSocket close code.
        code: u16,
        /// Why.
        reason: String,
    },
}

/// What the mux asks of the tab that holds the socket.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MuxOut<P> {
    /// Open the socket.
    Connect,
    /// Close the socket (no port is left).
    Close,
    /// Send this frame to the server.
    Send(Vec<u8>),
    /// Tell this port.
    Port(P, PortEvent),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Socket {
    #[default]
    None,
    Connecting,
    Open,
}

#[derive(Default, Debug)]
struct PortState {
    /// The connection's `Open` went to it.
    opened: bool,
    /// Said `Hello` and waits for the `Welcome`.
    hello: bool,
    /// The streams it subscribed to.
    subscribed: Vec<String>,
    /// Those of them the server has not answered yet (an `Error` now is
    /// likely about one of them).
    unanswered: Vec<String>,
}

/// The routing state of one shared connection; `P` names a port.
///
/// Ports and streams are few (the stores of one browser), so they are
/// kept in vectors, in the order they came: smaller code in the browser
/// than maps, and as fast at these sizes.
#[derive(Debug)]
pub struct Mux<P> {
    socket: Socket,
    hello_sent: bool,
    welcome: Option<Vec<u8>>,
    ports: Vec<(P, PortState)>,
    /// Which port a stream's frames go to.
    owners: Vec<(String, P)>,
    /// Streams whose frames are dropped until the `Pong` of this nonce.
    fences: Vec<(String, u64)>,
    next_fence: u64,
}

impl<P> Default for Mux<P> {
    fn default() -> Self {
        Mux {
            socket: Socket::None,
            hello_sent: false,
            welcome: None,
            ports: Vec::new(),
            owners: Vec::new(),
            fences: Vec::new(),
            next_fence: FENCE_NONCES,
        }
    }
}

impl<P: PartialEq + Clone> Mux<P> {
    /// No socket, no ports.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many ports are attached.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// Whether the socket is open.
    pub fn is_open(&self) -> bool {
        self.socket == Socket::Open
    }

    /// A port wants the connection: it hears `Open` now if the socket is
    /// open, else once it opens (the socket is asked for if none is being
    /// opened). A port attached again starts over.
    pub fn attach(&mut self, port: P) -> Vec<MuxOut<P>> {
        let mut out = self.detach(port.clone());
        // Detaching the last port closes; this one keeps the socket.
        out.retain(|o| *o != MuxOut::Close);
        let mut state = PortState::default();
        match self.socket {
            Socket::Open => {
                state.opened = true;
                out.push(MuxOut::Port(port.clone(), PortEvent::Open));
            }
            Socket::Connecting => {}
            Socket::None => {
                self.socket = Socket::Connecting;
                out.push(MuxOut::Connect);
            }
        }
        self.ports.push((port, state));
        out
    }

    fn port(&mut self, port: &P) -> Option<&mut PortState> {
        self.ports
            .iter_mut()
            .find(|(p, _)| p == port)
            .map(|(_, s)| s)
    }

    fn owner(&self, stream: &str) -> Option<&P> {
        self.owners
            .iter()
            .find(|(s, _)| s == stream)
            .map(|(_, p)| p)
    }

    /// `port` subscribes to `stream` (`subscribe`) or writes on it: it
    /// owns the stream from now on, unless it only writes on a stream
    /// another port follows (a leader that has not heard yet that another
    /// tab leads: its pushes are answered to the follower, which shares
    /// its client id). Taken from another port, the stream changes hands
    /// behind a fence, and a port whose subscription was taken hears its
    /// connection close: it reconnects rather than wait for events that
    /// no longer come.
    fn own(&mut self, stream: String, port: &P, subscribe: bool, out: &mut Vec<MuxOut<P>>) {
        let old = match self.owner(&stream) {
            Some(p) if p == port => return,
            Some(p) => Some(p.clone()),
            None => None,
        };
        if let Some(old) = old {
            let followed = self
                .ports
                .iter()
                .any(|(p, s)| *p == old && s.subscribed.contains(&stream));
            if followed && !subscribe {
                return;
            }
            self.release(&stream, out);
            if followed {
                out.extend(self.detach(old.clone()));
                out.push(MuxOut::Port(
                    old,
                    PortEvent::Closed {
                        code: TAKEN,
                        reason: "another tab leads this stream now".into(),
                    },
                ));
            }
        }
        self.owners.push((stream, port.clone()));
    }

    /// `stream` has no owner from now on: the old one's subscription is
    /// unsubscribed, and the frames already sent for it are dropped until
    /// the `Pong` of a ping sent after that.
    fn release(&mut self, stream: &str, out: &mut Vec<MuxOut<P>>) {
        let Some(i) = self.owners.iter().position(|(s, _)| s == stream) else {
            return;
        };
        let (_, old) = self.owners.remove(i);
        let subscribed = match self.port(&old) {
            Some(state) => {
                let had = state.subscribed.iter().any(|s| s == stream);
                state.subscribed.retain(|s| s != stream);
                state.unanswered.retain(|s| s != stream);
                had
            }
            None => true,
        };
        if self.socket != Socket::Open {
            return;
        }
        if subscribed {
            if let Ok(stream) = crate::StreamName::new(stream) {
                out.push(MuxOut::Send(
                    crate::ClientMsg::Unsubscribe { stream }.encode(),
                ));
            }
        }
        self.next_fence += 1;
        let nonce = self.next_fence;
        self.fences.push((stream.into(), nonce));
        out.push(MuxOut::Send(crate::ClientMsg::Ping { nonce }.encode()));
    }

    /// A port leaves: the streams it still owns are unsubscribed; the last
    /// port closes the socket.
    pub fn detach(&mut self, port: P) -> Vec<MuxOut<P>> {
        let mut out = Vec::new();
        if !self.ports.iter().any(|(p, _)| *p == port) {
            return out;
        }
        let owned: Vec<String> = self
            .owners
            .iter()
            .filter(|(_, p)| *p == port)
            .map(|(s, _)| s.clone())
            .collect();
        for stream in owned {
            self.release(&stream, &mut out);
        }
        self.ports.retain(|(p, _)| *p != port);
        if self.ports.is_empty() && self.socket != Socket::None {
            self.reset();
            out.push(MuxOut::Close);
        }
        out
    }

    /// The socket opened: every port hears `Open`.
    pub fn opened(&mut self) -> Vec<MuxOut<P>> {
        self.socket = Socket::Open;
        let mut out = Vec::new();
        for (port, state) in &mut self.ports {
            if !state.opened {
                state.opened = true;
                out.push(MuxOut::Port(port.clone(), PortEvent::Open));
            }
        }
        out
    }

    /// The socket closed (or failed to open): every port hears it and is
    /// gone.
    pub fn closed(&mut self, code: u16, reason: &str) -> Vec<MuxOut<P>> {
        let ports = core::mem::take(&mut self.ports);
        self.reset();
        ports
            .into_iter()
            .map(|(p, _)| {
                MuxOut::Port(
                    p,
                    PortEvent::Closed {
                        code,
                        reason: reason.into(),
                    },
                )
            })
            .collect()
    }

    fn reset(&mut self) {
        self.socket = Socket::None;
        self.hello_sent = false;
        self.welcome = None;
        self.owners.clear();
        self.fences.clear();
    }

    /// A frame from a port, for the server.
    pub fn port_frame(&mut self, port: &P, bytes: Vec<u8>) -> Vec<MuxOut<P>> {
        let welcome = self.welcome.clone();
        let Some(state) = self.port(port) else {
            // A port that is gone (its connection closed) says nothing.
            return Vec::new();
        };
        if !state.opened {
            return Vec::new();
        }
        match route_client(&bytes) {
            ClientRoute::Hello => {
                if let Some(welcome) = welcome {
                    return vec![MuxOut::Port(port.clone(), PortEvent::Frame(welcome))];
                }
                state.hello = true;
                if self.hello_sent {
                    return Vec::new();
                }
                self.hello_sent = true;
            }
            ClientRoute::Subscribe(stream) => {
                let mut out = Vec::new();
                self.own(stream.clone(), port, true, &mut out);
                if let Some(state) = self.port(port) {
                    if !state.subscribed.contains(&stream) {
                        state.subscribed.push(stream.clone());
                    }
                    if !state.unanswered.contains(&stream) {
                        state.unanswered.push(stream);
                    }
                }
                out.push(MuxOut::Send(bytes));
                return out;
            }
            ClientRoute::Unsubscribe(stream) => {
                // Only the owner's: another port follows it now.
                let mut out = Vec::new();
                if self.owner(&stream) == Some(port) {
                    self.release(&stream, &mut out);
                }
                return out;
            }
            ClientRoute::Write(stream) => {
                let mut out = Vec::new();
                self.own(stream, port, false, &mut out);
                out.push(MuxOut::Send(bytes));
                return out;
            }
            ClientRoute::Other => {}
        }
        vec![MuxOut::Send(bytes)]
    }

    /// A frame from the server, for the ports it concerns.
    pub fn server_frame(&mut self, bytes: Vec<u8>) -> Vec<MuxOut<P>> {
        let frame = |p: &P, b: &Vec<u8>| MuxOut::Port(p.clone(), PortEvent::Frame(b.clone()));
        match route_server(&bytes) {
            ServerRoute::Welcome => {
                let mut out = Vec::new();
                for (p, s) in &mut self.ports {
                    if core::mem::take(&mut s.hello) {
                        out.push(frame(p, &bytes));
                    }
                }
                self.welcome = Some(bytes);
                out
            }
            ServerRoute::Stream(stream) => {
                if self.fences.iter().any(|(s, _)| *s == stream) {
                    // The old owner's, still on its way.
                    return Vec::new();
                }
                let Some(p) = self.owner(&stream).cloned() else {
                    return Vec::new();
                };
                if let Some(state) = self.port(&p) {
                    state.unanswered.retain(|s| *s != stream);
                }
                vec![MuxOut::Port(p, PortEvent::Frame(bytes))]
            }
            ServerRoute::Error
                if self.welcome.is_some()
                    && self.ports.iter().any(|(_, s)| !s.unanswered.is_empty()) =>
            {
                // After the handshake, an `Error` most likely refuses a
                // subscription not answered yet (a stream the token may
                // not read, one too many): those ports hear it (and the
                // socket's close that follows); the others hear the
                // connection end now, and reconnect. With no subscription
                // pending it is about the connection: every port hears it
                // (the last arm).
                let mut out = Vec::new();
                let mut i = 0;
                while i < self.ports.len() {
                    if !self.ports[i].1.unanswered.is_empty() {
                        out.push(frame(&self.ports[i].0, &bytes));
                        i += 1;
                        continue;
                    }
                    let (p, _) = self.ports.remove(i);
                    self.owners.retain(|(_, o)| *o != p);
                    out.push(MuxOut::Port(
                        p,
                        PortEvent::Closed {
                            code: ENDED_BY_ANOTHER,
                            reason: "another stream's request was refused".into(),
                        },
                    ));
                }
                out
            }
            ServerRoute::Pong(nonce) if nonce > FENCE_NONCES => {
                self.fences.retain(|(_, n)| *n != nonce);
                Vec::new()
            }
            ServerRoute::Pong(_) | ServerRoute::Error | ServerRoute::All => self
                .ports
                .iter()
                .filter(|(_, s)| s.opened)
                .map(|(p, _)| frame(p, &bytes))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientId, ClientMsg, Epoch, ErrorCode, ServerMsg, StreamName};

    fn s(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    fn hello(token: &str) -> Vec<u8> {
        ClientMsg::hello(ClientId([7; 16]), Some(token.into())).encode()
    }

    fn welcome() -> Vec<u8> {
        ServerMsg::Welcome {
            version: crate::PROTOCOL_VERSION,
            server_id: "srv".into(),
            epoch: Epoch("e".into()),
            max_frame_bytes: 1 << 20,
        }
        .encode()
    }

    fn subscribe(stream: &str) -> Vec<u8> {
        ClientMsg::Subscribe {
            stream: s(stream),
            after: crate::Offset(0),
            resume: None,
        }
        .encode()
    }

    fn events(stream: &str) -> Vec<u8> {
        ServerMsg::Events {
            stream: s(stream),
            events: vec![],
            head: crate::Offset(3),
        }
        .encode()
    }

    /// Ports 1 and 2 on an open socket.
    fn two_open() -> Mux<u8> {
        let mut m = Mux::<u8>::new();
        m.attach(1);
        m.attach(2);
        m.opened();
        m
    }

    fn frames_to(out: &[MuxOut<u8>], port: u8) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                MuxOut::Port(p, PortEvent::Frame(b)) if *p == port => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    fn sent(out: &[MuxOut<u8>]) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                MuxOut::Send(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn routes_read_the_variant_and_stream_of_every_message() {
        assert_eq!(route_client(&hello("t")), ClientRoute::Hello);
        assert_eq!(
            route_client(&subscribe("a")),
            ClientRoute::Subscribe("a".into())
        );
        let unsub = ClientMsg::Unsubscribe { stream: s("b") }.encode();
        assert_eq!(route_client(&unsub), ClientRoute::Unsubscribe("b".into()));
        let push = ClientMsg::Push {
            stream: s("c"),
            intents: vec![],
        }
        .encode();
        assert_eq!(route_client(&push), ClientRoute::Write("c".into()));
        let withdraw = ClientMsg::Withdraw {
            stream: s("d"),
            seq: crate::Seq::FIRST,
            code: ErrorCode::PayloadTooLarge,
            message: "big".into(),
        }
        .encode();
        assert_eq!(route_client(&withdraw), ClientRoute::Write("d".into()));
        assert_eq!(
            route_client(&ClientMsg::Ping { nonce: 4 }.encode()),
            ClientRoute::Other
        );
        assert_eq!(route_client(&[]), ClientRoute::Other);

        assert_eq!(route_server(&welcome()), ServerRoute::Welcome);
        assert_eq!(route_server(&events("a")), ServerRoute::Stream("a".into()));
        let per_stream = [
            ServerMsg::Ack {
                stream: s("x"),
                seq: crate::Seq::FIRST,
                offset: crate::Offset(1),
                duplicate: false,
            },
            ServerMsg::Reject {
                stream: s("x"),
                seq: crate::Seq::FIRST,
                code: ErrorCode::Forbidden,
                message: "no".into(),
            },
            ServerMsg::Gap {
                stream: s("x"),
                expected_seq: crate::Seq::FIRST.next(),
            },
            ServerMsg::Snapshot {
                stream: s("x"),
                offset: crate::Offset(1),
                hash: 2,
                total: 3,
                at: 0,
                part: vec![1, 2, 3],
                schema: 1,
            },
            ServerMsg::Checkpoint {
                stream: s("x"),
                offset: crate::Offset(1),
                hash: 2,
                schema: 1,
            },
        ];
        for msg in per_stream {
            assert_eq!(
                route_server(&msg.encode()),
                ServerRoute::Stream("x".into()),
                "{msg:?}"
            );
        }
        assert_eq!(route_server(&pong(1)), ServerRoute::Pong(1));
        let error = ServerMsg::Error {
            code: ErrorCode::Unauthorized,
            message: "who".into(),
        };
        assert_eq!(route_server(&error.encode()), ServerRoute::Error);
        assert_eq!(route_server(&[0xff]), ServerRoute::All);
    }

    #[test]
    fn two_ports_share_one_handshake_and_get_their_own_streams() {
        let mut m = Mux::<u8>::new();
        assert_eq!(m.attach(1), vec![MuxOut::Connect]);
        assert_eq!(m.attach(2), vec![], "one socket is being opened");
        let out = m.opened();
        assert_eq!(
            out,
            vec![
                MuxOut::Port(1, PortEvent::Open),
                MuxOut::Port(2, PortEvent::Open)
            ]
        );
        assert_eq!(sent(&m.port_frame(&1, hello("t1"))), vec![hello("t1")]);
        assert!(
            m.port_frame(&2, hello("t2")).is_empty(),
            "one Hello per socket"
        );
        let out = m.server_frame(welcome());
        assert_eq!(frames_to(&out, 1), vec![welcome()]);
        assert_eq!(frames_to(&out, 2), vec![welcome()]);
        // A late port gets the Welcome at once.
        assert_eq!(m.attach(3), vec![MuxOut::Port(3, PortEvent::Open)]);
        assert_eq!(
            frames_to(&m.port_frame(&3, hello("t3")), 3),
            vec![welcome()]
        );

        assert_eq!(
            sent(&m.port_frame(&1, subscribe("a"))),
            vec![subscribe("a")]
        );
        assert_eq!(
            sent(&m.port_frame(&2, subscribe("b"))),
            vec![subscribe("b")]
        );
        assert_eq!(
            frames_to(&m.server_frame(events("a")), 1),
            vec![events("a")]
        );
        assert_eq!(
            frames_to(&m.server_frame(events("b")), 2),
            vec![events("b")]
        );
        assert!(m.server_frame(events("c")).is_empty(), "nobody follows c");
        let pong = ServerMsg::Pong { nonce: 9 }.encode();
        let out = m.server_frame(pong.clone());
        for p in [1, 2, 3] {
            assert_eq!(frames_to(&out, p), vec![pong.clone()]);
        }
    }

    #[test]
    fn a_write_only_port_gets_the_answers_to_its_pushes() {
        let mut m = Mux::<u8>::new();
        m.attach(1);
        m.opened();
        let push = ClientMsg::Push {
            stream: s("w"),
            intents: vec![],
        }
        .encode();
        assert_eq!(sent(&m.port_frame(&1, push.clone())), vec![push]);
        let ack = ServerMsg::Ack {
            stream: s("w"),
            seq: crate::Seq::FIRST,
            offset: crate::Offset(1),
            duplicate: false,
        }
        .encode();
        assert_eq!(frames_to(&m.server_frame(ack.clone()), 1), vec![ack]);
        // Leaving does not unsubscribe what it never subscribed; it fences
        // the answers still on their way.
        m.attach(2);
        assert_eq!(m.detach(1), vec![ping(FENCE_NONCES + 1)]);
    }

    fn unsub(stream: &str) -> MuxOut<u8> {
        MuxOut::Send(ClientMsg::Unsubscribe { stream: s(stream) }.encode())
    }

    fn ping(nonce: u64) -> MuxOut<u8> {
        MuxOut::Send(ClientMsg::Ping { nonce }.encode())
    }

    fn pong(nonce: u64) -> Vec<u8> {
        ServerMsg::Pong { nonce }.encode()
    }

    fn taken() -> PortEvent {
        PortEvent::Closed {
            code: TAKEN,
            reason: "another tab leads this stream now".into(),
        }
    }

    fn push(stream: &str) -> Vec<u8> {
        ClientMsg::Push {
            stream: s(stream),
            intents: vec![],
        }
        .encode()
    }

    #[test]
    fn a_stream_changes_hands_behind_a_fence() {
        let mut m = two_open();
        m.port_frame(&1, subscribe("a"));
        // Port 2 claims a (a new leader of that stream): port 1's
        // subscription ends, a ping fences what is on its way, and port 1
        // hears its connection close.
        let fence = FENCE_NONCES + 1;
        assert_eq!(
            m.port_frame(&2, subscribe("a")),
            vec![
                unsub("a"),
                ping(fence),
                MuxOut::Port(1, taken()),
                MuxOut::Send(subscribe("a"))
            ]
        );
        assert!(
            m.server_frame(events("a")).is_empty(),
            "sent for port 1's subscription: dropped"
        );
        assert!(m.server_frame(pong(fence)).is_empty(), "the mux's own pong");
        assert_eq!(
            frames_to(&m.server_frame(events("a")), 2),
            vec![events("a")]
        );
        // Port 1 is gone: what it still sends (a push, a subscribe of a
        // leader that has not heard yet) is dropped, and takes nothing back.
        assert!(m.port_frame(&1, push("a")).is_empty());
        assert!(m.port_frame(&1, subscribe("a")).is_empty());
        assert_eq!(
            frames_to(&m.server_frame(events("a")), 2),
            vec![events("a")]
        );
        // A port's own pong goes to the ports, as ever.
        assert_eq!(frames_to(&m.server_frame(pong(3)), 2), vec![pong(3)]);
    }

    /// A port that writes on a stream another port follows is answered,
    /// but takes nothing: the follower's subscription stays (found in
    /// review: a stale leader's push used to unsubscribe the new one).
    #[test]
    fn a_write_on_a_followed_stream_takes_nothing() {
        let mut m = two_open();
        m.port_frame(&2, subscribe("a"));
        assert_eq!(m.port_frame(&1, push("a")), vec![MuxOut::Send(push("a"))]);
        assert_eq!(
            frames_to(&m.server_frame(events("a")), 2),
            vec![events("a")]
        );
        // Leaving, port 1 unsubscribes nothing of port 2's.
        assert_eq!(m.detach(1), vec![]);
        assert_eq!(
            frames_to(&m.server_frame(events("a")), 2),
            vec![events("a")]
        );
    }

    /// After the handshake, an `Error` goes to the port whose subscription
    /// is not answered yet; the others hear the connection end, so they
    /// reconnect instead of taking another stream's refusal as theirs.
    #[test]
    fn an_error_goes_to_the_port_whose_subscription_it_refuses() {
        let mut m = two_open();
        m.port_frame(&1, hello("t"));
        m.server_frame(welcome());
        m.port_frame(&2, hello("t"));
        m.port_frame(&1, subscribe("a"));
        m.server_frame(events("a"));
        m.port_frame(&2, subscribe("secret"));
        let error = ServerMsg::Error {
            code: ErrorCode::Forbidden,
            message: "not yours".into(),
        }
        .encode();
        let out = m.server_frame(error.clone());
        assert_eq!(frames_to(&out, 2), vec![error.clone()]);
        assert!(frames_to(&out, 1).is_empty());
        assert!(out.contains(&MuxOut::Port(
            1,
            PortEvent::Closed {
                code: ENDED_BY_ANOTHER,
                reason: "another stream's request was refused".into()
            }
        )));
        // Port 2 hears the socket's close that follows.
        assert_eq!(
            m.closed(1008, "refused"),
            vec![MuxOut::Port(
                2,
                PortEvent::Closed {
                    code: 1008,
                    reason: "refused".into()
                }
            )]
        );
        // With nothing pending, an error is the connection's: every port.
        m.attach(1);
        m.attach(2);
        m.opened();
        m.port_frame(&1, hello("t"));
        m.server_frame(welcome());
        let out = m.server_frame(error.clone());
        assert_eq!(frames_to(&out, 1), vec![error.clone()]);
        assert_eq!(frames_to(&out, 2), vec![error]);
    }

    #[test]
    fn a_port_that_leaves_unsubscribes_what_it_still_owns_and_the_last_closes() {
        let mut m = Mux::<u8>::new();
        m.attach(1);
        m.attach(2);
        m.attach(3);
        m.opened();
        m.port_frame(&1, subscribe("a"));
        m.port_frame(&2, subscribe("b"));
        m.port_frame(&3, subscribe("c"));
        assert_eq!(m.detach(1), vec![unsub("a"), ping(FENCE_NONCES + 1)]);
        assert_eq!(
            frames_to(&m.server_frame(events("b")), 2),
            vec![events("b")]
        );
        assert!(m.server_frame(events("a")).is_empty());
        // An Unsubscribe from a port that no longer owns the stream is not
        // sent: it would stop the new owner's subscription.
        m.port_frame(&2, subscribe("c"));
        assert!(m
            .port_frame(&3, ClientMsg::Unsubscribe { stream: s("c") }.encode())
            .is_empty());
        assert_eq!(
            m.detach(2),
            vec![
                unsub("b"),
                ping(FENCE_NONCES + 3),
                unsub("c"),
                ping(FENCE_NONCES + 4),
                MuxOut::Close
            ]
        );
        assert_eq!(m.ports(), 0);
        assert_eq!(m.attach(4), vec![MuxOut::Connect], "a new socket");
    }

    #[test]
    fn a_closed_socket_closes_every_port_and_starts_over() {
        let mut m = two_open();
        m.port_frame(&1, hello("t"));
        m.server_frame(welcome());
        m.port_frame(&1, subscribe("a"));
        let out = m.closed(1006, "cut");
        let closed = PortEvent::Closed {
            code: 1006,
            reason: "cut".into(),
        };
        assert_eq!(
            out,
            vec![MuxOut::Port(1, closed.clone()), MuxOut::Port(2, closed)]
        );
        assert!(
            m.port_frame(&1, subscribe("a")).is_empty(),
            "port 1 is gone"
        );
        assert!(m.server_frame(events("a")).is_empty());
        assert_eq!(m.attach(1), vec![MuxOut::Connect]);
        m.opened();
        // The next socket's first Hello goes to the server again.
        assert_eq!(sent(&m.port_frame(&1, hello("t"))), vec![hello("t")]);
    }

    #[test]
    fn nothing_goes_out_before_a_port_heard_open() {
        let mut m = Mux::<u8>::new();
        m.attach(1);
        assert!(m.port_frame(&1, hello("t")).is_empty());
        assert!(m.port_frame(&9, hello("t")).is_empty(), "unknown port");
    }
}
