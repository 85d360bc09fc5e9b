//! A task that fails transiently, then succeeds: shows retries at work.
//!
//! The initial context's `fail_times` (default 2) says how many attempts
//! fail before one succeeds. With the task's 5 attempts, any value up to 4
//! ends in success.

#[culvert_sdk::workflow(
    name = "flaky",
    description = "Fails transiently a few times, then succeeds."
)]
mod flaky {
    /// Fails with a transient error on attempts 1..=fail_times.
    #[task(
        id = "unreliable",
        retry(
            max_attempts = 5,
            backoff = "fixed",
            initial_delay_ms = 20,
            max_delay_ms = 20,
            jitter = false
        )
    )]
    fn unreliable(ctx: &mut Context) -> Result<(), TaskError> {
        let fail_times: u32 = ctx.get_or("fail_times", 2)?;
        let attempt = ctx.attempt();
        if attempt.number <= fail_times {
            return Err(TaskError::transient(format!(
                "simulated outage on attempt {} of {}",
                attempt.number, attempt.max_attempts
            )));
        }
        ctx.set("succeeded_on_attempt", attempt.number)?;
        Ok(())
    }

    /// Runs after the flaky task succeeds.
    #[task(id = "after", dependencies = ["unreliable"])]
    fn after(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("done", true)?;
        Ok(())
    }
}

culvert_sdk::export_package!(flaky);
