//! Packages, the blobs of their bytes, and hosts: the [`Store`] trait,
//! implemented once for both backends (tenants and grants are in
//! `tenants.rs`).
//!
//! A registration and a removal announce the change in their transaction
//! (`notify_packages`, PostgreSQL's `pg_notify`) and, after the commit, to
//! this process's own subscribers.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::{
    Backend, HostRecord, NewPackage, PackageEvent, PackageRow, PackageSignature, Registration,
    Result, Store, StoreError, now_ms, redact_url,
};
use crate::access::{ApiKeyRow, AuditEntry, AuditRow};
use crate::package::PackageMetadata;
use crate::signing::TrustedKey;
use crate::tenants::{Grant, GrantKind, TenantLimits, TenantRow};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Blobs no package and no unfinished execution uses.
pub(super) const GC_BLOBS: &str = "DELETE FROM blobs WHERE content_hash NOT IN (SELECT content_hash FROM packages) AND content_hash NOT IN (SELECT content_hash FROM executions WHERE status IN ('pending', 'running'))";

/// A `packages` row without its bytes, as stored.
#[derive(sqlx::FromRow)]
struct StoredPackage {
    id: Uuid,
    tenant: String,
    name: String,
    version: String,
    content_hash: String,
    size: i64,
    registered_at: i64,
    /// [`PackageMetadata`], JSON.
    metadata: String,
    signature_key_id: Option<String>,
    signed_at: Option<i64>,
    signature: Option<String>,
    /// When the signing key was untrusted (joined from `trusted_keys`;
    /// absent where a statement cannot join).
    #[sqlx(default)]
    key_untrusted_at: Option<i64>,
    /// The tenant's on_untrust is `disable` (joined from `tenants`).
    #[sqlx(default)]
    disable_untrusted: Option<bool>,
}

/// `SELECT` a [`StoredPackage`] with its key's state and its tenant's
/// policy, then `$tail` (a `WHERE` and `ORDER BY` on `p`).
macro_rules! select_packages {
    ($tail:literal) => {
        concat!(
            "SELECT p.id, p.tenant, p.name, p.version, p.content_hash, p.size, p.registered_at, p.metadata, p.signature_key_id, p.signed_at, p.signature, k.untrusted_at AS key_untrusted_at, t.disable_untrusted FROM packages p JOIN tenants t ON t.name = p.tenant LEFT JOIN trusted_keys k ON k.tenant = p.tenant AND k.key_id = p.signature_key_id ",
            $tail
        )
    };
}

impl TryFrom<StoredPackage> for PackageRow {
    type Error = StoreError;

