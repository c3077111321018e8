//! A bounded chaos round for CI (about half a minute). The soak is the
//! `logsync-chaos` binary (see its docs). Set `LOGSYNC_CHAOS_SEED` to replay.

use std::time::Duration;

use logsync_chaos::{proxy::Faults, run, server::server_bin, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_or_doubled_under_faults_and_kill9() {
    let seed = std::env::var("LOGSYNC_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let cfg = ChaosConfig {
        clients: 5,
        intents_per_client: 100,
        dispatch_every: Duration::from_millis(100),
        chaos_for: Duration::from_secs(20),
        restarts: 3,
        faults: Faults::default(),
        crash_chance: 0.01,
        seed,
        settle_timeout: Duration::from_secs(60),
        server_bin: server_bin().expect("server binary"),
    };
    match run(cfg).await {
        Ok(report) => {
            eprintln!("chaos: {report}");
            assert_eq!(report.restarts, 3);
            assert_eq!(report.dispatched, 500);
            assert!(report.acked > 0, "no acknowledgements at all: {report}");
        }
        Err(e) => panic!("chaos run failed (replay with LOGSYNC_CHAOS_SEED={seed}): {e}"),
    }
}
