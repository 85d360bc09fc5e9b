//! What every request handler shares: the runner, the configuration, the
//! key guard, the upload slots and the metrics handle. Nothing about a
//! client is kept here between requests.

use crate::auth::KeyGuard;
use crate::config::ServerConfig;
use culvert::Runner;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What every handler shares.
pub struct AppState {
    /// The engine: packages, executions, tenants, the store.
    pub runner: Arc<Runner>,
    /// How the server was configured.
    pub config: ServerConfig,
    /// Key lookups and per-key rate limits.
    pub keys: KeyGuard,
    /// Slots for uploads and inspections, which compile.
    pub uploads: Arc<Semaphore>,
    /// Slots for event streams, which poll the database.
    pub streams: Arc<Semaphore>,
    /// Renders `/metrics`; `None` when another recorder was installed.
    pub metrics: Option<PrometheusHandle>,
    /// Signs the dashboard's session cookies, with the fleet's shared
    /// secret (read from the database on first use).
    pub(crate) dashboard: tokio::sync::OnceCell<crate::dashboard::session::Signer>,
}

impl AppState {
    /// The shared state of a server with `config` in front of `runner`.
    pub fn new(
        runner: Arc<Runner>,
        config: ServerConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Arc<Self> {
        Arc::new(Self {
            keys: KeyGuard::new(
                config.key_cache_ttl,
                config.rate_per_second,
                config.rate_burst,
            ),
            uploads: Arc::new(Semaphore::new(config.max_concurrent_uploads.max(1))),
            streams: Arc::new(Semaphore::new(config.max_streams.max(1))),
            runner,
            config,
            metrics,
            dashboard: tokio::sync::OnceCell::new(),
        })
    }
}
