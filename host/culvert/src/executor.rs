//! The executor: claims ready tasks from the store, runs each in a fresh
//! sandbox, and records the outcome.
//!
//! - **Claiming**: batches of ready tasks, each leased to this host until
//!   [`ExecutorConfig::lease`] from now. On PostgreSQL other hosts skip
//!   rows being claimed (`FOR UPDATE SKIP LOCKED`); on SQLite the claim is
//!   one write transaction. A task is never run by two hosts at once while
//!   its lease is valid.
//! - **Heartbeats** extend the leases of every running task of this host.
//! - **Recovery**: any host takes back tasks whose lease expired (their host
//!   died), counting a recovery; after [`ExecutorConfig::max_recoveries`]
//!   the task fails. Nothing is reset at startup.
//! - **Running**: from the cached `InstancePre`, in a fresh store, under the
//!   task's timeout (epoch interruption: a CPU loop is stopped), memory cap
//!   and output budget. Concurrent tasks of one package run in parallel
//!   instances; there is no per-package lock. A per-host semaphore bounds
//!   concurrency.
//! - **Retries** follow the task's policy (see [`retry_decision`]).
//! - **Completion** is one transaction in the store; a completion from a
//!   host that lost its lease is discarded, so each task's completion is
//!   recorded exactly once even if a crash made it run twice. What the
//!   guest said (its log records and output lines, capped at
//!   [`TASK_LOG_BYTES`](crate::TASK_LOG_BYTES)) is stored in the same
//!   transaction, for every attempt that ran.
//! - **Cancellation**: a cancel through this host interrupts its running
//!   tasks at once; other hosts notice within
//!   [`ExecutorConfig::cancel_poll_interval`]. A guest running wasm stops at
//!   the next epoch tick, one waiting in a host call is dropped.
//! - **Metrics** (`telemetry`): each claim's dispatch latency (from the
//!   task's `ready_at`), each attempt's time in the sandbox, each accepted
//!   completion by outcome and failure kind, and lease recoveries.

use crate::package::{
    self, Compiled, ContentHash, FailureKind, PackageLoader, PackageMetadata, RetryOn, RetryPolicy,
    TaskCall, TaskMeta,
};
use crate::registry::Registry;
use crate::sandbox::{CallLabels, CancelFlag, SandboxLimits};
use crate::scheduler::{Decision, ExecutionPlan, decide};
use crate::store::{
    ClaimedTask, Completion, ScheduledRetry, Store, StoreError, TaskOutcome, merge_outputs, now_ms,
};
use crate::telemetry;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use uuid::Uuid;

/// How the executor behaves.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Tasks this host runs at once. Default 32.
    pub concurrency: usize,
    /// How long a claim lasts without a heartbeat. Default 30 s.
    pub lease: Duration,
    /// How often running tasks' leases are extended. Default 10 s.
    pub heartbeat_interval: Duration,
    /// How often to look for ready tasks when nothing wakes the loop.
    /// Default 50 ms.
    pub poll_interval: Duration,
    /// How often to look for expired leases. Default 5 s.
    pub recovery_interval: Duration,
    /// How many times a task may be recovered from dead hosts before it
    /// fails. Default 3.
    pub max_recoveries: u32,
    /// How often to look for cancelled executions among running tasks.
    /// Default 250 ms.
    pub cancel_poll_interval: Duration,
    /// The most tasks claimed in one transaction. Default 64.
    pub claim_batch: u32,
    /// The timeout of tasks that declare none. Default 30 s.
    pub default_task_timeout: Duration,
    /// The per-call limits tenants do not set: table elements, the context
    /// size, and the fuel of tenants without `fuel_per_call`. (Memory,
    /// output, timeouts' ceiling and CPU come from the tenant.)
    pub task_limits: SandboxLimits,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
            recovery_interval: Duration::from_secs(5),
            max_recoveries: 3,
            cancel_poll_interval: Duration::from_millis(250),
            claim_batch: 64,
            default_task_timeout: Duration::from_secs(30),
            task_limits: SandboxLimits::default(),
        }
    }
}

/// Counters since the executor started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecutorStats {
    /// Tasks claimed.
    pub claimed: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed (retried or not).
    pub failed: u64,
    /// Completions discarded because the lease was lost.
    pub discarded: u64,
    /// Tasks recovered from dead hosts by this host.
    pub recovered: u64,
    /// Tasks running now.
    pub running: u64,
}

