//! The engine's metrics: every name in one place ([`names`]), the histogram
//! buckets suggested for each ([`buckets`], [`HISTOGRAM_BUCKETS`]), their
//! descriptions ([`describe`]), and the small recording functions the
//! stages call.
//!
//! The library records through the [`metrics`] facade and never installs
//! an exporter: the embedder decides whether and how metrics leave the
//! process (`culvert serve` installs a Prometheus recorder and serves
//! `/metrics`). With no recorder installed, each recording call costs a few
//! nanoseconds and an allocation or two for its labels.
//!
//! What each host counts (tasks it finished, its cache, its reconcile
//! passes) is recorded where it happens. What the fleet shares (ready and
//! running tasks, unfinished executions) is read from the database at scrape
//! time, so every host of one PostgreSQL reports the same numbers: the
//! store's [`fleet_counts`](crate::ExecutionStore::fleet_counts) returns
//! [`FleetCounts`], and [`record_fleet_counts`] sets the gauges from it.
//!
//! A leaf: it imports nothing from the rest of the crate; the stages above
//! call into it.

use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

/// The name of every metric, with its labels and meaning in its doc.
/// docs/OPERATIONS.md ("Metrics") has the same table for operators.
pub mod names {
    /// Counter `{tenant, outcome, kind}`: task attempts whose end this host
    /// recorded. `outcome` is `succeeded`, `failed` (final), `retrying` (a
    /// failed attempt that will be tried again) or `skipped`; `kind` is the
    /// failure kind (`timeout`, `trap`, ...) or empty.
    pub const TASKS_FINISHED: &str = "culvert_tasks_finished_total";
    /// Histogram `{tenant}`, seconds: wall time of each attempt in the
    /// sandbox (instantiation and the guest's call).
    pub const TASK_DURATION: &str = "culvert_task_duration_seconds";
    /// Histogram `{tenant}`, seconds: from when a task became ready (or its
    /// retry became due) to when a host claimed it to run it. Millisecond
    /// resolution.
    pub const DISPATCH_LATENCY: &str = "culvert_dispatch_latency_seconds";
    /// Gauge `{tenant, state}`, from the database: tasks `ready` (due now),
    /// `retry_wait` (ready, waiting for a retry's backoff) and `running`.
    pub const TASKS: &str = "culvert_tasks";
    /// Gauge `{tenant, status}`, from the database: unfinished executions,
    /// `pending` or `running`.
    pub const EXECUTIONS: &str = "culvert_executions";
    /// Counter `{tenant, status}`: executions this host finished,
    /// `completed`, `failed` or `cancelled`.
    pub const EXECUTIONS_FINISHED: &str = "culvert_executions_finished_total";
    /// Counter `{tier}`: compiled components served from the cache's
    /// `memory` or `disk` tier.
    pub const CACHE_HITS: &str = "culvert_cache_hits_total";
    /// Counter: lookups found in neither tier (each leads to a compile; the
    /// difference with compiles is components that did not compile).
    pub const CACHE_MISSES: &str = "culvert_cache_misses_total";
    /// Counter: components compiled.
    pub const CACHE_COMPILES: &str = "culvert_cache_compiles_total";
    /// Counter: artifacts deleted from the disk cache to respect its size
    /// bound.
    pub const CACHE_EVICTIONS: &str = "culvert_cache_evictions_total";
    /// Histogram, seconds: each successful compile (and link).
    pub const COMPILE_TIME: &str = "culvert_compile_seconds";
    /// Histogram, seconds: each completed reconcile pass.
    pub const RECONCILE_TIME: &str = "culvert_reconcile_seconds";
    /// Gauge: packages this host's registry holds.
    pub const PACKAGES_LOADED: &str = "culvert_packages_loaded";
    /// Counter: tasks this host took back from hosts whose lease expired
    /// (made ready again, or failed past the recovery limit).
    pub const LEASE_RECOVERIES: &str = "culvert_lease_recoveries_total";
    /// Counter `{kind}`: database errors, `unavailable` (unreachable, busy,
    /// deadlock, serialisation failure: retried), `conflict` (a uniqueness
    /// race) or `other`. A row not found is an answer, not counted.
    pub const DATABASE_ERRORS: &str = "culvert_database_errors_total";
    /// Counter `{route, method, status}`: HTTP requests the server answered
    /// (recorded by the server, not by this library).
    pub const HTTP_REQUESTS: &str = "culvert_http_requests_total";
    /// Histogram `{route, method}`, seconds: time to answer an HTTP request
    /// (recorded by the server, not by this library).
    pub const HTTP_REQUEST_DURATION: &str = "culvert_http_request_duration_seconds";
    /// Counter `{tenant, outcome}`: schedules' due times this host handled,
    /// by what they became (`started`, `caught_up`, `dequeued`,
    /// `triggered`, `skipped_overlap`, `queued`, `failed`, and `missed` for
    /// those a catch-up policy dropped).
    pub const SCHEDULE_FIRES: &str = "culvert_schedule_fires_total";
    /// Histogram `{tenant}`, seconds: from a due time to its execution's
    /// start, for the due times this host started.
    pub const SCHEDULE_LAG: &str = "culvert_schedule_lag_seconds";
    /// Counter `{tenant, method, host, status, outcome}`: outbound HTTP
    /// requests guests made. `host` is the grant that let the request
    /// through (empty when refused: guest text never becomes a label),
    /// `status` the response's class (`2xx` ... `5xx`) or empty, `outcome`
    /// `completed`, `refused`, `failed` or `abandoned`.
    pub const EGRESS_REQUESTS: &str = "culvert_egress_requests_total";
    /// Counter `{tenant}`, bytes: response body bytes guests received.
    pub const EGRESS_BYTES: &str = "culvert_egress_received_bytes_total";
    /// Histogram `{tenant}`, seconds: from a request to the end of its
    /// response body (or its failure), for requests that went out.
    pub const EGRESS_DURATION: &str = "culvert_egress_request_duration_seconds";
}

