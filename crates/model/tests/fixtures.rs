//! Every scikit-learn fixture in `tests/fixtures/sklearn` loads and matches onnxruntime's
//! outputs: numbers within the fixture's tolerance (1e-5 absolute by default), labels and
//! strings exactly. Batches of 1, 7 and all rows give the same rows.

use std::path::PathBuf;

use mlops_model::{DataType, LoadError, Model, RunError, Tensor, TensorData};
use serde_json::Value;

/// The fixtures this test knows; one appearing or disappearing in the directory fails it.
const FIXTURES: &[&str] = &[
    "binarizer",
    "extra_trees",
    "gbdt",
    "gbdt_multiclass",
    "gbdt_regressor",
    "label_encoder",
    "linear_svc",
    "linear_svm",
    "linreg",
    "logreg",
    "logreg_zipmap",
    "mlp",
    "mlp_sklearn",
    "normalizer",
    "normalizer_l1",
    "normalizer_max",
    "pipeline",
    "rbf_svm",
    "rf",
    "rf_regressor",
    "svr",
];

/// The four models of the serving benchmark.
const BENCH: &[&str] = &["logreg", "rf", "gbdt", "mlp"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sklearn")
}

fn fixture(name: &str) -> Value {
    let path = dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str) -> Model {
    let bytes = std::fs::read(dir().join(format!("{name}.onnx"))).unwrap();
    Model::load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A JSON tensor (`null` is NaN).
fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let items = v["data"].as_array().unwrap();
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let data = match v["datatype"].as_str().unwrap() {
        "float32" => TensorData::F32(items.iter().map(|x| f(x) as f32).collect()),
        "float64" => TensorData::F64(items.iter().map(f).collect()),
        "int64" => TensorData::I64(items.iter().map(|x| x.as_i64().unwrap()).collect()),
        "int32" => TensorData::I32(items.iter().map(|x| x.as_i64().unwrap() as i32).collect()),
        "bool" => TensorData::Bool(items.iter().map(|x| x.as_bool().unwrap()).collect()),
        "string" => TensorData::String(
            items
                .iter()
                .map(|x| x.as_str().unwrap().as_bytes().to_vec())
                .collect(),
        ),
        other => panic!("datatype {other}"),
    };
    Tensor::new(shape, data).unwrap()
}

fn assert_close(name: &str, output: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.shape, want.shape, "{name}.{output}: shape");
    let nums = |t: &Tensor| -> Option<Vec<f64>> {
        match &t.data {
            TensorData::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            TensorData::F64(v) => Some(v.clone()),
            _ => None,
        }
    };
    match (nums(got), nums(want)) {
        (Some(g), Some(w)) => {
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol;
                assert!(
                    ok,
                    "{name}.{output}[{i}]: got {a}, onnxruntime {b} (tolerance {tol})"
                );
            }
        }
        _ => assert_eq!(got.data, want.data, "{name}.{output}"),
    }
}

#[test]
fn the_fixture_directory_holds_exactly_the_known_fixtures() {
    let mut found: Vec<String> = std::fs::read_dir(dir())
        .expect("tests/fixtures/sklearn exists")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            (stem != "index").then(|| stem.to_string())
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no fixtures in {}", dir().display());
    assert_eq!(found, FIXTURES, "fixtures on disk vs this test's list");
}

