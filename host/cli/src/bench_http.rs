//! `culvert bench http`: the HTTP API's requests per second over loopback,
//! with p50 and p99, for getting an execution and for starting one.
//!
//! The server and the load generator share the machine, as the issue's
//! targets ask. Each operation runs twice:
//! - *closed loop*: `CONNECTIONS` keep-alive connections each send a
//!   request as soon as the previous one is answered, for a few seconds:
//!   the most this machine does;
//! - *open loop at half that rate*: requests are sent on a fixed schedule
//!   and each latency is measured from the moment it was due (not from
//!   when it was sent), so a stall is counted against every request it
//!   delayed.
//!
//! The store is an SQLite file; the executor is not running, so the
//! numbers are the API's and the database's, not the sandbox's.

use crate::bench::{BenchPackages, stats};
use bytes::Bytes;
use culvert::{ApiKeyRole, Runner, RunnerConfig, TenantLimits};
use culvert_server::{AppState, ServerConfig};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Keep-alive connections of the load generator.
const CONNECTIONS: usize = 16;
/// How long each phase runs.
const PHASE: Duration = Duration::from_secs(5);

/// One request the generator repeats.
#[derive(Clone)]
struct Op {
    method: hyper::Method,
    path: String,
    body: Option<Bytes>,
    key: String,
    /// The status a correct answer has.
    expect: u16,
}

/// One keep-alive connection to `addr`.
async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Send `op` once on `sender`; error on a status other than expected.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    op: &Op,
    i: usize,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let mut req = Request::builder()
        .method(op.method.clone())
        .uri(&op.path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {}", op.key));
    if op.body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = op.body.clone().unwrap_or_default();
    let _ = i;
    let response = sender.send_request(req.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await?;
    anyhow::ensure!(
        status == op.expect,
        "{} {} answered {status}, not {}",
        op.method,
        op.path,
        op.expect
    );
    Ok(())
}

/// Requests per second and latencies of `op`: closed loop when `rate` is
/// `None`, else open loop at `rate` per second.
async fn phase(addr: SocketAddr, op: &Op, rate: Option<f64>) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CONNECTIONS {
        let op = op.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut latencies = Vec::new();
            // Open loop: this connection's share of the schedule.
            let interval = rate.map(|r| Duration::from_secs_f64(CONNECTIONS as f64 / r));
            let mut due = start
                + interval
                    .map(|i| i.mul_f64(w as f64 / CONNECTIONS as f64))
                    .unwrap_or_default();
            let mut i = 0;
            while start.elapsed() < PHASE {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let from = if interval.is_some() {
                    due
                } else {
                    Instant::now()
                };
                send(&mut sender, &op, i).await?;
                latencies.push(from.elapsed().as_secs_f64() * 1e3);
                i += 1;
                if let Some(interval) = interval {
                    due += interval;
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = all.len();
    let s = stats(all);
    Ok(json!({
        "requests": n,
        "requests_per_second": (n as f64 / elapsed).round(),
        "p50_ms": (s.p50 * 100.0).round() / 100.0,
        "p99_ms": (s.p99 * 100.0).round() / 100.0,
        "target_rate": rate.map(f64::round),
    }))
}

/// Both phases of `op`.
async fn measure(addr: SocketAddr, op: &Op) -> anyhow::Result<Value> {
    let max = phase(addr, op, None).await?;
    let rate = max["requests_per_second"].as_f64().unwrap_or(0.0);
    let half = phase(addr, op, Some((rate / 2.0).max(1.0))).await?;
    Ok(json!({ "max": max, "at_half_rate": half }))
}

/// The benchmark: a server in this process on an SQLite file, a tenant
/// with the `hello` package and a key, then get and start.
pub async fn http(packages: &BenchPackages, scratch: &Path) -> anyhow::Result<Value> {
    let url = format!("sqlite://{}", scratch.join("http.db").display());
    let mut config = RunnerConfig::new(&url).cache_dir(scratch.join("cache"));
    config.reconciler.reconcile_interval = Duration::from_secs(3600);
    let runner = Arc::new(Runner::open(config).await?);
    runner.start_reconciler();
    let limits = TenantLimits {
        max_queued_executions: u32::MAX,
        ..TenantLimits::default()
    };
    runner.create_tenant("bench", &limits).await?;
    runner
        .register_package("bench", &packages.read("hello")?)
        .await?;
    let server_config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        ..ServerConfig::default()
    };
    let state = AppState::new(
        runner.clone(),
        server_config,
        culvert_server::install_metrics(),
    );
    let (_, key) = culvert_server::create_key(&state, "bench", "bench", ApiKeyRole::Tenant, None)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let listener = culvert_server::bind(state.config.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let app = culvert_server::router(state.clone());
    let server_config = state.config.clone();
    let server = tokio::spawn(async move {
        culvert_server::serve_on(listener, app, &server_config, stopped).await;
    });
    let row = runner
        .start_execution("bench", "hello", None, Default::default())
        .await?;
    let get = Op {
        method: hyper::Method::GET,
        path: format!("/api/v1/executions/{}", row.id),
        body: None,
        key: key.clone(),
        expect: 200,
    };
    let start = Op {
        method: hyper::Method::POST,
        path: "/api/v1/executions".into(),
        body: Some(Bytes::from_static(
            br#"{"workflow": "hello", "context": {"name": "bench"}}"#,
        )),
        key,
        expect: 201,
    };
    let get_result = measure(addr, &get).await?;
    let start_result = measure(addr, &start).await?;
    let _ = stop.send(true);
    let _ = server.await;
    runner.shutdown().await;
    Ok(json!({
        "benchmark": "http",
        "connections": CONNECTIONS,
        "phase_seconds": PHASE.as_secs(),
        "store": "sqlite",
        "get_execution": get_result,
        "start_execution": start_result,
    }))
}
