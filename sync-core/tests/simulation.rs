//! A whole system simulated in one thread: an in-memory server that follows
//! the protocol (ordering, exactly-once decisions with `decide`, catch-up in
//! batches then live events), and 2-5 devices with 1-3 tabs each that run
//! the real `SyncClient` and its storage queue (`Outbox`) over simulated
//! connections and simulated durable storage shared by the tabs of a
//! device. Storage carries out each tab's queued work whenever the
//! simulation says so (seq allocation is asynchronous, as in a browser),
//! with the same contract as the browser's IndexedDB code.
//!
//! Proptest drives it with random dispatches and discards, random delivery
//! order (each connection is FIFO, like TCP, but connections interleave at
//! random), random storage progress per tab, replayed pushes, disconnects,
//! tab crashes (with work queued, between an allocation and its push) and
//! restores from storage, server restarts, server rejections, and servers
//! that come back with an empty log (a new epoch). After quiescence:
//! - every tab has the same confirmed offset and state, equal to folding
//!   the server's log, and nothing pending; storage holds the same;
//! - no (client, seq) and no intent appears in the log twice;
//! - every intent given a seq and not rejected, discarded or confirmed in
//!   an earlier epoch's log appears exactly once; rejected ones never.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use proptest::prelude::*;
use sync_core::outbox::renumber;
use sync_core::protocol::PushIntent;
use sync_core::{
    decide, ClientId, ClientMsg, Decision, Done, Effect, Epoch, ErrorCode, Event, Meta, NewIntent,
    Offset, Outbox, OutboxEntry, Phase, ReduceError, Reducer, Replica, Seq, ServerMsg, Stored,
    StreamName, SyncClient, Work,
};

/// Order-sensitive reducer: a count and a hash chain over the payloads.
///
/// It comes in two schema versions. Version 2's actions start with `2|`
/// (its dispatches make them so, and it upcasts a version-1 action by
/// adding the prefix); it refuses an action without it, so an action
/// folded without its upcast leaves a mark. Each version's states carry
/// the version (`v`), and version 2 refuses to fold onto a version-1
/// state, so an old state fed to the new reducer unmigrated leaves one
/// too. Both versions hash the same bytes (the action without the
/// prefix), so a version-1 state at an offset migrates to version 2's by
/// changing `v` alone (`migrate`, when `migrates`).
#[derive(Clone)]
struct ChainReducer {
    /// Whether the last `reduce_meta` read its meta.
    read: std::cell::Cell<bool>,
    /// The schema version: 1 or 2.
    version: u32,
    /// Version 2 migrates version-1 states (otherwise they are rebuilt).
    migrates: bool,
}

impl Default for ChainReducer {
    fn default() -> Self {
        ChainReducer::of(1, false)
    }
}

