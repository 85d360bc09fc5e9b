//! The dashboard in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`, which `.ci/run` installs) driven through
//! WebDriver with fantoccini, against a real `culvert serve` on an SQLite
//! file, over loopback.
//!
//! One journey, as a tenant's user and an operator walk it: log in with a
//! tenant key, start `etl`, watch it finish in the live list, check every
//! node of its DAG is completed, read a task's log line, start a long run
//! and cancel it from its page; a package whose descriptions, logs,
//! context and errors carry markup runs and is shown as text, with no
//! script run and no element injected; another tenant's key sees none of
//! it; the operator sees both tenants' usage and the hosts. Each step
//! saves a screenshot under `target/dashboard-screenshots/` when it fails.
//!
//! With `CULVERT_DOC_SCREENSHOTS=DIR`, it also saves the two screenshots
//! `docs/` shows (an execution's DAG, the operator's usage page).

use culvert_tests::{Db, TestDb, artifacts};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_culvert");
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a step may wait for the page.
const PATIENCE: Duration = Duration::from_secs(30);

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn culvert(db: &TestDb) -> Command {
    let mut c = Command::new(BIN);
    c.env("CULVERT_DATABASE_URL", &db.url)
        .env("CULVERT_CACHE_DIR", db.dir().join("cache"))
        .env("CULVERT_DATA_DIR", db.dir().join("data"))
        .env("CULVERT_LOG", "warn")
        .env_remove("CULVERT_LISTEN")
        .env_remove("CULVERT_METRICS_LISTEN");
    c
}

/// A CLI command that must succeed, its stdout as JSON.
fn cli_json(db: &TestDb, args: &[&str]) -> Value {
    let out = culvert(db).args(args).output().expect("run culvert");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "culvert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("culvert {args:?}: {e}: {stdout}"))
}

/// A new key's secret.
fn key(db: &TestDb, tenant: &str, name: &str, role: &str) -> String {
    let v = cli_json(
        db,
        &[
            "apikey", "create", "--tenant", tenant, "--name", name, "--role", role, "--json",
        ],
    );
    v["secret"].as_str().unwrap().to_string()
}

/// A child process killed when dropped; with `group`, its whole process
/// group (chromedriver's browsers, which a killed driver would leave
/// running when a step fails).
struct Killed(Child, bool);

