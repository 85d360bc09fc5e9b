// A retry policy with max_attempts = 0 is rejected at the 0, and depending on the rejected task is no extra error.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(id = "transform", dependencies = ["extract"], retry(max_attempts = 0))]
    fn transform(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(id = "load", dependencies = ["transform"])]
    fn load(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
