//! An example trainer for the retraining service: linear regression on the training set the
//! service hands over, logged to the tracking run it names and uploaded as an ONNX model.
//!
//! Copy it and replace [`fit`] with your own model. The contract with the service is the
//! environment (see `examples/rust/README.md`): where the data is, which columns to use, which
//! run to log to. Exit 0 means success; on any error the trainer prints it on stderr and exits 1.
//! It never ends the run: the retraining service does.

// The one summary line on stdout is part of what a command-line tool does.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;
use mlops_proto::tracking::v1 as pb;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pb::tracking_service_client::TrackingServiceClient;
use prost::Message;

/// Where the model goes, relative to the run's artifact root: the service looks for it there.
const MODEL_PATH: &str = "model/model.onnx";

/// Where the training set is.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    File(PathBuf),
    Artifact(String),
}

/// Everything the trainer takes from its environment.
#[derive(Debug, Clone)]
struct Config {
    /// The tracking service, with its scheme (`http://host:port`).
    tracking_addr: String,
    /// The RUNNING run to log to.
    run_id: String,
    /// The training set: a local Parquet file (`MLOPS_TRAINING_DATA`, a local trainer), or
    /// an artifact of the run to download (`MLOPS_TRAINING_DATA_ARTIFACT`, a Kubernetes Job).
    data: Data,
    /// The model's input columns, in order.
    features: Vec<String>,
    /// The column to predict.
    label: String,
    /// Ridge penalty on the weights (`MLOPS_PARAM_L2`), and its text as given.
    l2: (f64, String),
    /// Factor applied to the fitted weights (`MLOPS_PARAM_SHRINK`), and its text as given.
    shrink: (f64, String),
    /// A bearer token for the tracking service (`MLOPS_TOKEN`), when it requires one.
    token: Option<String>,
}

impl Config {
    /// Reads the contract from `var` (`std::env::var` in `main`, a map in the tests).
    fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let required = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .with_context(|| format!("the environment variable {name} is not set"))
        };
        // A number parameter: the text is kept so the param is logged exactly as it was given.
        let param = |key: &str, default: &str| -> Result<(f64, String)> {
            let name = format!("MLOPS_PARAM_{key}");
            let text = var(&name).map_or(default.to_owned(), |v| v.trim().to_owned());
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok((v, text)),
                _ => bail!("{name} is `{text}`; expected a number"),
            }
        };
        let addr = required("MLOPS_TRACKING_ADDR")?;
        let features: Vec<String> = required("MLOPS_FEATURES")?
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        if features.is_empty() {
            bail!("MLOPS_FEATURES names no column; expected comma-separated column names");
        }
        let l2 = param("L2", "0")?;
        if l2.0 < 0.0 {
            bail!(
                "MLOPS_PARAM_L2 is {}; expected a penalty of 0 or more",
                l2.1
            );
        }
        Ok(Config {
            tracking_addr: if addr.contains("://") {
                addr
            } else {
                format!("http://{addr}")
            },
            run_id: required("MLOPS_RUN_ID")?,
            data: match (
                var("MLOPS_TRAINING_DATA").filter(|v| !v.trim().is_empty()),
                var("MLOPS_TRAINING_DATA_ARTIFACT").filter(|v| !v.trim().is_empty()),
            ) {
                (Some(path), _) => Data::File(path.trim().into()),
                (None, Some(artifact)) => Data::Artifact(artifact.trim().to_owned()),
                (None, None) => bail!(
                    "the environment variable MLOPS_TRAINING_DATA (or MLOPS_TRAINING_DATA_ARTIFACT) is not set"
                ),
            },
            features,
            label: required("MLOPS_LABEL")?,
            l2,
            shrink: param("SHRINK", "1")?,
            token: var("MLOPS_TOKEN").filter(|t| !t.is_empty()),
        })
    }
}

/// The training set: `x` is row-major, one row of `features.len()` values per label in `y`.
#[derive(Debug, Default)]
struct TrainingSet {
    x: Vec<f64>,
    y: Vec<f64>,
    /// Rows skipped because a feature or the label was null (or NaN, or infinite).
    dropped: usize,
}

