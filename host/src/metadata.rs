//! Package metadata as the host keeps it: plain, serializable Rust types,
//! converted from what a component's `describe` returns, and validated.
//!
//! Nothing a guest says is trusted. [`validate`] checks every name, count
//! and reference, and rejects the package with a message that names the
//! package and the problem, for example:
//! `package 'etl@1.2.0': task 'load' depends on unknown task 'transfrom'`.

use crate::bindings::types as wit;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Everything a package says about itself, after validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageMetadata {
    /// Package name: `[A-Za-z0-9_.-]`, 1 to 128 bytes.
    pub name: String,
    /// Package version: printable ASCII without spaces, 1 to 64 bytes.
    pub version: String,
    /// Free text.
    pub description: String,
    /// Free text.
    pub author: String,
    /// The WIT contract version the component was built against.
    pub contract_version: String,
    /// The SDK version that built it, or empty.
    pub sdk_version: String,
    /// The workflows, in the order the package lists them.
    pub workflows: Vec<WorkflowMeta>,
    /// What the package asks to be granted.
    pub capabilities: CapabilityRequest,
}

impl PackageMetadata {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The workflow called `name`.
    pub fn workflow(&self, name: &str) -> Option<&WorkflowMeta> {
        self.workflows.iter().find(|w| w.name == name)
    }

    /// The number of tasks over all workflows.
    pub fn task_count(&self) -> usize {
        self.workflows.iter().map(|w| w.tasks.len()).sum()
    }
}

/// One workflow: a DAG of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowMeta {
    /// Unique within the package: `[A-Za-z0-9_-]`, 1 to 128 bytes.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The tasks, in declaration order.
    pub tasks: Vec<TaskMeta>,
}

impl WorkflowMeta {
    /// The task with id `id`.
    pub fn task(&self, id: &str) -> Option<&TaskMeta> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The task ids in a topological order (dependencies first), in
    /// O(tasks + dependencies) plus a sort.
    ///
    /// The order is that of repeated sweeps over the tasks in declaration
    /// order, each sweep taking every task whose dependencies are already
    /// taken (those taken earlier in the same sweep included): roots and
    /// forward-declared chains come out in declaration order. Sweeping
    /// literally is quadratic (a chain declared last task first takes one
    /// sweep per task), so each task's sweep is computed instead: 1 for a
    /// root, else the latest of its dependencies' sweeps, plus one for each
    /// dependency declared after it. The tasks are then sorted by (sweep,
    /// declaration index).
    ///
    /// Tasks that can never run (on a cycle, behind an unknown dependency,
    /// or a repeated id: validated workflows have none of these) are left
    /// out.
    pub fn topological_order(&self) -> Vec<&str> {
        let n = self.tasks.len();
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (i, t) in self.tasks.iter().enumerate() {
            index.entry(t.id.as_str()).or_insert(i);
        }
        // For each task: the tasks that depend on it, how many of its
        // dependencies are not yet placed, and its sweep so far.
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut waiting = vec![0usize; n];
        let mut sweep = vec![1usize; n];
        let mut ready = Vec::new();
        for (i, t) in self.tasks.iter().enumerate() {
            if index[t.id.as_str()] != i {
                continue; // a repeated id: never placed
            }
            let mut known = true;
            for d in &t.dependencies {
                match index.get(d.as_str()) {
                    Some(&j) => {
                        dependents[j].push(i);
                        waiting[i] += 1;
                    }
                    None => known = false,
                }
            }
            if !known {
                waiting[i] = usize::MAX; // an unknown dependency: never placed
            } else if waiting[i] == 0 {
                ready.push(i);
            }
        }
        let mut placed = Vec::with_capacity(n);
        while let Some(d) = ready.pop() {
            placed.push(d);
            for &t in &dependents[d] {
                sweep[t] = sweep[t].max(sweep[d] + usize::from(d > t));
                if waiting[t] != usize::MAX {
                    waiting[t] -= 1;
                    if waiting[t] == 0 {
                        ready.push(t);
                    }
                }
            }
        }
        placed.sort_unstable_by_key(|&i| (sweep[i], i));
        placed
            .into_iter()
            .map(|i| self.tasks[i].id.as_str())
            .collect()
    }
}

