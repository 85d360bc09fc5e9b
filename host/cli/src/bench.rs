//! `culvert bench`: the benchmarks behind docs/PERFORMANCE.md. They print
//! medians, percentiles and ratios; nothing here is a pass/fail test.
//!
//! - `cache`: cold compile vs disk-cache load vs in-memory hit, and a fresh
//!   store + instantiate + trivial call, at p50 and p99;
//! - `reconcile`: a no-op pass at 10, 100 and 1,000 packages, the time to
//!   register a package, and startup with a warm cache vs a cold one at 100
//!   packages;
//! - `throughput`: no-op tasks end to end, with dispatch latency (ready →
//!   running), for 100 workflows of 10 tasks, a fan-out of 1,000 and a
//!   chain of 200, on SQLite with one host and on PostgreSQL with one and
//!   two hosts (`--postgres`);
//! - `tenants`: a well-behaved tenant's throughput and p99 latency alone,
//!   then while another tenant runs hostile workflows in a loop;
//! - `http`: the HTTP API's requests per second and latencies over
//!   loopback (`bench_http.rs`);
//! - `schedules`: the firing loop (`bench_schedules.rs`);
//! - `egress`: a task's policed outbound GET against the bare request, and
//!   a refusal (`bench_egress.rs`).
//!
//! Build with `--release`: debug builds are about 15x slower in the sandbox.

use crate::args::{BenchArgs, BenchKind, GlobalArgs};
use crate::common::package_dir;
use anyhow::Context as _;
use culvert::{
    CacheConfig, CallLabels, CompiledCache, ContentHash, EngineConfig, ExecutionFilter,
    LoaderConfig, NewPackage, PackageLoader, Runner, RunnerConfig, SandboxEngine, SandboxLimits,
    Store, TaskCall,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Summary statistics of a sample, in microseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest.
    pub min: f64,
}

