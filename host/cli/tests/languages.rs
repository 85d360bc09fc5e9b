//! Packages in other languages on the same contract: `culvert package
//! build` makes `examples/python-etl` with componentize-py and
//! `examples/js-hello` with componentize-js (installed by
//! scripts/ensure-python-toolchain and scripts/ensure-js-toolchain, which
//! scripts/test runs), and each runs like its Rust twin (`etl`, `hello`),
//! on both backends, to the same final context. A definition the host would refuse stops the build with the
//! SDK's message; a missing toolchain is named with its install command.

use culvert_tests::{Db, TestDb, artifacts};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_culvert");

/// Compiled code shared by these tests (a Python component takes seconds
/// to compile in a debug build): the cache writes by rename, so processes
/// may share it.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("languages-cache")
}

fn culvert(db: &TestDb) -> Command {
    let mut c = Command::new(BIN);
    c.env("CULVERT_DATABASE_URL", &db.url)
        .env("CULVERT_CACHE_DIR", cache_dir())
        .env("CULVERT_DATA_DIR", db.dir().join("data"))
        .env("CULVERT_LOG", "warn")
        .env("CULVERT_LISTEN", "none");
    c
}

fn run(mut c: Command) -> (i32, String, String) {
    let out = c.output().expect("run culvert");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// `culvert package build PROJECT --out OUT --json`, run in the tests'
/// temporary directory (so a relative OUT lands there): the summary.
fn build(project: &str, out: &str, toolchain: &str) -> Value {
    let mut c = Command::new(BIN);
    c.env("CULVERT_CACHE_DIR", cache_dir())
        .env("CULVERT_LOG", "warn")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .args(["package", "build"])
        .arg(repo(project))
        .args(["--out", out, "--json"]);
    let (code, stdout, stderr) = run(c);
    assert_eq!(
        code, 0,
        "culvert package build {project} (is the toolchain there? scripts/{toolchain}): {stderr}"
    );
    serde_json::from_str(&stdout).unwrap()
}

/// Create each tenant and add its package.
fn add_to_tenants(db: &TestDb, packages: &[(&str, &Path)]) {
    for (tenant, file) in packages {
        let mut c = culvert(db);
        c.args(["tenant", "create", tenant]);
        assert_eq!(run(c).0, 0);
        let mut c = culvert(db);
        c.args(["package", "add", "--tenant", tenant]).arg(file);
        let (code, _, err) = run(c);
        assert_eq!(code, 0, "add {}: {err}", file.display());
    }
}

/// `examples/python-etl`, built once for every test here.
fn python_etl() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-etl.wasm");
        let summary = build(
            "examples/python-etl",
            out.to_str().unwrap(),
            "ensure-python-toolchain",
        );
        assert_eq!(summary["name"], "python-etl");
        assert_eq!(summary["version"], "0.1.0");
        assert_eq!(summary["contract_version"], "0.2.0");
        let workflows: Vec<&str> = summary["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        assert_eq!(workflows, ["etl"]);
        let tasks = &summary["workflows"][0]["tasks"];
        assert_eq!(tasks[2]["id"], "enrich");
        assert_eq!(tasks[2]["retry"]["max_attempts"], 3);
        assert_eq!(tasks[2]["timeout_ms"], 5000);
        assert!(tasks[4]["trigger"].is_object(), "{summary}");
        out
    })
}

/// `examples/js-hello`, built once for every test here.
fn js_hello() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // A relative --out, as the SDK's README writes it.
        let summary = build("examples/js-hello", "js-hello.wasm", "ensure-js-toolchain");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("js-hello.wasm");
        assert_eq!(summary["name"], "js-hello");
        assert_eq!(summary["workflows"][0]["name"], "hello");
        let imports = summary["imports"].to_string();
        assert!(
            !imports.contains("wasi:http"),
            "built without wasi:http: {imports}"
        );
        out
    })
}

/// The final context of `workflow` in `tenant` for `context`.
fn final_context_of(db: &TestDb, tenant: &str, workflow: &str, context: &Value) -> Value {
    let mut c = culvert(db);
    c.args([
        "run",
        workflow,
        "--tenant",
        tenant,
        "--wait",
        "--timeout",
        "120",
        "--json",
    ])
    .arg("--context")
    .arg(context.to_string());
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "run {workflow} in {tenant}: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "completed", "{v}");
    v["context"].clone()
}

