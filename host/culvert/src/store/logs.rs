//! What each attempt's guest said, for both backends: the `task_logs`
//! table, one row per attempt that ran, written with the attempt's
//! completion ([`insert_task_logs`](Sql::insert_task_logs), called from
//! `completions.rs` in the recording transaction) and read back as
//! [`AttemptLogs`]
//! ([`ExecutionStore::task_logs`](super::ExecutionStore::task_logs)).
//!
//! A row holds the attempt's [`LogRecord`]s as one JSON array, at most
//! [`TASK_LOG_BYTES`](crate::TASK_LOG_BYTES) of guest text (plus a fixed
//! count per record), and whether anything was dropped.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::claims::ClaimedTask;
use super::{Result, StoreError};
use crate::sandbox::{LogRecord, TaskLogs};
use serde::{Deserialize, Serialize};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Transaction, Type};
use uuid::Uuid;

/// What the guest of one attempt of one task said, as stored. This is the
/// JSON shape `culvert executions logs --json` prints (an array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLogs {
    /// The task.
    pub task: String,
    /// The attempt, 1 for the first.
    pub attempt: u32,
    /// Its log records and stdout and stderr lines, in order.
    pub records: Vec<LogRecord>,
    /// Bytes the records count against
    /// [`TASK_LOG_BYTES`](crate::TASK_LOG_BYTES).
    pub bytes: u64,
    /// Whether records were dropped (past the cap, or refused by the
    /// output budget).
    pub truncated: bool,
    /// Bytes of guest text dropped.
    pub dropped_bytes: u64,
    /// When the attempt's completion was recorded, in ms since the epoch.
    pub recorded_at: i64,
}

/// A `task_logs` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredLogs {
    task_id: String,
    attempt: i64,
    /// `Vec<LogRecord>`, JSON.
    records: String,
    bytes: i64,
    truncated: bool,
    dropped_bytes: i64,
    created_at: i64,
}

impl TryFrom<StoredLogs> for AttemptLogs {
    type Error = StoreError;

    fn try_from(row: StoredLogs) -> Result<Self> {
        let records: Vec<LogRecord> = serde_json::from_str(&row.records)
            .map_err(|e| StoreError::Other(format!("stored task logs: {e}")))?;
        Ok(AttemptLogs {
            task: row.task_id,
            attempt: row.attempt.clamp(0, u32::MAX as i64) as u32,
            records,
            bytes: row.bytes.max(0) as u64,
            truncated: row.truncated,
            dropped_bytes: row.dropped_bytes.max(0) as u64,
            recorded_at: row.created_at,
        })
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
    /// Store what `task`'s attempt said, inside the transaction that
    /// records its completion. An attempt number is recorded once (a
    /// completion is fenced on its claim), but a row already there is
    /// replaced rather than failing the completion.
    pub(crate) async fn insert_task_logs(
        &self,
        tx: &mut Transaction<'static, DB>,
        task: &ClaimedTask,
        logs: &TaskLogs,
        now: i64,
    ) -> Result<()> {
        let records = serde_json::to_string(&logs.records)
            .map_err(|e| StoreError::Other(format!("task logs: {e}")))?;
        sqlx::query(
            "INSERT INTO task_logs (execution_id, task_id, attempt, tenant, records, bytes, truncated, dropped_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (execution_id, task_id, attempt) DO UPDATE SET records = excluded.records, bytes = excluded.bytes, truncated = excluded.truncated, dropped_bytes = excluded.dropped_bytes, created_at = excluded.created_at",
        )
        .bind(task.execution_id)
        .bind(&task.task_id)
        .bind(i64::from(task.attempt))
        .bind(&task.tenant)
        .bind(records)
        .bind(logs.bytes.min(i64::MAX as u64) as i64)
        .bind(logs.truncated)
        .bind(logs.dropped_bytes.min(i64::MAX as u64) as i64)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// [`ExecutionStore::task_logs`](super::ExecutionStore::task_logs).
    pub(crate) async fn task_logs(
        &self,
        execution_id: Uuid,
        task: Option<&str>,
        attempt: Option<u32>,
    ) -> Result<Vec<AttemptLogs>> {
        let rows: Vec<StoredLogs> = sqlx::query_as(
            "SELECT task_id, attempt, records, bytes, truncated, dropped_bytes, created_at FROM task_logs WHERE execution_id = $1 AND ($2 IS NULL OR task_id = $2) AND ($3 IS NULL OR attempt = $3) ORDER BY created_at, task_id, attempt",
        )
        .bind(execution_id)
        .bind(task)
        .bind(attempt.map(i64::from))
        .fetch_all(self.0.pool())
        .await?;
        rows.into_iter().map(AttemptLogs::try_from).collect()
    }
}
