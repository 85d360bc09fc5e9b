//! Schedules against real databases and real components, with the firing
//! loop's clock in the test's hands: catch-up after an outage for each
//! policy, each overlap policy, pause and resume, a schedule whose package
//! was removed, two hosts firing one schedule, tenant isolation and the
//! limits. (The real-time test with `culvert serve` processes killed
//! mid-way is in host/cli/tests/processes.rs.)

use culvert::{
    CatchUp, Error, ExecutionFilter, ExecutionRow, ManualClock, Overlap, Runner, RunnerConfig,
    ScheduleSpec, TenantLimits,
};
use culvert_tests::{Db, TestDb, artifacts, read};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;

/// A runner whose firing loop reads `clock`; no background loop runs, so
/// executions stay pending (an overlap) until the test finishes them.
async fn runner(db: &TestDb, clock: &Arc<ManualClock>) -> Runner {
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.clock = clock.clone();
    let r = Runner::open(c).await.expect("open runner");
    r.register_package("public", &read(artifacts::HELLO))
        .await
        .expect("register hello");
    r
}

fn every_five_minutes(catch_up: CatchUp, overlap: Overlap) -> ScheduleSpec {
    let mut s = ScheduleSpec::new("hello", "0 */5 * * * *");
    s.catch_up = catch_up;
    s.catch_up_cap = 5;
    s.overlap = overlap;
    s.context = json!({"name": "cron"}).as_object().unwrap().clone();
    s
}

