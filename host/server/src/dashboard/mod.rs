//! The web dashboard under `/ui`, served by `culvert serve` beside the API:
//! server-rendered pages (maud) over the same runner and store the API
//! uses, with one small script for live updates and one stylesheet, both
//! compiled into the binary (no CDN, no external font, no build step).
//!
//! - `session.rs`: the signed session cookie and CSRF tokens;
//! - `dag.rs`: a workflow's DAG as SVG;
//! - `pages.rs`: the markup;
//! - this file: the routes, who is looking, and the headers every page
//!   carries (a Content-Security-Policy without inline script or other
//!   origins, `nosniff`, no framing, no caching of authenticated pages).
//!
//! Pages act for a session's key exactly as the API does for that key: a
//! tenant key sees its tenant only (another tenant's execution is "not
//! found"), an operator's key picks a tenant with `?tenant=`.

mod dag;
mod pages;
pub mod session;

use crate::auth::Caller;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::routes::TenantQuery;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use culvert::{AuditAction, ExecutionFilter, ExecutionStatus, api_key_id, now_ms, verify_api_key};
use maud::Markup;
use pages::{Filters, ListItem, TaskView, Usage, Viewer};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use session::Signer;
use std::sync::Arc;
use tower_http::timeout::TimeoutLayer;
use uuid::Uuid;

/// The stylesheet.
const CSS: &str = include_str!("../../assets/dashboard.css");
/// The script: live lists and DAGs, nothing else.
const JS: &str = include_str!("../../assets/dashboard.js");

/// Every page's Content-Security-Policy: scripts and styles from this
/// origin only, no inline script, no plugin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Executions the list shows.
const LIST_LIMIT: i64 = 100;

/// The dashboard's routes (to merge into the server's router): pages
/// and forms under the request timeout, the event stream after it (it
/// lasts until its execution finishes).
pub fn router(config: &ServerConfig) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/executions") }))
        .route("/ui", get(|| async { Redirect::to("/ui/executions") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/executions") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/executions", get(executions).post(start))
        .route("/ui/executions/rows", get(execution_rows))
        .route("/ui/executions/{id}", get(execution))
        .route("/ui/executions/{id}/live", get(execution_live))
        .route("/ui/executions/{id}/cancel", post(cancel))
        .route("/ui/executions/{id}/tasks/{task}", get(task))
        .route("/ui/packages", get(packages))
        .route("/ui/schedules", get(schedules))
        .route("/ui/schedules/{id}/{action}", post(change_schedule))
        .route("/ui/usage", get(usage))
        .route("/ui/assets/dashboard.css", get(css))
        .route("/ui/assets/dashboard.js", get(js))
        .layer(DefaultBodyLimit::max(config.max_json_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .route("/ui/executions/{id}/stream", get(stream))
        .layer(axum::middleware::from_fn(headers))
}

/// The headers every dashboard answer carries; and a refusal of a
/// cross-site form post (`Sec-Fetch-Site`), besides the CSRF token.
async fn headers(request: axum::extract::Request, next: Next) -> Response {
    let cross_site = request.method() == Method::POST
        && request
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v == "cross-site");
    let asset = request.uri().path().starts_with("/ui/assets/");
    let mut response = if cross_site {
        UiError(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a form of another site cannot act here",
        ))
        .into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset {
            "public, max-age=3600"
        } else {
            "no-store"
        }),
    );
    response
}