/// One task of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMeta {
    /// Unique within the workflow: `[A-Za-z0-9_-]`, 1 to 128 bytes.
    pub id: String,
    /// Free text.
    pub description: String,
    /// Ids of the tasks that must finish first, in declared order.
    pub dependencies: Vec<String>,
    /// When and how to retry.
    pub retry: RetryPolicy,
    /// The deadline of one attempt; `None` means the host's default.
    pub timeout_ms: Option<u64>,
    /// When to run or skip; `None` means "every dependency succeeded".
    pub trigger: Option<TriggerRule>,
}

/// How the delay between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// Always the initial delay.
    Fixed,
    /// The initial delay times the number of failed attempts.
    Linear,
    /// The initial delay doubled after each failed attempt.
    Exponential,
}

/// Which errors are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// Transient and permanent errors.
    AllErrors,
    /// Transient errors only.
    TransientOnly,
    /// No error.
    Never,
}

/// When and how a failed task is attempted again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Growth of the delay.
    pub backoff: Backoff,
    /// Delay before the second attempt.
    pub initial_delay_ms: u64,
    /// Upper bound on any delay.
    pub max_delay_ms: u64,
    /// Spread each delay over [delay/2, delay].
    pub jitter: bool,
    /// Which errors are retried.
    pub retry_on: RetryOn,
}

impl RetryPolicy {
    /// The delay before attempt `failed_attempts + 1`, after
    /// `failed_attempts` (at least 1) failures.
    pub fn delay_after(&self, failed_attempts: u32) -> Duration {
        let n = failed_attempts.max(1) as u64;
        let base = match self.backoff {
            Backoff::Fixed => self.initial_delay_ms,
            Backoff::Linear => self.initial_delay_ms.saturating_mul(n),
            Backoff::Exponential => {
                let shift = (n - 1).min(62) as u32;
                self.initial_delay_ms.saturating_mul(1u64 << shift)
            }
        };
        let capped = base.min(self.max_delay_ms);
        let ms = if self.jitter && capped > 1 {
            let half = capped / 2;
            half + rand::random_range(0..=capped - half)
        } else {
            capped
        };
        Duration::from_millis(ms)
    }
}

/// Decides whether a task whose dependencies are finished runs or is
/// skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", content = "conditions", rename_all = "snake_case")]
pub enum TriggerRule {
    /// Run whatever happened upstream.
    Always,
    /// Run when every condition holds.
    All(Vec<Condition>),
    /// Run when at least one condition holds.
    Any(Vec<Condition>),
    /// Run when no condition holds.
    None(Vec<Condition>),
}

/// One condition of a trigger rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum Condition {
    /// The dependency completed.
    TaskSucceeded {
        /// The dependency's id.
        task: String,
    },
    /// The dependency failed for good.
    TaskFailed {
        /// The dependency's id.
        task: String,
    },
    /// The dependency was skipped.
    TaskSkipped {
        /// The dependency's id.
        task: String,
    },
    /// The context has the key.
    ContextExists {
        /// Top-level key.
        key: String,
    },
    /// The context value equals `value`.
    ContextEquals {
        /// Top-level key.
        key: String,
        /// The value to compare with.
        value: serde_json::Value,
    },
    /// The context value is absent or differs from `value`.
    ContextNotEquals {
        /// Top-level key.
        key: String,
        /// The value to compare with.
        value: serde_json::Value,
    },
    /// Both are numbers and the context value is greater.
    ContextGreaterThan {
        /// Top-level key.
        key: String,
        /// The value to compare with.
        value: serde_json::Value,
    },
    /// Both are numbers and the context value is smaller.
    ContextLessThan {
        /// Top-level key.
        key: String,
        /// The value to compare with.
        value: serde_json::Value,
    },
    /// The context value is a string containing `value` (a string) or an
    /// array holding `value`.
    ContextContains {
        /// Top-level key.
        key: String,
        /// The value to look for.
        value: serde_json::Value,
    },
}

