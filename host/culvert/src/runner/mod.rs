//! [`Runner`]: the embedding API. It wires the engine, cache, loader,
//! store, registries and reconciler together, and is what the CLI uses.
//!
//! ```no_run
//! use culvert::{Runner, RunnerConfig};
//!
//! async fn embed() -> Result<(), culvert::Error> {
//!     let runner = Runner::open(RunnerConfig::new("sqlite:///tmp/culvert.db")).await?;
//!     let bytes = std::fs::read("etl.wasm").expect("the package file");
//!     runner.register_package("public", &bytes).await?;
//!     runner.start(); // the reconcile loop and the executor, in this process
//!     let started = runner
//!         .start_execution("public", "etl", None, serde_json::Map::new())
//!         .await?;
//!     let done = runner.wait(started.id, None).await?;
//!     println!("{}: {:?}", done.status, done.output);
//!     runner.shutdown().await;
//!     Ok(())
//! }
//! ```

use crate::executor::{Executor, ExecutorConfig};
use crate::firing::Firer;
use crate::package::{
    CacheConfig, CompiledCache, LoadError, LoaderConfig, PackageLoader, TaskMeta,
};
use crate::registry::{LookupError, Reconciler, ReconcilerConfig, ReconcilerStatus, Registry};
use crate::sandbox::{EngineConfig, SandboxEngine};
use crate::scheduler::{Decision, ExecutionPlan, ExecutionStatus, TaskStatus, decide_root};
use crate::signing::{PublicKeyFile, SignatureError, SignatureFile, TrustedKey};
use crate::start_queue::{Start, StartQueue};
use crate::store::{
    self, AttemptLogs, EventRow, ExecutionFilter, ExecutionRow, NewPackage, PackageRow,
    PruneReport, Store, StoreError, TaskReset, TaskRow,
};
use crate::tenants::{Grant, GrantKind, TenantLimits, TenantRow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

mod schedules;

use schedules::declared_schedules;

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Executions [`Runner::prune`] deletes per write transaction: with their
/// tasks, events and logs, a batch of 10,000-task executions is still a
/// transaction of seconds, not minutes.
pub const PRUNE_BATCH: u32 = 20;

/// Everything that can go wrong through the [`Runner`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A package did not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The database said no, or could not be reached.
    #[error(transparent)]
    Store(StoreError),
    /// A workflow or package lookup failed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The request itself is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The engine could not start.
    #[error("engine: {0}")]
    Engine(String),
    /// A tenant quota would be exceeded; the message names the quota.
    #[error("{0}")]
    Quota(String),
    /// The request conflicts with what exists (an idempotency key reused
    /// for a different request).
    #[error("{0}")]
    Conflict(String),
    /// A package's signature was missing where required, or did not hold:
    /// the kind says why, the message names the key.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // The store checks count quotas where it inserts.
            StoreError::Quota(message) => Error::Quota(message),
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// Whether this is a "not found" of any kind.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Store(StoreError::NotFound(_)) | Error::Lookup(LookupError::NotFound(_))
        )
    }
}

/// A trusted key's name, or a key id: 1 to 64 letters, digits, `.`, `_`
/// or `-`.
fn key_name_chars(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `s` reads as a key id (16 hex digits), which a name must not.
fn is_key_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How to open a [`Runner`].
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The database URL (see [`store::open`]).
    pub database_url: String,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Cache settings; `cache.dir` None keeps compiled code in memory.
    pub cache: CacheConfig,
    /// Loader settings.
    pub loader: LoaderConfig,
    /// Reconciler settings.
    pub reconciler: ReconcilerConfig,
    /// Executor settings.
    pub executor: ExecutorConfig,
    /// Where the firing loop reads the time: the system clock, or a
    /// [`ManualClock`](crate::ManualClock) in tests.
    pub clock: Arc<dyn crate::firing::Clock>,
}

impl RunnerConfig {
    /// Defaults for everything but the database.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            engine: EngineConfig::default(),
            cache: CacheConfig::default(),
            loader: LoaderConfig::default(),
            reconciler: ReconcilerConfig::default(),
            executor: ExecutorConfig::default(),
            clock: Arc::new(crate::firing::SystemClock),
        }
    }

    /// Cache compiled code under `dir`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache.dir = Some(dir.into());
        self
    }
}

