// A retry policy whose initial_delay_ms is above max_delay_ms is rejected at the initial delay.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(
        id = "extract",
        retry(max_attempts = 5, initial_delay_ms = 5000, max_delay_ms = 2000)
    )]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
