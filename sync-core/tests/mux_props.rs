//! One connection, several streams: the real `SyncClient`s of 2-4 streams
//! of one browser database (one client id) talk to an in-memory server
//! through one `Mux`, as the tab holding a browser's connection carries
//! them (sync-wasm's hub).
//!
//! Proptest drives random dispatches, ports that leave and come back (a
//! stream's leader moving to another tab), sockets that open late or are
//! cut, and random delivery order: the socket is FIFO both ways, each
//! client hears its port in order, and all of them interleave at random.
//! After quiescence:
//! - every dispatch is in its own stream's log exactly once, and nowhere
//!   else;
//! - every client's confirmed state is its stream's log, with nothing
//!   pending;
//! - no client ever heard a frame of another stream.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use sync_core::mux::{route_server, Mux, MuxOut, PortEvent, ServerRoute};
use sync_core::protocol::PushIntent;
use sync_core::{
    ClientId, ClientMsg, Effect, Epoch, Event, Offset, ReduceError, Reducer, Replica, Seq,
    ServerMsg, StreamName, SyncClient,
};

/// The state is the list of payloads, in log order.
struct Log;

impl Reducer for Log {
    type State = Vec<Vec<u8>>;
    type Action = Vec<u8>;
    fn decode(&self, payload: &[u8]) -> Result<Vec<u8>, ReduceError> {
        Ok(payload.to_vec())
    }
    fn reduce(&self, s: &Vec<Vec<u8>>, a: &Vec<u8>) -> Result<Vec<Vec<u8>>, ReduceError> {
        let mut s = s.clone();
        s.push(a.clone());
        Ok(s)
    }
}

const ID: ClientId = ClientId([9; 16]);

fn stream(k: usize) -> StreamName {
    StreamName::new(format!("list-{k}")).unwrap()
}

/// The server: a log per stream, one client id, one connection at a time
/// (everything comes through the mux).
#[derive(Default)]
struct Server {
    logs: BTreeMap<String, Vec<Event>>,
    /// The current connection's subscriptions.
    subs: BTreeMap<String, ()>,
    hello: bool,
}

