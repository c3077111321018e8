//! Starting and stopping the server under test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `logsync-server` next to the running binary (both come from the same
/// `cargo build --profile release-native`).
pub fn default_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let bin = exe.with_file_name("logsync-server");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found; build it with `cargo build --profile release-native -p server-stub` or pass --server-bin",
            bin.display()
        ))
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    /// `host:port`.
    pub addr: String,
}

impl Server {
    /// Starts `bin` on a free port with the database `db` and `args`, and
    /// waits for its address line.
    pub async fn start(bin: &Path, db: &Path, args: &[String]) -> Result<Server, String> {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| "the server printed no address within 20 s".to_string())?
            .map_err(|e| e.to_string())?
            .ok_or("the server exited before printing its address")?;
        let addr = line
            .strip_prefix("logsync-server listening on http://")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .to_string();
        Ok(Server { child, addr })
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss_bytes(&self) -> Result<u64, String> {
        let pid = self.pid().ok_or("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("cannot read the server's memory: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| "no VmRSS line".to_string())
    }

    /// SIGTERM, then wait for the exit.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let _ = self.child.start_kill();
                Err("the server did not stop within 30 s of SIGTERM".into())
            }
        }
    }
}
