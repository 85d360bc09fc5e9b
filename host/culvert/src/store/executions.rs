//! Workflow executions in the store: rows, task rows, events, and the
//! [`ExecutionStore`] trait whose calls are each one transaction.

use crate::package::FailureKind;
use crate::scheduler::{
    BoundedMerge, ContextTooLarge, DepState, ExecutionPlan, ExecutionStatus, TaskStatus,
};
use crate::tenants::TenantLimits;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

use super::Result;

/// An execution to create.
#[derive(Debug, Clone)]
pub struct NewExecution<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The package it runs.
    pub package_id: Uuid,
    /// The package's name.
    pub package_name: &'a str,
    /// The package's version.
    pub package_version: &'a str,
    /// The bytes it is pinned to.
    pub content_hash: &'a str,
    /// The workflow's DAG.
    pub plan: &'a ExecutionPlan,
    /// The initial context.
    pub context: &'a Map<String, Value>,
    /// The tenant's limits: `max_queued_executions` is checked (with the
    /// tenant's row locked) in the inserting transaction.
    pub limits: &'a TenantLimits,
}

/// A workflow execution.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionRow {
    /// Its id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// The package it runs.
    pub package_id: Uuid,
    /// The package's name.
    pub package_name: String,
    /// The package's version.
    pub package_version: String,
    /// The bytes it is pinned to.
    pub content_hash: String,
    /// The workflow.
    pub workflow: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// The initial context.
    pub context: Value,
    /// The final context, once finished.
    pub output: Option<Value>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Tasks not finished yet.
    pub tasks_remaining: i64,
    /// Created, in ms.
    pub created_at: i64,
    /// First task claimed, in ms.
    pub started_at: Option<i64>,
    /// Finished, in ms.
    pub finished_at: Option<i64>,
}

/// One task of an execution.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    /// The execution.
    pub execution_id: Uuid,
    /// The task id.
    pub task_id: String,
    /// Its status.
    pub status: TaskStatus,
    /// Attempts started.
    pub attempt: i64,
    /// The retry policy's limit.
    pub max_attempts: i64,
    /// When a ready task may run.
    pub next_run_at: Option<i64>,
    /// Its output context.
    pub output: Option<Value>,
    /// Its last error.
    pub last_error: Option<String>,
    /// The kind of its last error.
    pub last_error_kind: Option<String>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// The host running it.
    pub claimed_by: Option<Uuid>,
    /// When the running host's lease ends.
    pub lease_expires_at: Option<i64>,
    /// How many times it was recovered from a dead host.
    pub recoveries: i64,
    /// Last attempt's start, in ms.
    pub started_at: Option<i64>,
    /// Finish, in ms.
    pub finished_at: Option<i64>,
    /// Last attempt's duration.
    pub duration_ms: Option<i64>,
    /// When it last became ready, in ms.
    pub ready_at: Option<i64>,
}

/// One entry of the event log.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// Order within the log.
    pub id: i64,
    /// The execution.
    pub execution_id: Uuid,
    /// The task, for task events.
    pub task_id: Option<String>,
    /// What happened: `created`, `task_ready`, `claimed`, `completed`,
    /// `failed`, `retry_scheduled`, `skipped`, `lease_expired`,
    /// `recovered`, `cancelled`, `execution_completed`,
    /// `execution_failed`.
    pub kind: String,
    /// Details.
    pub detail: Option<String>,
    /// The host that recorded it.
    pub host: Option<Uuid>,
    /// When, in ms.
    pub at: i64,
}

