//! The engine's metrics, through a real Prometheus recorder: real workflows
//! of the probe guest move the task, execution, cache and reconcile
//! metrics, and `fleet_counts` reads exact ready, running and unfinished
//! counts on both backends.
//!
//! A process has one global recorder, so these tests share one binary of
//! their own. Counters are process-wide: each test uses tenants of its own
//! for the labelled ones, and checks unlabelled ones (the cache's) by how
//! much they grew.

use culvert::{
    ClaimedTask, FailureKind, FleetCounts, Runner, RunnerConfig, ScheduledRetry, TaskOutcome,
    TenantExecutionCounts, TenantLimits, TenantTaskCounts, metric_names as names, now_ms,
};
use culvert_tests::{Db, TestDb, artifacts, read, with_custom_section};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;
use uuid::Uuid;

/// The process's recorder, installed once, with the library's buckets and
/// descriptions.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in culvert::HISTOGRAM_BUCKETS {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                .unwrap();
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
        culvert::describe_metrics();
        handle
    })
}

/// The value of the sample `name{labels}` in the rendered text: the line
/// whose name is `name` and whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let found: BTreeMap<&str, &str> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|(k, v)| found.get(k) == Some(v))
                .then(|| value.parse().unwrap())
        })
}

/// Like [`sample`], 0 when absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

