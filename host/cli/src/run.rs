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
    let runner = open_runner(runner_config(g)?).await?;
    let row = runner
        .start_execution(
            &args.tenant,
            &args.workflow,
            args.version.as_deref(),
            context,
        )
        .await?;
    if !args.wait {
        if args.json {
            println!("{}", json!({"id": row.id, "status": row.status}));
        } else {
            println!("{}", row.id);
        }
        return Ok(0);
    }
    let serving = !runner
        .store()
        .live_hosts(now_ms() - 10_000)
        .await?
        .is_empty();
    if !serving {
        // Run this execution here, and nothing else.
        runner.executor().only_execution(row.id);
        runner.start_executor();
    }
    finish(&runner, &args.tenant, row.id, args.timeout, args.json).await
}

pub(crate) async fn exec(g: &GlobalArgs, args: ExecArgs) -> anyhow::Result<i32> {
    let context = parse_context(&args.context)?;
    let bytes = read_package(&args.file)?;
    let config = RunnerConfig::new("sqlite::memory:").cache_dir(g.cache_dir()?);
    let runner = open_runner(config).await?;
    runner
        .register_package("public", &bytes)
        .await
        .with_context(|| format!("{} is not a valid package", args.file.display()))?;
    let row = runner
        .start_execution("public", &args.workflow, None, context)
        .await?;
    runner.start_executor();
    finish(&runner, "public", row.id, args.timeout, args.json).await
}

/// Wait for execution `id` (at most `timeout` seconds), stop the runner,
/// print the execution, and return the exit code its status maps to.
async fn finish(
    runner: &Runner,
    tenant: &str,
    id: Uuid,
    timeout: Option<u64>,
    json: bool,
) -> anyhow::Result<i32> {
    let done = runner.wait(id, timeout.map(Duration::from_secs)).await;
    runner.shutdown().await;
    let done = done?;
    let (_, tasks, _) = runner.execution(tenant, done.id).await?;
    print_execution(&done, &tasks, None, json)?;
    Ok(exit_code(done.status))
}
