//! The scheduling rules, as pure functions: when a task runs or is skipped,
//! what context it receives, and what an execution's final context is.
//!
//! None of them runs inside a write transaction: the executor merges a
//! task's input with [`BoundedMerge`] and [`decide`]s when it claims the
//! task, and the store assembles the final context the same way after the
//! transaction that recorded the last completion. Merges are linear in the
//! size of what they merge (arrays are unioned through a hash index) and
//! stop at a byte limit.
//!
//! ## Context passing (cloacina's rules)
//!
//! - A task with no dependencies receives the execution's initial context.
//! - A task with dependencies receives the merge of its dependencies'
//!   output contexts, in declared dependency order, starting from an empty
//!   object: objects merge recursively, arrays are unioned (items not
//!   already present are appended, in order), and any other value is
//!   replaced by the later one.
//! - A skipped task's output is its input, so data flows past it.
//! - A failed task has no output.
//! - An execution's final context is the merge, in declaration order, of
//!   the outputs of its leaf tasks (tasks nothing depends on) that have
//!   one.
//!
//! ## When a task runs
//!
//! Once every dependency is finished (completed, failed or skipped):
//! - with no trigger rule, the task runs when every dependency completed,
//!   and is skipped otherwise ("dependency 'x' failed");
//! - with a trigger rule, it runs when the rule holds on the dependencies'
//!   statuses and its merged input context, and is skipped otherwise, with
//!   the rule recorded as the reason.
//!
//! An execution completes when every task is finished and none failed; it
//! fails when any task failed.

use crate::metadata::{Condition, TaskMeta, TriggerRule, WorkflowMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// A task's status within an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for dependencies.
    NotStarted,
    /// Runnable (possibly after a retry delay).
    Ready,
    /// Claimed by a host.
    Running,
    /// Succeeded.
    Completed,
    /// Failed for good.
    Failed,
    /// Not run: its trigger rule did not hold, or the execution was
    /// cancelled.
    Skipped,
}

impl TaskStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::NotStarted => "not_started",
            TaskStatus::Ready => "ready",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
        }
    }

    /// Parse [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "not_started" => TaskStatus::NotStarted,
            "ready" => TaskStatus::Ready,
            "running" => TaskStatus::Running,
            "completed" => TaskStatus::Completed,
            "failed" => TaskStatus::Failed,
            "skipped" => TaskStatus::Skipped,
            _ => return None,
        })
    }

    /// Completed, failed or skipped.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Skipped
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An execution's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Created; no task has started.
    Pending,
    /// At least one task has started.
    Running,
    /// Every task finished and none failed.
    Completed,
    /// A task failed.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl ExecutionStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    /// Parse [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ExecutionStatus::Pending,
            "running" => ExecutionStatus::Running,
            "completed" => ExecutionStatus::Completed,
            "failed" => ExecutionStatus::Failed,
            "cancelled" => ExecutionStatus::Cancelled,
            _ => return None,
        })
    }

    /// Completed, failed or cancelled.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed | ExecutionStatus::Failed | ExecutionStatus::Cancelled
        )
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workflow's DAG with the indexes scheduling needs.
#[derive(Debug, Clone)]
pub struct ExecutionPlan {
    /// The workflow.
    pub workflow: WorkflowMeta,
    index: HashMap<String, usize>,
    dependents: Vec<Vec<usize>>,
}

impl ExecutionPlan {
    /// Index `workflow`.
    pub fn new(workflow: WorkflowMeta) -> Self {
        let index: HashMap<String, usize> = workflow
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let mut dependents = vec![Vec::new(); workflow.tasks.len()];
        for (i, t) in workflow.tasks.iter().enumerate() {
            for d in &t.dependencies {
                if let Some(&j) = index.get(d) {
                    dependents[j].push(i);
                }
            }
        }
        Self {
            workflow,
            index,
            dependents,
        }
    }

    /// The task with id `id`.
    pub fn task(&self, id: &str) -> Option<&TaskMeta> {
        self.index.get(id).map(|&i| &self.workflow.tasks[i])
    }

    /// The tasks that depend on `id`.
    pub fn dependents(&self, id: &str) -> impl Iterator<Item = &TaskMeta> {
        self.index
            .get(id)
            .map(|&i| self.dependents[i].as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|&j| &self.workflow.tasks[j])
    }

