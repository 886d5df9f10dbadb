//! How `mlops serve` shows what the inference service answers: the repository index and
//! inference outputs as tables for people, and as JSON for scripts (the outputs in the
//! Open Inference Protocol's JSON response shape, as `/v2/models/NAME/infer` answers).

use mlops_proto::triton::repository_index_response::ModelIndex;
use mlops_proto::triton::{InferTensorContents, ModelInferResponse};
use serde_json::{json, Value};

use crate::table;

/// The repository index's columns.
pub const INDEX_HEADER: &[&str] = &["NAME", "VERSION", "STATE", "REASON"];

/// A repository index entry as a table row.
pub fn index_row(m: &ModelIndex) -> Vec<String> {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    vec![
        m.name.clone(),
        dash(&m.version),
        m.state.clone(),
        dash(&m.reason),
    ]
}

/// A repository index entry as JSON.
pub fn index_json(m: &ModelIndex) -> Value {
    json!({"name": m.name, "version": m.version, "state": m.state, "reason": m.reason})
}

/// One output tensor, its elements as JSON values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The output's name.
    pub name: String,
    /// Its OIP datatype, e.g. `FP32`.
    pub datatype: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its elements.
    pub data: Vec<Value>,
}

/// The outputs of an answer, from typed contents or raw bytes (whichever the server sent).
pub fn outputs(resp: &ModelInferResponse) -> anyhow::Result<Vec<Output>> {
    resp.outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let data = match (resp.raw_output_contents.get(i), &o.contents) {
                (Some(raw), _) => from_raw(&o.name, &o.datatype, raw)?,
                (None, Some(c)) => from_typed(&o.datatype, c),
                (None, None) => vec![],
            };
            Ok(Output {
                name: o.name.clone(),
                datatype: o.datatype.clone(),
                shape: o.shape.clone(),
                data,
            })
        })
        .collect()
}

fn from_typed(datatype: &str, c: &InferTensorContents) -> Vec<Value> {
    fn all<T: Clone + Into<Value>>(v: &[T]) -> Vec<Value> {
        v.iter().cloned().map(Into::into).collect()
    }
    match datatype {
        "BOOL" => all(&c.bool_contents),
        "INT8" | "INT16" | "INT32" => all(&c.int_contents),
        "INT64" => all(&c.int64_contents),
        "UINT8" | "UINT16" | "UINT32" => all(&c.uint_contents),
        "UINT64" => all(&c.uint64_contents),
        "FP32" => c.fp32_contents.iter().map(|&x| float32(x)).collect(),
        "FP64" => c.fp64_contents.iter().map(|&x| float(x)).collect(),
        _ => c.bytes_contents.iter().map(|b| bytes(b)).collect(),
    }
}

/// Decodes raw little-endian output bytes (Triton's layout: BYTES elements each after a
/// 4-byte length).
fn from_raw(name: &str, datatype: &str, raw: &[u8]) -> anyhow::Result<Vec<Value>> {
    macro_rules! le {
        ($t:ty, $n:expr, $map:expr) => {{
            if raw.len() % $n != 0 {
                anyhow::bail!(
                    "output {name:?}: {} raw bytes are not a whole number of {datatype}",
                    raw.len()
                );
            }
            raw.chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    $map(<$t>::from_le_bytes(a))
                })
                .collect()
        }};
    }
    Ok(match datatype {
        "BOOL" => raw.iter().map(|&b| Value::Bool(b != 0)).collect(),
        "INT8" => raw.iter().map(|&b| Value::from(b as i8)).collect(),
        "UINT8" => raw.iter().map(|&b| Value::from(b)).collect(),
        "INT16" => le!(i16, 2, Value::from),
        "UINT16" => le!(u16, 2, Value::from),
        "INT32" => le!(i32, 4, Value::from),
        "UINT32" => le!(u32, 4, Value::from),
        "INT64" => le!(i64, 8, Value::from),
        "UINT64" => le!(u64, 8, Value::from),
        "FP32" => le!(f32, 4, float32),
        "FP64" => le!(f64, 8, float),
        _ => {
            let mut out = Vec::new();
            let mut rest = raw;
            while rest.len() >= 4 {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                rest = &rest[4..];
                let Some(item) = rest.get(..len) else {
                    anyhow::bail!("output {name:?}: a BYTES element runs past the raw contents");
                };
                out.push(bytes(item));
                rest = &rest[len..];
            }
            out
        }
    })
}

/// An FP32 value as JSON, with the digits that tell the f32 apart (0.9803154, not the
/// 0.9803153872489929 of its widening to f64).
fn float32(x: f32) -> Value {
    float(x.to_string().parse().unwrap_or(f64::NAN))
}

