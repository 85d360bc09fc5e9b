//! `culvert executions list|show` and `culvert cancel`.

use crate::args::*;
use crate::common::*;
use crate::render::*;
use crate::table::print_table;
use culvert::{ExecutionFilter, ExecutionStatus};
use serde_json::{Value, json};
use uuid::Uuid;

pub(crate) async fn executions_list(
    g: &GlobalArgs,
    tenant: Option<&str>,
    status: Option<&str>,
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
            limit: Some(limit),
            ..Default::default()
        })
        .await?;
    if json_out {
        let items: Vec<Value> = rows
            .iter()
            .map(|r| execution_json(r, &[], None))
            .map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("tasks");
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no executions");
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.tenant.clone(),
                r.workflow.clone(),
                r.status.as_str().to_string(),
                fmt_ms(r.created_at),
                r.finished_at
                    .map(|f| format!("{} ms", f - r.created_at))
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
    if json_out {
        println!("{}", json!({"id": row.id, "status": row.status}));
    } else {
        println!("cancelled {}", row.id);
    }
    Ok(0)
}
