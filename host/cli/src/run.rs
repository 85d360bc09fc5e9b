//! `culvert run` (start an execution of a registered workflow) and
//! `culvert exec` (run a package file once, with nothing registered).

use crate::args::*;
use crate::common::*;
use crate::render::*;
use anyhow::Context as _;
use culvert::{Runner, RunnerConfig, now_ms};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

pub(crate) async fn run_workflow(g: &GlobalArgs, args: RunArgs) -> anyhow::Result<i32> {
    let context = parse_context(&args.context)?;
    let tenant = tenant_or_default(&args.tenant);
    let runner = open_runner(runner_config(g)?).await?;
    let row = runner
        .start_execution(tenant, &args.workflow, args.version.as_deref(), context)
        .await?;
    follow(&runner, &row, tenant, args.wait, args.timeout, args.json).await
}

/// What `run` and `executions retry` do once the execution is pending:
/// without `wait`, print its id (and say when no `serve` will pick it
/// up); with `wait`, see it to the end (here, when no `serve` runs it) and
/// print it.
pub(crate) async fn follow(
    runner: &Runner,
    row: &culvert::ExecutionRow,
    tenant: &str,
    wait: bool,
    timeout: Option<u64>,
    json: bool,
) -> anyhow::Result<i32> {
    let serving = serve_is_running(runner).await?;
    if !wait {
        if !serving {
            eprintln!(
                "note: no `culvert serve` is running against this database, so execution {} \
                 waits until one starts. Start one with `culvert serve`, or pass --wait \
                 to run it in this process.",
                row.id
            );
        }
        return print_started(&json!({"id": row.id, "status": row.status}), json);
    }
    if !serving {
        run_here(runner, row.id);
    }
    let done = wait_watching_hosts(runner, row.id, timeout, !serving).await;
    print_finished(runner, tenant, done, json, true).await
}

/// Print a started execution that is not waited for: `{"id", "status"}`,
/// or its id alone (for scripts: `ID=$(culvert run ...)`).
pub(crate) fn print_started(v: &serde_json::Value, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", json!({"id": v["id"], "status": v["status"]}));
    } else {
        println!("{}", v["id"].as_str().unwrap_or(""));
    }
    Ok(0)
}

/// How long a host may go without a heartbeat before `run` counts it as
/// gone (hosts write theirs every 2 s).
const HOST_SILENCE_MS: i64 = 10_000;

/// Whether any `culvert serve` host has written its heartbeat lately.
async fn serve_is_running(runner: &Runner) -> anyhow::Result<bool> {
    Ok(!runner
        .store()
        .live_hosts(now_ms() - HOST_SILENCE_MS)
        .await?
        .is_empty())
}

/// Run execution `id` in this process, and nothing else.
fn run_here(runner: &Runner, id: Uuid) {
    runner.executor().only_execution(id);
    runner.start_executor();
}

/// Wait for execution `id` to finish (at most `timeout` seconds). While
/// `serve` hosts run it, watch their heartbeats: when every one has
/// stopped, take the execution over in this process (the dead hosts'
/// leases expire and their tasks are recovered here), so a kill of the last
/// `serve` never leaves `run --wait` waiting forever.
async fn wait_watching_hosts(
    runner: &Runner,
    id: Uuid,
    timeout: Option<u64>,
    mut here: bool,
) -> Result<culvert::ExecutionRow, culvert::Error> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + Duration::from_secs(t));
    loop {
        let slice = match deadline {
            Some(d) => d
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_secs(2)),
            None => Duration::from_secs(2),
        };
        match runner.wait(id, Some(slice)).await {
            Ok(row) => return Ok(row),
            // This slice ran out; the whole wait has not.
            Err(culvert::Error::Invalid(_))
                if deadline.is_none_or(|d| tokio::time::Instant::now() < d) => {}
            Err(e) => return Err(e),
        }
        if !here && !serve_is_running(runner).await.unwrap_or(true) {
            eprintln!(
                "note: every `culvert serve` host stopped; running execution {id} in this process"
            );
            run_here(runner, id);
            here = true;
        }
    }
}

pub(crate) async fn exec(g: &GlobalArgs, args: ExecArgs) -> anyhow::Result<i32> {
    let context = parse_context(&args.context)?;
    let bytes = read_package(&args.file)?;
    let mut config = RunnerConfig::new("sqlite::memory:").cache_dir(g.cache_dir()?);
    config.engine.egress.resolve = args.resolve.clone();
    let runner = open_runner(config).await?;
    for host in &args.http {
        runner
            .grant(&culvert::Grant {
                tenant: "public".into(),
                package: String::new(),
                kind: culvert::GrantKind::Http,
                name: host.clone(),
                value: String::new(),
                writable: false,
            })
            .await?;
    }
    runner
        .register_package("public", &bytes)
        .await
        .with_context(|| format!("{} is not a valid package", args.file.display()))?;
    // exec has no tenants to speak of: its one tenant is an implementation
    // detail, left out of the message.
    let row = runner
        .start_execution("public", &args.workflow, None, context)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace(" in tenant public", "")))?;
    runner.start_executor();
    let done = runner
        .wait(row.id, args.timeout.map(Duration::from_secs))
        .await;
    print_finished(&runner, "public", done, args.json, false).await
}

/// Stop the runner, print the finished execution, and return the exit
/// code its status maps to. An execution that was not `stored` (`exec`'s,
/// in a database that ends with the process) is shown without an id that
/// could never be looked up.
async fn print_finished(
    runner: &Runner,
    tenant: &str,
    done: Result<culvert::ExecutionRow, culvert::Error>,
    json: bool,
    stored: bool,
) -> anyhow::Result<i32> {
    runner.shutdown().await;
    let done = done?;
    let (_, tasks, _) = runner.execution(tenant, done.id).await?;
    if stored {
        print_execution(&done, &tasks, None, json)?;
    } else if json {
        let mut v = execution_json(&done, &tasks, None);
        v["id"] = serde_json::Value::Null;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let text = execution_text(&execution_json(&done, &tasks, None));
        print!(
            "{}",
            text.replacen(&done.id.to_string(), "(one-shot, not stored)", 1)
        );
    }
    Ok(exit_code(done.status))
}

pub(crate) async fn retry_execution(g: &GlobalArgs, args: RetryArgs) -> anyhow::Result<i32> {
    let tenant = tenant_or_default(&args.tenant);
    let runner = open_runner(runner_config(g)?).await?;
    let row = runner.retry_execution(tenant, args.id).await?;
    follow(&runner, &row, tenant, args.wait, args.timeout, args.json).await
}
