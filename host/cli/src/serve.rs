//! `culvert serve` (the reconcile loop, the executor and the retention
//! loop, until a signal) and `culvert status` (the hosts, the database and
//! the cache).

use crate::args::*;
use crate::common::*;
use crate::render::*;
use anyhow::Context as _;
use culvert::{HostRecord, Runner, now_ms, redact_url};
use culvert_server::{AppState, ServerConfig, StatusScope, status_json};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a host reports about itself.
pub(crate) async fn host_status(runner: &Runner) -> Value {
    json!({
        "host_id": runner.executor().host_id(),
        "reconciler": runner.status().await,
        "cache": runner.loader().cache().stats(),
        "executor": runner.executor().stats(),
        "pooling_allocator": runner.loader().engine().pooling(),
        // Cores each tenant used on this host over the last second.
        "cpu_in_use": runner
            .loader()
            .engine()
            .cpu()
            .in_use()
            .into_iter()
            .map(|(tenant, cores)| (tenant, Value::from((cores * 100.0).round() / 100.0)))
            .collect::<serde_json::Map<String, Value>>(),
    })
}

pub(crate) async fn serve(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<i32> {
    let mut config = runner_config(g)?;
    config.executor.concurrency = args.concurrency;
    config.engine.fuel = args.fuel;
    config.engine.egress.resolve = args.resolve.clone();
    config.reconciler.reconcile_interval = Duration::from_secs(args.reconcile_interval);
    config.executor.lease = Duration::from_secs(args.lease);
    config.executor.heartbeat_interval = config.executor.lease / 3;
    config.executor.recovery_interval = (config.executor.lease / 2).min(Duration::from_secs(5));
    let url = redact_url(&config.database_url);
    let listen: Option<SocketAddr> = match args.listen.as_str() {
        "none" => None,
        addr => Some(addr.parse().map_err(|e| {
            anyhow::anyhow!(
                "--listen '{addr}' is not an address such as 127.0.0.1:8470 ({e}), nor `none`"
            )
        })?),
    };
    // Bind before starting anything: a taken port fails the start, plainly.
    let api = match listen {
        Some(addr) => Some(culvert_server::bind(addr).await?),
        None => None,
    };
    let metrics_api = match args.metrics_listen {
        Some(addr) => Some(culvert_server::bind(addr).await?),
        None => None,
    };
    // The addresses actually bound: with port 0 the system picks one, and
    // the line below is how a script (or a test) learns it.
    let listen = match &api {
        Some(l) => Some(l.local_addr().context("the API's address")?),
        None => None,
    };
    let metrics_listen = match &metrics_api {
        Some(l) => Some(l.local_addr().context("the metrics address")?),
        None => None,
    };
    let runner = Arc::new(open_runner(config).await?);
    let host_id = runner.executor().host_id();
    runner.start();
    let (stop_http, stopped) = watch::channel(false);
    let mut http_tasks = Vec::new();
    if api.is_some() || metrics_api.is_some() {
        let server_config = ServerConfig {
            listen: listen
                .unwrap_or_else(|| culvert_server::DEFAULT_LISTEN.parse().expect("valid")),
            metrics_listen,
            header_timeout: Duration::from_secs(args.header_timeout),
            request_timeout: Duration::from_secs(args.request_timeout),
            rate_per_second: args.rate_limit,
            rate_burst: args.rate_burst,
            max_concurrent_uploads: args.max_uploads,
            ..ServerConfig::default()
        };
        let state = AppState::new(
            runner.clone(),
            server_config,
            culvert_server::install_metrics(),
        );
        if let Some(listener) = api {
            let app = culvert_server::router(state.clone());
            let config = state.config.clone();
            let stopped = stopped.clone();
            http_tasks.push(tokio::spawn(async move {
                culvert_server::serve_on(listener, app, &config, stopped).await;
            }));
        }
        if let Some(listener) = metrics_api {
            let app = culvert_server::metrics_router(state.clone());
            let config = state.config.clone();
            let stopped = stopped.clone();
            http_tasks.push(tokio::spawn(async move {
                culvert_server::serve_on(listener, app, &config, stopped).await;
            }));
        }
    }
    if let Retention(Some(older_than)) = args.retention {
        tokio::spawn(crate::logs::retention_loop(
            runner.clone(),
            older_than,
            runner.shutdown_signal(),
        ));
    }
    let started_at = now_ms();
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let api_text = match (listen, metrics_listen) {
        (Some(a), Some(m)) => format!(
            ", API on http://{a} (dashboard http://{a}/ui; metrics also on http://{m}/metrics)"
        ),
        (Some(a), None) => format!(", API on http://{a} (dashboard http://{a}/ui)"),
        (None, Some(m)) => format!(", no API (metrics on http://{m}/metrics)"),
        (None, None) => ", no API".to_string(),
    };
    eprintln!(
        "culvert serving: host {host_id}, database {url}{api_text}. Stop with Ctrl-C or SIGTERM."
    );
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut beat = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = beat.tick() => {
                let record = HostRecord {
                    id: host_id,
                    hostname: hostname.clone(),
                    pid: std::process::id() as i64,
                    started_at,
                    heartbeat_at: now_ms(),
                    status: host_status(&runner).await,
                };
                if let Err(e) = runner.store().upsert_host(&record).await {
                    tracing::warn!(error = %e, "cannot record this host's heartbeat");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    eprintln!("culvert: shutting down; waiting for running tasks to finish");
    let _ = stop_http.send(true);
    for task in http_tasks {
        let _ = task.await;
    }
    runner.shutdown().await;
    let _ = runner.store().remove_host(host_id).await;
    eprintln!("culvert: stopped");
    Ok(0)
}

pub(crate) async fn status(g: &GlobalArgs, json_out: bool) -> anyhow::Result<i32> {
    let store = open_store(g).await?;
    let cache_dir = g.cache_dir()?;
    let report = status_json(
        store.as_ref(),
        StatusScope::Fleet {
            cache_dir: Some(&cache_dir),
        },
    )
    .await?;
    print_status(&report, json_out)
}

/// Print a status report (see [`culvert_server::status_json`]): the JSON
/// document, or its text form. A part the report leaves out (what a
/// tenant's key may not see through the API) is left out of the text too.
pub(crate) fn print_status(report: &Value, json_out: bool) -> anyhow::Result<i32> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", status_text(report));
    }
    Ok(0)
}

/// The text form of a status report.
pub(crate) fn status_text(report: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if let Some(url) = report["database"].as_str() {
        let _ = writeln!(out, "database   {url}");
    }
    if let Some(hosts) = report["hosts"].as_array() {
        if hosts.is_empty() {
            let _ = writeln!(
                out,
                "serving    no `culvert serve` is running (status below is the database's)"
            );
        }
        for h in hosts {
            let _ = writeln!(
                out,
                "host       {} (pid {} on {}, up since {}, last heartbeat {})",
                h["id"].as_str().unwrap_or(""),
                h["pid"],
                h["hostname"].as_str().unwrap_or(""),
                fmt_ms(h["started_at"].as_i64().unwrap_or(0)),
                fmt_ms(h["heartbeat_at"].as_i64().unwrap_or(0))
            );
            let r = &h["status"]["reconciler"];
            let _ = writeln!(
                out,
                "  packages loaded {}, failed {}",
                r["packages_loaded"],
                r["failed"].as_array().map(|a| a.len()).unwrap_or(0)
            );
            for f in r["failed"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "    failed {}: {}",
                    f["id"],
                    f["error"].as_str().unwrap_or("")
                );
            }
            let c = &h["status"]["cache"];
            let _ = writeln!(
                out,
                "  cache: {} memory hits, {} disk hits, {} compiles ({} µs compiling), {} discarded",
                c["memory_hits"], c["disk_hits"], c["misses"], c["compile_micros"], c["discarded"]
            );
            let e = &h["status"]["executor"];
            let _ = writeln!(
                out,
                "  executor: {} running, {} claimed, {} succeeded, {} failed attempts",
                e["running"], e["claimed"], e["succeeded"], e["failed"]
            );
        }
    }
    let packages = report["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let _ = writeln!(out, "packages   {} registered", packages.len());
    for p in packages {
        let hash = p["content_hash"].as_str().unwrap_or("");
        let _ = writeln!(
            out,
            "  {}::{}@{}  {}",
            p["tenant"].as_str().unwrap_or(""),
            p["name"].as_str().unwrap_or(""),
            p["version"].as_str().unwrap_or(""),
            hash.get(..12).unwrap_or(hash)
        );
    }
    let counts: Vec<String> = report["executions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let _ = writeln!(out, "executions {}", counts.join(", "));
    if report.get("cache").is_some() {
        let cache = &report["cache"];
        let _ = writeln!(
            out,
            "cache dir  {} ({} artifacts, {} bytes)",
            cache["dir"].as_str().unwrap_or(""),
            cache["artifacts"],
            cache["bytes"]
        );
    }
    out
}
