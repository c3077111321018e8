//! The chaos test of Logsync: several real protocol clients write through a
//! fault-injecting TCP proxy while the real server is `kill -9`ed and
//! restarted. At the end every acknowledged intent must be in the log
//! exactly once, no intent twice, every dispatched intent once, and every
//! client must hold the same offset and state, equal to folding the log.
//!
//! [`run_folded`] does the same with the server folding the stream with
//! a JavaScript reducer (`fixtures/ledger.js`), storing a snapshot every
//! few events and compacting the events under it, so that the `kill -9`s
//! fall among snapshot writes and compactions (every other one is aimed at
//! a commit that stores a snapshot). There the log is no longer
//! whole at the end: the server's state, a brand-new client's snapshot
//! plus the events after it, and the compaction horizon are checked
//! against what the clients dispatched and were acknowledged.
//!
//! `cargo test -p logsync-chaos` runs a bounded round of each; the soak is
//! `cargo run -p logsync-chaos --release -- --secs 600` (`--reducer` for
//! the folded one).

pub mod client;
pub mod http;
pub mod ledger;
pub mod proxy;
pub mod rng;
pub mod server;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sync_core::{
    ClientId, ClientMsg, Event, Meta, Offset, Reducer, ServerMsg, StreamName,
    DEFAULT_MAX_FRAME_BYTES,
};
use tokio_tungstenite::tungstenite::Message;

use client::{lock, ChainReducer, ChainState, ChaosClient, ClientConfig, ClientView, Model};
use ledger::{LedgerReducer, LedgerState};
use proxy::{Faults, Proxy};
use rng::Rng;
use server::ServerProcess;

/// Knobs of one run.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Number of clients.
    pub clients: usize,
    /// Intents each client dispatches.
    pub intents_per_client: u64,
    /// Mean pause between a client's dispatches.
    pub dispatch_every: Duration,
    /// How long faults and restarts go on.
    pub chaos_for: Duration,
    /// How many `kill -9` + restarts during the chaos.
    pub restarts: usize,
    /// Proxy faults.
    pub faults: Faults,
    /// Probability per dispatch that a client crashes and restarts from storage.
    pub crash_chance: f64,
    /// Seed for every random choice.
    pub seed: u64,
    /// Longest wait for convergence after the chaos.
    pub settle_timeout: Duration,
    /// The server binary.
    pub server_bin: PathBuf,
}

/// The server folds the run's stream: a JavaScript reducer module whose
/// state is what [`ledger::LedgerReducer`] folds (the clients' replicas run
/// that), snapshots every few events and a retention, so that snapshot
/// writes and compactions happen many times between two `kill -9`s. Every
/// other `kill -9` is aimed at a commit that stores a snapshot and
/// compacts (the others come at random moments, as in [`run`]).
#[derive(Clone, Debug)]
pub struct Folding {
    /// The module (`--reducer 'chaos/*=MODULE'`).
    pub module: PathBuf,
    /// `--snapshot-every`.
    pub snapshot_every: u64,
    /// `--retain-events`.
    pub retain_events: u64,
    /// `--max-frame-bytes` (at least 4096): small, so that a snapshot
    /// travels in several parts and a cut connection resumes one.
    pub max_frame_bytes: Option<u64>,
}

impl Folding {
    /// `fixtures/ledger.js`, a snapshot every 12 events, the last 20 kept,
    /// 4 KiB frames. (12 does not divide a round's usual intent counts, so
    /// the last snapshot is rarely at the head: a brand-new client gets
    /// events after it too.)
    pub fn ledger() -> Folding {
        Folding {
            module: ledger::module_path(),
            snapshot_every: 12,
            retain_events: 20,
            max_frame_bytes: Some(4096),
        }
    }

