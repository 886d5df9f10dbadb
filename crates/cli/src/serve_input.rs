//! The input file of `mlops serve infer`, read into the protocol's typed tensors.
//!
//! Three forms, told apart by the content (a JSON object, or else CSV):
//! - the Open Inference Protocol's JSON request (`{"inputs": [{"name", "datatype", "shape",
//!   "data"}], "outputs": [...], "parameters": {...}}`), what `curl` would send to
//!   `/v2/models/NAME/infer`, so one file serves both;
//! - a map of input names to values (`{"input": [[...], [...]]}`): the shape is read off the
//!   nesting and the datatype off the model's metadata;
//! - CSV, for a model with one 2-D input: a header row naming the features in order, then
//!   one row per line, every column going into that input.
//!
//! The model's metadata is passed in, so everything here is checked without a server.

use std::collections::HashMap;

use anyhow::{bail, Context};
use mlops_proto::triton::model_infer_request::InferInputTensor;
use mlops_proto::triton::model_metadata_response::TensorMetadata;
use mlops_proto::triton::{infer_parameter, InferParameter, InferTensorContents};
use serde_json::Value;

/// What an input file asks for.
#[derive(Debug, Default, PartialEq)]
pub struct Request {
    /// The input tensors, with typed contents.
    pub inputs: Vec<InferInputTensor>,
    /// Outputs the file names (the OIP form's `outputs`); none means all.
    pub outputs: Vec<String>,
    /// Request parameters (the OIP form's `parameters`), e.g. `timeout` in microseconds.
    pub parameters: HashMap<String, InferParameter>,
}

/// Reads `text` (the file's content) against the model's `inputs`.
pub fn parse(text: &str, inputs: &[TensorMetadata]) -> anyhow::Result<Request> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed).context("the input file is not valid JSON")?;
        parse_json(v, inputs)
    } else {
        parse_csv(trimmed, inputs)
    }
}

fn parse_json(v: Value, inputs: &[TensorMetadata]) -> anyhow::Result<Request> {
    let Value::Object(map) = v else {
        bail!("the input file must hold a JSON object");
    };
    if let Some(list) = map.get("inputs") {
        return parse_oip(&map, list, inputs);
    }
    if map.is_empty() {
        bail!(
            "the input file names no input; the model takes {}",
            names(inputs)
        );
    }
    let mut out = Request::default();
    for (name, value) in &map {
        let meta = find(inputs, name)?;
        let (shape, flat) = flatten(name, value)?;
        let shape = fit_shape(name, shape, &meta.shape)?;
        out.inputs.push(tensor(name, &meta.datatype, shape, &flat)?);
    }
    Ok(out)
}

