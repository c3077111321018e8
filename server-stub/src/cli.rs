//! `logsync-server`'s command line ([`Cli`]), parsed with clap, and how it
//! becomes a [`Config`]. Every flag has an environment variable, so
//! container deployments need no flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::Parser;

use crate::auth::{Jwks, Secret};
use crate::config::{random_server_id, Config, ReducerModule};
use crate::error::Error;
use crate::store::CommitMode;

/// `--commit-mode group|per-intent`. The mode itself is the store's; the
/// command line only names it.
impl clap::ValueEnum for CommitMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[CommitMode::Group, CommitMode::PerIntent]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            CommitMode::Group => PossibleValue::new("group").help(
                "Every intent waiting when a commit starts goes into one transaction (one fsync \
                 for the lot). The default, and the one to run",
            ),
            CommitMode::PerIntent => PossibleValue::new("per-intent").help(
                "One transaction (one fsync) per intent. Slower by design; it exists so \
                 benchmarks can measure what group commit buys on the same code",
            ),
        })
    }
}

/// Normalises origins from the command line: trimmed, lowercase, without a
/// trailing slash; empty entries dropped.
pub fn normalize_origins(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect()
}

/// Log line format on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `logsync-server`'s command line. Every flag also reads an environment
/// variable; a flag wins over its variable.
#[derive(Parser, Debug)]
#[command(
    name = "logsync-server",
    version,
    about = "Logsync's companion server: one durable, ordered log per stream, \
             exactly-once intents, live fan-out over WebSocket, HTTP and SSE.",
    long_about = None,
    after_help = "On start, after binding, prints one line to stdout:\n  \
                  logsync-server listening on http://<addr>\n\
                  Logs go to stderr (filter with RUST_LOG, e.g. RUST_LOG=debug).\n\
                  SIGTERM or Ctrl-C: stop accepting, finish in-flight commits, close sockets (1001)."
)]
pub struct Cli {
    /// Address to listen on; port 0 picks a free port (the line on stdout tells which).
    #[arg(long, env = "LOGSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// SQLite file of the log; created when missing (its directory must exist).
    #[arg(long, env = "LOGSYNC_DB", default_value = "./logsync.db")]
    pub db: PathBuf,

    /// The scale-out store instead of --db: a PostgreSQL URL
    /// (postgres://user:password@host:5432/database) that several nodes share. The schema is
    /// created or migrated at start.
    #[arg(
        long,
        env = "LOGSYNC_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,

