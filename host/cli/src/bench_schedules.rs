//! `culvert bench schedules`: how fast one host's firing loop turns due
//! schedules into executions, and what a pass costs when nothing is due
//! (every host pays that four times a second).
//!
//! `SCHEDULES` schedules, each due every second, come due at once; the
//! firing loop's passes (driven by hand, on a clock the benchmark sets) run
//! until every one has started its execution. Each of `ROUNDS` rounds moves
//! the clock one second on. The executor does not run, so the numbers are
//! the firing loop's and the database's: a claim row, a schedule update and
//! an execution with its task rows per due time, one transaction per
//! schedule. SQLite, and PostgreSQL with `--postgres`.

use crate::bench::{BenchPackages, drop_postgres_databases, fresh_postgres_database, stats};
use culvert::{ManualClock, Runner, RunnerConfig, ScheduleSpec, TenantLimits};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Schedules due at once.
const SCHEDULES: u32 = 1000;
/// Seconds (rounds) each run fires.
const ROUNDS: i64 = 5;

/// One run on `url`: fires per second of each round, and idle passes.
async fn run(packages: &BenchPackages, scratch: &Path, url: &str) -> anyhow::Result<Value> {
    // Whole seconds, so that every schedule is due at the same instant.
    let t0 = culvert::now_ms() / 1000 * 1000 + 1000;
    let clock = Arc::new(ManualClock::new(t0));
    let mut config = RunnerConfig::new(url).cache_dir(scratch.join("cache"));
    config.clock = clock.clone();
    let r = Runner::open(config).await?;
    let limits = TenantLimits {
        max_schedules: SCHEDULES,
        max_queued_executions: u32::MAX,
        ..TenantLimits::default()
    };
    r.create_tenant("bench", &limits).await?;
    r.register_package("bench", &packages.read("hello")?)
        .await?;
    let created = Instant::now();
    for _ in 0..SCHEDULES {
        r.create_schedule("bench", ScheduleSpec::new("hello", "* * * * * *"))
            .await?;
    }
    let create_rate = SCHEDULES as f64 / created.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    let mut passes = Vec::new();
    let mut idle = Vec::new();
    for round in 1..=ROUNDS {
        // Nothing due yet: the cost of a pass that finds nothing.
        clock.set(t0 + (round - 1) * 1000 + 500);
        for _ in 0..20 {
            let t = Instant::now();
            let report = r.firer().pass().await?;
            idle.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                report.started == 0,
                "a pass started work before its due time"
            );
        }
        clock.set(t0 + round * 1000 + 100);
        let t = Instant::now();
        let mut started = 0;
        let mut n = 0;
        while started < SCHEDULES as usize {
            started += r.firer().pass().await?.started;
            n += 1;
            anyhow::ensure!(n < 1000, "the due schedules never all fired");
        }
        rates.push(started as f64 / t.elapsed().as_secs_f64());
        passes.push(n as f64);
    }
    r.shutdown().await;
    let rate = stats(rates);
    let idle = stats(idle);
    Ok(json!({
        "schedules": SCHEDULES,
        "rounds": ROUNDS,
        "create_per_second": create_rate,
        "fires_per_second_median": rate.p50,
        "fires_per_second_min": rate.min,
        "passes_per_round_median": stats(passes).p50,
        "idle_pass_ms_p50": idle.p50,
        "idle_pass_ms_p99": idle.p99,
    }))
}

/// `culvert bench schedules`.
pub(crate) async fn schedules(
    packages: &BenchPackages,
    scratch: &Path,
    postgres: Option<&str>,
) -> anyhow::Result<Value> {
    let sqlite = format!("sqlite://{}", scratch.join("schedules.db").display());
    let mut out =
        json!({"benchmark": "schedules", "sqlite": run(packages, scratch, &sqlite).await?});
    if let Some(pg) = postgres {
        let url = fresh_postgres_database(pg, 900).await?;
        let result = run(packages, scratch, &url).await;
        drop_postgres_databases(pg).await?;
        out["postgres"] = result?;
    }
    Ok(out)
}
