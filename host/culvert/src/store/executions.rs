//! Workflow executions in the store: the [`ExecutionStore`] trait, whose
//! calls are each one transaction, its rows and filters, and its
//! implementation for both backends.
//!
//! Creating, reading, cancelling and finishing executions are written here;
//! claiming is in `claims.rs`, recording completions in `completions.rs`,
//! taking back what dead hosts held in `recovery.rs`, appending to the
//! event log in `events.rs`.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::claims::ClaimedTask;
use super::completions::{Completion, TaskOutcome};
use super::events::Event;
use super::logs::AttemptLogs;
use super::recovery::Recovered;
use super::retention::PruneReport;
use super::{Result, StoreError, now_ms};
use crate::package::WorkflowMeta;
use crate::scheduler::{
    BoundedMerge, ContextTooLarge, DepState, ExecutionPlan, ExecutionStatus, TaskStatus,
};
use crate::telemetry::FleetCounts;
use crate::tenants::TenantLimits;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

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
    /// A client's idempotency key: unique per tenant, so a second insert
    /// with it fails with [`StoreError::Conflict`] (see
    /// [`ExecutionStore::execution_by_idempotency_key`]).
    pub idempotency_key: Option<&'a str>,
    /// An audit entry to record in the same transaction: no start without
    /// its record. Its `subject` becomes the new execution's id, and the
    /// workflow, package and content hash join its `detail`.
    pub audit: Option<&'a crate::access::AuditEntry>,
    /// The schedule that started it and the due time it started for (ms).
    pub schedule: Option<(Uuid, i64)>,
}

/// What a start of a group became, before its transaction commits.
#[derive(Debug)]
pub(crate) enum Created {
    /// Inserted as written: no root was skipped.
    Row(Box<ExecutionRow>),
    /// Inserted, but skipped roots changed it in the transaction: read it
    /// back; `finalize` when nothing was left to run.
    Changed {
        /// The new execution.
        id: Uuid,
        /// Every task was skipped: finish it now.
        finalize: bool,
    },
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
    /// The schedule that started it, if one did.
    pub schedule: Option<Uuid>,
    /// The due time it was started for, in ms (shown as RFC 3339).
    #[serde(serialize_with = "rfc3339_opt")]
    pub scheduled_for: Option<i64>,
}

