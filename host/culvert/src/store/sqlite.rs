//! The SQLite backend: the embedded default.
//!
//! WAL journaling with `synchronous = NORMAL` (a commit survives a process
//! crash; a power loss may lose the last few), a busy timeout for writers in
//! other processes, and foreign keys on. Writes in this process go through
//! a pool of one connection, so they queue in memory instead of spinning on
//! SQLite's lock; reads use a separate pool and never wait for writes.
//!
//! The write-ahead log is copied into the database file by a background
//! task on a connection of its own ([`CHECKPOINT_EVERY`]), not by the
//! writer: SQLite's default checkpoints at a commit once the log holds 1,000
//! pages, and under a steady stream of writes that put a copy and an fsync
//! of the database file into every commit, stalling every write queued
//! behind it. The writer still checkpoints past [`WAL_AUTOCHECKPOINT_PAGES`],
//! should the task fall behind.
//!
//! Its [`SqlBackend`] items are what it does differently from PostgreSQL;
//! the SQL both run is in the files named for their tables.

use super::backend::{RowsAffected, SqlBackend};
use super::{Backend, PackageEvent, Result, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often the background task checkpoints the write-ahead log.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Past this many pages in the write-ahead log (about 100 MiB), the writer
/// checkpoints at commit itself, as SQLite does by default at 1,000.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 25_000;

/// A store in an SQLite file (or in memory).
#[derive(Debug)]
pub struct SqliteStore {
    url: String,
    read: SqlitePool,
    write: SqlitePool,
    events: broadcast::Sender<PackageEvent>,
    /// The checkpointing task (file databases only), stopped on drop.
    checkpointer: Option<tokio::task::AbortHandle>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(task) = &self.checkpointer {
            task.abort();
        }
    }
}

/// Copy the write-ahead log into the database every [`CHECKPOINT_EVERY`],
/// without blocking writers (`PASSIVE`), on `pool`'s one connection.
async fn checkpoint_loop(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "SQLite WAL checkpoint failed; retrying");
        }
    }
}

impl SqlBackend for SqliteStore {
    type Db = Sqlite;
    const BACKEND: Backend = Backend::Sqlite;
    /// Claim a tenant's ready tasks: the write transaction already excludes
    /// every other writer. `$1` host, `$2` lease end, `$3` now, `$4` limit,
    /// `$5` tenant, `$6` claim token, `$7` only this execution (or NULL).
    const CLAIM_SQL: &'static str = "UPDATE task_executions SET status = 'running', claimed_by = $1, claim_token = $6, lease_expires_at = $2, attempt = attempt + 1, started_at = $3 WHERE rowid IN (SELECT rowid FROM task_executions WHERE status = 'ready' AND tenant = $5 AND next_run_at <= $3 AND ($7 IS NULL OR execution_id = $7) ORDER BY next_run_at LIMIT $4) RETURNING execution_id, task_id, tenant, attempt, max_attempts, input, ready_at";
    /// A tenant's limits. `$1` tenant.
    const TENANT_LIMITS_SQL: &'static str = "SELECT limits FROM tenants WHERE name = $1";
    /// Executions whose last task finished but whose finalisation lease
    /// expired (or was never taken). `$1` now.
    const FINALIZE_SWEEP_SQL: &'static str = "SELECT id, finalize_attempts FROM executions WHERE status IN ('pending', 'running') AND tasks_remaining <= 0 AND (finalize_lease_until IS NULL OR finalize_lease_until < $1) ORDER BY id LIMIT 100";
    /// Tasks whose lease expired. `$1` now.
    const RECOVER_SQL: &'static str = "SELECT execution_id, task_id, recoveries, claimed_by FROM task_executions WHERE status = 'running' AND lease_expires_at < $1 ORDER BY execution_id, task_id LIMIT 100";
    /// Finished executions to prune. `$1` cut-off, `$2` limit.
    const PRUNE_SQL: &'static str = "SELECT id FROM executions WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < $1 AND NOT EXISTS (SELECT 1 FROM task_executions t WHERE t.execution_id = executions.id AND t.status = 'running') ORDER BY finished_at LIMIT $2";

    fn url(&self) -> &str {
        &self.url
    }

    fn events(&self) -> &broadcast::Sender<PackageEvent> {
        &self.events
    }

    /// The read pool.
    fn pool(&self) -> &SqlitePool {
        &self.read
    }

    /// A write transaction, holding SQLite's write lock from the start so
    /// that it never fails half-way with "database is locked".
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// SQLite has no cross-process notifications: other processes see
    /// changes at their next reconcile interval.
    async fn notify_packages(&self, _tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}

impl SqliteStore {
    /// Open (creating if missing) and migrate the database at `url`:
    /// `sqlite://PATH`, `sqlite:PATH`, a plain path, or `sqlite::memory:`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened.
    pub async fn open(url: &str) -> Result<Self> {
        let memory = url == "sqlite::memory:" || url == ":memory:";
        let options = if memory {
            // One shared in-memory database for both pools.
            SqliteConnectOptions::from_str(&format!(
                "file:culvert-{}?mode=memory&cache=shared",
                uuid::Uuid::new_v4().simple()
            ))
            .map_err(|e| StoreError::Other(e.to_string()))?
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
                && !parent.exists()
            {
                return Err(StoreError::Unavailable(format!(
                    "cannot open SQLite database {path}: directory {} does not exist",
                    parent.display()
                )));
            }
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        };
        let options = options
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open SQLite database {url}: {e}"))
            })?;
        super::migrations::migrator(super::migrations::SQLITE)
            .await?
            .run(&write)
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .max_lifetime(None)
            .connect_with(options.clone().read_only(false))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open SQLite database {url}: {e}"))
            })?;
        let checkpointer = if memory {
            None
        } else {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .idle_timeout(Some(Duration::from_secs(60)))
                .connect_lazy_with(options);
            Some(tokio::spawn(checkpoint_loop(pool)).abort_handle())
        };
        let (events, _) = broadcast::channel(64);
        Ok(Self {
            url: url.to_string(),
            read,
            write,
            events,
            checkpointer,
        })
    }
}
