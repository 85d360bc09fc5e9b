//! One guest call's sandbox: the store data ([`HostState`]), its limits
//! ([`SandboxLimits`]), and how a fresh [`Store`] is set up for each call.
//!
//! Every store gets, by default:
//! - WASI p2 with **no capabilities**: no preopened directories, no
//!   environment, no arguments, no sockets or name lookups, no inherited
//!   stdio, a wall clock frozen at the Unix epoch and a deterministic random
//!   generator. A call's [`SandboxGrants`] open exactly what its package
//!   declared and its tenant was granted (see [`crate::tenants`]). Stdin is closed; stdout and stderr are captured into one shared
//!   byte budget, together with the guest's log records
//!   ([`SandboxLimits::output_bytes`]). Past the budget the guest traps with
//!   an output-limit error.
//! - a memory cap enforced by a [`ResourceLimiter`] that records when it was
//!   hit, so that running out of memory is reported as such and not as the
//!   `unreachable` trap Rust's allocator turns it into;
//! - a deadline, checked on every epoch tick, which also yields to the async
//!   runtime so a spinning guest cannot starve other tasks;
//! - a cancellation flag, checked on the same ticks;
//! - fuel, when the engine counts it.

use crate::bindings::culvert::plugin::host;
use crate::bindings::types::LogLevel;
use crate::engine::SandboxEngine;
use crate::guest_text::Escaped;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
    /// [`CpuLedger`]). Default none: its fair share.
    pub cpu_cores: Option<f64>,
}

/// What a call may use beyond the capability-free default: the
/// intersection of what its package declared and what its tenant was
/// granted (see [`crate::tenants`]).
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
}

/// A wall clock frozen at the Unix epoch: what a guest without the
/// wall-clock capability sees.
struct EpochClock;

impl wasmtime_wasi::HostWallClock for EpochClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
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

/// The data of one store: WASI state, limits, captured output, and what the
/// host learned about why a call failed.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) output: OutputCapture,
    labels: Arc<CallLabels>,
    pub(crate) panic_message: Option<String>,
    pub(crate) interrupted: Option<Interrupt>,
    deadline: Instant,
    cancel: Option<CancelFlag>,
    cpu: Option<Arc<CpuLedger>>,
    cpu_cap: Option<f64>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    /// The labels of this call.
    pub fn labels(&self) -> &CallLabels {
        &self.labels
    }
}

/// Build a fresh store for one call.
///
/// # Errors
/// When a granted directory cannot be opened, or fuel cannot be set.
pub fn new_store(
    engine: &SandboxEngine,
    limits: &SandboxLimits,
    labels: Arc<CallLabels>,
    cancel: Option<CancelFlag>,
) -> anyhow::Result<Store<HostState>> {
    let output = OutputCapture::new(limits.output_bytes);
    let labels_tenant_empty = labels.tenant.is_empty();
    if !labels_tenant_empty {
        engine.cpu().seen(&labels.tenant);
    }
    let mut builder = WasiCtx::builder();
    builder
        .stdout(CapturedStream {
            capture: output.clone(),
            which: Which::Stdout,
        })
        .stderr(CapturedStream {
            capture: output.clone(),
            which: Which::Stderr,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let grants = &limits.grants;
    if !grants.env.is_empty() {
        builder.envs(&grants.env);
    }
    for (host, guest, writable) in &grants.dirs {
        let perms = if *writable {
            wasmtime_wasi::FsPerms::ReadWrite
        } else {
            wasmtime_wasi::FsPerms::ReadOnly
        };
        builder.preopened_dir(host, guest, perms).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the granted directory {} for {guest}: {e}",
                host.display()
            )
        })?;
    }
    if !grants.wall_clock {
        builder.wall_clock(EpochClock);
    }
    if !grants.random {
        builder
            .secure_random(wasmtime_wasi::Deterministic::new(vec![
                0x5e, 0xed, 0xc0, 0x1d, 0x42, 0x17, 0x99, 0x03,
            ]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![
                0x24, 0x68, 0xac, 0xe0,
            ]))
            .insecure_random_seed(0);
    }
    let memory_cap = limits.memory_bytes.min(engine.config().max_memory_bytes);
    let state = HostState {
        wasi: builder.build(),
        table: ResourceTable::new(),
        limiter: Limiter {
            memory_cap: memory_cap as usize,
            memory_used: 0,
            table_cap: limits.table_elements,
            table_used: 0,
            hit: None,
        },
        output,
        labels,
        panic_message: None,
        interrupted: None,
        deadline: Instant::now() + limits.timeout,
        cancel,
        cpu: (!labels_tenant_empty).then(|| engine.cpu().clone()),
        cpu_cap: limits.cpu_cores,
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    if engine.config().fuel {
        store.set_fuel(limits.fuel.unwrap_or(u64::MAX))?;
    }
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if state.cancel.as_ref().is_some_and(CancelFlag::is_cancelled) {
            state.interrupted = Some(Interrupt::Cancelled);
            return Ok(UpdateDeadline::Interrupt);
        }
        if Instant::now() >= state.deadline {
            state.interrupted = Some(Interrupt::Timeout);
            return Ok(UpdateDeadline::Interrupt);
        }
        match state
            .cpu
            .as_ref()
            .and_then(|cpu| cpu.tick(&state.labels.tenant, state.cpu_cap))
        {
            // Over its share: sit out the rest of the window.
            Some(pause) => Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep(pause)),
            )),
            None => Ok(UpdateDeadline::Yield(1)),
        }
    });
    Ok(store)
}

