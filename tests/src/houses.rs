//! The closed loop's world, shared by its tests (`tests/it/retraining*.rs`) and its
//! benchmark (`tests/benches/retraining.rs`): houses with two features in a feature view,
//! labels from one of two linear worlds (so a model of one is bad in the other), entity
//! tables for training (even houses) and evaluation (odd ones), and a retraining policy
//! over them.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{Field, Schema};
use mlops_proto::inference::v1 as dpb;
use mlops_proto::registry::v1 as rpb;
use mlops_proto::retraining::v1 as pb;

/// How many houses.
pub const HOUSES: i64 = 200;
const HOUR: i64 = 3_600_000_000_000;

/// The feature store's definitions (`examples/retraining/features.yaml`, which `make demo`
/// applies too): the entity `house`, its view `house` (a, b) over `houses.parquet`.
pub const DEFS: &str = include_str!("../../examples/retraining/features.yaml");

/// House `i`'s features.
pub fn features(i: i64) -> (f64, f64) {
    (
        ((i * 37) % 101) as f64 / 10.0,
        ((i * 53) % 89) as f64 / 10.0,
    )
}

/// The world before a drift.
pub fn old_world(a: f64, b: f64) -> f64 {
    a + b + 1.0
}

/// The world after it.
pub fn new_world(a: f64, b: f64) -> f64 {
    2.0 * a - 3.0 * b + 1.0
}

fn write(path: &std::path::Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn times(n: usize, t: i64) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(vec![t; n]).with_timezone("UTC"))
}

/// The feature source (known from hour 1), and the training and evaluation entity tables
/// (at hour 2) labelled by `world`, under the offline store's `root`.
pub fn write_world(root: &std::path::Path, world: fn(f64, f64) -> f64) {
    let ids: Vec<i64> = (0..HOUSES).collect();
    let (a, b): (Vec<f64>, Vec<f64>) = ids.iter().map(|i| features(*i)).unzip();
    write(
        &root.join("houses.parquet"),
        vec![
            (
                "house_id",
                Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
            ),
            ("event_timestamp", times(ids.len(), HOUR)),
            ("a", Arc::new(Float64Array::from(a))),
            ("b", Arc::new(Float64Array::from(b))),
        ],
    );
    for (file, parity) in [("train.parquet", 0), ("eval.parquet", 1)] {
        let ids: Vec<i64> = (0..HOUSES).filter(|i| i % 2 == parity).collect();
        let y: Vec<f64> = ids
            .iter()
            .map(|i| {
                let (a, b) = features(*i);
                world(a, b)
            })
            .collect();
        write(
            &root.join("entities").join(file),
            vec![
                (
                    "house_id",
                    Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
                ),
                ("event_timestamp", times(ids.len(), 2 * HOUR)),
                ("y", Arc::new(Float64Array::from(y))),
            ],
        );
    }
}

/// A policy for `model` over the houses: the trainer `trainer`, retrained on drift, at most
/// one retrain per `cooldown_seconds`, gated on rmse (a floor of 0.5 and no worse than the
/// champion), canaried at 50% with an analysis of `interval_ms` intervals that promotes
/// after `successes` good ones.
pub fn policy(
    model: &str,
    trainer: &str,
    cooldown_seconds: i64,
    interval_ms: u64,
    successes: u32,
) -> pb::Policy {
    pb::Policy {
        model: model.into(),
        triggers: Some(pb::Triggers {
            drift: true,
            ..Default::default()
        }),
        cooldown_seconds,
        trainer: Some(pb::Trainer {
            command: vec![trainer.into()],
            ..Default::default()
        }),
        data: Some(pb::Data {
            features: vec!["house:a".into(), "house:b".into()],
            label: "y".into(),
            training: Some(pb::Dataset {
                entity_table: "entities/train.parquet".into(),
                window_seconds: 0,
            }),
            evaluation: Some(pb::Dataset {
                entity_table: "entities/eval.parquet".into(),
                window_seconds: 0,
            }),
            task: "regression".into(),
        }),
        gate: Some(pb::Gate {
            thresholds: vec![rpb::MetricThreshold {
                metric: "rmse".into(),
                threshold: Some(0.5),
                max_absolute_degradation: Some(0.0),
                greater_is_better: false,
                ..Default::default()
            }],
        }),
        rollout: Some(pb::Rollout {
            canary_weight: 50,
            analysis: Some(dpb::Analysis {
                interval_ms,
                max_error_rate: 0.05,
                min_requests: 3,
                failure_limit: 0,
                consecutive_error_limit: 3,
                successes_to_promote: successes,
                ..Default::default()
            }),
            fault: None,
            timeout_seconds: 60,
        }),
        ..Default::default()
    }
}

/// Starts a manual retrain of `model` (its policy's, not forced); panics when refused.
pub async fn start_retrain(
    c: &mut mlops_proto::retraining::v1::retraining_service_client::RetrainingServiceClient<
        tonic::transport::Channel,
    >,
    model: &str,
) -> pb::Retrain {
    c.start_retrain(pb::StartRetrainRequest {
        model: model.into(),
        ..Default::default()
    })
    .await
    .expect("a manual retrain")
    .into_inner()
    .retrain
    .expect("its retrain")
}

/// The served answer of `model` for one house with the features `a` and `b` (the houses'
/// models take `x`, FP32 of shape [1, 2], and answer one FP32).
pub async fn infer(
    o: &mut mlops_proto::triton::grpc_inference_service_client::GrpcInferenceServiceClient<
        tonic::transport::Channel,
    >,
    model: &str,
    a: f64,
    b: f64,
) -> Result<f64, tonic::Status> {
    use mlops_proto::triton as oip;
    let raw: Vec<u8> = [a as f32, b as f32]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let out = o
        .model_infer(oip::ModelInferRequest {
            model_name: model.into(),
            inputs: vec![oip::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![1, 2],
                ..Default::default()
            }],
            raw_input_contents: vec![raw.into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let bytes = out
        .raw_output_contents
        .first()
        .and_then(|b| b.get(..4))
        .ok_or_else(|| tonic::Status::internal("the answer holds no FP32 value"))?;
    Ok(f32::from_le_bytes(bytes.try_into().expect("four bytes")) as f64)
}