/// The bucket upper bounds suggested for each histogram, in seconds.
/// An exporter that is given none may render histograms as summaries
/// (`metrics-exporter-prometheus` does): pass [`HISTOGRAM_BUCKETS`].
pub mod buckets {
    /// [`TASK_DURATION`](super::names::TASK_DURATION): 1 ms to 5 min (task
    /// timeouts default to 30 s).
    pub const TASK_DURATION: &[f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        300.0,
    ];
    /// [`DISPATCH_LATENCY`](super::names::DISPATCH_LATENCY): 1 ms to 1 min.
    pub const DISPATCH_LATENCY: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    /// [`COMPILE_TIME`](super::names::COMPILE_TIME): 10 ms to 2 min.
    pub const COMPILE_TIME: &[f64] = &[
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ];
    /// [`RECONCILE_TIME`](super::names::RECONCILE_TIME): 1 ms to 1 min.
    pub const RECONCILE_TIME: &[f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    /// [`HTTP_REQUEST_DURATION`](super::names::HTTP_REQUEST_DURATION): 1 ms
    /// to 10 s.
    pub const HTTP_REQUEST_DURATION: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    /// [`SCHEDULE_LAG`](super::names::SCHEDULE_LAG): 10 ms to 1 h (a caught-up
    /// due time can be hours late).
    pub const SCHEDULE_LAG: &[f64] = &[
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    ];
    /// [`EGRESS_DURATION`](super::names::EGRESS_DURATION): 1 ms to 60 s.
    pub const EGRESS_DURATION: &[f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
}

/// Every histogram's name with its suggested buckets, for an exporter's
/// per-metric bucket setting.
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (names::TASK_DURATION, buckets::TASK_DURATION),
    (names::DISPATCH_LATENCY, buckets::DISPATCH_LATENCY),
    (names::COMPILE_TIME, buckets::COMPILE_TIME),
    (names::RECONCILE_TIME, buckets::RECONCILE_TIME),
    (names::HTTP_REQUEST_DURATION, buckets::HTTP_REQUEST_DURATION),
    (names::SCHEDULE_LAG, buckets::SCHEDULE_LAG),
    (names::EGRESS_DURATION, buckets::EGRESS_DURATION),
];

/// Describe every metric (unit and help text) to the installed recorder.
/// Call it once, after installing the recorder; describing is optional
/// (metrics are recorded either way) but gives `# HELP` lines.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::TASKS_FINISHED,
        Unit::Count,
        "Task attempts this host finished, by tenant, outcome (succeeded, failed, retrying, skipped) and failure kind."
    );
    describe_histogram!(
        names::TASK_DURATION,
        Unit::Seconds,
        "Wall time of each task attempt in the sandbox, by tenant."
    );
    describe_histogram!(
        names::DISPATCH_LATENCY,
        Unit::Seconds,
        "Time from a task becoming ready (or its retry due) to a host claiming it, by tenant."
    );
    describe_gauge!(
        names::TASKS,
        Unit::Count,
        "Tasks ready (due), waiting for a retry (retry_wait) and running, by tenant, read from the database."
    );
    describe_gauge!(
        names::EXECUTIONS,
        Unit::Count,
        "Unfinished executions (pending, running), by tenant, read from the database."
    );
    describe_counter!(
        names::EXECUTIONS_FINISHED,
        Unit::Count,
        "Executions this host finished, by tenant and final status."
    );
    describe_counter!(
        names::CACHE_HITS,
        Unit::Count,
        "Compiled components served from the cache, by tier (memory, disk)."
    );
    describe_counter!(
        names::CACHE_MISSES,
        Unit::Count,
        "Compiled-code cache lookups found in neither tier."
    );
    describe_counter!(names::CACHE_COMPILES, Unit::Count, "Components compiled.");
    describe_counter!(
        names::CACHE_EVICTIONS,
        Unit::Count,
        "Artifacts deleted from the disk cache to respect its size bound."
    );
    describe_histogram!(
        names::COMPILE_TIME,
        Unit::Seconds,
        "Time to compile and link a component."
    );
    describe_histogram!(
        names::RECONCILE_TIME,
        Unit::Seconds,
        "Time of each completed reconcile pass."
    );
    describe_gauge!(
        names::PACKAGES_LOADED,
        Unit::Count,
        "Packages loaded in this host's registry."
    );
    describe_counter!(
        names::LEASE_RECOVERIES,
        Unit::Count,
        "Tasks this host took back from hosts whose lease expired."
    );
    describe_counter!(
        names::DATABASE_ERRORS,
        Unit::Count,
        "Database errors, by kind (unavailable, conflict, other)."
    );
    describe_counter!(
        names::HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route, method and status."
    );
    describe_histogram!(
        names::HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by route and method."
    );
    describe_counter!(
        names::SCHEDULE_FIRES,
        Unit::Count,
        "Schedules' due times this host handled, by tenant and outcome (started, caught_up, dequeued, triggered, skipped_overlap, queued, failed, missed)."
    );
    describe_histogram!(
        names::SCHEDULE_LAG,
        Unit::Seconds,
        "From a schedule's due time to the start of its execution, by tenant."
    );
    describe_counter!(
        names::EGRESS_REQUESTS,
        Unit::Count,
        "Outbound HTTP requests guests made, by tenant, method, granted host, status class and outcome (completed, refused, failed, abandoned)."
    );
    describe_counter!(
        names::EGRESS_BYTES,
        Unit::Bytes,
        "Response body bytes guests received over outbound HTTP, by tenant."
    );
    describe_histogram!(
        names::EGRESS_DURATION,
        Unit::Seconds,
        "From an outbound HTTP request to the end of its response body, by tenant."
    );
}

