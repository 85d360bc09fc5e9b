//! Durable state behind one trait, [`Store`], with two backends:
//! [`sqlite`] (the embedded default, no server needed) and [`postgres`]
//! (selected by a `postgres://` URL; several hosts can share it).
//!
//! Each backend has its own embedded migrations (`host/migrations/sqlite`,
//! `host/migrations/postgres`), numbered in lockstep and run on open. Both
//! backends run the same SQL, written once as Rust generic over the
//! backend, so they cannot drift apart; only what truly differs (opening,
//! write transactions, notifications, the statements that lock rows) is
//! written per backend, as the items of one trait (`backend.rs` describes
//! the design).
//!
//! | File | What it holds |
//! |---|---|
//! | `mod.rs` | the [`Store`] trait, [`StoreError`], the package and host types, [`open`] |
//! | `backend.rs` | `SqlBackend`, what differs between the backends, and `Sql`, the handle the shared steps are methods of |
//! | `sqlite.rs`, `postgres.rs` | opening each backend, and its `SqlBackend` items |
//! | `migrations.rs` | the embedded migrations of both backends |
//! | `packages.rs` | packages, their blobs, hosts: the `Store` implementation |
//! | `tenants.rs` | tenants, grants, and locking a tenant's row for a quota |
//! | `access.rs` | API keys (their hashes) and the audit log |
//! | `keys.rs` | the signing keys each tenant trusts (and untrusted ones) |
//! | `executions.rs` | the [`ExecutionStore`] trait and its rows; creating, reading, cancelling and finishing executions |
//! | `claims.rs` | claiming ready tasks fairly across tenants; heartbeats |
//! | `completions.rs` | recording completions; unlocking dependents; counting an execution down |
//! | `recovery.rs` | taking back expired leases and stuck finalisations |
//! | `stats.rs` | what the fleet shares, counted for the metrics: ready and running tasks, unfinished executions |
//! | `events.rs` | appending to the event log |
//! | `logs.rs` | what each attempt's guest said (`task_logs`): stored with its completion, read as [`AttemptLogs`] |
//! | `schedules.rs` | the [`ScheduleStore`] trait: schedules, and claiming their due times with their executions |
//! | `retention.rs` | pruning finished executions with their tasks, events and logs, in batches ([`PruneReport`]) |
//!
//! Times are stored as milliseconds since the Unix epoch (`BIGINT`).

use crate::access::{ApiKeyRow, AuditEntry, AuditRow};
use crate::package::PackageMetadata;
use crate::signing::{SignatureFile, TrustedKey};
use crate::tenants::{Grant, GrantKind, TenantLimits, TenantRow};
use async_trait::async_trait;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use claims::ClaimedTask;
pub use completions::{Completion, FINALIZE_LEASE_MS, ScheduledRetry, TaskOutcome};
pub use executions::{
    EventRow, ExecutionFilter, ExecutionRow, ExecutionStore, INLINE_OUTPUT_CHARS, MergedOutputs,
    NewExecution, TaskReset, TaskRow, TaskState, merge_outputs,
};
pub use logs::AttemptLogs;
pub use postgres::PgStore;
pub use recovery::{MAX_FINALIZE_ATTEMPTS, Recovered};
pub use retention::PruneReport;
pub use schedules::{
    Advance, DeclaredSchedule, FireCommit, FireRow, NewSchedule, PlannedFire, ScheduleRow,
    ScheduleStore,
};
pub use sqlite::SqliteStore;

mod access;
mod backend;
mod claims;
mod completions;
mod events;
mod executions;
mod keys;
mod logs;
mod migrations;
mod packages;
mod postgres;
mod recovery;
mod retention;
mod schedules;
mod sqlite;
mod starts;
mod stats;
mod tenants;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// An SQLite file (or memory).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Why a store call failed. Callers branch on the variant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist (or belongs to another tenant).
    #[error("{0}")]
    NotFound(String),
    /// The call conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The database could not be reached or was busy; retrying may help.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A tenant quota would be exceeded (checked in the transaction that
    /// would exceed it); the message names the quota.
    #[error("{0}")]
    Quota(String),
    /// The database URL or the database's setup is wrong (an unsupported
    /// scheme, a PostgreSQL database that does not exist): retrying will
    /// not help; the message says what to change.
    #[error("{0}")]
    Config(String),
    /// Anything else.
    #[error("database error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether retrying the call may help.
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Every database error the store meets passes through here, so this is
/// where [`DATABASE_ERRORS`](crate::metric_names::DATABASE_ERRORS) is
/// counted, by the variant it becomes. A row not found is the answer to the
/// caller's question (an execution or tenant that does not exist), not a
/// database problem, and is not counted.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let error = StoreError::from_sqlx(e);
        match &error {
            StoreError::Unavailable(_) => crate::telemetry::database_error("unavailable"),
            StoreError::Conflict(_) => crate::telemetry::database_error("conflict"),
            StoreError::Other(_) => crate::telemetry::database_error("other"),
            _ => {}
        }
        error
    }
}

