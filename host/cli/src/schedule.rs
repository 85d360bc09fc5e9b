//! `culvert schedule create|list|show|pause|resume|delete|trigger`: against
//! the database (through a [`Runner`](culvert::Runner)) or, with
//! `--server`, through the API. Both answer with the server's JSON views
//! ([`schedule_json`], [`fire_json`]), so both print the same text and the
//! same `--json`.

use crate::args::*;
use crate::client::{Api, Body, Retry};
use crate::common::*;
use crate::table::print_table;
use anyhow::Context as _;
use culvert::{AuditAction, AuditEntry, Runner};
use culvert_server::views::{fire_json, schedule_json};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// Where the commands act: the database, or a server.
enum Target<'a> {
    Local(Box<Runner>),
    Api(&'a Api),
}

/// `?tenant=T` when a tenant was named.
fn query(tenant: Option<&str>) -> Vec<(&str, &str)> {
    tenant.map(|t| ("tenant", t)).into_iter().collect()
}

/// An audit entry for a change made from the command line (no key).
fn cli_entry(tenant: &str, action: AuditAction, id: Uuid, workflow: &str) -> AuditEntry {
    AuditEntry {
        key_id: None,
        key_name: Some("(command line)".into()),
        tenant: tenant.to_string(),
        action,
        subject: id.to_string(),
        detail: json!({"workflow": workflow}),
    }
}

pub(crate) async fn schedule(
    g: &GlobalArgs,
    api: Option<&Api>,
    cmd: ScheduleCommand,
) -> anyhow::Result<i32> {
    let target = match api {
        Some(api) => Target::Api(api),
        None => Target::Local(Box::new(open_runner(runner_config(g)?).await?)),
    };
    match cmd {
        ScheduleCommand::Create(args) => create(&target, args).await,
        ScheduleCommand::List {
            tenant,
            all_tenants,
            json,
        } => {
            let items = match &target {
                Target::Local(r) => {
                    let tenant = (!all_tenants).then(|| tenant_or_default(&tenant));
                    r.schedules(tenant)
                        .await?
                        .iter()
                        .map(schedule_json)
                        .collect()
                }
                Target::Api(api) => match api.get(&["schedules"], &query(tenant.as_deref())).await?
                {
                    Value::Array(items) => items,
                    other => anyhow::bail!("the server answered {other} where a list was expected"),
                },
            };
            print_list(&items, json)
        }
        ScheduleCommand::Show(a) => {
            let v = match &target {
                Target::Local(r) => {
                    let tenant = tenant_or_default(&a.tenant);
                    let row = r.schedule(Some(tenant), a.id).await?;
                    let fires = r.schedule_fires(Some(tenant), a.id, 20).await?;
                    let mut v = schedule_json(&row);
                    v["fires"] = Value::Array(fires.iter().map(fire_json).collect());
                    v
                }
                Target::Api(api) => {
                    let id = a.id.to_string();
                    api.get(&["schedules", &id], &query(a.tenant.as_deref()))
                        .await?
                }
            };
            print_one(&v, a.json, None)
        }
        ScheduleCommand::Pause(a) => change(&target, a, "pause").await,
        ScheduleCommand::Resume(a) => change(&target, a, "resume").await,
        ScheduleCommand::Delete(a) => change(&target, a, "delete").await,
        ScheduleCommand::Trigger(a) => {
            let v = match &target {
                Target::Local(r) => {
                    let tenant = tenant_or_default(&a.tenant);
                    let row = r.schedule(Some(tenant), a.id).await?;
                    let fire = r.trigger_schedule(tenant, a.id).await?;
                    r.store()
                        .record_audit(&cli_entry(
                            tenant,
                            AuditAction::ScheduleTriggered,
                            a.id,
                            &row.spec.workflow,
                        ))
                        .await?;
                    fire_json(&fire)
                }
                Target::Api(api) => {
                    let id = a.id.to_string();
                    api.call(
                        Method::POST,
                        &["schedules", &id, "trigger"],
                        &query(a.tenant.as_deref()),
                        Body::Empty,
                        &[],
                        Retry::Never,
                    )
                    .await?
                }
            };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "triggered schedule {}: execution {}",
                    a.id,
                    v["execution"].as_str().unwrap_or("-")
                );
            }
            Ok(0)
        }
    }
}