#[derive(Default)]
struct Counters {
    claimed: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    discarded: AtomicU64,
    recovered: AtomicU64,
}

/// What the executor keeps per execution it has tasks of.
struct ExecInfo {
    /// What never changes for the execution.
    base: Arc<ExecBase>,
    /// The tenant's limits and the package's granted capabilities; the
    /// timeout is set per task.
    limits: SandboxLimits,
    /// The tenant's ceiling on task timeouts.
    max_timeout: Duration,
    /// Last use, for pruning.
    used: Mutex<std::time::Instant>,
    /// When `limits` was read.
    loaded: std::time::Instant,
}

/// The part of [`ExecInfo`] that never changes.
struct ExecBase {
    plan: Arc<ExecutionPlan>,
    compiled: Arc<Compiled>,
    label: String,
    /// The tenant and the package's name, to read limits and grants again.
    tenant: String,
    package: String,
    /// The package metadata (shared with the package map, which keeps an
    /// entry only while some execution holds this).
    metadata: Arc<PackageMetadata>,
}

impl ExecInfo {
    fn new(base: Arc<ExecBase>, (limits, max_timeout): (SandboxLimits, Duration)) -> Self {
        let now = std::time::Instant::now();
        Self {
            base,
            limits,
            max_timeout,
            used: Mutex::new(now),
            loaded: now,
        }
    }
}

/// How long the executor uses a tenant's limits and grants before reading
/// them again (a retry always reads them again).
const LIMITS_TTL: Duration = Duration::from_secs(1);

/// A completion waiting for the recorder, with where to send its result.
type Pending = (
    ClaimedTask,
    TaskOutcome,
    Arc<ExecutionPlan>,
    tokio::sync::oneshot::Sender<Result<Completion, StoreError>>,
);

/// The output bytes one group commit stores before it stops taking more
/// completions.
const RECORD_BATCH_BYTES: usize = 4 << 20;

/// How many more times a task's host tries a read around the sandbox (its
/// execution's row, plan, package and tenant; its dependencies' outputs;
/// the final context) after a failure, with backoff from 50 ms to 1 s
/// (about 5 s in all), before giving up: a short database outage must not
/// fail tasks.
const EXEC_INFO_RETRIES: u32 = 7;

/// `op`, tried again on failure [`EXEC_INFO_RETRIES`] times with backoff;
/// each failure is logged with `what`.
async fn retried<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    execution: Uuid,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(50);
    let mut result = op().await;
    for _ in 0..EXEC_INFO_RETRIES {
        let Err(e) = &result else { break };
        tracing::warn!(error = %e, execution = %execution, "{what} failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
        result = op().await;
    }
    result
}

/// Host time charged to a tenant's CPU share per byte of data its task
/// handed the host (a merged input, an output). Each output byte is parsed
/// from the guest, serialised, written to the database, read back and
/// parsed for each merge, and serialised again into an input: at 2 to 5 ns
/// a pass in a release build, about 20 ns in all. An order of magnitude,
/// not a precise cost.
const HOST_NS_PER_BYTE: u64 = 20;

/// The bytes an outcome stores (its output as compact JSON, or its
/// message; and its guest's logs).
fn stored_bytes(outcome: &TaskOutcome) -> usize {
    let logs = outcome.logs().map_or(0, |l| l.bytes as usize);
    logs + match outcome {
        TaskOutcome::Succeeded { output, .. } | TaskOutcome::Skipped { output, .. } => {
            crate::scheduler::json_len(output)
        }
        TaskOutcome::Failed { message, .. } => message.len(),
    }
}

/// The `outcome` and `kind` labels of
/// [`TASKS_FINISHED`](crate::metric_names::TASKS_FINISHED) for an outcome.
fn outcome_labels(outcome: &TaskOutcome) -> (&'static str, &'static str) {
    match outcome {
        TaskOutcome::Succeeded { .. } => ("succeeded", ""),
        TaskOutcome::Skipped { .. } => ("skipped", ""),
        TaskOutcome::Failed {
            kind, retry: None, ..
        } => ("failed", kind.as_str()),
        TaskOutcome::Failed {
            kind,
            retry: Some(_),
            ..
        } => ("retrying", kind.as_str()),
    }
}

