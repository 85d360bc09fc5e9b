//! Test fixture: a package whose tasks each attack the sandbox in one way,
//! named for the attack. Tasks that try a forbidden operation report what
//! the guest saw as a permanent error, so the test can check it was denied.

#[culvert_sdk::workflow(name = "probe", description = "One task per sandbox attack.")]
mod probe {
    use std::hint::black_box;

    fn denied(what: &str, e: impl std::fmt::Display) -> TaskError {
        TaskError::permanent(format!("{what} denied: {e}"))
    }

    /// A well-behaved task: marks the context.
    #[task(id = "ok")]
    fn ok(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("probe", "ok")?;
        Ok(())
    }

    /// Spins forever without calling the host.
    #[task(id = "loop_forever")]
    fn loop_forever(_ctx: &mut Context) -> Result<(), TaskError> {
        let mut x: u64 = 0;
        loop {
            x = black_box(x.wrapping_add(1));
        }
    }

    /// Spins for `ms` milliseconds of busy work (default 50), then succeeds.
    #[task(id = "spin_ms")]
    fn spin_ms(ctx: &mut Context) -> Result<(), TaskError> {
        let ms: u64 = ctx.get_or("ms", 50)?;
        let start = std::time::Instant::now();
        let mut x: u64 = 0;
        while start.elapsed().as_millis() < ms as u128 {
            x = black_box(x.wrapping_add(1));
        }
        ctx.set("spun", true)?;
        Ok(())
    }

    /// Sleeps for `ms` milliseconds (default 100) through WASI clocks.
    #[task(id = "sleep_ms")]
    fn sleep_ms(ctx: &mut Context) -> Result<(), TaskError> {
        let ms: u64 = ctx.get_or("ms", 100)?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ctx.set("slept_ms", ms)?;
        Ok(())
    }

    /// Sleeps forever through WASI clocks: blocked in the host, where epochs
    /// cannot reach.
    #[task(id = "sleep_forever")]
    fn sleep_forever(_ctx: &mut Context) -> Result<(), TaskError> {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }

    /// Allocates 1 MiB blocks until something stops it.
    #[task(id = "grow_memory_unbounded")]
    fn grow_memory_unbounded(_ctx: &mut Context) -> Result<(), TaskError> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(black_box(vec![1u8; 1 << 20]));
        }
    }

    #[inline(never)]
    #[allow(unconditional_recursion)] // the point of the attack
    fn recurse(n: u64) -> u64 {
        let pad = black_box([n; 16]);
        black_box(recurse(n + 1)) + pad[3]
    }

    /// Recurses without bound.
    #[task(id = "recurse_unbounded")]
    fn recurse_unbounded(_ctx: &mut Context) -> Result<(), TaskError> {
        black_box(recurse(0));
        Ok(())
    }

    #[inline(never)]
    fn deep(n: u64) -> u64 {
        if n == 0 {
            return 1;
        }
        let r = deep(n - 1);
        r.wrapping_mul(31) ^ n
    }

    /// Recurses with small frames that live in wasm locals: overflows the
    /// engine's wasm stack rather than the shadow stack.
    #[task(id = "recurse_native")]
    fn recurse_native(ctx: &mut Context) -> Result<(), TaskError> {
        let depth: u64 = ctx.get_or("depth", 100_000_000)?;
        ctx.set("r", deep(depth))?;
        Ok(())
    }

    /// Tries to read /etc/passwd.
    #[task(id = "open_file")]
    fn open_file(ctx: &mut Context) -> Result<(), TaskError> {
        let data = std::fs::read("/etc/passwd").map_err(|e| denied("open /etc/passwd", e))?;
        ctx.set("leaked", String::from_utf8_lossy(&data).to_string())?;
        Ok(())
    }

    /// Tries to list `/`.
    #[task(id = "list_root")]
    fn list_root(ctx: &mut Context) -> Result<(), TaskError> {
        let entries = std::fs::read_dir("/").map_err(|e| denied("list /", e))?;
        let names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        ctx.set("leaked", names)?;
        Ok(())
    }

    /// Tries to read the PATH and HOME variables, and counts what it sees.
    #[task(id = "read_env")]
    fn read_env(ctx: &mut Context) -> Result<(), TaskError> {
        let seen = std::env::vars().count();
        match std::env::var("PATH").or_else(|_| std::env::var("HOME")) {
            Ok(v) => {
                ctx.set("leaked", v)?;
                Ok(())
            }
            Err(e) => Err(denied(&format!("env ({seen} vars visible)"), e)),
        }
    }

    /// Tries to open a TCP connection to the host's PostgreSQL port.
    #[task(id = "open_socket")]
    fn open_socket(ctx: &mut Context) -> Result<(), TaskError> {
        let s = std::net::TcpStream::connect("127.0.0.1:5432")
            .map_err(|e| denied("connect 127.0.0.1:5432", e))?;
        ctx.set("leaked", format!("{:?}", s.peer_addr()))?;
        Ok(())
    }

    /// Prints 1 KiB lines to stdout, `lines` times (default: 100,000).
    #[task(id = "flood_stdout")]
    fn flood_stdout(ctx: &mut Context) -> Result<(), TaskError> {
        let lines: u64 = ctx.get_or("lines", 100_000)?;
        let line = "x".repeat(1023);
        for _ in 0..lines {
            println!("{line}");
        }
        ctx.set("printed", lines)?;
        Ok(())
    }

    /// Prints 1 KiB lines to stderr, 100,000 times.
    #[task(id = "flood_stderr")]
    fn flood_stderr(_ctx: &mut Context) -> Result<(), TaskError> {
        let line = "e".repeat(1023);
        for _ in 0..100_000 {
            eprintln!("{line}");
        }
        Ok(())
    }

    /// Logs 1 KiB records, 100,000 times.
    #[task(id = "flood_log")]
    fn flood_log(_ctx: &mut Context) -> Result<(), TaskError> {
        let line = "l".repeat(1024);
        for _ in 0..100_000 {
            culvert_sdk::log::info(&line);
        }
        Ok(())
    }

    /// Panics with a message.
    #[task(id = "panic_with_message")]
    fn panic_with_message(_ctx: &mut Context) -> Result<(), TaskError> {
        panic!("the probe panicked on purpose");
    }

    /// Executes `unreachable`.
    #[task(id = "trap_unreachable")]
    fn trap_unreachable(_ctx: &mut Context) -> Result<(), TaskError> {
        core::arch::wasm32::unreachable()
    }

    /// Returns a transient error.
    #[task(id = "fail_transient")]
    fn fail_transient(_ctx: &mut Context) -> Result<(), TaskError> {
        Err(TaskError::transient("the probe failed transiently"))
    }

    /// Returns a permanent error.
    #[task(id = "fail_permanent")]
    fn fail_permanent(_ctx: &mut Context) -> Result<(), TaskError> {
        Err(TaskError::permanent("the probe failed permanently"))
    }

    /// Writes the attempt info into the context.
    #[task(id = "echo_attempt")]
    fn echo_attempt(ctx: &mut Context) -> Result<(), TaskError> {
        let a = ctx.attempt();
        ctx.set("execution_id", a.execution_id)?;
        ctx.set("attempt", a.number)?;
        ctx.set("max_attempts", a.max_attempts)?;
        Ok(())
    }

    /// Returns a string of `bytes` bytes (default 100 MB) in the context.
    #[task(id = "huge_output")]
    fn huge_output(ctx: &mut Context) -> Result<(), TaskError> {
        let bytes: usize = ctx.get_or("bytes", 100_000_000)?;
        ctx.set("blob", "z".repeat(bytes))?;
        Ok(())
    }
}

/// Appends `id` to the context's `trail` array.
fn mark(ctx: &mut culvert_sdk::Context, id: &str) -> Result<(), culvert_sdk::TaskError> {
    let mut trail: Vec<String> = ctx.get_or("trail", Vec::new())?;
    trail.push(id.to_string());
    ctx.set("trail", trail)?;
    Ok(())
}

// Declared schedules (yearly, so that no test fires them by accident):
// the v2 build moves the first one and drops the second, so that a test
// sees declared schedules follow the active version.
#[cfg_attr(
    not(feature = "v2"),
    culvert_sdk::workflow(
        name = "chain",
        description = "a -> b -> c",
        schedule(
            cron = "0 0 3 1 1 *",
            timezone = "Europe/Berlin",
            context = r#"{"from": "schedule"}"#,
            catch_up = "latest",
            overlap = "skip"
        ),
        schedule(cron = "0 30 4 1 1 *")
    )
)]
#[cfg_attr(
    feature = "v2",
    culvert_sdk::workflow(
        name = "chain",
        description = "a -> b -> c",
        schedule(
            cron = "0 0 5 1 1 *",
            timezone = "Europe/Berlin",
            context = r#"{"from": "schedule v2"}"#,
            catch_up = "latest",
            overlap = "skip"
        )
    )
)]
mod chain {
    #[task(id = "a")]
    fn a(ctx: &mut Context) -> Result<(), TaskError> {
        super::mark(ctx, "a")
    }
    #[task(id = "b", dependencies = ["a"])]
    fn b(ctx: &mut Context) -> Result<(), TaskError> {
        super::mark(ctx, "b")
    }
    #[task(id = "c", dependencies = ["b"])]
    fn c(ctx: &mut Context) -> Result<(), TaskError> {
        super::mark(ctx, "c")
    }
}

