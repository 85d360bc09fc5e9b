//! Recording how attempts ended, for both backends:
//! [`complete_task`](super::ExecutionStore::complete_task) and its group
//! commit, [`complete_tasks`](super::ExecutionStore::complete_tasks); and
//! what follows a task's final status in the same transaction:
//! [`propagate`](Sql::propagate) (dependents unlocked) and
//! [`finalize`](Sql::finalize) (the execution counted down, and its
//! finalisation lease taken when nothing is left).

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::claims::ClaimedTask;
use super::events::{Event, ExecutionEvent};
use super::{Result, StoreError, now_ms};
use crate::package::FailureKind;
use crate::sandbox::TaskLogs;
use crate::scheduler::{ExecutionPlan, ExecutionStatus};
use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Transaction, Type};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum TaskOutcome {
    /// It succeeded with this output.
    Succeeded {
        /// The output context.
        output: Map<String, Value>,
        /// What the guest said, stored with the completion (`task_logs`).
        logs: Option<Arc<TaskLogs>>,
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
        retry: Option<ScheduledRetry>,
        /// What the guest said, when it ran; stored with the completion
        /// (`task_logs`). `None` when no guest ran (the attempt failed
        /// before the call).
        logs: Option<Arc<TaskLogs>>,
    },
}

impl TaskOutcome {
    /// What the guest said during the attempt, if a guest ran.
    pub fn logs(&self) -> Option<&Arc<TaskLogs>> {
        match self {
            TaskOutcome::Succeeded { logs, .. } | TaskOutcome::Failed { logs, .. } => logs.as_ref(),
            TaskOutcome::Skipped { .. } => None,
        }
    }
}

/// A retry the task's policy scheduled after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledRetry {
    /// When the task becomes ready again, in ms since the Unix epoch.
    pub at: i64,
    /// The policy's delay that gave `at` (backoff, with any jitter), in ms:
    /// what the `retry_scheduled` event reports.
    pub delay_ms: i64,
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
    /// [`finalize_execution`](super::ExecutionStore::finalize_execution),
    /// outside the transaction (it holds the finalisation lease for
    /// [`FINALIZE_LEASE_MS`]).
    pub finalize: bool,
}

/// How long a host holds an execution's finalisation before another host's
/// recovery sweep may take it over.
pub const FINALIZE_LEASE_MS: i64 = 30_000;

