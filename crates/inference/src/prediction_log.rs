//! The prediction log: every answered request (or a sample: the service's share, or a
//! model's own from its `prediction_log_sample` parameter) as a `PredictionLogged` event
//! on `mlops.inference.predictions`. Recording is a `try_send` into a bounded buffer, so a
//! request never waits for the bus: when the buffer is full (the bus is slow or down) the
//! prediction is dropped and counted. One task publishes what the buffer holds in batches,
//! straight to the bus (not through the outbox, whose transaction per event is too slow at
//! these rates).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlops_events::{Envelope, EventBus};
use mlops_model::{IoSpec, Tensor};
use mlops_proto::events::{topics, v1 as ev};
use mlops_runtime::shutdown::CancellationToken;
use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::tensors::{datatype_name, encode_raw};

/// Most events published in one call.
const BATCH: usize = 512;
/// Attempts to publish one batch before it is dropped (and counted).
const ATTEMPTS: usize = 5;
/// How long a batch waits for more predictions after its first (as Kafka's `linger.ms`):
/// the publisher wakes once per batch instead of once per prediction, and fewer, fuller
/// publishes wake the bus's readers less often.
const LINGER: Duration = Duration::from_millis(5);

/// Where predictions are recorded.
#[derive(Clone)]
pub struct PredictionLog {
    tx: mpsc::Sender<Envelope>,
    /// The share logged of a model that does not set its own.
    sample: f64,
    replica: String,
    dropped: IntCounter,
}

/// The task that publishes the buffer.
pub struct Publisher {
    rx: mpsc::Receiver<Envelope>,
    bus: Arc<dyn EventBus>,
    dropped: IntCounter,
    logged: IntCounter,
}

fn counters() -> (IntCounter, IntCounter) {
    use mlops_runtime::metrics::int_counter;
    (
        int_counter(
            "mlops_inference_prediction_log_dropped_total",
            "predictions not logged: the buffer was full (the bus slow or down) or a batch could not be published",
        ),
        int_counter(
            "mlops_inference_predictions_logged_total",
            "predictions published on the prediction log",
        ),
    )
}

impl PredictionLog {
    /// A log into a buffer of `buffer` events, of `sample` (0 to 1) of the predictions of a
    /// model that does not set its own share, and its publisher (idle while nothing is
    /// logged).
    pub fn new(
        bus: Arc<dyn EventBus>,
        sample: f64,
        buffer: usize,
        replica: &str,
    ) -> (PredictionLog, Publisher) {
        let (dropped, logged) = counters();
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let log = PredictionLog {
            tx,
            sample: sample.clamp(0.0, 1.0),
            replica: replica.to_owned(),
            dropped: dropped.clone(),
        };
        let publisher = Publisher {
            rx,
            bus,
            dropped,
            logged,
        };
        (log, publisher)
    }

    /// The share of a model's predictions logged: its own when it sets one, else the
    /// service's.
    pub fn share(&self, own: Option<f64>) -> f64 {
        own.unwrap_or(self.sample).clamp(0.0, 1.0)
    }

    /// Whether a request of a model logging `share` of its predictions is logged (decided
    /// before it runs, so its inputs are kept).
    pub fn sampled(share: f64) -> bool {
        if share >= 1.0 {
            return true;
        }
        if share <= 0.0 {
            return false;
        }
        let (r, _) = uuid::Uuid::new_v4().as_u64_pair();
        (r as f64 / u64::MAX as f64) < share
    }

    /// Records one prediction; never waits.
    pub fn record(&self, p: Prediction<'_>) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let msg = ev::PredictionLogged {
            request_id: p.request_id.to_owned(),
            deployment: p.deployment.to_owned(),
            model_id: p.model_id.to_owned(),
            version: p.version,
            variant: p.variant.to_owned(),
            inputs: p.inputs,
            outputs: p
                .outputs
                .iter()
                .zip(p.output_specs)
                .map(|(t, spec)| tensor(&spec.name, t))
                .collect(),
            latency_us: p.latency.as_micros() as i64,
            time_unix_nano: time.as_nanos() as i64,
            replica: self.replica.clone(),
        };
        let event = Envelope::of(
            topics::PREDICTIONS,
            "/mlops/inference",
            p.model_id,
            format!("{}/{}", p.deployment, p.version),
            &msg,
        );
        if self.tx.try_send(event).is_err() {
            self.dropped.inc();
        }
    }
}

/// One answered request, as [`PredictionLog::record`] takes it.
pub struct Prediction<'a> {
    /// Its id.
    pub request_id: &'a str,
    /// The deployment's name.
    pub deployment: &'a str,
    /// The registered model's id.
    pub model_id: &'a str,
    /// The version that answered.
    pub version: i64,
    /// The traffic variant that answered.
    pub variant: &'a str,
    /// The inputs, encoded before the request ran ([`tensor`]).
    pub inputs: Vec<ev::PredictionTensor>,
    /// The model's outputs.
    pub outputs: &'a [Tensor],
    /// Their names and types, in order (the model's signature).
    pub output_specs: &'a [IoSpec],
    /// From arrival to answer.
    pub latency: Duration,
}

/// `t` named `name` in the log's form.
pub fn tensor(name: &str, t: &Tensor) -> ev::PredictionTensor {
    ev::PredictionTensor {
        name: name.to_owned(),
        datatype: datatype_name(t.dtype()).to_owned(),
        shape: t.shape.iter().map(|&d| d as i64).collect(),
        raw: encode_raw(&t.data),
    }
}

impl Publisher {
    /// Publishes the buffer in batches until `stop`, then what is left.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => None,
                e = self.rx.recv() => e,
            };
            let Some(first) = first else { break };
            batch.push(first);
            // Not waiting on the channel meanwhile: a receiver waiting is woken by every send.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(LINGER) => {}
            }
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            self.publish(&mut batch, &stop).await;
        }
        // Shutting down: what is buffered goes out once, without retries.
        while let Ok(e) = self.rx.try_recv() {
            batch.push(e);
            if batch.len() == BATCH {
                self.publish_once(&mut batch).await;
            }
        }
        self.publish_once(&mut batch).await;
        Ok(())
    }

    async fn publish(&self, batch: &mut Vec<Envelope>, stop: &CancellationToken) {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let before = batch.len();
            let result = self.bus.publish_taking(batch).await;
            self.logged.inc_by((before - batch.len()) as u64);
            match result {
                Ok(()) => return,
                Err(err) if attempt == ATTEMPTS => {
                    tracing::warn!(error = %err, dropped = batch.len(), "the prediction log cannot publish; dropping a batch");
                }
                Err(err) => {
                    tracing::debug!(error = %err, attempt, "publishing the prediction log failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait *= 2;
                }
            }
        }
        self.dropped.inc_by(batch.len() as u64);
        batch.clear();
    }

    async fn publish_once(&self, batch: &mut Vec<Envelope>) {
        if batch.is_empty() {
            return;
        }
        let before = batch.len();
        let _ = self.bus.publish_taking(batch).await;
        self.logged.inc_by((before - batch.len()) as u64);
        self.dropped.inc_by(batch.len() as u64);
        batch.clear();
    }
}
