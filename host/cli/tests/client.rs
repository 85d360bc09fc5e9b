//! The CLI as a client of the HTTP API (`--server URL --api-key KEY`),
//! against a real `culvert serve` process on a loopback port and a real
//! database: each command prints through the API exactly what it prints
//! against the database (text, `--json` and exit code); a tenant's key
//! reaches its own tenant only; a refused key, a server that is not
//! running and a database-only command each fail with a message that says
//! what to check.

use culvert_tests::{Db, TestDb, artifacts};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_culvert");

/// What a `culvert` process ended with: exit code, stdout, stderr.
type Output = (i32, String, String);

fn output(mut command: Command) -> Output {
    let out = command.output().expect("run culvert");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `culvert` against the database (no server in its environment).
fn local(db: &TestDb) -> Command {
    let mut c = Command::new(BIN);
    c.env("CULVERT_DATABASE_URL", &db.url)
        .env("CULVERT_CACHE_DIR", db.dir().join("cache"))
        .env("CULVERT_DATA_DIR", db.dir().join("data"))
        .env("CULVERT_LOG", "warn")
        .env_remove("CULVERT_SERVER")
        .env_remove("CULVERT_API_KEY");
    c
}

fn run_local(db: &TestDb, args: &[&str]) -> Output {
    let mut c = local(db);
    c.args(args);
    output(c)
}

/// The directory a client-mode `culvert` uses as its data directory: it
/// has no database URL, and must never create a database there.
fn client_dir(db: &TestDb) -> std::path::PathBuf {
    db.dir().join("client")
}

/// `culvert` as a tenant's developer runs it: a server URL and a key, no
/// database URL.
fn remote(db: &TestDb, url: &str, key: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("CULVERT_DATABASE_URL")
        .env_remove("CULVERT_CACHE_DIR")
        .env("CULVERT_DATA_DIR", client_dir(db))
        .env("CULVERT_LOG", "warn")
        .env("CULVERT_SERVER", url)
        .env("CULVERT_API_KEY", key);
    c
}

fn run_remote(db: &TestDb, url: &str, key: &str, args: &[&str]) -> Output {
    let mut c = remote(db, url, key);
    c.args(args);
    output(c)
}

/// A free loopback port (bound, then released for `serve` to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `culvert serve` with its API on a free loopback port, killed when
/// dropped.
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start one on `db` and wait until it answers `key`.
    fn start(db: &TestDb, key: &str) -> Self {
        let url = format!("http://127.0.0.1:{}", free_port());
        let mut child = local(db)
            .args(["serve", "--lease", "2", "--concurrency", "4", "--listen"])
            .arg(url.trim_start_matches("http://"))
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
        let server = Server { child, url, log };
        let t0 = Instant::now();
        loop {
            let (code, _, err) = run_remote(db, &server.url, key, &["status"]);
            if code == 0 {
                return server;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the server never answered: {err}\nits log:\n{}",
                server.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Create an API key with `culvert apikey create --json` and return its
/// secret.
fn create_key(db: &TestDb, tenant: &str, name: &str, role: &str) -> String {
    let (code, out, err) = run_local(
        db,
        &[
            "apikey", "create", "--tenant", tenant, "--name", name, "--role", role, "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

/// Run `args` against the database and through the API, assert that both
/// print the same (stdout, stderr and exit code), and return that.
fn same(db: &TestDb, url: &str, key: &str, args: &[&str]) -> Output {
    let here = run_local(db, args);
    let there = run_remote(db, url, key, args);
    assert_eq!(
        here,
        there,
        "`culvert {}`: database (left) and API (right) differ",
        args.join(" ")
    );
    here
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The text form without its `  events:` section (which `run --wait`
/// leaves out).
fn without_events(text: &str) -> String {
    let mut out = String::new();
    let mut in_events = false;
    for line in text.lines() {
        if line == "  events:" {
            in_events = true;
        } else if in_events && !line.starts_with("    ") {
            in_events = false;
        }
        if !in_events {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A status report without what changes from one heartbeat to the next.
fn steady_status(mut v: Value) -> Value {
    for h in v["hosts"].as_array_mut().into_iter().flatten() {
        let o = h.as_object_mut().unwrap();
        o.remove("heartbeat_at");
        o.remove("status");
    }
    v
}

/// The text status without the hosts' lines (their heartbeats and
/// counters change between two runs).
fn steady_status_text(text: &str) -> String {
    text.lines()
        .filter(|l| {
            ![
                "host ",
                "  packages loaded",
                "    failed",
                "  cache:",
                "  executor:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Every command of the issue prints the same through the API as against
/// the database, on both backends: `package add|list|remove`, `run
/// --wait` (with its exit codes), `executions list|show|logs`, `cancel`,
/// `status`, and the "not found" errors.
///
/// Caught breakage: text rendered from the rows in one mode and from the
/// JSON in the other (a task's error kind, a missing duration), the API's
/// `{"executions", "next_cursor"}` page printed instead of the array, and
/// `run --wait` printing the event log `show` prints.
async fn both_modes_print_the_same(kind: Db) {
    let db = TestDb::new(kind).await;
    for file in [artifacts::ETL, artifacts::FLAKY, artifacts::SANDBOX_PROBE] {
        let (code, _, err) = run_local(&db, &["package", "add", file]);
        assert_eq!(code, 0, "{err}");
    }
    let dev = create_key(&db, "public", "dev", "tenant");
    let ops = create_key(&db, "public", "ops", "operator");
    let server = Server::start(&db, &dev);
    let url = server.url.as_str();

    // Adding what is registered already: the same text; the same JSON but
    // for where the compiled code came from (this process's cache or the
    // server's).
    same(&db, url, &dev, &["package", "add", artifacts::ETL]);
    let here = parse(&run_local(&db, &["package", "add", artifacts::ETL, "--json"]).1);
    let there = parse(
        &run_remote(
            &db,
            url,
            &dev,
            &["package", "add", artifacts::ETL, "--json"],
        )
        .1,
    );
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("cache_hit");
        v
    };
    assert_eq!(strip(here), strip(there.clone()));
    assert_eq!(there["created"], false);

    // `run --wait` through the API: exit 0 when it completes, 3 when it
    // fails, and what it prints is what `executions show` prints without
    // the events.
    let wait = ["--wait", "--timeout", "120"];
    let mut args = vec!["run", "etl", "--context", r#"{"notify":true}"#, "--json"];
    args.extend(wait);
    let (code, out, err) = run_remote(&db, url, &dev, &args);
    assert_eq!(code, 0, "{err}");
    let completed = parse(&out);
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["context"]["total"], 150);
    let mut args = vec!["run", "flaky", "--context", r#"{"fail_times":9}"#, "--json"];
    args.extend(wait);
    let (code, out, err) = run_remote(&db, url, &dev, &args);
    assert_eq!(code, 3, "a failed workflow exits 3: {err}");
    let failed = parse(&out);
    assert_eq!(failed["status"], "failed");
    let id = failed["id"].as_str().unwrap();
    let mut shown = parse(&run_local(&db, &["executions", "show", id, "--json"]).1);
    assert!(!shown["events"].as_array().unwrap().is_empty());
    shown.as_object_mut().unwrap().remove("events");
    assert_eq!(failed, shown);
    let mut args = vec!["run", "flaky", "--context", r#"{"fail_times":9}"#];
    args.extend(wait);
    let (code, text, err) = run_remote(&db, url, &dev, &args);
    assert_eq!(code, 3, "{err}");
    let text_id = text.split_whitespace().nth(1).unwrap();
    let (_, shown, _) = run_local(&db, &["executions", "show", text_id]);
    assert!(shown.contains("  events:\n"), "{shown}");
    assert_eq!(text, without_events(&shown));
    assert!(
        text.contains("unreliable           failed          5/5"),
        "{text}"
    );

    // Reading: the same text and JSON.
    for args in [
        &["executions", "show", id][..],
        &["executions", "show", id, "--json"],
        &["executions", "show", text_id],
        &["executions", "list"],
        &["executions", "list", "--json"],
        &["executions", "list", "--status", "failed", "--json"],
        &["executions", "list", "--limit", "2"],
        &["package", "list"],
        &["package", "list", "--json"],
        &["package", "list", "--tenant", "public"],
    ] {
        let (code, out, err) = same(&db, url, &dev, args);
        assert_eq!(code, 0, "{err}");
        assert!(!out.is_empty());
    }
    let (_, out, _) = same(&db, url, &dev, &["executions", "list", "--json"]);
    assert_eq!(parse(&out).as_array().unwrap().len(), 3);

    // What the guests said: the same lines and JSON, followed or not.
    let etl = completed["id"].as_str().unwrap();
    for args in [
        &["executions", "logs", etl][..],
        &["executions", "logs", etl, "--json"],
        &["executions", "logs", etl, "--follow"],
        &["executions", "logs", etl, "--follow", "--json"],
        &[
            "executions",
            "logs",
            etl,
            "--task",
            "extract",
            "--attempt",
            "1",
        ],
        &["executions", "logs", id, "--json"],
    ] {
        let (code, out, err) = same(&db, url, &dev, args);
        assert_eq!(code, 0, "{err}");
        assert!(!out.is_empty(), "{args:?}");
    }
    let (_, out, _) = same(&db, url, &dev, &["executions", "logs", etl, "--json"]);
    assert!(
        !parse(&out).as_array().unwrap().is_empty(),
        "etl logs: {out}"
    );
    let (code, _, _) = same(
        &db,
        url,
        &dev,
        &["executions", "logs", &uuid::Uuid::new_v4().to_string()],
    );
    assert_eq!(code, 1);
    let (_, out, _) = same(
        &db,
        url,
        &dev,
        &["executions", "list", "--limit", "2", "--json"],
    );
    assert_eq!(parse(&out).as_array().unwrap().len(), 2);

    // "Not found" reads the same.
    let nobody = uuid::Uuid::new_v4().to_string();
    for args in [
        &["executions", "show", nobody.as_str()][..],
        &["cancel", nobody.as_str()],
        &["run", "nosuch"],
        &["package", "remove", "nosuch"],
    ] {
        let (code, _, err) = same(&db, url, &dev, args);
        assert_eq!(code, 1);
        assert!(
            err.starts_with("error: ") && err.lines().count() == 1,
            "{err}"
        );
    }

    // Cancel: one execution each way, printed alike; cancelling again is
    // refused alike.
    let slow = ["run", "slow", "--context", r#"{"ms":60000}"#];
    let (code, here_id, err) = run_local(&db, &slow);
    assert_eq!(code, 0, "{err}");
    let (code, there_id, err) = run_remote(&db, url, &dev, &slow);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.is_empty(),
        "a server runs it: no note about `serve`: {err}"
    );
    let (here_id, there_id) = (here_id.trim(), there_id.trim());
    let here = run_local(&db, &["cancel", here_id, "--json"]);
    let there = run_remote(&db, url, &dev, &["cancel", there_id, "--json"]);
    assert_eq!(here.0, 0, "{}", here.2);
    assert_eq!(
        here.1.replace(here_id, "ID"),
        there.1.replace(there_id, "ID")
    );
    assert_eq!(parse(&there.1)["status"], "cancelled");
    let (code, _, err) = same(&db, url, &dev, &["cancel", there_id]);
    assert_eq!(code, 1, "{err}");

    // Remove: through the API, then (re-registered) against the database.
    let there = run_remote(&db, url, &dev, &["package", "remove", "etl", "--json"]);
    assert_eq!(there.0, 0, "{}", there.2);
    let (code, _, err) = run_local(&db, &["package", "add", artifacts::ETL]);
    assert_eq!(code, 0, "{err}");
    let here = run_local(&db, &["package", "remove", "etl", "--json"]);
    let strip = |text: &str| {
        let mut v = parse(text);
        for p in v.as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("id");
            p.as_object_mut().unwrap().remove("registered_at");
        }
        v
    };
    assert_eq!(strip(&here.1), strip(&there.1));
    assert_eq!(parse(&there.1)[0]["name"], "etl");

    // Signing: keys trusted and listed, a signed package added (its
    // FILE.sig travels in a header) and shown, alike in both modes.
    let signer = db.dir().join("ci").display().to_string();
    let (code, _, err) = run_local(&db, &["key", "generate", "--out", &signer]);
    assert_eq!(code, 0, "{err}");
    let hello = db.dir().join("hello.wasm").display().to_string();
    std::fs::copy(artifacts::HELLO, &hello).unwrap();
    let (code, _, err) = run_local(
        &db,
        &["package", "sign", &hello, "--key", &format!("{signer}.key")],
    );
    assert_eq!(code, 0, "{err}");
    let public = format!("{signer}.pub");
    let trust = ["key", "trust", "--name", "ci", public.as_str(), "--json"];
    let (code, _, err) = run_remote(&db, url, &dev, &trust);
    assert_eq!(code, 1, "a tenant key may not trust keys");
    assert!(
        err.contains("does not manage its own signing keys"),
        "{err}"
    );
    let (code, out, err) = run_remote(&db, url, &ops, &trust);
    assert_eq!(code, 0, "{err}");
    let key_id = parse(&out)["key_id"].as_str().unwrap().to_string();
    same(&db, url, &ops, &["key", "list", "--json"]);
    let (code, out, err) = run_remote(&db, url, &dev, &["package", "add", &hello, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(parse(&out)["signature_key_id"], key_id.as_str());
    same(&db, url, &dev, &["package", "show", "hello", "--json"]);
    same(&db, url, &dev, &["package", "show", "hello"]);
    let (code, out, err) = run_remote(&db, url, &ops, &["key", "untrust", "ci", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(parse(&out)["status"], "untrusted");
    let (_, listed, _) = same(&db, url, &dev, &["package", "list"]);
    assert!(
        listed.contains(&format!("{key_id} (UNTRUSTED)")),
        "{listed}"
    );

    // Status: an operator's key sees what the database shows.
    let here = run_local(&db, &["status", "--json"]);
    let there = run_remote(&db, url, &ops, &["status", "--json"]);
    assert_eq!(there.0, 0, "{}", there.2);
    assert_eq!(
        steady_status(parse(&here.1)),
        steady_status(parse(&there.1))
    );
    assert_eq!(parse(&there.1)["hosts"].as_array().unwrap().len(), 1);
    let here = run_local(&db, &["status"]);
    let there = run_remote(&db, url, &ops, &["status"]);
    assert_eq!(steady_status_text(&here.1), steady_status_text(&there.1));
    assert!(there.1.contains("\nhost "), "{}", there.1);

    assert!(
        !client_dir(&db).join("culvert.db").exists(),
        "the client opened a database of its own"
    );
}

/// A tenant's key reaches its own tenant only: another tenant's
/// executions and packages are "not found" (worded as against the
/// database), its lists and status show its own things, and its status
/// says nothing about the hosts or the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_reaches_its_own_tenant_only() {
    let db = TestDb::new(Db::Sqlite).await;
    let (code, _, err) = run_local(&db, &["tenant", "create", "acme"]);
    assert_eq!(code, 0, "{err}");
    let acme = create_key(&db, "acme", "dev", "tenant");
    let (code, _, err) = run_local(&db, &["package", "add", artifacts::ETL]);
    assert_eq!(code, 0, "{err}");
    let server = Server::start(&db, &acme);
    let url = server.url.as_str();

    // acme's developer registers and runs without naming the tenant.
    let (code, out, err) = run_remote(&db, url, &acme, &["package", "add", artifacts::HELLO]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(tenant acme)"), "{out}");
    let (code, out, err) = run_remote(
        &db,
        url,
        &acme,
        &["run", "hello", "--wait", "--timeout", "120", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(parse(&out)["tenant"], "acme");

    let (code, public_id, err) = run_local(&db, &["run", "etl"]);
    assert_eq!(code, 0, "{err}");
    let public_id = public_id.trim();

    // Another tenant's execution: not found, in the database's words for
    // the same request.
    let here = run_local(&db, &["executions", "show", public_id, "--tenant", "acme"]);
    let there = run_remote(&db, url, &acme, &["executions", "show", public_id]);
    assert_eq!(here, there);
    assert_eq!(there.0, 1);
    assert!(there.2.contains("not found"), "{}", there.2);
    let here = run_local(&db, &["executions", "logs", public_id, "--tenant", "acme"]);
    let there = run_remote(&db, url, &acme, &["executions", "logs", public_id]);
    assert_eq!(here, there);
    assert_eq!(there.0, 1);
    let (code, _, err) = run_remote(&db, url, &acme, &["cancel", public_id]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let here = run_local(&db, &["run", "etl", "--tenant", "acme"]);
    let there = run_remote(&db, url, &acme, &["run", "etl"]);
    assert_eq!(here, there);
    assert_eq!(there.0, 1);
    for args in [
        &["package", "list", "--tenant", "public"][..],
        &["executions", "list", "--tenant", "public"],
        &["executions", "show", public_id, "--tenant", "public"],
    ] {
        let (code, _, err) = run_remote(&db, url, &acme, args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("not found"), "{args:?}: {err}");
    }

    // Its lists hold its own things only, printed as against the
    // database with --tenant acme.
    for (args, tenant_args) in [
        (
            &["package", "list", "--json"][..],
            &["--tenant", "acme"][..],
        ),
        (&["package", "list"], &["--tenant", "acme"]),
        (&["executions", "list", "--json"], &["--tenant", "acme"]),
        (&["executions", "list"], &["--tenant", "acme"]),
    ] {
        let there = run_remote(&db, url, &acme, args);
        let here = run_local(&db, &[args, tenant_args].concat());
        assert_eq!(here, there, "{args:?}");
    }
    let (_, out, _) = run_remote(&db, url, &acme, &["executions", "list", "--json"]);
    let listed = parse(&out);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["tenant"], "acme");

    // Its status: its packages and counts, nothing of the fleet.
    let (code, out, err) = run_remote(&db, url, &acme, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status = parse(&out);
    let mut keys: Vec<&String> = status.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["executions", "packages", "serving"]);
    assert_eq!(status["packages"].as_array().unwrap().len(), 1);
    assert_eq!(status["packages"][0]["tenant"], "acme");
    assert_eq!(status["executions"]["completed"], 1);
    assert_eq!(status["executions"]["pending"], 0);
    let (code, text, _) = run_remote(&db, url, &acme, &["status"]);
    assert_eq!(code, 0);
    assert!(
        !text.contains("database") && !text.contains("host"),
        "{text}"
    );
    assert!(text.contains("  acme::hello@"), "{text}");
    assert!(!text.contains("etl"), "{text}");
}

/// Refusals say what to check: a wrong or revoked key (without printing
/// it), a server that is not running (naming its URL), `--server` without
/// a key, and a command that works on the database only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_to_check() {
    let db = TestDb::new(Db::Sqlite).await;
    let dev = create_key(&db, "public", "dev", "tenant");
    let server = Server::start(&db, &dev);
    let url = server.url.as_str();

    let wrong = format!("{}x", &dev[..dev.len() - 1]);
    let (code, out, err) = run_remote(&db, url, &wrong, &["package", "list"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("refused the API key") && err.contains(url),
        "{err}"
    );
    assert!(!err.contains(&wrong), "the key is printed: {err}");

    // A revoked key stops working (the server rereads keys within 500 ms).
    let (code, out, err) = run_local(&db, &["apikey", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let id = parse(&out)[0]["id"].as_str().unwrap().to_string();
    let (code, _, err) = run_local(&db, &["apikey", "revoke", &id]);
    assert_eq!(code, 0, "{err}");
    let t0 = Instant::now();
    loop {
        let (code, _, err) = run_remote(&db, url, &dev, &["package", "list"]);
        if code == 1 {
            assert!(err.contains("refused the API key"), "{err}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the revoked key still works"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Nothing listening.
    let gone = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = run_remote(&db, &gone, &dev, &["executions", "list"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&gone) && err.contains("culvert serve"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // No key; a URL that is not one; a database-only command.
    let mut c = remote(&db, url, "");
    c.env_remove("CULVERT_API_KEY").arg("status");
    let (code, _, err) = output(c);
    assert_eq!(code, 1);
    assert!(
        err.contains("needs an API key") && err.contains("CULVERT_API_KEY"),
        "{err}"
    );
    let (code, _, err) = run_remote(&db, "ftp://example.invalid", &dev, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a server URL"), "{err}");
    for args in [
        &["tenant", "list"][..],
        &["serve"],
        &["apikey", "list"],
        &["prune", "--older-than", "1d"],
    ] {
        let (code, _, err) = run_remote(&db, url, &dev, args);
        assert_eq!(code, 1, "{args:?}");
        assert!(
            err.contains(&format!("`culvert {}` works on the database", args[0]))
                && err.contains("CULVERT_DATABASE_URL"),
            "{err}"
        );
    }
    // Commands that need no database still work with a server configured.
    let (code, out, err) = run_remote(&db, url, &dev, &["package", "inspect", artifacts::HELLO]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("hello "), "{out}");
    assert!(!client_dir(&db).join("culvert.db").exists());
    drop(server);
}

culvert_tests::both_backends!(both_modes_print_the_same);
