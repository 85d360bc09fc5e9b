//! Prometheus metrics: the recorder (installed once per process), the
//! HTTP metrics every request records, and the database's counts
//! refreshed at each scrape.
//!
//! The library records its metrics through the `metrics` facade; this
//! module installs `metrics-exporter-prometheus` as the recorder, which
//! renders them in the Prometheus text format. docs/OPERATIONS.md lists
//! every metric.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// HTTP requests, by route, method and status.
pub const HTTP_REQUESTS: &str = culvert::metric_names::HTTP_REQUESTS;
/// Time to answer an HTTP request (to its headers), by route and method.
pub const HTTP_DURATION: &str = culvert::metric_names::HTTP_REQUEST_DURATION;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the Prometheus recorder for this process (once; later calls
/// return the same handle), and keep its histograms drained. `None` when
/// another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in culvert::HISTOGRAM_BUCKETS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).into()), buckets)
                    .ok()?;
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            culvert::describe_metrics();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("culvert-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// Record each request: its route (the template, never the raw path, so a
/// client cannot grow the label set), method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // Only the standard methods name themselves: any other is "other".
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Set the gauges that come from the database (tasks ready and running by
/// tenant, executions by status), so every host reports the same.
pub async fn refresh_fleet(state: &AppState) {
    match state.runner.store().fleet_counts().await {
        Ok(counts) => culvert::record_fleet_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "cannot read the fleet's counts for /metrics"),
    }
}