impl Server {
    fn handle(&mut self, msg: ClientMsg) -> Vec<ServerMsg> {
        let mut out = Vec::new();
        match msg {
            ClientMsg::Hello { client_id, .. } => {
                assert!(!self.hello, "a second Hello on one connection");
                assert_eq!(client_id, ID);
                self.hello = true;
                out.push(ServerMsg::Welcome {
                    version: sync_core::PROTOCOL_VERSION,
                    server_id: "mux".into(),
                    epoch: Epoch::from("e"),
                    max_frame_bytes: 1 << 20,
                });
            }
            _ if !self.hello => panic!("a frame before Hello: {msg:?}"),
            ClientMsg::Subscribe { stream, after, .. } => {
                let log = self.logs.entry(stream.as_str().into()).or_default();
                let events = log.iter().filter(|e| e.offset > after).cloned().collect();
                let head = Offset(log.len() as u64);
                self.subs.insert(stream.as_str().into(), ());
                out.push(ServerMsg::Events {
                    stream,
                    events,
                    head,
                });
            }
            ClientMsg::Unsubscribe { stream } => {
                self.subs.remove(stream.as_str());
            }
            ClientMsg::Push { stream, intents } => {
                let log = self.logs.entry(stream.as_str().into()).or_default();
                for PushIntent {
                    seq,
                    payload,
                    seen,
                    schema,
                } in intents
                {
                    let next = log.len() as u64 + 1;
                    if let Some(e) = log.iter().find(|e| e.seq == seq) {
                        out.push(ServerMsg::Ack {
                            stream: stream.clone(),
                            seq,
                            offset: e.offset,
                            duplicate: true,
                        });
                        continue;
                    }
                    // One client, one stream: seqs and offsets go together.
                    if seq.get() != next {
                        out.push(ServerMsg::Gap {
                            stream: stream.clone(),
                            expected_seq: Seq::new(next).unwrap(),
                        });
                        break;
                    }
                    let e = Event {
                        offset: Offset(next),
                        client_id: ID,
                        seq,
                        time_ms: 0,
                        payload,
                        subject: None,
                        seen,
                        schema,
                    };
                    log.push(e.clone());
                    out.push(ServerMsg::Ack {
                        stream: stream.clone(),
                        seq,
                        offset: e.offset,
                        duplicate: false,
                    });
                    if self.subs.contains_key(stream.as_str()) {
                        out.push(ServerMsg::Events {
                            stream: stream.clone(),
                            events: vec![e],
                            head: Offset(next),
                        });
                    }
                }
            }
            ClientMsg::Ping { nonce } => out.push(ServerMsg::Pong { nonce }),
            other => panic!("not sent by these clients: {other:?}"),
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Socket {
    None,
    Connecting,
    Open,
}

struct Client {
    sync: SyncClient<Log>,
    /// Its current port.
    port: Option<u32>,
    /// What its ports said, tagged with the port (a store ignores what an
    /// older connection says).
    inbox: VecDeque<(u32, PortEvent)>,
    dispatched: Vec<Vec<u8>>,
}

struct World {
    clients: Vec<Client>,
    mux: Mux<u32>,
    server: Server,
    socket: Socket,
    to_server: VecDeque<Vec<u8>>,
    to_mux: VecDeque<Vec<u8>>,
    next_port: u32,
    next_payload: u32,
}

#[derive(Clone, Debug)]
enum Op {
    Dispatch(usize),
    Connect(usize),
    Leave(usize),
    Open,
    Cut,
    ToServer,
    ToMux,
    ToClient(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize).prop_map(Op::Dispatch),
        2 => (0..4usize).prop_map(Op::Connect),
        1 => (0..4usize).prop_map(Op::Leave),
        2 => Just(Op::Open),
        1 => Just(Op::Cut),
        4 => Just(Op::ToServer),
        4 => Just(Op::ToMux),
        6 => (0..4usize).prop_map(Op::ToClient),
    ]
}

impl World {
    fn new(n: usize) -> World {
        let clients = (0..n)
            .map(|k| Client {
                sync: SyncClient::new(
                    Replica::new(stream(k), ID, Log, Vec::new()),
                    None,
                    Vec::new(),
                ),
                port: None,
                inbox: VecDeque::new(),
                dispatched: Vec::new(),
            })
            .collect();
        World {
            clients,
            mux: Mux::new(),
            server: Server::default(),
            socket: Socket::None,
            to_server: VecDeque::new(),
            to_mux: VecDeque::new(),
            next_port: 0,
            next_payload: 0,
        }
    }

    /// Carries out what the mux asks.
    fn run(&mut self, out: Vec<MuxOut<u32>>) {
        for o in out {
            match o {
                MuxOut::Connect => {
                    assert_eq!(self.socket, Socket::None, "one socket at a time");
                    self.socket = Socket::Connecting;
                }
                MuxOut::Close => self.drop_socket(),
                MuxOut::Send(bytes) => {
                    assert_eq!(self.socket, Socket::Open, "a frame sent on no socket");
                    self.to_server.push_back(bytes);
                }
                MuxOut::Port(p, ev) => {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.port == Some(p)) {
                        c.inbox.push_back((p, ev));
                    }
                }
            }
        }
    }

    fn drop_socket(&mut self) {
        self.socket = Socket::None;
        self.to_server.clear();
        self.to_mux.clear();
        self.server.subs.clear();
        self.server.hello = false;
    }

    /// A client's effects: frames go out through its port; storage is
    /// instant here (the epoch is stored at once).
    fn effects(&mut self, k: usize, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::Send(msg) => {
                    if let Some(p) = self.clients[k].port {
                        let out = self.mux.port_frame(&p, msg.encode());
                        self.run(out);
                    }
                }
                Effect::StoreEpoch(epoch) => {
                    queue.extend(self.clients[k].sync.epoch_stored(epoch));
                }
                _ => {}
            }
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Dispatch(k) if k < self.clients.len() => {
                self.next_payload += 1;
                let payload = format!("{k}:{}", self.next_payload).into_bytes();
                let c = &mut self.clients[k];
                c.sync.replica_mut().dispatch(payload.clone(), 0).unwrap();
                c.dispatched.push(payload);
                let fx = c.sync.flush();
                self.effects(k, fx);
            }
            Op::Connect(k) if k < self.clients.len() && self.clients[k].port.is_none() => {
                self.next_port += 1;
                let p = self.next_port;
                self.clients[k].port = Some(p);
                let out = self.mux.attach(p);
                self.run(out);
            }
            Op::Leave(k) if k < self.clients.len() => {
                if let Some(p) = self.clients[k].port.take() {
                    self.clients[k].sync.disconnected();
                    let out = self.mux.detach(p);
                    self.run(out);
                }
            }
            Op::Open if self.socket == Socket::Connecting => {
                self.socket = Socket::Open;
                let out = self.mux.opened();
                self.run(out);
            }
            Op::Cut if self.socket != Socket::None => {
                self.drop_socket();
                let out = self.mux.closed(1006, "cut");
                self.run(out);
            }
            Op::ToServer => {
                if let Some(bytes) = self.to_server.pop_front() {
                    let msg = ClientMsg::decode(&bytes, 1 << 20).unwrap();
                    for answer in self.server.handle(msg) {
                        self.to_mux.push_back(answer.encode());
                    }
                }
            }
            Op::ToMux => {
                if let Some(bytes) = self.to_mux.pop_front() {
                    let out = self.mux.server_frame(bytes);
                    self.run(out);
                }
            }
            Op::ToClient(k) if k < self.clients.len() => self.deliver_to_client(k),
            _ => {}
        }
    }

    fn deliver_to_client(&mut self, k: usize) {
        let Some((p, ev)) = self.clients[k].inbox.pop_front() else {
            return;
        };
        if self.clients[k].port != Some(p) {
            return;
        }
        match ev {
            PortEvent::Open => {
                let hello = self.clients[k].sync.connected(None);
                self.effects(k, vec![Effect::Send(hello)]);
                // The adapter reads its outbox on every connection.
                let fx = self.clients[k].sync.outbox_checked();
                self.effects(k, fx);
            }
            PortEvent::Frame(bytes) => {
                if let ServerRoute::Stream(s) = route_server(&bytes) {
                    assert_eq!(s, stream(k).as_str(), "client {k} heard another stream");
                }
                let msg = ServerMsg::decode(&bytes, 1 << 20).unwrap();
                let fx = self.clients[k]
                    .sync
                    .handle(msg)
                    .unwrap_or_else(|e| panic!("client {k}: {e}"));
                self.effects(k, fx);
            }
            PortEvent::Closed { .. } => {
                self.clients[k].port = None;
                self.clients[k].sync.disconnected();
            }
        }
    }

    /// Heals everything and delivers until nothing moves.
    fn quiesce(&mut self) {
        for _ in 0..200 {
            for k in 0..self.clients.len() {
                self.apply(Op::Connect(k));
            }
            self.apply(Op::Open);
            let mut moved = false;
            while !self.to_server.is_empty()
                || !self.to_mux.is_empty()
                || self.clients.iter().any(|c| !c.inbox.is_empty())
            {
                moved = true;
                self.apply(Op::ToServer);
                self.apply(Op::ToMux);
                for k in 0..self.clients.len() {
                    self.apply(Op::ToClient(k));
                }
            }
            let settled = self
                .clients
                .iter()
                .all(|c| c.sync.replica().own_pending_count() == 0);
            if settled && !moved {
                return;
            }
        }
        panic!("did not settle");
    }

    fn check(&self) {
        for (k, c) in self.clients.iter().enumerate() {
            let log: Vec<Vec<u8>> = self
                .server
                .logs
                .get(stream(k).as_str())
                .map(|l| l.iter().map(|e| e.payload.clone()).collect())
                .unwrap_or_default();
            let mut sorted = log.clone();
            sorted.sort();
            let mut want = c.dispatched.clone();
            want.sort();
            assert_eq!(
                sorted, want,
                "stream {k}: every dispatch once, nothing else"
            );
            assert_eq!(
                *c.sync.replica().confirmed_state(),
                log,
                "client {k} folds its stream's log"
            );
            assert_eq!(c.sync.replica().own_pending_count(), 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(256)))]

    #[test]
    fn streams_sharing_one_connection_converge_exactly_once(
        n in 2..=4usize,
        ops in proptest::collection::vec(op(), 0..150),
    ) {
        let mut w = World::new(n);
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }
}

/// A stream's port leaves while its pushes are in flight and comes back
/// on the same connection: its intents are in the log once, and the new
/// port gets the answers.
#[test]
fn a_port_that_comes_back_mid_push_loses_and_doubles_nothing() {
    let mut w = World::new(2);
    use Op::*;
    for op in [
        Connect(0),
        Connect(1),
        Open,
        ToClient(0),
        ToClient(1),
        Dispatch(0),
        Dispatch(1),
        // Hellos: one goes to the server; both get the Welcome.
        ToServer,
        ToMux,
        ToClient(0),
        ToClient(1),
        // Subscribes and pushes reach the server; then client 0 leaves.
        ToServer,
        ToServer,
        ToServer,
        ToServer,
        Leave(0),
        Dispatch(0),
        Connect(0),
        ToClient(0),
    ] {
        w.apply(op);
    }
    w.quiesce();
    w.check();
}
