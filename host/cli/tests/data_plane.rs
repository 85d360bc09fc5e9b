//! The data around the sandbox, on a real `culvert serve` process: a
//! hostile tenant whose every task stays inside every per-call limit, but
//! whose results together would exhaust the host's memory when the host
//! merges them. The host's peak memory (`VmHWM`) is asserted to stay under
//! a stated bound while another tenant's workflow completes.

use culvert::Store;
use culvert::{ExecutionStatus, Runner, RunnerConfig, TaskStatus, TenantLimits};
use culvert_tests::{Db, TestDb, artifacts, read};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_culvert");

/// Each leaf's output: 2 MiB. 64 leaves: 128 MiB of outputs per execution,
/// far over the 16 MiB default of `max_context_bytes` (a join's input) and
/// `max_final_context_bytes` (the final context).
const LEAF_BYTES: u64 = 2 * 1024 * 1024;

/// The bound on the host's peak resident memory, in MiB. Merging all 64
/// outputs of one execution at once, as the host did, holds 128 MiB of
/// parsed strings plus the 128 MiB of text they were read from (and two
/// such executions run here); merging one output at a time and stopping at
/// the 16 MiB limit keeps the host near its idle size plus a few contexts.
const PEAK_RSS_BOUND_MIB: u64 = 400;

/// A `culvert serve`, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Peak resident set size of process `pid`, in MiB (Linux `VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

async fn wait_finished(
    store: &dyn Store,
    id: uuid::Uuid,
    limit: Duration,
) -> culvert::ExecutionRow {
    let started = Instant::now();
    loop {
        let row = store.get_execution(None, id).await.unwrap();
        if row.status.is_finished() {
            return row;
        }
        assert!(
            started.elapsed() < limit,
            "execution {id} did not finish within {limit:?} (it is {})",
            row.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bloated_executions_stay_within_a_memory_bound() {
    let db = TestDb::new(Db::Sqlite).await;
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 16;
    let r = Runner::open(c).await.unwrap();
    r.create_tenant("evil", &TenantLimits::default())
        .await
        .unwrap();
    r.create_tenant("good", &TenantLimits::default())
        .await
        .unwrap();
    r.register_package("evil", &read(artifacts::SHAPES))
        .await
        .unwrap();
    r.register_package("good", &read(artifacts::ETL))
        .await
        .unwrap();
    let serve = Serve(
        Command::new(BIN)
            .env("CULVERT_DATABASE_URL", &db.url)
            // Tests run side by side: each serve takes a free port for its API.
            .env("CULVERT_LISTEN", "127.0.0.1:0")
            .env("CULVERT_CACHE_DIR", db.dir().join("cache"))
            .env("CULVERT_DATA_DIR", db.dir().join("data"))
            .env("CULVERT_LOG", "warn")
            .args(["serve", "--concurrency", "8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn culvert serve"),
    );
    let start = |workflow: &'static str, tenant: &'static str, ctx: serde_json::Value| {
        let r = &r;
        async move {
            r.start_execution(tenant, workflow, None, ctx.as_object().unwrap().clone())
                .await
                .unwrap()
                .id
        }
    };
    // Case 1: 64 leaves, the final context is their merge.
    let leaves = start("bloat", "evil", json!({"bytes": LEAF_BYTES})).await;
    // Case 2: the same leaves and a join that depends on all of them.
    let fan_in = start("bloat_join", "evil", json!({"bytes": LEAF_BYTES})).await;
    let good = start("etl", "good", json!({"notify": true})).await;
    let store = r.store().clone();
    let limit = Duration::from_secs(300);

    let done = wait_finished(store.as_ref(), good, limit).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.unwrap()["total"], 150);

    let done = wait_finished(store.as_ref(), leaves, limit).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let error = done.error.unwrap_or_default();
    assert!(
        error.contains("context_too_large") && error.contains("max_final_context_bytes"),
        "{error}"
    );

    let done = wait_finished(store.as_ref(), fan_in, limit).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let tasks = store.execution_tasks(fan_in).await.unwrap();
    let join = tasks.iter().find(|t| t.task_id == "join").unwrap();
    assert_eq!(join.status, TaskStatus::Failed);
    assert_eq!(join.last_error_kind.as_deref(), Some("context_too_large"));

    let peak = peak_rss_mib(serve.0.id());
    assert!(
        peak < PEAK_RSS_BOUND_MIB,
        "culvert serve peaked at {peak} MiB, over the bound of {PEAK_RSS_BOUND_MIB} MiB"
    );
    eprintln!("culvert serve peaked at {peak} MiB (bound {PEAK_RSS_BOUND_MIB} MiB)");
}