/// The shared counts of the fleet, read from the database at scrape time
/// by [`fleet_counts`](crate::ExecutionStore::fleet_counts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetCounts {
    /// Each tenant with a ready or running task, by name.
    pub tasks: Vec<TenantTaskCounts>,
    /// Each tenant with an unfinished execution, by name.
    pub executions: Vec<TenantExecutionCounts>,
}

/// One tenant's ready and running tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantTaskCounts {
    /// The tenant.
    pub tenant: String,
    /// Ready and due: what a claim could take now.
    pub ready: u64,
    /// Ready, but waiting for a retry's backoff to pass.
    pub retry_wait: u64,
    /// Running on some host.
    pub running: u64,
}

/// One tenant's unfinished executions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantExecutionCounts {
    /// The tenant.
    pub tenant: String,
    /// Created, no task claimed yet.
    pub pending: u64,
    /// Some task claimed, not finished.
    pub running: u64,
}

/// The tenants [`record_fleet_counts`] last set gauges for: tasks, then
/// executions.
static REPORTED: Mutex<(BTreeSet<String>, BTreeSet<String>)> =
    Mutex::new((BTreeSet::new(), BTreeSet::new()));

/// Set the [`TASKS`](names::TASKS) and [`EXECUTIONS`](names::EXECUTIONS)
/// gauges from `counts`. A tenant reported last time and absent now (its
/// work finished, or it was deleted) is set to 0 once, then no longer
/// touched: a gauge keeps its last value, and the database only lists
/// tenants that have something.
pub fn record_fleet_counts(counts: &FleetCounts) {
    use metrics::gauge;
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    let tasks: BTreeSet<String> = counts.tasks.iter().map(|t| t.tenant.clone()).collect();
    let executions: BTreeSet<String> = counts.executions.iter().map(|e| e.tenant.clone()).collect();
    for t in &counts.tasks {
        for (state, n) in [
            ("ready", t.ready),
            ("retry_wait", t.retry_wait),
            ("running", t.running),
        ] {
            gauge!(names::TASKS, "tenant" => t.tenant.clone(), "state" => state).set(n as f64);
        }
    }
    for gone in reported.0.difference(&tasks) {
        for state in ["ready", "retry_wait", "running"] {
            gauge!(names::TASKS, "tenant" => gone.clone(), "state" => state).set(0.0);
        }
    }
    for e in &counts.executions {
        for (status, n) in [("pending", e.pending), ("running", e.running)] {
            gauge!(names::EXECUTIONS, "tenant" => e.tenant.clone(), "status" => status)
                .set(n as f64);
        }
    }
    for gone in reported.1.difference(&executions) {
        for status in ["pending", "running"] {
            gauge!(names::EXECUTIONS, "tenant" => gone.clone(), "status" => status).set(0.0);
        }
    }
    *reported = (tasks, executions);
}

