//! Server configuration: the [`Config`] that [`crate::run`] takes, plain
//! data with its own consistency checks. The command line that
//! `logsync-server` parses into it is [`crate::cli`].

use std::path::PathBuf;
use std::time::Duration;

use sync_core::protocol::{EVENTS_FRAME_OVERHEAD, EVENT_OVERHEAD};

use crate::auth::{Jwks, Secret};
use crate::error::Error;
use crate::store::postgres;
use crate::store::CommitMode;

/// Everything [`crate::run`] needs besides the listener.
#[derive(Clone, Debug)]
pub struct Config {
    /// The SQLite file of the log (created when missing).
    pub db_path: PathBuf,
    /// The scale-out store: a PostgreSQL URL (`postgres://…`) that several
    /// nodes share. When set, the log lives there and `db_path` is unused.
    pub store_url: Option<String>,
    /// This node's name in `Welcome` and in logs.
    pub server_id: String,
    /// Largest WebSocket frame or HTTP body accepted, and largest frame sent.
    pub max_frame_bytes: usize,
    /// Intents with a larger payload are rejected (`PAYLOAD_TOO_LARGE`),
    /// and the rejection is stored as the decision for their seq.
    pub max_payload_bytes: usize,
    /// Group commit or one commit per intent.
    pub commit_mode: CommitMode,
    /// Most intents in one group commit.
    pub max_batch_intents: usize,
    /// Most payload bytes in one group commit.
    pub max_batch_bytes: usize,
    /// Most events in one catch-up frame or JSON page.
    pub catch_up_events: usize,
    /// Bytes of event frames that may wait for one connection before its
    /// subscriptions pause (they then re-read the log at the client's pace).
    pub send_queue_bytes: usize,
    /// Bytes of recent encoded events kept in memory per followed stream,
    /// shared by all its subscribers.
    pub feed_buffer_bytes: usize,
    /// Bytes of recent encoded events kept for all followed streams
    /// together; with many busy streams each keeps its share.
    pub feed_memory_bytes: usize,
    /// Most subscriptions on one WebSocket connection.
    pub max_subscriptions: usize,
    /// How often the server pings each WebSocket.
    pub ping_interval: Duration,
    /// A WebSocket that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// How long shutdown waits for connections to close.
    pub shutdown_timeout: Duration,
    /// Serve this directory's files at `/` (with `index.html` for unknown paths).
    pub static_dir: Option<PathBuf>,
    /// Concurrent read connections to the database.
    pub max_readers: usize,
    /// The HS256 key of client tokens; `None` runs open: any client may
    /// read and write any stream (the server warns at start).
    pub jwt_secret: Option<Secret>,
    /// Public keys (a JWKS file) that verify tokens an identity provider
    /// signs (RS256, EdDSA, ...). With neither this nor `jwt_secret` the
    /// server runs open.
    pub jwt_jwks: Option<Jwks>,
    /// Origins (`https://app.example.com`) whose pages may open WebSockets
    /// and call the HTTP API; empty allows any. Requests without an
    /// `Origin` header (non-browser clients) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Most WebSocket connections and SSE feeds open at once.
    pub max_connections: usize,
    /// Intents per second one WebSocket connection may push, sustained;
    /// 0 turns the limit off.
    pub max_intents_per_sec: u32,
    /// Intents one connection may push at once before the rate applies.
    pub intents_burst: u32,
    /// How long a new WebSocket may take to send `Hello`.
    pub hello_timeout: Duration,
    /// How long a request's headers may take to arrive, whole; also how
    /// long an idle keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive, whole.
    pub body_read_timeout: Duration,
    /// Most TCP connections open at once, of any kind (HTTP requests,
    /// SSE feeds, WebSockets, sockets that sent nothing yet); more are
    /// answered `503` at once and closed.
    pub max_tcp_connections: usize,
    /// Most TCP connections from one client address (0: no limit). Off by
    /// default: behind a proxy every connection has the proxy's address.
    pub max_tcp_connections_per_address: usize,
    /// WebSockets and SSE feeds one subject may hold at once (0: no limit).
    pub max_subject_connections: usize,
    /// Intents per second one subject may push over all its connections
    /// and HTTP requests, sustained (0: no limit).
    pub max_subject_intents_per_sec: u32,
    /// Intents one subject may push at once before its rate applies.
    pub subject_intents_burst: u32,
    /// Payload bytes per second one subject may push, sustained (0: no limit).
    pub max_subject_bytes_per_sec: usize,
    /// Payload bytes one subject may push at once before its rate applies.
    pub subject_bytes_burst: usize,
    /// Streams one subject may create per hour (0: no limit).
    pub max_new_streams_per_hour: u32,
    /// Serve `/healthz`, `/livez` and `/metrics` on this address only
    /// (e.g. a private interface), not on the main one.
    pub ops_listen: Option<String>,
    /// `--static` serves dotfiles (`/.env`) and follows symlinks out of
    /// its directory only when this is set.
    pub static_unsafe: bool,
    /// JavaScript reducers that fold streams at the ordering point
    /// (`--reducer`), in rule order (the first matching pattern wins).
    pub reducers: Vec<ReducerModule>,
    /// Longest one call of a JavaScript reducer may run.
    pub reducer_timeout: Duration,
    /// Most bytes each JavaScript reducer's engine may allocate (its
    /// module and the states of all its streams).
    pub reducer_memory_bytes: usize,
    /// Longest one view evaluation may run (`--view-timeout`), in the
    /// views' own engine; a view stopped by it answers `REDUCER`.
    pub view_timeout: Duration,
    /// Most different (view, params) followed on one stream of this node
    /// at once (`--max-views-per-stream`).
    pub max_views_per_stream: usize,
    /// Most view watches on one WebSocket connection (`--max-watches`).
    pub max_watches: usize,
    /// Streams whose view reads are recorded in their read log
    /// (`--read-log`, stream patterns; see `readlog`).
    pub read_log: Vec<String>,
    /// Most streams whose reducer states a store's writer keeps in memory
    /// (`--reducer-max-streams`): past it the least recently used are
    /// dropped and folded again from the log when next needed.
    pub reducer_max_streams: usize,
    /// A snapshot of each folded stream every this many events
    /// (`--snapshot-every`; 0: none).
    pub snapshot_every: u64,
    /// Events of a folded stream kept below its head (`--retain-events`);
    /// older ones under its latest snapshot are deleted. `None`: this rule
    /// deletes nothing.
    pub retain_events: Option<u64>,
    /// How long a folded stream's events are kept (`--retain-age`, by
    /// their stored time); older ones under its latest snapshot are
    /// deleted. With `retain_events` too, an event is kept while either
    /// rule keeps it. `None`: this rule deletes nothing.
    pub retain_age: Option<Duration>,
}

