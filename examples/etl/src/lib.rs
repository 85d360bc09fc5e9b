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