/// A task attempt's end was recorded: `outcome` is `succeeded`, `failed`,
/// `retrying` or `skipped`; `kind` a failure kind or `""`.
pub(crate) fn task_finished(tenant: &str, outcome: &'static str, kind: &'static str) {
    metrics::counter!(names::TASKS_FINISHED, "tenant" => tenant.to_owned(), "outcome" => outcome, "kind" => kind)
        .increment(1);
}

/// A task attempt ran in the sandbox for `elapsed`.
pub(crate) fn task_duration(tenant: &str, elapsed: Duration) {
    metrics::histogram!(names::TASK_DURATION, "tenant" => tenant.to_owned())
        .record(elapsed.as_secs_f64());
}

/// A task ready since `ready_at_ms` was claimed at `claimed_at_ms`.
pub(crate) fn dispatch_latency(tenant: &str, ready_at_ms: i64, claimed_at_ms: i64) {
    let ms = claimed_at_ms.saturating_sub(ready_at_ms).max(0);
    metrics::histogram!(names::DISPATCH_LATENCY, "tenant" => tenant.to_owned())
        .record(ms as f64 / 1000.0);
}

/// `n` due times of a schedule of `tenant` became `outcome`.
pub(crate) fn schedule_fires(tenant: &str, outcome: &str, n: u64) {
    metrics::counter!(names::SCHEDULE_FIRES, "tenant" => tenant.to_owned(), "outcome" => outcome.to_owned())
        .increment(n);
}

/// A schedule of `tenant` due at `due_ms` started its execution at `at_ms`.
pub(crate) fn schedule_lag(tenant: &str, due_ms: i64, at_ms: i64) {
    let ms = at_ms.saturating_sub(due_ms).max(0);
    metrics::histogram!(names::SCHEDULE_LAG, "tenant" => tenant.to_owned())
        .record(ms as f64 / 1000.0);
}

