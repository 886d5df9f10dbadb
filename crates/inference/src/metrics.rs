//! The inference service's metrics: Triton's, under Triton's names and labels (so a Triton
//! dashboard works unchanged), and two histograms of ours.
//!
//! Triton's (labels `model`, `version`): `nv_inference_request_success`,
//! `nv_inference_request_failure` (plus `reason`: `REJECTED`, `BACKEND`, `OTHER`),
//! `nv_inference_count` (rows), `nv_inference_exec_count` (batches run),
//! `nv_inference_request_duration_us`, `nv_inference_queue_duration_us`,
//! `nv_inference_compute_infer_duration_us` (cumulative microseconds), and the gauge
//! `nv_inference_pending_request_count`. Ours: `mlops_inference_request_duration_seconds`
//! and `mlops_inference_batch_size` (rows per batch run), labelled `model`;
//! `mlops_inference_deployment_swaps_total{model, outcome}` (deployment changes that
//! swapped or failed), `mlops_inference_variant_requests_total{model, variant, outcome}` and
//! `mlops_inference_variant_request_duration_seconds{model, variant}` (per traffic variant).

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Every series' family, registered once per process.
#[derive(Clone)]
pub struct Metrics {
    success: IntCounterVec,
    failure: IntCounterVec,
    count: IntCounterVec,
    exec_count: IntCounterVec,
    request_us: IntCounterVec,
    queue_us: IntCounterVec,
    compute_us: IntCounterVec,
    pending: IntGaugeVec,
    latency: HistogramVec,
    batch: HistogramVec,
    /// Models loaded now.
    pub loaded: IntGauge,
    load_failures: IntCounterVec,
    swaps: IntCounterVec,
    variant_requests: IntCounterVec,
    variant_latency: HistogramVec,
}

/// The series of one traffic variant of a model.
#[derive(Clone)]
pub struct VariantSeries {
    ok: IntCounter,
    failed: IntCounter,
    latency: prometheus::Histogram,
}

impl VariantSeries {
    /// Counts one request.
    pub fn observe(&self, ok: bool, latency: std::time::Duration) {
        if ok { &self.ok } else { &self.failed }.inc();
        self.latency.observe(latency.as_secs_f64());
    }
}

/// The series of one loaded model version.
#[derive(Clone)]
pub struct ModelSeries {
    /// Requests answered.
    pub success: IntCounter,
    /// Rows inferred.
    pub count: IntCounter,
    /// Batches run.
    pub exec_count: IntCounter,
    /// Microseconds from arrival to answer, summed.
    pub request_us: IntCounter,
    /// Microseconds waited in the queue, summed.
    pub queue_us: IntCounter,
    /// Microseconds of computation, summed.
    pub compute_us: IntCounter,
    /// Requests waiting or running.
    pub pending: IntGauge,
    /// Request latency.
    pub latency: prometheus::Histogram,
    /// Rows per batch run.
    pub batch: prometheus::Histogram,
    failure: IntCounterVec,
    model: String,
    version: String,
}

impl ModelSeries {
    /// Counts a failed request.
    pub fn failed(&self, reason: &str) {
        self.failure
            .with_label_values(&[&self.model, &self.version, reason])
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The families (created on first use, shared afterwards).
    pub fn new() -> Self {
        use mlops_runtime::metrics::{histogram_vec, int_counter_vec, int_gauge, int_gauge_vec};
        let mv = &["model", "version"];
        Metrics {
            success: int_counter_vec(
                "nv_inference_request_success",
                "Number of successful inference requests, all batch sizes",
                mv,
            ),
            failure: int_counter_vec(
                "nv_inference_request_failure",
                "Number of failed inference requests, all batch sizes",
                &["model", "version", "reason"],
            ),
            count: int_counter_vec(
                "nv_inference_count",
                "Number of inferences performed (does not include cached requests)",
                mv,
            ),
            exec_count: int_counter_vec(
                "nv_inference_exec_count",
                "Number of model executions performed (does not include cached requests)",
                mv,
            ),
            request_us: int_counter_vec(
                "nv_inference_request_duration_us",
                "Cumulative inference request duration in microseconds (includes cached requests)",
                mv,
            ),
            queue_us: int_counter_vec(
                "nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds (includes cached requests)",
                mv,
            ),
            compute_us: int_counter_vec(
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute inference duration in microseconds (does not include cached requests)",
                mv,
            ),
            pending: int_gauge_vec(
                "nv_inference_pending_request_count",
                "Instantaneous number of pending requests awaiting execution per-model.",
                mv,
            ),
            latency: histogram_vec(
                "mlops_inference_request_duration_seconds",
                "inference request latency from arrival to answer, by model",
                &["model"],
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ],
            ),
            batch: histogram_vec(
                "mlops_inference_batch_size",
                "rows per model execution (a dynamic batch, or one request without batching), by model",
                &["model"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
            ),
            loaded: int_gauge(
                "mlops_inference_models_loaded",
                "model versions loaded and serving",
            ),
            load_failures: int_counter_vec(
                "mlops_inference_model_load_failures_total",
                "model loads that failed, by model",
                &["model"],
            ),
            variant_requests: int_counter_vec(
                "mlops_inference_variant_requests_total",
                "requests by model, traffic variant (stable, a variant's name, shadow) and outcome (ok, failed)",
                &["model", "variant", "outcome"],
            ),
            variant_latency: histogram_vec(
                "mlops_inference_variant_request_duration_seconds",
                "request latency by model and traffic variant",
                &["model", "variant"],
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ],
            ),
            swaps: int_counter_vec(
                "mlops_inference_deployment_swaps_total",
                "deployment changes (a deploy, an alias that moved), by model and outcome: swapped (a new version serves) or failed (the old one keeps serving)",
                &["model", "outcome"],
            ),
        }
    }

    /// The series of `model` at `version`.
    pub fn series(&self, model: &str, version: i64) -> ModelSeries {
        let v = version.to_string();
        let mv = [model, v.as_str()];
        ModelSeries {
            success: self.success.with_label_values(&mv),
            count: self.count.with_label_values(&mv),
            exec_count: self.exec_count.with_label_values(&mv),
            request_us: self.request_us.with_label_values(&mv),
            queue_us: self.queue_us.with_label_values(&mv),
            compute_us: self.compute_us.with_label_values(&mv),
            pending: self.pending.with_label_values(&mv),
            latency: self.latency.with_label_values(&[model]),
            batch: self.batch.with_label_values(&[model]),
            failure: self.failure.clone(),
            model: model.to_owned(),
            version: v,
        }
    }

    /// The series of `model`'s traffic variant `variant`.
    pub fn variant(&self, model: &str, variant: &str) -> VariantSeries {
        VariantSeries {
            ok: self
                .variant_requests
                .with_label_values(&[model, variant, "ok"]),
            failed: self
                .variant_requests
                .with_label_values(&[model, variant, "failed"]),
            latency: self.variant_latency.with_label_values(&[model, variant]),
        }
    }

    /// Counts a deployment change of `model` that swapped (`ok`) or failed.
    pub fn swapped(&self, model: &str, ok: bool) {
        let outcome = if ok { "swapped" } else { "failed" };
        self.swaps.with_label_values(&[model, outcome]).inc();
    }

    /// Counts a failed load of `model`.
    pub fn load_failed(&self, model: &str) {
        self.load_failures.with_label_values(&[model]).inc();
    }
}
