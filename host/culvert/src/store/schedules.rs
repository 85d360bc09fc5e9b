//! Schedules in the store: the [`ScheduleStore`] trait, its rows, and its
//! implementation for both backends.
//!
//! A due time is claimed twice over, in the transaction that starts its
//! execution: the schedule's row is advanced only from the `version` the
//! host read (so of two hosts that read the same state, one advances it and
//! the other changes nothing), and a `schedule_fires` row, unique on
//! `(schedule_id, due_at)`, records what the due time became. A crash
//! between the two is impossible: they commit together or not at all.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::executions::{Created, NewExecution};
use super::{Result, StoreError, now_ms};
use crate::cron::{CatchUp, FireOutcome, Overlap, ScheduleSpec};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

/// A schedule, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRow {
    /// Its id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// What it starts, when, and its policies.
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// The package that declares it, for a declared schedule (it comes and
    /// goes with the package); `None` for one set at run time.
    pub package: Option<String>,
    /// Whether it is declared by a package.
    pub declared: bool,
    /// Paused schedules fire nothing.
    pub paused: bool,
    /// The first due time not handled yet, in ms; `None` when it never
    /// comes due again.
    pub next_due_at: Option<i64>,
    /// A due time kept by the `queue_one` overlap policy, in ms.
    pub queued_for: Option<i64>,
    /// When it last started an execution, in ms.
    pub last_fired_at: Option<i64>,
    /// Why its last due time could not start (a removed workflow, a quota).
    pub last_error: Option<String>,
    /// Bumped by every change: a host advances the schedule only from the
    /// version it read.
    pub version: i64,
    /// Created, in ms.
    pub created_at: i64,
    /// Last changed, in ms.
    pub updated_at: i64,
}

/// A schedule to create at run time.
#[derive(Debug, Clone)]
pub struct NewSchedule<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The validated schedule.
    pub spec: &'a ScheduleSpec,
    /// Its first due time.
    pub next_due_at: Option<i64>,
    /// The tenant's `max_schedules`, checked with the tenant's row locked.
    pub max_schedules: u32,
}

/// A schedule a package declares, keyed within the package.
#[derive(Debug, Clone)]
pub struct DeclaredSchedule {
    /// Unique within the package (`workflow#n`).
    pub key: String,
    /// The validated schedule (its workflow as `package::workflow`).
    pub spec: ScheduleSpec,
    /// Its first due time from now.
    pub next_due_at: Option<i64>,
}

/// One due time to record in a [`FireCommit`].
#[derive(Debug, Clone)]
pub struct PlannedFire<'a> {
    /// The due time, in ms.
    pub due: i64,
    /// What it becomes.
    pub outcome: FireOutcome,
    /// The execution to start, for an outcome that starts one.
    pub start: Option<NewExecution<'a>>,
    /// Why it cannot start (its workflow is gone, say): recorded as
    /// `failed`.
    pub error: Option<String>,
}

/// How a fire moves its schedule on.
#[derive(Debug, Clone, Copy)]
pub struct Advance {
    /// The version the host read: nothing is written unless it is still
    /// the schedule's.
    pub version: i64,
    /// The next due time.
    pub next_due_at: Option<i64>,
    /// The kept due time.
    pub queued_for: Option<i64>,
}

/// What the firing loop writes for one schedule, in one transaction.
#[derive(Debug, Clone)]
pub struct FireCommit<'a> {
    /// The schedule.
    pub schedule: Uuid,
    /// Its tenant.
    pub tenant: &'a str,
    /// `None` for a manual trigger, which leaves the schedule as it is.
    pub advance: Option<Advance>,
    /// The due times and what they become.
    pub fires: Vec<PlannedFire<'a>>,
    /// The host writing it.
    pub host: Uuid,
}

/// What one due time became, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct FireRow {
    /// The schedule.
    pub schedule_id: Uuid,
    /// The due time, in ms.
    pub due_at: i64,
    /// `started`, `caught_up`, `dequeued`, `triggered`, `skipped_overlap`,
    /// `queued` or `failed`.
    pub outcome: String,
    /// The execution it started.
    pub execution_id: Option<Uuid>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was recorded, in ms.
    pub fired_at: i64,
}

