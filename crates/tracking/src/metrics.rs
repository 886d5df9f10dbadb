//! The tracking service's own Prometheus metrics (the per-RPC ones come from the
//! runtime's layer, the outbox ones from the events crate).

use mlops_runtime::metrics::{int_counter, int_counter_vec, int_gauge_vec};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};

/// Counters the store and service update.
#[derive(Clone)]
pub struct Metrics {
    /// Runs created.
    pub runs_created: IntCounter,
    /// Runs that reached a terminal status, by status.
    pub runs_finished: IntCounterVec,
    /// Metric points written.
    pub metric_points: IntCounter,
    /// Artifact bytes moved, by direction.
    pub artifact_bytes: IntCounterVec,
    /// Runs killed because their heartbeat lease ran out.
    pub lease_expired: IntCounter,
    /// Database connections by state.
    pub db_pool: IntGaugeVec,
}

impl Metrics {
    /// Registers (once per process) and returns the metrics.
    pub fn new() -> Self {
        Metrics {
            runs_created: int_counter("mlops_tracking_runs_created_total", "runs created"),
            runs_finished: int_counter_vec(
                "mlops_tracking_runs_finished_total",
                "runs that reached a terminal status, by status",
                &["status"],
            ),
            metric_points: int_counter(
                "mlops_tracking_metric_points_total",
                "metric points logged",
            ),
            artifact_bytes: int_counter_vec(
                "mlops_tracking_artifact_bytes_total",
                "artifact bytes uploaded and downloaded",
                &["direction"],
            ),
            lease_expired: int_counter(
                "mlops_tracking_runs_lease_expired_total",
                "RUNNING runs killed because their heartbeat lease expired",
            ),
            db_pool: int_gauge_vec(
                "mlops_tracking_db_pool_connections",
                "database connections by state (idle, in_use)",
                &["state"],
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
