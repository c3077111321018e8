//! `logsync-bench`: load generators for `logsync-server`, run as a separate
//! process that starts the server binary itself on a fresh database for
//! each measurement. One subcommand per question; see bench/README.md.

mod append;
mod idle;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "logsync-bench", about = "Load generators for logsync-server.")]
struct Cli {
    /// The server binary (default: `logsync-server` next to this binary).
    #[arg(long, global = true, env = "LOGSYNC_SERVER_BIN")]
    server_bin: Option<PathBuf>,

    /// Directory for the benchmark databases (default: a fresh temp dir).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Durable appends per second: closed-loop writers (one intent in
    /// flight each) against group commit and one commit per intent.
    Append(append::Args),
    /// Server memory (RSS) per idle WebSocket connection.
    Idle(idle::Args),
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
    let cli = Cli::parse();
    let server_bin = match cli
        .server_bin
        .clone()
        .map(Ok)
        .unwrap_or_else(server::default_bin)
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("logsync-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let tmp;
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => match tempfile::tempdir() {
            Ok(t) => {
                tmp = t;
                tmp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("logsync-bench: no temp dir: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let result = match cli.command {
        Command::Append(args) => append::run(&server_bin, &dir, args).await,
        Command::Idle(args) => idle::run(&server_bin, &dir, args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logsync-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
