//! The reconcile loop: keeps the in-memory [`Registry`] equal to the
//! packages table.
//!
//! Its semantics follow cloacina 0.3.2's `RegistryReconciler`, adapted to
//! components, with its gaps fixed:
//!
//! - a pass reads `(id, content hash)` of every package in **one query**,
//!   compares it with what is loaded, unloads what is gone, loads what is
//!   new and reloads what changed; work is proportional to the change;
//! - [`ReconcilerConfig::package_operation_timeout`] is **enforced** on
//!   every load (fetching the bytes, compiling or loading from the cache,
//!   and `describe`), which is where a package can hang; cloacina defined it
//!   and never applied it. An unload only edits the in-memory registries
//!   and cannot block;
//! - a package that fails to load does not stop the pass (with
//!   [`ReconcilerConfig::continue_on_package_error`]); it is retried on
//!   later passes with exponential backoff, and its last error stays
//!   visible in [`Reconciler::status`];
//! - the loop runs on its interval, at once when this process registers or
//!   removes a package, and on PostgreSQL when any process does
//!   (LISTEN/NOTIFY);
//! - it shuts down gracefully on a watch signal.
//!
//! Each completed pass records its duration and the packages loaded as
//! metrics (`telemetry`).
//!
//! Unloading removes a package from the registries only: a task already
//! running holds its own `Arc` to the compiled code and finishes.

use super::in_memory::{RegisteredPackage, Registry};
use crate::package::{ContentHash, LoadError, PackageLoader};
use crate::store::{PackageEvent, Store, StoreError, now_ms};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify, broadcast, watch};
use uuid::Uuid;

/// How the reconciler behaves.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// How often to reconcile when nothing announces a change. Default 5 s.
    pub reconcile_interval: Duration,
    /// Reconcile once at start, before the first interval. Default on.
    pub enable_startup_reconciliation: bool,
    /// The longest a single load or unload may take. Default 30 s.
    pub package_operation_timeout: Duration,
    /// Keep going when one package fails. Default on.
    pub continue_on_package_error: bool,
    /// The first retry delay of a failed package. Default 1 s.
    pub failure_backoff_initial: Duration,
    /// The longest retry delay of a failed package. Default 5 min.
    pub failure_backoff_max: Duration,
    /// Loads that may run at once. Default 4.
    pub load_concurrency: usize,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            reconcile_interval: Duration::from_secs(5),
            enable_startup_reconciliation: true,
            package_operation_timeout: Duration::from_secs(30),
            continue_on_package_error: true,
            failure_backoff_initial: Duration::from_secs(1),
            failure_backoff_max: Duration::from_secs(300),
            load_concurrency: 4,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileResult {
    /// Packages loaded (new, or reloaded after a hash change).
    pub packages_loaded: Vec<Uuid>,
    /// Packages unloaded (gone, or about to be reloaded).
    pub packages_unloaded: Vec<Uuid>,
    /// Packages that failed, with the reason.
    pub packages_failed: Vec<(Uuid, String)>,
    /// Packages loaded after the pass.
    pub total_packages_tracked: usize,
    /// How long the pass took.
    #[serde(serialize_with = "ser_duration_ms")]
    pub reconciliation_duration: Duration,
}

fn ser_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl ReconcileResult {
    /// Whether the pass loaded or unloaded anything.
    pub fn has_changes(&self) -> bool {
        !self.packages_loaded.is_empty() || !self.packages_unloaded.is_empty()
    }

    /// Whether anything failed.
    pub fn has_failures(&self) -> bool {
        !self.packages_failed.is_empty()
    }
}

/// A loaded package, as status reports it.
#[derive(Debug, Clone, Serialize)]
pub struct PackageStatusDetail {
    /// The package id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// The name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The content hash.
    pub content_hash: String,
    /// Tasks over all workflows.
    pub task_count: usize,
    /// Workflow names.
    pub workflows: Vec<String>,
    /// When this host loaded it (ms).
    pub loaded_at: i64,
    /// Whether the load found compiled code in the cache.
    pub cache_hit: bool,
}

/// A package that failed to load.
#[derive(Debug, Clone, Serialize)]
pub struct FailedPackage {
    /// The package id.
    pub id: Uuid,
    /// The content hash it failed with.
    pub content_hash: String,
    /// The last error.
    pub error: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Milliseconds until the next attempt.
    pub next_retry_in_ms: u64,
}

/// The reconciler's state, for `culvert status`.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcilerStatus {
    /// How many packages are loaded.
    pub packages_loaded: usize,
    /// Each loaded package.
    pub package_details: Vec<PackageStatusDetail>,
    /// Each package that failed to load.
    pub failed: Vec<FailedPackage>,
    /// The last pass, if any.
    pub last_pass: Option<ReconcileResult>,
}

/// Why a pass stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReconcileError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A package failed and `continue_on_package_error` is off.
    #[error("package {id}: {reason}")]
    Package {
        /// The package.
        id: Uuid,
        /// Why.
        reason: String,
    },
}

