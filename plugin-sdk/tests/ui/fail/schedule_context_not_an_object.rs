// A schedule's context must be a JSON object.

#[culvert_sdk::workflow(name = "nightly", schedule(cron = "0 0 3 * * *", context = "[1, 2]"))]
mod nightly {
    #[task(id = "a")]
    fn a(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