/// The OIP JSON request: each input carries its datatype and shape; `data` may be flat or
/// nested (row-major), as the protocol allows.
fn parse_oip(
    map: &serde_json::Map<String, Value>,
    list: &Value,
    inputs: &[TensorMetadata],
) -> anyhow::Result<Request> {
    let Value::Array(list) = list else {
        bail!("\"inputs\" must be a list of {{\"name\", \"datatype\", \"shape\", \"data\"}}");
    };
    let mut out = Request::default();
    for (i, item) in list.iter().enumerate() {
        let field = |key: &str| {
            item.get(key)
                .with_context(|| format!("inputs[{i}] has no \"{key}\""))
        };
        let name = field("name")?
            .as_str()
            .with_context(|| format!("inputs[{i}].name must be a string"))?;
        find(inputs, name)?;
        let datatype = field("datatype")?
            .as_str()
            .with_context(|| format!("inputs[{i}].datatype must be a string, like \"FP32\""))?;
        let shape = field("shape")?
            .as_array()
            .and_then(|dims| dims.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .with_context(|| format!("inputs[{i}].shape must be a list of integers"))?;
        let (_, flat) = flatten(name, field("data")?)?;
        let count: i64 = shape.iter().product();
        if shape.iter().any(|&d| d < 0) || count as usize != flat.len() {
            bail!(
                "input {name:?}: shape {shape:?} needs {count} values; \"data\" has {}",
                flat.len()
            );
        }
        out.inputs.push(tensor(name, datatype, shape, &flat)?);
    }
    if let Some(outputs) = map.get("outputs") {
        out.outputs = outputs
            .as_array()
            .and_then(|l| {
                l.iter()
                    .map(|o| o.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .context("\"outputs\" must be a list of {\"name\": ...}")?;
    }
    if let Some(params) = map.get("parameters") {
        let Value::Object(params) = params else {
            bail!("\"parameters\" must be an object");
        };
        for (k, v) in params {
            out.parameters.insert(k.clone(), parameter(k, v)?);
        }
    }
    Ok(out)
}

fn parameter(key: &str, v: &Value) -> anyhow::Result<InferParameter> {
    use infer_parameter::ParameterChoice as C;
    let choice = match v {
        Value::Bool(b) => C::BoolParam(*b),
        Value::String(s) => C::StringParam(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => C::Int64Param(i),
            (None, Some(u), _) => C::Uint64Param(u),
            (None, None, Some(d)) => C::DoubleParam(d),
            _ => bail!("parameter {key:?}: {v} is not a number this protocol carries"),
        },
        _ => bail!("parameter {key:?} must be a boolean, a number or a string, not {v}"),
    };
    Ok(InferParameter {
        parameter_choice: Some(choice),
    })
}

/// CSV for a model with one 2-D input: the header names the columns, each line is a row.
fn parse_csv(text: &str, inputs: &[TensorMetadata]) -> anyhow::Result<Request> {
    let [meta] = inputs else {
        bail!(
            "CSV input needs a model with one input; this one takes {}: write JSON instead ({{\"NAME\": [[...]]}} per input)",
            names(inputs)
        );
    };
    if !(meta.shape.is_empty() || meta.shape.len() == 2) {
        bail!(
            "CSV input needs a 2-D input (rows x features); {:?} has shape {:?}: write JSON instead",
            meta.name,
            meta.shape
        );
    }
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .context("the CSV file is empty: it needs a header row, then one row per line")?;
    let columns = split_csv(header).len();
    if let Some(&want) = meta.shape.get(1).filter(|&&d| d >= 0) {
        if want as usize != columns {
            bail!(
                "the CSV header has {columns} columns; input {:?} takes {want} features (shape {:?})",
                meta.name,
                meta.shape
            );
        }
    }
    let mut flat = Vec::new();
    let mut rows = 0i64;
    for (i, line) in lines {
        let fields = split_csv(line);
        if fields.len() != columns {
            bail!(
                "CSV line {}: {} values; the header has {columns} columns",
                i + 1,
                fields.len()
            );
        }
        for (c, f) in fields.into_iter().enumerate() {
            flat.push(
                csv_value(&meta.datatype, &f)
                    .with_context(|| format!("CSV line {}, column {}", i + 1, c + 1))?,
            );
        }
        rows += 1;
    }
    if rows == 0 {
        bail!("the CSV file has a header but no rows");
    }
    let shape = fit_shape(&meta.name, vec![rows, columns as i64], &meta.shape)?;
    Ok(Request {
        inputs: vec![tensor(&meta.name, &meta.datatype, shape, &flat)?],
        ..Default::default()
    })
}

/// One CSV field as the JSON value [`tensor`] converts: a number for numeric types (NaN and
/// inf allowed for floats), a boolean, or the text itself for BYTES.
fn csv_value(datatype: &str, field: &str) -> anyhow::Result<Value> {
    let f = field.trim();
    match datatype {
        "BYTES" => return Ok(Value::String(field.to_owned())),
        "BOOL" => {
            return match f.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => bail!("{f:?} is not a boolean (true, false, 1, 0)"),
            }
        }
        _ => {}
    }
    if f.is_empty() {
        bail!("the value is empty; write a number (NaN for a missing float)");
    }
    if let Ok(i) = f.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = f.parse::<u64>() {
        return Ok(Value::from(u));
    }
    match f.parse::<f64>() {
        // JSON has no NaN or infinity: carry them as text, which `tensor` reads for floats.
        Ok(x) if x.is_finite() => Ok(Value::from(x)),
        Ok(_) => Ok(Value::String(f.to_owned())),
        Err(_) => bail!("{f:?} is not a number ({datatype})"),
    }
}

/// Splits a CSV line into fields: commas separate, double quotes enclose a field that may
/// hold commas, and `""` inside quotes is one quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(ch) = chars.next() {
        let field = fields.last_mut().expect("fields starts with one");
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            _ => field.push(ch),
        }
    }
    fields
}

