//! The serving benchmark of `/work/shared/bench/peers/onnx_serving.py`, in process, one thread:
//! for logreg, rf, gbdt and mlp, single-row latency (p50/p99 over 1000 calls after 50 warm-up
//! calls, rows cycled from the fixture's inputs) and batch-256 throughput (1000 runs of one
//! fixed batch of the fixture's rows cycled).
//!
//! Models and rows come from `tests/fixtures/sklearn/<name>.{onnx,json}`, or from the
//! directory in `MLOPS_BENCH_MODELS` (the same files). Prints a table to stderr and one JSON
//! line to stdout with onnx_serving.py's keys; its `ok` says whether every model's outputs on
//! the fixture's rows matched onnxruntime's. Run it twice to see the cost of backtraces:
//! `cargo bench -p mlops-model --bench onnx_serving` and the same with `RUST_BACKTRACE=1`.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use mlops_model::{Model, Tensor, TensorData};
use serde_json::{json, Value};

const MODELS: &[&str] = &["logreg", "rf", "gbdt", "mlp"];
const SINGLE_CALLS: usize = 1000;
const WARMUP: usize = 50;
const BATCH: usize = 256;
const BATCH_ITERS: usize = 1000;

fn rows_of(fixture: &Value) -> Vec<Vec<f32>> {
    let input = &fixture["inputs"][0];
    let cols = input["shape"][1].as_u64().expect("a 2-D input") as usize;
    let data: Vec<f32> = input["data"]
        .as_array()
        .expect("input data")
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
        .collect();
    data.chunks(cols).map(|c| c.to_vec()).collect()
}

fn batch(rows: &[Vec<f32>], n: usize) -> Tensor {
    let cols = rows[0].len();
    let data = (0..n)
        .flat_map(|i| rows[i % rows.len()].iter().copied())
        .collect();
    Tensor::new(vec![n, cols], TensorData::F32(data)).expect("a consistent batch")
}

/// Whether the model's outputs on all the fixture's rows are onnxruntime's (the fixture's
/// expected outputs): numbers within 1e-4 relative or absolute, the rest exactly.
fn matches_onnxruntime(model: &Model, rows: &[Vec<f32>], fixture: &Value) -> bool {
    let Ok(outputs) = model.run(&[batch(rows, rows.len())]) else {
        return false;
    };
    let Some(expected) = fixture["outputs"].as_array() else {
        return false;
    };
    expected.iter().all(|want| {
        let Some(i) = model.outputs().iter().position(|s| want["name"] == s.name) else {
            return false;
        };
        let got: Vec<f64> = match &outputs[i].data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            _ => return false,
        };
        let want: Vec<f64> = want["data"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(g, w)| (g - w).abs() <= 1e-4 * w.abs().max(1.0))
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let ix = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[ix]
}

fn main() {
    let dir = std::env::var_os("MLOPS_BENCH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sklearn")
        });
    let mut models = serde_json::Map::new();
    let mut ok = true;
    eprintln!(
        "{:<8} {:>12} {:>12} {:>16}",
        "model", "p50 ms", "p99 ms", "batch rows/s"
    );
    for name in MODELS {
        let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).expect("the model file");
        let fixture: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("the fixture file"),
        )
        .expect("fixture JSON");
        let model = Model::load(&bytes).expect("the model loads");
        let rows = rows_of(&fixture);
        ok &= matches_onnxruntime(&model, &rows, &fixture);
        let singles: Vec<Tensor> = (0..rows.len()).map(|i| batch(&rows[i..], 1)).collect();
        for i in 0..WARMUP {
            model
                .run(std::slice::from_ref(&singles[i % singles.len()]))
                .expect("a run");
        }
        let mut lat = Vec::with_capacity(SINGLE_CALLS);
        for i in 0..SINGLE_CALLS {
            let input = std::slice::from_ref(&singles[i % singles.len()]);
            let t0 = Instant::now();
            let out = model.run(input).expect("a run");
            lat.push(t0.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(out);
        }
        lat.sort_by(f64::total_cmp);
        let big = [batch(&rows, BATCH)];
        for _ in 0..5 {
            model.run(&big).expect("a run");
        }
        let t0 = Instant::now();
        for _ in 0..BATCH_ITERS {
            std::hint::black_box(model.run(&big).expect("a run"));
        }
        let rows_per_s = (BATCH * BATCH_ITERS) as f64 / t0.elapsed().as_secs_f64();
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        eprintln!("{name:<8} {p50:>12.4} {p99:>12.4} {rows_per_s:>16.0}");
        models.insert(
            name.to_string(),
            json!({
                "single_row": {"p50_ms": (p50 * 1e4).round() / 1e4, "p99_ms": (p99 * 1e4).round() / 1e4},
                "batch": {"size": BATCH, "rows_per_s": rows_per_s.round()},
            }),
        );
    }
    println!(
        "{}",
        json!({"bench": "onnx_serving", "impl": "mlops-model", "models": models, "ok": ok})
    );
}
