// A dependency cycle (a -> b -> a) is rejected at the literal that closes it.

#[culvert_sdk::workflow(name = "cyclic")]
mod cyclic {
    #[task(id = "a", dependencies = ["b"])]
    fn a(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }

    #[task(id = "b", dependencies = ["a"])]
    fn b(_ctx: &mut Context) -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {}
