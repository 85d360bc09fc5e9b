//! The routes, and the router that joins them with their limits.
//!
//! | File | Routes |
//! |---|---|
//! | `packages.rs` | `/api/v1/packages[...]` |
//! | `executions.rs` | `/api/v1/executions[...]` but the stream and the logs |
//! | `stream.rs` | `/api/v1/executions/{id}/stream` (Server-Sent Events) |
//! | `logs.rs` | `/api/v1/executions/{id}/logs` |
//! | `schedules.rs` | `/api/v1/schedules[...]` |
//! | `admin.rs` | operators: `/api/v1/tenants[...]`, `/api/v1/keys[...]`, `/api/v1/audit` |
//! | `signing.rs` | `/api/v1/signing-keys[...]`: the package signing keys each tenant trusts |
//! | `status.rs` | `/api/v1/status`: what `culvert status` shows, as far as the key may see |
//! | `health.rs` | `/healthz`, `/readyz`, `/metrics` |
//!
//! Operators act on a tenant with `?tenant=NAME` on the package and
//! execution routes, and under `/api/v1/tenants/{name}` for the tenant
//! itself and its grants.

pub mod admin;
pub mod executions;
pub mod health;
pub mod logs;
pub mod packages;
pub mod schedules;
pub mod signing;
pub mod status;
pub mod stream;

use crate::error::{ApiError, ApiResult};
use crate::openapi::openapi_json;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use tower_http::timeout::TimeoutLayer;

/// `?tenant=`: an operator acts on another tenant (a tenant key may name
/// only its own).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct TenantQuery {
    /// The tenant to act on; default the key's own.
    pub tenant: Option<String>,
}

/// A JSON request body, or the error shape: 413 `payload_too_large` over
/// the JSON cap (with or without a `Content-Length`), 400
/// `invalid_request` without `Content-Type: application/json`, else 400
/// `invalid_json` with what is wrong with it.
pub(crate) fn json_body<T>(parsed: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    parsed.map(|Json(t)| t).map_err(|e| match e {
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large(format!("the request body is too large: {}", b.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid("send the body as JSON, with `Content-Type: application/json`")
        }
        e => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()),
    })
}

/// A JSON answer.
pub(crate) fn json_ok(v: Value) -> ApiResult<Json<Value>> {
    Ok(Json(v))
}

/// Every route, with its body caps and timeouts, and the HTTP metrics.
pub fn router(state: Arc<AppState>) -> Router {
    let config = &state.config;
    let api = Router::new()
        .route("/packages", get(packages::list))
        .route(
            "/packages/{name}",
            get(packages::show).delete(packages::remove),
        )
        .route("/executions", get(executions::list).post(executions::start))
        .route("/executions/{id}", get(executions::show))
        .route("/executions/{id}/events", get(executions::events))
        .route("/executions/{id}/logs", get(logs::logs))
        .route("/executions/{id}/cancel", post(executions::cancel))
        .route("/executions/{id}/retry", post(executions::retry))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route(
            "/schedules/{id}",
            get(schedules::show).delete(schedules::delete),
        )
        .route("/schedules/{id}/pause", post(schedules::pause))
        .route("/schedules/{id}/resume", post(schedules::resume))
        .route("/schedules/{id}/trigger", post(schedules::trigger))
        .route(
            "/tenants",
            get(admin::list_tenants).post(admin::create_tenant),
        )
        .route(
            "/tenants/{name}",
            get(admin::show_tenant)
                .patch(admin::update_tenant)
                .delete(admin::delete_tenant),
        )
        .route(
            "/tenants/{name}/grants",
            get(admin::list_grants)
                .post(admin::add_grant)
                .delete(admin::revoke_grant),
        )
        .route("/keys", get(admin::list_keys).post(admin::add_key))
        .route("/keys/{id}", axum::routing::delete(admin::revoke_key))
        .route("/audit", get(admin::audit))
        .route("/signing-keys", get(signing::list).post(signing::trust))
        .route(
            "/signing-keys/{key}",
            axum::routing::delete(signing::untrust),
        )
        .route("/status", get(status::status))
        .route("/openapi.json", get(openapi_json));
    // A layer covers the routes added before it: the JSON cap and the
    // request timeout cover everything above; uploads (capped per tenant
    // by their handlers, with their own timeout) and the event stream
    // (which lasts until its execution finishes) are added after.
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(config.max_json_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .route("/api/v1/packages", post(packages::add))
        .route("/api/v1/packages/inspect", post(packages::inspect))
        .route("/api/v1/executions/{id}/stream", get(stream::stream))
        .merge(crate::dashboard::router(config))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

/// 404 for an unknown route, in the error shape.
async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// `/metrics` without a key, for `--metrics-listen` (an address only
/// Prometheus reaches), and `/healthz`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(health::open_metrics))
        .route("/healthz", get(health::healthz))
        .fallback(not_found)
        .with_state(state)
}
