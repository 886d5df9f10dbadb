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
    let mut round: Vec<Logged> = (0..1200)
        .map(|i| {
            let (m, s) = subjects[i % 3];
            logged(m, s, i, 8)
        })
        .collect();
    let Batch { events, counts } = Batch::of(&mut round);
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
    let mut round: Vec<Logged> = (0..PER_EVENT * 2 + 10)
        .map(|i| logged("m", "d/1", i, 8))
        .collect();
    let Batch { events, counts } = Batch::of(&mut round);
    assert_eq!(counts, [PER_EVENT, PER_EVENT, 10]);
    let ids: Vec<usize> = contents(&events)
        .into_iter()
        .flat_map(|(_, _, ids)| ids)
        .collect();
    assert_eq!(ids, (0..PER_EVENT * 2 + 10).collect::<Vec<_>>());
    // Large predictions: an event stops near its byte limit; one prediction larger
    // than the limit goes alone.
    let big = EVENT_BYTES / 3;
    let mut round = vec![
        logged("m", "d/1", 0, big),
        logged("m", "d/1", 1, big),
        logged("m", "d/1", 2, big),
        logged("m", "d/1", 3, EVENT_BYTES * 2),
        logged("m", "d/1", 4, 8),
    ];
    let Batch { events, counts } = Batch::of(&mut round);
    assert_eq!(counts, [2, 1, 1, 1]);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.payload.len() > EVENT_BYTES, i == 2, "event {i}");
    }
    let ids: Vec<usize> = contents(&events)
        .into_iter()
        .flat_map(|(_, _, ids)| ids)
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    assert!(Batch::of(&mut vec![]).events.is_empty());
    assert!(round.is_empty(), "the round is taken");
}