/// A task a host claimed.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    /// The execution.
    pub execution_id: Uuid,
    /// The task id.
    pub task_id: String,
    /// The tenant.
    pub tenant: String,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// The retry policy's limit.
    pub max_attempts: u32,
    /// The input context (JSON): a root's initial context. `None` for a
    /// task with dependencies: the host that runs it merges their outputs
    /// (outside any write transaction, bounded by `max_context_bytes`) and
    /// decides whether it runs or is skipped.
    pub input: Option<String>,
    /// The tenant's limits, as the claim read them.
    pub limits: Arc<TenantLimits>,
    /// When it became ready, in ms.
    pub ready_at: Option<i64>,
    /// When it was claimed, in ms.
    pub claimed_at: i64,
    /// This claim's token: its completion must present it.
    pub claim_token: Uuid,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum TaskOutcome {
    /// It succeeded with this output.
    Succeeded {
        /// The output context.
        output: Map<String, Value>,
    },
    /// Its trigger rule did not hold (or a dependency did not complete):
    /// it did not run, and its merged input passes through as its output.
    Skipped {
        /// Why.
        reason: String,
        /// Its merged input context, its output.
        output: Map<String, Value>,
    },
    /// It failed.
    Failed {
        /// What kind of failure.
        kind: FailureKind,
        /// Details.
        message: String,
        /// When to try again; `None` means the failure is final.
        retry_at: Option<i64>,
    },
}

/// What recording a completion did.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// False when this host no longer held the task (its lease expired and
    /// the task was recovered): the result was discarded.
    pub accepted: bool,
    /// Tasks that became ready.
    pub became_ready: u32,
    /// The execution's final status, if it just finished (or was
    /// cancelled).
    pub finished: Option<ExecutionStatus>,
    /// The execution's last task just finished: the caller assembles its
    /// final context with
    /// [`finalize_execution`](ExecutionStore::finalize_execution), outside
    /// the transaction (it holds the finalisation lease for
    /// [`FINALIZE_LEASE_MS`]).
    pub finalize: bool,
}

/// How long a host holds an execution's finalisation before another host's
/// recovery sweep may take it over.
pub const FINALIZE_LEASE_MS: i64 = 30_000;

/// How many times an execution's finalisation may be started (a host that
/// dies or runs out of memory while assembling the final context leaves it
/// unfinished) before the sweep fails the execution instead.
pub const MAX_FINALIZE_ATTEMPTS: i64 = 3;

/// A task taken back from a host whose lease expired.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The execution.
    pub execution_id: Uuid,
    /// The task.
    pub task_id: String,
    /// The host that lost it.
    pub from_host: Option<Uuid>,
    /// True when it exceeded the recovery limit and was failed instead.
    pub gave_up: bool,
}

/// Filters for [`ExecutionStore::list_executions`].
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter<'a> {
    /// Only this tenant's.
    pub tenant: Option<&'a str>,
    /// Only with this status.
    pub status: Option<ExecutionStatus>,
    /// At most this many, newest first. Default 100.
    pub limit: Option<i64>,
}

