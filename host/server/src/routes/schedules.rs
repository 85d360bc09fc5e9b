//! `/api/v1/schedules[...]`: what `culvert schedule ...` does, through the
//! API. A tenant key sees and changes its own tenant's schedules; another
//! tenant's are "not found".

use super::{TenantQuery, json_body, json_ok};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::packages::record;
use crate::state::AppState;
use crate::views::{fire_json, schedule_json};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use culvert::{AuditAction, CatchUp, Overlap, ScheduleRow, ScheduleSpec};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

/// How many recorded due times `GET /api/v1/schedules/{id}` includes.
const RECENT_FIRES: i64 = 20;

/// What `POST /api/v1/schedules` takes (the flags of `schedule create`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The workflow: `NAME` or `PACKAGE::NAME`.
    pub workflow: String,
    /// A cron expression: six fields with seconds (`0 */5 * * * *`), or
    /// the classic five.
    pub cron: String,
    /// An IANA timezone; default `UTC`.
    pub timezone: Option<String>,
    /// The initial context of each execution; default `{}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// `skip` (default), `latest` or `all`.
    pub catch_up: Option<String>,
    /// The most missed due times `all` starts (1 to 100); default 10.
    pub catch_up_cap: Option<u32>,
    /// `allow` (default), `skip` or `queue_one`.
    pub overlap: Option<String>,
}

impl ScheduleRequest {
    /// The schedule it asks for.
    ///
    /// # Errors
    /// An unknown policy name, naming the ones there are.
    pub fn into_spec(self) -> Result<ScheduleSpec, String> {
        let mut spec = ScheduleSpec::new(self.workflow, self.cron);
        if let Some(tz) = self.timezone {
            spec.timezone = tz;
        }
        spec.context = self.context;
        if let Some(c) = self.catch_up {
            spec.catch_up = CatchUp::parse(&c).ok_or_else(|| {
                format!(
                    "unknown catch-up policy '{}': use {}",
                    culvert::escape_guest_text(&c),
                    CatchUp::NAMES.join(", ")
                )
            })?;
        }
        if let Some(cap) = self.catch_up_cap {
            spec.catch_up_cap = cap;
        }
        if let Some(o) = self.overlap {
            spec.overlap = Overlap::parse(&o).ok_or_else(|| {
                format!(
                    "unknown overlap policy '{}': use {}",
                    culvert::escape_guest_text(&o),
                    Overlap::NAMES.join(", ")
                )
            })?;
        }
        Ok(spec)
    }
}

/// The schedule `id` as the caller may see it: its tenant's, or 404.
async fn visible(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&str>,
    id: Uuid,
) -> ApiResult<ScheduleRow> {
    let scope = caller.scope(tenant)?;
    Ok(state.runner.schedule(scope.as_deref(), id).await?)
}

/// List schedules (set at run time and declared by packages), oldest
/// first.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    params(TenantQuery),
    responses((status = 200, description = "What `schedule list --json` prints", body = Object)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let scope = caller.scope(q.tenant.as_deref())?;
    let rows = state.runner.schedules(scope.as_deref()).await?;
    json_ok(Value::Array(rows.iter().map(schedule_json).collect()))
}

/// Create a schedule.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules",
    params(TenantQuery),
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "The schedule, as `schedule show --json` prints it", body = Object),
        (status = 400, description = "An invalid cron expression, timezone, policy or interval", body = ErrorBody),
        (status = 404, description = "No such workflow in this tenant", body = ErrorBody),
        (status = 429, description = "The max_schedules quota", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    request: Result<Json<ScheduleRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let tenant = caller.tenant_for(q.tenant.as_deref())?;
    let spec = json_body(request)?.into_spec().map_err(ApiError::invalid)?;
    let row = state.runner.create_schedule(&tenant, spec).await?;
    record(
        &state,
        caller.audit(
            &tenant,
            AuditAction::ScheduleCreated,
            row.id.to_string(),
            json!({"workflow": row.spec.workflow, "cron": row.spec.cron}),
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(schedule_json(&row))).into_response())
}

/// Show a schedule with its latest recorded due times.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "What `schedule show --json` prints", body = Object),
        (status = 404, description = "No such schedule for this key", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let row = visible(&state, &caller, q.tenant.as_deref(), id).await?;
    let fires = state
        .runner
        .schedule_fires(Some(&row.tenant), id, RECENT_FIRES)
        .await?;
    let mut v = schedule_json(&row);
    v["fires"] = Value::Array(fires.iter().map(fire_json).collect());
    json_ok(v)
}

/// What a change of one schedule does.
#[derive(Debug, Clone, Copy)]
enum Change {
    Pause,
    Resume,
    Delete,
}

async fn change(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&str>,
    id: Uuid,
    change: Change,
) -> ApiResult<Json<Value>> {
    let row = visible(state, caller, tenant, id).await?;
    let (row, action) = match change {
        Change::Pause => (
            state.runner.pause_schedule(&row.tenant, id).await?,
            AuditAction::SchedulePaused,
        ),
        Change::Resume => (
            state.runner.resume_schedule(&row.tenant, id).await?,
            AuditAction::ScheduleResumed,
        ),
        Change::Delete => (
            state.runner.delete_schedule(&row.tenant, id).await?,
            AuditAction::ScheduleDeleted,
        ),
    };
    record(
        state,
        caller.audit(
            &row.tenant,
            action,
            id.to_string(),
            json!({"workflow": row.spec.workflow}),
        ),
    )
    .await;
    json_ok(schedule_json(&row))
}

/// Pause a schedule: it fires nothing until resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/pause", tag = "schedules",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "The schedule", body = Object),
        (status = 404, description = "No such schedule for this key", body = ErrorBody),
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    change(&state, &caller, q.tenant.as_deref(), id, Change::Pause).await
}

/// Resume a schedule from now (due times while paused are not caught up).
#[utoipa::path(post, path = "/api/v1/schedules/{id}/resume", tag = "schedules",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "The schedule", body = Object),
        (status = 404, description = "No such schedule for this key", body = ErrorBody),
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    change(&state, &caller, q.tenant.as_deref(), id, Change::Resume).await
}

/// Delete a schedule set at run time.
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "The deleted schedule", body = Object),
        (status = 404, description = "No such schedule for this key", body = ErrorBody),
        (status = 409, description = "It is declared by a package", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    change(&state, &caller, q.tenant.as_deref(), id, Change::Delete).await
}

/// Fire a schedule once, now.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/trigger", tag = "schedules",
    params(("id" = Uuid, Path), TenantQuery),
    responses(
        (status = 200, description = "The recorded fire: `{schedule, scheduled_for, outcome, execution, ...}`", body = Object),
        (status = 404, description = "No such schedule for this key, or its workflow is gone", body = ErrorBody),
        (status = 429, description = "A tenant quota refused the start", body = ErrorBody),
    ))]
pub async fn trigger(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let row = visible(&state, &caller, q.tenant.as_deref(), id).await?;
    let fire = state.runner.trigger_schedule(&row.tenant, id).await?;
    record(
        &state,
        caller.audit(
            &row.tenant,
            AuditAction::ScheduleTriggered,
            id.to_string(),
            json!({"workflow": row.spec.workflow, "execution": fire.execution_id}),
        ),
    )
    .await;
    json_ok(fire_json(&fire))
}
