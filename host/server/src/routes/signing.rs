//! `/api/v1/signing-keys`: the package signing keys a tenant trusts (list,
//! trust, untrust). Operators manage every tenant's (`?tenant=`); a tenant
//! key lists its own tenant's, and trusts or untrusts them only when the
//! operator set the tenant's `allow_tenant_key_trust`.

use super::json_body;
use super::packages::record;
use super::{TenantQuery, json_ok};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::views::trusted_key_json;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use culvert::{AuditAction, PublicKeyFile};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// `POST /api/v1/signing-keys`: trust a key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustRequest {
    /// The name to trust it under (1 to 64 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// The public key file (`NAME.pub` from `culvert key generate`), as
    /// its JSON object.
    #[schema(value_type = Object)]
    pub public_key: PublicKeyFile,
}

/// Who the key row names as having made the change: `operator` (tenants
/// list their keys, and see no operator key's name), or the tenant key.
/// The audit log names the key either way.
fn actor(caller: &Caller) -> String {
    if caller.is_operator() {
        "operator".into()
    } else {
        format!("{} ({})", caller.key_name, caller.key_id)
    }
}

/// The tenant a change acts on: an operator's `?tenant=` (default its
/// own), or a tenant key's own tenant when its operator allows it.
async fn managed_tenant(
    state: &AppState,
    caller: &Caller,
    asked: Option<&str>,
) -> ApiResult<String> {
    let tenant = caller.tenant_for(asked)?;
    if caller.is_operator() {
        return Ok(tenant);
    }
    let limits = state.runner.tenant(&tenant).await?.limits;
    if limits.allow_tenant_key_trust {
        Ok(tenant)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "tenant '{tenant}' does not manage its own signing keys: an operator trusts them (or sets allow_tenant_key_trust=true for it)"
            ),
        ))
    }
}

/// List signing keys: the caller's tenant's, `?tenant=`'s, or (operators,
/// no `tenant`) every tenant's; untrusted ones included.
#[utoipa::path(get, path = "/api/v1/signing-keys", tag = "signing",
    params(TenantQuery),
    responses((status = 200, description = "What `key list --json` prints", body = Object)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let scope = caller.scope(q.tenant.as_deref())?;
    let keys = state.runner.trusted_keys(scope.as_deref()).await?;
    json_ok(Value::Array(keys.iter().map(trusted_key_json).collect()))
}

/// Trust a public key for a tenant: packages it signs may be added where
/// the tenant requires signatures.
#[utoipa::path(post, path = "/api/v1/signing-keys", tag = "signing",
    params(TenantQuery),
    request_body = TrustRequest,
    responses(
        (status = 201, description = "The trusted key (as `key trust --json`)", body = Object),
        (status = 403, description = "A tenant key, and the operator does not let the tenant manage its keys", body = ErrorBody),
        (status = 409, description = "Another trusted key has this name", body = ErrorBody),
        (status = 422, description = "Not a public key file", body = ErrorBody),
    ))]
pub async fn trust(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    request: Result<Json<TrustRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let request = json_body(request)?;
    let tenant = managed_tenant(&state, &caller, q.tenant.as_deref()).await?;
    let key = state
        .runner
        .trust_key(&tenant, &request.name, &request.public_key, &actor(&caller))
        .await?;
    record(
        &state,
        caller.audit(
            &tenant,
            AuditAction::SigningKeyTrusted,
            key.key_id.clone(),
            json!({"name": key.name}),
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(trusted_key_json(&key))).into_response())
}

/// Untrust a key (by key id or name): its packages are marked, and stop
/// loading where the tenant's `on_untrust` is `disable`.
#[utoipa::path(delete, path = "/api/v1/signing-keys/{key}", tag = "signing",
    params(("key" = String, Path, description = "A key id or a trusted key's name"), TenantQuery),
    responses(
        (status = 200, description = "The untrusted key (as `key untrust --json`)", body = Object),
        (status = 404, description = "The tenant trusts no such key", body = ErrorBody),
    ))]
pub async fn untrust(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let tenant = managed_tenant(&state, &caller, q.tenant.as_deref()).await?;
    let row = state
        .runner
        .untrust_key(&tenant, &key, &actor(&caller))
        .await?;
    record(
        &state,
        caller.audit(
            &tenant,
            AuditAction::SigningKeyUntrusted,
            row.key_id.clone(),
            json!({"name": row.name}),
        ),
    )
    .await;
    json_ok(trusted_key_json(&row))
}
