//! What guests said, stored per attempt, and retention: the logs of
//! succeeded, failed (and retried), panicked and truncated attempts; a
//! tenant cannot read another's; pruning removes old finished executions
//! with their tasks, events and logs, and nothing else, also with two
//! pruners at once. Every scenario runs on SQLite and on PostgreSQL.

use culvert::{
    AttemptLogs, ExecutionRow, ExecutionStatus, LOG_RECORD_OVERHEAD, LogStream, Runner,
    RunnerConfig, StoreError, TASK_LOG_BYTES, TenantLimits, now_ms,
};
use culvert_tests::{Db, TestDb, artifacts, init_tracing, read};
use serde_json::{Value, json};
use std::time::Duration;

culvert_tests::both_backends!(
    attempts_keep_what_their_guests_said,
    logs_are_capped_per_attempt_and_marked_truncated,
    a_panicking_attempt_keeps_its_logs,
    another_tenants_logs_are_not_found,
    pruning_removes_old_finished_executions_only,
    concurrent_pruners_share_the_work,
);

fn config(db: &TestDb) -> RunnerConfig {
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 32;
    c.executor.poll_interval = Duration::from_millis(20);
    c
}

/// A started runner with the probe registered for `public`.
async fn runner(db: &TestDb) -> Runner {
    let r = Runner::open(config(db)).await.expect("open runner");
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .expect("register");
    r.start();
    r
}

async fn run_to_end(r: &Runner, workflow: &str, context: Value) -> ExecutionRow {
    let started = r
        .start_execution(
            "public",
            workflow,
            None,
            context.as_object().unwrap().clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("start {workflow}: {e}"));
    r.wait(started.id, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("wait {workflow}: {e}"))
}

/// `(stream, level, message, fields)` of a record.
type Record<'a> = (LogStream, Option<&'a str>, &'a str, Vec<(&'a str, &'a str)>);

/// Each record of `a`.
fn records(a: &AttemptLogs) -> Vec<Record<'_>> {
    a.records
        .iter()
        .map(|r| {
            (
                r.stream,
                r.level.as_deref(),
                r.message.as_str(),
                r.fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            )
        })
        .collect()
}