/// The executions `schedule` started, oldest due time first.
async fn started(r: &Runner, schedule: Uuid) -> Vec<ExecutionRow> {
    let mut rows = r
        .executions(ExecutionFilter {
            tenant: Some("public"),
            schedule: Some(schedule),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    rows.sort_by_key(|e| e.scheduled_for);
    rows
}

/// Due times of `rows`, in minutes after T0.
fn minutes(rows: &[ExecutionRow]) -> Vec<i64> {
    rows.iter()
        .map(|e| (e.scheduled_for.expect("scheduled_for") - T0) / MIN)
        .collect()
}

async fn catch_up_after_a_three_hour_outage(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    let mut ids = Vec::new();
    for policy in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
        let s = r
            .create_schedule("public", every_five_minutes(policy, Overlap::Allow))
            .await
            .unwrap();
        assert_eq!(s.next_due_at, Some(T0 + 5 * MIN));
        ids.push(s.id);
    }
    // Every host was down for three hours: 36 due times passed, the last
    // (at 180 minutes) two seconds ago.
    clock.set(T0 + 180 * MIN + 2 * SEC);
    let report = r.firer().pass().await.unwrap();
    assert_eq!(report.started, 1 + 2 + 6);
    assert_eq!(report.missed, 35 + 34 + 30);
    assert_eq!(minutes(&started(&r, ids[0]).await), [180], "skip");
    assert_eq!(minutes(&started(&r, ids[1]).await), [175, 180], "latest");
    assert_eq!(
        minutes(&started(&r, ids[2]).await),
        [155, 160, 165, 170, 175, 180],
        "all, capped at 5 missed"
    );
    let e = &started(&r, ids[1]).await[0];
    assert_eq!(e.schedule, Some(ids[1]));
    assert_eq!(e.context, json!({"name": "cron"}));
    let fires = r.schedule_fires(Some("public"), ids[1], 10).await.unwrap();
    let outcomes: Vec<&str> = fires.iter().map(|f| f.outcome.as_str()).collect();
    assert_eq!(outcomes, ["started", "caught_up"]);
    // A second pass at the same time changes nothing.
    let again = r.firer().pass().await.unwrap();
    assert_eq!(again.started, 0);
    for id in &ids {
        let s = r.schedule(Some("public"), *id).await.unwrap();
        assert_eq!(s.next_due_at, Some(T0 + 185 * MIN));
    }
    // The JSON names are the fixed ones.
    let v = serde_json::to_value(e).unwrap();
    assert_eq!(v["schedule"], json!(ids[1]));
    assert_eq!(v["scheduled_for"], "2026-12-01T02:55:00.000Z");
}

async fn each_overlap_policy(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    let allow = r
        .create_schedule("public", every_five_minutes(CatchUp::Skip, Overlap::Allow))
        .await
        .unwrap();
    let skip = r
        .create_schedule("public", every_five_minutes(CatchUp::Skip, Overlap::Skip))
        .await
        .unwrap();
    let queue = r
        .create_schedule(
            "public",
            every_five_minutes(CatchUp::Skip, Overlap::QueueOne),
        )
        .await
        .unwrap();
    // Nothing runs the executions: each stays pending, so the next due
    // time overlaps it.
    for m in [5, 10, 15] {
        clock.set(T0 + m * MIN + 100);
        r.firer().pass().await.unwrap();
    }
    assert_eq!(minutes(&started(&r, allow.id).await), [5, 10, 15]);
    assert_eq!(minutes(&started(&r, skip.id).await), [5]);
    let outcomes = |fires: Vec<culvert::FireRow>| {
        let mut v: Vec<(i64, String)> = fires
            .into_iter()
            .map(|f| ((f.due_at - T0) / MIN, f.outcome))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        outcomes(r.schedule_fires(None, skip.id, 10).await.unwrap()),
        [
            (5, "started".to_string()),
            (10, "skipped_overlap".to_string()),
            (15, "skipped_overlap".to_string())
        ]
    );
    assert_eq!(minutes(&started(&r, queue.id).await), [5]);
    let q = r.schedule(None, queue.id).await.unwrap();
    assert_eq!(
        q.queued_for,
        Some(T0 + 10 * MIN),
        "the first overlap is kept"
    );
    // The running one finishes: the kept due time starts at the next pass,
    // before the next due time.
    let first = started(&r, queue.id).await[0].id;
    r.cancel("public", first).await.unwrap();
    clock.set(T0 + 16 * MIN);
    r.firer().pass().await.unwrap();
    assert_eq!(minutes(&started(&r, queue.id).await), [5, 10]);
    assert_eq!(
        outcomes(r.schedule_fires(None, queue.id, 10).await.unwrap()),
        [
            (5, "started".to_string()),
            (10, "dequeued".to_string()),
            (15, "skipped_overlap".to_string())
        ]
    );
    assert_eq!(r.schedule(None, queue.id).await.unwrap().queued_for, None);
}

async fn pause_and_resume(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    let s = r
        .create_schedule("public", every_five_minutes(CatchUp::All, Overlap::Allow))
        .await
        .unwrap();
    let paused = r.pause_schedule("public", s.id).await.unwrap();
    assert!(paused.paused);
    clock.set(T0 + 60 * MIN);
    r.firer().pass().await.unwrap();
    assert!(
        started(&r, s.id).await.is_empty(),
        "a paused schedule fires nothing"
    );
    // Resumed at 62 minutes: the hour it was paused is not caught up.
    clock.set(T0 + 62 * MIN);
    let resumed = r.resume_schedule("public", s.id).await.unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.next_due_at, Some(T0 + 65 * MIN));
    r.firer().pass().await.unwrap();
    assert!(started(&r, s.id).await.is_empty());
    clock.set(T0 + 65 * MIN + 10);
    r.firer().pass().await.unwrap();
    assert_eq!(minutes(&started(&r, s.id).await), [65]);
    // Trigger fires once, now, paused or not.
    r.pause_schedule("public", s.id).await.unwrap();
    clock.set(T0 + 66 * MIN);
    let fire = r.trigger_schedule("public", s.id).await.unwrap();
    assert_eq!(fire.outcome, "triggered");
    assert_eq!(fire.due_at, T0 + 66 * MIN);
    let execution = fire.execution_id.expect("an execution");
    assert_eq!(minutes(&started(&r, s.id).await), [65, 66]);
    let row = r.execution("public", execution).await.unwrap().0;
    assert_eq!(row.schedule, Some(s.id));
    // Fire records age out with retention, like the executions.
    assert_eq!(r.schedule_fires(None, s.id, 10).await.unwrap().len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    r.prune(std::time::Duration::ZERO).await.unwrap();
    assert!(r.schedule_fires(None, s.id, 10).await.unwrap().is_empty());
}

async fn a_schedule_of_a_removed_package(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    let s = r
        .create_schedule("public", every_five_minutes(CatchUp::Skip, Overlap::Allow))
        .await
        .unwrap();
    r.remove_package("public", "hello", None).await.unwrap();
    clock.set(T0 + 5 * MIN + 100);
    let report = r.firer().pass().await.expect("the pass carries on");
    assert_eq!(report.started, 0);
    assert!(started(&r, s.id).await.is_empty());
    let s2 = r.schedule(None, s.id).await.unwrap();
    let error = s2.last_error.expect("the schedule says why");
    assert!(error.contains("hello"), "{error}");
    assert_eq!(s2.next_due_at, Some(T0 + 10 * MIN), "it moves on");
    let fires = r.schedule_fires(None, s.id, 10).await.unwrap();
    assert_eq!(fires[0].outcome, "failed");
    // Registered again, the next due time starts it and clears the error.
    r.register_package("public", &read(artifacts::HELLO))
        .await
        .unwrap();
    clock.set(T0 + 10 * MIN + 100);
    r.firer().pass().await.unwrap();
    assert_eq!(minutes(&started(&r, s.id).await), [10]);
    assert_eq!(r.schedule(None, s.id).await.unwrap().last_error, None);
}

/// Two hosts on one database, each with its own store and firing loop,
/// pass at the same instants: every due time starts exactly once.
async fn two_hosts_fire_each_due_time_once(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let a = runner(&db, &clock).await;
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache-b"));
    c.clock = clock.clone();
    let b = Runner::open(c).await.unwrap();
    let s = a
        .create_schedule("public", ScheduleSpec::new("hello", "* * * * * *"))
        .await
        .unwrap();
    let mut lost = 0;
    for i in 1..=20 {
        clock.set(T0 + i * SEC + 50);
        let (x, y) = tokio::join!(a.firer().pass(), b.firer().pass());
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.started + y.started, 1, "pass {i}: {x:?} {y:?}");
        lost += x.lost + y.lost;
    }
    let due: Vec<i64> = started(&a, s.id)
        .await
        .iter()
        .map(|e| (e.scheduled_for.unwrap() - T0) / SEC)
        .collect();
    assert_eq!(due, (1..=20).collect::<Vec<_>>());
    eprintln!("the other host lost {lost} of 20 races");
}

