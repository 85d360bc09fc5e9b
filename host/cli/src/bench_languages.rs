//! `culvert bench languages`: what a package costs in each language the
//! SDKs speak, for the same `hello` task and the same 10-task `ten`
//! workflow: Rust (`hello.wasm`, `shapes.wasm`), Python (`py_bench.wasm`,
//! built from tests/guests/py-bench) and JavaScript (`js_bench.wasm`, from
//! tests/guests/js-bench). For each: a cold compile, a load from the disk
//! cache, a fresh store + instantiate + `hello` call (p50, p99), and tasks
//! per second for 100 executions of `ten` on SQLite.

use crate::bench::{BenchPackages, stats};
use culvert::{
    CacheConfig, CallLabels, CompiledCache, ContentHash, EngineConfig, LoaderConfig, PackageLoader,
    SandboxEngine, SandboxLimits, TaskCall,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Calls measured per language (after a tenth as many to warm up).
const CALLS: usize = 2000;
/// Cold compiles per language (a Python component takes seconds).
const COLD: usize = 3;

fn micros(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One language's figures.
async fn one(
    engine: &Arc<SandboxEngine>,
    hello: &[u8],
    ten: &[u8],
    scratch: &Path,
    label: &str,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let hash = ContentHash::of(hello);
    let mut cold = Vec::new();
    for _ in 0..COLD {
        let cache = CompiledCache::new(engine.clone(), CacheConfig::default());
        let t = Instant::now();
        cache.get_or_compile(hash, hello).await?;
        cold.push(micros(t.elapsed()));
    }
    let dir = scratch.join(format!("cache-{label}"));
    let disk_config = || CacheConfig {
        dir: Some(dir.clone()),
        ..CacheConfig::default()
    };
    CompiledCache::new(engine.clone(), disk_config())
        .get_or_compile(hash, hello)
        .await?;
    let mut disk = Vec::new();
    for _ in 0..10 {
        let cache = CompiledCache::new(engine.clone(), disk_config());
        let t = Instant::now();
        let (_, source) = cache.get_or_compile(hash, hello).await?;
        disk.push(micros(t.elapsed()));
        anyhow::ensure!(source == culvert::CacheSource::Disk, "expected a disk hit");
    }

    let loader = PackageLoader::new(
        Arc::new(CompiledCache::new(engine.clone(), CacheConfig::default())),
        LoaderConfig::default(),
    );
    let pkg = loader.load(hello).await?;
    let limits = SandboxLimits::default();
    let labels = Arc::new(CallLabels::default());
    let call = TaskCall {
        workflow: "hello",
        task: "greet",
        context_json: r#"{"name":"bench"}"#,
        execution_id: "bench",
        attempt: 1,
        max_attempts: 1,
    };
    let mut calls = Vec::with_capacity(CALLS);
    for i in 0..CALLS + CALLS / 10 {
        let t = Instant::now();
        culvert::run_task(engine, &pkg.compiled, &call, &limits, labels.clone(), None)
            .await
            .map_err(|e| anyhow::anyhow!("{label} hello failed: {e}"))?;
        if i >= CALLS / 10 {
            calls.push(micros(t.elapsed()));
        }
    }
    let url = format!(
        "sqlite://{}",
        scratch.join(format!("languages-{label}.db")).display()
    );
    let run = crate::bench::drain(
        &url,
        &scratch.join(format!("run-cache-{label}")),
        ten,
        "ten",
        100,
        1,
        concurrency,
    )
    .await?;
    Ok(json!({
        "bytes": hello.len(),
        "cold_compile_ms": stats(cold.iter().map(|us| us / 1000.0).collect()),
        "disk_load_ms": stats(disk.iter().map(|us| us / 1000.0).collect()),
        "instantiate_and_call_us": stats(calls),
        "ten_100_executions": {
            "tasks_per_second": run["tasks_per_second"],
            "seconds": run["seconds"],
        },
    }))
}

/// Rust, Python and JavaScript side by side.
///
/// # Errors
/// When a package is missing or fails to load or run.
pub async fn languages(
    packages: &BenchPackages,
    scratch: &Path,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let engine = SandboxEngine::new(EngineConfig::default())?;
    let rust = one(
        &engine,
        &packages.read("hello")?,
        &packages.read("shapes")?,
        scratch,
        "rust",
        concurrency,
    )
    .await?;
    let py = packages.read("py_bench")?;
    let python = one(&engine, &py, &py, scratch, "python", concurrency).await?;
    let js = packages.read("js_bench")?;
    let javascript = one(&engine, &js, &js, scratch, "javascript", concurrency).await?;
    let p50 = |v: &Value| v["instantiate_and_call_us"]["p50"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "rust": rust,
        "python": python,
        "javascript": javascript,
        "call_p50_vs_rust": {
            "python": p50(&python) / p50(&rust),
            "javascript": p50(&javascript) / p50(&rust),
        },
        "pooling_allocator": engine.pooling(),
    }))
}
