#![doc = include_str!("../README.md")]

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod fold;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod intake;
pub mod launch;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod store;
pub mod trace;

mod access;
mod http;
mod limits;
mod listen;
mod logfmt;
mod readlog;
mod respond;
mod router;
mod state;
mod subjects;
mod views;
mod ws;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cli::Cli;
pub use config::Config;
pub use error::Error;
pub use respond::status_for;
pub use store::CommitMode;
pub use ws::close_code;

use fold::js::{JsLimits, JsReducer};
use fold::Reducers;
use hub::Hub;
use intake::{IntentPolicy, SizeLimit};
use metrics::Metrics;
use state::AppState;
use store::postgres::{PostgresOptions, PostgresStore};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{LogStore, ReadLimits};

/// A server with its store open, ready to serve a listener.
pub struct Server {
    config: Config,
    store: Arc<dyn LogStore>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    policy: Arc<dyn IntentPolicy>,
    viewer: Arc<views::Viewer>,
}

impl Server {
    /// Validates `config` and opens the store it names: PostgreSQL when
    /// `store_url` is set (creating or migrating its schema), else the
    /// SQLite file (creating the file and its epoch on first use).
    pub async fn open(config: Config) -> Result<Server, Error> {
        Server::open_with_reducers(config, Reducers::default()).await
    }

    /// [`Server::open`], with `reducers` folding the streams they match at
    /// the ordering point besides the JavaScript modules of
    /// `config.reducers` (whose rules come first). This is how a Rust
    /// [`fold::StreamReducer`] is registered. A module that fails to load
    /// is an [`Error::ReducerLoad`] naming its file: the server does not
    /// start.
    pub async fn open_with_reducers(config: Config, reducers: Reducers) -> Result<Server, Error> {
        config.validate()?;
        let reducers = load_reducers(&config, reducers)?;
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(
            config.feed_buffer_bytes,
            config.feed_memory_bytes,
            config.max_frame_bytes,
            metrics.clone(),
        ));
        let view_reducers = reducers.for_views(config.view_timeout)?;
        let store = open_store(&config, reducers, hub.clone(), metrics.clone()).await?;
        let viewer = views::Viewer::start(
            store.clone(),
            view_reducers,
            config.max_views_per_stream,
            metrics.clone(),
        )?;
        let policy = Arc::new(SizeLimit {
            max_payload_bytes: config.max_payload_bytes,
        });
        Ok(Server {
            config,
            store,
            hub,
            metrics,
            policy,
            viewer,
        })
    }

    /// Replaces the intake policy (the hook that accepts or rejects
    /// intents, e.g. for authorisation). The default only enforces
    /// `max_payload_bytes`.
    pub fn with_policy(mut self, policy: Arc<dyn IntentPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// The log's epoch.
    pub fn epoch(&self) -> &sync_core::Epoch {
        self.store.epoch()
    }

    /// Serves `listener` until `shutdown` resolves, then stops accepting,
    /// closes every WebSocket with `SHUTTING_DOWN` (close code 1001) after
    /// sending the outcomes of pushes already taken, ends SSE feeds, and
    /// closes the store once its queued commits are durable.
    ///
    /// With `ops_listen` configured, `/healthz`, `/livez` and `/metrics`
    /// are served only on that address.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let ops = match &self.config.ops_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr} (--ops-listen): {e}"),
                ))
            })?),
            None => None,
        };
        self.serve_with_ops(listener, ops, shutdown).await
    }

    /// [`Server::serve`], with the operational endpoints on `ops` (and not
    /// on `listener`) when it is given.
    pub async fn serve_with_ops(
        self,
        listener: TcpListener,
        ops: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let token = CancellationToken::new();
        let state = Arc::new(AppState::new(
            self.config,
            self.store,
            self.hub,
            self.metrics,
            self.policy,
            self.viewer,
            token.clone(),
        ));
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            store = %state.config.store_description(),
            epoch = %state.store.epoch(),
            server_id = %state.config.server_id,
            commit_mode = ?state.config.commit_mode,
            "serving"
        );
        if state.config.jwt_secret.is_none() && state.config.jwt_jwks.is_none() {
            tracing::warn!(
                "AUTHENTICATION IS OFF: no JWT secret (LOGSYNC_JWT_SECRET or --jwt-secret-file) \
                 and no JWKS file (--jwt-jwks-file) is configured, so anyone who reaches this \
                 server may read and write every stream. Configure one before exposing it beyond \
                 this machine."
            );
        } else {
            tracing::info!(
                hs256 = state.config.jwt_secret.is_some(),
                jwks = ?state.config.jwt_jwks,
                "authentication on: tokens required"
            );
        }
        if state.config.allowed_origins.is_empty() {
            tracing::info!("browser pages of any origin may connect (--allowed-origins not set)");
        }
        let trigger = token.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let app = router::router(state.clone(), ops.is_none());
        let ops_server = ops.map(|ops| {
            match ops.local_addr() {
                Ok(a) => tracing::info!(addr = %a, "serving /healthz, /livez and /metrics"),
                Err(e) => tracing::warn!(error = %e, "operational listener has no address"),
            }
            tokio::spawn(listen::serve(
                ops,
                router::ops_router(state.clone()),
                64,
                0,
                state.config.header_read_timeout,
                state.metrics.clone(),
                token.clone(),
                state.config.shutdown_timeout,
            ))
        });
        let max_tcp = effective_tcp_cap(&state.config);
        listen::serve(
            listener,
            app,
            max_tcp,
            state.config.max_tcp_connections_per_address,
            state.config.header_read_timeout,
            state.metrics.clone(),
            token.clone(),
            state.config.shutdown_timeout,
        )
        .await;
        token.cancel();
        if let Some(ops) = ops_server {
            let _ = ops.await;
        }
        watcher.abort();
        tracing::info!("stopped accepting; closing connections");
        state.tracker.close();
        if tokio::time::timeout(state.config.shutdown_timeout, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = state.tracker.len(),
                "connections still open after the shutdown timeout"
            );
        }
        state.store.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The cap on accepted TCP connections: `max_tcp_connections`, lowered to
