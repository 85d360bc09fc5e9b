//! Calling into a package: `describe`, and running one task.
//!
//! Every call instantiates from the cached `InstancePre` into a fresh
//! [`Store`](wasmtime::Store) (see [`crate::sandbox`]): no state survives from
//! one call to the next, and a trap in one call cannot poison another. The
//! call runs under the deadline, memory cap, output budget and optional fuel
//! of its [`SandboxLimits`].
//!
//! A failed call becomes a [`TaskFailure`] whose [`FailureKind`] says what
//! happened; the executor decides retries from it (see
//! [`FailureKind::is_transient`]).

use super::cache::Compiled;
use crate::contract::types::{self as wit, AttemptInfo};
use crate::sandbox::{
    self, CallLabels, CancelFlag, HostState, Interrupt, SandboxEngine, SandboxLimits, TaskLogs,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Trap;

/// Declares [`FailureKind`] from one list of variants and their stored
/// names, so that the enum, [`FailureKind::as_str`] and
/// [`FailureKind::parse`] cannot drift apart.
macro_rules! failure_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// What kind of failure a call ended in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum FailureKind {
            $($(#[doc = $doc])* $variant,)*
        }

        impl FailureKind {
            /// Every kind, in declaration order.
            pub const ALL: &[FailureKind] = &[$(FailureKind::$variant),*];

            /// The snake_case name used in JSON and the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FailureKind::$variant => $name,)*
                }
            }
        }
    };
}

failure_kinds! {
    /// The task returned a transient error.
    Transient => "transient",
    /// The task returned a permanent error.
    Permanent => "permanent",
    /// The deadline passed (a CPU loop, or a call blocked in the host).
    Timeout => "timeout",
    /// The guest hit its memory or table cap.
    OutOfMemory => "out_of_memory",
    /// The guest used up its fuel.
    OutOfFuel => "out_of_fuel",
    /// The guest overflowed its wasm stack.
    StackOverflow => "stack_overflow",
    /// The guest panicked (Rust); the message is the panic's.
    Panic => "panic",
    /// Any other trap: `unreachable`, a bad memory access, ...
    Trap => "trap",
    /// The guest wrote more stdout, stderr and log than its budget.
    OutputLimit => "output_limit",
    /// The returned context is too large, not JSON, too deep, or not an
    /// object.
    InvalidOutput => "invalid_output",
    /// A context around the call is over the tenant's limit: the input
    /// merged from the dependencies' outputs (`max_context_bytes`), or the
    /// output would bring the execution's stored outputs over
    /// `max_execution_output_bytes`. Never retried.
    ContextTooLarge => "context_too_large",
    /// The call was cancelled.
    Cancelled => "cancelled",
    /// The host could not run the call (for example, no free instance slot).
    Host => "host",
}

impl FailureKind {
    /// Whether a retry could help, before the task's `retry-on` policy has
    /// its say. Transient: a transient task error, a timeout, running out of
    /// memory, and host-side trouble. Everything else is permanent, and a
    /// cancellation is never retried.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureKind::Transient
                | FailureKind::Timeout
                | FailureKind::OutOfMemory
                | FailureKind::Host
        )
    }

    /// Parse [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed guest call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TaskFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The details: the task's own message, the panic message, or what the
    /// host saw.
    pub message: String,
}

impl TaskFailure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A successful task call.
#[derive(Debug, Clone)]
pub struct TaskOutput {
    /// The task's output context.
    pub context: serde_json::Map<String, serde_json::Value>,
    /// Wall time of the call, instantiation included.
    pub elapsed: Duration,
}

/// What one task call ended in, and what its guest said meanwhile (log
/// records, stdout and stderr lines, capped at
/// [`TASK_LOG_BYTES`](crate::TASK_LOG_BYTES)), whatever the ending.
#[derive(Debug, Clone)]
pub struct TaskRun {
    /// The output, or why the call failed.
    pub result: Result<TaskOutput, TaskFailure>,
    /// What the guest said; empty when it never ran.
    pub logs: TaskLogs,
}

/// One task call.
#[derive(Debug, Clone)]
pub struct TaskCall<'a> {
    /// The workflow's name.
    pub workflow: &'a str,
    /// The task's id.
    pub task: &'a str,
    /// The input context, a JSON object.
    pub context_json: &'a str,
    /// The execution's id.
    pub execution_id: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The task's max attempts.
    pub max_attempts: u32,
}

/// The longest task error message kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("… (truncated)");
    }
    s
}

/// Call `describe` in a fresh store under `limits`.
///
/// # Errors
/// A [`TaskFailure`] for a trap, timeout or limit.
pub async fn describe(
    engine: &SandboxEngine,
    compiled: &Compiled,
    limits: &SandboxLimits,
    labels: Arc<CallLabels>,
) -> Result<wit::PackageInfo, TaskFailure> {
    let mut store = sandbox::new_store(engine, limits, labels.clone(), None)
        .map_err(|e| TaskFailure::new(FailureKind::Host, format!("{e:#}")))?;
    let outcome = tokio::time::timeout(limits.timeout + sandbox::grace(engine), async {
        compiled.pre.describe(&mut store).await
    })
    .await;
    let result = match outcome {
        Err(_elapsed) => Err(timeout_failure(limits.timeout, true)),
        Ok(Err(e)) => Err(classify(e, store.data(), limits)),
        Ok(Ok(info)) => Ok(info),
    };
    store.data().output.flush_to_tracing(&labels);
    result
}