    fn server_args(&self) -> Vec<String> {
        let mut args = vec![
            "--reducer".into(),
            format!("chaos/*={}", self.module.display()),
            "--snapshot-every".into(),
            self.snapshot_every.to_string(),
            "--retain-events".into(),
            self.retain_events.to_string(),
        ];
        if let Some(frame) = self.max_frame_bytes {
            // Every payload must fit in one frame with its event's overhead.
            args.extend([
                "--max-frame-bytes".into(),
                frame.to_string(),
                "--max-payload-bytes".into(),
                (frame / 4).to_string(),
            ]);
        }
        args
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// The seed (to replay).
    pub seed: u64,
    /// Intents dispatched.
    pub dispatched: usize,
    /// Acknowledgements received.
    pub acked: usize,
    /// Events in the log at the end (its head).
    pub log_len: u64,
    /// Server `kill -9` + restarts.
    pub restarts: usize,
    /// Client crashes (restarts from storage).
    pub client_crashes: u64,
    /// Connections the clients made.
    pub connects: u64,
    /// Proxy: connections accepted / refused / cut / black-holed / chunks delayed.
    pub proxy: [u64; 5],
    /// Wall time.
    pub elapsed: Duration,
    /// The folded run's part ([`run_folded`]).
    pub folded: Option<FoldReport>,
}

/// What a folded run saw of snapshots and compaction.
#[derive(Debug, Default)]
pub struct FoldReport {
    /// Server snapshots the run's clients adopted (their events had been
    /// compacted away while they were away).
    pub client_snapshots: u64,
    /// Server checkpoints (the hash of each snapshot stored) the clients
    /// compared their own folds with; every one agreed, or the run fails.
    pub checkpoints_agreed: u64,
    /// Snapshots the servers sent (`logsync_snapshots_sent_total`, read
    /// before each `kill -9` and at the end).
    pub snapshots_sent: u64,
    /// Of those, sent on from where a cut connection left them.
    pub snapshots_resumed: u64,
    /// The offset of the stream's latest snapshot at the end.
    pub snapshot_offset: u64,
    /// The first event the server keeps at the end (below it, compacted).
    pub oldest: u64,
    /// `kill -9`s aimed at a commit that stores a snapshot and compacts
    /// (see [`Folding`]).
    pub aimed_kills: u64,
    /// Of those, how many came after that commit had landed (the head
    /// after the restart is past the one seen before the kill); the
    /// others cut it before or while it ran.
    pub aimed_landed: u64,
    /// `Snapshot` frames the brand-new client got.
    pub fresh_parts: u64,
    /// Events it got after the snapshot.
    pub fresh_events: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} intents dispatched, {} acks, log of {} events; {} server kill -9/restarts, \
             {} client crashes, {} connections ({} refused, {} cut, {} black-holed, {} chunks delayed); {:.1}s",
            self.seed,
            self.dispatched,
            self.acked,
            self.log_len,
            self.restarts,
            self.client_crashes,
            self.connects,
            self.proxy[1],
            self.proxy[2],
            self.proxy[3],
            self.proxy[4],
            self.elapsed.as_secs_f64()
        )?;
        if let Some(r) = &self.folded {
            write!(
                f,
                "; folded: events kept from {}, latest snapshot at {}, {} snapshots sent ({} resumed), \
                 {} adopted by the clients, {} checkpoints compared by them (all agreed), \
                 the new client's in {} parts and {} events after it; \
                 {} kills aimed at a snapshot commit ({} after it landed, {} before or inside it)",
                r.oldest,
                r.snapshot_offset,
                r.snapshots_sent,
                r.snapshots_resumed,
                r.client_snapshots,
                r.checkpoints_agreed,
                r.fresh_parts,
                r.fresh_events,
                r.aimed_kills,
                r.aimed_landed,
                r.aimed_kills - r.aimed_landed
            )?;
        }
        Ok(())
    }
}

/// Runs one chaos round and checks every promise; an `Err` says which broke.
pub async fn run(cfg: ChaosConfig) -> Result<Report, String> {
    run_mode(cfg, None).await
}

/// Runs one chaos round against a server that folds the stream, stores
/// snapshots and compacts (see [`Folding`]), and checks every promise; an
/// `Err` says which broke.
pub async fn run_folded(cfg: ChaosConfig, folding: Folding) -> Result<Report, String> {
    run_mode(cfg, Some(folding)).await
}

