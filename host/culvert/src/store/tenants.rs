//! Tenants and their capability grants, for both backends; and
//! [`lock_tenant`](Sql::lock_tenant), which makes a quota's count and the
//! insert it guards one step.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::{PackageEvent, Result, StoreError, now_ms};
use crate::tenants::{Grant, GrantKind, OnUntrust, TenantLimits, TenantRow};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Transaction, Type};
use uuid::Uuid;

/// A `tenants` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredTenant {
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
struct StoredGrant {
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
    fn into_grant(self) -> Option<Grant> {
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
    /// Read `tenant`'s row inside `tx`, locking it on PostgreSQL (SQLite's
    /// write transaction excludes every other writer already), so that a
    /// count and an insert that follow are one step for concurrent
    /// requests; its limits as read then. "Not found" (and the transaction
    /// is dropped) for an unknown tenant.
    pub(crate) async fn lock_tenant(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: &str,
    ) -> Result<TenantLimits> {
        let row: Option<(String,)> = sqlx::query_as(S::TENANT_LIMITS_SQL)
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            // Limits that do not parse read as the defaults, as everywhere.
            Some((limits,)) => Ok(serde_json::from_str(&limits).unwrap_or_default()),
            None => Err(StoreError::NotFound(format!(
                "tenant '{tenant}' does not exist (create it with `culvert tenant create {tenant}`)"
            ))),
        }
    }

    /// [`Store::create_tenant`](super::Store::create_tenant).
    pub(crate) async fn create_tenant(
        &self,
        name: &str,
        limits: &TenantLimits,
    ) -> Result<TenantRow> {
        let text = serde_json::to_string(limits).map_err(|e| StoreError::Other(e.to_string()))?;
        let now = now_ms();
        let mut tx = self.0.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO tenants (name, limits, created_at, disable_untrusted) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&text)
        .bind(now)
        .bind(limits.on_untrust == OnUntrust::Disable)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "tenant '{name}' already exists"
            )));
        }
        tx.commit().await?;
        Ok(TenantRow {
            name: name.to_string(),
            limits: limits.clone(),
            created_at: now,
        })
    }

    /// [`Store::get_tenant`](super::Store::get_tenant).
    pub(crate) async fn get_tenant(&self, name: &str) -> Result<TenantRow> {
        let row: Option<StoredTenant> =
            sqlx::query_as("SELECT name, limits, created_at FROM tenants WHERE name = $1")
                .bind(name)
                .fetch_optional(self.0.pool())
                .await?;
        let row =
            row.ok_or_else(|| StoreError::NotFound(format!("tenant '{name}' does not exist")))?;
        Ok(row.into())
    }

    /// [`Store::list_tenants`](super::Store::list_tenants).
    pub(crate) async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
        let rows: Vec<StoredTenant> =
            sqlx::query_as("SELECT name, limits, created_at FROM tenants ORDER BY name")
                .fetch_all(self.0.pool())
                .await?;
        Ok(rows.into_iter().map(TenantRow::from).collect())
    }

    /// [`Store::update_tenant`](super::Store::update_tenant).
    pub(crate) async fn update_tenant(
        &self,
        name: &str,
        limits: &TenantLimits,
    ) -> Result<TenantRow> {
        let text = serde_json::to_string(limits).map_err(|e| StoreError::Other(e.to_string()))?;
        let mut tx = self.0.begin_write().await?;
        // disable_untrusted mirrors on_untrust for the reconciler's query.
        let done =
            sqlx::query("UPDATE tenants SET limits = $2, disable_untrusted = $3 WHERE name = $1")
                .bind(name)
                .bind(&text)
                .bind(limits.on_untrust == OnUntrust::Disable)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "tenant '{name}' does not exist"
            )));
        }
        // on_untrust may have changed which packages load.
        self.0.notify_packages(&mut tx).await?;
        tx.commit().await?;
        let _ = self.0.events().send(PackageEvent::Changed);
        self.get_tenant(name).await
    }

    /// [`Store::delete_tenant`](super::Store::delete_tenant).
    pub(crate) async fn delete_tenant(&self, name: &str) -> Result<()> {
        let mut tx = self.0.begin_write().await?;
        for sql in [
            "DELETE FROM execution_events WHERE execution_id IN (SELECT id FROM executions WHERE tenant = $1)",
            "DELETE FROM task_logs WHERE tenant = $1",
            "DELETE FROM task_executions WHERE tenant = $1",
            "DELETE FROM executions WHERE tenant = $1",
            "DELETE FROM packages WHERE tenant = $1",
            "DELETE FROM grants WHERE tenant = $1",
            "DELETE FROM api_keys WHERE tenant = $1",
            "DELETE FROM trusted_keys WHERE tenant = $1",
            "DELETE FROM schedule_fires WHERE tenant = $1",
            "DELETE FROM schedules WHERE tenant = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM tenants WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "tenant '{name}' does not exist"
            )));
        }
        self.0.notify_packages(&mut tx).await?;
        tx.commit().await?;
        let _ = self.0.events().send(PackageEvent::Changed);
        Ok(())
    }

    /// [`Store::add_grant`](super::Store::add_grant).
    pub(crate) async fn add_grant(&self, g: &Grant) -> Result<()> {
        let mut tx = self.0.begin_write().await?;
        sqlx::query(
            "INSERT INTO grants (tenant, package, kind, name, value, writable, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, package, kind, name) DO UPDATE SET value = excluded.value, writable = excluded.writable",
        )
        .bind(&g.tenant)
        .bind(&g.package)
        .bind(g.kind.as_str())
        .bind(&g.name)
        .bind(&g.value)
        .bind(g.writable)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::remove_grant`](super::Store::remove_grant).
    pub(crate) async fn remove_grant(
        &self,
        tenant: &str,
        package: &str,
        kind: GrantKind,
        name: &str,
    ) -> Result<()> {
        let mut tx = self.0.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM grants WHERE tenant = $1 AND package = $2 AND kind = $3 AND name = $4",
        )
        .bind(tenant)
        .bind(package)
        .bind(kind.as_str())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "no such grant for tenant '{tenant}'"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::list_grants`](super::Store::list_grants). A grant of a kind
    /// this build does not know is left out.
    pub(crate) async fn list_grants(&self, tenant: &str) -> Result<Vec<Grant>> {
        let rows: Vec<StoredGrant> = sqlx::query_as(
            "SELECT tenant, package, kind, name, value, writable FROM grants WHERE tenant = $1 ORDER BY package, kind, name",
        )
        .bind(tenant)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(StoredGrant::into_grant)
            .collect())
    }
}
