// A retry policy with an unknown backoff is rejected at the backoff string.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract", retry(max_attempts = 3, backoff = "quadratic"))]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
