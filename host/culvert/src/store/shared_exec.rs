//! The [`ExecutionStore`] implementation both backends share, written
//! once as Rust generic over the backend ([`SqlBackend`], `backend.rs`).
//!
//! Backend-specific pieces it uses: `S::CLAIM_SQL` (PostgreSQL claims with
//! `FOR UPDATE SKIP LOCKED`; SQLite's write transaction already excludes
//! every other writer), `S::RECOVER_SQL` and `S::FINALIZE_SWEEP_SQL` (the
//! same for expired leases), `S::TENANT_LIMITS_SQL`, `begin_write` and
//! `pool`.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::executions::{
    ClaimedTask, Completion, EventRow, ExecutionFilter, ExecutionRow, ExecutionStore,
    FINALIZE_LEASE_MS, INLINE_OUTPUT_CHARS, MAX_FINALIZE_ATTEMPTS, NewExecution, Recovered,
    TaskOutcome, TaskRow, TaskState, merge_outputs,
};
use super::rows::{StoredClaim, StoredEvent, StoredExecution, StoredTask, parse_task_status};
use super::{Result, StoreError, now_ms};
use crate::package::{FailureKind, WorkflowMeta};
use crate::scheduler::{Decision, ExecutionPlan, ExecutionStatus, decide_root};
use crate::tenants::TenantLimits;
use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Transaction, Type,
};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// One event of an execution: the task (for a task event), what happened,
/// and details.
pub(crate) type Event = (Option<String>, &'static str, Option<String>);

/// One event of any execution: the execution, then as [`Event`].
pub(crate) type ExecutionEvent = (Uuid, Option<String>, &'static str, Option<String>);

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
    /// Append one execution's events (see
    /// [`insert_event_rows`](Self::insert_event_rows)).
    pub(crate) async fn insert_events(
        &self,
        tx: &mut Transaction<'static, DB>,
        execution_id: Uuid,
        host: Option<Uuid>,
        at: i64,
        events: &[Event],
    ) -> Result<()> {
        let rows: Vec<ExecutionEvent> = events
            .iter()
            .map(|(task, kind, detail)| (execution_id, task.clone(), *kind, detail.clone()))
            .collect();
        self.insert_event_rows(tx, host, at, &rows).await
    }

    /// Append events of several executions in one statement per 300.
    pub(crate) async fn insert_event_rows(
        &self,
        tx: &mut Transaction<'static, DB>,
        host: Option<Uuid>,
        at: i64,
        rows: &[ExecutionEvent],
    ) -> Result<()> {
        for chunk in rows.chunks(300) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO execution_events (execution_id, task_id, kind, detail, host, at) ",
            );
            qb.push_values(chunk, |mut b, (exec, task, kind, detail)| {
                b.push_bind(*exec)
                    .push_bind(task.clone())
                    .push_bind(*kind)
                    .push_bind(detail.clone())
                    .push_bind(host)
                    .push_bind(at);
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// [`ExecutionStore::claim_tasks`](super::ExecutionStore::claim_tasks).
    pub(crate) async fn claim_tasks(
        &self,
        host: Uuid,
        limit: u32,
        lease_until: i64,
        only_execution: Option<Uuid>,
    ) -> Result<Vec<ClaimedTask>> {
        let now = now_ms();
        let token = Uuid::now_v7();
        let mut tx = self.0.begin_write().await?;
        let ready: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tenant, COUNT(*) FROM task_executions WHERE status = 'ready' AND next_run_at <= $1 AND ($2 IS NULL OR execution_id = $2) GROUP BY tenant ORDER BY tenant",
        )
        .bind(now)
        .bind(only_execution)
        .fetch_all(&mut *tx)
        .await?;
        if ready.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        // Tenant limits; on PostgreSQL this also locks the rows of the
        // tenants being served, so that hosts claiming at once cannot both
        // fill the same tenant's last slot.
        let mut limits: HashMap<String, Arc<TenantLimits>> = HashMap::new();
        for (tenant, _) in &ready {
            let row: Option<(String,)> = sqlx::query_as(S::TENANT_LIMITS_SQL)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            let parsed = row
                .and_then(|(l,)| serde_json::from_str::<TenantLimits>(&l).ok())
                .unwrap_or_default();
            limits.insert(tenant.clone(), Arc::new(parsed));
        }
        let running: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
            "SELECT tenant, COUNT(*) FROM task_executions WHERE status = 'running' GROUP BY tenant",
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        // Round-robin, fewest running first.
        let mut queue: Vec<(String, i64, i64)> = ready
            .iter()
            .map(|(t, n)| {
                let run = running.get(t).copied().unwrap_or(0);
                let max = limits.get(t).map(|l| l.max_concurrent_tasks).unwrap_or(64);
                let room = (max as i64 - run).max(0);
                (t.clone(), run, (*n).min(room))
            })
            .filter(|(_, _, cap)| *cap > 0)
            .collect();
        queue.sort_by_key(|(t, run, _)| (*run, t.clone()));
        let mut grant: HashMap<String, i64> = HashMap::new();
        let mut left = limit as i64;
        while left > 0 {
            let mut gave = false;
            for (t, _, cap) in &queue {
                let g = grant.entry(t.clone()).or_default();
                if left > 0 && *g < *cap {
                    *g += 1;
                    left -= 1;
                    gave = true;
                }
            }
            if !gave {
                break;
            }
        }
        let mut rows: Vec<StoredClaim> = Vec::new();
        for (tenant, _, _) in &queue {
            let n = grant.get(tenant).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let mut claimed: Vec<StoredClaim> = sqlx::query_as(S::CLAIM_SQL)
                .bind(host)
                .bind(lease_until)
                .bind(now)
                .bind(n)
                .bind(tenant)
                .bind(token)
                .bind(only_execution)
                .fetch_all(&mut *tx)
                .await?;
            rows.append(&mut claimed);
        }
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut executions: Vec<Uuid> = rows.iter().map(|r| r.execution_id).collect();
        executions.sort();
        executions.dedup();
        for chunk in executions.chunks(500) {
            let mut qb =
                QueryBuilder::<DB>::new("UPDATE executions SET status = 'running', started_at = ");
            qb.push_bind(now);
            qb.push(" WHERE status = 'pending' AND id IN (");
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            qb.build().execute(&mut *tx).await?;
        }
        let events: Vec<ExecutionEvent> = rows
            .iter()
            .map(|r| {
                (
                    r.execution_id,
                    Some(r.task_id.clone()),
                    "claimed",
                    Some(format!("attempt {}", r.attempt)),
                )
            })
            .collect();
        self.insert_event_rows(&mut tx, Some(host), now, &events)
            .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let limits = limits.get(&row.tenant).cloned().unwrap_or_default();
                row.into_claimed(limits, now, token)
            })
            .collect())
    }

    /// [`ExecutionStore::heartbeat`](super::ExecutionStore::heartbeat).
    pub(crate) async fn heartbeat(
        &self,
        host: Uuid,
        lease_until: i64,
        claims: &[(Uuid, String, Uuid)],
    ) -> Result<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let mut tx = self.0.begin_write().await?;
        let mut extended = 0;
        for (execution_id, task_id, token) in claims {
            extended += sqlx::query(
                "UPDATE task_executions SET lease_expires_at = $2 WHERE execution_id = $3 AND task_id = $4 AND claimed_by = $1 AND claim_token = $5 AND status = 'running'",
            )
            .bind(host)
            .bind(lease_until)
            .bind(execution_id)
            .bind(task_id)
            .bind(token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(extended)
    }

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
        // A cancelled execution's task is not retried.
        let mut outcome = match outcome {
            TaskOutcome::Failed {
                kind,
                message,
                retry_at: Some(at),
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
                    retry_at: if cancelled { None } else { Some(at) },
                }
            }
            other => other,
        };
        // An output is charged to the execution's max_execution_output_bytes
        // in this transaction, so concurrent completions cannot overshoot
        // it; one that does not fit fails the task instead of being stored.
        let mut text = match &outcome {
            TaskOutcome::Succeeded { output } | TaskOutcome::Skipped { output, .. } => Some(
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
                    retry_at: None,
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
                retry_at: Some(at),
            } => {
                let done = sqlx::query(
                    "UPDATE task_executions SET status = 'ready', next_run_at = $3, ready_at = $3, last_error = $4, last_error_kind = $5, duration_ms = $6 - started_at, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running' AND claimed_by = $7 AND claim_token = $8",
                )
                .bind(task.execution_id)
                .bind(&task.task_id)
                .bind(at)
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
                        task.attempt,
                        (at - now).max(0)
                    )),
                ));
                done.rows_affected()
            }
            TaskOutcome::Failed {
                kind,
                message,
                retry_at: None,
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

    /// The transaction of
    /// [`ExecutionStore::recover_expired`](super::ExecutionStore::recover_expired):
    /// returns the tasks taken back, and the executions whose finalisation
    /// this host took over, which the caller finishes after the commit.
    pub(crate) async fn recover_expired(
        &self,
        host: Uuid,
        max_recoveries: u32,
    ) -> Result<(Vec<Recovered>, Vec<Uuid>)> {
        let now = now_ms();
        let mut tx = self.0.begin_write().await?;
        let expired: Vec<(Uuid, String, i64, Option<Uuid>)> = sqlx::query_as(S::RECOVER_SQL)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(expired.len());
        let mut to_finalize = Vec::new();
        for (execution_id, task_id, recoveries, from_host) in expired {
            let (exec_status,): (String,) =
                sqlx::query_as("SELECT status FROM executions WHERE id = $1")
                    .bind(execution_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if exec_status == "cancelled" {
                sqlx::query(
                    "UPDATE task_executions SET status = 'skipped', skip_reason = 'execution cancelled', finished_at = $3, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running'",
                )
                .bind(execution_id)
                .bind(&task_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let events = vec![(
                    Some(task_id.clone()),
                    "lease_expired",
                    Some("its host stopped heartbeating; the execution is cancelled".to_string()),
                )];
                self.insert_events(&mut tx, execution_id, Some(host), now, &events)
                    .await?;
                out.push(Recovered {
                    execution_id,
                    task_id,
                    from_host,
                    gave_up: true,
                });
                continue;
            }
            let from = from_host.map(|h| h.to_string()).unwrap_or_default();
            let mut events = vec![(
                Some(task_id.clone()),
                "lease_expired",
                Some(format!("host {from} stopped heartbeating")),
            )];
            let gave_up = recoveries + 1 > max_recoveries as i64;
            if gave_up {
                let message = format!(
                    "its host died {} times (the recovery limit is {max_recoveries})",
                    recoveries + 1
                );
                sqlx::query(
                    "UPDATE task_executions SET status = 'failed', last_error = $3, last_error_kind = 'host', finished_at = $4, recoveries = recoveries + 1, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running'",
                )
                .bind(execution_id)
                .bind(&task_id)
                .bind(&message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                events.push((Some(task_id.clone()), "failed", Some(message)));
                let plan = self.plan_in_tx(&mut tx, execution_id).await?;
                let (_, finished) = self
                    .propagate(
                        &mut tx,
                        &plan,
                        execution_id,
                        std::slice::from_ref(&task_id),
                        now,
                        &mut events,
                    )
                    .await?;
                if self.finalize(&mut tx, execution_id, finished, now).await?.0 {
                    to_finalize.push(execution_id);
                }
            } else {
                // A recovery does not use up an attempt of the retry policy:
                // the attempt never reported.
                sqlx::query(
                    "UPDATE task_executions SET status = 'ready', next_run_at = $3, ready_at = $3, recoveries = recoveries + 1, attempt = attempt - 1, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL WHERE execution_id = $1 AND task_id = $2 AND status = 'running'",
                )
                .bind(execution_id)
                .bind(&task_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                events.push((
                    Some(task_id.clone()),
                    "recovered",
                    Some(format!("recovery {} of {max_recoveries}", recoveries + 1)),
                ));
            }
            self.insert_events(&mut tx, execution_id, Some(host), now, &events)
                .await?;
            out.push(Recovered {
                execution_id,
                task_id,
                from_host,
                gave_up,
            });
        }
        // Finalisations whose host died (or ran out of memory) before it
        // finished one: taken over, or given up on after
        // MAX_FINALIZE_ATTEMPTS so that no host crash-loops on an
        // execution's stored data.
        let stuck: Vec<(Uuid, i64)> = sqlx::query_as(S::FINALIZE_SWEEP_SQL)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        for (execution_id, attempts) in stuck {
            if attempts >= MAX_FINALIZE_ATTEMPTS {
                let message = format!(
                    "finalize_failed: assembling the final context was started {attempts} times and never finished (a host died or ran out of memory); the execution is failed so that no host tries again"
                );
                sqlx::query(
                    "UPDATE executions SET status = 'failed', error = $2, finished_at = $3, finalize_lease_until = NULL WHERE id = $1 AND status IN ('pending', 'running')",
                )
                .bind(execution_id)
                .bind(&message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                self.insert_events(
                    &mut tx,
                    execution_id,
                    Some(host),
                    now,
                    &[(None, "execution_failed", Some(message))],
                )
                .await?;
            } else {
                sqlx::query(
                    "UPDATE executions SET finalize_attempts = finalize_attempts + 1, finalize_lease_until = $2 WHERE id = $1",
                )
                .bind(execution_id)
                .bind(now + FINALIZE_LEASE_MS)
                .execute(&mut *tx)
                .await?;
                to_finalize.push(execution_id);
            }
        }
        tx.commit().await?;
        Ok((out, to_finalize))
    }

    /// The DAG of execution `id`, read inside `tx`.
    async fn plan_in_tx(
        &self,
        tx: &mut Transaction<'static, DB>,
        id: Uuid,
    ) -> Result<ExecutionPlan> {
        let (dag,): (String,) = sqlx::query_as("SELECT dag FROM executions WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        let wf: WorkflowMeta = serde_json::from_str(&dag)
            .map_err(|e| StoreError::Other(format!("stored DAG: {e}")))?;
        Ok(ExecutionPlan::new(wf))
    }
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
        let sql = Sql(self);
        let id = Uuid::now_v7();
        let now = now_ms();
        let wf = &new.plan.workflow;
        let dag = serde_json::to_string(wf).map_err(|e| StoreError::Other(e.to_string()))?;
        let context = Value::Object(new.context.clone()).to_string();
        // Skipped roots store the initial context as their output: charged
        // to max_execution_output_bytes like any output.
        let skipping = wf
            .tasks
            .iter()
            .filter(|t| {
                t.dependencies.is_empty()
                    && matches!(decide_root(t, new.context), Decision::Skip { .. })
            })
            .count() as u64;
        let skipped_bytes = skipping.saturating_mul(context.len() as u64);
        if skipped_bytes > new.limits.max_execution_output_bytes {
            return Err(StoreError::Quota(format!(
                "tenant '{}': {skipping} root tasks of workflow '{}' would be skipped, each passing on the {}-byte initial context: {skipped_bytes} bytes of task output, over the max_execution_output_bytes limit of {}",
                new.tenant,
                wf.name,
                context.len(),
                new.limits.max_execution_output_bytes
            )));
        }
        let mut tx = self.begin_write().await?;
        // Counted and inserted in one transaction, with the tenant's row
        // locked on PostgreSQL (SQLite's write transaction excludes every
        // other writer already): concurrent starts cannot overshoot
        // max_queued_executions.
        sql.lock_tenant(&mut tx, new.tenant).await?;
        let (queued,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM executions WHERE tenant = $1 AND status IN ('pending', 'running')",
        )
        .bind(new.tenant)
        .fetch_one(&mut *tx)
        .await?;
        if queued >= new.limits.max_queued_executions as i64 {
            tx.rollback().await?;
            return Err(StoreError::Quota(format!(
                "tenant '{}' has {queued} unfinished executions, its max_queued_executions quota",
                new.tenant
            )));
        }
        sqlx::query(
            "INSERT INTO executions (id, tenant, package_id, package_name, package_version, content_hash, workflow, dag, status, context, tasks_remaining, created_at, output_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12)",
        )
        .bind(id)
        .bind(new.tenant)
        .bind(new.package_id)
        .bind(new.package_name)
        .bind(new.package_version)
        .bind(new.content_hash)
        .bind(&wf.name)
        .bind(&dag)
        .bind(&context)
        .bind(wf.tasks.len() as i64)
        .bind(now)
        .bind(skipped_bytes as i64)
        .execute(&mut *tx)
        .await?;
        let mut events: Vec<Event> = vec![(None, "created", None)];
        let mut skipped_roots = Vec::new();
        for chunk in wf.tasks.chunks(200) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO task_executions (execution_id, task_id, tenant, status, max_attempts, deps_remaining, next_run_at, input, output, skip_reason, finished_at, ready_at) ",
            );
            let mut rows = Vec::with_capacity(chunk.len());
            for t in chunk {
                if t.dependencies.is_empty() {
                    match decide_root(t, new.context) {
                        Decision::Run { .. } => {
                            events.push((Some(t.id.clone()), "task_ready", None));
                            rows.push((
                                t,
                                "ready",
                                Some(now),
                                Some(context.clone()),
                                None,
                                None,
                                None,
                                Some(now),
                            ));
                        }
                        Decision::Skip { reason, input } => {
                            events.push((Some(t.id.clone()), "skipped", Some(reason.clone())));
                            let out = Value::Object(input.clone()).to_string();
                            skipped_roots.push(t.id.clone());
                            rows.push((
                                t,
                                "skipped",
                                None,
                                None,
                                Some(out),
                                Some(reason),
                                Some(now),
                                None,
                            ));
                        }
                    }
                } else {
                    rows.push((t, "not_started", None, None, None, None, None, None));
                }
            }
            qb.push_values(
                rows,
                |mut b, (t, status, next, input, output, reason, finished, ready)| {
                    b.push_bind(id)
                        .push_bind(t.id.clone())
                        .push_bind(new.tenant.to_string())
                        .push_bind(status)
                        .push_bind(t.retry.max_attempts as i64)
                        .push_bind(t.dependencies.len() as i64)
                        .push_bind(next)
                        .push_bind(input)
                        .push_bind(output)
                        .push_bind(reason)
                        .push_bind(finished)
                        .push_bind(ready);
                },
            );
            qb.build().execute(&mut *tx).await?;
        }
        let mut finalize = false;
        if !skipped_roots.is_empty() {
            let (_, finished) = sql
                .propagate(&mut tx, new.plan, id, &skipped_roots, now, &mut events)
                .await?;
            finalize = sql.finalize(&mut tx, id, finished, now).await?.0;
        }
        sql.insert_events(&mut tx, id, None, now, &events).await?;
        tx.commit().await?;
        if finalize {
            // Every root was skipped and nothing else is left.
            self.finalize_execution(Uuid::nil(), id).await?;
        }
        self.get_execution(None, id).await
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

    async fn list_executions(&self, filter: ExecutionFilter<'_>) -> Result<Vec<ExecutionRow>> {
        let rows: Vec<StoredExecution> = sqlx::query_as(
            "SELECT * FROM executions WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(filter.tenant)
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.limit.unwrap_or(100))
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
        let row: Option<(String, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT e.status, e.dag, e.tasks_remaining, t.limits FROM executions e LEFT JOIN tenants t ON t.name = e.tenant WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some((status, dag, remaining, limits)) = row else {
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
        Ok(Some(status))
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
        sqlx::query(
            "UPDATE executions SET status = 'cancelled', error = 'cancelled', finished_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let skipped: Vec<(String,)> = sqlx::query_as(
            "UPDATE task_executions SET status = 'skipped', skip_reason = 'execution cancelled', finished_at = $2 WHERE execution_id = $1 AND status IN ('not_started', 'ready') RETURNING task_id",
        )
        .bind(id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
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
}
