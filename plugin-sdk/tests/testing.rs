//! `culvert_sdk::testing` runs real `#[workflow]` modules natively: retries
//! under each retry policy, failures and the tasks that react to them,
//! merges in declared order, panics and log capture.

use culvert_sdk::testing::{self, FailureKind, Status, Workflow, json};

#[culvert_sdk::workflow(name = "retries")]
mod retries {
    /// Fails transiently until attempt `succeed_on` (from the context).
    #[task(
        id = "flaky",
        retry(
            max_attempts = 4,
            backoff = "exponential",
            initial_delay_ms = 200,
            max_delay_ms = 500
        )
    )]
    fn flaky(ctx: &mut Context) -> Result<(), TaskError> {
        let attempt = ctx.attempt();
        culvert_sdk::log::log(
            culvert_sdk::log::Level::Warn,
            "trying",
            &[("attempt", &attempt.number.to_string())],
        );
        let succeed_on: u32 = ctx.get("succeed_on")?;
        if attempt.number < succeed_on {
            return Err(TaskError::transient(format!(
                "attempt {} of {}",
                attempt.number, attempt.max_attempts
            )));
        }
        ctx.insert("succeeded_on", attempt.number)?;
        Ok(())
    }

    /// Runs only when `flaky` failed for good.
    #[task(id = "cleanup", dependencies = ["flaky"], trigger = any(failed("flaky")))]
    fn cleanup(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.insert("cleaned", true)?;
        Ok(())
    }

    /// The default rule: only after `flaky` completed.
    #[task(id = "after", dependencies = ["flaky"])]
    fn after(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.insert("after", true)?;
        Ok(())
    }

    /// Permanent errors, retried only because the policy says all errors.
    #[task(
        id = "stubborn",
        retry(
            max_attempts = 3,
            backoff = "linear",
            initial_delay_ms = 10,
            jitter = false,
            retry_on = "all"
        )
    )]
    fn stubborn(ctx: &mut Context) -> Result<(), TaskError> {
        if ctx.contains("stubborn_fails") {
            return Err(TaskError::permanent("no"));
        }
        Ok(())
    }

    /// Panics when asked to, which fails it as `panic` (not retried).
    #[task(id = "fragile", retry(max_attempts = 3))]
    fn fragile(ctx: &mut Context) -> Result<(), TaskError> {
        if ctx.contains("fragile_panics") {
            panic!("fragile broke");
        }
        Ok(())
    }
}

#[culvert_sdk::workflow(name = "diamond")]
mod diamond {
    #[task(id = "a")]
    fn a(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.insert("tags", ["a"])?;
        Ok(())
    }

    #[task(id = "b", dependencies = ["a"])]
    fn b(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.update("tags", ["a", "b"])?;
        ctx.insert("shared", "b")?;
        ctx.insert("n", culvert_sdk::testing::json!({ "from_b": 1 }))?;
        Ok(())
    }

    #[task(id = "c", dependencies = ["a"], trigger = all(exists("go_c")))]
    fn c(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.update("tags", ["c", "a"])?;
        ctx.insert("shared", "c")?;
        ctx.insert("n", culvert_sdk::testing::json!({ "from_c": 2 }))?;
        Ok(())
    }

