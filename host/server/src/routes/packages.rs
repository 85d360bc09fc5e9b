//! `/api/v1/packages`: upload, list, show, remove and inspect packages.

use super::{TenantQuery, json_ok};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::views::{inspect_json, package_detail_json, package_json};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use culvert::{AuditAction, PackageRow};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// `?version=` on a package route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct VersionQuery {
    /// Act on another tenant (operator keys only).
    pub tenant: Option<String>,
    /// One version; default the newest registered.
    pub version: Option<String>,
}

/// One of the host's upload slots, or 429.
fn upload_slot(state: &AppState) -> ApiResult<OwnedSemaphorePermit> {
    state.uploads.clone().try_acquire_owned().map_err(|_| {
        ApiError::rate_limited(
            format!(
                "this host is handling {} uploads already: retry shortly",
                state.config.max_concurrent_uploads
            ),
            1,
        )
    })
}

/// Read a package body of at most `cap` bytes, within the upload timeout:
/// 413 beyond the cap (refused from `Content-Length` before reading when
/// it says so), 408 when the client is too slow.
async fn read_package_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    cap: u64,
) -> ApiResult<Vec<u8>> {
    let too_large = |n: Option<u64>| {
        ApiError::too_large(format!(
            "the package is {}over this tenant's max_package_bytes limit of {cap} bytes",
            n.map(|n| format!("{n} bytes, ")).unwrap_or_default()
        ))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > cap
    {
        return Err(too_large(Some(len)));
    }
    let limited = http_body_util::Limited::new(body, cap as usize);
    match tokio::time::timeout(state.config.upload_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the upload did not arrive within {} s",
                state.config.upload_timeout.as_secs()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(None)),
        Ok(Err(e)) => Err(ApiError::invalid(format!("cannot read the body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
    }
}

/// The header that carries a package's detached signature: the bytes of
/// its `FILE.sig`, base64 (standard alphabet, padded).
pub const SIGNATURE_HEADER: &str = "x-culvert-signature";

/// The signature file in [`SIGNATURE_HEADER`], if sent.
fn signature_header(headers: &HeaderMap) -> ApiResult<Option<Vec<u8>>> {
    use base64::Engine as _;
    let Some(value) = headers.get(SIGNATURE_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed_signature",
            format!(
                "the {SIGNATURE_HEADER} header is the package's FILE.sig in base64, at most {} bytes decoded",
                culvert::MAX_SIGNATURE_FILE_BYTES
            ),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.len() > culvert::MAX_SIGNATURE_FILE_BYTES * 4 / 3 + 4 {
        return Err(bad());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Some)
        .map_err(|_| bad())
}

/// Register a package: the body is the `.wasm` component; its detached
/// signature, if any, is the `X-Culvert-Signature` header.
#[utoipa::path(post, path = "/api/v1/packages", tag = "packages",
    params(TenantQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "Registered", body = Object),
        (status = 200, description = "The same bytes were registered already", body = Object),
        (status = 403, description = "The tenant requires a signature by a key it trusts: signature_missing, signature_untrusted_key, signature_revoked_key", body = ErrorBody),
        (status = 413, description = "Over the tenant's max_package_bytes", body = ErrorBody),
        (status = 422, description = "Not a valid package (the typed metadata error), or a signature that does not hold (malformed_signature, signature_hash_mismatch, bad_signature, signature_replayed)", body = ErrorBody),
    ))]
pub async fn add(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let tenant = caller.tenant_for(q.tenant.as_deref())?;
    let limits = state.runner.tenant(&tenant).await?.limits;
    let _slot = upload_slot(&state)?;
    let signature = signature_header(&headers)?;
    let bytes = read_package_body(&state, &headers, body, limits.max_package_bytes).await?;
    let r = state
        .runner
        .register_signed_package(&tenant, &bytes, signature.as_deref())
        .await?;
    if r.created || r.signature_key_id.is_some() {
        record(
            &state,
            caller.audit(
                &tenant,
                AuditAction::PackageAdded,
                r.label(),
                json!({
                    "content_hash": r.content_hash,
                    "size": bytes.len(),
                    "signature_key_id": r.signature_key_id,
                    "signed_at": r.signed_at,
                }),
            ),
        )
        .await;
    }
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(r)).into_response())
}