async fn schedules_are_checked_limited_and_private(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    let invalid = |e: Error| match e {
        Error::Invalid(m) => m,
        other => panic!("{other:?}"),
    };
    let bad = r
        .create_schedule("public", ScheduleSpec::new("hello", "99 * * * * *"))
        .await
        .unwrap_err();
    assert!(invalid(bad).contains("invalid cron expression '99 * * * * *'"));
    let mut tz = ScheduleSpec::new("hello", "0 * * * * *");
    tz.timezone = "Europe/Atlantis".into();
    assert!(
        invalid(r.create_schedule("public", tz).await.unwrap_err()).contains("Europe/Atlantis")
    );
    let unknown = r
        .create_schedule("public", ScheduleSpec::new("helo", "0 * * * * *"))
        .await
        .unwrap_err();
    assert!(unknown.is_not_found(), "{unknown:?}");
    assert!(
        unknown.to_string().contains("hello"),
        "did you mean: {unknown}"
    );
    // Per-tenant limits: a minimum interval and a count.
    let limits = TenantLimits {
        min_schedule_interval_ms: 60_000,
        max_schedules: 2,
        ..Default::default()
    };
    r.create_tenant("small", &limits).await.unwrap();
    r.register_package("small", &read(artifacts::HELLO))
        .await
        .unwrap();
    let flood = r
        .create_schedule("small", ScheduleSpec::new("hello", "*/10 * * * * *"))
        .await
        .unwrap_err();
    let m = invalid(flood);
    assert!(
        m.contains("10000 ms apart") && m.contains("min_schedule_interval_ms"),
        "{m}"
    );
    for _ in 0..2 {
        r.create_schedule("small", ScheduleSpec::new("hello", "0 * * * * *"))
            .await
            .unwrap();
    }
    let over = r
        .create_schedule("small", ScheduleSpec::new("hello", "0 * * * * *"))
        .await
        .unwrap_err();
    assert!(
        matches!(&over, Error::Quota(m) if m.contains("max_schedules")),
        "{over:?}"
    );
    // Another tenant's schedule is "not found", whatever is asked of it.
    let mine = r.schedules(Some("small")).await.unwrap()[0].id;
    assert!(
        r.schedule(Some("public"), mine)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.pause_schedule("public", mine)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.resume_schedule("public", mine)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.delete_schedule("public", mine)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.trigger_schedule("public", mine)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(r.schedules(Some("public")).await.unwrap().len(), 0);
    r.delete_schedule("small", mine).await.unwrap();
    assert_eq!(r.schedules(Some("small")).await.unwrap().len(), 1);
    // Deleting the tenant takes its schedules with it.
    r.delete_tenant("small", true).await.unwrap();
    assert!(r.schedules(None).await.unwrap().is_empty());
}

/// 2027-01-01T02:00:00Z: 03:00 in Berlin, when the probe's first declared
/// schedule comes due.
const NEW_YEAR_3AM_BERLIN: i64 = 1_798_768_800_000;

async fn declared_schedules_follow_the_active_version(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let declared = |r: &Runner| {
        let store = r.store().clone();
        async move {
            let mut rows: Vec<_> = store
                .list_schedules(Some("public"))
                .await
                .unwrap()
                .into_iter()
                .filter(|s| s.declared)
                .collect();
            rows.sort_by(|a, b| a.spec.cron.cmp(&b.spec.cron));
            rows
        }
    };
    let v1 = declared(&r).await;
    assert_eq!(v1.len(), 2, "{v1:?}");
    assert_eq!(v1[0].package.as_deref(), Some("sandbox-probe"));
    assert_eq!(v1[0].spec.workflow, "sandbox-probe::chain");
    assert_eq!(v1[0].next_due_at, Some(NEW_YEAR_3AM_BERLIN));
    assert_eq!(
        v1[1].next_due_at,
        Some(NEW_YEAR_3AM_BERLIN + 150 * MIN),
        "04:30 UTC"
    );
    // Declared schedules fire like any other.
    clock.set(NEW_YEAR_3AM_BERLIN + 500);
    let report = r.firer().pass().await.unwrap();
    assert_eq!(report.started, 1);
    let e = &started(&r, v1[0].id).await[0];
    assert_eq!(e.workflow, "chain");
    assert_eq!(e.context, json!({"from": "schedule"}));
    assert_eq!(e.package_version, "0.1.0");
    // They cannot be deleted, only paused and resumed.
    let refused = r.delete_schedule("public", v1[0].id).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("declared by package 'sandbox-probe'"),
        "{refused}"
    );
    assert!(r.pause_schedule("public", v1[0].id).await.unwrap().paused);
    // An upgrade: v2 moves the first schedule (same key, kept paused) and
    // drops the second.
    r.register_package("public", &read(artifacts::SANDBOX_PROBE_V2))
        .await
        .unwrap();
    let v2 = declared(&r).await;
    assert_eq!(v2.len(), 1, "{v2:?}");
    assert_eq!(v2[0].id, v1[0].id);
    assert_eq!(v2[0].spec.cron, "0 0 5 1 1 *");
    assert_eq!(
        v2[0].spec.context,
        *json!({"from": "schedule v2"}).as_object().unwrap()
    );
    assert!(v2[0].paused, "pausing survives an upgrade");
    // Back to v1 when v2 is removed; none when the package is.
    r.remove_package("public", "sandbox-probe", Some("0.2.0"))
        .await
        .unwrap();
    assert_eq!(declared(&r).await.len(), 2);
    r.remove_package("public", "sandbox-probe", None)
        .await
        .unwrap();
    assert!(declared(&r).await.is_empty());
}