    // Declared with `c` before `b`: `b`'s values are merged last and win.
    #[task(id = "d", dependencies = ["c", "b"], trigger = always)]
    fn d(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

culvert_sdk::export_package!(retries, diamond);

#[test]
fn transient_failures_are_retried_with_the_policys_delays() {
    let run = testing::run_workflow::<retries::Workflow>(json!({ "succeed_on": 3 }));
    let flaky = run.task("flaky");
    assert_eq!((flaky.status, flaky.attempts), (Status::Completed, 3));
    // Exponential from 200 ms, capped at 500 ms; nothing slept.
    assert_eq!(flaky.retry_delays_ms, [200, 400]);
    assert_eq!(flaky.failures.len(), 2);
    assert_eq!(flaky.failures[1].message, "attempt 2 of 4");
    assert_eq!(flaky.output.as_ref().unwrap()["succeeded_on"], json!(3));
    let attempts: Vec<(u32, &str)> = flaky
        .logs
        .iter()
        .map(|l| (l.attempt, l.fields[0].1.as_str()))
        .collect();
    assert_eq!(attempts, [(1, "1"), (2, "2"), (3, "3")]);
    assert_eq!(run.status("after"), Status::Completed);
    assert_eq!(run.status("cleanup"), Status::Skipped);
    assert!(run.succeeded());
}

#[test]
fn a_task_that_runs_out_of_attempts_fails_and_its_dependents_react() {
    let run = testing::run_workflow::<retries::Workflow>(json!({ "succeed_on": 10 }));
    let flaky = run.task("flaky");
    assert_eq!((flaky.status, flaky.attempts), (Status::Failed, 4));
    assert_eq!(flaky.retry_delays_ms, [200, 400, 500]);
    assert_eq!(flaky.output, None);
    assert_eq!(flaky.failure.as_ref().unwrap().kind, FailureKind::Transient);
    assert_eq!(run.status("cleanup"), Status::Completed);
    assert_eq!(
        run.task("after").skip_reason.as_deref(),
        Some("dependency 'flaky' failed")
    );
    assert_eq!(
        run.error.as_deref(),
        Some("task 'flaky' failed: transient: attempt 4 of 4")
    );
    assert!(!run.succeeded());
    // Leaves: cleanup's output and after's pass-through input ({}: its only
    // dependency failed), merged.
    assert_eq!(run.context["cleaned"], json!(true));
}

#[test]
fn retry_on_decides_which_failures_are_retried() {
    let stubborn = testing::run_task::<retries::Workflow>(
        "stubborn",
        json!({ "stubborn_fails": true, "succeed_on": 1 }),
    );
    assert_eq!((stubborn.status, stubborn.attempts), (Status::Failed, 3));
    assert_eq!(stubborn.retry_delays_ms, [10, 20]);
    let fragile = testing::run_task::<retries::Workflow>("fragile", json!({ "fragile_panics": 1 }));
    assert_eq!((fragile.status, fragile.attempts), (Status::Failed, 1));
    let failure = fragile.failure.unwrap();
    assert_eq!(failure.kind, FailureKind::Panic);
    assert_eq!(failure.message, "fragile broke");
}

#[test]
fn inputs_merge_in_declared_order_and_skipped_tasks_pass_theirs_on() {
    let wf = Workflow::of::<diamond::Workflow>();
    assert_eq!(wf.name(), "diamond");
    assert_eq!(wf.task_ids(), ["a", "b", "c", "d"]);

    let run = wf.run(json!({ "go_c": true, "seed": 1 }));
    // The root saw the initial context.
    assert_eq!(run.task("a").input, json!({ "go_c": true, "seed": 1 }));
    assert_eq!(
        run.task("d").input,
        json!({
            "go_c": true,
            "seed": 1,
            // c's ["c", "a"], then b's items not already there.
            "tags": ["c", "a", "b"],
            "shared": "b",
            "n": { "from_c": 2, "from_b": 1 },
        })
    );
    assert_eq!(run.context, run.task("d").output.clone().unwrap());

    // Without `go_c`, `c` is skipped: its output is its input (a's output),
    // and `d` (trigger `always`) still runs.
    let run = wf.run(json!({}));
    let c = run.task("c");
    assert_eq!(c.status, Status::Skipped);
    assert_eq!(
        c.skip_reason.as_deref(),
        Some("trigger rule not met: all of [context has go_c]")
    );
    assert_eq!(c.output, Some(json!({ "tags": ["a"] })));
    assert_eq!(run.status("d"), Status::Completed);
    assert_eq!(run.context["tags"], json!(["a", "b"]));
}

#[test]
fn logging_outside_a_run_does_not_panic_natively() {
    // Before `testing`, this hit the wasm import's `unreachable!()` and
    // aborted the whole test binary.
    culvert_sdk::log::info("a native log record goes to stderr");
    culvert_sdk::log::log(culvert_sdk::log::Level::Error, "with fields", &[("k", "v")]);
}

#[test]
#[should_panic(expected = "workflow 'diamond' has no task 'e' (it has: a, b, c, d)")]
fn an_unknown_task_is_named() {
    testing::run_task::<diamond::Workflow>("e", json!({}));
}
