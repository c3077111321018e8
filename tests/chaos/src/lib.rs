//! The chaos test of Logsync: several real protocol clients write through a
//! fault-injecting TCP proxy while the real server is `kill -9`ed and
//! restarted. At the end every acknowledged intent must be in the log
//! exactly once, no intent twice, every dispatched intent once, and every
//! client must hold the same offset and state, equal to folding the log.
//!
//! `cargo test -p logsync-chaos` runs a bounded round; the soak is
//! `cargo run -p logsync-chaos --release -- --secs 600`.

pub mod client;
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
    ClientId, ClientMsg, Event, Offset, Reducer, ServerMsg, StreamName, DEFAULT_MAX_FRAME_BYTES,
};
use tokio_tungstenite::tungstenite::Message;

use client::{lock, ChainReducer, ChainState, ChaosClient, ClientConfig, ClientView};
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

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// The seed (to replay).
    pub seed: u64,
    /// Intents dispatched.
    pub dispatched: usize,
    /// Acknowledgements received.
    pub acked: usize,
    /// Events in the log at the end.
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
        )
    }
}

/// Runs one chaos round and checks every promise; an `Err` says which broke.
pub async fn run(cfg: ChaosConfig) -> Result<Report, String> {
    let started = Instant::now();
    let rng = Arc::new(Rng::new(cfg.seed));
    let dir =
        std::env::temp_dir().join(format!("logsync-chaos-{}-{}", std::process::id(), cfg.seed));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(&cfg, &dir, rng, started).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    cfg: &ChaosConfig,
    dir: &std::path::Path,
    rng: Arc<Rng>,
    started: Instant,
) -> Result<Report, String> {
    let mut server = ServerProcess::start(&cfg.server_bin, &dir.join("chaos.db"), &[]).await?;
    let proxy = Proxy::start(server.addr, cfg.faults.clone(), rng.clone())
        .await
        .map_err(|e| format!("proxy: {e}"))?;
    let stream = StreamName::new("chaos/stream").map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
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
            },
            rng.clone(),
        );
        views.push((ClientId(id), view));
        tasks.push(tokio::spawn(client.run(stop.clone())));
    }

    // Chaos: faults on, and kill -9 + restart at random moments.
    let mut restarts = 0;
    let chaos_end = Instant::now() + cfg.chaos_for;
    for _ in 0..cfg.restarts {
        let left = chaos_end.saturating_duration_since(Instant::now());
        let slice = left / (cfg.restarts - restarts) as u32;
        let at = Duration::from_millis(
            rng.range(slice.as_millis() as u64 / 3, slice.as_millis() as u64 + 1),
        );
        tokio::time::sleep(at).await;
        server.kill9_and_restart().await?;
        restarts += 1;
    }
    tokio::time::sleep(chaos_end.saturating_duration_since(Instant::now())).await;
    proxy.set_faults(false);

    // Quiescence: everything dispatched and confirmed, then every client at the head.
    let deadline = Instant::now() + cfg.settle_timeout;
    wait_until(deadline, || {
        views.iter().all(|(_, v)| {
            let v = lock(v);
            v.to_dispatch == 0 && v.pending == 0
        })
    })
    .await
    .map_err(|_| format!("clients did not drain their outboxes: {}", summary(&views)))?;
    let log = read_log(server.addr, &stream).await?;
    let head = Offset(log.len() as u64);
    wait_until(deadline, || {
        views.iter().all(|(_, v)| lock(v).offset == head)
    })
    .await
    .map_err(|_| format!("clients did not reach head {head}: {}", summary(&views)))?;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    server.kill9().await;

    verify(&log, &views)?;
    let s = &proxy.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(Report {
        seed: cfg.seed,
        dispatched: views.iter().map(|(_, v)| lock(v).dispatched.len()).sum(),
        acked: views.iter().map(|(_, v)| lock(v).acked.len()).sum(),
        log_len: head.0,
        restarts,
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
    })
}

fn summary(views: &[(ClientId, Arc<std::sync::Mutex<ClientView>>)]) -> String {
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

/// Reads the whole log over the protocol, straight from the server.
pub async fn read_log(
    addr: std::net::SocketAddr,
    stream: &StreamName,
) -> Result<Vec<Event>, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .map_err(|e| format!("auditor connect: {e}"))?;
    let send = |m: ClientMsg| Message::Binary(m.encode().into());
    ws.send(send(ClientMsg::hello(ClientId([0xaa; 16]), None)))
        .await
        .map_err(|e| e.to_string())?;
    let mut log: Vec<Event> = Vec::new();
    // The first frame is a page read from the log, with the log's head;
    // the clients are quiet by now, so that is the end. A later frame's
    // head is the head when that frame was made, which can be older.
    let mut end = Offset::ZERO;
    let mut subscribed = false;
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
            ServerMsg::Events { events, head, .. } => {
                log.extend(events);
                end = end.max(head);
                if log.len() as u64 >= end.0 {
                    let _ = ws.close(None).await;
                    return Ok(log);
                }
            }
            other => return Err(format!("auditor got {other:?}")),
        }
    }
}

fn verify(
    log: &[Event],
    views: &[(ClientId, Arc<std::sync::Mutex<ClientView>>)],
) -> Result<(), String> {
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
        // Every acknowledged intent is in the log, at the acknowledged offset.
        for (seq, offset) in &v.acked {
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
