//! Prometheus metrics (SPEC §11): the recorder, the names, the series the hot paths keep handles
//! to, and what `GET /metrics` renders.
//!
//! Everything records through the `metrics` facade, which is a no-op until `install` runs (as in
//! the CLI); only the service process installs the recorder, and it does so before anything
//! records, so that no handle is taken from the no-op recorder and kept.
//!
//! The hot paths never look a series up per request: counters with a fixed label set are
//! registered once and kept (`series`), and the per-route HTTP series are kept per thread
//! (`http`). An increment is then one atomic add — no lock, no allocation.

pub mod http;
pub mod recent;
pub mod series;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::build_info;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const SENDS: &str = "sofiia_sends_total";
pub const IDEMPOTENCY: &str = "sofiia_idempotency_total";
pub const RATE_LIMITED: &str = "sofiia_rate_limited_total";
pub const AUDIT_EVENTS: &str = "sofiia_audit_events_total";
pub const AUDIT_VERIFICATIONS: &str = "sofiia_audit_verifications_total";
pub const AGENT_REQUESTS: &str = "sofiia_agent_requests_total";
pub const AGENT_DURATION: &str = "sofiia_agent_request_duration_seconds";
pub const DEGRADED: &str = "sofiia_degraded_total";
pub const DB_COMMIT_DURATION: &str = "sofiia_db_commit_duration_seconds";
pub const DB_BATCH_SIZE: &str = "sofiia_db_batch_size";
pub const DB_SIZE: &str = "sofiia_db_size_bytes";
pub const AUDIT_HEAD_SEQ: &str = "sofiia_audit_head_seq";
pub const WRITER_QUEUE_DEPTH: &str = "sofiia_db_writer_queue_depth";
pub const WRITER_QUEUE_CAPACITY: &str = "sofiia_db_writer_queue_capacity";
pub const DISK_FREE: &str = "sofiia_disk_free_bytes";
pub const DISK_SIZE: &str = "sofiia_disk_size_bytes";
pub const RETENTION_DELETED: &str = "sofiia_retention_deleted_total";
pub const RETENTION_RUNS: &str = "sofiia_retention_runs_total";
pub const RETENTION_LAST_SUCCESS: &str = "sofiia_retention_last_success_timestamp_seconds";
pub const COMPACTION_PAUSE: &str = "sofiia_db_compaction_pause_seconds";
pub const SSE_SUBSCRIBERS: &str = "sofiia_sse_subscribers";
pub const SSE_DROPPED: &str = "sofiia_sse_dropped_total";
const BUILD_INFO: &str = "sofiia_build_info";

/// Latency buckets (seconds), from a cached read to an agent's generation.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Operations per write transaction: one up to the writer's largest batch.
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the process-wide recorder; `None` when one is installed already.
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(DB_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()?;
    metrics::gauge!(
        BUILD_INFO,
        "version" => build_info::VERSION,
        "git_sha" => build_info::GIT_SHA
    )
    .set(1.0);
    describe();
    series::register();
    Some(handle)
}

/// The `# HELP` line of every series, with its unit where it has one.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests served, by method, route template and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to serve an HTTP request, by route template."
    );
    describe_counter!(
        SENDS,
        "Sends, by outcome: ok, degraded (stored without an agent reply), replayed, rejected (nothing stored), failed."
    );
    describe_counter!(
        IDEMPOTENCY,
        "Sends with an Idempotency-Key, by what the key led to: new, replay, mismatch, in_progress, takeover."
    );
    describe_counter!(RATE_LIMITED, "Sends refused by a rate limit, by scope.");
    describe_counter!(AUDIT_EVENTS, "Audit events committed, by action.");
    describe_counter!(
        AUDIT_VERIFICATIONS,
        "Audit chain verifications, by result: valid or invalid."
    );
    describe_counter!(AGENT_REQUESTS, "Calls to agent nodes, by node and outcome.");
    describe_histogram!(
        AGENT_DURATION,
        Unit::Seconds,
        "Time an agent node took to answer, by node."
    );
    describe_counter!(
        DEGRADED,
        "Sends answered without an agent reply, by reason code."
    );
    describe_histogram!(
        DB_COMMIT_DURATION,
        Unit::Seconds,
        "Time of one group-commit write transaction, from its first operation to its durable commit."
    );
    describe_histogram!(
        DB_BATCH_SIZE,
        Unit::Count,
        "Operations carried by one write transaction."
    );
    describe_gauge!(DB_SIZE, Unit::Bytes, "Size of the database file.");
    describe_gauge!(
        AUDIT_HEAD_SEQ,
        Unit::Count,
        "Seq of the newest audit event: kept off the appliance, a record that the chain reached it."
    );
    describe_gauge!(
        WRITER_QUEUE_DEPTH,
        Unit::Count,
        "Write operations waiting for the writer."
    );
    describe_gauge!(
        WRITER_QUEUE_CAPACITY,
        Unit::Count,
        "Write operations the writer's queue holds before senders wait."
    );
    describe_gauge!(
        DISK_FREE,
        Unit::Bytes,
        "Free space on the data directory's volume, as the service may use it."
    );
    describe_gauge!(
        DISK_SIZE,
        Unit::Bytes,
        "Size of the data directory's volume."
    );
    describe_counter!(RETENTION_DELETED, "Rows deleted by retention, by class.");
    describe_counter!(RETENTION_RUNS, "Retention runs ended, by status.");
    describe_gauge!(
        RETENTION_LAST_SUCCESS,
        Unit::Seconds,
        "When the last successful retention run finished (Unix time)."
    );
    describe_histogram!(
        COMPACTION_PAUSE,
        Unit::Seconds,
        "Time the database was held for compaction."
    );
    describe_gauge!(SSE_SUBSCRIBERS, Unit::Count, "Open event streams.");
    describe_counter!(
        SSE_DROPPED,
        "Event-stream subscribers dropped for falling behind."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the build's version and git commit as labels."
    );
}

/// The text exposition of every metric.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}
