//! Starting and stopping the processes under test: `logsync-server` (on a
//! fresh database each time) and the baseline relay, optionally pinned to
//! some CPUs with `taskset`, each read for its CPU time and peak memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procstat;

/// `name` next to the running binary (all come from the same
/// `cargo build --release`).
pub fn sibling_bin(name: &str, hint: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let bin = exe.with_file_name(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} not found; {hint}", bin.display()))
    }
}

/// A variant of the server to measure: a label, extra flags (for
/// example another store) and optionally its own binary (a server built
/// from the server-stub library with Rust reducers, which takes
/// `logsync-server`'s flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Shown in the tables (`logsync`, `logsync-postgres`, …).
    pub label: String,
    /// Added to the server's command line; `{run}` becomes a name unique to
    /// the run (for a fresh database per run).
    pub args: Vec<String>,
    /// The binary to start instead of the launcher's `logsync-server`.
    pub bin: Option<PathBuf>,
}

impl Variant {
    /// The server as it is: no flags, the launcher's binary.
    pub fn plain(label: &str) -> Variant {
        Variant {
            label: label.into(),
            args: Vec::new(),
            bin: None,
        }
    }

    /// Parses `LABEL` or `LABEL=ARGS…` (ARGS split on whitespace).
    pub fn parse(s: &str) -> Result<Variant, String> {
        let (label, args) = match s.split_once('=') {
            Some((l, a)) => (l.trim(), a.split_whitespace().map(String::from).collect()),
            None => (s.trim(), Vec::new()),
        };
        check_label(label)
            .map_err(|e| format!("server variant {s:?}: expected LABEL or LABEL=ARGS, {e}"))?;
        Ok(Variant {
            args,
            ..Variant::plain(label)
        })
    }

    /// Applies `LABEL=PATH` (`--variant-bin`) to `variants`: the variant
    /// LABEL starts PATH instead of `logsync-server`, with its flags; a
    /// label no `--variant` named becomes a variant without flags.
    pub fn set_bin(variants: &mut Vec<Variant>, s: &str) -> Result<(), String> {
        let Some((label, path)) = s.split_once('=') else {
            return Err(format!("--variant-bin {s:?}: expected LABEL=PATH"));
        };
        let label = label.trim();
        check_label(label).map_err(|e| format!("--variant-bin {s:?}: {e}"))?;
        let bin = PathBuf::from(path.trim());
        if !bin.is_file() {
            return Err(format!(
                "--variant-bin {s:?}: {} is not a file (build it first)",
                bin.display()
            ));
        }
        match variants.iter_mut().find(|v| v.label == label) {
            Some(v) => v.bin = Some(bin),
            None => variants.push(Variant {
                bin: Some(bin),
                ..Variant::plain(label)
            }),
        }
        Ok(())
    }
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("LABEL {label:?} is not of [A-Za-z0-9-]"));
    }
    Ok(())
}

/// What every measurement needs to start its processes.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// `logsync-server`.
    pub server_bin: PathBuf,
    /// `logsync-relay` (fan-out baseline).
    pub relay_bin: PathBuf,
    /// `taskset -c CPUS` for every started process (None: not pinned).
    pub cpus: Option<String>,
    /// Where databases go.
    pub dir: PathBuf,
    /// Where to create a fresh PostgreSQL database for each server start
    /// of a variant on the PostgreSQL store (see `--pg-admin-url`).
    pub pg_admin_url: Option<String>,
}

static RUN: AtomicU64 = AtomicU64::new(1);