impl Condition {
    /// The task this condition is about, if any.
    pub fn task(&self) -> Option<&str> {
        match self {
            Condition::TaskSucceeded { task }
            | Condition::TaskFailed { task }
            | Condition::TaskSkipped { task } => Some(task),
            _ => None,
        }
    }
}

/// A directory a package asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirRequest {
    /// The path the guest uses.
    pub guest_path: String,
    /// Whether it wants to write.
    pub writable: bool,
}

/// The capabilities a package declares. Declaring grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityRequest {
    /// Environment variables, by name.
    pub env: Vec<String>,
    /// Directories.
    pub dirs: Vec<DirRequest>,
    /// Outbound HTTP hosts.
    pub http_hosts: Vec<String>,
    /// Real wall-clock time.
    pub wall_clock: bool,
    /// Secure random bytes.
    pub random: bool,
}

impl CapabilityRequest {
    /// Whether the package asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.dirs.is_empty()
            && self.http_hosts.is_empty()
            && !self.wall_clock
            && !self.random
    }
}

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
        }
    }
}

/// A short, printable rendering of an untrusted string for error messages:
/// control characters escaped, at most 64 characters.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    out
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

/// Convert and validate what `describe` returned.
///
/// # Errors
/// A message naming the package (as far as it can be named) and the first
/// problem found.
pub fn validate(
    info: wit::PackageInfo,
    limits: &MetadataLimits,
) -> Result<PackageMetadata, String> {
    let label = format!("{}@{}", printable(&info.name), printable(&info.version));
    validate_inner(info, limits).map_err(|problem| format!("package '{label}': {problem}"))
}

fn validate_inner(
    info: wit::PackageInfo,
    limits: &MetadataLimits,
) -> Result<PackageMetadata, String> {
    let max = limits.max_name_bytes;
    if !is_package_name(&info.name, max) {
        return Err(format!(
            "invalid package name '{}': use 1 to {max} of [A-Za-z0-9_.-]",
            printable(&info.name)
        ));
    }
    if !is_version(&info.version) {
        return Err(format!(
            "invalid version '{}': use 1 to 64 printable ASCII characters, no spaces or '@'",
            printable(&info.version)
        ));
    }
    for (what, text) in [("description", &info.description), ("author", &info.author)] {
        if !text_ok(text, limits.max_text_bytes) {
            return Err(format!(
                "{what} is over {} bytes or holds control characters",
                limits.max_text_bytes
            ));
        }
    }
    if !is_version(&info.sdk_version) && !info.sdk_version.is_empty() {
        return Err(format!(
            "invalid sdk version '{}'",
            printable(&info.sdk_version)
        ));
    }
    crate::loader::check_contract_version(&info.contract_version)?;
    if info.workflows.is_empty() {
        return Err("the package declares no workflows".into());
    }
    if info.workflows.len() > limits.max_workflows {
        return Err(format!(
            "{} workflows is over the limit of {}",
            info.workflows.len(),
            limits.max_workflows
        ));
    }
    let mut names = HashSet::new();
    let mut workflows = Vec::with_capacity(info.workflows.len());
    for wf in info.workflows {
        if !is_ident(&wf.name, max) {
            return Err(format!(
                "invalid workflow name '{}': use 1 to {max} of [A-Za-z0-9_-]",
                printable(&wf.name)
            ));
        }
        if !names.insert(wf.name.clone()) {
            return Err(format!("duplicate workflow name '{}'", wf.name));
        }
        let name = wf.name.clone();
        workflows
            .push(validate_workflow(wf, limits).map_err(|p| format!("workflow '{name}': {p}"))?);
    }
    let capabilities = validate_capabilities(info.capabilities, limits)?;
    Ok(PackageMetadata {
        name: info.name,
        version: info.version,
        description: info.description,
        author: info.author,
        contract_version: info.contract_version,
        sdk_version: info.sdk_version,
        workflows,
        capabilities,
    })
}