/// leave room under the process's open-files limit (the database, its
/// WAL, the listener and the log need descriptors too: when accept runs
/// out of them every request suffers, not only the new one).
fn effective_tcp_cap(config: &Config) -> usize {
    let wanted = config.max_tcp_connections;
    match listen::open_files_limit() {
        Some(files) => {
            let reserve = 32 + 2 * config.max_readers as u64;
            let room = files.saturating_sub(reserve).max(1) as usize;
            if room < wanted {
                tracing::warn!(
                    max_tcp_connections = wanted,
                    open_files_limit = files,
                    cap = room,
                    "the open-files limit is below --max-tcp-connections; accepting at most {room} \
                     connections (raise `ulimit -n` to accept more)"
                );
                room
            } else {
                wanted
            }
        }
        None => wanted,
    }
}

/// The store `config` names, open, for an administrative command (no
/// server: nobody follows its commits).
#[doc(hidden)]
pub async fn open_store_for_admin(config: &Config) -> Result<Arc<dyn LogStore>, Error> {
    let metrics = Arc::new(Metrics::default());
    let hub = Arc::new(Hub::new(
        config.feed_buffer_bytes,
        config.feed_memory_bytes,
        config.max_frame_bytes,
        metrics.clone(),
    ));
    open_store(config, Reducers::default(), hub, metrics).await
}

/// The rules of `config.reducers` (their modules loaded), then `extra`.
fn load_reducers(config: &Config, extra: Reducers) -> Result<Reducers, Error> {
    let limits = JsLimits {
        call_timeout: config.reducer_timeout,
        memory_bytes: config.reducer_memory_bytes,
        ..JsLimits::default()
    };
    let mut reducers = Reducers::default();
    for rule in &config.reducers {
        let reducer = JsReducer::load(&rule.path, rule.export.as_deref(), limits)?;
        tracing::info!(pattern = %rule.pattern, module = %rule.path.display(), "reducer loaded");
        reducers.add(&rule.pattern, Arc::new(reducer));
    }
    reducers.extend(extra);
    reducers.keep_states(config.reducer_max_streams);
    reducers.snapshots(crate::fold::SnapshotPolicy {
        every: config.snapshot_every,
        retain_events: config.retain_events,
        retain_age: config.retain_age,
        compact_every: None,
    });
    Ok(reducers)
}

/// The store `config` names, open, reporting commits to `hub`.
async fn open_store(
    config: &Config,
    reducers: Reducers,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn LogStore>, Error> {
    if let Some(url) = &config.store_url {
        let options = PostgresOptions {
            commit_mode: config.commit_mode,
            max_batch_intents: config.max_batch_intents,
            max_batch_bytes: config.max_batch_bytes,
            max_readers: config.max_readers,
            fanout_read: ReadLimits {
                max_events: config.catch_up_events,
                max_bytes: config.feed_buffer_bytes,
            },
            reducers,
            ..PostgresOptions::new(url.clone())
        };
        return Ok(Arc::new(PostgresStore::open(options, hub, metrics).await?));
    }
    let options = SqliteOptions {
        path: config.db_path.clone(),
        commit_mode: config.commit_mode,
        max_batch_intents: config.max_batch_intents,
        max_batch_bytes: config.max_batch_bytes,
        max_readers: config.max_readers,
        reducers,
    };
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(options, hub, metrics))
        .await
        .map_err(|e| Error::Storage(format!("opening the store failed: {e}")))??;
    Ok(Arc::new(store))
}

/// Opens the store that `config` names and serves `listener` until
/// `shutdown` resolves (see [`Server::serve`]).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Server::open(config).await?.serve(listener, shutdown).await
}