async fn js_hello_greets_like_the_rust_one(db: Db) {
    let db = TestDb::new(db).await;
    add_to_tenants(
        &db,
        &[("js", js_hello()), ("rs", Path::new(artifacts::HELLO))],
    );
    // `exec` runs it without registering, as it runs a Rust package.
    let mut c = culvert(&db);
    c.arg("exec").arg(js_hello()).args([
        "--workflow",
        "hello",
        "--context",
        r#"{"name":"exec"}"#,
        "--json",
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["context"]["greeting"], "Hello, exec!", "{v}");
    for context in [json!({}), json!({"name": "Culvert"})] {
        let js = final_context_of(&db, "js", "hello", &context);
        let rs = final_context_of(&db, "rs", "hello", &context);
        assert_eq!(js, rs, "the same final context for {context}");
        assert!(js["greeting"].as_str().unwrap().starts_with("Hello, "));
    }
}

async fn python_etl_runs_like_the_rust_one(db: Db) {
    let db = TestDb::new(db).await;
    add_to_tenants(
        &db,
        &[("py", python_etl()), ("rs", Path::new(artifacts::ETL))],
    );
    for context in [
        json!({}),
        json!({"notify": true}),
        json!({"source_rows": [3, -1, 4], "factor": 2, "notify": true}),
    ] {
        let py = final_context_of(&db, "py", "etl", &context);
        let rs = final_context_of(&db, "rs", "etl", &context);
        assert_eq!(py, rs, "the same final context for {context}");
    }
    // A task's permanent error, as the Rust one reports it.
    let mut c = culvert(&db);
    c.args(["run", "etl", "--tenant", "py", "--wait", "--json"])
        .args(["--context", r#"{"factor": 0}"#]);
    let (code, out, _) = run(c);
    assert_eq!(code, 3, "a failed workflow exits 3");
    let v: Value = serde_json::from_str(&out).unwrap();
    let enrich = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "enrich")
        .unwrap()
        .clone();
    assert_eq!(enrich["status"], "failed", "{enrich}");
    assert!(
        enrich.to_string().contains("factor must not be zero"),
        "{enrich}"
    );
}

/// `tests/guests/py-hostile`, built once for every test here.
fn py_hostile() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-hostile.wasm");
        build(
            "tests/guests/py-hostile",
            out.to_str().unwrap(),
            "ensure-python-toolchain",
        );
        out
    })
}

