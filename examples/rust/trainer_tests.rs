//! The trainer's tests: the fit, its refusals, the Parquet reading, and a run against an
//! in-process tracking service.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{Field, Schema};
use mlops_proto::registry::v1 as rpb;

use super::*;

/// `n` rows of `y = 2a - 3b + 1` plus noise of at most ±0.01, with `b` a whole number.
fn synthetic(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut seed = 42u64;
    let mut uniform = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut x, mut y) = (vec![], vec![]);
    for _ in 0..n {
        let (a, b) = (uniform() * 10.0 - 5.0, (uniform() * 5.0).floor());
        x.extend([a, b]);
        y.push(2.0 * a - 3.0 * b + 1.0 + (uniform() - 0.5) * 0.02);
    }
    (x, y)
}

fn env(pairs: &[(&str, &str)]) -> Result<Config> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_env(|name| env.get(name).cloned())
}

/// A training set as the feature store writes it: a join key, `event_timestamp`, `a`
/// (float64), `b` (int64) and `label`; row 3 lacks `a`, row 7 lacks `b`, row 9's label is NaN.
fn write_parquet(path: &std::path::Path, x: &[f64], y: &[f64]) {
    let n = y.len() as i64;
    let a = (0..y.len()).map(|i| (i != 3).then_some(x[2 * i]));
    let b = (0..y.len()).map(|i| (i != 7).then_some(x[2 * i + 1] as i64));
    let label = y
        .iter()
        .enumerate()
        .map(|(i, &v)| if i == 9 { f64::NAN } else { v });
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "driver_id",
            Arc::new(Int64Array::from_iter_values(1000..1000 + n)),
        ),
        (
            "event_timestamp",
            Arc::new(TimestampMillisecondArray::from_iter_values(0..n)),
        ),
        ("a", Arc::new(a.collect::<Float64Array>())),
        ("b", Arc::new(b.collect::<Int64Array>())),
        ("label", Arc::new(label.collect::<Float64Array>())),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, c)| c).collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn fit_recovers_the_generating_function() {
    let (x, y) = synthetic(300);
    let model = fit(&x, &y, 0.0).unwrap();
    let [a, b] = model.weights[..] else {
        panic!("{model:?}")
    };
    assert!(
        (a - 2.0).abs() < 1e-3 && (b + 3.0).abs() < 1e-3,
        "{model:?}"
    );
    assert!((model.intercept - 1.0).abs() < 1e-2, "{model:?}");
    let (rmse, mae, r2) = scores(&model, &x, &y);
    assert!(
        rmse < 0.01 && mae <= rmse && r2 > 0.9999,
        "{rmse} {mae} {r2}"
    );
    // A ridge penalty pulls the weights toward 0; the intercept keeps the mean right.
    let ridge = fit(&x, &y, 1e5).unwrap();
    assert!(ridge.weights.iter().all(|w| w.abs() < 0.5), "{ridge:?}");
    let mean_y = y.iter().sum::<f64>() / y.len() as f64;
    let mean_pred = x.chunks(2).map(|r| ridge.predict(r)).sum::<f64>() / y.len() as f64;
    assert!((mean_pred - mean_y).abs() < 1e-9);
}

#[test]
fn refuses_too_few_rows_and_singular_systems() {
    let err = fit(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0], 0.0).unwrap_err();
    assert!(err.to_string().contains("needs at least 3"), "{err}");
    // b = 2a: singular without a penalty, solvable with one.
    let x: Vec<f64> = (0..10).flat_map(|i| [i as f64, 2.0 * i as f64]).collect();
    let y: Vec<f64> = (0..10).map(f64::from).collect();
    let err = format!("{:#}", fit(&x, &y, 0.0).unwrap_err());
    assert!(err.contains("singular"), "{err}");
    assert!(fit(&x, &y, 0.1).is_ok());
}

#[test]
fn reads_the_environment_contract() {
    let mut vars = vec![
        ("MLOPS_TRACKING_ADDR", "127.0.0.1:50051"),
        ("MLOPS_RUN_ID", "r1"),
        ("MLOPS_TRAINING_DATA", "/data/train.parquet"),
        ("MLOPS_FEATURES", "a, b"),
        ("MLOPS_LABEL", "label"),
        ("MLOPS_PARAM_L2", "0.50"),
    ];
    let c = env(&vars).unwrap();
    assert_eq!(c.tracking_addr, "http://127.0.0.1:50051");
    assert_eq!(c.features, ["a", "b"]);
    assert_eq!(c.data, Data::File("/data/train.parquet".into()));
    let mut job = vars.clone();
    job[2] = ("MLOPS_TRAINING_DATA_ARTIFACT", "training/training.parquet");
    assert_eq!(
        env(&job).unwrap().data,
        Data::Artifact("training/training.parquet".into())
    );
    assert_eq!((c.l2, c.shrink), ((0.5, "0.50".into()), (1.0, "1".into())));
    for i in 0..5 {
        let mut missing = vars.clone();
        let (name, _) = missing.remove(i);
        assert!(env(&missing).unwrap_err().to_string().contains(name));
    }
    vars.push(("MLOPS_PARAM_SHRINK", "half"));
    assert!(env(&vars)
        .unwrap_err()
        .to_string()
        .contains("MLOPS_PARAM_SHRINK"));
}

