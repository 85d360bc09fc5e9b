//! Real `culvert` processes: crash recovery with `kill -9` at several points
//! of a workflow, cancellation and a graceful drain across processes,
//! several hosts sharing one PostgreSQL, and the CLI's behaviour on bad
//! input.

use culvert::Store;
use culvert::{ExecutionStatus, Runner, RunnerConfig, TaskStatus};
use culvert_tests::{Db, TestDb, artifacts, read};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_culvert");
/// The exit code of a command whose workflow failed or was cancelled
/// (docs/OPERATIONS.md).
const EXIT_WORKFLOW_FAILED: i32 = 3;

fn culvert(db: &TestDb) -> Command {
    let mut c = Command::new(BIN);
    c.env("CULVERT_DATABASE_URL", &db.url)
        .env("CULVERT_CACHE_DIR", db.dir().join("cache"))
        .env("CULVERT_DATA_DIR", db.dir().join("data"))
        .env("CULVERT_LOG", "warn")
        // No HTTP API: these tests run several `serve`s at once, and each
        // would bind the default 127.0.0.1:8470 (tests/http.rs covers it).
        .env("CULVERT_LISTEN", "none");
    c
}

/// A `culvert serve` with a 2 s lease, killed when dropped. Its stderr
/// (the log) is collected line by line, so tests can wait on what it says.
struct Serve {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start(db: &TestDb) -> Self {
        Self::start_with(db, "warn", &[])
    }

    /// `serve` with the log filter `log` and `extra` arguments (which may
    /// replace the default `--concurrency 16`).
    fn start_with(db: &TestDb, log: &str, extra: &[&str]) -> Self {
        let concurrency: &[&str] = if extra.contains(&"--concurrency") {
            &[]
        } else {
            &["--concurrency", "16"]
        };
        let mut child = culvert(db)
            .env("CULVERT_LOG", log)
            .args(["serve", "--lease", "2"])
            .args(concurrency)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn culvert serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Serve { child, log }
    }

