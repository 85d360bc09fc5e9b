//! Validation: what a component's `describe` returned, checked and
//! converted into [`PackageMetadata`].
//!
//! Nothing a guest says is trusted. [`validate`] checks every name, count
//! and reference, and rejects the package with a message that names the
//! package and the problem, for example:
//! `package 'etl@1.2.0': workflow 'etl': task 'load' depends on unknown task 'transfrom'`.

use super::metadata::*;
use crate::contract::{ContractVersionError, check_contract_version, types as wit};
use crate::guest_text::printable;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Bounds on what `describe` may return. The defaults are generous for
/// real packages and small enough that a hostile one cannot exhaust the host.
#[derive(Debug, Clone)]
pub struct MetadataLimits {
    /// Longest package name, workflow name or task id, in bytes. Default 128.
    pub max_name_bytes: usize,
    /// Longest description or author, in bytes. Default 4096.
    pub max_text_bytes: usize,
    /// Most workflows in a package. Default 64.
    pub max_workflows: usize,
    /// Most tasks in a workflow. Default 10,000.
    pub max_tasks_per_workflow: usize,
    /// Most conditions in a trigger rule. Default 64.
    pub max_conditions: usize,
    /// Largest trigger value, as JSON text. Default 4096 bytes.
    pub max_value_bytes: usize,
    /// Most entries in each capability list. Default 64.
    pub max_capability_entries: usize,
    /// Longest timeout or retry delay. Default 24 hours.
    pub max_duration_ms: u64,
    /// Most attempts of a task. Default 100.
    pub max_attempts: u32,
    /// Most schedules a package declares. Default 16.
    pub max_schedules: usize,
    /// Largest initial context of a declared schedule, as JSON text.
    /// Default 64 KiB.
    pub max_schedule_context_bytes: usize,
}

impl Default for MetadataLimits {
    fn default() -> Self {
        Self {
            max_name_bytes: 128,
            max_text_bytes: 4096,
            max_workflows: 64,
            max_tasks_per_workflow: 10_000,
            max_conditions: 64,
            max_value_bytes: 4096,
            max_capability_entries: 64,
            max_duration_ms: 24 * 60 * 60 * 1000,
            max_attempts: 100,
            max_schedules: 16,
            max_schedule_context_bytes: 64 * 1024,
        }
    }
}

fn is_ident(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_package_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !s.starts_with('.')
}

fn is_version(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'@')
}

fn text_ok(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Where in a package a metadata problem is: the package (as far as it can
/// be named), and the workflow and task when the problem is inside one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataLocation {
    /// `name@version`, made printable.
    pub package: String,
    /// The workflow, when the problem is inside one.
    pub workflow: Option<String>,
    /// The task, when the problem is inside one.
    pub task: Option<String>,
}

impl MetadataLocation {
    fn workflow(&self, name: &str) -> Self {
        MetadataLocation {
            workflow: Some(name.to_string()),
            ..self.clone()
        }
    }

    fn task(&self, id: &str) -> Self {
        MetadataLocation {
            task: Some(id.to_string()),
            ..self.clone()
        }
    }
}

/// `package 'etl@1.2.0': workflow 'etl': task 'load': `, ready for the
/// problem to follow.
impl fmt::Display for MetadataLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "package '{}': ", self.package)?;
        if let Some(w) = &self.workflow {
            write!(f, "workflow '{w}': ")?;
        }
        if let Some(t) = &self.task {
            write!(f, "task '{t}': ")?;
        }
        Ok(())
    }
}

/// What kind of name a [`MetadataError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The package's name.
    Package,
    /// The package's version.
    Version,
    /// The SDK version the package reports.
    SdkVersion,
    /// A workflow's name.
    Workflow,
    /// A task's id.
    Task,
    /// A dependency listed by a task.
    Dependency,
    /// A context key in a trigger rule.
    ContextKey,
    /// An environment variable the package asks for.
    EnvVar,
    /// A directory the package asks for.
    Directory,
    /// An HTTP host the package asks for.
    HttpHost,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Package => "package name",
            NameKind::Version => "version",
            NameKind::SdkVersion => "sdk version",
            NameKind::Workflow => "workflow name",
            NameKind::Task => "task id",
            NameKind::Dependency => "dependency",
            NameKind::ContextKey => "context key",
            NameKind::EnvVar => "env var name",
            NameKind::Directory => "directory",
            NameKind::HttpHost => "http host",
        })
    }
}

