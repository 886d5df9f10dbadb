//! The data of a retrain: the training and evaluation sets joined in the feature store
//! (Arrow IPC streamed back, cut to the policy's window, written as Parquet for the
//! trainer), and the evaluation of a model on the evaluation set.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use mlops_model::{Model, Tensor, TensorData};
use mlops_proto::featurestore::v1 as fs;
use std::collections::BTreeMap;
use std::path::Path;

/// The entity tables' event-time column.
pub const TIMESTAMP_COLUMN: &str = "event_timestamp";

/// Why a dataset could not be made or used; worded for the policy's author.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

fn err(msg: impl Into<String>) -> DataError {
    DataError(msg.into())
}

/// The model's input column of a feature reference (`view:feature` → `feature`).
pub fn column_of(reference: &str) -> &str {
    reference.rsplit_once(':').map_or(reference, |(_, f)| f)
}

/// Joins `features` onto the entity table `entity_parquet` (a path on the feature store's
/// offline store) point in time, and answers the training table in one batch.
pub async fn join(
    client: &mlops_runtime::client::Client,
    features: &[String],
    entity_parquet: &str,
) -> Result<RecordBatch, tonic::Status> {
    use fs::feature_store_service_client::FeatureStoreServiceClient;
    let mut fs = mlops_runtime::grpc_client!(FeatureStoreServiceClient, client);
    let query = fs::GetHistoricalFeaturesRequest {
        part: Some(fs::get_historical_features_request::Part::Query(
            fs::HistoricalQuery {
                features: features.to_vec(),
                entity_parquet: entity_parquet.to_owned(),
                ..Default::default()
            },
        )),
    };
    let mut answer = fs
        .get_historical_features(tokio_stream::iter([query]))
        .await?
        .into_inner();
    let mut ipc = Vec::new();
    while let Some(msg) = answer.message().await? {
        if let Some(fs::get_historical_features_response::Part::ArrowIpc(chunk)) = msg.part {
            ipc.extend_from_slice(&chunk);
        }
    }
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .map_err(|e| tonic::Status::internal(format!("the feature store's answer: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tonic::Status::internal(format!("the feature store's answer: {e}")))?;
    arrow_select::concat::concat_batches(&schema, &batches)
        .map_err(|e| tonic::Status::internal(format!("the feature store's answer: {e}")))
}

/// Nanoseconds since the epoch of each row's event time (null: `None`).
fn event_nanos(batch: &RecordBatch) -> Result<Vec<Option<i64>>, DataError> {
    let col = batch.column_by_name(TIMESTAMP_COLUMN).ok_or_else(|| {
        err(format!(
            "the entity table has no `{TIMESTAMP_COLUMN}` column to cut the window on"
        ))
    })?;
    let scale = |v: Option<i64>, k: i64| v.map(|v| v.saturating_mul(k));
    Ok(match col.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => col
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => col
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|v| scale(v, 1_000))
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => col
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .map(|v| scale(v, 1_000_000))
            .collect(),
        DataType::Timestamp(TimeUnit::Second, _) => col
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| scale(v, 1_000_000_000))
            .collect(),
        other => {
            return Err(err(format!(
                "`{TIMESTAMP_COLUMN}` is {other}, not a timestamp"
            )))
        }
    })
}

/// The rows whose event time is at or after `start_nanos`.
pub fn since(batch: &RecordBatch, start_nanos: i64) -> Result<RecordBatch, DataError> {
    let keep: BooleanArray = event_nanos(batch)?
        .into_iter()
        .map(|t| Some(t.is_some_and(|t| t >= start_nanos)))
        .collect();
    arrow_select::filter::filter_record_batch(batch, &keep).map_err(|e| err(e.to_string()))
}

/// Writes `batch` as a Parquet file at `path`.
pub fn write_parquet(batch: &RecordBatch, path: &Path) -> Result<(), DataError> {
    let file = std::fs::File::create(path)
        .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(|e| err(e.to_string()))?;
    w.write(batch).map_err(|e| err(e.to_string()))?;
    w.close().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A stable digest of a table's contents (FNV-1a over its Arrow IPC bytes), so an
/// evaluation names the exact set it was made on.
pub fn digest(batch: &RecordBatch) -> String {
    let mut ipc = Vec::new();
    if let Ok(mut w) = arrow_ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema()) {
        let _ = w.write(batch);
        let _ = w.finish();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ipc {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn numeric(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, DataError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| err(format!("the joined table has no column `{name}`")))?;
    Ok(match col.data_type() {
        DataType::Float64 => col.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => col
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Int64 => col
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|v| v as f64))
            .collect(),
        DataType::Int32 => col
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        other => {
            return Err(err(format!(
                "column `{name}` is {other}; features and labels must be numeric"
            )))
        }
    })
}

/// The model's input (`[rows, features]` float) and the labels, from the rows where
/// every feature and the label are present.
pub fn inputs(
    batch: &RecordBatch,
    columns: &[&str],
    label: &str,
) -> Result<(Tensor, Vec<f64>), DataError> {
    let cols = columns
        .iter()
        .map(|c| numeric(batch, c))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = numeric(batch, label)?;
    let mut x = Vec::with_capacity(batch.num_rows() * columns.len());
    let mut y = Vec::with_capacity(batch.num_rows());
    for (row, l) in labels.iter().enumerate() {
        let (Some(l), true) = (l, cols.iter().all(|c| c[row].is_some())) else {
            continue;
        };
        x.extend(cols.iter().map(|c| c[row].unwrap_or_default() as f32));
        y.push(*l);
    }
    if y.is_empty() {
        return Err(err(
            "the evaluation set has no row with every feature and the label present",
        ));
    }
    let tensor = Tensor::new(vec![y.len(), columns.len()], TensorData::F32(x))
        .ok_or_else(|| err("input shape"))?;
    Ok((tensor, y))
}

