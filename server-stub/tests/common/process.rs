//! The real `logsync-server` binary as a child process: started on
//! 127.0.0.1:0 with a real SQLite file in a test's folder, its address read
//! from its first line, stopped by its PID.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{client_id, http, within};

/// A running `logsync-server` process.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its `host:port`.
    pub addr: String,
}

impl Proc {
    /// The server on `dir/log.db` with `args` and `env` (its stderr in
    /// `dir/server.log`).
    pub async fn spawn(dir: &Path, args: &[String], env: &[(&str, String)]) -> Proc {
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_logsync-server"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.join("log.db"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = within(
            "the listening line",
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "no line on stdout; log: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            )
        });
        let addr = line
            .strip_prefix("logsync-server listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Proc { child, addr }
    }

    /// Its WebSocket URL.
    pub fn ws(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET `path`: the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = http().get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.text().await.unwrap()).unwrap(),
        )
    }

    /// An intent over HTTP: the status and the body.
    pub async fn post(
        &self,
        stream: &str,
        id: u8,
        seq: u64,
        schema: u32,
        payload: &str,
    ) -> (u16, serde_json::Value) {
        let body = format!(
            r#"{{"client_id":"{}","seq":{seq},"payload":{payload},"schema":{schema}}}"#,
            client_id(id).to_hex()
        );
        let r = http()
            .post(self.url(&format!("/v1/streams/{stream}/intents")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.text().await.unwrap()).unwrap(),
        )
    }

    /// Stops the server by its PID (SIGTERM) and waits for it.
    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = within("exit after SIGTERM", self.child.wait())
            .await
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}