/// Reads the feature and label columns of a Parquet file; every other column is ignored.
fn read_training_set(
    path: &std::path::Path,
    features: &[String],
    label: &str,
) -> Result<TrainingSet> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let wanted: Vec<&str> = features.iter().map(String::as_str).chain([label]).collect();
    // Check every column up front, so that a typo is reported before any work is done.
    let schema = builder.schema().clone();
    for name in &wanted {
        let Ok(field) = schema.field_with_name(name) else {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            bail!(
                "column `{name}` is not in {}; it has {}",
                path.display(),
                have.join(", ")
            );
        };
        if !matches!(
            field.data_type(),
            DataType::Float64 | DataType::Float32 | DataType::Int64 | DataType::Int32
        ) {
            bail!(
                "column `{name}` is {}; expected float64, float32, int64 or int32",
                field.data_type()
            );
        }
    }
    let mut set = TrainingSet::default();
    let mut row = vec![0.0; wanted.len()]; // the features, then the label
    for batch in builder.build()? {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let columns: Vec<_> = wanted
            .iter()
            .filter_map(|n| batch.column_by_name(n))
            .collect();
        'rows: for i in 0..batch.num_rows() {
            for (slot, column) in row.iter_mut().zip(&columns) {
                match number(column.as_ref(), i) {
                    Some(v) => *slot = v,
                    None => {
                        set.dropped += 1;
                        continue 'rows;
                    }
                }
            }
            set.x.extend_from_slice(&row[..features.len()]);
            set.y.push(row[features.len()]);
        }
    }
    Ok(set)
}

/// Value `i` of a numeric column as `f64`; `None` when it is null or not finite.
fn number(column: &dyn Array, i: usize) -> Option<f64> {
    if column.is_null(i) {
        return None;
    }
    let v = match column.data_type() {
        DataType::Float64 => column.as_primitive::<Float64Type>().value(i),
        DataType::Float32 => f64::from(column.as_primitive::<Float32Type>().value(i)),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(i) as f64,
        DataType::Int32 => f64::from(column.as_primitive::<Int32Type>().value(i)),
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// A fitted linear model: `y = weights · x + intercept`.
#[derive(Debug, Clone, PartialEq)]
struct Linear {
    weights: Vec<f64>,
    intercept: f64,
}

impl Linear {
    fn predict(&self, row: &[f64]) -> f64 {
        self.weights
            .iter()
            .zip(row)
            .map(|(w, x)| w * x)
            .sum::<f64>()
            + self.intercept
    }
}

/// Fits linear regression with an intercept by the normal equations `(XᵀX + λI) w = Xᵀy`,
/// with `λ = l2` on the weights only. Solving on centred columns and taking the intercept as
/// `mean(y) - mean(x)·w` gives exactly that solution (the intercept is not penalised) with a
/// better conditioned system.
fn fit(x: &[f64], y: &[f64], l2: f64) -> Result<Linear> {
    let (n, f) = (y.len(), x.len() / y.len().max(1));
    if f == 0 || n < f + 1 {
        bail!(
            "{n} usable rows for {f} features; a linear model needs at least {}",
            f + 1
        );
    }
    let mean = |v: &mut dyn Iterator<Item = f64>| v.sum::<f64>() / n as f64;
    let mean_x: Vec<f64> = (0..f)
        .map(|j| mean(&mut x.iter().skip(j).step_by(f).copied()))
        .collect();
    let mean_y = mean(&mut y.iter().copied());
    // A = XcᵀXc + λI (f×f, row-major) and b = Xcᵀyc, with Xc and yc centred.
    let (mut a, mut b) = (vec![0.0; f * f], vec![0.0; f]);
    let mut centred = vec![0.0; f];
    for (row, yi) in x.chunks_exact(f).zip(y) {
        for ((c, v), m) in centred.iter_mut().zip(row).zip(&mean_x) {
            *c = v - m;
        }
        for (j, cj) in centred.iter().enumerate() {
            b[j] += cj * (yi - mean_y);
            for (ajk, ck) in a[j * f..(j + 1) * f].iter_mut().zip(&centred) {
                *ajk += cj * ck;
            }
        }
    }
    for j in 0..f {
        a[j * f + j] += l2;
    }
    let weights = solve(a, b).context(
        "the normal equations are singular: a feature is constant or a combination of others; \
         drop it or set MLOPS_PARAM_L2 above 0",
    )?;
    let intercept = mean_y - weights.iter().zip(&mean_x).map(|(w, m)| w * m).sum::<f64>();
    Ok(Linear { weights, intercept })
}

/// Solves `a v = b` (`a` square, row-major) by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>) -> Result<Vec<f64>> {
    let k = b.len();
    // A pivot this small relative to the largest diagonal entry is rounding noise of a zero.
    let tiny = 1e-12 * (0..k).map(|i| a[i * k + i].abs()).fold(0.0, f64::max);
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|&i, &j| a[i * k + col].abs().total_cmp(&a[j * k + col].abs()))
            .unwrap_or(col);
        if a[pivot * k + col].abs() <= tiny {
            bail!("pivot {col} is zero");
        }
        for c in 0..k {
            a.swap(pivot * k + c, col * k + c);
        }
        b.swap(pivot, col);
        for r in col + 1..k {
            let m = a[r * k + col] / a[col * k + col];
            for c in col..k {
                a[r * k + c] -= m * a[col * k + c];
            }
            b[r] -= m * b[col];
        }
    }
    let mut v = vec![0.0; k];
    for r in (0..k).rev() {
        let rest: f64 = (r + 1..k).map(|c| a[r * k + c] * v[c]).sum();
        v[r] = (b[r] - rest) / a[r * k + r];
    }
    Ok(v)
}

