//! Claiming ready tasks, fairly across tenants, and extending the leases of
//! claimed ones: [`claim_tasks`](super::ExecutionStore::claim_tasks) and
//! [`heartbeat`](super::ExecutionStore::heartbeat), for both backends.
//!
//! The claim statement itself differs per backend
//! ([`CLAIM_SQL`](SqlBackend::CLAIM_SQL): PostgreSQL skips rows other hosts
//! are claiming), as does reading a tenant's limits
//! ([`TENANT_LIMITS_SQL`](SqlBackend::TENANT_LIMITS_SQL), which locks the
//! tenant's row on PostgreSQL).

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::events::ExecutionEvent;
use super::{Result, now_ms};
use crate::tenants::TenantLimits;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

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

/// A `task_executions` row as [`CLAIM_SQL`](SqlBackend::CLAIM_SQL) returns
/// it.
#[derive(sqlx::FromRow)]
struct StoredClaim {
    execution_id: Uuid,
    task_id: String,
    tenant: String,
    attempt: i64,
    max_attempts: i64,
    input: Option<String>,
    ready_at: Option<i64>,
}

impl StoredClaim {
    /// The claimed task, with what the claim adds to the row.
    fn into_claimed(self, limits: Arc<TenantLimits>, now: i64, token: Uuid) -> ClaimedTask {
        ClaimedTask {
            limits,
            execution_id: self.execution_id,
            task_id: self.task_id,
            tenant: self.tenant,
            attempt: self.attempt as u32,
            max_attempts: self.max_attempts as u32,
            input: self.input,
            ready_at: self.ready_at,
            claimed_at: now,
            claim_token: token,
        }
    }
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
}