fn find<'a>(inputs: &'a [TensorMetadata], name: &str) -> anyhow::Result<&'a TensorMetadata> {
    inputs
        .iter()
        .find(|m| m.name == name)
        .with_context(|| format!("unknown input {name:?}: the model takes {}", names(inputs)))
}

fn names(inputs: &[TensorMetadata]) -> String {
    inputs
        .iter()
        .map(|m| format!("{:?} ({} {:?})", m.name, m.datatype, m.shape))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value's shape (from the nesting) and its elements in row-major order; refuses ragged
/// nesting.
fn flatten(name: &str, v: &Value) -> anyhow::Result<(Vec<i64>, Vec<Value>)> {
    fn walk(
        name: &str,
        v: &Value,
        depth: usize,
        shape: &mut Vec<i64>,
        out: &mut Vec<Value>,
    ) -> anyhow::Result<()> {
        match v {
            Value::Array(items) => {
                if depth == shape.len() {
                    if !out.is_empty() {
                        bail!("input {name:?}: the rows are ragged (nesting depths differ)");
                    }
                    shape.push(items.len() as i64);
                } else if shape[depth] != items.len() as i64 {
                    bail!(
                        "input {name:?}: the rows are ragged: a list of {} where the first has {}",
                        items.len(),
                        shape[depth]
                    );
                }
                for item in items {
                    walk(name, item, depth + 1, shape, out)?;
                }
            }
            scalar => {
                if depth != shape.len() {
                    bail!(
                        "input {name:?}: the rows are ragged (a value where a list was expected)"
                    );
                }
                out.push(scalar.clone());
            }
        }
        Ok(())
    }
    let mut shape = Vec::new();
    let mut out = Vec::new();
    walk(name, v, 0, &mut shape, &mut out)?;
    Ok((shape, out))
}

/// Fits the data's shape to the model's: a single row of a batched input gains its batch
/// dimension, and every fixed dimension must match.
fn fit_shape(name: &str, mut shape: Vec<i64>, model: &[i64]) -> anyhow::Result<Vec<i64>> {
    if model.is_empty() {
        return Ok(shape);
    }
    if shape.len() + 1 == model.len() {
        shape.insert(0, 1);
    }
    let fits =
        shape.len() == model.len() && shape.iter().zip(model).all(|(&d, &m)| m < 0 || d == m);
    if !fits {
        bail!("input {name:?}: the data has shape {shape:?}; the model takes {model:?} (-1: any size)");
    }
    Ok(shape)
}

/// An input tensor of `datatype` with typed contents, in the field Triton reads for it.
fn tensor(
    name: &str,
    datatype: &str,
    shape: Vec<i64>,
    values: &[Value],
) -> anyhow::Result<InferInputTensor> {
    let mut c = InferTensorContents::default();
    let at = |i: usize| format!("input {name:?}, value {}", i + 1);
    for (i, v) in values.iter().enumerate() {
        match datatype {
            "BOOL" => c
                .bool_contents
                .push(v.as_bool().with_context(|| format!("{}: {v} is not true or false", at(i)))?),
            "INT8" | "INT16" | "INT32" => c.int_contents.push(integer(datatype, v).with_context(|| at(i))?),
            "INT64" => c.int64_contents.push(integer(datatype, v).with_context(|| at(i))?),
            "UINT8" | "UINT16" | "UINT32" => {
                c.uint_contents.push(integer(datatype, v).with_context(|| at(i))?)
            }
            "UINT64" => c.uint64_contents.push(integer(datatype, v).with_context(|| at(i))?),
            "FP32" => c.fp32_contents.push(float(v).with_context(|| at(i))? as f32),
            "FP64" => c.fp64_contents.push(float(v).with_context(|| at(i))?),
            "BYTES" => match v {
                Value::String(s) => c.bytes_contents.push(s.clone().into_bytes().into()),
                other => bail!("{}: {other} is not a string (BYTES)", at(i)),
            },
            other => bail!(
                "input {name:?}: datatype {other:?} cannot be sent from a file; use BOOL, INT8..INT64, UINT8..UINT64, FP32, FP64 or BYTES"
            ),
        }
    }
    Ok(InferInputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape,
        parameters: HashMap::new(),
        contents: Some(c),
    })
}