/// A registered package, as registration reports it (and, deserialized,
/// as the CLI reads it back from the API, so both print it alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// The package id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// The name.
    pub name: String,
    /// The version.
    pub version: String,
    /// blake3 of the bytes.
    pub content_hash: String,
    /// False when identical bytes were already registered.
    pub created: bool,
    /// Whether the compile was served from the cache.
    pub cache_hit: bool,
    /// The key that signed it (verified), if it came with a signature.
    #[serde(default)]
    pub signature_key_id: Option<String>,
    /// When it was signed, in ms since the epoch.
    #[serde(default)]
    pub signed_at: Option<i64>,
}

impl Registered {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The engine, wired up.
pub struct Runner {
    store: Arc<dyn Store>,
    loader: PackageLoader,
    registry: Arc<Registry>,
    reconciler: Arc<Reconciler>,
    executor: Arc<Executor>,
    starts: StartQueue,
    firer: Arc<Firer>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("store", &self.store)
            .finish()
    }
}

/// Tenant names: a short slug (1 to 63 of `[a-z0-9_-]`, starting with a letter or digit).
///
/// # Errors
/// [`Error::Invalid`] naming the rule.
pub fn validate_tenant(tenant: &str) -> Result<(), Error> {
    crate::tenants::validate_name(tenant).map_err(Error::Invalid)
}

impl Runner {
    /// Open the database (running migrations), start the engine, and build
    /// the registries. Nothing runs in the background until
    /// [`start`](Self::start).
    ///
    /// # Errors
    /// When the database cannot be opened or the engine cannot start.
    pub async fn open(config: RunnerConfig) -> Result<Self, Error> {
        let store = store::open(&config.database_url).await?;
        Self::with_store(store, config)
    }

