//! What the two backends do differently, as one trait, [`SqlBackend`]
//! (implemented in `sqlite.rs` and `postgres.rs`), and [`Sql`], the handle
//! the SQL they share is written on.
//!
//! # Design
//!
//! The SQL of both backends is the same text: SQLite accepts PostgreSQL's
//! `$1` placeholders, and both accept `RETURNING` and `ON CONFLICT`. So it
//! is written once, as plain Rust generic over the backend, with no macro:
//! the two trait implementations (`impl Store for S` in `packages.rs`,
//! `impl ExecutionStore for S` in `executions.rs`) hold for every `S:
//! SqlBackend`, and the steps they share are methods of [`Sql`] in the file
//! of the tables they write (`tenants.rs`, `events.rs`, `claims.rs`,
//! `completions.rs`, `recovery.rs`). What truly differs is a handful of
//! items of [`SqlBackend`], side by side in the two backend files: the
//! pools, how a write transaction begins, how package changes are
//! announced, the statements that lock rows on PostgreSQL, and how a
//! statement reports the rows it changed ([`RowsAffected`]). Rows are read
//! into `#[derive(sqlx::FromRow)]` records, next to their queries, with the
//! columns' own types; one conversion turns each into its public row type.
//!
//! The price of generic code is one `where` clause at the head of each of
//! those `impl` blocks: that a connection of the backend's database runs
//! queries, and the Rust types the SQL binds as parameters and reads from
//! columns. Rust does not carry bounds on other types (`i64: Encode<DB>`)
//! along with a trait, so they cannot be folded into [`SqlBackend`]; the
//! clause is the same in every block, so that a query moves between files
//! without touching it, and a query that binds or reads a new type adds
//! that type to every copy.

use super::{Backend, PackageEvent, Result};
use sqlx::{Database, Pool, Transaction};
use std::fmt;
use tokio::sync::broadcast;

/// What differs between the SQLite and the PostgreSQL store; everything
/// else is the same SQL, written once over this trait.
pub(crate) trait SqlBackend: Send + Sync + fmt::Debug + 'static {
    /// The sqlx database.
    type Db: Database;

    /// Which backend this is.
    const BACKEND: Backend;

    /// Claim a tenant's ready tasks. `$1` host, `$2` lease end, `$3` now,
    /// `$4` limit, `$5` tenant, `$6` claim token, `$7` only this execution
    /// (or NULL). Returns `execution_id, task_id, tenant, attempt,
    /// max_attempts, input, ready_at`.
    const CLAIM_SQL: &'static str;

    /// A tenant's limits (the column `limits`), locking its row where the
    /// backend needs that. `$1` tenant.
    const TENANT_LIMITS_SQL: &'static str;

    /// Executions whose last task finished but whose finalisation lease
    /// expired (or was never taken): `id, finalize_attempts`. `$1` now.
    const FINALIZE_SWEEP_SQL: &'static str;

    /// Tasks whose lease expired: `execution_id, task_id, recoveries,
    /// claimed_by`. `$1` now.
    const RECOVER_SQL: &'static str;

    /// Finished executions to prune: `id` of at most `$2` executions that
    /// finished (completed, failed or cancelled) before `$1` and have no
    /// task still running, oldest first; locked, skipping rows another
    /// pruner holds, where the backend needs that.
    const PRUNE_SQL: &'static str;

    /// The URL the store was opened with.
    fn url(&self) -> &str;

    /// Where this process announces package changes to its own
    /// subscribers.
    fn events(&self) -> &broadcast::Sender<PackageEvent>;

    /// The pool reads go through, outside any write transaction.
    fn pool(&self) -> &Pool<Self::Db>;

    /// A transaction that may write.
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;

    /// Tell other processes, when `tx` commits, that packages changed.
    fn notify_packages(
        &self,
        tx: &mut Transaction<'static, Self::Db>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// How many rows a statement changed: each driver reports it with an
/// inherent method of its own result type, which this names once for both.
pub(crate) trait RowsAffected {
    /// How many rows the statement inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

/// A store seen through its backend: the steps the store's calls share are
/// its methods, written once for both backends in the file of the tables
/// they touch.
pub(crate) struct Sql<'s, S>(pub(crate) &'s S);
