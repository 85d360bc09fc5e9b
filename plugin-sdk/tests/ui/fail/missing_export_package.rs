// A package whose #[workflow] module no export_package! names would build a
// component that exports nothing: it fails to compile, saying what to add.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