/// A model's first output, one number per row.
pub fn predict(model: &Model, input: &Tensor) -> Result<Vec<f64>, DataError> {
    let out = model
        .run(std::slice::from_ref(input))
        .map_err(|e| err(format!("the model cannot run on the evaluation set: {e}")))?;
    let first = out
        .into_iter()
        .next()
        .ok_or_else(|| err("the model has no output"))?;
    let rows = input.shape[0];
    let values: Vec<f64> = match first.data {
        TensorData::F32(v) => v.into_iter().map(f64::from).collect(),
        TensorData::F64(v) => v,
        TensorData::I64(v) => v.into_iter().map(|v| v as f64).collect(),
        TensorData::I32(v) => v.into_iter().map(f64::from).collect(),
        other => {
            return Err(err(format!(
                "the model's first output is {:?}; evaluation needs numbers",
                other.dtype()
            )))
        }
    };
    if values.len() != rows {
        return Err(err(format!(
            "the model's first output has {} values for {rows} rows; evaluation needs one per row",
            values.len()
        )));
    }
    Ok(values)
}

/// The metrics of `task` ("regression": rmse, mae, r2; "classification": accuracy).
pub fn metrics(task: &str, predicted: &[f64], actual: &[f64]) -> BTreeMap<String, f64> {
    let n = actual.len().max(1) as f64;
    let mut m = BTreeMap::new();
    if task == "classification" {
        let hits = predicted
            .iter()
            .zip(actual)
            .filter(|(p, a)| (*p - *a).abs() < 1e-9)
            .count();
        m.insert("accuracy".to_owned(), hits as f64 / n);
        return m;
    }
    let (mut se, mut ae) = (0.0, 0.0);
    for (p, a) in predicted.iter().zip(actual) {
        se += (p - a) * (p - a);
        ae += (p - a).abs();
    }
    let mean = actual.iter().sum::<f64>() / n;
    let ss_tot: f64 = actual.iter().map(|a| (a - mean) * (a - mean)).sum();
    m.insert("rmse".to_owned(), (se / n).sqrt());
    m.insert("mae".to_owned(), ae / n);
    m.insert(
        "r2".to_owned(),
        if ss_tot > 0.0 { 1.0 - se / ss_tot } else { 0.0 },
    );
    m
}

/// Evaluates the ONNX model `bytes` on the evaluation set.
pub fn evaluate(
    bytes: &[u8],
    input: &Tensor,
    labels: &[f64],
    task: &str,
) -> Result<BTreeMap<String, f64>, DataError> {
    let model = Model::load(bytes).map_err(|e| err(format!("the model cannot be loaded: {e}")))?;
    let predicted = predict(&model, input)?;
    Ok(metrics(task, &predicted, labels))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn table(columns: &[(&str, Vec<Option<f64>>)]) -> RecordBatch {
        let fields: Vec<_> = columns
            .iter()
            .map(|(n, _)| arrow_schema::Field::new(*n, DataType::Float64, true))
            .collect();
        let arrays: Vec<Arc<dyn Array>> = columns
            .iter()
            .map(|(_, v)| Arc::new(arrow_array::Float64Array::from(v.clone())) as Arc<dyn Array>)
            .collect();
        RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), arrays).unwrap()
    }

    #[test]
    fn regression_metrics() {
        let m = metrics("regression", &[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((m["rmse"] - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m["mae"] - 2.0 / 3.0).abs() < 1e-12);
        // mean 8/3; ss_tot = (5/3)^2 + (2/3)^2 + (7/3)^2 = 78/9
        assert!((m["r2"] - (1.0 - 4.0 / (78.0 / 9.0))).abs() < 1e-12);
        let c = metrics(
            "classification",
            &[1.0, 0.0, 1.0, 1.0],
            &[1.0, 1.0, 1.0, 0.0],
        );
        assert_eq!(c["accuracy"], 0.5);
    }

    #[test]
    fn inputs_skip_rows_with_a_missing_value_and_digest_names_the_contents() {
        let t = table(&[
            ("a", vec![Some(1.0), Some(2.0), Some(3.0)]),
            ("b", vec![Some(4.0), None, Some(6.0)]),
            ("y", vec![Some(7.0), Some(8.0), Some(9.0)]),
        ]);
        let (x, y) = inputs(&t, &["a", "b"], "y").unwrap();
        assert_eq!(x.shape, vec![2, 2]);
        assert_eq!(x.data, TensorData::F32(vec![1.0, 4.0, 3.0, 6.0]));
        assert_eq!(y, vec![7.0, 9.0]);
        assert!(inputs(&t, &["a", "c"], "y")
            .unwrap_err()
            .0
            .contains("no column `c`"));
        assert_eq!(digest(&t), digest(&t.clone()));
        let other = table(&[("a", vec![Some(1.0)])]);
        assert_ne!(digest(&t), digest(&other));
        assert_eq!(column_of("driver_stats:conv_rate"), "conv_rate");
    }

    #[test]
    fn the_linear_fixture_evaluates() {
        let bytes = include_bytes!("../../../tests/fixtures/onnx/linear.onnx");
        let x = Tensor::new(vec![2, 4], TensorData::F32(vec![0.0; 8])).unwrap();
        let m = evaluate(bytes, &x, &[0.0, 0.0], "regression").unwrap();
        assert!(m["rmse"].is_finite());
    }
}