/// Serialize a time in ms as RFC 3339, or null.
fn rfc3339_opt<S: serde::Serializer>(
    ms: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&crate::cron::rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

impl ExecutionRow {
    /// Where the next page of a listing starts: pass it as
    /// [`ExecutionFilter::before`].
    pub fn cursor(&self) -> (i64, Uuid) {
        (self.created_at, self.id)
    }
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

/// Filters for [`ExecutionStore::list_executions`].
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter<'a> {
    /// Only this tenant's.
    pub tenant: Option<&'a str>,
    /// Only with this status.
    pub status: Option<ExecutionStatus>,
    /// Only of this workflow.
    pub workflow: Option<&'a str>,
    /// Only those this schedule started.
    pub schedule: Option<Uuid>,
    /// Only older than this `(created_at, id)`: the last row of the
    /// previous page (a cursor; see [`ExecutionRow::cursor`]).
    pub before: Option<(i64, Uuid)>,
    /// At most this many, newest first. Default 100.
    pub limit: Option<i64>,
}

/// Executions, tasks and events. Every call is one transaction.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Create an execution and its task rows; roots whose trigger rule
    /// holds on the initial context are ready at once.
    async fn create_execution(&self, new: NewExecution<'_>) -> Result<ExecutionRow>;

    /// Create several executions in one transaction (group commit): one
    /// result per start, in order. A start its tenant's quota refuses
    /// fails alone; if the transaction fails, every start fails and none
    /// is created.
    async fn create_executions(
        &self,
        batch: &[NewExecution<'_>],
    ) -> Result<Vec<Result<ExecutionRow>>> {
        let mut out = Vec::with_capacity(batch.len());
        for new in batch {
            out.push(self.create_execution(new.clone()).await);
        }
        Ok(out)
    }

    /// One execution; with `tenant`, only if it belongs to that tenant
    /// (otherwise "not found").
    async fn get_execution(&self, tenant: Option<&str>, id: Uuid) -> Result<ExecutionRow>;

    /// The execution `tenant` started with `key`, if any.
    async fn execution_by_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<ExecutionRow>>;

    /// Executions, newest first.
    async fn list_executions(&self, filter: ExecutionFilter<'_>) -> Result<Vec<ExecutionRow>>;

    /// The tasks of an execution, in no particular order.
    async fn execution_tasks(&self, id: Uuid) -> Result<Vec<TaskRow>>;

    /// The event log of an execution, in order.
    async fn execution_events(&self, id: Uuid) -> Result<Vec<EventRow>>;

    /// At most `limit` events of execution `id` after event `after` (an
    /// [`EventRow::id`]; 0 for the first), oldest first.
    async fn execution_events_after(
        &self,
        id: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>>;

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
        batch: &[(ClaimedTask, TaskOutcome, Arc<ExecutionPlan>)],
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

    /// The first task (by id) of execution `id` that failed, if any.
    async fn failed_task(&self, id: Uuid) -> Result<Option<String>>;

    /// The input context task `task` of execution `id` was (or will be)
    /// given, as stored (JSON text), once it was made ready; read outside
    /// any write transaction.
    async fn task_input(&self, id: Uuid, task: &str) -> Result<Option<String>>;

    /// Executions of `tenant` not finished yet.
    async fn count_unfinished(&self, tenant: &str) -> Result<i64>;

    /// Cancel an execution of `tenant`: pending tasks are skipped, and
    /// hosts interrupt the running ones.
    async fn cancel_execution(&self, tenant: &str, id: Uuid) -> Result<ExecutionRow>;

    /// Re-run failed execution `id` of `tenant` in place, from its
    /// unfinished work: each task of `reset` (failed or skipped) is made
    /// ready (no unfinished dependency) or not started again, with a fresh
    /// budget of attempts; completed tasks keep their outputs; the package
    /// version stays the one the execution is pinned to. Counted against
    /// `max_queued_executions` like a start.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it is not the tenant's,
    /// [`StoreError::Conflict`] when it has not failed,
    /// [`StoreError::Quota`] over `max_queued_executions`.
    async fn retry_execution(
        &self,
        tenant: &str,
        id: Uuid,
        reset: &[TaskReset],
        limits: &TenantLimits,
    ) -> Result<ExecutionRow>;

    /// `(execution, task)` pairs that `host` runs for executions that were
    /// cancelled.
    async fn cancelled_running(&self, host: Uuid) -> Result<Vec<(Uuid, String)>>;

    /// Ready, waiting and running tasks and unfinished executions per
    /// tenant, in one read of indexes only (`stats.rs`): what every host
    /// reports as the fleet's gauges (see [`record_fleet_counts`](crate::record_fleet_counts)).
    async fn fleet_counts(&self) -> Result<FleetCounts>;

    /// What the guests of `execution_id`'s attempts said, in the order
    /// their completions were recorded; only `task`'s, or only attempt
    /// `attempt`, when given. The caller checks the execution's tenant.
    async fn task_logs(
        &self,
        execution_id: Uuid,
        task: Option<&str>,
        attempt: Option<u32>,
    ) -> Result<Vec<AttemptLogs>>;

    /// Delete executions that finished (completed, failed or cancelled)
    /// before `finished_before_ms` and have no task still running, with
    /// their tasks, events and logs, oldest first, `batch` executions per
    /// write transaction; then the blobs nothing uses any more. Safe to run
    /// on several hosts at once.
    async fn prune_finished(&self, finished_before_ms: i64, batch: u32) -> Result<PruneReport>;
}

/// One task [`ExecutionStore::retry_execution`] runs again.
#[derive(Debug, Clone)]
pub struct TaskReset {
    /// The task.
    pub task_id: String,
    /// Its dependencies that are reset too (not finished any more): ready
    /// at 0.
    pub deps_remaining: i64,
    /// A root's input (the initial context); `None` for a task with
    /// dependencies, whose input is merged when it is claimed.
    pub input: Option<Map<String, Value>>,
    /// Attempts it may make from now on (its policy's `max_attempts`).
    pub attempts: i64,
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
                    .map_err(|e| StoreError::Other(format!("merging task outputs: {e}")))?
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

/// An `executions` row, as stored (the columns [`ExecutionRow`] shows).
#[derive(sqlx::FromRow)]
struct StoredExecution {
    id: Uuid,
    tenant: String,
    package_id: Uuid,
    package_name: String,
    package_version: String,
    content_hash: String,
    workflow: String,
    /// An [`ExecutionStatus`], as text.
    status: String,
    /// JSON.
    context: Option<String>,
    /// JSON.
    output: Option<String>,
    error: Option<String>,
    tasks_remaining: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    schedule_id: Option<Uuid>,
    scheduled_for: Option<i64>,
}

impl TryFrom<StoredExecution> for ExecutionRow {
    type Error = StoreError;

    fn try_from(row: StoredExecution) -> Result<Self> {
        let status = ExecutionStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Other(format!("unknown execution status '{}'", row.status))
        })?;
        Ok(ExecutionRow {
            id: row.id,
            tenant: row.tenant,
            package_id: row.package_id,
            package_name: row.package_name,
            package_version: row.package_version,
            content_hash: row.content_hash,
            workflow: row.workflow,
            status,
            context: json_column(row.context).unwrap_or(Value::Null),
            output: json_column(row.output),
            error: row.error,
            tasks_remaining: row.tasks_remaining,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            schedule: row.schedule_id,
            scheduled_for: row.scheduled_for,
        })
    }
}

/// A `task_executions` row, as stored (the columns [`TaskRow`] shows).
#[derive(sqlx::FromRow)]
struct StoredTask {
    execution_id: Uuid,
    task_id: String,
    /// A [`TaskStatus`], as text.
    status: String,
    attempt: i64,
    max_attempts: i64,
    next_run_at: Option<i64>,
    /// JSON.
    output: Option<String>,
    last_error: Option<String>,
    last_error_kind: Option<String>,
    skip_reason: Option<String>,
    claimed_by: Option<Uuid>,
    lease_expires_at: Option<i64>,
    recoveries: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    duration_ms: Option<i64>,
    ready_at: Option<i64>,
}

impl TryFrom<StoredTask> for TaskRow {
    type Error = StoreError;

    fn try_from(row: StoredTask) -> Result<Self> {
        Ok(TaskRow {
            execution_id: row.execution_id,
            task_id: row.task_id,
            status: parse_task_status(&row.status)?,
            attempt: row.attempt,
            max_attempts: row.max_attempts,
            next_run_at: row.next_run_at,
            output: json_column(row.output),
            last_error: row.last_error,
            last_error_kind: row.last_error_kind,
            skip_reason: row.skip_reason,
            claimed_by: row.claimed_by,
            lease_expires_at: row.lease_expires_at,
            recoveries: row.recoveries,
            started_at: row.started_at,
            finished_at: row.finished_at,
            duration_ms: row.duration_ms,
            ready_at: row.ready_at,
        })
    }
}

/// An `execution_events` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredEvent {
    id: i64,
    execution_id: Uuid,
    task_id: Option<String>,
    kind: String,
    detail: Option<String>,
    host: Option<Uuid>,
    at: i64,
}

impl From<StoredEvent> for EventRow {
    fn from(row: StoredEvent) -> Self {
        EventRow {
            id: row.id,
            execution_id: row.execution_id,
            task_id: row.task_id,
            kind: row.kind,
            detail: row.detail,
            host: row.host,
            at: row.at,
        }
    }
}

/// Parse a stored JSON text column; text that is not JSON reads as `None`.
fn json_column(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Parse a stored task status.
fn parse_task_status(status: &str) -> Result<TaskStatus> {
    TaskStatus::parse(status)
        .ok_or_else(|| StoreError::Other(format!("unknown task status '{status}'")))
}

/// `select` (ending in `WHERE` or `AND`) restricted to the tasks `ids` of
/// `execution_id`.
fn tasks_query<DB>(select: &str, execution_id: Uuid, ids: &[String]) -> QueryBuilder<DB>
where
    DB: Database,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(select.to_string());
    qb.push(" execution_id = ");
    qb.push_bind(execution_id);
    qb.push(" AND task_id IN (");
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(id.clone());
    }
    qb.push(")");
    qb
}

#[async_trait]
impl<S, DB> ExecutionStore for S
where
    S: SqlBackend<Db = DB>,
    DB: Database<QueryResult: RowsAffected>,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
{
    async fn create_execution(&self, new: NewExecution<'_>) -> Result<ExecutionRow> {
        let mut created = self.create_executions(std::slice::from_ref(&new)).await?;
        created.pop().expect("one result per start")
    }

    async fn create_executions(
        &self,
        batch: &[NewExecution<'_>],
    ) -> Result<Vec<Result<ExecutionRow>>> {
        let created = match Sql(self).create_executions(batch).await {
            Ok(created) => created,
            // An idempotency key taken (by a concurrent request, or twice
            // in this group): the group is undone, so each start is tried
            // alone and only the one whose key is taken fails.
            Err(StoreError::Conflict(_)) if batch.len() > 1 => {
                let mut out = Vec::with_capacity(batch.len());
                for new in batch {
                    out.push(self.create_execution(new.clone()).await);
                }
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(created.len());
        for c in created {
            out.push(match c {
                Ok(Created::Row(row)) => Ok(*row),
                Ok(Created::Changed { id, finalize }) => {
                    if finalize {
                        // Every root was skipped and nothing else is left.
                        self.finalize_execution(Uuid::nil(), id).await?;
                    }
                    self.get_execution(None, id).await
                }
                Err(e) => Err(e),
            });
        }
        Ok(out)
    }

    async fn get_execution(&self, tenant: Option<&str>, id: Uuid) -> Result<ExecutionRow> {
        let row: StoredExecution = sqlx::query_as(
            "SELECT * FROM executions WHERE id = $1 AND ($2 IS NULL OR tenant = $2)",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("execution {id} not found")))?;
        row.try_into()
    }

    async fn execution_by_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<ExecutionRow>> {
        let row: Option<StoredExecution> =
            sqlx::query_as("SELECT * FROM executions WHERE tenant = $1 AND idempotency_key = $2")
                .bind(tenant)
                .bind(key)
                .fetch_optional(self.pool())
                .await?;
        row.map(ExecutionRow::try_from).transpose()
    }

    async fn list_executions(&self, filter: ExecutionFilter<'_>) -> Result<Vec<ExecutionRow>> {
        let (before_at, before_id) = filter.before.unzip();
        let rows: Vec<StoredExecution> = sqlx::query_as(
            "SELECT * FROM executions WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR status = $2) AND ($4 IS NULL OR workflow = $4) AND ($5 IS NULL OR created_at < $5 OR (created_at = $5 AND id < $6)) AND ($7 IS NULL OR schedule_id = $7) ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(filter.tenant)
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.limit.unwrap_or(100))
        .bind(filter.workflow)
        .bind(before_at)
        .bind(before_id)
        .bind(filter.schedule)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(ExecutionRow::try_from).collect()
    }

    async fn execution_tasks(&self, id: Uuid) -> Result<Vec<TaskRow>> {
        let rows: Vec<StoredTask> = sqlx::query_as(
            "SELECT execution_id, task_id, status, attempt, max_attempts, next_run_at, output, last_error, last_error_kind, skip_reason, claimed_by, lease_expires_at, recoveries, started_at, finished_at, duration_ms, ready_at FROM task_executions WHERE execution_id = $1",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TaskRow::try_from).collect()
    }

    async fn execution_events(&self, id: Uuid) -> Result<Vec<EventRow>> {
        let rows: Vec<StoredEvent> = sqlx::query_as(
            "SELECT id, execution_id, task_id, kind, detail, host, at FROM execution_events WHERE execution_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(EventRow::from).collect())
    }

    async fn execution_events_after(
        &self,
        id: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let rows: Vec<StoredEvent> = sqlx::query_as(
            "SELECT id, execution_id, task_id, kind, detail, host, at FROM execution_events WHERE execution_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(EventRow::from).collect())
    }

    async fn execution_plan(&self, id: Uuid) -> Result<ExecutionPlan> {
        let (dag,): (String,) = sqlx::query_as("SELECT dag FROM executions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("execution {id} not found")))?;
        let wf: WorkflowMeta = serde_json::from_str(&dag)
            .map_err(|e| StoreError::Other(format!("stored DAG: {e}")))?;
        Ok(ExecutionPlan::new(wf))
    }

    async fn claim_tasks(
        &self,
        host: Uuid,
        limit: u32,
        lease_until: i64,
        only_execution: Option<Uuid>,
    ) -> Result<Vec<ClaimedTask>> {
        Sql(self)
            .claim_tasks(host, limit, lease_until, only_execution)
            .await
    }

    async fn complete_task(
        &self,
        host: Uuid,
        task: &ClaimedTask,
        outcome: TaskOutcome,
        plan: &ExecutionPlan,
    ) -> Result<Completion> {
        Sql(self).complete_task(host, task, outcome, plan).await
    }

    async fn complete_tasks(
        &self,
        host: Uuid,
        batch: &[(ClaimedTask, TaskOutcome, Arc<ExecutionPlan>)],
    ) -> Result<Vec<Completion>> {
        Sql(self).complete_tasks(host, batch).await
    }

    async fn heartbeat(
        &self,
        host: Uuid,
        lease_until: i64,
        claims: &[(Uuid, String, Uuid)],
    ) -> Result<u64> {
        Sql(self).heartbeat(host, lease_until, claims).await
    }

    async fn recover_expired(&self, host: Uuid, max_recoveries: u32) -> Result<Vec<Recovered>> {
        let (recovered, to_finalize) = Sql(self).recover_expired(host, max_recoveries).await?;
        for id in to_finalize {
            self.finalize_execution(host, id).await?;
        }
        Ok(recovered)
    }

    async fn task_states(&self, execution_id: Uuid, ids: &[String]) -> Result<Vec<TaskState>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The inline limit is a constant of this build, not input.
        let select = format!(
            "SELECT task_id, status, CAST(LENGTH(output) AS BIGINT), CASE WHEN LENGTH(output) <= {} THEN output END FROM task_executions WHERE",
            INLINE_OUTPUT_CHARS
        );
        let mut qb = tasks_query::<DB>(&select, execution_id, ids);
        let rows: Vec<(String, String, Option<i64>, Option<String>)> =
            qb.build_query_as().fetch_all(self.pool()).await?;
        rows.into_iter()
            .map(|(id, status, len, output)| Ok((id, parse_task_status(&status)?, len, output)))
            .collect()
    }

    async fn task_outputs(
        &self,
        execution_id: Uuid,
        ids: &[String],
    ) -> Result<Vec<(String, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = tasks_query::<DB>(
            "SELECT task_id, output FROM task_executions WHERE output IS NOT NULL AND",
            execution_id,
            ids,
        );
        Ok(qb.build_query_as().fetch_all(self.pool()).await?)
    }

    async fn finalize_execution(&self, host: Uuid, id: Uuid) -> Result<Option<ExecutionStatus>> {
        // Everything up to the last statement reads through the pool,
        // outside any write transaction.
        let row: Option<(String, String, i64, Option<String>, String)> = sqlx::query_as(
            "SELECT e.status, e.dag, e.tasks_remaining, t.limits, e.tenant FROM executions e LEFT JOIN tenants t ON t.name = e.tenant WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some((status, dag, remaining, limits, tenant)) = row else {
            return Err(StoreError::NotFound(format!("execution {id} not found")));
        };
        let status = ExecutionStatus::parse(&status)
            .ok_or_else(|| StoreError::Other(format!("unknown execution status '{status}'")))?;
        if status.is_finished() {
            return Ok(Some(status));
        }
        if remaining > 0 {
            return Ok(None);
        }
        let limits: TenantLimits = limits
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_default();
        let wf: WorkflowMeta = serde_json::from_str(&dag)
            .map_err(|e| StoreError::Other(format!("stored DAG: {e}")))?;
        let plan = ExecutionPlan::new(wf);
        let failure: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT task_id, last_error_kind, last_error FROM task_executions WHERE execution_id = $1 AND status = 'failed' ORDER BY finished_at, task_id LIMIT 1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let mut error = failure.map(|(task, kind, error)| {
            format!(
                "task '{task}' failed: {}: {}",
                kind.as_deref().unwrap_or("error"),
                error.as_deref().unwrap_or("")
            )
        });
        // The leaves' outputs, a chunk at a time: only the merge so far and
        // one chunk are in memory, and the merge stops at the tenant's
        // max_final_context_bytes.
        let limit = limits.max_final_context_bytes.min(usize::MAX as u64) as usize;
        let leaves: Vec<String> = plan.leaves().map(|t| t.id.clone()).collect();
        let merged = merge_outputs(self, id, &leaves, limit).await?.merged;
        let (merged, too_large) = match merged {
            Ok(map) => (map, None),
            Err((e, leaf_id)) => (
                Map::new(),
                Some(format!(
                    "context_too_large: the final context reached {} bytes when the output of task '{leaf_id}' was merged in, over the tenant's max_final_context_bytes of {}",
                    e.size, e.limit
                )),
            ),
        };
        let (status, output) = match too_large {
            Some(message) => {
                error = Some(match error {
                    Some(first) => format!("{message}; {first}"),
                    None => message,
                });
                (ExecutionStatus::Failed, None)
            }
            None => {
                let text =
                    serde_json::to_string(&merged).map_err(|e| StoreError::Other(e.to_string()))?;
                let status = if error.is_some() {
                    ExecutionStatus::Failed
                } else {
                    ExecutionStatus::Completed
                };
                (status, Some(text))
            }
        };
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE executions SET status = $2, output = $3, error = $4, finished_at = $5, finalize_lease_until = NULL WHERE id = $1 AND status IN ('pending', 'running') AND tasks_remaining <= 0",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(output)
        .bind(error.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            // Another host finished it first, or it was cancelled.
            tx.rollback().await?;
            let (now_status,): (String,) =
                sqlx::query_as("SELECT status FROM executions WHERE id = $1")
                    .bind(id)
                    .fetch_one(self.pool())
                    .await?;
            return Ok(ExecutionStatus::parse(&now_status).filter(|s| s.is_finished()));
        }
        let kind = if status == ExecutionStatus::Failed {
            "execution_failed"
        } else {
            "execution_completed"
        };
        let host = (!host.is_nil()).then_some(host);
        Sql(self)
            .insert_events(&mut tx, id, host, now, &[(None, kind, error)])
            .await?;
        tx.commit().await?;
        crate::telemetry::execution_finished(&tenant, status.as_str());
        Ok(Some(status))
    }

    async fn failed_task(&self, id: Uuid) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT task_id FROM task_executions WHERE execution_id = $1 AND status = 'failed' ORDER BY task_id LIMIT 1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(task,)| task))
    }

    async fn task_input(&self, id: Uuid, task: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT input FROM task_executions WHERE execution_id = $1 AND task_id = $2",
        )
        .bind(id)
        .bind(task)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|(input,)| input))
    }

    async fn count_unfinished(&self, tenant: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM executions WHERE tenant = $1 AND status IN ('pending', 'running')",
        )
        .bind(tenant)
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }

    async fn cancel_execution(&self, tenant: &str, id: Uuid) -> Result<ExecutionRow> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let current: Option<(String,)> =
            sqlx::query_as("SELECT status FROM executions WHERE id = $1 AND tenant = $2")
                .bind(id)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((status,)) = current else {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!("execution {id} not found")));
        };
        if !matches!(status.as_str(), "pending" | "running") {
            tx.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "execution {id} is already {status}"
            )));
        }
        // Lock order, against deadlocks on PostgreSQL: a claim locks ready
        // task rows, then the execution's row; a completion locks the
        // execution's row, then tasks that were not started. So: the ready
        // tasks first (a claim holding one commits first, and its task is
        // then running, not ready), then the execution, then the rest.
        let mut skipped: Vec<(String,)> = sqlx::query_as(
            "UPDATE task_executions SET status = 'skipped', skip_reason = 'execution cancelled', finished_at = $2 WHERE execution_id = $1 AND status = 'ready' RETURNING task_id",
        )
        .bind(id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        // Still unfinished? It may have finished since the read above.
        let cancelled = sqlx::query(
            "UPDATE executions SET status = 'cancelled', error = 'cancelled', finished_at = $2 WHERE id = $1 AND status IN ('pending', 'running')",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if cancelled.rows_affected() == 0 {
            tx.rollback().await?;
            let row = self.get_execution(Some(tenant), id).await?;
            return Err(StoreError::Conflict(format!(
                "execution {id} is already {}",
                row.status
            )));
        }
        // With the execution's row held, no completion makes a task ready
        // any more; skip what is left.
        let rest: Vec<(String,)> = sqlx::query_as(
            "UPDATE task_executions SET status = 'skipped', skip_reason = 'execution cancelled', finished_at = $2 WHERE execution_id = $1 AND status IN ('not_started', 'ready') RETURNING task_id",
        )
        .bind(id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        skipped.extend(rest);
        let mut events = vec![(
            None,
            "cancelled",
            Some(format!("{} pending tasks skipped", skipped.len())),
        )];
        for (task,) in skipped {
            events.push((
                Some(task),
                "skipped",
                Some("execution cancelled".to_string()),
            ));
        }
        Sql(self)
            .insert_events(&mut tx, id, None, now, &events)
            .await?;
        tx.commit().await?;
        crate::telemetry::execution_finished(tenant, ExecutionStatus::Cancelled.as_str());
        self.get_execution(Some(tenant), id).await
    }

    async fn retry_execution(
        &self,
        tenant: &str,
        id: Uuid,
        reset: &[TaskReset],
        limits: &TenantLimits,
    ) -> Result<ExecutionRow> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let current: Option<(String,)> =
            sqlx::query_as("SELECT status FROM executions WHERE id = $1 AND tenant = $2")
                .bind(id)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((status,)) = current else {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!("execution {id} not found")));
        };
        if status != "failed" {
            tx.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "execution {id} is {status}: only a failed execution can be retried"
            )));
        }
        // It becomes unfinished again: counted like a start.
        let queued = Sql(self).lock_and_count_queued(&mut tx, tenant).await?;
        if queued >= limits.max_queued_executions as i64 {
            tx.rollback().await?;
            return Err(StoreError::Quota(format!(
                "tenant '{tenant}' has {queued} unfinished executions, its max_queued_executions quota"
            )));
        }
        // The detail names at most 20 tasks: a workflow may have 10,000.
        let mut named = reset
            .iter()
            .take(20)
            .map(|r| r.task_id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if reset.len() > 20 {
            named.push_str(&format!(", and {} more", reset.len() - 20));
        }
        let mut events: Vec<Event> = vec![(
            None,
            "retried",
            Some(format!(
                "{} failed or skipped tasks run again: {named}",
                reset.len()
            )),
        )];
        for r in reset {
            let ready = r.deps_remaining == 0;
            let input = match &r.input {
                Some(map) => {
                    Some(serde_json::to_string(map).map_err(|e| StoreError::Other(e.to_string()))?)
                }
                None => None,
            };
            let done = sqlx::query(
                "UPDATE task_executions SET status = $3, deps_remaining = $4, input = $5, output = NULL, last_error = NULL, last_error_kind = NULL, skip_reason = NULL, max_attempts = attempt + $6, next_run_at = $7, ready_at = $7, started_at = NULL, finished_at = NULL, duration_ms = NULL, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status IN ('failed', 'skipped')",
            )
            .bind(id)
            .bind(&r.task_id)
            .bind(if ready { "ready" } else { "not_started" })
            .bind(r.deps_remaining)
            .bind(input)
            .bind(r.attempts)
            .bind(ready.then_some(now))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Err(StoreError::Conflict(format!(
                    "execution {id}: task '{}' is not failed or skipped any more",
                    r.task_id
                )));
            }
            if ready {
                events.push((Some(r.task_id.clone()), "task_ready", None));
            }
        }
        sqlx::query(
            "UPDATE executions SET status = 'pending', error = NULL, output = NULL, finished_at = NULL, tasks_remaining = $2, finalize_attempts = 0, finalize_lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(reset.len() as i64)
        .execute(&mut *tx)
        .await?;
        Sql(self)
            .insert_events(&mut tx, id, None, now, &events)
            .await?;
        tx.commit().await?;
        self.get_execution(Some(tenant), id).await
    }

    async fn cancelled_running(&self, host: Uuid) -> Result<Vec<(Uuid, String)>> {
        Ok(sqlx::query_as(
            "SELECT t.execution_id, t.task_id FROM task_executions t JOIN executions e ON e.id = t.execution_id WHERE t.claimed_by = $1 AND t.status = 'running' AND e.status = 'cancelled'",
        )
        .bind(host)
        .fetch_all(self.pool())
        .await?)
    }

    async fn fleet_counts(&self) -> Result<FleetCounts> {
        Sql(self).fleet_counts().await
    }

    async fn task_logs(
        &self,
        execution_id: Uuid,
        task: Option<&str>,
        attempt: Option<u32>,
    ) -> Result<Vec<AttemptLogs>> {
        Sql(self).task_logs(execution_id, task, attempt).await
    }

    async fn prune_finished(&self, finished_before_ms: i64, batch: u32) -> Result<PruneReport> {
        Sql(self).prune_finished(finished_before_ms, batch).await
    }
}
