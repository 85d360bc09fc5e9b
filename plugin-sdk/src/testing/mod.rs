//! Run a package's workflows and tasks natively, under `cargo test`, with
//! no wasm and no host.
//!
//! ```
//! #[culvert_sdk::workflow(name = "etl")]
//! mod etl {
//!     #[task(id = "extract")]
//!     fn extract(ctx: &mut Context) -> Result<(), TaskError> {
//!         culvert_sdk::log::info("extracting");
//!         ctx.insert("rows", vec![1, 2, 3])?;
//!         Ok(())
//!     }
//!
//!     #[task(id = "sum", dependencies = ["extract"])]
//!     fn sum(ctx: &mut Context) -> Result<(), TaskError> {
//!         let rows: Vec<i64> = ctx.get("rows")?;
//!         ctx.insert("total", rows.iter().sum::<i64>())?;
//!         Ok(())
//!     }
//!
//!     #[task(id = "report", dependencies = ["sum"],
//!            trigger = all(succeeded("sum"), equals("report", true)))]
//!     fn report(ctx: &mut Context) -> Result<(), TaskError> {
//!         ctx.insert("reported", true)?;
//!         Ok(())
//!     }
//! }
//! culvert_sdk::export_package!(etl);
//!
//! # fn main() {
//! use culvert_sdk::testing::{self, Status, json};
//!
//! let run = testing::run_workflow::<etl::Workflow>(json!({ "report": false }));
//! assert!(run.succeeded());
//! assert_eq!(run.context["total"], 6);
//! assert_eq!(run.status("report"), Status::Skipped);
//! assert_eq!(run.task("extract").logs[0].message, "extracting");
//!
//! let sum = testing::run_task::<etl::Workflow>("sum", json!({ "rows": [4, 5] }));
//! assert_eq!(sum.output.unwrap()["total"], 9);
//! # }
//! ```
//!
//! `etl::Workflow` is the type `#[culvert_sdk::workflow]` adds to the module
//! `etl` (it implements [`WorkflowDefinition`]). A run follows the host's
//! rules (docs/EXECUTION.md):
//!
//! - tasks run one at a time in dependency order (among the tasks whose
//!   dependencies are finished, the one declared first);
//! - a root receives the initial context; a task with dependencies receives
//!   the merge of their outputs, in declared order: objects merge
//!   recursively, arrays are unioned keeping order, any other value is
//!   replaced by the later one;
//! - without a trigger rule, a task runs when every dependency completed;
//!   with one, when the rule holds on the dependencies' statuses and the
//!   task's input. A skipped task's output is its input; a failed task has
//!   none;
//! - a failed attempt is retried as the task's retry policy says (attempt
//!   numbers, `max_attempts`, `retry_on`); nothing sleeps: the delay the
//!   host would wait is recorded in [`TaskRun::retry_delays_ms`] (before
//!   jitter, which makes the host wait between half of it and all of it);
//! - a panicking task fails with kind [`FailureKind::Panic`], as on the
//!   host, instead of ending the test;
//! - the final context is the merge, in declaration order, of the outputs of
//!   the leaf tasks that have one.
//!
//! What it does not do: sandbox limits, timeouts, capabilities, the
//! context size limits, running tasks in parallel. [`crate::log`] records
//! made while a task runs are captured into its [`TaskRun::logs`]; outside a
//! run, in a native build, they go to stderr.

mod rules;

use crate::bindings::culvert::plugin::types::{TaskSpec, WorkflowSpec};
use crate::log::Level;
use crate::{Attempt, Context, TaskError, TaskErrorKind, WorkflowDefinition};
use serde_json::Map;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use serde_json::{Value, json};

/// The execution id tasks see in [`Context::attempt`] during a native run.
pub const EXECUTION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Run workflow `W` with `initial` as its initial context (a JSON object).
///
/// # Panics
/// When `initial` is not a JSON object.
pub fn run_workflow<W: WorkflowDefinition>(initial: Value) -> Run {
    Workflow::of::<W>().run(initial)
}

