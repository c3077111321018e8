//! A real protocol client: `sync_core::SyncClient` over a tokio-tungstenite
//! WebSocket, with in-memory storage that outlives connections (and, when
//! the run "crashes" the client, outlives the `SyncClient` too).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sync_core::{
    ClientId, ClientMsg, Effect, Epoch, Offset, OutboxEntry, ReduceError, Reducer, Replica, Seq,
    ServerMsg, StreamName, SyncClient, DEFAULT_MAX_FRAME_BYTES,
};
use tokio_tungstenite::tungstenite::Message;

use crate::rng::Rng;

/// Order-sensitive reducer: a count and a hash chain over the payloads.
#[derive(Clone, Copy, Debug)]
pub struct ChainReducer;

/// Its state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ChainState {
    /// Events folded.
    pub count: u64,
    /// Hash chain over their payloads, in order.
    pub hash: u64,
}

/// What the clients of a run fold, and what they dispatch: the reducer
/// their replicas run (the same as the server's, when one folds the
/// stream) and the payloads of their intents.
pub trait Model:
    Reducer<
        State: Clone + PartialEq + Default + std::fmt::Debug + Send + Sync + 'static,
        Action: Send + 'static,
    > + Copy
    + Send
    + Sync
    + 'static
{
    /// The payload of the intent `client` dispatches as `seq`.
    fn payload(&self, client: ClientId, seq: Seq, rng: &Rng) -> Vec<u8>;
}

impl Model for ChainReducer {
    fn payload(&self, client: ClientId, _seq: Seq, rng: &Rng) -> Vec<u8> {
        format!("{client}:{}", rng.next_u64()).into_bytes()
    }
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

/// What survives a client crash: its durable storage.
#[derive(Clone, Debug, Default)]
pub struct Storage<S> {
    /// Confirmed offset.
    pub offset: Offset,
    /// Confirmed state at `offset`.
    pub snapshot: S,
    /// Next seq to allocate.
    pub next_seq: u64,
    /// Pending intents.
    pub outbox: BTreeMap<Seq, Vec<u8>>,
    /// The log's epoch.
    pub epoch: Option<Epoch>,
}

/// What the run observes of a client.
#[derive(Clone, Debug, Default)]
pub struct ClientView<S> {
    /// Every intent given a seq.
    pub dispatched: BTreeMap<Seq, Vec<u8>>,
    /// Every acknowledgement received: seq → its acks, in order.
    pub acked: HashMap<Seq, Vec<Acked>>,
    /// Rejections received: seq, code and message.
    pub rejected: Vec<(Seq, String)>,
    /// Confirmed offset now.
    pub offset: Offset,
    /// Confirmed state now.
    pub state: S,
    /// Optimistic state now.
    pub optimistic: S,
    /// Pending intents now.
    pub pending: usize,
    /// Intents still to dispatch.
    pub to_dispatch: u64,
    /// Connections made.
    pub connects: u64,
    /// Restarts from storage.
    pub crashes: u64,
    /// Server snapshots adopted as the confirmed state (the events below
    /// the client's offset had been compacted away).
    pub snapshots: u64,
    /// Server checkpoints its fold was compared with (all agreed; a
    /// difference is a protocol error).
    pub agreed: u64,
    /// Protocol errors seen (server frames the client refused).
    pub protocol_errors: Vec<String>,
}

/// One `Ack` received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    /// Where the intent is (for a resend of an intent whose event was
    /// compacted away: the horizon, which holds it).
    pub offset: Offset,
    /// A resend's answer.
    pub duplicate: bool,
}

/// Knobs of one client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Where to connect (through the proxy).
    pub url: String,
    /// The stream.
    pub stream: StreamName,
    /// This client's id.
    pub id: ClientId,
    /// How many intents to dispatch in all.
    pub intents: u64,
    /// Mean pause between dispatches.
    pub dispatch_every: Duration,
    /// Probability per dispatch of a client crash (restart from storage).
    pub crash_chance: f64,
    /// Told each time the client has sent a `Push` (the harness aims
    /// some `kill -9`s at the commit that follows).
    pub pushed: Arc<tokio::sync::Notify>,
}

