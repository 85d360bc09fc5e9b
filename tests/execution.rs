//! Durable execution through the embedding API: DAG shapes, context
//! merging, trigger rules, retries, preemptive timeouts, cancellation,
//! leases and recovery, version pinning and bad input. Every scenario runs
//! on SQLite and on PostgreSQL.

use culvert::{ExecutionFilter, TaskOutcome};
use culvert::{ExecutionStatus, Runner, RunnerConfig, TaskStatus};
use culvert_tests::{Db, TestDb, artifacts, init_tracing, read};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn config(db: &TestDb) -> RunnerConfig {
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 64;
    c.executor.poll_interval = Duration::from_millis(20);
    c.executor.recovery_interval = Duration::from_millis(200);
    c.executor.cancel_poll_interval = Duration::from_millis(50);
    c
}

/// A started runner with the given packages registered.
async fn runner_with(db: &TestDb, packages: &[&str]) -> Runner {
    let r = Runner::open(config(db)).await.expect("open runner");
    for p in packages {
        r.register_package("public", &read(p))
            .await
            .expect("register");
    }
    r.start();
    r
}

/// A runner with no executor (the test plays every host) and the probe's
/// `chain` started: its root is ready, nothing runs it.
async fn idle_chain(db: &TestDb) -> (Runner, culvert::ExecutionRow) {
    let r = Runner::open(config(db)).await.unwrap();
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let started = r
        .start_execution("public", "chain", None, ctx(json!({})))
        .await
        .unwrap();
    (r, started)
}

fn ctx(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().expect("an object").clone()
}

async fn run_to_end(r: &Runner, workflow: &str, context: Value) -> culvert::ExecutionRow {
    let started = r
        .start_execution("public", workflow, None, ctx(context))
        .await
        .unwrap_or_else(|e| panic!("start {workflow}: {e}"));
    r.wait(started.id, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("wait {workflow}: {e}"))
}

async fn tasks(r: &Runner, id: uuid::Uuid) -> Vec<culvert::TaskRow> {
    r.execution("public", id).await.unwrap().1
}

fn task<'a>(tasks: &'a [culvert::TaskRow], id: &str) -> &'a culvert::TaskRow {
    tasks
        .iter()
        .find(|t| t.task_id == id)
        .unwrap_or_else(|| panic!("task {id}"))
}

culvert_tests::both_backends!(
    etl_runs_end_to_end,
    chain_diamond_and_fan_in_merge_contexts,
    trigger_rules_skip_and_skips_propagate,
    flaky_retries_and_succeeds,
    permanent_errors_fail_without_retry,
    a_cpu_loop_is_preempted_and_retried,
    cancelling_stops_pending_and_running_tasks,
    an_expired_lease_is_recovered_and_the_late_result_discarded,
    executions_stay_pinned_to_their_version,
    bad_input_creates_nothing,
    the_event_log_tells_the_story,
    a_failed_execution_is_retried_from_its_failed_tasks,
    finalisations_are_taken_over_then_given_up,
    heartbeats_keep_a_task_longer_than_its_lease,
    retries_wait_out_their_backoff,
    a_stale_claim_token_is_fenced_out_on_the_same_host,
    the_recovery_limit_fails_a_task_with_kind_host,
    a_cancelled_executions_running_task_is_not_resurrected,
    the_newest_registration_wins_not_the_highest_version,
    a_removed_packages_pending_execution_runs_on_a_fresh_host,
    completion_writes_are_retried_and_fall_back_to_single_writes,
    completions_survive_a_short_database_outage,
    grouped_starts_fail_alone_and_read_back_as_written,
);

async fn etl_runs_end_to_end(db: Db) {
    init_tracing();
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::ETL]).await;
    let done = run_to_end(&r, "etl", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let out = done.output.unwrap();
    assert_eq!(out["total"], 150, "{out}");
    assert_eq!(out["loaded"], json!([10, 20, 30, 40, 50]));
    let ts = tasks(&r, done.id).await;
    assert_eq!(task(&ts, "notify").status, TaskStatus::Skipped);
    assert!(out.get("notified").is_none());

    let notified = run_to_end(
        &r,
        "etl",
        json!({"notify": true, "source_rows": [1, -2, 3]}),
    )
    .await;
    assert_eq!(notified.status, ExecutionStatus::Completed);
    let out = notified.output.unwrap();
    assert_eq!(out["total"], 40);
    assert_eq!(out["notified"], "loaded a total of 40");
    r.shutdown().await;
}

async fn chain_diamond_and_fan_in_merge_contexts(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::SANDBOX_PROBE, artifacts::SHAPES]).await;
    let chain = run_to_end(&r, "chain", json!({"seed": 1})).await;
    assert_eq!(chain.status, ExecutionStatus::Completed);
    let out = chain.output.unwrap();
    assert_eq!(out["trail"], json!(["a", "b", "c"]));
    assert_eq!(out["seed"], 1, "the initial context flows through");

    let diamond = run_to_end(&r, "diamond", json!({})).await;
    assert_eq!(diamond.status, ExecutionStatus::Completed);
    let out = diamond.output.unwrap();
    // b then c, in declared order: c's scalar wins, objects merge, arrays
    // union.
    assert_eq!(out["d_saw_shared"], "c");
    assert_eq!(
        out["nested"],
        json!({"from_a": true, "from_b": 1, "from_c": 2})
    );
    assert_eq!(out["trail"], json!(["a", "b", "c", "d"]));

    let fan = run_to_end(&r, "ten", json!({"x": 1})).await;
    assert_eq!(fan.status, ExecutionStatus::Completed);
    assert_eq!(fan.output.unwrap(), json!({"x": 1}));
    let ts = tasks(&r, fan.id).await;
    assert_eq!(ts.len(), 10);
    assert!(
        ts.iter()
            .all(|t| t.status == TaskStatus::Completed && t.attempt == 1)
    );
    r.shutdown().await;
}

async fn trigger_rules_skip_and_skips_propagate(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::SANDBOX_PROBE]).await;
    let done = run_to_end(&r, "gates", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert!(
        done.error
            .as_deref()
            .unwrap()
            .contains("task 'work' failed"),
        "{:?}",
        done.error
    );
    let ts = tasks(&r, done.id).await;
    assert_eq!(task(&ts, "work").status, TaskStatus::Failed);
    assert_eq!(task(&ts, "cleanup").status, TaskStatus::Completed);
    assert_eq!(task(&ts, "after").status, TaskStatus::Skipped);
    assert_eq!(
        task(&ts, "after").skip_reason.as_deref(),
        Some("dependency 'work' failed")
    );
    assert_eq!(task(&ts, "after_after").status, TaskStatus::Skipped);
    assert_eq!(task(&ts, "finally").status, TaskStatus::Completed);
    let out = done.output.unwrap();
    assert_eq!(out["finally_ran"], true);
    assert_eq!(out["cleaned"], true);
    assert!(out.get("after_ran").is_none());

    // Without the failure, cleanup is skipped by its rule.
    let ok = run_to_end(&r, "gates", json!({"fail": false})).await;
    assert_eq!(ok.status, ExecutionStatus::Completed);
    let ts = tasks(&r, ok.id).await;
    assert_eq!(task(&ts, "cleanup").status, TaskStatus::Skipped);
    assert!(
        task(&ts, "cleanup")
            .skip_reason
            .as_deref()
            .unwrap()
            .contains("trigger rule not met")
    );
    assert_eq!(task(&ts, "after_after").status, TaskStatus::Completed);
    r.shutdown().await;
}

