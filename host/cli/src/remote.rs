//! The commands that also run through a server's API (`--server`):
//! `package add|show|list|remove`, `key trust|list|untrust` (in `keys`), `run`, `executions list|show|retry`,
//! `cancel` and `status` (`executions logs` is in `logs`, with its
//! database twin).
//!
//! Each one asks the API what its database twin asks the store, and
//! prints the answer with the same printer (`print_*`, which render the
//! JSON views the server answers with), so both modes print the same text
//! and the same `--json`. Without `--tenant` a request acts on the key's
//! own tenant (for lists, an operator's key sees every tenant).

use crate::client::{Api, Body, Retry};
use crate::common::{parse_context, read_package, split_name_version};
use crate::executions::{print_cancelled, print_execution_list};
use crate::package::{print_package_list, print_registered, print_removed};
use crate::render::{exit_code, print_execution_json};
use crate::run::print_started;
use crate::serve::print_status;
use anyhow::Context as _;
use culvert::{ExecutionStatus, Registered};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

/// The most executions the API lists in one page.
const MAX_PAGE: i64 = 1000;

/// How long to wait before asking again when the event stream could not
/// be opened or broke off.
const POLL: Duration = Duration::from_millis(500);

/// `?tenant=T` when a tenant was named.
pub(crate) fn tenant_query(tenant: Option<&str>) -> Vec<(&str, &str)> {
    tenant.map(|t| ("tenant", t)).into_iter().collect()
}

/// The elements of a JSON array answer.
fn array(v: Value) -> anyhow::Result<Vec<Value>> {
    match v {
        Value::Array(items) => Ok(items),
        other => anyhow::bail!("the server answered {other} where a list was expected"),
    }
}

/// `package add FILE` through the API.
pub(crate) async fn package_add(
    api: &Api,
    file: &Path,
    tenant: Option<&str>,
    signature: Option<Vec<u8>>,
    json: bool,
) -> anyhow::Result<i32> {
    use base64::Engine as _;
    let bytes = read_package(file)?;
    let signature = signature.map(|s| base64::engine::general_purpose::STANDARD.encode(s));
    let headers: Vec<(&str, &str)> = signature
        .iter()
        .map(|s| (culvert_server::SIGNATURE_HEADER, s.as_str()))
        .collect();
    let answer = api
        .call(
            Method::POST,
            &["packages"],
            &tenant_query(tenant),
            Body::Wasm(bytes),
            &headers,
            Retry::Never,
        )
        .await
        .with_context(|| format!("cannot register {}", file.display()))?;
    let registered: Registered =
        serde_json::from_value(answer).context("the server's answer is not a registration")?;
    print_registered(&registered, json)
}

/// `package show NAME[@VERSION]` through the API.
pub(crate) async fn package_show(
    api: &Api,
    spec: &str,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let v = api.get(&["packages", spec], &tenant_query(tenant)).await?;
    crate::package::print_package_detail(&v, json)
}

/// `package list` through the API.
pub(crate) async fn package_list(
    api: &Api,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let items = array(api.get(&["packages"], &tenant_query(tenant)).await?)?;
    print_package_list(&items, json)
}

/// `package remove NAME[@VERSION]` through the API.
pub(crate) async fn package_remove(
    api: &Api,
    spec: &str,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let spec = match split_name_version(spec) {
        (name, Some(version)) => format!("{name}@{version}"),
        (name, None) => name.to_string(),
    };
    let removed = api
        .call(
            Method::DELETE,
            &["packages", &spec],
            &tenant_query(tenant),
            Body::Empty,
            &[],
            Retry::Never,
        )
        .await?;
    print_removed(&array(removed)?, json)
}

/// `run WORKFLOW` through the API. The start carries a fresh
/// `Idempotency-Key`, so the one retry after a lost answer cannot start a
/// second execution.
pub(crate) async fn run_workflow(api: &Api, args: crate::args::RunArgs) -> anyhow::Result<i32> {
    let context = parse_context(&args.context)?;
    let key = Uuid::new_v4().to_string();
    let started = api
        .call(
            Method::POST,
            &["executions"],
            &tenant_query(args.tenant.as_deref()),
            Body::Json(json!({
                "workflow": args.workflow,
                "context": context,
                "version": args.version,
            })),
            &[("Idempotency-Key", &key)],
            Retry::Once,
        )
        .await?;
    follow(
        api,
        &started,
        args.tenant.as_deref(),
        args.wait,
        args.timeout,
        args.json,
    )
    .await
}