/// Validate a package and describe it without registering it. Where the
/// tenant requires signatures, the upload needs one (as for `add`).
#[utoipa::path(post, path = "/api/v1/packages/inspect", tag = "packages",
    params(TenantQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 200, description = "What `package inspect --json` prints", body = Object),
        (status = 422, description = "Not a valid package", body = ErrorBody),
    ))]
pub async fn inspect(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let tenant = caller.tenant_for(q.tenant.as_deref())?;
    let limits = state.runner.tenant(&tenant).await?.limits;
    let _slot = upload_slot(&state)?;
    let signature = signature_header(&headers)?;
    let bytes = read_package_body(&state, &headers, body, limits.max_package_bytes).await?;
    // Where signatures are required, nothing unsigned is compiled here
    // either.
    state
        .runner
        .check_signature(&tenant, &limits, &bytes, signature.as_deref())
        .await?;
    let loader = state.runner.loader();
    let pkg = loader
        .load(&bytes)
        .await
        .map_err(|e| ApiError::from(culvert::Error::Load(e)))?;
    json_ok(inspect_json(&pkg, loader.engine()))
}

/// List packages: the caller's tenant's, `?tenant=`'s, or (operators, no
/// `tenant`) every tenant's.
#[utoipa::path(get, path = "/api/v1/packages", tag = "packages",
    params(TenantQuery),
    responses((status = 200, description = "What `package list --json` prints", body = Object)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let scope = caller.scope(q.tenant.as_deref())?;
    let rows = state.runner.list_packages(scope.as_deref()).await?;
    json_ok(Value::Array(rows.iter().map(package_json).collect()))
}

/// `NAME` or `NAME@VERSION`, split.
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    }
}

/// The newest registered row of `name` (or `version`) in `tenant`.
fn pick<'a>(rows: &'a [PackageRow], name: &str, version: Option<&str>) -> Option<&'a PackageRow> {
    rows.iter()
        .filter(|p| p.name == name && version.is_none_or(|v| p.version == v))
        .max_by_key(|p| p.registered_at)
}

/// Show one package with its workflows, their tasks and DAG.
#[utoipa::path(get, path = "/api/v1/packages/{name}", tag = "packages",
    params(("name" = String, Path, description = "`NAME` or `NAME@VERSION`"), VersionQuery),
    responses(
        (status = 200, description = "The package and its metadata", body = Object),
        (status = 404, description = "No such package in this tenant", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(spec): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let tenant = caller.tenant_for(q.tenant.as_deref())?;
    let (name, at_version) = split_spec(&spec);
    let version = q.version.as_deref().or(at_version);
    let rows = state.runner.list_packages(Some(&tenant)).await?;
    let row = pick(&rows, name, version).ok_or_else(|| {
        ApiError::not_found(format!(
            "package '{}' not found in tenant '{tenant}'",
            culvert::escape_guest_text(&spec)
        ))
    })?;
    json_ok(package_detail_json(row))
}

/// Remove every version of a package, or `NAME@VERSION`.
#[utoipa::path(delete, path = "/api/v1/packages/{name}", tag = "packages",
    params(("name" = String, Path, description = "`NAME` or `NAME@VERSION`"), TenantQuery),
    responses(
        (status = 200, description = "What was removed (as `package remove --json`)", body = Object),
        (status = 404, description = "No such package in this tenant", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(spec): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Value>> {
    let tenant = caller.tenant_for(q.tenant.as_deref())?;
    let (name, version) = split_spec(&spec);
    let removed = state.runner.remove_package(&tenant, name, version).await?;
    for p in &removed {
        record(
            &state,
            caller.audit(
                &tenant,
                AuditAction::PackageRemoved,
                format!("{}@{}", p.name, p.version),
                json!({"content_hash": p.content_hash}),
            ),
        )
        .await;
    }
    json_ok(Value::Array(removed.iter().map(package_json).collect()))
}

/// Append to the audit log; a failure is logged, not answered (the change
/// was made).
pub(crate) async fn record(state: &AppState, entry: culvert::AuditEntry) {
    if let Err(e) = state.runner.store().record_audit(&entry).await {
        tracing::error!(error = %e, action = entry.action.as_str(), "cannot record an audit entry");
    }
}
