//! API keys and the audit log, for both backends.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::{Result, StoreError, now_ms};
use crate::access::{ApiKeyRole, ApiKeyRow, AuditEntry, AuditRow};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

/// An `api_keys` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredKey {
    id: String,
    tenant: String,
    name: String,
    role: String,
    hash: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl StoredKey {
    /// The row and its hash. A role this build does not know reads as
    /// `tenant`, the lesser one.
    fn split(self) -> (ApiKeyRow, String) {
        (
            ApiKeyRow {
                id: self.id,
                tenant: self.tenant,
                name: self.name,
                role: ApiKeyRole::parse(&self.role).unwrap_or(ApiKeyRole::Tenant),
                created_at: self.created_at,
                expires_at: self.expires_at,
                revoked_at: self.revoked_at,
            },
            self.hash,
        )
    }
}

/// An `audit_log` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredAudit {
    id: i64,
    at: i64,
    key_id: Option<String>,
    key_name: Option<String>,
    tenant: String,
    action: String,
    subject: String,
    detail: String,
}

impl From<StoredAudit> for AuditRow {
    fn from(r: StoredAudit) -> Self {
        AuditRow {
            id: r.id,
            at: r.at,
            key_id: r.key_id,
            key_name: r.key_name,
            tenant: r.tenant,
            action: r.action,
            subject: r.subject,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        }
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
    /// [`Store::create_api_key`](super::Store::create_api_key).
    pub(crate) async fn create_api_key(&self, row: &ApiKeyRow, hash: &str) -> Result<()> {
        let mut tx = self.0.begin_write().await?;
        self.lock_tenant(&mut tx, &row.tenant).await?;
        let taken: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM api_keys WHERE tenant = $1 AND name = $2 AND revoked_at IS NULL",
        )
        .bind(&row.tenant)
        .bind(&row.name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id,)) = taken {
            tx.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "tenant '{}' already has a live key named '{}' (id {id}): revoke it first or pick another name",
                row.tenant, row.name
            )));
        }
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, name, role, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.tenant)
        .bind(&row.name)
        .bind(row.role.as_str())
        .bind(hash)
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::api_key`](super::Store::api_key).
    pub(crate) async fn api_key(&self, id: &str) -> Result<(ApiKeyRow, String)> {
        let row: Option<StoredKey> = sqlx::query_as(
            "SELECT id, tenant, name, role, hash, created_at, expires_at, revoked_at FROM api_keys WHERE id = $1",
        )
            .bind(id)
            .fetch_optional(self.0.pool())
            .await?;
        row.map(StoredKey::split)
            .ok_or_else(|| StoreError::NotFound(format!("API key {id} not found")))
    }

    /// [`Store::list_api_keys`](super::Store::list_api_keys).
    pub(crate) async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRow>> {
        let rows: Vec<StoredKey> = sqlx::query_as(
            "SELECT id, tenant, name, role, hash, created_at, expires_at, revoked_at FROM api_keys WHERE ($1 IS NULL OR tenant = $1) ORDER BY tenant, created_at, id",
        )
        .bind(tenant)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.into_iter().map(|r| r.split().0).collect())
    }

    /// [`Store::revoke_api_key`](super::Store::revoke_api_key). Revoking
    /// a revoked key answers it unchanged.
    pub(crate) async fn revoke_api_key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKeyRow> {
        let (row, _) = self.api_key(id).await?;
        if tenant.is_some_and(|t| t != row.tenant) {
            return Err(StoreError::NotFound(format!("API key {id} not found")));
        }
        if row.revoked_at.is_some() {
            return Ok(row);
        }
        let mut tx = self.0.begin_write().await?;
        sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(self.api_key(id).await?.0)
    }

    /// [`Store::record_audit`](super::Store::record_audit).
    pub(crate) async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.0.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_log (at, key_id, key_name, tenant, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now_ms())
        .bind(entry.key_id.as_deref())
        .bind(entry.key_name.as_deref())
        .bind(&entry.tenant)
        .bind(entry.action.as_str())
        .bind(&entry.subject)
        .bind(entry.detail.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Store::audit_log`](super::Store::audit_log).
    pub(crate) async fn audit_log(
        &self,
        tenant: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let rows: Vec<StoredAudit> = sqlx::query_as(
            "SELECT id, at, key_id, key_name, tenant, action, subject, detail FROM audit_log WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(before)
        .bind(limit)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.into_iter().map(AuditRow::from).collect())
    }

    /// [`Store::shared_secret`](super::Store::shared_secret).
    pub(crate) async fn shared_secret(&self, name: &str) -> Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| StoreError::Other(format!("the random generator failed: {e}")))?;
        let mut tx = self.0.begin_write().await?;
        // The first host to ask creates it; every other one reads that.
        sqlx::query(
            "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&fresh[..])
        .bind(super::now_ms())
        .execute(&mut *tx)
        .await?;
        let (secret,): (Vec<u8>,) =
            sqlx::query_as("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(secret)
    }
}
