//! The signing keys each tenant trusts, for both backends. An untrusted
//! key keeps its row (with `untrusted_at`), so that the packages it signed
//! can be marked, and disabled where the tenant's `on_untrust` says so.
//! Trusting and untrusting announce a package change: the reconcilers of
//! every host look again at once.

use super::backend::{RowsAffected, Sql, SqlBackend};
use super::{PackageEvent, Result, StoreError, now_ms};
use crate::signing::TrustedKey;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

/// The most keys one tenant holds, untrusted ones included (their rows
/// stay, so that their packages can be marked).
pub const MAX_KEYS_PER_TENANT: i64 = 256;

/// A `trusted_keys` row, as stored.
#[derive(sqlx::FromRow)]
struct StoredTrustedKey {
    tenant: String,
    key_id: String,
    name: String,
    public_key: String,
    trusted_at: i64,
    trusted_by: String,
    untrusted_at: Option<i64>,
    untrusted_by: Option<String>,
}

impl From<StoredTrustedKey> for TrustedKey {
    fn from(r: StoredTrustedKey) -> Self {
        TrustedKey {
            tenant: r.tenant,
            key_id: r.key_id,
            name: r.name,
            public_key: r.public_key,
            trusted_at: r.trusted_at,
            trusted_by: r.trusted_by,
            untrusted_at: r.untrusted_at,
            untrusted_by: r.untrusted_by,
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
    /// [`Store::trust_key`](super::Store::trust_key).
    pub(crate) async fn trust_key(&self, key: &TrustedKey) -> Result<TrustedKey> {
        let mut tx = self.0.begin_write().await?;
        // The count and the insert are one step.
        self.lock_tenant(&mut tx, &key.tenant).await?;
        let (held,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM trusted_keys WHERE tenant = $1 AND key_id <> $2")
                .bind(&key.tenant)
                .bind(&key.key_id)
                .fetch_one(&mut *tx)
                .await?;
        if held >= MAX_KEYS_PER_TENANT {
            tx.rollback().await?;
            return Err(StoreError::Quota(format!(
                "tenant '{}' holds {held} signing keys (untrusted ones included), the most it may",
                key.tenant
            )));
        }
        let row: StoredTrustedKey = match sqlx::query_as(
            "INSERT INTO trusted_keys (tenant, key_id, name, public_key, trusted_at, trusted_by) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, key_id) DO UPDATE SET name = excluded.name, trusted_at = excluded.trusted_at, trusted_by = excluded.trusted_by, untrusted_at = NULL, untrusted_by = NULL RETURNING tenant, key_id, name, public_key, trusted_at, trusted_by, untrusted_at, untrusted_by",
        )
        .bind(&key.tenant)
        .bind(&key.key_id)
        .bind(&key.name)
        .bind(&key.public_key)
        .bind(key.trusted_at)
        .bind(&key.trusted_by)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(row) => row,
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                let _ = tx.rollback().await;
                return Err(StoreError::Conflict(format!(
                    "tenant '{}' trusts another key named '{}' already: choose another --name, or untrust that one first",
                    key.tenant, key.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.0.notify_packages(&mut tx).await?;
        tx.commit().await?;
        let _ = self.0.events().send(PackageEvent::Changed);
        Ok(row.into())
    }

    /// [`Store::untrust_key`](super::Store::untrust_key).
    pub(crate) async fn untrust_key(
        &self,
        tenant: &str,
        key: &str,
        by: &str,
    ) -> Result<TrustedKey> {
        let mut tx = self.0.begin_write().await?;
        // Ordered with registrations, which check the key under this lock.
        self.lock_tenant(&mut tx, tenant).await?;
        let row: Option<StoredTrustedKey> = sqlx::query_as(
            "UPDATE trusted_keys SET untrusted_at = $3, untrusted_by = $4 WHERE tenant = $1 AND (key_id = $2 OR name = $2) AND untrusted_at IS NULL RETURNING tenant, key_id, name, public_key, trusted_at, trusted_by, untrusted_at, untrusted_by",
        )
        .bind(tenant)
        .bind(key)
        .bind(now_ms())
        .bind(by)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "tenant '{tenant}' trusts no key with the id or name '{key}' (see `culvert key list --tenant {tenant}`)"
            )));
        };
        self.0.notify_packages(&mut tx).await?;
        tx.commit().await?;
        let _ = self.0.events().send(PackageEvent::Changed);
        Ok(row.into())
    }

    /// [`Store::trusted_key`](super::Store::trusted_key).
    pub(crate) async fn trusted_key(
        &self,
        tenant: &str,
        key_id: &str,
    ) -> Result<Option<TrustedKey>> {
        let row: Option<StoredTrustedKey> = sqlx::query_as(
            "SELECT tenant, key_id, name, public_key, trusted_at, trusted_by, untrusted_at, untrusted_by FROM trusted_keys WHERE tenant = $1 AND key_id = $2",
        )
        .bind(tenant)
        .bind(key_id)
        .fetch_optional(self.0.pool())
        .await?;
        Ok(row.map(TrustedKey::from))
    }

    /// [`Store::trusted_keys`](super::Store::trusted_keys).
    pub(crate) async fn trusted_keys(&self, tenant: Option<&str>) -> Result<Vec<TrustedKey>> {
        let rows: Vec<StoredTrustedKey> = sqlx::query_as(
            "SELECT tenant, key_id, name, public_key, trusted_at, trusted_by, untrusted_at, untrusted_by FROM trusted_keys WHERE ($1 IS NULL OR tenant = $1) ORDER BY tenant, trusted_at, key_id",
        )
        .bind(tenant)
        .fetch_all(self.0.pool())
        .await?;
        Ok(rows.into_iter().map(TrustedKey::from).collect())
    }
}
