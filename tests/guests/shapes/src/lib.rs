//! Test and benchmark fixture: no-op workflows of fixed shapes, generated
//! in code (the SDK's macros want one function per task):
//!
//! - `ten`: a root, 8 parallel tasks, and a join: 10 tasks;
//! - `fanout1000`: a root and 1,000 parallel tasks;
//! - `chain200`: 200 tasks in a line;
//! - with feature `long`, `chain10000`: 10,000 tasks in a line (the metadata limit), declared
//!   last task first: the worst declaration order for a naive topological
//!   sort, and the shape of `executions show`'s speed test.
//!
//! and the data-plane attacks of a hostile tenant (each task stays inside
//! every per-call limit; the harm is in what the host does with the
//! results):
//!
//! - `bloat`: 64 independent leaves `l0`..`l63`, each returning a string of
//!   `bytes` bytes (from the initial context) under its own key: the final
//!   context is their merge;
//! - `bloat_join`: the same leaves and a `join` that depends on all of
//!   them: its input is their merge;
//! - `ints_join`: roots `a` and `b` each return `ints` distinct integers
//!   under the key `xs`, and `join` depends on both: a merge that is
//!   quadratic if arrays are unioned by scanning.
//!
//! Every other task returns its input context unchanged.

use culvert_sdk::bindings::culvert::plugin::types::{
    AttemptInfo, Backoff, Capabilities, PackageInfo, RetryOn, RetryPolicy, TaskError, TaskSpec,
    WorkflowSpec,
};
use culvert_sdk::bindings::exports::culvert::plugin::{metadata, task};

struct Shapes;

fn spec(id: String, deps: Vec<String>) -> TaskSpec {
    TaskSpec {
        id,
        description: String::new(),
        dependencies: deps,
        retry: RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::Fixed,
            initial_delay_ms: 0,
            max_delay_ms: 0,
            jitter: false,
            retry_on: RetryOn::Never,
        },
        timeout_ms: None,
        trigger: None,
    }
}

fn workflow(name: &str, tasks: Vec<TaskSpec>) -> WorkflowSpec {
    WorkflowSpec {
        name: name.to_string(),
        description: String::new(),
        tasks,
    }
}

impl metadata::Guest for Shapes {
    fn describe() -> PackageInfo {
        let mut ten = vec![spec("root".into(), vec![])];
        for i in 0..8 {
            ten.push(spec(format!("p{i}"), vec!["root".into()]));
        }
        ten.push(spec(
            "join".into(),
            (0..8).map(|i| format!("p{i}")).collect(),
        ));
        let mut fan = vec![spec("root".into(), vec![])];
        for i in 0..1000 {
            fan.push(spec(format!("leaf{i}"), vec!["root".into()]));
        }
        let mut chain = vec![spec("c0".into(), vec![])];
        for i in 1..200 {
            chain.push(spec(format!("c{i}"), vec![format!("c{}", i - 1)]));
        }
        let leaves: Vec<TaskSpec> = (0..64).map(|i| spec(format!("l{i}"), vec![])).collect();
        let mut bloat_join = leaves.clone();
        bloat_join.push(spec(
            "join".into(),
            (0..64).map(|i| format!("l{i}")).collect(),
        ));
        let ints_join = vec![
            spec("a".into(), vec![]),
            spec("b".into(), vec![]),
            spec("join".into(), vec!["a".into(), "b".into()]),
        ];
        #[allow(unused_mut)]
        let mut workflows = vec![
            workflow("ten", ten),
            workflow("fanout1000", fan),
            workflow("chain200", chain),
            workflow("bloat", leaves),
            workflow("bloat_join", bloat_join),
            workflow("ints_join", ints_join),
        ];
        // Behind a feature: a 10,000-task workflow makes the package's
        // metadata large, and every start parses it.
        #[cfg(feature = "long")]
        {
            // c9999 <- c9998 <- ... <- c0, listed from c9999 down.
            let long: Vec<TaskSpec> = (0..10_000)
                .rev()
                .map(|i| {
                    let deps = if i == 0 {
                        vec![]
                    } else {
                        vec![format!("c{}", i - 1)]
                    };
                    spec(format!("c{i}"), deps)
                })
                .collect();
            workflows.push(workflow("chain10000", long));
        }
        PackageInfo {
            name: "shapes".into(),
            version: "0.1.0".into(),
            description: "no-op workflows of fixed shapes".into(),
            author: String::new(),
            contract_version: culvert_sdk::CONTRACT_VERSION.into(),
            sdk_version: String::new(),
            workflows,
            capabilities: Capabilities {
                env: Vec::new(),
                dirs: Vec::new(),
                http_hosts: Vec::new(),
                wall_clock: false,
                random: false,
            },
            schedules: Vec::new(),
        }
    }
}

impl task::Guest for Shapes {
    fn run(
        workflow: String,
        task: String,
        context_json: String,
        _attempt: AttemptInfo,
    ) -> Result<String, TaskError> {
        Ok(match (workflow.as_str(), task.as_str()) {
            ("bloat" | "bloat_join", leaf) if leaf != "join" => {
                let n = number(&context_json, "bytes");
                format!("{{\"{leaf}\":\"{}\"}}", "x".repeat(n))
            }
            ("ints_join", side @ ("a" | "b")) => {
                let n = number(&context_json, "ints");
                let start = if side == "a" { 0 } else { n };
                let items: Vec<String> = (start..start + n).map(|i| i.to_string()).collect();
                format!("{{\"xs\":[{}]}}", items.join(","))
            }
            _ => context_json,
        })
    }
}

/// The unsigned integer under `"key":` in a flat JSON object, or 0.
fn number(json: &str, key: &str) -> usize {
    let pattern = format!("\"{key}\":");
    json.find(&pattern)
        .map(|at| {
            json[at + pattern.len()..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

culvert_sdk::bindings::export!(Shapes with_types_in culvert_sdk::bindings);
