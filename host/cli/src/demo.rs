//! `culvert demo`: register the example packages, run each of them
//! (`hello`, `etl`, `flaky`), and print what happened.

use crate::args::*;
use crate::common::*;
use crate::render::*;
use anyhow::Context as _;
use culvert::redact_url;
use serde_json::json;
use std::time::Duration;

pub(crate) async fn demo(g: &GlobalArgs, args: DemoArgs) -> anyhow::Result<i32> {
    let dir = package_dir(args.packages, &["hello", "etl", "flaky"])?;
    let runner = open_runner(runner_config(g)?).await?;
    println!("database: {}", redact_url(&g.database_url()?));
    for name in ["hello", "etl", "flaky"] {
        let file = dir.join(format!("{name}.wasm"));
        let bytes = read_package(&file)?;
        let r = runner
            .register_package("public", &bytes)
            .await
            .with_context(|| format!("cannot register {}", file.display()))?;
        println!(
            "{} {} ({}, compile {})",
            if r.created {
                "registered"
            } else {
                "already registered"
            },
            r.label(),
            &r.content_hash[..12],
            if r.cache_hit { "from cache" } else { "fresh" }
        );
    }
    runner.start_executor();
    let mut code = 0;
    for (workflow, context) in [
        ("hello", json!({"name": "demo"})),
        ("etl", json!({"notify": true})),
        ("flaky", json!({"fail_times": 2})),
    ] {
        let ctx = context.as_object().cloned().unwrap_or_default();
        println!("\nrunning {workflow} with context {context}");
        let row = runner
            .start_execution("public", workflow, None, ctx)
            .await?;
        let done = runner.wait(row.id, Some(Duration::from_secs(120))).await?;
        let (_, tasks, _) = runner.execution("public", done.id).await?;
        print!("{}", execution_text(&execution_json(&done, &tasks, None)));
        code = code.max(exit_code(done.status));
    }
    runner.shutdown().await;
    // The hint names the database when it is not the default one, so that
    // it shows these executions.
    let database = match &g.database {
        Some(url) => format!(" --database '{}'", redact_url(url)),
        None => String::new(),
    };
    // The command as it can be typed here: `culvert` when that is on the
    // PATH and is this binary, else this binary's path (the demo script
    // runs it from the target directory).
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|d| d.join("culvert").canonicalize().ok() == std::env::current_exe().ok())
    });
    let command = if on_path {
        "culvert".to_string()
    } else {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "culvert".into())
    };
    println!("\nsee them again with: {command}{database} executions list");
    Ok(code)
}