/// Fair shares of CPU between tenants.
///
/// Every epoch tick a guest spends running wasm is charged to its tenant,
/// against a token bucket that refills at the tenant's share of the
/// machine's cores: all of them for a tenant alone; with several tenants
/// that had tasks running in the last second, one core is kept back for
/// the host's own work (claiming, recording, the database) and the rest is
/// split evenly. A guest whose tenant is in debt pauses until the debt is
/// paid back, so a tenant that floods the machine with CPU loops gets its
/// share and no more, however many loops it runs. Guests waiting in host
/// calls (sleeping, say) use no ticks.
#[derive(Debug)]
pub struct CpuLedger {
    cores: f64,
    tick: Duration,
    state: Mutex<LedgerState>,
}

#[derive(Debug, Default)]
struct LedgerState {
    /// Per tenant: tokens (in ticks) and when they were last refilled.
    buckets: std::collections::HashMap<String, (f64, Instant)>,
    seen: std::collections::HashMap<String, Instant>,
}

impl CpuLedger {
    /// A ledger for `cores` cores and an epoch tick of `tick`.
    pub fn new(cores: usize, tick: Duration) -> Self {
        Self {
            cores: cores.max(1) as f64,
            tick,
            state: Mutex::new(LedgerState::default()),
        }
    }

    /// Note that `tenant` has a task running.
    pub fn seen(&self, tenant: &str) {
        let mut s = self.state.lock().expect("ledger lock");
        s.seen.insert(tenant.to_string(), Instant::now());
    }

    /// Charge one tick to `tenant`; how long its guest should pause if the
    /// tenant has used more than its share (or than `cap` cores).
    pub fn tick(&self, tenant: &str, cap: Option<f64>) -> Option<Duration> {
        self.charge_ticks(tenant, 1.0, cap)
    }

    /// Charge `work` done by the host on `tenant`'s behalf (parsing, merging
    /// and storing the data its tasks return) to its bucket, as if its
    /// guests had run that long: its guests then pause until the debt is
    /// paid, so a tenant cannot make the host work for it beyond its share.
    pub fn charge(&self, tenant: &str, work: Duration, cap: Option<f64>) {
        let ticks = work.as_secs_f64() / self.tick.as_secs_f64();
        if ticks > 0.0 {
            self.charge_ticks(tenant, ticks, cap);
        }
    }

