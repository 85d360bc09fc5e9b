//! `culvert tenant` (create, show, list, set limits, delete) and
//! `culvert grant` / `culvert revoke` (capability grants).

use crate::args::*;
use crate::common::*;
use crate::render::*;
use anyhow::Context as _;
use culvert::{Grant, GrantKind, TenantLimits};
use serde_json::json;

pub(crate) fn apply_limits(limits: &mut TenantLimits, set: &[String]) -> anyhow::Result<()> {
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set takes KEY=VALUE, got '{kv}'"))?;
        limits
            .set(k.trim(), v.trim())
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

pub(crate) fn limits_text(l: &TenantLimits) -> String {
    let defaults = TenantLimits::default();
    let v = serde_json::to_value(l).unwrap_or_default();
    let d = serde_json::to_value(&defaults).unwrap_or_default();
    TenantLimits::KEYS
        .iter()
        .map(|k| {
            let mark = if v[k] == d[k] { " (default)" } else { "" };
            format!("  {k:<28} {}{mark}", v[k])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) async fn tenant(g: &GlobalArgs, cmd: TenantCommand) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    match cmd {
        TenantCommand::Create { name, set, json } => {
            let mut limits = TenantLimits::default();
            apply_limits(&mut limits, &set)?;
            let t = runner.create_tenant(&name, &limits).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("created tenant {}\n{}", t.name, limits_text(&t.limits));
            }
        }
        TenantCommand::List { json } => {
            let tenants = runner.tenants().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                for t in &tenants {
                    println!("{}", t.name);
                }
            }
        }
        TenantCommand::Show { name, json } => {
            let t = runner.tenant(&name).await?;
            let grants = runner.grants(&name).await?;
            let packages = runner.list_packages(Some(&name)).await?.len();
            let unfinished = runner.store().count_unfinished(&name).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "name": t.name,
                        "created_at": fmt_ms(t.created_at),
                        "limits": t.limits,
                        "defaults": TenantLimits::default(),
                        "grants": grants,
                        "packages": packages,
                        "unfinished_executions": unfinished,
                    }))?
                );
            } else {
                println!("tenant {} (created {})", t.name, fmt_ms(t.created_at));
                println!("limits:\n{}", limits_text(&t.limits));
                println!(
                    "usage:\n  packages                 {packages}\n  unfinished executions    {unfinished}"
                );
                println!("grants:");
                if grants.is_empty() {
                    println!("  none");
                }
                for gr in &grants {
                    println!(
                        "  {:<10} {:<24} {}{}{}",
                        gr.kind.as_str(),
                        gr.name,
                        gr.value,
                        if gr.writable { " (writable)" } else { "" },
                        if gr.package.is_empty() {
                            String::new()
                        } else {
                            format!(" [package {}]", gr.package)
                        }
                    );
                }
            }
        }
        TenantCommand::Update { name, set, json } => {
            let mut limits = runner.tenant(&name).await?.limits;
            apply_limits(&mut limits, &set)?;
            let t = runner.update_tenant(&name, &limits).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("updated tenant {}\n{}", t.name, limits_text(&t.limits));
            }
        }
        TenantCommand::Delete { name, force, json } => {
            runner.delete_tenant(&name, force).await?;
            if json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted tenant {name}");
            }
        }
    }
    Ok(0)
}

pub(crate) async fn grant(g: &GlobalArgs, args: GrantArgs, give: bool) -> anyhow::Result<i32> {
    let (kind, name, value) = if let Some(env) = &args.env {
        let (n, v) = env.split_once('=').unwrap_or((env.as_str(), ""));
        (GrantKind::Env, n.to_string(), v.to_string())
    } else if let Some(dir) = &args.dir {
        let (n, v) = dir.split_once('=').unwrap_or((dir.as_str(), ""));
        let host = if give && !v.is_empty() {
            std::fs::canonicalize(v)
                .with_context(|| format!("cannot use {v} as a granted directory"))?
                .display()
                .to_string()
        } else {
            v.to_string()
        };
        (GrantKind::Dir, n.to_string(), host)
    } else if let Some(host) = &args.http {
        (GrantKind::Http, host.clone(), String::new())
    } else if args.wall_clock {
        (GrantKind::WallClock, String::new(), String::new())
    } else if args.random {
        (GrantKind::Random, String::new(), String::new())
    } else {
        anyhow::bail!("say what to grant: --env, --dir, --http, --wall-clock or --random");
    };
    let runner = open_runner(runner_config(g)?).await?;
    let record = Grant {
        tenant: args.tenant.clone(),
        package: args.package.clone(),
        kind,
        name,
        value,
        writable: args.writable,
    };
    if give {
        if kind == GrantKind::Env && !args.env.as_deref().unwrap_or("").contains('=') {
            anyhow::bail!("--env takes NAME=VALUE");
        }
        runner.grant(&record).await?;
    } else {
        runner
            .revoke(&record.tenant, &record.package, kind, &record.name)
            .await?;
    }
    if args.json {
        println!("{}", json!({"granted": give, "grant": record}));
    } else {
        println!(
            "{} {} {} for tenant {}{}",
            if give { "granted" } else { "revoked" },
            kind.as_str(),
            record.name,
            record.tenant,
            if record.package.is_empty() {
                String::new()
            } else {
                format!(" (package {})", record.package)
            }
        );
    }
    Ok(0)
}