/// One `--reducer PATTERN=FILE[#EXPORT]` rule: the streams `pattern`
/// matches (a name, or a prefix ending in `*`) are folded by the ES
/// module `path` (its export `export`, else `default`, else `reducer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReducerModule {
    /// Which streams.
    pub pattern: String,
    /// The module file.
    pub path: PathBuf,
    /// The export holding the reducer, when not the default one.
    pub export: Option<String>,
}

impl ReducerModule {
    /// Parses `PATTERN=FILE[#EXPORT]`.
    pub fn parse(rule: &str) -> Result<ReducerModule, String> {
        let Some((pattern, file)) = rule.split_once('=') else {
            return Err(format!(
                "reducer rule {rule:?} has no '=': write PATTERN=FILE[#EXPORT], e.g. 'todos/*=./src/todos.js'"
            ));
        };
        let pattern = pattern.trim();
        if pattern.is_empty() || pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
            return Err(format!(
                "reducer rule {rule:?}: the pattern must be a stream name or a prefix ending in '*'"
            ));
        }
        let (file, export) = match file.rsplit_once('#') {
            Some((f, e)) if !e.is_empty() => (f, Some(e.to_string())),
            Some((f, _)) => (f, None),
            None => (file, None),
        };
        if file.trim().is_empty() {
            return Err(format!("reducer rule {rule:?} names no module file"));
        }
        Ok(ReducerModule {
            pattern: pattern.to_string(),
            path: PathBuf::from(file.trim()),
            export,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db_path: PathBuf::from("./logsync.db"),
            store_url: None,
            reducers: Vec::new(),
            reducer_timeout: Duration::from_millis(100),
            reducer_memory_bytes: 256 << 20,
            reducer_max_streams: crate::fold::DEFAULT_MAX_STATES,
            view_timeout: Duration::from_millis(100),
            max_views_per_stream: 64,
            max_watches: 32,
            read_log: Vec::new(),
            snapshot_every: crate::fold::DEFAULT_SNAPSHOT_EVERY,
            retain_events: None,
            retain_age: None,
            server_id: random_server_id(),
            max_frame_bytes: sync_core::DEFAULT_MAX_FRAME_BYTES,
            max_payload_bytes: sync_core::DEFAULT_MAX_PAYLOAD_BYTES,
            commit_mode: CommitMode::Group,
            max_batch_intents: 4096,
            max_batch_bytes: 16 << 20,
            catch_up_events: 1000,
            send_queue_bytes: 1 << 20,
            feed_buffer_bytes: 4 << 20,
            feed_memory_bytes: 256 << 20,
            max_subscriptions: 256,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            shutdown_timeout: Duration::from_secs(10),
            static_dir: None,
            max_readers: 4,
            jwt_secret: None,
            jwt_jwks: None,
            allowed_origins: Vec::new(),
            max_connections: 50_000,
            max_intents_per_sec: 10_000,
            intents_burst: 10_000,
            hello_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_tcp_connections: 51_024,
            max_tcp_connections_per_address: 0,
            max_subject_connections: 1024,
            max_subject_intents_per_sec: 20_000,
            subject_intents_burst: 20_000,
            max_subject_bytes_per_sec: 32 << 20,
            subject_bytes_burst: 64 << 20,
            max_new_streams_per_hour: 10_000,
            ops_listen: None,
            static_unsafe: false,
        }
    }
}

