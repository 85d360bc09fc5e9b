//! The dashboard's markup, server-rendered with maud: every value is
//! escaped by the template (maud escapes whatever it interpolates, unless
//! wrapped in `PreEscaped`, which this module never does with data).
//!
//! Each page is semantic HTML (header, nav, main, tables with headers,
//! labelled forms) that works without script; `dashboard.js` only keeps
//! lists and DAGs current.

use super::dag;
use crate::views::fmt_ms;
use culvert::{
    AttemptLogs, EventRow, ExecutionRow, Grant, PackageRow, ScheduleRow, TaskRow, TenantRow,
    WorkflowMeta,
};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// Who is looking, as the pages need it.
pub struct Viewer<'a> {
    /// The key's name.
    pub key_name: &'a str,
    /// The tenant the page shows.
    pub tenant: &'a str,
    /// Whether the key is an operator's.
    pub operator: bool,
    /// The tenants an operator may switch to.
    pub tenants: &'a [String],
    /// The CSRF token forms carry.
    pub csrf: &'a str,
}

impl Viewer<'_> {
    /// `path` on this tenant: an operator's links name it.
    pub fn href(&self, path: &str) -> String {
        if self.operator {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}tenant={}", urlencode(self.tenant))
        } else {
            path.to_string()
        }
    }
}

/// `s` for a URL's query or path segment.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A page around `body`.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Culvert" }
                link rel="stylesheet" href="/ui/assets/dashboard.css";
                script src="/ui/assets/dashboard.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/executions" { "Culvert" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            a href=(v.href("/ui/executions")) { "Executions" }
                            a href=(v.href("/ui/packages")) { "Packages" }
                            a href=(v.href("/ui/schedules")) { "Schedules" }
                            a href=(v.href("/ui/usage")) { "Usage" }
                        }
                        @if v.operator {
                            form.switch method="get" action="/ui/executions" {
                                label for="tenant-switch" { "Tenant" }
                                select #tenant-switch name="tenant" {
                                    @for t in v.tenants {
                                        option value=(t) selected[t.as_str() == v.tenant] { (t) }
                                    }
                                }
                                button type="submit" { "Switch" }
                            }
                        } @else {
                            span.tenant { "Tenant " strong { (v.tenant) } }
                        }
                        form #logout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" title={ "Logged in with key " (v.key_name) } { "Log out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The login form, with what went wrong last time.
pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            form #login method="post" action="/ui/login" {
                p {
                    label for="key" { "API key" }
                    input #key type="password" name="key" autocomplete="off" required
                        placeholder="cvk_…" aria-describedby="key-help";
                }
                p #key-help.help { "Paste a key made with " code { "culvert apikey create" } ". The page keeps a session cookie, not the key." }
                @if let Some(e) = error { p #login-error.error role="alert" { (e) } }
                button #login-submit type="submit" { "Log in" }
            }
        },
    )
}

/// A page that says what went wrong.
pub fn error(status: u16, message: &str) -> Markup {
    layout(
        "Error",
        None,
        html! {
            h1 { "Error " (status) }
            p.error role="alert" { (message) }
            p { a href="/ui/executions" { "Back to the executions" } }
        },
    )
}

/// An execution's status as a badge.
fn badge(status: &str) -> Markup {
    html! { span class={ "badge s-" (status) } { (status) } }
}

/// Milliseconds as a short duration.
pub fn duration(ms: i64) -> String {
    match ms {
        ..0 => "0 ms".into(),
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// How long an execution ran (or has run, at `now`).
fn execution_duration(row: &ExecutionRow, now: i64) -> String {
    let end = row.finished_at.unwrap_or(now);
    duration(end - row.created_at)
}

/// The filters of the executions list.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    /// Only this status.
    pub status: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only created within: `1h`, `24h`, `7d`.
    pub since: Option<String>,
}

impl Filters {
    /// As a query string (without the tenant).
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("status", &self.status),
            ("workflow", &self.workflow),
            ("since", &self.since),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        parts.join("&")
    }
}

