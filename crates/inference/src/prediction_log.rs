//! The prediction log: every answered request (or a sample: the service's share, or a
//! model's own from its `prediction_log_sample` parameter) on `mlops.inference.predictions`.
//! Recording is a `try_send` of the prediction's encoded `PredictionLogged` into a bounded
//! buffer, so a request never waits for the bus: when the buffer is full (the bus is slow or
//! down) the prediction is dropped and counted. One task publishes what the buffer holds,
//! straight to the bus (not through the outbox, whose transaction per event is too slow at
//! these rates), several predictions of one deployment's version to a `PredictionsLogged`
//! event: on Kafka an event costs the process and the broker several times what encoding a
//! prediction does, so one event per prediction cost a tenth of the service's throughput.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlops_events::{Envelope, EventBus};
use mlops_model::{IoSpec, Tensor};
use mlops_proto::events::{topics, v1 as ev};
use mlops_runtime::shutdown::CancellationToken;
use prometheus::IntCounter;
use tokio::sync::mpsc;

/// Most predictions taken from the buffer for one publish.
const ROUND: usize = 4096;
/// Most predictions in one event.
const PER_EVENT: usize = 512;
/// An event's payload grows past this only with its first prediction (Kafka's default
/// limit on a record is 1 MB).
const EVENT_BYTES: usize = 256 * 1024;
/// Attempts to publish one batch before it is dropped (and counted).
const ATTEMPTS: usize = 5;
/// How long a batch waits for more predictions after its first (as Kafka's `linger.ms`):
/// the publisher wakes once per batch instead of once per prediction, and fewer, fuller
/// events cost the bus less.
const LINGER: Duration = Duration::from_millis(5);

/// Where predictions are recorded.
#[derive(Clone)]
pub struct PredictionLog {
    tx: mpsc::Sender<Logged>,
    /// The share logged of a model that does not set its own.
    sample: f64,
    replica: String,
    dropped: IntCounter,
}

/// The task that publishes the buffer.
pub struct Publisher {
    rx: mpsc::Receiver<Logged>,
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

    /// Starts logging `p`: its event's payload up to the outputs, `inputs` (named by
    /// `specs`, in order) included, written before the request runs (its tensors move into
    /// it). [`PredictionLog::record`] finishes it once the request has answered.
    pub fn begin(&self, p: &Prediction<'_>, inputs: &[Tensor], specs: &[IoSpec]) -> Pending {
        Pending(wire::begin(p, inputs, specs))
    }

    /// Records the prediction `pending` began, which answered `outputs` (named by `specs`,
    /// in order) after `latency`; never waits.
    pub fn record(
        &self,
        p: &Prediction<'_>,
        pending: Pending,
        outputs: &[Tensor],
        specs: &[IoSpec],
        latency: Duration,
    ) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let logged = Logged {
            model_id: p.model_id.to_owned(),
            subject: format!("{}/{}", p.deployment, p.version),
            payload: wire::finish(pending.0, outputs, specs, latency, time, &self.replica),
        };
        if self.tx.try_send(logged).is_err() {
            self.dropped.inc();
        }
    }
}

/// One prediction in the buffer: its encoded `PredictionLogged`, and the key and subject of
/// the event it goes out in.
struct Logged {
    model_id: String,
    /// `<deployment>/<version>`.
    subject: String,
    payload: Vec<u8>,
}

/// A `PredictionsLogged` event being filled: predictions of one model id and subject.
struct Event {
    model_id: String,
    subject: String,
    /// The encoded `PredictionsLogged`: each prediction as its field 1.
    payload: Vec<u8>,
    predictions: usize,
}

impl Event {
    /// An event of `p`'s model id and subject, holding `p`.
    fn new(p: Logged) -> Event {
        let mut payload = Vec::with_capacity(EVENT_BYTES.min(p.payload.len() * 64));
        wire::prediction(&p.payload, &mut payload);
        Event {
            model_id: p.model_id,
            subject: p.subject,
            payload,
            predictions: 1,
        }
    }

    /// Whether `p` is of this event's model id and subject.
    fn is_for(&self, p: &Logged) -> bool {
        self.model_id == p.model_id && self.subject == p.subject
    }

    /// Whether `p` is for this event and fits.
    fn takes(&self, p: &Logged) -> bool {
        self.is_for(p)
            && self.predictions < PER_EVENT
            && self.payload.len() + p.payload.len() <= EVENT_BYTES
    }

    fn push(&mut self, p: &Logged) {
        wire::prediction(&p.payload, &mut self.payload);
        self.predictions += 1;
    }
}

/// Events ready to publish, and how many predictions each holds.
struct Batch {
    events: Vec<Envelope>,
    counts: Vec<usize>,
}

