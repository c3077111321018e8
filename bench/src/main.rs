//! `logsync-bench`: load generators for `logsync-server`, run as a separate
//! process that starts the server binary itself (and the baseline relay,
//! `logsync-relay`) on a fresh database for each measurement. One
//! subcommand per question; see BENCHMARKS.md at the repository root.

mod append;
mod boot;
mod fanout;
mod hist;
mod idle;
mod out;
mod procstat;
mod seed;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use server::{Launcher, Variant};

#[derive(Parser, Debug)]
#[command(name = "logsync-bench", about = "Load generators for logsync-server.")]
struct Cli {
    /// The server binary (default: `logsync-server` next to this binary).
    #[arg(long, global = true, env = "LOGSYNC_SERVER_BIN")]
    server_bin: Option<PathBuf>,

    /// The relay binary (default: `logsync-relay` next to this binary).
    #[arg(long, global = true, env = "LOGSYNC_RELAY_BIN")]
    relay_bin: Option<PathBuf>,

    /// Directory for the benchmark databases (default: a fresh temp dir).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,

    /// Run every started server and relay under `taskset -c CPUS` (e.g.
    /// `1`), so that it and the load generator do not share cores.
    #[arg(long, global = true)]
    server_cpus: Option<String>,

    /// A server variant: `LABEL=FLAGS…` (flags added to every start of
    /// the server; `{run}` in them becomes a name unique to the run).
    /// Repeatable. `logsync` (no extra flags) always exists.
    #[arg(long = "variant", global = true)]
    variants: Vec<String>,

    /// A server variant's own binary: `LABEL=PATH`, started instead of
    /// `logsync-server` with the variant's flags (a server built from the
    /// server-stub library, e.g. with Rust reducers, takes the same
    /// flags). A LABEL without `--variant` is a variant without extra
    /// flags. Repeatable.
    #[arg(long = "variant-bin", global = true, value_name = "LABEL=PATH")]
    variant_bins: Vec<String>,

    /// A PostgreSQL connection allowed to create databases (e.g.
    /// `postgres://postgres@127.0.0.1:PORT/postgres`). Before every start
    /// of a server whose flags hold a PostgreSQL URL
    /// (`--store postgres://…/NAME`, NAME made unique with `{run}`), the
    /// database NAME is created through it; it is dropped after the
    /// server stopped. The server never creates databases itself.
    #[arg(long, global = true, env = "LOGSYNC_BENCH_PG_ADMIN_URL")]
    pg_admin_url: Option<String>,

    /// Append one JSON object per measured run to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fan-out: writers and N subscribers on one stream, against the
    /// server and the baseline relay.
    Fanout(fanout::Args),
    /// Durable appends per second: closed-loop writers (one intent in
    /// flight each) against group commit and one commit per intent.
    Append(append::Args),
    /// Server memory (RSS) per idle WebSocket connection.
    Idle(idle::Args),
    /// Fills a running server's stream with N events (for catch-up
    /// benchmarks).
    Seed(seed::Args),
    /// A new client's time to first state over a long history: full
    /// catch-up vs snapshot boot (compaction on).
    Boot(boot::Args),
}

/// Parses `500ms`, `5s`, `2m` (a plain number is seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("unknown unit in {s:?}; use ms, s or m")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logsync-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let sink = out::Sink::open(cli.json.clone())?;
    if let Command::Seed(args) = cli.command {
        return seed::run(&sink, args).await;
    }
    let mut variants = vec![Variant::plain("logsync")];
    for v in &cli.variants {
        let v = Variant::parse(v)?;
        variants.retain(|o| o.label != v.label);
        variants.push(v);
    }
    for b in &cli.variant_bins {
        Variant::set_bin(&mut variants, b)?;
    }
    let server_bin = match cli.server_bin.clone() {
        Some(b) => b,
        None => server::sibling_bin(
            "logsync-server",
            "build it with `cargo build --release -p server-stub` or pass --server-bin",
        )?,
    };
    let relay_bin = match cli.relay_bin.clone() {
        Some(b) => b,
        None => server::sibling_bin(
            "logsync-relay",
            "build it with `cargo build --release -p logsync-bench` or pass --relay-bin",
        )
        .unwrap_or_default(),
    };
    let tmp;
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
            tmp.path().to_path_buf()
        }
    };
    let launcher = Launcher {
        server_bin,
        relay_bin,
        cpus: cli.server_cpus.clone(),
        dir,
        pg_admin_url: cli.pg_admin_url.clone(),
    };
    match cli.command {
        Command::Fanout(args) => fanout::run(&launcher, &variants, &sink, args).await,
        Command::Append(args) => append::run(&launcher, &variants, &sink, args).await,
        Command::Idle(args) => idle::run(&launcher, &variants, &sink, args).await,
        Command::Boot(args) => boot::run(&launcher, &sink, args).await,
        Command::Seed(_) => Ok(()),
    }
}
