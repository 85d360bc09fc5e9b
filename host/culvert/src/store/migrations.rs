//! The embedded migrations of both backends, numbered in lockstep.
//!
//! They are plain SQL files under `host/migrations/{sqlite,postgres}`,
//! embedded with `include_str!` and fed to sqlx's [`Migrator`] through a
//! small [`MigrationSource`] (sqlx's `migrate!` macro needs its `macros`
//! feature, the compile-time checked queries and their offline mode, on top
//! of the `derive` feature the store's row records use).

use futures::future::BoxFuture;
use sqlx::SqlSafeStr;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// `(version, description, sql)`.
type Entry = (i64, &'static str, &'static str);

/// SQLite migrations.
pub(crate) const SQLITE: &[Entry] = &[
    (
        1,
        "packages",
        include_str!("../../migrations/sqlite/0001_packages.sql"),
    ),
    (
        2,
        "executions",
        include_str!("../../migrations/sqlite/0002_executions.sql"),
    ),
    (
        3,
        "grants",
        include_str!("../../migrations/sqlite/0003_grants.sql"),
    ),
    (
        4,
        "data bounds",
        include_str!("../../migrations/sqlite/0004_data_bounds.sql"),
    ),
    (
        5,
        "api keys and audit",
        include_str!("../../migrations/sqlite/0005_api.sql"),
    ),
    (
        6,
        "task logs",
        include_str!("../../migrations/sqlite/0006_task_logs.sql"),
    ),
    (
        7,
        "shared secrets",
        include_str!("../../migrations/sqlite/0007_secrets.sql"),
    ),
    (
        8,
        "schedules",
        include_str!("../../migrations/sqlite/0008_schedules.sql"),
    ),
    (
        9,
        "signing",
        include_str!("../../migrations/sqlite/0009_signing.sql"),
    ),
];

/// PostgreSQL migrations.
pub(crate) const POSTGRES: &[Entry] = &[
    (
        1,
        "packages",
        include_str!("../../migrations/postgres/0001_packages.sql"),
    ),
    (
        2,
        "executions",
        include_str!("../../migrations/postgres/0002_executions.sql"),
    ),
    (
        3,
        "grants",
        include_str!("../../migrations/postgres/0003_grants.sql"),
    ),
    (
        4,
        "data bounds",
        include_str!("../../migrations/postgres/0004_data_bounds.sql"),
    ),
    (
        5,
        "api keys and audit",
        include_str!("../../migrations/postgres/0005_api.sql"),
    ),
    (
        6,
        "task logs",
        include_str!("../../migrations/postgres/0006_task_logs.sql"),
    ),
    (
        7,
        "shared secrets",
        include_str!("../../migrations/postgres/0007_secrets.sql"),
    ),
    (
        8,
        "schedules",
        include_str!("../../migrations/postgres/0008_schedules.sql"),
    ),
    (
        9,
        "signing",
        include_str!("../../migrations/postgres/0009_signing.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [Entry]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        (*description).into(),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A migrator over `entries`.
///
/// # Errors
/// Never in practice: the source is in memory.
pub(crate) async fn migrator(entries: &'static [Entry]) -> Result<Migrator, super::StoreError> {
    Ok(Migrator::new(Embedded(entries)).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_backends_have_the_same_migration_numbers() {
        let s: Vec<(i64, &str)> = super::SQLITE.iter().map(|(v, d, _)| (*v, *d)).collect();
        let p: Vec<(i64, &str)> = super::POSTGRES.iter().map(|(v, d, _)| (*v, *d)).collect();
        assert_eq!(s, p);
    }
}