/// An error, as a page.
struct UiError(ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<culvert::Error> for UiError {
    fn from(e: culvert::Error) -> Self {
        UiError(e.into())
    }
}

impl From<culvert::StoreError> for UiError {
    fn from(e: culvert::StoreError) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let mut r = (status, html(pages::error(status.as_u16(), &self.0.message))).into_response();
        if let Some(s) = self.0.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type UiResult<T> = Result<T, UiError>;

/// Markup as an HTML answer.
fn html(m: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

/// The fleet's session signer, its secret read from (or first written
/// to) the database.
async fn signer(state: &AppState) -> Result<&Signer, ApiError> {
    state
        .dashboard
        .get_or_try_init(|| async {
            let secret = state
                .runner
                .store()
                .shared_secret(session::SECRET_NAME)
                .await?;
            let secret: [u8; 32] = secret
                .try_into()
                .map_err(|_| ApiError::internal("the dashboard's secret", "it is not 32 bytes"))?;
            Ok::<_, ApiError>(Signer::new(secret))
        })
        .await
}

/// A logged-in viewer: the key behind the session, the session cookie and
/// its CSRF token.
struct Session {
    caller: Caller,
    cookie: String,
    csrf: String,
}

/// Not logged in (or the session ended): to the login page.
struct LoginFirst;

impl IntoResponse for LoginFirst {
    fn into_response(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let signer = signer(state)
            .await
            .map_err(|e| UiError(e).into_response())?;
        let now = now_ms();
        let cookie =
            session::from_headers(&parts.headers).ok_or_else(|| LoginFirst.into_response())?;
        let key_id = signer
            .verify(&cookie, now)
            .ok_or_else(|| LoginFirst.into_response())?;
        // The key must still be live: a revoked key's sessions end with it.
        let (row, _) = state
            .keys
            .lookup(state, &key_id)
            .await
            .map_err(|e| UiError(e).into_response())?
            .filter(|(row, _)| row.is_live(now))
            .ok_or_else(|| LoginFirst.into_response())?;
        state
            .keys
            .charge(&row.id)
            .map_err(|e| UiError(e).into_response())?;
        let csrf = signer.csrf(&cookie);
        Ok(Session {
            caller: Caller {
                key_id: row.id,
                key_name: row.name,
                tenant: row.tenant,
                role: row.role,
            },
            cookie,
            csrf,
        })
    }
}

impl Session {
    /// Refuse a form without this session's CSRF token.
    async fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), ApiError> {
        if signer(state).await?.check_csrf(&self.cookie, token) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this form is stale or was not sent from this dashboard: reload the page and try again",
            ))
        }
    }
}

/// The tenants an operator may switch between (empty for a tenant key).
async fn tenant_names(state: &AppState, s: &Session) -> Result<Vec<String>, ApiError> {
    if !s.caller.is_operator() {
        return Ok(Vec::new());
    }
    Ok(state
        .runner
        .tenants()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect())
}

/// The viewer of a page for `tenant`.
fn viewer<'a>(s: &'a Session, tenant: &'a str, tenants: &'a [String]) -> Viewer<'a> {
    Viewer {
        key_name: &s.caller.key_name,
        tenant,
        operator: s.caller.is_operator(),
        tenants,
        csrf: &s.csrf,
    }
}

async fn login_page() -> Response {
    html(pages::login(None))
}

/// The login form.
#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

/// Check a pasted key; on success, a session cookie.
async fn login(
    State(state): State<Arc<AppState>>,
    Form(form): Form<LoginForm>,
) -> UiResult<Response> {
    let secret = form.key.trim();
    let refused = || {
        (
            StatusCode::UNAUTHORIZED,
            html(pages::login(Some(
                "That key is not valid: it is wrong, expired or revoked. Paste the whole key, starting with cvk_.",
            ))),
        )
            .into_response()
    };
    let Some(id) = api_key_id(secret) else {
        return Ok(refused());
    };
    let Some((row, hash)) = state.keys.lookup(&state, id).await? else {
        return Ok(refused());
    };
    let now = now_ms();
    if !verify_api_key(secret, &hash) || !row.is_live(now) {
        return Ok(refused());
    }
    let cookie = signer(&state).await?.issue(&row.id, now);
    let mut r = Redirect::to("/ui/executions").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(&cookie)).expect("an ASCII cookie"),
    );
    Ok(r)
}

/// A form that only carries the CSRF token.
#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<Arc<AppState>>,
    s: Session,
    Form(form): Form<CsrfForm>,
) -> UiResult<Response> {
    s.check_csrf(&state, &form.csrf).await?;
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie()).expect("an ASCII cookie"),
    );
    Ok(r)
}

