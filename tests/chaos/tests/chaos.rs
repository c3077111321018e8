//! Bounded chaos rounds for CI (about half a minute each): without and with
//! a server-side reducer, snapshots and compaction. The soak is the
//! `logsync-chaos` binary (see its docs). Set `LOGSYNC_CHAOS_SEED` to replay.

use std::time::Duration;

use logsync_chaos::{proxy::Faults, run, run_folded, server::server_bin, ChaosConfig, Folding};

/// `LOGSYNC_CHAOS_SEED` when set (to replay a run), else the clock.
fn seed() -> u64 {
    std::env::var("LOGSYNC_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_or_doubled_under_faults_and_kill9() {
    let seed = seed();
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

/// The same chaos against a server that folds the stream with
/// `fixtures/ledger.js`, stores a snapshot every 12 events and keeps only
/// the last 20 (compaction in the same transactions), so the `kill -9`s
/// fall among snapshot writes and compactions (every other one is aimed
/// at a commit that stores a snapshot). At the end the restarted
/// server's state must hold every dispatched intent exactly once (every
/// acknowledged one at its acknowledged offset), a brand-new client must
/// get a snapshot plus events that fold to that state, and the events
/// table must have been compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folded_compacted_stream_loses_nothing_under_faults_and_kill9() {
    let seed = seed();
    let cfg = ChaosConfig {
        clients: 5,
        intents_per_client: 100,
        // Slower than above: the writes go on for most of the chaos.
        dispatch_every: Duration::from_millis(150),
        chaos_for: Duration::from_secs(20),
        restarts: 6,
        faults: Faults::default(),
        crash_chance: 0.01,
        seed,
        settle_timeout: Duration::from_secs(60),
        server_bin: server_bin().expect("server binary"),
    };
    match run_folded(cfg, Folding::ledger()).await {
        Ok(report) => {
            eprintln!("chaos (folded): {report}");
            assert_eq!(report.restarts, 6);
            assert_eq!(report.dispatched, 500);
            assert!(report.acked > 0, "no acknowledgements at all: {report}");
            let folded = report
                .folded
                .as_ref()
                .expect("the folded part of the report");
            assert!(folded.oldest > 1, "nothing was compacted: {report}");
            assert!(
                folded.checkpoints_agreed > 0,
                "no client compared its fold with a checkpoint: {report}"
            );
        }
        Err(e) => {
            panic!("folded chaos run failed (replay with LOGSYNC_CHAOS_SEED={seed}): {e}")
        }
    }
}
