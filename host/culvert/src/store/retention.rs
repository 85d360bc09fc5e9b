//! Retention, for both backends: deleting finished executions older than a
//! cut-off with everything they own (tasks, events, logs), in bounded
//! batches, then the blobs nothing uses any more
//! ([`ExecutionStore::prune_finished`](super::ExecutionStore::prune_finished)).
//!
//! Each batch is one short write transaction. On PostgreSQL the batch's
//! execution rows are locked with `FOR UPDATE SKIP LOCKED`
//! ([`SqlBackend::PRUNE_SQL`]), so several hosts pruning at once take
//! disjoint batches and never wait on, or deadlock with, each other; on
//! SQLite write transactions take turns.

use super::Result;
use super::backend::{RowsAffected, Sql, SqlBackend};
use super::packages::GC_BLOBS;
use serde::{Deserialize, Serialize};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};
use uuid::Uuid;

/// What a prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Finished executions.
    pub executions: u64,
    /// Their task rows.
    pub tasks: u64,
    /// Their event log entries.
    pub events: u64,
    /// Their attempts' stored logs.
    pub logs: u64,
    /// Component bytes no package and no unfinished execution uses any
    /// more.
    pub blobs: u64,
    /// Audit log entries older than the cut-off.
    pub audit: u64,
}

/// Audit log entries deleted per write transaction.
const AUDIT_BATCH: i64 = 1000;

impl PruneReport {
    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        *self == PruneReport::default()
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
    /// [`ExecutionStore::prune_finished`](super::ExecutionStore::prune_finished).
    pub(crate) async fn prune_finished(
        &self,
        finished_before_ms: i64,
        batch: u32,
    ) -> Result<PruneReport> {
        let batch = batch.max(1);
        let mut report = PruneReport::default();
        loop {
            let mut tx = self.0.begin_write().await?;
            let ids: Vec<(Uuid,)> = sqlx::query_as(S::PRUNE_SQL)
                .bind(finished_before_ms)
                .bind(i64::from(batch))
                .fetch_all(&mut *tx)
                .await?;
            if ids.is_empty() {
                tx.rollback().await?;
                break;
            }
            // Owned rows first, the executions last.
            for (table, column) in [
                ("execution_events", "execution_id"),
                ("task_logs", "execution_id"),
                ("task_executions", "execution_id"),
                ("executions", "id"),
            ] {
                let mut qb =
                    QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE {column} IN ("));
                let mut list = qb.separated(", ");
                for (id,) in &ids {
                    list.push_bind(*id);
                }
                qb.push(")");
                let n = qb.build().execute(&mut *tx).await?.rows_affected();
                match table {
                    "execution_events" => report.events += n,
                    "task_logs" => report.logs += n,
                    "task_executions" => report.tasks += n,
                    _ => report.executions += n,
                }
            }
            tx.commit().await?;
            if ids.len() < batch as usize {
                break;
            }
        }
        // The audit log ages out with the executions it records, in
        // bounded batches too; so do the records of schedules' due times
        // (the claims, and what each due time became).
        report.audit = self
            .delete_in_batches(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)",
                finished_before_ms,
            )
            .await?;
        self.delete_in_batches(
            "DELETE FROM schedule_fires WHERE (schedule_id, due_at) IN (SELECT schedule_id, due_at FROM schedule_fires WHERE fired_at < $1 ORDER BY fired_at LIMIT $2)",
            finished_before_ms,
        )
        .await?;
        let mut tx = self.0.begin_write().await?;
        report.blobs = sqlx::query(GC_BLOBS)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(report)
    }

    /// Run `delete` (a `DELETE` of at most `$2` rows older than `$1`) in
    /// short transactions until a batch deletes fewer than [`AUDIT_BATCH`]
    /// rows: how many it deleted.
    async fn delete_in_batches(&self, delete: &'static str, before_ms: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.0.begin_write().await?;
            let n = sqlx::query(delete)
                .bind(before_ms)
                .bind(AUDIT_BATCH)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            total += n;
            if n < AUDIT_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
