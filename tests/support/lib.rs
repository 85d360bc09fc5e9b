//! Shared support for the integration tests: the paths of the guest
//! components built by `build.rs`, and a loader shared by the tests of one
//! binary so that each component compiles once per binary.

use culvert::{
    CacheConfig, CompiledCache, EngineConfig, LoadedPackage, LoaderConfig, PackageLoader,
    SandboxEngine,
};
use std::sync::{Arc, OnceLock};

pub mod http_server;

/// Paths of the guest components (`pub const NAME: &str`).
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/gen.rs"));
}

/// The bytes of a component built by `build.rs`.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// One engine per test binary.
pub fn engine() -> Arc<SandboxEngine> {
    static ENGINE: OnceLock<Arc<SandboxEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| SandboxEngine::new(EngineConfig::default()).expect("engine"))
        .clone()
}

/// One in-memory cache and loader per test binary.
pub fn loader() -> PackageLoader {
    static LOADER: OnceLock<PackageLoader> = OnceLock::new();
    LOADER
        .get_or_init(|| {
            let cache = Arc::new(CompiledCache::new(engine(), CacheConfig::default()));
            PackageLoader::new(cache, LoaderConfig::default())
        })
        .clone()
}

/// Load a component with the shared loader, panicking on failure.
pub async fn load(path: &str) -> LoadedPackage {
    loader()
        .load(&read(path))
        .await
        .unwrap_or_else(|e| panic!("load {path}: {e}"))
}

/// Print `tracing` output for failing tests (`RUST_LOG` selects).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server at
    /// `CULVERT_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`).
    Postgres,
}

/// The PostgreSQL server the tests use.
pub fn postgres_server() -> String {
    std::env::var("CULVERT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// A fresh, empty database, deleted when dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// Which backend.
    pub kind: Db,
    dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    /// Create one.
    pub async fn new(kind: Db) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        match kind {
            Db::Sqlite => Self {
                url: format!("sqlite://{}", dir.path().join("culvert.db").display()),
                kind,
                dir,
                pg_name: None,
            },
            Db::Postgres => {
                use sqlx::Connection;
                let name = format!("culvert_test_{}", uuid::Uuid::new_v4().simple());
                let server = postgres_server();
                let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .expect("connect to PostgreSQL (is it running? .ci/run starts it)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                Self {
                    url: format!("{server}/{name}"),
                    kind,
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A scratch directory that lives as long as the database (for cache
    /// directories and the like).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let server = postgres_server();
            // Drop runs outside any runtime we may borrow: use a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut admin) =
                        sqlx::PgConnection::connect(&format!("{server}/postgres")).await
                    {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Run one SQL statement with `id` bound to `$1`, as a foreign writer or a
/// crash might leave the database.
pub async fn execute_for_id(db: &TestDb, sql: &'static str, id: uuid::Uuid) {
    match db.kind {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sql).bind(id).execute(&pool).await.unwrap();
        }
    }
}

/// `bytes` with a custom section appended: a different content hash, the
/// same behaviour.
pub fn with_custom_section(bytes: &[u8], payload: &str) -> Vec<u8> {
    culvert::test_support::with_custom_section(bytes, payload)
}

/// Run each named `async fn name(db: Db)` on SQLite (`mod sqlite`) and on
/// PostgreSQL (`mod postgres`), so both backends pass one suite.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Db::Postgres).await
                }
            )*
        }
    };
}
