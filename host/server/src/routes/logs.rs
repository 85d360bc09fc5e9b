//! `GET /api/v1/executions/{id}/logs`: what each attempt's guest said.

use super::json_ok;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::routes::executions::visible;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// Which attempts' logs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// Act on another tenant (operator keys).
    pub tenant: Option<String>,
    /// Only this task's.
    pub task: Option<String>,
    /// Only this attempt's (1 is the first).
    pub attempt: Option<u32>,
}

/// The stored logs of an execution's attempts (as `executions logs
/// --json`): log records with level, message and fields, stdout and stderr
/// lines, and whether the attempt's logs were truncated at their cap.
#[utoipa::path(get, path = "/api/v1/executions/{id}/logs", tag = "executions",
    params(("id" = Uuid, Path), LogsQuery),
    responses(
        (status = 200, description = "One entry per attempt", body = Object),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
    ))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    let row = visible(&state, &caller, q.tenant.as_deref(), id).await?;
    let logs = state
        .runner
        .logs(&row.tenant, id, q.task.as_deref(), q.attempt)
        .await?;
    json_ok(serde_json::to_value(logs).unwrap_or(Value::Null))
}