async fn run_mode(cfg: ChaosConfig, folding: Option<Folding>) -> Result<Report, String> {
    let started = Instant::now();
    let rng = Arc::new(Rng::new(cfg.seed));
    let dir = std::env::temp_dir().join(format!(
        "logsync-chaos-{}-{}{}",
        std::process::id(),
        cfg.seed,
        if folding.is_some() { "-folded" } else { "" }
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = match &folding {
        None => run_in(&cfg, &dir, rng, started).await,
        Some(f) => run_folded_in(&cfg, f, &dir, rng, started).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

type Views<S> = Vec<(ClientId, Arc<std::sync::Mutex<ClientView<S>>>)>;

/// One round's moving parts: the server, the proxy, the clients.
struct Round<M: Model> {
    server: ServerProcess,
    proxy: Proxy,
    stream: StreamName,
    stop: Arc<AtomicBool>,
    views: Views<M::State>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    restarts: usize,
    /// `logsync_snapshots_sent_total` and `…_resumed_total` of the
    /// servers killed so far, when counted.
    snapshots: Option<(u64, u64)>,
    /// Told when a client has sent a `Push`.
    pushed: Arc<tokio::sync::Notify>,
    /// Aim every other `kill -9` at a commit that stores a snapshot.
    aim: Option<Aim>,
}

/// Kills aimed at commits that store a snapshot.
#[derive(Clone, Copy, Debug, Default)]
struct Aim {
    /// A snapshot every this many events.
    every: u64,
    /// Kills so aimed.
    kills: u64,
    /// Of those, how many came after that commit had landed.
    landed: u64,
}

impl<M: Model> Round<M> {
    /// Starts the server (with `args`), the proxy and the clients.
    async fn start(
        cfg: &ChaosConfig,
        dir: &std::path::Path,
        rng: &Arc<Rng>,
        model: M,
        args: &[String],
    ) -> Result<Round<M>, String> {
        let server = ServerProcess::start(&cfg.server_bin, &dir.join("chaos.db"), args).await?;
        let proxy = Proxy::start(server.addr, cfg.faults.clone(), rng.clone())
            .await
            .map_err(|e| format!("proxy: {e}"))?;
        let stream = StreamName::new("chaos/stream").map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let pushed = Arc::new(tokio::sync::Notify::new());
        let mut views = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..cfg.clients {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
            id[8] = i as u8;
            let (client, view) = ChaosClient::new(
                ClientConfig {
                    url: format!("ws://{}/v1/ws", proxy.addr),
                    stream: stream.clone(),
                    id: ClientId(id),
                    intents: cfg.intents_per_client,
                    dispatch_every: cfg.dispatch_every,
                    crash_chance: cfg.crash_chance,
                    pushed: pushed.clone(),
                },
                model,
                rng.clone(),
            );
            views.push((ClientId(id), view));
            tasks.push(tokio::spawn(client.run(stop.clone())));
        }
        Ok(Round {
            server,
            proxy,
            stream,
            stop,
            views,
            tasks,
            restarts: 0,
            snapshots: None,
            pushed,
            aim: None,
        })
    }

    /// Chaos: faults on, and kill -9 + restart at random moments; then
    /// faults off.
    async fn chaos(&mut self, cfg: &ChaosConfig, rng: &Rng) -> Result<(), String> {
        let chaos_end = Instant::now() + cfg.chaos_for;
        for _ in 0..cfg.restarts {
            let left = chaos_end.saturating_duration_since(Instant::now());
            let slice = left / (cfg.restarts - self.restarts) as u32;
            let at = Duration::from_millis(
                rng.range(slice.as_millis() as u64 / 3, slice.as_millis() as u64 + 1),
            );
            tokio::time::sleep(at).await;
            self.count_snapshots().await;
            let aimed = match self.aim {
                Some(aim) if self.restarts % 2 == 0 => self.aim_at_snapshot(aim.every, rng).await,
                _ => None,
            };
            if let (Some(before), Some(aim)) = (aimed, self.aim.as_mut()) {
                // No client may push before the head is read again.
                self.proxy.hold(true);
                self.server.kill9_and_restart().await?;
                let after = stream_head(self.server.addr, &self.stream).await;
                self.proxy.hold(false);
                aim.kills += 1;
                aim.landed += u64::from(after? > before);
            } else {
                self.server.kill9_and_restart().await?;
            }
            self.restarts += 1;
        }
        tokio::time::sleep(chaos_end.saturating_duration_since(Instant::now())).await;
        self.proxy.set_faults(false);
        Ok(())
    }

    /// Adds what the running server counted of the snapshots it sent (when
    /// counting); a server that does not answer adds nothing.
    async fn count_snapshots(&mut self) {
        let Some((sent, resumed)) = self.snapshots else {
            return;
        };
        let addr = self.server.addr;
        if let (Ok(s), Ok(r)) = (
            http::metric(addr, "logsync_snapshots_sent_total").await,
            http::metric(addr, "logsync_snapshots_resumed_total").await,
        ) {
            self.snapshots = Some((sent + s as u64, resumed + r as u64));
        }
    }

    /// Aims a `kill -9` at a commit that stores a snapshot and compacts:
    /// waits (3 s at most) until the stream's head is one event short of a
    /// multiple of `every` and a client then pushes — the commit that
    /// follows carries the head across the multiple — and returns that
    /// head 0 to 6 ms after the push, about while that commit runs (a few
    /// ms on the test machine; the delay is the aim's spread, not a wait
    /// for anything). `None` when no such moment came.
    async fn aim_at_snapshot(&self, every: u64, rng: &Rng) -> Option<Offset> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            // Created before the head is read: a push from here on wakes it.
            let pushed = self.pushed.notified();
            let head = stream_head(self.server.addr, &self.stream).await.ok()?;
            let wait = if head.0 % every == every - 1 {
                Duration::from_millis(500)
            } else {
                Duration::from_millis(20)
            };
            let push = tokio::time::timeout(wait, pushed).await.is_ok();
            if push && head.0 % every == every - 1 {
                tokio::time::sleep(Duration::from_millis(rng.range(0, 7))).await;
                return Some(head);
            }
        }
        None
    }

    /// Waits until every client dispatched everything and holds nothing pending.
    async fn drain(&self, deadline: Instant) -> Result<(), String> {
        wait_until(deadline, || {
            self.views.iter().all(|(_, v)| {
                let v = lock(v);
                v.to_dispatch == 0 && v.pending == 0
            })
        })
        .await
        .map_err(|_| {
            format!(
                "clients did not drain their outboxes: {}",
                summary(&self.views)
            )
        })
    }

    /// Waits until every client is at `head`.
    async fn reach(&self, head: Offset, deadline: Instant) -> Result<(), String> {
        wait_until(deadline, || {
            self.views.iter().all(|(_, v)| lock(v).offset == head)
        })
        .await
        .map_err(|_| {
            format!(
                "clients did not reach head {head}: {}",
                summary(&self.views)
            )
        })
    }

    /// Tells the clients to stop and waits (a while) for them.
    async fn stop_clients(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    fn report(&self, seed: u64, head: Offset, started: Instant) -> Report {
        let s = &self.proxy.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let views = &self.views;
        Report {
            seed,
            dispatched: views.iter().map(|(_, v)| lock(v).dispatched.len()).sum(),
            acked: views.iter().map(|(_, v)| lock(v).acked.len()).sum(),
            log_len: head.0,
            restarts: self.restarts,
            client_crashes: views.iter().map(|(_, v)| lock(v).crashes).sum(),
            connects: views.iter().map(|(_, v)| lock(v).connects).sum(),
            proxy: [
                load(&s.connections),
                load(&s.refused),
                load(&s.cuts),
                load(&s.blackholes),
                load(&s.delays),
            ],
            elapsed: started.elapsed(),
            folded: None,
        }
    }
}

async fn run_in(
    cfg: &ChaosConfig,
    dir: &std::path::Path,
    rng: Arc<Rng>,
    started: Instant,
) -> Result<Report, String> {
    let mut round = Round::start(cfg, dir, &rng, ChainReducer, &[]).await?;
    round.chaos(cfg, &rng).await?;

    // Quiescence: everything dispatched and confirmed, then every client at the head.
    let deadline = Instant::now() + cfg.settle_timeout;
    round.drain(deadline).await?;
    let log = read_log(round.server.addr, &round.stream).await?;
    let head = Offset(log.len() as u64);
    round.reach(head, deadline).await?;
    round.stop_clients().await;
    round.server.kill9().await;

    verify(&log, &round.views)?;
    Ok(round.report(cfg.seed, head, started))
}

async fn run_folded_in(
    cfg: &ChaosConfig,
    folding: &Folding,
    dir: &std::path::Path,
    rng: Arc<Rng>,
    started: Instant,
) -> Result<Report, String> {
    let mut round = Round::start(cfg, dir, &rng, LedgerReducer, &folding.server_args()).await?;
    round.snapshots = Some((0, 0));
    round.aim = Some(Aim {
        every: folding.snapshot_every,
        ..Aim::default()
    });
    round.chaos(cfg, &rng).await?;

    // Quiescence, as in `run`; the head from the server.
    let deadline = Instant::now() + cfg.settle_timeout;
    round.drain(deadline).await?;
    let head = stream_head(round.server.addr, &round.stream).await?;
    round.reach(head, deadline).await?;
    round.stop_clients().await;
    let live = read_state(round.server.addr, &round.stream, head).await?;

    // Once more kill -9 and restart: the state the server answers with
    // from here is built from its latest snapshot and the events after it.
    round.count_snapshots().await;
    round.server.kill9_and_restart().await?;
    let audit = audit_folded(round.server.addr, &round.stream, folding, head).await;
    round.count_snapshots().await;
    round.server.kill9().await;
    let audit = audit?;
    if audit.state != live {
        return Err(format!(
            "the state after a kill -9 and restart, {}, is not the one before, {}",
            audit.state.to_json(),
            live.to_json()
        ));
    }

    verify_folded(&audit, &round.views, head)?;
    let mut report = round.report(cfg.seed, head, started);
    let (snapshots_sent, snapshots_resumed) = round.snapshots.unwrap_or_default();
    let aim = round.aim.unwrap_or_default();
    report.folded = Some(FoldReport {
        client_snapshots: round.views.iter().map(|(_, v)| lock(v).snapshots).sum(),
        checkpoints_agreed: round.views.iter().map(|(_, v)| lock(v).agreed).sum(),
        snapshots_sent,
        snapshots_resumed,
        snapshot_offset: audit.snapshot_offset.0,
        oldest: audit.oldest.0,
        aimed_kills: aim.kills,
        aimed_landed: aim.landed,
        fresh_parts: audit.fresh_parts,
        fresh_events: audit.fresh_events.len() as u64,
    });
    Ok(report)
}

fn summary<S>(views: &Views<S>) -> String {
    views
        .iter()
        .map(|(id, v)| {
            let v = lock(v);
            format!(
                "[{} offset {} pending {} to_dispatch {} connects {}]",
                &id.to_hex()[..6],
                v.offset,
                v.pending,
                v.to_dispatch,
                v.connects
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> Result<(), ()> {
    while !cond() {
        if Instant::now() > deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A stream's snapshot as the server sent it in `Snapshot` frames.
#[derive(Debug)]
pub struct SentSnapshot {
    /// The offset of the last event it holds.
    pub offset: Offset,
    /// Its hash (checked against the text).
    pub hash: u64,
    /// The state's JSON text, its parts put together.
    pub text: Vec<u8>,
    /// How many parts it came in.
    pub parts: u64,
}

/// What a brand-new client receives when it subscribes from offset 0: the
/// stream's snapshot first when events were compacted away, then the
/// events after it up to the head.
#[derive(Debug)]
pub struct FromZero {
    /// The snapshot, when the server sent one.
    pub snapshot: Option<SentSnapshot>,
    /// The events after it (after 0 without one), dense, up to the head.
    pub events: Vec<Event>,
}

/// Reads the whole log over the protocol, straight from the server.
pub async fn read_log(
    addr: std::net::SocketAddr,
    stream: &StreamName,
) -> Result<Vec<Event>, String> {
    let read = read_from_zero(addr, stream).await?;
    match read.snapshot {
        None => Ok(read.events),
        Some(s) => Err(format!(
            "auditor got a snapshot at offset {} instead of the log",
            s.offset
        )),
    }
}

/// Subscribes from offset 0 as a brand-new client, straight to the server,
/// and reads up to the head: a snapshot (when the server sends one) and
/// the events.
pub async fn read_from_zero(
    addr: std::net::SocketAddr,
    stream: &StreamName,
) -> Result<FromZero, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .map_err(|e| format!("auditor connect: {e}"))?;
    let send = |m: ClientMsg| Message::Binary(m.encode().into());
    ws.send(send(ClientMsg::hello(ClientId([0xaa; 16]), None)))
        .await
        .map_err(|e| e.to_string())?;
    let mut log: Vec<Event> = Vec::new();
    // The first `Events` frame is a page read from the log, with the log's
    // head; the clients are quiet by now, so that is the end. A later
    // frame's head is the head when that frame was made, which can be older.
    let mut end = Offset::ZERO;
    let mut subscribed = false;
    let mut snapshot: Option<SentSnapshot> = None;
    // The snapshot's parts so far: offset, hash, total, text, parts.
    let mut parts: Option<(Offset, u64, u64, Vec<u8>, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .map_err(|_| "auditor timed out".to_string())?;
        let bytes = match frame {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(_)) => continue,
            other => return Err(format!("auditor connection ended: {other:?}")),
        };
        match ServerMsg::decode(&bytes, DEFAULT_MAX_FRAME_BYTES).map_err(|e| e.to_string())? {
            ServerMsg::Welcome { .. } if !subscribed => {
                subscribed = true;
                ws.send(send(ClientMsg::Subscribe {
                    stream: stream.clone(),
                    after: Offset::ZERO,
                    resume: None,
                }))
                .await
                .map_err(|e| e.to_string())?;
            }
            ServerMsg::Snapshot {
                offset,
                hash,
                total,
                at,
                part,
                ..
            } if snapshot.is_none() && end == Offset::ZERO => {
                let (o, h, t, mut text, n) =
                    parts.take().unwrap_or((offset, hash, total, Vec::new(), 0));
                if (o, h, t) != (offset, hash, total) || at != text.len() as u64 {
                    return Err(format!(
                        "snapshot part at byte {at} of the snapshot at {offset} (hash {hash:x}, \
                         {total} bytes) does not continue the {} bytes of the one at {o} (hash {h:x}, {t} bytes)",
                        text.len()
                    ));
                }
                text.extend_from_slice(&part);
                if (text.len() as u64) < total {
                    parts = Some((o, h, t, text, n + 1));
                } else if sync_core::protocol::state_hash(&text) != hash {
                    return Err(format!("the snapshot at {offset} does not match its hash"));
                } else {
                    snapshot = Some(SentSnapshot {
                        offset,
                        hash,
                        text,
                        parts: n + 1,
                    });
                }
            }
            ServerMsg::Events { events, head, .. } if parts.is_none() => {
                log.extend(events);
                end = end.max(head);
                let start = snapshot.as_ref().map_or(0, |s| s.offset.0);
                if start + log.len() as u64 >= end.0 {
                    let _ = ws.close(None).await;
                    return Ok(FromZero {
                        snapshot,
                        events: log,
                    });
                }
            }
            other => return Err(format!("auditor got {other:?}")),
        }
    }
}

/// The stream's head (`GET /v1/streams/{stream}`), straight from the server.
pub async fn stream_head(
    addr: std::net::SocketAddr,
    stream: &StreamName,
) -> Result<Offset, String> {
    let a = http::get(addr, &format!("/v1/streams/{}", path_segment(stream))).await?;
    let v = a.json()?;
    match (a.status, v.get("head").and_then(serde_json::Value::as_u64)) {
        (200, Some(head)) => Ok(Offset(head)),
        _ => Err(format!("GET the stream answered {}: {v}", a.status)),
    }
}

/// A stream name as one URL path segment.
fn path_segment(stream: &StreamName) -> String {
    stream
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The stream's state at `head` (`GET /v1/streams/{stream}/state`),
/// straight from the server.
async fn read_state(
    addr: std::net::SocketAddr,
    stream: &StreamName,
    head: Offset,
) -> Result<LedgerState, String> {
    let a = http::get(addr, &format!("/v1/streams/{}/state", path_segment(stream))).await?;
    let v = a.json()?;
    if a.status != 200 || v.get("offset").and_then(serde_json::Value::as_u64) != Some(head.0) {
        return Err(format!(
            "GET /state answered {} (the head is {head}): {v}",
            a.status
        ));
    }
    LedgerState::from_json(&v["state"]).map_err(|e| format!("GET /state: {e}"))
}

/// What the restarted server of a folded run shows at the end.
struct FoldAudit {
    /// `GET /state`.
    state: LedgerState,
    /// The first event kept (`oldest` of `410 COMPACTED` from `/events?after=0`).
    oldest: Offset,
    /// The latest snapshot (`GET /snapshot`).
    snapshot_offset: Offset,
    /// The events a brand-new client got after the snapshot.
    fresh_events: Vec<Event>,
    /// The `Snapshot` frames it got.
    fresh_parts: u64,
}

/// Reads the restarted server: its state, its compaction horizon, its
/// latest snapshot, and what a brand-new client subscribing from 0 gets;
/// checks them against each other and the folding's bounds.
async fn audit_folded(
    addr: std::net::SocketAddr,
    stream: &StreamName,
    folding: &Folding,
    head: Offset,
) -> Result<FoldAudit, String> {
    let base = format!("/v1/streams/{}", path_segment(stream));

    // (1) The state, folded by the restarted server from its snapshot and the events after it.
    let state = read_state(addr, stream, head).await?;

    // (3) The events table was compacted: reading from 0 is refused with the first event kept.
    let a = http::get(addr, &format!("{base}/events?after=0")).await?;
    let v = a.json()?;
    let oldest = match (
        a.status,
        v["error"]["code"].as_str(),
        v["error"]["oldest"].as_u64(),
    ) {
        (410, Some("COMPACTED"), Some(oldest)) => Offset(oldest),
        _ => {
            return Err(format!(
                "the events were not compacted: /events?after=0 answered {}: {v}",
                a.status
            ))
        }
    };
    let kept = head.0 + 1 - oldest.0;
    let (every, retain) = (folding.snapshot_every, folding.retain_events);
    if oldest.0 <= 1 || kept < retain.min(head.0) || kept > retain + every {
        return Err(format!(
            "the events table keeps {kept} events ({oldest} to {head}): outside the retention \
             ({retain} kept, a snapshot every {every})"
        ));
    }
    let a = http::get(addr, &format!("{base}/snapshot")).await?;
    let v = a.json()?;
    let (snapshot_offset, snapshot_hash) = match (
        a.status,
        v["offset"].as_u64(),
        v["hash"]
            .as_str()
            .and_then(|h| u64::from_str_radix(h, 16).ok()),
    ) {
        (200, Some(o), Some(h)) => (Offset(o), h),
        _ => return Err(format!("GET /snapshot answered {}: {v}", a.status)),
    };
    if snapshot_offset < Offset(oldest.0 - 1) || snapshot_offset > head {
        return Err(format!(
            "the latest snapshot is at {snapshot_offset}, but the events from {oldest} to {head} are kept"
        ));
    }

    // (2) A brand-new client from offset 0: the snapshot in parts, then the
    // events after it; folded, the same state.
    let fresh = read_from_zero(addr, stream).await?;
    let Some(snapshot) = fresh.snapshot else {
        return Err("a new client subscribing from 0 below the horizon got no snapshot".into());
    };
    if (snapshot.offset, snapshot.hash) != (snapshot_offset, snapshot_hash) {
        return Err(format!(
            "the new client got the snapshot at {} (hash {:x}), /snapshot is at {snapshot_offset} (hash {snapshot_hash:x})",
            snapshot.offset, snapshot.hash
        ));
    }
    let snapshot_state = LedgerState::from_text(&snapshot.text)
        .map_err(|e| format!("the snapshot at {}: {e}", snapshot.offset))?;
    if LedgerState::from_json(&v["state"]).as_ref() != Ok(&snapshot_state) {
        return Err("GET /snapshot and the Snapshot frames hold different states".into());
    }
    for (i, e) in fresh.events.iter().enumerate() {
        if e.offset != Offset(snapshot.offset.0 + 1 + i as u64) {
            return Err(format!(
                "the new client got event {} at position {i} after the snapshot at {}: not dense",
                e.offset, snapshot.offset
            ));
        }
    }
    let folded = fresh.events.iter().try_fold(snapshot_state, |s, e| {
        LedgerReducer
            .decode(&e.payload)
            .and_then(|a| LedgerReducer.reduce_meta(&s, &a, &Meta::of_event(e)))
            .map_err(|err| format!("event {} does not fold: {err}", e.offset))
    })?;
    if folded != state {
        return Err(format!(
            "the new client's snapshot and events fold to {}, the server's state is {}",
            folded.to_json(),
            state.to_json()
        ));
    }
    Ok(FoldAudit {
        state,
        oldest,
        snapshot_offset,
        fresh_events: fresh.events,
        fresh_parts: snapshot.parts,
    })
}

/// The folded run's promises, against what the clients dispatched and were
/// acknowledged: the server's state holds every dispatched intent exactly
/// once, with its payload, each acknowledged one at its acknowledged
/// offset, every offset up to the head once; the events still kept agree;
/// every client converged on that state.
fn verify_folded(
    audit: &FoldAudit,
    views: &Views<LedgerState>,
    head: Offset,
) -> Result<(), String> {
    let state = &audit.state;
    let known: HashSet<String> = views.iter().map(|(id, _)| id.to_hex()).collect();
    if let Some(id) = state.clients.keys().find(|id| !known.contains(*id)) {
        return Err(format!("the state holds intents of unknown client {id}"));
    }
    // Every offset from 1 to the head holds exactly one intent.
    let mut offsets: Vec<u64> = state
        .clients
        .values()
        .flat_map(|e| e.at.iter().copied())
        .collect();
    offsets.sort_unstable();
    if state.count != head.0 || offsets != (1..=head.0).collect::<Vec<u64>>() {
        let doubled: Vec<u64> = offsets
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        return Err(format!(
            "the state counts {} intents at {} offsets for a head of {head} (offsets held twice: {doubled:?})",
            state.count,
            offsets.len()
        ));
    }
    let none = ledger::Entries::default();
    for (id, v) in views {
        let v = lock(v);
        if let Some(err) = v.protocol_errors.first() {
            return Err(format!("client {id}: {err}"));
        }
        if !v.rejected.is_empty() {
            return Err(format!(
                "client {id}: unexpected rejections {:?}",
                v.rejected
            ));
        }
        let mine = state.clients.get(&id.to_hex()).map_or(&none, |e| &**e);
        // Every dispatched intent once, in seq order, with its tag.
        let ids: Vec<u64> = v.dispatched.keys().map(|s| s.get()).collect();
        if mine.ids != ids || mine.at.len() != ids.len() || mine.tags.len() != ids.len() {
            return Err(format!(
                "client {id}: dispatched seqs {:?}, the state holds ids {:?}",
                ids, mine.ids
            ));
        }
        for ((seq, payload), tag) in v.dispatched.iter().zip(&mine.tags) {
            let add = LedgerReducer
                .decode(payload)
                .map_err(|e| format!("client {id} seq {seq}: {e}"))?;
            if add.tag != *tag {
                return Err(format!(
                    "client {id} seq {seq}: dispatched tag {}, the state holds {tag}",
                    add.tag
                ));
            }
        }
        // Every acknowledged intent at the acknowledged offset; a resend
        // of one whose event was compacted away is acked at the horizon
        // then, which holds it (at most the horizon at the end).
        for (seq, a) in v
            .acked
            .iter()
            .flat_map(|(seq, acks)| acks.iter().map(move |a| (seq, a)))
        {
            let at = mine.at.get(seq.get() as usize - 1).copied().unwrap_or(0);
            let horizon = audit.oldest.0 - 1;
            if at != a.offset.0 && !(a.duplicate && at < a.offset.0 && a.offset.0 <= horizon) {
                return Err(format!(
                    "client {id} seq {seq} was acked at {} (duplicate: {}), the state has it at {at} \
                     (horizon at the end: {horizon})",
                    a.offset, a.duplicate
                ));
            }
        }
        if v.offset != head || v.state != *state || v.optimistic != *state || v.pending != 0 {
            return Err(format!(
                "client {id} did not converge: offset {} of {head}, pending {}, state {} vs the server's {}",
                v.offset,
                v.pending,
                v.state.to_json(),
                state.to_json()
            ));
        }
    }
    // The events still kept agree with the state and the dispatched payloads.
    let by_id: HashMap<ClientId, &std::sync::Mutex<ClientView<LedgerState>>> =
        views.iter().map(|(id, v)| (*id, &**v)).collect();
    for e in &audit.fresh_events {
        let mine = state
            .clients
            .get(&e.client_id.to_hex())
            .map_or(&none, |e| &**e);
        let dispatched = by_id
            .get(&e.client_id)
            .and_then(|v| lock(v).dispatched.get(&e.seq).cloned());
        if mine.at.get(e.seq.get() as usize - 1) != Some(&e.offset.0)
            || dispatched.as_ref() != Some(&e.payload)
        {
            return Err(format!(
                "event {} (client {} seq {}) does not match the state or what was dispatched",
                e.offset, e.client_id, e.seq
            ));
        }
    }
    Ok(())
}

fn verify(log: &[Event], views: &Views<ChainState>) -> Result<(), String> {
    // Dense offsets, no (client, seq) twice.
    let mut at: HashMap<(ClientId, u64), Offset> = HashMap::new();
    for (i, e) in log.iter().enumerate() {
        if e.offset != Offset(i as u64 + 1) {
            return Err(format!(
                "offset {} at position {i}: the log is not dense",
                e.offset
            ));
        }
        if at.insert((e.client_id, e.seq.get()), e.offset).is_some() {
            return Err(format!(
                "client {} seq {} is in the log twice",
                e.client_id, e.seq
            ));
        }
    }
    let expected = log
        .iter()
        .try_fold(ChainState::default(), |s, e| {
            ChainReducer.reduce(&s, &e.payload)
        })
        .map_err(|e| e.to_string())?;
    let known: HashSet<ClientId> = views.iter().map(|(id, _)| *id).collect();
    if let Some(e) = log.iter().find(|e| !known.contains(&e.client_id)) {
        return Err(format!(
            "event {} from unknown client {}",
            e.offset, e.client_id
        ));
    }
    for (id, v) in views {
        let v = lock(v);
        if let Some(err) = v.protocol_errors.first() {
            return Err(format!("client {id}: {err}"));
        }
        // Every acknowledged intent is in the log, at the acknowledged
        // offset (every ack of it: a resend's too).
        for (seq, offset) in v
            .acked
            .iter()
            .flat_map(|(seq, acks)| acks.iter().map(move |a| (seq, &a.offset)))
        {
            match at.get(&(*id, seq.get())) {
                Some(o) if o == offset => {}
                Some(o) => {
                    return Err(format!(
                        "client {id} seq {seq} acked at {offset} but in the log at {o}"
                    ))
                }
                None => {
                    return Err(format!(
                        "client {id} seq {seq} was acked at {offset} but is not in the log"
                    ))
                }
            }
        }
        // Every dispatched intent is in the log once, with its payload (none is rejected here).
        if !v.rejected.is_empty() {
            return Err(format!(
                "client {id}: unexpected rejections {:?}",
                v.rejected
            ));
        }
        for (seq, payload) in &v.dispatched {
            match at.get(&(*id, seq.get())) {
                Some(o) if log[(o.0 - 1) as usize].payload == *payload => {}
                Some(o) => {
                    return Err(format!(
                        "client {id} seq {seq}: the log holds another payload at {o}"
                    ))
                }
                None => {
                    return Err(format!(
                        "client {id} seq {seq} was dispatched but is not in the log"
                    ))
                }
            }
        }
        if v.offset.0 != log.len() as u64
            || v.state != expected
            || v.optimistic != expected
            || v.pending != 0
        {
            return Err(format!(
                "client {id} did not converge: offset {} of {}, state {:?} vs {:?}, pending {}",
                v.offset,
                log.len(),
                v.state,
                expected,
                v.pending
            ));
        }
    }
    let dispatched: usize = views.iter().map(|(_, v)| lock(v).dispatched.len()).sum();
    if dispatched != log.len() {
        return Err(format!(
            "{dispatched} intents dispatched but the log has {}",
            log.len()
        ));
    }
    Ok(())
}