impl Config {
    /// Checks the limits against each other.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.max_frame_bytes < 4096 || self.max_frame_bytes > u32::MAX as usize {
            return bad(format!(
                "max frame bytes must be between 4096 and {}, got {}",
                u32::MAX,
                self.max_frame_bytes
            ));
        }
        if self.max_payload_bytes + EVENT_OVERHEAD + EVENTS_FRAME_OVERHEAD > self.max_frame_bytes {
            return bad(format!(
                "max payload bytes ({}) must leave {} bytes of room in a frame of max frame bytes ({}): \
                 every event must fit in one frame",
                self.max_payload_bytes,
                EVENT_OVERHEAD + EVENTS_FRAME_OVERHEAD,
                self.max_frame_bytes
            ));
        }
        if self.max_batch_intents == 0 || self.max_batch_bytes == 0 {
            return bad("batch limits must be at least 1".into());
        }
        if self.catch_up_events == 0 {
            return bad("catch-up events must be at least 1".into());
        }
        if !(1024..=1 << 30).contains(&self.send_queue_bytes) {
            return bad(format!(
                "send queue bytes must be between 1KiB and 1GiB, got {}",
                self.send_queue_bytes
            ));
        }
        if self.max_subscriptions == 0 || self.max_readers == 0 {
            return bad("max subscriptions and max readers must be at least 1".into());
        }
        if self.ping_interval.is_zero() || self.idle_timeout <= self.ping_interval {
            return bad(format!(
                "the idle timeout ({:?}) must be longer than the ping interval ({:?})",
                self.idle_timeout, self.ping_interval
            ));
        }
        if let Some(dir) = &self.static_dir {
            if !dir.is_dir() {
                return bad(format!("static directory {} does not exist", dir.display()));
            }
        }
        if self.reducer_timeout.is_zero() || self.reducer_memory_bytes < (1 << 20) {
            return bad("the reducer timeout must be above 0 and its memory at least 1MiB".into());
        }
        if self.snapshot_every == 0 {
            let flag = match (self.retain_events, self.retain_age) {
                (Some(_), _) => Some("--retain-events"),
                (None, Some(_)) => Some("--retain-age"),
                (None, None) => None,
            };
            if let Some(flag) = flag {
                return bad(format!(
                    "{flag} needs snapshots: events are only deleted under a stored snapshot (set --snapshot-every above 0)"
                ));
            }
        }
        if self.reducer_max_streams == 0 {
            return bad("--reducer-max-streams must be at least 1".into());
        }
        if self.view_timeout.is_zero() || self.max_views_per_stream == 0 || self.max_watches == 0 {
            return bad(
                "--view-timeout, --max-views-per-stream and --max-watches must be above 0".into(),
            );
        }
        if let Some(url) = &self.store_url {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                // Not echoed: it may hold a password.
                return bad(
                    "--store takes a PostgreSQL URL: postgres://user:password@host:5432/database"
                        .into(),
                );
            }
        }
        if self.server_id.is_empty() {
            return bad("server id must not be empty".into());
        }
        if self.max_connections == 0 || self.max_tcp_connections == 0 {
            return bad("max connections and max TCP connections must be at least 1".into());
        }
        for (name, d) in [
            ("hello timeout", self.hello_timeout),
            ("header read timeout", self.header_read_timeout),
            ("body read timeout", self.body_read_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("the {name} must be longer than 0"));
            }
        }
        if self.max_subject_intents_per_sec > 0 && self.subject_intents_burst == 0 {
            return bad("the subject intents burst must be at least 1 when a rate is set".into());
        }
        if self.max_subject_bytes_per_sec > 0 && self.subject_bytes_burst < self.max_frame_bytes {
            return bad(format!(
                "the subject bytes burst ({}) must hold at least one frame ({} bytes)",
                self.subject_bytes_burst, self.max_frame_bytes
            ));
        }
        if self.max_intents_per_sec > 0 && self.intents_burst == 0 {
            return bad("the intents burst must be at least 1 when a rate is set".into());
        }
        for origin in &self.allowed_origins {
            check_origin(origin).map_err(Error::Config)?;
        }
        Ok(())
    }
}

