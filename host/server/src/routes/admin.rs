//! Operator-only routes: tenants and their limits, grants, API keys and
//! the audit log. A tenant key is answered 404 here, as for anything it
//! cannot see.

use super::{json_body, json_ok};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::packages::record;
use crate::state::AppState;
use crate::views::{fmt_ms, package_json};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use culvert::{
    ApiKeyRole, ApiKeyRow, AuditAction, Grant, GrantKind, TenantLimits, TenantRow,
    generate_api_key, now_ms, validate_tenant,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

/// A tenant as JSON (as `tenant list --json` prints each).
pub fn tenant_json(t: &TenantRow) -> Value {
    json!({
        "name": t.name,
        "created_at": fmt_ms(t.created_at),
        "limits": t.limits,
    })
}

/// Apply `changes` (limit name to value; `null` for "none") to `limits`.
fn apply(limits: &mut TenantLimits, changes: &Map<String, Value>) -> ApiResult<()> {
    for (k, v) in changes {
        let text = match v {
            Value::Null => "none".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        limits.set(k, &text).map_err(ApiError::invalid)?;
    }
    Ok(())
}

/// What `POST /api/v1/tenants` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The name: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Limits that differ from the defaults, by name (as `tenant set`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub limits: Map<String, Value>,
}

/// Create a tenant.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "operators",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = Object),
        (status = 409, description = "It exists", body = ErrorBody),
    ))]
pub async fn create_tenant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    request: Result<Json<CreateTenant>, JsonRejection>,
) -> ApiResult<Response> {
    caller.require_operator()?;
    let request = json_body(request)?;
    validate_tenant(&request.name)?;
    let mut limits = TenantLimits::default();
    apply(&mut limits, &request.limits)?;
    let row = state.runner.create_tenant(&request.name, &limits).await?;
    record(
        &state,
        caller.audit(
            &row.name,
            AuditAction::TenantCreated,
            row.name.clone(),
            json!({"limits": row.limits}),
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(tenant_json(&row))).into_response())
}

/// Every tenant.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "operators",
    responses((status = 200, description = "The tenants", body = Object)))]
pub async fn list_tenants(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let rows = state.runner.tenants().await?;
    json_ok(Value::Array(rows.iter().map(tenant_json).collect()))
}

/// One tenant with its limits, the defaults, its grants and packages.
#[utoipa::path(get, path = "/api/v1/tenants/{name}", tag = "operators",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "As `tenant show --json`", body = Object),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn show_tenant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let t = state.runner.tenant(&name).await?;
    let grants = state.runner.grants(&name).await?;
    let packages = state.runner.list_packages(Some(&name)).await?;
    json_ok(json!({
        "name": t.name,
        "created_at": fmt_ms(t.created_at),
        "limits": t.limits,
        "defaults": TenantLimits::default(),
        "grants": grants,
        "packages": packages.iter().map(package_json).collect::<Vec<_>>(),
    }))
}

/// Change some of a tenant's limits: the body maps limit names to values
/// (`null` for none), as `tenant set`.
#[utoipa::path(patch, path = "/api/v1/tenants/{name}", tag = "operators",
    params(("name" = String, Path)),
    request_body(content = Object, description = "e.g. {\"max_packages\": 10, \"max_package_bytes\": \"32M\"}"),
    responses(
        (status = 200, description = "The tenant", body = Object),
        (status = 400, description = "An unknown limit or a bad value", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn update_tenant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    request: Result<Json<Map<String, Value>>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let changes = json_body(request)?;
    let mut limits = state.runner.tenant(&name).await?.limits;
    apply(&mut limits, &changes)?;
    let row = state.runner.update_tenant(&name, &limits).await?;
    record(
        &state,
        caller.audit(
            &name,
            AuditAction::TenantUpdated,
            name.clone(),
            json!({"changed": changes, "limits": row.limits}),
        ),
    )
    .await;
    json_ok(tenant_json(&row))
}

/// `?force=true` on a tenant's deletion.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ForceQuery {
    /// Delete even with executions unfinished (they are cancelled).
    #[serde(default)]
    pub force: bool,
}