/// Run one task in a fresh store under `limits`.
///
/// # Errors
/// A [`TaskFailure`]: the task's own error, or what stopped it.
pub async fn run_task(
    engine: &SandboxEngine,
    compiled: &Compiled,
    call: &TaskCall<'_>,
    limits: &SandboxLimits,
    labels: Arc<CallLabels>,
    cancel: Option<CancelFlag>,
) -> Result<TaskOutput, TaskFailure> {
    run_task_logged(engine, compiled, call, limits, labels, cancel)
        .await
        .result
}

/// [`run_task`], also returning what the guest said: its log records and
/// its stdout and stderr lines, in order, capped at
/// [`TASK_LOG_BYTES`](crate::TASK_LOG_BYTES) (see [`TaskRun`]). They are
/// also sent to `tracing`, as with [`run_task`].
pub async fn run_task_logged(
    engine: &SandboxEngine,
    compiled: &Compiled,
    call: &TaskCall<'_>,
    limits: &SandboxLimits,
    labels: Arc<CallLabels>,
    cancel: Option<CancelFlag>,
) -> TaskRun {
    let started = Instant::now();
    let cancel_wait = cancel.clone();
    let mut store = match sandbox::new_store(engine, limits, labels.clone(), cancel) {
        Ok(store) => store,
        Err(e) => {
            return TaskRun {
                result: Err(TaskFailure::new(FailureKind::Host, format!("{e:#}"))),
                logs: TaskLogs::default(),
            };
        }
    };
    let attempt = AttemptInfo {
        execution_id: call.execution_id.to_string(),
        attempt: call.attempt,
        max_attempts: call.max_attempts,
    };
    let call_future = tokio::time::timeout(limits.timeout + sandbox::grace(engine), async {
        compiled
            .pre
            .run(
                &mut store,
                call.workflow,
                call.task,
                call.context_json,
                &attempt,
            )
            .await
    });
    // A guest waiting in a host call never reaches an epoch check: a
    // cancellation drops the call instead.
    let outcome = match &cancel_wait {
        Some(flag) => tokio::select! {
            o = call_future => Some(o),
            _ = flag.cancelled() => None,
        },
        None => Some(call_future.await),
    };
    // Responses the guest still holds are dropped now, so that the host
    // records of their requests reach the logs taken below.
    store.data_mut().release_resources();
    let Some(outcome) = outcome else {
        store.data().output.flush_to_tracing(&labels);
        return TaskRun {
            result: Err(TaskFailure::new(
                FailureKind::Cancelled,
                "cancelled while running",
            )),
            logs: store.data().output.take_logs(),
        };
    };
    let returned = match outcome {
        Err(_elapsed) => Err(timeout_failure(limits.timeout, true)),
        Ok(Err(e)) => Err(classify(e, store.data(), limits)),
        Ok(Ok(returned)) => Ok(returned),
    };
    store.data().output.flush_to_tracing(&labels);
    let logs = store.data().output.take_logs();
    // A guest whose runtime survives a refused memory.grow (CPython raises
    // MemoryError) returns a task error instead of trapping: the cap
    // stopped it all the same. Only that error is reclassified; a guest
    // that recovered and failed later for another reason keeps its kind.
    let memory_hit = store.data().limiter.hit.clone();
    drop(store);
    let result = match (returned, memory_hit) {
        (Err(failure), _) => Err(failure),
        (Ok(Err(e)), Some(hit))
            if e.message.starts_with("MemoryError") || e.message.contains("out of memory") =>
        {
            Err(TaskFailure::new(
                FailureKind::OutOfMemory,
                format!(
                    "{hit}; the task then failed: {}",
                    truncate(e.message, MAX_MESSAGE_BYTES)
                ),
            ))
        }
        (Ok(returned), _) => finish(returned, limits, started),
    };
    TaskRun { result, logs }
}

/// A returned call's result: the task's own error, or its output context,
/// parsed and bounded.
fn finish(
    returned: Result<String, wit::TaskError>,
    limits: &SandboxLimits,
    started: Instant,
) -> Result<TaskOutput, TaskFailure> {
    match returned {
        Err(e) => Err(TaskFailure::new(
            match e.kind {
                wit::ErrorKind::Transient => FailureKind::Transient,
                wit::ErrorKind::Permanent => FailureKind::Permanent,
            },
            truncate(e.message, MAX_MESSAGE_BYTES),
        )),
        Ok(json) => {
            let context = parse_context(&json, limits.max_context_bytes)?;
            Ok(TaskOutput {
                context,
                elapsed: started.elapsed(),
            })
        }
    }
}