#[test]
fn reads_parquet_dropping_incomplete_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    let (x, y) = synthetic(20);
    write_parquet(&path, &x, &y);
    let features = ["a".to_owned(), "b".to_owned()];
    let set = read_training_set(&path, &features, "label").unwrap();
    assert_eq!((set.y.len(), set.dropped), (17, 3));
    assert_eq!((&set.x[..6], set.y[3]), (&x[..6], y[4]));
    let err = read_training_set(&path, &["a".into(), "c".into()], "label").unwrap_err();
    assert!(err.to_string().contains("column `c` is not in"), "{err}");
    let err = read_training_set(&path, &features, "event_timestamp").unwrap_err();
    assert!(err.to_string().contains("expected float64"), "{err}");
}

/// The whole trainer against a real tracking service: the metrics and params land on the
/// run, and the uploaded model reads as the registry reads it at registration.
#[tokio::test]
async fn logs_to_the_run_and_uploads_an_onnx_model() {
    let sb = mlops_tests::Sandbox::builder()
        .tracking()
        .start()
        .await
        .unwrap();
    let mut t = sb.tracking_client().await;
    let experiment = pb::CreateExperimentRequest {
        name: "trainer".into(),
        ..Default::default()
    };
    let experiment_id = t
        .create_experiment(experiment)
        .await
        .unwrap()
        .into_inner()
        .experiment_id;
    let run = pb::CreateRunRequest {
        experiment_id,
        ..Default::default()
    };
    let run = t
        .create_run(run)
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
        .info
        .unwrap()
        .run_id;
    let data = sb.dir().join("train.parquet");
    let (x, y) = synthetic(200);
    write_parquet(&data, &x, &y);
    let addr = sb.tracking().grpc.to_string();
    let config = env(&[
        ("MLOPS_TRACKING_ADDR", &addr),
        ("MLOPS_RUN_ID", &run),
        ("MLOPS_TRAINING_DATA", data.to_str().unwrap()),
        ("MLOPS_FEATURES", "a,b"),
        ("MLOPS_LABEL", "label"),
        ("MLOPS_PARAM_SHRINK", "0.5"),
    ])
    .unwrap();

    let s = train(&config).await.unwrap();
    assert_eq!((s.rows, s.dropped), (197, 3));
    assert!(s.r2 < 0.9, "a shrunk model fits worse: {}", s.r2);

    let got = t
        .get_run(pb::GetRunRequest {
            run_id: run.clone(),
        })
        .await
        .unwrap();
    let data = got.into_inner().run.unwrap().data.unwrap();
    let metric = |k: &str| {
        data.metrics
            .iter()
            .find(|m| m.key == k)
            .map(|m| (m.value, m.step))
    };
    assert_eq!(metric("train_rmse"), Some((s.rmse, 0)));
    assert_eq!(metric("train_r2"), Some((s.r2, 0)));
    assert!(metric("train_mae").is_some());
    let mut params: Vec<_> = data
        .params
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    params.sort();
    assert_eq!(
        params,
        [
            ("features", "a,b"),
            ("l2", "0"),
            ("rows", "197"),
            ("shrink", "0.5")
        ]
    );

    let download = pb::DownloadArtifactRequest {
        run_id: run,
        path: MODEL_PATH.into(),
        ..Default::default()
    };
    let mut chunks = t.download_artifact(download).await.unwrap().into_inner();
    let mut bytes = vec![];
    while let Some(c) = chunks.message().await.unwrap() {
        bytes.extend(c.chunk);
    }
    // The weights are those of 2a - 3b + 1, shrunk by half; the intercept is not.
    let graph = onnx::ModelProto::decode(&bytes[..]).unwrap().graph.unwrap();
    let constants: Vec<_> = (graph.initializer.iter())
        .map(|t| (t.name.as_deref().unwrap(), &t.dims[..], &t.float_data[..]))
        .collect();
    let [("W", [2, 1], &[a, b]), ("B", [1], &[intercept])] = constants[..] else {
        panic!("{constants:?}")
    };
    assert!((a - 1.0).abs() < 1e-3 && (b + 1.5).abs() < 1e-3, "{a} {b}");
    assert!((intercept - 1.0).abs() < 1e-2, "{intercept}");
    let sig = mlops_registry::register::read_signature(MODEL_PATH, &bytes).unwrap();
    let show = |specs: &[rpb::TensorSpec]| -> Vec<String> {
        specs
            .iter()
            .map(|s| {
                let dims: Vec<String> = (s.shape.iter().flat_map(|sh| &sh.dims))
                    .map(|d| match &d.value {
                        Some(rpb::dim::Value::Size(n)) => n.to_string(),
                        Some(rpb::dim::Value::Symbol(s)) => s.clone(),
                        None => "?".into(),
                    })
                    .collect();
                format!("{}: {}[{}]", s.name, s.elem_type, dims.join(","))
            })
            .collect()
    };
    assert_eq!(show(&sig.inputs), ["x: float[N,2]"]);
    assert_eq!(show(&sig.outputs), ["y: float[N,1]"]);
    assert_eq!((sig.ir_version, sig.opsets), (8, vec![":13".to_owned()]));
    sb.stop().await.unwrap();
}
