//! # culvert-sdk: write Culvert workflow packages in Rust
//!
//! A Culvert package is a WebAssembly component that the Culvert host runs in
//! a sandbox. This crate hides the component contract (`wit/culvert.wit`,
//! which it carries) behind three things:
//!
//! - [`workflow`]: an attribute on a module whose `#[task]` functions form one
//!   workflow (a DAG). Dependencies, retry policies, timeouts and trigger
//!   rules are checked at compile time.
//! - [`export_package!`]: exports the package's workflows from the component.
//! - [`Context`], [`TaskError`] and the [`log`] functions, which tasks use,
//!   and [`http`], a small blocking client for outbound HTTP.
//!
//! [`testing`] runs the workflows natively, under `cargo test`.
//!
//! ## A complete package
//!
//! `culvert new NAME` writes one like this, ready to build and test.
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "etl"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! # cdylib: the component; rlib: native builds, for `cargo test`.
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! culvert-sdk = "0.1"
//! # or, from a checkout of the Culvert repository:
//! # culvert-sdk = { path = "/path/to/culvert/plugin-sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! #[culvert_sdk::workflow(name = "etl", description = "Extract, transform, load.")]
//! mod etl {
//!     /// Pulls the raw rows.
//!     #[task(id = "extract")]
//!     fn extract(ctx: &mut Context) -> Result<(), TaskError> {
//!         ctx.insert("rows", vec![1, 2, 3])?;
//!         culvert_sdk::log::info("extracted 3 rows");
//!         Ok(())
//!     }
//!
//!     /// Doubles every row. A transient failure is retried up to 3 attempts
//!     /// in all, with exponential backoff.
//!     #[task(
//!         id = "transform",
//!         dependencies = ["extract"],
//!         retry(max_attempts = 3, backoff = "exponential", initial_delay_ms = 200),
//!         timeout_ms = 5000
//!     )]
//!     fn transform(ctx: &mut Context) -> Result<(), TaskError> {
//!         let rows: Vec<i64> = ctx.get("rows")?;
//!         if rows.is_empty() {
//!             return Err(TaskError::transient("upstream returned no rows yet"));
//!         }
//!         ctx.insert("doubled", rows.iter().map(|r| r * 2).collect::<Vec<_>>())?;
//!         Ok(())
//!     }
//!
//!     /// Runs only when the caller asked for a report.
//!     #[task(
//!         id = "report",
//!         dependencies = ["transform"],
//!         trigger = all(succeeded("transform"), equals("report", true))
//!     )]
//!     fn report(ctx: &mut Context) -> Result<(), TaskError> {
//!         let attempt = ctx.attempt().number;
//!         ctx.insert("report_attempt", attempt)?;
//!         Ok(())
//!     }
//! }
//!
//! // The package name and version default to the crate's.
//! culvert_sdk::export_package!(etl);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (or set
//! `build.target = "wasm32-wasip2"` in `.cargo/config.toml`, as `culvert new`
//! does); the `.wasm` file in `target/wasm32-wasip2/release/` is the package.
//! Register it with `culvert package add etl.wasm`.
//!
//! ## Testing natively
//!
//! A package crate also builds for the machine it is on (the component's
//! exports exist only in wasm builds), so its tests run under plain `cargo
//! test`: [`testing::run_workflow`] runs a workflow as the host would
//! (dependency order, context merging, trigger rules, retries, captured
//! logs), and [`testing::run_task`] runs one task on a given input. With
//! `build.target` set to wasm, run them with `cargo test --target
//! host-tuple`.
//!
//! ## What the macros check at compile time
//!
//! Each of these is a compile error that points at the offending attribute:
//! a duplicate task id, a dependency on a task that does not exist, a
//! dependency cycle, an invalid retry policy (zero attempts, an unknown
//! backoff, an initial delay above the maximum), and a trigger rule that
//! names a task that is not a dependency. So is a `#[workflow]` module that
//! no [`export_package!`] names (a component that would export nothing),
//! and a `schedule(...)` whose cron expression, timezone, context or policy
//! is invalid.
//!
//! ## Schedules
//!
//! A workflow may declare schedules; the host starts it at each due time
//! (the repository's docs/SCHEDULES.md has what each policy does):
//!
//! ```
//! #[culvert_sdk::workflow(
//!     name = "nightly",
//!     schedule(cron = "0 30 2 * * *", timezone = "Europe/Berlin", catch_up = "latest")
//! )]
//! mod nightly {
//!     #[task(id = "refresh")]
//!     fn refresh(ctx: &mut Context) -> Result<(), TaskError> {
//!         ctx.insert("refreshed", true)?;
//!         Ok(())
//!     }
//! }
//!
//! culvert_sdk::export_package!(nightly);
//! ```
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `cron = "..."` | six fields, seconds first (`"0 */5 * * * *"`), or the classic five | required |
//! | `timezone = "..."` | an IANA name the expression is read in | `"UTC"` |
//! | `context = r#"{...}"#` | the initial context, a JSON object | `{}` |
//! | `catch_up = "..."` | missed due times: `"skip"`, `"latest"` or `"all"` | `"skip"` |
//! | `catch_up_cap = N` | the most missed due times `"all"` starts, 1 to 100 | 10 |
//! | `overlap = "..."` | a due time while the last run goes on: `"allow"`, `"skip"` or `"queue_one"` | `"allow"` |
//!
//! ## The `#[task]` attribute
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `id = "..."` | unique id within the workflow | the function name |
//! | `description = "..."` | free text | the function's doc comment |
//! | `dependencies = ["a", "b"]` | tasks that must finish first | none |
//! | `retry(...)` | see below | one attempt, no retry |
//! | `timeout_ms = N` | deadline of one attempt | the host's default |
//! | `trigger = ...` | see below | run when every dependency succeeded |
//!
//! `retry(...)` takes `max_attempts` (default 3 once `retry` is given),
//! `backoff` (`"fixed"`, `"linear"` or `"exponential"`, the default),
//! `initial_delay_ms` (1000), `max_delay_ms` (60000), `jitter` (true) and
//! `retry_on` (`"transient"`, the default, `"all"` or `"never"`).
//!
//! `trigger` is `always`, or `all(..)`, `any(..)` or `none(..)` of
//! conditions: `succeeded("task")`, `failed("task")`, `skipped("task")`,
//! `exists("key")`, `equals("key", value)`, `not_equals("key", value)`,
//! `greater_than("key", number)`, `less_than("key", number)` and
//! `contains("key", value)`. Values are string, number or bool literals.
//!
//! ## Outbound HTTP
//!
//! [`http`] sends requests over `wasi:http` to the hosts the package
//! declares in `export_package!(.., capabilities(http_hosts = [..]))` and an
//! operator grants to the tenant:
//!
//! ```no_run
//! # fn task(ctx: &mut culvert_sdk::Context) -> Result<(), culvert_sdk::TaskError> {
//! let items: serde_json::Value = culvert_sdk::http::get("https://api.example.com/items")?
//!     .error_for_status()?
//!     .json()?;
//! ctx.set("items", items)?;
//! # Ok(()) }
//! ```
//!
//! Its errors convert into [`TaskError`] with `?`: timeouts, connection
//! failures, 429 and 5xx are transient, the rest (a refused destination, a
//! tenant limit, a 404) permanent. Redirects are not followed.
#![deny(missing_docs)]

