//! The chaos soak: `cargo run -p logsync-chaos --release -- --secs 600`
//! (build the server first: `cargo build --release -p server-stub`,
//! or point `LOGSYNC_SERVER_BIN` at it).
//!
//! Options: `--secs N` (chaos duration, default 600), `--clients N` (default 6),
//! `--seed N` (default: from the clock).
//!
//! `--reducer` runs the folded soak instead: the server folds the stream
//! with `fixtures/ledger.js`, stores snapshots and compacts
//! ([`logsync_chaos::run_folded`]); `--snapshot-every N` (default 12) and
//! `--retain-events N` (default 20) set the server's flags of those names.

use std::time::Duration;

use logsync_chaos::{proxy::Faults, run, run_folded, server::server_bin, ChaosConfig, Folding};

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

#[tokio::main]
async fn main() {
    let secs = arg("--secs").unwrap_or(600);
    let clients = arg("--clients").unwrap_or(6) as usize;
    let seed = arg("--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let server_bin = match server_bin() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let cfg = ChaosConfig {
        clients,
        // 10 intents/s per client for the whole chaos phase.
        intents_per_client: secs * 10,
        dispatch_every: Duration::from_millis(100),
        chaos_for: Duration::from_secs(secs),
        restarts: (secs / 20).max(1) as usize,
        faults: Faults::default(),
        crash_chance: 0.005,
        seed,
        settle_timeout: Duration::from_secs(120),
        server_bin,
    };
    let folding = flag("--reducer").then(|| {
        let d = Folding::ledger();
        Folding {
            snapshot_every: arg("--snapshot-every").unwrap_or(d.snapshot_every),
            retain_events: arg("--retain-events").unwrap_or(d.retain_events),
            ..d
        }
    });
    let result = match folding {
        None => {
            eprintln!("chaos soak: {secs}s, {clients} clients, seed {seed}");
            run(cfg).await
        }
        Some(f) => {
            eprintln!(
                "chaos soak, folded by {} (a snapshot every {} events, {} kept): {secs}s, {clients} clients, seed {seed}",
                f.module.display(),
                f.snapshot_every,
                f.retain_events
            );
            run_folded(cfg, f).await
        }
    };
    match result {
        Ok(report) => println!("PASS {report}"),
        Err(e) => {
            eprintln!("FAIL (seed {seed}): {e}");
            std::process::exit(1);
        }
    }
}