fn validate_workflow(
    wf: wit::WorkflowSpec,
    limits: &MetadataLimits,
) -> Result<WorkflowMeta, String> {
    if !text_ok(&wf.description, limits.max_text_bytes) {
        return Err("description is too long or holds control characters".into());
    }
    if wf.tasks.is_empty() {
        return Err("the workflow has no tasks".into());
    }
    if wf.tasks.len() > limits.max_tasks_per_workflow {
        return Err(format!(
            "{} tasks is over the limit of {}",
            wf.tasks.len(),
            limits.max_tasks_per_workflow
        ));
    }
    let max = limits.max_name_bytes;
    let mut ids: HashSet<&str> = HashSet::with_capacity(wf.tasks.len());
    for t in &wf.tasks {
        if !is_ident(&t.id, max) {
            return Err(format!(
                "invalid task id '{}': use 1 to {max} of [A-Za-z0-9_-]",
                printable(&t.id)
            ));
        }
        if !ids.insert(&t.id) {
            return Err(format!("duplicate task id '{}'", t.id));
        }
    }
    for t in &wf.tasks {
        let mut seen = HashSet::new();
        for d in &t.dependencies {
            if !ids.contains(d.as_str()) {
                return Err(format!(
                    "task '{}' depends on unknown task '{}'",
                    t.id,
                    printable(d)
                ));
            }
            if d == &t.id {
                return Err(format!("task '{}' depends on itself", t.id));
            }
            if !seen.insert(d) {
                return Err(format!("task '{}' lists dependency '{d}' twice", t.id));
            }
        }
    }
    if let Some(cycle) = find_cycle(&wf.tasks) {
        return Err(format!("dependency cycle: {}", cycle.join(" -> ")));
    }
    let mut tasks = Vec::with_capacity(wf.tasks.len());
    for t in wf.tasks {
        let id = t.id.clone();
        tasks.push(validate_task(t, limits).map_err(|p| format!("task '{id}': {p}"))?);
    }
    Ok(WorkflowMeta {
        name: wf.name,
        description: wf.description,
        tasks,
    })
}

