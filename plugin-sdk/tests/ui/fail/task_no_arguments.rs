// A task function without arguments is rejected at its empty parameter list.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract() -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