#[culvert_sdk::workflow(name = "diamond", description = "a -> (b, c) -> d, merging b and c")]
mod diamond {
    #[task(id = "a")]
    fn a(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("nested", serde_json::json!({"from_a": true}))?;
        super::mark(ctx, "a")
    }
    #[task(id = "b", dependencies = ["a"])]
    fn b(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("shared", "b")?;
        ctx.set("nested", serde_json::json!({"from_a": true, "from_b": 1}))?;
        super::mark(ctx, "b")
    }
    #[task(id = "c", dependencies = ["a"])]
    fn c(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("shared", "c")?;
        ctx.set("nested", serde_json::json!({"from_a": true, "from_c": 2}))?;
        super::mark(ctx, "c")
    }
    #[task(id = "d", dependencies = ["b", "c"])]
    fn d(ctx: &mut Context) -> Result<(), TaskError> {
        let shared: String = ctx.get("shared")?;
        ctx.set("d_saw_shared", shared)?;
        super::mark(ctx, "d")
    }
}

#[culvert_sdk::workflow(
    name = "gates",
    description = "A failure, a cleanup that runs on it, and skips."
)]
mod gates {
    #[task(id = "work")]
    fn work(ctx: &mut Context) -> Result<(), TaskError> {
        if ctx.get_or("fail", true)? {
            return Err(TaskError::permanent("work failed on purpose"));
        }
        Ok(())
    }
    /// Runs only when `work` failed.
    #[task(id = "cleanup", dependencies = ["work"], trigger = any(failed("work")))]
    fn cleanup(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("cleaned", true)?;
        Ok(())
    }
    /// Default rule: skipped when `work` failed.
    #[task(id = "after", dependencies = ["work"])]
    fn after(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("after_ran", true)?;
        Ok(())
    }
    /// Skipped because `after` was skipped (skips propagate).
    #[task(id = "after_after", dependencies = ["after"])]
    fn after_after(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("after_after_ran", true)?;
        Ok(())
    }
    /// Runs whatever happened.
    #[task(id = "finally", dependencies = ["cleanup", "after_after"], trigger = always)]
    fn finally(ctx: &mut Context) -> Result<(), TaskError> {
        ctx.set("finally_ran", true)?;
        Ok(())
    }
}

#[culvert_sdk::workflow(
    name = "spin",
    description = "A CPU loop under a 300 ms timeout, retried once."
)]
mod spin {
    #[task(
        id = "spin",
        timeout_ms = 300,
        retry(
            max_attempts = 2,
            backoff = "fixed",
            initial_delay_ms = 10,
            max_delay_ms = 10,
            jitter = false
        )
    )]
    fn spin(_ctx: &mut Context) -> Result<(), TaskError> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

#[culvert_sdk::workflow(
    name = "permanent",
    description = "A permanent error under a retry policy: not retried."
)]
mod permanent {
    #[task(
        id = "fails",
        retry(max_attempts = 3, initial_delay_ms = 10, max_delay_ms = 10)
    )]
    fn fails(_ctx: &mut Context) -> Result<(), TaskError> {
        Err(TaskError::permanent("bad input, no retry can fix it"))
    }
}

/// Which build ran a task: 1, or 2 for the `v2` feature, so that a test
/// can tell the versions apart by their output, not only by their version
/// string.
const BUILD: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

#[culvert_sdk::workflow(
    name = "slow",
    description = "A chain of four slow tasks (ms from the context, default 300); each writes `version`, the build that ran it."
)]
mod slow {
    fn nap(ctx: &mut Context, id: &str) -> Result<(), TaskError> {
        let ms: u64 = ctx.get_or("ms", 300)?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ctx.set("version", super::BUILD)?;
        super::mark(ctx, id)
    }
    #[task(id = "s1")]
    fn s1(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "s1")
    }
    #[task(id = "s2", dependencies = ["s1"])]
    fn s2(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "s2")
    }
    #[task(id = "s3", dependencies = ["s2"])]
    fn s3(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "s3")
    }
    #[task(id = "s4", dependencies = ["s3"])]
    fn s4(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "s4")
    }
}

