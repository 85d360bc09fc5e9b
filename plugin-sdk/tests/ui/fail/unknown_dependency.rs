// A dependency on a task id that does not exist is rejected at the id's literal.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(id = "transform", dependencies = ["extrct"])]
    fn transform(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