impl<S, DB> Sql<'_, S>
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
    /// [`ExecutionStore::complete_task`](super::ExecutionStore::complete_task).
    pub(crate) async fn complete_task(
        &self,
        host: Uuid,
        task: &ClaimedTask,
        outcome: TaskOutcome,
        plan: &ExecutionPlan,
    ) -> Result<Completion> {
        let mut tx = self.0.begin_write().await?;
        let now = now_ms();
        let mut events = Vec::new();
        let (mut done, finished) = self
            .complete_in_tx(&mut tx, host, task, outcome, plan, &mut events)
            .await?;
        if done.accepted {
            (done.finalize, done.finished) = self
                .finalize(&mut tx, task.execution_id, finished, now)
                .await?;
        }
        self.insert_event_rows(&mut tx, Some(host), now, &events)
            .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// [`ExecutionStore::complete_tasks`](super::ExecutionStore::complete_tasks).
    pub(crate) async fn complete_tasks(
        &self,
        host: Uuid,
        batch: &[(ClaimedTask, TaskOutcome, Arc<ExecutionPlan>)],
    ) -> Result<Vec<Completion>> {
        let mut tx = self.0.begin_write().await?;
        let now = now_ms();
        let mut events = Vec::new();
        let mut out = vec![Completion::default(); batch.len()];
        // Per execution: tasks that reached a final status, and the last
        // item of the batch that belongs to it.
        let mut per_execution: HashMap<Uuid, (i64, usize)> = HashMap::new();
        // In (execution, task) order, so that hosts recording at once lock
        // rows in the same order and cannot deadlock.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| {
            let (ta, tb) = (&batch[a].0, &batch[b].0);
            (ta.execution_id, &ta.task_id).cmp(&(tb.execution_id, &tb.task_id))
        });
        for i in order {
            let (task, outcome, plan) = &batch[i];
            let (done, finished) = self
                .complete_in_tx(&mut tx, host, task, outcome.clone(), plan, &mut events)
                .await?;
            if done.accepted {
                let entry = per_execution.entry(task.execution_id).or_insert((0, i));
                entry.0 += finished;
                entry.1 = entry.1.max(i);
            }
            out[i] = done;
        }
        // One count per execution, however many of its tasks the batch
        // holds.
        // In id order, so that hosts lock execution rows alike.
        let mut per_execution: Vec<(Uuid, (i64, usize))> = per_execution.into_iter().collect();
        per_execution.sort_by_key(|(id, _)| *id);
        for (execution_id, (finished, last)) in per_execution {
            (out[last].finalize, out[last].finished) =
                self.finalize(&mut tx, execution_id, finished, now).await?;
        }
        self.insert_event_rows(&mut tx, Some(host), now, &events)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Record one completion inside `tx` (see
    /// [`ExecutionStore::complete_task`](super::ExecutionStore::complete_task))
    /// and unlock or skip its dependents; its events are appended to
    /// `events_out` for the caller to insert. Returns the completion and
    /// how many of the execution's tasks reached a final status, for
    /// [`finalize`](Self::finalize), which the caller runs once per
    /// execution.
    async fn complete_in_tx(
        &self,
        tx: &mut Transaction<'static, DB>,
        host: Uuid,
        task: &ClaimedTask,
        outcome: TaskOutcome,
        plan: &ExecutionPlan,
        events_out: &mut Vec<ExecutionEvent>,
    ) -> Result<(Completion, i64)> {
        let now = now_ms();
        let logs = outcome.logs().cloned();
        // A cancelled execution's task is not retried.
        let mut outcome = match outcome {
            TaskOutcome::Failed {
                kind,
                message,
                retry: Some(at),
                logs,
            } => {
                let status: Option<(String,)> =
                    sqlx::query_as("SELECT status FROM executions WHERE id = $1")
                        .bind(task.execution_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                let cancelled = status.is_some_and(|(s,)| s == "cancelled");
                TaskOutcome::Failed {
                    kind,
                    message,
                    retry: if cancelled { None } else { Some(at) },
                    logs,
                }
            }
            other => other,
        };
        // An output is charged to the execution's max_execution_output_bytes
        // in this transaction, so concurrent completions cannot overshoot
        // it; one that does not fit fails the task instead of being stored.
        let mut text = match &outcome {
            TaskOutcome::Succeeded { output, .. } | TaskOutcome::Skipped { output, .. } => Some(
                serde_json::to_string(output)
                    .map_err(|e| StoreError::Other(format!("task output: {e}")))?,
            ),
            TaskOutcome::Failed { .. } => None,
        };
        let mut charged = 0i64;
        if let Some(t) = &text {
            let n = t.len() as i64;
            let budget = task.limits.max_execution_output_bytes.min(i64::MAX as u64) as i64;
            let fits = sqlx::query(
                "UPDATE executions SET output_bytes = output_bytes + $2 WHERE id = $1 AND output_bytes + $2 <= $3",
            )
            .bind(task.execution_id)
            .bind(n)
            .bind(budget)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                == 1;
            if fits {
                charged = n;
            } else {
                let used: Option<(i64,)> =
                    sqlx::query_as("SELECT output_bytes FROM executions WHERE id = $1")
                        .bind(task.execution_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                let used = used.map(|u| u.0).unwrap_or(0);
                outcome = TaskOutcome::Failed {
                    kind: FailureKind::ContextTooLarge,
                    message: format!(
                        "task '{}': its output of {n} bytes would bring the bytes of task output the execution stores to {}, over the tenant's max_execution_output_bytes of {budget}",
                        task.task_id,
                        used.saturating_add(n)
                    ),
                    retry: None,
                    logs: None,
                };
                text = None;
            }
        }
        // Every update is fenced on the claim: a result from a claim that
        // is no longer current changes nothing.
        let mut events = Vec::new();
        let mut finished = Vec::new();
        let updated = match outcome {
            TaskOutcome::Succeeded { .. } => {
                let done = sqlx::query(
                    "UPDATE task_executions SET status = 'completed', output = $3, finished_at = $4, duration_ms = $4 - started_at, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running' AND claimed_by = $5 AND claim_token = $6",
                )
                .bind(task.execution_id)
                .bind(&task.task_id)
                .bind(text)
                .bind(now)
                .bind(host)
                .bind(task.claim_token)
                .execute(&mut **tx)
                .await?;
                events.push((
                    Some(task.task_id.clone()),
                    "completed",
                    Some(format!("attempt {}", task.attempt)),
                ));
                finished.push(task.task_id.clone());
                done.rows_affected()
            }
            TaskOutcome::Skipped { reason, .. } => {
                // It never ran: the claim's attempt is given back.
                let done = sqlx::query(
                    "UPDATE task_executions SET status = 'skipped', skip_reason = $3, output = $4, finished_at = $5, attempt = attempt - 1, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running' AND claimed_by = $6 AND claim_token = $7",
                )
                .bind(task.execution_id)
                .bind(&task.task_id)
                .bind(&reason)
                .bind(text)
                .bind(now)
                .bind(host)
                .bind(task.claim_token)
                .execute(&mut **tx)
                .await?;
                events.push((Some(task.task_id.clone()), "skipped", Some(reason)));
                finished.push(task.task_id.clone());
                done.rows_affected()
            }
            TaskOutcome::Failed {
                kind,
                message,
                retry: Some(at),
                ..
            } => {
                let done = sqlx::query(
                    "UPDATE task_executions SET status = 'ready', next_run_at = $3, ready_at = $3, last_error = $4, last_error_kind = $5, duration_ms = $6 - started_at, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running' AND claimed_by = $7 AND claim_token = $8",
                )
                .bind(task.execution_id)
                .bind(&task.task_id)
                .bind(at.at)
                .bind(&message)
                .bind(kind.as_str())
                .bind(now)
                .bind(host)
                .bind(task.claim_token)
                .execute(&mut **tx)
                .await?;
                events.push((
                    Some(task.task_id.clone()),
                    "retry_scheduled",
                    Some(format!(
                        "attempt {} failed ({kind}: {message}); retry in {} ms",
                        task.attempt, at.delay_ms
                    )),
                ));
                done.rows_affected()
            }
            TaskOutcome::Failed {
                kind,
                message,
                retry: None,
                ..
            } => {
                let done = sqlx::query(
                    "UPDATE task_executions SET status = 'failed', last_error = $3, last_error_kind = $4, finished_at = $5, duration_ms = $5 - started_at, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running' AND claimed_by = $6 AND claim_token = $7",
                )
                .bind(task.execution_id)
                .bind(&task.task_id)
                .bind(&message)
                .bind(kind.as_str())
                .bind(now)
                .bind(host)
                .bind(task.claim_token)
                .execute(&mut **tx)
                .await?;
                events.push((
                    Some(task.task_id.clone()),
                    "failed",
                    Some(format!("attempt {}: {kind}: {message}", task.attempt)),
                ));
                finished.push(task.task_id.clone());
                done.rows_affected()
            }
        };
        if updated == 0 {
            if charged > 0 {
                // Discarded: its output is not stored after all.
                sqlx::query("UPDATE executions SET output_bytes = output_bytes - $2 WHERE id = $1")
                    .bind(task.execution_id)
                    .bind(charged)
                    .execute(&mut **tx)
                    .await?;
            }
            return Ok((Completion::default(), 0));
        }
        // What the guest said is stored with the accepted completion of its
        // attempt, in this transaction.
        if let Some(logs) = &logs {
            self.insert_task_logs(tx, task, logs, now).await?;
        }
        let (became_ready, finished_count) = self
            .propagate(tx, plan, task.execution_id, &finished, now, &mut events)
            .await?;
        events_out.extend(
            events
                .into_iter()
                .map(|(t, k, d)| (task.execution_id, t, k, d)),
        );
        Ok((
            Completion {
                accepted: true,
                became_ready,
                finished: None,
                finalize: false,
            },
            finished_count,
        ))
    }

    /// After the tasks `finished` reached a final status: lower their
    /// dependents' counts of unfinished dependencies, and make those at 0
    /// `ready` with no input. Nothing is merged or decided here: the host
    /// that claims such a task merges its dependencies' outputs outside any
    /// write transaction and runs or skips it. Returns (tasks that became
    /// ready, tasks that reached a final status), the count
    /// [`finalize`](Self::finalize) takes.
    pub(crate) async fn propagate(
        &self,
        tx: &mut Transaction<'static, DB>,
        plan: &ExecutionPlan,
        execution_id: Uuid,
        finished: &[String],
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<(u32, i64)> {
        let mut became_ready = 0u32;
        for done in finished {
            for dependent in plan.dependents(done) {
                let ready: Option<(i64,)> = sqlx::query_as(
                    "UPDATE task_executions SET deps_remaining = deps_remaining - 1, status = CASE WHEN deps_remaining = 1 THEN 'ready' ELSE status END, input = NULL, next_run_at = CASE WHEN deps_remaining = 1 THEN $3 ELSE next_run_at END, ready_at = CASE WHEN deps_remaining = 1 THEN $3 ELSE ready_at END WHERE execution_id = $1 AND task_id = $2 AND status = 'not_started' RETURNING deps_remaining",
                )
                .bind(execution_id)
                .bind(&dependent.id)
                .bind(now)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some((0,)) = ready {
                    became_ready += 1;
                    events.push((Some(dependent.id.clone()), "task_ready", None));
                }
            }
        }
        Ok((became_ready, finished.len() as i64))
    }

    /// After `finished_count` more tasks of `execution_id` reached a final
    /// status: count them. If none is left, take the execution's
    /// finalisation lease: the caller assembles the final context after the
    /// commit, with
    /// [`finalize_execution`](super::ExecutionStore::finalize_execution).
    /// Returns whether to do that, and `Cancelled` for a cancelled
    /// execution.
    pub(crate) async fn finalize(
        &self,
        tx: &mut Transaction<'static, DB>,
        execution_id: Uuid,
        finished_count: i64,
        now: i64,
    ) -> Result<(bool, Option<ExecutionStatus>)> {
        if finished_count == 0 {
            return Ok((false, None));
        }
        let remaining: Option<(i64, String)> = sqlx::query_as(
            "UPDATE executions SET tasks_remaining = tasks_remaining - $2, finalize_attempts = CASE WHEN tasks_remaining - $2 <= 0 AND status IN ('pending', 'running') THEN finalize_attempts + 1 ELSE finalize_attempts END, finalize_lease_until = CASE WHEN tasks_remaining - $2 <= 0 AND status IN ('pending', 'running') THEN $3 ELSE finalize_lease_until END WHERE id = $1 RETURNING tasks_remaining, status",
        )
        .bind(execution_id)
        .bind(finished_count)
        .bind(now + FINALIZE_LEASE_MS)
        .fetch_optional(&mut **tx)
        .await?;
        let (remaining, exec_status) = remaining.unwrap_or((1, String::new()));
        if exec_status == "cancelled" {
            return Ok((false, Some(ExecutionStatus::Cancelled)));
        }
        Ok((
            remaining <= 0 && matches!(exec_status.as_str(), "pending" | "running"),
            None,
        ))
    }
}
