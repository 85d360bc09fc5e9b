//! Real `culvert` processes reading what guests said and pruning:
//! `executions logs` (text escaped, `--json`, `--task`, `--attempt`,
//! `--follow`, the truncation marker, another tenant), `prune
//! --older-than`, and `serve --retention`. Each on SQLite and on
//! PostgreSQL.

use culvert_tests::{Db, TestDb, artifacts};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_culvert");
/// The exit code of a command whose workflow failed (docs/OPERATIONS.md).
const EXIT_WORKFLOW_FAILED: i32 = 3;
/// What the probe's `forge` tasks try to pass off as a host log line.
const FORGED: &str = "2099-01-01T00:00:00Z ERROR culvert::executor: FORGED";

culvert_tests::both_backends!(
    executions_logs_prints_guest_text_escaped,
    logs_follow_and_prune_commands,
    serve_prunes_with_retention,
);

fn culvert(db: &TestDb) -> Command {
    let mut c = Command::new(BIN);
    c.env("CULVERT_DATABASE_URL", &db.url)
        // Tests run side by side: each serve takes a free port for its API.
        .env("CULVERT_LISTEN", "127.0.0.1:0")
        .env("CULVERT_CACHE_DIR", db.dir().join("cache"))
        .env("CULVERT_DATA_DIR", db.dir().join("data"))
        .env("CULVERT_LOG", "warn");
    c
}

