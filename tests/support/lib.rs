//! Shared support for the integration tests: the paths of the guest
//! components built by `build.rs`, and a loader shared by the tests of one
//! binary so that each component compiles once per binary.

use culvert::{
    CacheConfig, CompiledCache, EngineConfig, LoadedPackage, LoaderConfig, PackageLoader,
    SandboxEngine,
};
use std::sync::{Arc, OnceLock};

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
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
