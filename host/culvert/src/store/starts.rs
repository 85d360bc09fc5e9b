//! Creating executions, for both backends: one start, or a group of
//! concurrent starts in one transaction (group commit, as
//! `completions.rs` does for completions).
//!
//! On SQLite every write transaction runs on the one writer connection, so
//! a start's cost is mostly its round trips to that connection. A group
//! pays for the transaction, the tenant's lock and its
//! `max_queued_executions` count once, and writes its executions, tasks,
//! events and audit entries in one multi-row statement each.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::events::{Event, ExecutionEvent};
use super::executions::{Created, ExecutionRow, NewExecution};
use super::{Result, StoreError};
use crate::scheduler::{Decision, ExecutionStatus, decide_root};
use serde_json::{Map, Value};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Transaction, Type,
};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Executions per multi-row `INSERT INTO executions` (16 columns each).
const EXECUTION_ROWS: usize = 50;
/// Task rows per multi-row `INSERT INTO task_executions` (12 columns each).
const TASK_ROWS: usize = 200;

/// One task row to insert.
struct TaskInsert<'a> {
    execution: Uuid,
    tenant: &'a str,
    task: &'a str,
    status: &'static str,
    max_attempts: i64,
    deps: i64,
    next_run_at: Option<i64>,
    input: Option<String>,
    output: Option<String>,
    skip_reason: Option<String>,
    finished_at: Option<i64>,
    ready_at: Option<i64>,
}

/// A start, with what its rows hold worked out before the transaction.
struct Prepared {
    id: Uuid,
    dag: String,
    context: String,
    skipped_bytes: u64,
    skipped_roots: Vec<String>,
    events: Vec<Event>,
}