/// Percentiles of `samples` (any unit).
pub fn stats(mut samples: Vec<f64>) -> Stats {
    samples.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i]
    };
    Stats {
        n: samples.len(),
        p50: pick(0.5),
        p99: pick(0.99),
        min: samples.first().copied().unwrap_or(0.0),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The package files a benchmark needs, from `dir`.
pub struct BenchPackages {
    dir: PathBuf,
}

impl BenchPackages {
    /// Packages in `dir`: `hello.wasm`, `etl.wasm`, `shapes.wasm`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The bytes of `NAME.wasm`.
    pub fn read(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.dir.join(format!("{name}.wasm"));
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn engine() -> anyhow::Result<Arc<SandboxEngine>> {
    SandboxEngine::new(EngineConfig::default())
}

/// Compile, disk-load and memory-hit times for `etl`, and the cost of a
/// fresh store + instantiate + trivial call.
///
/// # Errors
/// When a package is missing or fails to load.
pub async fn cache(packages: &BenchPackages, scratch: &Path) -> anyhow::Result<Value> {
    let etl = packages.read("etl")?;
    let hash = ContentHash::of(&etl);
    let engine = engine()?;

    let mut cold = Vec::new();
    for _ in 0..5 {
        let cache = CompiledCache::new(engine.clone(), CacheConfig::default());
        let t = Instant::now();
        cache.get_or_compile(hash, &etl).await?;
        cold.push(micros(t.elapsed()));
    }
    let dir = scratch.join("cache");
    let writer = CompiledCache::new(
        engine.clone(),
        CacheConfig {
            dir: Some(dir.clone()),
            ..CacheConfig::default()
        },
    );
    writer.get_or_compile(hash, &etl).await?;
    let mut disk = Vec::new();
    for _ in 0..20 {
        let cache = CompiledCache::new(
            engine.clone(),
            CacheConfig {
                dir: Some(dir.clone()),
                ..CacheConfig::default()
            },
        );
        let t = Instant::now();
        let (_, source) = cache.get_or_compile(hash, &etl).await?;
        disk.push(micros(t.elapsed()));
        anyhow::ensure!(source == culvert::CacheSource::Disk, "expected a disk hit");
    }
    let mut memory = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        writer.get_or_compile(hash, &etl).await?;
        memory.push(micros(t.elapsed()));
    }
    let (cold, disk, memory) = (stats(cold), stats(disk), stats(memory));

    // A trivial call: the shapes package's no-op task.
    let shapes = packages.read("shapes")?;
    let loader = PackageLoader::new(
        Arc::new(CompiledCache::new(engine.clone(), CacheConfig::default())),
        LoaderConfig::default(),
    );
    let pkg = loader.load(&shapes).await?;
    let limits = SandboxLimits::default();
    let labels = Arc::new(CallLabels::default());
    let call = TaskCall {
        workflow: "ten",
        task: "root",
        context_json: "{}",
        execution_id: "bench",
        attempt: 1,
        max_attempts: 1,
    };
    let mut calls = Vec::with_capacity(10_000);
    for i in 0..11_000 {
        let t = Instant::now();
        culvert::run_task(&engine, &pkg.compiled, &call, &limits, labels.clone(), None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if i >= 1000 {
            calls.push(micros(t.elapsed()));
        }
    }
    let calls = stats(calls);
    Ok(json!({
        "etl_bytes": etl.len(),
        "cold_compile_us": cold,
        "disk_load_us": disk,
        "memory_hit_us": memory,
        "disk_vs_cold_speedup": cold.p50 / disk.p50,
        "instantiate_and_call_us": calls,
        "pooling_allocator": engine.pooling(),
    }))
}

/// `bytes` with the `i`-th custom section appended: new bytes (a new
/// content hash), same behaviour.
pub fn variant(bytes: &[u8], i: usize) -> Vec<u8> {
    culvert::test_support::with_custom_section(bytes, &format!("variant {i}"))
}

/// Register `count` copies of `hello` (distinct bytes when `distinct`),
/// one per tenant, straight into the store.
async fn seed(
    store: &Arc<dyn Store>,
    loader: &PackageLoader,
    hello: &[u8],
    count: usize,
    distinct: bool,
) -> anyhow::Result<()> {
    let metadata = loader.load(hello).await?.metadata;
    for i in 0..count {
        let tenant = format!("bench-{i}");
        store
            .create_tenant(&tenant, &culvert::TenantLimits::default())
            .await?;
        let bytes = if distinct {
            variant(hello, i)
        } else {
            hello.to_vec()
        };
        store
            .register_package(NewPackage {
                tenant: &tenant,
                metadata: &metadata,
                content_hash: &ContentHash::of(&bytes).to_hex(),
                bytes: &bytes,
                max_packages: u32::MAX,
                signature: None,
            })
            .await?;
    }
    Ok(())
}

/// No-op reconcile passes, registration time, and cold vs warm startup.
///
/// # Errors
/// When a package is missing or the database fails.
pub async fn reconcile(
    packages: &BenchPackages,
    scratch: &Path,
    database: Option<&str>,
) -> anyhow::Result<Value> {
    let hello = packages.read("hello")?;
    let mut passes = serde_json::Map::new();
    for (i, n) in [10usize, 100, 1000].into_iter().enumerate() {
        let url = database.map(str::to_string).unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                scratch.join(format!("reconcile-{i}.db")).display()
            )
        });
        let runner = Runner::open(bench_config(&url, &scratch.join("cache-shared"))).await?;
        seed(runner.store(), runner.loader(), &hello, n, false).await?;
        let first = runner.reconciler().reconcile().await?;
        anyhow::ensure!(
            first.total_packages_tracked >= n,
            "only {} loaded",
            first.total_packages_tracked
        );
        let mut samples = Vec::new();
        for _ in 0..50 {
            let r = runner.reconciler().reconcile().await?;
            anyhow::ensure!(!r.has_changes(), "a no-op pass changed something");
            samples.push(r.reconciliation_duration.as_secs_f64() * 1e3);
        }
        passes.insert(n.to_string(), json!(stats(samples)));
        runner.shutdown().await;
        if database.is_some() {
            break;
        }
    }

    // Registration of a new package (compile included), and of a cached one.
    let url = format!("sqlite://{}", scratch.join("register.db").display());
    let runner = Runner::open(bench_config(&url, &scratch.join("cache-register"))).await?;
    let etl = packages.read("etl")?;
    let mut fresh = Vec::new();
    let mut cached = Vec::new();
    for i in 0..5 {
        let tenant = format!("reg-{i}");
        runner
            .store()
            .create_tenant(&tenant, &culvert::TenantLimits::default())
            .await?;
        let bytes = variant(&etl, i);
        let t = Instant::now();
        runner.register_package(&tenant, &bytes).await?;
        fresh.push(t.elapsed().as_secs_f64() * 1e3);
        let tenant2 = format!("reg2-{i}");
        runner
            .store()
            .create_tenant(&tenant2, &culvert::TenantLimits::default())
            .await?;
        let t = Instant::now();
        runner.register_package(&tenant2, &bytes).await?;
        cached.push(t.elapsed().as_secs_f64() * 1e3);
    }
    runner.shutdown().await;

    // Startup at 100 distinct packages: a cold cache vs a warm one.
    let url = format!("sqlite://{}", scratch.join("startup.db").display());
    {
        let store = culvert::open_store(&url).await?;
        let loader = PackageLoader::new(
            Arc::new(CompiledCache::new(engine()?, CacheConfig::default())),
            LoaderConfig::default(),
        );
        seed(&store, &loader, &hello, 100, true).await?;
    }
    let cache_dir = scratch.join("cache-startup");
    let startup = |dir: PathBuf| {
        let url = url.clone();
        async move {
            let t = Instant::now();
            let runner = Runner::open(bench_config(&url, &dir)).await?;
            let r = runner.reconciler().reconcile().await?;
            let elapsed = t.elapsed();
            anyhow::ensure!(
                r.packages_loaded.len() == 100,
                "loaded {}",
                r.packages_loaded.len()
            );
            let stats = runner.loader().cache().stats();
            runner.shutdown().await;
            Ok::<_, anyhow::Error>((elapsed, stats))
        }
    };
    let _ = std::fs::remove_dir_all(&cache_dir);
    let (cold, cold_stats) = startup(cache_dir.clone()).await?;
    let (warm, warm_stats) = startup(cache_dir.clone()).await?;
    Ok(json!({
        "noop_pass_ms": passes,
        "register_new_ms": stats(fresh),
        "register_cached_ms": stats(cached),
        "startup_100_cold_ms": cold.as_secs_f64() * 1e3,
        "startup_100_warm_ms": warm.as_secs_f64() * 1e3,
        "startup_warm_speedup": cold.as_secs_f64() / warm.as_secs_f64(),
        "startup_cold_compiles": cold_stats.misses,
        "startup_warm_compiles": warm_stats.misses,
    }))
}