/// Why the metadata a package's `describe` returned was refused. Every
/// variant says where ([`MetadataLocation`]: the package, and the workflow
/// and task when inside one); the message names them, then the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    /// A task depends on a task its workflow does not have.
    #[error("{at}task '{task}' depends on unknown task '{dependency}'")]
    UnknownDependency {
        /// Where (package and workflow).
        at: MetadataLocation,
        /// The task that lists it.
        task: String,
        /// The unknown dependency, made printable.
        dependency: String,
    },
    /// The dependencies form a cycle (a task depending on itself is a cycle
    /// of one).
    #[error("{at}dependency cycle: {}", path.join(" -> "))]
    Cycle {
        /// Where (package and workflow).
        at: MetadataLocation,
        /// The task ids around the cycle, from one task back to it.
        path: Vec<String>,
    },
    /// A name that must be unique appears twice.
    #[error("{at}duplicate {kind} '{name}'")]
    Duplicate {
        /// Where.
        at: MetadataLocation,
        /// A workflow name, a task id or a dependency.
        kind: NameKind,
        /// The name.
        name: String,
    },
    /// A name or path that breaks its rule.
    #[error("{at}invalid {kind} '{name}': {rule}")]
    InvalidName {
        /// Where.
        at: MetadataLocation,
        /// What kind of name.
        kind: NameKind,
        /// The name, made printable.
        name: String,
        /// The rule it breaks.
        rule: String,
    },
    /// A count, size or duration over one of the [`MetadataLimits`].
    #[error("{at}{value} {limit} is over the limit of {cap}")]
    LimitExceeded {
        /// Where.
        at: MetadataLocation,
        /// What is counted: `workflows`, `tasks`, `trigger conditions`,
        /// `description bytes`, ...
        limit: &'static str,
        /// The package's value.
        value: u64,
        /// The limit.
        cap: u64,
    },
    /// A retry policy that cannot be followed.
    #[error("{at}invalid retry policy: {reason}")]
    BadRetryPolicy {
        /// Where (down to the task).
        at: MetadataLocation,
        /// What is wrong with it.
        reason: String,
    },
    /// A declared schedule that cannot be followed: its workflow is not in
    /// the package, or its cron expression, timezone, context or catch-up
    /// cap is invalid.
    #[error("{at}invalid schedule: {reason}")]
    BadSchedule {
        /// Where (down to the workflow).
        at: MetadataLocation,
        /// What is wrong with it.
        reason: String,
    },
    /// Built against a contract version this host does not speak.
    #[error("{at}{source}")]
    UnsupportedContract {
        /// Where (the package).
        at: MetadataLocation,
        /// The versions.
        source: ContractVersionError,
    },
    /// Anything else: an empty package or workflow, a trigger rule that
    /// names a task that is not a dependency, a trigger value that is not
    /// JSON, text with control characters.
    #[error("{at}{reason}")]
    Invalid {
        /// Where.
        at: MetadataLocation,
        /// What is wrong.
        reason: String,
    },
}

impl MetadataError {
    /// Where the problem is.
    pub fn location(&self) -> &MetadataLocation {
        match self {
            MetadataError::UnknownDependency { at, .. }
            | MetadataError::Cycle { at, .. }
            | MetadataError::Duplicate { at, .. }
            | MetadataError::InvalidName { at, .. }
            | MetadataError::LimitExceeded { at, .. }
            | MetadataError::BadRetryPolicy { at, .. }
            | MetadataError::BadSchedule { at, .. }
            | MetadataError::UnsupportedContract { at, .. }
            | MetadataError::Invalid { at, .. } => at,
        }
    }
}

