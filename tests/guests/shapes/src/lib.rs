//! Test and benchmark fixture: no-op workflows of fixed shapes, generated
//! in code (the SDK's macros want one function per task):
//!
//! - `ten`: a root, 8 parallel tasks, and a join: 10 tasks;
//! - `fanout1000`: a root and 1,000 parallel tasks;
//! - `chain200`: 200 tasks in a line;
//! - `chain10000`: 10,000 tasks in a line (the metadata limit), declared
//!   last task first: the worst declaration order for a naive topological
//!   sort, and the shape of `executions show`'s speed test.
//!
//! Every task returns its input context unchanged.

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
        PackageInfo {
            name: "shapes".into(),
            version: "0.1.0".into(),
            description: "no-op workflows of fixed shapes".into(),
            author: String::new(),
            contract_version: culvert_sdk::CONTRACT_VERSION.into(),
            sdk_version: String::new(),
            workflows: vec![
                workflow("ten", ten),
                workflow("fanout1000", fan),
                workflow("chain200", chain),
                workflow("chain10000", long),
            ],
            capabilities: Capabilities {
                env: Vec::new(),
                dirs: Vec::new(),
                http_hosts: Vec::new(),
                wall_clock: false,
                random: false,
            },
        }
    }
}

impl task::Guest for Shapes {
    fn run(
        _workflow: String,
        _task: String,
        context_json: String,
        _attempt: AttemptInfo,
    ) -> Result<String, TaskError> {
        Ok(context_json)
    }
}

culvert_sdk::bindings::export!(Shapes with_types_in culvert_sdk::bindings);
