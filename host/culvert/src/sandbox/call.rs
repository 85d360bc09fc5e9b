//! A fresh [`Store`] for each guest call, with its limits, its deadline
//! and its epoch callback.

use super::engine::SandboxEngine;
use super::limits::{CallLabels, CancelFlag, Interrupt, Limiter, SandboxLimits};
use super::output::{CapturedStream, OutputCapture, Which};
use super::state::HostState;
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

/// How long after the deadline the async timeout gives up on a call that is
/// blocked in a host call (where epochs cannot reach it): one tick plus a
/// little.
pub(crate) fn grace(engine: &SandboxEngine) -> Duration {
    engine.config().epoch_tick * 2 + Duration::from_millis(20)
}