type Checked<T> = Result<T, MetadataError>;

fn invalid(at: &MetadataLocation, reason: impl Into<String>) -> MetadataError {
    MetadataError::Invalid {
        at: at.clone(),
        reason: reason.into(),
    }
}

fn invalid_name(
    at: &MetadataLocation,
    kind: NameKind,
    name: &str,
    rule: impl Into<String>,
) -> MetadataError {
    MetadataError::InvalidName {
        at: at.clone(),
        kind,
        name: printable(name),
        rule: rule.into(),
    }
}

fn over(at: &MetadataLocation, limit: &'static str, value: usize, cap: usize) -> MetadataError {
    MetadataError::LimitExceeded {
        at: at.clone(),
        limit,
        value: value as u64,
        cap: cap as u64,
    }
}

fn duplicate(at: &MetadataLocation, kind: NameKind, name: &str) -> MetadataError {
    MetadataError::Duplicate {
        at: at.clone(),
        kind,
        name: name.to_string(),
    }
}

fn bad_retry(at: &MetadataLocation, reason: String) -> MetadataError {
    MetadataError::BadRetryPolicy {
        at: at.clone(),
        reason,
    }
}

/// A description or author: within `max` bytes, and no control characters
/// but newlines and tabs.
fn check_text(at: &MetadataLocation, what: &'static str, s: &str, max: usize) -> Checked<()> {
    if s.len() > max {
        return Err(over(at, what, s.len(), max));
    }
    if !text_ok(s, max) {
        return Err(invalid(
            at,
            format!(
                "{} holds control characters",
                what.trim_end_matches(" bytes")
            ),
        ));
    }
    Ok(())
}

/// Convert and validate what `describe` returned.
///
/// # Errors
/// A [`MetadataError`] naming the package (as far as it can be named), the
/// workflow and task where it applies, and the first problem found.
pub fn validate(
    info: wit::PackageInfo,
    limits: &MetadataLimits,
) -> Result<PackageMetadata, MetadataError> {
    let at = MetadataLocation {
        package: format!("{}@{}", printable(&info.name), printable(&info.version)),
        ..MetadataLocation::default()
    };
    let at = &at;
    let max = limits.max_name_bytes;
    if !is_package_name(&info.name, max) {
        return Err(invalid_name(
            at,
            NameKind::Package,
            &info.name,
            format!("use 1 to {max} of [A-Za-z0-9_.-]"),
        ));
    }
    if !is_version(&info.version) {
        return Err(invalid_name(
            at,
            NameKind::Version,
            &info.version,
            "use 1 to 64 printable ASCII characters, no spaces or '@'",
        ));
    }
    check_text(
        at,
        "description bytes",
        &info.description,
        limits.max_text_bytes,
    )?;
    check_text(at, "author bytes", &info.author, limits.max_text_bytes)?;
    if !is_version(&info.sdk_version) && !info.sdk_version.is_empty() {
        return Err(invalid_name(
            at,
            NameKind::SdkVersion,
            &info.sdk_version,
            "use up to 64 printable ASCII characters, no spaces or '@'",
        ));
    }
    check_contract_version(&info.contract_version).map_err(|source| {
        MetadataError::UnsupportedContract {
            at: at.clone(),
            source,
        }
    })?;
    if info.workflows.is_empty() {
        return Err(invalid(at, "the package declares no workflows"));
    }
    if info.workflows.len() > limits.max_workflows {
        return Err(over(
            at,
            "workflows",
            info.workflows.len(),
            limits.max_workflows,
        ));
    }
    let mut names = HashSet::new();
    let mut workflows = Vec::with_capacity(info.workflows.len());
    for wf in info.workflows {
        if !is_ident(&wf.name, max) {
            return Err(invalid_name(
                at,
                NameKind::Workflow,
                &wf.name,
                format!("use 1 to {max} of [A-Za-z0-9_-]"),
            ));
        }
        if !names.insert(wf.name.clone()) {
            return Err(duplicate(at, NameKind::Workflow, &wf.name));
        }
        let at = at.workflow(&wf.name);
        workflows.push(validate_workflow(wf, limits, &at)?);
    }
    let capabilities = validate_capabilities(info.capabilities, limits, at)?;
    let schedules = validate_schedules(info.schedules, &workflows, limits, at)?;
    Ok(PackageMetadata {
        name: info.name,
        version: info.version,
        description: info.description,
        author: info.author,
        contract_version: info.contract_version,
        sdk_version: info.sdk_version,
        workflows,
        capabilities,
        schedules,
    })
}

