//! Appending to the event log (`execution_events`) inside a write
//! transaction, for both backends. Reading it is
//! [`execution_events`](super::ExecutionStore::execution_events).

use super::Result;
use super::backend::{RowsAffected, Sql, SqlBackend};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Transaction, Type,
};
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
}
