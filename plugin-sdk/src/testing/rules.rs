//! The host's scheduling rules, restated for native runs: context merging,
//! trigger rules and retry decisions. They follow `host/culvert/src/scheduler/`
//! (`merge.rs`, `rules.rs`) and the executor's `retry_decision` (see
//! docs/EXECUTION.md); the SDK does not depend on the host crate, so the
//! rules are written out again here, and `tests` below pins them down.

use super::{FailureKind, Status};
use crate::bindings::culvert::plugin::types::{
    Backoff, Condition, RetryOn, RetryPolicy, TriggerRule,
};
use serde_json::{Map, Value};

/// Merge `next` into `base`: objects merge recursively, arrays are unioned
/// (items of `next` not already present are appended, in order), any other
/// value is replaced by `next`'s.
pub(super) fn merge_into(base: &mut Map<String, Value>, next: &Map<String, Value>) {
    for (k, v) in next {
        match base.get_mut(k) {
            Some(existing) => merge_value(existing, v),
            None => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_value(existing: &mut Value, next: &Value) {
    match (existing, next) {
        (Value::Object(a), Value::Object(b)) => merge_into(a, b),
        (Value::Array(a), Value::Array(b)) => {
            for item in b {
                if !a.contains(item) {
                    a.push(item.clone());
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Whether a task whose dependencies are finished runs: `Ok(())`, or
/// `Err(reason)` to skip it. `status_of` gives a dependency's status; the
/// reasons are the host's.
pub(super) fn decide(
    trigger: Option<&TriggerRule>,
    dependencies: &[String],
    status_of: &dyn Fn(&str) -> Option<Status>,
    input: &Map<String, Value>,
) -> Result<(), String> {
    let Some(rule) = trigger else {
        return match dependencies
            .iter()
            .find(|d| status_of(d) != Some(Status::Completed))
        {
            None => Ok(()),
            Some(d) => Err(format!(
                "dependency '{d}' {}",
                status_of(d).map_or("unknown", Status::as_str)
            )),
        };
    };
    let holds = |c: &Condition| condition_holds(c, status_of, input);
    let runs = match rule {
        TriggerRule::Always => true,
        TriggerRule::All(cs) => cs.iter().all(holds),
        TriggerRule::Any(cs) => cs.iter().any(holds),
        TriggerRule::None(cs) => !cs.iter().any(holds),
    };
    if runs {
        Ok(())
    } else {
        Err(format!("trigger rule not met: {}", rule_text(rule)))
    }
}

fn condition_holds(
    c: &Condition,
    status_of: &dyn Fn(&str) -> Option<Status>,
    ctx: &Map<String, Value>,
) -> bool {
    let num = |v: &Value| v.as_f64();
    match c {
        Condition::TaskSucceeded(task) => status_of(task) == Some(Status::Completed),
        Condition::TaskFailed(task) => status_of(task) == Some(Status::Failed),
        Condition::TaskSkipped(task) => status_of(task) == Some(Status::Skipped),
        Condition::ContextExists(key) => ctx.contains_key(key),
        Condition::ContextEquals(kv) => ctx.get(&kv.key) == Some(&value_of(&kv.value_json)),
        Condition::ContextNotEquals(kv) => ctx.get(&kv.key) != Some(&value_of(&kv.value_json)),
        Condition::ContextGreaterThan(kv) => matches!(
            (ctx.get(&kv.key).and_then(num), num(&value_of(&kv.value_json))),
            (Some(a), Some(b)) if a > b
        ),
        Condition::ContextLessThan(kv) => matches!(
            (ctx.get(&kv.key).and_then(num), num(&value_of(&kv.value_json))),
            (Some(a), Some(b)) if a < b
        ),
        Condition::ContextContains(kv) => match (ctx.get(&kv.key), value_of(&kv.value_json)) {
            (Some(Value::String(s)), Value::String(needle)) => s.contains(needle.as_str()),
            (Some(Value::Array(items)), v) => items.contains(&v),
            _ => false,
        },
    }
}

/// A condition's value. The macros write valid JSON; the host refuses a
/// package whose values are not.
fn value_of(value_json: &str) -> Value {
    serde_json::from_str(value_json)
        .unwrap_or_else(|e| panic!("a trigger condition's value is not JSON ({e}): {value_json}"))
}

/// The rule in the host's one-line form: `all of [load succeeded, notify == true]`.
fn rule_text(rule: &TriggerRule) -> String {
    let (word, conds) = match rule {
        TriggerRule::Always => return "always".into(),
        TriggerRule::All(c) => ("all", c),
        TriggerRule::Any(c) => ("any", c),
        TriggerRule::None(c) => ("none", c),
    };
    let conds: Vec<String> = conds
        .iter()
        .map(|c| match c {
            Condition::TaskSucceeded(t) => format!("{t} succeeded"),
            Condition::TaskFailed(t) => format!("{t} failed"),
            Condition::TaskSkipped(t) => format!("{t} skipped"),
            Condition::ContextExists(k) => format!("context has {k}"),
            Condition::ContextEquals(kv) => format!("{} == {}", kv.key, value_of(&kv.value_json)),
            Condition::ContextNotEquals(kv) => {
                format!("{} != {}", kv.key, value_of(&kv.value_json))
            }
            Condition::ContextGreaterThan(kv) => {
                format!("{} > {}", kv.key, value_of(&kv.value_json))
            }
            Condition::ContextLessThan(kv) => format!("{} < {}", kv.key, value_of(&kv.value_json)),
            Condition::ContextContains(kv) => {
                format!("{} contains {}", kv.key, value_of(&kv.value_json))
            }
        })
        .collect();
    format!("{word} of [{}]", conds.join(", "))
}

/// After failed attempt `attempt` (1-based) of kind `kind`: the delay before
/// the next attempt, in ms, or `None` when the failure is final.
pub(super) fn retry_delay(policy: &RetryPolicy, attempt: u32, kind: FailureKind) -> Option<u64> {
    if attempt >= policy.max_attempts {
        return None;
    }
    let retry = match policy.retry_on {
        RetryOn::Never => false,
        RetryOn::TransientOnly => kind == FailureKind::Transient,
        RetryOn::AllErrors => true,
    };
    retry.then(|| delay_after(policy, attempt))
}

/// The host's `RetryPolicy::delay_after`, without jitter: with `jitter`, the
/// host waits a random delay between half of this and this.
pub(super) fn delay_after(policy: &RetryPolicy, failed_attempts: u32) -> u64 {
    let n = u64::from(failed_attempts.max(1));
    let base = match policy.backoff {
        Backoff::Fixed => policy.initial_delay_ms,
        Backoff::Linear => policy.initial_delay_ms.saturating_mul(n),
        Backoff::Exponential => {
            let shift = (n - 1).min(62) as u32;
            policy.initial_delay_ms.saturating_mul(1u64 << shift)
        }
    };
    base.min(policy.max_delay_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::culvert::plugin::types::KeyValue;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value_json: value.to_string(),
        }
    }

    /// The host's `merging_follows_cloacinas_rules`, on the same data.
    #[test]
    fn merging_follows_the_hosts_rules() {
        let mut base = obj(json!({"a": {"x": 1, "y": [1, 2]}, "s": "old", "keep": true}));
        merge_into(
            &mut base,
            &obj(json!({"a": {"x": 2, "y": [2, 3], "z": 0}, "s": "new", "n": 5})),
        );
        assert_eq!(
            Value::Object(base),
            json!({"a": {"x": 2, "y": [1, 2, 3], "z": 0}, "s": "new", "keep": true, "n": 5})
        );
        // Equal objects with their keys in another order are one item; a
        // repeated item of `next` is appended once.
        let mut base = obj(json!({"o": [{"a": 1, "b": 2}], "xs": [3, 1]}));
        merge_into(
            &mut base,
            &obj(json!({"o": [{"b": 2, "a": 1}, {"a": 2}], "xs": [2, 2, 1]})),
        );
        assert_eq!(base["o"], json!([{"a": 1, "b": 2}, {"a": 2}]));
        assert_eq!(base["xs"], json!([3, 1, 2]));
        // An array meeting a non-array is replaced, not unioned.
        let mut base = obj(json!({"v": [1]}));
        merge_into(&mut base, &obj(json!({"v": 7})));
        assert_eq!(base["v"], json!(7));
    }

    #[test]
    fn without_a_rule_every_dependency_must_complete() {
        let deps = vec!["a".to_string(), "b".to_string()];
        let status = |id: &str| match id {
            "a" => Some(Status::Completed),
            _ => Some(Status::Skipped),
        };
        assert_eq!(
            decide(None, &deps, &status, &Map::new()),
            Err("dependency 'b' skipped".into())
        );
        let all_done = |_: &str| Some(Status::Completed);
        assert_eq!(decide(None, &deps, &all_done, &Map::new()), Ok(()));
    }

    #[test]
    fn trigger_rules_see_statuses_and_context() {
        let failed = |_: &str| Some(Status::Failed);
        let cleanup = TriggerRule::Any(vec![Condition::TaskFailed("a".into())]);
        let deps = vec!["a".to_string()];
        assert_eq!(decide(Some(&cleanup), &deps, &failed, &Map::new()), Ok(()));
        let done = |_: &str| Some(Status::Completed);
        assert_eq!(
            decide(Some(&cleanup), &deps, &done, &Map::new()),
            Err("trigger rule not met: any of [a failed]".into())
        );
        let gated = TriggerRule::All(vec![
            Condition::TaskSucceeded("a".into()),
            Condition::ContextGreaterThan(kv("total", json!(10))),
            Condition::ContextContains(kv("tags", json!("x"))),
            Condition::ContextEquals(kv("mode", json!("full"))),
        ]);
        let ctx = obj(json!({"total": 11, "tags": ["x", "y"], "mode": "full"}));
        assert_eq!(decide(Some(&gated), &deps, &done, &ctx), Ok(()));
        let low = obj(json!({"total": 3, "tags": ["x"], "mode": "full"}));
        assert_eq!(
            decide(Some(&gated), &deps, &done, &low),
            Err(
                "trigger rule not met: all of [a succeeded, total > 10, tags contains \"x\", mode == \"full\"]"
                    .into()
            )
        );
        let none = TriggerRule::None(vec![Condition::ContextExists("stop".into())]);
        let stop = obj(json!({"stop": 1}));
        assert!(decide(Some(&none), &deps, &done, &stop).is_err());
        assert!(decide(Some(&TriggerRule::Always), &deps, &failed, &stop).is_ok());
        // `1` and `1.0` differ, as JSON values do.
        let one = TriggerRule::All(vec![Condition::ContextEquals(kv("n", json!(1)))]);
        assert!(decide(Some(&one), &[], &done, &obj(json!({"n": 1.0}))).is_err());
        assert!(decide(Some(&one), &[], &done, &obj(json!({"n": 1}))).is_ok());
    }

    fn policy(backoff: Backoff, retry_on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 7,
            backoff,
            initial_delay_ms: 100,
            max_delay_ms: 1000,
            jitter: true,
            retry_on,
        }
    }

    /// docs/EXECUTION.md's example: exponential, 100 to 1000 ms.
    #[test]
    fn delays_follow_the_backoff() {
        let exp = policy(Backoff::Exponential, RetryOn::TransientOnly);
        let delays: Vec<u64> = (1..=6).map(|n| delay_after(&exp, n)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        let lin = policy(Backoff::Linear, RetryOn::TransientOnly);
        assert_eq!(delay_after(&lin, 3), 300);
        let fixed = policy(Backoff::Fixed, RetryOn::TransientOnly);
        assert_eq!(delay_after(&fixed, 5), 100);
    }

    #[test]
    fn retries_follow_retry_on_and_max_attempts() {
        let transient = policy(Backoff::Fixed, RetryOn::TransientOnly);
        assert_eq!(
            retry_delay(&transient, 1, FailureKind::Transient),
            Some(100)
        );
        assert_eq!(retry_delay(&transient, 1, FailureKind::Permanent), None);
        assert_eq!(retry_delay(&transient, 1, FailureKind::Panic), None);
        assert_eq!(retry_delay(&transient, 7, FailureKind::Transient), None);
        let all = policy(Backoff::Fixed, RetryOn::AllErrors);
        assert_eq!(retry_delay(&all, 2, FailureKind::Permanent), Some(100));
        assert_eq!(retry_delay(&all, 2, FailureKind::Panic), Some(100));
        let never = policy(Backoff::Fixed, RetryOn::Never);
        assert_eq!(retry_delay(&never, 1, FailureKind::Transient), None);
    }
}