/// Declared schedules: each names a workflow of the package, parses (cron
/// and timezone, by the same rules as a schedule set at run time), and
/// carries a JSON-object context within bounds. The tenant's own limits
/// (its minimum interval) are checked again when the package is
/// registered.
fn validate_schedules(
    declared: Vec<wit::ScheduleSpec>,
    workflows: &[WorkflowMeta],
    limits: &MetadataLimits,
    at: &MetadataLocation,
) -> Checked<Vec<crate::cron::ScheduleSpec>> {
    use crate::cron::{CatchUp, Overlap, ScheduleSpec};
    if declared.len() > limits.max_schedules {
        return Err(over(at, "schedules", declared.len(), limits.max_schedules));
    }
    let mut out = Vec::with_capacity(declared.len());
    for d in declared {
        if !workflows.iter().any(|w| w.name == d.workflow) {
            return Err(MetadataError::BadSchedule {
                at: at.clone(),
                reason: format!(
                    "it names workflow '{}', which the package does not define",
                    printable(&d.workflow)
                ),
            });
        }
        let here = at.workflow(&d.workflow);
        let bad = |reason: String| MetadataError::BadSchedule {
            at: here.clone(),
            reason,
        };
        if d.context_json.len() > limits.max_schedule_context_bytes {
            return Err(over(
                &here,
                "schedule context bytes",
                d.context_json.len(),
                limits.max_schedule_context_bytes,
            ));
        }
        let context = match serde_json::from_str(&d.context_json) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(bad("its context-json is not a JSON object".into())),
        };
        let spec = ScheduleSpec {
            workflow: d.workflow,
            timezone: if d.timezone.is_empty() {
                "UTC".into()
            } else {
                d.timezone
            },
            cron: d.cron,
            context,
            catch_up: match d.catch_up {
                wit::CatchUp::Skip => CatchUp::Skip,
                wit::CatchUp::Latest => CatchUp::Latest,
                wit::CatchUp::All => CatchUp::All,
            },
            catch_up_cap: d.catch_up_cap,
            overlap: match d.overlap {
                wit::Overlap::Allow => Overlap::Allow,
                wit::Overlap::Skip => Overlap::Skip,
                wit::Overlap::QueueOne => Overlap::QueueOne,
            },
        };
        // 1 s is the floor of any tenant's interval; the tenant's own is
        // checked at registration.
        spec.validate(1000, crate::cron::wall_clock_ms())
            .map_err(|e| bad(e.to_string()))?;
        out.push(spec);
    }
    Ok(out)
}