/// Delete a tenant with its packages, executions, grants and keys.
#[utoipa::path(delete, path = "/api/v1/tenants/{name}", tag = "operators",
    params(("name" = String, Path), ForceQuery),
    responses(
        (status = 200, description = "`{\"deleted\": NAME}`", body = Object),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn delete_tenant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    state.runner.delete_tenant(&name, q.force).await?;
    record(
        &state,
        caller.audit(&name, AuditAction::TenantDeleted, name.clone(), json!({})),
    )
    .await;
    json_ok(json!({"deleted": name}))
}

/// A tenant's grants.
#[utoipa::path(get, path = "/api/v1/tenants/{name}/grants", tag = "operators",
    params(("name" = String, Path)),
    responses((status = 200, description = "The grants", body = Object)))]
pub async fn list_grants(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    state.runner.tenant(&name).await?;
    json_ok(serde_json::to_value(state.runner.grants(&name).await?).unwrap_or_default())
}

/// What `POST` and `DELETE /api/v1/tenants/{name}/grants` take.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// Only this package of the tenant; default every package.
    #[serde(default)]
    pub package: String,
    /// `env`, `dir`, `http`, `wall_clock` or `random`.
    pub kind: String,
    /// The variable (env), the guest path (dir), the host (http); empty
    /// for wall_clock and random.
    #[serde(default)]
    pub name: String,
    /// The value (env) or the host directory (dir).
    #[serde(default)]
    pub value: String,
    /// For dir: read-write instead of read-only.
    #[serde(default)]
    pub writable: bool,
}

impl GrantRequest {
    fn into_grant(self, tenant: &str) -> ApiResult<Grant> {
        let kind = GrantKind::parse(&self.kind).ok_or_else(|| {
            ApiError::invalid("kind must be env, dir, http, wall_clock or random")
        })?;
        let value = if kind == GrantKind::Dir && !self.value.is_empty() {
            std::fs::canonicalize(&self.value)
                .map_err(|e| {
                    ApiError::invalid(format!(
                        "cannot use {} as a granted directory: {e}",
                        self.value
                    ))
                })?
                .display()
                .to_string()
        } else {
            self.value
        };
        Ok(Grant {
            tenant: tenant.to_string(),
            package: self.package,
            kind,
            name: self.name,
            value,
            writable: self.writable,
        })
    }
}

/// Grant a capability.
#[utoipa::path(post, path = "/api/v1/tenants/{name}/grants", tag = "operators",
    params(("name" = String, Path)),
    request_body = GrantRequest,
    responses(
        (status = 200, description = "`{\"granted\": true, \"grant\": {...}}`", body = Object),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn add_grant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    request: Result<Json<GrantRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let grant = json_body(request)?.into_grant(&name)?;
    state.runner.grant(&grant).await?;
    record(
        &state,
        caller.audit(
            &name,
            AuditAction::GrantAdded,
            format!("{} {}", grant.kind.as_str(), grant.name),
            serde_json::to_value(&grant).unwrap_or_default(),
        ),
    )
    .await;
    json_ok(json!({"granted": true, "grant": grant}))
}

/// Revoke a grant.
#[utoipa::path(delete, path = "/api/v1/tenants/{name}/grants", tag = "operators",
    params(("name" = String, Path)),
    request_body = GrantRequest,
    responses(
        (status = 200, description = "`{\"granted\": false, \"grant\": {...}}`", body = Object),
        (status = 404, description = "No such grant", body = ErrorBody),
    ))]
pub async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    request: Result<Json<GrantRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let grant = json_body(request)?.into_grant(&name)?;
    state
        .runner
        .revoke(&name, &grant.package, grant.kind, &grant.name)
        .await?;
    record(
        &state,
        caller.audit(
            &name,
            AuditAction::GrantRevoked,
            format!("{} {}", grant.kind.as_str(), grant.name),
            serde_json::to_value(&grant).unwrap_or_default(),
        ),
    )
    .await;
    json_ok(json!({"granted": false, "grant": grant}))
}

/// What `POST /api/v1/keys` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The tenant the key belongs to.
    pub tenant: String,
    /// A name for people, unique among the tenant's live keys.
    pub name: String,
    /// `tenant` (default) or `operator`.
    #[serde(default)]
    pub role: Option<String>,
    /// Seconds until it stops working; default never.
    pub expires_in_seconds: Option<u64>,
}

