//! The HTTP API of real `culvert serve` processes, spoken to over loopback
//! with real HTTP/1.1: keys on every route and tenants kept apart, bounded
//! and checked bodies, a slow client cut off, idempotent starts, the event
//! stream, the audit log, rate limits, pages, two hosts on one PostgreSQL,
//! health, OpenAPI and metrics, and `--listen none`.
//!
//! The client is a few lines over `std::net::TcpStream` (below, `mod
//! client`): the tests need byte-level control a library client hides
//! (chunked bodies, a request that stops halfway, a stream read to its
//! end), and it adds no crate to the build.
//!
//! Most checks share one server per backend (`the_api_on_one_server`); what
//! needs other flags or processes has its own test. Each server binds port
//! 0 and prints the address it got; each has its own data directory and
//! database; all share one cache of compiled components, so each guest
//! compiles once per run.

use culvert_tests::{Db, TestDb, artifacts, read};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_culvert");

/// Generous bound on anything that should take a moment, so a broken
/// build fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

/// A minimal HTTP/1.1 client: one request per connection.
mod client {
    use serde_json::Value;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// A request's body.
    pub enum Body<'a> {
        /// None (`Content-Length: 0` on methods that take one).
        Empty,
        /// JSON, with `Content-Length`.
        Json(&'a Value),
        /// These bytes with this content type and `Content-Length`.
        Raw(&'a [u8], &'a str),
        /// These bytes with this content type, sent chunked (no length).
        Chunked(&'a [u8], &'a str),
    }

    /// A whole response.
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        /// A header's value (the first, by case-insensitive name).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// The body for a failure message: at most 2,000 characters.
        pub fn brief(&self) -> String {
            let text = self.text();
            match text.char_indices().nth(2000) {
                Some((i, _)) => format!("{}... ({} bytes)", &text[..i], text.len()),
                None => text,
            }
        }

        /// The body as JSON (panics, showing it, when it is not).
        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!(
                    "status {}: the body is not JSON ({e}): {}",
                    self.status,
                    self.brief()
                )
            })
        }
    }

    /// Send one request on a fresh connection (`Connection: close`) and
    /// read the answer to its end. The body is written from another thread
    /// while the answer is read, so a server that answers before reading
    /// it all (413) is heard.
    pub fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Response {
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(key) = key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let json_bytes;
        let (bytes, chunked): (&[u8], bool) = match body {
            Body::Empty => {
                if matches!(method, "POST" | "PUT" | "PATCH" | "DELETE") {
                    head.push_str("Content-Length: 0\r\n");
                }
                (&[], false)
            }
            Body::Json(v) => {
                json_bytes = serde_json::to_vec(v).unwrap();
                head.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    json_bytes.len()
                ));
                (&json_bytes, false)
            }
            Body::Raw(b, ty) => {
                head.push_str(&format!(
                    "Content-Type: {ty}\r\nContent-Length: {}\r\n",
                    b.len()
                ));
                (b, false)
            }
            Body::Chunked(b, ty) => {
                head.push_str(&format!(
                    "Content-Type: {ty}\r\nTransfer-Encoding: chunked\r\n"
                ));
                (b, true)
            }
        };
        head.push_str("\r\n");
        let mut writer = stream.try_clone().unwrap();
        let mut raw = Vec::new();
        std::thread::scope(|s| {
            s.spawn(move || {
                // A server may answer and close before reading everything:
                // a failed write is then expected, and the answer tells.
                let _ = (|| -> std::io::Result<()> {
                    writer.write_all(head.as_bytes())?;
                    if chunked {
                        for chunk in bytes.chunks(64 * 1024) {
                            writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                            writer.write_all(chunk)?;
                            writer.write_all(b"\r\n")?;
                        }
                        writer.write_all(b"0\r\n\r\n")?;
                    } else {
                        writer.write_all(bytes)?;
                    }
                    writer.flush()
                })();
            });
            let mut buf = [0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionReset && !raw.is_empty() => break,
                    Err(e) => panic!("{method} {path}: reading the answer: {e}"),
                }
            }
        });
        parse(&raw).unwrap_or_else(|| {
            panic!(
                "{method} {path}: not an HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    /// Parse a whole HTTP/1.1 answer (skipping `1xx` ones).
    fn parse(mut raw: &[u8]) -> Option<Response> {
        loop {
            let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
            let head = std::str::from_utf8(&raw[..end]).ok()?;
            let rest = &raw[end + 4..];
            let mut lines = head.split("\r\n");
            let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            if (100..200).contains(&status) {
                raw = rest;
                continue;
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                dechunk(rest)?
            } else if let Some(len) = header("content-length") {
                rest.get(..len.parse::<usize>().ok()?)?.to_vec()
            } else {
                rest.to_vec()
            };
            return Some(Response {
                status,
                headers,
                body,
            });
        }
    }

    fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let eol = raw.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            raw = &raw[eol + 2..];
            if size == 0 {
                return Some(out);
            }
            out.extend_from_slice(raw.get(..size)?);
            raw = raw.get(size + 2..)?;
        }
    }
}

use client::{Body, Response};

/// The server at `addr`, with request helpers.
#[derive(Clone, Copy)]
struct Api {
    addr: SocketAddr,
}

impl Api {
    fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Response {
        client::send(self.addr, method, path, key, headers, body)
    }

    fn get(&self, key: &str, path: &str) -> Response {
        self.send("GET", path, Some(key), &[], Body::Empty)
    }

    fn post(&self, key: &str, path: &str, body: &Value) -> Response {
        self.send("POST", path, Some(key), &[], Body::Json(body))
    }

    fn delete(&self, key: &str, path: &str) -> Response {
        self.send("DELETE", path, Some(key), &[], Body::Empty)
    }

    /// GET that must answer 200 with JSON.
    fn get_ok(&self, key: &str, path: &str) -> Value {
        let r = self.get(key, path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.brief());
        r.json()
    }

    /// Register `wasm` (in the key's tenant, or `?tenant=`): the answer.
    fn upload(&self, key: &str, path: &str, wasm: &str) -> Value {
        let bytes = read(wasm);
        let r = self.send(
            "POST",
            path,
            Some(key),
            &[],
            Body::Raw(&bytes, "application/wasm"),
        );
        assert!(
            r.status == 201 || r.status == 200,
            "upload {wasm}: {} {}",
            r.status,
            r.brief()
        );
        r.json()
    }

    /// Start `workflow` with `context`: the new execution's id.
    fn start(&self, key: &str, workflow: &str, context: Value) -> String {
        let r = self.post(
            key,
            "/api/v1/executions",
            &json!({"workflow": workflow, "context": context}),
        );
        assert_eq!(r.status, 201, "start {workflow}: {}", r.brief());
        r.json()["id"].as_str().unwrap().to_string()
    }

