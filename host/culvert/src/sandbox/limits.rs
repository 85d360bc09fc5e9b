//! What one call may use: its [`SandboxLimits`] and [`SandboxGrants`], who it
//! runs for ([`CallLabels`]), how it is cancelled ([`CancelFlag`]), and the
//! memory and table caps that remember being hit.

use crate::egress::{EgressLimits, EgressPolicy};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::ResourceLimiter;

/// Per-call limits. The defaults are documented on each field and in
/// docs/OPERATIONS.md.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// The most linear memory (all memories together), in bytes. Default
    /// 64 MiB. Capped by [`crate::EngineConfig::max_memory_bytes`].
    pub memory_bytes: u64,
    /// The most table elements over all tables. Default 100,000.
    pub table_elements: usize,
    /// The call's deadline. Default 30 s for tasks.
    pub timeout: Duration,
    /// Fuel for the call, when the engine counts fuel. `None`: unlimited.
    pub fuel: Option<u64>,
    /// Bytes of stdout, stderr and log records together. Default 1 MiB.
    pub output_bytes: usize,
    /// The largest context a task may return (or receive), in bytes.
    /// Default 16 MiB.
    pub max_context_bytes: usize,
    /// Capabilities granted to this call (declared by the package *and*
    /// granted by an operator). Default: none.
    pub grants: Arc<SandboxGrants>,
    /// The most cores the call's tenant may use together (see
    /// [`CpuLedger`](super::CpuLedger)). Default none: its fair share.
    pub cpu_cores: Option<f64>,
    /// What the call may do over HTTP (requests, bytes, time,
    /// connections), when its grants allow any. Default
    /// [`EgressLimits::default`].
    pub http: EgressLimits,
}

/// What a call may use beyond the capability-free default: the
/// intersection of what its package declared and what its tenant was
/// granted (the two-key rule of the tenants stage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxGrants {
    /// Environment variables and their values.
    pub env: Vec<(String, String)>,
    /// Preopened directories: host path, guest path, writable.
    pub dirs: Vec<(std::path::PathBuf, String, bool)>,
    /// The real wall clock (otherwise one frozen at the Unix epoch).
    pub wall_clock: bool,
    /// The host's secure random generator (otherwise a deterministic one).
    pub random: bool,
    /// Outbound HTTP: the hosts the package declared and the tenant was
    /// granted. Empty: every request is refused, naming the missing key.
    pub http: Arc<EgressPolicy>,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            table_elements: 100_000,
            timeout: Duration::from_secs(30),
            fuel: None,
            output_bytes: 1024 * 1024,
            max_context_bytes: 16 * 1024 * 1024,
            grants: Arc::new(SandboxGrants::default()),
            cpu_cores: None,
            http: EgressLimits::default(),
        }
    }
}

impl SandboxLimits {
    /// The limits for `describe`: a 2 s deadline, a 32 MiB memory cap and
    /// a 64 KiB output budget.
    pub fn describe() -> Self {
        Self {
            memory_bytes: 32 * 1024 * 1024,
            timeout: Duration::from_secs(2),
            output_bytes: 64 * 1024,
            ..Self::default()
        }
    }
}

/// Who a call runs for: tags on every log line the guest produces.
#[derive(Debug, Clone, Default)]
pub struct CallLabels {
    /// `tenant::package@version`.
    pub package: String,
    /// The workflow, or empty.
    pub workflow: String,
    /// The task, or empty (for `describe`).
    pub task: String,
    /// The execution id, or empty.
    pub execution: String,
    /// The tenant whose CPU time this call uses, or empty (no accounting).
    pub tenant: String,
}

/// A flag that cancels the calls that hold it: at the next epoch tick for
/// a guest running wasm, at once for one waiting in a host call.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    set: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set it: running calls stop.
    pub fn cancel(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
    /// Whether it is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }
    /// Resolves once the flag is set.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Why the host stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    Timeout,
    Cancelled,
}

/// Memory and table caps that remember being hit.
pub(crate) struct Limiter {
    pub(super) memory_cap: usize,
    pub(super) memory_used: usize,
    pub(super) table_cap: usize,
    pub(super) table_used: usize,
    /// What was refused, if anything.
    pub(crate) hit: Option<String>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.memory_used + desired.saturating_sub(current);
        if after > self.memory_cap {
            self.hit = Some(format!(
                "memory limit of {} bytes reached (asked to grow to {after})",
                self.memory_cap
            ));
            return Ok(false);
        }
        self.memory_used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.table_used + desired.saturating_sub(current);
        if after > self.table_cap {
            self.hit = Some(format!(
                "table limit of {} elements reached (asked to grow to {after})",
                self.table_cap
            ));
            return Ok(false);
        }
        self.table_used = after;
        Ok(true)
    }
}