impl Batch {
    /// `predictions`, taken, as events: those of one model id and subject together in the
    /// order they were answered, up to [`PER_EVENT`] and about [`EVENT_BYTES`] to an event.
    fn of(predictions: &mut Vec<Logged>) -> Batch {
        let mut open: Vec<Event> = Vec::new();
        let mut full: Vec<Event> = Vec::new();
        for p in predictions.drain(..) {
            if let Some(e) = open.iter_mut().find(|e| e.takes(&p)) {
                e.push(&p);
                continue;
            }
            // The model's event, if one is open, is full: it goes out first, so each
            // deployment's predictions stay in order.
            if let Some(i) = open.iter().position(|e| e.is_for(&p)) {
                full.push(open.swap_remove(i));
            }
            open.push(Event::new(p));
        }
        full.extend(open);
        Batch {
            counts: full.iter().map(|e| e.predictions).collect(),
            events: full
                .into_iter()
                .map(|e| {
                    Envelope::encoded::<ev::PredictionsLogged>(
                        topics::PREDICTIONS,
                        "/mlops/inference",
                        &e.model_id,
                        e.subject,
                        e.payload,
                    )
                })
                .collect(),
        }
    }

    /// The predictions the events hold.
    fn predictions(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// Which prediction is logged, as [`PredictionLog::begin`] and [`PredictionLog::record`]
/// take it.
pub struct Prediction<'a> {
    /// The request's id.
    pub request_id: &'a str,
    /// The deployment's name.
    pub deployment: &'a str,
    /// The registered model's id.
    pub model_id: &'a str,
    /// The version that answered.
    pub version: i64,
    /// The traffic variant that answered.
    pub variant: &'a str,
}

/// A prediction's event payload, up to its outputs ([`PredictionLog::begin`]).
pub struct Pending(Vec<u8>);

/// `PredictionLogged` written straight from the request's borrowed fields and tensors into
/// one buffer, as prost would encode the message built from copies of them (fields in
/// order, proto3 defaults left out), without the copies: a prediction's strings and
/// tensors are not duplicated on the request path only to be encoded and dropped.
mod wire {
    use std::time::Duration;

    use mlops_model::{IoSpec, Tensor};
    use prost::encoding::{encoded_len_varint, key_len, WireType};

    use super::Prediction;
    use crate::tensors::{datatype_name, encode_raw_into, raw_len};

    /// Fields 1 to 6 of `PredictionLogged`: the ids and the inputs.
    pub(super) fn begin(p: &Prediction<'_>, inputs: &[Tensor], specs: &[IoSpec]) -> Vec<u8> {
        let tensors = || inputs.iter().zip(specs).map(|(t, s)| (s.name.as_str(), t));
        let len = string_len(1, p.request_id)
            + string_len(2, p.deployment)
            + string_len(3, p.model_id)
            + int64_len(4, p.version)
            + string_len(5, p.variant)
            + tensors()
                .map(|(n, t)| message_len(6, tensor_len(n, t)))
                .sum::<usize>();
        // Room for the outputs and the rest too, most often.
        let mut buf = Vec::with_capacity(len + 256);
        string(1, p.request_id, &mut buf);
        string(2, p.deployment, &mut buf);
        string(3, p.model_id, &mut buf);
        int64(4, p.version, &mut buf);
        string(5, p.variant, &mut buf);
        for (name, t) in tensors() {
            tensor(6, name, t, &mut buf);
        }
        buf
    }

    /// Fields 7 to 10, after [`begin`]'s: the whole message.
    pub(super) fn finish(
        mut buf: Vec<u8>,
        outputs: &[Tensor],
        specs: &[IoSpec],
        latency: Duration,
        time: Duration,
        replica: &str,
    ) -> Vec<u8> {
        let tensors = || outputs.iter().zip(specs).map(|(t, s)| (s.name.as_str(), t));
        buf.reserve(
            tensors()
                .map(|(n, t)| message_len(7, tensor_len(n, t)))
                .sum::<usize>()
                + 2 * (1 + 10)
                + string_len(10, replica),
        );
        for (name, t) in tensors() {
            tensor(7, name, t, &mut buf);
        }
        int64(8, latency.as_micros() as i64, &mut buf);
        int64(9, time.as_nanos() as i64, &mut buf);
        string(10, replica, &mut buf);
        buf
    }

    /// An encoded `PredictionLogged` as field 1 of `PredictionsLogged`.
    pub(super) fn prediction(encoded: &[u8], buf: &mut Vec<u8>) {
        buf.reserve(key_len(1) + encoded_len_varint(encoded.len() as u64) + encoded.len());
        delimited(1, encoded.len(), buf);
        buf.extend_from_slice(encoded);
    }

