//! The host functions a guest may import: the contract's `host`
//! interface (logging), in every accepted contract version.

use super::output::over_budget;
use super::state::HostState;
use crate::contract::culvert::plugin::host;
use crate::contract::types::LogLevel;
use crate::guest_text::Escaped;

/// The guest's log records: forwarded to `tracing` with the message and
/// every field name and value escaped (see [`crate::guest_text`]), charged
/// to the output budget, kept (within [`TASK_LOG_BYTES`](super::output::TASK_LOG_BYTES))
/// for storage, and scanned for the SDK's panic marker.
impl host::Host for HostState {
    fn log(
        &mut self,
        level: LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = message.len()
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        if fields.iter().any(|(k, _)| k == "culvert.panic") {
            // The SDK's panic hook: remember the message for the trap that
            // follows. Bounded, since the guest chooses it.
            let mut msg: String = message.chars().take(4096).collect();
            if let Some((_, loc)) = fields.iter().find(|(k, _)| k == "location")
                && !loc.is_empty()
            {
                msg = format!("{msg} (at {})", loc.chars().take(256).collect::<String>());
            }
            self.panic_message = Some(msg);
        }
        let level_name = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        if !self.output.log(size, level_name, &message, &fields) {
            return Err(wasmtime::format_err!("{}", over_budget(&self.output)));
        }
        // No `fields=` at all when the guest gave none.
        let fields = (!fields.is_empty()).then(|| {
            fields
                .iter()
                .map(|(k, v)| format!("{}={}", Escaped(k), Escaped(v)))
                .collect::<Vec<_>>()
                .join(" ")
        });
        let fields = fields.as_deref().map(tracing::field::display);
        let l = &self.labels;
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(
                    target: "culvert::guest",
                    package = %l.package,
                    workflow = %l.workflow,
                    task = %l.task,
                    execution = %l.execution,
                    fields,
                    "{}",
                    Escaped(&message)
                )
            };
        }
        match level {
            LogLevel::Trace => emit!(trace),
            LogLevel::Debug => emit!(debug),
            LogLevel::Info => emit!(info),
            LogLevel::Warn => emit!(warn),
            LogLevel::Error => emit!(error),
        }
        Ok(())
    }
}

impl crate::contract::types::Host for HostState {}

/// Contract 0.1's `host` interface: the same logging.
impl crate::contract::v0_1::culvert::plugin::host::Host for HostState {
    fn log(
        &mut self,
        level: crate::contract::v0_1::culvert::plugin::types::LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        host::Host::log(
            self,
            crate::contract::v0_1_log_level(level),
            message,
            fields,
        )
    }
}

impl crate::contract::v0_1::culvert::plugin::types::Host for HostState {}