    fn charge_ticks(&self, tenant: &str, ticks: f64, cap: Option<f64>) -> Option<Duration> {
        if tenant.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut s = self.state.lock().expect("ledger lock");
        s.seen.insert(tenant.to_string(), now);
        s.seen
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(1));
        // Buckets of tenants gone quiet are full again anyway: forget them.
        if s.buckets.len() > 64 {
            s.buckets
                .retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(10));
        }
        let active = s.seen.len().max(1) as f64;
        let cores = if active <= 1.0 {
            self.cores
        } else {
            (self.cores - 1.0).max(1.0)
        };
        // The tenant's share, in ticks per second, and a bucket of 100 ms.
        let share = (cores / active).min(cap.unwrap_or(f64::INFINITY));
        let rate = share / self.tick.as_secs_f64();
        let capacity = rate * 0.1;
        let (tokens, last) = s
            .buckets
            .entry(tenant.to_string())
            .or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(capacity);
        *last = now;
        *tokens -= ticks;
        if *tokens < 0.0 {
            Some(Duration::from_secs_f64(-*tokens / rate))
        } else {
            None
        }
    }
}

/// Memory and table caps that remember being hit.
pub(crate) struct Limiter {
    memory_cap: usize,
    memory_used: usize,
    table_cap: usize,
    table_used: usize,
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

/// Which captured stream.
#[derive(Debug, Clone, Copy)]
enum Which {
    Stdout,
    Stderr,
}

/// Captured stdout and stderr, with one byte budget that log records share.
#[derive(Clone)]
pub(crate) struct OutputCapture(Arc<Mutex<OutputInner>>);

struct OutputInner {
    cap: usize,
    used: usize,
    exceeded: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl OutputCapture {
    fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(OutputInner {
            cap,
            used: 0,
            exceeded: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })))
    }

    /// Charge `n` bytes; false (and the exceeded mark) when over budget.
    fn charge(&self, n: usize) -> bool {
        let mut inner = self.0.lock().expect("output lock");
        if inner.used.saturating_add(n) > inner.cap {
            inner.exceeded = true;
            false
        } else {
            inner.used += n;
            true
        }
    }

    fn append(&self, which: Which, bytes: &[u8]) -> bool {
        let mut inner = self.0.lock().expect("output lock");
        if inner.used.saturating_add(bytes.len()) > inner.cap {
            inner.exceeded = true;
            return false;
        }
        inner.used += bytes.len();
        match which {
            Which::Stdout => inner.stdout.extend_from_slice(bytes),
            Which::Stderr => inner.stderr.extend_from_slice(bytes),
        }
        true
    }

    /// Whether the budget was exceeded.
    pub(crate) fn exceeded(&self) -> bool {
        self.0.lock().expect("output lock").exceeded
    }

    /// The message of a Rust panic printed to stderr (`panicked at
    /// FILE:LINE:COL:\nMESSAGE`), if any.
    pub(crate) fn panic_on_stderr(&self) -> Option<String> {
        let inner = self.0.lock().expect("output lock");
        let text = String::from_utf8_lossy(&inner.stderr);
        let at = text.find("panicked at ")?;
        let rest = &text[at + "panicked at ".len()..];
        let (location, message) = rest.split_once('\n').unwrap_or((rest, ""));
        let message: String = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(4096)
            .collect();
        Some(format!(
            "{message} (at {})",
            location
                .trim_end_matches(':')
                .chars()
                .take(256)
                .collect::<String>()
        ))
    }

    /// The budget in bytes.
    pub(crate) fn cap(&self) -> usize {
        self.0.lock().expect("output lock").cap
    }

    /// Send what was captured to `tracing`, line by line, each line's
    /// control characters escaped (see [`crate::guest_text`]), and clear it.
    pub(crate) fn flush_to_tracing(&self, labels: &CallLabels) {
        let (stdout, stderr) = {
            let mut inner = self.0.lock().expect("output lock");
            (
                std::mem::take(&mut inner.stdout),
                std::mem::take(&mut inner.stderr),
            )
        };
        for (stream, bytes) in [("stdout", stdout), ("stderr", stderr)] {
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                tracing::info!(
                    target: "culvert::guest",
                    package = %labels.package,
                    workflow = %labels.workflow,
                    task = %labels.task,
                    execution = %labels.execution,
                    stream,
                    "{}",
                    Escaped(line)
                );
            }
        }
    }
}

