//! Outbound HTTP: the two keys (declared by the package, granted to the
//! tenant), the allowlist's wildcards, redirects, the address check, the
//! tenant's limits, deadlines, revocation between attempts, and the
//! request records in the attempt's logs — against a real HTTP server on
//! 127.0.0.1, real components and both databases.

use culvert::{Grant, GrantKind, Runner, RunnerConfig, TaskStatus, TenantLimits};
use culvert_tests::http_server::TestServer;
use culvert_tests::{Db, TestDb, artifacts, read};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const TENANT: &str = "web";

struct Setup {
    _db: TestDb,
    r: Runner,
    server: TestServer,
}

/// A runner whose engine resolves `*.egress.test`'s names and
/// `other.test` to 127.0.0.1, tenant `web` with `limits` and the egress
/// and fetch packages, and a test server.
async fn setup(db: Db, limits: TenantLimits) -> Setup {
    let db = TestDb::new(db).await;
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 32;
    c.executor.poll_interval = Duration::from_millis(20);
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    c.engine.egress.resolve = ["api.egress.test", "egress.test", "other.test"]
        .iter()
        .map(|n| (n.to_string(), lo))
        .collect();
    let r = Runner::open(c).await.unwrap();
    r.create_tenant(TENANT, &limits).await.unwrap();
    r.register_package(TENANT, &read(artifacts::EGRESS_GUEST))
        .await
        .unwrap();
    r.register_package(TENANT, &read(artifacts::FETCH))
        .await
        .unwrap();
    r.start();
    let server = TestServer::start().await;
    Setup { _db: db, r, server }
}

impl Setup {
    /// `127.0.0.1:PORT`: the literal grant that lets requests reach the
    /// test server.
    fn loopback(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// Grant `pattern` to the tenant.
    async fn grant(&self, pattern: &str) {
        self.r.grant(&http_grant(pattern)).await.unwrap();
    }
}

/// [`setup`] with the test server granted by its literal address: the
/// start of every test of what happens once a request may go out.
async fn granted(db: Db, limits: TenantLimits) -> Setup {
    let s = setup(db, limits).await;
    s.grant(&s.loopback()).await;
    s
}

fn http_grant(pattern: &str) -> Grant {
    Grant {
        tenant: TENANT.into(),
        package: String::new(),
        kind: GrantKind::Http,
        name: pattern.into(),
        value: String::new(),
        writable: false,
    }
}

/// Run `workflow` (whose one task has its name) to the end: its output, or
/// the failure's kind and message.
async fn call(r: &Runner, workflow: &str, ctx: Value) -> Result<Value, (String, String)> {
    call_id(r, workflow, ctx).await.1
}

/// [`call`], with the execution's id.
async fn call_id(
    r: &Runner,
    workflow: &str,
    ctx: Value,
) -> (uuid::Uuid, Result<Value, (String, String)>) {
    let row = r
        .start_execution(TENANT, workflow, None, ctx.as_object().unwrap().clone())
        .await
        .unwrap();
    let done = r.wait(row.id, Some(Duration::from_secs(60))).await.unwrap();
    let (_, tasks, _) = r.execution(TENANT, done.id).await.unwrap();
    let task = tasks.into_iter().find(|t| t.task_id == workflow).unwrap();
    let result = match task.status {
        TaskStatus::Completed => Ok(task.output.unwrap()),
        _ => Err((
            task.last_error_kind.unwrap_or_default(),
            task.last_error.unwrap_or_default(),
        )),
    };
    (done.id, result)
}

/// The host records (`stream: host`) of every attempt of `id`.
async fn host_records(r: &Runner, id: uuid::Uuid) -> Vec<culvert::LogRecord> {
    r.logs(TENANT, id, None, None)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|a| a.records)
        .filter(|rec| rec.stream == culvert::LogStream::Host)
        .collect()
}