/// The executions list's query.
#[derive(Deserialize, Default)]
struct ListQuery {
    tenant: Option<String>,
    status: Option<String>,
    workflow: Option<String>,
    since: Option<String>,
}

impl ListQuery {
    fn filters(&self) -> Filters {
        let some = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Filters {
            status: some(&self.status),
            workflow: some(&self.workflow),
            since: some(&self.since),
        }
    }
}

/// The executions a list shows, with each failed one's failed task.
async fn list_items(
    state: &AppState,
    tenant: &str,
    filters: &Filters,
) -> Result<Vec<ListItem>, ApiError> {
    let status = match filters.status.as_deref() {
        None => None,
        Some(s) => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown status '{}': use pending, running, completed, failed or cancelled",
                culvert::escape_guest_text(s)
            ))
        })?),
    };
    let since_ms = match filters.since.as_deref() {
        None => None,
        Some("1h") => Some(3_600_000),
        Some("24h") => Some(86_400_000),
        Some("7d") => Some(7 * 86_400_000),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unknown period '{}': use 1h, 24h or 7d",
                culvert::escape_guest_text(other)
            )));
        }
    };
    let rows = state
        .runner
        .store()
        .list_executions(ExecutionFilter {
            tenant: Some(tenant),
            status,
            workflow: filters.workflow.as_deref(),
            limit: Some(LIST_LIMIT),
            ..ExecutionFilter::default()
        })
        .await?;
    let cutoff = since_ms.map(|d| now_ms() - d);
    let mut items = Vec::new();
    for row in rows {
        if cutoff.is_some_and(|c| row.created_at < c) {
            break;
        }
        let failed_task = if row.status == ExecutionStatus::Failed {
            state.runner.store().failed_task(row.id).await?
        } else {
            None
        };
        items.push(ListItem { row, failed_task });
    }
    Ok(items)
}

/// The tenant's workflows, as `package::workflow`, newest package first.
async fn workflow_names(state: &AppState, tenant: &str) -> Result<Vec<String>, ApiError> {
    let mut names = Vec::new();
    for p in state.runner.list_packages(Some(tenant)).await?.iter().rev() {
        for w in &p.metadata.workflows {
            let name = format!("{}::{}", p.name, w.name);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

async fn executions(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(q): Query<ListQuery>,
) -> UiResult<Response> {
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let tenants = tenant_names(&state, &s).await?;
    let filters = q.filters();
    let items = list_items(&state, &tenant, &filters).await?;
    let workflows = workflow_names(&state, &tenant).await?;
    let v = viewer(&s, &tenant, &tenants);
    Ok(html(pages::executions(
        &v,
        &filters,
        &workflows,
        &items,
        None,
        "{}",
        now_ms(),
    )))
}

async fn execution_rows(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(q): Query<ListQuery>,
) -> UiResult<Response> {
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let items = list_items(&state, &tenant, &q.filters()).await?;
    let v = viewer(&s, &tenant, &[]);
    Ok(html(pages::execution_rows(&v, &items, now_ms())))
}

/// The start form.
#[derive(Deserialize)]
struct StartForm {
    csrf: String,
    workflow: String,
    context: String,
}

async fn start(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(q): Query<TenantQuery>,
    Form(form): Form<StartForm>,
) -> UiResult<Response> {
    s.check_csrf(&state, &form.csrf).await?;
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let context: Result<Map<String, Value>, String> =
        match serde_json::from_str::<Value>(if form.context.trim().is_empty() {
            "{}"
        } else {
            &form.context
        }) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("The context must be a JSON object, such as {\"n\": 3}.".into()),
            Err(e) => Err(format!("The context is not valid JSON: {e}.")),
        };
    let message = match context {
        Err(e) => e,
        Ok(context) => {
            let audit = s
                .caller
                .audit(&tenant, AuditAction::ExecutionStarted, "", json!({}));
            let started = state
                .runner
                .start_execution_once(&tenant, &form.workflow, None, context, None, Some(&audit))
                .await;
            match started {
                Ok((row, _)) => {
                    let to = viewer(&s, &tenant, &[]).href(&format!("/ui/executions/{}", row.id));
                    return Ok(Redirect::to(&to).into_response());
                }
                Err(e) => {
                    // A refusal (unknown workflow, quota, too large) is
                    // shown by the form; a failure of the server is not.
                    let e = ApiError::from(e);
                    if e.status.is_server_error() {
                        return Err(UiError(e));
                    }
                    e.message
                }
            }
        }
    };
    let tenants = tenant_names(&state, &s).await?;
    let filters = Filters::default();
    let items = list_items(&state, &tenant, &filters).await?;
    let workflows = workflow_names(&state, &tenant).await?;
    let v = viewer(&s, &tenant, &tenants);
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        html(pages::executions(
            &v,
            &filters,
            &workflows,
            &items,
            Some(&message),
            &form.context,
            now_ms(),
        )),
    )
        .into_response())
}

