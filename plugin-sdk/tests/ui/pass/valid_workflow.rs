// A valid workflow using every #[task] key and every schedule key, exported with
// export_package!, compiles.

#[culvert_sdk::workflow(
    name = "etl",
    description = "Extract, transform, load.",
    schedule(
        cron = "0 */5 * * * *",
        timezone = "Europe/Berlin",
        context = r#"{"region": "eu"}"#,
        catch_up = "all",
        catch_up_cap = 20,
        overlap = "queue_one"
    ),
    schedule(cron = "30 2 * * *")
)]
mod etl {
    /// Pulls the raw rows.
    #[task(id = "extract")]
    fn extract(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.insert("rows", vec![1, 2, 3])?;
        Ok(())
    }

    #[task(
        id = "transform",
        description = "Doubles every row.",
        dependencies = ["extract"],
        retry(
            max_attempts = 3,
            backoff = "linear",
            initial_delay_ms = 200,
            max_delay_ms = 2000,
            jitter = false,
            retry_on = "all"
        ),
        timeout_ms = 5000
    )]
    fn transform(ctx: &mut Context) -> Result<(), TaskError> {
        let rows: Vec<i64> = ctx.get("rows")?;
        ctx.insert("doubled", rows.iter().map(|r| r * 2).collect::<Vec<_>>())?;
        Ok(())
    }

    #[task(
        id = "report",
        dependencies = ["extract", "transform"],
        trigger = all(succeeded("transform"), not_equals("mode", "dry-run"), greater_than("limit", -1))
    )]
    fn report(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(dependencies = ["transform"], trigger = any(failed("transform"), skipped("transform")))]
    fn cleanup(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

culvert_sdk::export_package!(
    etl,
    name = "etl",
    version = "1.2.3",
    capabilities(env = ["API_TOKEN"], dirs = ["/data"], wall_clock = true)
);

fn main() {
    let spec = etl::__culvert_spec();
    assert_eq!(spec.name, "etl");
    let ids: Vec<&str> = spec.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["extract", "transform", "report", "cleanup"]);
    assert_eq!(spec.tasks[0].description, "Pulls the raw rows.");
    assert_eq!(spec.tasks[2].dependencies, ["extract", "transform"]);
}
