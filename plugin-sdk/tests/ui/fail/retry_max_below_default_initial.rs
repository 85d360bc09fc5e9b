// A max_delay_ms below the default initial delay (1000) is rejected at max_delay_ms.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract", retry(max_attempts = 5, max_delay_ms = 500))]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