fn validate_workflow(
    wf: wit::WorkflowSpec,
    limits: &MetadataLimits,
    at: &MetadataLocation,
) -> Checked<WorkflowMeta> {
    check_text(
        at,
        "description bytes",
        &wf.description,
        limits.max_text_bytes,
    )?;
    if wf.tasks.is_empty() {
        return Err(invalid(at, "the workflow has no tasks"));
    }
    if wf.tasks.len() > limits.max_tasks_per_workflow {
        return Err(over(
            at,
            "tasks",
            wf.tasks.len(),
            limits.max_tasks_per_workflow,
        ));
    }
    let max = limits.max_name_bytes;
    let mut ids: HashSet<&str> = HashSet::with_capacity(wf.tasks.len());
    for t in &wf.tasks {
        if !is_ident(&t.id, max) {
            return Err(invalid_name(
                at,
                NameKind::Task,
                &t.id,
                format!("use 1 to {max} of [A-Za-z0-9_-]"),
            ));
        }
        if !ids.insert(&t.id) {
            return Err(duplicate(at, NameKind::Task, &t.id));
        }
    }
    for t in &wf.tasks {
        let mut seen = HashSet::new();
        for d in &t.dependencies {
            if !ids.contains(d.as_str()) {
                return Err(MetadataError::UnknownDependency {
                    at: at.clone(),
                    task: t.id.clone(),
                    dependency: printable(d),
                });
            }
            if d == &t.id {
                return Err(MetadataError::Cycle {
                    at: at.clone(),
                    path: vec![t.id.clone(), t.id.clone()],
                });
            }
            if !seen.insert(d) {
                return Err(duplicate(&at.task(&t.id), NameKind::Dependency, d));
            }
        }
    }
    if let Some(path) = find_cycle(&wf.tasks) {
        return Err(MetadataError::Cycle {
            at: at.clone(),
            path,
        });
    }
    let mut tasks = Vec::with_capacity(wf.tasks.len());
    for t in wf.tasks {
        let at = at.task(&t.id);
        tasks.push(validate_task(t, limits, &at)?);
    }
    Ok(WorkflowMeta {
        name: wf.name,
        description: wf.description,
        tasks,
    })
}

fn validate_task(
    t: wit::TaskSpec,
    limits: &MetadataLimits,
    at: &MetadataLocation,
) -> Checked<TaskMeta> {
    check_text(
        at,
        "description bytes",
        &t.description,
        limits.max_text_bytes,
    )?;
    let r = &t.retry;
    if r.max_attempts == 0 || r.max_attempts > limits.max_attempts {
        return Err(bad_retry(
            at,
            format!(
                "max attempts {} is not between 1 and {}",
                r.max_attempts, limits.max_attempts
            ),
        ));
    }
    if r.initial_delay_ms > r.max_delay_ms {
        return Err(bad_retry(
            at,
            format!(
                "initial delay {} ms is above the max delay {} ms",
                r.initial_delay_ms, r.max_delay_ms
            ),
        ));
    }
    if r.max_delay_ms > limits.max_duration_ms {
        return Err(bad_retry(
            at,
            format!(
                "max delay {} ms is over {} ms",
                r.max_delay_ms, limits.max_duration_ms
            ),
        ));
    }
    if let Some(ms) = t.timeout_ms {
        if ms == 0 {
            return Err(invalid(at, "a timeout of 0 ms can never be met"));
        }
        if ms > limits.max_duration_ms {
            return Err(MetadataError::LimitExceeded {
                at: at.clone(),
                limit: "ms timeout",
                value: ms,
                cap: limits.max_duration_ms,
            });
        }
    }
    let retry = RetryPolicy {
        max_attempts: r.max_attempts,
        backoff: match r.backoff {
            wit::Backoff::Fixed => Backoff::Fixed,
            wit::Backoff::Linear => Backoff::Linear,
            wit::Backoff::Exponential => Backoff::Exponential,
        },
        initial_delay_ms: r.initial_delay_ms,
        max_delay_ms: r.max_delay_ms,
        jitter: r.jitter,
        retry_on: match r.retry_on {
            wit::RetryOn::AllErrors => RetryOn::AllErrors,
            wit::RetryOn::TransientOnly => RetryOn::TransientOnly,
            wit::RetryOn::Never => RetryOn::Never,
        },
    };
    let trigger = match t.trigger {
        None => None,
        Some(rule) => Some(validate_trigger(rule, &t.dependencies, limits, at)?),
    };
    Ok(TaskMeta {
        id: t.id,
        description: t.description,
        dependencies: t.dependencies,
        retry,
        timeout_ms: t.timeout_ms,
        trigger,
    })
}