/// Executions, tasks and events. Every call is one transaction.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Create an execution and its task rows; roots whose trigger rule
    /// holds on the initial context are ready at once.
    async fn create_execution(&self, new: NewExecution<'_>) -> Result<ExecutionRow>;

    /// One execution; with `tenant`, only if it belongs to that tenant
    /// (otherwise "not found").
    async fn get_execution(&self, tenant: Option<&str>, id: Uuid) -> Result<ExecutionRow>;

    /// Executions, newest first.
    async fn list_executions(&self, filter: ExecutionFilter<'_>) -> Result<Vec<ExecutionRow>>;

    /// The tasks of an execution, in no particular order.
    async fn execution_tasks(&self, id: Uuid) -> Result<Vec<TaskRow>>;

    /// The event log of an execution, in order.
    async fn execution_events(&self, id: Uuid) -> Result<Vec<EventRow>>;

    /// The DAG an execution runs.
    async fn execution_plan(&self, id: Uuid) -> Result<ExecutionPlan>;

    /// Claim up to `limit` ready tasks for `host`, leasing them until
    /// `lease_until` (ms); with `only_execution`, only that execution's.
    ///
    /// Tenants are served fairly: slots go round-robin to the tenants with
    /// ready work, fewest running first, and no tenant gets more than its
    /// `max_concurrent_tasks` running over every host.
    async fn claim_tasks(
        &self,
        host: Uuid,
        limit: u32,
        lease_until: i64,
        only_execution: Option<Uuid>,
    ) -> Result<Vec<ClaimedTask>>;

    /// Record how an attempt ended, unlock or skip dependents, and finish
    /// the execution if this was its last task: one transaction. Refused
    /// (not an error: `accepted` is false) when the claim is no longer
    /// current (its token does not match: the lease expired and the task
    /// was taken back). A failure of a cancelled execution's task is final:
    /// it is not retried.
    async fn complete_task(
        &self,
        host: Uuid,
        task: &ClaimedTask,
        outcome: TaskOutcome,
        plan: &ExecutionPlan,
    ) -> Result<Completion>;

    /// [`complete_task`](Self::complete_task) for several tasks in one
    /// transaction (group commit): one result per task, in order. If any
    /// fails, none is recorded.
    async fn complete_tasks(
        &self,
        host: Uuid,
        batch: &[(ClaimedTask, TaskOutcome, std::sync::Arc<ExecutionPlan>)],
    ) -> Result<Vec<Completion>>;

    /// Extend to `lease_until` the leases of the claimed tasks `claims`
    /// (execution, task, claim token) that `host` still holds.
    async fn heartbeat(
        &self,
        host: Uuid,
        lease_until: i64,
        claims: &[(Uuid, String, Uuid)],
    ) -> Result<u64>;

    /// Take back tasks whose lease expired: ready again with one more
    /// recovery counted, or failed once `max_recoveries` is exceeded. Also
    /// takes over finalisations whose lease expired and finishes them, or
    /// fails the execution after [`MAX_FINALIZE_ATTEMPTS`].
    async fn recover_expired(&self, host: Uuid, max_recoveries: u32) -> Result<Vec<Recovered>>;

    /// Each task of `ids` (at most 500) that exists: its status, its stored
    /// output's length (in characters), and the output itself when it is at
    /// most [`INLINE_OUTPUT_CHARS`] long; read outside any write
    /// transaction.
    async fn task_states(&self, execution_id: Uuid, ids: &[String]) -> Result<Vec<TaskState>>;

    /// The stored outputs (JSON) of the tasks of `ids` (at most 500) that
    /// have one, read outside any write transaction.
    async fn task_outputs(
        &self,
        execution_id: Uuid,
        ids: &[String],
    ) -> Result<Vec<(String, String)>>;

    /// Finish an execution whose last task finished: merge its leaves'
    /// outputs one at a time (outside any write transaction, bounded by the
    /// tenant's `max_final_context_bytes`), then record its final status
    /// and context in a short transaction. Returns the status it has then,
    /// or `None` if it is not finished (some task is still unfinished).
    async fn finalize_execution(&self, host: Uuid, id: Uuid) -> Result<Option<ExecutionStatus>>;

    /// Executions of `tenant` not finished yet.
    async fn count_unfinished(&self, tenant: &str) -> Result<i64>;

    /// Cancel an execution of `tenant`: pending tasks are skipped, and
    /// hosts interrupt the running ones.
    async fn cancel_execution(&self, tenant: &str, id: Uuid) -> Result<ExecutionRow>;

    /// `(execution, task)` pairs that `host` runs for executions that were
    /// cancelled.
    async fn cancelled_running(&self, host: Uuid) -> Result<Vec<(Uuid, String)>>;
}

/// Stored outputs read per query by [`merge_outputs`]: at most this many
/// characters (plus one larger output on its own), or 500 tasks.
const MERGE_CHUNK_CHARS: i64 = 1 << 20;

/// Outputs up to this many characters come with their task's status
/// ([`ExecutionStore::task_states`]), so that the common small merge is
/// one query; 500 of them are at most 8 MiB.
pub const INLINE_OUTPUT_CHARS: i64 = 16 * 1024;

/// Merges of at most this many characters run on the calling task; larger
/// ones on a blocking thread.
const INLINE_MERGE_CHARS: i64 = 64 * 1024;

/// What [`ExecutionStore::task_states`] returns for one task: its id,
/// status, output length (if it has an output) and, for a short output,
/// the output.
pub type TaskState = (String, TaskStatus, Option<i64>, Option<String>);

/// What [`merge_outputs`] found.
#[derive(Debug)]
pub struct MergedOutputs {
    /// The tasks' statuses, in the order asked for (a task with no row
    /// counts as failed); empty when the merge was stopped.
    pub states: Vec<DepState>,
    /// Their outputs merged in that order, or the limit that stopped the
    /// merge and the task whose output took it over.
    pub merged: std::result::Result<Map<String, Value>, (ContextTooLarge, String)>,
}

/// Merge the stored outputs of the tasks `ids` of `execution_id`, in that
/// order, never past `limit` bytes, outside any write transaction: short
/// outputs come with the statuses, longer ones are read a chunk at a time
/// ([`MERGE_CHUNK_CHARS`]), and a chunk of any size is parsed and merged on
/// a blocking thread, so only the merge so far and one chunk are in
/// memory. An output that is not a JSON object is left out, as a failed
/// task's (missing) output is.
///
/// # Errors
/// When the database cannot be read.
pub async fn merge_outputs<S: ExecutionStore + ?Sized>(
    store: &S,
    execution_id: Uuid,
    ids: &[String],
    limit: usize,
) -> Result<MergedOutputs> {
    let mut statuses: HashMap<String, TaskStatus> = HashMap::new();
    let mut merge = BoundedMerge::new(limit);
    // A chunk of tasks at a time: its statuses and short outputs in one
    // query, its longer outputs in further chunks; merged in order.
    for chunk in ids.chunks(500) {
        let mut inline: HashMap<String, String> = HashMap::new();
        let mut lengths: HashMap<String, i64> = HashMap::new();
        for (id, status, len, output) in store.task_states(execution_id, chunk).await? {
            if let Some(text) = output {
                inline.insert(id.clone(), text);
            }
            if let Some(len) = len {
                lengths.insert(id.clone(), len);
            }
            statuses.insert(id, status);
        }
        let with_output: Vec<(&String, i64)> = chunk
            .iter()
            .filter_map(|id| lengths.get(id).map(|len| (id, *len)))
            .collect();
        let mut next = 0;
        while next < with_output.len() {
            let mut batch = Vec::new();
            let mut chars = 0;
            while let Some((id, len)) = with_output.get(next) {
                if !batch.is_empty() && (batch.len() >= 500 || chars + len > MERGE_CHUNK_CHARS) {
                    break;
                }
                chars += len;
                batch.push((*id).clone());
                next += 1;
            }
            let missing: Vec<String> = batch
                .iter()
                .filter(|id| !inline.contains_key(*id))
                .cloned()
                .collect();
            let mut outputs: HashMap<String, String> = batch
                .iter()
                .filter_map(|id| inline.remove(id).map(|text| (id.clone(), text)))
                .collect();
            if !missing.is_empty() {
                outputs.extend(store.task_outputs(execution_id, &missing).await?);
            }
            let merge_batch = move |mut merge: BoundedMerge| {
                for id in batch {
                    let Some(text) = outputs.get(&id) else {
                        continue;
                    };
                    if let Ok(map) = serde_json::from_str::<Map<String, Value>>(text)
                        && let Err(e) = merge.add(&map, text.len())
                    {
                        return (merge, Err((e, id)));
                    }
                }
                (merge, Ok(()))
            };
            let (back, result) = if chars <= INLINE_MERGE_CHARS {
                merge_batch(merge)
            } else {
                tokio::task::spawn_blocking(move || merge_batch(merge))
                    .await
                    .map_err(|e| super::StoreError::Other(format!("merging task outputs: {e}")))?
            };
            merge = back;
            if let Err(stopped) = result {
                return Ok(MergedOutputs {
                    states: Vec::new(),
                    merged: Err(stopped),
                });
            }
        }
    }
    let states = ids
        .iter()
        .map(|id| DepState {
            task_id: id.clone(),
            status: statuses.get(id).copied().unwrap_or(TaskStatus::Failed),
        })
        .collect();
    Ok(MergedOutputs {
        states,
        merged: Ok(merge.finish()),
    })
}
