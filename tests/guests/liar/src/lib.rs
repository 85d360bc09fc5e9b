//! Test fixture: a package that speaks the raw WIT contract (no SDK macros)
//! so that it can lie. Which lie its `describe` tells is chosen by a cargo
//! feature; without one it tells the truth. Its `run` returns hostile
//! output contexts, chosen by task id.

use culvert_sdk::bindings::culvert::plugin::types::{
    AttemptInfo, Backoff, Capabilities, CatchUp, Overlap, PackageInfo, RetryOn, RetryPolicy,
    ScheduleSpec, TaskError, TaskSpec, WorkflowSpec,
};
use culvert_sdk::bindings::exports::culvert::plugin::{metadata, task};

struct Liar;

fn task_spec(id: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.to_string(),
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
        trigger: None,
    }
}

#[allow(unused_mut)]
fn tasks() -> Vec<TaskSpec> {
    let mut tasks = vec![
        task_spec("deep_json", &[]),
        task_spec("not_an_object", &[]),
        task_spec("invalid_json", &[]),
        task_spec("big_output", &[]),
    ];
    #[cfg(feature = "cycle")]
    {
        tasks.push(task_spec("a", &["c"]));
        tasks.push(task_spec("b", &["a"]));
        tasks.push(task_spec("c", &["b"]));
    }
    #[cfg(feature = "unknown_dep")]
    tasks.push(task_spec("load", &["transfrom"]));
    #[cfg(feature = "duplicate_id")]
    tasks.push(task_spec("deep_json", &[]));
    #[cfg(feature = "many_tasks")]
    for i in 0..100_000 {
        tasks.push(task_spec(&format!("t{i}"), &[]));
    }
    #[cfg(feature = "control_chars")]
    tasks.push(task_spec("bell\u{7}\u{1b}[31mred", &[]));
    tasks
}

fn package_name() -> String {
    #[cfg(feature = "empty_name")]
    return String::new();
    #[cfg(feature = "huge_name")]
    return "n".repeat(10 * 1024 * 1024);
    #[cfg(feature = "odd_unicode_name")]
    return "l\u{0456}ar\u{202e}\u{fffd}".to_string();
    #[allow(unreachable_code)]
    "liar".to_string()
}

impl metadata::Guest for Liar {
    fn describe() -> PackageInfo {
        #[cfg(feature = "describe_loops")]
        loop {
            std::hint::black_box(());
        }
        #[cfg(feature = "describe_panics")]
        panic!("describe panicked on purpose");
        #[cfg(feature = "describe_oom")]
        {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(std::hint::black_box(vec![7u8; 1 << 20]));
            }
        }
        #[allow(unreachable_code)]
        PackageInfo {
            name: package_name(),
            version: "0.1.0".to_string(),
            description: "lies".to_string(),
            author: String::new(),
            contract_version: if cfg!(feature = "wrong_contract_version") {
                "0.9.0".to_string()
            } else {
                culvert_sdk::CONTRACT_VERSION.to_string()
            },
            sdk_version: String::new(),
            workflows: vec![WorkflowSpec {
                name: "lies".to_string(),
                description: String::new(),
                tasks: tasks(),
            }],
            capabilities: Capabilities {
                env: Vec::new(),
                dirs: Vec::new(),
                http_hosts: Vec::new(),
                wall_clock: false,
                random: false,
            },
            schedules: schedules(),
        }
    }
}

/// The schedules it declares: one that lies, with a lying feature.
fn schedules() -> Vec<ScheduleSpec> {
    let lie = |workflow: &str, cron: &str, timezone: &str| ScheduleSpec {
        workflow: workflow.to_string(),
        cron: cron.to_string(),
        timezone: timezone.to_string(),
        context_json: "{}".to_string(),
        catch_up: CatchUp::Skip,
        catch_up_cap: 10,
        overlap: Overlap::Allow,
    };
    if cfg!(feature = "schedule_unknown_workflow") {
        vec![lie("nowhere", "0 * * * * *", "UTC")]
    } else if cfg!(feature = "schedule_bad_cron") {
        vec![lie("lies", "every tuesday", "Mars/Olympus")]
    } else {
        Vec::new()
    }
}

impl task::Guest for Liar {
    fn run(
        _workflow: String,
        task: String,
        _context_json: String,
        _attempt: AttemptInfo,
    ) -> Result<String, TaskError> {
        Ok(match task.as_str() {
            "deep_json" => format!(
                "{{\"deep\":{}{}}}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            "not_an_object" => "[1,2,3]".to_string(),
            "invalid_json" => "{\"unterminated\":".to_string(),
            "big_output" => format!("{{\"blob\":\"{}\"}}", "b".repeat(20 * 1024 * 1024)),
            _ => "{}".to_string(),
        })
    }
}

culvert_sdk::bindings::export!(Liar with_types_in culvert_sdk::bindings);
