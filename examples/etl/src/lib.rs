//! An extract-transform-load workflow with fan-out and fan-in.
//!
//! ```text
//!              ┌─> clean ────────┐
//! extract ─────┤                 ├─> load ─> notify (only if `notify` is true)
//!              └─> enrich ───────┘
//! ```
//!
//! `extract` produces rows; `clean` and `enrich` work on them in parallel and
//! each writes its own key; `load` sees both (the contexts are merged) and
//! sums them up; `notify` runs only when the initial context asks for it.
//!
//! `cargo test -p etl` runs the workflow natively (see the tests below, and
//! `culvert_sdk::testing`).

#[culvert_sdk::workflow(
    name = "etl",
    description = "Extract rows, clean and enrich them in parallel, load the result."
)]
mod etl {
    /// Produces the raw rows: `rows`, from the initial context's
    /// `source_rows` if given, else 1..=5.
    #[task(id = "extract")]
    fn extract(ctx: &mut Context) -> Result<(), TaskError> {
        let rows: Vec<i64> = ctx.get_or("source_rows", (1..=5).collect())?;
        culvert_sdk::log::log(
            culvert_sdk::log::Level::Info,
            "extracted rows",
            &[("count", &rows.len().to_string())],
        );
        ctx.set("rows", rows)?;
        Ok(())
    }

    /// Drops negative rows: writes `clean_rows`.
    #[task(id = "clean", dependencies = ["extract"])]
    fn clean(ctx: &mut Context) -> Result<(), TaskError> {
        let rows: Vec<i64> = ctx.get("rows")?;
        let clean: Vec<i64> = rows.into_iter().filter(|r| *r >= 0).collect();
        ctx.insert("clean_rows", clean)?;
        Ok(())
    }

    /// Looks up a factor for the rows: writes `factor`. Retried on
    /// transient failures.
    #[task(
        id = "enrich",
        dependencies = ["extract"],
        retry(max_attempts = 3, backoff = "exponential", initial_delay_ms = 50, max_delay_ms = 1000),
        timeout_ms = 5000
    )]
    fn enrich(ctx: &mut Context) -> Result<(), TaskError> {
        let factor: i64 = ctx.get_or("factor", 10)?;
        if factor == 0 {
            return Err(TaskError::permanent("factor must not be zero"));
        }
        ctx.insert("factor", factor)
            .or_else(|_| ctx.update("factor", factor))?;
        Ok(())
    }

    /// Fan-in: multiplies the clean rows by the factor and writes `loaded`
    /// and `total`.
    #[task(id = "load", dependencies = ["clean", "enrich"])]
    fn load(ctx: &mut Context) -> Result<(), TaskError> {
        let rows: Vec<i64> = ctx.get("clean_rows")?;
        let factor: i64 = ctx.get("factor")?;
        let loaded: Vec<i64> = rows.iter().map(|r| r * factor).collect();
        let total: i64 = loaded.iter().sum();
        ctx.insert("loaded", loaded)?;
        ctx.insert("total", total)?;
        Ok(())
    }

    /// Runs only when the initial context sets `notify` to true.
    #[task(
        id = "notify",
        dependencies = ["load"],
        trigger = all(succeeded("load"), equals("notify", true))
    )]
    fn notify(ctx: &mut Context) -> Result<(), TaskError> {
        let total: i64 = ctx.get("total")?;
        ctx.insert("notified", format!("loaded a total of {total}"))?;
        Ok(())
    }
}

culvert_sdk::export_package!(etl);

#[cfg(test)]
mod tests {
    use culvert_sdk::log::Level;
    use culvert_sdk::testing::{self, FailureKind, Status, json};

    #[test]
    fn the_workflow_loads_the_rows_and_skips_notify_unless_asked() {
        let run = testing::run_workflow::<super::etl::Workflow>(json!({}));
        assert!(run.succeeded(), "{:?}", run.error);
        assert_eq!(
            run.order(),
            ["extract", "clean", "enrich", "load", "notify"]
        );
        // `load` saw both branches merged: `clean`'s rows and `enrich`'s factor.
        assert_eq!(run.task("load").input["clean_rows"], json!([1, 2, 3, 4, 5]));
        assert_eq!(run.task("load").input["factor"], json!(10));
        assert_eq!(run.context["loaded"], json!([10, 20, 30, 40, 50]));
        assert_eq!(run.context["total"], json!(150));
        // The trigger rule: `notify` is skipped, and its input passes through.
        let notify = run.task("notify");
        assert_eq!(notify.status, Status::Skipped);
        assert_eq!(
            notify.skip_reason.as_deref(),
            Some("trigger rule not met: all of [load succeeded, notify == true]")
        );
        assert_eq!(
            notify.output.as_ref(),
            Some(&run.task("load").output.clone().unwrap())
        );
        assert!(run.context.get("notified").is_none());
        // `extract`'s log record is captured, fields and all.
        let log = &run.task("extract").logs[0];
        assert_eq!(
            (log.level, log.message.as_str()),
            (Level::Info, "extracted rows")
        );
        assert_eq!(log.fields, [("count".to_string(), "5".to_string())]);
    }

    #[test]
    fn notify_runs_when_the_initial_context_asks() {
        let run = testing::run_workflow::<super::etl::Workflow>(json!({
            "notify": true,
            "source_rows": [-4, 2, 3],
            "factor": 3,
        }));
        assert_eq!(run.status("notify"), Status::Completed);
        assert_eq!(run.context["clean_rows"], json!([2, 3]));
        assert_eq!(run.context["total"], json!(15));
        assert_eq!(run.context["notified"], json!("loaded a total of 15"));
    }

    #[test]
    fn a_zero_factor_fails_enrich_once_and_skips_what_follows() {
        let run = testing::run_workflow::<super::etl::Workflow>(json!({ "factor": 0 }));
        let enrich = run.task("enrich");
        // Permanent: not retried, although the policy allows 3 attempts.
        assert_eq!((enrich.status, enrich.attempts), (Status::Failed, 1));
        assert_eq!(
            enrich.failure.as_ref().unwrap().kind,
            FailureKind::Permanent
        );
        assert_eq!(
            run.task("load").skip_reason.as_deref(),
            Some("dependency 'enrich' failed")
        );
        assert_eq!(run.status("notify"), Status::Skipped);
        assert_eq!(
            run.error.as_deref(),
            Some("task 'enrich' failed: permanent: factor must not be zero")
        );
        // The skipped leaf passes on what reached it: `clean`'s output.
        assert_eq!(run.context["clean_rows"], json!([1, 2, 3, 4, 5]));
        assert!(run.context.get("total").is_none());
    }

    #[test]
    fn one_task_runs_on_the_input_it_is_given() {
        let load = testing::run_task::<super::etl::Workflow>(
            "load",
            json!({ "clean_rows": [1, 2], "factor": 5 }),
        );
        assert_eq!(load.status, Status::Completed);
        assert_eq!(load.output.unwrap()["total"], json!(15));
    }
}
