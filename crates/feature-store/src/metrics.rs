//! The feature store's own Prometheus metrics (the per-RPC ones come from the runtime's
//! layer, the outbox ones from the events crate).

use mlops_runtime::metrics::{histogram_vec, int_counter, int_counter_vec, int_gauge_vec};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// What the service updates.
#[derive(Clone)]
pub struct Metrics {
    /// Entity rows joined into training data.
    pub historical_rows: IntCounter,
    /// Seconds of a training-data query, from the query to the summary.
    pub historical_seconds: Histogram,
    /// The definition version.
    pub definition_version: IntGauge,
    /// Definitions created, changed or removed by applies.
    pub definition_changes: IntCounterVec,
    /// Materialization runs, by view and result (ok, failed).
    pub materializations: IntCounterVec,
    /// Source rows materialized, by view.
    pub materialized_rows: IntCounterVec,
    /// The newest event time in the online store, by view (seconds since the epoch):
    /// `time() - this` is the view's freshness.
    pub newest_event: IntGaugeVec,
    /// Messages read from kafka sources, by source.
    pub ingested_rows: IntCounterVec,
    /// Messages of kafka sources skipped as malformed, by source.
    pub ingest_malformed: IntCounterVec,
    /// Online request plans built (a feature list resolved against the definitions).
    pub online_plans_built: IntCounter,
    /// Training-data queries joined in partitions on disk.
    pub historical_spilled: IntCounter,
}

impl Metrics {
    /// Registers (once per process) and returns the metrics.
    pub fn new() -> Self {
        let m = Metrics {
            historical_rows: int_counter(
                "mlops_feature_store_historical_rows_total",
                "entity rows joined into training data (GetHistoricalFeatures)",
            ),
            historical_spilled: int_counter(
                "mlops_feature_store_historical_spilled_total",
                "training-data queries whose views did not fit in --join-memory-bytes, joined in partitions on disk",
            ),
            historical_seconds: histogram_vec(
                "mlops_feature_store_historical_duration_seconds",
                "seconds of a training-data query, from the query to the last row",
                &[],
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ],
            )
            .with_label_values::<&str>(&[]),
            definition_version: int_gauge_vec(
                "mlops_feature_store_definition_version",
                "the definition version (each apply that changes something adds one)",
                &[],
            )
            .with_label_values::<&str>(&[]),
            definition_changes: int_counter_vec(
                "mlops_feature_store_definition_changes_total",
                "definitions created, changed or removed by applies, by change",
                &["change"],
            ),
            materializations: int_counter_vec(
                "mlops_feature_store_materializations_total",
                "materialization runs, by view and result (ok, failed)",
                &["view", "result"],
            ),
            materialized_rows: int_counter_vec(
                "mlops_feature_store_materialized_rows_total",
                "source rows read by materialization runs, by view",
                &["view"],
            ),
            newest_event: int_gauge_vec(
                "mlops_feature_store_newest_event_timestamp_seconds",
                "the newest event time in the online store, by view (time() minus this is its freshness)",
                &["view"],
            ),
            ingested_rows: int_counter_vec(
                "mlops_feature_store_ingested_messages_total",
                "messages read from the topics of kafka sources, by source",
                &["source"],
            ),
            ingest_malformed: int_counter_vec(
                "mlops_feature_store_ingest_malformed_total",
                "messages of kafka sources skipped as malformed (not a row of the source), by source",
                &["source"],
            ),
            online_plans_built: int_counter(
                "mlops_feature_store_online_plans_built_total",
                "online request plans built: a feature list resolved against a definitions version, then kept until the definitions change",
            ),
        };
        for change in ["created", "changed", "removed"] {
            m.definition_changes.with_label_values(&[change]);
        }
        m
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
