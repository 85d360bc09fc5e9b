//! `/api/v1/executions`: start, list, show, events, cancel and retry
//! executions (the log and the event stream have their own modules).

use super::{TenantQuery, json_body, json_ok};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::packages::record;
use crate::state::AppState;
use crate::views::{event_json, execution_json};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use culvert::{AuditAction, ExecutionFilter, ExecutionRow, ExecutionStatus};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

/// The most executions one page lists.
const MAX_PAGE: i64 = 1000;

/// What `POST /api/v1/executions` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The workflow: `NAME`, or `PACKAGE::NAME` when several packages
    /// define `NAME`.
    pub workflow: String,
    /// The initial context (a JSON object); default `{}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// The package version; default the newest registered.
    pub version: Option<String>,
}

/// Start an execution. With an `Idempotency-Key` header, a retried
/// request returns the execution the first one started (200, not 201).
#[utoipa::path(post, path = "/api/v1/executions", tag = "executions",
    params(TenantQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Up to 255 printable characters; the same key returns the same execution")),
    request_body = StartRequest,
    responses(
        (status = 201, description = "Started: the execution, with `id` and `status`", body = Object),
        (status = 200, description = "Started earlier with this Idempotency-Key", body = Object),
        (status = 400, description = "Malformed JSON or request", body = ErrorBody),
        (status = 404, description = "No such workflow in this tenant", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key started another workflow", body = ErrorBody),
        (status = 429, description = "A tenant quota (max_queued_executions) or the rate limit", body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    request: Result<Json<StartRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let tenant = caller.tenant_for(q.tenant.as_deref())?;
    let request = json_body(request)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::invalid("the Idempotency-Key header must be printable ASCII")
        })?),
    };
    // The audit entry is recorded in the transaction that creates the
    // execution (its subject becomes the id): one write, and no start
    // without its record.
    let audit = caller.audit(&tenant, AuditAction::ExecutionStarted, "", json!({}));
    let (row, created) = state
        .runner
        .start_execution_once(
            &tenant,
            &request.workflow,
            request.version.as_deref(),
            request.context,
            key,
            Some(&audit),
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(execution_json(&row, &[], None))).into_response())
}

/// Filters and the page of `GET /api/v1/executions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Act on another tenant (operator keys; an operator that names none
    /// lists every tenant's).
    pub tenant: Option<String>,
    /// Only with this status: pending, running, completed, failed,
    /// cancelled.
    pub status: Option<String>,
    /// Only of this workflow.
    pub workflow: Option<String>,
    /// Only those this schedule (its id) started.
    pub schedule: Option<Uuid>,
    /// At most this many (1 to 1,000); default 100.
    pub limit: Option<i64>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// An execution's place in the newest-first order, as a cursor.
fn encode_cursor(row: &ExecutionRow) -> String {
    let (at, id) = row.cursor();
    format!("{at}_{}", id.simple())
}

fn decode_cursor(text: &str) -> ApiResult<(i64, Uuid)> {
    text.split_once('_')
        .and_then(|(at, id)| Some((at.parse().ok()?, Uuid::parse_str(id).ok()?)))
        .ok_or_else(|| ApiError::invalid("the cursor is not one this server handed out"))
}

/// The list item: an execution without its tasks (as `executions list
/// --json`).
pub fn list_item(row: &ExecutionRow) -> Value {
    let mut v = execution_json(row, &[], None);
    if let Some(o) = v.as_object_mut() {
        o.remove("tasks");
    }
    v
}

/// List executions, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions",
    params(ListQuery),
    responses(
        (status = 200, description = "`{\"executions\": [...], \"next_cursor\": \"...\" or null}`", body = Object),
        (status = 400, description = "An unknown status or a bad cursor", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let scope = caller.scope(q.tenant.as_deref())?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "unknown status: use pending, running, completed, failed or cancelled",
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = state
        .runner
        .executions(ExecutionFilter {
            tenant: scope.as_deref(),
            status,
            workflow: q.workflow.as_deref(),
            schedule: q.schedule,
            before,
            limit: Some(limit),
        })
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(encode_cursor))
        .flatten();
    json_ok(json!({
        "executions": rows.iter().map(list_item).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}

/// The execution `id` as the caller may see it: its tenant, or 404.
pub(crate) async fn visible(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&str>,
    id: Uuid,
) -> ApiResult<ExecutionRow> {
    let scope = caller.scope(tenant)?;
    Ok(state
        .runner
        .store()
        .get_execution(scope.as_deref(), id)
        .await?)
}

/// Show one execution: its tasks with attempts and errors, and its events
/// (the keys of `executions show --json`).
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "What `executions show --json` prints", body = Object),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    // A key scoped to one tenant reads it directly; an operator naming
    // none finds the execution's tenant first.
    let tenant = match caller.scope(q.tenant.as_deref())? {
        Some(tenant) => tenant,
        None => visible(&state, &caller, None, id).await?.tenant,
    };
    let (row, tasks, events) = state.runner.execution(&tenant, id).await?;
    json_ok(execution_json(&row, &tasks, Some(&events)))
}

/// An execution's event log, oldest first.
#[utoipa::path(get, path = "/api/v1/executions/{id}/events", tag = "executions",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "The events", body = Object),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    visible(&state, &caller, q.tenant.as_deref(), id).await?;
    let events = state.runner.store().execution_events(id).await?;
    json_ok(Value::Array(events.iter().map(event_json).collect()))
}

/// Cancel an execution: its running tasks are interrupted.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "`{\"id\", \"status\"}`", body = Object),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
        (status = 409, description = "It has finished already", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let row = visible(&state, &caller, q.tenant.as_deref(), id).await?;
    let row = state.runner.cancel(&row.tenant, id).await?;
    record(
        &state,
        caller.audit(
            &row.tenant,
            AuditAction::ExecutionCancelled,
            id.to_string(),
            json!({"workflow": row.workflow}),
        ),
    )
    .await;
    json_ok(json!({"id": row.id, "status": row.status}))
}

/// Retry a failed execution from its failed tasks.
#[utoipa::path(post, path = "/api/v1/executions/{id}/retry", tag = "executions",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "The execution, running again", body = Object),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
        (status = 409, description = "It did not fail", body = ErrorBody),
    ))]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let row = visible(&state, &caller, q.tenant.as_deref(), id).await?;
    let row = state.runner.retry_execution(&row.tenant, id).await?;
    record(
        &state,
        caller.audit(
            &row.tenant,
            AuditAction::ExecutionRetried,
            id.to_string(),
            json!({"workflow": row.workflow}),
        ),
    )
    .await;
    json_ok(execution_json(&row, &[], None))
}
