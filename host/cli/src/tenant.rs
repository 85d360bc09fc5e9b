//! `culvert tenant` (create, show, list, set limits, delete) and
//! `culvert grant` / `culvert revoke` (capability grants).

use crate::args::*;
use crate::common::*;
use crate::render::*;
use anyhow::Context as _;
use culvert::{Grant, GrantKind, TenantLimits};
use serde_json::{Value, json};

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
            let mark = if v[k] == d[k] { "  (default)" } else { "" };
            format!("  {k:<28} {}{mark}", limit_value(k, &v[k]))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A limit's value as a person reads it: sizes in KiB, MiB or GiB, times
/// in ms or s, and what "no value" means for the limits that may have none.
fn limit_value(key: &str, v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return match (key, v) {
            ("fuel_per_call", Value::Null) => "unlimited".into(),
            ("max_cpu_cores", Value::Null) => "a fair share".into(),
            (_, Value::Null) => "none".into(),
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        };
    };
    if key.ends_with("_bytes") {
        let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, size) in units {
            if n >= size && n % size == 0 {
                return format!("{} {unit}", n / size);
            }
        }
        format!("{n} bytes")
    } else if key.ends_with("_ms") {
        if n >= 1000 && n % 1000 == 0 {
            format!("{} s", n / 1000)
        } else {
            format!("{n} ms")
        }
    } else {
        n.to_string()
    }
}

/// A tenant as JSON: times in ISO 8601, as everywhere else.
fn tenant_json(t: &culvert::TenantRow) -> Value {
    json!({
        "name": t.name,
        "created_at": fmt_ms(t.created_at),
        "limits": t.limits,
    })
}

pub(crate) async fn tenant(g: &GlobalArgs, cmd: TenantCommand) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    match cmd {
        TenantCommand::Create { name, set, json } => {
            let mut limits = TenantLimits::default();
            apply_limits(&mut limits, &set)?;
            let t = runner.create_tenant(&name, &limits).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenant_json(&t))?);
            } else {
                println!("created tenant {}\n{}", t.name, limits_text(&t.limits));
            }
        }
        TenantCommand::List { json } => {
            let tenants = runner.tenants().await?;
            if json {
                let items: Vec<Value> = tenants.iter().map(tenant_json).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
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
                println!("{}", serde_json::to_string_pretty(&tenant_json(&t))?);
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

/// The kind and name of grant the flags pick, and the rest of the flag
/// after `=` (the env var's value, the host directory), if any.
fn grant_target(
    env: &Option<String>,
    dir: &Option<String>,
    http: &Option<String>,
    wall_clock: bool,
    random: bool,
) -> anyhow::Result<(GrantKind, String, Option<String>)> {
    let split = |s: &str| match s.split_once('=') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (s.to_string(), None),
    };
    Ok(if let Some(env) = env {
        let (n, v) = split(env);
        (GrantKind::Env, n, v)
    } else if let Some(dir) = dir {
        let (n, v) = split(dir);
        (GrantKind::Dir, n, v)
    } else if let Some(host) = http {
        // Patterns compare without case; the library stores them lowered.
        (GrantKind::Http, host.to_ascii_lowercase(), None)
    } else if wall_clock {
        (GrantKind::WallClock, String::new(), None)
    } else if random {
        (GrantKind::Random, String::new(), None)
    } else {
        anyhow::bail!("say which capability: --env, --dir, --http, --wall-clock or --random");
    })
}

/// What `grant` and `revoke` print.
fn print_grant(record: &Grant, give: bool, json: bool) {
    if json {
        println!("{}", json!({"granted": give, "grant": record}));
    } else {
        let what = if record.name.is_empty() {
            record.kind.as_str().to_string()
        } else {
            format!("{} {}", record.kind.as_str(), record.name)
        };
        println!(
            "{} {what} for tenant {}{}",
            if give { "granted" } else { "revoked" },
            record.tenant,
            if record.package.is_empty() {
                String::new()
            } else {
                format!(" (package {})", record.package)
            }
        );
    }
}

pub(crate) async fn grant(g: &GlobalArgs, args: GrantArgs) -> anyhow::Result<i32> {
    let (kind, name, value) = grant_target(
        &args.env,
        &args.dir,
        &args.http,
        args.wall_clock,
        args.random,
    )?;
    let value = match (kind, value) {
        (GrantKind::Env, None) => anyhow::bail!("--env takes NAME=VALUE"),
        (GrantKind::Dir, None) => anyhow::bail!("--dir takes GUEST_PATH=HOST_DIR"),
        (GrantKind::Dir, Some(v)) => std::fs::canonicalize(&v)
            .with_context(|| format!("cannot use {v} as a granted directory"))?
            .display()
            .to_string(),
        (_, v) => v.unwrap_or_default(),
    };
    let runner = open_runner(runner_config(g)?).await?;
    let record = Grant {
        tenant: args.tenant.clone(),
        package: args.package.clone().unwrap_or_default(),
        kind,
        name,
        value,
        writable: args.writable,
    };
    runner.grant(&record).await?;
    print_grant(&record, true, args.json);
    Ok(0)
}

pub(crate) async fn revoke(g: &GlobalArgs, args: RevokeArgs) -> anyhow::Result<i32> {
    let (kind, name, value) = grant_target(
        &args.env,
        &args.dir,
        &args.http,
        args.wall_clock,
        args.random,
    )?;
    if value.is_some() {
        anyhow::bail!(
            "revoke names the grant only: --env NAME or --dir GUEST_PATH, without '=...'"
        );
    }
    let runner = open_runner(runner_config(g)?).await?;
    let record = Grant {
        tenant: args.tenant.clone(),
        package: args.package.clone().unwrap_or_default(),
        kind,
        name,
        value: String::new(),
        writable: false,
    };
    runner
        .revoke(&record.tenant, &record.package, kind, &record.name)
        .await?;
    print_grant(&record, false, args.json);
    Ok(0)
}