/// An allowed origin is what browsers send in `Origin`: a scheme, a host
/// and maybe a port, no path (`https://app.example.com`,
/// `http://localhost:5173`), compared exactly (lowercase).
fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '*']) => {
            if origin.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(format!("allowed origin {origin:?} must be lowercase"));
            }
            Ok(())
        }
        _ => Err(format!(
            "allowed origin {origin:?} must look like https://app.example.com or \
             http://localhost:5173 (scheme, host, optional port; no path)"
        )),
    }
}

impl Config {
    /// Where the log lives, for logs: the SQLite file, or the PostgreSQL
    /// URL without its password.
    pub fn store_description(&self) -> String {
        match &self.store_url {
            Some(url) => postgres::parse_url(url)
                .map(|c| postgres::describe(&c))
                .unwrap_or_else(|_| "postgres (invalid URL)".into()),
            None => self.db_path.display().to_string(),
        }
    }
}

pub(crate) fn random_server_id() -> String {
    let mut b = [0u8; 4];
    // Without randomness every node is just "logsync": still correct, the
    // id only labels logs.
    if getrandom::fill(&mut b).is_err() {
        return "logsync".into();
    }
    format!("logsync-{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        assert!(Config::default().validate().is_ok());
        let c = Config {
            max_payload_bytes: 1 << 20,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            idle_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(2),
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn compaction_needs_snapshots_on_every_store() {
        let c = Config {
            retain_events: Some(5000),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        let c = Config {
            retain_events: Some(5000),
            snapshot_every: 0,
            ..Config::default()
        };
        let err = c.validate().expect_err("no snapshots").to_string();
        assert!(
            err.contains("--retain-events") && err.contains("--snapshot-every"),
            "{err}"
        );
        let c = Config {
            retain_age: Some(Duration::from_secs(3600)),
            snapshot_every: 0,
            ..Config::default()
        };
        let err = c.validate().expect_err("no snapshots").to_string();
        assert!(
            err.contains("--retain-age") && err.contains("--snapshot-every"),
            "{err}"
        );
        // PostgreSQL compacts too.
        let c = Config {
            retain_events: Some(5000),
            retain_age: Some(Duration::from_secs(7 * 86_400)),
            store_url: Some("postgres://app@db/logs".into()),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }

    /// Runs without PostgreSQL: the URL is checked at start, and what the
    /// server logs about it never holds the password.
    #[test]
    fn store_urls_are_checked_and_logged_without_passwords() {
        let config = Config {
            store_url: Some("postgresql://app:s3cret@db.internal/logs".into()),
            ..Config::default()
        };
        assert!(config.validate().is_ok());
        assert_eq!(
            config.store_description(),
            "postgres://app@db.internal:5432/logs"
        );
        let config = Config {
            store_url: Some("mysql://app:s3cret@db.internal/logs".into()),
            ..Config::default()
        };
        let err = config.validate().expect_err("not PostgreSQL").to_string();
        assert!(err.contains("postgres://"), "{err}");
        assert!(!err.contains("s3cret"), "the URL is not echoed: {err}");
    }
}