/// Run task `task` of workflow `W` on `input` (a JSON object), under the
/// task's retry policy, whatever its dependencies and trigger rule.
///
/// # Panics
/// When `input` is not a JSON object, or the workflow has no task `task`.
pub fn run_task<W: WorkflowDefinition>(task: &str, input: Value) -> TaskRun {
    Workflow::of::<W>().run_task(task, input)
}

/// A workflow to run natively: its spec and its task functions.
pub struct Workflow {
    name: &'static str,
    spec: WorkflowSpec,
    dispatch: fn(&str, &mut Context) -> Option<Result<(), TaskError>>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.name)
            .field("tasks", &self.task_ids())
            .finish()
    }
}

impl Workflow {
    /// The workflow of a `#[culvert_sdk::workflow]` module: `Workflow::of::<etl::Workflow>()`.
    pub fn of<W: WorkflowDefinition>() -> Self {
        Self {
            name: W::NAME,
            spec: W::spec(),
            dispatch: W::run,
        }
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Its task ids, in declaration order.
    pub fn task_ids(&self) -> Vec<&str> {
        self.spec.tasks.iter().map(|t| t.id.as_str()).collect()
    }

    /// Run the whole workflow from `initial` (a JSON object).
    ///
    /// # Panics
    /// When `initial` is not a JSON object.
    pub fn run(&self, initial: Value) -> Run {
        let initial = object(initial, "the initial context");
        let tasks = &self.spec.tasks;
        let index: HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut waiting: Vec<usize> = tasks.iter().map(|t| t.dependencies.len()).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            for d in &t.dependencies {
                let &j = index
                    .get(d.as_str())
                    .unwrap_or_else(|| panic!("task '{}' depends on unknown task '{d}'", t.id));
                dependents[j].push(i);
            }
        }
        // Ready tasks by declaration index: the first declared runs first.
        let mut ready: BTreeSet<usize> = (0..tasks.len()).filter(|&i| waiting[i] == 0).collect();
        let mut done: Vec<Option<TaskRun>> = (0..tasks.len()).map(|_| None).collect();
        let mut order = Vec::with_capacity(tasks.len());
        while let Some(i) = ready.pop_first() {
            let spec = &tasks[i];
            let input = if spec.dependencies.is_empty() {
                initial.clone()
            } else {
                let mut merged = Map::new();
                for d in &spec.dependencies {
                    if let Some(Value::Object(out)) = done[index[d.as_str()]]
                        .as_ref()
                        .and_then(|r| r.output.as_ref())
                    {
                        rules::merge_into(&mut merged, out);
                    }
                }
                merged
            };
            let status_of = |id: &str| {
                index
                    .get(id)
                    .and_then(|&j| done[j].as_ref())
                    .map(|r| r.status)
            };
            let run = match rules::decide(
                spec.trigger.as_ref(),
                &spec.dependencies,
                &status_of,
                &input,
            ) {
                Ok(()) => self.attempts(spec, input),
                Err(reason) => TaskRun::skipped(&spec.id, input, reason),
            };
            done[i] = Some(run);
            order.push(i);
            for &k in &dependents[i] {
                waiting[k] -= 1;
                if waiting[k] == 0 {
                    ready.insert(k);
                }
            }
        }
        assert!(
            order.len() == tasks.len(),
            "workflow '{}' has a dependency cycle",
            self.name
        );
        let mut context = Map::new();
        for (i, run) in done.iter().enumerate() {
            if dependents[i].is_empty()
                && let Some(Value::Object(out)) = run.as_ref().and_then(|r| r.output.as_ref())
            {
                rules::merge_into(&mut context, out);
            }
        }
        let tasks: Vec<TaskRun> = order.into_iter().filter_map(|i| done[i].take()).collect();
        let error = tasks.iter().find_map(|t| {
            t.failure
                .as_ref()
                .map(|f| format!("task '{}' failed: {f}", t.id))
        });
        Run {
            workflow: self.name.to_string(),
            tasks,
            context: Value::Object(context),
            error,
        }
    }