    /// How many log lines contain `needle`.
    fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until `count` log lines contain `needle`. Events, not time:
    /// `limit` is only there so that a broken build fails instead of
    /// hanging, and is generous for a loaded machine.
    async fn wait_log(&self, needle: &str, count: usize, limit: Duration) {
        let t0 = Instant::now();
        while self.log_count(needle) < count {
            assert!(
                t0.elapsed() < limit,
                "serve never logged {count} x '{needle}' within {limit:?}; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// This host's id, from the line `serve` prints once its executor is
    /// started (`culvert serving: host ID, ...`).
    async fn host_id(&self) -> uuid::Uuid {
        self.wait_log("culvert serving: host ", 1, Duration::from_secs(60))
            .await;
        let log = self.log.lock().unwrap();
        let line = log
            .iter()
            .find(|l| l.contains("culvert serving: host "))
            .unwrap();
        let id = line
            .split("culvert serving: host ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        id.parse().unwrap()
    }

    fn sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Wait for the process to exit on its own.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < limit,
                "serve did not stop within {limit:?}; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        // SIGKILL: no chance to clean up, as in a crash.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Wait until `culvert status --json` lists `host` among the live hosts:
/// its `hosts` row, written once the executor runs.
fn wait_listed(db: &TestDb, host: uuid::Uuid) {
    let t0 = Instant::now();
    loop {
        let (code, out, err) = run_cli(db, &["status", "--json"]);
        assert_eq!(code, 0, "{err}");
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        let listed = status["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["id"] == json!(host.to_string()));
        if listed {
            assert_eq!(status["serving"], true, "{out}");
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "host {host} never listed: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn setup(db: &TestDb) -> Runner {
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 16;
    let r = Runner::open(c).await.unwrap();
    r.register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    r
}

async fn completed_tasks(store: &dyn Store, id: uuid::Uuid) -> usize {
    store
        .execution_tasks(id)
        .await
        .unwrap()
        .iter()
        .filter(|t| t.status == TaskStatus::Completed)
        .count()
}

async fn wait_finished(store: &dyn Store, ids: &[uuid::Uuid], limit: Duration) {
    let started = Instant::now();
    for id in ids {
        loop {
            let row = store.get_execution(None, *id).await.unwrap();
            if row.status.is_finished() {
                break;
            }
            assert!(
                started.elapsed() < limit,
                "execution {id} did not finish within {limit:?} (it is {})",
                row.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every task of `id` completed, and its completion was recorded once.
async fn assert_completed_exactly_once(store: &dyn Store, id: uuid::Uuid) {
    let row = store.get_execution(None, id).await.unwrap();
    assert_eq!(row.status, ExecutionStatus::Completed, "{:?}", row.error);
    let events = store.execution_events(id).await.unwrap();
    let mut completions: HashMap<String, usize> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == "completed") {
        *completions.entry(e.task_id.clone().unwrap()).or_default() += 1;
    }
    let tasks = store.execution_tasks(id).await.unwrap();
    for t in &tasks {
        assert_eq!(t.status, TaskStatus::Completed, "task {}", t.task_id);
        assert_eq!(
            completions.get(&t.task_id),
            Some(&1),
            "task {} completions",
            t.task_id
        );
    }
}

/// Kill -9 `serve` after `kill_after` of the four slow tasks completed,
/// start another, and check the workflow completes with every completion
/// recorded once. Run on both backends.
///
/// Caught breakage: a recovery sweep that leaves expired tasks `running`
/// instead of `ready` (the workflow never finishes).
async fn crash_at(db: Db, kill_after: usize) {
    let db = TestDb::new(db).await;
    let r = setup(&db).await;
    let mut serve = Serve::start(&db);
    let row = r
        .start_execution(
            "public",
            "slow",
            None,
            json!({"ms": 400}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    let store = r.store().clone();
    let t0 = Instant::now();
    loop {
        let done = completed_tasks(store.as_ref(), row.id).await;
        let running = store
            .execution_tasks(row.id)
            .await
            .unwrap()
            .iter()
            .any(|t| t.status == TaskStatus::Running);
        if done >= kill_after && running {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the serve never got there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.kill9();
    let after_kill = completed_tasks(store.as_ref(), row.id).await;
    assert!(after_kill < 4, "killed too late");
    let _second = Serve::start(&db);
    wait_finished(store.as_ref(), &[row.id], Duration::from_secs(40)).await;
    assert_completed_exactly_once(store.as_ref(), row.id).await;
    let done = store.get_execution(None, row.id).await.unwrap();
    assert_eq!(
        done.output.unwrap()["trail"],
        json!(["s1", "s2", "s3", "s4"])
    );
    let tasks = store.execution_tasks(row.id).await.unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.recoveries).sum::<i64>(),
        1,
        "exactly the task running at the kill was recovered"
    );
}

async fn kill_9_during_the_first_task(db: Db) {
    crash_at(db, 0).await;
}

async fn kill_9_during_the_second_task(db: Db) {
    crash_at(db, 1).await;
}

async fn kill_9_during_the_last_task(db: Db) {
    crash_at(db, 3).await;
}

/// A lock the test holds so that no host can record a completion of
/// `execution`: on SQLite the database's write lock (`BEGIN IMMEDIATE` on a
/// connection of the test's own), on PostgreSQL the execution's row and its
/// task rows (`FOR UPDATE`). Dropping the connection rolls it back.
enum Lock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn lock_execution(db: &TestDb, execution: uuid::Uuid) -> Lock {
    use sqlx::Connection;
    match db.kind {
        Db::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            Lock::Sqlite(c)
        }
        Db::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("SELECT 1 FROM executions WHERE id = $1 FOR UPDATE")
                .bind(execution)
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query("SELECT 1 FROM task_executions WHERE execution_id = $1 FOR UPDATE")
                .bind(execution)
                .execute(&mut c)
                .await
                .unwrap();
            Lock::Postgres(c)
        }
    }
}

async fn release(lock: Lock) {
    use sqlx::Connection;
    match lock {
        Lock::Sqlite(mut c) => {
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        Lock::Postgres(mut c) => {
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }
}

/// Wait until every task in `tasks` of `id` is `running`.
async fn wait_running(store: &dyn Store, id: uuid::Uuid, tasks: &[&str]) {
    let t0 = Instant::now();
    loop {
        let rows = store.execution_tasks(id).await.unwrap();
        let running = rows
            .iter()
            .filter(|t| t.status == TaskStatus::Running && tasks.contains(&t.task_id.as_str()))
            .count();
        if running == tasks.len() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{tasks:?} never all ran: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `kill -9` in the dangerous window after the guests returned and before
/// their completions committed. The test holds the database's lock (see
/// [`Lock`]) while `retried`'s two roots run, waits for the `returning`
/// lines each guest prints (the host logs a call's stdout only once the
/// call has returned), and kills the host. Their completions never
/// committed: the rows are still `running`, with no `completed` event. A
/// second host recovers both (one recovery each, the lost attempt given
/// back: attempt 1) and the workflow completes with exactly one
/// `completed` event per task.
///
/// Caught breakage: a recovery sweep that does not give the lost attempt
/// back (the tasks end on attempt 2).
async fn kill_9_after_the_guest_returned_before_its_completion_committed(db: Db) {
    let db = TestDb::new(db).await;
    let r = setup(&db).await;
    let mut serve = Serve::start_with(&db, "warn,culvert::guest=info", &[]);
    let row = r
        .start_execution(
            "public",
            "retried",
            None,
            json!({"ms": 3000}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    let store = r.store().clone();
    wait_running(store.as_ref(), row.id, &["r1", "r2"]).await;
    // The guests sleep 3 s: the lock is taken while they still run.
    let lock = lock_execution(&db, row.id).await;
    serve
        .wait_log("returning r1", 1, Duration::from_secs(60))
        .await;
    serve
        .wait_log("returning r2", 1, Duration::from_secs(60))
        .await;
    serve.kill9();
    release(lock).await;
    let tasks = store.execution_tasks(row.id).await.unwrap();
    for t in tasks.iter().filter(|t| t.task_id != "after") {
        assert_eq!(t.status, TaskStatus::Running, "{t:?}: committed anyway");
    }
    let events = store.execution_events(row.id).await.unwrap();
    assert!(
        !events.iter().any(|e| e.kind == "completed"),
        "a completion committed under the lock: {events:?}"
    );
    let _second = Serve::start(&db);
    wait_finished(store.as_ref(), &[row.id], Duration::from_secs(60)).await;
    assert_completed_exactly_once(store.as_ref(), row.id).await;
    for t in store.execution_tasks(row.id).await.unwrap() {
        let lost = t.task_id != "after";
        assert_eq!(t.recoveries, i64::from(lost), "{t:?}");
        assert_eq!(t.attempt, 1, "{t:?}: the lost attempt was given back");
    }
    let done = store.get_execution(None, row.id).await.unwrap();
    assert_eq!(done.output.unwrap()["trail"], json!(["r1", "r2", "after"]));
}

/// `kill -9` in the middle of a claim (PostgreSQL: SQLite's claim is one
/// `BEGIN IMMEDIATE` transaction, which a lock held by the test blocks
/// before it starts). The test locks the execution's row (`FOR UPDATE`)
/// before any host runs; the host's claim transaction marks `retried`'s
/// two roots `running`, then waits for that row to mark the execution
/// `running` (seen in `pg_stat_activity`), and the host is killed there.
/// Nothing of the claim remains: the roots are `ready`, with no `claimed`
/// event. A second host runs everything once, with no recovery.
///
/// Caught breakage: a claim that commits the task rows before marking
/// the execution and writing the events (the dead host's claims become
/// leases without `claimed` events, recovered later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_claim() {
    use sqlx::Connection;
    let db = TestDb::new(Db::Postgres).await;
    let r = setup(&db).await;
    let row = r
        .start_execution(
            "public",
            "retried",
            None,
            json!({"ms": 10}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    let store = r.store().clone();
    let mut lock = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("SELECT 1 FROM executions WHERE id = $1 FOR UPDATE")
        .bind(row.id)
        .execute(&mut lock)
        .await
        .unwrap();
    let mut serve = Serve::start(&db);
    serve.host_id().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let t0 = Instant::now();
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE executions SET status = ''running''%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the claim never reached the execution's row; serve's log:\n{}",
            serve.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.kill9();
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    for t in store.execution_tasks(row.id).await.unwrap() {
        let expected = if t.task_id == "after" {
            TaskStatus::NotStarted
        } else {
            TaskStatus::Ready
        };
        assert_eq!(t.status, expected, "{t:?}: the killed claim left this");
        assert_eq!(t.claimed_by, None, "{t:?}");
    }
    let events = store.execution_events(row.id).await.unwrap();
    assert!(!events.iter().any(|e| e.kind == "claimed"), "{events:?}");
    let second = Serve::start(&db);
    let second_id = second.host_id().await;
    wait_finished(store.as_ref(), &[row.id], Duration::from_secs(60)).await;
    assert_completed_exactly_once(store.as_ref(), row.id).await;
    for t in store.execution_tasks(row.id).await.unwrap() {
        assert_eq!(t.recoveries, 0, "{t:?}");
        assert_eq!(t.attempt, 1, "{t:?}");
    }
    for e in store.execution_events(row.id).await.unwrap() {
        if e.kind == "claimed" {
            assert_eq!(e.host, Some(second_id), "{e:?}");
        }
    }
}

/// `culvert cancel` from another process reaches a running `serve`
/// through its cancellation poll. With one slot, one root of `retried`
/// runs (a 100 s sleep) and the other waits `ready`; `after` waits for
/// both. After the cancel:
/// - the running root is interrupted long before its sleep ends and fails
///   with kind `cancelled`, on attempt 1, final (not `ready` again, no
///   `retry_scheduled`), although its policy retries every error;
/// - the root that had not started is `skipped` and never claimed, and so
///   is `after`;
/// - the serve goes on: a later execution completes on it, and the
///   cancelled one still has exactly one claim.
///
/// Caught breakage: a cancellation poll that does nothing (the running
/// root is never interrupted); retrying cancelled failures (in
/// `retry_decision` and in the store's check of the execution's status).
async fn cancel_from_another_process_reaches_a_running_serve(db: Db) {
    let db = TestDb::new(db).await;
    let r = setup(&db).await;
    let serve = Serve::start_with(&db, "warn", &["--concurrency", "1"]);
    serve.host_id().await;
    let row = r
        .start_execution(
            "public",
            "retried",
            None,
            json!({"ms": 100_000}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    let store = r.store().clone();
    let t0 = Instant::now();
    let running = loop {
        let tasks = store.execution_tasks(row.id).await.unwrap();
        if let Some(t) = tasks.iter().find(|t| t.status == TaskStatus::Running) {
            break t.task_id.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "nothing ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waiting = if running == "r1" { "r2" } else { "r1" };
    let (code, out, err) = run_cli(&db, &["cancel", &row.id.to_string(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let cancelled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{out}");
    // The poll runs every 250 ms; 60 s leaves room for a loaded machine
    // and is still far below the 100 s sleep an ignored cancel would wait.
    let t0 = Instant::now();
    let stopped = loop {
        let tasks = store.execution_tasks(row.id).await.unwrap();
        let t = tasks.into_iter().find(|t| t.task_id == running).unwrap();
        if t.status != TaskStatus::Running {
            break t;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the running task was not interrupted: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stopped.status, TaskStatus::Failed, "{stopped:?}");
    assert_eq!(stopped.last_error_kind.as_deref(), Some("cancelled"));
    assert!(
        stopped
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("cancelled"),
        "{stopped:?}"
    );
    assert_eq!(stopped.attempt, 1);
    // The serve keeps working: a fresh execution completes on it.
    let later = r
        .start_execution(
            "public",
            "retried",
            None,
            json!({"ms": 10}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    wait_finished(store.as_ref(), &[later.id], Duration::from_secs(60)).await;
    assert_completed_exactly_once(store.as_ref(), later.id).await;
    // Nothing of the cancelled execution ran again meanwhile.
    let exec = store.get_execution(None, row.id).await.unwrap();
    assert_eq!(exec.status, ExecutionStatus::Cancelled);
    let tasks = store.execution_tasks(row.id).await.unwrap();
    for t in &tasks {
        if t.task_id == running {
            assert_eq!(t.status, TaskStatus::Failed, "{t:?}");
            assert_eq!(t.attempt, 1, "{t:?}: retried after the cancel");
        } else {
            assert_eq!(t.status, TaskStatus::Skipped, "{t:?}");
            assert_eq!(t.skip_reason.as_deref(), Some("execution cancelled"));
            assert_eq!(t.attempt, 0, "{t:?}");
        }
    }
    let events = store.execution_events(row.id).await.unwrap();
    let claims: Vec<_> = events.iter().filter(|e| e.kind == "claimed").collect();
    assert_eq!(claims.len(), 1, "{events:?}");
    assert_eq!(claims[0].task_id.as_deref(), Some(running.as_str()));
    assert!(
        !events.iter().any(|e| e.kind == "retry_scheduled"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == "skipped" && e.task_id.as_deref() == Some(waiting)),
        "{events:?}"
    );
    let (code, text, err) = run_cli(&db, &["executions", "show", &row.id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("final context: (none: the execution cancelled)"),
        "{text}"
    );
}

/// SIGTERM drains: a `serve` with ten tasks in flight (four `slow` chains
/// on their first task, one `parallel` with six) stops claiming, waits for
/// the ten to finish, records them itself, and exits 0 with its `hosts`
/// row removed. The chains' second tasks, made ready meanwhile, are handed
/// back unclaimed. Readiness is the `hosts` row in `culvert status
/// --json`, and the SIGTERM goes once all ten are `running`. A second
/// host then finishes the rest: every task completed exactly once, none
/// recovered.
///
/// Caught breakage: exiting at once on SIGTERM, after removing the
/// `hosts` row (exit 0, but the chains' first tasks were never recorded);
/// a claim loop that goes on claiming until the host is idle (the chains'
/// second tasks run on the stopping host instead of being handed back).
async fn serve_drains_running_tasks_on_sigterm(db: Db) {
    let db = TestDb::new(db).await;
    let r = setup(&db).await;
    let mut serve = Serve::start(&db);
    let host = serve.host_id().await;
    wait_listed(&db, host);
    let store = r.store().clone();
    let ctx = json!({"ms": 3000}).as_object().unwrap().clone();
    let mut chains = Vec::new();
    for _ in 0..4 {
        let row = r
            .start_execution("public", "slow", None, ctx.clone())
            .await
            .unwrap();
        chains.push(row.id);
    }
    let parallel = r
        .start_execution("public", "parallel", None, ctx.clone())
        .await
        .unwrap()
        .id;
    for id in &chains {
        wait_running(store.as_ref(), *id, &["s1"]).await;
    }
    wait_running(
        store.as_ref(),
        parallel,
        &["p1", "p2", "p3", "p4", "p5", "p6"],
    )
    .await;
    serve.sigterm();
    // Generous: the drain takes about the 3 s the tasks have left.
    let status = serve.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}: {}", serve.log_text());
    let (_, out, _) = run_cli(&db, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["serving"], false, "the host removed itself: {out}");
    let completed_by_it = |events: &[culvert::EventRow], task: &str| {
        events.iter().any(|e| {
            e.kind == "completed" && e.task_id.as_deref() == Some(task) && e.host == Some(host)
        })
    };
    for id in &chains {
        let events = store.execution_events(*id).await.unwrap();
        assert!(completed_by_it(&events, "s1"), "{events:?}");
        let tasks = store.execution_tasks(*id).await.unwrap();
        let s2 = tasks.iter().find(|t| t.task_id == "s2").unwrap();
        assert_eq!(s2.status, TaskStatus::Ready, "handed back: {s2:?}");
        assert!(
            !events
                .iter()
                .any(|e| e.kind == "claimed" && e.task_id.as_deref() == Some("s2")),
            "claimed while draining: {events:?}"
        );
    }
    let events = store.execution_events(parallel).await.unwrap();
    for p in ["p1", "p2", "p3", "p4", "p5", "p6"] {
        assert!(completed_by_it(&events, p), "{p}: {events:?}");
    }
    assert_completed_exactly_once(store.as_ref(), parallel).await;
    let _second = Serve::start(&db);
    wait_finished(store.as_ref(), &chains, Duration::from_secs(120)).await;
    for id in chains.iter().chain([&parallel]) {
        assert_completed_exactly_once(store.as_ref(), *id).await;
        for t in store.execution_tasks(*id).await.unwrap() {
            assert_eq!(t.recoveries, 0, "{t:?}");
            assert_eq!(t.attempt, 1, "{t:?}");
        }
    }
}

/// Three hosts on one PostgreSQL run 200 workflows; one is killed mid-run,
/// while it holds leases (checked in the database just before the kill),
/// and the others finish its work once its leases expire: they record
/// `lease_expired` naming the dead host and `recovered` for its tasks, and
/// the recoveries show in the tasks' counters. No task is completed twice.
///
/// Caught breakage: a recovery sweep that recovers tasks without
/// recording `lease_expired` and `recovered` events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_200_workflows_and_survive_a_kill() {
    let db = TestDb::new(Db::Postgres).await;
    let r = setup(&db).await;
    let mut hosts = [Serve::start(&db), Serve::start(&db), Serve::start(&db)];
    let victim = hosts[0].host_id().await;
    // All three serve before the work arrives: a host still starting when
    // the others have finished everything holds no lease to leave behind.
    for h in &hosts[1..] {
        h.host_id().await;
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // The leases the victim holds now.
    let held = || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM task_executions WHERE status = 'running' AND claimed_by = $1",
        )
        .bind(victim)
        .fetch_one(&pool)
        .await
        .unwrap();
        n
    };
    let mut ids = Vec::new();
    for i in 0..200 {
        let row = r
            .start_execution(
                "public",
                "slow",
                None,
                json!({"ms": 30, "n": i}).as_object().unwrap().clone(),
            )
            .await
            .unwrap();
        ids.push(row.id);
    }
    // Kill one host while work is under way.
    let store = r.store().clone();
    let t0 = Instant::now();
    loop {
        let finished = store
            .list_executions(culvert::ExecutionFilter {
                status: Some(ExecutionStatus::Completed),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap()
            .len();
        // Kill it only while it holds leases, so that it leaves work
        // behind. (It may finish those tasks between this query and the
        // kill; the events checked below show it did not.)
        let holding = held().await;
        if finished >= 20 && holding > 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no moment to kill the victim in 60 s: {finished} of 200 completed, it holds {holding} leases; its log:\n{}",
            hosts[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hosts[0].kill9();
    let left_behind = held().await;
    assert!(left_behind > 0, "the killed host held no lease");
    wait_finished(store.as_ref(), &ids, Duration::from_secs(120)).await;
    let mut expired = 0;
    let mut recovered = 0;
    let mut recoveries = 0;
    let mut victim_claims = 0;
    let mut victim_completions = 0;
    for id in &ids {
        assert_completed_exactly_once(store.as_ref(), *id).await;
        for e in store.execution_events(*id).await.unwrap() {
            match e.kind.as_str() {
                "claimed" if e.host == Some(victim) => victim_claims += 1,
                "completed" if e.host == Some(victim) => victim_completions += 1,
                "lease_expired" => {
                    let detail = e.detail.unwrap_or_default();
                    assert_eq!(detail, format!("host {victim} stopped heartbeating"));
                    expired += 1;
                }
                "recovered" => recovered += 1,
                _ => {}
            }
        }
        recoveries += store
            .execution_tasks(*id)
            .await
            .unwrap()
            .iter()
            .map(|t| t.recoveries)
            .sum::<i64>();
    }
    // The leases the dead host left were found expired and recovered by
    // the others. The count is not compared with `left_behind`, read just
    // after the kill: a completion batch the host sent just before it died
    // can still commit on the server (fewer expire), and so can a claim
    // (more expire; seen once, 13 for 12). The accounting below is exact
    // whatever the timing: every claim of the dead host ended in its own
    // completion or in an expired lease, and each of those was recovered
    // once.
    assert!(
        expired >= 1,
        "no lease_expired event for {left_behind} leases left behind"
    );
    assert_eq!(
        victim_claims,
        victim_completions + expired,
        "each of the dead host's claims ended in its completion or an expired lease"
    );
    assert_eq!(recovered, expired, "recovered events");
    assert_eq!(recoveries, expired, "the tasks' recovery counters");
    // Work was spread over the hosts.
    let mut hosts_seen = std::collections::HashSet::new();
    for id in ids.iter().take(50) {
        for e in store.execution_events(*id).await.unwrap() {
            if e.kind == "claimed" {
                hosts_seen.insert(e.host);
            }
        }
    }
    assert!(
        hosts_seen.len() >= 2,
        "only {} host(s) claimed work",
        hosts_seen.len()
    );
}

fn run_cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = culvert(db).args(args).output().expect("run culvert");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `package add`, `list`, `run --wait`, `executions show`, `package
/// inspect`, all `--json`, on both backends.
///
/// Caught breakage (PostgreSQL variant): PostgreSQL's claim query never
/// finding a due task (`run --wait` times out).
async fn the_cli_registers_runs_and_reports(db: Db) {
    let db = TestDb::new(db).await;
    let (code, out, err) = run_cli(&db, &["package", "add", artifacts::ETL, "--json"]);
    assert_eq!(code, 0, "{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["name"], "etl");
    for key in ["id", "version", "content_hash"] {
        assert!(added.get(key).is_some(), "{key} missing from {out}");
    }
    let (code, out, _) = run_cli(&db, &["package", "list", "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["tenant"], "public");

    let (code, out, err) = run_cli(
        &db,
        &[
            "run",
            "etl",
            "--context",
            r#"{"notify":true}"#,
            "--wait",
            // A claim that never happens fails the test instead of hanging it.
            "--timeout",
            "120",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["status"], "completed");
    assert_eq!(run["context"]["total"], 150);
    let id = run["id"].as_str().unwrap().to_string();

    let (code, out, _) = run_cli(&db, &["executions", "show", &id, "--json"]);
    assert_eq!(code, 0);
    let show: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(show["status"], "completed");
    let tasks = show["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 5);
    for t in tasks {
        for key in ["id", "status", "attempts", "error"] {
            assert!(t.get(key).is_some(), "{key} missing");
        }
    }
    assert!(!show["events"].as_array().unwrap().is_empty());

    let (code, out, _) = run_cli(&db, &["package", "inspect", artifacts::ETL, "--json"]);
    assert_eq!(code, 0);
    let inspect: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        inspect["workflows"][0]["tasks"][3]["dependencies"],
        json!(["clean", "enrich"])
    );
    assert_eq!(
        inspect["cache"]["hit"], true,
        "inspect after add compiles nothing"
    );
    // The text form shows each task's description (its doc comment).
    let (code, text, _) = run_cli(&db, &["package", "inspect", artifacts::ETL]);
    assert_eq!(code, 0);
    assert!(
        text.contains("  task clean\n    Drops negative rows"),
        "{text}"
    );
}

/// `run` without a `serve` says the execution waits for one; `run --wait`
/// whose `serve` is killed takes the execution over instead of waiting
/// forever (it used to check for a live host once, at the start).
async fn run_tells_what_to_do_without_serve_and_outlives_its_serve(db: Db) {
    let db = TestDb::new(db).await;
    let r = setup(&db).await;
    let (code, out, err) = run_cli(&db, &["run", "slow", "--context", r#"{"ms":10}"#]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim().parse::<uuid::Uuid>().is_ok(),
        "stdout is the id: {out}"
    );
    assert!(
        err.contains("no `culvert serve` is running") && err.contains("--wait"),
        "{err}"
    );

    let mut serve = Serve::start(&db);
    wait_listed(&db, serve.host_id().await);
    let waiter = culvert(&db)
        .args([
            "run",
            "slow",
            "--context",
            r#"{"ms":1500}"#,
            "--wait",
            "--timeout",
            "120",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the serve while it runs the waited-for execution's first task.
    let store = r.store().clone();
    let t0 = Instant::now();
    let id = loop {
        let running = store
            .list_executions(culvert::ExecutionFilter {
                tenant: Some("public"),
                status: Some(ExecutionStatus::Running),
                limit: Some(10),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut found = None;
        for e in running {
            let tasks = store.execution_tasks(e.id).await.unwrap();
            if e.context["ms"] == json!(1500)
                && tasks.iter().any(|t| t.status == TaskStatus::Running)
            {
                found = Some(e.id);
            }
        }
        if let Some(id) = found {
            break id;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "serve never ran it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    serve.kill9();
    let out = waiter.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let done: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(done["id"], json!(id.to_string()));
    assert_eq!(done["status"], "completed");
    assert!(
        stderr.contains("every `culvert serve` host stopped"),
        "{stderr}"
    );
    assert_completed_exactly_once(store.as_ref(), id).await;
}

/// `executions retry ID --wait` re-runs a failed execution from its failed
/// task and exits 0 when it then completes.
async fn executions_retry_reruns_a_failed_execution(db: Db) {
    let db = TestDb::new(db).await;
    let (code, _, err) = run_cli(&db, &["package", "add", artifacts::FLAKY]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(
        &db,
        &[
            "run",
            "flaky",
            "--context",
            r#"{"fail_times":5}"#,
            "--wait",
            "--timeout",
            "120",
            "--json",
        ],
    );
    assert_eq!(code, EXIT_WORKFLOW_FAILED, "{err}");
    let failed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = failed["id"].as_str().unwrap();
    let (code, out, err) = run_cli(
        &db,
        &[
            "executions",
            "retry",
            id,
            "--wait",
            "--timeout",
            "120",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(done["id"], json!(id));
    assert_eq!(done["status"], "completed");
    assert_eq!(done["context"]["succeeded_on_attempt"], 6);
    let (code, _, err) = run_cli(&db, &["executions", "retry", id]);
    assert_eq!(code, 1);
    assert!(
        err.contains("only a failed execution can be retried"),
        "{err}"
    );
}

async fn the_cli_fails_cleanly_on_bad_input(db: Db) {
    let db = TestDb::new(db).await;
    run_cli(&db, &["package", "add", artifacts::HELLO]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "nope"],
            "workflow 'nope' not found in tenant public (known: hello)",
        ),
        (vec!["run", "helo"], "did you mean 'hello'?"),
        (
            vec!["package", "remove", "helo"],
            "package 'helo' not found in tenant public; did you mean 'hello'?",
        ),
        (
            vec!["run", "hello", "--tenant", "ghosts"],
            "tenant 'ghosts' does not exist",
        ),
        (
            vec!["run", "hello", "--context", "{oops"],
            "--context is not valid JSON",
        ),
        (
            vec!["run", "hello", "--context", "[1,2]"],
            "--context must be a JSON object",
        ),
        (
            vec!["package", "add", "/etc/hostname"],
            "not a WebAssembly component",
        ),
        (
            vec!["package", "add", "/no/such/file.wasm"],
            "cannot read /no/such/file.wasm",
        ),
        (
            vec!["package", "remove", "nothing"],
            "package 'nothing' not found",
        ),
        (
            vec!["executions", "show", "00000000-0000-0000-0000-000000000000"],
            "not found",
        ),
    ];
    for (args, needle) in cases {
        let (code, out, err) = run_cli(&db, &args);
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
    }
    // Nothing was created by any of them.
    let (_, out, _) = run_cli(&db, &["executions", "list", "--json"]);
    assert_eq!(out.trim(), "[]");
    let (_, out, _) = run_cli(&db, &["package", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // An unreachable database.
    let out = Command::new(BIN)
        .args([
            "package",
            "list",
            "--database",
            "postgres://nobody@127.0.0.1:1/x",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot open the database"), "{err}");
    // Database URLs that cannot work say why, in one line, and what to do.
    let missing = format!(
        "{}/culvert_no_such_database",
        culvert_tests::postgres_server()
    );
    for (url, says) in [
        (
            "mysql://x".to_string(),
            "unsupported database URL scheme 'mysql': use sqlite://PATH",
        ),
        (
            missing,
            "database \"culvert_no_such_database\" does not exist; create it first, for example with: createdb",
        ),
    ] {
        let (code, out, err) = run_cli(&db, &["package", "list", "--database", &url]);
        assert_eq!(code, 1, "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("at line"), "{err}");
    }
    // A serve that could run nothing is a usage error, not a silent 1.
    let (code, _, err) = run_cli(&db, &["serve", "--concurrency", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--concurrency"), "{err}");
}

async fn exec_runs_a_file_without_registering_it(db: Db) {
    let db = TestDb::new(db).await;
    let (code, out, err) = run_cli(
        &db,
        &["exec", artifacts::FLAKY, "--workflow", "flaky", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["context"]["succeeded_on_attempt"], 3);
    let (code, _, _) = run_cli(
        &db,
        &["exec", artifacts::SANDBOX_PROBE, "--workflow", "permanent"],
    );
    assert_eq!(code, EXIT_WORKFLOW_FAILED);
    // Its execution is not stored anywhere: no id that could never be
    // looked up.
    assert!(v["id"].is_null(), "{v}");
    let (_, text, _) = run_cli(&db, &["exec", artifacts::HELLO, "--workflow", "hello"]);
    assert!(
        text.starts_with("execution (one-shot, not stored)  hello"),
        "{text}"
    );
    // exec has no tenants: its errors name none, and suggest what exists.
    let (code, out, err) = run_cli(&db, &["exec", artifacts::FLAKY, "--workflow", "flakey"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("workflow 'flakey' not found; did you mean 'flaky'?")
            && !err.contains("tenant"),
        "{err}"
    );
    // Nothing was registered in the configured database.
    let (_, out, _) = run_cli(&db, &["package", "list", "--json"]);
    assert_eq!(out.trim(), "[]");
}

/// `exec --http` grants outbound HTTP for one run; without it the request
/// is refused inside the guest, naming the host and the missing grant.
/// `grant --http` checks the pattern it is given.
async fn exec_and_grant_speak_outbound_http(db: Db) {
    let db = Arc::new(TestDb::new(db).await);
    let server = culvert_tests::http_server::TestServer::start().await;
    let url = server.url("/json");
    let context = json!({ "url": url }).to_string();
    let pattern = format!("127.0.0.1:{}", server.port());
    let cli = |args: Vec<String>| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&db, &args)
        })
    };
    let exec = |grant: Option<&str>| {
        let mut args: Vec<String> = ["exec", artifacts::FETCH, "--workflow", "fetch", "--json"]
            .map(String::from)
            .to_vec();
        args.extend(["--context".to_string(), context.clone()]);
        if let Some(g) = grant {
            args.extend(["--http".to_string(), g.to_string()]);
        }
        cli(args)
    };
    let (code, out, err) = exec(None).await.unwrap();
    assert_eq!(code, EXIT_WORKFLOW_FAILED, "{out} {err}");
    assert!(
        out.contains("127.0.0.1") && out.contains("not granted"),
        "the refusal names the host and the missing key: {out}"
    );
    assert!(server.seen().is_empty());
    let (code, out, err) = exec(Some(&pattern)).await.unwrap();
    assert_eq!(code, 0, "{out} {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["context"]["fetched"]["name"], "culvert", "{v}");
    assert_eq!(server.seen().len(), 1);
    // grant --http: a bad pattern is refused with the rule; a good one is
    // stored as written and shown.
    let (code, _, err) = cli(["grant", "--http", "ftp://example.com"]
        .map(String::from)
        .to_vec())
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("HOST[:PORT]"), "{err}");
    let (code, out, err) = cli(["grant", "--http", "*.example.com", "--json"]
        .map(String::from)
        .to_vec())
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["grant"]["kind"], "http");
    assert_eq!(v["grant"]["name"], "*.example.com");
}

/// `key generate` writes a key pair (the secret one mode 0600, never
/// overwritten); `package sign` writes `FILE.sig`, which verifies against
/// the package's bytes and names, and against nothing else.
#[tokio::test]
async fn keys_and_detached_signatures() {
    use std::os::unix::fs::PermissionsExt as _;
    let db = TestDb::new(Db::Sqlite).await;
    let out = db.dir().join("ci");
    let out_text = out.display().to_string();
    let (code, text, err) = run_cli(&db, &["key", "generate", "--out", &out_text, "--json"]);
    assert_eq!(code, 0, "{err}");
    let made: serde_json::Value = serde_json::from_str(&text).unwrap();
    let secret = db.dir().join("ci.key");
    let public = db.dir().join("ci.pub");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let public_key = culvert::PublicKeyFile::parse(&std::fs::read(&public).unwrap()).unwrap();
    assert_eq!(made["key_id"], public_key.key_id.as_str());
    let (code, _, err) = run_cli(&db, &["key", "generate", "--out", &out_text]);
    assert_eq!(code, 1, "never overwrites");
    assert!(err.contains("never overwritten"), "{err}");

    let package = db.dir().join("hello.wasm");
    std::fs::copy(artifacts::HELLO, &package).unwrap();
    let package_text = package.display().to_string();
    let secret_text = secret.display().to_string();
    let (code, _, err) = run_cli(
        &db,
        &["package", "sign", &package_text, "--key", &secret_text],
    );
    assert_eq!(code, 0, "{err}");
    let sig =
        culvert::SignatureFile::parse(&std::fs::read(db.dir().join("hello.wasm.sig")).unwrap())
            .unwrap();
    let bytes = std::fs::read(&package).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    culvert::verify_signature(&sig, &hash, &public_key).unwrap();
    culvert::check_signed_names(&sig, "hello", "0.1.0").unwrap();
    assert_eq!(sig.key_id, public_key.key_id);
    // A flipped bit in the package: another hash, refused.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let other = blake3::hash(&flipped).to_hex().to_string();
    assert_eq!(
        culvert::verify_signature(&sig, &other, &public_key)
            .unwrap_err()
            .kind(),
        "signature_hash_mismatch"
    );
    // A public key is not a secret key.
    let public_text = public.display().to_string();
    let (code, _, err) = run_cli(
        &db,
        &["package", "sign", &package_text, "--key", &public_text],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not a secret key file"), "{err}");

    // The whole workflow from the command line: require, trust, add
    // (FILE.sig picked up, or --signature), list, show, untrust, audit.
    let json = |args: &[&str]| -> serde_json::Value {
        let (code, out, err) = run_cli(&db, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    json(&[
        "tenant",
        "create",
        "acme",
        "--set",
        "require_signature=true",
        "--json",
    ]);
    let unsigned = db.dir().join("unsigned.wasm");
    std::fs::copy(artifacts::HELLO, &unsigned).unwrap();
    let unsigned_text = unsigned.display().to_string();
    let (code, _, err) = run_cli(&db, &["package", "add", &unsigned_text, "--tenant", "acme"]);
    assert_eq!(code, 1, "no signature");
    assert!(err.contains("requires a signature"), "{err}");
    let (code, _, err) = run_cli(&db, &["package", "add", &package_text, "--tenant", "acme"]);
    assert_eq!(
        code, 1,
        "hello.wasm.sig is picked up, by a key acme does not trust"
    );
    assert!(
        err.contains("does not trust") && err.contains(&public_key.key_id),
        "{err}"
    );
    let trusted = json(&[
        "key",
        "trust",
        "--tenant",
        "acme",
        "--name",
        "ci",
        &public_text,
        "--json",
    ]);
    assert_eq!(trusted["key_id"], public_key.key_id.as_str());
    assert_eq!(trusted["status"], "trusted");
    assert_eq!(trusted["trusted_by"], "(command line)");
    let added = json(&[
        "package",
        "add",
        &unsigned_text,
        "--tenant",
        "acme",
        "--signature",
        &db.dir().join("hello.wasm.sig").display().to_string(),
        "--json",
    ]);
    assert_eq!(added["signature_key_id"], public_key.key_id.as_str());
    assert_eq!(added["signed_at"], sig.signed_at);
    let listed = json(&["package", "list", "--tenant", "acme", "--json"]);
    assert_eq!(listed[0]["signature"]["key_id"], public_key.key_id.as_str());
    assert_eq!(listed[0]["signature"]["key"], "trusted");
    let shown = json(&["package", "show", "hello", "--tenant", "acme", "--json"]);
    assert_eq!(shown["signature"]["signature"], sig.signature.as_str());
    let (code, text, err) = run_cli(&db, &["package", "show", "hello", "--tenant", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains(&format!("key {}", public_key.key_id)),
        "{text}"
    );
    let keys = json(&["key", "list", "--tenant", "acme", "--json"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(
        json(&["key", "list", "--json"]),
        serde_json::json!([]),
        "public trusts none"
    );
    let untrusted = json(&["key", "untrust", "--tenant", "acme", "ci", "--json"]);
    assert_eq!(untrusted["status"], "untrusted");
    let (code, text, err) = run_cli(&db, &["package", "list", "--tenant", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("SIGNED BY") && text.contains("(UNTRUSTED)"),
        "{text}"
    );
    let (code, _, err) = run_cli(&db, &["key", "untrust", "--tenant", "acme", "ci"]);
    assert_eq!(code, 1, "untrusted already");
    assert!(err.contains("trusts no key"), "{err}");
    let audit = json(&["audit", "--tenant", "acme", "--json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "signing_key_trusted",
        "signing_key_untrusted",
        "package_added",
    ] {
        assert!(actions.contains(&action), "{action} in {audit}");
    }
    let added = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "package_added")
        .unwrap();
    assert_eq!(
        added["detail"]["signature_key_id"],
        public_key.key_id.as_str()
    );
}

async fn tenant_and_grant_commands_speak_json(db: Db) {
    let db = TestDb::new(db).await;
    let json = |args: &[&str]| -> serde_json::Value {
        let (code, out, err) = run_cli(&db, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let created = json(&[
        "tenant",
        "create",
        "acme",
        "--set",
        "max_concurrent_tasks=4",
        "--set",
        "max_memory_bytes=32M",
        "--json",
    ]);
    assert_eq!(created["limits"]["max_concurrent_tasks"], 4);
    assert_eq!(created["limits"]["max_memory_bytes"], 32 << 20);
    let list = json(&["tenant", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "public"]);
    // Times are ISO 8601 here as everywhere else, not epoch milliseconds.
    let created_at = list[0]["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 24 && created_at.ends_with('Z') && created_at.contains('T'),
        "{created_at}"
    );
    let updated = json(&[
        "tenant",
        "update",
        "acme",
        "--set",
        "max_cpu_cores=0.5",
        "--json",
    ]);
    assert_eq!(updated["limits"]["max_cpu_cores"], 0.5);
    let dir = db.dir().join("acme-data");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_grant = format!("/data={}", dir.display());
    json(&[
        "grant",
        "--tenant",
        "acme",
        "--dir",
        &dir_grant,
        "--writable",
        "--json",
    ]);
    json(&[
        "grant",
        "--tenant",
        "acme",
        "--env",
        "API_URL=https://example.invalid",
        "--json",
    ]);
    let shown = json(&["tenant", "show", "acme", "--json"]);
    assert_eq!(shown["grants"].as_array().unwrap().len(), 2);
    assert_eq!(shown["defaults"]["max_concurrent_tasks"], 64);
    assert_eq!(shown["limits"]["max_concurrent_tasks"], 4);
    // The text form reads as a person would write the limits.
    let (code, text, err) = run_cli(&db, &["tenant", "show", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(!text.contains("null"), "{text}");
    assert!(
        text.contains("max_memory_bytes             32 MiB\n"),
        "{text}"
    );
    assert!(
        text.contains("fuel_per_call                unlimited  (default)"),
        "{text}"
    );
    // revoke names a grant; it takes no value and no --writable.
    let (code, _, err) = run_cli(&db, &["revoke", "--tenant", "acme", "--env", "API_URL=x"]);
    assert_eq!(code, 1);
    assert!(err.contains("revoke names the grant only"), "{err}");
    let (code, _, err) = run_cli(
        &db,
        &["revoke", "--tenant", "acme", "--dir", "/data", "--writable"],
    );
    assert_eq!(code, 2, "a usage error: {err}");
    // Shell completions for the three shells the issue names.
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = run_cli(&db, &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            script.contains("culvert")
                && script.contains("executions")
                && script.contains("tenant"),
            "{shell}: {script}"
        );
    }
    let (_, help, _) = run_cli(&db, &["grant", "--help"]);
    assert!(!help.contains("[default: ]"), "{help}");
    json(&["revoke", "--tenant", "acme", "--env", "API_URL", "--json"]);
    let shown = json(&["tenant", "show", "acme", "--json"]);
    assert_eq!(shown["grants"].as_array().unwrap().len(), 1);
    // Packages go to an existing tenant only; listings are per tenant.
    let (code, _, err) = run_cli(
        &db,
        &["package", "add", artifacts::HELLO, "--tenant", "nobody"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("tenant 'nobody' does not exist"), "{err}");
    json(&[
        "package",
        "add",
        artifacts::HELLO,
        "--tenant",
        "acme",
        "--json",
    ]);
    assert_eq!(
        json(&["package", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        json(&["package", "list", "--tenant", "acme", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json(&["package", "list", "--all-tenants", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Bad input changes nothing.
    let (code, _, err) = run_cli(&db, &["tenant", "update", "acme", "--set", "max_bananas=1"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown limit 'max_bananas'"), "{err}");
    let (code, _, err) = run_cli(&db, &["tenant", "create", "Bad Name"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid tenant name"), "{err}");
    let deleted = json(&["tenant", "delete", "acme", "--json"]);
    assert_eq!(deleted["deleted"], "acme");
    let (code, _, err) = run_cli(&db, &["tenant", "show", "acme"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
}

/// Run `culvert` with `args`, killing it and failing the test if it has
/// not exited within `limit` (a command that blocks must fail the test,
/// not hang it).
fn run_cli_within(db: &TestDb, args: &[&str], limit: Duration) -> (i32, String, String) {
    use std::io::Read;
    let mut child = culvert(db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run culvert");
    // Drain both pipes as the command writes, so a long output cannot
    // block it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).to_string()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`culvert {}` did not finish within {limit:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
    )
}

/// `package add`, `exec` and `package inspect` read only regular files, up
/// to the package size limit: a character device (`/dev/zero`, directly or
/// through a link), a FIFO and a directory are refused at once, naming the
/// path and what it is; a 2 GiB (sparse) file is refused for not being wasm
/// and, when it starts with the wasm header, for its size.
/// Before this, `/dev/zero` was read until the process ran out of memory
/// and opening the FIFO blocked forever.
async fn package_commands_refuse_what_is_not_a_regular_file(db: Db) {
    let db = TestDb::new(db).await;
    let fifo = db.dir().join("package.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let dir = db.dir().join("folder.wasm");
    std::fs::create_dir(&dir).unwrap();
    let link = db.dir().join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    // Two 2 GiB sparse files: zeros, and a wasm header then zeros.
    let huge = db.dir().join("huge.wasm");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let huge_wasm = db.dir().join("huge-wasm.wasm");
    std::fs::write(&huge_wasm, b"\0asm\x0d\0\x01\0").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge_wasm)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let cases = [
        (
            "/dev/zero".to_string(),
            "is a character device, not a regular file",
        ),
        (path(&link), "is a character device, not a regular file"),
        (path(&fifo), "is a FIFO (named pipe), not a regular file"),
        (path(&dir), "is a directory, not a regular file"),
        (
            path(&huge),
            "is not a WebAssembly component (it does not start with the wasm header)",
        ),
        (
            path(&huge_wasm),
            "is 2147483648 bytes, over the package size limit of 33554432 bytes",
        ),
    ];
    for (file, what) in &cases {
        for args in [
            vec!["package", "add", file],
            vec!["exec", file, "--workflow", "w"],
            vec!["package", "inspect", file],
        ] {
            let (code, out, err) = run_cli_within(&db, &args, Duration::from_secs(20));
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?} printed {out}");
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
            assert!(
                err.starts_with(&format!("error: cannot read {file}: it {what}")),
                "{args:?}: {err}"
            );
            if !what.contains("size limit") {
                assert!(err.contains("give the path of a package file"), "{err}");
            }
        }
    }
    let (_, out, _) = run_cli(&db, &["package", "list", "--json"]);
    assert_eq!(out.trim(), "[]");
}

/// `executions show` of a 10,000-task execution (the metadata limit): the
/// `chain10000` chain of `shapes` (built with feature `long`), declared last task first, shown in
/// dependency order, as text and as JSON.
///
/// The bound is generous on purpose. The quadratic ordering this replaced
/// (a sweep over the tasks per chain link, then a linear search per task
/// while sorting) took about 33 s per `show` of this execution in a debug
/// build; the linear one takes about 0.2 s. 10 s leaves room for a loaded
/// machine and still fails the quadratic version.
async fn showing_a_10000_task_execution_is_fast(db: Db) {
    let db = TestDb::new(db).await;
    let (code, _, err) = run_cli(&db, &["package", "add", artifacts::SHAPES_LONG]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(&db, &["run", "chain10000"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    let expected: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    for json in [false, true] {
        let mut args = vec!["executions", "show", id.as_str()];
        if json {
            args.push("--json");
        }
        let started = Instant::now();
        let (code, out, err) = run_cli_within(&db, &args, Duration::from_secs(120));
        let took = started.elapsed();
        assert_eq!(code, 0, "{err}");
        let shown: Vec<String> = if json {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect()
        } else {
            out.lines()
                .skip(2) // the header and the column names
                .take(10_000)
                .map(|l| l.split_whitespace().next().unwrap().to_string())
                .collect()
        };
        assert_eq!(shown, expected, "json: {json}");
        assert!(
            took < Duration::from_secs(10),
            "show (json: {json}) took {took:?}"
        );
    }
}

/// At `info`, an execution's start and finish are logged with its id, and a
/// guest log record without fields has no empty `fields=`; a log written to
/// a pipe has no ANSI colours.
#[tokio::test]
async fn executions_start_and_finish_at_info_without_empty_fields() {
    let db = TestDb::new(Db::Sqlite).await;
    let (code, _, err) = run_cli(&db, &["package", "add", artifacts::HELLO]);
    assert_eq!(code, 0, "{err}");
    let out = culvert(&db)
        .env("CULVERT_LOG", "info")
        .args(["run", "hello", "--wait", "--timeout", "60", "--json"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = done["id"].as_str().unwrap();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no '{needle}' line in:\n{log}"))
            .to_string()
    };
    let started = line("execution started");
    assert!(started.contains(&format!("execution={id}")), "{started}");
    assert!(started.contains("workflow=hello"), "{started}");
    let finished = line("execution finished");
    assert!(finished.contains(&format!("execution={id}")), "{finished}");
    assert!(finished.contains("status=completed"), "{finished}");
    // hello logs its greeting with no fields.
    let greeting = line("culvert::guest");
    assert!(!greeting.contains("fields="), "{greeting}");
    assert!(!log.contains('\x1b'), "ANSI escapes in a piped log:\n{log}");
}

/// A reader that goes away early ends a command quietly: stdout closed
/// (`culvert completions bash | head -1`) exits 0 without a panic, and
/// `run --wait` logging at `info` into a closed stderr still runs its
/// execution to the end (a failed log write used to panic the worker that
/// ran it, and the command waited forever).
#[tokio::test]
async fn closed_pipes_end_commands_quietly() {
    let db = TestDb::new(Db::Sqlite).await;
    let (code, _, err) = run_cli(&db, &["package", "add", artifacts::HELLO]);
    assert_eq!(code, 0, "{err}");
    let mut child = culvert(&db)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let mut child = culvert(&db)
        .env("CULVERT_LOG", "info")
        .args(["run", "hello", "--wait", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("run --wait with a closed stderr never ended");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}");
    let done: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(done["status"], "completed");
}

/// `culvert demo` runs every example it registers, and its closing hint is
/// a command that works as printed: this binary's path when `culvert` is
/// not on the PATH, and the database it used.
async fn the_demo_runs_every_example_and_its_hint_works(db: Db) {
    let db = TestDb::new(db).await;
    let dir = std::path::Path::new(artifacts::HELLO).parent().unwrap();
    let out = culvert(&db)
        .args([
            "demo",
            "--packages",
            dir.to_str().unwrap(),
            "--database",
            &db.url,
        ])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for workflow in ["hello", "etl", "flaky"] {
        assert!(
            text.contains(&format!("running {workflow} with context")),
            "{text}"
        );
    }
    assert!(text.contains("greeting: \"Hello, demo!\""), "{text}");
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("see them again with: "))
        .unwrap_or_else(|| panic!("no hint in {text}"));
    assert!(hint.starts_with(BIN), "{hint}");
    let (code, listed, err) = run_cli(&db, &["executions", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    // The hint, run as printed (a shell splits it), lists the same three.
    let shown = Command::new("sh")
        .args(["-c", &format!("{hint} --json")])
        .env_remove("CULVERT_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(
        shown.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown.as_array().unwrap().len(), 3);
}

/// Guest text cannot forge lines of the host's log. The probe's `forge`
/// workflow writes, in a log record (message, field name, field value), on
/// stdout, on stderr, in a task error and in a panic message, a newline or
/// carriage return followed by a line dressed as the host's, with escape
/// sequences, a bidi override and U+2028. Run by `culvert exec` with every
/// `info` line logged, as text and as JSON: each piece reaches the log,
/// escaped; no line of the log (or of the printed task table) starts with
/// the forged text or holds a raw control character, and every JSON log
/// line parses.
#[tokio::test]
async fn guest_text_cannot_forge_log_lines() {
    const FORGED: &str = "2099-01-01T00:00:00Z ERROR culvert::executor: FORGED";
    let db = TestDb::new(Db::Sqlite).await;
    let pieces = [
        "by a log message",
        "after a CR",
        "by a field name",
        "by a field value",
        "by stdout",
        "after U+2028",
        "by stderr",
        "by a task error",
        "by a panic",
    ];
    let raw = ['\r', '\x1b', '\x07', '\x0b', '\x0c', '\u{2028}', '\u{202e}'];
    for format in ["text", "json"] {
        let out = culvert(&db)
            .env("CULVERT_LOG", "info")
            .env("CULVERT_LOG_FORMAT", format)
            .args(["exec", artifacts::SANDBOX_PROBE, "--workflow", "forge"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_WORKFLOW_FAILED), "{log}");
        let mut messages = String::new();
        for line in log.split('\n').filter(|l| !l.is_empty()) {
            assert!(!line.starts_with(FORGED), "{format}: a forged line: {line}");
            assert!(!line.contains(raw), "{format}: a raw control: {line:?}");
            if format == "json" {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                messages.push_str(&v["fields"].to_string());
            } else {
                messages.push_str(line);
            }
            messages.push('\n');
        }
        // In JSON the escapes are themselves JSON-escaped.
        let escaped_newline = if format == "json" { "\\\\n" } else { "\\n" };
        for piece in pieces {
            assert!(
                messages.contains(&format!("{FORGED} {piece}")),
                "{format}: '{piece}' is not in the log:\n{log}"
            );
        }
        assert!(
            messages.contains(&format!(
                "log message{escaped_newline}{FORGED} by a log message"
            )),
            "{format}: {log}"
        );
        for line in stdout.split('\n') {
            assert!(!line.starts_with(FORGED), "stdout: {line}");
            assert!(!line.contains(raw), "stdout: {line:?}");
        }
        assert!(
            stdout.contains(&format!("{FORGED} by a task error")),
            "{stdout}"
        );
    }
}

/// Two `serve` processes on one database and a schedule due every second:
/// for about 10 s each due time starts exactly one execution, whichever
/// host claims it; then one host is killed with `kill -9` and the other
/// carries on alone for about 6 s, still once per due time, with no gap.
async fn two_hosts_fire_a_schedule_once_per_second_and_survive_a_kill(db: Db) {
    let db = TestDb::new(db).await;
    let r = setup(&db).await;
    let mut a = Serve::start(&db);
    let b = Serve::start(&db);
    a.host_id().await;
    b.host_id().await;
    let mut spec = culvert::ScheduleSpec::new("chain", "* * * * * *");
    // A host that stalls past the on-time window still starts every due
    // time (at most 100 late ones).
    spec.catch_up = culvert::CatchUp::All;
    spec.catch_up_cap = 100;
    let schedule = r.create_schedule("public", spec).await.unwrap();
    let first = schedule.next_due_at.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    a.kill9();
    let killed_at = culvert::now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Stop the schedule: a pass that read it before the pause writes
    // nothing (it advances only an unpaused schedule from the version it
    // read).
    r.pause_schedule("public", schedule.id).await.unwrap();
    let store = r.store().clone();
    let rows = store
        .list_executions(culvert::ExecutionFilter {
            schedule: Some(schedule.id),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut due: Vec<i64> = rows.iter().map(|e| e.scheduled_for.unwrap()).collect();
    due.sort();
    let last = *due.last().expect("the schedule started executions");
    let mut unique = due.clone();
    unique.dedup();
    assert_eq!(unique.len(), due.len(), "a due time started twice: {due:?}");
    let expected: Vec<i64> = (0..)
        .map(|i| first + i * 1000)
        .take_while(|t| *t <= last)
        .collect();
    assert_eq!(
        due, expected,
        "every due time from the first to the last, once"
    );
    assert!(
        last >= killed_at + 4000,
        "the survivor kept firing after the kill: last due {last}, killed at {killed_at}; its log:\n{}",
        b.log_text()
    );
    assert!(due.len() >= 14, "{} due times in 16 s", due.len());
    // The claims agree: one fire record per due time, each with its
    // execution.
    let fires = store.schedule_fires(schedule.id, 1000).await.unwrap();
    let mut claimed: Vec<i64> = fires
        .iter()
        .filter(|f| f.execution_id.is_some())
        .map(|f| f.due_at)
        .collect();
    claimed.sort();
    assert_eq!(claimed, due);
}

/// `schedule create|list|show|pause|resume|trigger|delete --json` against
/// the database, and `executions list --schedule`.
async fn schedule_commands_speak_json(db: Db) {
    let db = TestDb::new(db).await;
    let (code, _, err) = run_cli(&db, &["package", "add", artifacts::HELLO]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(
        &db,
        &[
            "schedule",
            "create",
            "--workflow",
            "hello",
            "--cron",
            "0 0 12 * * *",
            "--timezone",
            "Europe/Berlin",
            "--context",
            r#"{"name":"noon"}"#,
            "--catch-up",
            "latest",
            "--overlap",
            "queue-one",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["cron"], "0 0 12 * * *");
    assert_eq!(created["timezone"], "Europe/Berlin");
    assert_eq!(created["catch_up"], "latest");
    assert_eq!(created["overlap"], "queue_one");
    assert_eq!(created["declared"], false);
    assert!(
        created["next_due_at"]
            .as_str()
            .unwrap()
            .ends_with(":00:00.000Z")
    );
    let (code, out, _) = run_cli(&db, &["schedule", "list", "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (code, out, _) = run_cli(&db, &["schedule", "pause", &id, "--json"]);
    assert_eq!(code, 0);
    let paused: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_due_at"], serde_json::Value::Null);
    let (code, out, _) = run_cli(&db, &["schedule", "resume", &id, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["paused"],
        false
    );
    let (code, out, err) = run_cli(&db, &["schedule", "trigger", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let fire: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(fire["outcome"], "triggered");
    let execution = fire["execution"].as_str().unwrap().to_string();
    let (code, out, _) = run_cli(&db, &["executions", "list", "--schedule", &id, "--json"]);
    assert_eq!(code, 0);
    let started: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started[0]["id"], execution.as_str());
    assert_eq!(started[0]["schedule"], id.as_str());
    assert_eq!(started[0]["scheduled_for"], fire["scheduled_for"]);
    let (code, out, _) = run_cli(&db, &["executions", "show", &execution, "--json"]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["schedule"], id.as_str());
    assert_eq!(shown["initial_context"]["name"], "noon");
    let (code, out, _) = run_cli(&db, &["schedule", "show", &id]);
    assert_eq!(code, 0);
    assert!(
        out.contains("triggered") && out.contains(&execution),
        "{out}"
    );
    // Bad input is refused with what to do, and changes nothing.
    let (code, _, err) = run_cli(
        &db,
        &[
            "schedule",
            "create",
            "--workflow",
            "hello",
            "--cron",
            "0 0 25 * * *",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("invalid cron expression '0 0 25 * * *'"),
        "{err}"
    );
    let (code, _, err) = run_cli(
        &db,
        &[
            "schedule",
            "create",
            "--workflow",
            "hello",
            "--cron",
            "* * * * *",
            "--timezone",
            "Moon/Base",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown timezone 'Moon/Base'"), "{err}");
    let (code, _, err) = run_cli(
        &db,
        &["schedule", "show", "0197a000-0000-7000-8000-000000000000"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    let (code, out, _) = run_cli(&db, &["schedule", "delete", &id, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"],
        id.as_str()
    );
    let (code, out, _) = run_cli(&db, &["schedule", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("no schedules"), "{out}");
}

culvert_tests::both_backends!(
    two_hosts_fire_a_schedule_once_per_second_and_survive_a_kill,
    schedule_commands_speak_json,
    kill_9_during_the_first_task,
    kill_9_during_the_second_task,
    kill_9_during_the_last_task,
    kill_9_after_the_guest_returned_before_its_completion_committed,
    cancel_from_another_process_reaches_a_running_serve,
    serve_drains_running_tasks_on_sigterm,
    the_cli_registers_runs_and_reports,
    run_tells_what_to_do_without_serve_and_outlives_its_serve,
    executions_retry_reruns_a_failed_execution,
    the_demo_runs_every_example_and_its_hint_works,
    the_cli_fails_cleanly_on_bad_input,
    exec_runs_a_file_without_registering_it,
    exec_and_grant_speak_outbound_http,
    tenant_and_grant_commands_speak_json,
    package_commands_refuse_what_is_not_a_regular_file,
    showing_a_10000_task_execution_is_fast,
);