    /// Wait until the execution has finished: its `show` document.
    fn wait_finished(&self, key: &str, id: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.get_ok(key, &format!("/api/v1/executions/{id}"));
            if matches!(
                v["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return v;
            }
            assert!(t0.elapsed() < PATIENCE, "{id} never finished: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the execution has `status`.
    fn wait_status(&self, key: &str, id: &str, status: &str) {
        let t0 = Instant::now();
        loop {
            let v = self.get_ok(key, &format!("/api/v1/executions/{id}"));
            if v["status"] == status {
                return;
            }
            assert!(t0.elapsed() < PATIENCE, "{id} never got {status}: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Create tenant `name` with `limits` and a tenant key for it (through
    /// the API, with the operator key `op`): the key's secret and id.
    fn tenant(&self, op: &str, name: &str, limits: Value) -> Key {
        let r = self.post(
            op,
            "/api/v1/tenants",
            &json!({"name": name, "limits": limits}),
        );
        assert_eq!(r.status, 201, "create tenant {name}: {}", r.brief());
        self.key(op, name, &format!("{name}-key"))
    }

    /// A new tenant key of `tenant`.
    fn key(&self, op: &str, tenant: &str, name: &str) -> Key {
        let r = self.post(op, "/api/v1/keys", &json!({"tenant": tenant, "name": name}));
        assert_eq!(r.status, 201, "create key {name}: {}", r.brief());
        let v = r.json();
        Key {
            id: v["id"].as_str().unwrap().to_string(),
            secret: v["secret"].as_str().unwrap().to_string(),
        }
    }
}

/// An API key.
#[derive(Debug, Clone)]
struct Key {
    id: String,
    secret: String,
}

/// The compiled-component cache every server of this run shares: the
/// cache writes by rename, so concurrent processes may share it.
fn cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("http-tests-cache")
}

fn culvert(db: &TestDb) -> Command {
    let mut c = Command::new(BIN);
    c.env("CULVERT_DATABASE_URL", &db.url)
        .env("CULVERT_CACHE_DIR", cache_dir())
        .env("CULVERT_DATA_DIR", db.dir().join("data"))
        .env("CULVERT_LOG", "warn")
        .env_remove("CULVERT_LISTEN")
        .env_remove("CULVERT_METRICS_LISTEN");
    c
}

/// Run a CLI command: exit code, stdout, stderr.
fn cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = culvert(db).args(args).output().expect("run culvert");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A CLI command that must succeed, its stdout as JSON.
fn cli_json(db: &TestDb, args: &[&str]) -> Value {
    let (code, out, err) = cli(db, args);
    assert_eq!(code, 0, "culvert {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("culvert {args:?}: {e}: {out}"))
}

/// `culvert apikey create --json` with `extra` flags.
fn cli_key(db: &TestDb, tenant: &str, name: &str, extra: &[&str]) -> Key {
    let mut args = vec![
        "apikey", "create", "--tenant", tenant, "--name", name, "--json",
    ];
    args.extend_from_slice(extra);
    let v = cli_json(db, &args);
    Key {
        id: v["id"].as_str().unwrap().to_string(),
        secret: v["secret"].as_str().unwrap().to_string(),
    }
}

/// A `culvert serve` on port 0, killed when dropped. Its stderr (the log)
/// is collected, and the addresses it bound are read from its start line.
struct Serve {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    api: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

impl Serve {
    /// `serve --listen 127.0.0.1:0` with `extra` arguments (which may
    /// replace the `--listen`), once it has printed its start line.
    fn start(db: &TestDb, extra: &[&str]) -> Self {
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = culvert(db)
            .args(["serve", "--lease", "2", "--concurrency", "8"])
            .args(listen)
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
        let mut serve = Serve {
            child,
            log,
            api: None,
            metrics: None,
        };
        let t0 = Instant::now();
        let line = loop {
            let found = serve
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("culvert serving: host "))
                .cloned();
            if let Some(line) = found {
                break line;
            }
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("serve exited ({status}): {}", serve.log_text());
            }
            assert!(
                t0.elapsed() < PATIENCE,
                "serve never started: {}",
                serve.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let addr_after = |marker: &str| -> Option<SocketAddr> {
            let rest = line.split(marker).nth(1)?;
            let end = rest.find(['/', ',', ' ', ')']).unwrap_or(rest.len());
            let addr = rest[..end].trim_end_matches('.');
            Some(
                addr.parse()
                    .unwrap_or_else(|e| panic!("{e}: {addr} in {line}")),
            )
        };
        serve.api = addr_after("API on http://");
        serve.metrics = addr_after("metrics also on http://").or(addr_after("metrics on http://"));
        serve
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn api(&self) -> Api {
        Api {
            addr: self.api.expect("this serve has an API"),
        }
    }

    /// Wait until `/readyz` answers 200.
    fn wait_ready(&self) -> Api {
        let api = self.api();
        let t0 = Instant::now();
        loop {
            let r = api.send("GET", "/readyz", None, &[], Body::Empty);
            if r.status == 200 {
                assert_eq!(r.json()["status"], "ready", "{}", r.brief());
                return api;
            }
            assert_eq!(r.status, 503, "/readyz: {}", r.brief());
            assert!(
                r.header("retry-after").is_some(),
                "a 503 says when to retry"
            );
            assert!(
                t0.elapsed() < PATIENCE,
                "never ready: {}; log: {}",
                r.brief(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Assert `r` is the error shape with `status` and `kind`, and nothing
/// else: `{"error": {"kind", "message"}}`. Returns the message.
fn assert_error(r: &Response, status: u16, kind: &str, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.brief());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: content type {:?}",
        r.header("content-type")
    );
    let v = r.json();
    let top = v.as_object().expect("an object");
    assert_eq!(top.len(), 1, "{what}: only `error`: {v}");
    let e = top["error"].as_object().expect("error is an object");
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        ["kind", "message"],
        "{what}: {v}"
    );
    assert_eq!(e["kind"], kind, "{what}: {v}");
    let message = e["message"].as_str().expect("a message");
    assert!(!message.is_empty(), "{what}: {v}");
    message.to_string()
}

/// Poll `f` until it returns true, at most `limit`; the elapsed time.
fn poll(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A random UUID no execution has.
fn unknown_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------
// The routes
// ---------------------------------------------------------------------------

/// Every route of the router, as `(method, path)`. The suite checks this
/// list against routes/mod.rs and against the OpenAPI document, so a route
/// added there without being added here (and so checked for keys) fails.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/packages"),
    ("POST", "/api/v1/packages"),
    ("POST", "/api/v1/packages/inspect"),
    ("GET", "/api/v1/packages/{name}"),
    ("DELETE", "/api/v1/packages/{name}"),
    ("GET", "/api/v1/executions"),
    ("POST", "/api/v1/executions"),
    ("GET", "/api/v1/executions/{id}"),
    ("GET", "/api/v1/executions/{id}/events"),
    ("GET", "/api/v1/executions/{id}/logs"),
    ("GET", "/api/v1/executions/{id}/stream"),
    ("POST", "/api/v1/executions/{id}/cancel"),
    ("POST", "/api/v1/executions/{id}/retry"),
    ("GET", "/api/v1/schedules"),
    ("POST", "/api/v1/schedules"),
    ("GET", "/api/v1/schedules/{id}"),
    ("DELETE", "/api/v1/schedules/{id}"),
    ("POST", "/api/v1/schedules/{id}/pause"),
    ("POST", "/api/v1/schedules/{id}/resume"),
    ("POST", "/api/v1/schedules/{id}/trigger"),
    ("GET", "/api/v1/tenants"),
    ("POST", "/api/v1/tenants"),
    ("GET", "/api/v1/tenants/{name}"),
    ("PATCH", "/api/v1/tenants/{name}"),
    ("DELETE", "/api/v1/tenants/{name}"),
    ("GET", "/api/v1/tenants/{name}/grants"),
    ("POST", "/api/v1/tenants/{name}/grants"),
    ("DELETE", "/api/v1/tenants/{name}/grants"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{id}"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/signing-keys"),
    ("POST", "/api/v1/signing-keys"),
    ("DELETE", "/api/v1/signing-keys/{key}"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// The routes that need no key.
const OPEN_ROUTES: &[&str] = &["/healthz", "/readyz"];

/// Whether a route is for operator keys only.
fn operator_only(path: &str) -> bool {
    [
        "/api/v1/tenants",
        "/api/v1/keys",
        "/api/v1/audit",
        "/metrics",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// The routes `router()` in host/server/src/routes/mod.rs declares, read
/// from its source: `(METHOD, full path)`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/src/routes/mod.rs");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("pub fn router(")
        .expect("router() in routes/mod.rs");
    let body = &text[start..];
    let body = &body[..body.find("\n}\n").expect("the end of router()")];
    // Routes before `.nest(PREFIX, api)` are the nested API's.
    let nest = body.find(".nest(").expect(".nest( in router()");
    let prefix = body[nest..].split('"').nth(1).unwrap().to_string();
    let mut out = BTreeSet::new();
    let mut pieces: Vec<(usize, &str)> = body.match_indices(".route(").collect();
    pieces.push((body.len(), ""));
    for w in pieces.windows(2) {
        let (at, next) = (w[0].0, w[1].0);
        let mut segment = &body[at..next];
        for stop in [".layer(", ".fallback(", ".nest(", ".with_state(", ";"] {
            if let Some(i) = segment.find(stop) {
                segment = &segment[..i];
            }
        }
        let route = segment.split('"').nth(1).expect("a route's path");
        let full = if at < nest {
            format!("{prefix}{route}")
        } else {
            route.to_string()
        };
        let bytes = segment.as_bytes();
        for method in ["get", "post", "put", "patch", "delete"] {
            for (i, _) in segment.match_indices(&format!("{method}(")) {
                let before = if i == 0 { b' ' } else { bytes[i - 1] };
                if !(before.is_ascii_alphanumeric() || before == b'_') {
                    out.insert((method.to_uppercase(), full.clone()));
                }
            }
        }
    }
    out
}

/// The real things a route's path names, for the key checks.
struct Targets {
    package: String,
    execution: String,
    schedule: String,
    tenant: String,
    key_id: String,
}

fn concrete(path: &str, t: &Targets) -> String {
    let p = if path.starts_with("/api/v1/packages/") {
        path.replace("{name}", &t.package)
    } else {
        path.replace("{name}", &t.tenant)
    };
    let p = if p.starts_with("/api/v1/keys/") {
        p.replace("{id}", &t.key_id)
    } else if p.starts_with("/api/v1/schedules/") {
        p.replace("{id}", &t.schedule)
    } else {
        p.replace("{id}", &t.execution)
    };
    let p = p.replace("{key}", "ci");
    assert!(!p.contains('{'), "{p}");
    p
}

/// A valid body for a route (so that only the key decides), as its bytes
/// and content type.
fn body_for(method: &str, path: &str, t: &Targets, wasm: &[u8]) -> Option<(Vec<u8>, String)> {
    let json = |v: Value| Some((serde_json::to_vec(&v).unwrap(), "application/json".into()));
    match (method, path) {
        ("POST", "/api/v1/packages" | "/api/v1/packages/inspect") => {
            Some((wasm.to_vec(), "application/wasm".into()))
        }
        ("POST", "/api/v1/executions") => json(json!({"workflow": "hello"})),
        ("POST", "/api/v1/schedules") => json(json!({"workflow": "hello", "cron": "0 0 3 1 1 *"})),
        ("POST", "/api/v1/tenants") => json(json!({"name": "made-by-nobody"})),
        ("PATCH", _) => json(json!({"max_packages": 7})),
        ("POST" | "DELETE", p) if p.ends_with("/grants") => {
            json(json!({"kind": "env", "name": "NOBODY", "value": "x"}))
        }
        ("POST", "/api/v1/keys") => json(json!({"tenant": t.tenant, "name": "nobodys"})),
        _ => None,
    }
}

/// Send `method path` (a template) to its concrete path with `auth` as the
/// whole `Authorization` header value (or none).
fn call(
    api: Api,
    method: &str,
    path: &str,
    auth: Option<&str>,
    t: &Targets,
    wasm: &[u8],
) -> Response {
    let concrete = concrete(path, t);
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    match body_for(method, path, t, wasm) {
        Some((bytes, ty)) => api.send(method, &concrete, None, &headers, Body::Raw(&bytes, &ty)),
        None => api.send(method, &concrete, None, &headers, Body::Empty),
    }
}

// ---------------------------------------------------------------------------
// One server per backend: the many checks that need no special flags
// ---------------------------------------------------------------------------

/// The suite on one server (`--header-timeout 2`, `--metrics-listen`):
/// each step uses its own tenant, so none sees another's executions.
async fn the_api_on_one_server(db: Db) {
    let db = TestDb::new(db).await;
    let op = cli_key(&db, "public", "root", &["--role", "operator"]);
    // Expires while the steps below run; checked in keys_on_every_route.
    let expiring = cli_key(&db, "public", "brief", &["--expires", "1s"]);
    let serve = Serve::start(
        &db,
        &["--header-timeout", "2", "--metrics-listen", "127.0.0.1:0"],
    );
    let api = serve.wait_ready();
    let op = op.secret;

    // Each step runs even when one before it failed (their tenants are
    // their own); the failures are listed together at the end.
    let mut failed = Vec::new();
    let mut step = |name: &str, f: &dyn Fn()| {
        eprintln!("[{:?}] {name}", db.kind);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            failed.push(name.to_string());
        }
    };
    step("10. health, OpenAPI and metrics", &|| {
        health_openapi_and_metrics(&serve, &op)
    });
    step("1. keys on every route", &|| {
        keys_on_every_route(&db, api, &op, &expiring)
    });
    step("2. bodies", &|| bodies_are_bounded_and_checked(api, &op));
    step("3. slow clients", &|| a_slow_client_is_cut_off(api, &op));
    step("4. idempotent starts", &|| idempotent_starts(api, &op));
    step("5. event stream", &|| the_event_stream(api, &op));
    step("6. audit log", &|| the_audit_log(&db, api, &op));
    step("6b. cancel at once", &|| cancel_at_once(api, &op));
    step("8. pages", &|| pages_of_executions(api, &op));
    step("9. schedules", &|| schedules_through_the_api(api, &op));
    step("11. signing", &|| signing_through_the_api(api, &op));
    assert!(
        failed.is_empty(),
        "failed steps (see their panics above): {failed:?}"
    );
    // No transaction of the server's died of a deadlock (a claim that does
    // is retried quietly, but says so in the log).
    let log = serve.log_text();
    assert!(!log.contains("deadlock"), "{log}");
    drop(serve);
}

/// 1. Keys: every route refuses a missing, malformed, unknown, wrong,
///    revoked or expired key with 401 and the bare error shape; another
///    tenant's things are "not found" exactly as unknown ones; operator
///    routes are "not found" to tenant keys.
fn keys_on_every_route(db: &TestDb, api: Api, op: &str, expiring: &Key) {
    let a = api.tenant(op, "keys-a", json!({}));
    let b = api.tenant(op, "keys-b", json!({}));
    let hello = read(artifacts::HELLO);
    api.upload(&a.secret, "/api/v1/packages", artifacts::HELLO);
    let exec_a = api.start(&a.secret, "hello", json!({}));
    api.wait_finished(&a.secret, &exec_a);
    let r = api.post(
        &a.secret,
        "/api/v1/schedules",
        &json!({"workflow": "hello", "cron": "0 0 3 1 1 *"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    let schedule_a = r.json()["id"].as_str().unwrap().to_string();
    let t = Targets {
        package: "hello".into(),
        execution: exec_a.clone(),
        schedule: schedule_a.clone(),
        tenant: "keys-a".into(),
        key_id: a.id.clone(),
    };

    // The route list is the router's, and the OpenAPI document's.
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        listed,
        routes_in_source(),
        "ROUTES differs from router() in routes/mod.rs: add the new route here (and to the key checks)"
    );

    // A key that worked, then revoked: refused within a second (the cache
    // of key reads lasts 500 ms).
    let revoked = cli_key(db, "keys-a", "soon-revoked", &[]);
    assert_eq!(api.get(&revoked.secret, "/api/v1/packages").status, 200);
    let (code, _, err) = cli(db, &["apikey", "revoke", &revoked.id]);
    assert_eq!(code, 0, "{err}");
    let took = poll(
        Duration::from_millis(1500),
        "a revoked key is refused",
        || api.get(&revoked.secret, "/api/v1/packages").status == 401,
    );
    eprintln!("revocation took effect after {took:?}");

    // A key with an expiry works until then (expiring, from the CLI with
    // --expires 1s, was made before the server started).
    let r = api.post(
        op,
        "/api/v1/keys",
        &json!({"tenant": "keys-a", "name": "short", "expires_in_seconds": 2}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    let short = r.json()["secret"].as_str().unwrap().to_string();
    assert_eq!(api.get(&short, "/api/v1/packages").status, 200);
    poll(Duration::from_secs(5), "the 1 s key expires", || {
        api.get(&expiring.secret, "/api/v1/packages").status == 401
    });
    poll(Duration::from_secs(5), "the 2 s key expires", || {
        api.get(&short, "/api/v1/packages").status == 401
    });

    // Well-formed keys that match nothing: an unknown id, and a known id
    // with a wrong secret.
    let (id_hex, secret_hex) = a
        .secret
        .strip_prefix("cvk_")
        .and_then(|s| s.split_once('_'))
        .expect("cvk_<id>_<secret>");
    let hex = |n: usize| {
        let mut s = String::new();
        while s.len() < n {
            s.push_str(&uuid::Uuid::new_v4().simple().to_string());
        }
        s[..n].to_string()
    };
    let unknown = format!("cvk_{}_{}", hex(id_hex.len()), hex(secret_hex.len()));
    let flipped = if secret_hex.ends_with('0') { '1' } else { '0' };
    let wrong = format!(
        "cvk_{id_hex}_{}{flipped}",
        &secret_hex[..secret_hex.len() - 1]
    );
    let bearer = |s: &str| format!("Bearer {s}");
    let refused: Vec<(&str, Option<String>)> = vec![
        ("no key", None),
        ("empty bearer", Some("Bearer ".into())),
        ("not a bearer", Some(format!("Basic {}", a.secret))),
        ("no scheme", Some(a.secret.clone())),
        ("malformed", Some(bearer("cvk_nothex_nothex"))),
        ("truncated", Some(bearer(&a.secret[..a.secret.len() - 4]))),
        ("unknown", Some(bearer(&unknown))),
        ("wrong secret", Some(bearer(&wrong))),
        ("revoked", Some(bearer(&revoked.secret))),
        ("expired", Some(bearer(&expiring.secret))),
    ];
    let mut unauthorized_message = None;
    for (method, path) in ROUTES {
        if OPEN_ROUTES.contains(path) {
            let r = call(api, method, path, None, &t, &hello);
            assert_eq!(r.status, 200, "{method} {path} needs no key: {}", r.brief());
            continue;
        }
        for (what, auth) in &refused {
            let r = call(api, method, path, auth.as_deref(), &t, &hello);
            let m = assert_error(
                &r,
                401,
                "unauthorized",
                &format!("{method} {path} with {what}"),
            );
            // The same words for every cause: nothing tells them apart.
            assert_eq!(
                unauthorized_message.get_or_insert_with(|| m.clone()),
                &m,
                "{method} {path} with {what}"
            );
        }
    }
    // Nothing those requests carried was done.
    let tenants = api.get_ok(op, "/api/v1/tenants");
    assert!(!tenants.to_string().contains("made-by-nobody"), "{tenants}");
    assert_eq!(
        api.get_ok(op, "/api/v1/tenants/keys-a")["limits"]["max_packages"],
        100
    );
    assert_eq!(
        api.get_ok(&a.secret, "/api/v1/packages")
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another tenant's things, through b's key, are "not found" exactly as
    // things that do not exist (the name or id aside).
    let same_as_unknown = |method: &str, theirs: &str, unknown: &str, name: &str, other: &str| {
        let r1 = api.send(method, theirs, Some(&b.secret), &[], Body::Empty);
        let r2 = api.send(method, unknown, Some(&b.secret), &[], Body::Empty);
        let m1 = assert_error(
            &r1,
            404,
            "not_found",
            &format!("{method} {theirs} with b's key"),
        );
        let m2 = assert_error(
            &r2,
            404,
            "not_found",
            &format!("{method} {unknown} with b's key"),
        );
        assert_eq!(
            m1.replace(name, "X"),
            m2.replace(other, "X"),
            "{method} {theirs} vs {unknown}"
        );
    };
    let ghost = unknown_uuid();
    for suffix in ["", "/events", "/logs", "/stream", "/cancel", "/retry"] {
        let method = if suffix == "/cancel" || suffix == "/retry" {
            "POST"
        } else {
            "GET"
        };
        same_as_unknown(
            method,
            &format!("/api/v1/executions/{exec_a}{suffix}"),
            &format!("/api/v1/executions/{ghost}{suffix}"),
            &exec_a,
            &ghost,
        );
    }
    for (method, suffix) in [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/trigger"),
    ] {
        same_as_unknown(
            method,
            &format!("/api/v1/schedules/{schedule_a}{suffix}"),
            &format!("/api/v1/schedules/{ghost}{suffix}"),
            &schedule_a,
            &ghost,
        );
    }
    for method in ["GET", "DELETE"] {
        same_as_unknown(
            method,
            "/api/v1/packages/hello",
            "/api/v1/packages/absent",
            "hello",
            "absent",
        );
    }
    for (method, path) in [
        ("GET", "/api/v1/packages"),
        ("GET", "/api/v1/executions"),
        ("GET", "/api/v1/schedules"),
        ("GET", "/api/v1/packages/hello"),
        ("DELETE", "/api/v1/packages/hello"),
        ("GET", &format!("/api/v1/executions/{exec_a}") as &str),
    ] {
        same_as_unknown(
            method,
            &format!("{path}?tenant=keys-a"),
            &format!("{path}?tenant=no-such-tenant"),
            "keys-a",
            "no-such-tenant",
        );
    }
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/executions?tenant=keys-a",
            &json!({"workflow": "hello"}),
        ),
        ("POST", "/api/v1/executions", &json!({"workflow": "hello"})),
    ] {
        let r = api.post(&b.secret, path, body);
        assert_error(
            &r,
            404,
            "not_found",
            &format!("{method} {path} with b's key"),
        );
    }
    let r = api.send(
        "POST",
        "/api/v1/packages?tenant=keys-a",
        Some(&b.secret),
        &[],
        Body::Raw(&hello, "application/wasm"),
    );
    assert_error(&r, 404, "not_found", "upload into keys-a with b's key");
    // b's own lists hold none of a's things, and a's schedule is as it was.
    assert_eq!(api.get_ok(&b.secret, "/api/v1/packages"), json!([]));
    assert_eq!(api.get_ok(&b.secret, "/api/v1/schedules"), json!([]));
    let mine = api.get_ok(&a.secret, &format!("/api/v1/schedules/{schedule_a}"));
    assert_eq!(mine["paused"], false);
    assert_eq!(mine["fires"], json!([]), "b's trigger started nothing");
    assert_eq!(
        api.get_ok(&b.secret, "/api/v1/executions")["executions"],
        json!([])
    );

    // Operator routes are "not found" to a tenant key, even on its own
    // tenant, and do nothing.
    for (method, path) in ROUTES.iter().filter(|(_, p)| operator_only(p)) {
        for tenant in ["keys-a", "keys-b"] {
            let t = Targets {
                package: t.package.clone(),
                execution: t.execution.clone(),
                schedule: t.schedule.clone(),
                tenant: tenant.into(),
                key_id: t.key_id.clone(),
            };
            let r = call(
                api,
                method,
                path,
                Some(bearer(&b.secret).as_str()),
                &t,
                &hello,
            );
            assert_error(
                &r,
                404,
                "not_found",
                &format!("{method} {path} with a tenant key"),
            );
        }
    }
    // a's key, which b tried to revoke, still works; keys-a still exists
    // with its limits unchanged.
    assert_eq!(api.get(&a.secret, "/api/v1/packages").status, 200);
    assert_eq!(
        api.get_ok(op, "/api/v1/tenants/keys-a")["limits"]["max_packages"],
        100
    );
}

/// 11. Signing: trust is the operator's (a tenant key gets 403 unless
///     `allow_tenant_key_trust`); an upload carries its signature in
///     `X-Culvert-Signature`, refused with its typed kind before the
///     compile; the stored signature shows in the list, the show and the
///     audit log; an untrusted key's packages are marked; another tenant
///     sees none of it.
fn signing_through_the_api(api: Api, op: &str) {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let t = api.tenant(op, "signed", json!({"require_signature": true}));
    let other = api.tenant(op, "unsigned", json!({}));
    let (secret, public) = culvert::generate_key().unwrap();
    let trust = json!({"name": "ci", "public_key": public});
    let r = api.post(&t.secret, "/api/v1/signing-keys", &trust);
    assert_error(&r, 403, "forbidden", "a tenant key trusting a key");
    let hello = read(artifacts::HELLO);
    let upload = |key: &str, bytes: &[u8], sig: Option<&str>| {
        let headers: Vec<(&str, &str)> = sig
            .map(|s| ("X-Culvert-Signature", s))
            .into_iter()
            .collect();
        api.send(
            "POST",
            "/api/v1/packages",
            Some(key),
            &headers,
            Body::Raw(bytes, "application/wasm"),
        )
    };
    let m = assert_error(
        &upload(&t.secret, &hello, None),
        403,
        "signature_missing",
        "an unsigned upload",
    );
    assert!(m.contains("require_signature"), "{m}");
    // Nor is anything unsigned compiled for the tenant by an inspection.
    let r = api.send(
        "POST",
        "/api/v1/packages/inspect",
        Some(&t.secret),
        &[],
        Body::Raw(&hello, "application/wasm"),
    );
    assert_error(&r, 403, "signature_missing", "an unsigned inspection");

    let r = api.post(op, "/api/v1/signing-keys?tenant=signed", &trust);
    assert_eq!(r.status, 201, "{}", r.brief());
    let trusted = r.json();
    assert_eq!(trusted["status"], "trusted");
    assert_eq!(trusted["key_id"], public.key_id.as_str());
    assert_eq!(trusted["tenant"], "signed");

    let (_, key) = culvert::SecretKeyFile::parse(&serde_json::to_vec(&secret).unwrap()).unwrap();
    let hash = blake3::hash(&hello).to_hex().to_string();
    let sig = culvert::SignatureFile::sign(&key, &hash, "hello", "0.1.0", culvert::now_ms());
    let header = b64(&serde_json::to_vec(&sig).unwrap());
    assert_error(
        &upload(&t.secret, &hello, Some("not base64 at all!")),
        422,
        "malformed_signature",
        "a header that is not base64",
    );
    let mut flipped = hello.clone();
    flipped[100] ^= 0x80;
    let m = assert_error(
        &upload(&t.secret, &flipped, Some(&header)),
        422,
        "signature_hash_mismatch",
        "a flipped bit in the package",
    );
    assert!(m.contains(&public.key_id), "{m}");
    // The same signature for a tenant that trusts no key.
    assert_error(
        &upload(&other.secret, &hello, Some(&header)),
        403,
        "signature_untrusted_key",
        "a key the tenant does not trust",
    );

    let r = upload(&t.secret, &hello, Some(&header));
    assert_eq!(r.status, 201, "{}", r.brief());
    assert_eq!(r.json()["signature_key_id"], public.key_id.as_str());
    let listed = api.get_ok(&t.secret, "/api/v1/packages");
    assert_eq!(listed[0]["signature"]["key_id"], public.key_id.as_str());
    assert_eq!(listed[0]["signature"]["key"], "trusted");
    let shown = api.get_ok(&t.secret, "/api/v1/packages/hello");
    assert_eq!(shown["signature"]["signature"], sig.signature.as_str());

    // A tenant key lists its own tenant's keys, never another's.
    let keys = api.get_ok(&t.secret, "/api/v1/signing-keys");
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(api.get_ok(&other.secret, "/api/v1/signing-keys"), json!([]));
    assert_error(
        &api.get(&other.secret, "/api/v1/signing-keys?tenant=signed"),
        404,
        "not_found",
        "another tenant's keys",
    );
    assert_error(
        &api.delete(&other.secret, "/api/v1/signing-keys/ci?tenant=signed"),
        404,
        "not_found",
        "untrusting another tenant's key",
    );

    // Allowed by the operator, the tenant manages its keys itself.
    let r = api.send(
        "PATCH",
        "/api/v1/tenants/signed",
        Some(op),
        &[],
        Body::Json(&json!({"allow_tenant_key_trust": true})),
    );
    assert_eq!(r.status, 200, "{}", r.brief());
    let r = api.delete(&t.secret, "/api/v1/signing-keys/ci");
    assert_eq!(r.status, 200, "{}", r.brief());
    assert_eq!(r.json()["status"], "untrusted");
    assert_error(
        &api.delete(&t.secret, "/api/v1/signing-keys/ci"),
        404,
        "not_found",
        "untrusting twice",
    );
    let listed = api.get_ok(&t.secret, "/api/v1/packages");
    assert_eq!(listed[0]["signature"]["key"], "untrusted");
    assert_eq!(listed[0]["signature"]["disabled"], false);

    // The audit log: who trusted and untrusted which key, and the key of
    // the package added.
    let entries = api.get_ok(op, "/api/v1/audit?tenant=signed");
    let find = |action: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {entries}"))
            .clone()
    };
    let trusted = find("signing_key_trusted");
    assert_eq!(trusted["subject"], public.key_id.as_str());
    assert_eq!(trusted["detail"]["name"], "ci");
    assert!(
        trusted["at"].is_string() || trusted["at"].is_number(),
        "{trusted}"
    );
    let untrusted = find("signing_key_untrusted");
    assert_eq!(
        untrusted["key_id"],
        t.id.as_str(),
        "the tenant's key did it"
    );
    let added = find("package_added");
    assert_eq!(added["detail"]["signature_key_id"], public.key_id.as_str());
}

/// 9. Schedules: create (201), list, show with its fires, trigger (an
///    execution that `?schedule=` finds), pause, resume and delete; bad
///    input is 400 or 404 with the rule, and an operator acts with
///    `?tenant=`.
fn schedules_through_the_api(api: Api, op: &str) {
    let k = api.tenant(op, "cron", json!({"max_schedules": 1})).secret;
    api.upload(&k, "/api/v1/packages", artifacts::HELLO);
    for (body, status, kind, needle) in [
        (
            json!({"workflow": "hello", "cron": "61 * * * * *"}),
            400,
            "invalid_request",
            "invalid cron expression '61 * * * * *'",
        ),
        (
            json!({"workflow": "hello", "cron": "* * * * * *", "timezone": "Nowhere/Land"}),
            400,
            "invalid_request",
            "unknown timezone 'Nowhere/Land'",
        ),
        (
            json!({"workflow": "hello", "cron": "* * * * * *", "overlap": "sometimes"}),
            400,
            "invalid_request",
            "unknown overlap policy 'sometimes': use allow, skip, queue_one",
        ),
        (
            json!({"workflow": "hello", "cron": "* * * * * *", "catch_up_cap": 0}),
            400,
            "invalid_request",
            "catch_up_cap 0 is out of range",
        ),
        (
            json!({"workflow": "helo", "cron": "* * * * * *"}),
            404,
            "not_found",
            "hello",
        ),
        (
            json!({"workflow": "hello", "cron": "* * * * * *", "extra": 1}),
            400,
            "invalid_json",
            "extra",
        ),
    ] {
        let r = api.post(&k, "/api/v1/schedules", &body);
        let m = assert_error(&r, status, kind, &body.to_string());
        assert!(m.contains(needle), "{body}: {m}");
    }
    let r = api.post(
        &k,
        "/api/v1/schedules",
        &json!({"workflow": "hello", "cron": "0 0 3 1 1 *", "context": {"name": "cron"}, "overlap": "queue_one"}),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["overlap"], "queue_one");
    assert!(created["next_due_at"].as_str().unwrap().starts_with("20"));
    // max_schedules = 1.
    let r = api.post(
        &k,
        "/api/v1/schedules",
        &json!({"workflow": "hello", "cron": "0 0 4 1 1 *"}),
    );
    let m = assert_error(&r, 429, "quota_exceeded", "a second schedule");
    assert!(m.contains("max_schedules"), "{m}");
    let r = api.post(&k, &format!("/api/v1/schedules/{id}/trigger"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.brief());
    let fire = r.json();
    assert_eq!(fire["outcome"], "triggered");
    let execution = fire["execution"].as_str().unwrap().to_string();
    let listed = api.get_ok(&k, &format!("/api/v1/executions?schedule={id}"));
    assert_eq!(listed["executions"][0]["id"], execution.as_str());
    assert_eq!(
        listed["executions"][0]["scheduled_for"],
        fire["scheduled_for"]
    );
    let shown = api.get_ok(&k, &format!("/api/v1/schedules/{id}"));
    assert_eq!(shown["fires"][0]["execution"], execution.as_str());
    let r = api.post(&k, &format!("/api/v1/schedules/{id}/pause"), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["paused"], true);
    // An operator sees and changes it with ?tenant=.
    let theirs = api.get_ok(op, "/api/v1/schedules?tenant=cron");
    assert_eq!(theirs[0]["id"], id.as_str());
    let r = api.post(
        op,
        &format!("/api/v1/schedules/{id}/resume?tenant=cron"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.brief());
    assert_eq!(r.json()["paused"], false);
    let r = api.delete(&k, &format!("/api/v1/schedules/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(api.get_ok(&k, "/api/v1/schedules"), json!([]));
}

/// 2. Bodies: a package over the tenant's max_package_bytes is 413 (with
///    or without Content-Length), JSON over 4 MiB is 413, malformed JSON
///    400 invalid_json, and bytes that are not a package 422
///    invalid_package.
fn bodies_are_bounded_and_checked(api: Api, op: &str) {
    let k = api.tenant(op, "bodies", json!({})).secret;
    let hello = read(artifacts::HELLO);
    let cap = 4096;
    assert!(hello.len() > cap);
    let r = api.send(
        "PATCH",
        "/api/v1/tenants/bodies",
        Some(op),
        &[],
        Body::Json(&json!({"max_package_bytes": cap})),
    );
    assert_eq!(r.status, 200, "{}", r.brief());
    assert_eq!(r.json()["limits"]["max_package_bytes"], cap);
    for (path, key) in [
        ("/api/v1/packages", k.as_str()),
        ("/api/v1/packages/inspect", k.as_str()),
        ("/api/v1/packages?tenant=bodies", op),
    ] {
        let r = api.send(
            "POST",
            path,
            Some(key),
            &[],
            Body::Raw(&hello, "application/wasm"),
        );
        let m = assert_error(
            &r,
            413,
            "payload_too_large",
            &format!("{path} with a length"),
        );
        assert!(m.contains("max_package_bytes") && m.contains("4096"), "{m}");
        let r = api.send(
            "POST",
            path,
            Some(key),
            &[],
            Body::Chunked(&hello, "application/wasm"),
        );
        let m = assert_error(&r, 413, "payload_too_large", &format!("{path} chunked"));
        assert!(m.contains("max_package_bytes"), "{m}");
    }
    assert_eq!(api.get_ok(&k, "/api/v1/packages"), json!([]));

    // Under the cap, but not a package: random bytes, a core module.
    let mut random = Vec::new();
    while random.len() < 2000 {
        random.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    for (what, bytes) in [("random bytes", &random), ("a core module", &core_module)] {
        for path in ["/api/v1/packages", "/api/v1/packages/inspect"] {
            let r = api.send(
                "POST",
                path,
                Some(&k),
                &[],
                Body::Raw(bytes, "application/wasm"),
            );
            assert_error(&r, 422, "invalid_package", &format!("{what} to {path}"));
        }
    }
    assert_eq!(api.get_ok(&k, "/api/v1/packages"), json!([]));

    // JSON over 4 MiB, with and without a length, on a tenant's route and
    // on the operators'.
    let pad = "x".repeat((4 << 20) + 16);
    let huge_start =
        serde_json::to_vec(&json!({"workflow": "hello", "context": {"pad": pad}})).unwrap();
    let huge_limits = serde_json::to_vec(&json!({"max_packages": 5, "pad": pad})).unwrap();
    let huge_tenant = serde_json::to_vec(&json!({"name": "huge", "limits": {"pad": pad}})).unwrap();
    for (method, path, key, bytes) in [
        ("POST", "/api/v1/executions", k.as_str(), &huge_start),
        ("PATCH", "/api/v1/tenants/bodies", op, &huge_limits),
        ("POST", "/api/v1/tenants", op, &huge_tenant),
    ] {
        let r = api.send(
            method,
            path,
            Some(key),
            &[],
            Body::Raw(bytes, "application/json"),
        );
        assert_error(
            &r,
            413,
            "payload_too_large",
            &format!("{method} {path} with a length"),
        );
        let r = api.send(
            method,
            path,
            Some(key),
            &[],
            Body::Chunked(bytes, "application/json"),
        );
        assert_error(
            &r,
            413,
            "payload_too_large",
            &format!("{method} {path} chunked"),
        );
    }

    // Malformed JSON.
    for (method, path, key) in [
        ("POST", "/api/v1/executions", k.as_str()),
        ("PATCH", "/api/v1/tenants/bodies", op),
        ("POST", "/api/v1/tenants", op),
        ("POST", "/api/v1/keys", op),
        ("POST", "/api/v1/tenants/bodies/grants", op),
    ] {
        for text in ["{oops", "[1,", "{\"workflow\": }"] {
            let r = api.send(
                method,
                path,
                Some(key),
                &[],
                Body::Raw(text.as_bytes(), "application/json"),
            );
            assert_error(
                &r,
                400,
                "invalid_json",
                &format!("{method} {path} with {text}"),
            );
        }
    }
    // Nothing above changed the tenant's limits or started anything.
    assert_eq!(
        api.get_ok(op, "/api/v1/tenants/bodies")["limits"]["max_package_bytes"],
        cap
    );
    assert_eq!(
        api.get_ok(&k, "/api/v1/executions")["executions"],
        json!([])
    );
}

/// 3. A client that sends half its headers and stalls is cut off after
///    the header timeout (2 s here), and so is one that sends nothing;
///    meanwhile other requests are answered at once.
fn a_slow_client_is_cut_off(api: Api, op: &str) {
    use std::io::{Read, Write};
    for (what, partial) in [
        (
            "half a request",
            &b"GET /api/v1/packages HTTP/1.1\r\nHost: x\r\nAuthor"[..],
        ),
        ("half a request line", &b"GET /api/v1/pack"[..]),
        ("nothing", &b""[..]),
    ] {
        let mut slow = std::net::TcpStream::connect(api.addr).unwrap();
        slow.write_all(partial).unwrap();
        let t0 = Instant::now();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Others are served while it stalls.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                match slow.read(&mut buf) {
                    Ok(0) | Err(_) => return t0.elapsed(),
                    // A 408 before closing is fine: keep reading.
                    Ok(_) => {}
                }
            }
        });
        for _ in 0..5 {
            let t = Instant::now();
            assert_eq!(api.get(op, "/api/v1/packages").status, 200);
            assert_eq!(
                api.send("GET", "/healthz", None, &[], Body::Empty).status,
                200
            );
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{what}: served slowly"
            );
        }
        let closed = reader.join().unwrap();
        assert!(
            closed >= Duration::from_millis(1500) && closed <= Duration::from_secs(5),
            "{what}: the connection closed after {closed:?}, not ~2 s"
        );
    }
}

/// 4. Idempotent starts: the same Idempotency-Key returns the same
///    execution (201, then 200), also for requests at once; with another
///    workflow it is 409.
fn idempotent_starts(api: Api, op: &str) {
    let k = api.tenant(op, "idem", json!({})).secret;
    api.upload(&k, "/api/v1/packages", artifacts::HELLO);
    api.upload(&k, "/api/v1/packages", artifacts::ETL);
    let start = |key: &str, workflow: &str| {
        api.send(
            "POST",
            "/api/v1/executions",
            Some(&k),
            &[("Idempotency-Key", key)],
            Body::Json(&json!({"workflow": workflow})),
        )
    };
    let first = start("order-17", "hello");
    assert_eq!(first.status, 201, "{}", first.brief());
    let id = first.json()["id"].clone();
    let again = start("order-17", "hello");
    assert_eq!(again.status, 200, "{}", again.brief());
    assert_eq!(again.json()["id"], id);
    let other = start("order-17", "etl");
    assert_error(&other, 409, "conflict", "the key with another workflow");
    let list = api.get_ok(&k, "/api/v1/executions")["executions"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id);

    // Eight at once with one key: one execution, one 201.
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let r = start("order-18", "etl");
                    (r.status, r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 200),
        "{answers:?}"
    );
    let ids: HashSet<String> = answers.iter().map(|(_, v)| v["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let list = api.get_ok(&k, "/api/v1/executions")["executions"].clone();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    // Another tenant's same key is its own.
    let k2 = api.tenant(op, "idem-2", json!({})).secret;
    api.upload(&k2, "/api/v1/packages", artifacts::HELLO);
    let r = api.send(
        "POST",
        "/api/v1/executions",
        Some(&k2),
        &[("Idempotency-Key", "order-17")],
        Body::Json(&json!({"workflow": "hello"})),
    );
    assert_eq!(r.status, 201, "{}", r.brief());
    assert_ne!(r.json()["id"], id);
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    event: String,
    id: Option<i64>,
    data: Value,
}

/// The events of an event-stream body (comments and keep-alives skipped).
fn parse_sse(text: &str) -> Vec<Sse> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut event, mut id, mut data) = (None, None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().expect("a numeric id"));
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if let Some(event) = event {
            let data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
            out.push(Sse { event, id, data });
        }
    }
    out
}

/// 5. The event stream of an etl execution, read to its end: every event
///    of `/events`, in order, then `end` with status completed; resuming
///    with Last-Event-ID sends only what came after.
fn the_event_stream(api: Api, op: &str) {
    let k = api.tenant(op, "sse", json!({})).secret;
    api.upload(&k, "/api/v1/packages", artifacts::ETL);
    let id = api.start(&k, "etl", json!({}));
    let path = format!("/api/v1/executions/{id}/stream");
    // Read while it runs (or after: the stream is the same).
    let r = api.get(&k, &path);
    assert_eq!(r.status, 200, "{}", r.brief());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        r.headers
    );
    let events = parse_sse(&r.text());
    let (end, log) = events.split_last().expect("some events");
    assert_eq!(end.event, "end", "{events:?}");
    assert_eq!(end.data, json!({"id": id, "status": "completed"}));
    assert!(log.iter().all(|e| e.event != "end"), "{events:?}");
    // The same events as /events, in the same order, with their ids.
    let stored = api.get_ok(&k, &format!("/api/v1/executions/{id}/events"));
    let stored = stored.as_array().unwrap();
    assert_eq!(log.len(), stored.len(), "{events:?}\n{stored:?}");
    for (sse, e) in log.iter().zip(stored) {
        assert_eq!(sse.data, *e);
        assert_eq!(
            Some(&sse.event),
            e["kind"].as_str().map(String::from).as_ref()
        );
        assert_eq!(sse.id, e["id"].as_i64());
    }
    // Task events for every task of etl.
    for task in ["extract", "clean", "enrich", "load"] {
        assert!(
            log.iter()
                .any(|e| e.data["task"] == task && e.event.starts_with("task_")),
            "no task event of {task}: {events:?}"
        );
    }
    assert!(
        log.iter().any(|e| e.event == "execution_completed"),
        "{events:?}"
    );

    // Resume after the third event: the rest, then the end.
    let seen = log[2].id.unwrap();
    let resumed = api.send(
        "GET",
        &path,
        Some(&k),
        &[("Last-Event-ID", &seen.to_string())],
        Body::Empty,
    );
    assert_eq!(resumed.status, 200);
    let resumed = parse_sse(&resumed.text());
    assert_eq!(resumed, events[3..].to_vec());
    // After the last event, only the end.
    let last = log.last().unwrap().id.unwrap();
    let resumed = api.send(
        "GET",
        &path,
        Some(&k),
        &[("Last-Event-ID", &last.to_string())],
        Body::Empty,
    );
    assert_eq!(parse_sse(&resumed.text()), vec![end.clone()]);
    // An operator follows it with ?tenant=.
    let r = api.get(op, &format!("{path}?tenant=sse"));
    assert_eq!(parse_sse(&r.text()), events);
}

/// 6. Every change through the API is in the audit log, with the key that
///    made it, its tenant, action and subject (and a package's content
///    hash); `culvert audit --json` prints the same entries.
fn the_audit_log(db: &TestDb, api: Api, op: &str) {
    let op_id = op
        .strip_prefix("cvk_")
        .and_then(|s| s.split_once('_'))
        .unwrap()
        .0
        .to_string();
    let r = api.post(op, "/api/v1/tenants", &json!({"name": "audited"}));
    assert_eq!(r.status, 201, "{}", r.brief());
    let r = api.send(
        "PATCH",
        "/api/v1/tenants/audited",
        Some(op),
        &[],
        Body::Json(&json!({"max_packages": 9})),
    );
    assert_eq!(r.status, 200, "{}", r.brief());
    let grant = json!({"kind": "env", "name": "GREETING", "value": "hi"});
    let r = api.post(op, "/api/v1/tenants/audited/grants", &grant);
    assert_eq!(r.status, 200, "{}", r.brief());
    let r = api.send(
        "DELETE",
        "/api/v1/tenants/audited/grants",
        Some(op),
        &[],
        Body::Json(&grant),
    );
    assert_eq!(r.status, 200, "{}", r.brief());
    let user = api.key(op, "audited", "user");
    let spare = api.key(op, "audited", "spare");
    let r = api.delete(op, &format!("/api/v1/keys/{}", spare.id));
    assert_eq!(r.status, 200, "{}", r.brief());
    assert!(r.json()["revoked_at"].is_string(), "{}", r.brief());
    let hello = api.upload(&user.secret, "/api/v1/packages", artifacts::HELLO);
    api.upload(&user.secret, "/api/v1/packages", artifacts::SANDBOX_PROBE);
    let exec = api.start(&user.secret, "slow", json!({"ms": 600_000}));
    let r = api.post(
        &user.secret,
        &format!("/api/v1/executions/{exec}/cancel"),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.brief());
    let r = api.delete(&user.secret, "/api/v1/packages/hello");
    assert_eq!(r.status, 200, "{}", r.brief());

    let entries = api.get_ok(op, "/api/v1/audit?tenant=audited");
    let entries = entries.as_array().unwrap();
    let hello_label = format!("hello@{}", hello["version"].as_str().unwrap());
    let op_id = op_id.as_str();
    let user_id = user.id.as_str();
    let expected: Vec<(&str, &str, String)> = vec![
        ("tenant_created", op_id, "audited".into()),
        ("tenant_updated", op_id, "audited".into()),
        ("grant_added", op_id, "env GREETING".into()),
        ("grant_revoked", op_id, "env GREETING".into()),
        ("key_created", op_id, user.id.clone()),
        ("key_created", op_id, spare.id.clone()),
        ("key_revoked", op_id, spare.id.clone()),
        ("package_added", user_id, hello_label.clone()),
        ("execution_started", user_id, exec.clone()),
        ("execution_cancelled", user_id, exec.clone()),
        ("package_removed", user_id, hello_label.clone()),
    ];
    for (action, key_id, subject) in &expected {
        let found = entries
            .iter()
            .find(|e| e["action"] == *action && e["subject"] == subject.as_str());
        let e = found.unwrap_or_else(|| panic!("no {action} of {subject}: {entries:#?}"));
        assert_eq!(e["key_id"], *key_id, "{e}");
        assert_eq!(e["tenant"], "audited", "{e}");
        assert!(e["at"].is_string() && e["id"].is_i64(), "{e}");
    }
    assert!(
        entries.iter().all(|e| e["tenant"] == "audited"),
        "{entries:#?}"
    );
    // Newest first, ids descending.
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // The package entries carry its content hash.
    for action in ["package_added", "package_removed"] {
        let e = entries
            .iter()
            .find(|e| e["action"] == action && e["subject"] == hello_label.as_str())
            .unwrap();
        assert_eq!(e["detail"]["content_hash"], hello["content_hash"], "{e}");
    }
    // The CLI prints the same entries.
    let from_cli = cli_json(db, &["audit", "--tenant", "audited", "--json"]);
    assert_eq!(&from_cli, &Value::Array(entries.clone()));
    // Pages: `before` continues after an entry.
    let page = api.get_ok(
        op,
        &format!("/api/v1/audit?tenant=audited&limit=3&before={}", ids[2]),
    );
    assert_eq!(
        page.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids[3..6].to_vec()
    );
}

/// Cancelling executions while the host claims their tasks answers 200
/// every time, and they end cancelled; a finished one is 409. Each cancel
/// of a running execution frees a slot, which the host fills at once with
/// a task of another execution, one the next cancels are about. (On
/// PostgreSQL the cancel and the claim locked their rows in opposite
/// orders: one of them died of a deadlock, the cancel with a 503.)
fn cancel_at_once(api: Api, op: &str) {
    let k = api.tenant(op, "racing", json!({})).secret;
    api.upload(&k, "/api/v1/packages", artifacts::SANDBOX_PROBE);
    let ids: Vec<String> = (0..24)
        .map(|_| api.start(&k, "slow", json!({"ms": 600_000})))
        .collect();
    std::thread::scope(|s| {
        for part in ids.chunks(6) {
            let k = &k;
            s.spawn(move || {
                for id in part {
                    let r = api.post(k, &format!("/api/v1/executions/{id}/cancel"), &json!({}));
                    assert_eq!(r.status, 200, "cancel {id}: {}", r.brief());
                    assert_eq!(r.json(), json!({"id": id, "status": "cancelled"}));
                }
            });
        }
    });
    for id in &ids {
        let v = api.wait_finished(&k, id);
        assert_eq!(v["status"], "cancelled", "{v}");
        let r = api.post(&k, &format!("/api/v1/executions/{id}/cancel"), &json!({}));
        assert_error(&r, 409, "conflict", "cancelling a cancelled execution");
    }
}

/// 8. Pages: 25 executions listed 10 (and 5) at a time with next_cursor
///    cover all exactly once, newest first; filters by status and
///    workflow.
fn pages_of_executions(api: Api, op: &str) {
    // One task at a time: the first slow execution holds the slot, the
    // others wait, and their statuses stay put while listed.
    let k = api
        .tenant(op, "pages", json!({"max_concurrent_tasks": 1}))
        .secret;
    api.upload(&k, "/api/v1/packages", artifacts::HELLO);
    api.upload(&k, "/api/v1/packages", artifacts::SANDBOX_PROBE);
    let slow = json!({"ms": 600_000});
    let first = api.start(&k, "slow", slow.clone());
    api.wait_status(&k, &first, "running");
    let mut started = vec![first.clone()];
    for i in 0..24 {
        let (workflow, context) = if i % 2 == 0 {
            ("hello", json!({}))
        } else {
            ("slow", slow.clone())
        };
        started.push(api.start(&k, workflow, context));
    }
    // Two cancelled (pending ones: a slot is never freed).
    for id in [&started[5], &started[6]] {
        let r = api.post(&k, &format!("/api/v1/executions/{id}/cancel"), &json!({}));
        assert_eq!(r.status, 200, "{}", r.brief());
        api.wait_status(&k, id, "cancelled");
    }

    let all_pages = |query: &str, limit: usize| -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/api/v1/executions?limit={limit}{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = api.get_ok(&k, &path);
            let batch = page["executions"].as_array().unwrap().clone();
            assert!(batch.len() <= limit, "{page}");
            pages += 1;
            items.extend(batch);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return (items, pages),
            }
            assert!(pages < 100, "the pages never end");
        }
    };
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    for limit in [10, 5, 25, 1000] {
        let (items, pages) = all_pages("", limit);
        let got = ids(&items);
        assert_eq!(
            got.iter().collect::<HashSet<_>>().len(),
            got.len(),
            "limit {limit}: an execution listed twice"
        );
        let mut newest_first = started.clone();
        newest_first.reverse();
        assert_eq!(
            got.iter().collect::<HashSet<_>>(),
            newest_first.iter().collect::<HashSet<_>>(),
            "limit {limit}"
        );
        // Newest first: creation times never increase, and executions
        // started in turn (distinct milliseconds) come in reverse.
        let created: Vec<&str> = items
            .iter()
            .map(|e| e["created_at"].as_str().unwrap())
            .collect();
        assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
        let pos = |id: &String| got.iter().position(|g| g == id).unwrap();
        for w in started.windows(2) {
            let (older, newer) = (&w[0], &w[1]);
            let c_old = &items[pos(older)]["created_at"];
            let c_new = &items[pos(newer)]["created_at"];
            if c_old != c_new {
                assert!(pos(newer) < pos(older), "{newer} listed after {older}");
            }
        }
        let expected_pages = match limit {
            10 => 3,
            5 => 6, // the fifth page is full, so a sixth (empty) ends it
            25 => 2,
            _ => 1,
        };
        assert_eq!(pages, expected_pages, "limit {limit}");
        // List items carry no tasks.
        assert!(
            items.iter().all(|e| e.get("tasks").is_none()),
            "{:?}",
            items[0]
        );
    }
    let count = |query: &str| all_pages(query, 10).0.len();
    assert_eq!(count("&status=running"), 1);
    assert_eq!(count("&status=cancelled"), 2);
    assert_eq!(count("&status=pending"), 22);
    assert_eq!(count("&status=completed"), 0);
    assert_eq!(count("&workflow=hello"), 12);
    assert_eq!(count("&workflow=slow"), 13);
    assert_eq!(count("&workflow=slow&status=pending"), 11);
    let (running, _) = all_pages("&status=running", 10);
    assert_eq!(ids(&running), vec![first]);
    let (cancelled, _) = all_pages("&status=cancelled", 1);
    assert_eq!(
        ids(&cancelled).into_iter().collect::<HashSet<_>>(),
        HashSet::from([started[5].clone(), started[6].clone()])
    );
    // Bad filters and cursors are 400.
    for query in [
        "status=sleeping",
        "limit=0",
        "limit=1001",
        "cursor=nonsense",
    ] {
        let r = api.get(&k, &format!("/api/v1/executions?{query}"));
        assert_error(&r, 400, "invalid_request", query);
    }
    // An operator lists them with ?tenant=, the same.
    let mine = api.get_ok(&k, "/api/v1/executions?limit=1000");
    let theirs = api.get_ok(op, "/api/v1/executions?limit=1000&tenant=pages");
    assert_eq!(mine, theirs);
}

/// 10. /healthz, /readyz, the OpenAPI document (every route of the
///     router), /metrics for operator keys only, and `--metrics-listen`
///     without a key.
fn health_openapi_and_metrics(serve: &Serve, op: &str) {
    let api = serve.api();
    let r = api.send("GET", "/healthz", None, &[], Body::Empty);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let r = api.send("GET", "/readyz", None, &[], Body::Empty);
    assert_eq!(r.status, 200, "{}", r.brief());

    let doc = api.get_ok(op, "/api/v1/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0", "{}", doc["openapi"]);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert_eq!(
        documented,
        routes_in_source(),
        "the OpenAPI document and the router differ"
    );
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "{}",
        doc["components"]
    );
    // Unknown routes are 404 in the error shape.
    let r = api.get(op, "/api/v1/nothing-here");
    assert_error(&r, 404, "not_found", "an unknown route");

    // /metrics: operators only.
    let r = api.send("GET", "/metrics", None, &[], Body::Empty);
    assert_error(&r, 401, "unauthorized", "/metrics without a key");
    let r = api.get(op, "/metrics");
    assert_eq!(r.status, 200, "{}", r.brief());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    let text = r.text();
    assert!(text.contains("culvert_http_requests_total"), "{text}");
    // Labelled by route template, never the raw path.
    assert!(text.contains("route=\"/api/v1/openapi.json\""), "{text}");
    assert!(!text.contains("nothing-here"), "{text}");
    // On --metrics-listen, without a key.
    let metrics = Api {
        addr: serve.metrics.expect("a metrics address in the start line"),
    };
    let r = metrics.send("GET", "/metrics", None, &[], Body::Empty);
    assert_eq!(r.status, 200, "{}", r.brief());
    assert!(r.text().contains("culvert_http_requests_total"));
    let r = metrics.send("GET", "/healthz", None, &[], Body::Empty);
    assert_eq!(r.status, 200);
    // Nothing else is served there.
    let r = metrics.send("GET", "/api/v1/packages", Some(op), &[], Body::Empty);
    assert_error(&r, 404, "not_found", "the API on the metrics address");
}

// ---------------------------------------------------------------------------
// Servers with their own flags or processes
// ---------------------------------------------------------------------------

/// 7. `--rate-limit 5 --rate-burst 5`: a burst of 20 requests with one key
///    meets 429 with Retry-After; another key is unaffected.
async fn rate_limits_are_per_key(db: Db) {
    let db = TestDb::new(db).await;
    let op = cli_key(&db, "public", "root", &["--role", "operator"]).secret;
    let other = cli_key(&db, "public", "other", &[]).secret;
    let serve = Serve::start(&db, &["--rate-limit", "5", "--rate-burst", "5"]);
    let api = serve.wait_ready();
    let t0 = Instant::now();
    let answers: Vec<Response> = (0..20).map(|_| api.get(&op, "/api/v1/packages")).collect();
    let elapsed = t0.elapsed();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&Response> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok + limited.len(), 20);
    // The burst, plus what the rate refilled meanwhile.
    let allowed = 5 + (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        ok <= allowed && !limited.is_empty(),
        "{ok} answered in {elapsed:?}, {} limited",
        limited.len()
    );
    for r in &limited {
        assert_error(r, 429, "rate_limited", "over the rate");
        let wait: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=2).contains(&wait), "Retry-After {wait}");
    }
    // Another key has its own bucket.
    let r = api.get(&other, "/api/v1/packages");
    assert_eq!(r.status, 200, "{}", r.brief());
    // Unauthenticated requests are refused as such, not charged to a key.
    let r = api.send("GET", "/api/v1/packages", None, &[], Body::Empty);
    assert_error(&r, 401, "unauthorized", "no key");
    // The limited key recovers with time.
    poll(Duration::from_secs(3), "the limited key recovers", || {
        api.get(&op, "/api/v1/packages").status == 200
    });
}

/// 11. `--listen none`: no HTTP at all, and executions still run.
async fn listen_none_serves_no_http_but_runs(db: Db) {
    let db = TestDb::new(db).await;
    let serve = Serve::start(&db, &["--listen", "none"]);
    assert!(serve.api.is_none() && serve.metrics.is_none());
    let line = serve.log_text();
    assert!(line.contains(", no API"), "{line}");
    // The process holds no listening TCP socket.
    let listening = listening_sockets(serve.child.id());
    assert!(listening.is_empty(), "serve listens on {listening:?}");
    let (code, _, err) = cli(&db, &["package", "add", artifacts::HELLO]);
    assert_eq!(code, 0, "{err}");
    let v = cli_json(
        &db,
        &["run", "hello", "--wait", "--timeout", "60", "--json"],
    );
    assert_eq!(v["status"], "completed", "{v}");
}

/// The local addresses of the listening TCP sockets `pid` holds (from
/// /proc: its socket inodes, matched against /proc/net/tcp{,6}).
fn listening_sockets(pid: u32) -> Vec<String> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, ..., st (0A = LISTEN), ..., inode (field 9).
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                out.push(f[1].to_string());
            }
        }
    }
    out
}

/// 9. Two `serve` processes on one PostgreSQL database answer alike: a
///    package uploaded through A is listed by B, an execution started
///    through B shows the same on A, a key revoked through A fails on B
///    within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_postgres_answer_alike() {
    let db = TestDb::new(Db::Postgres).await;
    let op = cli_key(&db, "public", "root", &["--role", "operator"]).secret;
    let a = Serve::start(&db, &[]);
    let b = Serve::start(&db, &[]);
    let (api_a, api_b) = (a.wait_ready(), b.wait_ready());
    let user = api_a.tenant(&op, "shared", json!({}));
    let k = user.secret.clone();

    let added = api_a.upload(&k, "/api/v1/packages", artifacts::HELLO);
    let on_b = api_b.get_ok(&k, "/api/v1/packages");
    assert_eq!(on_b.as_array().unwrap().len(), 1, "{on_b}");
    assert_eq!(on_b[0]["content_hash"], added["content_hash"]);
    assert_eq!(on_b, api_a.get_ok(&k, "/api/v1/packages"));

    let id = api_b.start(&k, "hello", json!({"name": "B"}));
    let shown_b = api_b.wait_finished(&k, &id);
    assert_eq!(shown_b["status"], "completed", "{shown_b}");
    assert_eq!(shown_b["context"]["greeting"], "Hello, B!");
    let shown_a = api_a.get_ok(&k, &format!("/api/v1/executions/{id}"));
    assert_eq!(shown_a, shown_b);
    assert_eq!(
        api_a.get_ok(&k, "/api/v1/executions"),
        api_b.get_ok(&k, "/api/v1/executions")
    );
    // The stream from the host that did not start it.
    let r = api_a.get(&k, &format!("/api/v1/executions/{id}/stream"));
    let events = parse_sse(&r.text());
    assert_eq!(
        events.last().map(|e| (&e.event, &e.data)),
        Some((
            &"end".to_string(),
            &json!({"id": id, "status": "completed"})
        ))
    );

    // Revoked through A: B refuses it within a second, though B had just
    // read it.
    assert_eq!(api_b.get(&k, "/api/v1/packages").status, 200);
    let r = api_a.delete(&op, &format!("/api/v1/keys/{}", user.id));
    assert_eq!(r.status, 200, "{}", r.brief());
    let took = poll(
        Duration::from_millis(1500),
        "B refuses the revoked key",
        || api_b.get(&k, "/api/v1/packages").status == 401,
    );
    eprintln!("revocation reached the other host after {took:?}");
    assert_eq!(api_a.get(&k, "/api/v1/packages").status, 401);
}

culvert_tests::both_backends!(
    the_api_on_one_server,
    rate_limits_are_per_key,
    listen_none_serves_no_http_but_runs,
);

// ---------------------------------------------------------------------------
// After the merge of stored logs and the fleet gauges
// ---------------------------------------------------------------------------
//
// The logs route answers `[]` and /metrics lacks the database's gauges
// until those branches are merged. These tests state the documented
// behaviour; enable them (remove `#[ignore]`) with the merge, adjusting
// names if the merged documents differ.

/// `GET /api/v1/executions/{id}/logs` returns one entry per attempt with
/// the guest's log records (hello logs its greeting at info), `?task=`
/// and `?attempt=` narrow it, and /metrics carries the database's counts:
/// executions by status and tasks by tenant.
async fn logs_and_fleet_gauges(db: Db) {
    let db = TestDb::new(db).await;
    let op = cli_key(&db, "public", "root", &["--role", "operator"]).secret;
    let serve = Serve::start(&db, &[]);
    let api = serve.wait_ready();
    let k = api.tenant(&op, "logged", json!({})).secret;
    api.upload(&k, "/api/v1/packages", artifacts::HELLO);
    let id = api.start(&k, "hello", json!({"name": "logs"}));
    api.wait_finished(&k, &id);

    let logs = api.get_ok(&k, &format!("/api/v1/executions/{id}/logs"));
    let logs = logs.as_array().expect("an array of attempts");
    assert_eq!(logs.len(), 1, "one attempt of one task: {logs:?}");
    let attempt = &logs[0];
    assert_eq!(attempt["task"], "greet", "{attempt}");
    assert_eq!(attempt["attempt"], 1, "{attempt}");
    assert!(
        attempt.to_string().contains("Hello, logs!"),
        "the greeting is logged: {attempt}"
    );
    assert_eq!(attempt["truncated"], false, "{attempt}");
    let narrowed = api.get_ok(
        &k,
        &format!("/api/v1/executions/{id}/logs?task=greet&attempt=1"),
    );
    assert_eq!(narrowed.as_array().unwrap().len(), 1);
    let none = api.get_ok(&k, &format!("/api/v1/executions/{id}/logs?task=nothing"));
    assert_eq!(none, json!([]));

    let text = api.get(&op, "/metrics").text();
    let gauge_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("culvert_") && !l.starts_with("culvert_http_"))
        .collect();
    assert!(
        gauge_lines
            .iter()
            .any(|l| l.contains("status=\"completed\"")),
        "executions by status: {text}"
    );
    assert!(
        gauge_lines.iter().any(|l| l.contains("tenant=\"logged\"")),
        "tasks by tenant: {text}"
    );
}

mod logs_and_gauges {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logs_and_fleet_gauges_sqlite() {
        super::logs_and_fleet_gauges(culvert_tests::Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logs_and_fleet_gauges_postgres() {
        super::logs_and_fleet_gauges(culvert_tests::Db::Postgres).await
    }
}