/// A guest's stdout or stderr.
struct CapturedStream {
    capture: OutputCapture,
    which: Which,
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(CapturedStream {
            capture: self.capture.clone(),
            which: self.which,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(CapturedStream {
            capture: self.capture.clone(),
            which: self.which,
        })
    }
}

fn over_budget(capture: &OutputCapture) -> String {
    format!(
        "output limit of {} bytes exceeded (stdout, stderr and log together)",
        capture.cap()
    )
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.capture.append(self.which, &bytes) {
            Ok(())
        } else {
            Err(StreamError::trap(&over_budget(&self.capture)))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let result = if self.capture.append(self.which, buf) {
            Ok(buf.len())
        } else {
            Err(std::io::Error::other(over_budget(&self.capture)))
        };
        std::task::Poll::Ready(result)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The guest's log records: forwarded to `tracing` with the message and
/// every field name and value escaped (see [`crate::guest_text`]), charged
/// to the output budget, and scanned for the SDK's panic marker.
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
        if !self.output.charge(size) {
            return Err(wasmtime::format_err!("{}", over_budget(&self.output)));
        }
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{}={}", Escaped(k), Escaped(v)))
            .collect::<Vec<_>>()
            .join(" ");
        let l = &self.labels;
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(
                    target: "culvert::guest",
                    package = %l.package,
                    workflow = %l.workflow,
                    task = %l.task,
                    execution = %l.execution,
                    fields = %fields,
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

impl crate::bindings::culvert::plugin::types::Host for HostState {}

/// How long after the deadline the async timeout gives up on a call that is
/// blocked in a host call (where epochs cannot reach it): one tick plus a
/// little.
pub(crate) fn grace(engine: &SandboxEngine) -> Duration {
    engine.config().epoch_tick * 2 + Duration::from_millis(20)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tick counts below mirror the ledger's formula (a bucket of 100 ms
    // of the tenant's share); they document it. What the formula does to a
    // real guest is checked end to end by `cpu_caps_hold_end_to_end` in
    // tests/tenants.rs (the CPU a capped guest gets) and by
    // `culvert bench tenants`.
    #[test]
    fn a_tenant_alone_gets_every_core_and_pauses_when_over() {
        let ledger = CpuLedger::new(2, Duration::from_millis(10));
        // Alone: 2 cores, a 100 ms bucket of 20 ticks.
        let paused_after = (1..=100).find(|_| ledger.tick("a", None).is_some());
        assert_eq!(paused_after, Some(21));
    }

    #[test]
    fn several_tenants_split_the_cores_minus_one() {
        let ledger = CpuLedger::new(3, Duration::from_millis(10));
        ledger.seen("a");
        ledger.seen("b");
        // Two active tenants on 3 cores: (3 - 1) / 2 = 1 core each, a
        // bucket of 10 ticks; the pause is one tick's worth of debt.
        let paused_after = (1..=100).find(|_| ledger.tick("a", None).is_some());
        assert_eq!(paused_after, Some(11));
        let pause = ledger.tick("a", None).unwrap();
        assert!(
            pause >= Duration::from_millis(15) && pause <= Duration::from_millis(25),
            "{pause:?}"
        );
        // The other tenant's bucket is untouched.
        assert!(ledger.tick("b", None).is_none());
    }

    #[test]
    fn host_work_charged_to_a_tenant_pauses_its_guests() {
        let ledger = CpuLedger::new(2, Duration::from_millis(10));
        // Alone: a bucket of 20 ticks. 150 ms of host work is 15 of them.
        ledger.charge("a", Duration::from_millis(150), None);
        let paused_after = (1..=100).find(|_| ledger.tick("a", None).is_some());
        assert_eq!(paused_after, Some(6));
        // Another tenant's bucket is untouched by that debt.
        assert!(ledger.tick("b", None).is_none());
    }

    #[test]
    fn a_cpu_cap_lowers_the_share() {
        let ledger = CpuLedger::new(2, Duration::from_millis(10));
        // A quarter of a core: a bucket of 2.5 ticks.
        let paused_after = (1..=100).find(|_| ledger.tick("a", Some(0.25)).is_some());
        assert_eq!(paused_after, Some(3));
        assert!(ledger.tick("", None).is_none(), "no tenant, no accounting");
    }
}
