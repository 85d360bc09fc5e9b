//! `culvert bench egress`: what outbound HTTP through the host costs a
//! task. A server on 127.0.0.1 answers a small JSON document, one request
//! per connection (as the host's sender makes them). Three ways in:
//!
//! - `native`: the benchmark itself connects, sends the request and reads
//!   the answer (the floor: loopback TCP and the server);
//! - `guest`: the `fetch` example's `fetch` task in a fresh sandbox (the
//!   fresh store, the SDK's client, the policy, the address check, the
//!   connection, the metered body, the log record, parsing the JSON);
//! - `refused`: the same task aimed at a host the tenant was not granted
//!   (a fresh store and the refusal, no network);
//!
//! each sequentially at p50 and p99, then the guest with 8 calls at once,
//! in requests per second.

use crate::bench::{BenchPackages, stats};
use culvert::{
    CacheConfig, CallLabels, CompiledCache, EgressPolicy, EngineConfig, HostPattern, LoaderConfig,
    PackageLoader, SandboxEngine, SandboxGrants, SandboxLimits, TaskCall,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = br#"{"items": [1, 2, 3], "name": "culvert"}"#;
/// Sequential calls measured in each way (after 100 warm-up calls).
const CALLS: usize = 2000;
/// Calls at once for the throughput run, and how long it lasts.
const PARALLEL: usize = 8;
const PARALLEL_FOR: Duration = Duration::from_secs(5);

/// A server that answers every request with [`BODY`] and closes.
async fn serve() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                    if read == buf.len() {
                        return;
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    BODY.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(BODY).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(port)
}

/// One request the way the host's sender makes it, from the benchmark.
async fn native_get(port: u16) -> anyhow::Result<()> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    conn.set_nodelay(true)?;
    conn.write_all(
        format!("GET /json HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nuser-agent: bench\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await?;
    anyhow::ensure!(answer.ends_with(BODY), "unexpected answer");
    Ok(())
}

/// The `fetch` task's call with `context`.
fn fetch_call(context: &str) -> TaskCall<'_> {
    TaskCall {
        workflow: "fetch",
        task: "fetch",
        context_json: context,
        execution_id: "bench",
        attempt: 1,
        max_attempts: 1,
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `culvert bench egress`.
pub(crate) async fn egress(packages: &BenchPackages) -> anyhow::Result<Value> {
    let port = serve().await?;
    let engine = SandboxEngine::new(EngineConfig::default())?;
    let loader = PackageLoader::new(
        Arc::new(CompiledCache::new(engine.clone(), CacheConfig::default())),
        LoaderConfig::default(),
    );
    let fetch = loader.load(&packages.read("fetch")?).await?;
    let declared = fetch
        .metadata
        .capabilities
        .http_hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = |granted: &str| -> anyhow::Result<SandboxLimits> {
        Ok(SandboxLimits {
            grants: Arc::new(SandboxGrants {
                http: Arc::new(EgressPolicy {
                    declared: declared.clone(),
                    granted: vec![HostPattern::parse(granted)?],
                    tenant: "bench".into(),
                    package: "fetch".into(),
                }),
                ..SandboxGrants::default()
            }),
            ..SandboxLimits::default()
        })
    };
    let granted = limits(&format!("127.0.0.1:{port}"))?;
    let refused = limits("example.com")?;
    let context = json!({"url": format!("http://127.0.0.1:{port}/json")}).to_string();
    let call = fetch_call(&context);
    let labels = Arc::new(CallLabels {
        tenant: "bench".into(),
        ..CallLabels::default()
    });

    let mut native = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let t = Instant::now();
        native_get(port).await?;
        if i >= 100 {
            native.push(micros(t.elapsed()));
        }
    }
    let mut guest = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let t = Instant::now();
        culvert::run_task(
            &engine,
            &fetch.compiled,
            &call,
            &granted,
            labels.clone(),
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("the granted call failed: {e}"))?;
        if i >= 100 {
            guest.push(micros(t.elapsed()));
        }
    }
    let mut denied = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let t = Instant::now();
        let result = culvert::run_task(
            &engine,
            &fetch.compiled,
            &call,
            &refused,
            labels.clone(),
            None,
        )
        .await;
        anyhow::ensure!(result.is_err(), "an ungranted request went out");
        if i >= 100 {
            denied.push(micros(t.elapsed()));
        }
    }
    // Throughput: PARALLEL calls at once for PARALLEL_FOR.
    let until = Instant::now() + PARALLEL_FOR;
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let (engine, compiled, granted, labels, context) = (
            engine.clone(),
            fetch.compiled.clone(),
            granted.clone(),
            labels.clone(),
            context.clone(),
        );
        workers.push(tokio::spawn(async move {
            let call = fetch_call(&context);
            let mut n = 0u64;
            while Instant::now() < until {
                culvert::run_task(&engine, &compiled, &call, &granted, labels.clone(), None)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    let rps = total as f64 / started.elapsed().as_secs_f64();
    let (native, guest, denied) = (stats(native), stats(guest), stats(denied));
    Ok(json!({
        "benchmark": "egress",
        "calls": CALLS,
        "native_get_us": native,
        "guest_get_us": guest,
        "refused_call_us": denied,
        "guest_over_native_p50_us": guest.p50 - native.p50,
        "parallel_calls": PARALLEL,
        "guest_requests_per_second": rps,
    }))
}