/// Run to the end, within `limit`; both pipes drained as the command
/// writes. Returns the exit code, stdout and stderr.
fn run_cli_within(db: &TestDb, args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut child = culvert(db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run culvert");
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

fn run_cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    run_cli_within(db, args, Duration::from_secs(120))
}

/// `run WORKFLOW --wait --json` (in this process: no `serve`): the
/// execution's id.
fn run_wait(db: &TestDb, workflow: &str, expect: i32) -> String {
    let (code, out, err) = run_cli(
        db,
        &["run", workflow, "--wait", "--timeout", "120", "--json"],
    );
    assert_eq!(code, expect, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn add_probe(db: &TestDb) {
    let (code, _, err) = run_cli(db, &["package", "add", artifacts::SANDBOX_PROBE]);
    assert_eq!(code, 0, "{err}");
}

/// A `culvert serve`, killed when dropped; its stderr collected.
struct Serve {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start(db: &TestDb, log: &str, extra: &[&str]) -> Self {
        let mut child = culvert(db)
            .env("CULVERT_LOG", log)
            .args(["serve", "--lease", "2"])
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

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The probe's `forge` writes lines dressed as the host's (after a
/// newline or carriage return, with escape sequences and bidi controls)
/// through its log, stdout and stderr: `executions logs` prints every
/// piece, escaped, with no line starting with the forged text and no raw
/// control character; `--json` keeps the text as the guest wrote it;
/// `--task` and `--attempt` select; another tenant's execution is not
/// found. `chatty`'s `verbose` attempt ends in the truncation marker.
async fn executions_logs_prints_guest_text_escaped(db: Db) {
    let db = TestDb::new(db).await;
    add_probe(&db);
    let id = run_wait(&db, "forge", EXIT_WORKFLOW_FAILED);
    let (code, out, err) = run_cli(&db, &["executions", "logs", &id]);
    assert_eq!(code, 0, "{err}");
    let raw = ['\r', '\x1b', '\x07', '\x0b', '\x0c', '\u{2028}', '\u{202e}'];
    for line in out.lines() {
        assert!(!line.starts_with(FORGED), "a forged line: {line}");
        assert!(
            line.starts_with("forge_output#1 ") || line.starts_with("forge_panic#1 "),
            "{line}"
        );
        assert!(!line.contains(raw), "a raw control: {line:?}");
    }
    for piece in [
        "by a log message",
        "after a CR",
        "by a field name",
        "by a field value",
        "by stdout",
        "after U+2028",
        "by stderr",
    ] {
        assert!(
            out.contains(&format!("{FORGED} {piece}")),
            "'{piece}':\n{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "forge_output#1 ERROR  log message\\n{FORGED} by a log message\\u{{1b}}[2J\\r"
        )),
        "{out}"
    );
    assert!(out.contains("forge_output#1 stdout stdout\\r"), "{out}");

    let (code, out, err) = run_cli(&db, &["executions", "logs", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let attempts: serde_json::Value = serde_json::from_str(&out).unwrap();
    let output = attempts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["task"] == "forge_output")
        .unwrap();
    assert_eq!(output["attempt"], 1);
    assert_eq!(output["truncated"], false);
    let first = &output["records"][0];
    assert_eq!(first["stream"], "log");
    assert_eq!(first["level"], "error");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("log message\n{FORGED}")),
        "{first}"
    );
    assert_eq!(first["fields"][1][0], "key");

    let (code, out, _) = run_cli(&db, &["executions", "logs", &id, "--task", "forge_panic"]);
    assert_eq!(code, 0);
    assert!(out.lines().count() > 0);
    assert!(
        out.lines().all(|l| l.starts_with("forge_panic#1 ")),
        "{out}"
    );

    let (code, _, _) = run_cli(&db, &["tenant", "create", "other"]);
    assert_eq!(code, 0);
    let (code, out, err) = run_cli(&db, &["executions", "logs", &id, "--tenant", "other"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("not found"), "{err}");
    assert!(out.is_empty());

    let id = run_wait(&db, "chatty", 0);
    let (code, out, err) = run_cli(&db, &["executions", "logs", &id, "--task", "verbose"]);
    assert_eq!(code, 0, "{err}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("verbose#1 [truncated: ") && last.ends_with(" bytes dropped]"),
        "{last}"
    );
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("verbose#1 INFO   000000 vvv")
    );
    let (code, out, _) = run_cli(
        &db,
        &[
            "executions",
            "logs",
            &id,
            "--task",
            "talk",
            "--attempt",
            "2",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "talk#2 INFO   hello from attempt 2 attempt=2 who=talk\n\
         talk#2 stdout stdout of attempt 2\n\
         talk#2 stderr stderr of attempt 2\n\
         talk#2 WARN   done with attempt 2\n"
    );
}

/// `executions logs --follow` against a `serve` running `chatty` prints
/// each attempt once as it finishes and exits when the execution does;
/// `prune --older-than` keeps what is younger and deletes what is older
/// (its `executions show` is then not found); a bad duration is a usage
/// error naming examples.
async fn logs_follow_and_prune_commands(db: Db) {
    let db = TestDb::new(db).await;
    add_probe(&db);
    let serve = Serve::start(&db, "warn", &["--retention", "none"]);
    let (code, out, err) = run_cli(&db, &["run", "chatty", "--json"]);
    assert_eq!(code, 0, "{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, err) = run_cli_within(
        &db,
        &["executions", "logs", &id, "--follow", "--json"],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "{err}\nserve:\n{}", serve.log_text());
    let mut seen: Vec<(String, u64)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["task"].as_str().unwrap().to_string(),
                v["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("talk".to_string(), 1),
            ("talk".to_string(), 2),
            ("verbose".to_string(), 1)
        ]
    );
    let (code, out, _) = run_cli(&db, &["executions", "show", &id, "--json"]);
    assert_eq!(code, 0);
    let show: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(show["status"], "completed", "{out}");

    let (code, out, err) = run_cli(&db, &["prune", "--older-than", "1h", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["executions"], 0, "{out}");
    std::thread::sleep(Duration::from_millis(20));
    let (code, out, err) = run_cli(&db, &["prune", "--older-than", "10ms", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["executions"], 1, "{out}");
    assert_eq!(report["tasks"], 2, "{out}");
    assert_eq!(report["logs"], 3, "{out}");
    let (code, _, err) = run_cli(&db, &["executions", "show", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, out, _) = run_cli(&db, &["prune", "--older-than", "10ms"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("pruned 0 finished executions older than 10ms"),
        "{out}"
    );

    let (code, _, err) = run_cli(&db, &["prune", "--older-than", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("30d"), "{err}");
    drop(serve);
}

/// `serve --retention 1s` prunes at start: an execution finished more than
/// a second before is deleted with its tasks and logs (and the prune is
/// logged at info), while one still running is kept.
async fn serve_prunes_with_retention(db: Db) {
    let db = TestDb::new(db).await;
    add_probe(&db);
    let old = run_wait(&db, "chain", 0);
    let (code, out, err) = run_cli(
        &db,
        &["run", "slow", "--context", r#"{"ms":60000}"#, "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let slow = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1200));
    let serve = Serve::start(&db, "info", &["--retention", "1s"]);
    let t0 = Instant::now();
    loop {
        let (code, _, _) = run_cli(&db, &["executions", "show", &old]);
        if code == 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not pruned; serve:\n{}",
            serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t0 = Instant::now();
    while !serve
        .log_text()
        .contains("pruned finished executions older than 1s")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{}",
            serve.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = run_cli(&db, &["executions", "logs", &old, "--json"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("not found"), "{err}");
    let (code, out, err) = run_cli(&db, &["executions", "show", &slow, "--json"]);
    assert_eq!(code, 0, "{err}");
    let show: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(show["tasks"].as_array().unwrap().len(), 4);
    drop(serve);
}