async fn flaky_retries_and_succeeds(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::FLAKY]).await;
    let done = run_to_end(&r, "flaky", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.unwrap()["succeeded_on_attempt"], 3);
    let ts = tasks(&r, done.id).await;
    let t = task(&ts, "unreliable");
    assert_eq!(t.attempt, 3);
    assert_eq!(t.last_error_kind.as_deref(), Some("transient"));
    // Too many failures for its 5 attempts: it fails.
    let hopeless = run_to_end(&r, "flaky", json!({"fail_times": 9})).await;
    assert_eq!(hopeless.status, ExecutionStatus::Failed);
    let ts = tasks(&r, hopeless.id).await;
    assert_eq!(task(&ts, "unreliable").attempt, 5);
    assert_eq!(task(&ts, "after").status, TaskStatus::Skipped);
    r.shutdown().await;
}

async fn permanent_errors_fail_without_retry(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::SANDBOX_PROBE]).await;
    let done = run_to_end(&r, "permanent", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let ts = tasks(&r, done.id).await;
    let t = task(&ts, "fails");
    assert_eq!(t.attempt, 1, "a permanent error is not retried");
    assert_eq!(t.last_error_kind.as_deref(), Some("permanent"));
    assert_eq!(
        t.last_error.as_deref(),
        Some("bad input, no retry can fix it")
    );
    r.shutdown().await;
}

async fn a_cpu_loop_is_preempted_and_retried(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::SANDBOX_PROBE]).await;
    let started = Instant::now();
    let done = run_to_end(&r, "spin", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let ts = tasks(&r, done.id).await;
    let t = task(&ts, "spin");
    assert_eq!(t.last_error_kind.as_deref(), Some("timeout"));
    assert_eq!(
        t.attempt, 2,
        "a timeout is transient: retried per the policy"
    );
    let each = t.duration_ms.unwrap();
    // The loop never ends by itself: any bound shows the preemption. It
    // is wide for a loaded 2-core machine.
    assert!(
        (300..5000).contains(&each),
        "an attempt took {each} ms for a 300 ms timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    r.shutdown().await;
}

async fn cancelling_stops_pending_and_running_tasks(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::SANDBOX_PROBE]).await;
    let started = r
        .start_execution("public", "slow", None, ctx(json!({"ms": 10_000})))
        .await
        .unwrap();
    // Wait until s1 runs.
    let t0 = Instant::now();
    loop {
        let ts = tasks(&r, started.id).await;
        if task(&ts, "s1").status == TaskStatus::Running {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "s1 never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = r.cancel("public", started.id).await.unwrap();
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    // The running task is interrupted well before its 10 s sleep ends.
    let t1 = Instant::now();
    loop {
        let ts = tasks(&r, started.id).await;
        if task(&ts, "s1").status != TaskStatus::Running {
            assert_eq!(
                task(&ts, "s1").last_error_kind.as_deref(),
                Some("cancelled")
            );
            assert!(
                ts.iter()
                    .filter(|t| t.task_id != "s1")
                    .all(|t| t.status == TaskStatus::Skipped)
            );
            break;
        }
        // s1 sleeps 10 s: ending well before that shows the interrupt.
        // (Room for a loaded machine: the interrupt itself takes a tick.)
        assert!(
            t1.elapsed() < Duration::from_secs(8),
            "the running task was not interrupted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = r.cancel("public", started.id).await.unwrap_err();
    assert!(again.to_string().contains("already cancelled"), "{again}");
    // Another tenant cannot cancel it, nor see it.
    assert!(
        r.cancel("other", started.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.execution("other", started.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    r.shutdown().await;
}

async fn an_expired_lease_is_recovered_and_the_late_result_discarded(db: Db) {
    let db = TestDb::new(db).await;
    // The runner registers but does not run anything yet.
    let (r, started) = idle_chain(&db).await;
    // A "host" that claims the first task with a short lease, then dies.
    let ghost = uuid::Uuid::now_v7();
    let claimed = r
        .store()
        .claim_tasks(ghost, 10, culvert::now_ms() + 300, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].task_id, "a");
    // The real executor takes it back once the lease expires.
    r.start();
    let done = r
        .wait(started.id, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    let ts = tasks(&r, done.id).await;
    let a = task(&ts, "a");
    assert_eq!(a.recoveries, 1);
    assert_eq!(a.attempt, 1, "a recovery does not use up a retry attempt");
    // The dead host's late result is refused.
    let plan = r.store().execution_plan(started.id).await.unwrap();
    let late = r
        .store()
        .complete_task(
            ghost,
            &claimed[0],
            TaskOutcome::Succeeded {
                output: ctx(json!({"late": true})),
                logs: None,
            },
            &plan,
        )
        .await
        .unwrap();
    assert!(!late.accepted);
    let (_, _, events) = r.execution("public", started.id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"lease_expired") && kinds.contains(&"recovered"),
        "{kinds:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "completed" && e.task_id.as_deref() == Some("a"))
            .count(),
        1
    );
    r.shutdown().await;
}

/// Version pinning: an execution of 0.1.0 that is observably running (its
/// first task claimed and running) when 0.2.0 is registered and 0.1.0
/// removed finishes on 0.1.0's code (its tasks write `version: 1`); a new
/// execution runs 0.2.0 (`version: 2`).
///
/// Catches: an executor that runs the package's current version instead
/// of the execution's pinned hash (seen red: with `Executor::exec_info`
/// looking up the newest registered package of that name, and not caching
/// it per execution, the output said `version: 2`).
async fn executions_stay_pinned_to_their_version(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::SANDBOX_PROBE]).await;
    // Compile 0.2.0 into the runner's cache now, so that registering it
    // below is quick and happens while the first execution still runs.
    r.loader()
        .load(&read(artifacts::SANDBOX_PROBE_V2))
        .await
        .unwrap();
    let v1_hash = culvert::ContentHash::of(&read(artifacts::SANDBOX_PROBE)).to_hex();
    let running = r
        .start_execution("public", "slow", None, ctx(json!({"ms": 1500})))
        .await
        .unwrap();
    assert_eq!(running.content_hash, v1_hash);
    assert_eq!(running.package_version, "0.1.0");
    eventually(Duration::from_secs(30), "s1 to run", || {
        let r = &r;
        async move {
            let ts = tasks(r, running.id).await;
            (task(&ts, "s1").status == TaskStatus::Running).then_some(())
        }
    })
    .await;
    // A new version arrives, and the old one is removed, mid-run.
    let v2 = r
        .register_package("public", &read(artifacts::SANDBOX_PROBE_V2))
        .await
        .unwrap();
    assert_eq!(v2.version, "0.2.0");
    r.remove_package("public", "sandbox-probe", Some("0.1.0"))
        .await
        .unwrap();
    // Four 1.5 s tasks: s4 cannot start until 4.5 s after s1 did, ample
    // room for a registration from the warm cache even on a loaded
    // machine; so at least one task runs after the change.
    let ts = tasks(&r, running.id).await;
    assert_eq!(task(&ts, "s4").status, TaskStatus::NotStarted);
    let done = r
        .wait(running.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.content_hash, v1_hash);
    let out = done.output.unwrap();
    assert_eq!(out["trail"], json!(["s1", "s2", "s3", "s4"]));
    assert_eq!(out["version"], 1, "0.1.0's code ran every task");
    // New executions use the newest version, and run its code.
    let next = run_to_end(&r, "slow", json!({"ms": 1})).await;
    assert_eq!(next.package_version, "0.2.0");
    assert_eq!(next.content_hash, v2.content_hash);
    assert_eq!(next.output.unwrap()["version"], 2);
    // An older version stays addressable while registered.
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let old = r
        .start_execution("public", "chain", Some("0.1.0"), ctx(json!({})))
        .await
        .unwrap();
    assert_eq!(old.content_hash, v1_hash);
    r.shutdown().await;
}

async fn bad_input_creates_nothing(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::HELLO]).await;
    let unknown = r
        .start_execution("public", "nope", None, ctx(json!({})))
        .await
        .unwrap_err();
    assert!(unknown.is_not_found(), "{unknown:?}");
    assert_eq!(
        unknown.to_string(),
        "workflow 'nope' not found in tenant public (known: hello)"
    );
    let tenant = r
        .start_execution("ghosts", "hello", None, ctx(json!({})))
        .await
        .unwrap_err();
    assert!(
        tenant
            .to_string()
            .contains("tenant 'ghosts' does not exist"),
        "{tenant}"
    );
    let version = r
        .start_execution("public", "hello", Some("9.9.9"), ctx(json!({})))
        .await
        .unwrap_err();
    assert!(
        version.to_string().contains("version 9.9.9 not found"),
        "{version}"
    );
    let all = r.executions(ExecutionFilter::default()).await.unwrap();
    assert!(all.is_empty(), "{all:?}");
    r.shutdown().await;
}

/// `retry_execution` re-runs a failed execution in place from its failed
/// tasks: attempt numbers continue with a fresh budget (so `flaky`, which
/// fails its first five attempts, completes on the sixth), completed tasks
/// are not run again and keep their outputs, and only a failed execution of
/// the caller's tenant can be retried.
async fn a_failed_execution_is_retried_from_its_failed_tasks(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::FLAKY, artifacts::ETL]).await;
    let failed = run_to_end(&r, "flaky", json!({"fail_times": 5})).await;
    assert_eq!(failed.status, ExecutionStatus::Failed);
    let again = r.retry_execution("public", failed.id).await.unwrap();
    assert_eq!(again.id, failed.id);
    assert_eq!(again.status, ExecutionStatus::Pending);
    let done = r
        .wait(failed.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.as_ref().unwrap()["succeeded_on_attempt"], 6);
    let (_, tasks, events) = r.execution("public", failed.id).await.unwrap();
    let unreliable = tasks.iter().find(|t| t.task_id == "unreliable").unwrap();
    assert_eq!((unreliable.attempt, unreliable.max_attempts), (6, 10));
    assert!(events.iter().any(|e| e.kind == "retried"), "{events:?}");

    // etl with a zero factor: extract and clean complete, enrich fails for
    // good. Retried, enrich runs (and fails) again; extract and clean do
    // not run again and keep their outputs.
    let failed = run_to_end(&r, "etl", json!({"factor": 0})).await;
    assert_eq!(failed.status, ExecutionStatus::Failed);
    let (_, before, _) = r.execution("public", failed.id).await.unwrap();
    r.retry_execution("public", failed.id).await.unwrap();
    let done = r
        .wait(failed.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    let (_, after, events) = r.execution("public", failed.id).await.unwrap();
    let claims = |task: &str| {
        events
            .iter()
            .filter(|e| e.kind == "claimed" && e.task_id.as_deref() == Some(task))
            .count()
    };
    assert_eq!((claims("extract"), claims("clean")), (1, 1), "{events:?}");
    assert_eq!(claims("enrich"), 2, "{events:?}");
    for t in ["extract", "clean"] {
        let was = before.iter().find(|x| x.task_id == t).unwrap();
        let is = after.iter().find(|x| x.task_id == t).unwrap();
        assert_eq!(is.status, TaskStatus::Completed);
        assert_eq!(is.output, was.output, "{t} kept its output");
    }

    // Only a failed execution, and only the tenant's own.
    let completed = run_to_end(&r, "flaky", json!({"fail_times": 0})).await;
    let e = r.retry_execution("public", completed.id).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("only a failed execution can be retried"),
        "{e}"
    );
    r.create_tenant("other", &culvert::TenantLimits::default())
        .await
        .unwrap();
    let e = r.retry_execution("other", failed.id).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    r.shutdown().await;
}

