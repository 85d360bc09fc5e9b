//! A package of contract 0.1, written against its bindings directly (no
//! SDK, which now builds 0.2 packages): workflow `legacy`, `first` then
//! `second`, each adding a key to the context and logging through 0.1's
//! `host` import.

wit_bindgen::generate!({
    path: "../../../wit/0.1",
    world: "culvert:plugin/plugin",
});

use culvert::plugin::host;
use culvert::plugin::types::{
    AttemptInfo, Backoff, Capabilities, ErrorKind, LogLevel, PackageInfo, RetryOn, RetryPolicy,
    TaskError, TaskSpec, WorkflowSpec,
};
use exports::culvert::plugin::{metadata, task};

struct Legacy;

fn spec(id: &str, dependencies: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        description: format!("adds '{id}' to the context"),
        dependencies: dependencies.iter().map(|d| d.to_string()).collect(),
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

impl metadata::Guest for Legacy {
    fn describe() -> PackageInfo {
        PackageInfo {
            name: "legacy".into(),
            version: "0.1.0".into(),
            description: "built against culvert:plugin@0.1.0".into(),
            author: "the tests".into(),
            contract_version: "0.1.0".into(),
            sdk_version: String::new(),
            workflows: vec![WorkflowSpec {
                name: "legacy".into(),
                description: "first -> second".into(),
                tasks: vec![spec("first", &[]), spec("second", &["first"])],
            }],
            capabilities: Capabilities {
                env: vec![],
                dirs: vec![],
                http_hosts: vec![],
                wall_clock: false,
                random: false,
            },
        }
    }
}

impl task::Guest for Legacy {
    fn run(
        _workflow: String,
        task: String,
        context_json: String,
        attempt: AttemptInfo,
    ) -> Result<String, TaskError> {
        let mut context: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&context_json).map_err(|e| TaskError {
                kind: ErrorKind::Permanent,
                message: format!("bad context: {e}"),
            })?;
        host::log(
            LogLevel::Info,
            &format!("0.1 task {task}, attempt {}", attempt.attempt),
            &[("contract".into(), "0.1".into())],
        );
        if context.get("fail").is_some() {
            return Err(TaskError {
                kind: ErrorKind::Permanent,
                message: format!("{task} was told to fail"),
            });
        }
        context.insert(task, serde_json::Value::from("0.1"));
        Ok(serde_json::Value::Object(context).to_string())
    }
}

export!(Legacy);
