//! # culvert: a durable workflow engine whose tasks run as sandboxed
//! WebAssembly components
//!
//! A *package* is a WebAssembly component that targets the
//! `culvert:plugin/plugin` world (the repository's `wit/` folder). It
//! describes its workflows (DAGs of tasks, with retry policies, timeouts and
//! trigger rules) through `describe`, and runs one task per `task.run` call.
//!
//! The pipeline, one module per stage:
//!
//! - [`engine`]: the shared wasmtime [`SandboxEngine`], with epoch
//!   interruption, the pooling allocator and a bounded stack.
//! - [`sandbox`]: a fresh store per call, capability-free unless granted,
//!   with its [`SandboxLimits`].
//! - [`cache`]: the [`CompiledCache`], keyed by the component's blake3
//!   [`ContentHash`] and the engine's compatibility key; compiles once.
//! - [`loader`]: bytes → validated [`LoadedPackage`] through the
//!   [`PackageLoader`].
//! - [`metadata`]: the validated [`PackageMetadata`] and its rules.
//! - [`invoke`]: `describe` and [`run_task`](invoke::run_task), with each
//!   failure classified as a [`FailureKind`].
//! - [`store`]: SQLite and PostgreSQL behind one [`Store`] trait.
//! - [`registry`] and [`reconciler`]: the in-memory registries and the loop
//!   that keeps them equal to the database.
//! - [`scheduler`] and [`executor`]: when tasks run, and running them with
//!   leases, retries and recovery.
//! - [`tenants`]: isolation, quotas and capability grants.
//! - [`runner`]: the embedding API, [`Runner`].
//! - [`cli`] and [`bench`]: the `culvert` command line and its benchmarks.
//! - [`files`] and [`guest_text`]: reading files that may not be regular,
//!   and escaping guest text before it is logged.

#![deny(missing_docs)]

pub mod bench;
pub mod bindings;
pub mod cache;
pub mod cli;
pub mod engine;
pub mod executor;
pub mod files;
pub mod guest_text;
pub mod invoke;
pub mod loader;
pub mod metadata;
pub mod reconciler;
pub mod registry;
pub mod runner;
pub mod sandbox;
pub mod scheduler;
pub mod store;
pub mod tenants;

pub use cache::{CacheConfig, CacheSource, CacheStats, Compiled, CompiledCache, ContentHash};
pub use engine::{EngineConfig, SandboxEngine};
pub use executor::{Executor, ExecutorConfig};
pub use invoke::{FailureKind, TaskCall, TaskFailure, TaskOutput};
pub use loader::{LoadError, LoadedPackage, LoaderConfig, PackageLoader};
pub use metadata::PackageMetadata;
pub use reconciler::{ReconcileResult, Reconciler, ReconcilerConfig, ReconcilerStatus};
pub use registry::{Registry, TaskNamespace};
pub use runner::{Error, Registered, Runner, RunnerConfig};
pub use sandbox::{CallLabels, CancelFlag, SandboxLimits};
pub use scheduler::{ExecutionStatus, TaskStatus};
pub use store::{Store, StoreError};
pub use tenants::{Grant, GrantKind, TenantLimits};
