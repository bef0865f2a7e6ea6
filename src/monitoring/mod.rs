//! Prometheus metrics: the recorder, the names, and what `GET /metrics` renders.
//!
//! Handlers and services record through the `metrics` facade (a no-op until `install` runs, as in
//! the CLI); only the service process installs the recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::build_info;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const AGENT_REQUESTS: &str = "sofiia_agent_requests_total";
pub const AGENT_DURATION: &str = "sofiia_agent_request_duration_seconds";
pub const DEGRADED: &str = "sofiia_degraded_total";
pub const RETENTION_DELETED: &str = "sofiia_retention_deleted_total";
pub const RETENTION_RUNS: &str = "sofiia_retention_runs_total";
pub const RETENTION_LAST_SUCCESS: &str = "sofiia_retention_last_success_timestamp_seconds";
pub const COMPACTION_PAUSE: &str = "sofiia_db_compaction_pause_seconds";
const BUILD_INFO: &str = "sofiia_build_info";

/// Latency buckets (seconds), from a cached read to an agent's generation.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide recorder; `None` when one is installed already.
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .ok()?
        .install_recorder()
        .ok()?;
    metrics::gauge!(
        BUILD_INFO,
        "version" => build_info::VERSION,
        "git_sha" => build_info::GIT_SHA
    )
    .set(1.0);
    Some(handle)
}

/// The text exposition of every metric.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}