/// A declared schedule that fires more often than the tenant allows is
/// refused at registration, naming the package, workflow and rule.
async fn declared_schedules_obey_the_tenant(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    // The probe's schedules are a year apart: over any interval but this.
    let limits = TenantLimits {
        min_schedule_interval_ms: 400 * 24 * 3600 * 1000,
        ..Default::default()
    };
    r.create_tenant("strict", &limits).await.unwrap();
    let e = r
        .register_package("strict", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("sandbox-probe")
            && m.contains("chain")
            && m.contains("min_schedule_interval_ms"),
        "{m}"
    );
    assert!(
        r.list_packages(Some("strict")).await.unwrap().is_empty(),
        "nothing stored"
    );
}

/// A host that died between registering a package and writing its
/// declared schedules left them out (and stale ones of a removed package
/// in): the next firing loop to start puts them right.
async fn declared_schedules_are_repaired_when_a_host_starts(db: Db) {
    let db = TestDb::new(db).await;
    let clock = Arc::new(ManualClock::new(T0));
    let r = runner(&db, &clock).await;
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let store = r.store().clone();
    // As if the sync had never run for the probe, and a gone package had
    // left a declared schedule behind.
    store
        .sync_declared_schedules("public", "sandbox-probe", &[])
        .await
        .unwrap();
    let stale = culvert::DeclaredSchedule {
        key: "gone#0".into(),
        spec: ScheduleSpec::new("gone::gone", "0 0 3 1 1 *"),
        next_due_at: Some(NEW_YEAR_3AM_BERLIN),
    };
    store
        .sync_declared_schedules("public", "gone", &[stale])
        .await
        .unwrap();
    let declared = |store: Arc<dyn culvert::Store>| async move {
        let mut packages: Vec<String> = store
            .list_schedules(Some("public"))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|s| s.package)
            .collect();
        packages.sort();
        packages
    };
    assert_eq!(declared(store.clone()).await, ["gone"]);
    r.start_firing();
    let t0 = std::time::Instant::now();
    while declared(store.clone()).await != ["sandbox-probe", "sandbox-probe"] {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "never repaired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    r.shutdown().await;
}

culvert_tests::both_backends!(
    declared_schedules_are_repaired_when_a_host_starts,
    declared_schedules_follow_the_active_version,
    declared_schedules_obey_the_tenant,
    catch_up_after_a_three_hour_outage,
    each_overlap_policy,
    pause_and_resume,
    a_schedule_of_a_removed_package,
    two_hosts_fire_each_due_time_once,
    schedules_are_checked_limited_and_private,
);
