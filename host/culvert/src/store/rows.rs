//! The rows the store reads, as stored: one `#[derive(sqlx::FromRow)]`
//! record per query shape, with the columns' own types (JSON and statuses
//! are text), and one conversion from each into its public row type.
//! Columns are read by name, so a query's column list names them.

use super::executions::{ClaimedTask, EventRow, ExecutionRow, TaskRow};
use super::{HostRecord, PackageRow, Result, StoreError};
use crate::package::PackageMetadata;
use crate::scheduler::{ExecutionStatus, TaskStatus};
use crate::tenants::{Grant, GrantKind, TenantLimits, TenantRow};
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// A `packages` row without its bytes, as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredPackage {
    id: Uuid,
    tenant: String,
    name: String,
    version: String,
    content_hash: String,
    size: i64,
    registered_at: i64,
    /// [`PackageMetadata`], JSON.
    metadata: String,
}

impl TryFrom<StoredPackage> for PackageRow {
    type Error = StoreError;

    fn try_from(row: StoredPackage) -> Result<Self> {
        let metadata: PackageMetadata = serde_json::from_str(&row.metadata)
            .map_err(|e| StoreError::Other(format!("stored metadata: {e}")))?;
        Ok(PackageRow {
            id: row.id,
            tenant: row.tenant,
            name: row.name,
            version: row.version,
            content_hash: row.content_hash,
            size: row.size,
            registered_at: row.registered_at,
            metadata: Arc::new(metadata),
        })
    }
}

/// A `hosts` row, as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredHost {
    id: Uuid,
    hostname: String,
    pid: i64,
    started_at: i64,
    heartbeat_at: i64,
    /// The last status report, JSON.
    status: String,
}

impl From<StoredHost> for HostRecord {
    /// A status that is not JSON reads as `null`.
    fn from(row: StoredHost) -> Self {
        HostRecord {
            id: row.id,
            hostname: row.hostname,
            pid: row.pid,
            started_at: row.started_at,
            heartbeat_at: row.heartbeat_at,
            status: serde_json::from_str(&row.status).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A `tenants` row, as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredTenant {
    name: String,
    /// [`TenantLimits`], JSON.
    limits: String,
    created_at: i64,
}

impl From<StoredTenant> for TenantRow {
    /// Limits that do not parse read as the defaults.
    fn from(row: StoredTenant) -> Self {
        TenantRow {
            name: row.name,
            limits: serde_json::from_str(&row.limits).unwrap_or_default(),
            created_at: row.created_at,
        }
    }
}

/// A `grants` row, as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredGrant {
    tenant: String,
    package: String,
    /// A [`GrantKind`], as text.
    kind: String,
    name: String,
    value: String,
    writable: bool,
}

impl StoredGrant {
    /// The grant, or `None` for a kind this build does not know.
    pub(crate) fn into_grant(self) -> Option<Grant> {
        Some(Grant {
            tenant: self.tenant,
            package: self.package,
            kind: GrantKind::parse(&self.kind)?,
            name: self.name,
            value: self.value,
            writable: self.writable,
        })
    }
}

/// A `task_executions` row as `CLAIM_SQL` returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredClaim {
    pub(crate) execution_id: Uuid,
    pub(crate) task_id: String,
    pub(crate) tenant: String,
    pub(crate) attempt: i64,
    pub(crate) max_attempts: i64,
    pub(crate) input: Option<String>,
    pub(crate) ready_at: Option<i64>,
}

impl StoredClaim {
    /// The claimed task, with what the claim adds to the row.
    pub(crate) fn into_claimed(
        self,
        limits: Arc<TenantLimits>,
        now: i64,
        token: Uuid,
    ) -> ClaimedTask {
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

/// An `executions` row, as stored (the columns [`ExecutionRow`] shows).
#[derive(sqlx::FromRow)]
pub(crate) struct StoredExecution {
    id: Uuid,
    tenant: String,
    package_id: Uuid,
    package_name: String,
    package_version: String,
    content_hash: String,
    workflow: String,
    /// An [`ExecutionStatus`], as text.
    status: String,
    /// JSON.
    context: Option<String>,
    /// JSON.
    output: Option<String>,
    error: Option<String>,
    tasks_remaining: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

impl TryFrom<StoredExecution> for ExecutionRow {
    type Error = StoreError;

    fn try_from(row: StoredExecution) -> Result<Self> {
        let status = ExecutionStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Other(format!("unknown execution status '{}'", row.status))
        })?;
        Ok(ExecutionRow {
            id: row.id,
            tenant: row.tenant,
            package_id: row.package_id,
            package_name: row.package_name,
            package_version: row.package_version,
            content_hash: row.content_hash,
            workflow: row.workflow,
            status,
            context: json_column(row.context).unwrap_or(Value::Null),
            output: json_column(row.output),
            error: row.error,
            tasks_remaining: row.tasks_remaining,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        })
    }
}

/// A `task_executions` row, as stored (the columns [`TaskRow`] shows).
#[derive(sqlx::FromRow)]
pub(crate) struct StoredTask {
    execution_id: Uuid,
    task_id: String,
    /// A [`TaskStatus`], as text.
    status: String,
    attempt: i64,
    max_attempts: i64,
    next_run_at: Option<i64>,
    /// JSON.
    output: Option<String>,
    last_error: Option<String>,
    last_error_kind: Option<String>,
    skip_reason: Option<String>,
    claimed_by: Option<Uuid>,
    lease_expires_at: Option<i64>,
    recoveries: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    duration_ms: Option<i64>,
    ready_at: Option<i64>,
}

impl TryFrom<StoredTask> for TaskRow {
    type Error = StoreError;

    fn try_from(row: StoredTask) -> Result<Self> {
        Ok(TaskRow {
            execution_id: row.execution_id,
            task_id: row.task_id,
            status: parse_task_status(&row.status)?,
            attempt: row.attempt,
            max_attempts: row.max_attempts,
            next_run_at: row.next_run_at,
            output: json_column(row.output),
            last_error: row.last_error,
            last_error_kind: row.last_error_kind,
            skip_reason: row.skip_reason,
            claimed_by: row.claimed_by,
            lease_expires_at: row.lease_expires_at,
            recoveries: row.recoveries,
            started_at: row.started_at,
            finished_at: row.finished_at,
            duration_ms: row.duration_ms,
            ready_at: row.ready_at,
        })
    }
}

/// An `execution_events` row, as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredEvent {
    id: i64,
    execution_id: Uuid,
    task_id: Option<String>,
    kind: String,
    detail: Option<String>,
    host: Option<Uuid>,
    at: i64,
}

impl From<StoredEvent> for EventRow {
    fn from(row: StoredEvent) -> Self {
        EventRow {
            id: row.id,
            execution_id: row.execution_id,
            task_id: row.task_id,
            kind: row.kind,
            detail: row.detail,
            host: row.host,
            at: row.at,
        }
    }
}

/// Parse a stored JSON text column; text that is not JSON reads as `None`.
fn json_column(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Parse a stored task status.
pub(crate) fn parse_task_status(status: &str) -> Result<TaskStatus> {
    TaskStatus::parse(status)
        .ok_or_else(|| StoreError::Other(format!("unknown task status '{status}'")))
}