fn bench_config(url: &str, cache_dir: &Path) -> RunnerConfig {
    let mut c = RunnerConfig::new(url).cache_dir(cache_dir);
    c.reconciler.reconcile_interval = Duration::from_secs(3600);
    c
}

/// One throughput run: start `executions` of `workflow`, then let `hosts`
/// executors drain them.
pub(crate) async fn drain(
    url: &str,
    cache_dir: &Path,
    shapes: &[u8],
    workflow: &str,
    executions: usize,
    hosts: usize,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let mut runners = Vec::new();
    for _ in 0..hosts {
        let mut c = bench_config(url, cache_dir);
        c.executor.concurrency = concurrency;
        c.executor.poll_interval = Duration::from_millis(5);
        runners.push(Runner::open(c).await?);
    }
    let first = &runners[0];
    // A tenant whose limits do not get in the way of the measurement.
    let limits = culvert::TenantLimits {
        max_concurrent_tasks: 100_000,
        max_queued_executions: 1_000_000,
        ..culvert::TenantLimits::default()
    };
    first.create_tenant("bench", &limits).await?;
    first.register_package("bench", shapes).await?;
    // Warm every host's compiled code before the clock starts.
    for r in &runners {
        r.reconciler().reconcile().await?;
    }
    let mut ids = Vec::with_capacity(executions);
    for _ in 0..executions {
        ids.push(
            first
                .start_execution("bench", workflow, None, serde_json::Map::new())
                .await?
                .id,
        );
    }
    let tasks_per = first.store().execution_tasks(ids[0]).await?.len();
    let t = Instant::now();
    // Tasks made ready while executions were being created waited for the
    // executors to start, not for a slot: their wait counts from here.
    let started_ms = culvert::now_ms();
    for r in &runners {
        r.start_executor();
    }
    for id in &ids {
        let done = first.wait(*id, Some(Duration::from_secs(600))).await?;
        anyhow::ensure!(
            done.status == culvert::ExecutionStatus::Completed,
            "{:?}",
            done.error
        );
    }
    let elapsed = t.elapsed();
    let mut dispatch = Vec::new();
    for id in &ids {
        for task in first.store().execution_tasks(*id).await? {
            if let (Some(ready), Some(started)) = (task.ready_at, task.started_at) {
                dispatch.push((started - ready.max(started_ms)).max(0) as f64);
            }
        }
    }
    // Dispatch at light load: one execution at a time, nothing queued.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let id = first
            .start_execution("bench", "ten", None, serde_json::Map::new())
            .await?
            .id;
        first.wait(id, Some(Duration::from_secs(60))).await?;
        for task in first.store().execution_tasks(id).await? {
            if let (Some(ready), Some(started)) = (task.ready_at, task.started_at) {
                idle.push((started - ready).max(0) as f64);
            }
        }
    }
    for r in &runners {
        r.shutdown().await;
    }
    let total = executions * tasks_per;
    Ok(json!({
        "workflow": workflow,
        "executions": executions,
        "tasks": total,
        "hosts": hosts,
        "seconds": elapsed.as_secs_f64(),
        "tasks_per_second": total as f64 / elapsed.as_secs_f64(),
        "dispatch_ms": stats(dispatch),
        "dispatch_unloaded_ms": stats(idle),
    }))
}

