//! What the fleet shares, counted for the metrics:
//! [`fleet_counts`](super::ExecutionStore::fleet_counts), for both backends.
//!
//! One statement, so the counts are one snapshot. Each branch reads only an
//! index: ready tasks the partial index `task_executions_ready (tenant,
//! next_run_at)`, running tasks `task_executions_running_tenant (tenant)`,
//! and unfinished executions `executions_by_status` (a range of the
//! `pending` and `running` keys, bounded by the tenants'
//! `max_queued_executions`). Finished tasks and executions, which grow
//! without bound, are never read.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::{Result, now_ms};
use crate::telemetry::{FleetCounts, TenantExecutionCounts, TenantTaskCounts};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use std::collections::BTreeMap;

/// `(what, tenant, due, count)`: `what` is `ready` (with `due` the tasks
/// whose `next_run_at` has passed), `running`, or `exec_pending` /
/// `exec_running`.
const FLEET_COUNTS_SQL: &str = "SELECT 'ready' AS what, tenant, COUNT(CASE WHEN next_run_at <= $1 THEN 1 END) AS due, COUNT(*) AS n FROM task_executions WHERE status = 'ready' GROUP BY tenant \
     UNION ALL SELECT 'running', tenant, 0, COUNT(*) FROM task_executions WHERE status = 'running' GROUP BY tenant \
     UNION ALL SELECT 'exec_' || status, tenant, 0, COUNT(*) FROM executions WHERE status IN ('pending', 'running') GROUP BY status, tenant";

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
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
{
    /// [`ExecutionStore::fleet_counts`](super::ExecutionStore::fleet_counts).
    pub(crate) async fn fleet_counts(&self) -> Result<FleetCounts> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(FLEET_COUNTS_SQL)
            .bind(now_ms())
            .fetch_all(self.0.pool())
            .await?;
        let mut tasks: BTreeMap<String, TenantTaskCounts> = BTreeMap::new();
        let mut executions: BTreeMap<String, TenantExecutionCounts> = BTreeMap::new();
        for (what, tenant, due, n) in rows {
            let (due, n) = (due.max(0) as u64, n.max(0) as u64);
            match what.as_str() {
                "ready" => {
                    let t = tasks.entry(tenant.clone()).or_default();
                    t.ready = due;
                    t.retry_wait = n - due.min(n);
                }
                "running" => tasks.entry(tenant.clone()).or_default().running = n,
                "exec_pending" => executions.entry(tenant.clone()).or_default().pending = n,
                "exec_running" => executions.entry(tenant.clone()).or_default().running = n,
                _ => {}
            }
        }
        Ok(FleetCounts {
            tasks: tasks
                .into_iter()
                .map(|(tenant, c)| TenantTaskCounts { tenant, ..c })
                .collect(),
            executions: executions
                .into_iter()
                .map(|(tenant, c)| TenantExecutionCounts { tenant, ..c })
                .collect(),
        })
    }
}