#[test]
fn every_fixture_matches_onnxruntime() {
    let mut failures = Vec::new();
    for name in FIXTURES {
        let fx = fixture(name);
        let model = load(name);
        let inputs: Vec<Tensor> = model
            .inputs()
            .iter()
            .map(|spec| {
                let v = fx["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["name"] == spec.name.as_str());
                tensor(v.unwrap_or_else(|| panic!("{name}: no input {}", spec.name)))
            })
            .collect();
        let tol = fx["tolerance_abs"].as_f64().unwrap_or(1e-5).max(1e-5);
        let got = match model.run(&inputs) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for want in fx["outputs"].as_array().unwrap() {
            let out = want["name"].as_str().unwrap();
            let ix = model.outputs().iter().position(|o| o.name == out);
            let Some(ix) = ix else {
                failures.push(format!("{name}: no output {out}"));
                continue;
            };
            let r =
                std::panic::catch_unwind(|| assert_close(name, out, &got[ix], &tensor(want), tol));
            if let Err(e) = r {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                failures.push(msg);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Batches of 1, 7 and 256 rows (the fixture's rows cycled) give the same rows as one by one.
#[test]
fn batch_sizes_give_the_same_rows() {
    for name in BENCH {
        let fx = fixture(name);
        let model = load(name);
        let input = tensor(&fx["inputs"][0]);
        let n = input.rows();
        let singles: Vec<Vec<Tensor>> = (0..256)
            .map(|i| {
                let row = input
                    .split_rows(&[i % n, 1, n - i % n - 1])
                    .unwrap()
                    .swap_remove(1);
                model.run(&[row]).unwrap()
            })
            .collect();
        for size in [1usize, 7, 256] {
            let rows: Vec<Tensor> = (0..size)
                .map(|i| {
                    input
                        .split_rows(&[i % n, 1, n - i % n - 1])
                        .unwrap()
                        .swap_remove(1)
                })
                .collect();
            let batch = Tensor::concat_rows(&rows.iter().collect::<Vec<_>>()).unwrap();
            let out = model.run(&[batch]).unwrap();
            for (k, o) in out.iter().enumerate() {
                let parts = o.split_rows(&vec![1; size]).unwrap();
                for (i, part) in parts.iter().enumerate() {
                    assert_close(name, &model.outputs()[k].name, part, &singles[i][k], 1e-6);
                }
            }
        }
    }
}

#[test]
fn bad_inputs_are_refused_with_what_was_expected() {
    let model = load("rf");
    let ok = Tensor::new(vec![1, 30], TensorData::F32(vec![0.0; 30])).unwrap();
    assert!(model.run(std::slice::from_ref(&ok)).is_ok());
    let cases = [
        vec![],
        vec![ok.clone(), ok.clone()],
        vec![Tensor::new(vec![1, 30], TensorData::F64(vec![0.0; 30])).unwrap()],
        vec![Tensor::new(vec![1, 29], TensorData::F32(vec![0.0; 29])).unwrap()],
        vec![Tensor::new(vec![30], TensorData::F32(vec![0.0; 30])).unwrap()],
        vec![Tensor {
            shape: vec![2, 30],
            data: TensorData::F32(vec![0.0; 30]),
        }],
    ];
    for inputs in cases {
        match model.run(&inputs) {
            Err(RunError::InvalidInput(msg)) => assert!(!msg.is_empty()),
            other => panic!(
                "{:?}: expected InvalidInput, got {other:?}",
                inputs.iter().map(|t| &t.shape).collect::<Vec<_>>()
            ),
        }
    }
    assert_eq!(model.inputs()[0].dtype, DataType::F32);
    assert_eq!(model.inputs()[0].shape, vec![None, Some(30)]);
}

#[test]
fn corrupt_files_fail_to_load_and_never_panic() {
    let bytes = std::fs::read(dir().join("gbdt.onnx")).unwrap();
    for len in [0, 1, 10, 100, bytes.len() / 2, bytes.len() - 1] {
        match Model::load(&bytes[..len]) {
            Err(LoadError::Invalid(_)) => {}
            Err(e) => panic!("truncated to {len}: expected Invalid, got {e}"),
            Ok(_) => panic!("truncated to {len}: loaded"),
        }
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in [16usize, 256, 4096] {
        for _ in 0..20 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            assert!(Model::load(&noise).is_err());
        }
    }
}

#[test]
fn a_zipmap_output_serves_the_probabilities() {
    let model = load("logreg_zipmap");
    let names: Vec<&str> = model.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(model.outputs().len(), 2, "{names:?}");
    assert_eq!(model.outputs()[1].dtype, DataType::F32);
}