const PING_EVERY: Duration = Duration::from_millis(400);
const DEAD_AFTER: Duration = Duration::from_secs(3);

/// One client's life: connect, exchange, fail, back off, reconnect — until
/// `stop` says so.
pub struct ChaosClient<M: Model> {
    cfg: ClientConfig,
    model: M,
    storage: Storage<M::State>,
    sync: SyncClient<M>,
    view: Arc<Mutex<ClientView<M::State>>>,
    rng: Arc<Rng>,
    /// Set by a simulated crash: the current connection belongs to the
    /// crashed instance and must end.
    crashed: bool,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl<M: Model> ChaosClient<M> {
    /// A fresh client with empty storage.
    pub fn new(
        cfg: ClientConfig,
        model: M,
        rng: Arc<Rng>,
    ) -> (Self, Arc<Mutex<ClientView<M::State>>>) {
        let storage = Storage {
            next_seq: 1,
            ..Storage::default()
        };
        let view = Arc::new(Mutex::new(ClientView {
            to_dispatch: cfg.intents,
            ..ClientView::default()
        }));
        let sync = open(&cfg, model, &storage);
        (
            ChaosClient {
                cfg,
                model,
                storage,
                sync,
                view: view.clone(),
                rng,
                crashed: false,
            },
            view,
        )
    }

    fn publish(&self) {
        let r = self.sync.replica();
        let mut v = lock(&self.view);
        v.offset = r.offset();
        v.state = r.confirmed_state().clone();
        v.optimistic = r.state().clone();
        v.pending = r.pending().len();
    }

    fn dispatch_one(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        {
            let mut v = lock(&self.view);
            if v.to_dispatch == 0 {
                return out;
            }
            v.to_dispatch -= 1;
        }
        let seq = Seq::new(self.storage.next_seq).unwrap_or(Seq::FIRST);
        let payload = self.model.payload(self.cfg.id, seq, &self.rng);
        let Ok(local) = self
            .sync
            .replica_mut()
            .dispatch_unassigned(payload.clone(), 0)
        else {
            return out;
        };
        // The durable part: allocate the seq and write the outbox together.
        self.storage.next_seq += 1;
        self.storage.outbox.insert(seq, payload.clone());
        lock(&self.view).dispatched.insert(seq, payload);
        self.sync.replica_mut().assign_seq(local, seq);
        out.extend(self.sync.flush());
        if self.rng.chance(self.cfg.crash_chance) {
            // Crash: everything in memory is gone; storage stays.
            self.sync = open(&self.cfg, self.model, &self.storage);
            lock(&self.view).crashes += 1;
            self.crashed = true;
            return Vec::new();
        }
        out
    }

    /// Carries out effects; returns frames to send.
    fn run_effects(&mut self, effects: Vec<Effect>) -> Vec<ClientMsg> {
        let mut sends = Vec::new();
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::Send(m) => sends.push(m),
                Effect::PersistEvents {
                    confirmed, offset, ..
                } => {
                    self.storage.offset = offset;
                    self.storage.snapshot = self.sync.replica().confirmed_state().clone();
                    for s in confirmed {
                        self.storage.outbox.remove(&s);
                    }
                }
                Effect::DropFromOutbox(s) => {
                    self.storage.outbox.remove(&s);
                }
                Effect::AdoptedSnapshot { offset, left } => {
                    lock(&self.view).snapshots += 1;
                    self.storage.offset = offset;
                    self.storage.snapshot = self.sync.replica().confirmed_state().clone();
                    for s in left {
                        self.storage.outbox.remove(&s);
                    }
                }
                // This client never discards.
                Effect::MarkDiscarded(_) => {}
                // Its fold differed from the server's snapshot (only
                // reducers that can write their state as the server's text
                // are compared).
                Effect::Diverged { offset, .. } => lock(&self.view).protocol_errors.push(format!(
                    "the fold at offset {offset} differs from the server's"
                )),
                Effect::Agreed { .. } => lock(&self.view).agreed += 1,
                // Every client here runs the server's one schema version:
                // being outdated is a protocol error of the run.
                Effect::Outdated { message } => lock(&self.view)
                    .protocol_errors
                    .push(format!("outdated: {message}")),
                Effect::Rejected {
                    seq, code, message, ..
                } => lock(&self.view)
                    .rejected
                    .push((seq, format!("{code}: {message}"))),
                // One tab, storage in memory: each storage step is done at
                // once and answered right away.
                Effect::StoreEpoch(e) => {
                    self.storage.epoch = Some(e.clone());
                    queue.extend(self.sync.epoch_stored(e));
                }
                Effect::EpochReset { epoch, .. } => {
                    lock(&self.view)
                        .protocol_errors
                        .push(format!("epoch changed to {epoch}: the server lost its log"));
                    // What storage does on a reset (see sync_core::outbox):
                    // forget the confirmed history, renumber the outbox.
                    let entries = sync_core::outbox::renumber(
                        self.storage
                            .outbox
                            .iter()
                            .map(|(seq, payload)| OutboxEntry::new(*seq, payload.clone()))
                            .collect(),
                    );
                    self.storage = Storage {
                        offset: Offset::ZERO,
                        snapshot: M::State::default(),
                        next_seq: entries.last().map_or(1, |e| e.seq.get() + 1),
                        outbox: entries.iter().map(|e| (e.seq, e.payload.clone())).collect(),
                        epoch: Some(epoch.clone()),
                    };
                    let (effects, _) = self.sync.reset_to(epoch, entries);
                    queue.extend(effects);
                }
                Effect::ReloadOutbox { .. } => {
                    for (seq, p) in self.storage.outbox.clone() {
                        queue.extend(self.sync.adopt(OutboxEntry::new(seq, p)));
                    }
                    queue.extend(self.sync.flush());
                }
                Effect::ServerError { code, message } => {
                    // Shutting down / idle are expected under chaos; others are not.
                    if !matches!(
                        code,
                        sync_core::ErrorCode::ShuttingDown | sync_core::ErrorCode::IdleTimeout
                    ) {
                        lock(&self.view)
                            .protocol_errors
                            .push(format!("server error {code}: {message}"));
                    }
                }
                // Every replica folds the events the server accepted:
                // one this reducer refuses means the two folds differ.
                Effect::ReducerErrors(errors) => {
                    let mut v = lock(&self.view);
                    for (offset, e) in errors {
                        v.protocol_errors
                            .push(format!("event {offset} does not fold here: {e}"));
                    }
                }
                Effect::StateChanged | Effect::HeadChanged(_) => {}
            }
        }
        sends
    }

    /// Runs until `stop` is set and there is nothing left to do, or `hard_stop`.
    pub async fn run(mut self, stop: Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::Ordering;
        let mut backoff = Duration::from_millis(50);
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let connect = tokio::time::timeout(
                Duration::from_secs(2),
                tokio_tungstenite::connect_async(self.cfg.url.as_str()),
            )
            .await;
            if let Ok(Ok((ws, _))) = connect {
                lock(&self.view).connects += 1;
                backoff = Duration::from_millis(50);
                self.session(ws, &stop).await;
                self.sync.disconnected();
            }
            // Back off with jitter, dispatching meanwhile (offline work).
            let wait =
                backoff + Duration::from_millis(self.rng.range(0, backoff.as_millis() as u64 + 1));
            backoff = (backoff * 2).min(Duration::from_secs(1));
            let until = Instant::now() + wait;
            while Instant::now() < until {
                tokio::time::sleep(self.next_dispatch_pause().min(until - Instant::now())).await;
                if Instant::now() < until {
                    let effects = self.dispatch_one();
                    let _ = self.run_effects(effects);
                    self.crashed = false;
                    self.publish();
                }
            }
        }
    }

    fn next_dispatch_pause(&self) -> Duration {
        let mean = self.cfg.dispatch_every.as_millis() as u64;
        Duration::from_millis(self.rng.range(mean / 2, mean * 3 / 2 + 1))
    }

    async fn session(&mut self, mut ws: Ws, stop: &std::sync::atomic::AtomicBool) {
        use std::sync::atomic::Ordering;
        let hello = self.sync.connected(None);
        if send(&mut ws, &hello).await.is_err() {
            return;
        }
        // The outbox is in memory, read as it is: nothing else writes it.
        let checked = self.sync.outbox_checked();
        let _ = self.run_effects(checked);
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut last_rx = Instant::now();
        let mut nonce = 0u64;
        let dispatch = tokio::time::sleep(self.next_dispatch_pause());
        tokio::pin!(dispatch);
        loop {
            let sends = tokio::select! {
                frame = ws.next() => {
                    let bytes = match frame {
                        Some(Ok(Message::Binary(b))) => b,
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                            last_rx = Instant::now();
                            continue;
                        }
                        _ => return,
                    };
                    last_rx = Instant::now();
                    let msg = match ServerMsg::decode(&bytes, DEFAULT_MAX_FRAME_BYTES) {
                        Ok(m) => m,
                        Err(e) => {
                            lock(&self.view).protocol_errors.push(format!("undecodable frame: {e}"));
                            return;
                        }
                    };
                    if let ServerMsg::Ack { seq, offset, duplicate, .. } = &msg {
                        // An ack means durable: remember each for the final check.
                        lock(&self.view).acked.entry(*seq).or_default().push(Acked {
                            offset: *offset,
                            duplicate: *duplicate,
                        });
                    }
                    match self.sync.handle(msg) {
                        Ok(effects) => self.run_effects(effects),
                        Err(e) => {
                            lock(&self.view).protocol_errors.push(format!("refused server message: {e}"));
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_rx.elapsed() > DEAD_AFTER || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    nonce += 1;
                    vec![ClientMsg::Ping { nonce }]
                }
                _ = &mut dispatch => {
                    dispatch.as_mut().reset(tokio::time::Instant::now() + self.next_dispatch_pause());
                    let effects = self.dispatch_one();
                    self.run_effects(effects)
                }
            };
            self.publish();
            if std::mem::take(&mut self.crashed) {
                return;
            }
            for m in sends {
                if send(&mut ws, &m).await.is_err() {
                    return;
                }
                if matches!(m, ClientMsg::Push { .. }) {
                    self.cfg.pushed.notify_waiters();
                }
            }
        }
    }
}

fn open<M: Model>(cfg: &ClientConfig, model: M, s: &Storage<M::State>) -> SyncClient<M> {
    let replica = Replica::restore(
        cfg.stream.clone(),
        cfg.id,
        model,
        s.snapshot.clone(),
        s.offset,
        Seq::new(s.next_seq).unwrap_or(Seq::FIRST),
    );
    let mut sync = SyncClient::new(replica, s.epoch.clone(), M::State::default());
    for (seq, payload) in &s.outbox {
        sync.adopt(OutboxEntry::new(*seq, payload.clone()));
    }
    sync
}

async fn send(ws: &mut Ws, m: &ClientMsg) -> Result<(), ()> {
    tokio::time::timeout(
        Duration::from_secs(2),
        ws.send(Message::Binary(m.encode().into())),
    )
    .await
    .map_err(|_| ())?
    .map_err(|_| ())
}

/// Locks a view, surviving a poisoned lock (a panicking task must not hide
/// the state from the report).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
