// A task function must take exactly one argument, `ctx: &mut Context`.

#[culvert_sdk::workflow(name = "etl")]
mod etl {
    #[task(id = "extract")]
    fn extract(_ctx: &mut Context, _rows: u32) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
