//! What recording a metric costs on the server's hot paths: the plain
//! atomics `metrics.rs` records with, against `prometheus-client`'s own
//! metric types (which the renderer could have used instead).
//!
//! ```text
//! cargo run --release -p server-stub --example metrics_cost -- [iterations] [threads]
//! ```
//!
//! Each case runs `iterations` recordings on each of `threads` threads at
//! once (all threads hit the same metric, as connections do), and prints
//! nanoseconds per recording. The cases:
//!
//! - a counter increment (`intents_appended`, per intent);
//! - one commit, two histogram observations (`Metrics::commit`, per commit);
//! - a labelled counter (`Metrics::refused`, per refused request);
//! - a scrape: rendering `/metrics` (Prometheus text and OpenMetrics).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use server_stub::metrics::Metrics;
use sync_core::ErrorCode;

const BATCH_BOUNDS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];
const SECONDS_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Runs `f(i)` for i in 0..n on each of `threads` threads; ns per call.
fn time(threads: usize, n: u64, f: impl Fn(u64) + Send + Sync + 'static) -> f64 {
    let f = Arc::new(f);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || {
                for i in 0..n {
                    f(black_box(i));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse().unwrap())
        .unwrap_or(10_000_000);
    let threads: usize = args.next().map(|a| a.parse().unwrap()).unwrap_or(1);
    println!("{n} recordings per thread, {threads} thread(s); ns per recording (wall time / n)");
    let row = |case: &str, ours: f64, theirs: f64| {
        println!(
            "{case:<40} atomics {ours:>7.1} ns   prometheus-client {theirs:>7.1} ns   ratio {:.1}x",
            theirs / ours
        );
    };

    // 1. A counter.
    let m = Arc::new(Metrics::default());
    let ours = {
        let m = m.clone();
        time(threads, n, move |_| {
            m.intents_appended.fetch_add(1, Relaxed);
        })
    };
    let c: Counter = Counter::default();
    let theirs = {
        let c = c.clone();
        time(threads, n, move |_| {
            c.inc();
        })
    };
    assert_eq!(m.intents_appended.load(Relaxed), c.get());
    row("counter increment", ours, theirs);

    // 2. A commit: two histogram observations.
    let ours = {
        let m = m.clone();
        time(threads, n, move |i| {
            m.commit((i % 300) as usize, Duration::from_micros(i % 20_000));
        })
    };
    let batch = Histogram::new(BATCH_BOUNDS);
    let seconds = Histogram::new(SECONDS_BOUNDS);
    let theirs = {
        let (batch, seconds) = (batch.clone(), seconds.clone());
        time(threads, n, move |i| {
            batch.observe((i % 300) as f64);
            seconds.observe(Duration::from_micros(i % 20_000).as_secs_f64());
        })
    };
    row("commit (2 histogram observations)", ours, theirs);

    // 3. A labelled counter.
    let codes = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
    ];
    let ours = {
        let m = m.clone();
        time(threads, n, move |i| m.refused(codes[(i % 3) as usize]))
    };
    let family: Family<[(&'static str, &'static str); 1], Counter> = Family::default();
    let theirs = {
        let family = family.clone();
        time(threads, n, move |i| {
            family
                .get_or_create(&[("code", codes[(i % 3) as usize].as_str())])
                .inc();
        })
    };
    row("labelled counter (refused, by code)", ours, theirs);

    // 4. A scrape (not a hot path): microseconds per rendering.
    let scrapes = 10_000;
    let start = Instant::now();
    for _ in 0..scrapes {
        black_box(m.render());
    }
    let text = start.elapsed().as_secs_f64() * 1e6 / scrapes as f64;
    let start = Instant::now();
    for _ in 0..scrapes {
        black_box(m.render_openmetrics());
    }
    let open = start.elapsed().as_secs_f64() * 1e6 / scrapes as f64;
    println!(
        "scrape: Prometheus text {text:.1} us, OpenMetrics {open:.1} us ({} bytes)",
        m.render().len()
    );
}