#[culvert_sdk::workflow(
    name = "backoff",
    description = "Two tasks that fail transiently until attempt `fail_times + 1` (default 2 failures): one with fixed backoff (400 ms), one exponential (200, 400, 800 ms)."
)]
mod backoff {
    fn fail_until(ctx: &mut Context) -> Result<(), TaskError> {
        let fail_times: u32 = ctx.get_or("fail_times", 2)?;
        let attempt = ctx.attempt().number;
        if attempt <= fail_times {
            return Err(TaskError::transient(format!("failing attempt {attempt}")));
        }
        Ok(())
    }
    #[task(
        id = "fixed",
        retry(
            max_attempts = 4,
            backoff = "fixed",
            initial_delay_ms = 400,
            max_delay_ms = 400,
            jitter = false
        )
    )]
    fn fixed(ctx: &mut Context) -> Result<(), TaskError> {
        fail_until(ctx)
    }
    #[task(
        id = "exponential",
        retry(
            max_attempts = 4,
            backoff = "exponential",
            initial_delay_ms = 200,
            max_delay_ms = 10_000,
            jitter = false
        )
    )]
    fn exponential(ctx: &mut Context) -> Result<(), TaskError> {
        fail_until(ctx)
    }
}

#[culvert_sdk::workflow(
    name = "parallel",
    description = "Six independent tasks that each sleep `ms` (default 300)."
)]
mod parallel {
    fn nap(ctx: &mut Context, id: &str) -> Result<(), TaskError> {
        let ms: u64 = ctx.get_or("ms", 300)?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ctx.set(id, true)?;
        Ok(())
    }
    #[task(id = "p1")]
    fn p1(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "p1")
    }
    #[task(id = "p2")]
    fn p2(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "p2")
    }
    #[task(id = "p3")]
    fn p3(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "p3")
    }
    #[task(id = "p4")]
    fn p4(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "p4")
    }
    #[task(id = "p5")]
    fn p5(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "p5")
    }
    #[task(id = "p6")]
    fn p6(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "p6")
    }
}

#[culvert_sdk::workflow(
    name = "burn",
    description = "One CPU loop for `ms` of wall time (default 1000): returns how many iterations it got, a measure of the CPU time the host gave it."
)]
mod burn {
    #[task(id = "burn")]
    fn burn(ctx: &mut Context) -> Result<(), TaskError> {
        let ms: u64 = ctx.get_or("ms", 1000)?;
        let start = std::time::Instant::now();
        let mut iterations: u64 = 0;
        while start.elapsed().as_millis() < ms as u128 {
            for _ in 0..1000 {
                iterations = std::hint::black_box(iterations + 1);
            }
        }
        ctx.set("iterations", iterations)?;
        Ok(())
    }
}

/// What the `forge` tasks try to slip into the host's log as a line of
/// its own.
const FORGED: &str = "2099-01-01T00:00:00Z ERROR culvert::executor: FORGED";

#[culvert_sdk::workflow(
    name = "forge",
    description = "Guest text that tries to forge host log lines: newlines, carriage returns, escape sequences, bidi overrides."
)]
mod forge {
    use super::FORGED;

    /// Logs, prints to stdout and stderr, and fails, each with forged lines.
    #[task(id = "forge_output")]
    fn forge_output(_ctx: &mut Context) -> Result<(), TaskError> {
        culvert_sdk::log::log(
            culvert_sdk::log::Level::Error,
            &format!("log message\n{FORGED} by a log message\x1b[2J\r{FORGED} after a CR"),
            &[
                (&format!("key\n{FORGED} by a field name"), "v"),
                ("key", &format!("value\n{FORGED} by a field value\u{202e}")),
            ],
        );
        println!("stdout\r{FORGED} by stdout\x1b[31m\u{2028}{FORGED} after U+2028");
        eprintln!("stderr\x1b]0;title\x07\r{FORGED} by stderr\x0b\x0c");
        Err(TaskError::permanent(format!(
            "error message\n{FORGED} by a task error\x1b[0m"
        )))
    }

    /// Panics with a forged line in the message.
    #[task(id = "forge_panic")]
    fn forge_panic(_ctx: &mut Context) -> Result<(), TaskError> {
        panic!("panic message\n{FORGED} by a panic\x1b[2J");
    }
}