/// A float as JSON; NaN and the infinities (which JSON lacks) as text.
fn float(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or_else(|| Value::String(x.to_string()), Value::Number)
}

fn bytes(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// The answer as the OIP JSON response.
pub fn response_json(resp: &ModelInferResponse, outs: &[Output]) -> Value {
    json!({
        "model_name": resp.model_name,
        "model_version": resp.model_version,
        "id": resp.id,
        "outputs": outs.iter().map(|o| json!({
            "name": o.name, "datatype": o.datatype, "shape": o.shape, "data": o.data,
        })).collect::<Vec<_>>(),
    })
}

fn cell(values: &[Value]) -> String {
    let one = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match values {
        [v] => one(v),
        _ => format!(
            "[{}]",
            values.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The rows of a table with a row per input row and a column per output, when every output
/// has the same first dimension; `None` otherwise.
pub fn rows(outs: &[Output]) -> Option<Vec<Vec<String>>> {
    let n = *outs.first()?.shape.first()?;
    if n < 0 || outs.iter().any(|o| o.shape.first() != Some(&n)) {
        return None;
    }
    let n = n as usize;
    let per_row: Vec<usize> = outs
        .iter()
        .map(|o| o.data.len().checked_div(n).unwrap_or(0))
        .collect();
    if outs
        .iter()
        .zip(&per_row)
        .any(|(o, &k)| k * n != o.data.len())
    {
        return None;
    }
    Some(
        (0..n)
            .map(|r| {
                let mut row = vec![r.to_string()];
                row.extend(
                    outs.iter()
                        .zip(&per_row)
                        .map(|(o, &k)| cell(&o.data[r * k..(r + 1) * k])),
                );
                row
            })
            .collect(),
    )
}

/// Prints the outputs: a table of rows when they share the batch dimension, else each
/// output with its shape and values.
pub fn print_outputs(resp: &ModelInferResponse, outs: &[Output]) {
    println!("model {} version {}", resp.model_name, resp.model_version);
    match rows(outs) {
        Some(rows) => {
            let mut header = vec!["ROW".to_owned()];
            header.extend(outs.iter().map(|o| format!("{} ({})", o.name, o.datatype)));
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            table::print(&header, &rows);
        }
        None => {
            for o in outs {
                println!(
                    "{} ({} {:?}): {}",
                    o.name,
                    o.datatype,
                    o.shape,
                    cell(&o.data)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_proto::triton::model_infer_response::InferOutputTensor;

    fn out(
        name: &str,
        datatype: &str,
        shape: &[i64],
        contents: InferTensorContents,
    ) -> InferOutputTensor {
        InferOutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            contents: Some(contents),
            ..Default::default()
        }
    }

    #[test]
    fn outputs_of_a_classifier_make_one_row_per_input_row() {
        let resp = ModelInferResponse {
            model_name: "logreg".into(),
            model_version: "1".into(),
            outputs: vec![
                out(
                    "label",
                    "INT64",
                    &[2],
                    InferTensorContents {
                        int64_contents: vec![1, 0],
                        ..Default::default()
                    },
                ),
                out(
                    "probabilities",
                    "FP32",
                    &[2, 2],
                    InferTensorContents {
                        fp32_contents: vec![0.25, 0.75, 0.5, 0.5],
                        ..Default::default()
                    },
                ),
            ],
            ..Default::default()
        };
        let outs = outputs(&resp).unwrap();
        assert_eq!(
            rows(&outs).unwrap(),
            vec![vec!["0", "1", "[0.25, 0.75]"], vec!["1", "0", "[0.5, 0.5]"]]
        );
        let j = response_json(&resp, &outs);
        assert_eq!(j["outputs"][1]["data"], json!([0.25, 0.75, 0.5, 0.5]));
        assert_eq!(j["outputs"][0]["shape"], json!([2]));
    }

    #[test]
    fn raw_outputs_are_decoded_little_endian() {
        let mut raw = Vec::new();
        for x in [1.5f32, -2.0] {
            raw.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(
            from_raw("y", "FP32", &raw).unwrap(),
            vec![json!(1.5), json!(-2.0)]
        );
        let mut s = Vec::new();
        for w in ["ab", ""] {
            s.extend_from_slice(&(w.len() as u32).to_le_bytes());
            s.extend_from_slice(w.as_bytes());
        }
        assert_eq!(
            from_raw("s", "BYTES", &s).unwrap(),
            vec![json!("ab"), json!("")]
        );
        assert!(from_raw("y", "FP32", &raw[..3]).is_err());
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float32(0.980_315_4), json!(0.9803154));
    }
}
