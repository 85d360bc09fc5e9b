//! `culvert executions list|show` and `culvert cancel`.

use crate::args::*;
use crate::common::*;
use crate::render::*;
use crate::table::print_table;
use culvert::{ExecutionFilter, ExecutionStatus};
use culvert_server::execution_list_item;
use serde_json::{Value, json};
use uuid::Uuid;

pub(crate) async fn executions_list(
    g: &GlobalArgs,
    tenant: Option<&str>,
    status: Option<&str>,
    schedule: Option<Uuid>,
    limit: i64,
    json_out: bool,
) -> anyhow::Result<i32> {
    let status = match status {
        None => None,
        Some(s) => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown status '{s}': use pending, running, completed, failed or cancelled"
            )
        })?),
    };
    let store = open_store(g).await?;
    let rows = store
        .list_executions(ExecutionFilter {
            tenant,
            status,
            schedule,
            limit: Some(limit),
            ..Default::default()
        })
        .await?;
    let items: Vec<Value> = rows.iter().map(execution_list_item).collect();
    print_execution_list(&items, json_out)
}

/// Print executions in their list form ([`execution_list_item`]): the
/// array, or a table.
pub(crate) fn print_execution_list(items: &[Value], json_out: bool) -> anyhow::Result<i32> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(0);
    }
    if items.is_empty() {
        println!("no executions");
        return Ok(0);
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let table: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            vec![
                text(&r["id"]),
                text(&r["tenant"]),
                text(&r["workflow"]),
                text(&r["status"]),
                text(&r["created_at"]),
                r["duration_ms"]
                    .as_i64()
                    .map(|d| format!("{d} ms"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &["ID", "TENANT", "WORKFLOW", "STATUS", "CREATED", "DURATION"],
        &table,
    );
    Ok(0)
}

pub(crate) async fn executions_show(
    g: &GlobalArgs,
    id: Uuid,
    tenant: &str,
    json_out: bool,
) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    let (row, tasks, events) = runner.execution(tenant, id).await?;
    print_execution(&row, &tasks, Some(&events), json_out)?;
    Ok(0)
}

pub(crate) async fn cancel(
    g: &GlobalArgs,
    id: Uuid,
    tenant: &str,
    json_out: bool,
) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    let row = runner.cancel(tenant, id).await?;
    print_cancelled(&json!({"id": row.id, "status": row.status}), json_out)
}

/// Print what `cancel` answers, `{"id", "status"}`: as it is, or a line.
pub(crate) fn print_cancelled(v: &Value, json_out: bool) -> anyhow::Result<i32> {
    if json_out {
        println!("{v}");
    } else {
        println!("cancelled {}", v["id"].as_str().unwrap_or(""));
    }
    Ok(0)
}
