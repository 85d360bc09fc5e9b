//! Contract 0.1, frozen: the bindings of `wit/0.1/culvert.wit` and the
//! conversion of its types into the current contract's. The two differ in
//! one field (0.2 added `package-info.schedules`), but each version's
//! bindings are their own Rust types, so every record is converted field
//! by field; a 0.1 package declares no schedules.

use super::types as now;

/// The bindings of the frozen 0.1 world.
pub(crate) mod frozen {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        world: "culvert:plugin/plugin",
        path: "../../wit/0.1",
        imports: { default: trappable },
        exports: { default: async },
    });
}

use frozen::culvert::plugin::types as old;

/// A 0.1 `package-info` as the current one (no schedules).
pub(super) fn package_info(info: old::PackageInfo) -> now::PackageInfo {
    now::PackageInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        author: info.author,
        contract_version: info.contract_version,
        sdk_version: info.sdk_version,
        workflows: info.workflows.into_iter().map(workflow).collect(),
        capabilities: now::Capabilities {
            env: info.capabilities.env,
            dirs: info
                .capabilities
                .dirs
                .into_iter()
                .map(|d| now::DirRequest {
                    guest_path: d.guest_path,
                    writable: d.writable,
                })
                .collect(),
            http_hosts: info.capabilities.http_hosts,
            wall_clock: info.capabilities.wall_clock,
            random: info.capabilities.random,
        },
        schedules: Vec::new(),
    }
}

fn workflow(w: old::WorkflowSpec) -> now::WorkflowSpec {
    now::WorkflowSpec {
        name: w.name,
        description: w.description,
        tasks: w.tasks.into_iter().map(task).collect(),
    }
}

fn task(t: old::TaskSpec) -> now::TaskSpec {
    now::TaskSpec {
        id: t.id,
        description: t.description,
        dependencies: t.dependencies,
        retry: now::RetryPolicy {
            max_attempts: t.retry.max_attempts,
            backoff: match t.retry.backoff {
                old::Backoff::Fixed => now::Backoff::Fixed,
                old::Backoff::Linear => now::Backoff::Linear,
                old::Backoff::Exponential => now::Backoff::Exponential,
            },
            initial_delay_ms: t.retry.initial_delay_ms,
            max_delay_ms: t.retry.max_delay_ms,
            jitter: t.retry.jitter,
            retry_on: match t.retry.retry_on {
                old::RetryOn::AllErrors => now::RetryOn::AllErrors,
                old::RetryOn::TransientOnly => now::RetryOn::TransientOnly,
                old::RetryOn::Never => now::RetryOn::Never,
            },
        },
        timeout_ms: t.timeout_ms,
        trigger: t.trigger.map(trigger),
    }
}

fn trigger(t: old::TriggerRule) -> now::TriggerRule {
    let list = |c: Vec<old::Condition>| c.into_iter().map(condition).collect();
    match t {
        old::TriggerRule::Always => now::TriggerRule::Always,
        old::TriggerRule::All(c) => now::TriggerRule::All(list(c)),
        old::TriggerRule::Any(c) => now::TriggerRule::Any(list(c)),
        old::TriggerRule::None(c) => now::TriggerRule::None(list(c)),
    }
}

fn condition(c: old::Condition) -> now::Condition {
    let kv = |k: old::KeyValue| now::KeyValue {
        key: k.key,
        value_json: k.value_json,
    };
    match c {
        old::Condition::TaskSucceeded(t) => now::Condition::TaskSucceeded(t),
        old::Condition::TaskFailed(t) => now::Condition::TaskFailed(t),
        old::Condition::TaskSkipped(t) => now::Condition::TaskSkipped(t),
        old::Condition::ContextExists(k) => now::Condition::ContextExists(k),
        old::Condition::ContextEquals(k) => now::Condition::ContextEquals(kv(k)),
        old::Condition::ContextNotEquals(k) => now::Condition::ContextNotEquals(kv(k)),
        old::Condition::ContextGreaterThan(k) => now::Condition::ContextGreaterThan(kv(k)),
        old::Condition::ContextLessThan(k) => now::Condition::ContextLessThan(kv(k)),
        old::Condition::ContextContains(k) => now::Condition::ContextContains(kv(k)),
    }
}

/// The current `attempt-info` as 0.1's.
pub(super) fn attempt_info(a: &now::AttemptInfo) -> old::AttemptInfo {
    old::AttemptInfo {
        execution_id: a.execution_id.clone(),
        attempt: a.attempt,
        max_attempts: a.max_attempts,
    }
}

/// A 0.1 `task-error` as the current one.
pub(super) fn task_error(e: old::TaskError) -> now::TaskError {
    now::TaskError {
        kind: match e.kind {
            old::ErrorKind::Transient => now::ErrorKind::Transient,
            old::ErrorKind::Permanent => now::ErrorKind::Permanent,
        },
        message: e.message,
    }
}

/// A 0.1 `log-level` as the current one.
pub(crate) fn log_level(l: old::LogLevel) -> now::LogLevel {
    match l {
        old::LogLevel::Trace => now::LogLevel::Trace,
        old::LogLevel::Debug => now::LogLevel::Debug,
        old::LogLevel::Info => now::LogLevel::Info,
        old::LogLevel::Warn => now::LogLevel::Warn,
        old::LogLevel::Error => now::LogLevel::Error,
    }
}
