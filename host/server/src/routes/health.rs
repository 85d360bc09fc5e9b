//! `/healthz` (the process is up), `/readyz` (the database answers and the
//! first reconcile pass has finished) and `/metrics` (Prometheus, for
//! operator keys).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers and the first reconcile pass has finished: this
/// host can take traffic.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not yet, or the database is unreachable", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    state
        .runner
        .store()
        .live_hosts(i64::MAX)
        .await
        .map_err(|e| ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the database does not answer: {e}"),
            )
        })?;
    let status = state.runner.status().await;
    if status.last_pass.is_none() {
        return Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the first reconcile pass has not finished",
            )
        });
    }
    Ok(Json(json!({
        "status": "ready",
        "packages_loaded": status.packages_loaded,
    })))
}

/// Prometheus metrics, for operator keys (or on `--metrics-listen`
/// without a key).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "The Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "No operator key", body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    caller.require_operator()?;
    render_metrics(&state).await
}

/// The metrics text: the database's counts of tasks and executions
/// refreshed first, so every host of one database reports the same.
pub async fn render_metrics(state: &AppState) -> ApiResult<Response> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::not_found(
            "metrics are not recorded by this server (another recorder is installed)",
        ));
    };
    crate::metrics::refresh_fleet(state).await;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// `/metrics` on the `--metrics-listen` address: no key.
pub async fn open_metrics(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    render_metrics(&state).await
}