/// Schedules and their fires. Every call is one transaction.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Create a run-time schedule; [`StoreError::Quota`] over
    /// `max_schedules`, [`StoreError::NotFound`] for an unknown tenant.
    async fn create_schedule(&self, new: NewSchedule<'_>) -> Result<ScheduleRow>;

    /// Schedules of one tenant, or of all, oldest first.
    async fn list_schedules(&self, tenant: Option<&str>) -> Result<Vec<ScheduleRow>>;

    /// One schedule (of `tenant`, when given; another tenant's is "not
    /// found").
    async fn get_schedule(&self, tenant: Option<&str>, id: Uuid) -> Result<ScheduleRow>;

    /// Pause, or resume from `next_due_at` (due times while paused are not
    /// caught up).
    async fn set_schedule_paused(
        &self,
        tenant: &str,
        id: Uuid,
        paused: bool,
        next_due_at: Option<i64>,
    ) -> Result<ScheduleRow>;

    /// Delete a run-time schedule with its fire records;
    /// [`StoreError::Conflict`] for a declared one.
    async fn delete_schedule(&self, tenant: &str, id: Uuid) -> Result<ScheduleRow>;

    /// Make the declared schedules of `package` in `tenant` exactly
    /// `declared` (its active version's): new ones are added, changed ones
    /// updated (keeping paused), gone ones removed.
    async fn sync_declared_schedules(
        &self,
        tenant: &str,
        package: &str,
        declared: &[DeclaredSchedule],
    ) -> Result<()>;

    /// Unpaused schedules with a due time at or before `now`, or a kept
    /// one: at most `limit`, the most overdue first.
    async fn due_schedules(&self, now: i64, limit: i64) -> Result<Vec<ScheduleRow>>;

    /// Whether an execution the schedule started is pending or running.
    async fn schedule_running(&self, id: Uuid) -> Result<bool>;

    /// Record a fire: advance the schedule (unless another host did first:
    /// then nothing is written and the answer is `None`), claim its due
    /// times and start their executions, in one transaction.
    async fn commit_fires(&self, commit: FireCommit<'_>) -> Result<Option<Vec<FireRow>>>;

    /// The latest `limit` fire records of a schedule, newest first.
    async fn schedule_fires(&self, id: Uuid, limit: i64) -> Result<Vec<FireRow>>;
}

/// A `schedules` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredSchedule {
    id: Uuid,
    tenant: String,
    package: Option<String>,
    workflow: String,
    cron: String,
    timezone: String,
    context: String,
    catch_up: String,
    catch_up_cap: i64,
    overlap: String,
    paused: bool,
    next_due_at: Option<i64>,
    queued_for: Option<i64>,
    last_fired_at: Option<i64>,
    last_error: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<StoredSchedule> for ScheduleRow {
    fn from(row: StoredSchedule) -> Self {
        let context = match serde_json::from_str(&row.context) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        ScheduleRow {
            id: row.id,
            tenant: row.tenant,
            spec: ScheduleSpec {
                workflow: row.workflow,
                cron: row.cron,
                timezone: row.timezone,
                context,
                catch_up: CatchUp::parse(&row.catch_up).unwrap_or_default(),
                catch_up_cap: row.catch_up_cap.clamp(1, u32::MAX as i64) as u32,
                overlap: Overlap::parse(&row.overlap).unwrap_or_default(),
            },
            declared: row.package.is_some(),
            package: row.package,
            paused: row.paused,
            next_due_at: row.next_due_at,
            queued_for: row.queued_for,
            last_fired_at: row.last_fired_at,
            last_error: row.last_error,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A `schedule_fires` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredFire {
    schedule_id: Uuid,
    due_at: i64,
    outcome: String,
    execution_id: Option<Uuid>,
    error: Option<String>,
    fired_at: i64,
}

impl From<StoredFire> for FireRow {
    fn from(r: StoredFire) -> Self {
        FireRow {
            schedule_id: r.schedule_id,
            due_at: r.due_at,
            outcome: r.outcome,
            execution_id: r.execution_id,
            error: r.error,
            fired_at: r.fired_at,
        }
    }
}

fn not_found(id: Uuid) -> StoreError {
    StoreError::NotFound(format!("schedule {id} not found"))
}

#[async_trait]
impl<S, DB> ScheduleStore for S
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
    async fn create_schedule(&self, new: NewSchedule<'_>) -> Result<ScheduleRow> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        Sql(self).lock_tenant(&mut tx, new.tenant).await?;
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM schedules WHERE tenant = $1 AND package IS NULL")
                .bind(new.tenant)
                .fetch_one(&mut *tx)
                .await?;
        if count >= new.max_schedules as i64 {
            return Err(StoreError::Quota(format!(
                "tenant '{}' has {count} schedules, its max_schedules quota: delete one first",
                new.tenant
            )));
        }
        let id = Uuid::now_v7();
        insert_schedule(
            &mut tx,
            id,
            new.tenant,
            None,
            new.spec,
            new.next_due_at,
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_schedule(None, id).await
    }

    async fn list_schedules(&self, tenant: Option<&str>) -> Result<Vec<ScheduleRow>> {
        let rows: Vec<StoredSchedule> = sqlx::query_as(
            "SELECT * FROM schedules WHERE ($1 IS NULL OR tenant = $1) ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(ScheduleRow::from).collect())
    }

    async fn get_schedule(&self, tenant: Option<&str>, id: Uuid) -> Result<ScheduleRow> {
        let row: Option<StoredSchedule> =
            sqlx::query_as("SELECT * FROM schedules WHERE id = $1 AND ($2 IS NULL OR tenant = $2)")
                .bind(id)
                .bind(tenant)
                .fetch_optional(self.pool())
                .await?;
        row.map(ScheduleRow::from).ok_or_else(|| not_found(id))
    }

    async fn set_schedule_paused(
        &self,
        tenant: &str,
        id: Uuid,
        paused: bool,
        next_due_at: Option<i64>,
    ) -> Result<ScheduleRow> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE schedules SET paused = $1, next_due_at = CASE WHEN $1 THEN next_due_at ELSE $2 END, version = version + 1, updated_at = $3 WHERE id = $4 AND tenant = $5",
        )
        .bind(paused)
        .bind(next_due_at)
        .bind(now_ms())
        .bind(id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(not_found(id));
        }
        tx.commit().await?;
        self.get_schedule(Some(tenant), id).await
    }

    async fn delete_schedule(&self, tenant: &str, id: Uuid) -> Result<ScheduleRow> {
        let row = self.get_schedule(Some(tenant), id).await?;
        if let Some(package) = &row.package {
            return Err(StoreError::Conflict(format!(
                "schedule {id} is declared by package '{package}': pause it, or remove or upgrade the package"
            )));
        }
        // The row read above is this tenant's and set at run time: a
        // schedule's tenant and origin never change.
        let mut tx = self.begin_write().await?;
        if delete_with_fires(&mut tx, id).await? == 0 {
            return Err(not_found(id));
        }
        tx.commit().await?;
        Ok(row)
    }

    async fn sync_declared_schedules(
        &self,
        tenant: &str,
        package: &str,
        declared: &[DeclaredSchedule],
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        Sql(self).lock_tenant(&mut tx, tenant).await?;
        let existing: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, declared_key FROM schedules WHERE tenant = $1 AND package = $2",
        )
        .bind(tenant)
        .bind(package)
        .fetch_all(&mut *tx)
        .await?;
        for (id, key) in &existing {
            if !declared.iter().any(|d| &d.key == key) {
                delete_with_fires(&mut tx, *id).await?;
            }
        }
        for d in declared {
            let context = Value::Object(d.spec.context.clone()).to_string();
            match existing.iter().find(|(_, k)| k == &d.key) {
                Some((id, _)) => {
                    // Unchanged due times keep their cursor; a changed
                    // expression starts from now. Paused stays as it was.
                    sqlx::query(
                        "UPDATE schedules SET next_due_at = CASE WHEN cron = $1 AND timezone = $2 THEN next_due_at ELSE $3 END, workflow = $4, cron = $1, timezone = $2, context = $5, catch_up = $6, catch_up_cap = $7, overlap = $8, version = version + 1, updated_at = $9 WHERE id = $10",
                    )
                    .bind(d.spec.cron.clone())
                    .bind(d.spec.timezone.clone())
                    .bind(d.next_due_at)
                    .bind(d.spec.workflow.clone())
                    .bind(context)
                    .bind(d.spec.catch_up.as_str())
                    .bind(d.spec.catch_up_cap as i64)
                    .bind(d.spec.overlap.as_str())
                    .bind(now)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    insert_schedule(
                        &mut tx,
                        Uuid::now_v7(),
                        tenant,
                        Some((package, &d.key)),
                        &d.spec,
                        d.next_due_at,
                        now,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn due_schedules(&self, now: i64, limit: i64) -> Result<Vec<ScheduleRow>> {
        let rows: Vec<StoredSchedule> = sqlx::query_as(
            "SELECT * FROM schedules WHERE paused = $1 AND ((next_due_at IS NOT NULL AND next_due_at <= $2) OR queued_for IS NOT NULL) ORDER BY next_due_at LIMIT $3",
        )
        .bind(false)
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(ScheduleRow::from).collect())
    }

    async fn schedule_running(&self, id: Uuid) -> Result<bool> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM executions WHERE schedule_id = $1 AND status IN ('pending', 'running')",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    async fn commit_fires(&self, commit: FireCommit<'_>) -> Result<Option<Vec<FireRow>>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // The tenant first, then the schedule: the order every writer of
        // both takes, so hosts cannot deadlock on them.
        Sql(self).lock_tenant(&mut tx, commit.tenant).await?;
        if let Some(a) = commit.advance {
            let starts = commit.fires.iter().any(|f| f.start.is_some());
            let moved = sqlx::query(
                "UPDATE schedules SET next_due_at = $1, queued_for = $2, version = version + 1, updated_at = $3, last_fired_at = CASE WHEN $4 THEN $3 ELSE last_fired_at END WHERE id = $5 AND version = $6 AND paused = $7",
            )
            .bind(a.next_due_at)
            .bind(a.queued_for)
            .bind(now)
            .bind(starts)
            .bind(commit.schedule)
            .bind(a.version)
            .bind(false)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                // Another host advanced it (or it was paused or changed)
                // since it was read: this host's plan is stale.
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let starts: Vec<NewExecution<'_>> = commit
            .fires
            .iter()
            .filter_map(|f| f.start.clone())
            .collect();
        let mut created = if starts.is_empty() {
            Vec::new()
        } else {
            Sql(self).create_in(&mut tx, &starts, now).await?
        }
        .into_iter();
        let mut finalize = Vec::new();
        let mut rows = Vec::with_capacity(commit.fires.len());
        let mut last_error = None;
        for f in &commit.fires {
            let (mut outcome, mut execution, mut error) =
                (f.outcome.as_str(), None, f.error.clone());
            if f.start.is_some() {
                match created.next().expect("one result per start") {
                    Ok(Created::Row(row)) => execution = Some(row.id),
                    Ok(Created::Changed {
                        id,
                        finalize: all_skipped,
                    }) => {
                        execution = Some(id);
                        if all_skipped {
                            finalize.push(id);
                        }
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
            if error.is_some() {
                outcome = "failed";
                last_error.clone_from(&error);
            }
            let updated = if f.outcome == FireOutcome::Dequeued {
                sqlx::query(
                    "UPDATE schedule_fires SET outcome = $1, execution_id = $2, error = $3, fired_at = $4, host = $5 WHERE schedule_id = $6 AND due_at = $7",
                )
                .bind(outcome)
                .bind(execution)
                .bind(error.clone())
                .bind(now)
                .bind(commit.host)
                .bind(commit.schedule)
                .bind(f.due)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            } else {
                0
            };
            if updated == 0 {
                sqlx::query(
                    "INSERT INTO schedule_fires (schedule_id, due_at, tenant, outcome, execution_id, error, fired_at, host) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(commit.schedule)
                .bind(f.due)
                .bind(commit.tenant)
                .bind(outcome)
                .bind(execution)
                .bind(error.clone())
                .bind(now)
                .bind(commit.host)
                .execute(&mut *tx)
                .await?;
            }
            rows.push(FireRow {
                schedule_id: commit.schedule,
                due_at: f.due,
                outcome: outcome.to_string(),
                execution_id: execution,
                error,
                fired_at: now,
            });
        }
        if commit.advance.is_some() && !rows.is_empty() {
            sqlx::query("UPDATE schedules SET last_error = $1 WHERE id = $2")
                .bind(last_error)
                .bind(commit.schedule)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        for id in finalize {
            // Every root was skipped and nothing else is left.
            use super::ExecutionStore;
            self.finalize_execution(Uuid::nil(), id).await?;
        }
        Ok(Some(rows))
    }

    async fn schedule_fires(&self, id: Uuid, limit: i64) -> Result<Vec<FireRow>> {
        let rows: Vec<StoredFire> = sqlx::query_as(
            "SELECT schedule_id, due_at, outcome, execution_id, error, fired_at FROM schedule_fires WHERE schedule_id = $1 ORDER BY due_at DESC LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(FireRow::from).collect())
    }
}

/// Delete schedule `id` and its fire records in `tx`: how many schedules
/// it deleted (0 or 1).
async fn delete_with_fires<DB>(tx: &mut sqlx::Transaction<'static, DB>, id: Uuid) -> Result<u64>
where
    DB: Database<QueryResult: RowsAffected>,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
{
    sqlx::query("DELETE FROM schedule_fires WHERE schedule_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(sqlx::query("DELETE FROM schedules WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Insert a schedule row in `tx`.
async fn insert_schedule<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    id: Uuid,
    tenant: &str,
    declared: Option<(&str, &str)>,
    spec: &ScheduleSpec,
    next_due_at: Option<i64>,
    now: i64,
) -> Result<()>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
{
    sqlx::query(
        "INSERT INTO schedules (id, tenant, package, declared_key, workflow, cron, timezone, context, catch_up, catch_up_cap, overlap, paused, next_due_at, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $14)",
    )
    .bind(id)
    .bind(tenant.to_string())
    .bind(declared.map(|(p, _)| p.to_string()))
    .bind(declared.map(|(_, k)| k.to_string()))
    .bind(spec.workflow.clone())
    .bind(spec.cron.clone())
    .bind(spec.timezone.clone())
    .bind(Value::Object(spec.context.clone()).to_string())
    .bind(spec.catch_up.as_str().to_string())
    .bind(spec.catch_up_cap as i64)
    .bind(spec.overlap.as_str().to_string())
    .bind(false)
    .bind(next_due_at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