    /// Fold the streams PATTERN matches (a name, or a prefix ending in `*`) with the reducer of
    /// the ES module FILE (its `default` export, else `reducer`, else the one named after `#`), at
    /// the ordering point: an intent the reducer throws on is rejected, never appended.
    /// Repeatable; the first matching rule wins. In LOGSYNC_REDUCERS, rules are separated by ';'.
    /// The module's `schemaVersion`, `minSchemaVersion`, `upcast` and `migrate` exports say how it
    /// takes actions and states of older versions of the app (README: Schema versions).
    #[arg(
        long = "reducer",
        env = "LOGSYNC_REDUCERS",
        value_delimiter = ';',
        value_name = "PATTERN=FILE[#EXPORT]",
        value_parser = ReducerModule::parse
    )]
    pub reducers: Vec<ReducerModule>,

    /// Longest one reducer call may run; a reducer stopped by it refuses the intent (REDUCER).
    #[arg(long, env = "LOGSYNC_REDUCER_TIMEOUT", default_value = "100ms", value_parser = parse_duration)]
    pub reducer_timeout: Duration,

    /// Most memory each reducer module's engine may allocate (its states included); a reducer
    /// stopped by it refuses the intent (REDUCER).
    #[arg(long, env = "LOGSYNC_REDUCER_MEMORY", default_value = "256MiB", value_parser = parse_size)]
    pub reducer_memory: usize,

    /// Most streams whose reducer states the writer keeps in memory; past it the least recently
    /// used are dropped and folded again from the log when next needed.
    #[arg(long, env = "LOGSYNC_REDUCER_MAX_STREAMS", default_value_t = crate::fold::DEFAULT_MAX_STATES)]
    pub reducer_max_streams: usize,

    /// Longest one evaluation of a view may run (CPU time, in the views' own engine, never on the
    /// writer's path); a view stopped by it is reported to its readers as REDUCER.
    #[arg(long, env = "LOGSYNC_VIEW_TIMEOUT", default_value = "100ms", value_parser = parse_duration)]
    pub view_timeout: Duration,

    /// Most different views (name and params) followed live on one stream of this node at once;
    /// one more is refused with TOO_MANY_SUBSCRIPTIONS.
    #[arg(long, env = "LOGSYNC_MAX_VIEWS_PER_STREAM", default_value_t = 64)]
    pub max_views_per_stream: usize,

    /// Most view watches on one WebSocket connection.
    #[arg(long, env = "LOGSYNC_MAX_WATCHES", default_value_t = 32)]
    pub max_watches: usize,

    /// Record every read of a view of the streams PATTERN matches (a stream name, or a prefix
    /// ending in `*`) as an event of the stream `~reads/<stream>`, durably, before the read is
    /// answered: who read which view with which params at which offset. Repeatable.
    #[arg(
        long = "read-log",
        env = "LOGSYNC_READ_LOG",
        value_delimiter = ';',
        value_name = "PATTERN"
    )]
    pub read_log: Vec<String>,

    /// Store the state of each stream a reducer folds every N events (its snapshot: a new client
    /// starts from it, a restarted server rebuilds from it); 0 stores none.
    #[arg(long, env = "LOGSYNC_SNAPSHOT_EVERY", value_name = "N", default_value_t = crate::fold::DEFAULT_SNAPSHOT_EVERY)]
    pub snapshot_every: u64,

    /// Compact the streams a reducer folds: keep only the last N events (and every event above
    /// the latest snapshot), delete the older ones. Off by default: every event is kept.
    #[arg(long, env = "LOGSYNC_RETAIN_EVENTS", value_name = "N")]
    pub retain_events: Option<u64>,

    /// Compact the streams a reducer folds by age: delete the events under the latest snapshot
    /// stored longer than D ago (e.g. 30s, 15m, 7d), idle streams too. With --retain-events as
    /// well, an event is kept while either rule keeps it. Off by default.
    #[arg(long, env = "LOGSYNC_RETAIN_AGE", value_name = "D", value_parser = parse_age)]
    pub retain_age: Option<Duration>,

    /// Serve a built web app from this directory at `/` (unknown non-API GET paths get index.html).
    #[arg(long = "static", env = "LOGSYNC_STATIC", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Name of this node in Welcome frames and logs (default: random).
    #[arg(long, env = "LOGSYNC_SERVER_ID")]
    pub server_id: Option<String>,

    /// Largest WebSocket frame or HTTP body accepted, and largest frame sent (e.g. 1MiB).
    #[arg(long, env = "LOGSYNC_MAX_FRAME_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub max_frame_bytes: usize,

    /// Intents with a larger payload are rejected with PAYLOAD_TOO_LARGE; the rejection is
    /// stored, so a resend of that seq gets the same answer.
    #[arg(long, env = "LOGSYNC_MAX_PAYLOAD_BYTES", default_value = "256KiB", value_parser = parse_size)]
    pub max_payload_bytes: usize,

    /// `group`: one transaction (one fsync) for every intent waiting; `per-intent`: one each
    /// (for benchmarks).
    #[arg(long, env = "LOGSYNC_COMMIT_MODE", value_enum, default_value = "group")]
    pub commit_mode: CommitMode,

    /// Most intents in one group commit.
    #[arg(long, env = "LOGSYNC_MAX_BATCH_INTENTS", default_value_t = 4096)]
    pub max_batch_intents: usize,

    /// Most payload bytes in one group commit.
    #[arg(long, env = "LOGSYNC_MAX_BATCH_BYTES", default_value = "16MiB", value_parser = parse_size)]
    pub max_batch_bytes: usize,

    /// Most events per catch-up frame or JSON page.
    #[arg(long, env = "LOGSYNC_CATCH_UP_EVENTS", default_value_t = 1000)]
    pub catch_up_events: usize,

    /// Bytes of event frames that may queue for one connection; past it the connection's
    /// subscriptions pause and later re-read the log at the client's pace.
    #[arg(long, env = "LOGSYNC_SEND_QUEUE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub send_queue_bytes: usize,

    /// Bytes of recent encoded events kept per followed stream, shared by its subscribers.
    #[arg(long, env = "LOGSYNC_FEED_BUFFER_BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub feed_buffer_bytes: usize,

    /// Bytes of recent encoded events kept for all followed streams together (each busy
    /// stream keeps its share, at most --feed-buffer-bytes).
    #[arg(long, env = "LOGSYNC_FEED_MEMORY_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub feed_memory_bytes: usize,

    /// Most subscriptions on one WebSocket connection.
    #[arg(long, env = "LOGSYNC_MAX_SUBSCRIPTIONS", default_value_t = 256)]
    pub max_subscriptions: usize,

    /// How often each WebSocket is pinged (e.g. 15s, 500ms).
    #[arg(long, env = "LOGSYNC_PING_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Close a WebSocket that has sent nothing, not even a pong, for this long.
    #[arg(long, env = "LOGSYNC_IDLE_TIMEOUT", default_value = "45s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// On shutdown, how long to wait for connections to close.
    #[arg(long, env = "LOGSYNC_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Concurrent read connections to the database.
    #[arg(long, env = "LOGSYNC_MAX_READERS", default_value_t = 4)]
    pub max_readers: usize,

    /// Log format on stderr.
    #[arg(long, env = "LOGSYNC_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// OpenTelemetry collector to export each push's span to, over OTLP/HTTP
    /// (`http://collector:4318`; `/v1/traces` is added when the URL has no path). Needs a
    /// server built with the `otel` feature; without it the server refuses to start with
    /// this set.
    #[arg(long, env = "LOGSYNC_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// File holding the HS256 secret of client tokens (its bytes, a trailing newline dropped).
    /// Or set LOGSYNC_JWT_SECRET. Without either the server runs open: anyone may read and
    /// write every stream.
    #[arg(
        long,
        env = "LOGSYNC_JWT_SECRET_FILE",
        value_name = "PATH",
        global = true
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// JWKS file ({"keys": [...]}) of an identity provider's public keys: tokens signed with
    /// them (RS256, PS256, ES256, EdDSA; the key's kid picks it) are accepted, with or without
    /// a secret. The server refuses to start if the file is unreadable or a key is unusable.
    #[arg(long, env = "LOGSYNC_JWT_JWKS_FILE", value_name = "PATH")]
    pub jwt_jwks_file: Option<PathBuf>,

    /// Origins whose pages may open WebSockets and call the API, comma-separated
    /// (e.g. https://app.example.com,http://localhost:5173). Others get 403 ORIGIN_FORBIDDEN;
    /// requests without an Origin header (non-browser clients) are allowed. Default: any origin.
    #[arg(
        long,
        env = "LOGSYNC_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGINS"
    )]
    pub allowed_origins: Vec<String>,

    /// Most WebSocket connections and SSE feeds open at once; more get 429 TOO_MANY_CONNECTIONS.
    #[arg(long, env = "LOGSYNC_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Intents per second one WebSocket connection may push, sustained (0: no limit). A client
    /// a little over it is slowed down; one far over it gets RATE_LIMITED and is disconnected.
    #[arg(long, env = "LOGSYNC_MAX_INTENTS_PER_SEC", default_value_t = 10_000)]
    pub max_intents_per_sec: u32,

    /// Intents one connection may push at once before the rate applies (default: the rate).
    #[arg(long, env = "LOGSYNC_INTENTS_BURST")]
    pub intents_burst: Option<u32>,

    /// How long a new WebSocket may take to send Hello; then IDLE_TIMEOUT and close.
    #[arg(long, env = "LOGSYNC_HELLO_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub hello_timeout: Duration,

    /// How long a request's headers may take to arrive, whole (however slowly they drip);
    /// also how long an idle keep-alive connection is kept. Then the connection is closed.
    #[arg(long, env = "LOGSYNC_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a request body may take to arrive, whole; then 408 IDLE_TIMEOUT.
    #[arg(long, env = "LOGSYNC_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Most TCP connections open at once, of any kind (requests, SSE feeds, WebSockets, sockets
    /// that sent nothing yet); more get a fixed 503 and are closed. Default: --max-connections
    /// + 1024. Lowered at start to fit under the open-files limit (ulimit -n).
    #[arg(long, env = "LOGSYNC_MAX_TCP_CONNECTIONS")]
    pub max_tcp_connections: Option<usize>,

    /// Most TCP connections from one client IP address (0: no limit, the default: behind a
    /// reverse proxy every connection comes from the proxy). For a server reached directly.
    #[arg(
        long,
        env = "LOGSYNC_MAX_TCP_CONNECTIONS_PER_ADDRESS",
        default_value_t = 0
    )]
    pub max_tcp_connections_per_address: usize,

    /// WebSockets and SSE feeds one subject (token `sub`; client address when authentication
    /// is off) may hold at once, on this node; more get TOO_MANY_CONNECTIONS (0: no limit).
    #[arg(long, env = "LOGSYNC_MAX_SUBJECT_CONNECTIONS", default_value_t = 1024)]
    pub max_subject_connections: usize,

    /// Intents per second one subject may push over all its WebSockets and HTTP requests,
    /// sustained (0: no limit); a little over is paced, far over gets RATE_LIMITED.
    #[arg(
        long,
        env = "LOGSYNC_MAX_SUBJECT_INTENTS_PER_SEC",
        default_value_t = 20_000
    )]
    pub max_subject_intents_per_sec: u32,

    /// Intents one subject may push at once before its rate applies (default: the rate).
    #[arg(long, env = "LOGSYNC_SUBJECT_INTENTS_BURST")]
    pub subject_intents_burst: Option<u32>,

    /// Payload bytes per second one subject may push over all its connections, sustained
    /// (0: no limit); a little over is paced, far over gets RATE_LIMITED.
    #[arg(long, env = "LOGSYNC_MAX_SUBJECT_BYTES_PER_SEC", default_value = "32MiB", value_parser = parse_size)]
    pub max_subject_bytes_per_sec: usize,

    /// Payload bytes one subject may push at once before its byte rate applies.
    #[arg(long, env = "LOGSYNC_SUBJECT_BYTES_BURST", default_value = "64MiB", value_parser = parse_size)]
    pub subject_bytes_burst: usize,

    /// Streams one subject may create per hour, on this node (0: no limit); more get
    /// RATE_LIMITED.
    #[arg(
        long,
        env = "LOGSYNC_MAX_NEW_STREAMS_PER_HOUR",
        default_value_t = 10_000
    )]
    pub max_new_streams_per_hour: u32,

    /// Serve /healthz, /livez and /metrics on this address only (e.g. 10.0.0.5:9090 or
    /// 127.0.0.1:9090), not on --listen.
    #[arg(long, env = "LOGSYNC_OPS_LISTEN", value_name = "ADDR")]
    pub ops_listen: Option<String>,

    /// Let --static serve dotfiles (/.env, /.git/…) and follow symlinks that lead out of its
    /// directory. Off by default: both are refused with 404.
    #[arg(long, env = "LOGSYNC_STATIC_UNSAFE")]
    pub static_unsafe: bool,

    #[command(subcommand)]
    /// A helper command instead of serving.
    pub command: Option<Command>,
}