impl StoreError {
    /// The variant a database error is.
    fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("not found".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::Database(db)
                if db.message().contains("database is locked")
                    // Deadlock, serialisation failure, and the server
                    // shutting down or terminating the connection (class 57P:
                    // a restart or an administrator), or it not accepting
                    // connections yet (class 08: connection exceptions).
                    || db.code().is_some_and(|c| {
                        matches!(c.as_ref(), "40P01" | "40001")
                            || c.starts_with("57P")
                            || c.starts_with("08")
                    }) =>
            {
                StoreError::Unavailable(db.message().to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Other(format!("migration failed: {e}"))
    }
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A package to register.
#[derive(Debug, Clone)]
pub struct NewPackage<'a> {
    /// The owning tenant.
    pub tenant: &'a str,
    /// The validated metadata (name and version come from it).
    pub metadata: &'a PackageMetadata,
    /// blake3 of `bytes`, hex.
    pub content_hash: &'a str,
    /// The component.
    pub bytes: &'a [u8],
    /// The tenant's `max_packages` quota, checked (with the tenant's row
    /// locked) in the transaction that inserts the package.
    pub max_packages: u32,
    /// Its signature, verified by the caller (stored with it; replaces the
    /// stored one when the same bytes are registered again).
    pub signature: Option<&'a SignatureFile>,
}

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The package's id.
    pub id: Uuid,
    /// False when identical bytes were already registered under this name
    /// and version (registration is idempotent).
    pub created: bool,
}

/// A registered package, without its bytes.
#[derive(Debug, Clone, Serialize)]
pub struct PackageRow {
    /// Its id.
    pub id: Uuid,
    /// The owning tenant.
    pub tenant: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// blake3 of the bytes, hex.
    pub content_hash: String,
    /// Size of the bytes.
    pub size: i64,
    /// When it was registered, in ms since the epoch.
    pub registered_at: i64,
    /// What `describe` said, validated at registration.
    #[serde(skip)]
    pub metadata: Arc<PackageMetadata>,
    /// The signature verified at registration, if it had one.
    pub signature: Option<PackageSignature>,
}

/// A stored package's signature: with the package's content hash, name and
/// version, the whole signature file again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageSignature {
    /// The signer's key id.
    pub key_id: String,
    /// When it was signed, in ms since the epoch.
    pub signed_at: i64,
    /// The Ed25519 signature, base64.
    pub signature: String,
    /// When the tenant untrusted the key, if it has.
    pub key_untrusted_at: Option<i64>,
    /// The key is untrusted and the tenant's `on_untrust` is `disable`:
    /// the package does not load.
    pub disabled: bool,
}

/// A change to the packages table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageEvent {
    /// Something changed; reconcile.
    Changed,
}

/// A running host, as `culvert status` sees it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HostRecord {
    /// The host's id, fresh at each start.
    pub id: Uuid,
    /// The machine's name.
    pub hostname: String,
    /// The process id.
    pub pid: i64,
    /// When it started, in ms.
    pub started_at: i64,
    /// Its last heartbeat, in ms.
    pub heartbeat_at: i64,
    /// Its last status report (JSON).
    pub status: serde_json::Value,
}