async fn the_event_log_tells_the_story(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::FLAKY]).await;
    let done = run_to_end(&r, "flaky", json!({"fail_times": 1})).await;
    let (_, _, events) = r.execution("public", done.id).await.unwrap();
    let story: Vec<(Option<&str>, &str)> = events
        .iter()
        .map(|e| (e.task_id.as_deref(), e.kind.as_str()))
        .collect();
    assert_eq!(
        story,
        vec![
            (None, "created"),
            (Some("unreliable"), "task_ready"),
            (Some("unreliable"), "claimed"),
            (Some("unreliable"), "retry_scheduled"),
            (Some("unreliable"), "claimed"),
            (Some("unreliable"), "completed"),
            (Some("after"), "task_ready"),
            (Some("after"), "claimed"),
            (Some("after"), "completed"),
            (None, "execution_completed"),
        ]
    );
    // The retry's detail gives the policy's delay (fixed, 20 ms), not what
    // was left of it when the failure was recorded.
    let retry = events.iter().find(|e| e.kind == "retry_scheduled").unwrap();
    let detail = retry.detail.as_deref().unwrap();
    assert!(detail.ends_with("; retry in 20 ms"), "{detail}");
    r.shutdown().await;
}

/// Recovery cannot crash-loop: an execution whose last task finished but
/// whose finalisation never finished (its host died, or ran out of memory
/// assembling the final context) is taken over by the recovery sweep while
/// tries remain, and failed (`finalize_failed`) once
/// `MAX_FINALIZE_ATTEMPTS` were used, without merging anything.
async fn finalisations_are_taken_over_then_given_up(db: Db) {
    use culvert_tests::execute_for_id;
    let db = TestDb::new(db).await;
    // No executor: the sweep below is the only thing that acts.
    let r = Runner::open(config(&db)).await.unwrap();
    r.register_package("public", &read(artifacts::HELLO))
        .await
        .unwrap();
    let start = || r.start_execution("public", "hello", None, ctx(json!({})));
    let (doomed, resumed) = (start().await.unwrap().id, start().await.unwrap().id);
    for id in [doomed, resumed] {
        execute_for_id(
            &db,
            "UPDATE task_executions SET status = 'completed', output = '{\"greeting\":\"hi\"}' WHERE execution_id = $1",
            id,
        )
        .await;
        // The last completion took the lease; its host died right after.
        execute_for_id(
            &db,
            "UPDATE executions SET status = 'running', tasks_remaining = 0, finalize_attempts = 1, finalize_lease_until = 0 WHERE id = $1",
            id,
        )
        .await;
    }
    execute_for_id(
        &db,
        "UPDATE executions SET finalize_attempts = 3 WHERE id = $1",
        doomed,
    )
    .await;
    let host = uuid::Uuid::now_v7();
    r.store().recover_expired(host, 3).await.unwrap();

    let row = r.store().get_execution(None, resumed).await.unwrap();
    assert_eq!(row.status, ExecutionStatus::Completed, "{:?}", row.error);
    assert_eq!(row.output.unwrap()["greeting"], "hi");

    let row = r.store().get_execution(None, doomed).await.unwrap();
    assert_eq!(row.status, ExecutionStatus::Failed);
    let error = row.error.unwrap_or_default();
    assert!(error.starts_with("finalize_failed"), "{error}");
    assert!(row.output.is_none());
    let events = r.store().execution_events(doomed).await.unwrap();
    assert_eq!(events.last().unwrap().kind, "execution_failed");
    // Nothing is left for a later sweep (or a restarted host) to retry.
    r.store().recover_expired(host, 3).await.unwrap();
    let again = r.store().execution_events(doomed).await.unwrap();
    assert_eq!(again.len(), events.len());
}