/// `logsync-server <command>`: helpers that do not serve.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Prints a signed token for development and tests (reads the secret like the server:
    /// LOGSYNC_JWT_SECRET or --jwt-secret-file). Production tokens come from your auth service.
    Token {
        /// The subject (user id) the token speaks for.
        #[arg(long)]
        sub: String,
        /// A stream pattern it may read (repeatable; a trailing * matches any suffix), or a
        /// view grant PATTERN#VIEW: only the view VIEW of those streams (e.g. 'todos/*#open').
        #[arg(long)]
        read: Vec<String>,
        /// A stream pattern it may write (repeatable; views cannot be written).
        #[arg(long)]
        write: Vec<String>,
        /// How long it is valid (e.g. 15m, 1h, 24h).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// Mint a token that expired `--ttl` ago instead (for tests of
        /// expiry handling; it is refused as UNAUTHORIZED).
        #[arg(long)]
        expired: bool,
    },

    /// Binds a client id to a subject in the store (--db or --store), as its first
    /// authenticated use would: for client ids used while the server ran without
    /// authentication, before switching it on. Refuses an id bound to another subject.
    Bind {
        /// The client id: 32 hex digits.
        #[arg(long)]
        client_id: String,
        /// The subject (token `sub`) it belongs to.
        #[arg(long)]
        sub: String,
    },
}

