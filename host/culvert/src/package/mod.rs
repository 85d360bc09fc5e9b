//! Packages: component bytes in, a validated, compiled, callable package
//! out, and calls into it.
//!
//! - `metadata`: what a package says about itself, as plain serializable
//!   types ([`PackageMetadata`], [`WorkflowMeta`], [`TaskMeta`], trigger
//!   rules and retry policies).
//! - `validate`: the rules `describe`'s answer must pass ([`validate`],
//!   [`MetadataLimits`]), and the typed [`MetadataError`] when it does not.
//! - `link`: a compiled component checked against the contract and linked
//!   ([`IncompatibleComponent`]).
//! - `cache`: compiled code, in memory and on disk, keyed by the
//!   component's blake3 [`ContentHash`] and the engine's compatibility key
//!   ([`CompiledCache`]).
//! - `invoke`: `describe` and [`run_task`] (or [`run_task_logged`], which
//!   also returns what the guest said), each in a fresh store, with every
//!   failure classified as a [`FailureKind`].
//! - `loader`: the steps in order, bytes to [`LoadedPackage`]
//!   ([`PackageLoader`]).
//!
//! Imports run `metadata` → `validate`; `link` → `cache` → `invoke` →
//! `loader`. The stage imports from `contract` and `sandbox` below it.

mod cache;
mod invoke;
mod link;
mod loader;
mod metadata;
mod validate;

pub use cache::{
    CacheConfig, CacheError, CacheSource, CacheStats, Compiled, CompiledCache, ContentHash,
    MAX_ARTIFACT_BYTES, is_engine_key,
};
pub use invoke::{
    FailureKind, TaskCall, TaskFailure, TaskOutput, TaskRun, describe, parse_context, run_task,
    run_task_logged,
};
pub use link::{IncompatibleComponent, imports_of};
pub use loader::{LoadError, LoadedPackage, LoaderConfig, PackageLoader};
pub use metadata::{
    Backoff, CapabilityRequest, Condition, DirRequest, PackageMetadata, RetryOn, RetryPolicy,
    TaskMeta, TriggerRule, WorkflowMeta,
};
pub use validate::{MetadataError, MetadataLimits, MetadataLocation, NameKind, validate};
