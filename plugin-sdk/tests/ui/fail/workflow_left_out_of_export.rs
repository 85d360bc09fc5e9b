// Every #[workflow] module must be named in export_package!: one left out
// would be missing from the package.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

#[culvert_sdk::workflow(name = "report")]
mod report {
    #[task(id = "send")]
    fn send(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

culvert_sdk::export_package!(etl);

fn main() {}