impl ChainReducer {
    fn of(version: u32, migrates: bool) -> Self {
        ChainReducer {
            read: std::cell::Cell::new(false),
            version,
            migrates,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct ChainState {
    count: u64,
    hash: u64,
    /// The schema version of the reducer that made it (0: the initial state).
    v: u32,
}

const V2: &[u8] = b"2|";

impl Reducer for ChainReducer {
    type State = ChainState;
    type Action = Vec<u8>;
    fn decode(&self, payload: &[u8]) -> Result<Vec<u8>, ReduceError> {
        Ok(payload.to_vec())
    }
    fn reduce(&self, s: &ChainState, a: &Vec<u8>) -> Result<ChainState, ReduceError> {
        let bytes = if self.version == 2 {
            if s.v == 1 {
                return Err("a version-1 state reached the version-2 reducer".into());
            }
            a.strip_prefix(V2).ok_or_else(|| {
                ReduceError::from("a version-1 action reached the version-2 reducer")
            })?
        } else {
            &a[..]
        };
        let mut h = s.hash ^ 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        Ok(ChainState {
            count: s.count + 1,
            hash: h.rotate_left(7),
            v: self.version,
        })
    }
    fn schema_version(&self) -> u32 {
        self.version
    }
    fn min_schema_version(&self) -> u32 {
        1
    }
    fn upcast(&self, action: Vec<u8>, from: u32) -> Result<Vec<u8>, ReduceError> {
        assert_eq!((from, self.version), (1, 2), "upcast only from 1 to 2");
        Ok([V2, &action].concat())
    }
    fn migrate(&self, state: ChainState, from: u32) -> Option<Result<ChainState, ReduceError>> {
        assert_eq!((from, self.version), (1, 2), "migrate only from 1 to 2");
        self.migrates.then_some(Ok(ChainState {
            v: if state.v == 0 { 0 } else { 2 },
            ..state
        }))
    }
    /// Payloads ending in an even digit also take in `meta.seen`: every
    /// replica must fold each such event with the `seen` its intent carried
    /// from the dispatching tab, through storage, the push and the
    /// server's log; and a pending one is folded again on confirmation
    /// (its local fold read meta), while the others keep the optimistic
    /// state as it is.
    fn reduce_meta(
        &self,
        s: &ChainState,
        a: &Vec<u8>,
        meta: &Meta<'_>,
    ) -> Result<ChainState, ReduceError> {
        let next = self.reduce(s, a)?;
        let reads = a.last().is_some_and(|b| b.is_ascii_digit() && b % 2 == 0);
        self.read.set(reads);
        if !reads {
            return Ok(next);
        }
        Ok(ChainState {
            hash: next.hash ^ meta.seen.0.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ..next
        })
    }
    fn read_meta(&self) -> bool {
        self.read.get()
    }
    /// Compared with the server's checkpoints (the server's text is the
    /// same function of the same fold).
    fn encode_state(&self, s: &ChainState) -> Option<Vec<u8>> {
        Some(state_text(s))
    }
}

fn state_text(s: &ChainState) -> Vec<u8> {
    format!("{}:{}:{}", s.count, s.hash, s.v).into_bytes()
}

/// The server stores a snapshot (and tells subscribers its hash, a
/// `Checkpoint`) at every offset that is a multiple of this.
const CHECKPOINT_EVERY: u64 = 4;

/// The fold of `log` by the reducer of schema `version`, upcasting
/// older events.
fn fold(log: &[Event], version: u32) -> ChainState {
    let r = ChainReducer::of(version, false);
    log.iter().fold(ChainState::default(), |s, e| {
        let a = r.decode_at(&e.payload, e.schema).expect("upcasts");
        r.reduce_meta(&s, &a, &Meta::of_event(e))
            .expect("total reducer")
    })
}

const BATCH: usize = 3;

#[derive(Clone)]
enum Outcome {
    Appended(Offset),
    Rejected(ErrorCode, String),
}

/// The server: one stream, durable across "restarts" (which only drop
/// connections), exactly like the real one is meant to behave.
struct Server {
    stream: StreamName,
    /// The schema version of the server's reducer (its checkpoints').
    version: u32,
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
    p.strip_prefix(V2).unwrap_or(p).first() == Some(&b'R')
}

impl Server {
    fn head(&self) -> Offset {
        Offset(self.log.len() as u64)
    }

    /// The latest checkpoint: offset and the hash of the fold there.
    fn checkpoint(&self) -> Option<(Offset, u64)> {
        let at = self.log.len() as u64 / CHECKPOINT_EVERY * CHECKPOINT_EVERY;
        (at > 0).then(|| {
            let text = state_text(&fold(&self.log[..at as usize], self.version));
            (Offset(at), sync_core::protocol::state_hash(&text))
        })
    }

    /// The `Checkpoint` frame to send before `events`: when the latest
    /// checkpoint is at one of them (as the real server does).
    fn checkpoint_in(&self, events: &[Event]) -> Option<ServerMsg> {
        let (offset, hash) = self.checkpoint()?;
        events
            .iter()
            .any(|e| e.offset == offset)
            .then(|| ServerMsg::Checkpoint {
                stream: self.stream.clone(),
                offset,
                hash,
                schema: self.version,
            })
    }

    /// Handles one client message; returns the frames to send, per connection.
    fn handle(&mut self, conn: usize, msg: ClientMsg) -> Vec<(usize, ServerMsg)> {
        let mut out = Vec::new();
        let head = self.head();
        let checkpoint = match msg {
            ClientMsg::Subscribe { .. } => self.checkpoint(),
            _ => None,
        };
        let version = self.version;
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
            ClientMsg::Subscribe { stream, after, .. } => {
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
                    if let Some((offset, hash)) = checkpoint {
                        if chunk.iter().any(|e| e.offset == offset) {
                            out.push((
                                conn,
                                ServerMsg::Checkpoint {
                                    stream: stream.clone(),
                                    offset,
                                    hash,
                                    schema: version,
                                },
                            ));
                        }
                    }
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
            // The browser client never watches views.
            #[cfg(feature = "views")]
            ClientMsg::Watch { .. } | ClientMsg::Unwatch { .. } => {
                panic!("a replica sent a view watch: {msg:?}")
            }
            ClientMsg::Withdraw {
                stream,
                seq,
                code,
                message,
            } => {
                let client = c.client.expect("Hello comes first");
                self.decide_one(conn, client, &stream, seq, Err((code, message)), &mut out);
            }
            ClientMsg::Push { stream, intents } => {
                let client = c.client.expect("Hello comes first");
                for PushIntent {
                    seq,
                    payload,
                    seen,
                    schema,
                } in intents
                {
                    if !self.decide_one(
                        conn,
                        client,
                        &stream,
                        seq,
                        Ok((payload, seen, schema)),
                        &mut out,
                    ) {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Decides one pushed (`Ok`) or withdrawn (`Err`) intent; false after
    /// a `Gap` (the rest of the push is not looked at).
    fn decide_one(
        &mut self,
        conn: usize,
        client: ClientId,
        stream: &StreamName,
        seq: Seq,
        intent: Result<(Vec<u8>, Offset, u32), (ErrorCode, String)>,
        out: &mut Vec<(usize, ServerMsg)>,
    ) -> bool {
        let head = self.head();
        let decided = self.decided.entry(client).or_default();
        let reject = |code, message| ServerMsg::Reject {
            stream: stream.clone(),
            seq,
            code,
            message,
        };
        match decide(decided.len() as u64, seq) {
            Decision::Duplicate => {
                let msg = match &decided[seq.get() as usize - 1] {
                    Outcome::Appended(offset) => ServerMsg::Ack {
                        stream: stream.clone(),
                        seq,
                        offset: *offset,
                        duplicate: true,
                    },
                    Outcome::Rejected(code, m) => reject(*code, m.clone()),
                };
                out.push((conn, msg));
                true
            }
            Decision::Gap { expected } => {
                out.push((
                    conn,
                    ServerMsg::Gap {
                        stream: stream.clone(),
                        expected_seq: expected,
                    },
                ));
                false
            }
            Decision::Append => {
                let (payload, seen, schema) = match intent {
                    Err((code, m)) => {
                        decided.push(Outcome::Rejected(code, m.clone()));
                        out.push((conn, reject(code, m)));
                        return true;
                    }
                    Ok((p, _, _)) if is_rejected_payload(&p) => {
                        let m = format!("seq {seq} refused");
                        decided.push(Outcome::Rejected(ErrorCode::Rejected, m.clone()));
                        out.push((conn, reject(ErrorCode::Rejected, m)));
                        return true;
                    }
                    Ok(p) => p,
                };
                let offset = head.next();
                decided.push(Outcome::Appended(offset));
                let event = Event {
                    subject: None,
                    seen,
                    offset,
                    client_id: client,
                    seq,
                    time_ms: offset.0,
                    payload,
                    schema,
                };
                self.log.push(event.clone());
                let checkpoint = self.checkpoint_in(std::slice::from_ref(&event));
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
                            if let Some(c) = &checkpoint {
                                out.push((*id, c.clone()));
                            }
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
                true
            }
        }
    }
}

/// A device's durable storage, shared by its tabs: what the browser keeps
/// in IndexedDB, with the same contract (see `sync_core::outbox::Work`).
#[derive(Clone)]
struct Storage {
    epoch: Option<Epoch>,
    /// Epoch resets so far: the outbox's numbering.
    generation: u64,
    offset: Offset,
    /// The last snapshot: its offset and state; events after it are kept.
    snapshot: (Offset, ChainState),
    /// The schema version of the reducer that made the snapshot.
    snapshot_schema: u32,
    events: BTreeMap<Offset, Event>,
    next_seq: u64,
    outbox: BTreeMap<Seq, (NewIntent, bool)>,
}

impl Storage {
    fn new() -> Storage {
        Storage {
            epoch: None,
            generation: 0,
            offset: Offset::ZERO,
            snapshot: (Offset::ZERO, ChainState::default()),
            snapshot_schema: 1,
            events: BTreeMap::new(),
            next_seq: 1,
            outbox: BTreeMap::new(),
        }
    }

    fn entries(&self) -> Vec<OutboxEntry> {
        self.outbox
            .iter()
            .map(|(seq, (intent, discarded))| OutboxEntry {
                discarded: *discarded,
                ..intent.entry(*seq)
            })
            .collect()
    }

    /// One transaction of a tab whose reducer is of schema `version`.
    /// Every payload given a seq is recorded in `allocated`.
    fn execute(
        &mut self,
        work: Work<ChainState>,
        allocated: &mut HashSet<Vec<u8>>,
        version: u32,
    ) -> Done {
        let stale = |s: &Storage, under: &u64| {
            (s.generation != *under).then(|| Done::Stale {
                stored: s.epoch.clone(),
            })
        };
        match work {
            Work::Alloc {
                intents,
                floor,
                under,
            } => {
                if let Some(d) = stale(self, &under) {
                    return d;
                }
                let others = self
                    .entries()
                    .into_iter()
                    .filter(|e| e.seq >= floor)
                    .collect();
                let first = self.next_seq.max(floor.get());
                for (i, p) in intents.into_iter().enumerate() {
                    let seq = Seq::new(first + i as u64).expect("seq >= 1");
                    assert!(
                        allocated.insert(p.payload.clone()),
                        "a payload allocated twice"
                    );
                    self.outbox.insert(seq, (p, false));
                    self.next_seq = seq.get() + 1;
                }
                Done::Alloc {
                    first: Seq::new(first).expect("seq >= 1"),
                    others,
                }
            }
            Work::Write { write, under } => {
                if write.is_stale(under, self.generation, self.epoch.as_ref()) {
                    return Done::Stale {
                        stored: self.epoch.clone(),
                    };
                }
                for e in write.events {
                    if e.offset > self.snapshot.0 {
                        self.events.insert(e.offset, e);
                    }
                }
                for seq in write.drop_seqs {
                    self.outbox.remove(&seq);
                }
                self.offset = self.offset.max(write.offset);
                if let Some((offset, state)) = write.snapshot {
                    if offset > self.snapshot.0 {
                        self.snapshot = (offset, state);
                        self.snapshot_schema = version;
                        self.events = self.events.split_off(&offset.next());
                    }
                }
                if let Some(e) = write.epoch {
                    self.epoch = Some(e);
                }
                Done::Written
            }
            Work::Reset { epoch, from } => {
                if self.epoch.as_ref() != Some(&epoch) {
                    if from.is_none() || self.epoch != from {
                        return Done::Stale {
                            stored: self.epoch.clone(),
                        };
                    }
                    let entries = renumber(self.entries());
                    *self = Storage {
                        epoch: Some(epoch),
                        generation: self.generation + 1,
                        next_seq: entries.last().map_or(1, |e| e.seq.get() + 1),
                        outbox: entries
                            .iter()
                            .map(|e| {
                                let intent = NewIntent {
                                    payload: e.payload.clone(),
                                    seen: e.seen,
                                    time_ms: e.time_ms,
                                    schema: e.schema,
                                    expires_ms: e.expires_ms,
                                };
                                (e.seq, (intent, e.discarded))
                            })
                            .collect(),
                        ..Storage::new()
                    };
                }
                Done::Reset {
                    entries: self.entries(),
                    generation: self.generation,
                }
            }
            Work::Reload { under } => stale(self, &under).unwrap_or(Done::Reload(self.entries())),
            Work::Discard { seqs, under } => {
                if let Some(d) = stale(self, &under) {
                    return d;
                }
                for seq in seqs {
                    if let Some(e) = self.outbox.get_mut(&seq) {
                        e.1 = true;
                    }
                }
                Done::Written
            }
            Work::Follow { .. } => unreachable!("read by Storage::follow"),
        }
    }

    /// A follower's read ([`Work::Follow`]) by a tab whose reducer is
    /// `r`: what the leader stored after `after`, and the outbox; the
    /// `Done::Stale` answer under another numbering.
    fn follow(
        &self,
        after: Offset,
        under: u64,
        r: &ChainReducer,
    ) -> Result<Stored<ChainState>, Done> {
        if self.generation != under {
            return Err(Done::Stale {
                stored: self.epoch.clone(),
            });
        }
        let (snap_offset, state) = self.snapshot;
        let snapshot = if snap_offset > after {
            sync_core::replica::upgrade_state(r, state, self.snapshot_schema, "the stored snapshot")
                .expect("no tab is older than storage")
                .map(|s| (snap_offset, s))
        } else {
            None
        };
        let from = snapshot.as_ref().map_or(after, |(o, _)| *o);
        let mut events = Vec::new();
        let mut next = from.next();
        for (o, e) in self.events.range(next..) {
            if *o != next || *o > self.offset {
                break;
            }
            events.push(e.clone());
            next = next.next();
        }
        Ok(Stored {
            offset: self.offset,
            epoch: self.epoch.clone(),
            snapshot_offset: snap_offset,
            snapshot,
            events,
            outbox: self.entries(),
        })
    }

    /// The confirmed state as a restarted tab with reducer `r` reads it:
    /// the snapshot (migrated when it is of an older schema version) and
    /// the events after it, in order, as far as they are dense. `None`:
    /// the snapshot is of an older version and `r` does not migrate; the
    /// tab rebuilds its state from offset 0 (from the server), leaving
    /// storage as it is (its later snapshots replace this one).
    fn read(&self, r: &ChainReducer) -> Option<(ChainState, Offset)> {
        let (mut offset, state) = self.snapshot;
        let mut state = sync_core::replica::upgrade_state(
            r,
            state,
            self.snapshot_schema,
            "the stored snapshot",
        )
        .expect("no tab is older than storage")?;
        for (o, e) in &self.events {
            if *o != offset.next() || *o > self.offset {
                break;
            }
            let a = r.decode_at(&e.payload, e.schema).expect("upcasts");
            state = r
                .reduce_meta(&state, &a, &Meta::of_event(e))
                .expect("total reducer");
            offset = *o;
        }
        Some((state, offset))
    }
}

struct Tab {
    device: usize,
    /// The schema version of its reducer (its app's version).
    version: u32,
    client: SyncClient<ChainReducer>,
    queue: Outbox<ChainState>,
    conn: Option<usize>,
    /// Pushes sent on any connection, with the epoch they were numbered
    /// in, for replays (a client resends a push only in its epoch: after
    /// a reset its seqs mean other intents).
    sent_pushes: Vec<(Option<Epoch>, ClientMsg)>,
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
    snapshot_every: u64,
    /// Every payload ever given a seq.
    allocated: HashSet<Vec<u8>>,
    /// Payloads the app discarded.
    discarded: HashSet<Vec<u8>>,
    /// Payloads in the logs of earlier epochs.
    earlier_logs: HashSet<Vec<u8>>,
    epochs: u64,
    payload_counter: u64,
    /// Checkpoints a tab compared its fold with (all agreed).
    agreed: u64,
    /// Devices whose tabs are write-only (`SyncClient::write_only`).
    write_only: Vec<bool>,
    /// The newest app version (a tab opened or reloaded runs it).
    latest: u32,
    /// Version 2 migrates stored version-1 states (else it rebuilds them).
    migrates: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Dispatch {
        tab: usize,
        reject: bool,
    },
    Discard {
        tab: usize,
        pick: usize,
    },
    Deliver {
        pick: usize,
    },
    Store {
        tab: usize,
    },
    Disconnect {
        tab: usize,
    },
    Connect {
        tab: usize,
    },
    Replay {
        tab: usize,
        pick: usize,
    },
    CrashTab {
        tab: usize,
    },
    RestartServer,
    NewEpoch,
    /// The app's version 2 is out: this tab is reloaded with it (and any
    /// tab reloaded from now on), and so is the server's reducer.
    Upgrade {
        tab: usize,
    },
    /// Storage carries out the tab's next unit of work, and the tab dies
    /// before it hears the answer or tells the other tabs (a crash
    /// between a seq allocation and its notice); it comes back at once.
    CrashMidWrite {
        tab: usize,
    },
    /// This tab takes the connection of its device's tabs: the leader
    /// closed (its connection goes with it), or — `steal` — froze, so it
    /// keeps its connection, and whatever it had queued, until it wakes
    /// (a `Disconnect`, or the end of the run) and finds itself fenced.
    Lead {
        tab: usize,
        steal: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..16usize, prop::bool::weighted(0.1)).prop_map(|(tab, reject)| Op::Dispatch { tab, reject }),
        1 => (0..16usize, 0..8usize).prop_map(|(tab, pick)| Op::Discard { tab, pick }),
        10 => (0..64usize).prop_map(|pick| Op::Deliver { pick }),
        6 => (0..16usize).prop_map(|tab| Op::Store { tab }),
        1 => (0..16usize).prop_map(|tab| Op::Disconnect { tab }),
        2 => (0..16usize).prop_map(|tab| Op::Connect { tab }),
        1 => (0..16usize, 0..64usize).prop_map(|(tab, pick)| Op::Replay { tab, pick }),
        1 => (0..16usize).prop_map(|tab| Op::CrashTab { tab }),
        1 => Just(Op::RestartServer),
    ]
}

/// [`op_strategy`] with an app upgrade now and then.
fn op_strategy_with_upgrades() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => op_strategy(),
        1 => (0..16usize).prop_map(|tab| Op::Upgrade { tab }),
    ]
}

/// [`op_strategy`] with leader changes.
fn op_strategy_with_leaders() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => op_strategy(),
        1 => (0..16usize, any::<bool>()).prop_map(|(tab, steal)| Op::Lead { tab, steal }),
        1 => (0..16usize).prop_map(|tab| Op::CrashMidWrite { tab }),
    ]
}

/// [`op_strategy`] with servers that come back with an empty log.
fn op_strategy_with_epochs() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => op_strategy(),
        1 => Just(Op::NewEpoch),
    ]
}

impl World {
    fn new(tabs_per_device: &[usize], snapshot_every: u64) -> World {
        let stream = StreamName::new("sim/stream").expect("valid");
        let mut w = World {
            server: Server {
                stream,
                version: 1,
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
            snapshot_every,
            allocated: HashSet::new(),
            discarded: HashSet::new(),
            earlier_logs: HashSet::new(),
            epochs: 1,
            payload_counter: 0,
            agreed: 0,
            write_only: vec![false; tabs_per_device.len()],
            latest: 1,
            migrates: false,
        };
        for (device, &n) in tabs_per_device.iter().enumerate() {
            w.storages.push(Storage::new());
            w.client_ids.push(ClientId([device as u8 + 1; 16]));
            for _ in 0..n {
                let (client, queue) = w.open_tab(device, 1);
                w.tabs.push(Tab {
                    device,
                    version: 1,
                    client,
                    queue,
                    conn: None,
                    sent_pushes: vec![],
                });
            }
        }
        w
    }

    /// A tab of app version `version` starts from storage alone: snapshot
    /// and events, offset, outbox.
    fn open_tab(
        &self,
        device: usize,
        version: u32,
    ) -> (SyncClient<ChainReducer>, Outbox<ChainState>) {
        let s = &self.storages[device];
        let reducer = ChainReducer::of(version, self.migrates);
        let (state, offset) = s
            .read(&reducer)
            .unwrap_or((ChainState::default(), Offset::ZERO));
        let replica = Replica::restore(
            self.server.stream.clone(),
            self.client_ids[device],
            reducer,
            state,
            offset,
            Seq::new(s.next_seq).expect("seq >= 1"),
        );
        let mut client = SyncClient::new(replica, s.epoch.clone(), ChainState::default());
        if self.write_only[device] {
            client.write_only();
        }
        for e in s.entries() {
            client.adopt_as(e, true);
        }
        (
            client,
            Outbox::new(s.snapshot.0, self.snapshot_every, s.generation),
        )
    }

    /// Makes `device`'s tabs write-only: they push and never subscribe.
    fn make_write_only(&mut self, device: usize) {
        self.write_only[device] = true;
        for t in self.tabs.iter_mut().filter(|t| t.device == device) {
            t.client.write_only();
        }
    }

    /// Effects of the client: storage ones are queued, the rest carried out.
    fn run_effects(&mut self, tab: usize, effects: Vec<Effect>) {
        let mut out = Vec::new();
        {
            let t = &mut self.tabs[tab];
            for e in effects {
                out.extend(t.queue.effect(e, &t.client));
            }
        }
        self.carry_out(tab, out);
    }

    fn carry_out(&mut self, tab: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(msg) => {
                    if std::env::var_os("SIM_TRACE").is_some() {
                        eprintln!("tab {tab} sends on {:?}: {msg:?}", self.tabs[tab].conn);
                    }
                    if matches!(msg, ClientMsg::Push { .. }) {
                        let epoch = self.tabs[tab].client.epoch().cloned();
                        self.tabs[tab].sent_pushes.push((epoch, msg.clone()));
                    }
                    if let Some(conn) = self.tabs[tab].conn {
                        if let Some(net) = self.nets.get_mut(&conn) {
                            net.to_server.push_back(msg);
                        }
                    }
                }
                Effect::ServerError { code, message } => {
                    panic!("server error {code}: {message}")
                }
                Effect::Diverged { offset, .. } => {
                    // Every replica folds with the server's reducer: a
                    // difference is a bug in the rules (events applied
                    // twice, in another order, or with other meta).
                    panic!("tab {tab}: its fold at offset {offset} differs from the server's")
                }
                Effect::Agreed { .. } => self.agreed += 1,
                Effect::Rejected {
                    seq, code, message, ..
                } if !self.tabs[tab].queue.is_follower() => {
                    // The leader's notice to its followers (a hint: their
                    // reads of storage drop the intent either way). Every
                    // other one is lost, as to a tab that was reloading.
                    let device = self.tabs[tab].device;
                    for other in 0..self.tabs.len() {
                        if seq.get() % 2 == 0
                            && other != tab
                            && self.tabs[other].device == device
                            && self.tabs[other].queue.is_follower()
                        {
                            let fx = self.tabs[other].client.rejected_elsewhere(
                                seq,
                                code,
                                message.clone(),
                            );
                            self.run_effects(other, fx);
                        }
                    }
                }
                Effect::Outdated { .. } => {
                    // A tab of version 1 met version 2's data: it stops,
                    // keeps its outbox, and connects no more until the
                    // app is reloaded.
                    assert_eq!(self.tabs[tab].version, 1, "tab {tab} outdated at version 2");
                    assert!(self.tabs[tab].client.outdated());
                    if let Some(conn) = self.tabs[tab].conn.take() {
                        self.nets.remove(&conn);
                        self.server.conns.remove(&conn);
                    }
                }
                _ => {}
            }
        }
    }