/// Work out `new`'s rows; a per-start error when its skipped roots would
/// store more than `max_execution_output_bytes`.
fn prepare(new: &NewExecution<'_>) -> Result<Prepared> {
    let wf = &new.plan.workflow;
    let dag = serde_json::to_string(wf).map_err(|e| StoreError::Other(e.to_string()))?;
    let context = Value::Object(new.context.clone()).to_string();
    let mut events: Vec<Event> = vec![(None, "created", None)];
    let mut skipped_roots = Vec::new();
    for t in wf.tasks.iter().filter(|t| t.dependencies.is_empty()) {
        match decide_root(t, new.context) {
            Decision::Run { .. } => events.push((Some(t.id.clone()), "task_ready", None)),
            Decision::Skip { reason, .. } => {
                events.push((Some(t.id.clone()), "skipped", Some(reason)));
                skipped_roots.push(t.id.clone());
            }
        }
    }
    // Skipped roots store the initial context as their output: charged to
    // max_execution_output_bytes like any output.
    let skipping = skipped_roots.len() as u64;
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
    Ok(Prepared {
        id: Uuid::now_v7(),
        dag,
        context,
        skipped_bytes,
        skipped_roots,
        events,
    })
}

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
    /// Lock `tenant`'s row inside `tx` (see [`lock_tenant`](Self::lock_tenant))
    /// and count its unfinished executions, which `max_queued_executions`
    /// bounds: the count and an insert that follows are one step for
    /// concurrent requests.
    pub(crate) async fn lock_and_count_queued(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: &str,
    ) -> Result<i64> {
        self.lock_tenant(tx, tenant).await?;
        let (queued,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM executions WHERE tenant = $1 AND status IN ('pending', 'running')",
        )
        .bind(tenant)
        .fetch_one(&mut **tx)
        .await?;
        Ok(queued)
    }

    /// Create the executions of `batch` in one transaction: one result per
    /// start, in order. A start refused by its tenant's quota (or because
    /// the tenant does not exist) fails alone; an error of the transaction
    /// (a database error, or an idempotency key already taken) fails them
    /// all and nothing is written.
    pub(crate) async fn create_executions(
        &self,
        batch: &[NewExecution<'_>],
    ) -> Result<Vec<Result<Created>>> {
        let mut tx = self.0.begin_write().await?;
        let created = self.create_in(&mut tx, batch, super::now_ms()).await?;
        if created.iter().any(|c| c.is_ok()) {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(created)
    }

    /// [`create_executions`](Self::create_executions) inside `tx`, which the
    /// caller commits: a schedule's fire creates its execution in the
    /// transaction that claims its due time.
    pub(crate) async fn create_in(
        &self,
        tx: &mut Transaction<'static, DB>,
        batch: &[NewExecution<'_>],
        now: i64,
    ) -> Result<Vec<Result<Created>>> {
        let mut prepared: Vec<Result<Prepared>> = batch.iter().map(prepare).collect();
        // Each tenant's unfinished executions, counted once with its row
        // locked; in name order, so that hosts starting at once lock
        // tenants alike and cannot deadlock.
        let mut queued: BTreeMap<&str, Result<i64>> = batch
            .iter()
            .zip(&prepared)
            .filter(|(_, p)| p.is_ok())
            .map(|(n, _)| (n.tenant, Ok(0)))
            .collect();
        for (tenant, count) in queued.iter_mut() {
            *count = match self.lock_and_count_queued(tx, tenant).await {
                Ok(n) => Ok(n),
                // An unknown tenant fails its own starts only.
                Err(e @ StoreError::NotFound(_)) => Err(e),
                Err(e) => return Err(e),
            };
        }
        for (new, p) in batch.iter().zip(prepared.iter_mut()) {
            if p.is_err() {
                continue;
            }
            let refused = match queued.get_mut(new.tenant) {
                Some(Ok(n)) if *n >= new.limits.max_queued_executions as i64 => {
                    Some(StoreError::Quota(format!(
                        "tenant '{}' has {n} unfinished executions, its max_queued_executions quota",
                        new.tenant
                    )))
                }
                Some(Ok(n)) => {
                    *n += 1;
                    None
                }
                Some(Err(e)) => Some(e.clone()),
                None => unreachable!("every tenant of the batch was counted"),
            };
            if let Some(e) = refused {
                *p = Err(e);
            }
        }
        let accepted: Vec<(&NewExecution<'_>, &Prepared)> = batch
            .iter()
            .zip(&prepared)
            .filter_map(|(n, p)| p.as_ref().ok().map(|p| (n, p)))
            .collect();
        if !accepted.is_empty() {
            self.insert_started(tx, &accepted, now).await?;
        }
        Ok(batch
            .iter()
            .zip(prepared)
            .map(|(new, p)| {
                let p = p?;
                if !p.skipped_roots.is_empty() {
                    let remaining = new.plan.workflow.tasks.len() - p.skipped_roots.len();
                    return Ok(Created::Changed {
                        id: p.id,
                        finalize: remaining == 0,
                    });
                }
                Ok(Created::Row(Box::new(ExecutionRow {
                    id: p.id,
                    tenant: new.tenant.to_string(),
                    package_id: new.package_id,
                    package_name: new.package_name.to_string(),
                    package_version: new.package_version.to_string(),
                    content_hash: new.content_hash.to_string(),
                    workflow: new.plan.workflow.name.clone(),
                    status: ExecutionStatus::Pending,
                    context: Value::Object(new.context.clone()),
                    output: None,
                    error: None,
                    tasks_remaining: new.plan.workflow.tasks.len() as i64,
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                    schedule: new.schedule.map(|(id, _)| id),
                    scheduled_for: new.schedule.map(|(_, at)| at),
                })))
            })
            .collect())
    }

    /// Insert the rows of the `accepted` starts in `tx`: executions, tasks,
    /// what skipped roots unlock, events and audit entries.
    async fn insert_started(
        &self,
        tx: &mut Transaction<'static, DB>,
        accepted: &[(&NewExecution<'_>, &Prepared)],
        now: i64,
    ) -> Result<()> {
        for chunk in accepted.chunks(EXECUTION_ROWS) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO executions (id, tenant, package_id, package_name, package_version, content_hash, workflow, dag, status, context, tasks_remaining, created_at, output_bytes, idempotency_key, schedule_id, scheduled_for) ",
            );
            qb.push_values(chunk, |mut b, (new, p)| {
                b.push_bind(p.id)
                    .push_bind(new.tenant.to_string())
                    .push_bind(new.package_id)
                    .push_bind(new.package_name.to_string())
                    .push_bind(new.package_version.to_string())
                    .push_bind(new.content_hash.to_string())
                    .push_bind(new.plan.workflow.name.clone())
                    .push_bind(p.dag.clone())
                    .push_bind("pending")
                    .push_bind(p.context.clone())
                    .push_bind(new.plan.workflow.tasks.len() as i64)
                    .push_bind(now)
                    .push_bind(p.skipped_bytes as i64)
                    .push_bind(new.idempotency_key.map(str::to_string))
                    .push_bind(new.schedule.map(|(id, _)| id))
                    .push_bind(new.schedule.map(|(_, at)| at));
            });
            qb.build().execute(&mut **tx).await?;
        }
        let mut tasks: Vec<TaskInsert<'_>> = Vec::new();
        for (new, p) in accepted {
            for t in &new.plan.workflow.tasks {
                let mut row = TaskInsert {
                    execution: p.id,
                    tenant: new.tenant,
                    task: &t.id,
                    status: "not_started",
                    max_attempts: t.retry.max_attempts as i64,
                    deps: t.dependencies.len() as i64,
                    next_run_at: None,
                    input: None,
                    output: None,
                    skip_reason: None,
                    finished_at: None,
                    ready_at: None,
                };
                if !t.dependencies.is_empty() {
                    // Waits for its dependencies.
                } else if p.skipped_roots.contains(&t.id) {
                    let Decision::Skip { reason, input } = decide_root(t, new.context) else {
                        unreachable!("decided in prepare")
                    };
                    row.status = "skipped";
                    row.output = Some(Value::Object(input).to_string());
                    row.skip_reason = Some(reason);
                    row.finished_at = Some(now);
                } else {
                    row.status = "ready";
                    row.next_run_at = Some(now);
                    row.input = Some(p.context.clone());
                    row.ready_at = Some(now);
                }
                tasks.push(row);
            }
        }
        for chunk in tasks.chunks(TASK_ROWS) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO task_executions (execution_id, task_id, tenant, status, max_attempts, deps_remaining, next_run_at, input, output, skip_reason, finished_at, ready_at) ",
            );
            qb.push_values(chunk, |mut b, row| {
                b.push_bind(row.execution)
                    .push_bind(row.task.to_string())
                    .push_bind(row.tenant.to_string())
                    .push_bind(row.status)
                    .push_bind(row.max_attempts)
                    .push_bind(row.deps)
                    .push_bind(row.next_run_at)
                    .push_bind(row.input.clone())
                    .push_bind(row.output.clone())
                    .push_bind(row.skip_reason.clone())
                    .push_bind(row.finished_at)
                    .push_bind(row.ready_at);
            });
            qb.build().execute(&mut **tx).await?;
        }
        let mut events: Vec<ExecutionEvent> = Vec::new();
        for (new, p) in accepted {
            let mut own = p.events.clone();
            if !p.skipped_roots.is_empty() {
                let (_, finished) = self
                    .propagate(tx, new.plan, p.id, &p.skipped_roots, now, &mut own)
                    .await?;
                self.finalize(tx, p.id, finished, now).await?;
            }
            events.extend(own.into_iter().map(|(t, k, d)| (p.id, t, k, d)));
        }
        self.insert_event_rows(tx, None, now, &events).await?;
        let audits: Vec<(&NewExecution<'_>, &Prepared)> = accepted
            .iter()
            .filter(|(n, _)| n.audit.is_some())
            .copied()
            .collect();
        for chunk in audits.chunks(EXECUTION_ROWS) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO audit_log (at, key_id, key_name, tenant, action, subject, detail) ",
            );
            qb.push_values(chunk, |mut b, (new, p)| {
                let entry = new.audit.expect("filtered on audit");
                let mut detail = match &entry.detail {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                detail.insert(
                    "workflow".into(),
                    Value::from(new.plan.workflow.name.clone()),
                );
                detail.insert(
                    "package".into(),
                    Value::from(format!("{}@{}", new.package_name, new.package_version)),
                );
                detail.insert("content_hash".into(), Value::from(new.content_hash));
                b.push_bind(now)
                    .push_bind(entry.key_id.clone())
                    .push_bind(entry.key_name.clone())
                    .push_bind(new.tenant.to_string())
                    .push_bind(entry.action.as_str())
                    .push_bind(p.id.to_string())
                    .push_bind(Value::Object(detail).to_string());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}