/// An execution of `tenant` finished with `status`.
pub(crate) fn execution_finished(tenant: &str, status: &'static str) {
    metrics::counter!(names::EXECUTIONS_FINISHED, "tenant" => tenant.to_owned(), "status" => status)
        .increment(1);
}

/// The compiled-code cache served a component from `tier` (`memory` or
/// `disk`).
pub(crate) fn cache_hit(tier: &'static str) {
    metrics::counter!(names::CACHE_HITS, "tier" => tier).increment(1);
}

/// The compiled-code cache found a component in neither tier.
pub(crate) fn cache_miss() {
    metrics::counter!(names::CACHE_MISSES).increment(1);
}

/// A component compiled in `elapsed`.
pub(crate) fn compiled(elapsed: Duration) {
    metrics::counter!(names::CACHE_COMPILES).increment(1);
    metrics::histogram!(names::COMPILE_TIME).record(elapsed.as_secs_f64());
}

/// An artifact was evicted from the disk cache.
pub(crate) fn cache_evicted() {
    metrics::counter!(names::CACHE_EVICTIONS).increment(1);
}

/// A reconcile pass completed in `elapsed`, leaving `loaded` packages.
pub(crate) fn reconciled(elapsed: Duration, loaded: usize) {
    metrics::histogram!(names::RECONCILE_TIME).record(elapsed.as_secs_f64());
    metrics::gauge!(names::PACKAGES_LOADED).set(loaded as f64);
}

/// `n` tasks were taken back from expired leases.
pub(crate) fn lease_recoveries(n: usize) {
    metrics::counter!(names::LEASE_RECOVERIES).increment(n as u64);
}

/// A database call failed with an error of `kind`.
pub(crate) fn database_error(kind: &'static str) {
    metrics::counter!(names::DATABASE_ERRORS, "kind" => kind).increment(1);
}

/// One outbound HTTP request a guest made (see
/// [`EGRESS_REQUESTS`](names::EGRESS_REQUESTS)).
pub fn record_egress(
    tenant: &str,
    method: &'static str,
    grant: &str,
    status: Option<u16>,
    outcome: &'static str,
    bytes: u64,
    elapsed: Duration,
) {
    let class = match status {
        Some(s) if (100..600).contains(&s) => {
            ["1xx", "2xx", "3xx", "4xx", "5xx"][(s / 100 - 1) as usize]
        }
        Some(_) => "other",
        None => "",
    };
    metrics::counter!(
        names::EGRESS_REQUESTS,
        "tenant" => tenant.to_owned(),
        "method" => method,
        "host" => grant.to_owned(),
        "status" => class,
        "outcome" => outcome
    )
    .increment(1);
    if bytes > 0 {
        metrics::counter!(names::EGRESS_BYTES, "tenant" => tenant.to_owned()).increment(bytes);
    }
    if outcome != "refused" {
        metrics::histogram!(names::EGRESS_DURATION, "tenant" => tenant.to_owned())
            .record(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prometheus_names_and_buckets_ascend() {
        let all = [
            names::TASKS_FINISHED,
            names::TASK_DURATION,
            names::DISPATCH_LATENCY,
            names::TASKS,
            names::EXECUTIONS,
            names::EXECUTIONS_FINISHED,
            names::CACHE_HITS,
            names::CACHE_MISSES,
            names::CACHE_COMPILES,
            names::CACHE_EVICTIONS,
            names::COMPILE_TIME,
            names::RECONCILE_TIME,
            names::PACKAGES_LOADED,
            names::LEASE_RECOVERIES,
            names::DATABASE_ERRORS,
            names::HTTP_REQUESTS,
            names::HTTP_REQUEST_DURATION,
            names::SCHEDULE_FIRES,
            names::SCHEDULE_LAG,
        ];
        for name in all {
            assert!(name.starts_with("culvert_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "names are distinct");
        for (name, b) in HISTOGRAM_BUCKETS {
            assert!(name.ends_with("_seconds"), "{name}");
            assert!(!b.is_empty() && b.windows(2).all(|w| w[0] < w[1]), "{name}");
        }
    }
}
