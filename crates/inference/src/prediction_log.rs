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
    /// Whether `p` belongs here and fits.
    fn takes(&self, p: &Logged) -> bool {
        self.model_id == p.model_id
            && self.subject == p.subject
            && self.predictions < PER_EVENT
            && self.payload.len() + p.payload.len() <= EVENT_BYTES
    }

    fn push(&mut self, p: &Logged) {
        wire::prediction(&p.payload, &mut self.payload);
        self.predictions += 1;
    }
}

/// `predictions` as events: those of one model id and subject together in the order they
/// were answered, up to [`PER_EVENT`] and about [`EVENT_BYTES`] to an event. Returns the
/// events and how many predictions each holds.
fn events(predictions: &[Logged]) -> (Vec<Envelope>, Vec<usize>) {
    let mut open: Vec<Event> = Vec::new();
    let mut full: Vec<Event> = Vec::new();
    for p in predictions {
        match open.iter().position(|e| e.takes(p)) {
            Some(i) => open[i].push(p),
            None => {
                // The model's event, if one is open, is full: it goes out first, so each
                // deployment's predictions stay in order.
                if let Some(i) = open
                    .iter()
                    .position(|e| e.model_id == p.model_id && e.subject == p.subject)
                {
                    full.push(open.swap_remove(i));
                }
                let mut e = Event {
                    model_id: p.model_id.clone(),
                    subject: p.subject.clone(),
                    payload: Vec::with_capacity(EVENT_BYTES.min(p.payload.len() * 64)),
                    predictions: 0,
                };
                e.push(p);
                open.push(e);
            }
        }
    }
    full.extend(open);
    let counts = full.iter().map(|e| e.predictions).collect();
    let envelopes = full
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
        .collect();
    (envelopes, counts)
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
            let (mut batch, counts) = events(&round);
            round.clear();
            self.publish(&mut batch, &counts, &stop).await;
        }
        // Shutting down: what is buffered goes out once, without retries.
        while let Ok(p) = self.rx.try_recv() {
            round.push(p);
            if round.len() == ROUND {
                let (mut batch, counts) = events(&round);
                round.clear();
                self.publish_once(&mut batch, &counts).await;
            }
        }
        let (mut batch, counts) = events(&round);
        self.publish_once(&mut batch, &counts).await;
        Ok(())
    }

    /// Publishes `batch`, whose events hold `counts` predictions, retrying what was not
    /// delivered.
    async fn publish(&self, batch: &mut Vec<Envelope>, counts: &[usize], stop: &CancellationToken) {
        let mut wait = Duration::from_millis(100);
        let mut counts = counts;
        for attempt in 1..=ATTEMPTS {
            let result = self.publish_counted(batch, &mut counts).await;
            match result {
                Ok(()) => return,
                Err(err) if attempt == ATTEMPTS => {
                    tracing::warn!(error = %err, dropped = counts.iter().sum::<usize>(), "the prediction log cannot publish; dropping a batch");
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
        self.dropped.inc_by(counts.iter().sum::<usize>() as u64);
        batch.clear();
    }

    async fn publish_once(&self, batch: &mut Vec<Envelope>, counts: &[usize]) {
        if batch.is_empty() {
            return;
        }
        let mut counts = counts;
        let _ = self.publish_counted(batch, &mut counts).await;
        self.dropped.inc_by(counts.iter().sum::<usize>() as u64);
        batch.clear();
    }

    /// One attempt: the events delivered leave `batch`, and their counts `counts`, and their
    /// predictions are counted as logged.
    async fn publish_counted(
        &self,
        batch: &mut Vec<Envelope>,
        counts: &mut &[usize],
    ) -> Result<(), mlops_events::BusError> {
        let before = batch.len();
        let result = self.bus.publish_taking(batch).await;
        let (delivered, left) = counts.split_at(before - batch.len());
        self.logged.inc_by(delivered.iter().sum::<usize>() as u64);
        *counts = left;
        result
    }
}

#[cfg(test)]
mod tests {
    use mlops_model::TensorData;
    use prost::Message;

    use super::*;
    use crate::tensors::{datatype_name, encode_raw};

    /// `t` named `name` as the message prost would encode.
    fn tensor(name: &str, t: &Tensor) -> ev::PredictionTensor {
        ev::PredictionTensor {
            name: name.to_owned(),
            datatype: datatype_name(t.dtype()).to_owned(),
            shape: t.shape.iter().map(|&d| d as i64).collect(),
            raw: encode_raw(&t.data),
        }
    }

    fn spec(name: &str, t: &Tensor) -> IoSpec {
        IoSpec {
            name: name.into(),
            dtype: t.dtype(),
            shape: t.shape.iter().map(|&d| Some(d)).collect(),
        }
    }

    /// Every element type, strings of every length, an empty tensor, a scalar, and large
    /// values (multi-byte varints).
    fn tensors() -> Vec<(&'static str, Tensor)> {
        let t = |shape: Vec<usize>, data| Tensor::new(shape, data).unwrap();
        vec![
            (
                "f32",
                t(
                    vec![2, 3],
                    TensorData::F32(vec![0.5, -1.0, 3.25, 0.0, 1e30, -0.0]),
                ),
            ),
            (
                "f64",
                t(vec![1], TensorData::F64(vec![std::f64::consts::PI])),
            ),
            (
                "i64",
                t(vec![3], TensorData::I64(vec![i64::MIN, 0, i64::MAX])),
            ),
            ("i32", t(vec![2], TensorData::I32(vec![-7, 1 << 30]))),
            (
                "u8",
                t(
                    vec![300],
                    TensorData::U8((0..300).map(|i| i as u8).collect()),
                ),
            ),
            ("bool", t(vec![2], TensorData::Bool(vec![true, false]))),
            (
                "bytes",
                t(
                    vec![3],
                    TensorData::String(vec![b"".to_vec(), b"a".to_vec(), vec![b'x'; 200]]),
                ),
            ),
            ("empty", t(vec![0, 4], TensorData::F32(vec![]))),
            ("scalar", t(vec![], TensorData::F32(vec![2.0]))),
            ("", t(vec![1], TensorData::U16(vec![65535]))),
            ("u64", t(vec![1], TensorData::U64(vec![u64::MAX]))),
            ("i8", t(vec![1], TensorData::I8(vec![-1]))),
            ("i16", t(vec![1], TensorData::I16(vec![-300]))),
            ("u32", t(vec![1], TensorData::U32(vec![u32::MAX]))),
        ]
    }

    #[test]
    fn the_payload_is_prosts_encoding_of_the_message() {
        let all = tensors();
        let long = "r".repeat(300);
        let cases = [
            // Every field set, some long enough for two-byte lengths.
            (
                long.as_str(),
                "deployment",
                "model-id",
                7,
                "stable",
                0..7,
                7..all.len(),
                250,
                "replica-1",
            ),
            // Proto3's defaults, which prost leaves out: empty strings, zeros, no tensors.
            ("", "", "", 0, "", 0..0, 0..0, 0, ""),
            // A negative version, as an int64 is encoded (ten bytes).
            ("id", "d", "m", -1, "shadow", 3..4, 0..1, u64::MAX / 2, "r"),
        ];
        for (request_id, deployment, model_id, version, variant, ins, outs, latency_us, replica) in
            cases
        {
            let p = Prediction {
                request_id,
                deployment,
                model_id,
                version,
                variant,
            };
            let (ins, outs) = (&all[ins], &all[outs]);
            let in_tensors: Vec<Tensor> = ins.iter().map(|(_, t)| t.clone()).collect();
            let in_specs: Vec<IoSpec> = ins.iter().map(|(n, t)| spec(n, t)).collect();
            let out_tensors: Vec<Tensor> = outs.iter().map(|(_, t)| t.clone()).collect();
            let out_specs: Vec<IoSpec> = outs.iter().map(|(n, t)| spec(n, t)).collect();
            let latency = Duration::from_micros(latency_us);
            let time = Duration::new(1_780_000_000, 123_456_789);

            let ours = wire::finish(
                wire::begin(&p, &in_tensors, &in_specs),
                &out_tensors,
                &out_specs,
                latency,
                time,
                replica,
            );
            let message = ev::PredictionLogged {
                request_id: request_id.into(),
                deployment: deployment.into(),
                model_id: model_id.into(),
                version,
                variant: variant.into(),
                inputs: ins.iter().map(|(n, t)| tensor(n, t)).collect(),
                outputs: outs.iter().map(|(n, t)| tensor(n, t)).collect(),
                latency_us: latency.as_micros() as i64,
                time_unix_nano: time.as_nanos() as i64,
                replica: replica.into(),
            };
            assert_eq!(ours, message.encode_to_vec(), "request {request_id:?}");
            assert_eq!(
                ev::PredictionLogged::decode(ours.as_slice()).unwrap(),
                message
            );
        }
    }

    #[tokio::test]
    async fn a_recorded_prediction_is_published_as_its_event() {
        let bus: Arc<dyn EventBus> = Arc::new(mlops_events::memory::InProcessBus::new());
        let mut sub = bus.subscribe("test", &[topics::PREDICTIONS]).await.unwrap();
        let (log, publisher) = PredictionLog::new(bus.clone(), 1.0, 16, "replica-a");
        let stop = CancellationToken::new();
        let publishing = tokio::spawn(publisher.run(stop.clone()));
        let all = tensors();
        let (input, output) = (&all[0].1, &all[2].1);
        let p = Prediction {
            request_id: "req-1",
            deployment: "churn",
            model_id: "m-1",
            version: 3,
            variant: "canary",
        };
        let pending = log.begin(&p, std::slice::from_ref(input), &[spec("x", input)]);
        log.record(
            &p,
            pending,
            std::slice::from_ref(output),
            &[spec("label", output)],
            Duration::from_micros(42),
        );
        let event = sub.next().await.unwrap().envelope;
        assert_eq!(event.topic, topics::PREDICTIONS);
        assert_eq!(event.key, "m-1");
        assert_eq!(event.subject, "churn/3");
        let mut logged: ev::PredictionsLogged = event.decode().unwrap();
        assert_eq!(logged.predictions.len(), 1);
        let logged = logged.predictions.remove(0);
        assert_eq!(logged.request_id, "req-1");
        assert_eq!((logged.version, logged.variant.as_str()), (3, "canary"));
        assert_eq!(logged.inputs, [tensor("x", input)]);
        assert_eq!(logged.outputs, [tensor("label", output)]);
        assert_eq!(logged.latency_us, 42);
        assert_eq!(logged.replica, "replica-a");
        assert!(logged.time_unix_nano > 0);
        stop.cancel();
        publishing.await.unwrap().unwrap();
    }

    /// A prediction of `model_id` and `subject` whose request id is `id`, its payload padded
    /// to about `size` bytes.
    fn logged(model_id: &str, subject: &str, id: usize, size: usize) -> Logged {
        let p = ev::PredictionLogged {
            request_id: id.to_string(),
            model_id: model_id.into(),
            replica: "r".repeat(size),
            ..Default::default()
        };
        Logged {
            model_id: model_id.into(),
            subject: subject.into(),
            payload: p.encode_to_vec(),
        }
    }

    /// What `events` made: each event's key, subject and request ids.
    fn contents(events: &[Envelope]) -> Vec<(String, String, Vec<usize>)> {
        events
            .iter()
            .map(|e| {
                assert_eq!(e.topic, topics::PREDICTIONS);
                let batch: ev::PredictionsLogged = e.decode().unwrap();
                let ids = batch
                    .predictions
                    .iter()
                    .map(|p| {
                        assert_eq!(p.model_id, e.key);
                        p.request_id.parse().unwrap()
                    })
                    .collect();
                (e.key.clone(), e.subject.clone(), ids)
            })
            .collect()
    }

    #[test]
    fn predictions_of_one_version_share_events_in_order() {
        // Two models, the first with two versions (a canary), interleaved.
        let subjects = [("m-1", "churn/1"), ("m-1", "churn/2"), ("m-2", "fraud/5")];
        let round: Vec<Logged> = (0..1200)
            .map(|i| {
                let (m, s) = subjects[i % 3];
                logged(m, s, i, 8)
            })
            .collect();
        let (events, counts) = events(&round);
        let got = contents(&events);
        assert_eq!(
            counts,
            got.iter().map(|(_, _, ids)| ids.len()).collect::<Vec<_>>()
        );
        assert_eq!(counts.iter().sum::<usize>(), 1200, "each prediction once");
        assert!(counts.iter().all(|&n| n <= PER_EVENT));
        assert_eq!(events.len(), 3, "400 of each subject fit one event each");
        for (m, s) in subjects {
            let ids: Vec<usize> = got
                .iter()
                .filter(|(k, sub, _)| k == m && sub == s)
                .flat_map(|(_, _, ids)| ids.clone())
                .collect();
            assert_eq!(ids.len(), 400, "{s}");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{s}: in order");
        }
    }

    #[test]
    fn an_event_holds_at_most_its_count_and_size() {
        // One subject, more predictions than an event holds: full events first, in order.
        let round: Vec<Logged> = (0..PER_EVENT * 2 + 10)
            .map(|i| logged("m", "d/1", i, 8))
            .collect();
        let (events, counts) = events(&round);
        assert_eq!(counts, [PER_EVENT, PER_EVENT, 10]);
        let ids: Vec<usize> = contents(&events)
            .into_iter()
            .flat_map(|(_, _, ids)| ids)
            .collect();
        assert_eq!(ids, (0..PER_EVENT * 2 + 10).collect::<Vec<_>>());
        // Large predictions: an event stops near its byte limit; one prediction larger
        // than the limit goes alone.
        let big = EVENT_BYTES / 3;
        let round = vec![
            logged("m", "d/1", 0, big),
            logged("m", "d/1", 1, big),
            logged("m", "d/1", 2, big),
            logged("m", "d/1", 3, EVENT_BYTES * 2),
            logged("m", "d/1", 4, 8),
        ];
        let (events, counts) = super::events(&round);
        assert_eq!(counts, [2, 1, 1, 1]);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.payload.len() > EVENT_BYTES, i == 2, "event {i}");
        }
        let ids: Vec<usize> = contents(&events)
            .into_iter()
            .flat_map(|(_, _, ids)| ids)
            .collect();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        assert_eq!(super::events(&[]).0.len(), 0);
    }
}
