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

//!
//! The modules: `status` (task and execution statuses), `plan` (a
//! workflow's DAG indexed for scheduling), `merge` (context merging under a
//! byte limit) and `rules` (run or skip). They import only the package
//! stage's metadata types.

mod merge;
mod plan;
mod rules;
mod status;

#[cfg(test)]
use merge::merge_into;
pub use merge::{BoundedMerge, ContextTooLarge, json_len};
pub use plan::ExecutionPlan;
pub use rules::{Decision, DepState, decide, decide_root};
pub use status::{ExecutionStatus, TaskStatus};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{
        Backoff, Condition, RetryOn, RetryPolicy, TaskMeta, TriggerRule, WorkflowMeta,
    };
    use serde_json::json;
    use serde_json::{Map, Value};

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