/// Poll `check` every 20 ms until it returns `Some`, or panic with `what`
/// after `deadline`. The deadlines are generous (the machine running the
/// suite may be loaded): they bound a hang, they do not measure anything.
async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(t0.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `at` of each event of `kind` for `task`, in order.
fn event_times(events: &[culvert::EventRow], task: &str, kind: &str) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.task_id.as_deref() == Some(task))
        .map(|e| e.at)
        .collect()
}

/// Heartbeats extend leases: six tasks of 3 s each under a 1 s lease
/// (heartbeat every 300 ms, recovery sweeps every 200 ms) each run once,
/// are never recovered and never discarded.
///
/// Catches: the heartbeat loop not calling `store.heartbeat` (seen red:
/// the sweep took the tasks back every second until the recovery limit
/// failed them, "its host died 4 times").
async fn heartbeats_keep_a_task_longer_than_its_lease(db: Db) {
    let db = TestDb::new(db).await;
    let mut c = config(&db);
    c.executor.lease = Duration::from_secs(1);
    c.executor.heartbeat_interval = Duration::from_millis(300);
    let r = Runner::open(c).await.unwrap();
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    r.start();
    let done = run_to_end(&r, "parallel", json!({"ms": 3000})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let ts = tasks(&r, done.id).await;
    assert_eq!(ts.len(), 6);
    for t in &ts {
        assert_eq!(
            (t.attempt, t.recoveries),
            (1, 0),
            "task {} outlived its lease",
            t.task_id
        );
        assert!(t.duration_ms.unwrap() >= 3000, "{t:?}");
    }
    let (_, _, events) = r.execution("public", done.id).await.unwrap();
    assert!(
        !events
            .iter()
            .any(|e| e.kind == "lease_expired" || e.kind == "recovered"),
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| e.kind == "claimed").count(), 6);
    let stats = r.executor().stats();
    assert_eq!((stats.recovered, stats.discarded), (0, 0), "{stats:?}");
    r.shutdown().await;
}

/// Backoff is honoured: the `backoff` workflow's tasks fail three times
/// each; the next attempt is never claimed before the policy's delay has
/// passed since the previous claim (the failed attempt ran after its
/// claim, and its retry is due `delay` after it failed): 400 ms each time
/// for `fixed`, 200, 400 then 800 ms for `exponential`. Only lower bounds
/// are asserted, so a loaded machine cannot fail the test.
///
/// Catches: the claim transaction not checking `next_run_at <= now` (seen
/// red with the check dropped from both of its queries, the per-tenant
/// count in `store/claims.rs` and `CLAIM_SQL` in `sqlite.rs` and
/// `postgres.rs`: attempt 2 was claimed 14 ms after attempt 1). Dropping it
/// from `CLAIM_SQL` alone changes nothing observable: the count, taken
/// with the same `now`, caps each tenant's batch at its due tasks, and
/// `CLAIM_SQL` takes the oldest `next_run_at` first, which are those.
async fn retries_wait_out_their_backoff(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(&db, &[artifacts::SANDBOX_PROBE]).await;
    let done = run_to_end(&r, "backoff", json!({"fail_times": 3})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let ts = tasks(&r, done.id).await;
    let (_, _, events) = r.execution("public", done.id).await.unwrap();
    for (id, delays) in [("fixed", [400, 400, 400]), ("exponential", [200, 400, 800])] {
        assert_eq!(task(&ts, id).attempt, 4, "{id}");
        let claims = event_times(&events, id, "claimed");
        assert_eq!(claims.len(), 4, "{id}: {claims:?}");
        for (i, delay) in delays.iter().enumerate() {
            let gap = claims[i + 1] - claims[i];
            assert!(
                gap >= *delay,
                "{id}: attempt {} was claimed {gap} ms after attempt {}, before its {delay} ms backoff",
                i + 2,
                i + 1
            );
        }
    }
    r.shutdown().await;
}

/// Fencing by the claim token alone: a host re-claims a task it had lost
/// (same host id, new token); the completion of its first claim is then
/// refused and changes nothing, and a heartbeat with the old token extends
/// nothing; the completion of the current claim is accepted.
///
/// Catches: the completion `UPDATE`s in `store/completions.rs` not checking
/// `claim_token` (seen red: the stale completion was accepted), and the
/// heartbeat's `UPDATE` not checking it (seen red: the stale heartbeat
/// extended the lease).
async fn a_stale_claim_token_is_fenced_out_on_the_same_host(db: Db) {
    let db = TestDb::new(db).await;
    // No executor: this test is the only host.
    let (r, started) = idle_chain(&db).await;
    let store = r.store().clone();
    let host = uuid::Uuid::now_v7();
    let first = store
        .claim_tasks(host, 10, culvert::now_ms() + 100, None)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // The lease runs out; a sweep makes the task ready again.
    eventually(Duration::from_secs(10), "the lease to expire", || {
        let store = store.clone();
        async move {
            let got = store.recover_expired(host, 3).await.unwrap();
            (!got.is_empty()).then_some(())
        }
    })
    .await;
    let second = store
        .claim_tasks(host, 10, culvert::now_ms() + 60_000, None)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].task_id, "a");
    assert_ne!(first[0].claim_token, second[0].claim_token);
    let before = tasks(&r, started.id).await;
    let events_before = store.execution_events(started.id).await.unwrap().len();

    let stale_beat = store
        .heartbeat(
            host,
            culvert::now_ms() + 600_000,
            &[(started.id, "a".to_string(), first[0].claim_token)],
        )
        .await
        .unwrap();
    assert_eq!(stale_beat, 0, "a stale token extends no lease");
    let plan = store.execution_plan(started.id).await.unwrap();
    let stale = store
        .complete_task(
            host,
            &first[0],
            TaskOutcome::Succeeded {
                output: ctx(json!({"stale": true})),
                logs: None,
            },
            &plan,
        )
        .await
        .unwrap();
    assert!(!stale.accepted, "the first claim's completion was accepted");
    let after = tasks(&r, started.id).await;
    let a = task(&after, "a");
    assert_eq!(a.status, TaskStatus::Running);
    assert!(a.output.is_none());
    assert_eq!(a.lease_expires_at, task(&before, "a").lease_expires_at);
    assert_eq!(task(&after, "b").status, TaskStatus::NotStarted);
    assert_eq!(
        store.execution_events(started.id).await.unwrap().len(),
        events_before,
        "a refused completion records nothing"
    );

    let current = store
        .complete_task(
            host,
            &second[0],
            TaskOutcome::Succeeded {
                output: ctx(json!({"current": true})),
                logs: None,
            },
            &plan,
        )
        .await
        .unwrap();
    assert!(current.accepted);
    let a = tasks(&r, started.id).await;
    assert_eq!(task(&a, "a").output, Some(json!({"current": true})));
    assert_eq!(task(&a, "b").status, TaskStatus::Ready);
}

