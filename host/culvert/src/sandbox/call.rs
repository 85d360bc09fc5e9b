//! A fresh [`Store`] for each guest call, with its limits, its deadline,
//! its epoch callback and its HTTP send hook.

use super::engine::SandboxEngine;
use super::limits::{CallLabels, CancelFlag, Interrupt, Limiter, SandboxLimits};
use super::output::{CapturedStream, OutputCapture, Which};
use super::state::HostState;
use crate::egress::{EgressHooks, Outcome as EgressOutcome, RecordSink, RequestRecord};
use crate::guest_text::Escaped;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

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
    let deadline = Instant::now() + limits.timeout;
    let egress = EgressHooks::new(
        engine.network().clone(),
        grants.http.clone(),
        limits.http.clone(),
        deadline,
        egress_sink(output.clone(), labels.clone()),
    );
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
        deadline,
        cancel,
        cpu: (!labels_tenant_empty).then(|| engine.cpu().clone()),
        cpu_cap: limits.cpu_cores,
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        egress,
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

/// Where a call's HTTP requests are reported: one host record each in
/// the call's stored log (not charged to the guest's output budget), and
/// one `culvert::egress` line in the host's log.
fn egress_sink(output: OutputCapture, labels: Arc<CallLabels>) -> RecordSink {
    Arc::new(move |r: &RequestRecord| {
        let status = r.status.map(|s| s.to_string()).unwrap_or_default();
        let ms = r.elapsed.as_millis();
        let message = match &r.outcome {
            EgressOutcome::Completed => format!(
                "http {} {}{} -> {status}, {} bytes in {ms} ms",
                r.method, r.origin, r.path, r.bytes
            ),
            EgressOutcome::Abandoned => format!(
                "http {} {}{} -> {status}, abandoned after {} bytes in {ms} ms",
                r.method, r.origin, r.path, r.bytes
            ),
            EgressOutcome::Refused(why) | EgressOutcome::Failed(why) => format!(
                "http {} {}{} {}: {why}",
                r.method,
                r.origin,
                r.path,
                r.outcome.as_str()
            ),
        };
        let fields = vec![
            ("method".to_string(), r.method.to_string()),
            ("origin".to_string(), r.origin.clone()),
            ("path".to_string(), r.path.clone()),
            ("status".to_string(), status.clone()),
            ("bytes".to_string(), r.bytes.to_string()),
            ("ms".to_string(), ms.to_string()),
            ("outcome".to_string(), r.outcome.as_str().to_string()),
            ("grant".to_string(), r.grant.clone().unwrap_or_default()),
            (
                "address".to_string(),
                r.address.map(|a| a.to_string()).unwrap_or_default(),
            ),
        ];
        let level = if matches!(r.outcome, EgressOutcome::Completed) {
            "info"
        } else {
            "warn"
        };
        output.host_record(level, &message, &fields);
        tracing::info!(
            target: "culvert::egress",
            package = %labels.package,
            workflow = %labels.workflow,
            task = %labels.task,
            execution = %labels.execution,
            method = r.method,
            origin = %Escaped(&r.origin),
            path = %Escaped(&r.path),
            status,
            bytes = r.bytes,
            ms = ms as u64,
            outcome = r.outcome.as_str(),
            "outbound request"
        );
    })
}

/// How long after the deadline the async timeout gives up on a call that is
/// blocked in a host call (where epochs cannot reach it): one tick plus a
/// little.
pub(crate) fn grace(engine: &SandboxEngine) -> Duration {
    engine.config().epoch_tick * 2 + Duration::from_millis(20)
}