mod context;
mod error;
pub mod http;
pub mod log;
mod runtime;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use context::{Attempt, Context, ContextError};
pub use culvert_sdk_macros::{export_package, workflow};
pub use error::{TaskError, TaskErrorKind};
pub use runtime::WorkflowDefinition;

/// The version of the WIT contract (`culvert:plugin`) this SDK builds
/// packages against.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The version of this SDK, recorded in every package it builds.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Names a workflow's tasks need in scope. `#[workflow]` imports it into the
/// module it annotates.
pub mod prelude {
    pub use crate::{Context, ContextError, TaskError, TaskErrorKind};
}

/// The generated WIT bindings. Plugin authors never need them; they are
/// public for the macros and for test fixtures that must speak the raw
/// contract (for example, to lie in their metadata on purpose).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        // The crate's own copy of the repository's `wit/culvert.wit`, so that
        // the published crate carries the contract it is built against. The
        // test `the_wit_copy_is_the_repositorys` keeps the two identical.
        path: "wit",
        world: "culvert:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::culvert_sdk::bindings",
        generate_all,
    });
}

#[cfg(test)]
mod tests {
    /// The contract this crate is generated from: its own copy.
    const WIT: &str = include_str!("../wit/culvert.wit");

    /// The SDK builds packages against the version its `wit/` declares.
    #[test]
    fn the_wit_package_version_is_the_contract_version() {
        let line = format!("package culvert:plugin@{};", super::CONTRACT_VERSION);
        assert!(
            WIT.contains(&line),
            "plugin-sdk/wit/culvert.wit does not declare {line}"
        );
    }

    /// Host and SDK must be generated from the same WIT text: the crate's
    /// copy (what a published `culvert-sdk` carries) must be byte for byte
    /// the repository's `wit/culvert.wit` (what the host's `bindgen!` reads).
    /// Outside the repository (a packaged crate) there is nothing to compare.
    #[test]
    fn the_wit_copy_is_the_repositorys() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/culvert.wit");
        let Ok(repository) = std::fs::read_to_string(&root) else {
            assert!(
                !std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../host")
                    .exists(),
                "{} is missing inside the repository",
                root.display()
            );
            return;
        };
        assert!(
            repository == WIT,
            "plugin-sdk/wit/culvert.wit differs from wit/culvert.wit: copy it over with\n    cp wit/culvert.wit plugin-sdk/wit/culvert.wit"
        );
    }
}

/// Support code for the macros' expansions. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::*;
}