impl Cli {
    /// The [`Config`] these flags describe (validated).
    pub fn to_config(&self) -> Result<Config, Error> {
        let config = Config {
            db_path: self.db.clone(),
            store_url: self.store.clone(),
            server_id: self.server_id.clone().unwrap_or_else(random_server_id),
            max_frame_bytes: self.max_frame_bytes,
            max_payload_bytes: self.max_payload_bytes,
            commit_mode: self.commit_mode,
            max_batch_intents: self.max_batch_intents,
            max_batch_bytes: self.max_batch_bytes,
            catch_up_events: self.catch_up_events,
            send_queue_bytes: self.send_queue_bytes,
            feed_buffer_bytes: self.feed_buffer_bytes,
            feed_memory_bytes: self.feed_memory_bytes,
            max_subscriptions: self.max_subscriptions,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
            static_dir: self.static_dir.clone(),
            max_readers: self.max_readers,
            jwt_secret: self.jwt_secret()?,
            jwt_jwks: match &self.jwt_jwks_file {
                Some(path) => Some(Jwks::from_file(path).map_err(Error::Config)?),
                None => None,
            },
            allowed_origins: normalize_origins(&self.allowed_origins),
            max_connections: self.max_connections,
            max_intents_per_sec: self.max_intents_per_sec,
            intents_burst: self.intents_burst.unwrap_or(self.max_intents_per_sec),
            hello_timeout: self.hello_timeout,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            max_tcp_connections: self
                .max_tcp_connections
                .unwrap_or(self.max_connections.saturating_add(1024)),
            max_tcp_connections_per_address: self.max_tcp_connections_per_address,
            max_subject_connections: self.max_subject_connections,
            max_subject_intents_per_sec: self.max_subject_intents_per_sec,
            subject_intents_burst: self
                .subject_intents_burst
                .unwrap_or(self.max_subject_intents_per_sec),
            max_subject_bytes_per_sec: self.max_subject_bytes_per_sec,
            subject_bytes_burst: self.subject_bytes_burst,
            max_new_streams_per_hour: self.max_new_streams_per_hour,
            ops_listen: self.ops_listen.clone(),
            static_unsafe: self.static_unsafe,
            reducers: self.reducers.clone(),
            reducer_timeout: self.reducer_timeout,
            reducer_memory_bytes: self.reducer_memory,
            reducer_max_streams: self.reducer_max_streams,
            view_timeout: self.view_timeout,
            max_views_per_stream: self.max_views_per_stream,
            max_watches: self.max_watches,
            read_log: self.read_log.clone(),
            snapshot_every: self.snapshot_every,
            retain_events: self.retain_events,
            retain_age: self.retain_age,
        };
        config.validate()?;
        Ok(config)
    }