/// A key as JSON (never its secret or hash).
pub fn key_json(k: &ApiKeyRow) -> Value {
    json!({
        "id": k.id,
        "tenant": k.tenant,
        "name": k.name,
        "role": k.role,
        "created_at": fmt_ms(k.created_at),
        "expires_at": k.expires_at.map(fmt_ms),
        "revoked_at": k.revoked_at.map(fmt_ms),
    })
}

/// Make a key and store it: the row and the secret (shown once).
///
/// # Errors
/// An invalid name, an unknown tenant, a live key of that name.
pub async fn create_key(
    state: &AppState,
    tenant: &str,
    name: &str,
    role: ApiKeyRole,
    expires_in: Option<std::time::Duration>,
) -> ApiResult<(ApiKeyRow, String)> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "a key's name must be 1 to 64 printable characters, without spaces",
        ));
    }
    let key = generate_api_key().map_err(|e| ApiError::internal("cannot make a key", e))?;
    let now = now_ms();
    let row = ApiKeyRow {
        id: key.id.clone(),
        tenant: tenant.to_string(),
        name: name.to_string(),
        role,
        created_at: now,
        expires_at: expires_in.map(|d| now.saturating_add(d.as_millis() as i64)),
        revoked_at: None,
    };
    state.runner.store().create_api_key(&row, &key.hash).await?;
    Ok((row, key.secret))
}

/// Create an API key. The answer holds its secret under `secret`: the only
/// time it is shown.
#[utoipa::path(post, path = "/api/v1/keys", tag = "operators",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key, with `secret`", body = Object),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "A live key has that name", body = ErrorBody),
    ))]
pub async fn add_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    request: Result<Json<CreateKey>, JsonRejection>,
) -> ApiResult<Response> {
    caller.require_operator()?;
    let request = json_body(request)?;
    let role = match request.role.as_deref() {
        None => ApiKeyRole::Tenant,
        Some(r) => ApiKeyRole::parse(r)
            .ok_or_else(|| ApiError::invalid("role must be tenant or operator"))?,
    };
    let expires = request
        .expires_in_seconds
        .map(std::time::Duration::from_secs);
    let (row, secret) = create_key(&state, &request.tenant, &request.name, role, expires).await?;
    record(
        &state,
        caller.audit(
            &row.tenant,
            AuditAction::KeyCreated,
            row.id.clone(),
            json!({"name": row.name, "role": row.role, "expires_at": row.expires_at}),
        ),
    )
    .await;
    let mut v = key_json(&row);
    v["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `?tenant=` on the operator's listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OptionalTenant {
    /// Only this tenant's.
    pub tenant: Option<String>,
}

/// List API keys (never their secrets).
#[utoipa::path(get, path = "/api/v1/keys", tag = "operators",
    params(OptionalTenant),
    responses((status = 200, description = "The keys", body = Object)))]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<OptionalTenant>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let rows = state
        .runner
        .store()
        .list_api_keys(q.tenant.as_deref())
        .await?;
    json_ok(Value::Array(rows.iter().map(key_json).collect()))
}

/// Revoke an API key: it stops working on every host within a second.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "operators",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The revoked key", body = Object),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let row = state.runner.store().revoke_api_key(None, &id).await?;
    record(
        &state,
        caller.audit(
            &row.tenant,
            AuditAction::KeyRevoked,
            row.id.clone(),
            json!({"name": row.name}),
        ),
    )
    .await;
    json_ok(key_json(&row))
}

/// `GET /api/v1/audit`'s filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only changes to this tenant.
    pub tenant: Option<String>,
    /// Only entries older than this one (the `id` of the last entry of the
    /// previous page).
    pub before: Option<i64>,
    /// At most this many (1 to 1,000); default 100.
    pub limit: Option<i64>,
}

/// An audit entry as JSON.
pub fn audit_json(a: &culvert::AuditRow) -> Value {
    json!({
        "id": a.id,
        "at": fmt_ms(a.at),
        "key_id": a.key_id,
        "key_name": a.key_name,
        "tenant": a.tenant,
        "action": a.action,
        "subject": a.subject,
        "detail": a.detail,
    })
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "operators",
    params(AuditQuery),
    responses((status = 200, description = "The entries, newest first", body = Object)))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_operator()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 1000"));
    }
    let rows = state
        .runner
        .store()
        .audit_log(q.tenant.as_deref(), q.before, limit)
        .await?;
    json_ok(Value::Array(rows.iter().map(audit_json).collect()))
}