/// The recovery limit: a task whose host dies once more than
/// `max_recoveries` (2 here) fails for good with kind `host`, its
/// dependents are skipped and the execution fails.
///
/// Catches: the sweep ignoring the limit (seen red: with `gave_up` forced
/// to false in `recover_expired`, round 3 recovered the task again).
async fn the_recovery_limit_fails_a_task_with_kind_host(db: Db) {
    let db = TestDb::new(db).await;
    let (r, started) = idle_chain(&db).await;
    let store = r.store().clone();
    let sweeper = uuid::Uuid::now_v7();
    // Three hosts in turn claim the root and die.
    for round in 1..=3 {
        let ghost = uuid::Uuid::now_v7();
        let claimed = store
            .claim_tasks(ghost, 10, culvert::now_ms() + 50, None)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "round {round}: the root is claimable");
        let swept = eventually(Duration::from_secs(10), "the lease to expire", || {
            let store = store.clone();
            async move {
                let got = store.recover_expired(sweeper, 2).await.unwrap();
                (!got.is_empty()).then_some(got)
            }
        })
        .await;
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].from_host, Some(ghost));
        assert_eq!(swept[0].gave_up, round == 3, "round {round}");
    }
    let ts = tasks(&r, started.id).await;
    let a = task(&ts, "a");
    assert_eq!(a.status, TaskStatus::Failed);
    assert_eq!(a.last_error_kind.as_deref(), Some("host"));
    assert_eq!(a.recoveries, 3);
    assert!(
        a.last_error
            .as_deref()
            .unwrap()
            .contains("the recovery limit is 2"),
        "{:?}",
        a.last_error
    );
    // Its dependent is unlocked; the host that claims it decides it is
    // skipped, and the execution fails.
    assert_eq!(task(&ts, "b").status, TaskStatus::Ready);
    r.start();
    let row = r
        .wait(started.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(row.status, ExecutionStatus::Failed);
    let error = row.error.unwrap_or_default();
    assert!(error.contains("task 'a' failed: host"), "{error}");
    let ts = tasks(&r, started.id).await;
    for id in ["b", "c"] {
        assert_eq!(task(&ts, id).status, TaskStatus::Skipped, "{id}");
    }
    assert_eq!(
        task(&ts, "b").skip_reason.as_deref(),
        Some("dependency 'a' failed")
    );
    r.shutdown().await;
}