/// Compiled code and metadata of one content hash.
type PackageEntry = (Arc<Compiled>, Arc<PackageMetadata>);

/// A task this host is running.
struct Running {
    flag: CancelFlag,
    token: Uuid,
}

/// Decide whether a failed attempt is retried, and when: `None` for a
/// final failure.
///
/// A cancellation is never retried. Otherwise, with `retry_on`:
/// `never` never retries; `transient_only` retries
/// [transient kinds](FailureKind::is_transient); `all_errors` retries every
/// kind. In each case only while attempts remain.
pub fn retry_decision(
    policy: &RetryPolicy,
    attempt: u32,
    kind: FailureKind,
    now: i64,
) -> Option<ScheduledRetry> {
    if kind == FailureKind::Cancelled || attempt >= policy.max_attempts {
        return None;
    }
    let retry = match policy.retry_on {
        RetryOn::Never => false,
        RetryOn::TransientOnly => kind.is_transient(),
        RetryOn::AllErrors => true,
    };
    retry.then(|| {
        let delay_ms = policy.delay_after(attempt).as_millis() as i64;
        ScheduledRetry {
            at: now + delay_ms,
            delay_ms,
        }
    })
}

/// Runs tasks for one host.
pub struct Executor {
    host_id: Uuid,
    store: Arc<dyn Store>,
    loader: PackageLoader,
    registry: Arc<Registry>,
    config: ExecutorConfig,
    wake: Notify,
    permits: Arc<Semaphore>,
    running: Mutex<HashMap<(Uuid, String), Running>>,
    executions: Mutex<HashMap<Uuid, Arc<ExecInfo>>>,
    packages: Mutex<HashMap<ContentHash, PackageEntry>>,
    only_execution: Mutex<Option<Uuid>>,
    recorder: tokio::sync::mpsc::UnboundedSender<Pending>,
    recorder_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Pending>>>,
    finished: watch::Sender<u64>,
    counters: Counters,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("host_id", &self.host_id)
            .field("config", &self.config)
            .finish()
    }
}

impl Executor {
    /// An executor for host `host_id`.
    pub fn new(
        host_id: Uuid,
        store: Arc<dyn Store>,
        loader: PackageLoader,
        registry: Arc<Registry>,
        config: ExecutorConfig,
    ) -> Self {
        let (finished, _) = watch::channel(0);
        let (recorder, recorder_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            host_id,
            store,
            loader,
            registry,
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            executions: Mutex::new(HashMap::new()),
            packages: Mutex::new(HashMap::new()),
            only_execution: Mutex::new(None),
            recorder,
            recorder_rx: Mutex::new(Some(recorder_rx)),
            finished,
            counters: Counters::default(),
        }
    }

    /// This host's id: the owner of its claims.
    pub fn host_id(&self) -> Uuid {
        self.host_id
    }