/// Throughput and dispatch latency on the three shapes.
///
/// # Errors
/// When a package is missing or a database cannot be reached.
pub async fn throughput(
    packages: &BenchPackages,
    scratch: &Path,
    postgres: Option<&str>,
    concurrency: usize,
) -> anyhow::Result<Value> {
    let shapes = packages.read("shapes")?;
    let shapes_list: [(&str, usize); 3] = [("ten", 100), ("fanout1000", 1), ("chain200", 1)];
    let mut results = Vec::new();
    let mut run = 0;
    let mut configs: Vec<(&str, Option<String>, usize)> = vec![("sqlite", None, 1)];
    if let Some(pg) = postgres {
        configs.push(("postgres", Some(pg.to_string()), 1));
        configs.push(("postgres", Some(pg.to_string()), 2));
    }
    for (backend, server, hosts) in configs {
        for (workflow, executions) in shapes_list {
            run += 1;
            let url = match &server {
                None => format!(
                    "sqlite://{}",
                    scratch.join(format!("throughput-{run}.db")).display()
                ),
                Some(pg) => fresh_postgres_database(pg, run).await?,
            };
            eprintln!("  {backend} x{hosts}: {executions} x {workflow} (3 runs) ...");
            let mut runs = Vec::new();
            for repeat in 0..3 {
                let url = if repeat == 0 {
                    url.clone()
                } else {
                    match &server {
                        None => format!(
                            "sqlite://{}",
                            scratch
                                .join(format!("throughput-{run}-{repeat}.db"))
                                .display()
                        ),
                        Some(pg) => fresh_postgres_database(pg, run * 10 + repeat).await?,
                    }
                };
                runs.push(
                    drain(
                        &url,
                        &scratch.join("cache-throughput"),
                        &shapes,
                        workflow,
                        executions,
                        hosts,
                        concurrency,
                    )
                    .await?,
                );
            }
            let rates: Vec<f64> = runs
                .iter()
                .map(|r| r["tasks_per_second"].as_f64().unwrap_or(0.0))
                .collect();
            let mut r = runs.remove(0);
            r["tasks_per_second_runs"] = json!(rates);
            r["tasks_per_second"] = json!(stats(rates).p50);
            r["backend"] = json!(backend);
            results.push(r);
        }
    }
    if let Some(pg) = postgres {
        drop_postgres_databases(pg).await?;
    }
    Ok(json!({ "concurrency_per_host": concurrency, "runs": results }))
}

/// Drop the databases this process's benchmark runs created.
pub(crate) async fn drop_postgres_databases(server: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let base = server.trim_end_matches('/');
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
    let prefix = format!("culvert_bench_{}_%", std::process::id());
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(&prefix)
            .fetch_all(&mut admin)
            .await?;
    for (name,) in names {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
    }
    Ok(())
}

/// Create an empty database next to `server`'s default one.
pub(crate) async fn fresh_postgres_database(server: &str, run: usize) -> anyhow::Result<String> {
    use sqlx::Connection;
    let base = server.trim_end_matches('/');
    let name = format!("culvert_bench_{}_{run}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    Ok(format!("{base}/{name}"))
}

/// The machine the numbers come from.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0).round(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "wasmtime": culvert::WASMTIME_VERSION,
    })
}