/// `executions retry ID` through the API.
pub(crate) async fn retry_execution(
    api: &Api,
    args: crate::args::RetryArgs,
) -> anyhow::Result<i32> {
    let id = args.id.to_string();
    let row = api
        .call(
            Method::POST,
            &["executions", &id, "retry"],
            &tenant_query(args.tenant.as_deref()),
            Body::Empty,
            &[],
            Retry::Never,
        )
        .await?;
    follow(
        api,
        &row,
        args.tenant.as_deref(),
        args.wait,
        args.timeout,
        args.json,
    )
    .await
}

/// After a start: print the id, or (with `wait`) wait for the end through
/// the event stream and print the execution as `run --wait` does against
/// the database, with the same exit code.
async fn follow(
    api: &Api,
    started: &Value,
    tenant: Option<&str>,
    wait: bool,
    timeout: Option<u64>,
    json: bool,
) -> anyhow::Result<i32> {
    if !wait {
        return print_started(started, json);
    }
    let id = started["id"]
        .as_str()
        .context("the server's answer has no execution id")?
        .to_string();
    let waited = wait_finished(api, &id, tenant);
    let mut done = match timeout {
        None => waited.await?,
        Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), waited).await {
            Ok(done) => done?,
            Err(_) => {
                let now = api.get(&["executions", &id], &tenant_query(tenant)).await?;
                anyhow::bail!(
                    "execution {id} did not finish in time (it is {})",
                    now["status"].as_str().unwrap_or("unknown")
                );
            }
        },
    };
    // `run --wait` prints the execution without its event log.
    if let Some(o) = done.as_object_mut() {
        o.remove("events");
    }
    print_execution_json(&done, json)?;
    Ok(exit_code(status_of(&done)?))
}

/// An execution document's status.
fn status_of(v: &Value) -> anyhow::Result<ExecutionStatus> {
    v["status"]
        .as_str()
        .and_then(ExecutionStatus::parse)
        .with_context(|| format!("the server answered an unknown status: {}", v["status"]))
}

/// Wait until execution `id` has finished and return it: follow its event
/// stream to its `end` event, and when the stream cannot be opened or
/// breaks off, look the execution up and follow again (a stream is only a
/// hint: the execution's own status decides).
async fn wait_finished(api: &Api, id: &str, tenant: Option<&str>) -> anyhow::Result<Value> {
    let query = tenant_query(tenant);
    loop {
        match api.stream(&["executions", id, "stream"], &query).await {
            Ok(stream) => {
                if let Err(e) = read_until_end(stream).await {
                    tracing::info!(error = %e, "the event stream broke off; looking the execution up");
                }
            }
            Err(e) => tracing::info!(error = %e, "no event stream; looking the execution up"),
        }
        let row = api.get(&["executions", id], &query).await?;
        if status_of(&row)?.is_finished() {
            return Ok(row);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Read a Server-Sent Events stream until its `end` event or its close.
async fn read_until_end(mut stream: reqwest::Response) -> anyhow::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(at) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            let line = String::from_utf8_lossy(&line);
            if line.trim_end() == "event: end" {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `executions list` through the API: pages followed by `next_cursor`
/// until `limit` executions (or the last page).
pub(crate) async fn executions_list(
    api: &Api,
    tenant: Option<&str>,
    status: Option<&str>,
    schedule: Option<Uuid>,
    limit: i64,
    json: bool,
) -> anyhow::Result<i32> {
    let schedule = schedule.map(|s| s.to_string());
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    while (items.len() as i64) < limit {
        let page = (limit - items.len() as i64).min(MAX_PAGE).to_string();
        let mut query = tenant_query(tenant);
        if let Some(s) = status {
            query.push(("status", s));
        }
        if let Some(s) = &schedule {
            query.push(("schedule", s));
        }
        query.push(("limit", &page));
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let mut answer = api.get(&["executions"], &query).await?;
        items.extend(array(answer["executions"].take())?);
        match answer["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    print_execution_list(&items, json)
}

/// `executions show ID` through the API.
pub(crate) async fn executions_show(
    api: &Api,
    id: Uuid,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let v = api
        .get(&["executions", &id.to_string()], &tenant_query(tenant))
        .await?;
    print_execution_json(&v, json)?;
    Ok(0)
}

/// `cancel ID` through the API.
pub(crate) async fn cancel(
    api: &Api,
    id: Uuid,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let v = api
        .call(
            Method::POST,
            &["executions", &id.to_string(), "cancel"],
            &tenant_query(tenant),
            Body::Empty,
            &[],
            Retry::Never,
        )
        .await?;
    print_cancelled(&v, json)
}

/// `status` through the API: what the key may see of it.
pub(crate) async fn status(api: &Api, json: bool) -> anyhow::Result<i32> {
    let report = api.get(&["status"], &[]).await?;
    print_status(&report, json)
}