/// A cancelled execution's running task is not resurrected: its host (a
/// ghost) dies after the cancel; once the lease ran out, the live host's
/// recovery sweep marks it skipped, not ready, and no attempt runs again.
///
/// Catches: the sweep recovering tasks of cancelled executions like any
/// other (seen red: with the `cancelled` branch of `recover_expired`
/// disabled, the task went back to `ready`, and on SQLite the live host
/// claimed it and ran it to `completed`).
async fn a_cancelled_executions_running_task_is_not_resurrected(db: Db) {
    let db = TestDb::new(db).await;
    let (r, started) = idle_chain(&db).await;
    let ghost = uuid::Uuid::now_v7();
    let claimed = r
        .store()
        .claim_tasks(ghost, 10, culvert::now_ms() + 300, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    r.cancel("public", started.id).await.unwrap();
    assert_eq!(
        task(&tasks(&r, started.id).await, "a").status,
        TaskStatus::Running,
        "the ghost still holds it"
    );
    // A live host: its sweep finds the expired lease, its claim loop would
    // run the task if it were made ready again.
    r.start();
    let a = eventually(
        Duration::from_secs(20),
        "the sweep to take the task",
        || {
            let r = &r;
            async move {
                let ts = tasks(r, started.id).await;
                let a = task(&ts, "a").clone();
                (a.status != TaskStatus::Running).then_some(a)
            }
        },
    )
    .await;
    assert_eq!(a.status, TaskStatus::Skipped, "{a:?}");
    assert_eq!(a.skip_reason.as_deref(), Some("execution cancelled"));
    // Give a (wrong) claim loop time to pick it up: several recovery and
    // poll intervals. Nothing must happen in that time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ts = tasks(&r, started.id).await;
    assert_eq!(task(&ts, "a").status, TaskStatus::Skipped);
    assert!(ts.iter().all(|t| t.status == TaskStatus::Skipped), "{ts:?}");
    let (row, _, events) = r.execution("public", started.id).await.unwrap();
    assert_eq!(row.status, ExecutionStatus::Cancelled);
    let claims: Vec<_> = events.iter().filter(|e| e.kind == "claimed").collect();
    assert_eq!(claims.len(), 1, "only the ghost's claim: {events:?}");
    assert!(!events.iter().any(|e| e.kind == "recovered"), "{events:?}");
    assert_eq!(r.executor().stats().claimed, 0);
    r.shutdown().await;
}

/// New executions use the newest *registered* version: 0.2.0 registered
/// first, then 0.1.0, so 0.1.0 runs (its tasks write `version: 1`);
/// naming 0.2.0 still runs 0.2.0.
///
/// Catches: picking the highest version number instead (seen red: with
/// `runner::find_workflow` keeping the greatest version, 0.2.0 ran).
async fn the_newest_registration_wins_not_the_highest_version(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner_with(
        &db,
        &[artifacts::SANDBOX_PROBE_V2, artifacts::SANDBOX_PROBE],
    )
    .await;
    let done = run_to_end(&r, "slow", json!({"ms": 1})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.package_version, "0.1.0");
    assert_eq!(done.output.unwrap()["version"], 1);
    let named = r
        .start_execution("public", "slow", Some("0.2.0"), ctx(json!({"ms": 1})))
        .await
        .unwrap();
    let named = r
        .wait(named.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(named.output.unwrap()["version"], 2);
    r.shutdown().await;
}

/// A removed package's pending execution runs from the component bytes
/// stored for it, on a host that never loaded the package: the first
/// runner registers, starts and removes, then goes away; a second runner
/// with its own empty cache directory, started afterwards, runs it.
///
/// Catches: garbage collection deleting bytes that a pending execution
/// still needs (seen red: with the `executions` condition dropped from
/// `GC_BLOBS`, the task failed with kind `host`, "cannot load the
/// execution's package").
async fn a_removed_packages_pending_execution_runs_on_a_fresh_host(db: Db) {
    let db = TestDb::new(db).await;
    let first = Runner::open(config(&db)).await.unwrap();
    first
        .register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let pending = first
        .start_execution("public", "chain", None, ctx(json!({"seed": 7})))
        .await
        .unwrap();
    first
        .remove_package("public", "sandbox-probe", None)
        .await
        .unwrap();
    assert!(first.list_packages(None).await.unwrap().is_empty());
    drop(first);

    let c = config(&db).cache_dir(db.dir().join("fresh-cache"));
    let second = Runner::open(c).await.unwrap();
    second.start();
    let done = second
        .wait(pending.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let out = done.output.unwrap();
    assert_eq!(out["trail"], json!(["a", "b", "c"]));
    assert_eq!(out["seed"], 7);
    assert!(
        second.registry().is_empty(),
        "the second host never loaded the package"
    );
    second.shutdown().await;
}

/// A store that fails completion writes on purpose, delegating everything
/// else: to test the executor's retries of a completion write and its
/// fallback from group commit to single writes without depending on when
/// a real database happens to fail.
mod faulty {
    use async_trait::async_trait;
    use culvert::ExecutionPlan;
    use culvert::{ApiKeyRow, AuditEntry, AuditRow};
    use culvert::{
        Backend, ClaimedTask, Completion, EventRow, ExecutionFilter, ExecutionRow, ExecutionStore,
        HostRecord, NewExecution, NewPackage, PackageEvent, PackageRow, Recovered, Registration,
        StoreResult as Result, TaskOutcome, TaskRow,
    };
    use culvert::{ExecutionStatus, Store, StoreError};
    use culvert::{Grant, GrantKind, TenantLimits, TenantRow};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use uuid::Uuid;

    /// Fails the first `fail_first` group commits with `Unavailable`, and
    /// every later group commit of more than one completion with `Other`;
    /// single writes (`complete_task`) go through. Each group commit first
    /// waits 100 ms, so that completions finishing meanwhile queue up and
    /// the next batch holds several.
    #[derive(Debug)]
    pub struct Faulty {
        pub inner: Arc<dyn Store>,
        pub fail_first: AtomicU32,
        /// Group commits refused because they held several completions.
        pub refused_batches: AtomicU32,
        /// Single writes (the fallback) that went through.
        pub single_writes: AtomicU32,
    }

    impl Faulty {
        pub fn new(inner: Arc<dyn Store>, fail_first: u32) -> Self {
            Self {
                inner,
                fail_first: AtomicU32::new(fail_first),
                refused_batches: AtomicU32::new(0),
                single_writes: AtomicU32::new(0),
            }
        }
    }

    #[async_trait]
    impl ExecutionStore for Faulty {
        async fn create_execution(&self, new: NewExecution<'_>) -> Result<ExecutionRow> {
            self.inner.create_execution(new).await
        }
        async fn get_execution(&self, tenant: Option<&str>, id: Uuid) -> Result<ExecutionRow> {
            self.inner.get_execution(tenant, id).await
        }
        async fn execution_by_idempotency_key(
            &self,
            tenant: &str,
            key: &str,
        ) -> Result<Option<ExecutionRow>> {
            self.inner.execution_by_idempotency_key(tenant, key).await
        }
        async fn list_executions(&self, filter: ExecutionFilter<'_>) -> Result<Vec<ExecutionRow>> {
            self.inner.list_executions(filter).await
        }
        async fn execution_events_after(
            &self,
            id: Uuid,
            after: i64,
            limit: i64,
        ) -> Result<Vec<EventRow>> {
            self.inner.execution_events_after(id, after, limit).await
        }
        async fn execution_tasks(&self, id: Uuid) -> Result<Vec<TaskRow>> {
            self.inner.execution_tasks(id).await
        }
        async fn execution_events(&self, id: Uuid) -> Result<Vec<EventRow>> {
            self.inner.execution_events(id).await
        }
        async fn execution_plan(&self, id: Uuid) -> Result<ExecutionPlan> {
            self.inner.execution_plan(id).await
        }
        async fn claim_tasks(
            &self,
            host: Uuid,
            limit: u32,
            lease_until: i64,
            only_execution: Option<Uuid>,
        ) -> Result<Vec<ClaimedTask>> {
            self.inner
                .claim_tasks(host, limit, lease_until, only_execution)
                .await
        }
        async fn complete_task(
            &self,
            host: Uuid,
            task: &ClaimedTask,
            outcome: TaskOutcome,
            plan: &ExecutionPlan,
        ) -> Result<Completion> {
            let done = self.inner.complete_task(host, task, outcome, plan).await;
            self.single_writes.fetch_add(1, Ordering::SeqCst);
            done
        }
        async fn complete_tasks(
            &self,
            host: Uuid,
            batch: &[(ClaimedTask, TaskOutcome, Arc<ExecutionPlan>)],
        ) -> Result<Vec<Completion>> {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::Unavailable("injected outage".into()));
            }
            if batch.len() > 1 {
                self.refused_batches.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::Other("injected batch failure".into()));
            }
            self.inner.complete_tasks(host, batch).await
        }
        async fn heartbeat(
            &self,
            host: Uuid,
            lease_until: i64,
            claims: &[(Uuid, String, Uuid)],
        ) -> Result<u64> {
            self.inner.heartbeat(host, lease_until, claims).await
        }
        async fn recover_expired(&self, host: Uuid, max_recoveries: u32) -> Result<Vec<Recovered>> {
            self.inner.recover_expired(host, max_recoveries).await
        }
        async fn task_states(
            &self,
            execution_id: Uuid,
            ids: &[String],
        ) -> Result<Vec<culvert::TaskState>> {
            self.inner.task_states(execution_id, ids).await
        }
        async fn task_outputs(
            &self,
            execution_id: Uuid,
            ids: &[String],
        ) -> Result<Vec<(String, String)>> {
            self.inner.task_outputs(execution_id, ids).await
        }
        async fn finalize_execution(
            &self,
            host: Uuid,
            id: Uuid,
        ) -> Result<Option<ExecutionStatus>> {
            self.inner.finalize_execution(host, id).await
        }
        async fn failed_task(&self, id: uuid::Uuid) -> Result<Option<String>> {
            self.inner.failed_task(id).await
        }

        async fn task_input(&self, id: uuid::Uuid, task: &str) -> Result<Option<String>> {
            self.inner.task_input(id, task).await
        }

        async fn count_unfinished(&self, tenant: &str) -> Result<i64> {
            self.inner.count_unfinished(tenant).await
        }
        async fn cancel_execution(&self, tenant: &str, id: Uuid) -> Result<ExecutionRow> {
            self.inner.cancel_execution(tenant, id).await
        }
        async fn retry_execution(
            &self,
            tenant: &str,
            id: Uuid,
            reset: &[culvert::TaskReset],
            limits: &TenantLimits,
        ) -> Result<ExecutionRow> {
            self.inner.retry_execution(tenant, id, reset, limits).await
        }
        async fn cancelled_running(&self, host: Uuid) -> Result<Vec<(Uuid, String)>> {
            self.inner.cancelled_running(host).await
        }
        async fn fleet_counts(&self) -> Result<culvert::FleetCounts> {
            self.inner.fleet_counts().await
        }
        async fn task_logs(
            &self,
            execution_id: Uuid,
            task: Option<&str>,
            attempt: Option<u32>,
        ) -> Result<Vec<culvert::AttemptLogs>> {
            self.inner.task_logs(execution_id, task, attempt).await
        }
        async fn prune_finished(
            &self,
            finished_before_ms: i64,
            batch: u32,
        ) -> Result<culvert::PruneReport> {
            self.inner.prune_finished(finished_before_ms, batch).await
        }
    }

    #[async_trait]
    impl culvert::ScheduleStore for Faulty {
        async fn create_schedule(
            &self,
            new: culvert::NewSchedule<'_>,
        ) -> Result<culvert::ScheduleRow> {
            self.inner.create_schedule(new).await
        }
        async fn list_schedules(&self, tenant: Option<&str>) -> Result<Vec<culvert::ScheduleRow>> {
            self.inner.list_schedules(tenant).await
        }
        async fn get_schedule(
            &self,
            tenant: Option<&str>,
            id: Uuid,
        ) -> Result<culvert::ScheduleRow> {
            self.inner.get_schedule(tenant, id).await
        }
        async fn set_schedule_paused(
            &self,
            tenant: &str,
            id: Uuid,
            paused: bool,
            next_due_at: Option<i64>,
        ) -> Result<culvert::ScheduleRow> {
            self.inner
                .set_schedule_paused(tenant, id, paused, next_due_at)
                .await
        }
        async fn delete_schedule(&self, tenant: &str, id: Uuid) -> Result<culvert::ScheduleRow> {
            self.inner.delete_schedule(tenant, id).await
        }
        async fn sync_declared_schedules(
            &self,
            tenant: &str,
            package: &str,
            declared: &[culvert::DeclaredSchedule],
        ) -> Result<()> {
            self.inner
                .sync_declared_schedules(tenant, package, declared)
                .await
        }
        async fn due_schedules(&self, now: i64, limit: i64) -> Result<Vec<culvert::ScheduleRow>> {
            self.inner.due_schedules(now, limit).await
        }
        async fn schedule_running(&self, id: Uuid) -> Result<bool> {
            self.inner.schedule_running(id).await
        }
        async fn commit_fires(
            &self,
            commit: culvert::FireCommit<'_>,
        ) -> Result<Option<Vec<culvert::FireRow>>> {
            self.inner.commit_fires(commit).await
        }
        async fn schedule_fires(&self, id: Uuid, limit: i64) -> Result<Vec<culvert::FireRow>> {
            self.inner.schedule_fires(id, limit).await
        }
    }

    #[async_trait]
    impl Store for Faulty {
        fn backend(&self) -> Backend {
            self.inner.backend()
        }
        fn display_url(&self) -> String {
            self.inner.display_url()
        }
        async fn register_package(&self, package: NewPackage<'_>) -> Result<Registration> {
            self.inner.register_package(package).await
        }
        async fn list_packages(&self, tenant: Option<&str>) -> Result<Vec<PackageRow>> {
            self.inner.list_packages(tenant).await
        }
        async fn package_fingerprints(&self) -> Result<Vec<(Uuid, String)>> {
            self.inner.package_fingerprints().await
        }
        async fn get_package(&self, id: Uuid) -> Result<PackageRow> {
            self.inner.get_package(id).await
        }
        async fn blob(&self, content_hash: &str) -> Result<Vec<u8>> {
            self.inner.blob(content_hash).await
        }
        async fn remove_packages(
            &self,
            tenant: &str,
            name: &str,
            version: Option<&str>,
        ) -> Result<Vec<PackageRow>> {
            self.inner.remove_packages(tenant, name, version).await
        }
        async fn collect_garbage(&self) -> Result<u64> {
            self.inner.collect_garbage().await
        }
        fn package_events(&self) -> tokio::sync::broadcast::Receiver<PackageEvent> {
            self.inner.package_events()
        }
        async fn upsert_host(&self, host: &HostRecord) -> Result<()> {
            self.inner.upsert_host(host).await
        }
        async fn live_hosts(&self, since_ms: i64) -> Result<Vec<HostRecord>> {
            self.inner.live_hosts(since_ms).await
        }
        async fn remove_host(&self, id: Uuid) -> Result<()> {
            self.inner.remove_host(id).await
        }
        async fn create_tenant(&self, name: &str, limits: &TenantLimits) -> Result<TenantRow> {
            self.inner.create_tenant(name, limits).await
        }
        async fn get_tenant(&self, name: &str) -> Result<TenantRow> {
            self.inner.get_tenant(name).await
        }
        async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
            self.inner.list_tenants().await
        }
        async fn update_tenant(&self, name: &str, limits: &TenantLimits) -> Result<TenantRow> {
            self.inner.update_tenant(name, limits).await
        }
        async fn delete_tenant(&self, name: &str) -> Result<()> {
            self.inner.delete_tenant(name).await
        }
        async fn add_grant(&self, grant: &Grant) -> Result<()> {
            self.inner.add_grant(grant).await
        }
        async fn remove_grant(
            &self,
            tenant: &str,
            package: &str,
            kind: GrantKind,
            name: &str,
        ) -> Result<()> {
            self.inner.remove_grant(tenant, package, kind, name).await
        }
        async fn list_grants(&self, tenant: &str) -> Result<Vec<Grant>> {
            self.inner.list_grants(tenant).await
        }
        async fn trust_key(&self, key: &culvert::TrustedKey) -> Result<culvert::TrustedKey> {
            self.inner.trust_key(key).await
        }
        async fn untrust_key(
            &self,
            tenant: &str,
            key: &str,
            by: &str,
        ) -> Result<culvert::TrustedKey> {
            self.inner.untrust_key(tenant, key, by).await
        }
        async fn trusted_key(
            &self,
            tenant: &str,
            key_id: &str,
        ) -> Result<Option<culvert::TrustedKey>> {
            self.inner.trusted_key(tenant, key_id).await
        }
        async fn trusted_keys(&self, tenant: Option<&str>) -> Result<Vec<culvert::TrustedKey>> {
            self.inner.trusted_keys(tenant).await
        }
        async fn create_api_key(&self, row: &ApiKeyRow, hash: &str) -> Result<()> {
            self.inner.create_api_key(row, hash).await
        }
        async fn api_key(&self, id: &str) -> Result<(ApiKeyRow, String)> {
            self.inner.api_key(id).await
        }
        async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRow>> {
            self.inner.list_api_keys(tenant).await
        }
        async fn revoke_api_key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKeyRow> {
            self.inner.revoke_api_key(tenant, id).await
        }
        async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
            self.inner.record_audit(entry).await
        }
        async fn audit_log(
            &self,
            tenant: Option<&str>,
            before: Option<i64>,
            limit: i64,
        ) -> Result<Vec<AuditRow>> {
            self.inner.audit_log(tenant, before, limit).await
        }

        async fn shared_secret(&self, name: &str) -> Result<Vec<u8>> {
            self.inner.shared_secret(name).await
        }
    }
}

