//! A fault-injecting TCP proxy between the clients and the server.
//!
//! While faults are on, each connection may be refused at accept, and each
//! chunk that passes may be delayed, may cut the connection (both sides
//! closed at once), or may turn the connection into a black hole (bytes are
//! read and dropped in both directions, the sockets stay open: a half-dead
//! link that only heartbeats can detect).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::rng::Rng;

/// Fault probabilities (per accepted connection / per forwarded chunk).
#[derive(Clone, Debug)]
pub struct Faults {
    /// Refuse a new connection.
    pub refuse: f64,
    /// Cut a connection at a chunk.
    pub cut: f64,
    /// Turn a connection into a black hole at a chunk.
    pub blackhole: f64,
    /// Delay a chunk by up to `max_delay`.
    pub delay: f64,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            refuse: 0.15,
            cut: 0.03,
            blackhole: 0.005,
            delay: 0.1,
            max_delay: Duration::from_millis(150),
        }
    }
}

/// What the proxy did, for the report.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused.
    pub refused: AtomicU64,
    /// Connections cut.
    pub cuts: AtomicU64,
    /// Connections turned into black holes.
    pub blackholes: AtomicU64,
    /// Chunks delayed.
    pub delays: AtomicU64,
}

/// The proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    enabled: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
    /// Counters.
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`.
    pub async fn start(
        upstream: SocketAddr,
        faults: Faults,
        rng: Arc<Rng>,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let enabled = Arc::new(AtomicBool::new(true));
        let held = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ProxyStats::default());
        let (en, hd, st) = (enabled.clone(), held.clone(), stats.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if hd.load(Ordering::Relaxed) {
                    drop(inbound);
                    continue;
                }
                let on = en.load(Ordering::Relaxed);
                if on && rng.chance(faults.refuse) {
                    st.refused.fetch_add(1, Ordering::Relaxed);
                    drop(inbound);
                    continue;
                }
                st.connections.fetch_add(1, Ordering::Relaxed);
                let (en, st, rng, faults) = (en.clone(), st.clone(), rng.clone(), faults.clone());
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(upstream).await {
                        pump(inbound, outbound, &en, &st, &rng, &faults).await;
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            enabled,
            held,
            stats,
            task,
        })
    }

    /// Switches faults on or off (connections keep flowing either way).
    pub fn set_faults(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// While held, new connections are closed at once (not counted as
    /// refused); open ones go on.
    pub fn hold(&self, on: bool) {
        self.held.store(on, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut a: TcpStream,
    mut b: TcpStream,
    enabled: &AtomicBool,
    stats: &ProxyStats,
    rng: &Rng,
    faults: &Faults,
) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let mut black = false;
    loop {
        // Read from whichever side has bytes; forward to the other.
        let (n, from_a) = tokio::select! {
            r = a.read(&mut buf_a) => (r, true),
            r = b.read(&mut buf_b) => (r, false),
        };
        let n = match n {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if black {
            continue;
        }
        if enabled.load(Ordering::Relaxed) {
            let r = rng.unit();
            if r < faults.cut {
                stats.cuts.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if r < faults.cut + faults.blackhole {
                stats.blackholes.fetch_add(1, Ordering::Relaxed);
                black = true;
                continue;
            }
            if r < faults.cut + faults.blackhole + faults.delay {
                stats.delays.fetch_add(1, Ordering::Relaxed);
                let ms = rng.range(1, faults.max_delay.as_millis().max(2) as u64);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let res = if from_a {
            b.write_all(&buf_a[..n]).await
        } else {
            a.write_all(&buf_b[..n]).await
        };
        if res.is_err() {
            return;
        }
    }
}
