//! The smallest Culvert package: one workflow with one task.

#[culvert_sdk::workflow(name = "hello", description = "Greets whoever the context names.")]
mod hello {
    /// Reads `name` (default "world") and writes `greeting`.
    #[task(id = "greet")]
    fn greet(ctx: &mut Context) -> Result<(), TaskError> {
        let name: String = ctx.get_or("name", "world".to_string())?;
        let greeting = format!("Hello, {name}!");
        culvert_sdk::log::info(&greeting);
        ctx.set("greeting", greeting)?;
        Ok(())
    }
}

culvert_sdk::export_package!(hello);
