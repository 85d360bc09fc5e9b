//! When a task whose dependencies are finished runs or is skipped:
//! [`decide`] and [`decide_root`].

use super::status::TaskStatus;
use crate::package::{Condition, TaskMeta, TriggerRule};
use serde_json::{Map, Value};

/// What scheduling knows of a finished dependency.
#[derive(Debug, Clone)]
pub struct DepState {
    /// The dependency's id.
    pub task_id: String,
    /// Its status (finished).
    pub status: TaskStatus,
}

/// Whether a task whose dependencies are finished runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run with this input.
    Run {
        /// The merged input context.
        input: Map<String, Value>,
    },
    /// Skip, for this reason; the input passes through as its output.
    Skip {
        /// Why.
        reason: String,
        /// The merged input context.
        input: Map<String, Value>,
    },
}

/// Decide whether `task` runs, given its finished dependencies (in
/// declared order) and its merged input context.
pub fn decide(task: &TaskMeta, deps: &[DepState], input: Map<String, Value>) -> Decision {
    evaluate(task, deps, input)
}

/// A root task's decision: its input is the initial context, which its
/// trigger rule's context conditions see.
pub fn decide_root(task: &TaskMeta, initial: &Map<String, Value>) -> Decision {
    evaluate(task, &[], initial.clone())
}

fn evaluate(task: &TaskMeta, deps: &[DepState], input: Map<String, Value>) -> Decision {
    let status_of = |id: &str| deps.iter().find(|d| d.task_id == id).map(|d| d.status);
    match &task.trigger {
        None => match deps.iter().find(|d| d.status != TaskStatus::Completed) {
            None => Decision::Run { input },
            Some(d) => Decision::Skip {
                reason: format!("dependency '{}' {}", d.task_id, d.status),
                input,
            },
        },
        Some(rule) => {
            let holds = |c: &Condition| condition_holds(c, &status_of, &input);
            let runs = match rule {
                TriggerRule::Always => true,
                TriggerRule::All(cs) => cs.iter().all(holds),
                TriggerRule::Any(cs) => cs.iter().any(holds),
                TriggerRule::None(cs) => !cs.iter().any(holds),
            };
            if runs {
                Decision::Run { input }
            } else {
                Decision::Skip {
                    reason: format!("trigger rule not met: {rule}"),
                    input,
                }
            }
        }
    }
}

fn condition_holds(
    c: &Condition,
    status_of: &dyn Fn(&str) -> Option<TaskStatus>,
    ctx: &Map<String, Value>,
) -> bool {
    let num = |v: &Value| v.as_f64();
    match c {
        Condition::TaskSucceeded { task } => status_of(task) == Some(TaskStatus::Completed),
        Condition::TaskFailed { task } => status_of(task) == Some(TaskStatus::Failed),
        Condition::TaskSkipped { task } => status_of(task) == Some(TaskStatus::Skipped),
        Condition::ContextExists { key } => ctx.contains_key(key),
        Condition::ContextEquals { key, value } => ctx.get(key) == Some(value),
        Condition::ContextNotEquals { key, value } => ctx.get(key) != Some(value),
        Condition::ContextGreaterThan { key, value } => {
            matches!((ctx.get(key).and_then(num), num(value)), (Some(a), Some(b)) if a > b)
        }
        Condition::ContextLessThan { key, value } => {
            matches!((ctx.get(key).and_then(num), num(value)), (Some(a), Some(b)) if a < b)
        }
        Condition::ContextContains { key, value } => match (ctx.get(key), value) {
            (Some(Value::String(s)), Value::String(needle)) => s.contains(needle.as_str()),
            (Some(Value::Array(items)), v) => items.contains(v),
            _ => false,
        },
    }
}
