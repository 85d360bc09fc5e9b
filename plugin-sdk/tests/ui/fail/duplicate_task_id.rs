// Two tasks with the same id are rejected at the second task's id.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(id = "extract")]
    fn extract_again(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