    /// Reloads `tab` with the app of schema `version`: memory and queued
    /// storage work are gone, storage stays.
    fn reopen(&mut self, tab: usize, version: u32) {
        self.disconnect(tab);
        let device = self.tabs[tab].device;
        let (client, mut queue) = self.open_tab(device, version);
        let t = &mut self.tabs[tab];
        // Its place (connection or not) is what it had: a closed leader's
        // lock is free, and nobody else asked for it yet.
        queue.set_follower(t.queue.is_follower());
        t.client = client;
        t.queue = queue;
        t.version = version;
        t.sent_pushes.clear();
        // A tab that opens tells the others (see the `outbox` module).
        for (i, other) in self.tabs.iter_mut().enumerate() {
            if i != tab && other.device == device {
                other.queue.written_elsewhere();
            }
        }
    }

    /// Storage carries out the next unit of the tab's queue; false when
    /// there was none.
    fn store(&mut self, tab: usize) -> bool {
        let t = &mut self.tabs[tab];
        let Some((n, work)) = t.queue.next(&t.client) else {
            return false;
        };
        let finished = if let Work::Follow { after, under } = work {
            let read = self.storages[t.device].follow(after, under, t.client.replica().reducer());
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!("tab {tab} follows after {after:?} -> {read:?}");
            }
            match read {
                Ok(stored) => t.queue.followed(n, stored, &mut t.client),
                Err(done) => t.queue.finish(n, work, done, &mut t.client),
            }
        } else {
            let done =
                self.storages[t.device].execute(work.clone(), &mut self.allocated, t.version);
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!(
                    "tab {tab} gen {} {work:?} -> {done:?}",
                    t.queue.generation()
                );
            }
            t.queue.finish(n, work, done, &mut t.client)
        };
        if let Some(seq) = finished.missing {
            panic!("tab {tab}: the server expects seq {seq}, which no outbox holds");
        }
        self.carry_out(tab, finished.effects);
        if finished.reconnect {
            self.disconnect(tab);
            self.connect(tab);
        }
        if finished.tell_tabs {
            // The notice every other tab on this storage hears (a
            // BroadcastChannel in the browser): each queues a read of the
            // outbox, carried out whenever the schedule gets to it.
            let device = self.tabs[tab].device;
            for (i, other) in self.tabs.iter_mut().enumerate() {
                if i != tab && other.device == device {
                    other.queue.written_elsewhere();
                }
            }
        }
        if finished.tell_followers {
            let device = self.tabs[tab].device;
            for (i, other) in self.tabs.iter_mut().enumerate() {
                if i != tab && other.device == device {
                    other.queue.stored_elsewhere();
                }
            }
        }
        true
    }

    fn dispatch(&mut self, tab: usize, reject: bool) {
        let device = self.tabs[tab].device;
        self.payload_counter += 1;
        let version = self.tabs[tab].version;
        let payload = format!(
            "{}{}d{}t{}n{}",
            if version == 2 { "2|" } else { "" },
            if reject { "R" } else { "" },
            device,
            tab,
            self.payload_counter
        )
        .into_bytes();
        // Optimistic apply first; the durable seq allocation and outbox
        // write (one storage transaction) happen when storage gets to it.
        let t = &mut self.tabs[tab];
        let seen = t.client.replica().offset();
        let local = t
            .client
            .replica_mut()
            .dispatch_unassigned(payload.clone(), 0)
            .expect("total reducer");
        t.queue.dispatched(
            local,
            NewIntent {
                payload,
                seen,
                time_ms: 0,
                schema: version,
                expires_ms: 0,
            },
        );
    }

    fn discard(&mut self, tab: usize, pick: usize) {
        let t = &mut self.tabs[tab];
        let seqs: Vec<(Seq, Vec<u8>)> = t
            .client
            .replica()
            .own_pending()
            .filter_map(|p| p.seq.map(|s| (s, p.payload.clone())))
            .collect();
        if seqs.is_empty() {
            return;
        }
        let (seq, payload) = seqs[pick % seqs.len()].clone();
        let effects = t.client.discard(seq).expect("pending");
        self.discarded.insert(payload);
        self.run_effects(tab, effects);
    }

    fn connect(&mut self, tab: usize) {
        if self.tabs[tab].conn.is_some()
            || self.tabs[tab].client.outdated()
            || self.tabs[tab].queue.is_follower()
        {
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
        let t = &mut self.tabs[tab];
        let hello = t.client.connected(None);
        self.nets.insert(
            conn,
            Net {
                to_server: VecDeque::from([hello]),
                to_client: VecDeque::new(),
                tab,
            },
        );
        t.conn = Some(conn);
        // Other tabs may have written to the outbox.
        t.queue.connected(&t.client);
    }

    fn disconnect(&mut self, tab: usize) {
        if let Some(conn) = self.tabs[tab].conn.take() {
            self.nets.remove(&conn);
            self.server.conns.remove(&conn);
            self.tabs[tab].client.disconnected();
            self.tabs[tab].queue.disconnected();
        }
    }

    /// [`World::deliver`] on connection `conn` only: its next message to
    /// the server, else its next one to the client.
    fn deliver_on(&mut self, conn: usize) -> bool {
        let Some(net) = self.nets.get(&conn) else {
            return false;
        };
        let to_server = !net.to_server.is_empty();
        if !to_server && net.to_client.is_empty() {
            return false;
        }
        let at = self
            .slots()
            .iter()
            .position(|s| *s == (conn, to_server))
            .expect("listed");
        self.deliver(at)
    }

    /// What can be delivered: (connection, towards the server), two
    /// directions per connection, each with a message waiting.
    fn slots(&self) -> Vec<(usize, bool)> {
        self.nets
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
            .collect()
    }

    fn deliver(&mut self, pick: usize) -> bool {
        let slots = self.slots();
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
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!("conn {conn} -> {msg:?}");
            }
            for (target, reply) in self.server.handle(conn, msg) {
                if let Some(net) = self.nets.get_mut(&target) {
                    net.to_client.push_back(reply);
                }
            }
        } else {
            let net = self.nets.get_mut(&conn).expect("exists");
            let msg = net.to_client.pop_front().expect("non-empty");
            let tab = net.tab;
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!("tab {tab} <- {msg:?}");
            }
            let effects = self.tabs[tab]
                .client
                .handle(msg)
                .unwrap_or_else(|e| panic!("client refused a server message: {e}"));
            self.run_effects(tab, effects);
        }
        true
    }

    fn apply(&mut self, op: Op) {
        self.apply_op(op);
        for (i, t) in self.tabs.iter().enumerate() {
            assert!(
                t.client.replica().counts_hold(),
                "tab {i}: the kept pending counts differ from the pending intents"
            );
            // An old app never folds what a newer one made.
            if t.version == 1 && t.client.epoch() == Some(&self.server.epoch) {
                let offset = t.client.replica().offset().0 as usize;
                if let Some(newer) = self.server.log[..offset.min(self.server.log.len())]
                    .iter()
                    .find(|e| e.schema > 1)
                {
                    panic!(
                        "tab {i} of version 1 applied the version-2 event at {}",
                        newer.offset
                    );
                }
            }
        }
    }

    fn apply_op(&mut self, op: Op) {
        let n = self.tabs.len();
        match op {
            Op::Dispatch { tab, reject } => self.dispatch(tab % n, reject),
            Op::Discard { tab, pick } => self.discard(tab % n, pick),
            Op::Deliver { pick } => {
                self.deliver(pick);
            }
            Op::Store { tab } => {
                self.store(tab % n);
            }
            Op::Disconnect { tab } => self.disconnect(tab % n),
            Op::Connect { tab } => self.connect(tab % n),
            Op::Replay { tab, pick } => {
                let tab = tab % n;
                let t = &self.tabs[tab];
                let epoch = t.client.epoch();
                let same: Vec<&ClientMsg> = t
                    .sent_pushes
                    .iter()
                    .filter(|(e, _)| e.as_ref() == epoch)
                    .map(|(_, m)| m)
                    .collect();
                // (and only on a connection past its Welcome, as a client
                // pushes nothing before it)
                let ready = t.client.phase() == Phase::Ready;
                if let (Some(conn), false, true) = (t.conn, same.is_empty(), ready) {
                    let msg = same[pick % same.len()].clone();
                    if let Some(net) = self.nets.get_mut(&conn) {
                        // A replayed push can only follow the Hello.
                        if net.to_server.is_empty() {
                            net.to_server.push_back(msg);
                        }
                    }
                }
            }
            Op::CrashTab { tab } => {
                // Memory is gone, queued storage work with it; storage
                // stays. It comes back with the newest app.
                self.reopen(tab % n, self.latest);
            }
            Op::Upgrade { tab } => {
                self.latest = 2;
                self.server.version = 2;
                self.reopen(tab % n, 2);
            }
            Op::Lead { tab, steal } => self.lead(tab % n, steal),
            Op::CrashMidWrite { tab } => {
                let tab = tab % n;
                let t = &mut self.tabs[tab];
                if let Some((_, work)) = t.queue.next(&t.client) {
                    if !matches!(work, Work::Follow { .. }) {
                        self.storages[t.device].execute(work, &mut self.allocated, t.version);
                    }
                }
                self.reopen(tab, self.latest);
            }
            Op::RestartServer => {
                for tab in 0..n {
                    self.disconnect(tab);
                }
            }
            Op::NewEpoch => {
                for tab in 0..n {
                    self.disconnect(tab);
                }
                self.epochs += 1;
                for e in self.server.log.drain(..) {
                    self.earlier_logs.insert(e.payload);
                }
                self.server.decided.clear();
                self.server.epoch = Epoch(format!("e{}", self.epochs));
            }
        }
    }

    /// `tab` takes its device's connection (see [`Op::Lead`]).
    fn lead(&mut self, tab: usize, steal: bool) {
        if !self.tabs[tab].queue.is_follower() {
            return;
        }
        let device = self.tabs[tab].device;
        for other in 0..self.tabs.len() {
            if other != tab
                && self.tabs[other].device == device
                && !self.tabs[other].queue.is_follower()
            {
                if !steal {
                    self.disconnect(other);
                }
                self.tabs[other].queue.set_follower(true);
            }
        }
        self.tabs[tab].queue.set_follower(false);
        self.connect(tab);
    }

    /// Every tab of each device but its first follows (one leader each).
    fn elect(&mut self) {
        for tab in 1..self.tabs.len() {
            if self.tabs[tab].device == self.tabs[tab - 1].device {
                self.tabs[tab].queue.set_follower(true);
            }
        }
    }

    fn quiesce(&mut self) {
        // A frozen leader wakes up fenced: its connection goes.
        for tab in 0..self.tabs.len() {
            if self.tabs[tab].queue.is_follower() {
                self.disconnect(tab);
            }
        }
        // Every tab still on the old app is reloaded with the new one.
        for tab in 0..self.tabs.len() {
            if self.tabs[tab].version < self.latest {
                self.reopen(tab, self.latest);
            }
        }
        for tab in 0..self.tabs.len() {
            self.connect(tab);
        }
        let mut steps = 0;
        loop {
            let mut progress = false;
            for tab in 0..self.tabs.len() {
                while self.store(tab) {
                    progress = true;
                    steps += 1;
                    assert!(steps < 200_000, "no quiescence after {steps} steps");
                }
            }
            if self.deliver(steps) {
                progress = true;
                steps += 1;
            }
            if !progress {
                break;
            }
            assert!(steps < 200_000, "no quiescence after {steps} steps");
        }
    }

    fn check(&self) {
        let log = &self.server.log;
        if std::env::var_os("SIM_STATS").is_some() {
            eprintln!(
                "log={} allocated={} tabs={} conns={} epochs={}",
                log.len(),
                self.allocated.len(),
                self.tabs.len(),
                self.next_conn,
                self.epochs
            );
        }
        let expected = fold(log, self.latest);
        let head = Offset(log.len() as u64);
        for (i, t) in self.tabs.iter().enumerate() {
            let r = t.client.replica();
            assert_eq!(t.client.epoch(), Some(&self.server.epoch), "tab {i} epoch");
            if self.write_only[t.device] {
                // It follows nothing: its intents are all acknowledged,
                // and its state is what it started from.
                assert!(
                    r.pending().is_empty(),
                    "write-only tab {i} still has pending"
                );
                assert_eq!(r.offset(), Offset(0), "write-only tab {i} offset");
                assert_eq!(
                    *r.state(),
                    ChainState::default(),
                    "write-only tab {i} state"
                );
                continue;
            }
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
            assert_eq!(
                s.epoch.as_ref(),
                Some(&self.server.epoch),
                "device {d} epoch"
            );
            if self.write_only[d] {
                continue;
            }
            assert_eq!(s.offset, head, "device {d} stored offset");
            match s.read(&ChainReducer::of(self.latest, self.migrates)) {
                Some(read) => assert_eq!(read, (expected, head), "device {d} stored state"),
                // An old app's snapshot the new one does not migrate: a
                // tab opening rebuilds from the server.
                None => assert!(
                    s.snapshot_schema < self.latest,
                    "device {d}: nothing to read"
                ),
            }
        }
        // Dense offsets; no (client, seq) or intent twice; only intents
        // that were given a seq.
        let mut seen = HashSet::new();
        let mut payloads = HashSet::new();
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.offset, Offset(i as u64 + 1));
            assert!(
                seen.insert((e.client_id, e.seq)),
                "{:?} twice",
                (e.client_id, e.seq)
            );
            assert!(
                payloads.insert(e.payload.clone()),
                "intent {} twice in the log",
                String::from_utf8_lossy(&e.payload)
            );
            assert!(
                self.allocated.contains(&e.payload),
                "log holds an intent nobody dispatched"
            );
        }
        // Every intent not rejected appears exactly once; rejected ones
        // never; discarded ones and ones an earlier log held at most once.
        for p in &self.allocated {
            let in_log = payloads.contains(p);
            let maybe = self.discarded.contains(p) || self.earlier_logs.contains(p);
            let must = !is_rejected_payload(p) && !maybe;
            assert!(
                in_log == must || (maybe && !is_rejected_payload(p)),
                "intent {} (expected: {}) is in the log {} times",
                String::from_utf8_lossy(p),
                if must { "once" } else { "never" },
                usize::from(in_log),
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(1000), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Devices with one tab each.
    #[test]
    fn devices_converge_exactly_once(
        devices in 2usize..=5,
        every in 1u64..=4,
        ops in prop::collection::vec(op_strategy(), 1..300),
    ) {
        let mut w = World::new(&vec![1; devices], every);
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }

    /// Devices with one to three tabs that share storage and the client id.
    #[test]
    fn tabs_sharing_storage_converge_exactly_once(
        tabs in prop::collection::vec(1usize..=3, 2..=5),
        every in 1u64..=4,
        ops in prop::collection::vec(op_strategy(), 1..300),
    ) {
        let mut w = World::new(&tabs, every);
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }

    /// Write-only devices (one to two tabs each) beside devices that
    /// follow the stream: every intent of either kind is in the log once,
    /// every outbox drains, the followers converge.
    #[test]
    fn write_only_devices_push_every_intent_once(
        writers in prop::collection::vec(1usize..=2, 1..=2),
        readers in prop::collection::vec(1usize..=2, 1..=3),
        every in 1u64..=4,
        ops in prop::collection::vec(op_strategy_with_epochs(), 1..300),
    ) {
        let tabs: Vec<usize> = writers.iter().chain(&readers).copied().collect();
        let mut w = World::new(&tabs, every);
        for d in 0..writers.len() {
            w.make_write_only(d);
        }
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }

    /// Write-only devices whose tabs follow one leader, beside devices
    /// that follow the stream: a write-only follower's intents leave it
    /// when the leader's acknowledgement takes them out of storage.
    #[test]
    fn write_only_tabs_following_one_leader_push_every_intent_once(
        writers in prop::collection::vec(2usize..=3, 1..=2),
        readers in prop::collection::vec(1usize..=2, 1..=2),
        every in 1u64..=4,
        ops in prop::collection::vec(op_strategy_with_leaders(), 1..300),
    ) {
        let tabs: Vec<usize> = writers.iter().chain(&readers).copied().collect();
        let mut w = World::new(&tabs, every);
        for d in 0..writers.len() {
            w.make_write_only(d);
        }
        w.elect();
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }

    /// The app is upgraded while devices hold offline work: tabs reloaded
    /// with version 2 (whose reducer upcasts version-1 actions, and
    /// migrates stored version-1 states or rebuilds them) run beside tabs
    /// still on version 1, which stop at the first version-2 event,
    /// keeping their outbox, until they are reloaded too. Every intent of
    /// either version is in the log once, and every replica's state is
    /// version 2's fold of it.
    #[test]
    fn upgrades_keep_every_offline_intent_once(
        tabs in prop::collection::vec(1usize..=3, 1..=4),
        every in 1u64..=4,
        migrates: bool,
        ops in prop::collection::vec(op_strategy_with_upgrades(), 1..300),
    ) {
        let mut w = World::new(&tabs, every);
        w.migrates = migrates;
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }

    /// Tabs sharing storage, one of which holds the connection (the
    /// leader) while the others follow what it stores; the leader closes
    /// or freezes and another takes over (mid-push, mid-write), a
    /// follower dispatches and discards while the leader is frozen, tabs
    /// crash between their seq allocation and their notice, the server
    /// restarts or comes back with an empty log (an epoch change a
    /// follower sees in storage first).
    #[test]
    fn tabs_following_one_leader_converge_exactly_once(
        tabs in prop::collection::vec(1usize..=3, 1..=4),
        every in 1u64..=4,
        ops in prop::collection::vec(prop_oneof![20 => op_strategy_with_leaders(), 1 => Just(Op::NewEpoch)], 1..300),
    ) {
        let mut w = World::new(&tabs, every);
        w.elect();
        for op in ops {
            w.apply(op);
        }
        w.quiesce();
        w.check();
    }

    /// Tabs sharing storage while the server comes back with empty logs.
    #[test]
    fn epoch_resets_with_several_tabs_keep_every_intent_once(
        tabs in prop::collection::vec(1usize..=3, 1..=4),
        every in 1u64..=4,
        ops in prop::collection::vec(op_strategy_with_epochs(), 1..300),
    ) {
        let mut w = World::new(&tabs, every);
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
    let mut w = World::new(&[1, 2], 2);
    w.dispatch(0, false);
    w.dispatch(1, false);
    w.dispatch(2, true);
    w.dispatch(2, false);
    for tab in 0..3 {
        w.store(tab);
    }
    w.connect(1);
    for i in 0..5 {
        w.deliver(i);
    }
    w.apply(Op::RestartServer);
    w.dispatch(0, false);
    w.quiesce();
    w.check();
    assert_eq!(w.server.log.len(), 4);
    // The tabs subscribed compared their folds at the checkpoint at 4.
    assert!(w.agreed > 0, "no checkpoint was compared");
}

/// Two tabs of one device each hold a stored intent when the server comes
/// back with an empty log; the second tab to reconnect still numbers its
/// intent as the first one's reset left it.
#[test]
fn epoch_reset_keeps_the_other_tabs_stored_intent() {
    let mut w = World::new(&[2], 1);
    w.quiesce();
    w.apply(Op::NewEpoch);
    w.dispatch(0, false);
    w.dispatch(1, false);
    w.store(0);
    w.store(1);
    // Tab 0 alone reconnects and resets storage for the new epoch.
    w.connect(0);
    for _ in 0..20 {
        w.deliver(0);
        w.store(0);
    }
    w.quiesce();
    w.check();
    assert_eq!(w.server.log.len(), 2);
}

/// An intent discarded while the server took it anyway is in everyone's
/// state, once.
#[test]
fn a_discarded_intent_the_server_took_anyway_is_in_the_state() {
    let mut w = World::new(&[1, 1], 1);
    w.quiesce();
    w.dispatch(0, false);
    w.store(0);
    // The push is on its way; the app discards it before the answer.
    w.deliver(0);
    w.discard(0, 0);
    w.quiesce();
    w.check();
    assert_eq!(w.server.log.len(), 1);
}

/// Runs `ops` on tabs sharing storage and checks the end state.
fn run_case(tabs: &[usize], every: u64, ops: Vec<Op>) {
    let mut w = World::new(tabs, every);
    for op in ops {
        w.apply(op);
    }
    w.quiesce();
    w.check();
}

/// Found by the property test: a tab's reset to an epoch the server has
/// left already (queued by a dropped connection) must not renumber storage
/// back from 1 after another tab has pushed seqs of the newer epoch.
#[test]
fn a_stale_reset_does_not_renumber_over_a_newer_epoch() {
    use Op::*;
    run_case(
        &[1, 3, 1],
        1,
        vec![
            Connect { tab: 13 },
            Dispatch {
                tab: 1,
                reject: false,
            },
            Deliver { pick: 0 },
            Store { tab: 1 },
            Deliver { pick: 0 },
            Store { tab: 8 },
            NewEpoch,
            Store { tab: 8 },
            Dispatch {
                tab: 3,
                reject: false,
            },
            Connect { tab: 8 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
            CrashTab { tab: 11 },
            NewEpoch,
            Connect { tab: 6 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
            Store { tab: 11 },
            Store { tab: 1 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
        ],
    );
}

/// Found by the property test: a connection of a new epoch that comes
/// after the one that asked for the reset was dropped asks again.
#[test]
fn a_new_connection_asks_for_the_reset_again() {
    use Op::*;
    run_case(
        &[1, 3, 3],
        1,
        vec![
            Connect { tab: 4 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
            NewEpoch,
            Connect { tab: 4 },
            Deliver { pick: 0 },
            Deliver { pick: 0 },
            RestartServer,
        ],
    );
}

/// A leader that froze with its connection open while another tab took
/// over: when it runs again, before it learns it was fenced, its
/// subscription still brings events — and storage holds them already,
/// stored by the new leader. It must take them from one place only (a
/// tab with a connection follows nothing from storage), or it would
/// apply them twice (`OFFSET_REPEAT`).
#[test]
fn a_frozen_leader_takes_its_events_from_its_connection_only() {
    use Op::*;
    let mut w = World::new(&[2], 1);
    w.elect();
    let drain = |w: &mut World| {
        for pick in 0..400 {
            for tab in 0..2 {
                while w.store(tab) {}
            }
            if !w.deliver(pick) {
                break;
            }
        }
    };
    w.apply(Connect { tab: 0 });
    drain(&mut w);
    assert_eq!(w.tabs[0].client.phase(), Phase::Ready);
    // Tab 1 steals the lead; tab 0 keeps its (frozen) connection.
    w.apply(Lead {
        tab: 1,
        steal: true,
    });
    w.apply(Dispatch {
        tab: 1,
        reject: false,
    });
    w.apply(Dispatch {
        tab: 1,
        reject: false,
    });
    // Only tab 1's side moves: its pushes are decided and its events
    // stored, while tab 0's connection holds them undelivered.
    for _ in 0..400 {
        while w.store(1) {}
        let Some(conn) = w.tabs[1].conn else { break };
        if !w.deliver_on(conn) {
            break;
        }
    }
    assert_eq!(
        w.storages[0].offset,
        Offset(2),
        "the new leader stored both"
    );
    // Tab 0 runs again: its queued reads of storage, then what its
    // connection brought meanwhile.
    while w.store(0) {}
    let conn = w.tabs[0].conn.expect("still connected");
    while w.deliver_on(conn) {
        while w.store(0) {}
    }
    assert_eq!(w.tabs[0].client.replica().offset(), Offset(2));
    w.quiesce();
    w.check();
}

/// Found by the property test: a follower tab dies between its seq
/// allocation and its notice while the leader stays connected. The
/// leader reads the outbox only on a notice or a new connection, so the
/// intent would wait for the next dispatch of any tab: a tab that opens
/// tells the others (the `outbox` module's rules).
#[test]
fn a_follower_that_dies_between_its_write_and_its_notice_loses_nothing() {
    use Op::*;
    let mut w = World::new(&[1, 2, 1, 3], 1);
    w.elect();
    for op in [
        Connect { tab: 1 },
        Dispatch {
            tab: 2,
            reject: false,
        },
        Store { tab: 2 },
        Store { tab: 1 },
        CrashMidWrite { tab: 2 },
    ] {
        w.apply(op);
    }
    w.quiesce();
    w.check();
}
