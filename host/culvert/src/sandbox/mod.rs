//! The sandbox: everything a guest call runs inside.
//!
//! - `engine`: the one shared wasmtime engine ([`SandboxEngine`]), its
//!   linker and the epoch ticker that lets deadlines preempt guests.
//! - `limits`: what one call may use ([`SandboxLimits`], [`SandboxGrants`]),
//!   who it runs for ([`CallLabels`]) and how it is cancelled
//!   ([`CancelFlag`]).
//! - `cpu`: the [`CpuLedger`] that shares CPU fairly between tenants.
//! - `state`: the data of one store ([`HostState`]).
//! - `output`: the guest's stdout, stderr and log records, captured into
//!   one byte budget; and kept, in order and capped at [`TASK_LOG_BYTES`],
//!   as the [`TaskLogs`] the executor stores with each attempt.
//! - `imports`: the host functions a guest may import (logging).
//! - `call`: a fresh store for each call, with its deadline and epoch
//!   callback.
//!
//! Every store gets, by default:
//! - WASI p2 with **no capabilities**: no preopened directories, no
//!   environment, no arguments, no sockets or name lookups, no inherited
//!   stdio, a wall clock frozen at the Unix epoch and a deterministic random
//!   generator. A call's [`SandboxGrants`] open exactly what its package
//!   declared and its tenant was granted. Stdin is closed; stdout and
//!   stderr are captured into one shared byte budget, together with the
//!   guest's log records ([`SandboxLimits::output_bytes`]). Past the budget
//!   the guest traps with an output-limit error.
//! - a memory cap enforced by a resource limiter that records when it was
//!   hit, so that running out of memory is reported as such and not as the
//!   `unreachable` trap Rust's allocator turns it into;
//! - a deadline, checked on every epoch tick, which also yields to the async
//!   runtime so a spinning guest cannot starve other tasks;
//! - a cancellation flag, checked on the same ticks;
//! - fuel, when the engine counts it.
//!
//! Imports inside run one way: `cpu`, `limits` → `output` →
//! `state` → `imports` → `engine` → `call`.

mod call;
mod cpu;
mod engine;
mod imports;
mod limits;
mod output;
mod state;

pub(crate) use call::grace;
pub use call::new_store;
pub use cpu::CpuLedger;
pub use engine::{EngineConfig, SandboxEngine, WASMTIME_VERSION};
pub(crate) use limits::Interrupt;
pub use limits::{CallLabels, CancelFlag, SandboxGrants, SandboxLimits};
pub use output::{LOG_RECORD_OVERHEAD, LogRecord, LogStream, TASK_LOG_BYTES, TaskLogs};
pub use state::HostState;