    /// Tasks nothing depends on, in declaration order.
    pub fn leaves(&self) -> impl Iterator<Item = &TaskMeta> {
        self.workflow
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| self.dependents[*i].is_empty())
            .map(|(_, t)| t)
    }
}

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

/// Merge `next` into `base` with cloacina's rules (see the module docs), in
/// time linear in the size of both: arrays are unioned through a hash index
/// of `base`'s items, not by scanning `base` for each item of `next`.
pub fn merge_into(base: &mut Map<String, Value>, next: &Map<String, Value>) {
    let hasher = RandomState::new();
    merge_map(base, next, &hasher);
}

fn merge_map(base: &mut Map<String, Value>, next: &Map<String, Value>, hasher: &RandomState) {
    for (k, v) in next {
        match base.get_mut(k) {
            Some(existing) => merge_value(existing, v, hasher),
            None => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_value(existing: &mut Value, next: &Value, hasher: &RandomState) {
    match (existing, next) {
        (Value::Object(a), Value::Object(b)) => merge_map(a, b, hasher),
        (Value::Array(a), Value::Array(b)) => {
            // Items by hash; equal hashes are compared in full, so a
            // collision costs time, never correctness. The hasher's keys
            // are random per merge: a guest cannot aim for collisions.
            let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(a.len() + b.len());
            for (i, item) in a.iter().enumerate() {
                seen.entry(value_hash(item, hasher)).or_default().push(i);
            }
            for item in b {
                let h = value_hash(item, hasher);
                let slot = seen.entry(h).or_default();
                if slot.iter().any(|&i| a[i] == *item) {
                    continue;
                }
                slot.push(a.len());
                a.push(item.clone());
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// A hash of a JSON value that agrees with `Value`'s equality: an object's
/// entries are combined without regard to their order.
fn value_hash(v: &Value, hasher: &RandomState) -> u64 {
    let mut h = hasher.build_hasher();
    match v {
        Value::Null => 0u8.hash(&mut h),
        Value::Bool(b) => (1u8, b).hash(&mut h),
        Value::Number(n) => (2u8, n.to_string()).hash(&mut h),
        Value::String(s) => (3u8, s).hash(&mut h),
        Value::Array(items) => {
            (4u8, items.len()).hash(&mut h);
            for item in items {
                value_hash(item, hasher).hash(&mut h);
            }
        }
        Value::Object(map) => {
            let mut sum = 0u64;
            for (k, v) in map {
                let mut e = hasher.build_hasher();
                k.hash(&mut e);
                value_hash(v, hasher).hash(&mut e);
                sum = sum.wrapping_add(e.finish());
            }
            (5u8, map.len(), sum).hash(&mut h);
        }
    }
    h.finish()
}

/// The size of `v` as compact JSON, without building the text.
pub fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// A merge grew past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextTooLarge {
    /// The merged size reached, in bytes of compact JSON (at least this
    /// much: the merge stops as soon as it is over).
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

/// A merge of many contexts that never grows past `limit` bytes (as
/// compact JSON), fed one context at a time so that only the merge so far
/// and the next context are in memory.
///
/// Checking is cheap while the sizes fed in add up to at most the limit:
/// a merge is never larger than the sum of its parts. Past that, the merge
/// is measured after each step and refused as soon as it is over.
#[derive(Debug)]
pub struct BoundedMerge {
    value: Map<String, Value>,
    /// An upper bound of `value`'s size.
    upper: usize,
    limit: usize,
    hasher: RandomState,
}

impl BoundedMerge {
    /// An empty merge that may grow to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            value: Map::new(),
            upper: 2,
            limit,
            hasher: RandomState::new(),
        }
    }

    /// Merge `next`, whose compact JSON is `next_len` bytes long, in.
    ///
    /// # Errors
    /// [`ContextTooLarge`] when the merge is now over the limit; the merge
    /// is then left in an unspecified state.
    pub fn add(
        &mut self,
        next: &Map<String, Value>,
        next_len: usize,
    ) -> Result<(), ContextTooLarge> {
        merge_map(&mut self.value, next, &self.hasher);
        self.upper = self.upper.saturating_add(next_len);
        if self.upper > self.limit {
            let exact = json_len(&self.value);
            self.upper = exact;
            if exact > self.limit {
                return Err(ContextTooLarge {
                    size: exact,
                    limit: self.limit,
                });
            }
        }
        Ok(())
    }

    /// The merged context.
    pub fn finish(self) -> Map<String, Value> {
        self.value
    }
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
                    reason: format!("trigger rule not met: {}", crate::cli::trigger_text(rule)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Backoff, RetryOn, RetryPolicy};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn task(id: &str, deps: &[&str], trigger: Option<TriggerRule>) -> TaskMeta {
        TaskMeta {
            id: id.into(),
            description: String::new(),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
            retry: RetryPolicy {
                max_attempts: 1,
                backoff: Backoff::Fixed,
                initial_delay_ms: 0,
                max_delay_ms: 0,
                jitter: false,
                retry_on: RetryOn::Never,
            },
            timeout_ms: None,
            trigger,
        }
    }

    fn dep(id: &str, status: TaskStatus, out: Option<Value>) -> (DepState, Option<Value>) {
        (
            DepState {
                task_id: id.into(),
                status,
            },
            out,
        )
    }

    /// Merge the dependencies' outputs (as the executor does) and decide.
    fn decide_deps(t: &TaskMeta, deps: &[(DepState, Option<Value>)]) -> Decision {
        let mut merge = BoundedMerge::new(usize::MAX);
        for (_, out) in deps {
            if let Some(Value::Object(o)) = out {
                merge.add(o, json_len(o)).unwrap();
            }
        }
        let states: Vec<DepState> = deps.iter().map(|(d, _)| d.clone()).collect();
        decide(t, &states, merge.finish())
    }

    #[test]
    fn merging_follows_cloacinas_rules() {
        let mut base = obj(json!({"a": {"x": 1, "y": [1, 2]}, "s": "old", "keep": true}));
        merge_into(
            &mut base,
            &obj(json!({"a": {"x": 2, "y": [2, 3], "z": 0}, "s": "new", "n": 5})),
        );
        assert_eq!(
            Value::Object(base),
            json!({"a": {"x": 2, "y": [1, 2, 3], "z": 0}, "s": "new", "keep": true, "n": 5})
        );
    }

    #[test]
    fn array_union_is_linear_and_keeps_order() {
        // 200,000 distinct items on each side: a scan per item would take
        // 4 * 10^10 comparisons; the hash index takes a fraction of a second.
        let n = 200_000;
        let a: Vec<Value> = (0..n).map(|i| json!(i)).collect();
        let b: Vec<Value> = (n / 2..n + n / 2).map(|i| json!(i)).collect();
        let mut base = obj(json!({ "xs": a }));
        merge_into(&mut base, &obj(json!({ "xs": b })));
        let xs = base["xs"].as_array().unwrap();
        assert_eq!(xs.len(), (n + n / 2) as usize);
        assert!(xs.iter().enumerate().all(|(i, v)| v == &json!(i)));
        // Equal objects with their keys in another order are one item.
        let mut base = obj(json!({"o": [{"a": 1, "b": [1, {"c": null}]}]}));
        merge_into(
            &mut base,
            &obj(json!({"o": [{"b": [1, {"c": null}], "a": 1}, {"a": 2}]})),
        );
        assert_eq!(
            base["o"],
            json!([{"a": 1, "b": [1, {"c": null}]}, {"a": 2}])
        );
    }

    #[test]
    fn bounded_merges_stop_at_the_limit() {
        let part = |k: &str| obj(json!({ k: "x".repeat(100) }));
        let mut merge = BoundedMerge::new(350);
        for k in ["a", "b", "c"] {
            let p = part(k);
            merge.add(&p, json_len(&p)).unwrap();
        }
        // Overlapping keys: the parts add up to more than the limit, the
        // merge does not.
        let again = part("a");
        merge.add(&again, json_len(&again)).unwrap();
        let p = part("d");
        let err = merge.add(&p, json_len(&p)).unwrap_err();
        assert_eq!(err.limit, 350);
        assert!(err.size > 350, "{err:?}");
        let done = {
            let mut m = BoundedMerge::new(1000);
            m.add(&part("a"), 108).unwrap();
            m.finish()
        };
        assert_eq!(json_len(&done), 108);
    }

    #[test]
    fn fan_in_merges_in_declared_order() {
        let t = task("load", &["clean", "enrich"], None);
        let d = decide_deps(
            &t,
            &[
                dep(
                    "clean",
                    TaskStatus::Completed,
                    Some(json!({"v": 1, "c": true})),
                ),
                dep(
                    "enrich",
                    TaskStatus::Completed,
                    Some(json!({"v": 2, "e": true})),
                ),
            ],
        );
        assert_eq!(
            d,
            Decision::Run {
                input: obj(json!({"v": 2, "c": true, "e": true}))
            }
        );
    }

    #[test]
    fn without_a_rule_a_failed_dependency_skips() {
        let t = task("b", &["a"], None);
        match decide_deps(&t, &[dep("a", TaskStatus::Failed, None)]) {
            Decision::Skip { reason, .. } => assert_eq!(reason, "dependency 'a' failed"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trigger_rules_see_statuses_and_context() {
        let cleanup = task(
            "cleanup",
            &["a"],
            Some(TriggerRule::Any(vec![Condition::TaskFailed {
                task: "a".into(),
            }])),
        );
        assert!(matches!(
            decide_deps(&cleanup, &[dep("a", TaskStatus::Failed, None)]),
            Decision::Run { .. }
        ));
        assert!(matches!(
            decide_deps(
                &cleanup,
                &[dep("a", TaskStatus::Completed, Some(json!({})))]
            ),
            Decision::Skip { .. }
        ));
        let gated = task(
            "n",
            &["a"],
            Some(TriggerRule::All(vec![
                Condition::TaskSucceeded { task: "a".into() },
                Condition::ContextGreaterThan {
                    key: "total".into(),
                    value: json!(10),
                },
                Condition::ContextContains {
                    key: "tags".into(),
                    value: json!("x"),
                },
            ])),
        );
        let run = dep(
            "a",
            TaskStatus::Completed,
            Some(json!({"total": 11, "tags": ["x", "y"]})),
        );
        assert!(matches!(decide_deps(&gated, &[run]), Decision::Run { .. }));
        let low = dep(
            "a",
            TaskStatus::Completed,
            Some(json!({"total": 3, "tags": ["x"]})),
        );
        assert!(matches!(decide_deps(&gated, &[low]), Decision::Skip { .. }));
        let none = task(
            "z",
            &["a"],
            Some(TriggerRule::None(vec![Condition::ContextExists {
                key: "stop".into(),
            }])),
        );
        let stop = dep("a", TaskStatus::Completed, Some(json!({"stop": 1})));
        assert!(matches!(decide_deps(&none, &[stop]), Decision::Skip { .. }));
    }

    #[test]
    fn roots_see_the_initial_context() {
        let t = task(
            "r",
            &[],
            Some(TriggerRule::All(vec![Condition::ContextEquals {
                key: "go".into(),
                value: json!(true),
            }])),
        );
        assert!(matches!(
            decide_root(&t, &obj(json!({"go": true}))),
            Decision::Run { .. }
        ));
        assert!(matches!(
            decide_root(&t, &obj(json!({"go": false}))),
            Decision::Skip { .. }
        ));
        let plain = task("p", &[], None);
        assert_eq!(
            decide_root(&plain, &obj(json!({"k": 1}))),
            Decision::Run {
                input: obj(json!({"k": 1}))
            }
        );
    }

    #[test]
    fn plans_index_dependents_and_leaves() {
        let wf = WorkflowMeta {
            name: "w".into(),
            description: String::new(),
            tasks: vec![
                task("a", &[], None),
                task("b", &["a"], None),
                task("c", &["a"], None),
                task("d", &["b", "c"], None),
            ],
        };
        let plan = ExecutionPlan::new(wf);
        let deps: Vec<&str> = plan.dependents("a").map(|t| t.id.as_str()).collect();
        assert_eq!(deps, ["b", "c"]);
        let leaves: Vec<&str> = plan.leaves().map(|t| t.id.as_str()).collect();
        assert_eq!(leaves, ["d"]);
    }
}