impl Launcher {
    /// The file name of the binary `variant` starts (for the records).
    pub fn bin_name(&self, variant: &Variant) -> String {
        let bin = variant.bin.as_deref().unwrap_or(&self.server_bin);
        bin.file_name()
            .unwrap_or(bin.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// Starts `logsync-server` (or the variant's own binary) on a fresh
    /// database with `variant`'s flags and `args`.
    pub async fn server(&self, variant: &Variant, args: &[String]) -> Result<Proc, String> {
        let run = format!("run{}x{}", std::process::id(), RUN.fetch_add(1, Relaxed));
        let db = self.dir.join(format!("{run}.db"));
        remove_db(&db);
        let mut argv: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--db".into(),
            db.to_string_lossy().into_owned(),
        ];
        let extra: Vec<String> = variant
            .args
            .iter()
            .map(|a| a.replace("{run}", &run))
            .collect();
        // A fresh PostgreSQL database for this start, when the variant
        // names one and there is a connection to create it with.
        let pg_db = match (
            &self.pg_admin_url,
            extra.iter().find_map(|a| pg_database(a)),
        ) {
            (Some(admin), Some(name)) => {
                pg::create_database(admin, &name).await?;
                Some(PgDatabase {
                    admin: admin.clone(),
                    name,
                })
            }
            _ => None,
        };
        argv.extend(extra);
        argv.extend(args.iter().cloned());
        let spawned = Proc::spawn(
            variant.bin.as_deref().unwrap_or(&self.server_bin),
            &argv,
            "logsync-server listening on http://",
            self.cpus.as_deref(),
        )
        .await;
        let mut p = match spawned {
            Ok(p) => p,
            Err(e) => {
                if let Some(db) = &pg_db {
                    db.drop_quietly().await;
                }
                return Err(e);
            }
        };
        p.url = format!("ws://{}/v1/ws", p.addr);
        p.db = Some(db);
        p.pg_db = pg_db;
        Ok(p)
    }

    /// Starts the baseline relay.
    pub async fn relay(&self) -> Result<Proc, String> {
        if self.relay_bin.as_os_str().is_empty() {
            return Err("logsync-relay not found next to this binary; build it with `cargo build --release -p logsync-bench` or pass --relay-bin".into());
        }
        let argv = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        let mut p = Proc::spawn(
            &self.relay_bin,
            &argv,
            "logsync-relay listening on ws://",
            self.cpus.as_deref(),
        )
        .await?;
        p.url = format!("ws://{}/", p.addr);
        Ok(p)
    }
}

/// The database name of a PostgreSQL URL (`postgres://…/NAME?…`), if
/// `arg` is one.
fn pg_database(arg: &str) -> Option<String> {
    let rest = arg
        .strip_prefix("postgres://")
        .or_else(|| arg.strip_prefix("postgresql://"))?;
    let path = rest.split_once('/')?.1;
    let name = path.split(['?', '#']).next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// A database made for one server start.
struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    async fn drop_quietly(&self) {
        if let Err(e) = pg::drop_database(&self.admin, &self.name).await {
            eprintln!("logsync-bench: {e}");
        }
    }
}

/// `CREATE DATABASE` / `DROP DATABASE` through an admin connection.
mod pg {
    /// Names go into SQL unquoted by the caller: only plain identifiers.
    pub(super) fn checked(name: &str) -> Result<&str, String> {
        if !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            Ok(name)
        } else {
            Err(format!(
                "PostgreSQL database name {name:?}: use letters, digits and _ (at most 63)"
            ))
        }
    }

    async fn execute(admin: &str, sql: &str) -> Result<(), String> {
        let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect to --pg-admin-url: {e}"))?;
        let driver = tokio::spawn(conn);
        let r = client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {e}"));
        drop(client);
        let _ = driver.await;
        r
    }

    pub async fn create_database(admin: &str, name: &str) -> Result<(), String> {
        let name = checked(name)?;
        execute(admin, &format!("CREATE DATABASE \"{name}\"")).await
    }

