//! What every handler shares: the [`AppState`] of one running server.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access;
use crate::config::Config;
use crate::hub::Hub;
use crate::intake::IntentPolicy;
use crate::metrics::Metrics;
use crate::readlog::ReadLog;
use crate::store::LogStore;
use crate::subjects;
use crate::views::Viewer;

/// What every handler shares.
pub(crate) struct AppState {
    pub config: Config,
    pub store: Arc<dyn LogStore>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<dyn IntentPolicy>,
    /// Evaluates views beside the writer.
    pub viewer: Arc<Viewer>,
    /// Records reads of views (`--read-log`).
    pub read_log: ReadLog,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    /// Every WebSocket connection, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Places under `max_connections`, for WebSocket connections and SSE feeds.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// Client ids known to be bound to a subject.
    pub bindings: access::Bindings,
    /// What each subject holds and spends (connections, rates).
    pub subjects: Arc<subjects::Subjects>,
}

impl AppState {
    pub(crate) fn new(
        config: Config,
        store: Arc<dyn LogStore>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        policy: Arc<dyn IntentPolicy>,
        viewer: Arc<Viewer>,
        shutdown: CancellationToken,
    ) -> AppState {
        let connections = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
        let subjects = Arc::new(subjects::Subjects::new(&config, metrics.clone()));
        let read_log = ReadLog::new(&config.read_log);
        AppState {
            subjects,
            config,
            store,
            hub,
            metrics,
            policy,
            viewer,
            read_log,
            shutdown,
            tracker: TaskTracker::new(),
            connections,
            bindings: access::Bindings::default(),
        }
    }
}

impl AppState {
    /// A place under the connection limit, when one is free.
    pub(crate) fn connection_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.connections.clone().try_acquire_owned().ok()
    }
}
