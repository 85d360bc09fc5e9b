// An invalid cron expression is a compile error, at its literal.

#[culvert_sdk::workflow(name = "nightly", schedule(cron = "0 */5 * * *x *"))]
mod nightly {
    #[task(id = "a")]
    fn a(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
