//! A whole system simulated in one thread: an in-memory server that follows
//! the protocol (ordering, exactly-once decisions with `decide`, catch-up in
//! batches then live events), and 2-5 devices with 1-2 tabs each that run
//! the real `SyncClient` over simulated connections and simulated durable
//! storage shared by the tabs of a device.
//!
//! Proptest drives it with random dispatches, random delivery order (each
//! connection is FIFO, like TCP, but connections interleave at random),
//! replayed pushes, disconnects, tab crashes and restores from storage,
//! server restarts and server rejections. After quiescence:
//! - every tab has the same confirmed offset and state, equal to folding
//!   the server's log, and nothing pending;
//! - no (client, seq) appears in the log twice;
//! - every intent not rejected appears exactly once, every rejected one never.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use proptest::prelude::*;
use sync_core::protocol::PushIntent;
use sync_core::{
    decide, ClientId, ClientMsg, Decision, Effect, Epoch, ErrorCode, Event, Offset, ReduceError,
    Reducer, Replica, Seq, ServerMsg, StreamName, SyncClient,
};

/// Order-sensitive reducer: a count and a hash chain over the payloads.
#[derive(Clone)]
struct ChainReducer;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct ChainState {
    count: u64,
    hash: u64,
}

impl Reducer for ChainReducer {
    type State = ChainState;
    type Action = Vec<u8>;
    fn decode(&self, payload: &[u8]) -> Result<Vec<u8>, ReduceError> {
        Ok(payload.to_vec())
    }
    fn reduce(&self, s: &ChainState, a: &Vec<u8>) -> Result<ChainState, ReduceError> {
        let mut h = s.hash ^ 0xcbf2_9ce4_8422_2325;
        for b in a {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        Ok(ChainState {
            count: s.count + 1,
            hash: h.rotate_left(7),
        })
    }
}

fn fold(log: &[Event]) -> ChainState {
    log.iter().fold(ChainState::default(), |s, e| {
        ChainReducer.reduce(&s, &e.payload).expect("total reducer")
    })
}

const BATCH: usize = 3;

#[derive(Clone)]
enum Outcome {
    Appended(Offset),
    Rejected(String),
}

/// The server: one stream, durable across "restarts" (which only drop
/// connections), exactly like the real one is meant to behave.
struct Server {
    stream: StreamName,
    epoch: Epoch,
    log: Vec<Event>,
    decided: HashMap<ClientId, Vec<Outcome>>,
    conns: HashMap<usize, ServerConn>,
}

struct ServerConn {
    client: Option<ClientId>,
    /// The last offset sent on this subscription (None: not subscribed).
    sent_through: Option<Offset>,
    closed: bool,
}

fn is_rejected_payload(p: &[u8]) -> bool {
    p.first() == Some(&b'R')
}

impl Server {
    fn head(&self) -> Offset {
        Offset(self.log.len() as u64)
    }