    /// A varint, as prost's `encode_varint` writes it, inlined: the buffer has room already,
    /// and prost's call through `BufMut` was a tenth of a prediction's cost.
    #[inline]
    fn encode_varint(mut v: u64, buf: &mut Vec<u8>) {
        while v >= 0x80 {
            buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    #[inline]
    fn encode_key(tag: u32, wire_type: WireType, buf: &mut Vec<u8>) {
        encode_varint(u64::from(tag << 3 | wire_type as u32), buf);
    }

    fn string_len(tag: u32, s: &str) -> usize {
        if s.is_empty() {
            0
        } else {
            message_len(tag, s.len())
        }
    }

    fn string(tag: u32, s: &str, buf: &mut Vec<u8>) {
        if !s.is_empty() {
            delimited(tag, s.len(), buf);
            buf.extend_from_slice(s.as_bytes());
        }
    }

    /// The key and length of a length-delimited field of `len` bytes, which follow.
    fn delimited(tag: u32, len: usize, buf: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
    }

    fn int64_len(tag: u32, v: i64) -> usize {
        if v == 0 {
            0
        } else {
            key_len(tag) + encoded_len_varint(v as u64)
        }
    }

    fn int64(tag: u32, v: i64, buf: &mut Vec<u8>) {
        if v != 0 {
            encode_key(tag, WireType::Varint, buf);
            encode_varint(v as u64, buf);
        }
    }

    /// A length-delimited field of `len` bytes, its key and length included.
    fn message_len(tag: u32, len: usize) -> usize {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    /// A `PredictionTensor`'s encoding, without its own key and length.
    fn tensor_len(name: &str, t: &Tensor) -> usize {
        Sizes::of(t).tensor(name, t)
    }

    /// What a tensor's shape and raw elements take, worked out once per tensor.
    struct Sizes {
        /// The shape's packed varints.
        shape: usize,
        /// The raw elements.
        raw: usize,
    }

    impl Sizes {
        fn of(t: &Tensor) -> Sizes {
            Sizes {
                shape: t.shape.iter().map(|&d| encoded_len_varint(d as u64)).sum(),
                raw: raw_len(&t.data),
            }
        }

        /// [`tensor_len`].
        fn tensor(&self, name: &str, t: &Tensor) -> usize {
            let field = |tag, len| if len == 0 { 0 } else { message_len(tag, len) };
            string_len(1, name)
                + string_len(2, datatype_name(t.dtype()))
                + field(3, self.shape)
                + field(4, self.raw)
        }
    }

    /// `t` named `name` as a `PredictionTensor` in field `tag`.
    fn tensor(tag: u32, name: &str, t: &Tensor, buf: &mut Vec<u8>) {
        let sizes = Sizes::of(t);
        delimited(tag, sizes.tensor(name, t), buf);
        string(1, name, buf);
        string(2, datatype_name(t.dtype()), buf);
        if sizes.shape > 0 {
            delimited(3, sizes.shape, buf);
            for &d in &t.shape {
                encode_varint(d as u64, buf);
            }
        }
        if sizes.raw > 0 {
            delimited(4, sizes.raw, buf);
            encode_raw_into(&t.data, buf);
        }
    }
}

impl Publisher {
    /// Publishes the buffer in batches until `stop`, then what is left.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut round = Vec::with_capacity(ROUND);
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => None,
                p = self.rx.recv() => p,
            };
            let Some(first) = first else { break };
            round.push(first);
            // Not waiting on the channel meanwhile: a receiver waiting is woken by every send.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(LINGER) => {}
            }
            while round.len() < ROUND {
                match self.rx.try_recv() {
                    Ok(p) => round.push(p),
                    Err(_) => break,
                }
            }
            self.publish(Batch::of(&mut round), &stop).await;
        }
        // Shutting down: what is buffered (at most the buffer's size) goes out once, without
        // retries.
        while let Ok(p) = self.rx.try_recv() {
            round.push(p);
        }
        let mut batch = Batch::of(&mut round);
        let _ = self.publish_counted(&mut batch).await;
        self.dropped.inc_by(batch.predictions() as u64);
        Ok(())
    }

    /// Publishes `batch`, retrying what was not delivered.
    async fn publish(&self, mut batch: Batch, stop: &CancellationToken) {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            match self.publish_counted(&mut batch).await {
                Ok(()) => return,
                Err(err) if attempt == ATTEMPTS => {
                    tracing::warn!(error = %err, dropped = batch.predictions(), "the prediction log cannot publish; dropping a batch");
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
        self.dropped.inc_by(batch.predictions() as u64);
    }

    /// One attempt: the events delivered leave `batch` and their predictions are counted
    /// as logged.
    async fn publish_counted(&self, batch: &mut Batch) -> Result<(), mlops_events::BusError> {
        if batch.events.is_empty() {
            return Ok(());
        }
        let before = batch.events.len();
        let result = self.bus.publish_taking(&mut batch.events).await;
        let delivered: usize = batch.counts.drain(..before - batch.events.len()).sum();
        self.logged.inc_by(delivered as u64);
        result
    }
}

#[cfg(test)]
mod tests;