async fn granted_and_declared_works(db: Db) {
    let s = granted(db, TenantLimits::default()).await;
    let (id, out) = call_id(&s.r, "get", json!({"url": s.server.url("/json?k=secret")})).await;
    let out = out.unwrap();
    assert_eq!(out["status"], 200);
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["name"], "culvert");
    // The request is in the attempt's stored log: method, origin, path,
    // status, bytes; never the query or a header value.
    let records = host_records(&s.r, id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let rec = &records[0];
    let origin = format!("http://127.0.0.1:{}", s.server.port());
    assert!(
        rec.message
            .starts_with(&format!("http GET {origin}/json -> 200, 39 bytes")),
        "{}",
        rec.message
    );
    assert!(!rec.message.contains("secret"), "{}", rec.message);
    let field = |k: &str| rec.fields.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(field("status"), "200");
    assert_eq!(field("bytes"), "39");
    assert_eq!(field("outcome"), "completed");
    assert_eq!(field("grant"), s.loopback());
    assert_eq!(
        field("address"),
        s.loopback(),
        "the address it connected to"
    );

    // The fetch example: GET, parse, summarise, POST the summary.
    let row =
        s.r.start_execution(
            TENANT,
            "fetch",
            None,
            json!({"url": s.server.url("/json"), "post_url": s.server.url("/echo")})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    let done =
        s.r.wait(row.id, Some(Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(
        done.status,
        culvert::ExecutionStatus::Completed,
        "{:?}",
        done.error
    );
    let out = done.output.unwrap();
    assert_eq!(out["fetched"]["items"], json!([1, 2, 3]));
    let posted = s
        .server
        .seen()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("the summary was posted");
    let posted: Value = serde_json::from_slice(&posted.body).unwrap();
    assert!(posted.get("summary").is_some(), "{posted}");
    s.r.shutdown().await;
}

async fn declared_but_not_granted_is_refused_in_the_guest(db: Db) {
    let s = setup(db, TenantLimits::default()).await;
    let (kind, message) = call(&s.r, "get", json!({"url": s.server.url("/json")}))
        .await
        .unwrap_err();
    assert_eq!(kind, "permanent", "{message}");
    assert!(message.contains("127.0.0.1"), "names the host: {message}");
    assert!(
        message.contains("not granted to tenant 'web'"),
        "names the missing key: {message}"
    );
    assert!(
        message.contains("culvert grant"),
        "says what to do: {message}"
    );
    assert!(s.server.seen().is_empty(), "nothing went out");
    s.r.shutdown().await;
}

async fn granted_but_not_declared_is_refused(db: Db) {
    let s = setup(db, TenantLimits::default()).await;
    let port = s.server.port();
    s.grant(&format!("other.test:{port}")).await;
    s.grant(&s.loopback()).await;
    let (kind, message) = call(
        &s.r,
        "get",
        json!({"url": s.server.url_at("other.test", "/json")}),
    )
    .await
    .unwrap_err();
    assert_eq!(kind, "permanent", "{message}");
    assert!(message.contains("other.test"), "{message}");
    assert!(message.contains("does not declare it"), "{message}");
    assert!(s.server.seen().is_empty());
    s.r.shutdown().await;
}

async fn a_wildcard_grant_matches_names_under_it_only(db: Db) {
    let s = setup(db, TenantLimits::default()).await;
    let port = s.server.port();
    s.grant(&format!("*.egress.test:{port}")).await;
    // The names resolve to 127.0.0.1: reaching it needs its literal grant.
    s.grant(&s.loopback()).await;
    let out = call(
        &s.r,
        "get",
        json!({"url": s.server.url_at("api.egress.test", "/json")}),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(
        s.server.seen()[0].headers["host"],
        format!("api.egress.test:{port}"),
        "the Host header is the URL's"
    );
    let (kind, message) = call(
        &s.r,
        "get",
        json!({"url": s.server.url_at("egress.test", "/json")}),
    )
    .await
    .unwrap_err();
    assert_eq!(kind, "permanent");
    assert!(
        message.contains("egress.test") && message.contains("not granted"),
        "the bare parent is not under the wildcard: {message}"
    );
    assert_eq!(s.server.seen().len(), 1);
    s.r.shutdown().await;
}

async fn redirects_are_returned_and_each_hop_is_policed(db: Db) {
    let s = granted(db, TenantLimits::default()).await;
    let elsewhere = s.server.url_at("other.test", "/json");
    let url = s.server.url(&format!("/redirect?to={elsewhere}"));
    let out = call(&s.r, "get", json!({ "url": url })).await.unwrap();
    assert_eq!(out["status"], 302, "the guest sees the redirect");
    assert_eq!(out["location"], elsewhere.as_str());
    let (kind, message) = call(&s.r, "follow", json!({ "url": url }))
        .await
        .unwrap_err();
    assert_eq!(kind, "permanent");
    assert!(
        message.contains("other.test") && message.contains("egress denied"),
        "{message}"
    );
    assert_eq!(
        s.server.seen().len(),
        2,
        "only the two requests to /redirect reached the server"
    );
    s.r.shutdown().await;
}

async fn a_name_resolving_to_loopback_needs_the_literal_grant(db: Db) {
    let s = setup(db, TenantLimits::default()).await;
    let port = s.server.port();
    s.grant(&format!("localhost:{port}")).await;
    let (kind, message) = call(
        &s.r,
        "get",
        json!({"url": s.server.url_at("localhost", "/json")}),
    )
    .await
    .unwrap_err();
    assert_eq!(kind, "permanent", "{message}");
    assert!(
        message.contains("127.0.0.1") || message.contains("Prohibited"),
        "{message}"
    );
    assert!(s.server.seen().is_empty(), "nothing reached the server");
    // With the literal grant, the same request goes out.
    s.grant(&s.loopback()).await;
    let out = call(
        &s.r,
        "get",
        json!({"url": s.server.url_at("localhost", "/json")}),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], 200);
    s.r.shutdown().await;
}

async fn the_response_byte_cap_holds(db: Db) {
    let s = granted(
        db,
        TenantLimits {
            max_http_response_bytes: 1000,
            ..TenantLimits::default()
        },
    )
    .await;
    let out = call(&s.r, "get", json!({"url": s.server.url("/big?n=900")}))
        .await
        .unwrap();
    assert_eq!(out["bytes"], 900);
    // Announced up front (Content-Length) or found while reading (chunked).
    for path in ["/big?n=5000", "/chunked?n=5000"] {
        let (kind, message) = call(&s.r, "get", json!({"url": s.server.url(path)}))
            .await
            .unwrap_err();
        assert_eq!(kind, "permanent", "{path}: {message}");
        assert!(
            message.contains("HttpResponseBodySize") || message.contains("limit"),
            "{path}: {message}"
        );
    }
    s.r.shutdown().await;
}

async fn the_request_cap_per_call_holds(db: Db) {
    let s = granted(
        db,
        TenantLimits {
            max_http_requests_per_call: 3,
            ..TenantLimits::default()
        },
    )
    .await;
    let (kind, message) = call(
        &s.r,
        "many",
        json!({"url": s.server.url("/json"), "count": 5}),
    )
    .await
    .unwrap_err();
    assert_eq!(kind, "permanent", "{message}");
    assert!(
        message.contains("request 4") && message.contains("max_http_requests_per_call of 3"),
        "{message}"
    );
    assert_eq!(s.server.seen().len(), 3);
    s.r.shutdown().await;
}

async fn a_slow_server_hits_the_request_timeout(db: Db) {
    let s = granted(
        db,
        TenantLimits {
            http_request_timeout_ms: 500,
            ..TenantLimits::default()
        },
    )
    .await;
    let started = Instant::now();
    let (kind, message) = call(&s.r, "get", json!({"url": s.server.url("/slow?ms=5000")}))
        .await
        .unwrap_err();
    // Timeouts are transient: the task's retry policy decides.
    assert_eq!(kind, "transient", "{message}");
    assert!(
        message.to_ascii_lowercase().contains("timeout"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    s.r.shutdown().await;
}

async fn a_deadline_during_a_request_preempts_and_closes_it(db: Db) {
    let s = granted(
        db,
        TenantLimits {
            max_task_timeout_ms: 1000,
            ..TenantLimits::default()
        },
    )
    .await;
    let started = Instant::now();
    let (kind, message) = call(&s.r, "get", json!({"url": s.server.url("/hang")}))
        .await
        .unwrap_err();
    assert_eq!(kind, "timeout", "{message}");
    // The server saw the connection close soon after the deadline.
    let until = Instant::now() + Duration::from_secs(5);
    while s.server.closed().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = s.server.closed();
    assert_eq!(closed.len(), 1, "the connection was closed");
    let after = closed[0].duration_since(started);
    assert!(
        after < Duration::from_secs(4),
        "closed {after:?} after the start, for a 1 s deadline"
    );
    s.r.shutdown().await;
}

async fn a_revoked_grant_applies_to_the_next_attempt(db: Db) {
    let s = setup(db, TenantLimits::default()).await;
    let pattern = s.loopback();
    s.grant(&pattern).await;
    // `twice`: attempt 1 fetches, then fails transiently; attempt 2 (after
    // a 2 s backoff) fetches again.
    let row =
        s.r.start_execution(
            TENANT,
            "twice",
            None,
            json!({"url": s.server.url("/json")})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while s.server.seen().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.server.seen().len(), 1, "attempt 1 went out");
    s.r.revoke(TENANT, "", GrantKind::Http, &pattern)
        .await
        .unwrap();
    let done =
        s.r.wait(row.id, Some(Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(done.status, culvert::ExecutionStatus::Failed);
    let (_, tasks, _) = s.r.execution(TENANT, row.id).await.unwrap();
    let task = &tasks[0];
    assert_eq!(task.attempt, 2);
    let message = task.last_error.clone().unwrap_or_default();
    assert!(message.contains("not granted"), "{message}");
    assert_eq!(s.server.seen().len(), 1, "attempt 2 was refused");
    s.r.shutdown().await;
}

async fn connections_are_capped_per_tenant(db: Db) {
    let s = granted(
        db,
        TenantLimits {
            max_http_connections: 1,
            ..TenantLimits::default()
        },
    )
    .await;
    // Two tasks at once, each holding a connection for 1.5 s: the second
    // finds the tenant's one connection taken.
    let url = s.server.url("/slow?ms=1500");
    let (a, b) = tokio::join!(
        call(&s.r, "get", json!({ "url": url })),
        call(&s.r, "get", json!({ "url": url }))
    );
    let (ok, refused): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
    assert_eq!((ok.len(), refused.len()), (1, 1), "{ok:?} {refused:?}");
    let (kind, message) = refused[0].clone().unwrap_err();
    // Transient: it depends on what else the tenant runs at that moment.
    assert_eq!(kind, "transient", "{message}");
    assert!(message.contains("ConnectionLimitReached"), "{message}");
    assert_eq!(s.server.seen().len(), 1);
    // The connection was given back: the next request goes out.
    let out = call(&s.r, "get", json!({"url": s.server.url("/json")})).await;
    assert!(out.is_ok(), "{out:?}");
    s.r.shutdown().await;
}

async fn bad_grants_are_refused_with_the_rule(db: Db) {
    let s = setup(db, TenantLimits::default()).await;
    // Patterns compare without case: stored in lower case, revoked in any.
    s.grant("API.Example.com").await;
    let grants = s.r.grants(TENANT).await.unwrap();
    assert_eq!(grants[0].name, "api.example.com");
    s.r.revoke(TENANT, "", GrantKind::Http, "Api.EXAMPLE.com")
        .await
        .unwrap();
    assert!(s.r.grants(TENANT).await.unwrap().is_empty());
    for bad in ["ftp://a.test", "user@a.test", "a.test/path", "a.test:0", ""] {
        let e = s.r.grant(&http_grant(bad)).await.unwrap_err();
        assert!(e.to_string().contains("HOST[:PORT]"), "{bad}: {e}");
    }
    s.r.shutdown().await;
}

culvert_tests::both_backends!(
    granted_and_declared_works,
    declared_but_not_granted_is_refused_in_the_guest,
    granted_but_not_declared_is_refused,
    a_wildcard_grant_matches_names_under_it_only,
    redirects_are_returned_and_each_hop_is_policed,
    a_name_resolving_to_loopback_needs_the_literal_grant,
    the_response_byte_cap_holds,
    the_request_cap_per_call_holds,
    a_slow_server_hits_the_request_timeout,
    a_deadline_during_a_request_preempts_and_closes_it,
    a_revoked_grant_applies_to_the_next_attempt,
    connections_are_capped_per_tenant,
    bad_grants_are_refused_with_the_rule,
);
