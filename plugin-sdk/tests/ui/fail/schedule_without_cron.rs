// A schedule without a cron expression is a compile error.

#[culvert_sdk::workflow(name = "nightly", schedule(timezone = "UTC"))]
mod nightly {
    #[task(id = "a")]
    fn a(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
