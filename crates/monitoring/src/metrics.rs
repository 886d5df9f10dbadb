//! The monitoring service's own Prometheus metrics (the per-RPC ones come from the
//! runtime's layer, the outbox ones from the events crate). Labels: the monitor, the
//! registered model it watches, the window's model version and, per column, the column.

use mlops_runtime::metrics::{gauge_vec, histogram_vec, int_counter_vec};
use prometheus::{GaugeVec, Histogram, IntCounterVec};

use crate::drift::DatasetDrift;

/// What the service updates.
#[derive(Clone)]
pub struct Metrics {
    /// A column's newest drift score (p-value or distance).
    pub drift_score: GaugeVec,
    /// 1 when a column drifted in the newest window, else 0.
    pub column_drifted: GaugeVec,
    /// The share of drifted columns in the newest window.
    pub drift_share: GaugeVec,
    /// 1 when the newest window drifted as a dataset, else 0.
    pub dataset_drift: GaugeVec,
    /// Rows of the newest window.
    pub window_rows: GaugeVec,
    /// Windows tested, by monitor and result (drift, no_drift).
    pub reports: IntCounterVec,
    /// `DriftDetected` events published, by monitor.
    pub drift_events: IntCounterVec,
    /// Seconds to test a window, from its last chunk to its stored report.
    pub report_seconds: Histogram,
    /// Predictions read from the prediction log, by outcome: `applied` (to a window),
    /// `unmonitored` (no monitor follows the deployment), `duplicate` (applied before: a
    /// redelivery), `malformed` (skipped: an event that is not predictions counts once, a
    /// prediction whose tensors cannot be read once).
    pub log_events: IntCounterVec,
    /// Rows in the open prediction-log window of a monitor and model version.
    pub open_window_rows: GaugeVec,
    /// A performance metric of the newest window: realised or estimated.
    pub performance: GaugeVec,
    /// Rows of the newest window that have a label.
    pub labelled_rows: GaugeVec,
    /// `PerformanceDegraded` events published, by monitor.
    pub performance_events: IntCounterVec,
    /// Messages of a labels topic that are not labels, by monitor (skipped).
    pub labels_malformed: IntCounterVec,
}

impl Metrics {
    /// Registers (once per process) and returns the metrics.
    pub fn new() -> Self {
        const WINDOW: &[&str] = &["monitor", "model", "model_version"];
        const COLUMN: &[&str] = &["monitor", "model", "model_version", "column", "method"];
        Metrics {
            drift_score: gauge_vec(
                "mlops_monitoring_drift_score",
                "a column's drift score in the newest window (a p-value or a distance, by method)",
                COLUMN,
            ),
            column_drifted: gauge_vec(
                "mlops_monitoring_column_drifted",
                "1 when a column drifted in the newest window",
                COLUMN,
            ),
            drift_share: gauge_vec(
                "mlops_monitoring_drift_share",
                "the share of drifted columns in the newest window",
                WINDOW,
            ),
            dataset_drift: gauge_vec(
                "mlops_monitoring_dataset_drift",
                "1 when the newest window drifted (its share of drifted columns reached drift_share)",
                WINDOW,
            ),
            window_rows: gauge_vec(
                "mlops_monitoring_window_rows",
                "rows of the newest window",
                WINDOW,
            ),
            reports: int_counter_vec(
                "mlops_monitoring_reports_total",
                "windows tested, by monitor and result (drift, no_drift)",
                &["monitor", "result"],
            ),
            drift_events: int_counter_vec(
                "mlops_monitoring_drift_events_total",
                "DriftDetected events published, by monitor",
                &["monitor"],
            ),
            report_seconds: histogram_vec(
                "mlops_monitoring_report_duration_seconds",
                "seconds to test a window against its reference",
                &[],
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
            )
            .with_label_values::<&str>(&[]),
            log_events: int_counter_vec(
                "mlops_monitoring_prediction_log_events_total",
                "predictions read from the prediction log, by outcome (applied, unmonitored, duplicate, malformed; an event that cannot be decoded counts once as malformed)",
                &["outcome"],
            ),
            open_window_rows: gauge_vec(
                "mlops_monitoring_open_window_rows",
                "rows in the open prediction-log window of a monitor and model version",
                &["monitor", "model_version"],
            ),
            performance: gauge_vec(
                "mlops_monitoring_performance",
                "a performance metric of the newest window (accuracy, roc_auc, rmse, ...), realised from labels or estimated (CBPE)",
                &["monitor", "model", "model_version", "metric", "kind"],
            ),
            labelled_rows: gauge_vec(
                "mlops_monitoring_labelled_rows",
                "rows of the newest window that have a label",
                WINDOW,
            ),
            performance_events: int_counter_vec(
                "mlops_monitoring_performance_events_total",
                "PerformanceDegraded events published, by monitor",
                &["monitor"],
            ),
            labels_malformed: int_counter_vec(
                "mlops_monitoring_labels_malformed_total",
                "messages of a monitor's labels topic that are not labels (skipped)",
                &["monitor"],
            ),
        }
    }

    /// Publishes a report's figures.
    pub fn report(&self, monitor: &str, model: &str, version: &str, rows: i64, d: &DatasetDrift) {
        let w = [monitor, model, version];
        self.drift_share.with_label_values(&w).set(d.share);
        self.dataset_drift
            .with_label_values(&w)
            .set(f64::from(u8::from(d.dataset_drift)));
        self.window_rows.with_label_values(&w).set(rows as f64);
        for (column, c) in &d.columns {
            let labels = [monitor, model, version, column.as_str(), c.method.name()];
            match c.score {
                Some(s) => self.drift_score.with_label_values(&labels).set(s),
                None => {
                    let _ = self.drift_score.remove_label_values(&labels);
                }
            }
            self.column_drifted
                .with_label_values(&labels)
                .set(f64::from(u8::from(c.drifted)));
        }
        let result = if d.dataset_drift { "drift" } else { "no_drift" };
        self.reports.with_label_values(&[monitor, result]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