fn validate_trigger(
    rule: wit::TriggerRule,
    deps: &[String],
    limits: &MetadataLimits,
    at: &MetadataLocation,
) -> Checked<TriggerRule> {
    let convert = |conds: Vec<wit::Condition>| -> Checked<Vec<Condition>> {
        if conds.is_empty() {
            return Err(invalid(at, "a trigger rule has no conditions"));
        }
        if conds.len() > limits.max_conditions {
            return Err(over(
                at,
                "trigger conditions",
                conds.len(),
                limits.max_conditions,
            ));
        }
        conds
            .into_iter()
            .map(|c| validate_condition(c, deps, limits, at))
            .collect()
    };
    Ok(match rule {
        wit::TriggerRule::Always => TriggerRule::Always,
        wit::TriggerRule::All(c) => TriggerRule::All(convert(c)?),
        wit::TriggerRule::Any(c) => TriggerRule::Any(convert(c)?),
        wit::TriggerRule::None(c) => TriggerRule::None(convert(c)?),
    })
}

fn validate_condition(
    c: wit::Condition,
    deps: &[String],
    limits: &MetadataLimits,
    at: &MetadataLocation,
) -> Checked<Condition> {
    let task = |t: String| -> Checked<String> {
        if deps.contains(&t) {
            Ok(t)
        } else {
            Err(invalid(
                at,
                format!(
                    "the trigger rule names '{}', which is not a dependency",
                    printable(&t)
                ),
            ))
        }
    };
    let key = |k: &str| -> Checked<()> {
        if k.is_empty() || k.len() > limits.max_name_bytes || !text_ok(k, limits.max_name_bytes) {
            Err(invalid_name(
                at,
                NameKind::ContextKey,
                k,
                format!(
                    "use 1 to {} bytes without control characters",
                    limits.max_name_bytes
                ),
            ))
        } else {
            Ok(())
        }
    };
    let value = |kv: wit::KeyValue, numeric: bool| -> Checked<(String, serde_json::Value)> {
        key(&kv.key)?;
        if kv.value_json.len() > limits.max_value_bytes {
            return Err(over(
                at,
                "trigger value bytes",
                kv.value_json.len(),
                limits.max_value_bytes,
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&kv.value_json).map_err(|e| {
            invalid(
                at,
                format!("the trigger value for key '{}' is not JSON: {e}", kv.key),
            )
        })?;
        if numeric && !v.is_number() {
            return Err(invalid(
                at,
                format!("the trigger value for key '{}' must be a number", kv.key),
            ));
        }
        Ok((kv.key, v))
    };
    Ok(match c {
        wit::Condition::TaskSucceeded(t) => Condition::TaskSucceeded { task: task(t)? },
        wit::Condition::TaskFailed(t) => Condition::TaskFailed { task: task(t)? },
        wit::Condition::TaskSkipped(t) => Condition::TaskSkipped { task: task(t)? },
        wit::Condition::ContextExists(k) => {
            key(&k)?;
            Condition::ContextExists { key: k }
        }
        wit::Condition::ContextEquals(kv) => {
            let (key, value) = value(kv, false)?;
            Condition::ContextEquals { key, value }
        }
        wit::Condition::ContextNotEquals(kv) => {
            let (key, value) = value(kv, false)?;
            Condition::ContextNotEquals { key, value }
        }
        wit::Condition::ContextGreaterThan(kv) => {
            let (key, value) = value(kv, true)?;
            Condition::ContextGreaterThan { key, value }
        }
        wit::Condition::ContextLessThan(kv) => {
            let (key, value) = value(kv, true)?;
            Condition::ContextLessThan { key, value }
        }
        wit::Condition::ContextContains(kv) => {
            let (key, value) = value(kv, false)?;
            Condition::ContextContains { key, value }
        }
    })
}

fn validate_capabilities(
    c: wit::Capabilities,
    limits: &MetadataLimits,
    at: &MetadataLocation,
) -> Checked<CapabilityRequest> {
    let max = limits.max_capability_entries;
    for len in [c.env.len(), c.dirs.len(), c.http_hosts.len()] {
        if len > max {
            return Err(over(at, "capability entries", len, max));
        }
    }
    for v in &c.env {
        if v.is_empty()
            || v.len() > limits.max_name_bytes
            || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid_name(
                at,
                NameKind::EnvVar,
                v,
                format!("use 1 to {} of [A-Za-z0-9_]", limits.max_name_bytes),
            ));
        }
    }
    for d in &c.dirs {
        if !d.guest_path.starts_with('/')
            || d.guest_path.len() > 256
            || d.guest_path.split('/').any(|p| p == "..")
            || !text_ok(&d.guest_path, 256)
        {
            return Err(invalid_name(
                at,
                NameKind::Directory,
                &d.guest_path,
                "use an absolute path without '..'",
            ));
        }
    }
    for h in &c.http_hosts {
        if let Err(e) = crate::egress::HostPattern::parse(h) {
            return Err(invalid_name(
                at,
                NameKind::HttpHost,
                h,
                format!(
                    "{}: use [http://|https://]HOST[:PORT], HOST a name, an address, *.SUFFIX or *; PORT a number or *",
                    e.reason
                ),
            ));
        }
    }
    Ok(CapabilityRequest {
        env: c.env,
        dirs: c
            .dirs
            .into_iter()
            .map(|d| DirRequest {
                guest_path: d.guest_path,
                writable: d.writable,
            })
            .collect(),
        http_hosts: c.http_hosts,
        wall_clock: c.wall_clock,
        random: c.random,
    })
}