struct Failure {
    hash: String,
    error: String,
    attempts: u32,
    retry_at: Instant,
}

#[derive(Default)]
struct State {
    loaded: HashMap<Uuid, ContentHash>,
    failed: HashMap<Uuid, Failure>,
    last_pass: Option<ReconcileResult>,
}

/// Keeps the registries equal to the database.
pub struct Reconciler {
    store: Arc<dyn Store>,
    loader: PackageLoader,
    registry: Arc<Registry>,
    config: ReconcilerConfig,
    state: Mutex<State>,
    wake: Notify,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("config", &self.config)
            .finish()
    }
}

impl Reconciler {
    /// A reconciler that loads `store`'s packages through `loader` into
    /// `registry`.
    pub fn new(
        store: Arc<dyn Store>,
        loader: PackageLoader,
        registry: Arc<Registry>,
        config: ReconcilerConfig,
    ) -> Self {
        Self {
            store,
            loader,
            registry,
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    /// The registries it maintains.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Its settings.
    pub fn config(&self) -> &ReconcilerConfig {
        &self.config
    }

    /// Ask the loop for a pass as soon as possible.
    pub fn trigger(&self) {
        self.wake.notify_one();
    }

    /// Run one pass.
    ///
    /// # Errors
    /// [`ReconcileError::Store`] when the database cannot be read, and
    /// [`ReconcileError::Package`] for a failed package when
    /// `continue_on_package_error` is off.
    pub async fn reconcile(&self) -> Result<ReconcileResult, ReconcileError> {
        let started = Instant::now();
        let mut state = self.state.lock().await;
        let db: HashMap<Uuid, String> = self
            .store
            .package_fingerprints()
            .await?
            .into_iter()
            .collect();
        let mut result = ReconcileResult::default();

        // Unload what is gone, and what changed (to be loaded again below).
        let to_unload: Vec<Uuid> = state
            .loaded
            .iter()
            .filter(|(id, hash)| db.get(id).is_none_or(|h| *h != hash.to_hex()))
            .map(|(id, _)| *id)
            .collect();
        for id in to_unload {
            let unload = async { self.unload(id) };
            match tokio::time::timeout(self.config.package_operation_timeout, unload).await {
                Ok(()) => {
                    state.loaded.remove(&id);
                    result.packages_unloaded.push(id);
                }
                Err(_) => {
                    let reason = format!(
                        "unload timed out after {:?}",
                        self.config.package_operation_timeout
                    );
                    result.packages_failed.push((id, reason.clone()));
                    if !self.config.continue_on_package_error {
                        return Err(ReconcileError::Package { id, reason });
                    }
                }
            }
        }
        state.failed.retain(|id, f| db.get(id) == Some(&f.hash));

        // Load what is new (or changed), skipping failures still backing off.
        let now = Instant::now();
        let to_load: Vec<(Uuid, String)> = db
            .iter()
            .filter(|(id, _)| !state.loaded.contains_key(id))
            .filter(|(id, hash)| {
                state
                    .failed
                    .get(id)
                    .is_none_or(|f| f.hash != **hash || f.retry_at <= now)
            })
            .map(|(id, hash)| (*id, hash.clone()))
            .collect();
        let outcomes: Vec<(Uuid, String, Result<Arc<RegisteredPackage>, String>)> =
            futures::stream::iter(to_load.into_iter().map(|(id, hash)| async move {
                let outcome = tokio::time::timeout(
                    self.config.package_operation_timeout,
                    self.load(id, &hash),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "load timed out after {} ms (package_operation_timeout)",
                        self.config.package_operation_timeout.as_millis()
                    ))
                });
                (id, hash, outcome)
            }))
            .buffer_unordered(self.config.load_concurrency.max(1))
            .collect()
            .await;
        let mut first_error = None;
        for (id, hash, outcome) in outcomes {
            match outcome {
                Ok(package) => {
                    tracing::info!(
                        package = %format!("{}::{}@{}", package.tenant, package.name(), package.version()),
                        %id,
                        cache = ?package.cache_source(),
                        "loaded package"
                    );
                    state.loaded.insert(id, package.content_hash());
                    state.failed.remove(&id);
                    self.registry.insert(package);
                    result.packages_loaded.push(id);
                }
                Err(reason) => {
                    // A load error can quote the guest (a panic in
                    // `describe`, a trap): escaped once, here, for the log,
                    // the status and any error returned.
                    let reason = crate::guest_text::escape(&reason).into_owned();
                    let attempts = state
                        .failed
                        .get(&id)
                        .filter(|f| f.hash == hash)
                        .map(|f| f.attempts + 1)
                        .unwrap_or(1);
                    let delay = self.backoff(attempts);
                    tracing::warn!(%id, %reason, attempts, retry_in_ms = delay.as_millis() as u64, "package failed to load");
                    state.failed.insert(
                        id,
                        Failure {
                            hash,
                            error: reason.clone(),
                            attempts,
                            retry_at: Instant::now() + delay,
                        },
                    );
                    if first_error.is_none() {
                        first_error = Some((id, reason.clone()));
                    }
                    result.packages_failed.push((id, reason));
                }
            }
        }
        result.total_packages_tracked = state.loaded.len();
        result.reconciliation_duration = started.elapsed();
        crate::telemetry::reconciled(result.reconciliation_duration, state.loaded.len());
        state.last_pass = Some(result.clone());
        if let (false, Some((id, reason))) = (self.config.continue_on_package_error, first_error) {
            return Err(ReconcileError::Package { id, reason });
        }
        Ok(result)
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        (self.config.failure_backoff_initial * factor).min(self.config.failure_backoff_max)
    }

    fn unload(&self, id: Uuid) {
        if let Some(package) = self.registry.remove(id) {
            tracing::info!(
                package = %format!("{}::{}@{}", package.tenant, package.name(), package.version()),
                %id,
                "unloaded package"
            );
            let hash = package.content_hash();
            if !self.registry.uses_hash(&hash) {
                self.loader.cache().forget(&hash);
            }
        }
    }

    async fn load(&self, id: Uuid, hash: &str) -> Result<Arc<RegisteredPackage>, String> {
        let row = self
            .store
            .get_package(id)
            .await
            .map_err(|e| e.to_string())?;
        let bytes = self.store.blob(hash).await.map_err(|e| e.to_string())?;
        let label = format!("{}::{}@{}", row.tenant, row.name, row.version);
        let package = self
            .loader
            .load(&bytes)
            .await
            .map_err(|e: LoadError| format!("package '{label}': {e}"))?;
        if package.content_hash.to_hex() != hash {
            return Err(format!(
                "package '{label}': the stored bytes hash to {}, not {hash}",
                package.content_hash
            ));
        }
        if package.metadata.name != row.name || package.metadata.version != row.version {
            return Err(format!(
                "package '{label}': the component now describes itself as {}",
                package.metadata.label()
            ));
        }
        Ok(Arc::new(RegisteredPackage {
            id,
            tenant: row.tenant,
            registered_at: row.registered_at,
            loaded_at: now_ms(),
            package,
        }))
    }

    /// The loaded and failed packages, and the last pass.
    pub async fn status(&self) -> ReconcilerStatus {
        let state = self.state.lock().await;
        let now = Instant::now();
        let package_details = self
            .registry
            .all()
            .iter()
            .map(|p| PackageStatusDetail {
                id: p.id,
                tenant: p.tenant.clone(),
                name: p.name().to_string(),
                version: p.version().to_string(),
                content_hash: p.content_hash().to_hex(),
                task_count: p.metadata().task_count(),
                workflows: p
                    .metadata()
                    .workflows
                    .iter()
                    .map(|w| w.name.clone())
                    .collect(),
                loaded_at: p.loaded_at,
                cache_hit: p.cache_source().is_hit(),
            })
            .collect::<Vec<_>>();
        let mut failed: Vec<FailedPackage> = state
            .failed
            .iter()
            .map(|(id, f)| FailedPackage {
                id: *id,
                content_hash: f.hash.clone(),
                error: f.error.clone(),
                attempts: f.attempts,
                next_retry_in_ms: f.retry_at.saturating_duration_since(now).as_millis() as u64,
            })
            .collect();
        failed.sort_by_key(|f| f.id);
        ReconcilerStatus {
            packages_loaded: package_details.len(),
            package_details,
            failed,
            last_pass: state.last_pass.clone(),
        }
    }

    /// Run passes until `shutdown` turns true: at start (if enabled), on
    /// every interval, when [`trigger`](Self::trigger)ed, and when the store
    /// announces a package change.
    ///
    /// # Errors
    /// A pass's error when `continue_on_package_error` is off.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ReconcileError> {
        tracing::info!(
            interval_ms = self.config.reconcile_interval.as_millis() as u64,
            "reconciler starting"
        );
        let mut events = self.store.package_events();
        if self.config.enable_startup_reconciliation {
            self.pass_and_log().await?;
        }
        let mut interval = tokio::time::interval(self.config.reconcile_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.wake.notified() => {}
                event = events.recv() => match event {
                    Ok(PackageEvent::Changed) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        events = self.store.package_events();
                    }
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            self.pass_and_log().await?;
        }
        let status = self.status().await;
        tracing::info!(
            packages_loaded = status.packages_loaded,
            "reconciler stopped"
        );
        Ok(())
    }

    async fn pass_and_log(&self) -> Result<(), ReconcileError> {
        match self.reconcile().await {
            Ok(r) => {
                if r.has_changes() || r.has_failures() {
                    tracing::info!(
                        loaded = r.packages_loaded.len(),
                        unloaded = r.packages_unloaded.len(),
                        failed = r.packages_failed.len(),
                        tracked = r.total_packages_tracked,
                        elapsed_ms = r.reconciliation_duration.as_millis() as u64,
                        "reconciled"
                    );
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "reconcile pass failed");
                if self.config.continue_on_package_error || matches!(e, ReconcileError::Store(_)) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