#[culvert_sdk::workflow(
    name = "retried",
    description = "Roots r1 and r2 sleep `ms` (default 300), print `returning <id>` on stdout and succeed, under a policy that retries every error; `after` runs once both completed."
)]
mod retried {
    fn nap(ctx: &mut Context, id: &str) -> Result<(), TaskError> {
        let ms: u64 = ctx.get_or("ms", 300)?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        // The host logs a call's stdout once the call has returned: a test
        // watching for this line knows the guest is done and its
        // completion not yet recorded.
        println!("returning {id}");
        super::mark(ctx, id)
    }
    #[task(
        id = "r1",
        timeout_ms = 120000,
        retry(
            max_attempts = 3,
            backoff = "fixed",
            initial_delay_ms = 10,
            max_delay_ms = 10,
            jitter = false,
            retry_on = "all"
        )
    )]
    fn r1(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "r1")
    }
    #[task(
        id = "r2",
        timeout_ms = 120000,
        retry(
            max_attempts = 3,
            backoff = "fixed",
            initial_delay_ms = 10,
            max_delay_ms = 10,
            jitter = false,
            retry_on = "all"
        )
    )]
    fn r2(ctx: &mut Context) -> Result<(), TaskError> {
        nap(ctx, "r2")
    }
    #[task(id = "after", dependencies = ["r1", "r2"])]
    fn after(ctx: &mut Context) -> Result<(), TaskError> {
        super::mark(ctx, "after")
    }
}

#[culvert_sdk::workflow(
    name = "chatty",
    description = "`talk` logs, prints to stdout and stderr, and fails transiently on its first attempt (retried once); `verbose` logs `lines` records of 100 bytes (default 2000: about 200 KiB, over the 64 KiB a host stores per attempt)."
)]
mod chatty {
    #[task(
        id = "talk",
        retry(
            max_attempts = 2,
            backoff = "fixed",
            initial_delay_ms = 10,
            max_delay_ms = 10,
            jitter = false
        )
    )]
    fn talk(ctx: &mut Context) -> Result<(), TaskError> {
        let attempt = ctx.attempt().number;
        culvert_sdk::log::log(
            culvert_sdk::log::Level::Info,
            &format!("hello from attempt {attempt}"),
            &[("attempt", &attempt.to_string()), ("who", "talk")],
        );
        println!("stdout of attempt {attempt}");
        eprintln!("stderr of attempt {attempt}");
        culvert_sdk::log::warn(&format!("done with attempt {attempt}"));
        if attempt == 1 {
            return Err(TaskError::transient("the first attempt fails"));
        }
        ctx.set("talked", attempt)?;
        Ok(())
    }

    #[task(id = "verbose")]
    fn verbose(ctx: &mut Context) -> Result<(), TaskError> {
        let lines: u64 = ctx.get_or("lines", 2000)?;
        let filler = "v".repeat(93);
        for i in 0..lines {
            culvert_sdk::log::info(&format!("{i:06} {filler}"));
        }
        ctx.set("logged", lines)?;
        Ok(())
    }
}

#[culvert_sdk::workflow(
    name = "markup",
    description = "<script>document.title='pwned'</script> \"><img src=x onerror=\"document.title='pwned'\"> <a href=\"javascript:document.title='pwned'\">javascript:</a>"
)]
mod markup {
    /// <script>document.title='pwned'</script> "><img src=x onerror="document.title='pwned'">
    #[task(id = "shout")]
    fn shout(ctx: &mut Context) -> Result<(), TaskError> {
        // What the context says, said back in a log record, a field, on
        // stdout and in an error: a page must show it as text.
        let say: String =
            ctx.get_or("say", "<script>document.title='pwned'</script>".to_string())?;
        culvert_sdk::log::log(culvert_sdk::log::Level::Info, &say, &[("said", &say)]);
        println!("{say}");
        ctx.set("said", say.clone())?;
        if ctx.get_or("fail", false)? {
            return Err(TaskError::permanent(say));
        }
        Ok(())
    }
}

#[cfg(not(feature = "v2"))]
culvert_sdk::export_package!(
    probe,
    chain,
    diamond,
    gates,
    spin,
    permanent,
    slow,
    backoff,
    parallel,
    forge,
    burn,
    retried,
    chatty,
    markup,
    name = "sandbox-probe"
);
// The same package, registered as a newer version.
#[cfg(feature = "v2")]
culvert_sdk::export_package!(
    probe,
    chain,
    diamond,
    gates,
    spin,
    permanent,
    slow,
    backoff,
    parallel,
    forge,
    burn,
    retried,
    chatty,
    markup,
    name = "sandbox-probe",
    version = "0.2.0"
);
