//! The registry's own Prometheus metrics (the per-RPC ones come from the runtime's
//! layer, the outbox ones from the events crate).

use mlops_runtime::metrics::{histogram_vec, int_counter, int_counter_vec, int_gauge_vec};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGaugeVec};

/// Counters the store and service update.
#[derive(Clone)]
pub struct Metrics {
    /// Versions that finished registration, by status (ready, failed).
    pub versions_registered: IntCounterVec,
    /// Seconds from a version's creation to READY or FAILED_REGISTRATION.
    pub registration_seconds: Histogram,
    /// Aliases set (created or moved).
    pub alias_moves: IntCounter,
    /// Gate validations, by result (passed, failed).
    pub gate_evaluations: IntCounterVec,
    /// Database connections by state.
    pub db_pool: IntGaugeVec,
}

impl Metrics {
    /// Registers (once per process) and returns the metrics.
    pub fn new() -> Self {
        let m = Metrics {
            versions_registered: int_counter_vec(
                "mlops_registry_model_versions_registered_total",
                "model versions that finished registration, by status (ready, failed)",
                &["status"],
            ),
            registration_seconds: histogram_vec(
                "mlops_registry_registration_duration_seconds",
                "seconds from a version's creation to READY or FAILED_REGISTRATION",
                &[],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ],
            )
            .with_label_values::<&str>(&[]),
            alias_moves: int_counter(
                "mlops_registry_alias_moves_total",
                "aliases set on a version (created or moved)",
            ),
            gate_evaluations: int_counter_vec(
                "mlops_registry_gate_evaluations_total",
                "evaluation gate validations, by result (passed, failed)",
                &["result"],
            ),
            db_pool: int_gauge_vec(
                "mlops_registry_db_pool_connections",
                "database connections by state (idle, in_use)",
                &["state"],
            ),
        };
        // Every label from the start, so rate() sees the first event of each.
        for status in ["ready", "failed"] {
            m.versions_registered.with_label_values(&[status]);
        }
        for result in ["passed", "failed"] {
            m.gate_evaluations.with_label_values(&[result]);
        }
        m
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