/// The gauntlet's Python cases: a package that loops, one that allocates
/// without bound, one that reaches for a socket and one for host files
/// each fail alone with a typed error, under the default limits, while
/// another tenant's Python package runs on.
async fn python_hostile_packages_fail_alone(db: Db) {
    let db = TestDb::new(db).await;
    add_to_tenants(&db, &[("evil", py_hostile()), ("good", python_etl())]);
    let escaped = Path::new("/tmp/culvert-py-hostile");
    let _ = std::fs::remove_file(escaped);
    for (workflow, kind, words) in [
        ("spin", "timeout", "1500"),
        ("bloat", "out_of_memory", "memory"),
        ("socket", "permanent", "Error"),
        ("files", "permanent", "Error"),
    ] {
        let mut c = culvert(&db);
        c.args([
            "run",
            workflow,
            "--tenant",
            "evil",
            "--wait",
            "--timeout",
            "120",
            "--json",
        ]);
        let (code, out, err) = run(c);
        assert_eq!(code, 3, "{workflow} fails: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let t = &v["tasks"][0];
        assert_eq!(t["status"], "failed", "{workflow}: {t}");
        assert_eq!(t["error_kind"], kind, "{workflow}: {t}");
        assert!(
            t["error"].as_str().unwrap_or("").contains(words),
            "{workflow}: {t}"
        );
        let good = final_context_of(&db, "good", "etl", &json!({}));
        assert_eq!(
            good["total"], 150,
            "the other tenant runs on after {workflow}"
        );
    }
    assert!(!escaped.exists(), "no file written on the host");
}

culvert_tests::both_backends!(
    python_etl_runs_like_the_rust_one,
    js_hello_greets_like_the_rust_one,
    python_hostile_packages_fail_alone
);

#[test]
fn a_python_package_of_another_contract_is_refused_like_a_rust_one() {
    let contract = std::fs::read_to_string(repo("wit/culvert.wit")).unwrap();
    let other = contract.replace(
        "package culvert:plugin@0.2.0;",
        "package culvert:plugin@0.3.0;",
    );
    assert_ne!(contract, other);
    let scratch = tempfile::tempdir().unwrap();
    let wit = scratch.path().join("culvert.wit");
    std::fs::write(&wit, other).unwrap();
    let out = scratch.path().join("etl-0.3.wasm");
    let (code, _, err) = run({
        let mut c = Command::new(BIN);
        c.env("CULVERT_CACHE_DIR", cache_dir())
            .args(["package", "build"])
            .arg(repo("examples/python-etl"))
            .arg("--out")
            .arg(&out)
            .arg("--wit")
            .arg(&wit);
        c
    });
    assert_eq!(code, 1, "the host refuses what it built: {err}");
    assert!(
        err.contains("culvert:plugin@0.3.0") && err.contains("culvert:plugin@0.2.0"),
        "{err}"
    );
    // The loader's typed error: the kind a Rust package of 0.3.0 gets
    // (tests/loader.rs).
    let bytes = std::fs::read(&out).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let e = runtime
        .block_on(culvert_tests::loader().load(&bytes))
        .unwrap_err();
    assert_eq!(e.kind(), "contract_mismatch", "{e}");
}

/// A project in a fresh directory: `pyproject.toml` and `app.py`.
fn python_project(app: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"broken\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("app.py"), app).unwrap();
    dir
}

#[test]
fn a_definition_the_host_would_refuse_stops_the_build() {
    for (app, expected) in [
        (
            "from culvert_sdk import task, workflow\n@workflow(name='w')\nclass W:\n    @task(id='a', dependencies=['ghost'])\n    def a(ctx): pass\n",
            "task 'a' depends on unknown task 'ghost'",
        ),
        (
            "from culvert_sdk import task, workflow\n@workflow(name='w')\nclass W:\n    @task(id='a', dependencies=['b'])\n    def a(ctx): pass\n    @task(id='b', dependencies=['a'])\n    def b(ctx): pass\n",
            "dependency cycle",
        ),
        (
            "from culvert_sdk import task, workflow\n@workflow(name='w')\nclass W:\n    @task(id='a')\n    def a(ctx): pass\n    @task(id='a')\n    def b(ctx): pass\n",
            "duplicate task id 'a'",
        ),
        (
            "from culvert_sdk import Retry, task, workflow\n@workflow(name='w')\nclass W:\n    @task(id='a', retry=Retry(max_attempts=0))\n    def a(ctx): pass\n",
            "invalid retry policy: max_attempts must be between 1 and 100",
        ),
        (
            "from culvert_sdk import task, workflow\nprint('chatty')\n@workflow(name='w')\nclass W:\n    @task(id='a')\n    async def a(ctx): pass\n",
            "tasks are synchronous functions, not async def",
        ),
    ] {
        let dir = python_project(app);
        let (code, out, err) = run({
            let mut c = Command::new(BIN);
            c.args(["package", "build"]).arg(dir.path());
            c
        });
        assert_eq!(code, 1, "{app}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(!dir.path().join("broken.wasm").exists(), "nothing built");
    }
}

#[test]
fn a_javascript_definition_the_host_would_refuse_stops_the_build() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "broken", "version": "0.1.0", "type": "module", "main": "index.js"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("index.js"),
        "import { task, workflow } from '@culvert/sdk';\nworkflow({ name: 'w' }, [task({ id: 'a', dependencies: ['ghost'] }, () => {})]);\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        repo("examples/js-hello/node_modules"),
        dir.path().join("node_modules"),
    )
    .unwrap();
    let (code, out, err) = run({
        let mut c = Command::new(BIN);
        c.args(["package", "build"]).arg(dir.path());
        c
    });
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("task 'a' depends on unknown task 'ghost'"),
        "{err}"
    );
    assert!(!dir.path().join("broken.wasm").exists());
}