impl Drop for Killed {
    fn drop(&mut self) {
        if self.1
            && let Some(group) = rustix::process::Pid::from_raw(self.0.id() as i32)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `culvert serve` on a free port; its address and its log.
fn serve(db: &TestDb) -> (Killed, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut child = culvert(db)
        .args(["serve", "--listen", "127.0.0.1:0", "--concurrency", "4"])
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
    let t0 = Instant::now();
    let addr = loop {
        let found = log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.split("API on http://").nth(1).map(str::to_string));
        if let Some(rest) = found {
            let end = rest.find(['/', ',', ' ', ')']).unwrap_or(rest.len());
            break rest[..end].trim_end_matches('.').parse().unwrap();
        }
        assert!(
            t0.elapsed() < PATIENCE,
            "serve never started: {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (Killed(child, false), addr, log)
}

/// chromedriver on a free port, once it accepts connections.
fn chromedriver() -> (Killed, u16) {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver (.ci/run does)"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    use std::os::unix::process::CommandExt;
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < PATIENCE, "chromedriver never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child, true), port)
}

/// A browser session, and where its failure screenshots go.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
}

impl Browser {
    async fn open(driver_port: u16, base: String) -> Self {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("a WebDriver session");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("dashboard-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            client,
            base,
            shots,
        }
    }

    /// Run one step of the journey; on failure, save a screenshot named
    /// after it and fail the test with its error.
    async fn step<T>(&self, name: &str, f: impl Future<Output = Res<T>>) -> T {
        match f.await {
            Ok(v) => v,
            Err(e) => {
                let path = self.shots.join(format!("{name}.png"));
                let saved = match self.client.screenshot().await {
                    Ok(png) => std::fs::write(&path, png).map(|_| path.display().to_string()),
                    Err(e) => Ok(format!("no screenshot: {e}")),
                };
                let url = self.client.current_url().await.map(|u| u.to_string());
                panic!("step '{name}' failed: {e}\n  at {url:?}\n  screenshot: {saved:?}");
            }
        }
    }

    async fn goto(&self, path: &str) -> Res<()> {
        self.client.goto(&format!("{}{path}", self.base)).await?;
        Ok(())
    }

    /// Wait for an element matching `css`.
    async fn wait_for(&self, css: &str) -> Res<fantoccini::elements::Element> {
        Ok(self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await?)
    }

    /// The value of a script run in the page.
    async fn eval(&self, script: &str) -> Res<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    async fn login(&self, key: &str) -> Res<()> {
        self.goto("/ui/login").await?;
        self.wait_for("#key").await?.send_keys(key).await?;
        self.client
            .find(Locator::Css("#login-submit"))
            .await?
            .click()
            .await?;
        self.wait_for("#execution-rows").await?;
        Ok(())
    }

    async fn logout(&self) -> Res<()> {
        self.goto("/ui/executions").await?;
        self.client
            .find(Locator::Css("#logout button"))
            .await?
            .click()
            .await?;
        self.wait_for("#login").await?;
        Ok(())
    }

    /// Start `workflow` (as the start form names it) with `context`; the
    /// new execution's id, from the page it leads to.
    async fn start(&self, workflow: &str, context: &str) -> Res<String> {
        self.goto("/ui/executions").await?;
        self.wait_for("#start").await?;
        self.client
            .find(Locator::Css(&format!(
                "#workflow option[value='{workflow}']"
            )))
            .await?
            .click()
            .await?;
        let ctx = self.client.find(Locator::Css("#context")).await?;
        ctx.clear().await?;
        ctx.send_keys(context).await?;
        self.client
            .find(Locator::Css("#start-submit"))
            .await?
            .click()
            .await?;
        self.wait_for("#live").await?;
        let url = self.client.current_url().await?;
        let id = url
            .path_segments()
            .and_then(|mut s| s.nth(2))
            .ok_or("no execution id in the URL")?
            .to_string();
        Ok(id)
    }

    /// Wait until the script's value is `true`.
    async fn until(&self, what: &str, script: &str) -> Res<()> {
        let t0 = Instant::now();
        loop {
            if self.eval(script).await? == json!(true) {
                return Ok(());
            }
            if t0.elapsed() > PATIENCE {
                return Err(format!("never true: {what}").into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fail if a script ran or markup was injected: the payloads set the
    /// title to "pwned", and no element of theirs may exist.
    async fn nothing_injected(&self) -> Res<()> {
        let found = self
            .eval(
                "return {title: document.title, \
                 inline: document.querySelectorAll('script:not([src])').length, \
                 img: document.querySelectorAll('img').length, \
                 handlers: document.querySelectorAll('[onerror],[onload],[onclick]').length, \
                 js_links: Array.from(document.querySelectorAll('a[href]')).filter(a => (a.getAttribute('href') || '').trim().toLowerCase().startsWith('javascript:')).length}",
            )
            .await?;
        let clean = json!({"inline": 0, "img": 0, "handlers": 0, "js_links": 0});
        if found["title"] == "pwned"
            || ["inline", "img", "handlers", "js_links"]
                .iter()
                .any(|k| found[k] != clean[k])
        {
            return Err(format!("injected: {found}").into());
        }
        Ok(())
    }

    /// Save a screenshot for the docs, when asked to.
    async fn doc_shot(&self, name: &str) {
        if let Ok(dir) = std::env::var("CULVERT_DOC_SCREENSHOTS") {
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(PathBuf::from(dir).join(name), png).expect("write screenshot");
        }
    }
}

/// What a plain HTTP request got: status, headers (lower-case names) and body.
fn http(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    // A server that refuses a body early may close before all is sent.
    let _ = s.write_all(request.as_bytes());
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_journey_in_a_browser() {
    let db = TestDb::new(Db::Sqlite).await;
    cli_json(&db, &["tenant", "create", "acme", "--json"]);
    cli_json(&db, &["tenant", "create", "rival", "--json"]);
    // etl comes signed by a key acme trusts (FILE.sig next to it).
    let signing = db.dir().join("acme-ci").display().to_string();
    cli_json(&db, &["key", "generate", "--out", &signing, "--json"]);
    let etl_file = db.dir().join("etl.wasm").display().to_string();
    std::fs::copy(artifacts::ETL, &etl_file).unwrap();
    let secret = format!("{signing}.key");
    let public = format!("{signing}.pub");
    cli_json(
        &db,
        &["package", "sign", &etl_file, "--key", &secret, "--json"],
    );
    let signer = cli_json(
        &db,
        &[
            "key", "trust", "--tenant", "acme", "--name", "ci", &public, "--json",
        ],
    )["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (file, tenant) in [
        (etl_file.as_str(), "acme"),
        (artifacts::SANDBOX_PROBE, "acme"),
        (artifacts::HELLO, "rival"),
    ] {
        cli_json(&db, &["package", "add", file, "--tenant", tenant, "--json"]);
    }
    let acme = key(&db, "acme", "acme-web", "tenant");
    let rival = key(&db, "rival", "rival-web", "tenant");
    let operator = key(&db, "public", "ops", "operator");
    let (_serve, addr, log) = serve(&db);
    let (_driver, driver_port) = chromedriver();
    let b = Browser::open(driver_port, format!("http://{addr}")).await;

    // Not logged in: to the login page; a wrong key is refused there.
    b.step("login-refused", async {
        b.goto("/ui/executions").await?;
        b.wait_for("#login").await?;
        b.wait_for("#key")
            .await?
            .send_keys("cvk_000000000000_nope")
            .await?;
        b.client
            .find(Locator::Css("#login-submit"))
            .await?
            .click()
            .await?;
        let e = b.wait_for("#login-error").await?.text().await?;
        if !e.contains("not valid") {
            return Err(format!("login error says: {e}").into());
        }
        Ok(())
    })
    .await;

    b.step("login-tenant", b.login(&acme)).await;
    b.step("session-cookie", async {
        let cookies = b.client.get_all_cookies().await?;
        let c = cookies
            .iter()
            .find(|c| c.name() == "culvert_session")
            .ok_or("no session cookie")?;
        if c.http_only() != Some(true) || c.same_site() != Some(cookie::SameSite::Strict) {
            return Err(format!("cookie flags: {c:?}").into());
        }
        if c.value().contains(&acme) {
            return Err("the cookie holds the key".into());
        }
        Ok(())
    })
    .await;

    // A context that is not JSON is refused inline, and nothing starts.
    b.step("start-invalid-context", async {
        b.goto("/ui/executions").await?;
        b.wait_for("#start").await?;
        let ctx = b.client.find(Locator::Css("#context")).await?;
        ctx.clear().await?;
        ctx.send_keys("{not json").await?;
        b.client
            .find(Locator::Css("#start-submit"))
            .await?
            .click()
            .await?;
        let e = b.wait_for("#start-error").await?.text().await?;
        if !e.contains("not valid JSON") {
            return Err(format!("the inline error says: {e}").into());
        }
        Ok(())
    })
    .await;

    let etl = b
        .step("start-etl", b.start("etl::etl", r#"{"notify": true}"#))
        .await;
    b.step("etl-finishes-in-the-list", async {
        b.goto("/ui/executions").await?;
        b.until(
            "etl shows completed in the live list",
            &format!(
                "return document.querySelector(\"tr[data-id='{etl}'][data-status='completed']\") !== null"
            ),
        )
        .await
    })
    .await;
    b.step("dag-all-completed", async {
        b.goto(&format!("/ui/executions/{etl}")).await?;
        b.wait_for("svg.dag").await?;
        let statuses = b
            .eval("return Array.from(document.querySelectorAll('svg.dag g.node')).map(n => n.dataset.status)")
            .await?;
        let statuses = statuses.as_array().ok_or("no nodes")?;
        if statuses.is_empty() || statuses.iter().any(|s| s != "completed") {
            return Err(format!("node statuses: {statuses:?}").into());
        }
        Ok(())
    })
    .await;
    b.doc_shot("dashboard-execution.png").await;
    b.step("task-log-line", async {
        b.client
            .find(Locator::Css("svg.dag g.node[data-task='extract'] a"))
            .await?
            .click()
            .await?;
        let logs = b.wait_for("#logs").await?.text().await?;
        if !logs.contains("count=5") {
            return Err(format!("the log says: {logs}").into());
        }
        // One attempt, completed, with its duration.
        let attempts = b.wait_for("#attempts tbody").await?.text().await?;
        if !attempts.contains("completed") || !attempts.contains(" ms") {
            return Err(format!("the attempts say: {attempts}").into());
        }
        Ok(())
    })
    .await;

    // A long run, cancelled from its page.
    let slow = b
        .step(
            "start-slow",
            b.start("sandbox-probe::slow", r#"{"ms": 30000}"#),
        )
        .await;
    b.step("cancel-from-the-page", async {
        b.wait_for("#cancel-submit").await?.click().await?;
        b.until(
            "the page says cancelled",
            "return document.querySelector('#status[data-status=cancelled]') !== null",
        )
        .await
    })
    .await;

    // Markup from a package (descriptions), a context, logs and an error:
    // all shown as text.
    let payload =
        r#"<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>"#;
    let context =
        json!({"say": payload, "fail": true, "link": "javascript:document.title='pwned'"});
    let markup = b
        .step(
            "start-markup",
            b.start("sandbox-probe::markup", &context.to_string()),
        )
        .await;
    for (name, path) in [
        ("markup-execution", format!("/ui/executions/{markup}")),
        (
            "markup-task",
            format!("/ui/executions/{markup}/tasks/shout"),
        ),
        ("markup-list", "/ui/executions".to_string()),
        ("markup-packages", "/ui/packages".to_string()),
    ] {
        b.step(name, async {
            b.goto(&path).await?;
            b.wait_for("main").await?;
            if name == "markup-packages" {
                let said = b
                    .eval("return Array.from(document.querySelectorAll('article.package')).map(a => a.dataset.package + ': ' + a.querySelector('dd.signature').innerText)")
                    .await?;
                let said = said.to_string();
                if !said.contains(&format!("etl: key {signer}")) || !said.contains("sandbox-probe: nobody") {
                    return Err(format!("the packages' signers are not shown: {said}").into());
                }
            }
            if name == "markup-task" {
                b.until(
                    "the task failed",
                    "return document.querySelector('#error') !== null && document.querySelector('#logs') !== null",
                )
                .await?;
                let text = b.eval("return document.body.innerText").await?;
                if !text.as_str().unwrap_or("").contains("<script>document.title='pwned'</script>") {
                    return Err("the payload is not shown as text".into());
                }
            }
            b.nothing_injected().await
        })
        .await;
    }
    // The schedules the probe declares: listed with their next due times,
    // and paused with a button (a CSRF-checked form), which the database
    // then says too.
    b.step("schedules", async {
        b.goto("/ui/schedules").await?;
        b.wait_for("#schedules").await?;
        let rows = b
            .eval("return Array.from(document.querySelectorAll('#schedules tbody tr')).map(r => r.innerText)")
            .await?;
        let rows = rows.as_array().cloned().unwrap_or_default();
        if rows.len() != 2
            || !rows.iter().all(|r| {
                let t = r.as_str().unwrap_or("");
                t.contains("declared by sandbox-probe") && t.contains("2027-01-01T") && t.contains("Pause")
            })
        {
            return Err(format!("the declared schedules are not listed: {rows:?}").into());
        }
        b.client
            .find(Locator::Css("#schedules tbody tr:first-child button"))
            .await?
            .click()
            .await?;
        b.until(
            "the schedule shows paused",
            "return document.querySelector('#schedules tbody tr:first-child') !== null && document.querySelector('#schedules tbody tr:first-child').innerText.includes('Resume')",
        )
        .await
    })
    .await;
    let listed = cli_json(&db, &["schedule", "list", "--tenant", "acme", "--json"]);
    let paused: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["paused"] == json!(true))
        .collect();
    assert_eq!(paused.len(), 1, "{listed}");
    // At phone width nothing but the tables' own scrollers is wider than
    // the screen.
    b.step("phone-width", async {
        b.client.set_window_size(390, 844).await?;
        for path in [
            "/ui/executions",
            &format!("/ui/executions/{etl}"),
            "/ui/packages",
            "/ui/schedules",
            "/ui/usage",
        ] {
            b.goto(path).await?;
            b.wait_for("main").await?;
            let wide = b
                .eval("return document.documentElement.scrollWidth > window.innerWidth + 1")
                .await?;
            if wide != json!(false) {
                let culprits = b
                    .eval(
                        "return [document.documentElement.scrollWidth, window.innerWidth].concat(Array.from(document.querySelectorAll('body, body *')) \
                         .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible') \
                         .slice(0, 5).map(e => e.tagName + ' ' + (e.getAttribute('class') || '') + ' ' + e.scrollWidth + '>' + e.clientWidth))",
                    )
                    .await?;
                return Err(format!("{path} is wider than 390 px: {culprits}").into());
            }
        }
        b.client.set_window_size(1280, 1000).await?;
        Ok(())
    })
    .await;
    b.step("logout-tenant", b.logout()).await;

    // Another tenant sees none of it.
    // With the keyboard only: the key, then Enter.
    b.step("login-rival-by-keyboard", async {
        b.goto("/ui/login").await?;
        b.wait_for("#key")
            .await?
            .send_keys(&format!("{rival}\u{E007}"))
            .await?;
        b.wait_for("#execution-rows").await?;
        Ok(())
    })
    .await;
    b.step("rival-sees-nothing", async {
        let page = b.eval("return document.body.innerHTML").await?;
        let page = page.as_str().unwrap_or("");
        for id in [&etl, &slow, &markup] {
            if page.contains(id.as_str()) {
                return Err(format!("rival's list shows {id}").into());
            }
        }
        b.goto(&format!("/ui/executions/{etl}")).await?;
        let h1 = b.wait_for("h1").await?.text().await?;
        if !h1.contains("404") {
            return Err(format!("another tenant's execution: {h1}").into());
        }
        Ok(())
    })
    .await;
    b.step("logout-rival", b.logout()).await;

    // The operator sees both tenants' usage, and the hosts.
    b.step("login-operator", b.login(&operator)).await;
    b.step("operator-usage", async {
        b.goto("/ui/usage").await?;
        b.wait_for("#tenants tr[data-tenant='acme']").await?;
        b.wait_for("#tenants tr[data-tenant='rival']").await?;
        // acme has two packages (of at most 100).
        let acme = b
            .client
            .find(Locator::Css(
                "#tenants tr[data-tenant='acme'] td:nth-of-type(3)",
            ))
            .await?
            .text()
            .await?;
        if !acme.starts_with("2 / 100") {
            return Err(format!("acme's packages: {acme}").into());
        }
        b.wait_for("#hosts").await?;
        Ok(())
    })
    .await;
    b.doc_shot("dashboard-usage.png").await;

    // Outside the browser: the headers, and a form without its token.
    let (status, headers, _) = http(
        addr,
        "GET /ui/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let csp = header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");
    let cookie = b
        .client
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "culvert_session")
        .unwrap();
    let body = "workflow=etl%3A%3Aetl&context=%7B%7D&csrf=forged";
    let (status, _, _) = http(
        addr,
        &format!(
            "POST /ui/executions?tenant=acme HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: culvert_session={}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            cookie.value(),
            body.len()
        ),
    );
    assert_eq!(status, 403, "a start without the CSRF token");
    // The session is valid on another host of the fleet (the secret is
    // the database's); a tampered one sends to the login page.
    let (_second, second_addr, _) = serve(&db);
    let page = |addr: SocketAddr, cookie: &str| {
        http(
            addr,
            &format!(
                "GET /ui/usage HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: culvert_session={cookie}\r\n\r\n"
            ),
        )
    };
    let (status, _, body) = page(second_addr, cookie.value());
    assert_eq!(
        status, 200,
        "the operator's session on a second host: {body}"
    );
    assert!(body.contains("id=\"hosts\""), "{body}");
    let tampered = cookie.value().replacen('.', ".9", 1);
    let (status, headers, _) = page(second_addr, &tampered);
    assert_eq!(status, 303, "a tampered session goes to the login page");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "location" && v == "/ui/login"),
        "{headers:?}"
    );
    // Hostile requests: a form over the body cap (4 MiB by default), a
    // filter and a task name that carry markup. Refused, with the markup
    // escaped in the answer.
    let big = format!("key={}", "A".repeat(5 * 1024 * 1024));
    let (status, _, _) = http(
        addr,
        &format!(
            "POST /ui/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        ),
    );
    assert_eq!(status, 413, "a 5 MiB login form");
    let session = format!("Cookie: culvert_session={}\r\n", cookie.value());
    for (path, want) in [
        ("/ui/executions?status=%3Cscript%3Ex%3C/script%3E", 400),
        (
            &format!("/ui/executions/{etl}/tasks/%3Cscript%3Ex%3C%2Fscript%3E?tenant=acme") as &str,
            404,
        ),
        ("/ui/executions/rows?since=%3Cimg%3E", 400),
    ] {
        let (status, _, body) = http(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{session}\r\n"),
        );
        assert_eq!(status, want, "{path}: {body}");
        assert!(
            !body.contains("<script>x") && !body.contains("<img>"),
            "{path} echoes markup: {body}"
        );
    }
    b.client.close().await.unwrap();
    let log = log.lock().unwrap().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}
