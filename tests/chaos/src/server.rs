//! Runs the real `logsync-server` binary: start, `kill -9`, restart on the
//! same port and database file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server process.
pub struct ServerProcess {
    bin: PathBuf,
    db: PathBuf,
    extra: Vec<String>,
    /// Where it listens (stable across restarts).
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// Finds the `logsync-server` binary: `$LOGSYNC_SERVER_BIN`, else next to
/// the running test executable's target folder (`target/<profile>/`).
pub fn server_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("LOGSYNC_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/deps/<test-exe>  or  target/<profile>/<bin>
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("logsync-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "logsync-server not found near {}; build it (cargo build -p server-stub) or set LOGSYNC_SERVER_BIN",
        exe.display()
    ))
}

impl ServerProcess {
    /// Starts the server on 127.0.0.1:0 and learns its port from its first
    /// stdout line (`logsync-server listening on http://ADDR`).
    pub async fn start(bin: &Path, db: &Path, extra: &[String]) -> Result<ServerProcess, String> {
        let mut p = ServerProcess {
            bin: bin.to_path_buf(),
            db: db.to_path_buf(),
            extra: extra.to_vec(),
            addr: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
            child: None,
        };
        p.spawn().await?;
        Ok(p)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        // A restart may race the old socket's release: retry the bind briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new(&self.bin)
                .arg("--listen")
                .arg(self.addr.to_string())
                .arg("--db")
                .arg(&self.db)
                .args(&self.extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut lines = BufReader::new(stdout).lines();
            let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
            match first {
                Ok(Ok(Some(line))) => {
                    let addr = line
                        .rsplit("http://")
                        .next()
                        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                        .ok_or_else(|| format!("unexpected first line: {line:?}"))?;
                    self.addr = addr;
                    // Keep draining stdout so the server never blocks on it.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    self.child = Some(child);
                    return Ok(());
                }
                _ => {
                    let _ = child.kill().await;
                    if Instant::now() > deadline {
                        return Err(format!("logsync-server did not start on {}", self.addr));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// `kill -9`, then start again on the same port and file.
    pub async fn kill9_and_restart(&mut self) -> Result<(), String> {
        self.kill9().await;
        self.spawn().await
    }

    /// `kill -9` and wait for the process to be gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