/// Training error: root mean squared error, mean absolute error and R².
fn scores(model: &Linear, x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let n = y.len() as f64;
    let residuals: Vec<f64> = x
        .chunks_exact(model.weights.len())
        .zip(y)
        .map(|(r, y)| y - model.predict(r))
        .collect();
    let ss_res: f64 = residuals.iter().map(|e| e * e).sum();
    let mean_y = y.iter().sum::<f64>() / n;
    let ss_tot: f64 = y.iter().map(|y| (y - mean_y) * (y - mean_y)).sum();
    // A constant label: R² is 1 for a perfect fit and 0 otherwise (as scikit-learn does).
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    (
        (ss_res / n).sqrt(),
        residuals.iter().map(|e| e.abs()).sum::<f64>() / n,
        r2,
    )
}

/// The model as ONNX: `y[N,1] = MatMul(x[N,f], W[f,1]) + B[1]`, in float, opset 13, IR 8.
fn to_onnx(model: &Linear) -> Vec<u8> {
    use onnx::*;
    let f = model.weights.len() as i64;
    let value = |name: &str, dims: Vec<Dim>| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|d| Dimension { value: Some(d) })
                        .collect(),
                }),
            })),
        }),
    };
    let constant = |name: &str, dims: Vec<i64>, data: Vec<f32>| TensorProto {
        name: Some(name.into()),
        dims,
        data_type: Some(FLOAT),
        float_data: data,
        raw_data: None,
    };
    let node = |op: &str, inputs: [&str; 2], output: &str| NodeProto {
        input: inputs.map(String::from).to_vec(),
        output: vec![output.into()],
        name: Some(op.to_lowercase()),
        op_type: Some(op.into()),
    };
    let batch = || Dim::DimParam("N".into());
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("mlops-example-trainer".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            name: Some("linear_regression".into()),
            node: vec![
                node("MatMul", ["x", "W"], "xw"),
                node("Add", ["xw", "B"], "y"),
            ],
            initializer: vec![
                constant(
                    "W",
                    vec![f, 1],
                    model.weights.iter().map(|&w| w as f32).collect(),
                ),
                constant("B", vec![1], vec![model.intercept as f32]),
            ],
            input: vec![value("x", vec![batch(), Dim::DimValue(f)])],
            output: vec![value("y", vec![batch(), Dim::DimValue(1)])],
        }),
    }
    .encode_to_vec()
}

mod onnx;

/// What a training did, for the summary line.
#[derive(Debug)]
struct Summary {
    rows: usize,
    dropped: usize,
    rmse: f64,
    r2: f64,
}