    /// Run task `task` on `input` (a JSON object), under its retry policy,
    /// whatever its dependencies and trigger rule.
    ///
    /// # Panics
    /// When `input` is not a JSON object, or the workflow has no task `task`.
    pub fn run_task(&self, task: &str, input: Value) -> TaskRun {
        let input = object(input, "the task's input");
        let spec = self
            .spec
            .tasks
            .iter()
            .find(|t| t.id == task)
            .unwrap_or_else(|| {
                panic!(
                    "workflow '{}' has no task '{task}' (it has: {})",
                    self.name,
                    self.task_ids().join(", ")
                )
            });
        self.attempts(spec, input)
    }

    /// Attempt `spec` on `input` until it succeeds or its retry policy
    /// gives up.
    fn attempts(&self, spec: &TaskSpec, input: Map<String, Value>) -> TaskRun {
        let mut run = TaskRun {
            id: spec.id.clone(),
            status: Status::Failed,
            input: Value::Object(input.clone()),
            output: None,
            attempts: 0,
            retry_delays_ms: Vec::new(),
            failures: Vec::new(),
            failure: None,
            skip_reason: None,
            logs: Vec::new(),
        };
        let max_attempts = spec.retry.max_attempts.max(1);
        for attempt in 1.. {
            run.attempts = attempt;
            let (result, logs) = self.call(spec, &input, attempt, max_attempts);
            run.logs.extend(logs);
            match result {
                Ok(output) => {
                    run.status = Status::Completed;
                    run.output = Some(Value::Object(output));
                    return run;
                }
                Err(failure) => {
                    let delay = rules::retry_delay(&spec.retry, attempt, failure.kind);
                    run.failures.push(failure);
                    match delay {
                        Some(ms) => run.retry_delays_ms.push(ms),
                        None => break,
                    }
                }
            }
        }
        run.failure = run.failures.last().cloned();
        run
    }

    /// One attempt: the task function on a fresh context, its logs
    /// captured, a panic caught. The output goes through JSON text, as it
    /// does on its way to the host.
    fn call(
        &self,
        spec: &TaskSpec,
        input: &Map<String, Value>,
        attempt: u32,
        max_attempts: u32,
    ) -> (Result<Map<String, Value>, Failure>, Vec<LogRecord>) {
        let mut ctx = Context::from_parts(
            input.clone(),
            Attempt {
                execution_id: EXECUTION_ID.to_string(),
                number: attempt,
                max_attempts,
            },
        );
        let previous = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.dispatch)(&spec.id, &mut ctx)));
        let captured = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
        let logs = captured
            .unwrap_or_default()
            .into_iter()
            .map(|(level, message, fields)| LogRecord {
                task: spec.id.clone(),
                attempt,
                level,
                message,
                fields,
            })
            .collect();
        let result = match outcome {
            Err(payload) => Err(Failure {
                kind: FailureKind::Panic,
                message: panic_message(payload.as_ref()),
            }),
            Ok(None) => Err(Failure {
                kind: FailureKind::Permanent,
                message: format!("workflow '{}' has no task '{}'", self.name, spec.id),
            }),
            Ok(Some(Err(e))) => Err(Failure::from(e)),
            Ok(Some(Ok(()))) => serde_json::to_string(ctx.as_map())
                .and_then(|text| serde_json::from_str(&text))
                .map_err(|e| Failure {
                    kind: FailureKind::Permanent,
                    message: format!("the output context does not serialize: {e}"),
                }),
        };
        (result, logs)
    }
}

fn object(value: Value, what: &str) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("{what} must be a JSON object, not {other}"),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// What happened to a task in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// An attempt succeeded.
    Completed,
    /// Every attempt the retry policy allowed failed.
    Failed,
    /// Not run: its dependencies or its trigger rule said so.
    Skipped,
}

impl Status {
    /// As the host writes it: `completed`, `failed`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed, as the host would classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The task returned [`TaskError::transient`].
    Transient,
    /// The task returned [`TaskError::permanent`] (or a [`crate::ContextError`]).
    Permanent,
    /// The task panicked.
    Panic,
}