/// Parse and bound a context a guest returned.
///
/// # Errors
/// [`FailureKind::InvalidOutput`] when it is too large, not JSON, nested
/// deeper than serde_json's limit of 128, or not an object.
pub fn parse_context(
    json: &str,
    max_bytes: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, TaskFailure> {
    if json.len() > max_bytes {
        return Err(TaskFailure::new(
            FailureKind::InvalidOutput,
            format!(
                "the output context is {} bytes, over the limit of {max_bytes}",
                json.len()
            ),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(TaskFailure::new(
            FailureKind::InvalidOutput,
            format!(
                "the output context must be a JSON object, not {}",
                json_type(&other)
            ),
        )),
        Err(e) => Err(TaskFailure::new(
            FailureKind::InvalidOutput,
            format!("the output context is not valid JSON: {e}"),
        )),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn timeout_failure(timeout: Duration, blocked: bool) -> TaskFailure {
    TaskFailure::new(
        FailureKind::Timeout,
        if blocked {
            format!(
                "exceeded its {} ms deadline (stopped while not running wasm: waiting in a host call, or paused for its tenant's CPU share)",
                timeout.as_millis()
            )
        } else {
            format!("exceeded its {} ms deadline", timeout.as_millis())
        },
    )
}

/// Turn a call's error into a [`TaskFailure`], using what the store
/// recorded (interrupts, limits, panic messages) before the trap code.
pub(crate) fn classify(
    error: wasmtime::Error,
    state: &HostState,
    limits: &SandboxLimits,
) -> TaskFailure {
    match state.interrupted {
        Some(Interrupt::Timeout) => return timeout_failure(limits.timeout, false),
        Some(Interrupt::Cancelled) => {
            return TaskFailure::new(FailureKind::Cancelled, "cancelled while running");
        }
        None => {}
    }
    if state.output.exceeded() {
        return TaskFailure::new(
            FailureKind::OutputLimit,
            format!(
                "output limit of {} bytes exceeded (stdout, stderr and log together)",
                state.output.cap()
            ),
        );
    }
    if let Some(hit) = &state.limiter.hit {
        return TaskFailure::new(FailureKind::OutOfMemory, hit.clone());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => {
                return TaskFailure::new(
                    FailureKind::OutOfFuel,
                    format!("ran out of fuel ({} units)", limits.fuel.unwrap_or(0)),
                );
            }
            Trap::StackOverflow => {
                return TaskFailure::new(
                    FailureKind::StackOverflow,
                    "wasm stack overflow (unbounded recursion?)",
                );
            }
            Trap::Interrupt => return timeout_failure(limits.timeout, false),
            _ => {}
        }
    }
    if let Some(message) = &state.panic_message {
        return TaskFailure::new(FailureKind::Panic, format!("panicked: {message}"));
    }
    let text = format!("{error:#}");
    if let Some(Trap::UnreachableCodeReached) = error.downcast_ref::<Trap>() {
        // A Rust guest without the SDK's panic hook prints its panic to
        // stderr before aborting.
        if let Some(message) = state.output.panic_on_stderr() {
            return TaskFailure::new(FailureKind::Panic, format!("panicked: {message}"));
        }
    }
    if let Some(Trap::MemoryOutOfBounds) = error.downcast_ref::<Trap>() {
        // Rust and C guests keep a shadow stack in linear memory that grows
        // down from a fixed address; overflowing it wraps the stack pointer
        // to just below 4 GiB. A fault there is a stack overflow.
        if text.contains("wasm address 0xfff") {
            return TaskFailure::new(
                FailureKind::StackOverflow,
                "shadow stack overflow in linear memory (unbounded recursion?)",
            );
        }
    }
    if text.contains("pooling") || text.contains("maximum concurrent") {
        return TaskFailure::new(FailureKind::Host, truncate(text, MAX_MESSAGE_BYTES));
    }
    TaskFailure::new(FailureKind::Trap, truncate(text, MAX_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_bounded_and_must_be_objects() {
        assert!(parse_context(r#"{"a":1}"#, 100).is_ok());
        assert_eq!(
            parse_context(r#"{"a":1}"#, 3).unwrap_err().kind,
            FailureKind::InvalidOutput
        );
        assert!(
            parse_context("[1]", 100)
                .unwrap_err()
                .message
                .contains("an array")
        );
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let wrapped = format!(r#"{{"a":{deep}}}"#);
        let err = parse_context(&wrapped, usize::MAX).unwrap_err();
        assert!(err.message.contains("recursion limit"), "{}", err.message);
    }

    #[test]
    fn failure_kinds_round_trip_and_classify_retries() {
        for &k in FailureKind::ALL {
            assert_eq!(FailureKind::parse(k.as_str()), Some(k));
            // The stored name is the serde name.
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
        assert_eq!(FailureKind::ALL.len(), 13);
        assert!(FailureKind::Timeout.is_transient());
        assert!(FailureKind::OutOfMemory.is_transient());
        assert!(!FailureKind::OutOfFuel.is_transient());
        assert!(!FailureKind::Permanent.is_transient());
        assert!(!FailureKind::Cancelled.is_transient());
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let s = "é".repeat(10);
        let t = truncate(s, 5);
        assert!(t.starts_with("éé"));
        assert!(t.ends_with("(truncated)"));
    }
}