#[test]
fn a_missing_toolchain_is_named_with_its_install_command() {
    let dir = python_project("");
    let mut c = Command::new(BIN);
    c.args(["package", "build"])
        .arg(dir.path())
        .env_remove("VIRTUAL_ENV")
        .env("PATH", "/usr/bin:/bin");
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(
        err.contains("componentize-py is not installed")
            && err.contains("pip install 'componentize-py==0.25.1'"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run({
        let mut c = Command::new(BIN);
        c.args(["package", "build"]).arg(empty.path());
        c
    });
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "expected Cargo.toml (Rust), pyproject.toml (Python) or package.json (JavaScript)"
        ),
        "{err}"
    );
    // A JavaScript project without its installs.
    let bare = tempfile::tempdir().unwrap();
    std::fs::write(bare.path().join("package.json"), r#"{"name": "bare"}"#).unwrap();
    let (code, _, err) = run({
        let mut c = Command::new(BIN);
        c.args(["package", "build"]).arg(bare.path());
        c
    });
    assert_eq!(code, 1);
    assert!(
        err.contains("@bytecodealliance/componentize-js@0.23.0") && err.contains("npm install"),
        "{err}"
    );
}

/// Every declaration form of the Python SDK (each backoff and retry_on,
/// each trigger rule and condition, schedules with every catch-up and
/// overlap, capabilities) reads back through the real component's
/// `describe` as declared in tests/guests/py-shapes.
#[test]
fn every_python_declaration_reads_back_through_describe() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("py-shapes.wasm");
    let (code, stdout, err) = run({
        let mut c = Command::new(BIN);
        c.env("CULVERT_CACHE_DIR", cache_dir())
            .args(["package", "build"])
            .arg(repo("tests/guests/py-shapes"))
            .arg("--out")
            .arg(&out)
            .arg("--json");
        c
    });
    assert_eq!(code, 0, "{err}");
    let d: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&d["name"], &d["version"], &d["author"]),
        (
            &json!("py-shapes"),
            &json!("0.3.1"),
            &json!("Culvert tests")
        )
    );
    assert_eq!(
        d["capabilities"],
        json!({"dirs": [{"guest_path": "/data", "writable": true}, {"guest_path": "/ro", "writable": false}],
               "env": ["TOKEN"], "http_hosts": ["api.example.com"], "random": true, "wall_clock": true})
    );
    assert_eq!(
        d["schedules"],
        json!([
            {"catch_up": "all", "catch_up_cap": 5, "context": {"full": true}, "cron": "0 0 3 * * *",
             "overlap": "queue_one", "timezone": "Europe/Berlin", "workflow": "forms"},
            {"catch_up": "latest", "catch_up_cap": 10, "context": {}, "cron": "0 */5 * * * *",
             "overlap": "skip", "timezone": "UTC", "workflow": "forms"}
        ])
    );
    let tasks = d["workflows"][0]["tasks"].as_array().unwrap();
    let ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(
        tasks[0]["retry"],
        json!({"backoff": "fixed", "initial_delay_ms": 10, "jitter": false, "max_attempts": 4,
               "max_delay_ms": 20, "retry_on": "all_errors"})
    );
    assert_eq!(tasks[1]["retry"]["backoff"], "linear");
    assert_eq!(tasks[1]["retry"]["retry_on"], "never");
    assert_eq!(tasks[1]["timeout_ms"], 1234);
    assert_eq!(tasks[2]["retry"]["retry_on"], "transient_only");
    assert_eq!(
        tasks[2]["trigger"],
        json!({"rule": "any", "conditions": [
            {"condition": "task_failed", "task": "a"}, {"condition": "task_skipped", "task": "b"},
            {"condition": "context_exists", "key": "k"},
            {"condition": "context_not_equals", "key": "k", "value": 1}]})
    );
    assert_eq!(
        tasks[3]["trigger"],
        json!({"rule": "none", "conditions": [
            {"condition": "context_greater_than", "key": "n", "value": 2},
            {"condition": "context_less_than", "key": "n", "value": -2},
            {"condition": "context_contains", "key": "tags", "value": "x"}]})
    );
    assert_eq!(tasks[4]["trigger"], json!({"rule": "always"}));
    assert_eq!(
        tasks[5]["trigger"],
        json!({"rule": "all", "conditions": [
            {"condition": "task_succeeded", "task": "e"},
            {"condition": "context_equals", "key": "mode", "value": "full"}]})
    );
}
