// A trigger rule that names a task which is not a dependency is rejected at that task id.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(id = "transform", dependencies = ["extract"])]
    fn transform(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(
        id = "report",
        dependencies = ["transform"],
        trigger = any(succeeded("transform"), failed("extract"))
    )]
    fn report(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