/// `chatty`'s `talk` fails its first attempt and succeeds on its retry:
/// both attempts are stored, each with its log records (level, message,
/// fields) and its stdout and stderr lines, in the order the guest wrote
/// them; `task` and `attempt` select.
async fn attempts_keep_what_their_guests_said(db: Db) {
    init_tracing();
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let done = run_to_end(&r, "chatty", json!({"lines": 3})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);

    let talk = r.logs("public", done.id, Some("talk"), None).await.unwrap();
    assert_eq!(
        talk.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2],
        "{talk:?}"
    );
    for a in &talk {
        let n = a.attempt.to_string();
        let expected = vec![
            (
                LogStream::Log,
                Some("info"),
                format!("hello from attempt {n}"),
                vec![("attempt", n.as_str()), ("who", "talk")],
            ),
            (
                LogStream::Stdout,
                None,
                format!("stdout of attempt {n}"),
                vec![],
            ),
            (
                LogStream::Stderr,
                None,
                format!("stderr of attempt {n}"),
                vec![],
            ),
            (
                LogStream::Log,
                Some("warn"),
                format!("done with attempt {n}"),
                vec![],
            ),
        ];
        let got = records(a);
        assert_eq!(got.len(), expected.len(), "{got:?}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!((g.0, g.1, g.2, &g.3), (e.0, e.1, e.2.as_str(), &e.3));
        }
        assert!(!a.truncated);
        assert_eq!(a.dropped_bytes, 0);
        let text: usize = a.records.iter().map(|r| r.message.len()).sum::<usize>()
            + "attempt".len()
            + n.len()
            + "who".len()
            + "talk".len()
            + 4;
        assert_eq!(a.bytes as usize, text + 4 * LOG_RECORD_OVERHEAD);
    }
    // The first attempt's logs were stored with its failure, before the
    // retry ran.
    assert!(talk[0].recorded_at <= talk[1].recorded_at);

    let second = r.logs("public", done.id, None, Some(2)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].task, "talk");
    let all = r.logs("public", done.id, None, None).await.unwrap();
    let mut tasks: Vec<(&str, u32)> = all.iter().map(|a| (a.task.as_str(), a.attempt)).collect();
    tasks.sort();
    assert_eq!(tasks, [("talk", 1), ("talk", 2), ("verbose", 1)]);
    assert!(
        r.logs("public", done.id, Some("nope"), None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `verbose` logs 2000 records of 100 bytes (about 200 KiB, within the
/// default 1 MiB output budget, so the task succeeds): the stored attempt
/// holds the first records up to [`TASK_LOG_BYTES`], in order, and is
/// marked truncated with the bytes it dropped.
async fn logs_are_capped_per_attempt_and_marked_truncated(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let done = run_to_end(&r, "chatty", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.as_ref().unwrap()["logged"], 2000);
    let logs = r
        .logs("public", done.id, Some("verbose"), None)
        .await
        .unwrap();
    assert_eq!(logs.len(), 1);
    let a = &logs[0];
    let kept = TASK_LOG_BYTES / (100 + LOG_RECORD_OVERHEAD);
    assert_eq!(a.records.len(), kept);
    assert!(a.bytes as usize <= TASK_LOG_BYTES);
    assert!(a.truncated);
    assert_eq!(a.dropped_bytes as usize, (2000 - kept) * 100);
    for (i, rec) in a.records.iter().enumerate() {
        assert!(rec.message.starts_with(&format!("{i:06} ")), "{i}: {rec:?}");
    }
}

/// The probe's `forge` workflow: `forge_output` fails (permanent) and
/// `forge_panic` panics; both attempts' records are stored, and stored as
/// the guest wrote them (escaping is for printing).
async fn a_panicking_attempt_keeps_its_logs(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let done = run_to_end(&r, "forge", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let output = r
        .logs("public", done.id, Some("forge_output"), None)
        .await
        .unwrap();
    assert_eq!(output.len(), 1);
    let got = records(&output[0]);
    assert_eq!(got[0].0, LogStream::Log);
    assert_eq!(got[0].1, Some("error"));
    assert!(got[0].2.starts_with("log message\n2099-"), "{got:?}");
    assert!(got[0].2.contains('\x1b'));
    assert!(got.iter().any(|g| g.0 == LogStream::Stdout));
    assert!(got.iter().any(|g| g.0 == LogStream::Stderr));
    let panic = r
        .logs("public", done.id, Some("forge_panic"), None)
        .await
        .unwrap();
    assert_eq!(panic.len(), 1, "a trapped attempt's logs are stored");
    assert!(
        panic[0]
            .records
            .iter()
            .any(|rec| rec.message.contains("panic message")),
        "{:?}",
        panic[0].records
    );
}

/// Logs are read through the execution's tenant: another tenant's, or an
/// unknown id, is "not found".
async fn another_tenants_logs_are_not_found(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    r.create_tenant("other", &TenantLimits::default())
        .await
        .unwrap();
    let done = run_to_end(&r, "chatty", json!({"lines": 1})).await;
    assert!(
        !r.logs("public", done.id, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    let e = r.logs("other", done.id, None, None).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = r
        .logs("public", uuid::Uuid::now_v7(), None, None)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    // Deleting a tenant deletes its logs.
    r.register_package("other", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let theirs = r
        .start_execution(
            "other",
            "chatty",
            None,
            json!({"lines": 1}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    let theirs = r
        .wait(theirs.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        r.store()
            .task_logs(theirs.id, None, None)
            .await
            .unwrap()
            .len(),
        3
    );
    r.delete_tenant("other", false).await.unwrap();
    assert!(
        r.store()
            .task_logs(theirs.id, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        r.store()
            .task_logs(done.id, None, None)
            .await
            .unwrap()
            .len(),
        3
    );
}

/// Two executions finished before the cut-off are pruned (one per batch)
/// with every task, event and log row; one finished after it and one still
/// running are kept whole; a second prune finds nothing.
async fn pruning_removes_old_finished_executions_only(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let store = r.store().clone();
    let old = [
        run_to_end(&r, "chatty", json!({"lines": 2})).await,
        run_to_end(&r, "forge", json!({})).await,
    ];
    let mut expected = culvert::PruneReport::default();
    for e in &old {
        expected.executions += 1;
        expected.tasks += store.execution_tasks(e.id).await.unwrap().len() as u64;
        expected.events += store.execution_events(e.id).await.unwrap().len() as u64;
        expected.logs += store.task_logs(e.id, None, None).await.unwrap().len() as u64;
    }
    assert_eq!(expected.logs, 5, "chatty's three attempts, forge's two");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let recent = run_to_end(&r, "chatty", json!({"lines": 2})).await;
    let running = r
        .start_execution(
            "public",
            "slow",
            None,
            json!({"ms": 60_000}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();

    let report = store.prune_finished(cutoff, 1).await.unwrap();
    assert_eq!(
        (report.executions, report.tasks, report.events, report.logs),
        (
            expected.executions,
            expected.tasks,
            expected.events,
            expected.logs
        )
    );
    for e in &old {
        assert!(matches!(
            store.get_execution(None, e.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.execution_tasks(e.id).await.unwrap().is_empty());
        assert!(store.execution_events(e.id).await.unwrap().is_empty());
        assert!(store.task_logs(e.id, None, None).await.unwrap().is_empty());
    }
    assert_eq!(store.execution_tasks(recent.id).await.unwrap().len(), 2);
    assert_eq!(
        store.task_logs(recent.id, None, None).await.unwrap().len(),
        3
    );
    assert_eq!(store.execution_tasks(running.id).await.unwrap().len(), 4);
    // The package is still registered: its blob stays.
    assert_eq!(report.blobs, 0);
    assert!(store.prune_finished(cutoff, 1).await.unwrap().is_empty());
    // Through the runner: nothing finished a day ago.
    assert!(
        r.prune(Duration::from_secs(86_400))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(r.store().get_execution(None, recent.id).await.is_ok());
}

/// Two pruners at once over twelve finished executions, two per batch:
/// neither fails, and together they delete each execution once.
async fn concurrent_pruners_share_the_work(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(run_to_end(&r, "chain", json!({})).await.id);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = now_ms();
    let other = culvert::open_store(&db.url).await.unwrap();
    let (a, b) = tokio::join!(
        r.store().prune_finished(cutoff, 2),
        other.prune_finished(cutoff, 2)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.executions + b.executions, 12, "{a:?} {b:?}");
    assert_eq!(a.tasks + b.tasks, 36);
    for id in ids {
        assert!(r.store().execution_tasks(id).await.unwrap().is_empty());
    }
}