/// An integer value that fits `datatype`'s range, as the contents field's type `T`.
fn integer<T: TryFrom<i128>>(datatype: &str, v: &Value) -> anyhow::Result<T> {
    let n: i128 = match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i128::from(i),
            (None, Some(u)) => i128::from(u),
            _ => bail!("{v} is not an integer ({datatype})"),
        },
        other => bail!("{other} is not a number ({datatype})"),
    };
    let (lo, hi): (i128, i128) = match datatype {
        "INT8" => (i8::MIN.into(), i8::MAX.into()),
        "INT16" => (i16::MIN.into(), i16::MAX.into()),
        "INT32" => (i32::MIN.into(), i32::MAX.into()),
        "INT64" => (i64::MIN.into(), i64::MAX.into()),
        "UINT8" => (0, u8::MAX.into()),
        "UINT16" => (0, u16::MAX.into()),
        "UINT32" => (0, u32::MAX.into()),
        _ => (0, u64::MAX.into()),
    };
    if n < lo || n > hi {
        bail!("{n} does not fit {datatype}");
    }
    T::try_from(n).map_err(|_| anyhow::anyhow!("{n} does not fit {datatype}"))
}

/// A float value: a JSON number, or the text NaN, inf or -inf (JSON has no such numbers).
fn float(v: &Value) -> anyhow::Result<f64> {
    match v {
        Value::Number(n) => n.as_f64().with_context(|| format!("{v} is not a number")),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "nan" => Ok(f64::NAN),
            "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
            "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
            _ => bail!("{s:?} is not a number"),
        },
        other => bail!("{other} is not a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(name: &str, datatype: &str, shape: &[i64]) -> TensorMetadata {
        TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        }
    }

    fn logreg() -> Vec<TensorMetadata> {
        vec![meta("input", "FP32", &[-1, 3])]
    }

    fn err(text: &str, inputs: &[TensorMetadata]) -> String {
        format!("{:#}", parse(text, inputs).unwrap_err())
    }

    #[test]
    fn the_oip_json_request_is_read_as_it_is() {
        let text = json!({
            "id": "42",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3],
                        "data": [[1, 2, 3], [4.5, 5, 6]]}],
            "outputs": [{"name": "label"}],
            "parameters": {"timeout": 1000}
        })
        .to_string();
        let r = parse(&text, &logreg()).unwrap();
        let t = &r.inputs[0];
        assert_eq!((t.name.as_str(), t.datatype.as_str()), ("input", "FP32"));
        assert_eq!(t.shape, vec![2, 3]);
        let c = t.contents.as_ref().unwrap();
        assert_eq!(c.fp32_contents, vec![1.0, 2.0, 3.0, 4.5, 5.0, 6.0]);
        assert_eq!(r.outputs, vec!["label".to_owned()]);
        assert_eq!(
            r.parameters["timeout"].parameter_choice,
            Some(infer_parameter::ParameterChoice::Int64Param(1000))
        );
        // A flat `data` is as good as a nested one.
        let flat = r#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}"#;
        assert_eq!(parse(flat, &logreg()).unwrap().inputs[0].shape, vec![1, 3]);
    }

    #[test]
    fn the_simple_json_form_takes_shape_from_nesting_and_datatype_from_metadata() {
        let inputs = vec![meta("x", "INT64", &[-1, 2]), meta("flag", "BOOL", &[-1])];
        let r = parse(r#"{"x": [[1, 2], [3, 4]], "flag": [true, false]}"#, &inputs).unwrap();
        let x = r.inputs.iter().find(|t| t.name == "x").unwrap();
        assert_eq!(
            (x.datatype.as_str(), x.shape.clone()),
            ("INT64", vec![2, 2])
        );
        assert_eq!(
            x.contents.as_ref().unwrap().int64_contents,
            vec![1, 2, 3, 4]
        );
        let flag = r.inputs.iter().find(|t| t.name == "flag").unwrap();
        assert_eq!(
            flag.contents.as_ref().unwrap().bool_contents,
            vec![true, false]
        );
        // One row of a batched input gains the batch dimension.
        let r = parse(r#"{"input": [1, 2, 3]}"#, &logreg()).unwrap();
        assert_eq!(r.inputs[0].shape, vec![1, 3]);
        // Small integer types go in int_contents/uint_contents, range-checked.
        let r = parse(r#"{"b": [[255, 0]]}"#, &[meta("b", "UINT8", &[-1, 2])]).unwrap();
        assert_eq!(
            r.inputs[0].contents.as_ref().unwrap().uint_contents,
            vec![255, 0]
        );
        let e = err(r#"{"b": [[256, 0]]}"#, &[meta("b", "UINT8", &[-1, 2])]);
        assert!(e.contains("256 does not fit UINT8"), "{e}");
        let r = parse(r#"{"s": [["a"], ["b"]]}"#, &[meta("s", "BYTES", &[-1, 1])]).unwrap();
        assert_eq!(
            r.inputs[0].contents.as_ref().unwrap().bytes_contents,
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn csv_rows_go_into_the_one_input_in_its_datatype() {
        let csv = "mean radius,mean texture,\"area, worst\"\n1,2.5,3\r\n4,NaN,6\n\n";
        let r = parse(csv, &logreg()).unwrap();
        let t = &r.inputs[0];
        assert_eq!((t.name.as_str(), t.shape.clone()), ("input", vec![2, 3]));
        let v = &t.contents.as_ref().unwrap().fp32_contents;
        assert_eq!(v[..4], [1.0, 2.5, 3.0, 4.0]);
        assert!(v[4].is_nan());
        let r = parse("a,b\n1,2\n", &[meta("x", "FP64", &[-1, -1])]).unwrap();
        assert_eq!(
            r.inputs[0].contents.as_ref().unwrap().fp64_contents,
            vec![1.0, 2.0]
        );
        let r = parse("a,b\n1,-2\n", &[meta("x", "INT32", &[-1, 2])]).unwrap();
        assert_eq!(
            r.inputs[0].contents.as_ref().unwrap().int_contents,
            vec![1, -2]
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong_and_where() {
        let cases: &[(&str, &str)] = &[
            // Ragged rows.
            (r#"{"input": [[1, 2, 3], [4, 5]]}"#, "ragged"),
            (r#"{"input": [[1, 2, 3], 4]}"#, "ragged"),
            (
                "a,b,c\n1,2,3\n4,5\n",
                "CSV line 3: 2 values; the header has 3 columns",
            ),
            // Non-numeric values.
            (
                "a,b,c\n1,x,3\n",
                "CSV line 2, column 2: \"x\" is not a number (FP32)",
            ),
            ("a,b,c\n1,,3\n", "the value is empty"),
            (r#"{"input": [[1, "two", 3]]}"#, "\"two\" is not a number"),
            (r#"{"input": [[1, true, 3]]}"#, "true is not a number"),
            // Unknown input names.
            (
                r#"{"inptu": [[1, 2, 3]]}"#,
                "unknown input \"inptu\": the model takes \"input\" (FP32 [-1, 3])",
            ),
            (
                r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}"#,
                "unknown input \"x\"",
            ),
            // Shapes and counts.
            (
                r#"{"input": [[1, 2]]}"#,
                "shape [1, 2]; the model takes [-1, 3]",
            ),
            (
                "a,b\n1,2\n",
                "the CSV header has 2 columns; input \"input\" takes 3 features",
            ),
            (
                r#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3]}]}"#,
                "needs 6 values; \"data\" has 3",
            ),
            (
                r#"{"inputs": [{"name": "input", "shape": [1, 3], "data": [1, 2, 3]}]}"#,
                "has no \"datatype\"",
            ),
            ("a,b,c\n", "header but no rows"),
            ("", "the CSV file is empty"),
            ("{", "not valid JSON"),
            ("{}", "names no input"),
        ];
        for (text, needle) in cases {
            let e = err(text, &logreg());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let two = vec![meta("a", "FP32", &[-1, 1]), meta("b", "FP32", &[-1, 1])];
        assert!(err("a\n1\n", &two).contains("CSV input needs a model with one input"));
        let e = err(r#"{"h": [1.5]}"#, &[meta("h", "FP16", &[-1])]);
        assert!(e.contains("\"FP16\" cannot be sent from a file"), "{e}");
    }

    #[test]
    fn csv_fields_honour_quotes() {
        assert_eq!(
            split_csv(r#"a,"b,c","say ""hi""",d"#),
            ["a", "b,c", "say \"hi\"", "d"]
        );
        assert_eq!(split_csv(""), [""]);
    }
}