    /// Like [`open`](Self::open), over an already open store.
    ///
    /// # Errors
    /// When the engine cannot start.
    pub fn with_store(store: Arc<dyn Store>, config: RunnerConfig) -> Result<Self, Error> {
        let engine = SandboxEngine::new(config.engine.clone())
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        let cache = Arc::new(CompiledCache::new(engine, config.cache.clone()));
        let loader = PackageLoader::new(cache, config.loader.clone());
        let registry = Arc::new(Registry::new());
        let reconciler = Arc::new(Reconciler::new(
            store.clone(),
            loader.clone(),
            registry.clone(),
            config.reconciler.clone(),
        ));
        let executor = Arc::new(Executor::new(
            Uuid::now_v7(),
            store.clone(),
            loader.clone(),
            registry.clone(),
            config.executor.clone(),
        ));
        let (shutdown, _) = watch::channel(false);
        let wake = executor.clone();
        let firer = Arc::new(Firer::new(
            store.clone(),
            executor.host_id(),
            config.clock.clone(),
            Box::new(move || wake.wake()),
        ));
        Ok(Self {
            starts: StartQueue::new(store.clone()),
            firer,
            store,
            loader,
            registry,
            reconciler,
            executor,
            shutdown,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The loader (and through it the cache and engine).
    pub fn loader(&self) -> &PackageLoader {
        &self.loader
    }

    /// The in-memory registries.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The reconciler.
    pub fn reconciler(&self) -> &Arc<Reconciler> {
        &self.reconciler
    }

    /// A receiver that turns true at shutdown.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The executor.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// Start the background loops: the reconciler, the executor and the
    /// firing loop of schedules.
    pub fn start(&self) {
        self.start_reconciler();
        self.start_executor();
        self.start_firing();
    }

    /// Start the firing loop alone: every host runs one; each due time
    /// starts once however many do.
    pub fn start_firing(&self) {
        let firer = self.firer.clone();
        let store = self.store.clone();
        let rx = self.shutdown.subscribe();
        let handle = tokio::spawn(async move {
            if let Err(e) = schedules::resync_declared(&store, firer.clock().now_ms()).await {
                tracing::warn!(error = %e, "could not check packages' declared schedules");
            }
            firer.run(rx).await
        });
        self.tasks.lock().expect("runner lock").push(handle);
    }

    /// The firing loop (its [`pass`](Firer::pass) runs one pass by hand).
    pub fn firer(&self) -> &Arc<Firer> {
        &self.firer
    }

    /// Start the reconcile loop alone.
    pub fn start_reconciler(&self) {
        let reconciler = self.reconciler.clone();
        let rx = self.shutdown.subscribe();
        let handle = tokio::spawn(async move {
            if let Err(e) = reconciler.run(rx).await {
                tracing::error!(error = %e, "the reconciler stopped");
            }
        });
        self.tasks.lock().expect("runner lock").push(handle);
    }

    /// Start the executor alone (it needs no registry: executions carry
    /// their DAG and content hash).
    pub fn start_executor(&self) {
        let executor = self.executor.clone();
        let rx = self.shutdown.subscribe();
        let handle = tokio::spawn(executor.run(rx));
        self.tasks.lock().expect("runner lock").push(handle);
    }

    /// Signal every loop to stop and wait for them.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().expect("runner lock"));
        for h in handles {
            let _ = h.await;
        }
    }

    /// Validate, pre-compile and register a package for `tenant`. Nothing
    /// reaches the database unless the package is valid; identical bytes
    /// registered again return the existing id.
    ///
    /// # Errors
    /// [`Error::Load`] for an invalid package, [`StoreError::Conflict`] when
    /// the name and version are taken by other bytes, and
    /// [`StoreError::NotFound`] for an unknown tenant.
    pub async fn register_package(&self, tenant: &str, bytes: &[u8]) -> Result<Registered, Error> {
        self.register_signed_package(tenant, bytes, None).await
    }

    /// [`register_package`](Self::register_package) with a detached
    /// signature: the bytes of a `FILE.sig`
    /// ([`SignatureFile`](crate::SignatureFile)).
    ///
    /// A signature, when given, is always checked; when the tenant's
    /// `require_signature` is on, one is needed. The check runs before
    /// anything is compiled: the signature must be by a key the tenant
    /// trusts now, over these bytes' content hash; once `describe` has
    /// run, the name and version must be the ones signed. The verified
    /// signature is stored with the package.
    ///
    /// # Errors
    /// As [`register_package`](Self::register_package), and
    /// [`Error::Signature`] with the reason (its
    /// [`kind`](SignatureError::kind)) and the key id.
    pub async fn register_signed_package(
        &self,
        tenant: &str,
        bytes: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<Registered, Error> {
        validate_tenant(tenant)?;
        let limits = self.tenant(tenant).await?.limits;
        if bytes.len() as u64 > limits.max_package_bytes {
            return Err(Error::Quota(format!(
                "tenant '{tenant}': the package is {} bytes, over the max_package_bytes quota of {}",
                bytes.len(),
                limits.max_package_bytes
            )));
        }
        let signature = self
            .check_signature(tenant, &limits, bytes, signature)
            .await?;
        let package = self.loader.load(bytes).await?;
        if let Some(sig) = &signature {
            crate::signing::check_names(sig, &package.metadata.name, &package.metadata.version)?;
        }
        // Its declared schedules must suit the tenant before anything is
        // stored.
        declared_schedules(&package.metadata, &limits, self.firer.clock().now_ms())?;
        let hash = package.content_hash.to_hex();
        // max_packages is checked in the inserting transaction, so that
        // concurrent registrations cannot overshoot it.
        let registration = self
            .store
            .register_package(NewPackage {
                tenant,
                metadata: &package.metadata,
                content_hash: &hash,
                bytes,
                max_packages: limits.max_packages,
                signature: signature.as_ref(),
            })
            .await?;
        self.sync_declared(tenant, &package.metadata.name).await?;
        self.reconciler.trigger();
        Ok(Registered {
            id: registration.id,
            tenant: tenant.to_string(),
            name: package.metadata.name.clone(),
            version: package.metadata.version.clone(),
            content_hash: hash,
            created: registration.created,
            cache_hit: package.source.is_hit(),
            signature_key_id: signature.as_ref().map(|s| s.key_id.clone()),
            signed_at: signature.as_ref().map(|s| s.signed_at),
        })
    }

    /// The signing policy's check of `bytes` for `tenant` (whose `limits`
    /// the caller read), before anything is compiled: none when no
    /// signature came and none is required; else the signature, parsed,
    /// by a key the tenant trusts now, over these bytes (its name and
    /// version are for the caller to check after `describe`). An unsigned
    /// or forged package costs a hash and one indexed read.
    ///
    /// # Errors
    /// [`Error::Signature`], with the reason and the key id.
    pub async fn check_signature(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        bytes: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<Option<SignatureFile>, Error> {
        let signature = signature.map(SignatureFile::parse).transpose()?;
        if !limits.require_signature && signature.is_none() {
            return Ok(None);
        }
        let hash = blake3::hash(bytes).to_hex();
        let key = match &signature {
            Some(sig) => self.store.trusted_key(tenant, &sig.key_id).await?,
            None => None,
        };
        crate::signing::check_trusted(tenant, signature.as_ref(), key.as_ref(), &hash)?;
        Ok(signature)
    }

    /// The packages of `tenant`, or of every tenant.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn list_packages(&self, tenant: Option<&str>) -> Result<Vec<PackageRow>, Error> {
        Ok(self.store.list_packages(tenant).await?)
    }

    /// Remove `name` (every version, or just `version`) from `tenant`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when nothing matches.
    pub async fn remove_package(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<PackageRow>, Error> {
        let removed = match self.store.remove_packages(tenant, name, version).await {
            Err(StoreError::NotFound(message)) => {
                // Say which of the tenant's own packages exist.
                let names: Vec<String> = self
                    .store
                    .list_packages(Some(tenant))
                    .await
                    .map(|rows| rows.into_iter().map(|p| p.name).collect())
                    .unwrap_or_default();
                return Err(Error::Store(StoreError::NotFound(format!(
                    "{message}{}",
                    crate::suggest::did_you_mean(name, names.iter().map(String::as_str))
                ))));
            }
            other => other?,
        };
        self.sync_declared(tenant, name).await?;
        if let Err(e) = self.store.collect_garbage().await {
            tracing::warn!(error = %e, "could not collect unused component bytes");
        }
        self.reconciler.trigger();
        Ok(removed)
    }

    /// The reconciler's status.
    pub async fn status(&self) -> ReconcilerStatus {
        self.reconciler.status().await
    }

    /// Start an execution of `workflow` (`name` or `package::name`) of
    /// `tenant`, on the active version of its package or on `version`,
    /// with `context` (a JSON object) as the initial context. The lookup
    /// reads the database, so it works whether or not this process has
    /// loaded the package.
    ///
    /// # Errors
    /// [`LookupError`] for an unknown or ambiguous workflow,
    /// [`StoreError::NotFound`] for an unknown tenant.
    pub async fn start_execution(
        &self,
        tenant: &str,
        workflow: &str,
        version: Option<&str>,
        context: Map<String, Value>,
    ) -> Result<ExecutionRow, Error> {
        Ok(self
            .start_execution_once(tenant, workflow, version, context, None, None)
            .await?
            .0)
    }

    /// [`start_execution`](Self::start_execution), at most once per
    /// `idempotency_key` (per tenant): a second call with the same key
    /// returns the execution the first one started, and `false` (not
    /// created). The key lives as long as that execution does. `audit`,
    /// when given, is recorded in the transaction that creates the
    /// execution (see [`NewExecution::audit`](crate::store::NewExecution::audit)).
    ///
    /// # Errors
    /// Those of [`start_execution`](Self::start_execution), and
    /// [`Error::Conflict`] when the key was used to start another workflow.
    pub async fn start_execution_once(
        &self,
        tenant: &str,
        workflow: &str,
        version: Option<&str>,
        context: Map<String, Value>,
        idempotency_key: Option<&str>,
        audit: Option<&crate::access::AuditEntry>,
    ) -> Result<(ExecutionRow, bool), Error> {
        validate_tenant(tenant)?;
        if let Some(key) = idempotency_key
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY
                || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::Invalid(format!(
                "an idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters, without spaces"
            )));
        }
        if let Some(key) = idempotency_key
            && let Some(row) = self.replay(tenant, workflow, key).await?
        {
            return Ok((row, false));
        }
        let limits = self.tenant(tenant).await?.limits;
        let packages = self.store.list_packages(Some(tenant)).await?;
        let (package, index) =
            crate::registry::find_runnable_workflow(&packages, tenant, workflow, version)?;
        let context_bytes = crate::scheduler::json_len(&context) as u64;
        if context_bytes > limits.max_context_bytes {
            return Err(Error::Quota(format!(
                "tenant '{tenant}': the initial context is {context_bytes} bytes, over the max_context_bytes limit of {}",
                limits.max_context_bytes
            )));
        }
        let plan = ExecutionPlan::new(package.metadata.workflows[index].clone());
        let row = self
            .starts
            .start(Start {
                tenant: tenant.to_string(),
                package_id: package.id,
                package_name: package.name.clone(),
                package_version: package.version.clone(),
                content_hash: package.content_hash.clone(),
                plan,
                context,
                limits,
                idempotency_key: idempotency_key.map(str::to_string),
                audit: audit.cloned(),
            })
            .await;
        let row = match (row, idempotency_key) {
            (Ok(row), _) => row,
            // A concurrent request with the same key inserted first.
            (Err(StoreError::Conflict(_)), Some(key))
                if let Some(row) = self.replay(tenant, workflow, key).await? =>
            {
                return Ok((row, false));
            }
            (Err(e), _) => return Err(e.into()),
        };
        tracing::info!(
            execution = %row.id,
            tenant,
            workflow = %row.workflow,
            package = %format!("{}@{}", row.package_name, row.package_version),
            "execution started"
        );
        self.executor.wake();
        Ok((row, true))
    }

    /// The execution `tenant` started with `key`, when it ran `workflow`.
    async fn replay(
        &self,
        tenant: &str,
        workflow: &str,
        key: &str,
    ) -> Result<Option<ExecutionRow>, Error> {
        match self.store.execution_by_idempotency_key(tenant, key).await? {
            Some(row) if row.workflow != workflow => Err(Error::Conflict(format!(
                "the idempotency key '{}' already started execution {} of workflow '{}', not '{}': use a new key for a different request",
                crate::guest_text::printable(key),
                row.id,
                row.workflow,
                crate::guest_text::printable(workflow)
            ))),
            other => Ok(other),
        }
    }

    /// Wait until execution `id` finishes (or `timeout` passes) and return
    /// it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or [`Error::Invalid`] on timeout.
    pub async fn wait(&self, id: Uuid, timeout: Option<Duration>) -> Result<ExecutionRow, Error> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut finished = self.executor.finished_signal();
        loop {
            let row = self.store.get_execution(None, id).await?;
            if row.status.is_finished() {
                return Ok(row);
            }
            let nap = tokio::time::sleep(Duration::from_millis(100));
            match deadline {
                Some(d) if tokio::time::Instant::now() >= d => {
                    return Err(Error::Invalid(format!(
                        "execution {id} did not finish in time (it is {})",
                        row.status
                    )));
                }
                _ => {}
            }
            tokio::select! {
                _ = finished.changed() => {}
                _ = nap => {}
            }
        }
    }

    /// One execution of `tenant`, with its tasks and events.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it does not exist or is another
    /// tenant's.
    pub async fn execution(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> Result<(ExecutionRow, Vec<TaskRow>, Vec<EventRow>), Error> {
        let row = self.store.get_execution(Some(tenant), id).await?;
        let mut tasks = self.store.execution_tasks(id).await?;
        // One task needs no order (and saves reading and parsing the DAG).
        if tasks.len() > 1
            && let Ok(plan) = self.store.execution_plan(id).await
        {
            // Each task's rank in the DAG's order, looked up by id: linear,
            // where searching the order for each task was quadratic (15 s
            // and more for a 10,000-task execution).
            let rank: std::collections::HashMap<&str, usize> = plan
                .workflow
                .topological_order()
                .into_iter()
                .enumerate()
                .map(|(i, id)| (id, i))
                .collect();
            tasks.sort_by_cached_key(|t| {
                rank.get(t.task_id.as_str()).copied().unwrap_or(usize::MAX)
            });
        }
        let events = self.store.execution_events(id).await?;
        Ok((row, tasks, events))
    }

    /// What the guests of execution `id`'s attempts said (log records,
    /// stdout and stderr lines; see [`AttemptLogs`]), in the order their
    /// completions were recorded: only task `task`'s, or only attempt
    /// `attempt`, when given. An attempt still running has no logs yet.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the execution is not `tenant`'s (or
    /// does not exist).
    pub async fn logs(
        &self,
        tenant: &str,
        id: Uuid,
        task: Option<&str>,
        attempt: Option<u32>,
    ) -> Result<Vec<AttemptLogs>, Error> {
        self.store.get_execution(Some(tenant), id).await?;
        Ok(self.store.task_logs(id, task, attempt).await?)
    }

    /// Delete every tenant's executions that finished more than
    /// `older_than` ago, with their tasks, events and logs (in batches of
    /// [`PRUNE_BATCH`] executions, each one short write transaction), then
    /// the component bytes nothing uses any more. What `culvert prune` and
    /// `culvert serve --retention` run.
    ///
    /// # Errors
    /// When the database cannot be written; what earlier batches deleted
    /// stays deleted.
    pub async fn prune(&self, older_than: Duration) -> Result<PruneReport, Error> {
        let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let cutoff = store::now_ms().saturating_sub(age);
        Ok(self.store.prune_finished(cutoff, PRUNE_BATCH).await?)
    }

    /// Executions, newest first.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn executions(
        &self,
        filter: ExecutionFilter<'_>,
    ) -> Result<Vec<ExecutionRow>, Error> {
        Ok(self.store.list_executions(filter).await?)
    }

    /// A tenant.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it does not exist.
    pub async fn tenant(&self, name: &str) -> Result<TenantRow, Error> {
        match self.store.get_tenant(name).await {
            Err(StoreError::NotFound(_)) => Err(StoreError::NotFound(format!(
                "tenant '{name}' does not exist (create it with `culvert tenant create {name}`)"
            ))
            .into()),
            other => Ok(other?),
        }
    }

    /// Every tenant.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn tenants(&self) -> Result<Vec<TenantRow>, Error> {
        Ok(self.store.list_tenants().await?)
    }

