//! The part of the [`Store`](super::Store) implementation that both
//! backends share, written once as a macro over the backend's types.
//!
//! SQLite accepts PostgreSQL's `$1` placeholders, and both accept
//! `RETURNING` and `ON CONFLICT`, so the SQL text is the same. A backend
//! provides three inherent methods the macro calls:
//! - `pool(&self)`: its pool;
//! - `begin_write(&self)`: a transaction that may write (SQLite takes the
//!   write lock up front with `BEGIN IMMEDIATE`);
//! - `notify_packages(&self, tx)`: tell other processes that packages
//!   changed (PostgreSQL `pg_notify`, a no-op on SQLite).
//!
//! Rows are read into the records of `rows.rs`.

macro_rules! shared_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> $crate::store::Backend {
                Self::BACKEND
            }

            fn display_url(&self) -> String {
                $crate::store::redact_url(&self.url)
            }

            async fn register_package(
                &self,
                p: $crate::store::NewPackage<'_>,
            ) -> $crate::store::Result<$crate::store::Registration> {
                use $crate::store::{Registration, StoreError, conflict_message, now_ms};
                let name = &p.metadata.name;
                let version = &p.metadata.version;
                let metadata = serde_json::to_string(p.metadata)
                    .map_err(|e| StoreError::Other(e.to_string()))?;
                // Two attempts: a concurrent registration of the same name
                // and version can win the race between our check and insert.
                for _ in 0..2 {
                    let mut tx = self.begin_write().await?;
                    // The count below and the insert are one step.
                    Self::lock_tenant(&mut tx, p.tenant).await?;
                    let existing: Option<(uuid::Uuid, String)> = sqlx::query_as(
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
                    let id = uuid::Uuid::now_v7();
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
                    let _ = self.events.send($crate::store::PackageEvent::Changed);
                    return Ok(Registration { id, created: true });
                }
                Err(StoreError::Conflict(format!(
                    "package '{name}@{version}' (tenant {}) is being registered concurrently; try again",
                    p.tenant
                )))
            }

            async fn list_packages(
                &self,
                tenant: Option<&str>,
            ) -> $crate::store::Result<Vec<$crate::store::PackageRow>> {
                let rows: Vec<$crate::store::rows::StoredPackage> = match tenant {
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
                rows.into_iter().map($crate::store::PackageRow::try_from).collect()
            }

            async fn package_fingerprints(
                &self,
            ) -> $crate::store::Result<Vec<(uuid::Uuid, String)>> {
                Ok(sqlx::query_as("SELECT id, content_hash FROM packages")
                    .fetch_all(self.pool())
                    .await?)
            }

            async fn get_package(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::Result<$crate::store::PackageRow> {
                let row: $crate::store::rows::StoredPackage = sqlx::query_as(
                    "SELECT id, tenant, name, version, content_hash, size, registered_at, metadata FROM packages WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .ok_or_else(|| {
                    $crate::store::StoreError::NotFound(format!("package {id} not found"))
                })?;
                row.try_into()
            }

            async fn blob(&self, content_hash: &str) -> $crate::store::Result<Vec<u8>> {
                let row: Option<(Vec<u8>,)> =
                    sqlx::query_as("SELECT bytes FROM blobs WHERE content_hash = $1")
                        .bind(content_hash)
                        .fetch_optional(self.pool())
                        .await?;
                row.map(|(b,)| b).ok_or_else(|| {
                    $crate::store::StoreError::NotFound(format!(
                        "no component with content hash {content_hash}"
                    ))
                })
            }

            async fn remove_packages(
                &self,
                tenant: &str,
                name: &str,
                version: Option<&str>,
            ) -> $crate::store::Result<Vec<$crate::store::PackageRow>> {
                let mut tx = self.begin_write().await?;
                let rows: Vec<$crate::store::rows::StoredPackage> = sqlx::query_as(
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
                    return Err($crate::store::StoreError::NotFound(format!(
                        "package '{what}' not found in tenant {tenant}"
                    )));
                }
                let removed = rows
                    .into_iter()
                    .map($crate::store::PackageRow::try_from)
                    .collect::<$crate::store::Result<Vec<_>>>()?;
                self.notify_packages(&mut tx).await?;
                tx.commit().await?;
                let _ = self.events.send($crate::store::PackageEvent::Changed);
                Ok(removed)
            }

            async fn collect_garbage(&self) -> $crate::store::Result<u64> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::GC_BLOBS).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            fn package_events(
                &self,
            ) -> tokio::sync::broadcast::Receiver<$crate::store::PackageEvent> {
                self.events.subscribe()
            }

            async fn upsert_host(
                &self,
                host: &$crate::store::HostRecord,
            ) -> $crate::store::Result<()> {
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

            async fn live_hosts(
                &self,
                since_ms: i64,
            ) -> $crate::store::Result<Vec<$crate::store::HostRecord>> {
                let rows: Vec<$crate::store::rows::StoredHost> = sqlx::query_as(
                    "SELECT id, hostname, pid, started_at, heartbeat_at, status FROM hosts WHERE heartbeat_at >= $1 ORDER BY started_at",
                )
                .bind(since_ms)
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map($crate::store::HostRecord::from).collect())
            }

            async fn remove_host(&self, id: uuid::Uuid) -> $crate::store::Result<()> {
                sqlx::query("DELETE FROM hosts WHERE id = $1")
                    .bind(id)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn create_tenant(
                &self,
                name: &str,
                limits: &$crate::tenants::TenantLimits,
            ) -> $crate::store::Result<$crate::tenants::TenantRow> {
                let text = serde_json::to_string(limits)
                    .map_err(|e| $crate::store::StoreError::Other(e.to_string()))?;
                let now = $crate::store::now_ms();
                let mut tx = self.begin_write().await?;
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
                    return Err($crate::store::StoreError::Conflict(format!(
                        "tenant '{name}' already exists"
                    )));
                }
                tx.commit().await?;
                Ok($crate::tenants::TenantRow {
                    name: name.to_string(),
                    limits: limits.clone(),
                    created_at: now,
                })
            }

            async fn get_tenant(&self, name: &str) -> $crate::store::Result<$crate::tenants::TenantRow> {
                let row: Option<$crate::store::rows::StoredTenant> =
                    sqlx::query_as("SELECT name, limits, created_at FROM tenants WHERE name = $1")
                        .bind(name)
                        .fetch_optional(self.pool())
                        .await?;
                let row = row.ok_or_else(|| {
                    $crate::store::StoreError::NotFound(format!("tenant '{name}' does not exist"))
                })?;
                Ok(row.into())
            }

            async fn list_tenants(&self) -> $crate::store::Result<Vec<$crate::tenants::TenantRow>> {
                let rows: Vec<$crate::store::rows::StoredTenant> =
                    sqlx::query_as("SELECT name, limits, created_at FROM tenants ORDER BY name")
                        .fetch_all(self.pool())
                        .await?;
                Ok(rows.into_iter().map($crate::tenants::TenantRow::from).collect())
            }

            async fn update_tenant(
                &self,
                name: &str,
                limits: &$crate::tenants::TenantLimits,
            ) -> $crate::store::Result<$crate::tenants::TenantRow> {
                let text = serde_json::to_string(limits)
                    .map_err(|e| $crate::store::StoreError::Other(e.to_string()))?;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("UPDATE tenants SET limits = $2 WHERE name = $1")
                    .bind(name)
                    .bind(&text)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err($crate::store::StoreError::NotFound(format!(
                        "tenant '{name}' does not exist"
                    )));
                }
                tx.commit().await?;
                self.get_tenant(name).await
            }

            async fn delete_tenant(&self, name: &str) -> $crate::store::Result<()> {
                let mut tx = self.begin_write().await?;
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
                    return Err($crate::store::StoreError::NotFound(format!(
                        "tenant '{name}' does not exist"
                    )));
                }
                self.notify_packages(&mut tx).await?;
                tx.commit().await?;
                let _ = self.events.send($crate::store::PackageEvent::Changed);
                Ok(())
            }

            async fn add_grant(&self, g: &$crate::tenants::Grant) -> $crate::store::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO grants (tenant, package, kind, name, value, writable, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, package, kind, name) DO UPDATE SET value = excluded.value, writable = excluded.writable",
                )
                .bind(&g.tenant)
                .bind(&g.package)
                .bind(g.kind.as_str())
                .bind(&g.name)
                .bind(&g.value)
                .bind(g.writable)
                .bind($crate::store::now_ms())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn remove_grant(
                &self,
                tenant: &str,
                package: &str,
                kind: $crate::tenants::GrantKind,
                name: &str,
            ) -> $crate::store::Result<()> {
                let mut tx = self.begin_write().await?;
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
                    return Err($crate::store::StoreError::NotFound(format!(
                        "no such grant for tenant '{tenant}'"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_grants(&self, tenant: &str) -> $crate::store::Result<Vec<$crate::tenants::Grant>> {
                let rows: Vec<$crate::store::rows::StoredGrant> = sqlx::query_as(
                    "SELECT tenant, package, kind, name, value, writable FROM grants WHERE tenant = $1 ORDER BY package, kind, name",
                )
                .bind(tenant)
                .fetch_all(self.pool())
                .await?;
                Ok(rows
                    .into_iter()
                    .filter_map($crate::store::rows::StoredGrant::into_grant)
                    .collect())
            }
        }
    };
}