/// One execution of the list, with the task that failed it (if any).
pub struct ListItem {
    /// The execution.
    pub row: ExecutionRow,
    /// Its failed task, for a failed one.
    pub failed_task: Option<String>,
}

/// The rows of the executions table (also what the page refreshes).
pub fn execution_rows(v: &Viewer<'_>, items: &[ListItem], now: i64) -> Markup {
    html! {
        @if items.is_empty() {
            tr { td colspan="6" { "No executions match." } }
        }
        @for item in items {
            @let r = &item.row;
            tr data-id=(r.id.to_string()) data-status=(r.status.as_str()) {
                td { a href=(v.href(&format!("/ui/executions/{}", r.id))) { code { (r.id.to_string()[..8]) } } }
                td { (r.workflow) }
                td.status { (badge(r.status.as_str())) }
                td { time datetime=(fmt_ms(r.created_at)) { (fmt_ms(r.created_at)[..19].replace('T', " ")) } }
                td { (execution_duration(r, now)) }
                td { @if let Some(t) = &item.failed_task { code { (t) } } }
            }
        }
    }
}

/// The executions page: filters, the start form and the live list.
pub fn executions(
    v: &Viewer<'_>,
    filters: &Filters,
    workflows: &[String],
    items: &[ListItem],
    start_error: Option<&str>,
    start_context: &str,
    now: i64,
) -> Markup {
    let rows_url = {
        let q = filters.query();
        let path = if q.is_empty() {
            "/ui/executions/rows".to_string()
        } else {
            format!("/ui/executions/rows?{q}")
        };
        v.href(&path)
    };
    layout(
        "Executions",
        Some(v),
        html! {
            h1 { "Executions" }
            section aria-labelledby="start-title" {
                h2 #start-title { "Start a run" }
                @if workflows.is_empty() {
                    p { "No workflow is registered for this tenant. Add a package with "
                        code { "culvert package add" } "." }
                } @else {
                    form #start method="post" action=(v.href("/ui/executions")) {
                        input type="hidden" name="csrf" value=(v.csrf);
                        p {
                            label for="workflow" { "Workflow" }
                            select #workflow name="workflow" {
                                @for w in workflows { option value=(w) { (w) } }
                            }
                        }
                        p {
                            label for="context" { "Initial context (a JSON object)" }
                            textarea #context name="context" rows="4" spellcheck="false"
                                aria-invalid=[start_error.map(|_| "true")]
                                aria-describedby=[start_error.map(|_| "start-error")] { (start_context) }
                        }
                        @if let Some(e) = start_error { p #start-error.error role="alert" { (e) } }
                        button #start-submit type="submit" { "Start" }
                    }
                }
            }
            section aria-labelledby="list-title" {
                h2 #list-title { "Runs" }
                form.filters method="get" action="/ui/executions" {
                    @if v.operator { input type="hidden" name="tenant" value=(v.tenant); }
                    label { "Status "
                        select name="status" {
                            option value="" { "any" }
                            @for s in ["pending", "running", "completed", "failed", "cancelled"] {
                                option value=(s) selected[filters.status.as_deref() == Some(s)] { (s) }
                            }
                        }
                    }
                    label { "Workflow "
                        select name="workflow" {
                            option value="" { "any" }
                            @for w in workflows {
                                @let name = w.rsplit("::").next().unwrap_or(w);
                                option value=(name) selected[filters.workflow.as_deref() == Some(name)] { (w) }
                            }
                        }
                    }
                    label { "Created "
                        select name="since" {
                            @for (value, text) in [("", "any time"), ("1h", "in the last hour"), ("24h", "in the last day"), ("7d", "in the last week")] {
                                option value=(value) selected[filters.since.as_deref().unwrap_or("") == value] { (text) }
                            }
                        }
                    }
                    button type="submit" { "Filter" }
                }
                div.scroll {
                    table #executions {
                        thead { tr { th scope="col" { "Execution" } th scope="col" { "Workflow" } th scope="col" { "Status" } th scope="col" { "Created (UTC)" } th scope="col" { "Duration" } th scope="col" { "Failed task" } } }
                        tbody #execution-rows data-refresh=(rows_url) aria-live="polite" { (execution_rows(v, items, now)) }
                    }
                }
            }
        },
    )
}