/// Every task of `id` has exactly one `completed` event and one completed
/// row: nothing lost, nothing recorded twice.
async fn each_task_completed_once(r: &Runner, id: uuid::Uuid) {
    let (row, ts, events) = r.execution("public", id).await.unwrap();
    assert_eq!(row.status, ExecutionStatus::Completed, "{:?}", row.error);
    for t in &ts {
        assert_eq!(t.status, TaskStatus::Completed, "{t:?}");
        let completed = events
            .iter()
            .filter(|e| e.kind == "completed" && e.task_id.as_deref() == Some(&t.task_id))
            .count();
        assert_eq!(completed, 1, "task {} of {id}: {events:?}", t.task_id);
    }
}

/// Completion writes under trouble, injected by a store wrapper. First
/// the chain's completions, one at a time: the first three group commits
/// fail as if the database were down, and the executor retries until one
/// goes through. Then six parallel tasks finishing together: every group
/// commit of several completions fails outright, and the recorder writes
/// them one by one. Every task is recorded exactly once, with one attempt
/// and no recovery (nothing was handed to another attempt).
///
/// Catches: no retry of a failed completion write (seen red: with
/// `attempt < 20` made `attempt < 0` in `Executor::run_one`, the result was
/// dropped and the task recovered after its lease ran out), and no
/// fallback to single writes (seen red: with the recorder's fallback
/// replying the batch's error to every completion, no single write went
/// through).
async fn completion_writes_are_retried_and_fall_back_to_single_writes(db: Db) {
    let db = TestDb::new(db).await;
    let inner = culvert::open_store(&db.url).await.unwrap();
    let faulty = Arc::new(faulty::Faulty::new(inner, 3));
    let mut c = config(&db);
    // Short enough that a dropped completion shows as a recovery within
    // the test's wait.
    c.executor.lease = Duration::from_secs(3);
    c.executor.heartbeat_interval = Duration::from_secs(1);
    let r = Runner::with_store(faulty.clone(), c).unwrap();
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    r.start();
    let chain = run_to_end(&r, "chain", json!({})).await;
    each_task_completed_once(&r, chain.id).await;
    assert_eq!(faulty.fail_first.load(Ordering::SeqCst), 0);
    let parallel = run_to_end(&r, "parallel", json!({"ms": 200})).await;
    each_task_completed_once(&r, parallel.id).await;
    for id in [chain.id, parallel.id] {
        let ts = tasks(&r, id).await;
        assert!(
            ts.iter().all(|t| t.attempt == 1 && t.recoveries == 0),
            "{ts:?}"
        );
    }
    assert!(
        faulty.refused_batches.load(Ordering::SeqCst) >= 1,
        "no group commit held several completions"
    );
    assert!(faulty.single_writes.load(Ordering::SeqCst) >= 2);
    assert_eq!(r.executor().stats().discarded, 0);
    r.shutdown().await;
}

