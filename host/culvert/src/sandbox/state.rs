//! The data of one store: [`HostState`].

use super::cpu::CpuLedger;
use super::limits::{CallLabels, CancelFlag, Interrupt, Limiter};
use super::output::OutputCapture;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