/// Tasks the execution page lists (the page is re-read on every event
/// while the execution runs): the rest are counted.
const MAX_TASK_ROWS: usize = 500;

/// What the execution page shows live: its status, DAG and tasks.
pub fn execution_live(
    v: &Viewer<'_>,
    row: &ExecutionRow,
    workflow: Option<&WorkflowMeta>,
    tasks: &[TaskRow],
    now: i64,
) -> Markup {
    let base = format!("/ui/executions/{}", row.id);
    let status: std::collections::HashMap<&str, &str> = tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.status.as_str()))
        .collect();
    html! {
        dl.facts {
            dt { "Status" } dd #status data-status=(row.status.as_str()) { (badge(row.status.as_str())) }
            dt { "Duration" } dd { (execution_duration(row, now)) }
            @if let Some(e) = &row.error { dt { "Error" } dd #execution-error.error { (e) } }
        }
        @if let Some(wf) = workflow {
            figure {
                (dag::svg(wf,
                    |t| status.get(t).map(|s| s.to_string()),
                    |t| Some(v.href(&format!("{base}/tasks/{}", urlencode(t))))))
                figcaption { "Each task by dependency level, coloured by status. Select one for its attempts and logs." }
            }
        }
        div.scroll {
            table #tasks {
                thead { tr { th scope="col" { "Task" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Duration" } th scope="col" { "Error" } } }
                tbody {
                    @for t in tasks.iter().take(MAX_TASK_ROWS) {
                        tr data-task=(t.task_id) data-status=(t.status.as_str()) {
                            td { a href=(v.href(&format!("{base}/tasks/{}", urlencode(&t.task_id)))) { (t.task_id) } }
                            td { (badge(t.status.as_str())) }
                            td { (t.attempt) " / " (t.max_attempts) }
                            td { @if let Some(d) = t.duration_ms { (duration(d)) } }
                            td { @if let Some(k) = &t.last_error_kind { code { (k) } " " } @if let Some(e) = &t.last_error { (e) } }
                        }
                    }
                }
            }
        }
        @if tasks.len() > MAX_TASK_ROWS {
            p.note { (tasks.len() - MAX_TASK_ROWS) " more tasks are not listed here: "
                code { "culvert executions show " (row.id.to_string()) } " lists them all." }
        }
    }
}

/// The execution page.
pub fn execution(
    v: &Viewer<'_>,
    row: &ExecutionRow,
    workflow: Option<&WorkflowMeta>,
    tasks: &[TaskRow],
    now: i64,
) -> Markup {
    let base = format!("/ui/executions/{}", row.id);
    layout(
        &format!("{} {}", row.workflow, &row.id.to_string()[..8]),
        Some(v),
        html! {
            h1 { (row.workflow) " " code { (row.id.to_string()) } }
            p { (row.package_name) "@" (row.package_version) " · created " (fmt_ms(row.created_at)) }
            @if !row.status.is_finished() {
                form #cancel method="post" action=(v.href(&format!("{base}/cancel"))) {
                    input type="hidden" name="csrf" value=(v.csrf);
                    button #cancel-submit type="submit" { "Cancel this execution" }
                }
            }
            section #live data-stream=[(!row.status.is_finished()).then(|| v.href(&format!("{base}/stream")))]
                data-fragment=(v.href(&format!("{base}/live"))) aria-live="polite" {
                (execution_live(v, row, workflow, tasks, now))
            }
        },
    )
}

/// What a task's page shows.
pub struct TaskView<'a> {
    /// Its row.
    pub task: &'a TaskRow,
    /// Its description, from the package.
    pub description: &'a str,
    /// Its trigger rule, in words.
    pub trigger: String,
    /// Its dependencies.
    pub dependencies: &'a [String],
    /// The context it received (JSON text), when known.
    pub input: Option<String>,
    /// Its events.
    pub events: Vec<&'a EventRow>,
    /// What each attempt said.
    pub logs: &'a [AttemptLogs],
}