/// A benchmark result as indented `key: value` lines.
pub fn render(v: &Value) -> String {
    fn walk(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        Value::Object(_) | Value::Array(_) => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            walk(v, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&format!("{pad}[{i}]\n"));
                    walk(item, indent + 2, out);
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other))),
        }
    }
    fn scalar(v: &Value) -> String {
        match v {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() != 0.0 => format!("{f:.3}"),
                _ => n.to_string(),
            },
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut out = String::new();
    walk(v, 0, &mut out);
    out
}

/// One phase of the tenants benchmark: `count` executions of `ten` for
/// tenant `good`, started 4 at a time; throughput and p99 latency.
async fn good_tenant_phase(runner: &Runner, count: usize) -> anyhow::Result<Value> {
    let t = Instant::now();
    let mut latencies = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    let mut started = 0;
    while started < count || !pending.is_empty() {
        while started < count && pending.len() < 4 {
            let row = runner
                .start_execution("good", "ten", None, serde_json::Map::new())
                .await?;
            pending.push_back(row.id);
            started += 1;
        }
        if let Some(id) = pending.pop_front() {
            let done = runner.wait(id, Some(Duration::from_secs(300))).await?;
            anyhow::ensure!(
                done.status == culvert::ExecutionStatus::Completed,
                "{:?}",
                done.error
            );
            latencies.push((done.finished_at.unwrap_or(0) - done.created_at) as f64);
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    Ok(json!({
        "executions": count,
        "tasks_per_second": (count * 10) as f64 / elapsed,
        "latency_ms": stats(latencies),
    }))
}

/// A well-behaved tenant alone, then while another tenant runs hostile
/// workflows in a loop.
///
/// # Errors
/// When a package is missing or the database fails.
pub async fn tenants(
    packages: &BenchPackages,
    scratch: &Path,
    concurrency: usize,
    hostile_slots: u32,
    hostile_cpu: Option<f64>,
) -> anyhow::Result<Value> {
    let url = format!("sqlite://{}", scratch.join("tenants.db").display());
    let mut c = bench_config(&url, &scratch.join("cache-tenants"));
    c.executor.concurrency = concurrency;
    c.executor.poll_interval = Duration::from_millis(5);
    let runner = Runner::open(c).await?;
    let evil_limits = culvert::TenantLimits {
        max_task_timeout_ms: 500,
        max_memory_bytes: 32 << 20,
        max_concurrent_tasks: hostile_slots.max(1),
        max_cpu_cores: hostile_cpu,
        // The data-plane attacks, scaled down: 64 leaves of 64 KiB against
        // 1 MiB limits on a merged input and on the final context.
        max_context_bytes: 1 << 20,
        max_final_context_bytes: 1 << 20,
        ..culvert::TenantLimits::default()
    };
    runner
        .create_tenant("good", &culvert::TenantLimits::default())
        .await?;
    runner.create_tenant("evil", &evil_limits).await?;
    runner
        .register_package("good", &packages.read("shapes")?)
        .await?;
    runner
        .register_package("evil", &packages.read("sandbox_probe")?)
        .await?;
    runner
        .register_package("evil", &packages.read("shapes")?)
        .await?;
    runner.start_executor();
    good_tenant_phase(&runner, 20).await?; // warm up
    // Three rounds of (alone, attacked), alternating, so that drift on the
    // machine hits both sides alike; medians are reported.
    let mut alone_runs = Vec::new();
    let mut attacked_runs = Vec::new();
    let mut rounds = 0;
    for _ in 0..3 {
        // Let the hostile queue drain, so that "alone" is alone.
        while runner.store().count_unfinished("evil").await? > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        alone_runs.push(good_tenant_phase(&runner, 200).await?);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attacker = {
            let store = runner.store().clone();
            let stop = stop.clone();
            let url = url.clone();
            let attacker_cache = scratch.join("cache-attacker");
            tokio::spawn(async move {
                // A second handle on the same database keeps the hostile
                // queue full: the `probe` workflow runs every sandbox attack
                // at once; `bloat`, `bloat_join` and `ints_join` attack the
                // data the host merges around the sandbox (an oversized
                // final context, an oversized fan-in, a merge that was
                // quadratic).
                let r = Runner::open(bench_config(&url, &attacker_cache))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut rounds = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if store.count_unfinished("evil").await? < 3 {
                        for (workflow, context) in [
                            ("probe", json!({})),
                            ("spin", json!({})),
                            ("bloat", json!({"bytes": 65536})),
                            ("bloat_join", json!({"bytes": 65536})),
                            ("ints_join", json!({"ints": 150_000})),
                        ] {
                            let context = context.as_object().cloned().unwrap_or_default();
                            r.start_execution("evil", workflow, None, context).await?;
                        }
                        rounds += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok::<u64, anyhow::Error>(rounds)
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        attacked_runs.push(good_tenant_phase(&runner, 200).await?);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        rounds += attacker.await??;
    }
    let failed_evil = runner
        .executions(ExecutionFilter {
            tenant: Some("evil"),
            status: Some(culvert::ExecutionStatus::Failed),
            limit: Some(100_000),
            ..Default::default()
        })
        .await?
        .len();
    runner.shutdown().await;
    let median = |runs: &[Value], path: &[&str]| -> f64 {
        let values: Vec<f64> = runs
            .iter()
            .map(|r| path.iter().fold(r, |v, k| &v[*k]).as_f64().unwrap_or(0.0))
            .collect();
        stats(values).p50
    };
    let alone = json!({
        "tasks_per_second": median(&alone_runs, &["tasks_per_second"]),
        "latency_p50_ms": median(&alone_runs, &["latency_ms", "p50"]),
        "latency_p99_ms": median(&alone_runs, &["latency_ms", "p99"]),
        "runs": alone_runs,
    });
    let attacked = json!({
        "tasks_per_second": median(&attacked_runs, &["tasks_per_second"]),
        "latency_p50_ms": median(&attacked_runs, &["latency_ms", "p50"]),
        "latency_p99_ms": median(&attacked_runs, &["latency_ms", "p99"]),
        "runs": attacked_runs,
    });
    let ratio = attacked["tasks_per_second"].as_f64().unwrap_or(0.0)
        / alone["tasks_per_second"].as_f64().unwrap_or(1.0);
    let p99_ratio = attacked["latency_p99_ms"].as_f64().unwrap_or(0.0)
        / alone["latency_p99_ms"].as_f64().unwrap_or(1.0).max(1.0);
    Ok(json!({
        "alone": alone,
        "with_hostile_tenant": attacked,
        "hostile_rounds_started": rounds,
        "hostile_max_concurrent_tasks": hostile_slots,
        "hostile_max_cpu_cores": hostile_cpu,
        "hostile_executions_failed": failed_evil,
        "throughput_kept": ratio,
        "p99_latency_ratio": p99_ratio,
    }))
}

/// Run the benchmark `args` selects and print its numbers.
pub(crate) async fn bench(_g: &GlobalArgs, args: BenchArgs) -> anyhow::Result<i32> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; numbers will be far from a release build's");
    }
    let needs: &[&str] = match args.which {
        BenchKind::Egress => &["fetch"],
        BenchKind::Languages => &["hello", "shapes", "py-bench", "js-bench"],
        _ => &["hello", "etl", "shapes", "sandbox-probe"],
    };
    let packages = BenchPackages::new(package_dir(args.packages, needs)?);
    let scratch = tempfile_dir()?;
    let started = std::time::Instant::now();
    let result = match args.which {
        BenchKind::Cache => cache(&packages, &scratch).await,
        BenchKind::Reconcile => reconcile(&packages, &scratch, None).await,
        BenchKind::Throughput => {
            throughput(
                &packages,
                &scratch,
                args.postgres.as_deref(),
                args.concurrency,
            )
            .await
        }
        BenchKind::Http => crate::bench_http::http(&packages, &scratch).await,
        BenchKind::Schedules => {
            crate::bench_schedules::schedules(&packages, &scratch, args.postgres.as_deref()).await
        }
        BenchKind::Egress => crate::bench_egress::egress(&packages).await,
        BenchKind::Languages => {
            crate::bench_languages::languages(&packages, &scratch, args.concurrency).await
        }
        BenchKind::Tenants => {
            tenants(
                &packages,
                &scratch,
                args.concurrency,
                args.hostile_slots,
                args.hostile_cpu,
            )
            .await
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let mut result = result?;
    result["machine"] = machine();
    result["elapsed_seconds"] = json!(started.elapsed().as_secs_f64());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{}", render(&result));
    }
    Ok(0)
}

pub(crate) fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("culvert-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("cannot create a scratch directory")?;
    Ok(dir)
}
