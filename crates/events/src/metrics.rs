//! The bus's own metrics, shared by every consumer in the process.

use prometheus::IntCounterVec;

/// Messages a consumer could not read as an event: no CloudEvents headers on a
/// topic of events, or a payload that does not decode as its type.
pub const MALFORMED_TOTAL: &str = "mlops_events_malformed_total";

fn malformed_counter() -> IntCounterVec {
    mlops_runtime::metrics::int_counter_vec(
        "mlops_events_malformed_total",
        "messages a consumer skipped because they could not be read as events, by topic and consumer",
        &["topic", "consumer"],
    )
}

/// Counts (and logs) a message on `topic` that `consumer` skipped as malformed.
pub fn count_malformed(topic: &str, consumer: &str, offset: i64, error: &dyn std::fmt::Display) {
    malformed_counter()
        .with_label_values(&[topic, consumer])
        .inc();
    tracing::warn!(topic, consumer, offset, error = %error, "skipping a malformed event");
}

/// How many malformed messages `consumer` skipped on `topic` so far.
pub fn malformed_count(topic: &str, consumer: &str) -> u64 {
    malformed_counter()
        .with_label_values(&[topic, consumer])
        .get()
}