    pub async fn drop_database(admin: &str, name: &str) -> Result<(), String> {
        let name = checked(name)?;
        execute(
            admin,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .await
    }
}

/// Deletes a SQLite database and its side files.
pub fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// A running process under test.
pub struct Proc {
    child: Child,
    pid: String,
    /// `host:port` from its address line.
    pub addr: String,
    /// Its WebSocket URL.
    pub url: String,
    db: Option<PathBuf>,
    pg_db: Option<PgDatabase>,
}

impl Proc {
    /// Starts `bin args` (under `taskset -c cpus` when given) and waits
    /// for the stdout line that starts with `prefix` and ends with the
    /// address.
    async fn spawn(
        bin: &Path,
        args: &[String],
        prefix: &str,
        cpus: Option<&str>,
    ) -> Result<Proc, String> {
        // taskset execs the program, so the PID is the program's own.
        let mut cmd = match cpus {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", c]).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("the process exited at once")?.to_string();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| format!("{} printed no address within 20 s", bin.display()))?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} exited before printing its address", bin.display()))?;
        let addr = line
            .strip_prefix(prefix)
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .trim_end_matches('/')
            .to_string();
        // Keep reading stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc {
            child,
            pid,
            addr,
            url: String::new(),
            db: None,
            pg_db: None,
        })
    }

    /// Bytes of its SQLite database now (the file, its WAL and shared
    /// memory; 0 for another store).
    pub fn storage_bytes(&self) -> u64 {
        let Some(db) = &self.db else { return 0 };
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = db.as_os_str().to_owned();
                p.push(suffix);
                std::fs::metadata(p).ok().map(|m| m.len())
            })
            .sum()
    }

    /// CPU seconds used so far.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        procstat::cpu_seconds(&self.pid)
    }

    /// Resident memory now, in bytes.
    pub fn rss_bytes(&self) -> Result<u64, String> {
        procstat::rss_bytes(&self.pid)
    }

    /// Peak resident memory since start, in bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64, String> {
        procstat::peak_rss_bytes(&self.pid)
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 30 s); removes the
    /// database (the SQLite file, or the PostgreSQL database made for it).
    pub async fn stop(mut self) -> Result<(), String> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid])
            .status();
        let r = match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(format!(
                    "process {} did not stop within 30 s of SIGTERM",
                    self.pid
                ))
            }
        };
        if let Some(db) = &self.db {
            remove_db(db);
        }
        if let Some(db) = &self.pg_db {
            db.drop_quietly().await;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_names_its_database() {
        let name = |a: &str| pg_database(a);
        assert_eq!(
            name("postgres://postgres@127.0.0.1:5432/bench_run1x2").as_deref(),
            Some("bench_run1x2")
        );
        assert_eq!(
            name("postgresql://u:p@h/db?sslmode=disable").as_deref(),
            Some("db")
        );
        assert_eq!(name("postgres://h:5432"), None);
        assert_eq!(name("postgres://h/"), None);
        assert_eq!(name("--store"), None);
        assert!(pg::checked("bench_run1x2").is_ok());
        assert!(pg::checked("a\"; DROP").is_err());
    }

    #[test]
    fn a_variant_gets_its_own_binary() {
        let exe = std::env::current_exe().unwrap();
        let mut vs = vec![
            Variant::plain("logsync"),
            Variant::parse("js=--reducer todos/*=todos.js").unwrap(),
        ];
        Variant::set_bin(&mut vs, &format!("rust={}", exe.display())).unwrap();
        Variant::set_bin(&mut vs, &format!("js={}", exe.display())).unwrap();
        assert_eq!(vs.len(), 3);
        assert_eq!(vs[0].bin, None);
        assert_eq!(vs[1].args, ["--reducer", "todos/*=todos.js"]);
        assert_eq!(vs[1].bin.as_deref(), Some(exe.as_path()));
        assert_eq!(
            vs[2],
            Variant {
                label: "rust".into(),
                args: Vec::new(),
                bin: Some(exe.clone())
            }
        );
        for bad in ["rust", "=/bin/sh", "a b=/bin/sh", "rust=/no/such/binary"] {
            assert!(Variant::set_bin(&mut vs, bad).is_err(), "{bad}");
        }
        assert!(Variant::parse("a b=--x").is_err());
    }
}