    /// Its settings.
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// Look for ready tasks now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A receiver that changes whenever an execution this host worked on
    /// finishes.
    pub fn finished_signal(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// The counters.
    pub fn stats(&self) -> ExecutorStats {
        let c = &self.counters;
        ExecutorStats {
            claimed: c.claimed.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            discarded: c.discarded.load(Ordering::Relaxed),
            recovered: c.recovered.load(Ordering::Relaxed),
            running: self.running.lock().expect("executor lock").len() as u64,
        }
    }

    /// Interrupt this host's running tasks of `execution`.
    pub fn cancel_local(&self, execution: Uuid) {
        for ((exec, _), running) in self.running.lock().expect("executor lock").iter() {
            if *exec == execution {
                running.flag.cancel();
            }
        }
    }

    /// Claim only `execution`'s tasks from now on (what `culvert run
    /// --wait` does when no `serve` is running, so a CLI process never
    /// runs other work).
    pub fn only_execution(&self, execution: Uuid) {
        *self.only_execution.lock().expect("executor lock") = Some(execution);
    }

    /// Run until `shutdown` turns true: the claim loop plus the heartbeat,
    /// recovery and cancellation loops. Running tasks finish before it
    /// returns.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(host = %self.host_id, concurrency = self.config.concurrency, "executor starting");
        // Heartbeats and cancellations go on while running tasks drain at
        // shutdown; the loops are aborted once they have.
        let recorder_rx = self
            .recorder_rx
            .lock()
            .expect("executor lock")
            .take()
            .expect("an executor runs once");
        let background = [
            tokio::spawn(self.clone().record_loop(recorder_rx)),
            tokio::spawn(self.clone().heartbeat_loop()),
            tokio::spawn(self.clone().recovery_loop(shutdown.clone())),
            tokio::spawn(self.clone().cancel_loop()),
        ];
        let mut error_backoff = Duration::from_millis(50);
        let mut batch_waited = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = self.permits.available_permits();
            let busy = free < self.config.concurrency.max(1);
            if free == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // While tasks run, claim in batches: a claim is a write
            // transaction, and one per freed slot would cost more than the
            // tasks. Waiting for a batch adds at most a millisecond.
            let min_batch = (self.config.concurrency / 4).clamp(1, 16);
            if busy && free < min_batch && !batch_waited {
                batch_waited = true;
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            batch_waited = false;
            let limit = (free as u32).min(self.config.claim_batch);
            let lease_until = now_ms() + self.config.lease.as_millis() as i64;
            let only = *self.only_execution.lock().expect("executor lock");
            let claimed = match self
                .store
                .claim_tasks(self.host_id, limit, lease_until, only)
                .await
            {
                Ok(c) => {
                    error_backoff = Duration::from_millis(50);
                    c
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming tasks failed; retrying");
                    tokio::time::sleep(error_backoff).await;
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            self.counters
                .claimed
                .fetch_add(claimed.len() as u64, Ordering::Relaxed);
            for task in claimed {
                if let Some(ready_at) = task.ready_at {
                    telemetry::dispatch_latency(&task.tenant, ready_at, task.claimed_at);
                }
                let permit = match self.permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                };
                let me = self.clone();
                tokio::spawn(async move {
                    me.run_one(task).await;
                    drop(permit);
                    me.wake.notify_one();
                });
            }
        }
        // Wait for running tasks to finish.
        let _ = self
            .permits
            .acquire_many(self.config.concurrency.max(1) as u32)
            .await;
        for h in background {
            h.abort();
        }
        tracing::info!(host = %self.host_id, "executor stopped");
    }

    /// Record a completion through the recorder (group commit).
    async fn record(
        &self,
        task: &ClaimedTask,
        outcome: TaskOutcome,
        plan: &Arc<ExecutionPlan>,
    ) -> Result<Completion, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .recorder
            .send((task.clone(), outcome.clone(), plan.clone(), tx))
            .is_err()
        {
            return self
                .store
                .complete_task(self.host_id, task, outcome, plan)
                .await;
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => {
                self.store
                    .complete_task(self.host_id, task, outcome, plan)
                    .await
            }
        }
    }

