//! Test fixture: a package that declares capabilities and uses them. Its
//! tasks report what they could do; a denied operation is a permanent
//! error whose message starts with "denied".

#[culvert_sdk::workflow(
    name = "caps",
    description = "Use, and try to escape, declared capabilities."
)]
mod caps {
    use std::hash::{BuildHasher, Hasher};

    fn denied(what: &str, e: impl std::fmt::Display) -> TaskError {
        TaskError::permanent(format!("denied: {what}: {e}"))
    }

    /// Reads the GREETING variable.
    #[task(id = "read_env")]
    fn read_env(ctx: &mut Context) -> Result<(), TaskError> {
        let v = std::env::var("GREETING").map_err(|e| denied("env GREETING", e))?;
        ctx.set("greeting", v)?;
        Ok(())
    }

    /// Reads /data/in.txt.
    #[task(id = "read_file")]
    fn read_file(ctx: &mut Context) -> Result<(), TaskError> {
        let v =
            std::fs::read_to_string("/data/in.txt").map_err(|e| denied("read /data/in.txt", e))?;
        ctx.set("content", v)?;
        Ok(())
    }

    /// Writes /data/out.txt.
    #[task(id = "write_file")]
    fn write_file(ctx: &mut Context) -> Result<(), TaskError> {
        std::fs::write("/data/out.txt", "written by the guest")
            .map_err(|e| denied("write /data/out.txt", e))?;
        ctx.set("wrote", true)?;
        Ok(())
    }

    /// Reads the file at the context's `path`: the escape attempts.
    #[task(id = "read_path")]
    fn read_path(ctx: &mut Context) -> Result<(), TaskError> {
        let path: String = ctx.get("path")?;
        let v = std::fs::read_to_string(&path).map_err(|e| denied(&format!("read {path}"), e))?;
        ctx.set("leaked", v)?;
        Ok(())
    }

    /// Lists `/`.
    #[task(id = "list_root")]
    fn list_root(ctx: &mut Context) -> Result<(), TaskError> {
        let names: Vec<String> = std::fs::read_dir("/")
            .map_err(|e| denied("list /", e))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        ctx.set("root", names)?;
        Ok(())
    }

    /// The wall clock, in seconds since the Unix epoch.
    #[task(id = "now")]
    fn now(ctx: &mut Context) -> Result<(), TaskError> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        ctx.set("now", secs)?;
        Ok(())
    }

    /// A hash seeded from the random source: equal across calls when the
    /// source is deterministic.
    #[task(id = "random")]
    fn random(ctx: &mut Context) -> Result<(), TaskError> {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(42);
        ctx.set("hash", h.finish().to_string())?;
        Ok(())
    }
}

culvert_sdk::export_package!(
    caps,
    name = "capable",
    capabilities(
        env = ["GREETING"],
        dirs_rw = ["/data"],
        wall_clock = true,
        random = true
    )
);