/// Reads, fits, scores, then logs to the run and uploads the model (the only network part,
/// so that bad data fails before anything is written to the run).
async fn train(config: &Config) -> Result<Summary> {
    let addr = &config.tracking_addr;
    let channel = tonic::transport::Endpoint::from_shared(addr.clone())
        .with_context(|| format!("MLOPS_TRACKING_ADDR `{addr}` is not an address"))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connecting to the tracking service at {addr}"))?;
    // With MLOPS_TOKEN, every call carries `authorization: Bearer <token>`.
    let auth: Option<tonic::metadata::AsciiMetadataValue> = (config.token.as_ref())
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .context("MLOPS_TOKEN is not a valid header value")?;
    let mut tracking =
        TrackingServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            if let Some(value) = &auth {
                req.metadata_mut().insert("authorization", value.clone());
            }
            Ok(req)
        });

    // A Job's training set is an artifact of its run: downloaded next to the trainer.
    let path = match &config.data {
        Data::File(path) => path.clone(),
        Data::Artifact(artifact) => {
            let mut stream = tracking
                .download_artifact(pb::DownloadArtifactRequest {
                    run_id: config.run_id.clone(),
                    path: artifact.clone(),
                    logged_model_id: String::new(),
                })
                .await
                .with_context(|| format!("downloading the training set {artifact} of the run"))?
                .into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.message().await? {
                bytes.extend_from_slice(&chunk.chunk);
            }
            let path = std::env::temp_dir().join(format!("training-{}.parquet", config.run_id));
            std::fs::write(&path, bytes)
                .with_context(|| format!("writing the training set to {}", path.display()))?;
            path
        }
    };
    let set = read_training_set(&path, &config.features, &config.label)?;
    let mut model = fit(&set.x, &set.y, config.l2.0)?;
    for w in &mut model.weights {
        *w *= config.shrink.0;
    }
    let (rmse, mae, r2) = scores(&model, &set.x, &set.y);

    let now = chrono::Utc::now().timestamp_millis();
    let metric = |key: &str, value: f64| pb::Metric {
        key: key.into(),
        value,
        timestamp: now,
        step: 0,
        ..Default::default()
    };
    let param = |key: &str, value: String| pb::Param {
        key: key.into(),
        value,
    };
    tracking
        .log_batch(pb::LogBatchRequest {
            run_id: config.run_id.clone(),
            metrics: vec![
                metric("train_rmse", rmse),
                metric("train_mae", mae),
                metric("train_r2", r2),
            ],
            params: vec![
                param("l2", config.l2.1.clone()),
                param("shrink", config.shrink.1.clone()),
                param("features", config.features.join(",")),
                param("rows", set.y.len().to_string()),
            ],
            tags: vec![],
        })
        .await
        .with_context(|| format!("logging to run {}", config.run_id))?;

    // UploadArtifact is client-streaming: a header naming the file, then its bytes in chunks.
    use pb::upload_artifact_request::Item;
    let header = Item::Header(pb::ArtifactHeader {
        run_id: config.run_id.clone(),
        path: MODEL_PATH.into(),
        ..Default::default()
    });
    let bytes = to_onnx(&model);
    let items =
        std::iter::once(header).chain(bytes.chunks(64 * 1024).map(|c| Item::Chunk(c.to_vec())));
    let requests: Vec<_> = items
        .map(|item| pb::UploadArtifactRequest { item: Some(item) })
        .collect();
    tracking
        .upload_artifact(futures::stream::iter(requests))
        .await
        .with_context(|| format!("uploading {MODEL_PATH} to run {}", config.run_id))?;

    Ok(Summary {
        rows: set.y.len(),
        dropped: set.dropped,
        rmse,
        r2,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlops-example-trainer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let config = Config::from_env(|name| std::env::var(name).ok())?;
    let s = train(&config).await?;
    println!(
        "trained on {} rows ({} dropped for missing values): train_rmse={:.6} train_r2={:.6}; \
         uploaded {MODEL_PATH} to run {}",
        s.rows, s.dropped, s.rmse, s.r2, config.run_id
    );
    Ok(())
}

#[cfg(test)]
#[path = "trainer_tests.rs"]
mod tests;
