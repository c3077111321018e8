//! The chaos soak: `cargo run -p logsync-chaos --release -- --secs 600`
//! (build the server first: `cargo build --release -p server-stub`,
//! or point `LOGSYNC_SERVER_BIN` at it).
//!
//! Options: `--secs N` (chaos duration, default 600), `--clients N` (default 6),
//! `--seed N` (default: from the clock).

use std::time::Duration;

use logsync_chaos::{proxy::Faults, run, server::server_bin, ChaosConfig};

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
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
    eprintln!("chaos soak: {secs}s, {clients} clients, seed {seed}");
    match run(cfg).await {
        Ok(report) => println!("PASS {report}"),
        Err(e) => {
            eprintln!("FAIL (seed {seed}): {e}");
            std::process::exit(1);
        }
    }
}