impl FailureKind {
    /// As the host writes it: `transient`, `permanent`, `panic`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
            FailureKind::Panic => "panic",
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its kind: whether the retry policy may retry it.
    pub kind: FailureKind,
    /// The task's message (or the panic's).
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl From<TaskError> for Failure {
    fn from(e: TaskError) -> Self {
        Failure {
            kind: match e.kind {
                TaskErrorKind::Transient => FailureKind::Transient,
                TaskErrorKind::Permanent => FailureKind::Permanent,
            },
            message: e.message,
        }
    }
}

/// A [`crate::log`] record made by a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The task that logged it.
    pub task: String,
    /// In which attempt (1 for the first).
    pub attempt: u32,
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its key-value fields, in order.
    pub fields: Vec<(String, String)>,
}

/// One task of a run: what it received, what it did, what it returned.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    /// The task's id.
    pub id: String,
    /// Completed, failed or skipped.
    pub status: Status,
    /// The context it received (a JSON object).
    pub input: Value,
    /// Its output context: the whole context a completed task returned, or
    /// a skipped task's input. `None` for a failed task.
    pub output: Option<Value>,
    /// How many attempts ran (0 for a skipped task).
    pub attempts: u32,
    /// The delay, in ms, the host would wait before each retry (one per
    /// retry, before jitter).
    pub retry_delays_ms: Vec<u64>,
    /// Every failed attempt, in order.
    pub failures: Vec<Failure>,
    /// A failed task's last failure.
    pub failure: Option<Failure>,
    /// Why a skipped task was skipped, in the host's words: `dependency 'a'
    /// failed`, `trigger rule not met: all of [load succeeded, notify == true]`.
    pub skip_reason: Option<String>,
    /// Its log records, every attempt's, in order.
    pub logs: Vec<LogRecord>,
}

impl TaskRun {
    fn skipped(id: &str, input: Map<String, Value>, reason: String) -> Self {
        let input = Value::Object(input);
        TaskRun {
            id: id.to_string(),
            status: Status::Skipped,
            output: Some(input.clone()),
            input,
            attempts: 0,
            retry_delays_ms: Vec::new(),
            failures: Vec::new(),
            failure: None,
            skip_reason: Some(reason),
            logs: Vec::new(),
        }
    }
}

/// A finished native run of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The workflow's name.
    pub workflow: String,
    /// Every task, in the order they were decided (run or skipped).
    pub tasks: Vec<TaskRun>,
    /// The final context: the merge of the leaf tasks' outputs.
    pub context: Value,
    /// For a failed run, the host's error: `task 'T' failed: KIND: MESSAGE`
    /// for the first task that failed.
    pub error: Option<String>,
}

impl Run {
    /// Whether no task failed: the host would mark the execution
    /// `completed`.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    /// Task `id`.
    ///
    /// # Panics
    /// When the workflow has no such task.
    pub fn task(&self, id: &str) -> &TaskRun {
        self.tasks.iter().find(|t| t.id == id).unwrap_or_else(|| {
            panic!(
                "workflow '{}' has no task '{id}' (it has: {})",
                self.workflow,
                self.order().join(", ")
            )
        })
    }

    /// The status of task `id`.
    ///
    /// # Panics
    /// When the workflow has no such task.
    pub fn status(&self, id: &str) -> Status {
        self.task(id).status
    }

    /// The task ids in the order they were decided.
    pub fn order(&self) -> Vec<&str> {
        self.tasks.iter().map(|t| t.id.as_str()).collect()
    }

    /// Every task's log records, in the order they were made.
    pub fn logs(&self) -> impl Iterator<Item = &LogRecord> {
        self.tasks.iter().flat_map(|t| t.logs.iter())
    }
}

/// A log record before it is attributed to a task and an attempt.
type Captured = (Level, String, Vec<(String, String)>);

thread_local! {
    /// The records of the task running on this thread, while [`Workflow`]
    /// runs one.
    static CAPTURE: RefCell<Option<Vec<Captured>>> = const { RefCell::new(None) };
}

/// Where [`crate::log::log`] sends a record in a native build: into the
/// running task's capture, or else to stderr (which `cargo test` captures).
pub(crate) fn record_log(level: Level, message: &str, fields: Vec<(String, String)>) {
    let rest = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(records) => {
            records.push((level, message.to_string(), fields));
            None
        }
        None => Some(fields),
    });
    if let Some(fields) = rest {
        let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        eprintln!("culvert log {level:?}: {message}{fields}");
    }
}
