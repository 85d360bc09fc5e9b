//! # culvert: a durable workflow engine whose tasks run as sandboxed
//! WebAssembly components
//!
//! A *package* is a WebAssembly component that targets the
//! `culvert:plugin/plugin` world (the repository's `wit/` folder). It
//! describes its workflows (DAGs of tasks, with retry policies, timeouts and
//! trigger rules) through `describe`, and runs one task per `task.run` call.
//! [`Runner`] is the embedding API: it registers packages, starts
//! executions and runs them.
//!
//! The modules are private; everything public is re-exported here, once.
//! Inside, the crate is one pipeline of stages, each a folder whose
//! `mod.rs` is a short tour, and imports run one way, down this list:
//!
//! | Stage | What it does |
//! |---|---|
//! | `files`, `guest_text`, `signing`, `suggest`, `telemetry` | bounded reads of regular files; guest text made safe for a log line; package signatures (Ed25519 keys, `.sig` files, verification); "did you mean"; the metrics' names and recording |
//! | `contract` | the one `bindgen!` of the WIT world and the contract version rules |
//! | `egress` | outbound HTTP: the allowlist (declared and granted host patterns), the address check, the network, the per-call send hook |
//! | `sandbox` | the engine, a fresh store per call, limits, the CPU ledger, host imports |
//! | `cron` | schedules as pure rules: cron expressions in a timezone, due times, catch-up and overlap |
//! | `package` | metadata and its validation, linking, the compiled-code cache, `describe` and `run`, the loader |
//! | `tenants`, `access` | tenant limits, capability grants and names; API keys and the audit log |
//! | `scheduler` | pure rules: statuses, plans, context merging, run or skip |
//! | `store` | SQLite and PostgreSQL behind one [`Store`] trait |
//! | `registry` | the in-memory registries and the reconcile loop |
//! | `executor`, `start_queue`, `firing` | claiming and running tasks with leases, retries and recovery; group-committed starts; the loop that fires schedules |
//! | `runner` | the embedding API, [`Runner`] |

#![deny(missing_docs)]

mod access;
mod contract;
mod cron;
mod egress;
mod executor;
mod files;
mod firing;
mod guest_text;
mod package;
mod registry;
mod runner;
mod sandbox;
mod scheduler;
mod signing;
mod start_queue;
mod store;
mod suggest;
mod telemetry;
mod tenants;
#[doc(hidden)]
pub mod test_support;

pub use access::{
    API_KEY_PREFIX, ApiKeyRole, ApiKeyRow, AuditAction, AuditEntry, AuditRow, NewApiKey,
    api_key_id, generate_api_key, verify as verify_api_key,
};
pub use contract::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, ContractVersionError, check_contract_version,
};
pub use cron::{
    CatchUp, CronTimes, Fire, FireOutcome, MAX_CATCH_UP_CAP, ON_TIME_MS, Overlap, Plan, PlanInput,
    ScheduleError, ScheduleSpec, plan as plan_fires, rfc3339,
};
pub use egress::{
    ConnectionLedger, Denial, Destination, EgressConfig, EgressHooks, EgressLimits, EgressPolicy,
    HostPattern, HostRule, MAX_PATTERN_BYTES as MAX_HOST_PATTERN_BYTES, Network,
    Outcome as EgressOutcome, PatternError, PortRule, RecordSink, RequestRecord, SchemeRule,
    prohibited as prohibited_address,
};
pub use executor::{Executor, ExecutorConfig, ExecutorStats, retry_decision};
pub use files::{Links, OpenError, open_regular, read_bounded};
pub use firing::{Clock, FIRING_INTERVAL, Firer, ManualClock, PassReport, SystemClock};
pub use guest_text::{Escaped, escape as escape_guest_text};
pub use package::{
    Backoff, CacheConfig, CacheError, CacheSource, CacheStats, CapabilityRequest, Compiled,
    CompiledCache, Condition, ContentHash, DirRequest, FailureKind, IncompatibleComponent,
    LoadError, LoadedPackage, LoaderConfig, MAX_ARTIFACT_BYTES, MetadataError, MetadataLimits,
    MetadataLocation, NameKind, PackageLoader, PackageMetadata, RetryOn, RetryPolicy, TaskCall,
    TaskFailure, TaskMeta, TaskOutput, TaskRun, TriggerRule, WorkflowMeta,
    describe as describe_package, imports_of, is_engine_key, parse_context, run_task,
    run_task_logged, validate as validate_metadata,
};
pub use registry::{
    FailedPackage, LookupError, PackageStatusDetail, ReconcileError, ReconcileResult, Reconciler,
    ReconcilerConfig, ReconcilerStatus, RegisteredPackage, Registry, TaskNamespace, WorkflowRef,
};
pub use runner::{
    Error, MAX_IDEMPOTENCY_KEY, PRUNE_BATCH, Registered, Runner, RunnerConfig, validate_tenant,
};
pub use sandbox::{
    CallLabels, CancelFlag, CpuLedger, EngineConfig, HostState, LOG_RECORD_OVERHEAD, LogRecord,
    LogStream, SandboxEngine, SandboxGrants, SandboxLimits, TASK_LOG_BYTES, TaskLogs,
    WASMTIME_VERSION,
};
pub use scheduler::{ExecutionPlan, ExecutionStatus, TaskStatus};
pub use signing::{
    ALGORITHM as SIGNATURE_ALGORITHM, KEY_FORMAT, MAX_FILE_BYTES as MAX_SIGNATURE_FILE_BYTES,
    PublicKeyFile, SIGNATURE_FORMAT, SecretKeyFile, SignatureError, SignatureFile, TrustedKey,
    check_names as check_signed_names, check_trusted as check_trusted_signature,
    generate as generate_key, key_id, verify as verify_signature,
};
pub use store::{
    Advance, AttemptLogs, Backend, ClaimedTask, Completion, DeclaredSchedule, EventRow,
    ExecutionFilter, ExecutionRow, ExecutionStore, FINALIZE_LEASE_MS, FireCommit, FireRow,
    HostRecord, INLINE_OUTPUT_CHARS, MAX_FINALIZE_ATTEMPTS, MergedOutputs, NewExecution,
    NewPackage, NewSchedule, PackageEvent, PackageRow, PgStore, PlannedFire, PruneReport,
    Recovered, Registration, Result as StoreResult, ScheduleRow, ScheduleStore, ScheduledRetry,
    SqliteStore, Store, StoreError, TaskOutcome, TaskReset, TaskRow, TaskState, merge_outputs,
    now_ms, open as open_store, redact_url,
};
pub use suggest::did_you_mean;
pub use telemetry::{
    FleetCounts, HISTOGRAM_BUCKETS, TenantExecutionCounts, TenantTaskCounts,
    buckets as metric_buckets, describe as describe_metrics, names as metric_names,
    record_fleet_counts,
};
pub use tenants::{Grant, GrantKind, OnUntrust, PUBLIC as PUBLIC_TENANT, TenantLimits, TenantRow};