/// A task's page: attempts, errors, trigger rule, contexts and logs.
pub fn task(v: &Viewer<'_>, row: &ExecutionRow, t: &TaskView<'_>) -> Markup {
    let base = format!("/ui/executions/{}", row.id);
    layout(
        &t.task.task_id,
        Some(v),
        html! {
            p { a href=(v.href(&base)) { "← " (row.workflow) " " code { (row.id.to_string()[..8]) } } }
            h1 #task { "Task " code { (t.task.task_id) } }
            @if !t.description.is_empty() { p.description { (t.description) } }
            dl.facts {
                dt { "Status" } dd #task-status { (badge(t.task.status.as_str())) }
                dt { "Attempts" } dd { (t.task.attempt) " of at most " (t.task.max_attempts) }
                @if let Some(d) = t.task.duration_ms { dt { "Duration" } dd { (duration(d)) } }
                dt { "Runs when" } dd #trigger { (t.trigger) }
                @if !t.dependencies.is_empty() {
                    dt { "Depends on" } dd { @for (i, d) in t.dependencies.iter().enumerate() { @if i > 0 { ", " } code { (d) } } }
                }
                @if let Some(k) = &t.task.last_error_kind { dt { "Error kind" } dd #error-kind { code { (k) } } }
                @if let Some(e) = &t.task.last_error { dt { "Error" } dd #error.error { (e) } }
                @if let Some(s) = &t.task.skip_reason { dt { "Skipped because" } dd { (s) } }
            }
            h2 { "Attempts" }
            @let attempts = attempts(&t.events);
            @if attempts.is_empty() { p { "No attempt has started." } }
            @else {
                div.scroll {
                    table #attempts {
                        thead { tr { th scope="col" { "Attempt" } th scope="col" { "Started (UTC)" } th scope="col" { "Duration" } th scope="col" { "Outcome" } } }
                        tbody {
                            @for (i, a) in attempts.iter().enumerate() {
                                tr {
                                    td { (i + 1) }
                                    td { (fmt_ms(a.started)) }
                                    td { @if let Some(end) = a.ended { (duration(end - a.started)) } @else { "running" } }
                                    td { @if let Some(o) = a.outcome { (o) } @if let Some(d) = a.detail { " " span.detail { (d) } } }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Events" }
            div.scroll {
                table #events {
                    thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Event" } th scope="col" { "Detail" } } }
                    tbody {
                        @for e in &t.events {
                            tr { td { (fmt_ms(e.at)) } td { (e.kind) } td { @if let Some(d) = &e.detail { (d) } } }
                        }
                    }
                }
            }
            h2 { "Logs" }
            @if t.logs.is_empty() { p #logs-empty { "No log was stored for this task." } }
            @for a in t.logs {
                section.attempt-logs {
                    h3 { "Attempt " (a.attempt) }
                    pre #logs {
                        @for r in &a.records {
                            span.log-line {
                                @if let Some(l) = &r.level { span class={ "level l-" (l) } { (l) } " " }
                                (r.message)
                                @for (k, val) in &r.fields { " " span.field { (k) "=" (val) } }
                                "\n"
                            }
                        }
                    }
                    @if a.truncated { p.note { (a.dropped_bytes) " bytes more were dropped (the per-attempt cap)." } }
                }
            }
            h2 { "Contexts" }
            h3 { "Received" }
            @match &t.input {
                Some(i) => { pre #input { (shown(i)) } }
                None => { p { "Not stored: the task has not been made ready." } }
            }
            h3 { "Produced" }
            @match &t.task.output {
                Some(o) => { pre #output { (shown(&o.to_string())) } }
                None => { p { "Nothing yet." } }
            }
        },
    )
}

/// One attempt of a task, read from its events.
struct Attempt<'a> {
    started: i64,
    ended: Option<i64>,
    outcome: Option<&'a str>,
    detail: Option<&'a str>,
}

/// A task's attempts: each `claimed` event starts one, the next event
/// that ends a claim (completed, failed, retry scheduled, lease expired,
/// cancelled) ends it.
fn attempts<'a>(events: &[&'a EventRow]) -> Vec<Attempt<'a>> {
    let mut out: Vec<Attempt<'a>> = Vec::new();
    for e in events {
        match e.kind.as_str() {
            "claimed" => out.push(Attempt {
                started: e.at,
                ended: None,
                outcome: None,
                detail: None,
            }),
            "completed" | "failed" | "retry_scheduled" | "lease_expired" | "cancelled" => {
                if let Some(a) = out.last_mut().filter(|a| a.ended.is_none()) {
                    a.ended = Some(e.at);
                    a.outcome = Some(e.kind.as_str());
                    a.detail = e.detail.as_deref();
                }
            }
            _ => {}
        }
    }
    out
}

/// The most of a context a page shows, in bytes.
const SHOWN_CONTEXT_BYTES: usize = 64 * 1024;

/// A context's JSON text, indented, or its first
/// [`SHOWN_CONTEXT_BYTES`] as stored when it is longer.
fn shown(json: &str) -> String {
    if json.len() > SHOWN_CONTEXT_BYTES {
        let mut end = SHOWN_CONTEXT_BYTES;
        while !json.is_char_boundary(end) {
            end -= 1;
        }
        return format!(
            "{}\n… ({} bytes in all; the API's logs and outputs have the rest)",
            &json[..end],
            json.len()
        );
    }
    serde_json::from_str::<Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}

/// The packages page.
pub fn packages(v: &Viewer<'_>, packages: &[PackageRow], grants: &[Grant]) -> Markup {
    layout(
        "Packages",
        Some(v),
        html! {
            h1 { "Packages" }
            @if packages.is_empty() { p { "No package is registered for this tenant." } }
            @for p in packages.iter().rev() {
                article.package data-package=(p.name) data-version=(p.version) {
                    h2 { (p.name) " " small { (p.version) } }
                    @if !p.metadata.description.is_empty() { p { (p.metadata.description) } }
                    dl.facts {
                        dt { "Content hash" } dd { code.hash { (p.content_hash) } }
                        dt { "Registered" } dd { (fmt_ms(p.registered_at)) }
                        dt { "Size" } dd { (p.size) " bytes" }
                        dt { "Signed by" } dd.signature {
                            @match &p.signature {
                                None => "nobody (no signature)",
                                Some(s) => {
                                    "key " code.key-id { (s.key_id) } " at " (fmt_ms(s.signed_at))
                                    @if s.key_untrusted_at.is_some() {
                                        " " strong.untrusted { @if s.disabled { "untrusted key: disabled" } @else { "untrusted key" } }
                                    }
                                }
                            }
                        }
                        dt { "Capabilities" } dd { (capabilities(&p.metadata.capabilities)) }
                        dt { "Grants" } dd {
                            @let given: Vec<&Grant> = grants.iter().filter(|g| g.package == p.name || g.package == "*").collect();
                            @if given.is_empty() { "none" }
                            @for g in given { code { (format!("{:?}", g.kind).to_lowercase()) " " (g.name) @if !g.value.is_empty() { "=" (g.value) } } " " }
                        }
                    }
                    @for wf in &p.metadata.workflows {
                        section.workflow {
                            h3 { (wf.name) " " small { (wf.tasks.len()) " tasks" } }
                            @if !wf.description.is_empty() { p { (wf.description) } }
                            (dag::svg(wf, |_| None, |_| None))
                        }
                    }
                }
            }
        },
    )
}

/// What a package asks for, in words.
fn capabilities(c: &culvert::CapabilityRequest) -> Markup {
    let v = serde_json::to_value(c).unwrap_or(Value::Null);
    let empty = match &v {
        Value::Object(m) => m.values().all(|x| {
            x.is_null() || x == &Value::Bool(false) || x.as_array().is_some_and(|a| a.is_empty())
        }),
        _ => true,
    };
    html! {
        @if empty { "none" } @else { code { (v.to_string()) } }
    }
}

/// One tenant's limits against what it uses.
pub struct Usage {
    /// The tenant.
    pub tenant: TenantRow,
    /// Tasks running now, over every host.
    pub running_tasks: u64,
    /// Executions not finished.
    pub queued: u64,
    /// Packages registered.
    pub packages: u64,
    /// Cores its guests used over the last second, summed over the hosts.
    pub cpu_cores: f64,
}

/// A tenant's usage table.
fn usage_table(u: &Usage) -> Markup {
    let l = &u.tenant.limits;
    let row = |name: &str, used: String, limit: String, share: Option<f64>| {
        html! {
            tr {
                th scope="row" { (name) }
                td { (used) }
                td { (limit) }
                td { @if let Some(s) = share {
                    meter min="0" max="1" value=(format!("{:.3}", s.min(1.0))) { (format!("{:.0}%", s * 100.0)) }
                    " " (format!("{:.0}%", s * 100.0))
                } }
            }
        }
    };
    let share = |used: u64, limit: u64| (limit > 0).then(|| used as f64 / limit as f64);
    html! {
        table.usage data-tenant=(u.tenant.name) {
            caption { "Tenant " strong { (u.tenant.name) } }
            thead { tr { th scope="col" { "Limit" } th scope="col" { "In use" } th scope="col" { "Limit" } th scope="col" { "Share" } } }
            tbody {
                (row("Running tasks (all hosts)", u.running_tasks.to_string(), l.max_concurrent_tasks.to_string(), share(u.running_tasks, l.max_concurrent_tasks.into())))
                (row("Unfinished executions", u.queued.to_string(), l.max_queued_executions.to_string(), share(u.queued, l.max_queued_executions.into())))
                (row("Packages", u.packages.to_string(), l.max_packages.to_string(), share(u.packages, l.max_packages.into())))
                (row("CPU (cores, per host)", format!("{:.2}", u.cpu_cores), l.max_cpu_cores.map(|c| format!("{c}")).unwrap_or_else(|| "fair share".into()), None))
                (row("Memory per task", "—".into(), bytes(l.max_memory_bytes), None))
                (row("Package size", "—".into(), bytes(l.max_package_bytes), None))
                (row("Context size", "—".into(), bytes(l.max_context_bytes), None))
            }
        }
    }
}

/// `used / limit` with a meter.
fn used_of(used: u64, limit: u64) -> Markup {
    let share = if limit == 0 {
        1.0
    } else {
        used as f64 / limit as f64
    };
    html! {
        (used) " / " (limit) " "
        meter min="0" max="1" value=(format!("{:.3}", share.min(1.0))) title={ (format!("{:.0}%", share * 100.0)) } {}
    }
}

/// Bytes in binary units.
fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// The tenant's schedules, with their next due times and a pause or
/// resume button each.
pub fn schedules(v: &Viewer<'_>, rows: &[ScheduleRow]) -> Markup {
    layout(
        "Schedules",
        Some(v),
        html! {
            h1 { "Schedules" }
            @if rows.is_empty() {
                p { "No schedule: create one with " code { "culvert schedule create" } ", or declare one in a package with " code { "#[workflow(schedule(cron = \"...\"))]" } "." }
            } @else {
                div.scroll {
                    table #schedules {
                        thead { tr { th { "Workflow" } th { "Cron" } th { "Next due" } th { "Policies" } th { "Origin" } th { "State" } } }
                        tbody {
                            @for s in rows {
                                tr data-schedule=(s.id) {
                                    td { (s.spec.workflow) }
                                    td { code { (s.spec.cron) } " " small { (s.spec.timezone) } }
                                    td {
                                        @if s.paused { "—" }
                                        @else if let Some(t) = s.next_due_at { (fmt_ms(t)) }
                                        @else { "never" }
                                        @if let Some(e) = &s.last_error { br; small.error { "last due time failed: " (e) } }
                                    }
                                    td { "catch-up " (s.spec.catch_up) @if s.spec.catch_up == culvert::CatchUp::All { " (" (s.spec.catch_up_cap) ")" } ", overlap " (s.spec.overlap) }
                                    td { @match &s.package { Some(p) => { "declared by " (p) }, None => "set at run time" } }
                                    td {
                                        @let (action, label) = if s.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                                        form.inline method="post" action=(v.href(&format!("/ui/schedules/{}/{action}", s.id))) {
                                            input type="hidden" name="csrf" value=(v.csrf);
                                            @if s.paused { span.state { "paused " } } @else { span.state { "active " } }
                                            button type="submit" aria-label={ (label) " the schedule of " (s.spec.workflow) } { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The usage page: the viewer's tenant, or for an operator every tenant
/// and the hosts.
pub fn usage(v: &Viewer<'_>, tenants: &[Usage], hosts: Option<&[Value]>) -> Markup {
    layout(
        "Usage",
        Some(v),
        html! {
            h1 { "Usage" }
            @if hosts.is_some() {
                // An operator: every tenant on one table.
                div.scroll {
                    table #tenants {
                        caption { "Each tenant's use against its limits" }
                        thead { tr {
                            th scope="col" { "Tenant" } th scope="col" { "Running tasks" }
                            th scope="col" { "Unfinished executions" } th scope="col" { "Packages" }
                            th scope="col" { "CPU in use (cores)" } th scope="col" { "Memory per task" }
                        } }
                        tbody {
                            @for u in tenants {
                                @let l = &u.tenant.limits;
                                tr data-tenant=(u.tenant.name) {
                                    th scope="row" { a href={ "/ui/executions?tenant=" (urlencode(&u.tenant.name)) } { (u.tenant.name) } }
                                    td { (used_of(u.running_tasks, l.max_concurrent_tasks.into())) }
                                    td { (used_of(u.queued, l.max_queued_executions.into())) }
                                    td { (used_of(u.packages, l.max_packages.into())) }
                                    td { (format!("{:.2}", u.cpu_cores)) " of " (l.max_cpu_cores.map(|c| c.to_string()).unwrap_or_else(|| "fair share".into())) }
                                    td { (bytes(l.max_memory_bytes)) }
                                }
                            }
                        }
                    }
                }
            } @else {
                @for u in tenants { div.scroll { (usage_table(u)) } }
            }
            @if let Some(hosts) = hosts {
                h2 { "Hosts" }
                @if hosts.is_empty() { p { "No host has reported in the last 10 seconds." } }
                div.scroll {
                    table #hosts {
                        thead { tr { th scope="col" { "Host" } th scope="col" { "Last heartbeat (UTC)" } th scope="col" { "Compiled-code cache" } th scope="col" { "Last reconcile pass" } th scope="col" { "Executor" } } }
                        tbody {
                            @for h in hosts {
                                tr {
                                    td { (h["hostname"].as_str().unwrap_or("?")) " (pid " (h["pid"].to_string()) ")" }
                                    td { (h["heartbeat_at"].as_i64().map(fmt_ms).unwrap_or_default()) }
                                    td { (flat(&h["status"]["cache"])) }
                                    td { (flat(&h["status"]["reconciler"]["last_pass"])) }
                                    td { (flat(&h["status"]["executor"])) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// An object's fields as `key value` pairs: scalars as they are, lists
/// by their length (nested objects are left out).
fn flat(v: &Value) -> Markup {
    html! {
        @if let Value::Object(m) = v {
            ul.kv {
                @for (k, x) in m {
                    @let shown = match x {
                        Value::String(s) => Some(s.clone()),
                        Value::Array(a) => Some(a.len().to_string()),
                        Value::Object(_) => None,
                        other => Some(other.to_string()),
                    };
                    @if let Some(shown) = shown {
                        li { span.k { (k.replace('_', " ")) } " " span.v { (shown) } }
                    }
                }
            }
        } @else {
            "—"
        }
    }
}
