//! The retraining service's own Prometheus metrics (the per-RPC ones come from the
//! runtime's layer, the outbox ones from the events crate). Each replica reports the
//! retrains it drives, so a sum over replicas counts each once.

use mlops_runtime::metrics::{gauge_vec, int_counter_vec};
use prometheus::{GaugeVec, IntCounterVec};

use crate::store::Retrain;

/// What the service updates.
#[derive(Clone)]
pub struct Metrics {
    /// Retrains under way, by model and state.
    pub active: GaugeVec,
    /// Seconds the oldest retrain under way has been in its state, by model and state.
    pub state_age: GaugeVec,
    /// Retrains ended, by model and outcome (promoted, gate_failed, rolled_back, failed).
    pub ended: IntCounterVec,
}

impl Metrics {
    /// Registers (once per process) and returns the metrics.
    pub fn new() -> Self {
        Metrics {
            active: gauge_vec(
                "mlops_retraining_retrains_active",
                "retrains under way on this replica, by model and state",
                &["model", "state"],
            ),
            state_age: gauge_vec(
                "mlops_retraining_state_age_seconds",
                "seconds the oldest retrain under way has been in its state, by model and state",
                &["model", "state"],
            ),
            ended: int_counter_vec(
                "mlops_retraining_retrains_total",
                "retrains ended, by model and outcome (promoted, gate_failed, rolled_back, failed)",
                &["model", "outcome"],
            ),
        }
    }

    /// The gauges from the retrains this replica drives now.
    pub fn observe(&self, retrains: &[Retrain], now_ms: i64) {
        self.active.reset();
        self.state_age.reset();
        for r in retrains {
            self.active.with_label_values(&[&r.model, &r.state]).inc();
            let age = (now_ms - r.updated_at).max(0) as f64 / 1000.0;
            let g = self.state_age.with_label_values(&[&r.model, &r.state]);
            if age > g.get() {
                g.set(age);
            }
        }
    }

    /// A retrain of `model` ended in terminal state `state`.
    pub fn ended(&self, model: &str, state: &str) {
        self.ended
            .with_label_values(&[model, &state.to_ascii_lowercase()])
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
