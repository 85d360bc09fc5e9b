//! The OpenAPI 3.1 document, generated from the handlers' annotations
//! (utoipa) and served at `/api/v1/openapi.json`.

use crate::auth::Caller;
use crate::routes::{
    admin, executions, health, logs, packages, schedules, signing, status, stream,
};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Every route, its parameters, bodies and answers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Culvert API",
        description = "Durable workflows whose tasks run as sandboxed WebAssembly components. Send `Authorization: Bearer <key>`; a tenant key reaches its own tenant, an operator key every tenant (with `?tenant=NAME`) and the operator routes. Errors are `{\"error\": {\"kind\", \"message\"}}`."
    ),
    paths(
        packages::add, packages::list, packages::show, packages::remove, packages::inspect,
        executions::start, executions::list, executions::show, executions::events,
        executions::cancel, executions::retry, stream::stream, logs::logs,
        schedules::list, schedules::create, schedules::show, schedules::pause,
        schedules::resume, schedules::delete, schedules::trigger,
        admin::create_tenant, admin::list_tenants, admin::show_tenant, admin::update_tenant,
        admin::delete_tenant, admin::list_grants, admin::add_grant, admin::revoke_grant,
        admin::add_key, admin::list_keys, admin::revoke_key, admin::audit,
        signing::list, signing::trust, signing::untrust,
        health::healthz, health::readyz, health::metrics, status::status, openapi_json,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail, schedules::ScheduleRequest, signing::TrustRequest)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "packages", description = "Register, list, show, remove and inspect packages"),
        (name = "executions", description = "Start, list, show, follow, cancel and retry executions; their events and logs"),
        (name = "schedules", description = "Create, list, show, pause, resume, delete and trigger schedules"),
        (name = "signing", description = "The package signing keys a tenant trusts: operators, or a tenant key where its operator allows"),
        (name = "operators", description = "Operator keys only: tenants, limits, grants, API keys, the audit log"),
        (name = "health", description = "Liveness, readiness, metrics and status"),
        (name = "document", description = "This OpenAPI document"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-key scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cvk_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

/// This document. Any valid key reads it (as every route but the health
/// checks needs one); it lists the operator routes too, which a tenant key
/// is answered 404 on.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        (status = 401, description = "No valid key", body = crate::error::ErrorBody),
    ))]
pub async fn openapi_json(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