fn config(db: &TestDb) -> RunnerConfig {
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 16;
    c.executor.poll_interval = Duration::from_millis(20);
    c
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn run(r: &Runner, tenant: &str, workflow: &str, ctx: Value) -> culvert::ExecutionRow {
    let started = r
        .start_execution(tenant, workflow, None, obj(ctx))
        .await
        .unwrap();
    r.wait(started.id, Some(Duration::from_secs(60)))
        .await
        .unwrap()
}

/// Run `statement` on the test database, as an administrator would.
async fn execute(db: &TestDb, statement: &'static str) {
    match db.kind {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
    }
}

async fn workflows_move_the_metrics(db: Db) {
    let text = || prometheus().render();
    let tenant = match db {
        Db::Sqlite => "metrics-sqlite",
        Db::Postgres => "metrics-postgres",
    };
    let db = TestDb::new(db).await;
    let before = text();
    let r = Runner::open(config(&db)).await.unwrap();
    r.create_tenant(tenant, &TenantLimits::default())
        .await
        .unwrap();
    // Bytes of this test's own: compiled here, whatever ran before.
    let probe = with_custom_section(&read(artifacts::SANDBOX_PROBE), tenant);
    let registered = r.register_package(tenant, &probe).await.unwrap();
    assert!(!registered.cache_hit);
    r.start();

    // gates: work fails (permanent), cleanup and finally succeed, after and
    // after_after are skipped. spin: a timeout retried once, then final.
    let gates = run(&r, tenant, "gates", json!({})).await;
    assert_eq!(gates.status, culvert::ExecutionStatus::Failed);
    let spin = run(&r, tenant, "spin", json!({})).await;
    assert_eq!(spin.status, culvert::ExecutionStatus::Failed);
    // The reconciler loads the package from the memory tier (the
    // registration compiled it); wait for a pass that saw it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while r.status().await.packages_loaded == 0 {
        assert!(std::time::Instant::now() < deadline, "never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.shutdown().await;

    // A second host over the same cache directory loads it from disk.
    let second = Runner::open(config(&db)).await.unwrap();
    let pass = second.reconciler().reconcile().await.unwrap();
    assert_eq!(pass.packages_loaded.len(), 1);

    // A database error: a table gone under the store.
    execute(&db, "DROP TABLE hosts").await;
    assert!(second.store().live_hosts(0).await.is_err());

    let after = text();
    let finished = |outcome: &str, kind: &str| {
        value(
            &after,
            names::TASKS_FINISHED,
            &[("tenant", tenant), ("outcome", outcome), ("kind", kind)],
        )
    };
    assert_eq!(finished("succeeded", ""), 2.0, "{after}");
    assert_eq!(finished("failed", "permanent"), 1.0, "{after}");
    assert_eq!(finished("skipped", ""), 2.0, "{after}");
    assert_eq!(finished("retrying", "timeout"), 1.0, "{after}");
    assert_eq!(finished("failed", "timeout"), 1.0, "{after}");

    let t = [("tenant", tenant)];
    // Five attempts ran in the sandbox (skips never do); seven claims.
    let runs = format!("{}_count", names::TASK_DURATION);
    assert_eq!(value(&after, &runs, &t), 5.0, "{after}");
    let inf = [("tenant", tenant), ("le", "+Inf")];
    let bucket = format!("{}_bucket", names::TASK_DURATION);
    assert_eq!(
        value(&after, &bucket, &inf),
        5.0,
        "a histogram, not a summary"
    );
    // The two spins ran into their 300 ms timeout.
    let sum = format!("{}_sum", names::TASK_DURATION);
    assert!(value(&after, &sum, &t) >= 0.6, "{after}");
    let claims = format!("{}_count", names::DISPATCH_LATENCY);
    assert_eq!(value(&after, &claims, &t), 7.0, "{after}");
    let finished_failed = [("tenant", tenant), ("status", "failed")];
    assert_eq!(
        value(&after, names::EXECUTIONS_FINISHED, &finished_failed),
        2.0,
        "{after}"
    );

    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(grew(names::CACHE_MISSES, &[]) >= 1.0, "{after}");
    assert!(grew(names::CACHE_COMPILES, &[]) >= 1.0, "{after}");
    assert!(
        grew(&format!("{}_count", names::COMPILE_TIME), &[]) >= 1.0,
        "{after}"
    );
    assert!(
        grew(names::CACHE_HITS, &[("tier", "memory")]) >= 1.0,
        "{after}"
    );
    assert!(
        grew(names::CACHE_HITS, &[("tier", "disk")]) >= 1.0,
        "{after}"
    );
    assert!(
        grew(&format!("{}_count", names::RECONCILE_TIME), &[]) >= 2.0,
        "{after}"
    );
    assert!(sample(&after, names::PACKAGES_LOADED, &[]).is_some());
    assert!(
        grew(names::DATABASE_ERRORS, &[("kind", "other")]) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains(&format!("# HELP {} ", names::TASKS_FINISHED)),
        "described"
    );
    second.shutdown().await;
}

/// Record fleet counts and read the gauges back, one test at a time (the
/// gauges are process-wide).
async fn gauges_of(counts: &FleetCounts) -> String {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _held = LOCK.lock().await;
    culvert::record_fleet_counts(counts);
    let text = prometheus().render();
    // Tenants that are gone are reported as 0 once.
    culvert::record_fleet_counts(&FleetCounts::default());
    let zeroed = prometheus().render();
    for t in &counts.tasks {
        for state in ["ready", "retry_wait", "running"] {
            let labels = [("tenant", t.tenant.as_str()), ("state", state)];
            assert_eq!(sample(&zeroed, names::TASKS, &labels), Some(0.0));
        }
    }
    text
}

async fn fleet_counts_are_exact(db: Db) {
    // Tenants of this backend's own: the counters are process-wide.
    let (a, b) = match db {
        Db::Sqlite => ("alpha-sqlite", "beta-sqlite"),
        Db::Postgres => ("alpha-postgres", "beta-postgres"),
    };
    prometheus();
    let db = TestDb::new(db).await;
    let r = Runner::open(config(&db)).await.unwrap();
    let store = r.store().clone();
    assert_eq!(store.fleet_counts().await.unwrap(), FleetCounts::default());
    let probe = read(artifacts::SANDBOX_PROBE);
    for tenant in [a, b] {
        r.create_tenant(tenant, &TenantLimits::default())
            .await
            .unwrap();
        r.register_package(tenant, &probe).await.unwrap();
    }
    // No executor runs: the test plays the hosts. alpha: three chains (one
    // ready root each); beta: two diamonds.
    let mut alpha = Vec::new();
    for _ in 0..3 {
        alpha.push(
            r.start_execution(a, "chain", None, obj(json!({})))
                .await
                .unwrap()
                .id,
        );
    }
    let mut beta = Vec::new();
    for _ in 0..2 {
        beta.push(
            r.start_execution(b, "diamond", None, obj(json!({})))
                .await
                .unwrap()
                .id,
        );
    }
    let host = Uuid::now_v7();
    let lease = now_ms() + 60_000;
    let claim = |execution: Uuid| {
        let store = store.clone();
        async move {
            let claimed: Vec<ClaimedTask> = store
                .claim_tasks(host, 8, lease, Some(execution))
                .await
                .unwrap();
            assert_eq!(claimed.len(), 1);
            claimed.into_iter().next().unwrap()
        }
    };
    // One of alpha's roots runs.
    claim(alpha[0]).await;
    // One of beta's roots failed and waits an hour for its retry.
    let failed = claim(beta[0]).await;
    let plan = store.execution_plan(beta[0]).await.unwrap();
    let retry = TaskOutcome::Failed {
        kind: FailureKind::Transient,
        message: "again later".into(),
        retry: Some(ScheduledRetry {
            at: now_ms() + 3_600_000,
            delay_ms: 3_600_000,
        }),
        logs: None,
    };
    let done = store
        .complete_task(host, &failed, retry, &plan)
        .await
        .unwrap();
    assert!(done.accepted);

    let counts = store.fleet_counts().await.unwrap();
    let expected = FleetCounts {
        tasks: vec![
            TenantTaskCounts {
                tenant: a.into(),
                ready: 2,
                retry_wait: 0,
                running: 1,
            },
            TenantTaskCounts {
                tenant: b.into(),
                ready: 1,
                retry_wait: 1,
                running: 0,
            },
        ],
        executions: vec![
            TenantExecutionCounts {
                tenant: a.into(),
                pending: 2,
                running: 1,
            },
            TenantExecutionCounts {
                tenant: b.into(),
                pending: 1,
                running: 1,
            },
        ],
    };
    assert_eq!(counts, expected);

    let text = gauges_of(&counts).await;
    let gauge = |name: &str, tenant: &str, key: &str, v: &str| {
        sample(&text, name, &[("tenant", tenant), (key, v)])
    };
    assert_eq!(gauge(names::TASKS, a, "state", "ready"), Some(2.0));
    assert_eq!(gauge(names::TASKS, a, "state", "running"), Some(1.0));
    assert_eq!(gauge(names::TASKS, b, "state", "retry_wait"), Some(1.0));
    assert_eq!(gauge(names::TASKS, b, "state", "running"), Some(0.0));
    assert_eq!(gauge(names::EXECUTIONS, a, "status", "pending"), Some(2.0));
    assert_eq!(gauge(names::EXECUTIONS, b, "status", "running"), Some(1.0));

    // Cancelling every execution leaves nothing to count.
    for id in &alpha {
        r.cancel(a, *id).await.unwrap();
    }
    for id in &beta {
        r.cancel(b, *id).await.unwrap();
    }
    let counts = store.fleet_counts().await.unwrap();
    assert_eq!(
        counts.executions,
        Vec::new(),
        "no unfinished execution: {counts:?}"
    );
    let text = prometheus().render();
    let cancelled = |tenant: &str| {
        value(
            &text,
            names::EXECUTIONS_FINISHED,
            &[("tenant", tenant), ("status", "cancelled")],
        )
    };
    assert_eq!((cancelled(a), cancelled(b)), (3.0, 2.0), "{text}");
    // alpha's claimed root still runs until its host notices the cancel.
    assert_eq!(
        counts.tasks,
        vec![TenantTaskCounts {
            tenant: a.into(),
            running: 1,
            ..Default::default()
        }]
    );
    r.shutdown().await;
}

/// Schedules' due times move `culvert_schedule_fires_total` by outcome
/// (and `missed` for those a catch-up policy dropped), and each start
/// records its lag from the due time.
async fn schedules_move_the_metrics(db: Db) {
    let handle = prometheus();
    let db = TestDb::new(db).await;
    const T0: i64 = 1_796_083_200_000;
    let clock = std::sync::Arc::new(culvert::ManualClock::new(T0));
    let mut c = config(&db);
    c.clock = clock.clone();
    let r = Runner::open(c).await.unwrap();
    let tenant = match db.kind {
        Db::Sqlite => "cron-sqlite",
        Db::Postgres => "cron-pg",
    };
    r.create_tenant(tenant, &TenantLimits::default())
        .await
        .unwrap();
    r.register_package(tenant, &read(artifacts::HELLO))
        .await
        .unwrap();
    let mut spec = culvert::ScheduleSpec::new("hello", "0 * * * * *");
    spec.catch_up = culvert::CatchUp::Latest;
    spec.overlap = culvert::Overlap::Skip;
    r.create_schedule(tenant, spec).await.unwrap();
    // An hour down, then two passes: the latest missed minute starts
    // (caught up) and 58 are missed; the on-time minute, and the next one,
    // are skipped for the overlap (nothing runs the caught-up execution).
    clock.set(T0 + 60 * 60_000 + 500);
    r.firer().pass().await.unwrap();
    clock.set(T0 + 61 * 60_000 + 500);
    r.firer().pass().await.unwrap();
    let text = handle.render();
    for (outcome, n) in [
        ("started", 0.0),
        ("caught_up", 1.0),
        ("missed", 58.0),
        ("skipped_overlap", 2.0),
    ] {
        assert_eq!(
            value(
                &text,
                names::SCHEDULE_FIRES,
                &[("tenant", tenant), ("outcome", outcome)]
            ),
            n,
            "{outcome}"
        );
    }
    // One start, 60.5 s after its due time.
    let lag = |le: &str| {
        value(
            &text,
            &format!("{}_bucket", names::SCHEDULE_LAG),
            &[("tenant", tenant), ("le", le)],
        )
    };
    assert_eq!(lag("60"), 0.0);
    assert_eq!(lag("300"), 1.0);
}

/// Outbound requests are counted by tenant, method, granted host, status
/// class and outcome; bytes and durations by tenant. A refused request has
/// no host label: guest text never becomes one.
async fn egress_moves_the_metrics(db: Db) {
    let handle = prometheus();
    let db = TestDb::new(db).await;
    let r = Runner::open(config(&db)).await.unwrap();
    let tenant = match db.kind {
        Db::Sqlite => "egress-sqlite",
        Db::Postgres => "egress-pg",
    };
    r.create_tenant(tenant, &TenantLimits::default())
        .await
        .unwrap();
    r.register_package(tenant, &read(artifacts::EGRESS_GUEST))
        .await
        .unwrap();
    r.start();
    let server = culvert_tests::http_server::TestServer::start().await;
    let grant = format!("127.0.0.1:{}", server.port());
    r.grant(&culvert::Grant {
        tenant: tenant.into(),
        package: String::new(),
        kind: culvert::GrantKind::Http,
        name: grant.clone(),
        value: String::new(),
        writable: false,
    })
    .await
    .unwrap();
    run(&r, tenant, "get", json!({"url": server.url("/json")})).await;
    run(
        &r,
        tenant,
        "get",
        json!({"url": server.url_at("localhost", "/json")}),
    )
    .await;
    let text = handle.render();
    let requests = |labels: &[(&str, &str)]| value(&text, names::EGRESS_REQUESTS, labels);
    assert_eq!(
        requests(&[
            ("tenant", tenant),
            ("method", "GET"),
            ("host", &grant),
            ("status", "2xx"),
            ("outcome", "completed"),
        ]),
        1.0
    );
    // localhost is not granted by name: refused, with an empty host label.
    assert_eq!(
        requests(&[("tenant", tenant), ("host", ""), ("outcome", "refused")]),
        1.0
    );
    assert_eq!(
        value(&text, names::EGRESS_BYTES, &[("tenant", tenant)]),
        39.0
    );
    assert_eq!(
        value(
            &text,
            &format!("{}_count", names::EGRESS_DURATION),
            &[("tenant", tenant)]
        ),
        1.0
    );
    r.shutdown().await;
}

culvert_tests::both_backends!(
    workflows_move_the_metrics,
    fleet_counts_are_exact,
    schedules_move_the_metrics,
    egress_moves_the_metrics
);
