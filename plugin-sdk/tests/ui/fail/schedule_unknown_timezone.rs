// An unknown timezone is a compile error, at its literal.

#[culvert_sdk::workflow(name = "nightly", schedule(cron = "0 0 3 * * *", timezone = "Europe/Atlantis"))]
mod nightly {
    #[task(id = "a")]
    fn a(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