fn validate_task(t: wit::TaskSpec, limits: &MetadataLimits) -> Result<TaskMeta, String> {
    if !text_ok(&t.description, limits.max_text_bytes) {
        return Err("description is too long or holds control characters".into());
    }
    let r = &t.retry;
    if r.max_attempts == 0 || r.max_attempts > limits.max_attempts {
        return Err(format!(
            "invalid retry policy: max attempts {} is not between 1 and {}",
            r.max_attempts, limits.max_attempts
        ));
    }
    if r.initial_delay_ms > r.max_delay_ms {
        return Err(format!(
            "invalid retry policy: initial delay {} ms is above the max delay {} ms",
            r.initial_delay_ms, r.max_delay_ms
        ));
    }
    if r.max_delay_ms > limits.max_duration_ms {
        return Err(format!(
            "invalid retry policy: max delay {} ms is over {} ms",
            r.max_delay_ms, limits.max_duration_ms
        ));
    }
    if let Some(ms) = t.timeout_ms
        && (ms == 0 || ms > limits.max_duration_ms)
    {
        return Err(format!(
            "timeout {ms} ms is not between 1 and {} ms",
            limits.max_duration_ms
        ));
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
        Some(rule) => Some(validate_trigger(rule, &t.dependencies, limits)?),
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
) -> Result<TriggerRule, String> {
    let convert = |conds: Vec<wit::Condition>| -> Result<Vec<Condition>, String> {
        if conds.is_empty() {
            return Err("a trigger rule has no conditions".into());
        }
        if conds.len() > limits.max_conditions {
            return Err(format!(
                "a trigger rule has {} conditions, over the limit of {}",
                conds.len(),
                limits.max_conditions
            ));
        }
        conds
            .into_iter()
            .map(|c| validate_condition(c, deps, limits))
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
) -> Result<Condition, String> {
    let task = |t: String| -> Result<String, String> {
        if deps.contains(&t) {
            Ok(t)
        } else {
            Err(format!(
                "the trigger rule names '{}', which is not a dependency",
                printable(&t)
            ))
        }
    };
    let key = |k: &str| -> Result<(), String> {
        if k.is_empty() || k.len() > limits.max_name_bytes || !text_ok(k, limits.max_name_bytes) {
            Err(format!(
                "invalid context key '{}' in the trigger rule",
                printable(k)
            ))
        } else {
            Ok(())
        }
    };
    let value = |kv: wit::KeyValue, numeric: bool| -> Result<(String, serde_json::Value), String> {
        key(&kv.key)?;
        if kv.value_json.len() > limits.max_value_bytes {
            return Err(format!(
                "a trigger value is over {} bytes",
                limits.max_value_bytes
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&kv.value_json)
            .map_err(|e| format!("the trigger value for key '{}' is not JSON: {e}", kv.key))?;
        if numeric && !v.is_number() {
            return Err(format!(
                "the trigger value for key '{}' must be a number",
                kv.key
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
) -> Result<CapabilityRequest, String> {
    let max = limits.max_capability_entries;
    if c.env.len() > max || c.dirs.len() > max || c.http_hosts.len() > max {
        return Err(format!("a capability list has more than {max} entries"));
    }
    for v in &c.env {
        if v.is_empty()
            || v.len() > limits.max_name_bytes
            || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("invalid env var name '{}'", printable(v)));
        }
    }
    for d in &c.dirs {
        if !d.guest_path.starts_with('/')
            || d.guest_path.len() > 256
            || d.guest_path.split('/').any(|p| p == "..")
            || !text_ok(&d.guest_path, 256)
        {
            return Err(format!(
                "invalid directory '{}': use an absolute path without '..'",
                printable(&d.guest_path)
            ));
        }
    }
    for h in &c.http_hosts {
        if h.is_empty()
            || h.len() > 253
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
        {
            return Err(format!("invalid http host '{}'", printable(h)));
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

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            backoff,
            initial_delay_ms: 100,
            max_delay_ms: 1000,
            jitter: false,
            retry_on: RetryOn::TransientOnly,
        }
    }

    #[test]
    fn backoff_grows_as_documented_and_is_capped() {
        let ms = |p: &RetryPolicy, n| p.delay_after(n).as_millis() as u64;
        let fixed = policy(Backoff::Fixed);
        assert_eq!([ms(&fixed, 1), ms(&fixed, 4)], [100, 100]);
        let linear = policy(Backoff::Linear);
        assert_eq!(
            [ms(&linear, 1), ms(&linear, 3), ms(&linear, 30)],
            [100, 300, 1000]
        );
        let exp = policy(Backoff::Exponential);
        assert_eq!(
            [ms(&exp, 1), ms(&exp, 2), ms(&exp, 3), ms(&exp, 64)],
            [100, 200, 400, 1000]
        );
    }

    #[test]
    fn jitter_stays_within_half_and_whole_delay() {
        let mut p = policy(Backoff::Fixed);
        p.jitter = true;
        for _ in 0..100 {
            let d = p.delay_after(1).as_millis();
            assert!((50..=100).contains(&d), "{d}");
        }
    }

    fn workflow(tasks: &[(&str, &[&str])]) -> WorkflowMeta {
        WorkflowMeta {
            name: "w".into(),
            description: String::new(),
            tasks: tasks
                .iter()
                .map(|(id, deps)| TaskMeta {
                    id: id.to_string(),
                    description: String::new(),
                    dependencies: deps.iter().map(|d| d.to_string()).collect(),
                    retry: policy(Backoff::Fixed),
                    timeout_ms: None,
                    trigger: None,
                })
                .collect(),
        }
    }

    /// The rule `topological_order` computes, applied literally: sweep the
    /// tasks in declaration order until a sweep places nothing. Quadratic.
    fn sweeping_order(wf: &WorkflowMeta) -> Vec<&str> {
        let mut order = Vec::new();
        let mut done: HashSet<&str> = HashSet::new();
        loop {
            let before = order.len();
            for t in &wf.tasks {
                if !done.contains(t.id.as_str())
                    && t.dependencies.iter().all(|d| done.contains(d.as_str()))
                {
                    done.insert(&t.id);
                    order.push(t.id.as_str());
                }
            }
            if order.len() == before {
                return order;
            }
        }
    }

    #[test]
    fn topological_order_is_the_sweeping_order() {
        let diamond = workflow(&[("d", &["b", "c"]), ("b", &["a"]), ("a", &[]), ("c", &["a"])]);
        assert_eq!(diamond.topological_order(), ["a", "c", "b", "d"]);
        assert_eq!(diamond.topological_order(), sweeping_order(&diamond));
        // Random DAGs in random declaration orders (a fixed xorshift seed).
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for _ in 0..200 {
            let n = 1 + next(40);
            // Task k may depend only on tasks before it in the DAG's own
            // order, then the declaration order is shuffled.
            let ids: Vec<String> = (0..n).map(|k| format!("t{k}")).collect();
            let mut tasks: Vec<(String, Vec<String>)> = (0..n)
                .map(|k| {
                    let deps: Vec<String> = (0..k)
                        .filter(|_| next(4) == 0)
                        .map(|j| ids[j].clone())
                        .collect();
                    (ids[k].clone(), deps)
                })
                .collect();
            for i in (1..n).rev() {
                tasks.swap(i, next(i + 1));
            }
            let specs: Vec<(&str, Vec<&str>)> = tasks
                .iter()
                .map(|(id, deps)| (id.as_str(), deps.iter().map(String::as_str).collect()))
                .collect();
            let refs: Vec<(&str, &[&str])> =
                specs.iter().map(|(id, d)| (*id, d.as_slice())).collect();
            let wf = workflow(&refs);
            assert_eq!(wf.topological_order(), sweeping_order(&wf), "{refs:?}");
        }
        // What can never run is left out, as by the sweeps.
        let broken = workflow(&[
            ("a", &[]),
            ("b", &["c"]),
            ("c", &["b"]),
            ("d", &["ghost"]),
            ("e", &["a"]),
            ("f", &["b"]),
        ]);
        assert_eq!(broken.topological_order(), ["a", "e"]);
        assert_eq!(broken.topological_order(), sweeping_order(&broken));
    }

    #[test]
    fn topological_order_of_a_reversed_10000_chain_is_linear() {
        // c9999 depends on c9998 ... on c0, declared c9999 first: the
        // sweeping rule needs 10,000 sweeps of 10,000 tasks (10^8 set
        // lookups: about 20 s in a debug build). The computed order takes
        // a few milliseconds; 2 s leaves room for a loaded machine and
        // still fails the quadratic version.
        let ids: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
        let deps: Vec<Vec<&str>> = (0..10_000)
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    vec![ids[i - 1].as_str()]
                }
            })
            .collect();
        let refs: Vec<(&str, &[&str])> = (0..10_000)
            .rev()
            .map(|i| (ids[i].as_str(), deps[i].as_slice()))
            .collect();
        let wf = workflow(&refs);
        let started = std::time::Instant::now();
        let order = wf.topological_order();
        let took = started.elapsed();
        assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("a\u{1}b"), "a\\u{1}b");
        let long = "x".repeat(100);
        assert!(printable(&long).ends_with("… (100 bytes)"));
    }
}
