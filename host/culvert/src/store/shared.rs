//! The part of the [`Store`] implementation that both backends share:
//! packages, blobs, hosts, tenants and grants, written once as Rust generic
//! over the backend ([`SqlBackend`], `backend.rs`).

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::rows::{StoredGrant, StoredHost, StoredPackage, StoredTenant};
use super::{
    Backend, GC_BLOBS, HostRecord, NewPackage, PackageEvent, PackageRow, Registration, Result,
    Store, StoreError, conflict_message, now_ms, redact_url,
};
use crate::tenants::{Grant, GrantKind, TenantLimits, TenantRow};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Transaction, Type};
use tokio::sync::broadcast;
use uuid::Uuid;

#[async_trait]
impl<S, DB> Store for S
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
    fn backend(&self) -> Backend {
        S::BACKEND
    }

    fn display_url(&self) -> String {
        redact_url(self.url())
    }

    async fn register_package(&self, p: NewPackage<'_>) -> Result<Registration> {
        let name = &p.metadata.name;
        let version = &p.metadata.version;
        let metadata =
            serde_json::to_string(p.metadata).map_err(|e| StoreError::Other(e.to_string()))?;
        // Two attempts: a concurrent registration of the same name and
        // version can win the race between our check and insert.
        for _ in 0..2 {
            let mut tx = self.begin_write().await?;
            // The count below and the insert are one step.
            Sql(self).lock_tenant(&mut tx, p.tenant).await?;
            let existing: Option<(Uuid, String)> = sqlx::query_as(
                "SELECT id, content_hash FROM packages WHERE tenant = $1 AND name = $2 AND version = $3",
            )
            .bind(p.tenant)
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id, hash)) = existing {
                tx.rollback().await?;
                return if hash == p.content_hash {
                    Ok(Registration { id, created: false })
                } else {
                    Err(StoreError::Conflict(conflict_message(
                        p.tenant,
                        name,
                        version,
                        &hash,
                        p.content_hash,
                    )))
                };
            }
            let (count,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM packages WHERE tenant = $1")
                    .bind(p.tenant)
                    .fetch_one(&mut *tx)
                    .await?;
            if count >= p.max_packages as i64 {
                tx.rollback().await?;
                return Err(StoreError::Quota(format!(
                    "tenant '{}' has {count} packages, its max_packages quota",
                    p.tenant
                )));
            }
            let now = now_ms();
            sqlx::query(
                "INSERT INTO blobs (content_hash, size, bytes, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (content_hash) DO NOTHING",
            )
            .bind(p.content_hash)
            .bind(p.bytes.len() as i64)
            .bind(p.bytes)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let id = Uuid::now_v7();
            let inserted = sqlx::query(
                "INSERT INTO packages (id, tenant, name, version, content_hash, size, metadata, registered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(p.tenant)
            .bind(name)
            .bind(version)
            .bind(p.content_hash)
            .bind(p.bytes.len() as i64)
            .bind(&metadata)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    let _ = tx.rollback().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            self.notify_packages(&mut tx).await?;
            tx.commit().await?;
            let _ = self.events().send(PackageEvent::Changed);
            return Ok(Registration { id, created: true });
        }
        Err(StoreError::Conflict(format!(
            "package '{name}@{version}' (tenant {}) is being registered concurrently; try again",
            p.tenant
        )))
    }

    async fn list_packages(&self, tenant: Option<&str>) -> Result<Vec<PackageRow>> {
        let rows: Vec<StoredPackage> = match tenant {
            Some(t) => {
                sqlx::query_as(
                    "SELECT id, tenant, name, version, content_hash, size, registered_at, metadata FROM packages WHERE tenant = $1 ORDER BY registered_at, id",
                )
                .bind(t)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query_as(
                    "SELECT id, tenant, name, version, content_hash, size, registered_at, metadata FROM packages ORDER BY registered_at, id",
                )
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.into_iter().map(PackageRow::try_from).collect()
    }

    async fn package_fingerprints(&self) -> Result<Vec<(Uuid, String)>> {
        Ok(sqlx::query_as("SELECT id, content_hash FROM packages")
            .fetch_all(self.pool())
            .await?)
    }

    async fn get_package(&self, id: Uuid) -> Result<PackageRow> {
        let row: StoredPackage = sqlx::query_as(
            "SELECT id, tenant, name, version, content_hash, size, registered_at, metadata FROM packages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("package {id} not found")))?;
        row.try_into()
    }

    async fn blob(&self, content_hash: &str) -> Result<Vec<u8>> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT bytes FROM blobs WHERE content_hash = $1")
                .bind(content_hash)
                .fetch_optional(self.pool())
                .await?;
        row.map(|(b,)| b).ok_or_else(|| {
            StoreError::NotFound(format!("no component with content hash {content_hash}"))
        })
    }

    async fn remove_packages(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<PackageRow>> {
        let mut tx = self.begin_write().await?;
        let rows: Vec<StoredPackage> = sqlx::query_as(
            "DELETE FROM packages WHERE tenant = $1 AND name = $2 AND ($3 IS NULL OR version = $3) RETURNING id, tenant, name, version, content_hash, size, registered_at, metadata",
        )
        .bind(tenant)
        .bind(name)
        .bind(version)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            let what = match version {
                Some(v) => format!("{name}@{v}"),
                None => name.to_string(),
            };
            return Err(StoreError::NotFound(format!(
                "package '{what}' not found in tenant {tenant}"
            )));
        }
        let removed = rows
            .into_iter()
            .map(PackageRow::try_from)
            .collect::<Result<Vec<_>>>()?;
        self.notify_packages(&mut tx).await?;
        tx.commit().await?;
        let _ = self.events().send(PackageEvent::Changed);
        Ok(removed)
    }

    async fn collect_garbage(&self) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(GC_BLOBS).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    fn package_events(&self) -> broadcast::Receiver<PackageEvent> {
        self.events().subscribe()
    }

    async fn upsert_host(&self, host: &HostRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO hosts (id, hostname, pid, started_at, heartbeat_at, status) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, status = excluded.status",
        )
        .bind(host.id)
        .bind(&host.hostname)
        .bind(host.pid)
        .bind(host.started_at)
        .bind(host.heartbeat_at)
        .bind(host.status.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn live_hosts(&self, since_ms: i64) -> Result<Vec<HostRecord>> {
        let rows: Vec<StoredHost> = sqlx::query_as(
            "SELECT id, hostname, pid, started_at, heartbeat_at, status FROM hosts WHERE heartbeat_at >= $1 ORDER BY started_at",
        )
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(HostRecord::from).collect())
    }

    async fn remove_host(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM hosts WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str, limits: &TenantLimits) -> Result<TenantRow> {
        Sql(self).create_tenant(name, limits).await
    }

    async fn get_tenant(&self, name: &str) -> Result<TenantRow> {
        Sql(self).get_tenant(name).await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
        Sql(self).list_tenants().await
    }

    async fn update_tenant(&self, name: &str, limits: &TenantLimits) -> Result<TenantRow> {
        Sql(self).update_tenant(name, limits).await
    }

    async fn delete_tenant(&self, name: &str) -> Result<()> {
        Sql(self).delete_tenant(name).await
    }

    async fn add_grant(&self, grant: &Grant) -> Result<()> {
        Sql(self).add_grant(grant).await
    }

    async fn remove_grant(
        &self,
        tenant: &str,
        package: &str,
        kind: GrantKind,
        name: &str,
    ) -> Result<()> {
        Sql(self).remove_grant(tenant, package, kind, name).await
    }

    async fn list_grants(&self, tenant: &str) -> Result<Vec<Grant>> {
        Sql(self).list_grants(tenant).await
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
    /// requests. "Not found" (and the transaction is dropped) for an
    /// unknown tenant.
    pub(crate) async fn lock_tenant(
        &self,
        tx: &mut Transaction<'static, DB>,
        tenant: &str,
    ) -> Result<()> {
        let row: Option<(String,)> = sqlx::query_as(S::TENANT_LIMITS_SQL)
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(_) => Ok(()),
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
            "INSERT INTO tenants (name, limits, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&text)
        .bind(now)
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
        let done = sqlx::query("UPDATE tenants SET limits = $2 WHERE name = $1")
            .bind(name)
            .bind(&text)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "tenant '{name}' does not exist"
            )));
        }
        tx.commit().await?;
        self.get_tenant(name).await
    }

    /// [`Store::delete_tenant`](super::Store::delete_tenant).
    pub(crate) async fn delete_tenant(&self, name: &str) -> Result<()> {
        let mut tx = self.0.begin_write().await?;
        for sql in [
            "DELETE FROM execution_events WHERE execution_id IN (SELECT id FROM executions WHERE tenant = $1)",
            "DELETE FROM task_executions WHERE tenant = $1",
            "DELETE FROM executions WHERE tenant = $1",
            "DELETE FROM packages WHERE tenant = $1",
            "DELETE FROM grants WHERE tenant = $1",
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