/// A short database outage while tasks complete: on PostgreSQL every
/// connection of the runner is terminated (`pg_terminate_backend`) every
/// 100 ms for 2 s; on SQLite another connection holds `BEGIN EXCLUSIVE`
/// for 2 s. Twenty-four 300 ms tasks start just before, so their
/// completions land in the outage. Afterwards every task is completed and
/// recorded exactly once (one `completed` event each).
///
/// Catches: a short outage failing tasks for good (seen red in 3 of 4
/// runs on PostgreSQL before `Executor::run_one` retried reading the
/// execution: "task 'p2' failed: host: cannot load the execution's
/// package: ... terminating connection due to administrator command").
/// Whether a completion write itself meets a dead connection depends on
/// timing (the pool checks connections before handing them out), so the
/// retry and fallback of completion writes are pinned down by
/// `completion_writes_are_retried_and_fall_back_to_single_writes`, not
/// here. On SQLite the writers wait out the lock (busy timeout 30 s).
async fn completions_survive_a_short_database_outage(kind: Db) {
    init_tracing();
    let db = TestDb::new(kind).await;
    let mut c = config(&db);
    // Short enough that a dropped completion would be recovered (and show)
    // within the test's wait.
    c.executor.lease = Duration::from_secs(3);
    c.executor.heartbeat_interval = Duration::from_secs(1);
    let r = Runner::open(c).await.unwrap();
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    r.start();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let e = r
            .start_execution("public", "parallel", None, ctx(json!({"ms": 300})))
            .await
            .unwrap();
        ids.push(e.id);
    }
    let first = ids[0];
    eventually(Duration::from_secs(30), "a task to run", || {
        let r = &r;
        async move {
            let ts = tasks(r, first).await;
            ts.iter()
                .any(|t| t.status == TaskStatus::Running)
                .then_some(())
        }
    })
    .await;
    match kind {
        Db::Postgres => {
            use sqlx::Connection;
            let mut killer = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let t0 = Instant::now();
            let mut killed = 0u64;
            while t0.elapsed() < Duration::from_secs(2) {
                let rows = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .fetch_all(&mut killer)
                .await
                .unwrap();
                killed += rows.len() as u64;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(killed > 0, "no connection of the runner was terminated");
        }
        Db::Sqlite => {
            use sqlx::Connection;
            let mut locker = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE")
                .execute(&mut locker)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
        }
    }
    for id in ids {
        let done = r.wait(id, Some(Duration::from_secs(60))).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
        each_task_completed_once(&r, id).await;
        let ts = tasks(&r, id).await;
        assert!(
            ts.iter().all(|t| t.attempt == 1 && t.recoveries == 0),
            "{ts:?}"
        );
    }
    r.shutdown().await;
}

/// Starts written as one group (`create_executions`, what concurrent API
/// requests become): a quota refusal and an unknown tenant fail only their
/// own start; a start whose roots are all skipped finishes in the group;
/// every row returned is the row stored; audit entries name their
/// execution. An idempotency key given twice undoes the group, and the
/// starts are retried alone: only the second fails.
async fn grouped_starts_fail_alone_and_read_back_as_written(db: Db) {
    use culvert::{
        AuditAction, AuditEntry, Condition, ExecutionPlan, NewExecution, StoreError, TenantLimits,
        TriggerRule,
    };
    let db = TestDb::new(db).await;
    let r = Runner::open(config(&db)).await.unwrap();
    let small = TenantLimits {
        max_queued_executions: 1,
        ..TenantLimits::default()
    };
    r.create_tenant("small", &small).await.unwrap();
    for tenant in ["public", "small"] {
        r.register_package(tenant, &read(artifacts::SANDBOX_PROBE))
            .await
            .unwrap();
    }
    let package = r.list_packages(Some("public")).await.unwrap().remove(0);
    let chain = package
        .metadata
        .workflows
        .iter()
        .find(|w| w.name == "chain")
        .unwrap()
        .clone();
    let plan = ExecutionPlan::new(chain.clone());
    // The same DAG, its root skipped unless the context says `go`: the
    // skip unlocks the next task in the group's transaction.
    let mut skipping = chain;
    for t in skipping
        .tasks
        .iter_mut()
        .filter(|t| t.dependencies.is_empty())
    {
        t.trigger = Some(TriggerRule::All(vec![Condition::ContextExists {
            key: "go".into(),
        }]));
    }
    // Its root alone: nothing left to run, so it finishes in the group.
    let mut lone = skipping.clone();
    lone.tasks.retain(|t| t.dependencies.is_empty());
    let (skipping, lone) = (ExecutionPlan::new(skipping), ExecutionPlan::new(lone));
    let limits = TenantLimits::default();
    let context = ctx(json!({"n": 1}));
    let audit = AuditEntry {
        key_id: Some("k1".into()),
        key_name: Some("ci".into()),
        tenant: "public".into(),
        action: AuditAction::ExecutionStarted,
        subject: String::new(),
        detail: json!({}),
    };
    let new = |tenant, plan, key, audit| NewExecution {
        tenant,
        package_id: package.id,
        package_name: &package.name,
        package_version: &package.version,
        content_hash: &package.content_hash,
        plan,
        context: &context,
        limits: if tenant == "small" { &small } else { &limits },
        idempotency_key: key,
        audit,
        schedule: None,
    };
    let store = r.store();
    let results = store
        .create_executions(&[
            new("public", &plan, Some("a"), Some(&audit)),
            new("small", &plan, None, None),
            new("small", &plan, None, None),
            new("ghost", &plan, None, None),
            new("public", &skipping, None, None),
            new("public", &lone, None, None),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 6);
    assert!(
        matches!(&results[2], Err(StoreError::Quota(m)) if m.contains("max_queued_executions")),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[3], Err(StoreError::NotFound(m)) if m.contains("ghost")),
        "{:?}",
        results[3]
    );
    for i in [0, 1, 4, 5] {
        let row = results[i].as_ref().unwrap();
        let stored = store.get_execution(None, row.id).await.unwrap();
        assert_eq!(
            serde_json::to_value(row).unwrap(),
            serde_json::to_value(&stored).unwrap(),
            "start {i}: the row returned is the row stored"
        );
    }
    assert_eq!(
        results[0].as_ref().unwrap().status,
        ExecutionStatus::Pending
    );
    assert_eq!(results[0].as_ref().unwrap().tasks_remaining, 3);
    let skipped = results[4].as_ref().unwrap();
    assert_eq!(skipped.status, ExecutionStatus::Pending);
    assert_eq!(skipped.tasks_remaining, 2, "{skipped:?}");
    let t = tasks(&r, skipped.id).await;
    assert_eq!(task(&t, "a").status, TaskStatus::Skipped);
    assert_eq!(task(&t, "b").status, TaskStatus::Ready);
    let finished = results[5].as_ref().unwrap();
    assert_eq!(finished.status, ExecutionStatus::Completed, "{finished:?}");
    assert_eq!(finished.tasks_remaining, 0);
    assert_eq!(store.count_unfinished("small").await.unwrap(), 1);
    let log = store.audit_log(Some("public"), None, 10).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].subject, results[0].as_ref().unwrap().id.to_string());
    assert_eq!(log[0].detail["workflow"], "chain");
    // The same key twice in one group.
    let results = store
        .create_executions(&[
            new("public", &plan, Some("b"), None),
            new("public", &plan, Some("b"), None),
        ])
        .await
        .unwrap();
    let first = results[0].as_ref().unwrap();
    assert!(
        matches!(&results[1], Err(StoreError::Conflict(_))),
        "{:?}",
        results[1]
    );
    let replayed = store
        .execution_by_idempotency_key("public", "b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed.id, first.id);
}