    /// The token secret from `--jwt-secret-file` or `LOGSYNC_JWT_SECRET`
    /// (never a flag: command lines are visible to every local user).
    pub fn jwt_secret(&self) -> Result<Option<Secret>, Error> {
        secret_from(
            self.jwt_secret_file.as_deref(),
            std::env::var_os("LOGSYNC_JWT_SECRET"),
        )
    }
}

/// Reads the secret from a file or from the value of `LOGSYNC_JWT_SECRET`;
/// setting both is refused, so it is always clear which key is in use.
pub fn secret_from(
    file: Option<&std::path::Path>,
    env: Option<std::ffi::OsString>,
) -> Result<Option<Secret>, Error> {
    let bytes =
        match (file, env) {
            (Some(_), Some(_)) => return Err(Error::Config(
                "both --jwt-secret-file (LOGSYNC_JWT_SECRET_FILE) and LOGSYNC_JWT_SECRET are set; \
                 set one"
                    .into(),
            )),
            (None, None) => return Ok(None),
            (Some(path), None) => {
                let mut b = std::fs::read(path).map_err(|e| {
                    Error::Config(format!(
                        "cannot read the JWT secret file {}: {e}",
                        path.display()
                    ))
                })?;
                while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                    b.pop();
                }
                b
            }
            (None, Some(v)) => v.into_encoded_bytes(),
        };
    Secret::new(bytes).map(Some).map_err(Error::Config)
}

/// Parses a byte size: a plain number of bytes, or a number with `KiB`,
/// `MiB`, `GiB` (or `k`, `m`, `g`, also binary).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. 1048576, 256KiB or 1MiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h` (a plain number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 500ms, 15s or 2m"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}; use ms, s, m or h"
            ))
        }
    };
    Ok(d)
}