/// A cycle among `tasks`, as ids from and back to one task.
fn find_cycle(tasks: &[wit::TaskSpec]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    // Iterative DFS with colors, so a 100,000-task chain cannot overflow the
    // host's stack.
    let mut color = vec![0u8; tasks.len()]; // 0 new, 1 on stack, 2 done
    for start in 0..tasks.len() {
        if color[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(dep) = tasks[node].dependencies.get(*next) {
                *next += 1;
                let Some(&d) = index.get(dep.as_str()) else {
                    continue;
                };
                match color[d] {
                    0 => {
                        color[d] = 1;
                        stack.push((d, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|(n, _)| *n == d).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[pos..]
                            .iter()
                            .map(|(n, _)| tasks[*n].id.clone())
                            .collect();
                        cycle.push(tasks[d].id.clone());
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                color[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::CONTRACT_VERSION;

    fn task(id: &str, deps: &[&str]) -> wit::TaskSpec {
        wit::TaskSpec {
            id: id.into(),
            description: String::new(),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
            retry: wit::RetryPolicy {
                max_attempts: 1,
                backoff: wit::Backoff::Fixed,
                initial_delay_ms: 0,
                max_delay_ms: 0,
                jitter: false,
                retry_on: wit::RetryOn::AllErrors,
            },
            timeout_ms: None,
            trigger: None,
        }
    }

    fn package(tasks: Vec<wit::TaskSpec>) -> wit::PackageInfo {
        wit::PackageInfo {
            name: "etl".into(),
            version: "1.2.0".into(),
            description: String::new(),
            author: String::new(),
            contract_version: CONTRACT_VERSION.into(),
            sdk_version: "0.1.0".into(),
            workflows: vec![wit::WorkflowSpec {
                name: "nightly".into(),
                description: String::new(),
                tasks,
            }],
            capabilities: wit::Capabilities {
                env: vec![],
                dirs: vec![],
                http_hosts: vec![],
                wall_clock: false,
                random: false,
            },
            schedules: Vec::new(),
        }
    }

    fn refused(info: wit::PackageInfo) -> MetadataError {
        validate(info, &MetadataLimits::default()).unwrap_err()
    }

    fn at(workflow: Option<&str>, task: Option<&str>) -> MetadataLocation {
        MetadataLocation {
            package: "etl@1.2.0".into(),
            workflow: workflow.map(Into::into),
            task: task.map(Into::into),
        }
    }

    #[test]
    fn a_valid_package_passes() {
        let m = validate(
            package(vec![task("a", &[]), task("b", &["a"])]),
            &MetadataLimits::default(),
        )
        .unwrap();
        assert_eq!(m.label(), "etl@1.2.0");
        assert_eq!(m.workflows[0].tasks.len(), 2);
    }

    #[test]
    fn an_unknown_dependency_names_package_workflow_task_and_dependency() {
        let e = refused(package(vec![
            task("extract", &[]),
            task("load", &["transfrom"]),
        ]));
        assert_eq!(
            e,
            MetadataError::UnknownDependency {
                at: at(Some("nightly"), None),
                task: "load".into(),
                dependency: "transfrom".into(),
            }
        );
        assert_eq!(
            e.to_string(),
            "package 'etl@1.2.0': workflow 'nightly': task 'load' depends on unknown task 'transfrom'"
        );
    }

    #[test]
    fn a_cycle_carries_its_path() {
        let e = refused(package(vec![
            task("a", &["c"]),
            task("b", &["a"]),
            task("c", &["b"]),
        ]));
        let MetadataError::Cycle { at: loc, path } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(loc, &at(Some("nightly"), None));
        assert_eq!(path.first(), path.last());
        assert_eq!(path.len(), 4, "{path:?}");
        assert!(e.to_string().contains("dependency cycle: "), "{e}");
        // A task that depends on itself is a cycle of one.
        let e = refused(package(vec![task("a", &["a"])]));
        assert!(matches!(&e, MetadataError::Cycle { path, .. } if path == &["a", "a"]));
    }

    #[test]
    fn duplicates_and_invalid_names_are_typed() {
        let e = refused(package(vec![task("a", &[]), task("a", &[])]));
        assert_eq!(
            e,
            MetadataError::Duplicate {
                at: at(Some("nightly"), None),
                kind: NameKind::Task,
                name: "a".into(),
            }
        );
        let e = refused(package(vec![task("b", &[]), task("c", &["b", "b"])]));
        assert!(
            matches!(&e, MetadataError::Duplicate { at: l, kind: NameKind::Dependency, .. } if l == &at(Some("nightly"), Some("c"))),
            "{e:?}"
        );
        let e = refused(package(vec![task("bad id", &[])]));
        assert!(
            matches!(&e, MetadataError::InvalidName { kind: NameKind::Task, name, .. } if name == "bad id"),
            "{e:?}"
        );
        let mut info = package(vec![task("a", &[])]);
        info.name = "../etc".into();
        let e = refused(info);
        assert!(
            matches!(
                &e,
                MetadataError::InvalidName {
                    kind: NameKind::Package,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn limits_name_the_limit_the_value_and_the_cap() {
        let tasks = (0..11).map(|i| task(&format!("t{i}"), &[])).collect();
        let limits = MetadataLimits {
            max_tasks_per_workflow: 10,
            ..MetadataLimits::default()
        };
        let e = validate(package(tasks), &limits).unwrap_err();
        assert_eq!(
            e,
            MetadataError::LimitExceeded {
                at: at(Some("nightly"), None),
                limit: "tasks",
                value: 11,
                cap: 10,
            }
        );
        assert_eq!(
            e.to_string(),
            "package 'etl@1.2.0': workflow 'nightly': 11 tasks is over the limit of 10"
        );
    }

    #[test]
    fn a_bad_retry_policy_names_the_task() {
        let mut t = task("flaky", &[]);
        t.retry.max_attempts = 0;
        let e = refused(package(vec![t]));
        assert!(
            matches!(&e, MetadataError::BadRetryPolicy { at: l, .. } if l == &at(Some("nightly"), Some("flaky"))),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("package 'etl@1.2.0': workflow 'nightly': task 'flaky': invalid retry policy: max attempts 0"),
            "{e}"
        );
    }

    #[test]
    fn an_unsupported_contract_version_is_typed() {
        let mut info = package(vec![task("a", &[])]);
        info.contract_version = "9.0.0".into();
        let e = refused(info);
        let MetadataError::UnsupportedContract { at: l, source } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(l, &at(None, None));
        assert_eq!(source.found, "9.0.0");
        assert_eq!(source.expected, CONTRACT_VERSION);
    }
}