async fn create(target: &Target<'_>, args: ScheduleCreateArgs) -> anyhow::Result<i32> {
    let context = parse_context(&args.context)?;
    let body = json!({
        "workflow": args.workflow,
        "cron": args.cron,
        "timezone": args.timezone,
        "context": context,
        "catch_up": args.catch_up,
        "catch_up_cap": args.catch_up_cap,
        "overlap": args.overlap.replace('-', "_"),
    });
    let v = match target {
        Target::Local(r) => {
            let request: culvert_server::ScheduleRequest =
                serde_json::from_value(body).context("the schedule's flags")?;
            let spec = request.into_spec().map_err(|e| anyhow::anyhow!(e))?;
            let tenant = tenant_or_default(&args.tenant);
            let row = r.create_schedule(tenant, spec).await?;
            r.store()
                .record_audit(&cli_entry(
                    tenant,
                    AuditAction::ScheduleCreated,
                    row.id,
                    &row.spec.workflow,
                ))
                .await?;
            schedule_json(&row)
        }
        Target::Api(api) => {
            api.call(
                Method::POST,
                &["schedules"],
                &query(args.tenant.as_deref()),
                Body::Json(body),
                &[],
                Retry::Never,
            )
            .await?
        }
    };
    print_one(&v, args.json, Some("created"))
}

async fn change(target: &Target<'_>, a: ScheduleIdArgs, what: &str) -> anyhow::Result<i32> {
    let v = match target {
        Target::Local(r) => {
            let tenant = tenant_or_default(&a.tenant);
            let (row, action) = match what {
                "pause" => (
                    r.pause_schedule(tenant, a.id).await?,
                    AuditAction::SchedulePaused,
                ),
                "resume" => (
                    r.resume_schedule(tenant, a.id).await?,
                    AuditAction::ScheduleResumed,
                ),
                _ => (
                    r.delete_schedule(tenant, a.id).await?,
                    AuditAction::ScheduleDeleted,
                ),
            };
            r.store()
                .record_audit(&cli_entry(tenant, action, a.id, &row.spec.workflow))
                .await?;
            schedule_json(&row)
        }
        Target::Api(api) => {
            let id = a.id.to_string();
            let (method, path): (Method, Vec<&str>) = match what {
                "delete" => (Method::DELETE, vec!["schedules", &id]),
                _ => (Method::POST, vec!["schedules", &id, what]),
            };
            api.call(
                method,
                &path,
                &query(a.tenant.as_deref()),
                Body::Empty,
                &[],
                Retry::Never,
            )
            .await?
        }
    };
    let done = match what {
        "pause" => "paused",
        "resume" => "resumed",
        _ => "deleted",
    };
    print_one(&v, a.json, Some(done))
}

/// A schedule's state in words: paused, or when it is next due.
fn state(v: &Value) -> String {
    if v["paused"].as_bool() == Some(true) {
        "paused".into()
    } else {
        v["next_due_at"]
            .as_str()
            .map(|t| format!("next {t}"))
            .unwrap_or_else(|| "never due again".into())
    }
}

/// Who set it: `declared by P`, or `set at run time`.
fn origin(v: &Value) -> String {
    match v["package"].as_str() {
        Some(p) => format!("declared by {p}"),
        None => "set at run time".into(),
    }
}

fn print_list(items: &[Value], json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(0);
    }
    if items.is_empty() {
        println!("no schedules");
        return Ok(0);
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            vec![
                text(&s["id"]),
                text(&s["tenant"]),
                text(&s["workflow"]),
                text(&s["cron"]),
                text(&s["timezone"]),
                state(s),
                origin(s),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "TENANT", "WORKFLOW", "CRON", "TIMEZONE", "STATE", "ORIGIN",
        ],
        &rows,
    );
    Ok(0)
}

/// One schedule: as JSON, or a few lines (with `done` first, for a
/// change).
fn print_one(v: &Value, json: bool, done: Option<&str>) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(0);
    }
    let text = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    if let Some(done) = done {
        println!("{done} schedule {}", text("id"));
    } else {
        println!("schedule {}", text("id"));
    }
    println!(
        "  workflow   {} (tenant {})",
        text("workflow"),
        text("tenant")
    );
    println!("  cron       {} in {}", text("cron"), text("timezone"));
    println!(
        "  policies   catch-up {} (cap {}), overlap {}",
        text("catch_up"),
        v["catch_up_cap"],
        text("overlap")
    );
    println!("  state      {}, {}", state(v), origin(v));
    if let Some(e) = v["last_error"].as_str() {
        println!("  last error {}", culvert::escape_guest_text(e));
    }
    if let Some(fires) = v["fires"].as_array() {
        println!("  latest due times:");
        if fires.is_empty() {
            println!("    none yet");
        }
        for f in fires {
            println!(
                "    {}  {}  {}",
                f["scheduled_for"].as_str().unwrap_or(""),
                f["outcome"].as_str().unwrap_or(""),
                f["execution"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| f["error"]
                        .as_str()
                        .map(|e| culvert::escape_guest_text(e).into_owned()))
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}
