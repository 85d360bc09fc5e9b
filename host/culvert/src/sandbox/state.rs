//! The data of one store: [`HostState`], with the WASI and `wasi:http`
//! views wasmtime's host functions reach it through.

use super::cpu::CpuLedger;
use super::limits::{CallLabels, CancelFlag, Interrupt, Limiter};
use super::output::OutputCapture;
use crate::egress::EgressHooks;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The data of one store: WASI state, limits, captured output, and what the
/// host learned about why a call failed.
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) output: OutputCapture,
    pub(super) labels: Arc<CallLabels>,
    pub(crate) panic_message: Option<String>,
    pub(crate) interrupted: Option<Interrupt>,
    pub(super) deadline: Instant,
    pub(super) cancel: Option<CancelFlag>,
    pub(super) cpu: Option<Arc<CpuLedger>>,
    pub(super) cpu_cap: Option<f64>,
    pub(super) http: WasiHttpCtx,
    pub(crate) egress: EgressHooks,
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
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

    /// Drop every resource the guest still holds (open responses, their
    /// connections), so that what they report reaches the call's log
    /// before it is taken.
    pub(crate) fn release_resources(&mut self) {
        self.table = ResourceTable::new();
    }
}
