//! The PostgreSQL backend: several hosts share one database.
//!
//! Package changes are announced with `pg_notify('culvert_packages', ..)`
//! inside the changing transaction, so they are delivered on commit; each
//! store runs a listener task that forwards them to its
//! [`package_events`](super::Store::package_events) subscribers, which is
//! how another host's reconciler hears of a registration within a second.
//!
//! Its [`SqlBackend`] items are what it does differently from SQLite: the
//! claim and the recovery sweeps skip rows other hosts hold (`FOR UPDATE
//! SKIP LOCKED`), reading a tenant's limits locks its row (`FOR UPDATE`),
//! and package changes are announced; the SQL both run is in the files
//! named for their tables.

use super::backend::{RowsAffected, SqlBackend};
use super::{Backend, PackageEvent, Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::broadcast;

/// The NOTIFY channel for package changes.
pub const PACKAGES_CHANNEL: &str = "culvert_packages";

/// A store in a PostgreSQL database.
#[derive(Debug)]
pub struct PgStore {
    url: String,
    pool: PgPool,
    events: broadcast::Sender<PackageEvent>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl SqlBackend for PgStore {
    type Db = Postgres;
    const BACKEND: Backend = Backend::Postgres;
    /// Claim a tenant's ready tasks, skipping rows other hosts are
    /// claiming. `$1` host, `$2` lease end, `$3` now, `$4` limit, `$5`
    /// tenant, `$6` claim token, `$7` only this execution (or NULL).
    const CLAIM_SQL: &'static str = "UPDATE task_executions t SET status = 'running', claimed_by = $1, claim_token = $6, lease_expires_at = $2, attempt = t.attempt + 1, started_at = $3 FROM (SELECT execution_id, task_id FROM task_executions WHERE status = 'ready' AND tenant = $5 AND next_run_at <= $3 AND ($7::uuid IS NULL OR execution_id = $7) ORDER BY next_run_at LIMIT $4 FOR UPDATE SKIP LOCKED) c WHERE t.execution_id = c.execution_id AND t.task_id = c.task_id RETURNING t.execution_id, t.task_id, t.tenant, t.attempt, t.max_attempts, t.input, t.ready_at";
    /// A tenant's limits, locking its row for the rest of the claim. `$1`
    /// tenant.
    const TENANT_LIMITS_SQL: &'static str = "SELECT limits FROM tenants WHERE name = $1 FOR UPDATE";
    /// Executions whose last task finished but whose finalisation lease
    /// expired (or was never taken), skipping rows another host is taking
    /// over. `$1` now.
    const FINALIZE_SWEEP_SQL: &'static str = "SELECT id, finalize_attempts FROM executions WHERE status IN ('pending', 'running') AND tasks_remaining <= 0 AND (finalize_lease_until IS NULL OR finalize_lease_until < $1) ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED";
    /// Tasks whose lease expired, skipping rows another host is
    /// recovering. `$1` now.
    const RECOVER_SQL: &'static str = "SELECT execution_id, task_id, recoveries, claimed_by FROM task_executions WHERE status = 'running' AND lease_expires_at < $1 ORDER BY execution_id, task_id LIMIT 100 FOR UPDATE SKIP LOCKED";
    /// Finished executions to prune, locked; rows another pruner holds
    /// are skipped, so concurrent pruners take disjoint batches. `$1`
    /// cut-off, `$2` limit.
    const PRUNE_SQL: &'static str = "SELECT id FROM executions WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < $1 AND NOT EXISTS (SELECT 1 FROM task_executions t WHERE t.execution_id = executions.id AND t.status = 'running') ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED";

    fn url(&self) -> &str {
        &self.url
    }

    fn events(&self) -> &broadcast::Sender<PackageEvent> {
        &self.events
    }

    /// The pool.
    fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction (PostgreSQL needs no special mode to write).
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Announce a package change on commit.
    async fn notify_packages(&self, tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(PACKAGES_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
    }
}

impl PgStore {
    /// Connect to and migrate the database at `url`, and start listening
    /// for package changes.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    pub async fn open(url: &str) -> Result<Self> {
        // One plain connection first: a pool that cannot connect only says
        // it timed out, where this gives the server's reason (refused, no
        // such database, authentication) at once.
        {
            use sqlx::Connection;
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
            let probe = tokio::time::timeout(
                Duration::from_secs(10),
                sqlx::PgConnection::connect_with(&options),
            )
            .await
            .map_err(|_| StoreError::Unavailable("cannot connect: no answer within 10 s".into()))?
            .map_err(|e| connect_error(url, e))?;
            let _ = probe.close().await;
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| connect_error(url, e))?;
        // Several hosts may start at once: migrations take an advisory lock
        // (sqlx does), so only one applies them.
        super::migrations::migrator(super::migrations::POSTGRES)
            .await?
            .run(&pool)
            .await?;
        let (events, _) = broadcast::channel(64);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(PACKAGES_CHANNEL).await?;
        let tx = events.clone();
        let listener = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => {
                        let _ = tx.send(PackageEvent::Changed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the LISTEN connection; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        // The listener reconnects and re-listens on the next
                        // recv; tell subscribers to reconcile in case they
                        // missed something meanwhile.
                        let _ = tx.send(PackageEvent::Changed);
                    }
                }
            }
        });
        Ok(Self {
            url: url.to_string(),
            pool,
            events,
            listener,
        })
    }
}

/// A failed connection as one line that says what to do: a database that
/// does not exist is a [`StoreError::Config`] with the command that creates
/// it; anything else is [`StoreError::Unavailable`], with the server's own
/// message (not sqlx's wrapping of it).
fn connect_error(url: &str, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some("3D000") {
            let create = match PgConnectOptions::from_str(url) {
                Ok(o) => format!(
                    "createdb -h {} -p {} -U {} {}",
                    o.get_host(),
                    o.get_port(),
                    o.get_username(),
                    o.get_database().unwrap_or("DATABASE")
                ),
                Err(_) => "createdb NAME".to_string(),
            };
            return StoreError::Config(format!(
                "{}; create it first, for example with: {create}",
                db.message()
            ));
        }
        return StoreError::Unavailable(format!("cannot connect: {}", db.message()));
    }
    StoreError::Unavailable(format!("cannot connect: {e}"))
}