    /// Create a tenant.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name, [`StoreError::Conflict`] when it
    /// exists.
    pub async fn create_tenant(
        &self,
        name: &str,
        limits: &TenantLimits,
    ) -> Result<TenantRow, Error> {
        validate_tenant(name)?;
        Ok(self.store.create_tenant(name, limits).await?)
    }

    /// Replace a tenant's limits.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it does not exist.
    pub async fn update_tenant(
        &self,
        name: &str,
        limits: &TenantLimits,
    ) -> Result<TenantRow, Error> {
        self.tenant(name).await?;
        let row = self.store.update_tenant(name, limits).await?;
        // on_untrust may change which packages load.
        self.reconciler.trigger();
        Ok(row)
    }

    /// Delete a tenant with its packages, executions and grants. Refused
    /// while executions are unfinished, unless `force`, which cancels them
    /// first.
    ///
    /// # Errors
    /// [`Error::Invalid`] for `public`, [`StoreError::Conflict`] while
    /// executions run (without `force`).
    pub async fn delete_tenant(&self, name: &str, force: bool) -> Result<(), Error> {
        if name == crate::tenants::PUBLIC {
            return Err(Error::Invalid("the public tenant cannot be deleted".into()));
        }
        self.tenant(name).await?;
        let unfinished = self.store.count_unfinished(name).await?;
        if unfinished > 0 && !force {
            return Err(StoreError::Conflict(format!(
                "tenant '{name}' has {unfinished} unfinished executions; cancel them first or use --force"
            ))
            .into());
        }
        if unfinished > 0 {
            for status in [ExecutionStatus::Pending, ExecutionStatus::Running] {
                let rows = self
                    .store
                    .list_executions(ExecutionFilter {
                        tenant: Some(name),
                        status: Some(status),
                        limit: Some(i64::MAX),
                        ..Default::default()
                    })
                    .await?;
                for row in rows {
                    match self.cancel(name, row.id).await {
                        Ok(_) | Err(Error::Store(StoreError::Conflict(_))) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        self.store.delete_tenant(name).await?;
        if let Err(e) = self.store.collect_garbage().await {
            tracing::warn!(error = %e, "could not collect unused component bytes");
        }
        self.reconciler.trigger();
        Ok(())
    }

    /// Grant a capability (the operator's key of the two-key rule).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown tenant, [`Error::Invalid`]
    /// for a malformed grant.
    pub async fn grant(&self, grant: &Grant) -> Result<(), Error> {
        self.tenant(&grant.tenant).await?;
        match grant.kind {
            GrantKind::Dir => {
                let host = std::path::Path::new(&grant.value);
                if !grant.name.starts_with('/') || !host.is_absolute() || !host.is_dir() {
                    return Err(Error::Invalid(format!(
                        "a directory grant maps an absolute guest path to an existing absolute host directory; got '{}' -> '{}'",
                        grant.name, grant.value
                    )));
                }
            }
            GrantKind::Http => {
                // Checked now, so that a grant that could never match is
                // refused with the rule; stored in lower case, as patterns
                // compare, so that revoking `API.example.com` finds it.
                crate::egress::HostPattern::parse(&grant.name)
                    .map_err(|e| Error::Invalid(format!("--http {e}")))?;
                if grant.name.bytes().any(|b| b.is_ascii_uppercase()) {
                    let lower = Grant {
                        name: grant.name.to_ascii_lowercase(),
                        ..grant.clone()
                    };
                    return Ok(self.store.add_grant(&lower).await?);
                }
            }
            GrantKind::Env if grant.name.is_empty() => {
                return Err(Error::Invalid("this grant needs a name".into()));
            }
            _ => {}
        }
        Ok(self.store.add_grant(grant).await?)
    }

    /// Take a grant back.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is no such grant.
    pub async fn revoke(
        &self,
        tenant: &str,
        package: &str,
        kind: GrantKind,
        name: &str,
    ) -> Result<(), Error> {
        // HTTP patterns are stored in lower case (see `grant`).
        let name = match kind {
            GrantKind::Http => name.to_ascii_lowercase(),
            _ => name.to_string(),
        };
        Ok(self
            .store
            .remove_grant(tenant, package, kind, &name)
            .await?)
    }

    /// A tenant's grants.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown tenant.
    pub async fn grants(&self, tenant: &str) -> Result<Vec<Grant>, Error> {
        self.tenant(tenant).await?;
        Ok(self.store.list_grants(tenant).await?)
    }

    /// Trust a signing key for `tenant` under `name` (1 to 64 letters,
    /// digits, `.`, `_` or `-`; not itself a key id); `by` says who (an
    /// API key, or the command line). Trusting an untrusted key again
    /// restores it, and its packages load again.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name, [`StoreError::NotFound`] for an
    /// unknown tenant, a conflict when another trusted key has the name.
    pub async fn trust_key(
        &self,
        tenant: &str,
        name: &str,
        public: &PublicKeyFile,
        by: &str,
    ) -> Result<TrustedKey, Error> {
        validate_tenant(tenant)?;
        if !key_name_chars(name) || is_key_id(name) {
            return Err(Error::Invalid(format!(
                "a key name is 1 to 64 letters, digits, '.', '_' or '-', and not 16 hex digits (those read as a key id); got '{}'",
                crate::guest_text::escape(name)
            )));
        }
        public.check()?;
        self.tenant(tenant).await?;
        let key = self
            .store
            .trust_key(&TrustedKey {
                tenant: tenant.to_string(),
                key_id: public.key_id.clone(),
                name: name.to_string(),
                public_key: public.public_key.clone(),
                trusted_at: store::now_ms(),
                trusted_by: by.to_string(),
                untrusted_at: None,
                untrusted_by: None,
            })
            .await?;
        self.reconciler.trigger();
        Ok(key)
    }

    /// Untrust `tenant`'s key `key` (a key id or name). Its packages are
    /// marked; where the tenant's `on_untrust` is `disable` they stop
    /// loading at the next reconcile pass (triggered now).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the tenant trusts no such key.
    pub async fn untrust_key(
        &self,
        tenant: &str,
        key: &str,
        by: &str,
    ) -> Result<TrustedKey, Error> {
        validate_tenant(tenant)?;
        if !key_name_chars(key) {
            return Err(StoreError::NotFound(format!(
                "tenant '{tenant}' trusts no key with the id or name '{}'",
                crate::guest_text::escape(key)
            ))
            .into());
        }
        let row = self.store.untrust_key(tenant, key, by).await?;
        self.reconciler.trigger();
        Ok(row)
    }

    /// The signing keys of `tenant`, or of every tenant, untrusted ones
    /// included.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn trusted_keys(&self, tenant: Option<&str>) -> Result<Vec<TrustedKey>, Error> {
        Ok(self.store.trusted_keys(tenant).await?)
    }

    /// Re-run a failed execution of `tenant` from its failed tasks, in
    /// place: completed tasks keep their outputs and are not run again;
    /// failed and skipped tasks are reset (each with a fresh budget of its
    /// policy's attempts, its attempt numbers continuing); a root whose
    /// trigger rule does not hold on the initial context stays skipped. The
    /// execution keeps its pinned package version.
    ///
    /// # Errors
    /// "Not found" when it is not the tenant's; a conflict when it has not
    /// failed; [`Error::Quota`] over `max_queued_executions`.
    pub async fn retry_execution(&self, tenant: &str, id: Uuid) -> Result<ExecutionRow, Error> {
        validate_tenant(tenant)?;
        let limits = self.tenant(tenant).await?.limits;
        let row = self.store.get_execution(Some(tenant), id).await?;
        // A package disabled by an untrusted signing key runs no new
        // attempt on request (a removed one may: its bytes are pinned).
        match self.store.get_package(row.package_id).await {
            Ok(p) if p.signature.as_ref().is_some_and(|s| s.disabled) => {
                return Err(Error::Invalid(format!(
                    "execution {id} ran {}@{}, which is disabled: tenant '{tenant}' untrusted its signing key {} (on_untrust = disable)",
                    p.name,
                    p.version,
                    p.signature.as_ref().map_or("", |s| s.key_id.as_str())
                )));
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let plan = self.store.execution_plan(id).await?;
        let tasks = self.store.execution_tasks(id).await?;
        let initial = row.context.as_object().cloned().unwrap_or_default();
        let completed: std::collections::HashSet<&str> = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Completed)
            .map(|t| t.task_id.as_str())
            .collect();
        // What runs again: every task that did not complete, except roots
        // whose trigger rule skips them anyway.
        let mut again: Vec<(&TaskMeta, Option<Map<String, Value>>)> = Vec::new();
        for t in &plan.workflow.tasks {
            if completed.contains(t.id.as_str()) {
                continue;
            }
            if t.dependencies.is_empty() {
                match decide_root(t, &initial) {
                    Decision::Run { input } => again.push((t, Some(input))),
                    Decision::Skip { .. } => {}
                }
            } else {
                again.push((t, None));
            }
        }
        let resetting: std::collections::HashSet<&str> =
            again.iter().map(|(t, _)| t.id.as_str()).collect();
        let reset: Vec<TaskReset> = again
            .into_iter()
            .map(|(t, input)| TaskReset {
                task_id: t.id.clone(),
                deps_remaining: t
                    .dependencies
                    .iter()
                    .filter(|d| resetting.contains(d.as_str()))
                    .count() as i64,
                input,
                attempts: i64::from(t.retry.max_attempts),
            })
            .collect();
        let row = self
            .store
            .retry_execution(tenant, id, &reset, &limits)
            .await?;
        tracing::info!(execution = %id, tenant, tasks = reset.len(), "execution retried");
        self.executor.wake();
        Ok(row)
    }

    /// Cancel an execution of `tenant`: pending tasks are skipped and
    /// running ones interrupted.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or [`StoreError::Conflict`] when it
    /// already finished.
    pub async fn cancel(&self, tenant: &str, id: Uuid) -> Result<ExecutionRow, Error> {
        let row = self.store.cancel_execution(tenant, id).await?;
        self.executor.cancel_local(id);
        tracing::info!(execution = %id, tenant, status = %row.status, "execution cancelled");
        Ok(row)
    }
}
