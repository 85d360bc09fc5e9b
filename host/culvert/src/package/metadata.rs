//! Package metadata as the host keeps it: plain, serializable Rust types.
//! The `validate` module builds them from what a component's `describe`
//! returns.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
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
    /// Schedules the package declares (contract 0.2 and later), each
    /// naming one of its workflows by its bare name.
    #[serde(default)]
    pub schedules: Vec<crate::cron::ScheduleSpec>,
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

/// One line, as `inspect` shows it and a skip reason quotes it:
/// `all of [extract succeeded, notify == true]`.
impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (word, conds) = match self {
            TriggerRule::Always => return f.write_str("always"),
            TriggerRule::All(c) => ("all", c),
            TriggerRule::Any(c) => ("any", c),
            TriggerRule::None(c) => ("none", c),
        };
        write!(f, "{word} of [")?;
        for (i, c) in conds.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("]")
    }
}

/// One condition: `extract succeeded`, `rows > 10`, `context has notify`.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::TaskSucceeded { task } => write!(f, "{task} succeeded"),
            Condition::TaskFailed { task } => write!(f, "{task} failed"),
            Condition::TaskSkipped { task } => write!(f, "{task} skipped"),
            Condition::ContextExists { key } => write!(f, "context has {key}"),
            Condition::ContextEquals { key, value } => write!(f, "{key} == {value}"),
            Condition::ContextNotEquals { key, value } => write!(f, "{key} != {value}"),
            Condition::ContextGreaterThan { key, value } => write!(f, "{key} > {value}"),
            Condition::ContextLessThan { key, value } => write!(f, "{key} < {value}"),
            Condition::ContextContains { key, value } => write!(f, "{key} contains {value}"),
        }
    }
}

/// One line: `3 attempts, exponential backoff from 100 ms to 1000 ms, on
/// transient errors`, or `none (1 attempt)`.
impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.max_attempts <= 1 {
            return f.write_str("none (1 attempt)");
        }
        let backoff = match self.backoff {
            Backoff::Fixed => "fixed",
            Backoff::Linear => "linear",
            Backoff::Exponential => "exponential",
        };
        let on = match self.retry_on {
            RetryOn::AllErrors => "all errors",
            RetryOn::TransientOnly => "transient errors",
            RetryOn::Never => "no errors",
        };
        write!(
            f,
            "{} attempts, {backoff} backoff from {} ms to {} ms{}, on {on}",
            self.max_attempts,
            self.initial_delay_ms,
            self.max_delay_ms,
            if self.jitter { " with jitter" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
    fn trigger_rules_and_retry_policies_render_on_one_line() {
        let rule = TriggerRule::All(vec![
            Condition::TaskSucceeded {
                task: "extract".into(),
            },
            Condition::ContextEquals {
                key: "notify".into(),
                value: serde_json::json!(true),
            },
            Condition::ContextGreaterThan {
                key: "rows".into(),
                value: serde_json::json!(10),
            },
        ]);
        assert_eq!(
            rule.to_string(),
            "all of [extract succeeded, notify == true, rows > 10]"
        );
        assert_eq!(TriggerRule::Always.to_string(), "always");
        assert_eq!(
            TriggerRule::None(vec![Condition::ContextExists { key: "k".into() }]).to_string(),
            "none of [context has k]"
        );
        let mut p = policy(Backoff::Exponential);
        assert_eq!(
            p.to_string(),
            "5 attempts, exponential backoff from 100 ms to 1000 ms, on transient errors"
        );
        p.jitter = true;
        p.retry_on = RetryOn::AllErrors;
        assert!(
            p.to_string()
                .ends_with("1000 ms with jitter, on all errors")
        );
        p.max_attempts = 1;
        assert_eq!(p.to_string(), "none (1 attempt)");
    }
}
