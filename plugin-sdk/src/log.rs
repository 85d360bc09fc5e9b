//! Structured logging that reaches the host.
//!
//! Each record goes to the host's `tracing` output, tagged with the package,
//! workflow, task and execution. Its bytes count against the task's output
//! cap, like stdout and stderr: a task that floods the log is stopped.
//!
//! ```no_run
//! culvert_sdk::log::info("loaded the batch");
//! culvert_sdk::log::log(
//!     culvert_sdk::log::Level::Warn,
//!     "slow upstream",
//!     &[("elapsed_ms", "1200"), ("host", "db-1")],
//! );
//! ```

//!
//! In a native build (`cargo test`) there is no host: records go to
//! [`testing`](crate::testing)'s capture while it runs a task, and to stderr
//! otherwise.

#[cfg(target_arch = "wasm32")]
use crate::bindings::culvert::plugin::host;
use crate::bindings::culvert::plugin::types::LogLevel;

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very fine detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the task handled.
    Warn,
    /// Something failed.
    Error,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// Log `message` at `level` with key-value `fields`.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    #[cfg(target_arch = "wasm32")]
    host::log(level.into(), message, &fields);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message, fields);
}

/// Log at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message, &[]);
}

/// Log at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Log at info level.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Log at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Log at error level.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}