    fn try_from(row: StoredPackage) -> Result<Self> {
        let metadata: PackageMetadata = serde_json::from_str(&row.metadata)
            .map_err(|e| StoreError::Other(format!("stored metadata: {e}")))?;
        let signature = match (row.signature_key_id, row.signed_at, row.signature) {
            (Some(key_id), Some(signed_at), Some(signature)) => {
                let key_untrusted_at = row.key_untrusted_at;
                Some(PackageSignature {
                    key_id,
                    signed_at,
                    signature,
                    key_untrusted_at,
                    disabled: key_untrusted_at.is_some() && row.disable_untrusted == Some(true),
                })
            }
            _ => None,
        };
        Ok(PackageRow {
            signature,
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
struct StoredHost {
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

/// The message for a conflicting registration.
fn conflict_message(tenant: &str, name: &str, version: &str, existing: &str, new: &str) -> String {
    format!(
        "package '{name}@{version}' (tenant {tenant}) is already registered with content hash {existing}; these bytes hash to {new}. Register them under a new version."
    )
}

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
            // The count below and the insert are one step; so are the
            // signing policy and key, checked again here, and the insert
            // (a key untrusted, or signatures required, since the caller
            // checked: trusting and untrusting lock the row too).
            let limits = Sql(self).lock_tenant(&mut tx, p.tenant).await?;
            let key_live = match p.signature {
                Some(sig) => {
                    let row: Option<(Option<i64>,)> = sqlx::query_as(
                        "SELECT untrusted_at FROM trusted_keys WHERE tenant = $1 AND key_id = $2",
                    )
                    .bind(p.tenant)
                    .bind(&sig.key_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    matches!(row, Some((None,)))
                }
                None => !limits.require_signature,
            };
            if !key_live {
                tx.rollback().await?;
                return Err(StoreError::Conflict(format!(
                    "tenant '{}' changed its signing policy or keys while package '{name}@{version}' was being added: add it again",
                    p.tenant
                )));
            }
            let existing: Option<(Uuid, String)> = sqlx::query_as(
                "SELECT id, content_hash FROM packages WHERE tenant = $1 AND name = $2 AND version = $3",
            )
            .bind(p.tenant)
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id, hash)) = existing {
                if hash == p.content_hash
                    && let Some(sig) = p.signature
                {
                    // The same bytes, signed now (or again): the new,
                    // verified signature replaces what was stored.
                    sqlx::query(
                        "UPDATE packages SET signature_key_id = $2, signed_at = $3, signature = $4 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&sig.key_id)
                    .bind(sig.signed_at)
                    .bind(&sig.signature)
                    .execute(&mut *tx)
                    .await?;
                    self.notify_packages(&mut tx).await?;
                    tx.commit().await?;
                    let _ = self.events().send(PackageEvent::Changed);
                    return Ok(Registration { id, created: false });
                }
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
                "INSERT INTO packages (id, tenant, name, version, content_hash, size, metadata, registered_at, signature_key_id, signed_at, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(id)
            .bind(p.tenant)
            .bind(name)
            .bind(version)
            .bind(p.content_hash)
            .bind(p.bytes.len() as i64)
            .bind(&metadata)
            .bind(now)
            .bind(p.signature.map(|s| s.key_id.as_str()))
            .bind(p.signature.map(|s| s.signed_at))
            .bind(p.signature.map(|s| s.signature.as_str()))
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
                sqlx::query_as(select_packages!(
                    "WHERE p.tenant = $1 ORDER BY p.registered_at, p.id"
                ))
                .bind(t)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query_as(select_packages!("ORDER BY p.registered_at, p.id"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.into_iter().map(PackageRow::try_from).collect()
    }

    async fn package_fingerprints(&self) -> Result<Vec<(Uuid, String)>> {
        // Less the packages of untrusted keys whose tenant disables them.
        Ok(sqlx::query_as(
            "SELECT p.id, p.content_hash FROM packages p WHERE NOT EXISTS (SELECT 1 FROM trusted_keys k JOIN tenants t ON t.name = k.tenant WHERE k.tenant = p.tenant AND k.key_id = p.signature_key_id AND k.untrusted_at IS NOT NULL AND t.disable_untrusted)",
        )
        .fetch_all(self.pool())
        .await?)
    }

    async fn get_package(&self, id: Uuid) -> Result<PackageRow> {
        let row: StoredPackage = sqlx::query_as(select_packages!("WHERE p.id = $1"))
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
            "DELETE FROM packages WHERE tenant = $1 AND name = $2 AND ($3 IS NULL OR version = $3) RETURNING id, tenant, name, version, content_hash, size, registered_at, metadata, signature_key_id, signed_at, signature",
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

    async fn create_api_key(&self, row: &ApiKeyRow, hash: &str) -> Result<()> {
        Sql(self).create_api_key(row, hash).await
    }

    async fn api_key(&self, id: &str) -> Result<(ApiKeyRow, String)> {
        Sql(self).api_key(id).await
    }

    async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRow>> {
        Sql(self).list_api_keys(tenant).await
    }

    async fn revoke_api_key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKeyRow> {
        Sql(self).revoke_api_key(tenant, id).await
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        Sql(self).record_audit(entry).await
    }

    async fn audit_log(
        &self,
        tenant: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        Sql(self).audit_log(tenant, before, limit).await
    }

    async fn shared_secret(&self, name: &str) -> Result<Vec<u8>> {
        Sql(self).shared_secret(name).await
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

    async fn trust_key(&self, key: &TrustedKey) -> Result<TrustedKey> {
        Sql(self).trust_key(key).await
    }

    async fn untrust_key(&self, tenant: &str, key: &str, by: &str) -> Result<TrustedKey> {
        Sql(self).untrust_key(tenant, key, by).await
    }

    async fn trusted_key(&self, tenant: &str, key_id: &str) -> Result<Option<TrustedKey>> {
        Sql(self).trusted_key(tenant, key_id).await
    }

    async fn trusted_keys(&self, tenant: Option<&str>) -> Result<Vec<TrustedKey>> {
        Sql(self).trusted_keys(tenant).await
    }
}