    /// Record completions in batches: whatever is waiting (up to 64) goes
    /// into one transaction. A failed batch is retried one by one, so one
    /// bad completion cannot hold back the others.
    async fn record_loop(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>) {
        while let Some(first) = rx.recv().await {
            // A batch also stops once its outputs add up to
            // RECORD_BATCH_BYTES, so that storing them holds the write
            // transaction for a bounded time (that much plus one output).
            let mut bytes = stored_bytes(&first.1);
            let mut batch = vec![first];
            while batch.len() < 64 && bytes < RECORD_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(p) => {
                        bytes += stored_bytes(&p.1);
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let items: Vec<(ClaimedTask, TaskOutcome, Arc<ExecutionPlan>)> = batch
                .iter()
                .map(|(t, o, p, _)| (t.clone(), o.clone(), p.clone()))
                .collect();
            match self.store.complete_tasks(self.host_id, &items).await {
                Ok(results) => {
                    for ((_, _, _, reply), result) in batch.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(e) if batch.len() == 1 => {
                    if let Some((_, _, _, reply)) = batch.pop() {
                        let _ = reply.send(Err(e));
                    }
                }
                Err(_) => {
                    for (task, outcome, plan, reply) in batch {
                        let result = self
                            .store
                            .complete_task(self.host_id, &task, outcome, &plan)
                            .await;
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.heartbeat_interval).await;
            // Only the claims of tasks still running here: a task whose
            // completion could not be recorded is dropped from the map, its
            // lease lapses, and another host runs it.
            let claims: Vec<(Uuid, String, Uuid)> = self
                .running
                .lock()
                .expect("executor lock")
                .iter()
                .map(|((exec, task), r)| (*exec, task.clone(), r.token))
                .collect();
            if claims.is_empty() {
                continue;
            }
            // In (execution, task) order, as completion batches lock rows.
            let mut claims = claims;
            claims.sort();
            let until = now_ms() + self.config.lease.as_millis() as i64;
            if let Err(e) = self.store.heartbeat(self.host_id, until, &claims).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    }

    async fn recovery_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self
                .store
                .recover_expired(self.host_id, self.config.max_recoveries)
                .await
            {
                Ok(recovered) if !recovered.is_empty() => {
                    for r in &recovered {
                        tracing::warn!(
                            execution = %r.execution_id,
                            task = %r.task_id,
                            from_host = ?r.from_host,
                            gave_up = r.gave_up,
                            "recovered a task from a host whose lease expired"
                        );
                    }
                    self.counters
                        .recovered
                        .fetch_add(recovered.len() as u64, Ordering::Relaxed);
                    telemetry::lease_recoveries(recovered.len());
                    self.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recovery sweep failed"),
            }
            self.prune_caches();
            tokio::select! {
                _ = tokio::time::sleep(self.config.recovery_interval) => {}
                _ = shutdown.changed() => if *shutdown.borrow() { return },
            }
        }
    }

    async fn cancel_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.cancel_poll_interval).await;
            if self.running.lock().expect("executor lock").is_empty() {
                continue;
            }
            match self.store.cancelled_running(self.host_id).await {
                Ok(pairs) => {
                    let running = self.running.lock().expect("executor lock");
                    for key in pairs {
                        if let Some(r) = running.get(&key) {
                            r.flag.cancel();
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cancellation poll failed"),
            }
        }
    }

    /// Forget executions not used for a while (finished elsewhere, say) and
    /// compiled code no remembered execution uses.
    fn prune_caches(&self) {
        let idle = std::time::Duration::from_secs(300);
        let running: std::collections::HashSet<Uuid> = self
            .running
            .lock()
            .expect("executor lock")
            .keys()
            .map(|(e, _)| *e)
            .collect();
        self.executions
            .lock()
            .expect("executor lock")
            .retain(|id, info| {
                running.contains(id) || info.used.lock().expect("executor lock").elapsed() < idle
            });
        self.packages
            .lock()
            .expect("executor lock")
            .retain(|_, (_, metadata)| Arc::strong_count(metadata) > 1);
    }

    /// The plan, compiled code, limits and grants of an execution, cached.
    /// The tenant's limits and grants are read again when they are older
    /// than [`LIMITS_TTL`] or for a retry (`fresh`), so that a revoked
    /// grant or a lowered limit applies to the next attempt.
    async fn exec_info(&self, execution: Uuid, fresh: bool) -> Result<Arc<ExecInfo>, String> {
        let cached = self
            .executions
            .lock()
            .expect("executor lock")
            .get(&execution)
            .cloned();
        let base = match cached {
            Some(info) => {
                *info.used.lock().expect("executor lock") = std::time::Instant::now();
                if !fresh && info.loaded.elapsed() < LIMITS_TTL {
                    return Ok(info);
                }
                info.base.clone()
            }
            None => {
                let row = self
                    .store
                    .get_execution(None, execution)
                    .await
                    .map_err(|e| e.to_string())?;
                let plan = self
                    .store
                    .execution_plan(execution)
                    .await
                    .map_err(|e| e.to_string())?;
                let hash = ContentHash::from_hex(&row.content_hash)?;
                let (compiled, metadata) = self.package(&hash).await?;
                Arc::new(ExecBase {
                    plan: Arc::new(plan),
                    compiled,
                    label: format!(
                        "{}::{}@{}",
                        row.tenant, row.package_name, row.package_version
                    ),
                    tenant: row.tenant,
                    package: row.package_name,
                    metadata,
                })
            }
        };
        let limits = self
            .sandbox_limits(&base.tenant, &base.package, &base.metadata)
            .await?;
        let info = Arc::new(ExecInfo::new(base, limits));
        self.executions
            .lock()
            .expect("executor lock")
            .insert(execution, info.clone());
        Ok(info)
    }

    /// A tenant's sandbox limits and grants for `package`, read from the
    /// store, and its ceiling on task timeouts.
    async fn sandbox_limits(
        &self,
        tenant: &str,
        package: &str,
        metadata: &PackageMetadata,
    ) -> Result<(SandboxLimits, Duration), String> {
        let row = self
            .store
            .get_tenant(tenant)
            .await
            .map_err(|e| e.to_string())?;
        let grants = self
            .store
            .list_grants(tenant)
            .await
            .map_err(|e| e.to_string())?;
        let l = &row.limits;
        let base = &self.config.task_limits;
        // The tenant's limits decide; the engine still caps memory at its
        // own ceiling.
        let limits = SandboxLimits {
            memory_bytes: l.max_memory_bytes.max(1),
            fuel: l.fuel_per_call.or(base.fuel),
            output_bytes: l.max_output_bytes.min(usize::MAX as u64) as usize,
            cpu_cores: l.max_cpu_cores,
            max_context_bytes: l.max_context_bytes.min(usize::MAX as u64) as usize,
            grants: Arc::new(crate::tenants::resolve_grants(
                &metadata.capabilities,
                &grants,
                tenant,
                package,
            )),
            http: l.egress(),
            ..base.clone()
        };
        Ok((limits, Duration::from_millis(l.max_task_timeout_ms)))
    }

    /// Compiled code and metadata by content hash: from this executor's
    /// map, the registry, or the stored bytes (the package may have been
    /// removed since the execution began; its bytes stay while executions
    /// use them).
    async fn package(&self, hash: &ContentHash) -> Result<PackageEntry, String> {
        if let Some(p) = self.packages.lock().expect("executor lock").get(hash) {
            return Ok(p.clone());
        }
        let found = match self
            .registry
            .all()
            .into_iter()
            .find(|p| p.content_hash() == *hash)
        {
            Some(p) => (
                p.package.compiled.clone(),
                Arc::new(p.package.metadata.clone()),
            ),
            None => {
                let bytes = self
                    .store
                    .blob(&hash.to_hex())
                    .await
                    .map_err(|e| e.to_string())?;
                let package = self.loader.load(&bytes).await.map_err(|e| e.to_string())?;
                (package.compiled, Arc::new(package.metadata))
            }
        };
        self.packages
            .lock()
            .expect("executor lock")
            .insert(*hash, found.clone());
        Ok(found)
    }

    async fn run_one(&self, task: ClaimedTask) {
        let key = (task.execution_id, task.task_id.clone());
        // Held from the claim on, so heartbeats cover loading the package
        // too, and a cancellation finds the task.
        let flag = CancelFlag::new();
        self.running.lock().expect("executor lock").insert(
            key.clone(),
            Running {
                flag: flag.clone(),
                token: task.claim_token,
            },
        );
        // Reading the execution (its row, plan, package, tenant) can fail
        // while the database is briefly unreachable: try again for a few
        // seconds (the task is held, so heartbeats keep its lease) before
        // failing the attempt as a host problem.
        let info = retried("reading the execution", task.execution_id, || {
            self.exec_info(task.execution_id, task.attempt > 1)
        })
        .await;
        let (outcome, plan) = match info {
            Err(e) => {
                let Ok(plan) = self.store.execution_plan(task.execution_id).await else {
                    tracing::error!(execution = %task.execution_id, "execution vanished");
                    self.running.lock().expect("executor lock").remove(&key);
                    return;
                };
                // The package could not be loaded here (its bytes gone, the
                // database unreachable): a host problem, retried as the
                // task's policy allows.
                let retry_at = plan.task(&task.task_id).and_then(|t| {
                    retry_decision(&t.retry, task.attempt, FailureKind::Host, now_ms())
                });
                let outcome = TaskOutcome::Failed {
                    kind: FailureKind::Host,
                    message: format!("cannot load the execution's package: {e}"),
                    retry: retry_at,
                    logs: None,
                };
                (outcome, Arc::new(plan))
            }
            Ok(info) => {
                let outcome = self.attempt(&task, &info, flag).await;
                self.charge_host_work(&task, stored_bytes(&outcome));
                (outcome, info.base.plan.clone())
            }
        };
        match &outcome {
            TaskOutcome::Succeeded { .. } => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            TaskOutcome::Failed { .. } => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            TaskOutcome::Skipped { .. } => {}
        };
        let mut delay = Duration::from_millis(20);
        for attempt in 0.. {
            match self.record(&task, outcome.clone(), &plan).await {
                Ok(mut done) => {
                    if done.accepted {
                        let (outcome, kind) = outcome_labels(&outcome);
                        telemetry::task_finished(&task.tenant, outcome, kind);
                    }
                    if done.finalize {
                        // The execution's last task: its final context is
                        // assembled now, outside the recording transaction.
                        // If it keeps failing, the finalisation lease lapses
                        // and a recovery sweep finishes it.
                        let finished =
                            retried("finishing the execution", task.execution_id, || {
                                self.store
                                    .finalize_execution(self.host_id, task.execution_id)
                            })
                            .await;
                        match finished {
                            Ok(status) => {
                                if let Some(status) = status {
                                    tracing::info!(
                                        execution = %task.execution_id,
                                        tenant = %task.tenant,
                                        status = %status,
                                        "execution finished"
                                    );
                                }
                                done.finished = status;
                            }
                            Err(e) => tracing::warn!(
                                error = %e,
                                execution = %task.execution_id,
                                "finishing the execution failed; a recovery sweep will retry"
                            ),
                        }
                    }
                    if !done.accepted {
                        self.counters.discarded.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            execution = %task.execution_id,
                            task = %task.task_id,
                            "this host lost its lease on the task; its result was discarded"
                        );
                    }
                    if done.became_ready > 0 {
                        self.wake.notify_one();
                    }
                    if done.finished.is_some() {
                        self.executions
                            .lock()
                            .expect("executor lock")
                            .remove(&task.execution_id);
                        self.finished.send_modify(|n| *n += 1);
                    }
                    break;
                }
                Err(e)
                    if attempt < 20 && (e.is_retriable() || matches!(e, StoreError::Other(_))) =>
                {
                    tracing::warn!(error = %e, task = %task.task_id, "recording a completion failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    // The lease will expire and another attempt will run.
                    tracing::error!(error = %e, task = %task.task_id, "could not record a completion");
                    break;
                }
            }
        }
        self.running.lock().expect("executor lock").remove(&key);
    }

    /// Charge the host's work on `bytes` of `task`'s data to its tenant's
    /// CPU share (see [`HOST_NS_PER_BYTE`]).
    fn charge_host_work(&self, task: &ClaimedTask, bytes: usize) {
        let work = Duration::from_nanos((bytes as u64).saturating_mul(HOST_NS_PER_BYTE));
        self.loader
            .engine()
            .cpu()
            .charge(&task.tenant, work, task.limits.max_cpu_cores);
    }

    /// The input of a task with dependencies: their outputs merged a chunk
    /// at a time ([`merge_outputs`]: only the merge so far and one chunk in
    /// memory, the merge on a blocking thread, no write transaction open),
    /// stopping at the tenant's `max_context_bytes`. Then its trigger rule decides: `Ok`
    /// with the input to run with, or `Err` with the outcome to record (a
    /// skip, or a failure).
    async fn merged_input(
        &self,
        task: &ClaimedTask,
        meta: &TaskMeta,
    ) -> Result<String, TaskOutcome> {
        let host_failure = |message: String| TaskOutcome::Failed {
            kind: FailureKind::Host,
            retry: retry_decision(&meta.retry, task.attempt, FailureKind::Host, now_ms()),
            message,
            logs: None,
        };
        let limit = task.limits.max_context_bytes.min(usize::MAX as u64) as usize;
        let found = retried("reading dependencies' outputs", task.execution_id, || {
            merge_outputs(
                self.store.as_ref(),
                task.execution_id,
                &meta.dependencies,
                limit,
            )
        })
        .await
        .map_err(|e| host_failure(format!("reading its dependencies' outputs: {e}")))?;
        let input = found.merged.map_err(|(e, dep)| TaskOutcome::Failed {
            kind: FailureKind::ContextTooLarge,
            message: format!(
                "task '{}': its input context, merged from its dependencies' outputs, reached {} bytes when the output of '{dep}' was merged in, over the tenant's max_context_bytes of {}",
                task.task_id, e.size, e.limit
            ),
            retry: None,
            logs: None,
        })?;
        match decide(meta, &found.states, input) {
            Decision::Run { input } => Ok(Value::Object(input).to_string()),
            Decision::Skip { reason, input } => Err(TaskOutcome::Skipped {
                reason,
                output: input,
            }),
        }
    }

    async fn attempt(&self, task: &ClaimedTask, info: &ExecInfo, flag: CancelFlag) -> TaskOutcome {
        let Some(meta) = info.base.plan.task(&task.task_id) else {
            return TaskOutcome::Failed {
                kind: FailureKind::Permanent,
                message: format!("the workflow has no task '{}'", task.task_id),
                retry: None,
                logs: None,
            };
        };
        let merged;
        let input = match &task.input {
            Some(root) => root.as_str(),
            None => match self.merged_input(task, meta).await {
                Ok(text) => {
                    self.charge_host_work(task, text.len());
                    merged = text;
                    merged.as_str()
                }
                Err(outcome) => return outcome,
            },
        };
        if input.len() > info.limits.max_context_bytes {
            return TaskOutcome::Failed {
                kind: FailureKind::ContextTooLarge,
                message: format!(
                    "task '{}': its input context is {} bytes, over the tenant's max_context_bytes of {}",
                    task.task_id,
                    input.len(),
                    info.limits.max_context_bytes
                ),
                retry: None,
                logs: None,
            };
        }
        let timeout = meta
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.config.default_task_timeout)
            .min(info.max_timeout);
        let limits = SandboxLimits {
            timeout,
            ..info.limits.clone()
        };
        if flag.is_cancelled() {
            return TaskOutcome::Failed {
                kind: FailureKind::Cancelled,
                message: "cancelled before it started".into(),
                retry: None,
                logs: None,
            };
        }
        let execution_id = task.execution_id.to_string();
        let labels = Arc::new(CallLabels {
            package: info.base.label.clone(),
            workflow: info.base.plan.workflow.name.clone(),
            task: task.task_id.clone(),
            execution: execution_id.clone(),
            tenant: task.tenant.clone(),
        });
        let call = TaskCall {
            workflow: &info.base.plan.workflow.name,
            task: &task.task_id,
            context_json: input,
            execution_id: &execution_id,
            attempt: task.attempt,
            max_attempts: task.max_attempts,
        };
        let started = std::time::Instant::now();
        let run = package::run_task_logged(
            self.loader.engine(),
            &info.base.compiled,
            &call,
            &limits,
            labels,
            Some(flag),
        )
        .await;
        telemetry::task_duration(&task.tenant, started.elapsed());
        // Stored with the completion, whatever the ending.
        let logs = Some(Arc::new(run.logs));
        match run.result {
            Ok(out) => TaskOutcome::Succeeded {
                output: out.context,
                logs,
            },
            Err(f) => {
                let retry_at = retry_decision(&meta.retry, task.attempt, f.kind, now_ms());
                tracing::info!(
                    package = %info.base.label,
                    task = %task.task_id,
                    execution = %task.execution_id,
                    attempt = task.attempt,
                    kind = %f.kind,
                    retry = retry_at.is_some(),
                    "task attempt failed: {}", crate::guest_text::Escaped(&f.message)
                );
                TaskOutcome::Failed {
                    kind: f.kind,
                    message: f.message,
                    retry: retry_at,
                    logs,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Backoff;

    fn policy(retry_on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::Fixed,
            initial_delay_ms: 100,
            max_delay_ms: 100,
            jitter: false,
            retry_on,
        }
    }

    #[test]
    fn retries_follow_the_policy_and_the_kind() {
        let t = policy(RetryOn::TransientOnly);
        let at = |at: i64| Some(ScheduledRetry { at, delay_ms: 100 });
        assert_eq!(
            retry_decision(&t, 1, FailureKind::Transient, 1000),
            at(1100)
        );
        assert_eq!(retry_decision(&t, 1, FailureKind::Timeout, 0), at(100));
        assert_eq!(retry_decision(&t, 1, FailureKind::Permanent, 0), None);
        assert_eq!(retry_decision(&t, 1, FailureKind::OutOfFuel, 0), None);
        assert_eq!(
            retry_decision(&t, 3, FailureKind::Transient, 0),
            None,
            "no attempts left"
        );
        let all = policy(RetryOn::AllErrors);
        assert_eq!(retry_decision(&all, 1, FailureKind::Permanent, 0), at(100));
        assert_eq!(retry_decision(&all, 1, FailureKind::Cancelled, 0), None);
        let never = policy(RetryOn::Never);
        assert_eq!(retry_decision(&never, 1, FailureKind::Transient, 0), None);
    }
}