/// A retention age: a number and a unit, several summed (`30s`, `15m`,
/// `36h`, `7d`, `2w`, `1d 12h`; humantime's units).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not an age ({e}); write a number and a unit, e.g. 30s, 15m, 36h or 7d")
    })?;
    if d.is_zero() {
        return Err(format!(
            "{s:?}: a retention age must be longer than 0 (leave the flag off to keep every event)"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_age("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(15 * 60)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age(" 1d 12h "), Ok(Duration::from_secs(36 * 3600)));
        for bad in ["", "7", "seven days", "7 parsecs", "-1d", "0s"] {
            let err = parse_age(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn security_flags() {
        let cli = Cli::parse_from([
            "logsync-server",
            "--allowed-origins",
            " https://App.example.com/ ,http://localhost:5173",
            "--max-intents-per-sec",
            "50",
        ]);
        assert_eq!(
            normalize_origins(&cli.allowed_origins),
            vec!["https://app.example.com", "http://localhost:5173"]
        );
        assert_eq!(cli.intents_burst.unwrap_or(cli.max_intents_per_sec), 50);
        for bad in [
            "app.example.com",
            "https://a.example/path",
            "ftp://x",
            "https://*.x",
        ] {
            let c = Config {
                allowed_origins: vec![bad.into()],
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
        let c = Config {
            max_connections: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        // The secret: a file (trailing newline dropped) or the variable, not both.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{}\n", "k".repeat(40))).expect("write");
        let s = secret_from(Some(&path), None).expect("ok").expect("some");
        assert_eq!(s.bytes(), "k".repeat(40).as_bytes());
        assert!(secret_from(Some(&path), Some("x".repeat(40).into())).is_err());
        assert!(secret_from(None, Some("short".into())).is_err());
        assert!(secret_from(Some(&dir.path().join("missing")), None).is_err());
        assert_eq!(secret_from(None, None).expect("ok"), None);
        let cli = Cli::parse_from([
            "logsync-server",
            "token",
            "--sub",
            "u1",
            "--read",
            "todos/*",
            "--ttl",
            "2h",
        ]);
        match cli.command {
            Some(Command::Token {
                sub,
                read,
                write,
                ttl,
                expired,
            }) => {
                assert!(!expired);
                assert_eq!(
                    (sub.as_str(), read, write),
                    ("u1", vec!["todos/*".to_string()], vec![])
                );
                assert_eq!(ttl, Duration::from_secs(7200));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_defaults() {
        let cli = Cli::parse_from(["logsync-server"]);
        assert_eq!(cli.listen, "127.0.0.1:8080");
        assert_eq!(cli.db, PathBuf::from("./logsync.db"));
        let c = cli.to_config().expect("defaults are valid");
        assert_eq!(c.max_payload_bytes, 256 * 1024);
        assert_eq!(c.commit_mode, CommitMode::Group);
        let cli = Cli::parse_from([
            "logsync-server",
            "--commit-mode",
            "per-intent",
            "--max-payload-bytes",
            "100",
        ]);
        let c = cli.to_config().expect("valid");
        assert_eq!(c.commit_mode, CommitMode::PerIntent);
        assert_eq!(c.max_payload_bytes, 100);
        assert_eq!((c.retain_events, c.retain_age), (None, None));
    }

    #[test]
    fn retention_flags() {
        let cli = Cli::try_parse_from([
            "logsync-server",
            "--store",
            "postgres://app@db/logs",
            "--retain-events",
            "5000",
            "--retain-age",
            "7d",
        ])
        .expect("parses");
        let c = cli.to_config().expect("valid on PostgreSQL too");
        assert_eq!(c.retain_events, Some(5000));
        assert_eq!(c.retain_age, Some(Duration::from_secs(7 * 86_400)));
        let err = Cli::try_parse_from(["logsync-server", "--retain-age", "soon"])
            .expect_err("not an age")
            .to_string();
        assert!(
            err.contains("--retain-age") && err.contains("\"soon\""),
            "{err}"
        );
        let cli = Cli::try_parse_from([
            "logsync-server",
            "--retain-age",
            "15m",
            "--snapshot-every",
            "0",
        ])
        .expect("parses");
        let err = cli.to_config().expect_err("no snapshots").to_string();
        assert!(err.contains("--retain-age needs snapshots"), "{err}");
    }
}