/// An execution the session may see (another tenant's is "not found"),
/// with its workflow's DAG and its tasks.
async fn load_execution(
    state: &AppState,
    s: &Session,
    asked: Option<&str>,
    id: Uuid,
) -> Result<
    (
        String,
        culvert::ExecutionRow,
        Option<culvert::WorkflowMeta>,
        Vec<culvert::TaskRow>,
        Vec<culvert::EventRow>,
    ),
    ApiError,
> {
    let tenant = s.caller.tenant_for(asked)?;
    let (row, tasks, events) = state.runner.execution(&tenant, id).await?;
    let plan = state.runner.store().execution_plan(id).await.ok();
    Ok((tenant, row, plan.map(|p| p.workflow), tasks, events))
}

async fn execution(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> UiResult<Response> {
    let (tenant, row, wf, tasks, _) = load_execution(&state, &s, q.tenant.as_deref(), id).await?;
    let tenants = tenant_names(&state, &s).await?;
    let v = viewer(&s, &tenant, &tenants);
    Ok(html(pages::execution(
        &v,
        &row,
        wf.as_ref(),
        &tasks,
        now_ms(),
    )))
}

async fn execution_live(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
) -> UiResult<Response> {
    let (tenant, row, wf, tasks, _) = load_execution(&state, &s, q.tenant.as_deref(), id).await?;
    let v = viewer(&s, &tenant, &[]);
    Ok(html(pages::execution_live(
        &v,
        &row,
        wf.as_ref(),
        &tasks,
        now_ms(),
    )))
}

/// The execution's events as Server-Sent Events: the API's stream, for
/// the session's key.
async fn stream(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> UiResult<Response> {
    Ok(
        crate::routes::stream::stream(State(state), s.caller, Path(id), Query(q), headers)
            .await?
            .into_response(),
    )
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
    Form(form): Form<CsrfForm>,
) -> UiResult<Response> {
    s.check_csrf(&state, &form.csrf).await?;
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let back = viewer(&s, &tenant, &[]).href(&format!("/ui/executions/{id}"));
    let _cancelled =
        crate::routes::executions::cancel(State(state), s.caller, Path(id), Query(q)).await?;
    Ok(Redirect::to(&back).into_response())
}

async fn task(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path((id, task_id)): Path<(Uuid, String)>,
    Query(q): Query<TenantQuery>,
) -> UiResult<Response> {
    let (tenant, row, wf, tasks, events) =
        load_execution(&state, &s, q.tenant.as_deref(), id).await?;
    let task = tasks.iter().find(|t| t.task_id == task_id).ok_or_else(|| {
        ApiError::not_found(format!(
            "execution {id} has no task '{}'",
            culvert::escape_guest_text(&task_id)
        ))
    })?;
    let meta = wf
        .as_ref()
        .and_then(|w| w.tasks.iter().find(|t| t.id == task_id));
    let trigger = match meta.and_then(|m| m.trigger.as_ref()) {
        Some(rule) => rule.to_string(),
        None if meta.is_some_and(|m| m.dependencies.is_empty()) => {
            "always (it has no dependency)".to_string()
        }
        None => "every dependency completed (the default rule)".to_string(),
    };
    let logs = state.runner.logs(&tenant, id, Some(&task_id), None).await?;
    let input = state.runner.store().task_input(id, &task_id).await?;
    let view = TaskView {
        task,
        description: meta.map(|m| m.description.as_str()).unwrap_or(""),
        trigger,
        dependencies: meta.map(|m| m.dependencies.as_slice()).unwrap_or(&[]),
        input,
        events: events
            .iter()
            .filter(|e| e.task_id.as_deref() == Some(task_id.as_str()))
            .collect(),
        logs: &logs,
    };
    let tenants = tenant_names(&state, &s).await?;
    let v = viewer(&s, &tenant, &tenants);
    Ok(html(pages::task(&v, &row, &view)))
}

async fn packages(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(q): Query<TenantQuery>,
) -> UiResult<Response> {
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let packages = state.runner.list_packages(Some(&tenant)).await?;
    let grants = state.runner.grants(&tenant).await?;
    let tenants = tenant_names(&state, &s).await?;
    let v = viewer(&s, &tenant, &tenants);
    Ok(html(pages::packages(&v, &packages, &grants)))
}

async fn schedules(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(q): Query<TenantQuery>,
) -> UiResult<Response> {
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let rows = state.runner.schedules(Some(&tenant)).await?;
    let tenants = tenant_names(&state, &s).await?;
    let v = viewer(&s, &tenant, &tenants);
    Ok(html(pages::schedules(&v, &rows)))
}

/// Pause or resume (`action`) through the API's handler (its tenant check
/// and audit entry), then back to the list.
async fn change_schedule(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path((id, action)): Path<(Uuid, String)>,
    Query(q): Query<TenantQuery>,
    Form(form): Form<CsrfForm>,
) -> UiResult<Response> {
    s.check_csrf(&state, &form.csrf).await?;
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let back = viewer(&s, &tenant, &[]).href("/ui/schedules");
    let (state, caller, id, q) = (State(state), s.caller, Path(id), Query(q));
    let _changed = match action.as_str() {
        "pause" => crate::routes::schedules::pause(state, caller, id, q).await?,
        "resume" => crate::routes::schedules::resume(state, caller, id, q).await?,
        _ => return Err(ApiError::not_found("no such route").into()),
    };
    Ok(Redirect::to(&back).into_response())
}

async fn usage(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(q): Query<TenantQuery>,
) -> UiResult<Response> {
    let tenant = s.caller.tenant_for(q.tenant.as_deref())?;
    let store = state.runner.store();
    let counts = store.fleet_counts().await?;
    // An operator sees every tenant, and the hosts; a tenant its own.
    let shown = if s.caller.is_operator() {
        state.runner.tenants().await?
    } else {
        vec![state.runner.tenant(&tenant).await?]
    };
    // Every tenant's packages for an operator; a tenant's own otherwise.
    let scope = (!s.caller.is_operator()).then_some(tenant.as_str());
    let packages = state.runner.list_packages(scope).await?;
    let live = store.live_hosts(now_ms() - 10_000).await?;
    // What each host's CPU ledger reported with its last heartbeat.
    let cpu = |tenant: &str| -> f64 {
        live.iter()
            .filter_map(|h| h.status["cpu_in_use"][tenant].as_f64())
            .fold(0.0, |sum, cores| sum + cores)
    };
    let usage: Vec<Usage> = shown
        .into_iter()
        .map(|t| Usage {
            running_tasks: counts
                .tasks
                .iter()
                .find(|c| c.tenant == t.name)
                .map_or(0, |c| c.running),
            queued: counts
                .executions
                .iter()
                .find(|c| c.tenant == t.name)
                .map_or(0, |c| c.pending + c.running),
            packages: packages.iter().filter(|p| p.tenant == t.name).count() as u64,
            cpu_cores: cpu(&t.name),
            tenant: t,
        })
        .collect();
    let hosts = if s.caller.is_operator() {
        Some(
            live.iter()
                .map(|h| serde_json::to_value(h).unwrap_or(Value::Null))
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let tenants = tenant_names(&state, &s).await?;
    let v = viewer(&s, &tenant, &tenants);
    Ok(html(pages::usage(&v, &usage, hosts.as_deref())))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}