/// Durable state. Implemented by [`sqlite::SqliteStore`] and
/// [`postgres::PgStore`]; use it as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + ExecutionStore + ScheduleStore {
    /// The backend.
    fn backend(&self) -> Backend;

    /// The URL, with any password removed.
    fn display_url(&self) -> String;

    /// Register a package: idempotent for identical bytes, refused (with
    /// both hashes) for different bytes under the same name and version.
    async fn register_package(&self, package: NewPackage<'_>) -> Result<Registration>;

    /// Packages of one tenant, or of all tenants, oldest first.
    async fn list_packages(&self, tenant: Option<&str>) -> Result<Vec<PackageRow>>;

    /// `(id, content hash)` of every package that may load: what the
    /// reconciler compares with what it has loaded. One query. A package
    /// signed by a key its tenant untrusted is left out when the tenant's
    /// `on_untrust` is `disable`.
    async fn package_fingerprints(&self) -> Result<Vec<(Uuid, String)>>;

    /// One package, without its bytes.
    async fn get_package(&self, id: Uuid) -> Result<PackageRow>;

    /// The bytes of a component, by content hash.
    async fn blob(&self, content_hash: &str) -> Result<Vec<u8>>;

    /// Remove every version of `name` in `tenant`, or only `version`.
    /// Returns what was removed; [`StoreError::NotFound`] when nothing
    /// matched.
    async fn remove_packages(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<PackageRow>>;

    /// Delete blobs that no package and no unfinished execution uses.
    async fn collect_garbage(&self) -> Result<u64>;

    /// Package changes: this process's own, and on PostgreSQL other
    /// processes' too (LISTEN/NOTIFY).
    fn package_events(&self) -> broadcast::Receiver<PackageEvent>;

    /// Record a host's heartbeat and status.
    async fn upsert_host(&self, host: &HostRecord) -> Result<()>;

    /// Hosts whose heartbeat is at or after `since_ms`.
    async fn live_hosts(&self, since_ms: i64) -> Result<Vec<HostRecord>>;

    /// Forget a host (on clean shutdown).
    async fn remove_host(&self, id: Uuid) -> Result<()>;

    /// Create a tenant; [`StoreError::Conflict`] if it exists.
    async fn create_tenant(&self, name: &str, limits: &TenantLimits) -> Result<TenantRow>;

    /// One tenant; [`StoreError::NotFound`] if it does not exist.
    async fn get_tenant(&self, name: &str) -> Result<TenantRow>;

    /// Every tenant, by name.
    async fn list_tenants(&self) -> Result<Vec<TenantRow>>;

    /// Replace a tenant's limits.
    async fn update_tenant(&self, name: &str, limits: &TenantLimits) -> Result<TenantRow>;

    /// Delete a tenant with its packages, executions and grants. The caller
    /// checks first that nothing of it is running.
    async fn delete_tenant(&self, name: &str) -> Result<()>;

    /// Add (or replace) a grant.
    async fn add_grant(&self, grant: &Grant) -> Result<()>;

    /// Remove a grant; [`StoreError::NotFound`] if there is none.
    async fn remove_grant(
        &self,
        tenant: &str,
        package: &str,
        kind: GrantKind,
        name: &str,
    ) -> Result<()>;

    /// A tenant's grants.
    async fn list_grants(&self, tenant: &str) -> Result<Vec<Grant>>;

    /// Trust a signing key for its tenant: a new row, or the same key
    /// trusted again (renamed, `untrusted_at` cleared). Announced as a
    /// package change, so that its packages load again where disabled.
    async fn trust_key(&self, key: &TrustedKey) -> Result<TrustedKey>;

    /// Untrust a key of `tenant`, named by key id or name: the row stays,
    /// with `untrusted_at`. Announced as a package change. "Not found" when
    /// the tenant has no such trusted key.
    async fn untrust_key(&self, tenant: &str, key: &str, by: &str) -> Result<TrustedKey>;

    /// `tenant`'s row for `key_id`, trusted or untrusted.
    async fn trusted_key(&self, tenant: &str, key_id: &str) -> Result<Option<TrustedKey>>;

    /// The keys of `tenant`, or of every tenant, untrusted ones included.
    async fn trusted_keys(&self, tenant: Option<&str>) -> Result<Vec<TrustedKey>>;

    /// Store a new API key: its row and the hash of its secret.
    /// [`StoreError::NotFound`] for an unknown tenant,
    /// [`StoreError::Conflict`] when the tenant has a live key of that
    /// name.
    async fn create_api_key(&self, row: &ApiKeyRow, hash: &str) -> Result<()>;

    /// A key by its public id, with the stored hash of its secret
    /// (revoked and expired keys too: the caller checks
    /// [`ApiKeyRow::is_live`]).
    async fn api_key(&self, id: &str) -> Result<(ApiKeyRow, String)>;

    /// Keys of one tenant, or of all, oldest first.
    async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRow>>;

    /// Revoke a key (of `tenant`, when given): it stops working at once.
    /// [`StoreError::NotFound`] for an unknown key or another tenant's.
    async fn revoke_api_key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKeyRow>;

    /// Append to the audit log.
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;

    /// The audit log of one tenant, or of all, newest first: at most
    /// `limit` entries, older than entry `before` when given.
    async fn audit_log(
        &self,
        tenant: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>>;

    /// The secret named `name` that every host of the fleet shares (32
    /// random bytes, created by the first host that asks): what the
    /// dashboard signs its session cookies with.
    async fn shared_secret(&self, name: &str) -> Result<Vec<u8>>;
}

/// Open the store at `url`, running its migrations.
///
/// - `postgres://...` or `postgresql://...`: PostgreSQL.
/// - `sqlite://PATH`, `sqlite:PATH` or a plain path: an SQLite file,
///   created if missing.
/// - `sqlite::memory:`: an ephemeral in-memory SQLite database.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database cannot be reached, and
/// [`StoreError::Other`] when a migration fails.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Ok(Arc::new(postgres::PgStore::open(url).await?)),
        Some("sqlite") | None => Ok(Arc::new(sqlite::SqliteStore::open(url).await?)),
        Some(other) => Err(StoreError::Config(format!(
            "unsupported database URL scheme '{}': use sqlite://PATH (or a file path) or \
             postgres://USER@HOST:PORT/DATABASE",
            crate::guest_text::printable(other)
        ))),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A URL with its password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _pw)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
