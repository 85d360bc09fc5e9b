//! Taking back what dead hosts held, for both backends: tasks whose lease
//! expired, and finalisations whose lease expired
//! ([`recover_expired`](super::ExecutionStore::recover_expired)).
//!
//! Which rows are expired is read per backend
//! ([`RECOVER_SQL`](SqlBackend::RECOVER_SQL),
//! [`FINALIZE_SWEEP_SQL`](SqlBackend::FINALIZE_SWEEP_SQL)): PostgreSQL
//! skips rows another host is taking back.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::completions::FINALIZE_LEASE_MS;
use super::{Result, StoreError, now_ms};
use crate::package::WorkflowMeta;
use crate::scheduler::ExecutionPlan;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Transaction, Type};
use uuid::Uuid;

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
        let mut finalize_failed = Vec::new();
        for (execution_id, attempts) in stuck {
            if attempts >= MAX_FINALIZE_ATTEMPTS {
                let message = format!(
                    "finalize_failed: assembling the final context was started {attempts} times and never finished (a host died or ran out of memory); the execution is failed so that no host tries again"
                );
                let failed: Option<(String,)> = sqlx::query_as(
                    "UPDATE executions SET status = 'failed', error = $2, finished_at = $3, finalize_lease_until = NULL WHERE id = $1 AND status IN ('pending', 'running') RETURNING tenant",
                )
                .bind(execution_id)
                .bind(&message)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                finalize_failed.extend(failed.map(|(tenant,)| tenant));
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
        for tenant in finalize_failed {
            crate::telemetry::execution_finished(&tenant, "failed");
        }
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
