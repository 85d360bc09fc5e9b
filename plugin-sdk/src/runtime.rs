//! What the macro expansions call: building the package info, dispatching
//! `task.run` to the right function, the [`WorkflowDefinition`] every
//! `#[workflow]` module implements, and the check that `export_package!`
//! exports it.

#[cfg(target_arch = "wasm32")]
use crate::bindings::culvert::plugin::host;
use crate::bindings::culvert::plugin::types as wit;
use crate::{Attempt, Context, TaskError, TaskErrorKind};

pub use wit::{
    AttemptInfo, Backoff, Capabilities, CatchUp, Condition, DirRequest, KeyValue, Overlap,
    PackageInfo, RetryOn, RetryPolicy, ScheduleSpec, TaskSpec, TriggerRule, WorkflowSpec,
};

/// The WIT task error, as `task.run` returns it.
pub use wit::TaskError as WitTaskError;

/// The log field that marks a record as a panic message. The host records
/// the message as the reason of the trap that follows.
pub const PANIC_FIELD: &str = "culvert.panic";

/// A workflow, as `#[culvert_sdk::workflow]` defines it: its name, its spec
/// and its task dispatcher.
///
/// The macro implements it for the `Workflow` type it adds to the module, so
/// `etl::Workflow` stands for the workflow of `mod etl`. You never implement
/// it yourself; [`testing`](crate::testing) takes such a type to run the
/// workflow natively.
pub trait WorkflowDefinition {
    /// The workflow's name, as the host and `culvert run` know it.
    const NAME: &'static str;

    /// The workflow's spec, as `describe` reports it.
    #[doc(hidden)]
    fn spec() -> WorkflowSpec;

    /// Run task `task` on `ctx`: `None` when the workflow has no such task.
    #[doc(hidden)]
    fn run(task: &str, ctx: &mut Context) -> Option<Result<(), TaskError>>;
}

/// Implemented by `export_package!` for each workflow it exports. Every
/// `#[workflow]` module asserts it of its `Workflow` type, so a crate that
/// forgets `export_package!` (and would build a component that exports
/// nothing) fails to compile with this message.
#[diagnostic::on_unimplemented(
    message = "this #[workflow] module is not exported: add `culvert_sdk::export_package!(...)` naming it",
    label = "not named in any `culvert_sdk::export_package!(...)` of this crate",
    note = "a package exports its workflows once, at the crate root: `culvert_sdk::export_package!(my_workflow);` lists every #[workflow] module"
)]
pub trait Exported {}

/// Compiles only for an exported workflow (see [`Exported`]).
pub const fn assert_exported<T: Exported>() {}

/// A workflow's entry: its name and its task dispatcher.
pub type Dispatch = fn(&str, &mut Context) -> Option<Result<(), TaskError>>;

/// One exported workflow, as `export_package!` lists them.
pub struct WorkflowEntry {
    /// The workflow's name.
    pub name: &'static str,
    /// Builds the workflow's spec.
    pub spec: fn() -> WorkflowSpec,
    /// Builds the schedules it declares (`#[workflow(schedule(...))]`).
    pub schedules: fn() -> Vec<ScheduleSpec>,
    /// Runs one of its tasks.
    pub run: Dispatch,
}

/// Package-level facts for `describe`.
pub struct PackageFacts {
    /// Package name.
    pub name: &'static str,
    /// Package version.
    pub version: &'static str,
    /// Free text.
    pub description: &'static str,
    /// Who wrote it.
    pub author: &'static str,
}

/// Build the package info for `describe`.
pub fn describe(
    facts: &PackageFacts,
    workflows: &[WorkflowEntry],
    capabilities: Capabilities,
) -> PackageInfo {
    install_panic_hook();
    PackageInfo {
        name: facts.name.to_string(),
        version: facts.version.to_string(),
        description: facts.description.to_string(),
        author: facts.author.to_string(),
        contract_version: crate::CONTRACT_VERSION.to_string(),
        sdk_version: crate::SDK_VERSION.to_string(),
        workflows: workflows.iter().map(|w| (w.spec)()).collect(),
        capabilities,
        schedules: workflows.iter().flat_map(|w| (w.schedules)()).collect(),
    }
}

/// No capabilities at all: the default.
pub fn no_capabilities() -> Capabilities {
    Capabilities {
        env: Vec::new(),
        dirs: Vec::new(),
        http_hosts: Vec::new(),
        wall_clock: false,
        random: false,
    }
}

/// Run one task: parse the context, call the task, serialize the result.
pub fn run(
    workflows: &[WorkflowEntry],
    workflow: &str,
    task: &str,
    context_json: &str,
    attempt: AttemptInfo,
) -> Result<String, wit::TaskError> {
    install_panic_hook();
    let entry = workflows
        .iter()
        .find(|w| w.name == workflow)
        .ok_or_else(|| permanent(format!("this package has no workflow '{workflow}'")))?;
    let data: serde_json::Map<String, serde_json::Value> = serde_json::from_str(context_json)
        .map_err(|e| permanent(format!("the context is not a JSON object: {e}")))?;
    let mut ctx = Context::from_parts(
        data,
        Attempt {
            execution_id: attempt.execution_id,
            number: attempt.attempt,
            max_attempts: attempt.max_attempts,
        },
    );
    match (entry.run)(task, &mut ctx) {
        None => Err(permanent(format!(
            "workflow '{workflow}' has no task '{task}'"
        ))),
        Some(Err(e)) => Err(to_wit(e)),
        Some(Ok(())) => serde_json::to_string(ctx.as_map())
            .map_err(|e| permanent(format!("the output context does not serialize: {e}"))),
    }
}

fn permanent(message: String) -> wit::TaskError {
    to_wit(TaskError::permanent(message))
}

fn to_wit(e: TaskError) -> wit::TaskError {
    wit::TaskError {
        kind: match e.kind {
            TaskErrorKind::Transient => wit::ErrorKind::Transient,
            TaskErrorKind::Permanent => wit::ErrorKind::Permanent,
        },
        message: e.message,
    }
}

/// Send panic messages to the host before the panic aborts the instance, so
/// that the host can report the message with the trap. Natively (under
/// `cargo test`) there is no host, and the default hook stays.
#[cfg(not(target_arch = "wasm32"))]
fn install_panic_hook() {}

/// Send panic messages to the host before the panic aborts the instance, so
/// that the host can report the message with the trap.
#[cfg(target_arch = "wasm32")]
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "Box<dyn Any>".to_string()
            };
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            host::log(
                wit::LogLevel::Error,
                &message,
                &[
                    (PANIC_FIELD.to_string(), "1".to_string()),
                    ("location".to_string(), location),
                ],
            );
        }));
    });
}

/// The default retry policy of a task with no `retry(...)`: one attempt.
pub fn no_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        backoff: Backoff::Exponential,
        initial_delay_ms: 1000,
        max_delay_ms: 60_000,
        jitter: true,
        retry_on: RetryOn::TransientOnly,
    }
}