    /// Handles one client message; returns the frames to send, per connection.
    fn handle(&mut self, conn: usize, msg: ClientMsg) -> Vec<(usize, ServerMsg)> {
        let mut out = Vec::new();
        let head = self.head();
        let Some(c) = self.conns.get_mut(&conn) else {
            return out;
        };
        if c.closed {
            return out;
        }
        match msg {
            ClientMsg::Hello { client_id, .. } => {
                c.client = Some(client_id);
                out.push((
                    conn,
                    ServerMsg::Welcome {
                        version: sync_core::PROTOCOL_VERSION,
                        server_id: "sim".into(),
                        epoch: self.epoch.clone(),
                        max_frame_bytes: 4096,
                    },
                ));
            }
            ClientMsg::Subscribe { stream, after } => {
                assert_eq!(stream, self.stream);
                let from = after.0.min(head.0) as usize;
                let mut chunks = self.log[from..].chunks(BATCH).peekable();
                if chunks.peek().is_none() {
                    out.push((
                        conn,
                        ServerMsg::Events {
                            stream: stream.clone(),
                            events: vec![],
                            head,
                        },
                    ));
                }
                for chunk in chunks {
                    out.push((
                        conn,
                        ServerMsg::Events {
                            stream: stream.clone(),
                            events: chunk.to_vec(),
                            head,
                        },
                    ));
                }
                c.sent_through = Some(head.max(after));
            }
            ClientMsg::Unsubscribe { .. } => c.sent_through = None,
            ClientMsg::Ping { nonce } => out.push((conn, ServerMsg::Pong { nonce })),
            ClientMsg::Withdraw { .. } => panic!("no intent is too large in this simulation"),
            ClientMsg::Push { stream, intents } => {
                let client = c.client.expect("Hello comes first");
                for PushIntent { seq, payload } in intents {
                    let head = Offset(self.log.len() as u64);
                    let decided = self.decided.entry(client).or_default();
                    match decide(decided.len() as u64, seq) {
                        Decision::Duplicate => {
                            let msg = match &decided[seq.get() as usize - 1] {
                                Outcome::Appended(offset) => ServerMsg::Ack {
                                    stream: stream.clone(),
                                    seq,
                                    offset: *offset,
                                    duplicate: true,
                                },
                                Outcome::Rejected(m) => ServerMsg::Reject {
                                    stream: stream.clone(),
                                    seq,
                                    code: ErrorCode::Rejected,
                                    message: m.clone(),
                                },
                            };
                            out.push((conn, msg));
                        }
                        Decision::Gap { expected } => {
                            out.push((
                                conn,
                                ServerMsg::Gap {
                                    stream: stream.clone(),
                                    expected_seq: expected,
                                },
                            ));
                            break;
                        }
                        Decision::Append if is_rejected_payload(&payload) => {
                            let m = format!("seq {seq} refused");
                            decided.push(Outcome::Rejected(m.clone()));
                            out.push((
                                conn,
                                ServerMsg::Reject {
                                    stream: stream.clone(),
                                    seq,
                                    code: ErrorCode::Rejected,
                                    message: m,
                                },
                            ));
                        }
                        Decision::Append => {
                            let offset = head.next();
                            decided.push(Outcome::Appended(offset));
                            let event = Event {
                                offset,
                                client_id: client,
                                seq,
                                time_ms: offset.0,
                                payload,
                            };
                            self.log.push(event.clone());
                            out.push((
                                conn,
                                ServerMsg::Ack {
                                    stream: stream.clone(),
                                    seq,
                                    offset,
                                    duplicate: false,
                                },
                            ));
                            // Live fan-out to every subscriber that is caught up.
                            for (id, sc) in self.conns.iter_mut() {
                                if sc.closed {
                                    continue;
                                }
                                if let Some(through) = sc.sent_through {
                                    if through.next() == offset {
                                        sc.sent_through = Some(offset);
                                        out.push((
                                            *id,
                                            ServerMsg::Events {
                                                stream: stream.clone(),
                                                events: vec![event.clone()],
                                                head: offset,
                                            },
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// A device's durable storage, shared by its tabs.
#[derive(Clone, Default)]
struct Storage {
    offset: Offset,
    snapshot: ChainState,
    next_seq: u64,
    outbox: BTreeMap<Seq, Vec<u8>>,
    epoch: Option<Epoch>,
}

struct Tab {
    device: usize,
    client: SyncClient<ChainReducer>,
    conn: Option<usize>,
    /// Pushes sent on any connection, for replays.
    sent_pushes: Vec<ClientMsg>,
}

struct Net {
    to_server: VecDeque<ClientMsg>,
    to_client: VecDeque<ServerMsg>,
    tab: usize,
}

struct World {
    server: Server,
    storages: Vec<Storage>,
    client_ids: Vec<ClientId>,
    tabs: Vec<Tab>,
    nets: BTreeMap<usize, Net>,
    next_conn: usize,
    /// Every intent ever given a seq: (client, seq) -> payload.
    dispatched: HashMap<(ClientId, Seq), Vec<u8>>,
    payload_counter: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Dispatch { tab: usize, reject: bool },
    Deliver { pick: usize },
    Disconnect { tab: usize },
    Connect { tab: usize },
    Replay { tab: usize, pick: usize },
    CrashTab { tab: usize },
    RestartServer,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..16usize, prop::bool::weighted(0.1)).prop_map(|(tab, reject)| Op::Dispatch { tab, reject }),
        10 => (0..64usize).prop_map(|pick| Op::Deliver { pick }),
        1 => (0..16usize).prop_map(|tab| Op::Disconnect { tab }),
        2 => (0..16usize).prop_map(|tab| Op::Connect { tab }),
        1 => (0..16usize, 0..64usize).prop_map(|(tab, pick)| Op::Replay { tab, pick }),
        1 => (0..16usize).prop_map(|tab| Op::CrashTab { tab }),
        1 => Just(Op::RestartServer),
    ]
}

impl World {
    fn new(tabs_per_device: &[usize]) -> World {
        let stream = StreamName::new("sim/stream").expect("valid");
        let mut w = World {
            server: Server {
                stream,
                epoch: Epoch("e1".into()),
                log: vec![],
                decided: HashMap::new(),
                conns: HashMap::new(),
            },
            storages: vec![],
            client_ids: vec![],
            tabs: vec![],
            nets: BTreeMap::new(),
            next_conn: 0,
            dispatched: HashMap::new(),
            payload_counter: 0,
        };
        for (device, &n) in tabs_per_device.iter().enumerate() {
            w.storages.push(Storage {
                next_seq: 1,
                ..Storage::default()
            });
            w.client_ids.push(ClientId([device as u8 + 1; 16]));
            for _ in 0..n {
                let client = w.open_tab(device);
                w.tabs.push(Tab {
                    device,
                    client,
                    conn: None,
                    sent_pushes: vec![],
                });
            }
        }
        w
    }

    /// A tab starts from storage alone: snapshot, offset, outbox.
    fn open_tab(&self, device: usize) -> SyncClient<ChainReducer> {
        let s = &self.storages[device];
        let replica = Replica::restore(
            self.server.stream.clone(),
            self.client_ids[device],
            ChainReducer,
            s.snapshot,
            s.offset,
            Seq::new(s.next_seq).expect("seq >= 1"),
        );
        let mut client = SyncClient::new(replica, s.epoch.clone(), ChainState::default());
        for (seq, payload) in &s.outbox {
            client.adopt(*seq, payload.clone());
        }
        client
    }

    fn run_effects(&mut self, tab: usize, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let device = self.tabs[tab].device;
            match effect {
                Effect::Send(msg) => {
                    if matches!(msg, ClientMsg::Push { .. }) {
                        self.tabs[tab].sent_pushes.push(msg.clone());
                    }
                    if let Some(conn) = self.tabs[tab].conn {
                        if let Some(net) = self.nets.get_mut(&conn) {
                            net.to_server.push_back(msg);
                        }
                    }
                }
                Effect::PersistEvents {
                    confirmed, offset, ..
                } => {
                    let s = &mut self.storages[device];
                    // Another tab of the device may already be further.
                    if offset > s.offset {
                        s.offset = offset;
                        s.snapshot = *self.tabs[tab].client.replica().confirmed_state();
                    }
                    for seq in confirmed {
                        s.outbox.remove(&seq);
                    }
                }
                Effect::DropFromOutbox(seq) => {
                    self.storages[device].outbox.remove(&seq);
                }
                Effect::MarkDiscarded(_) => panic!("no discards in this simulation"),
                Effect::StoreEpoch(e) => self.storages[device].epoch = Some(e),
                Effect::EpochReset { .. } => panic!("one epoch in this simulation"),
                Effect::ReloadOutbox { .. } => {
                    let outbox = self.storages[device].outbox.clone();
                    let client = &mut self.tabs[tab].client;
                    let mut more = Vec::new();
                    for (seq, payload) in outbox {
                        more.extend(client.adopt(seq, payload));
                    }
                    more.extend(client.flush());
                    queue.extend(more);
                }
                Effect::ServerError { code, message } => {
                    panic!("server error {code}: {message}")
                }
                Effect::StateChanged
                | Effect::Rejected { .. }
                | Effect::ReducerErrors(_)
                | Effect::HeadChanged(_) => {}
            }
        }
    }

    fn dispatch(&mut self, tab: usize, reject: bool) {
        let device = self.tabs[tab].device;
        self.payload_counter += 1;
        let payload = format!(
            "{}d{}t{}n{}",
            if reject { "R" } else { "" },
            device,
            tab,
            self.payload_counter
        )
        .into_bytes();
        // Optimistic apply first, then the durable seq allocation + outbox
        // write (one storage transaction), then the push.
        let local = self.tabs[tab]
            .client
            .replica_mut()
            .dispatch_unassigned(payload.clone())
            .expect("total reducer");
        let s = &mut self.storages[device];
        let seq = Seq::new(s.next_seq).expect("seq >= 1");
        s.next_seq += 1;
        s.outbox.insert(seq, payload.clone());
        self.dispatched
            .insert((self.client_ids[device], seq), payload);
        let client = &mut self.tabs[tab].client;
        assert!(client.replica_mut().assign_seq(local, seq));
        let effects = client.flush();
        self.run_effects(tab, effects);
    }

    fn connect(&mut self, tab: usize) {
        if self.tabs[tab].conn.is_some() {
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.server.conns.insert(
            conn,
            ServerConn {
                client: None,
                sent_through: None,
                closed: false,
            },
        );
        let hello = self.tabs[tab].client.connected(None);
        self.nets.insert(
            conn,
            Net {
                to_server: VecDeque::from([hello]),
                to_client: VecDeque::new(),
                tab,
            },
        );
        self.tabs[tab].conn = Some(conn);
        // The adapter re-reads the outbox on every connect (other tabs may
        // have written to it).
        let device = self.tabs[tab].device;
        let outbox = self.storages[device].outbox.clone();
        let mut effects = Vec::new();
        for (seq, payload) in outbox {
            effects.extend(self.tabs[tab].client.adopt(seq, payload));
        }
        self.run_effects(tab, effects);
    }

    fn disconnect(&mut self, tab: usize) {
        if let Some(conn) = self.tabs[tab].conn.take() {
            self.nets.remove(&conn);
            self.server.conns.remove(&conn);
            self.tabs[tab].client.disconnected();
        }
    }

    fn deliver(&mut self, pick: usize) -> bool {
        // 2 directions per connection.
        let slots: Vec<(usize, bool)> = self
            .nets
            .iter()
            .flat_map(|(id, n)| {
                let mut v = vec![];
                if !n.to_server.is_empty() {
                    v.push((*id, true));
                }
                if !n.to_client.is_empty() {
                    v.push((*id, false));
                }
                v
            })
            .collect();
        if slots.is_empty() {
            return false;
        }
        let (conn, to_server) = slots[pick % slots.len()];
        if to_server {
            let msg = self
                .nets
                .get_mut(&conn)
                .and_then(|n| n.to_server.pop_front())
                .expect("non-empty");
            for (target, reply) in self.server.handle(conn, msg) {
                if let Some(net) = self.nets.get_mut(&target) {
                    net.to_client.push_back(reply);
                }
            }
        } else {
            let net = self.nets.get_mut(&conn).expect("exists");
            let msg = net.to_client.pop_front().expect("non-empty");
            let tab = net.tab;
            let effects = self.tabs[tab]
                .client
                .handle(msg)
                .unwrap_or_else(|e| panic!("client refused a server message: {e}"));
            self.run_effects(tab, effects);
        }
        true
    }

    fn apply(&mut self, op: Op) {
        let n = self.tabs.len();
        match op {
            Op::Dispatch { tab, reject } => self.dispatch(tab % n, reject),
            Op::Deliver { pick } => {
                self.deliver(pick);
            }
            Op::Disconnect { tab } => self.disconnect(tab % n),
            Op::Connect { tab } => self.connect(tab % n),
            Op::Replay { tab, pick } => {
                let tab = tab % n;
                let t = &self.tabs[tab];
                if let (Some(conn), false) = (t.conn, t.sent_pushes.is_empty()) {
                    let msg = t.sent_pushes[pick % t.sent_pushes.len()].clone();
                    if let Some(net) = self.nets.get_mut(&conn) {
                        // A replayed push can only follow the Hello.
                        if net.to_server.is_empty() {
                            net.to_server.push_back(msg);
                        }
                    }
                }
            }
            Op::CrashTab { tab } => {
                let tab = tab % n;
                self.disconnect(tab);
                let device = self.tabs[tab].device;
                self.tabs[tab].client = self.open_tab(device);
            }
            Op::RestartServer => {
                for tab in 0..n {
                    self.disconnect(tab);
                }
            }
        }
    }

    fn quiesce(&mut self) {
        for tab in 0..self.tabs.len() {
            self.connect(tab);
        }
        let mut steps = 0;
        while self.deliver(steps) {
            steps += 1;
            assert!(steps < 200_000, "no quiescence after {steps} deliveries");
        }
    }

    fn check(&self) {
        let log = &self.server.log;
        if std::env::var_os("SIM_STATS").is_some() {
            eprintln!(
                "log={} dispatched={} tabs={} conns={}",
                log.len(),
                self.dispatched.len(),
                self.tabs.len(),
                self.next_conn
            );
        }
        let expected = fold(log);
        let head = Offset(log.len() as u64);
        for (i, t) in self.tabs.iter().enumerate() {
            let r = t.client.replica();
            assert_eq!(r.offset(), head, "tab {i} offset");
            assert_eq!(*r.confirmed_state(), expected, "tab {i} confirmed state");
            assert!(
                r.pending().is_empty(),
                "tab {i} still has pending {:?}",
                r.pending()
                    .iter()
                    .map(|p| (p.seq, String::from_utf8_lossy(&p.payload).into_owned()))
                    .collect::<Vec<_>>()
            );
            assert_eq!(*r.state(), expected, "tab {i} optimistic state");
        }
        for (d, s) in self.storages.iter().enumerate() {
            assert!(
                s.outbox.is_empty(),
                "device {d} outbox not drained: {:?}",
                s.outbox.keys()
            );
            assert_eq!(s.offset, head, "device {d} stored offset");
            assert_eq!(s.snapshot, expected, "device {d} stored snapshot");
        }
        // Dense offsets; no (client, seq) twice; payloads are what was dispatched.
        let mut seen = HashSet::new();
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.offset, Offset(i as u64 + 1));
            assert!(
                seen.insert((e.client_id, e.seq)),
                "{:?} twice",
                (e.client_id, e.seq)
            );
            assert_eq!(
                self.dispatched.get(&(e.client_id, e.seq)),
                Some(&e.payload),
                "log holds an intent nobody dispatched"
            );
        }
        // Every intent not rejected appears exactly once; rejected ones never.
        for ((client, seq), payload) in &self.dispatched {
            let in_log = seen.contains(&(*client, *seq));
            assert_eq!(
                in_log,
                !is_rejected_payload(payload),
                "intent {client} seq {seq} ({}) in log: {in_log}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Devices with one tab each.
    #[test]
    fn devices_converge_exactly_once(
        devices in 2usize..=5,
        ops in prop::collection::vec(op_strategy(), 1..300),
    ) {
        let mut w = World::new(&vec![1; devices]);
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }

    /// Devices with one or two tabs that share storage and the client id.
    #[test]
    fn tabs_sharing_storage_converge_exactly_once(
        tabs in prop::collection::vec(1usize..=2, 2..=5),
        ops in prop::collection::vec(op_strategy(), 1..300),
    ) {
        let mut w = World::new(&tabs);
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }
}

/// A deterministic scenario with every fault at once, as a readable example.
#[test]
fn offline_dispatch_then_reconnect() {
    let mut w = World::new(&[1, 2]);
    w.dispatch(0, false);
    w.dispatch(1, false);
    w.dispatch(2, true);
    w.dispatch(2, false);
    w.connect(1);
    for i in 0..5 {
        w.deliver(i);
    }
    w.apply(Op::RestartServer);
    w.dispatch(0, false);
    w.quiesce();
    w.check();
    assert_eq!(w.server.log.len(), 4);
}
