//! The registries in memory and the loop that keeps them equal to the
//! database.
//!
//! - `in_memory`: the [`Registry`] of loaded packages, looked up by
//!   [`TaskNamespace`] (`tenant::package::workflow::task`) or by workflow.
//! - `reconciler`: the [`Reconciler`], which loads what the database holds
//!   and the registry lacks, unloads what it no longer holds, and records
//!   per package why a load failed.
//!
//! Imports run `in_memory` → `reconciler`; the stage imports from
//! `package` and `store` below it.

mod in_memory;
mod reconciler;

pub(crate) use in_memory::find_runnable_workflow;
pub use in_memory::{LookupError, RegisteredPackage, Registry, TaskNamespace, WorkflowRef};
pub use reconciler::{
    FailedPackage, PackageStatusDetail, ReconcileError, ReconcileResult, Reconciler,
    ReconcilerConfig, ReconcilerStatus,
};
